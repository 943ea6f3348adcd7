using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 004 "Troubleshooting Pool Leaks" parts 3-5: the tag 'Leak' with 601 outstanding nonpaged allocations of
/// 1,024,000 bytes (615,424,000 bytes) as top consumer, the tag bytes twice in myfault.sys
/// (+0x13aa and +0x1621, as in the seed's !for_each_module s -a output), PoolHitTag ffffff0f, the seed's !poolused
/// top 5 and TOTAL line. On builds with per-processor tracker tables (nt!ExPoolTagTables) the counters are split
/// over the global table, the per-processor tables and (Windows 11) the expansion table, so only a reader that sums
/// every table gets the seed's numbers.
/// </summary>
public sealed class PoolLeakScenario
{
    public const uint LeakAllocs = 601;
    public const ulong LeakBytesEach = 1_024_000;
    public const ulong LeakBytes = LeakAllocs * LeakBytesEach; // 615,424,000
    public const ulong MyfaultBase = 0xfffff880_044b5000;
    public const uint MyfaultSize = 0x7000;
    public const ulong Site1 = MyfaultBase + 0x13aa;
    public const ulong Site2 = MyfaultBase + 0x1621;
    public const long TotalNpAllocs = 43424;
    public const ulong TotalNpBytes = 634_209_952;
    public const long TotalPAllocs = 63565;
    public const ulong TotalPBytes = 126_487_760;

    public sealed record TagCounts(string Tag, ulong NpAllocs, ulong NpFrees, ulong NpBytes, ulong PAllocs, ulong PFrees, ulong PBytes);

    public LabKernel Kernel { get; }
    public List<TagCounts> Tags { get; } = new();
    public ulong BigPageTable { get; private set; }
    public int BigPageEntries { get; }
    public int TrackEntries { get; }
    public List<ulong> TrackerTables { get; } = new();
    /// <summary>Bytes the manual procedure would transfer for !for_each_module s -a: every module image.</summary>
    public ulong ModuleImageBytes => (ulong)Kernel.Modules.Sum(m => (long)m.Size);

    public PoolLeakScenario(LabKernel k, int processors = 4, int extraModules = 3, int bigPageEntries = 4096, int trackEntries = 2048)
    {
        Kernel = k;
        k.ProcessorCount = processors;
        BigPageEntries = bigPageEntries;
        TrackEntries = trackEntries;
        BuildTags();
        BuildTrackerTables(trackEntries);
        BuildBigPages(bigPageEntries);
        BuildModules(extraModules);
        // PoolHitTag default value (seed: dc nt!PoolHitTag l1 -> ffffff0f)
        k.Memory.WriteU32(k.Sym("PoolHitTag"), 0xffffff0f);
        k.Memory.WriteU32(k.Sym("KeNumberProcessors"), (uint)processors);
        if (k.HasSym("MmMaximumNonPagedPoolInBytes")) k.Memory.WriteU64(k.Sym("MmMaximumNonPagedPoolInBytes"), 191078UL * 4096); // seed !vm: NonPagedPool Max 191078 pages
        if (k.HasSym("MmSizeOfPagedPoolInBytes")) k.Memory.WriteU64(k.Sym("MmSizeOfPagedPoolInBytes"), 33554432UL * 4096);
        if (k.HasSym("MmVerifierData") && k.HasType("_MM_DRIVER_VERIFIER_DATA")) k.Set("_MM_DRIVER_VERIFIER_DATA", k.Sym("MmVerifierData"), "Level", 0);
    }

    private void BuildTags()
    {
        // The seed's !poolused /t5 2 rows (outstanding = allocs - frees).
        Tags.Add(new("Leak", 1000, 399, LeakBytes, 0, 0, 0));
        Tags.Add(new("Pool", 6, 0, 1717840, 0, 0, 0));
        Tags.Add(new("nVsC", 700, 36, 1531552, 0, 0, 0));
        Tags.Add(new("netv", 5000, 631, 1172224, 1, 0, 144));
        Tags.Add(new("Thre", 9000, 8393, 774048, 0, 0, 0));
        // Filler tags completing the seed's TOTAL line, each below the top 5 by nonpaged bytes.
        long npAllocsLeft = TotalNpAllocs - (601 + 6 + 664 + 4369 + 607);
        ulong npBytesLeft = TotalNpBytes - (LeakBytes + 1717840 + 1531552 + 1172224 + 774048);
        long pAllocsLeft = TotalPAllocs - 1;
        ulong pBytesLeft = TotalPBytes - 144;
        const int fillers = 40;
        for (int i = 0; i < fillers; i++)
        {
            bool last = i == fillers - 1;
            ulong npA = last ? (ulong)npAllocsLeft : (ulong)(npAllocsLeft / (fillers - i));
            ulong npB = last ? npBytesLeft : npBytesLeft / (ulong)(fillers - i);
            ulong pA = last ? (ulong)pAllocsLeft : (ulong)(pAllocsLeft / (fillers - i));
            ulong pB = last ? pBytesLeft : pBytesLeft / (ulong)(fillers - i);
            npAllocsLeft -= (long)npA; npBytesLeft -= npB; pAllocsLeft -= (long)pA; pBytesLeft -= pB;
            string tag = "Fi" + (char)('A' + i / 26) + (char)('a' + i % 26);
            Tags.Add(new(tag, npA + 10, 10, npB, pA + 3, 3, pB));
        }
    }

    public static uint Key(string tag) => BitConverter.ToUInt32(Encoding.ASCII.GetBytes(tag.PadRight(4)));

    private void BuildTrackerTables(int entries)
    {
        var k = Kernel;
        var layout = k.Layout("_POOL_TRACKER_TABLE");
        ulong es = layout.Size;
        ulong global = k.Alloc(es * (ulong)entries, 0x1000);
        k.WritePtr(k.Sym("PoolTrackTable"), global);
        k.Memory.WriteU64(k.Sym("PoolTrackTableSize"), (ulong)entries);
        if (k.HasSym("PoolTrackTableMask")) k.Memory.WriteU64(k.Sym("PoolTrackTableMask"), (ulong)entries - 1);
        var tables = new List<ulong> { global };
        // Windows 10 1809+ / 11: per-processor tables in nt!ExPoolTagTables, slot 0 being the global table.
        bool perCpu = k.BuildNumber >= 17763 && k.HasSym("ExPoolTagTables");
        if (perCpu)
        {
            k.WritePtr(k.Sym("ExPoolTagTables"), global);
            for (int cpu = 1; cpu < k.ProcessorCount; cpu++)
            {
                ulong t = k.Alloc(es * (ulong)entries, 0x1000);
                k.WritePtr(k.Sym("ExPoolTagTables") + (ulong)cpu * 8, t);
                tables.Add(t);
            }
        }
        ulong expansion = 0;
        int expEntries = 64;
        if (k.BuildNumber >= 22000)
        {
            expansion = k.Alloc(es * (ulong)expEntries, 0x1000);
            k.WritePtr(k.Sym("PoolTrackTableExpansion"), expansion);
            k.Memory.WriteU64(k.Sym("PoolTrackTableExpansionSize"), (ulong)expEntries);
        }
        TrackerTables.AddRange(tables);
        if (expansion != 0) TrackerTables.Add(expansion);

        int tagIndex = 0;
        foreach (var t in Tags)
        {
            // Split the counters over the tables (remainders to the first) so the sum is exact.
            var parts = new List<(ulong Table, int Entries)>();
            foreach (var tb in tables) parts.Add((tb, entries));
            if (expansion != 0 && tagIndex % 7 == 3) parts.Add((expansion, expEntries));
            int n = parts.Count;
            for (int p = 0; p < n; p++)
            {
                ulong Share(ulong v) => v / (ulong)n + (p == 0 ? v % (ulong)n : 0);
                var (table, cap) = parts[p];
                int idx = FreeSlot(table, es, cap, Key(t.Tag));
                ulong e = table + (ulong)idx * es;
                k.Set("_POOL_TRACKER_TABLE", e, "Key", Key(t.Tag));
                k.Set("_POOL_TRACKER_TABLE", e, "NonPagedAllocs", Share(t.NpAllocs));
                k.Set("_POOL_TRACKER_TABLE", e, "NonPagedFrees", Share(t.NpFrees));
                k.Set("_POOL_TRACKER_TABLE", e, "NonPagedBytes", Share(t.NpBytes));
                k.Set("_POOL_TRACKER_TABLE", e, "PagedAllocs", Share(t.PAllocs));
                k.Set("_POOL_TRACKER_TABLE", e, "PagedFrees", Share(t.PFrees));
                k.Set("_POOL_TRACKER_TABLE", e, "PagedBytes", Share(t.PBytes));
            }
            tagIndex++;
        }
    }

    private int FreeSlot(ulong table, ulong es, int cap, uint key)
    {
        // The kernel's hash: ((40543 * key) ^ ((40543 * key) >> 32)) & mask, then linear probing.
        ulong h = 40543UL * key;
        int idx = (int)((h ^ (h >> 32)) & (ulong)(cap - 1));
        for (int i = 0; i < cap; i++)
        {
            int j = (idx + i) % cap;
            if (Kernel.ReadLe(table + (ulong)j * es, 4) == 0) return j;
        }
        throw new InvalidOperationException("tracker table full");
    }

    private void BuildBigPages(int entries)
    {
        var k = Kernel;
        var layout = k.Layout("_POOL_TRACKER_BIG_PAGES");
        ulong es = layout.Size;
        BigPageTable = k.Alloc(es * (ulong)entries, 0x1000);
        k.WritePtr(k.Sym("PoolBigPageTable"), BigPageTable);
        k.Memory.WriteU64(k.Sym("PoolBigPageTableSize"), (ulong)entries);
        var rnd = new Random(4);
        int leakPlaced = 0;
        ulong va = 0xfffffa80_20000000;
        for (int i = 0; i < entries; i++)
        {
            ulong e = BigPageTable + (ulong)i * es;
            // Every 3rd slot free (Va low bit set), the 601 'Leak' blocks spread over the rest, others random tags.
            if (i % 3 == 2) { k.Set("_POOL_TRACKER_BIG_PAGES", e, "Va", 1); continue; }
            bool leak = leakPlaced < LeakAllocs && (i % 5 != 4 || entries - i < 2 * (LeakAllocs - leakPlaced));
            string tag = leak ? "Leak" : Tags[1 + rnd.Next(Tags.Count - 1)].Tag;
            ulong size = leak ? LeakBytesEach : (ulong)(0x2000 + 0x1000 * rnd.Next(16));
            k.Set("_POOL_TRACKER_BIG_PAGES", e, "Va", va);
            k.Set("_POOL_TRACKER_BIG_PAGES", e, "Key", Key(tag));
            k.Set("_POOL_TRACKER_BIG_PAGES", e, "NumberOfBytes", size);
            if (layout.HasField("PoolType")) k.Set("_POOL_TRACKER_BIG_PAGES", e, "PoolType", leak ? 0UL : (ulong)rnd.Next(2));
            va += (size + 0xfff) & ~0xfffUL;
            if (leak) leakPlaced++;
        }
        if (leakPlaced < LeakAllocs && entries >= 2000) throw new InvalidOperationException("big-page table too small for the leak");
    }

    private void BuildModules(int extraModules)
    {
        var k = Kernel;
        ulong halBase = (k.NtBase + k.Modules[0].Size + 0xfffff) & ~0xfffffUL;
        k.Modules.Add(new("hal", halBase, 0x60000, @"\SystemRoot\system32\hal.dll"));
        k.AddModule("myfault.sys", MyfaultBase, MyfaultSize);
        // The seed's bytes at both sites: mov r8d,'Leak' (41 b8 + imm32) followed by the seed's dump bytes.
        byte[] code1 = [0x41, 0xb8, 0x4c, 0x65, 0x61, 0x6b, 0x3b, 0xc1, 0x0f, 0x42, 0xc1, 0x41, 0x8d, 0x49, 0xfd, 0x8b, 0xd0, 0xff];
        byte[] code2 = [0x41, 0xb8, 0x4c, 0x65, 0x61, 0x6b, 0x3b, 0xc1, 0x0f, 0x42, 0xc1, 0x33, 0xc9, 0x8b, 0xd0, 0xff, 0x15, 0xcc];
        k.Memory.Write(Site1 - 2, code1);
        k.Memory.Write(Site2 - 2, code2);
        // Other drivers: realistic image sizes in the module list (the manual search transfers them all);
        // only their headers are mapped in the lab, they never contain the tag.
        var rnd = new Random(150);
        ulong b = 0xfffff880_01000000;
        for (int i = 0; i < extraModules; i++)
        {
            uint size = (uint)(0x10000 + 0x1000 * rnd.Next(0, 330)); // 64 KB .. ~1.4 MB (150 drivers ~ 100 MB)
            k.AddModule($"drv{i:000}.sys", b, size, 0x1000);
            k.Memory.Write(b, "MZ"u8);
            b += ((ulong)size + 0xffff) & ~0xffffUL;
            if (b >= MyfaultBase - 0x100000 && b < MyfaultBase + 0x100000) b = MyfaultBase + 0x100000;
        }
    }

    /// <summary>
    /// Share of SizeOfImage taken by the exception directory (RUNTIME_FUNCTION array) in the 11 Microsoft-built x64
    /// images on this machine, measured from their PE headers on 2026-12-04 (dbgcore, dbgeng, dbghelp, dbgmodel,
    /// msdia140 from the DbgEng NuGet package; coreclr, clrjit, hostpolicy, System.IO.Compression.Native, clrgc,
    /// mscordaccore from .NET 10.0.12 win-x64): 0.9% to 3.7%, median 2.5%. No kernel image is on this machine; the
    /// lab gives nt the median and cycles the drivers through the list (the 0.9% one included).
    /// </summary>
    public static readonly double[] MeasuredExceptionDirectoryShares = [0.023, 0.019, 0.020, 0.020, 0.030, 0.037, 0.030, 0.029, 0.009, 0.025, 0.034];
    public const double MedianExceptionDirectoryShare = 0.025;

    /// <summary>True after <see cref="MakeImagesPresent"/>.</summary>
    public bool ImagesPresent { get; private set; }

    /// <summary>
    /// Every page of every loaded image present, as on a live target or in a complete memory dump (the default lab maps
    /// only the drivers' headers): each image gets a PE32+ AMD64 header with an exception directory of a measured share
    /// (<see cref="MeasuredExceptionDirectoryShares"/>) filled with valid RUNTIME_FUNCTIONs, placed where nothing else
    /// of the scenario lies (in nt: in the largest stretch without a public symbol, checked to be zero).
    /// </summary>
    /// <param name="share">One exception-directory share for every image instead of the measured ones (sensitivity).</param>
    public void MakeImagesPresent(double? share = null)
    {
        var k = Kernel;
        var rnd = new Random(2512);
        for (int i = 0; i < k.Modules.Count; i++)
        {
            var m = k.Modules[i];
            k.Memory.Map(m.Base, m.Size);
            double dirShare = share ?? (i == 0 ? MedianExceptionDirectoryShare : MeasuredExceptionDirectoryShares[i % MeasuredExceptionDirectoryShares.Length]);
            uint dirSize = (uint)(m.Size * dirShare) / 12 * 12;
            uint dirRva = i == 0 ? FreeStretchInNt(m, dirSize) : (uint)(m.Size * 0.7) & ~0xfffu;
            if (m.Name == "myfault.sys" && dirRva < 0x2000) throw new InvalidOperationException("directory over the seed's sites");
            WriteHeader(m, dirRva, dirSize);
            var e = new byte[dirSize];
            uint at = 0x1000;
            for (int j = 0; j + 12 <= e.Length; j += 12)
            {
                uint begin = at, end = Math.Min(begin + (uint)rnd.Next(0x10, 0x400), m.Size - 1);
                BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(j), begin);
                BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(j + 4), end);
                BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(j + 8), (uint)rnd.Next(0x1000, (int)m.Size - 0x10) & ~3u);
                at = Math.Min(end + (uint)rnd.Next(0, 0x40), m.Size - 0x20);
            }
            k.Memory.Write(m.Base + dirRva, e);
        }
        ImagesPresent = true;
    }

    private uint FreeStretchInNt(NtSleuth.Commands.Target.ModuleInfo nt, uint bytes)
    {
        var rvas = Kernel.Nt.Symbols.Values.Where(r => r >= 0x1000 && r < nt.Size).OrderBy(r => r).ToList();
        rvas.Add(nt.Size);
        ulong bestStart = 0, bestLen = 0;
        for (int i = 0; i + 1 < rvas.Count; i++)
            if (rvas[i + 1] - rvas[i] > bestLen) { bestLen = rvas[i + 1] - rvas[i]; bestStart = rvas[i]; }
        // Page-aligned, one page after the symbol that starts the stretch (it may be an array).
        ulong start = ((bestStart + 0x1fff) & ~0xfffUL);
        if (start + bytes + 0x1000 > bestStart + bestLen) throw new InvalidOperationException("no symbol-free stretch in nt for the exception directory");
        var check = new byte[bytes];
        Kernel.Memory.Read(nt.Base + start, check);
        if (check.Any(b => b != 0)) throw new InvalidOperationException("the stretch chosen for nt's exception directory is in use");
        return (uint)start;
    }

    private void WriteHeader(NtSleuth.Commands.Target.ModuleInfo m, uint dirRva, uint dirSize)
    {
        var mem = Kernel.Memory;
        const uint lfanew = 0x80;
        ulong opt = m.Base + lfanew + 24;
        mem.Write(m.Base, "MZ"u8);
        mem.WriteU32(m.Base + 0x3c, lfanew);
        mem.Write(m.Base + lfanew, "PE\0\0"u8);
        mem.WriteU16(m.Base + lfanew + 4, 0x8664);
        mem.WriteU16(m.Base + lfanew + 20, 0xf0);
        mem.WriteU16(opt, 0x20b);
        mem.WriteU32(opt + 32, 0x1000);
        mem.WriteU32(opt + 36, 0x200);
        mem.WriteU32(opt + 56, m.Size);
        mem.WriteU32(opt + 60, 0x400);
        mem.WriteU32(opt + 108, 16);
        mem.WriteU32(opt + 112 + 3 * 8, dirRva);
        mem.WriteU32(opt + 112 + 3 * 8 + 4, dirSize);
    }

    /// <summary>
    /// Modelled cost of the seed's manual procedure on this scenario over KDNET, counted as the command's reads are (KD
    /// packets per request; the engine's cache: nothing read twice): !poolused reading every tracker table (one request
    /// per table), !for_each_module s -a "Leak" (the engine reads every page of every image to search it: charged as the
    /// pages it transfers, the same rule as the command's own searches) plus lm a per hit.
    /// </summary>
    public (long RoundTrips, long Bytes) ManualProcedureCost()
    {
        var m = new NtSleuth.Lab.Bench.ManualProcedureBuilder(Kernel.CreateTarget());
        ulong es = Kernel.SizeOf("_POOL_TRACKER_TABLE");
        foreach (var t in TrackerTables) m.Read(t, (int)(es * (ulong)TrackEntries));
        int hits = 0;
        var pattern = "Leak"u8.ToArray();
        foreach (var mod in Kernel.Modules)
        {
            ulong start = mod.Base, end = mod.Base + mod.Size;
            while (start < end && m.Search(start, end - start, pattern) is { } hit && hit >= start && hit < end) { hits++; start = hit + 1; }
        }
        m.Step("lm a (per hit)", hits, 0);
        var r = m.Build();
        return (r.RoundTrips, r.Bytes);
    }
}
