using System.Buffers.Binary;
using System.Text;
using NtSleuth.Lab.Dumps;

namespace NtSleuth.Lab.Fuzz;

/// <summary>How a mutant's kernel data is damaged (issue 20, item 3).</summary>
public enum MutationStrategy
{
    /// <summary>Random bytes of data pages flipped (1-64 bytes, each XORed with a random non-zero value).</summary>
    Flip,
    /// <summary>Kernel-looking pointers replaced by a wild address, NULL, their own address, or a pointer seen earlier (cycles).</summary>
    Pointer,
    /// <summary>Whole data pages zeroed, or their leaf PTE made not-present (paged out).</summary>
    Zero,
    /// <summary>UNICODE_STRING-looking headers given huge / inconsistent Length and MaximumLength.</summary>
    UnicodeLength,
    /// <summary>Target strings (UTF-16 and ASCII names, pool tags) overwritten in place by DML markup and command separators.</summary>
    Markup,
}

/// <summary>One change a mutant carries (physical address, virtual address when known, what).</summary>
public sealed record Mutation(ulong PhysicalAddress, ulong? VirtualAddress, string What);

/// <summary>A mutated dump: its bytes, the changes, and the strings written into it (checked for injection in the output).</summary>
public sealed record Mutant(string Sample, MutationStrategy Strategy, int Seed, byte[] Dump, IReadOnlyList<Mutation> Changes, IReadOnlyList<string> Payloads)
{
    public string Id => $"{Sample}.{Strategy.ToString().ToLowerInvariant()}.{Seed}";
    public string Describe() => $"{Id}: " + string.Join("; ", Changes.Select(c => c.VirtualAddress is ulong va ? $"{va:x} ({c.PhysicalAddress:x}) {c.What}" : $"pa {c.PhysicalAddress:x} {c.What}"));
}

/// <summary>
/// Corrupts the kernel data of a lab kernel dump (DumpType 1 complete or 5/6 bitmap), reproducibly from (sample,
/// strategy, seed). Never touched: the dump header and bitmap, the page-table pages reachable from the header's
/// DirectoryTableBase (the dump must still open: the goal is corrupt kernel data, not an unreadable file), the page
/// holding KDDEBUGGER_DATA64, and physical pages mapped at several virtual addresses (the shared zero page).
/// The <see cref="MutationStrategy.Zero"/> strategy may clear the Present bit of a data page's leaf PTE (the entry,
/// not the table's structure), which is how a paged-out page looks in a dump.
/// </summary>
public sealed class DumpMutator
{
    /// <summary>Markup written over target strings: live DML if not escaped, or a second command if put in a link unquoted.</summary>
    public static readonly string[] MarkupPayloads =
    [
        "<exec cmd=\"!process 0 0\">x</exec>",
        "<link cmd=\".shell calc\">",
        "\"&<>",
        "x\";.shell calc;\"",
        "a;.shell calc",
        "<b>x</b>&amp;",
    ];
    /// <summary>For 4-byte fields (pool tags): each one alone breaks a link's command or markup.</summary>
    public static readonly string[] ShortPayloads = [";q;x", "\"<&>", "<b>;", "a b;", "x\">y"];

    private readonly byte[] _file;
    private readonly KernelDumpReader _reader;
    /// <summary>Mutable data PFNs (sorted) -> the one VA that maps each.</summary>
    private readonly SortedDictionary<ulong, ulong> _dataPages = new();
    /// <summary>Leaf PTE physical address of each data VA page.</summary>
    private readonly Dictionary<ulong, ulong> _ptePa = new();
    private readonly HashSet<ulong> _tablePfns = new();

    public string Sample { get; }
    public int DataPageCount => _dataPages.Count;
    public int TablePageCount => _tablePfns.Count;

    public DumpMutator(string sample, byte[] dump)
    {
        Sample = sample;
        _file = dump;
        _reader = new KernelDumpReader(dump);
        var mapCount = new Dictionary<ulong, int>();
        var pfnVa = new Dictionary<ulong, ulong>();
        ulong root = _reader.DirectoryTableBase >> 12;
        _tablePfns.Add(root);
        Walk(root, 4, 0, mapCount, pfnVa);
        ulong kdbgPfn = _reader.Translate(_reader.KdDebuggerDataBlock) is ulong kpa ? kpa >> 12 : ulong.MaxValue;
        foreach (var (pfn, va) in pfnVa)
        {
            if (mapCount[pfn] > 1 || _tablePfns.Contains(pfn) || pfn == kdbgPfn || !_reader.TryGetPageOffset(pfn, out _)) continue;
            _dataPages[pfn] = va;
        }
    }

    private void Walk(ulong tablePfn, int level, ulong vaBase, Dictionary<ulong, int> mapCount, Dictionary<ulong, ulong> pfnVa)
    {
        Span<byte> e = stackalloc byte[8];
        for (ulong i = 0; i < 512; i++)
        {
            ulong entryPa = (tablePfn << 12) + i * 8;
            if (!_reader.ReadPhysical(entryPa, e)) return;
            ulong v = BinaryPrimitives.ReadUInt64LittleEndian(e);
            if ((v & KernelDumpWriter.PtePresent) == 0) continue;
            ulong child = (v & KernelDumpWriter.PtePfnMask) >> 12;
            int shift = 12 + 9 * (level - 1);
            ulong va = KernelDumpWriter.Canonical(vaBase | (i << shift));
            if (level == 1)
            {
                mapCount[child] = mapCount.GetValueOrDefault(child) + 1;
                pfnVa.TryAdd(child, va);
                _ptePa[va] = entryPa;
                continue;
            }
            if ((v & KernelDumpWriter.PteLargePage) != 0) continue;   // the lab writes none; never walk into one
            if (child == tablePfn || _tablePfns.Contains(child)) continue; // self-map (and any table already seen)
            _tablePfns.Add(child);
            Walk(child, level - 1, va, mapCount, pfnVa);
        }
    }

    /// <summary>The mutant for (strategy, seed); the same inputs always give the same bytes.</summary>
    public Mutant Mutate(MutationStrategy strategy, int seed)
    {
        var rng = new Random(HashCode(Sample, strategy, seed));
        var buf = (byte[])_file.Clone();
        var changes = new List<Mutation>();
        var payloads = new List<string>();
        var w = new Writer(this, buf, changes);
        switch (strategy)
        {
            case MutationStrategy.Flip: Flip(rng, w); break;
            case MutationStrategy.Pointer: Pointers(rng, w); break;
            case MutationStrategy.Zero: Zero(rng, w); break;
            case MutationStrategy.UnicodeLength: UnicodeLengths(rng, w); break;
            case MutationStrategy.Markup: Markup(rng, w, payloads); break;
        }
        if (changes.Count == 0) Flip(rng, w); // nothing of that shape in the sample: still a mutant
        return new Mutant(Sample, strategy, seed, buf, changes, payloads);
    }

    /// <summary>VA of the loaded-module list head (DUMP_HEADER64.PsLoadedModuleList).</summary>
    public ulong PsLoadedModuleList => _reader.PsLoadedModuleList;

    /// <summary>A hand-made mutant: <paramref name="bytes"/> written at kernel VA <paramref name="va"/> (one page at most), for regression tests of one defect.</summary>
    public Mutant Patch(ulong va, byte[] bytes, string what, int seed = 0)
    {
        var buf = (byte[])_file.Clone();
        var changes = new List<Mutation>();
        var w = new Writer(this, buf, changes);
        ulong pa = _reader.Translate(va) ?? throw new ArgumentException($"{va:x} is not mapped in {Sample}");
        w.Write(pa, bytes, what);
        return new Mutant(Sample, MutationStrategy.Pointer, seed, buf, changes, []);
    }

    /// <summary>Stable across processes and runtimes (string.GetHashCode is randomised per process).</summary>
    private static int HashCode(string sample, MutationStrategy s, int seed)
    {
        uint h = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes($"{sample}|{s}|{seed}")) { h ^= b; h *= 16777619; }
        return (int)(h & 0x7fffffff);
    }

    private sealed class Writer(DumpMutator m, byte[] buf, List<Mutation> changes)
    {
        public byte[] Buf => buf;
        public long Offset(ulong pa) => m._reader.TryGetPageOffset(pa >> 12, out long o) ? o + (long)(pa & 0xfff) : -1;
        public void Write(ulong pa, ReadOnlySpan<byte> bytes, string what)
        {
            long off = Offset(pa);
            if (off < 0) return;
            bytes.CopyTo(buf.AsSpan((int)off));
            ulong pfn = pa >> 12;
            changes.Add(new Mutation(pa, m._dataPages.TryGetValue(pfn, out var va) ? va + (pa & 0xfff) : null, what));
        }
        public Span<byte> Page(ulong pfn) => buf.AsSpan((int)Offset(pfn << 12), KernelDumpWriter.PageSize);
        public void Note(ulong pa, ulong? va, string what) => changes.Add(new Mutation(pa, va, what));
    }

    /// <summary>Data pages with content (mutating an all-zero page is rarely interesting).</summary>
    private List<ulong> ContentPages(Writer w) =>
        _dataPages.Keys.Where(p => w.Page(p).IndexOfAnyExcept((byte)0) >= 0).ToList();

    private void Flip(Random rng, Writer w)
    {
        var pages = ContentPages(w);
        if (pages.Count == 0) return;
        int n = 1 << rng.Next(0, 7); // 1..64
        for (int i = 0; i < n; i++)
        {
            ulong pfn = pages[rng.Next(pages.Count)];
            var page = w.Page(pfn);
            // Prefer bytes that are not zero (fields with values) three times out of four.
            int off = rng.Next(KernelDumpWriter.PageSize);
            if (rng.Next(4) != 0) for (int t = 0; t < 16 && page[off] == 0; t++) off = rng.Next(KernelDumpWriter.PageSize);
            byte x = (byte)rng.Next(1, 256);
            byte nv = (byte)(page[off] ^ x);
            w.Write((pfn << 12) + (ulong)off, [nv], $"byte ^= 0x{x:x2}");
        }
    }

    /// <summary>Qword-aligned values that are kernel addresses mapped in the dump.</summary>
    private List<(ulong Pa, ulong Value)> KernelPointers(Writer w)
    {
        var list = new List<(ulong, ulong)>();
        foreach (var pfn in _dataPages.Keys)
        {
            var page = w.Page(pfn);
            for (int o = 0; o < KernelDumpWriter.PageSize; o += 8)
            {
                ulong v = BinaryPrimitives.ReadUInt64LittleEndian(page[o..]);
                if (v < 0xFFFF_8000_0000_0000 || _reader.Translate(v) is null) continue;
                list.Add(((pfn << 12) + (ulong)o, v));
            }
        }
        return list;
    }

    private void Pointers(Random rng, Writer w)
    {
        var ptrs = KernelPointers(w);
        if (ptrs.Count == 0) return;
        int n = 1 << rng.Next(0, 5); // 1..16
        for (int i = 0; i < n; i++)
        {
            int k = rng.Next(ptrs.Count);
            var (pa, old) = ptrs[k];
            ulong selfVa = _dataPages.TryGetValue(pa >> 12, out var pva) ? pva + (pa & 0xfff) : 0;
            int kind = rng.Next(5);
            ulong nv;
            string what;
            switch (kind)
            {
                case 0: nv = 0xFFFF_F000_0000_0000 | ((ulong)rng.NextInt64(0, 1L << 40) & ~7UL); what = "wild"; break;
                case 1: nv = 0; what = "NULL"; break;
                case 2: nv = selfVa != 0 ? selfVa : old; what = "self"; break;
                case 3: nv = ptrs[rng.Next(0, Math.Max(1, k))].Value; what = "previous object's pointer, a cycle"; break;
                default: nv = (selfVa != 0 ? selfVa : old) - (ulong)(8 * rng.Next(1, 32)); what = "points just before itself, a cycle"; break;
            }
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, nv);
            w.Write(pa, b, $"pointer {old:x} -> {nv:x} ({what})");
        }
    }

    private void Zero(Random rng, Writer w)
    {
        var pages = ContentPages(w);
        if (pages.Count == 0) return;
        int n = rng.Next(1, 5);
        Span<byte> e = stackalloc byte[8];
        for (int i = 0; i < n; i++)
        {
            ulong pfn = pages[rng.Next(pages.Count)];
            ulong va = _dataPages[pfn];
            if (rng.Next(2) == 0 || !_ptePa.TryGetValue(va, out ulong ptePa))
            {
                w.Page(pfn).Clear();
                w.Note(pfn << 12, va, "page zeroed");
            }
            else
            {
                long off = w.Offset(ptePa);
                ulong pte = BinaryPrimitives.ReadUInt64LittleEndian(w.Buf.AsSpan((int)off));
                BinaryPrimitives.WriteUInt64LittleEndian(e, pte & ~KernelDumpWriter.PtePresent);
                e.CopyTo(w.Buf.AsSpan((int)off));
                w.Note(pfn << 12, va, $"page paged out (PTE at pa {ptePa:x} not present)");
            }
        }
    }

    /// <summary>UNICODE_STRING shape: Length even &lt;= MaximumLength &lt;= 0x2000, 4 zero bytes, Buffer = a mapped kernel address.</summary>
    private List<ulong> UnicodeStrings(Writer w)
    {
        var list = new List<ulong>();
        foreach (var pfn in _dataPages.Keys)
        {
            var page = w.Page(pfn);
            for (int o = 0; o + 16 <= KernelDumpWriter.PageSize; o += 8)
            {
                ushort len = BinaryPrimitives.ReadUInt16LittleEndian(page[o..]), max = BinaryPrimitives.ReadUInt16LittleEndian(page[(o + 2)..]);
                if (len == 0 || (len & 1) != 0 || len > max || max > 0x2000 || BinaryPrimitives.ReadUInt32LittleEndian(page[(o + 4)..]) != 0) continue;
                ulong buffer = BinaryPrimitives.ReadUInt64LittleEndian(page[(o + 8)..]);
                if (buffer < 0xFFFF_8000_0000_0000 || _reader.Translate(buffer) is null) continue;
                list.Add((pfn << 12) + (ulong)o);
            }
        }
        return list;
    }

    private void UnicodeLengths(Random rng, Writer w)
    {
        var strs = UnicodeStrings(w);
        if (strs.Count == 0) return;
        int n = rng.Next(1, 5);
        for (int i = 0; i < n; i++)
        {
            ulong pa = strs[rng.Next(strs.Count)];
            (ushort len, ushort max) = rng.Next(4) switch
            {
                0 => ((ushort)0xFFFE, (ushort)0xFFFE),
                1 => ((ushort)0xFFFF, (ushort)0xFFFF),   // odd length: half a character
                2 => ((ushort)0xFFFE, (ushort)0x0002),   // Length > MaximumLength
                _ => ((ushort)(rng.Next(0x100, 0x8000) * 2), (ushort)0xFFFF),
            };
            var b = new byte[4];
            BinaryPrimitives.WriteUInt16LittleEndian(b, len);
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), max);
            w.Write(pa, b, $"UNICODE_STRING Length 0x{len:x} MaximumLength 0x{max:x}");
        }
    }

    /// <summary>A printable run in a data page: UTF-16LE (>= 3 chars) or ASCII (>= 4 chars).</summary>
    public readonly record struct StringRun(ulong Pa, int Bytes, bool Utf16, string Text);

    /// <summary>Every name-like string in the data pages: what the lab scenarios wrote (image, driver, service, registry, file names, pool tags).</summary>
    public List<StringRun> Strings()
    {
        var list = new List<StringRun>();
        foreach (var pfn in _dataPages.Keys)
        {
            if (!_reader.TryGetPageOffset(pfn, out long off)) continue;
            var page = _file.AsSpan((int)off, KernelDumpWriter.PageSize);
            // UTF-16LE runs.
            for (int o = 0; o + 6 <= page.Length;)
            {
                int e = o;
                while (e + 2 <= page.Length && page[e + 1] == 0 && IsNameChar(page[e])) e += 2;
                if ((e - o) / 2 >= 3) { list.Add(new StringRun((pfn << 12) + (ulong)o, e - o, true, Encoding.Unicode.GetString(page[o..e]))); o = e; }
                else o += 2;
            }
            // ASCII runs (>= 4 chars, NUL or non-printable on both ends).
            for (int o = 0; o + 4 <= page.Length;)
            {
                int e = o;
                while (e < page.Length && IsNameChar(page[e])) e++;
                bool bounded = (o == 0 || !IsNameChar(page[o - 1])) && (e - o) >= 4 && (e - o) <= 260;
                if (bounded && (e == page.Length || page[e] < 0x20)) list.Add(new StringRun((pfn << 12) + (ulong)o, e - o, false, Encoding.ASCII.GetString(page[o..e])));
                o = e > o ? e : o + 1;
            }
        }
        return list;
    }

    private static bool IsNameChar(byte b) => b is >= 0x20 and < 0x7f;

    private void Markup(Random rng, Writer w, List<string> payloads)
    {
        var runs = Strings().Where(r => (r.Utf16 ? r.Bytes / 2 : r.Bytes) >= 4).ToList();
        if (runs.Count == 0) return;
        int n = rng.Next(1, 6);
        for (int i = 0; i < n; i++)
        {
            var r = runs[rng.Next(runs.Count)];
            int chars = r.Utf16 ? r.Bytes / 2 : r.Bytes;
            // Whole payloads only (a cut one, such as "<exec", cannot be told from the command's own markup); the
            // longest that fit are the most likely pick, the 4-character ones fit everything (pool tags).
            var fits = MarkupPayloads.Where(x => x.Length <= chars).ToList();
            string p = fits.Count > 0 && rng.Next(4) != 0 ? fits[rng.Next(fits.Count)] : ShortPayloads[rng.Next(ShortPayloads.Length)];
            // Keep the rest of the name after the payload (the field's length stays as the structure says).
            string text = p + r.Text[p.Length..];
            var bytes = r.Utf16 ? Encoding.Unicode.GetBytes(text) : Encoding.ASCII.GetBytes(text);
            w.Write(r.Pa, bytes, $"string '{r.Text}' -> '{text}'");
            payloads.Add(p);
        }
    }
}
