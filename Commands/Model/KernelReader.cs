using System.Text;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Model;

/// <summary>
/// Reads typed structures and lists from the target by field name. One instance per command run:
/// it owns the run's read cache (<see cref="TargetMemory"/>) and type cache.
/// </summary>
public sealed class KernelReader
{
    public KernelReader(ITarget target, ReadStats? stats = null)
    {
        Target = target;
        Memory = new TargetMemory(target, stats);
        _types = new Lazy<TypeCache>(() => new TypeCache(target.Symbols));
    }

    private readonly Lazy<TypeCache> _types;

    public ITarget Target { get; }
    public TargetMemory Memory { get; }
    /// <summary>Type/symbol cache; created on first use so commands that need no target (e.g. -lease) never touch it.</summary>
    public TypeCache Types => _types.Value;
    public int PointerSize => Target.Info.PointerSize;

    /// <summary>Reads a whole structure in one request. Throws <see cref="TargetReadException"/> when not even the first byte is readable.</summary>
    public StructView Read(string module, string type, ulong address) => Read(Types.Get(module, type), address);

    public StructView Read(TypeLayout layout, ulong address)
    {
        if (address == 0) throw new TargetReadException(0, (int)layout.Size, $"NULL {layout.Module}!{layout.Name} pointer");
        var buf = new byte[layout.Size];
        int got = Memory.Read(address, buf);
        if (got == 0)
            throw new TargetReadException(address, (int)layout.Size, $"{layout.Module}!{layout.Name} at {Output.Fmt.Addr(address)} is not readable (paged out or not in the dump)");
        return new StructView(layout, address, got == buf.Length ? buf : buf.AsSpan(0, got).ToArray(), Types);
    }

    /// <summary>
    /// Reads only the byte range that holds the listed fields of <paramref name="module"/>!<paramref name="type"/>
    /// (one request, from the lowest to the end of the highest field), presented as a view of the whole structure.
    /// Only the listed fields may be read from the view. Throws <see cref="TargetReadException"/> unless the whole
    /// range is readable.
    /// </summary>
    public StructView ReadFields(string module, string type, ulong address, params string[] fields)
    {
        var layout = Types.Get(module, type);
        ulong lo = ulong.MaxValue, hi = 0;
        foreach (var f in fields)
        {
            var (off, t) = Types.ResolvePath(layout, f);
            ulong size = t.Kind == TypeKind.Bitfield ? (t.Inner?.Size ?? 4) : Math.Max(t.Size, 1);
            lo = Math.Min(lo, off); hi = Math.Max(hi, off + size);
        }
        if (address == 0) throw new TargetReadException(0, (int)layout.Size, $"NULL {module}!{type} pointer");
        var buf = new byte[hi];
        int got = Memory.Read(address + lo, buf.AsSpan((int)lo));
        if (got < (int)(hi - lo))
            throw new TargetReadException(address + lo + (ulong)got, (int)(hi - lo), $"{module}!{type} at {Output.Fmt.Addr(address)} is not readable (paged out or not in the dump)");
        return new StructView(layout, address, buf, Types);
    }

    public StructView? TryRead(string module, string type, ulong address)
    {
        var layout = Types.TryGet(module, type);
        if (layout is null || address == 0) return null;
        try { return Read(layout, address); } catch (TargetReadException) { return null; }
    }

    public ulong ReadPointer(ulong address) =>
        Memory.TryReadPointer(address, out var v) ? v : throw new TargetReadException(address, PointerSize, $"pointer at {Output.Fmt.Addr(address)} is not readable");

    public ulong? TryReadPointer(ulong address) => Memory.TryReadPointer(address, out var v) ? v : null;

    /// <summary>The target pointer stored at <paramref name="offset"/> of bytes already read (4 or 8 bytes, little-endian).</summary>
    public ulong PointerAt(ReadOnlySpan<byte> bytes, int offset) =>
        PointerSize == 4 ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]) : System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes[offset..]);

    /// <summary>Reads a _UNICODE_STRING embedded at <paramref name="address"/>; null when unreadable. Length capped at 32 KB.</summary>
    public string? ReadUnicodeString(ulong address)
    {
        Span<byte> hdr = stackalloc byte[16];
        int hsize = PointerSize == 8 ? 16 : 8;
        if (Memory.Read(address, hdr[..hsize]) != hsize) return null;
        ushort len = BitConverter.ToUInt16(hdr);
        ulong buffer = PointerSize == 8 ? BitConverter.ToUInt64(hdr[8..]) : BitConverter.ToUInt32(hdr[4..]);
        return ReadUtf16(buffer, len);
    }

    public string? ReadUtf16(ulong buffer, int byteLength)
    {
        if (byteLength == 0) return "";
        if (buffer == 0 || byteLength < 0) return null;
        byteLength = Math.Min(byteLength & ~1, 0x8000);
        var b = new byte[byteLength];
        int got = Memory.Read(buffer, b) & ~1;
        if (got == 0) return null;
        return Encoding.Unicode.GetString(b, 0, got);
    }

    /// <summary>
    /// Walks a circular doubly linked LIST_ENTRY list starting at <paramref name="headAddress"/> (the head itself is not an entry).
    /// Yields the address of each entry's LIST_ENTRY; the walk is bounded by <paramref name="max"/>, detects cycles
    /// that do not return to the head, stops on unreadable links and on Ctrl+Break, and records why in <paramref name="result"/>.
    /// </summary>
    /// <summary>
    /// Test hook of the end-to-end interrupt tests (null otherwise): told each named point a command's analysis reaches
    /// (<see cref="TestPoint"/>, e.g. "leaktag.modules" when !leaktag starts its module search), and
    /// <see cref="WalkPoint"/> once per reader when its list walks have yielded <see cref="WalkSignalAfter"/> entries
    /// in all, so the test host interrupts work that is surely running (not the .NET start or the engine's symbol
    /// loading before it) whatever the machine's load.
    /// </summary>
    public static Action<string>? PointSignal { get; set; }
    public static int WalkSignalAfter { get; set; } = int.MaxValue;
    public const string WalkPoint = "walk";

    /// <summary>Tells the test hook that the analysis reached <paramref name="point"/> (no-op outside the tests).</summary>
    public static void TestPoint(string point)
    {
        if (PointSignal is { } signal) { try { signal(point); } catch { } }
    }
    private int _walked;

    public IEnumerable<ulong> WalkList(ulong headAddress, ListWalkResult result, int max = 100_000)
    {
        var seen = new HashSet<ulong> { headAddress };
        ulong cur = headAddress;
        while (true)
        {
            if (Memory.IsInterruptRequested) { result.Stop(ListStop.Interrupted, cur); yield break; }
            var next = TryReadPointer(cur);
            if (next is null) { result.Stop(ListStop.Unreadable, cur); yield break; }
            ulong n = next.Value;
            if (n == headAddress) { result.Stop(ListStop.Complete, cur); yield break; }
            if (n == 0) { result.Stop(ListStop.NullLink, cur); yield break; }
            if (!seen.Add(n)) { result.Stop(ListStop.Cycle, n); yield break; }
            if (result.Count >= max) { result.Stop(ListStop.LimitReached, n); yield break; }
            result.Count++;
            if (PointSignal is not null && ++_walked == WalkSignalAfter) TestPoint(WalkPoint);
            yield return n;
            cur = n;
        }
    }

    /// <summary>Walks a singly linked list (Next at offset <paramref name="nextOffset"/> of each entry) starting at <paramref name="first"/>.</summary>
    public IEnumerable<ulong> WalkSingle(ulong first, ulong nextOffset, ListWalkResult result, int max = 100_000)
    {
        var seen = new HashSet<ulong>();
        ulong cur = first;
        while (cur != 0)
        {
            if (Memory.IsInterruptRequested) { result.Stop(ListStop.Interrupted, cur); yield break; }
            if (!seen.Add(cur)) { result.Stop(ListStop.Cycle, cur); yield break; }
            if (result.Count >= max) { result.Stop(ListStop.LimitReached, cur); yield break; }
            result.Count++;
            yield return cur;
            var next = TryReadPointer(cur + nextOffset);
            if (next is null) { result.Stop(ListStop.Unreadable, cur + nextOffset); yield break; }
            cur = next.Value;
        }
        result.Stop(ListStop.Complete, 0);
    }

    /// <summary>
    /// <see cref="WalkList"/> yielding the containing records (CONTAINING_RECORD of each link): the entries are
    /// <paramref name="module"/>!<paramref name="type"/> linked through <paramref name="linkPath"/>, whose offset is
    /// resolved by name once, before the first link is read.
    /// </summary>
    public IEnumerable<ulong> WalkRecords(ulong headAddress, string module, string type, string linkPath, ListWalkResult result, int max = 100_000)
    {
        ulong linkOffset = Types.FieldOffset(module, type, linkPath);
        foreach (var link in WalkList(headAddress, result, max)) yield return link - linkOffset;
    }

    /// <summary>CONTAINING_RECORD: the address of the structure whose field <paramref name="linkPath"/> is at <paramref name="linkAddress"/>.</summary>
    public ulong ContainingRecord(ulong linkAddress, string module, string type, string linkPath) =>
        linkAddress - Types.FieldOffset(module, type, linkPath);

    /// <summary>
    /// CONTAINING_RECORD with an offset the target publishes at run time instead of a symbol field (e.g. the offsets in
    /// ndis's triage block): the address of the record whose link at <paramref name="linkOffset"/> is <paramref name="linkAddress"/>.
    /// </summary>
    public static ulong ContainingRecord(ulong linkAddress, ulong linkOffset) => linkAddress - linkOffset;

    /// <summary>
    /// <see cref="WalkList"/> forward (bounded, cycle-safe, interruptible; how it ended is in <paramref name="forward"/>);
    /// when it stops on an unreadable or NULL link, walks back from the head through Blink to recover the entries beyond
    /// the break (stopping at a seen, unreadable or NULL link, at <paramref name="max"/> entries in all, or on Ctrl+Break).
    /// <paramref name="recovered"/> is told the running count of entries found walking back.
    /// </summary>
    public IEnumerable<ulong> WalkListBothWays(ulong headAddress, ListWalkResult forward, int max, Action<int> recovered)
    {
        var seen = new HashSet<ulong>();
        foreach (var l in WalkList(headAddress, forward, max)) { seen.Add(l); yield return l; }
        if (forward.StopReason is not (ListStop.Unreadable or ListStop.NullLink)) yield break;
        ulong cur = headAddress;
        int n = 0;
        while (seen.Count < max)
        {
            if (Memory.IsInterruptRequested) break;
            var prev = TryReadPointer(cur + (ulong)PointerSize);
            if (prev is null || prev.Value == 0 || prev.Value == headAddress || !seen.Add(prev.Value)) break;
            n++;
            recovered(n);
            yield return prev.Value;
            cur = prev.Value;
        }
    }
}

public enum ListStop { NotStarted, Complete, NullLink, Unreadable, Cycle, LimitReached, Interrupted }

/// <summary>How a list walk ended: a precise note for partial results.</summary>
public sealed class ListWalkResult
{
    public int Count { get; internal set; }
    public ListStop StopReason { get; private set; } = ListStop.NotStarted;
    /// <summary>Address involved in the stop (the unreadable link, the repeated entry, ...).</summary>
    public ulong StopAddress { get; private set; }
    public bool IsComplete => StopReason == ListStop.Complete;

    internal void Stop(ListStop why, ulong at) { StopReason = why; StopAddress = at; }

    public string Describe(string listName) => StopReason switch
    {
        ListStop.Complete => $"{listName}: {Count} entries",
        ListStop.NullLink => $"{listName}: NULL link after {Count} entries at {Output.Fmt.Addr(StopAddress)} (list corrupted); results are partial",
        ListStop.Unreadable => $"{listName}: link at {Output.Fmt.Addr(StopAddress)} not readable after {Count} entries (paged out or not in the dump); results are partial",
        ListStop.Cycle => $"{listName}: cycle detected at {Output.Fmt.Addr(StopAddress)} after {Count} entries (corrupted links); walk stopped",
        ListStop.LimitReached => $"{listName}: stopped at the limit of {Count} entries",
        ListStop.Interrupted => $"{listName}: interrupted by user after {Count} entries; results are partial",
        _ => $"{listName}: not walked",
    };
}
