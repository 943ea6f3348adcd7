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
    /// <summary><see cref="ReadBulk"/> polls the interrupt between slices of this size (4 round trips).</summary>
    public const int BulkSlice = 4 * MaxChunk;

    private readonly ITarget _target;
    // Page-granular cache: each touched page holds its bytes and a bitmap of the bytes known (read once, never re-read).
    // Storing by page keeps the cost of a read linear in the bytes it moves (no coalescing of growing ranges by copying).
    private readonly Dictionary<ulong, CachePage> _pages = new();
    private readonly HashSet<ulong> _badPages = new();
    private readonly HashSet<ulong> _searchedPages = new();
    private const ulong PageMask = PageSize - 1;

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
            if (_badPages.Contains(a & ~PageMask)) break;
            // Fetch up to the next cached byte (or the whole rest), in chunks, straight into the caller's buffer.
            int want = Math.Min(buffer.Length - done, MaxChunk);
            want = DistanceToNextCached(a, want);
            var dest = buffer.Slice(done, want);
            int got = SafeRead(a, dest);
            Stats.AddRead(want);
            if (got > 0)
            {
                Store(a, dest[..got]);
                done += got;
            }
            if (got < want)
            {
                // Remember the unreadable page so later reads do not retry it.
                _badPages.Add((a + (ulong)Math.Max(got, 0)) & ~PageMask);
                break;
            }
        }
        return done;
    }

    private int SafeRead(ulong address, Span<byte> dest)
    {
        try
        {
            int got = _target.ReadVirtual(address, dest);
            return Math.Clamp(got, 0, dest.Length);
        }
        catch (Exception) { return 0; }
    }

    /// <summary>Whether every byte of [address, address+length) is in the cache already (no request needed; not counted as a hit).</summary>
    public bool IsCached(ulong address, int length)
    {
        if (length <= 0) return true;
        ulong a = address, end = address + (ulong)length;
        while (a < end)
        {
            if (!_pages.TryGetValue(a & ~PageMask, out var page)) return false;
            int off = (int)(a & PageMask);
            int inPage = (int)Math.Min(end - a, (ulong)(PageSize - off));
            if (page.KnownRun(off, inPage) < inPage) return false;
            a += (ulong)inPage;
        }
        return true;
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
        if (length <= 0) return 0;
        var b = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
        try { return Read(address, b.AsSpan(0, length)); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(b); }
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

    /// <summary>Searches via the target; counted as one round trip that transfers every page of the range (the engine reads them).</summary>
    public ulong? Search(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        // The engine reads the range's pages to search them and keeps them in its cache: pages searched before are not
        // transferred again (a page this command read itself is counted, as the engine's cache of the search is separate).
        long fresh = 0;
        if (length > 0)
        {
            ulong first = start & ~PageMask, last = (start + length - 1) & ~PageMask;
            for (ulong p = first; ; p += PageSize)
            {
                if (_searchedPages.Add(p)) fresh++;
                if (p >= last) break;
            }
        }
        Stats.AddSearch(fresh);
        try { return _target.SearchVirtual(start, length, pattern); }
        catch (Exception) { return null; }
    }

    /// <summary>
    /// Finds <paramref name="pattern"/> in [start, start+length) by reading the range in packet-sized requests
    /// (<see cref="KdnetModel.MaxPacketData"/> bytes: each one KD packet, none half used) and comparing here, instead of
    /// a target-side search: bytes this command already read are taken from the cache, a page that cannot be read (not
    /// present, discarded) costs one failed request and is skipped, and the scan stops at <paramref name="maxHits"/>
    /// hits. Hits are what a search would return, in address order (overlapping occurrences included; an occurrence
    /// across an unreadable page is not one). The bytes scanned are not kept (a 100 MB image must not stay in the cache).
    /// </summary>
    public List<ulong> ScanFor(ulong start, ulong length, ReadOnlySpan<byte> pattern, int maxHits)
    {
        var hits = new List<ulong>();
        if (pattern.Length == 0 || length == 0 || maxHits <= 0) return hits;
        int keep = pattern.Length - 1;
        var buf = new byte[keep + KdnetModel.MaxPacketData];
        int carried = 0;                 // bytes of the previous chunk kept at buf[0..carried) (contiguous with the next)
        ulong end = start + length < start ? ulong.MaxValue : start + length;
        ulong pos = start;
        while (pos < end && hits.Count < maxHits)
        {
            if (IsInterruptRequested) break;
            if (_badPages.Contains(pos & ~PageMask)) { pos = (pos & ~PageMask) + PageSize; carried = 0; continue; }
            int want = (int)Math.Min(end - pos, (ulong)KdnetModel.MaxPacketData);
            var dest = buf.AsSpan(carried, want);
            int got = CachedPrefix(pos, dest);
            if (got < want)
            {
                ulong a = pos + (ulong)got;
                int rest = DistanceToNextCached(a, want - got);
                int n = SafeRead(a, dest.Slice(got, rest));
                Stats.AddRead(rest);
                if (n < rest) _badPages.Add((a + (ulong)n) & ~PageMask);
                got += n;
            }
            var window = buf.AsSpan(0, carried + got);
            ulong windowStart = pos - (ulong)carried;
            int from = 0;
            while (hits.Count < maxHits)
            {
                int i = window[from..].IndexOf(pattern);
                if (i < 0) break;
                hits.Add(windowStart + (ulong)(from + i));
                from += i + 1;
            }
            if (got < want)
            {
                // Unreadable from pos+got: skip to the next page; nothing carries over the gap.
                ulong bad = pos + (ulong)got;
                pos = (bad & ~PageMask) + PageSize;
                carried = 0;
                continue;
            }
            pos += (ulong)got;
            // Keep the last pattern.Length-1 bytes so an occurrence across the chunk boundary is found (not twice:
            // those bytes alone are too short to hold it).
            int k = Math.Min(keep, window.Length);
            window[^k..].CopyTo(buf);
            carried = k;
        }
        return hits;
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

    public void Clear() { _pages.Clear(); _badPages.Clear(); _searchedPages.Clear(); foreach (var m in _processes.Values) m.Clear(); }

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
            // Polled between slices of the table (a few round trips each), so Ctrl+Break stops a read of many MB at once.
            ThrowIfInterrupted();
            int slice = Math.Min(length - pos, BulkSlice);
            int got = Read(address + (ulong)pos, data.AsSpan(pos, slice));
            pos += got;
            if (pos >= length) break;
            if (got == slice) continue;
            ulong bad = address + (ulong)pos;
            ulong nextPage = (bad & ~(ulong)(PageSize - 1)) + PageSize;
            int skip = (int)Math.Min((ulong)(length - pos), nextPage - bad);
            holes.Add((pos, skip));
            pos += skip;
        }
        // The engine fails reads while an interrupt is pending: holes seen then are the interrupt, not the memory.
        if (holes.Count > 0) ThrowIfInterrupted();
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

    // ---- page cache ----
    private sealed class CachePage
    {
        public readonly byte[] Data = new byte[PageSize];
        // One bit per byte: known (read from the target).
        public readonly ulong[] Known = new ulong[PageSize / 64];
        public bool Full;

        public void Mark(int from, int count)
        {
            int end = from + count;
            while (from < end)
            {
                int w = from >> 6, bit = from & 63;
                int n = Math.Min(64 - bit, end - from);
                ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << bit;
                Known[w] |= mask;
                from += n;
            }
            if (!Full)
            {
                foreach (var k in Known) if (k != ulong.MaxValue) return;
                Full = true;
            }
        }

        /// <summary>How many bytes from <paramref name="from"/> (up to <paramref name="max"/>) are known contiguously.</summary>
        public int KnownRun(int from, int max)
        {
            if (Full) return max;
            int pos = from, end = from + max;
            while (pos < end)
            {
                int w = pos >> 6, bit = pos & 63;
                ulong unknown = ~Known[w] >> bit;
                if (unknown != 0) return Math.Min(pos + System.Numerics.BitOperations.TrailingZeroCount(unknown), end) - from;
                pos += 64 - bit;
            }
            return max;
        }

        /// <summary>How many bytes from <paramref name="from"/> (up to <paramref name="max"/>) are unknown contiguously.</summary>
        public int UnknownRun(int from, int max)
        {
            if (Full) return 0;
            int pos = from, end = from + max;
            while (pos < end)
            {
                int w = pos >> 6, bit = pos & 63;
                ulong known = Known[w] >> bit;
                if (known != 0) return Math.Min(pos + System.Numerics.BitOperations.TrailingZeroCount(known), end) - from;
                pos += 64 - bit;
            }
            return max;
        }
    }

    private bool TryFromCache(ulong address, Span<byte> buffer) => CachedPrefix(address, buffer) == buffer.Length;

    /// <summary>Copies the known bytes from <paramref name="address"/> on into <paramref name="buffer"/> up to the first unknown one.</summary>
    private int CachedPrefix(ulong address, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = address + (ulong)done;
            if (!_pages.TryGetValue(a & ~PageMask, out var page)) break;
            int off = (int)(a & PageMask);
            int inPage = Math.Min(buffer.Length - done, PageSize - off);
            int run = page.KnownRun(off, inPage);
            if (run == 0) break;
            page.Data.AsSpan(off, run).CopyTo(buffer[done..]);
            done += run;
            if (run < inPage) break;
        }
        return done;
    }

    /// <summary>Bytes from <paramref name="address"/> (at most <paramref name="max"/>, at least 1) before the next known byte.</summary>
    private int DistanceToNextCached(ulong address, int max)
    {
        int done = 0;
        while (done < max)
        {
            ulong a = address + (ulong)done;
            int off = (int)(a & PageMask);
            int inPage = Math.Min(max - done, PageSize - off);
            if (_pages.TryGetValue(a & ~PageMask, out var page))
            {
                int run = page.UnknownRun(off, inPage);
                done += run;
                if (run < inPage) break;
            }
            else done += inPage;
        }
        return Math.Max(done, 1);
    }

    private void Store(ulong address, ReadOnlySpan<byte> data)
    {
        int done = 0;
        while (done < data.Length)
        {
            ulong a = address + (ulong)done;
            ulong pageBase = a & ~PageMask;
            if (!_pages.TryGetValue(pageBase, out var page)) _pages[pageBase] = page = new CachePage();
            int off = (int)(a & PageMask);
            int n = Math.Min(data.Length - done, PageSize - off);
            data.Slice(done, n).CopyTo(page.Data.AsSpan(off));
            page.Mark(off, n);
            done += n;
        }
    }
}
