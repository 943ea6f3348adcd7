using System.Buffers.Binary;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Memory;

/// <summary>
/// Per-command view of target memory: an extent cache (whatever was read once is never read again),
/// a memo of unreadable pages, bulk prefetch, and counters of the round trips and bytes that reached the target.
/// Commands read all memory through this class.
/// </summary>
public sealed class TargetMemory
{
    public const int PageSize = 0x1000;
    /// <summary>Largest single request sent to the target; larger reads are split.</summary>
    public const int MaxChunk = 0x10000;

    private readonly ITarget _target;
    // Extents keyed by start address; non-overlapping, non-adjacent-merged lazily.
    private readonly SortedList<ulong, byte[]> _extents = new();
    private readonly HashSet<ulong> _badPages = new();

    public TargetMemory(ITarget target, ReadStats? stats = null)
    {
        _target = target;
        Stats = stats ?? new ReadStats();
    }

    public ITarget Target => _target;
    public ReadStats Stats { get; }
    public int PointerSize => _target.Info.PointerSize;

    /// <summary>Reads <paramref name="buffer"/>.Length bytes; returns bytes read contiguously from <paramref name="address"/>.</summary>
    public int Read(ulong address, Span<byte> buffer)
    {
        if (buffer.Length == 0) return 0;
        if (TryFromCache(address, buffer)) { Stats.AddHit(); return buffer.Length; }
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = address + (ulong)done;
            // Serve a cached prefix without a round trip.
            int cached = CachedPrefix(a, buffer[done..]);
            if (cached > 0) { done += cached; continue; }
            if (_badPages.Contains(a & ~(ulong)(PageSize - 1))) break;
            // Fetch up to the next cached extent (or the whole rest), in chunks.
            int want = Math.Min(buffer.Length - done, MaxChunk);
            int nextCached = DistanceToNextExtent(a, want);
            want = Math.Min(want, nextCached);
            var tmp = new byte[want];
            int got = SafeRead(a, tmp);
            Stats.AddRead(want);
            if (got > 0)
            {
                var data = got == want ? tmp : tmp.AsSpan(0, got).ToArray();
                Insert(a, data);
                data.AsSpan().CopyTo(buffer[done..]);
                done += got;
            }
            if (got < want)
            {
                // Remember the unreadable page so later reads do not retry it.
                _badPages.Add((a + (ulong)Math.Max(got, 0)) & ~(ulong)(PageSize - 1));
                break;
            }
        }
        return done;
    }

    private int SafeRead(ulong address, byte[] tmp)
    {
        try
        {
            int got = _target.ReadVirtual(address, tmp);
            return Math.Clamp(got, 0, tmp.Length);
        }
        catch (Exception) { return 0; }
    }

    /// <summary>Reads exactly; returns null when any byte is unreadable.</summary>
    public byte[]? ReadExact(ulong address, int length)
    {
        var b = new byte[length];
        return Read(address, b) == length ? b : null;
    }

    /// <summary>Reads a range in bulk into the cache (one round trip per <see cref="MaxChunk"/>). Returns bytes readable.</summary>
    public int Prefetch(ulong address, int length)
    {
        var b = new byte[length];
        return Read(address, b);
    }

    public bool TryReadU64(ulong address, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        if (Read(address, b) == 8) { value = BinaryPrimitives.ReadUInt64LittleEndian(b); return true; }
        value = 0; return false;
    }

    public bool TryReadU32(ulong address, out uint value)
    {
        Span<byte> b = stackalloc byte[4];
        if (Read(address, b) == 4) { value = BinaryPrimitives.ReadUInt32LittleEndian(b); return true; }
        value = 0; return false;
    }

    public bool TryReadPointer(ulong address, out ulong value)
    {
        if (PointerSize == 4) { bool ok = TryReadU32(address, out var v); value = v; return ok; }
        return TryReadU64(address, out value);
    }

    /// <summary>Searches via the target (no transfer); counted as one round trip.</summary>
    public ulong? Search(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        Stats.AddSearch();
        try { return _target.SearchVirtual(start, length, pattern); }
        catch (Exception) { return null; }
    }

    public bool IsInterruptRequested
    {
        get { try { return _target.IsInterruptRequested; } catch { return false; } }
    }

    /// <summary>Throws <see cref="OperationCanceledException"/> when the user pressed Ctrl+Break.</summary>
    public void ThrowIfInterrupted()
    {
        if (IsInterruptRequested) throw new OperationCanceledException("Interrupted by user (Ctrl+Break).");
    }

    public void Clear() { _extents.Clear(); _badPages.Clear(); foreach (var m in _processes.Values) m.Clear(); }

    /// <summary>
    /// Reads a range in bulk (one round trip per 64 KB); unreadable pages are skipped and reported as holes
    /// (offset, length) so the rest of the table is still used.
    /// </summary>
    public (byte[] Data, List<(int Offset, int Length)> Holes) ReadBulk(ulong address, int length)
    {
        var data = new byte[length];
        var holes = new List<(int, int)>();
        int pos = 0;
        while (pos < length)
        {
            ThrowIfInterrupted();
            int got = Read(address + (ulong)pos, data.AsSpan(pos));
            pos += got;
            if (pos >= length) break;
            ulong bad = address + (ulong)pos;
            ulong nextPage = (bad & ~(ulong)(PageSize - 1)) + PageSize;
            int skip = (int)Math.Min((ulong)(length - pos), nextPage - bad);
            holes.Add((pos, skip));
            pos += skip;
        }
        // Merge adjacent holes for a compact note.
        var merged = new List<(int Offset, int Length)>();
        foreach (var h in holes)
        {
            if (merged.Count > 0 && merged[^1].Offset + merged[^1].Length == h.Item1)
                merged[^1] = (merged[^1].Offset, merged[^1].Length + h.Item2);
            else merged.Add(h);
        }
        return (data, merged);
    }

    // ---- other processes' address spaces ----
    private readonly Dictionary<ulong, TargetMemory> _processes = new();

    /// <summary>
    /// The view of another process's address space (<see cref="ITarget.ReadProcessVirtual"/>; kernel targets: by EPROCESS
    /// address): its own extent cache and unreadable-page memo, the same <see cref="Stats"/> (its round trips and bytes
    /// are counted with this command's).
    /// </summary>
    public TargetMemory ForProcess(ulong process)
    {
        if (!_processes.TryGetValue(process, out var m))
            _processes[process] = m = new TargetMemory(new ProcessContextTarget(_target, process), Stats);
        return m;
    }

    /// <summary>Reads in the context of <paramref name="process"/> (cached per process, counted); bytes read contiguously.</summary>
    public int ReadProcess(ulong process, ulong address, Span<byte> buffer) => ForProcess(process).Read(address, buffer);

    /// <summary>An <see cref="ITarget"/> whose ReadVirtual is the inner target's ReadProcessVirtual for one process.</summary>
    private sealed class ProcessContextTarget(ITarget inner, ulong process) : ITarget
    {
        public TargetInfo Info => inner.Info;
        public int ReadVirtual(ulong address, Span<byte> buffer) => inner.ReadProcessVirtual(process, address, buffer);
        public ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern) => null;
        public NtSleuth.Commands.Symbols.ISymbolProvider Symbols => inner.Symbols;
        public IReadOnlyList<ModuleInfo> GetModules() => inner.GetModules();
        public bool TryEvaluate(string expression, out ulong value, out string? error) => inner.TryEvaluate(expression, out value, out error);
        public IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames) => inner.GetCurrentStack(maxFrames);
        public bool IsInterruptRequested => inner.IsInterruptRequested;
        public int ReadProcessVirtual(ulong p, ulong address, Span<byte> buffer) => inner.ReadProcessVirtual(p, address, buffer);
    }

    // ---- extent cache ----
    private bool TryFromCache(ulong address, Span<byte> buffer) => CachedPrefix(address, buffer) == buffer.Length;

    private int CachedPrefix(ulong address, Span<byte> buffer)
    {
        int idx = FloorIndex(address);
        if (idx < 0) return 0;
        ulong start = _extents.Keys[idx];
        var data = _extents.Values[idx];
        ulong end = start + (ulong)data.Length;
        if (address >= end) return 0;
        int off = (int)(address - start);
        int n = Math.Min(buffer.Length, data.Length - off);
        data.AsSpan(off, n).CopyTo(buffer);
        return n;
    }

    private int DistanceToNextExtent(ulong address, int max)
    {
        int idx = FloorIndex(address) + 1;
        if (idx < _extents.Count)
        {
            ulong next = _extents.Keys[idx];
            if (next > address && next - address < (ulong)max) return (int)(next - address);
        }
        return max;
    }

    private int FloorIndex(ulong address)
    {
        var keys = _extents.Keys;
        int lo = 0, hi = keys.Count - 1, res = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (keys[mid] <= address) { res = mid; lo = mid + 1; } else hi = mid - 1;
        }
        return res;
    }

    private void Insert(ulong address, byte[] data)
    {
        // Merge with an adjacent/overlapping predecessor and successors to keep lookups simple.
        ulong start = address;
        ulong end = address + (ulong)data.Length;
        int idx = FloorIndex(address);
        if (idx >= 0)
        {
            ulong ps = _extents.Keys[idx];
            var pd = _extents.Values[idx];
            if (ps + (ulong)pd.Length >= address) start = ps;
            else idx++;
        }
        else idx = 0;
        // Collect overlapping extents.
        var parts = new List<(ulong, byte[])>();
        while (idx < _extents.Count && _extents.Keys[idx] <= end)
        {
            parts.Add((_extents.Keys[idx], _extents.Values[idx]));
            ulong e = _extents.Keys[idx] + (ulong)_extents.Values[idx].Length;
            if (e > end) end = e;
            _extents.RemoveAt(idx);
        }
        if (parts.Count == 0 && start == address) { _extents.Add(address, data); return; }
        var merged = new byte[end - start];
        foreach (var (s, d) in parts) d.CopyTo(merged, (int)(s - start));
        data.CopyTo(merged, (int)(address - start));
        _extents.Add(start, merged);
    }
}
