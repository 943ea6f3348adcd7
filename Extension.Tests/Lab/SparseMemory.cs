namespace NtSleuth.Lab;

/// <summary>
/// A sparse 64-bit virtual address space made of 4 KB pages: what a scenario lays out, what the in-memory target
/// serves and what the dump writers map into physical pages. Pages not present are unreadable.
/// </summary>
public sealed class SparseMemory
{
    public const int PageSize = 0x1000;
    private readonly SortedDictionary<ulong, byte[]> _pages = new();

    public IEnumerable<KeyValuePair<ulong, byte[]>> Pages => _pages;
    public int PageCount => _pages.Count;

    public static ulong PageOf(ulong va) => va & ~(ulong)(PageSize - 1);

    public bool IsMapped(ulong va) => _pages.ContainsKey(PageOf(va));

    /// <summary>Makes [va, va+length) present (zero-filled where new).</summary>
    public void Map(ulong va, ulong length)
    {
        if (length == 0) return;
        for (ulong p = PageOf(va); p < va + length; p += PageSize)
            if (!_pages.ContainsKey(p)) _pages[p] = new byte[PageSize];
    }

    /// <summary>Removes pages (simulates paged-out memory).</summary>
    public void Unmap(ulong va, ulong length)
    {
        for (ulong p = PageOf(va); p < va + length; p += PageSize) _pages.Remove(p);
    }

    public void Write(ulong va, ReadOnlySpan<byte> data)
    {
        Map(va, (ulong)data.Length);
        int done = 0;
        while (done < data.Length)
        {
            ulong a = va + (ulong)done;
            var page = _pages[PageOf(a)];
            int off = (int)(a - PageOf(a));
            int n = Math.Min(PageSize - off, data.Length - done);
            data.Slice(done, n).CopyTo(page.AsSpan(off));
            done += n;
        }
    }

    public void WriteU64(ulong va, ulong v) => Write(va, BitConverter.GetBytes(v));
    public void WriteU32(ulong va, uint v) => Write(va, BitConverter.GetBytes(v));
    public void WriteU16(ulong va, ushort v) => Write(va, BitConverter.GetBytes(v));
    public void WriteU8(ulong va, byte v) => Write(va, [v]);

    /// <summary>Reads with partial semantics: returns the number of bytes read contiguously from <paramref name="va"/>.</summary>
    public int Read(ulong va, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = va + (ulong)done;
            if (!_pages.TryGetValue(PageOf(a), out var page)) break;
            int off = (int)(a - PageOf(a));
            int n = Math.Min(PageSize - off, buffer.Length - done);
            page.AsSpan(off, n).CopyTo(buffer[done..]);
            done += n;
        }
        return done;
    }

    public ulong ReadU64(ulong va)
    {
        Span<byte> b = stackalloc byte[8];
        if (Read(va, b) != 8) throw new InvalidOperationException($"{va:x} not mapped");
        return BitConverter.ToUInt64(b);
    }
}
