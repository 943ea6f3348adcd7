using System.Buffers.Binary;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// Adaptive read-ahead for one work-item list walk: an item not yet cached is read with its whole 4 KB page when, and
/// only while, whole pages are expected to cost less than one read per item in modelled KDNET time.
/// <para>Work items are small (0x20-0x58 bytes) and a busy queue's items share pool pages (LFH/lookaside buckets hold
/// same-sized blocks together), but list order need not follow address order, so a page read pays only by the items
/// of the list the rest of the walk will find on it. That is estimated from the page itself: after reading a page, the
/// blocks on it that look like pending items of this list (a LIST_ENTRY of two kernel pointers followed by a routine
/// already seen on the list) are counted. With d items per page, N items on the list and k of them walked (k = N, or
/// the item limit), a walk in random order reads about P(1 - e^(-k/P)) pages, P = N/d (fewer when list order follows
/// address order); page mode stays on while k over that is at least the cost of a page over the cost of an item.
/// It is judged before the first page (at the densest packing the item size allows: a short list or a short look
/// never reads pages), and after each page read with the density seen so far (every one of the first 32 pages, then one
/// in 16: the count is CPU work on every block of the page); once off, it stays off.</para>
/// <para>Outputs never depend on it: it only decides how much of a page comes along with an item (the item is read
/// from the cache or the target exactly as before). Stale blocks (freed items that kept their link and routine) are
/// counted as candidates; they can keep page mode on where it does not pay, never change a result.</para>
/// </summary>
internal sealed class ItemPageReadAhead
{
    /// <summary>Pages read before the density seen on them alone can turn page mode off.</summary>
    public const int PagesBeforeJudging = 8;
    /// <summary>Every page among the first ones read is judged, then one in <see cref="JudgeEvery"/>.</summary>
    public const int JudgeAllFirst = 32, JudgeEvery = 16;
    private const int MaxRoutines = 64;

    private readonly KernelReader _r;
    private readonly int _itemSize, _routineOff, _step;
    private readonly long _walked;
    private readonly HashSet<ulong> _routines = new();
    private readonly byte[] _page = new byte[TargetMemory.PageSize];
    private bool _on;
    private long _pages, _items, _pagesRead;

    /// <param name="listItems">Items expected on the list (the queue's own count less what its other lists held), or null
    /// when not known (then page mode stays off: a list of unknown length is read one item at a time).</param>
    /// <param name="limit">Items the walk will examine at most (null: all).</param>
    public ItemPageReadAhead(KernelReader reader, int itemSize, int routineOffset, long? listItems, int? limit)
    {
        _r = reader;
        _itemSize = itemSize;
        _routineOff = routineOffset;
        _step = 2 * reader.PointerSize; // pool blocks are aligned to two pointers
        long n = listItems ?? 0;
        _walked = limit is { } l ? Math.Min(n, l) : n;
        // Judged at the densest packing possible (a pool header of two pointers per block).
        double densest = (double)TargetMemory.PageSize / (itemSize + _step);
        _on = n > 0 && Pays(densest, n);
    }

    /// <summary>Pages read whole so far.</summary>
    public long PagesRead => _pagesRead;
    public bool On => _on;

    /// <summary>A routine of an item of this list (what a candidate's routine must be).</summary>
    public void SeenRoutine(ulong routine)
    {
        if (routine != 0 && _routines.Count < MaxRoutines) _routines.Add(routine);
    }

    /// <summary>Called before an item is read: reads its page when page mode is on and the item is not cached.</summary>
    public void Before(ulong item)
    {
        if (!_on) return;
        var mem = _r.Memory;
        if (mem.IsCached(item, _itemSize)) return;
        ulong page = item & ~(ulong)(TargetMemory.PageSize - 1);
        int got = mem.Read(page, _page);
        if (got <= 0) return; // unreadable: the item's own read fails the same way and says so
        int self = (int)(item - page);
        if (self + _routineOff + _r.PointerSize <= got) SeenRoutine(_r.PointerAt(_page, self + _routineOff));
        // Judged on the first pages, then on one page in JudgeEvery (the scan is CPU work of every block of the page).
        long n = _pagesRead++;
        if (n >= JudgeAllFirst && n % JudgeEvery != 0) return;
        _pages++;
        _items += Candidates(self, got);
        if (_pages >= PagesBeforeJudging && !Pays((double)_items / _pages, _walked)) _on = false;
    }

    /// <summary>The item itself and the blocks of the page that look like pending items of this list.</summary>
    private int Candidates(int self, int got)
    {
        int ps = _r.PointerSize, found = 1;
        var p = _page.AsSpan(0, got);
        for (int off = 0; off + _routineOff + ps <= got; off += _step)
        {
            if (off == self) continue;
            ulong flink = ps == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(p[off..]) : BinaryPrimitives.ReadUInt32LittleEndian(p[off..]);
            if (!IsKernelPointer(flink)) continue;
            ulong blink = ps == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(p[(off + ps)..]) : BinaryPrimitives.ReadUInt32LittleEndian(p[(off + ps)..]);
            if (!IsKernelPointer(blink)) continue;
            ulong routine = ps == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(p[(off + _routineOff)..]) : BinaryPrimitives.ReadUInt32LittleEndian(p[(off + _routineOff)..]);
            if (_routines.Contains(routine)) found++;
        }
        return found;
    }

    private bool IsKernelPointer(ulong v) =>
        v % (ulong)_r.PointerSize == 0 && (_r.PointerSize == 8 ? v >= 0xFFFF8000_00000000UL : v >= 0x8000_0000UL);

    /// <summary>Whether reading whole pages costs less than one read per item for a walk of <see cref="_walked"/> items
    /// out of <paramref name="listItems"/> at <paramref name="perPage"/> items per page (random order), in KDNET time.</summary>
    private bool Pays(double perPage, long listItems)
    {
        if (_walked <= 1 || perPage <= 1) return false;
        double pagesOnList = Math.Max(1, listItems / perPage);
        double pages = Math.Max(1, pagesOnList * (1 - Math.Exp(-_walked / pagesOnList)));
        double pageCost = KdnetModel.Seconds(KdnetModel.Packets(TargetMemory.PageSize), TargetMemory.PageSize);
        double itemCost = KdnetModel.Seconds(KdnetModel.Packets(_itemSize), _itemSize);
        return pages * pageCost < _walked * itemCost;
    }
}
