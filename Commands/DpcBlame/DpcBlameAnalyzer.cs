using System.Buffers.Binary;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;
using NtSleuth.Commands.Kernel;

namespace NtSleuth.Commands.DpcBlame;

/// <summary>
/// Decodes bug check 0x133, names the driver running in the DPC (engine stack, or a return-address scan of the DPC
/// stack), detects KeStallExecutionProcessor loops by decoding the code around the return address, and reads
/// every processor's DPC queues and watchdog counters (fields by name; 7's DpcListHead and 8.1+'s DpcList).
/// </summary>
public sealed class DpcBlameAnalyzer
{
    public const uint DpcWatchdogViolation = 0x133;
    /// <summary>PRCB fields closer than this are fetched in one read.</summary>
    private const ulong ClusterGap = 0x1000;
    public int MaxDpcsPerQueue { get; init; } = 10_000;
    /// <summary>DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK_SIGNATURE (wdm.h).</summary>
    public const uint TriageSignature = 0xAEBECEDE;
    /// <summary>RTL_SIZEOF_THROUGH_FIELD(DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK, DpcWatchdogProfileLength) = DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK_VER_1_SIZE.</summary>
    public const int TriageSizeV1 = 0x10;
    /// <summary>Most profile bytes read per processor (Windows 11's default buffer is 266,240 bytes).</summary>
    public int MaxProfileBytes { get; init; } = 4 << 20;

    private static readonly string[] WatchdogFields =
    [
        "DpcWatchdogPeriod", "DpcWatchdogPeriodTicks", "DpcWatchdogCount", "DpcTimeLimit", "DpcTimeLimitTicks", "DpcTimeCount",
        "DpcTime", "SingleDpcSoftTimeLimitTicks", "CumulativeDpcSoftTimeLimitTicks",
        "DpcWatchdogProfileCumulativeDpcThreshold", "DpcWatchdogProfileCumulativeDpcThresholdTicks",
        "DpcWatchdogProfileSingleDpcThreshold", "DpcWatchdogProfileSingleDpcThresholdTicks",
    ];

    /// <summary>PRCB pointers read with the watchdog block (2016+: the profile; 8.1+: the ISR/DPC statistics).</summary>
    private static readonly string[] ProfileFields = ["DpcWatchdogProfile", "DpcWatchdogProfileCurrentEmptyCapture", "IsrDpcStats", "DpcRuntimeHistoryHashTable"];
    /// <summary>Most runtime-history entries read (the bugcheck processor's table only).</summary>
    public int MaxHistoryEntries { get; init; } = 512;

    /// <summary>The kernel's watchdog-profile configuration globals, by the names the builds use (2016/19041: Ki*/Ke*; 11: *Ms, *BufferSizeBytes).</summary>
    private static readonly string[] ConfigGlobals =
    [
        "KiDpcWatchdogProfileArrayLength", "KeDpcWatchdogProfileBufferSizeBytes",
        "KeDpcWatchdogProfileOffset", "KeDpcWatchdogProfileOffsetMs",
        "KiDpcWatchdogProfileCumulativeDpcThreshold", "KeDpcWatchdogProfileCumulativeDpcThresholdMs",
        "KiDpcWatchdogProfileSingleDpcThreshold", "KeDpcWatchdogProfileSingleDpcThresholdMs",
        "KeDpcWatchdogPeriod", "KeDpcWatchdogPeriodMs",
    ];

    private readonly KernelReader _r;
    private readonly ITarget _t;
    private readonly Symbolizer _sym;
    private TargetMemory M => _r.Memory;

    public DpcBlameAnalyzer(KernelReader reader) { _r = reader; _t = reader.Target; _sym = new Symbolizer(reader.Target); }

    public DpcBlameReport Analyze(int? onlyCpu)
    {
        if (_t.Info.Kind != TargetKind.Kernel)
            throw new Cli.CommandFailedException("!dpcblame needs a kernel target (kernel dump or live kernel debugging)");
        var res = new DpcBlameReport { Build = _t.Info.BuildNumber, OnlyCpu = onlyCpu, BugCheckCpu = _t.Info.EventProcessor };
        if (_sym.Modules.Count == 0 && _sym.ModulesError is string me) res.Notes.Add($"module list not available ({me})");

        DecodeBugCheck(res);
        var prcbs = ReadProcessorBlock(res);
        if (onlyCpu is int c && (c < 0 || c >= prcbs.Count))
            throw new Cli.UsageException($"-cpu {c}: the target has {prcbs.Count} processor(s) (0-{prcbs.Count - 1})");

        var plan = new PrcbPlan(_r);
        for (int i = 0; i < prcbs.Count; i++)
        {
            if (onlyCpu is int oc && oc != i) continue;
            M.ThrowIfInterrupted();
            res.Processors.Add(ReadProcessor(i, prcbs[i], plan, res));
        }
        // The configuration globals (a name lookup each) only when there is a profile to interpret.
        if (plan.HasProfile && res.Processors.Any(p => p.Profile is { State: "ok" })) ReadWatchdogConfig(res);
        foreach (var p in res.Processors)
        {
            M.ThrowIfInterrupted();
            if (p.Profile is { State: "ok" } pr) ReadProfile(p, pr, res);
        }
        BuildHistogram(res);
        if (res.BugCheck?.IsDpcWatchdog == true)
            FindCulprit(res, prcbs, plan);
        BuildVerdict(res);
        BuildBlame(res);
        AddGuidance(res);
        return res;
    }

    // ---------- bug check ----------

    private void DecodeBugCheck(DpcBlameReport res)
    {
        var bc = _t.Info.BugCheck;
        if (bc is null)
        {
            res.Notes.Add(_t.Info.IsLive ? "live target: DPC-pressure view of all processors" : "no bug check in this target: DPC-pressure view of all processors");
            return;
        }
        var d = new DpcBugCheck { Code = bc.Code, P1 = bc.P1, P2 = bc.P2, P3 = bc.P3, P4 = bc.P4 };
        res.BugCheck = d;
        if (bc.Code != DpcWatchdogViolation)
        {
            d.Meaning = $"bug check 0x{bc.Code:X} is not DPC_WATCHDOG_VIOLATION (0x133)";
            res.Notes.Add(d.Meaning + ": showing the DPC-pressure view of all processors");
            return;
        }
        d.IsDpcWatchdog = true;
        if (bc.P1 == 0)
        {
            d.Kind = "single"; d.TicksTaken = bc.P2; d.TickLimit = bc.P3; d.TriageBlock = bc.P4;
            d.Meaning = $"a single DPC or ISR ran too long: 0x{bc.P2:x} ticks taken, limit 0x{bc.P3:x}; the driver is on the bugcheck stack";
            DecodeTriageBlock(d, res, "parameter 4");
        }
        else if (bc.P1 == 1)
        {
            d.Kind = "cumulative"; d.WatchdogPeriod = bc.P2; d.TriageBlock = bc.P3;
            d.Meaning = $"the processor spent too long cumulatively at DISPATCH_LEVEL or above (watchdog period 0x{bc.P2:x} ticks); many DPCs may share the blame";
            DecodeTriageBlock(d, res, "parameter 3");
        }
        else d.Meaning = $"DPC_WATCHDOG_VIOLATION with an unknown parameter 1 ({bc.P1:x})";
    }

    /// <summary>
    /// DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK from its documented layout (wdm.h; the type is in no public symbol file):
    /// +0x0 ULONG Signature (0xAEBECEDE), +0x4 USHORT Revision, +0x6 USHORT Size, +0x8 USHORT DpcWatchdogProfileOffset,
    /// +0xC ULONG DpcWatchdogProfileLength. Fields are used only when the signature checks.
    /// </summary>
    private void DecodeTriageBlock(DpcBugCheck d, DpcBlameReport res, string from)
    {
        if (d.TriageBlock == 0) return;
        var t = new DpcTriageBlock { Address = d.TriageBlock, From = from };
        d.Triage = t;
        if (_r.Types.TrySymbol("nt!KeDpcWatchdogProfileGlobalTriageBlock") is ulong g) t.IsKernelGlobal = g == d.TriageBlock;
        var b = M.ReadExact(d.TriageBlock, TriageSizeV1);
        if (b is null)
        {
            t.Notes.Add($"the triage block at {Output.Fmt.Addr(d.TriageBlock)} ({from}) is not readable: not in the dump");
            res.Notes.Add(t.Notes[^1]);
            return;
        }
        t.Readable = true;
        t.Signature = BinaryPrimitives.ReadUInt32LittleEndian(b);
        t.Revision = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(4));
        t.Size = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(6));
        t.DpcWatchdogProfileOffset = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8));
        t.DpcWatchdogProfileLength = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12));
        t.SignatureValid = t.Signature == TriageSignature;
        if (!t.SignatureValid)
        {
            t.Notes.Add($"triage block at {Output.Fmt.Addr(d.TriageBlock)} ({from}): signature 0x{t.Signature:x8} is not 0x{TriageSignature:x8}; the block is corrupt or is not a triage block, its fields are not used");
            res.Notes.Add(t.Notes[^1]);
            return;
        }
        if (t.Revision != 1) t.Notes.Add($"revision {t.Revision}: only revision 1 is documented; decoded with the revision 1 layout");
        if (t.Size < TriageSizeV1) t.Notes.Add($"Size 0x{t.Size:x} is smaller than the documented 0x{TriageSizeV1:x}");
        if (t.IsKernelGlobal == false) t.Notes.Add("the block is not nt!KeDpcWatchdogProfileGlobalTriageBlock");
        var f = _r.Types.TryGet("nt", "_KPRCB")?.TryGetField("DpcWatchdogProfile");
        if (f is not null) t.OffsetMatchesSymbols = f.Offset == t.DpcWatchdogProfileOffset;
        if (t.OffsetMatchesSymbols == false)
            t.Notes.Add($"DpcWatchdogProfileOffset 0x{t.DpcWatchdogProfileOffset:x} differs from the symbols' _KPRCB.DpcWatchdogProfile (+0x{f!.Offset:x}); the symbols' offset is used");
        foreach (var n in t.Notes) res.Notes.Add("triage block: " + n);
    }

    // ---------- processors ----------

    private IReadOnlyList<ulong> ReadProcessorBlock(DpcBlameReport res)
    {
        var block = Processors.Block(_r);
        res.ProcessorCount = block.Count;
        if (block.Note is string n) res.Notes.Add(n);
        return block.Prcbs;
    }

    /// <summary>Which PRCB fields to read (the DPC data of <see cref="DpcQueues"/> and the watchdog block), grouped into at most a couple of contiguous clusters.</summary>
    private sealed class PrcbPlan
    {
        public readonly DpcQueues Dpcs;
        public TypeLayout Prcb => Dpcs.Prcb;
        public readonly Dictionary<string, PackedField> Fields = new();
        public readonly List<(ulong Start, ulong End)> Clusters = new();
        public bool HasProfile => Fields.ContainsKey("DpcWatchdogProfile") && Fields.ContainsKey("DpcWatchdogProfileCurrentEmptyCapture");

        public PrcbPlan(KernelReader reader)
        {
            Dpcs = new DpcQueues(reader);
            var ranges = new List<(ulong, ulong)> { (Dpcs.DataOffset, Dpcs.DataEnd) };
            foreach (var name in WatchdogFields.Concat(ProfileFields).Concat(["DpcRoutineActive", "CurrentDpcRoutine", "DpcStack", "CurrentThread"]))
            {
                var f = PackedField.From(Prcb, name, required: false);
                if (!f.Present) continue;
                Fields[name] = f;
                if (name != "CurrentThread") ranges.Add(((ulong)f.Offset, (ulong)(f.Offset + f.Size)));
            }
            foreach (var (s, e) in ranges.OrderBy(x => x.Item1))
            {
                if (Clusters.Count > 0 && s <= Clusters[^1].End + ClusterGap)
                    Clusters[^1] = (Clusters[^1].Start, Math.Max(Clusters[^1].End, e));
                else Clusters.Add((s, e));
            }
        }
    }

    private ProcessorDpcState ReadProcessor(int cpu, ulong prcb, PrcbPlan plan, DpcBlameReport res)
    {
        var st = new ProcessorDpcState { Cpu = cpu, Prcb = prcb, IsBugCheckCpu = cpu == _t.Info.EventProcessor };
        if (prcb == 0) { st.Note = "KiProcessorBlock entry is NULL or unreadable"; return st; }
        // One read per cluster (normally two): the DPC data and the watchdog block.
        var size = plan.Prcb.Size;
        var img = new byte[size];
        var valid = new List<(ulong, ulong)>();
        foreach (var (s, e) in plan.Clusters)
        {
            int got = M.Read(prcb + s, img.AsSpan((int)s, (int)(e - s)));
            if (got > 0) valid.Add((s, s + (ulong)got));
            if (got < (int)(e - s)) st.Note = $"PRCB bytes at {Output.Fmt.Addr(prcb + s + (ulong)got)} are not readable; fields there are missing";
        }
        bool Ok(PackedField f) => f.Present && valid.Any(v => (ulong)f.Offset >= v.Item1 && (ulong)(f.Offset + f.Size) <= v.Item2);
        if (valid.Count == 0) { st.Note = $"PRCB at {Output.Fmt.Addr(prcb)} is not readable (paged out or not in the dump)"; return st; }

        foreach (var name in WatchdogFields)
            if (plan.Fields.TryGetValue(name, out var f) && Ok(f)) st.Watchdog[name] = unchecked((long)f.Get(img));
        if (plan.Fields.TryGetValue("DpcRoutineActive", out var ra) && Ok(ra)) st.DpcRoutineActive = ra.Get(img) != 0;
        if (plan.Fields.TryGetValue("CurrentDpcRoutine", out var cr) && Ok(cr))
        {
            st.CurrentDpcRoutine = cr.Get(img);
            if (st.CurrentDpcRoutine != 0) st.CurrentDpcSymbol = Name(st.CurrentDpcRoutine);
        }

        if (plan.Fields.TryGetValue("IsrDpcStats", out var isf) && Ok(isf) && isf.Get(img) is ulong isr && isr != 0) ReadIsrDpcStats(st, isr);
        // The runtime history of the processor that bug-checked (or the one asked for): a hash table walk costs a read per entry.
        if ((st.IsBugCheckCpu || res.OnlyCpu == cpu) && plan.Fields.TryGetValue("DpcRuntimeHistoryHashTable", out var hf) && Ok(hf) && hf.Get(img) is ulong ht && ht != 0)
            ReadRuntimeHistory(st, ht);
        if (plan.HasProfile && Ok(plan.Fields["DpcWatchdogProfile"]) && Ok(plan.Fields["DpcWatchdogProfileCurrentEmptyCapture"]))
        {
            ulong pb = plan.Fields["DpcWatchdogProfile"].Get(img), pc = plan.Fields["DpcWatchdogProfileCurrentEmptyCapture"].Get(img);
            st.Profile = new DpcWatchdogProfile { Cpu = cpu, Buffer = pb, CurrentEmptyCapture = pc };
            if (pb == 0) { st.Profile.State = "empty"; st.Profile.Note = "no profile buffer (DpcWatchdogProfile is NULL: profiling was never armed on this processor)"; }
            else if (pc == pb) { st.Profile.State = "empty"; st.Profile.Note = "the profile holds no capture (DpcWatchdogProfileCurrentEmptyCapture = DpcWatchdogProfile)"; }
            else st.Profile.FilledBytes = pc > pb ? (long)Math.Min(pc - pb, (ulong)long.MaxValue) : -(long)Math.Min(pb - pc, (ulong)long.MaxValue);
        }

        for (int q = 0; q < plan.Dpcs.QueueCount; q++)
        {
            var (qs, qe) = plan.Dpcs.QueueRange(q);
            if (!valid.Any(v => qs >= v.Item1 && qe <= v.Item2)) { st.Note ??= "DPC data of this PRCB is not readable"; continue; }
            var head = plan.Dpcs.Queue(img, prcb, q);
            if (q == 0)
            {
                st.QueueDepth = head.Depth;
                st.DpcCount = head.DpcCount;
                if (head.ActiveDpc is ulong active) ReadActiveDpc(st, plan.Dpcs, active);
            }
            else st.ThreadedQueueDepth = head.Depth;
            if (head.IsEmpty) continue; // empty (or never initialized) queue
            WalkQueue(st, plan.Dpcs, head, q == 0 ? "Normal" : "Threaded");
        }
        return st;
    }

    private void WalkQueue(ProcessorDpcState st, DpcQueues dpcs, DpcQueueHead head, string queue)
    {
        var walk = new ListWalkResult();
        int depth = head.Depth;
        int max = Math.Min(MaxDpcsPerQueue, Math.Max(depth, 0) + 64);
        foreach (var k in dpcs.Walk(head, walk, max))
        {
            var q = new QueuedDpc { Kdpc = k.Kdpc, Queue = queue };
            if (k.DeferredRoutine is not ulong routine) { q.Unreadable = true; st.Queued.Add(q); continue; }
            q.Routine = routine;
            q.Symbol = Name(routine);
            var m = ModuleOf(routine);
            q.Module = m is null ? "?" : KernelModules.ShortName(m.Name);
            q.ModuleBase = m?.Base ?? 0;
            q.Importance = k.Importance;
            st.Queued.Add(q);
        }
        if (!walk.IsComplete && walk.StopReason != ListStop.NotStarted)
            st.Note = (st.Note is null ? "" : st.Note + "; ") + walk.Describe($"CPU {st.Cpu} {queue} DPC queue");
        if (walk.IsComplete && walk.Count != depth)
            st.Note = (st.Note is null ? "" : st.Note + "; ") + $"{queue} queue: DpcQueueDepth says {depth}, the list has {walk.Count} entries";
    }

    private void ReadActiveDpc(ProcessorDpcState st, DpcQueues dpcs, ulong kdpc)
    {
        st.ActiveDpc = kdpc;
        if (kdpc == 0) return;
        if (dpcs.Read(kdpc).DeferredRoutine is not ulong routine) { st.Note = (st.Note is null ? "" : st.Note + "; ") + $"ActiveDpc {Output.Fmt.Addr(kdpc)} is not readable"; return; }
        st.ActiveDpcRoutine = routine;
        if (routine != 0) st.ActiveDpcSymbol = Name(routine);
    }

    private void ReadIsrDpcStats(ProcessorDpcState st, ulong addr)
    {
        var info = new IsrDpcStatsInfo { Address = addr };
        st.IsrDpcStats = info;
        var layout = _r.Types.TryGet("nt", "_ISRDPCSTATS");
        if (layout is null) return;
        var v = _r.TryRead("nt", "_ISRDPCSTATS", addr);
        if (v is null) return;
        foreach (var f in layout.Fields)
            if (f.Type.Kind == TypeKind.Base && v.TryUInt(f.Name) is ulong x) info.Fields[f.Name] = x;
    }

    private void ReadRuntimeHistory(ProcessorDpcState st, ulong table)
    {
        var h = new DpcRuntimeHistory { Table = table };
        st.RuntimeHistory = h;
        var v = _r.TryRead("nt", "_RTL_HASH_TABLE", table);
        var entry = _r.Types.TryGet("nt", "_RTL_HASH_ENTRY");
        if (v is null || entry is null) { h.Note = v is null ? $"the hash table at {Output.Fmt.Addr(table)} is not readable" : "no _RTL_HASH_ENTRY type in the symbols"; return; }
        h.EntryCount = (uint)(v.TryUInt("EntryCount") ?? 0);
        h.BucketCount = (uint)(v.TryUInt("BucketCount") ?? 0);
        ulong buckets = v.TryUInt("Buckets") ?? 0;
        if (h.BucketCount == 0 || buckets == 0 || h.BucketCount > 0x10000) { h.Note = $"BucketCount {h.BucketCount}, Buckets {Output.Fmt.Addr(buckets)}: not walked"; return; }
        ulong linkOff = entry.GetField("BucketLink").Offset, keyOff = entry.GetField("Key").Offset;
        int ps = _r.PointerSize;
        var (data, holes) = M.ReadBulk(buckets, (int)h.BucketCount * ps);
        if (holes.Count > 0) h.Note = $"bucket array at {Output.Fmt.Addr(buckets)}: {holes.Sum(x => x.Length)} bytes not in the dump";
        var seen = new HashSet<ulong>();
        for (int b = 0; b < h.BucketCount && h.EntriesRead < MaxHistoryEntries; b++)
        {
            if (holes.Any(x => b * ps >= x.Offset && b * ps < x.Offset + x.Length)) continue;
            ulong link = ReadPtr(data, b * ps);
            while (link != 0 && h.EntriesRead < MaxHistoryEntries)
            {
                if (!seen.Add(link)) { h.Note = (h.Note is null ? "" : h.Note + "; ") + $"bucket {b}: cycle at {Output.Fmt.Addr(link)}"; break; }
                M.ThrowIfInterrupted();
                ulong rec = link - linkOff;
                var eb = M.ReadExact(rec, (int)Math.Max(entry.Size, keyOff + 8)); // one read per entry: link and key
                if (eb is null) { h.Note = (h.Note is null ? "" : h.Note + "; ") + $"entry {Output.Fmt.Addr(rec)} is not readable"; break; }
                ulong key = BinaryPrimitives.ReadUInt64LittleEndian(eb.AsSpan((int)keyOff)), next = ReadPtr(eb, (int)linkOff);
                h.EntriesRead++;
                if (key != 0 && ModuleOf(key) is not null)
                {
                    var (_, routine) = RoutineOf(key);
                    h.Routines[routine] = h.Routines.GetValueOrDefault(routine) + 1;
                }
                else h.OtherKeys++;
                link = next;
            }
        }
        if (h.EntriesRead >= MaxHistoryEntries) h.Note = (h.Note is null ? "" : h.Note + "; ") + $"stopped after {MaxHistoryEntries} entries";
    }

    // ---------- DPC watchdog profile ----------

    private void ReadWatchdogConfig(DpcBlameReport res)
    {
        var cfg = new DpcWatchdogConfig();
        foreach (var g in ConfigGlobals)
            if (_r.Types.TrySymbol("nt!" + g) is ulong a && M.TryReadU32(a, out var v)) cfg.Globals[g] = v;
        cfg.CaptureRoutine = _r.Types.TrySymbol("nt!KiDpcWatchdogCaptureStack") ?? 0;
        res.WatchdogConfig = cfg;
    }

    /// <summary>Profile capacity in bytes and where it comes from (null when nothing says).</summary>
    private static (long? Bytes, string? Source) ProfileCapacity(DpcBlameReport res, int ps)
    {
        var g = res.WatchdogConfig?.Globals;
        if (g is not null && g.TryGetValue("KeDpcWatchdogProfileBufferSizeBytes", out var bytes) && bytes > 0) return ((long)bytes, "nt!KeDpcWatchdogProfileBufferSizeBytes");
        if (g is not null && g.TryGetValue("KiDpcWatchdogProfileArrayLength", out var len) && len > 0) return ((long)len * ps, "nt!KiDpcWatchdogProfileArrayLength x pointer size (unit inferred from the void** type)");
        return (null, null);
    }

    /// <summary>
    /// Reads [DpcWatchdogProfile, DpcWatchdogProfileCurrentEmptyCapture) and splits it into captured stacks. The record
    /// layout is not documented: a capture is taken to be a run of consecutive pointer-sized words that are code
    /// addresses inside loaded modules, innermost frame first (as RtlCaptureStackBackTrace stores them); words that are
    /// not code addresses (headers, times, counts) separate captures. The output says so.
    /// </summary>
    private void ReadProfile(ProcessorDpcState st, DpcWatchdogProfile p, DpcBlameReport res)
    {
        int ps = _r.PointerSize;
        var (cap, src) = ProfileCapacity(res, ps);
        p.CapacityBytes = cap; p.CapacitySource = src;
        if (p.FilledBytes < 0 || (cap is long c && p.FilledBytes > c) || p.FilledBytes > MaxProfileBytes || p.FilledBytes % ps != 0)
        {
            p.State = "corrupt";
            p.Note = $"DpcWatchdogProfileCurrentEmptyCapture {Output.Fmt.Addr(p.CurrentEmptyCapture)} is not inside the profile buffer at {Output.Fmt.Addr(p.Buffer)}"
                     + (cap is long c2 ? $" (capacity 0x{c2:x} bytes, {src})" : "") + ": the profile is corrupt and was not decoded";
            return;
        }
        var (data, holes) = M.ReadBulk(p.Buffer, (int)p.FilledBytes);
        long missing = holes.Sum(h => (long)h.Length);
        if (missing >= p.FilledBytes)
        {
            p.State = "missing";
            p.Note = $"the profile buffer at {Output.Fmt.Addr(p.Buffer)} (0x{p.FilledBytes:x} bytes captured) is not in the dump: a kernel, automatic or complete memory dump keeps it (nonpaged pool); a small memory dump (minidump) does not";
            return;
        }
        if (missing > 0) p.Note = $"0x{missing:x} of 0x{p.FilledBytes:x} profile bytes are not in the dump; captures there are lost";
        var holeSet = holes;
        bool InHole(int off) => holeSet.Any(h => off >= h.Offset && off < h.Offset + h.Length);
        var frames = new List<ulong>();
        void Flush()
        {
            if (frames.Count == 0) return;
            p.Captures++;
            AddSample(st.Cpu, frames, p, res);
            frames.Clear();
        }
        for (int off = 0; off + ps <= data.Length; off += ps)
        {
            if ((off & 0x7fff) == 0) M.ThrowIfInterrupted();
            ulong v = ReadPtr(data, off);
            if (v != 0 && !InHole(off) && ModuleOf(v) is not null) frames.Add(v);
            else Flush();
        }
        Flush();
        if (p.Captures == 0) { p.State = "corrupt"; p.Note = (p.Note is null ? "" : p.Note + "; ") + "the profile holds no code addresses: no captured stack could be recognised"; }
    }

    private readonly Dictionary<string, ProfileHistogramRow> _hist = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<ulong, (string Module, string Routine)> _routineOf = new();

    private void AddSample(int cpu, List<ulong> frames, DpcWatchdogProfile p, DpcBlameReport res)
    {
        ulong pick = 0;
        foreach (var f in frames)
        {
            var m = ModuleOf(f);
            if (m is not null && !KernelModules.IsKernel(KernelModules.ShortName(m.Name))) { pick = f; break; }
        }
        string module, routine;
        if (pick == 0) { p.KernelOnlyCaptures++; module = "nt"; routine = "(nt/hal frames only)"; }
        else (module, routine) = RoutineOf(pick);
        if (!_hist.TryGetValue(routine, out var row))
            _hist[routine] = row = new ProfileHistogramRow { Module = module, Routine = routine, Address = pick };
        row.Samples++;
        if (!row.Cpus.Contains(cpu)) row.Cpus.Add(cpu);
        res.ProfileSamples++;
    }

    private (string Module, string Routine) RoutineOf(ulong addr)
    {
        if (_routineOf.TryGetValue(addr, out var r)) return r;
        var m = ModuleOf(addr);
        string module = m is null ? "?" : KernelModules.ShortName(m.Name);
        string? n = Name(addr);
        string routine = n is null ? $"{module}+0x{addr - (m?.Base ?? 0):x}" : n.Contains('!') ? StripDisp(n) : n;
        return _routineOf[addr] = (module, routine);
    }

    private void BuildHistogram(DpcBlameReport res)
    {
        foreach (var row in _hist.Values) row.Share = res.ProfileSamples == 0 ? 0 : Math.Round((double)row.Samples / res.ProfileSamples, 4);
        res.ProfileHistogram.AddRange(_hist.Values.OrderByDescending(r => r.Samples).ThenBy(r => r.Routine, StringComparer.OrdinalIgnoreCase));
    }

    // ---------- verdict ----------

    private void BuildVerdict(DpcBlameReport res)
    {
        var v = new DpcVerdict();
        int cpu = res.BugCheckCpu;
        var st = res.Processors.FirstOrDefault(p => p.Cpu == cpu) ?? (res.Processors.Count == 1 ? res.Processors[0] : null);
        var running = new List<(string Text, string Module)>();
        if (st is not null && st.CurrentDpcRoutine != 0 && st.DpcRoutineActive != false)
            running.Add(($"{st.CurrentDpcSymbol ?? Output.Fmt.Addr(st.CurrentDpcRoutine)} (CurrentDpcRoutine)", RoutineOf(st.CurrentDpcRoutine).Module));
        else if (st is not null && st.ActiveDpcRoutine != 0)
            running.Add(($"{st.ActiveDpcSymbol ?? Output.Fmt.Addr(st.ActiveDpcRoutine)} (ActiveDpc)", RoutineOf(st.ActiveDpcRoutine).Module));
        if (res.Culprit?.Module is string sm)
            running.Add(($"{res.Culprit.Symbol ?? sm} (on the bugcheck stack)", sm));
        if (running.Count > 0) { v.RunningDpc = string.Join(", ", running.Select(r => r.Text)); v.RunningModule = running[0].Module; }
        v.TotalSamples = res.ProfileSamples;
        var top = res.ProfileHistogram.FirstOrDefault();
        if (top is not null && res.ProfileSamples > 0)
        {
            v.Module = top.Module; v.Routine = top.Routine; v.Samples = top.Samples; v.Share = top.Share;
            bool majority = top.Share >= 0.5;
            v.Basis = majority ? "profile" : "inconclusive";
            string cpus = string.Join(",", top.Cpus);
            if (majority)
                v.Lines.Add($"Culprit (DPC watchdog profile): {top.Routine} in {top.Module}: {top.Samples} of {res.ProfileSamples} captured stacks ({top.Share * 100:0.#}%) on CPU {cpus}");
            else
                v.Lines.Add($"No routine holds most of the DPC watchdog profile: the top one, {top.Routine}, has {top.Samples} of {res.ProfileSamples} captured stacks ({top.Share * 100:0.#}%); the evidence does not agree on one culprit");
            if (running.Count > 0)
            {
                bool same = running.Any(r => r.Module.Equals(top.Module, StringComparison.OrdinalIgnoreCase));
                int theirs = res.ProfileHistogram.Where(r => running.Any(x => x.Module.Equals(r.Module, StringComparison.OrdinalIgnoreCase))).Sum(r => r.Samples);
                v.RunningIsCulprit = majority ? same : null;
                v.EvidenceAgrees = majority && same;
                if (majority && !same)
                    v.Lines.Add($"The DPC running at the bug check, {v.RunningDpc}, is not the culprit: "
                                + $"{string.Join(" and ", running.Select(r => r.Module).Distinct(StringComparer.OrdinalIgnoreCase))} hold {theirs} of {res.ProfileSamples} captured stacks ({(double)theirs / res.ProfileSamples * 100:0.#}%)");
                else if (majority)
                    v.Lines.Add($"The DPC running at the bug check, {v.RunningDpc}, is in the same driver: the evidence agrees");
            }
            else v.EvidenceAgrees = majority;
            v.Lines.Add("Profile format: a captured stack is read as a run of code addresses, innermost frame first; this layout is inferred, not documented (docs/dpcblame.md)");
        }
        else if (res.BugCheck?.Kind == "single" && res.Culprit?.Module is string cm)
        {
            v.Basis = "stack"; v.Module = cm; v.Routine = res.Culprit.Symbol is string cs ? StripDisp(cs) : cm;
            v.RunningIsCulprit = true; v.EvidenceAgrees = true;
        }
        else if (res.BugCheck?.Kind == "cumulative")
        {
            v.Basis = "inconclusive";
            string why = res.Processors.Select(p => p.Profile).FirstOrDefault(p => p is not null && p.State != "ok" && p.Cpu == cpu)?.Note
                         ?? (res.Processors.Any(p => p.Profile is not null) ? "no processor's watchdog profile holds a usable capture" : "this build keeps no DPC watchdog profile (_KPRCB.DpcWatchdogProfile: Windows 10 1607 / Server 2016 and later)");
            v.Lines.Add("No culprit from the DPC watchdog profile: " + why);
        }
        res.Verdict = v;
    }

    // ---------- culprit ----------

    private void FindCulprit(DpcBlameReport res, IReadOnlyList<ulong> prcbs, PrcbPlan plan)
    {
        var c = new DpcCulprit();
        IReadOnlyList<StackFrameInfo> frames = [];
        try { frames = _t.GetCurrentStack(64); } catch (Exception ex) { res.Notes.Add($"the engine could not unwind the stack ({ex.Message})"); }
        if (frames.Count > 0)
        {
            c.Method = "stack";
            c.MethodNote = "culprit from the bugcheck thread's stack as the engine unwound it";
            foreach (var f in frames) c.Frames.Add(Frame(f.InstructionOffset, 0));
        }
        // The engine's unwind may stop in nt (e.g. at KeBugCheckEx when a module has no unwind data): then the DPC
        // stack is scanned as well, and its frames are used when they reach a driver.
        bool driverFrame = c.Frames.Any(f => f.Module is not null && !KernelModules.IsKernel(f.Module));
        if (frames.Count == 0 || !driverFrame)
        {
            var unwound = c.Frames.ToList();
            int cpu = res.BugCheckCpu >= 0 && res.BugCheckCpu < prcbs.Count ? res.BugCheckCpu : 0;
            var st = res.Processors.FirstOrDefault(p => p.Cpu == cpu);
            ulong dpcStack = 0;
            if (prcbs.Count > cpu && prcbs[cpu] != 0 && plan.Fields.TryGetValue("DpcStack", out var ds))
                M.TryReadPointer(prcbs[cpu] + (ulong)ds.Offset, out dpcStack);
            if (dpcStack == 0)
            {
                if (frames.Count == 0) { res.Notes.Add("no stack: the engine could not unwind and the PRCB has no readable DpcStack"); return; }
            }
            else
            {
                c.Frames.Clear();
                ScanStack(c, dpcStack - 0x6000, 0x6000);
                if (c.Frames.Any(f => f.Module is not null && !KernelModules.IsKernel(f.Module)) || frames.Count == 0)
                {
                    c.Method = "stack-scan";
                    c.MethodNote = (frames.Count == 0 ? "no unwind data" : $"the engine's unwind stopped in the kernel after {frames.Count} frame(s)")
                        + $": scanned CPU {cpu}'s DPC stack ({Output.Fmt.Addr(dpcStack - 0x6000)}-{Output.Fmt.Addr(dpcStack)}) for return addresses inside modules that follow a call instruction";
                }
                else { c.Frames.Clear(); c.Frames.AddRange(unwound); }
            }
        }
        res.Culprit = c;
        // The innermost frame outside the kernel and HAL is the culprit; frames above it show the dispatch path.
        int idx = c.Frames.FindIndex(f => f.Module is not null && !KernelModules.IsKernel(f.Module));
        if (idx < 0) { res.Notes.Add("no driver frame on the stack (only nt/hal)"); return; }
        var cf = c.Frames[idx];
        c.Module = cf.Module; c.Symbol = cf.Symbol; c.Address = cf.Address;
        c.InStallRoutine = c.Frames.Take(idx).Any(f => f.Symbol is not null && f.Symbol.Contains("StallExecutionProcessor", StringComparison.OrdinalIgnoreCase));
        foreach (var f in c.Frames.Skip(idx + 1))
        {
            if (f.Symbol is null) continue;
            string fn = StripDisp(f.Symbol);
            c.DispatchChain.Add(fn);
            if (fn.EndsWith("!KiRetireDpcList", StringComparison.OrdinalIgnoreCase) || fn.EndsWith("!KiIdleLoop", StringComparison.OrdinalIgnoreCase)) break;
        }
        c.StallLoop = FindStallLoop(cf.Address);
    }

    private static string StripDisp(string s) { int p = s.LastIndexOf('+'); return p > 0 ? s[..p] : s; }

    private DpcFrame Frame(ulong addr, ulong stackAddr)
    {
        var m = ModuleOf(addr);
        return new DpcFrame { Address = addr, Symbol = Name(addr), Module = m is null ? null : KernelModules.ShortName(m.Name), StackAddress = stackAddr };
    }

    private ulong ReadPtr(byte[] b, int off) => _r.PointerAt(b, off);

    /// <summary>The return addresses on a stack range (values inside modules that follow a call instruction), innermost first.</summary>
    private void ScanStack(DpcCulprit c, ulong start, int length)
    {
        foreach (var slot in ReturnAddressStackScan.Scan(_r, _sym, start, length))
            if (KernelStackScan.FollowsCall(M, slot.Value)) c.Frames.Add(Frame(slot.Value, slot.SlotAddress));
    }

    /// <summary>
    /// Whether the driver spins around the call that returns to <paramref name="ret"/>: a call to
    /// *StallExecutionProcessor (or a polled counter) inside a loop (<see cref="StallLoops"/>, decoded with Iced).
    /// </summary>
    public StallLoopHint? FindStallLoop(ulong ret) => new StallLoops(M, Name, _r.Types.TrySymbol).Find(ret);

    // ---------- blame ----------

    private void BuildBlame(DpcBlameReport res)
    {
        var rows = new Dictionary<string, BlameRow>(StringComparer.OrdinalIgnoreCase);
        BlameRow Row(string module, ulong @base)
        {
            if (!rows.TryGetValue(module, out var r))
                rows[module] = r = new BlameRow { Module = module, Base = @base, HasSymbols = SafeHasSymbols(module) };
            return r;
        }
        foreach (var p in res.Processors)
        {
            foreach (var q in p.Queued.Where(q => !q.Unreadable))
            {
                var row = Row(q.Module, q.ModuleBase);
                row.Queued++; res.TotalQueued++;
                if (q.Symbol is not null && q.Symbol.Contains('!')) row.HasSymbols = true;
            }
            ulong runningRoutine = p.CurrentDpcRoutine != 0 ? p.CurrentDpcRoutine : p.ActiveDpcRoutine;
            if (runningRoutine != 0 && p.DpcRoutineActive != false)
            {
                var m = ModuleOf(runningRoutine);
                var row = Row(m is null ? "?" : KernelModules.ShortName(m.Name), m?.Base ?? 0);
                row.Running++;
                if ((p.CurrentDpcSymbol ?? p.ActiveDpcSymbol)?.Contains('!') == true) row.HasSymbols = true;
            }
        }
        if (res.Culprit?.Module is string cm)
        {
            var m = KernelModules.Find(_sym.Modules, cm);
            var row = Row(cm, m?.Base ?? 0);
            row.Culprit = true;
            if (res.Culprit.Symbol?.Contains('!') == true) row.HasSymbols = true;
            if (row.Running == 0) row.Running = 1;
        }
        foreach (var h in res.ProfileHistogram)
        {
            var m = KernelModules.Find(_sym.Modules, h.Module);
            var row = Row(h.Module, m?.Base ?? 0);
            row.ProfileSamples += h.Samples;
            if (h.Routine.Contains('!')) row.HasSymbols = true;
        }
        var historyModules = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var p in res.Processors)
            if (p.RuntimeHistory is { } rh)
                foreach (var k in rh.Routines.Keys) { int bang = k.IndexOf('!'); int plus = k.IndexOf('+'); historyModules.Add(bang > 0 ? k[..bang] : plus > 0 ? k[..plus] : k); }
        foreach (var r in rows.Values)
        {
            r.Share = res.TotalQueued == 0 ? 0 : Math.Round((double)r.Queued / res.TotalQueued, 4);
            r.ProfileShare = res.ProfileSamples == 0 ? 0 : Math.Round((double)r.ProfileSamples / res.ProfileSamples, 4);
            if (r.ProfileSamples > 0) r.Evidence.Add("profile");
            if (r.Culprit) r.Evidence.Add("stack");
            if (r.Running > 0) r.Evidence.Add("running");
            if (r.Queued > 0) r.Evidence.Add("queued");
            if (historyModules.Contains(r.Module)) r.Evidence.Add("history");
        }
        res.Blame.AddRange(rows.Values.OrderByDescending(r => r.ProfileSamples).ThenByDescending(r => r.Culprit).ThenByDescending(r => r.Running).ThenByDescending(r => r.Queued).ThenBy(r => r.Module, StringComparer.OrdinalIgnoreCase));
    }

    private bool SafeHasSymbols(string module)
    {
        try { return _t.Symbols.HasSymbols(module); } catch { return false; }
    }

    private void AddGuidance(DpcBlameReport res)
    {
        var bc = res.BugCheck;
        if (res.Verdict is { Basis: "profile", Module: string vm })
        {
            res.Guidance.Add($"The kernel's DPC watchdog profile names {res.Verdict.Routine}: contact the vendor of {vm} for a version whose DPC work stays short (DPCs should not run longer than 100 us).");
            if (bc?.Kind == "cumulative") res.Guidance.Add("Parameter 1 = 1: the bugcheck stack shows only what ran last; the profile's captured stacks cover the whole time at DISPATCH_LEVEL.");
        }
        else if (bc?.Kind == "cumulative")
        {
            res.Guidance.Add("Parameter 1 = 1: the time was spent cumulatively by DPCs of several drivers; the bugcheck stack alone does not show the culprit.");
            res.Guidance.Add("If the NT Kernel Logger or the Circular Kernel Context Logger was running, save its buffers from this dump:");
            res.Guidance.Add("!wmitrace.strdump");
            res.Guidance.Add("!wmitrace.logsave <LoggerId of 'Circular Kernel Context Logger' or 'NT Kernel Logger'> c:\\temp\\dpc133.etl");
            res.Guidance.Add("Open the .etl in Windows Performance Analyzer: Computation > DPC/ISR Duration by Module, Function; sort by inclusive duration.");
            res.Guidance.Add("Otherwise enable the Circular Kernel Context Logger (DPC/ISR events) and wait for the next occurrence; the queues below show who had work pending.");
        }
        else if (res.Culprit?.Module is string m && bc?.Kind == "single")
        {
            res.Guidance.Add($"Contact the vendor of {m} for a version that spends less time in its DPC routine (DPCs should not run longer than 100 us).");
        }
    }

    // ---------- symbols ----------

    private string? Name(ulong addr) => _sym.DescribeAny(addr);

    private ModuleInfo? ModuleOf(ulong addr) => _sym.ModuleOf(addr);
}
