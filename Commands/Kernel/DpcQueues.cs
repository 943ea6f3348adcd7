using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Kernel;

/// <summary>One queue of a processor's DPC data as a PRCB image holds it.</summary>
/// <param name="Queue">0 = the normal queue, 1 = the threaded queue (DpcData[1]).</param>
/// <param name="Depth">_KDPC_DATA.DpcQueueDepth.</param>
/// <param name="DpcCount">_KDPC_DATA.DpcCount (null where the field does not exist).</param>
/// <param name="ActiveDpc">_KDPC_DATA.ActiveDpc (8.1+; null where the field does not exist).</param>
/// <param name="Head">Address of the list head (DpcListHead on 7, DpcList.ListHead on 8.1+).</param>
/// <param name="First">The head's first link as read with the PRCB.</param>
public sealed record DpcQueueHead(int Queue, int Depth, uint? DpcCount, ulong? ActiveDpc, ulong Head, ulong First)
{
    /// <summary>Nothing queued (or a queue that was never initialised).</summary>
    public bool IsEmpty => First == 0 && Depth == 0;
}

/// <summary>A DPC object on a queue: its routine and importance, or unreadable.</summary>
public sealed record QueuedKdpc(ulong Kdpc, ulong? DeferredRoutine, string Importance)
{
    public bool Unreadable => DeferredRoutine is null;
}

/// <summary>
/// The DPC data of every processor's <c>_KPRCB</c>, by field name: <c>DpcData</c> (one <c>_KDPC_DATA</c>, or the normal and
/// threaded queues as an array), the queue as a <c>_LIST_ENTRY</c> (<c>DpcListHead</c>, Windows 7) or a singly linked
/// <c>_KDPC_LIST</c> (<c>DpcList</c>, 8.1+), <c>DpcQueueDepth</c>, <c>DpcCount</c>, <c>ActiveDpc</c>; and the queued
/// <c>_KDPC</c>s (walks bounded and cycle-safe, KDPCs read with an adaptive read-ahead). The caller reads the PRCB
/// (<see cref="DataOffset"/> .. <see cref="DataEnd"/>, with whatever else it needs in the same request) and hands the
/// image to <see cref="Queue"/>. One instance per command run.
/// </summary>
public sealed class DpcQueues
{
    /// <summary>KDPCs are read with their surrounding aligned block: DPC objects of one driver sit together (arrays, extensions).</summary>
    public const ulong Block = 0x400;
    /// <summary>Blocks read before the read-ahead judges whether blocks serve other KDPCs.</summary>
    private const int BlockTrial = 8;

    private readonly KernelReader _r;
    private readonly PackedField _depth, _count;
    private readonly ulong _listHeadOffset, _linkOffset;
    private readonly long _activeDpcOffset = -1;
    private readonly bool _singleList;

    public TypeLayout Prcb { get; }
    public TypeLayout DpcData { get; }
    public TypeLayout Kdpc { get; }
    /// <summary>Offset of <c>_KPRCB.DpcData</c>.</summary>
    public ulong DataOffset { get; }
    /// <summary>End of <c>_KPRCB.DpcData</c> (all its queues).</summary>
    public ulong DataEnd { get; }
    /// <summary>Queues in <c>DpcData</c>: 1, or 2 where the threaded queue is <c>DpcData[1]</c>.</summary>
    public int QueueCount { get; }

    public DpcQueues(KernelReader reader)
    {
        _r = reader;
        var types = reader.Types;
        Prcb = types.Get("nt", "_KPRCB");
        DpcData = types.Get("nt", "_KDPC_DATA");
        Kdpc = types.Get("nt", "_KDPC");
        var dd = Prcb.TryGetField("DpcData") ?? throw new MissingSymbolException("field nt!_KPRCB.DpcData", "nt");
        DataOffset = dd.Offset;
        DataEnd = dd.Offset + dd.Type.Size;
        QueueCount = Math.Min(dd.Type.Kind == TypeKind.Array ? (int)Math.Max(1, dd.Type.Count) : 1, 2);
        if (DpcData.TryGetField("DpcList") is { } dl) { _singleList = true; _listHeadOffset = dl.Offset + (types.TryResolvePath(types.Get("nt", dl.Type.Name), "ListHead")?.Offset ?? 0); }
        else if (DpcData.TryGetField("DpcListHead") is { } dh) { _singleList = false; _listHeadOffset = dh.Offset; }
        else throw new MissingSymbolException("field nt!_KDPC_DATA.DpcList / DpcListHead", "nt");
        _depth = PackedField.From(DpcData, "DpcQueueDepth");
        _count = PackedField.From(DpcData, "DpcCount", required: false);
        _linkOffset = Kdpc.GetField("DpcListEntry").Offset;
        if (DpcData.TryGetField("ActiveDpc") is { } ad) _activeDpcOffset = (long)ad.Offset;
    }

    /// <summary>
    /// Queue <paramref name="queue"/> of the PRCB at <paramref name="prcb"/>, from <paramref name="prcbImage"/> (the PRCB's
    /// bytes at their offsets; at least through <see cref="DataEnd"/>).
    /// </summary>
    public DpcQueueHead Queue(ReadOnlySpan<byte> prcbImage, ulong prcb, int queue)
    {
        ulong off = DataOffset + (ulong)queue * DpcData.Size;
        var dd = prcbImage.Slice((int)off, (int)DpcData.Size);
        return new DpcQueueHead(queue, (int)_depth.Get(dd), _count.Present ? (uint)_count.Get(dd) : null,
            _activeDpcOffset >= 0 ? _r.PointerAt(dd, (int)_activeDpcOffset) : null,
            prcb + off + _listHeadOffset, _r.PointerAt(dd, (int)_listHeadOffset));
    }

    /// <summary>Byte range of queue <paramref name="queue"/>'s <c>_KDPC_DATA</c> within the PRCB.</summary>
    public (ulong Start, ulong End) QueueRange(int queue) => (DataOffset + (ulong)queue * DpcData.Size, DataOffset + (ulong)(queue + 1) * DpcData.Size);

    /// <summary>
    /// The KDPCs on a queue, in list order: at most <paramref name="max"/>, the walk's end (complete, cycle, unreadable
    /// link, interrupted) in <paramref name="walk"/>.
    /// </summary>
    public IEnumerable<QueuedKdpc> Walk(DpcQueueHead q, ListWalkResult walk, int max)
    {
        IEnumerable<ulong> links = _singleList ? _r.WalkSingle(q.First, 0, walk, max) : _r.WalkList(q.Head, walk, max);
        foreach (var link in links)
        {
            ulong kdpc = link - _linkOffset;
            Prefetch(kdpc);
            yield return Read(kdpc);
        }
    }

    /// <summary>A KDPC by address (e.g. <c>ActiveDpc</c>): its routine and importance; unreadable when not in memory.</summary>
    public QueuedKdpc Read(ulong kdpc)
    {
        var v = _r.TryRead("nt", "_KDPC", kdpc);
        if (v?.TryUInt("DeferredRoutine") is not ulong routine) return new QueuedKdpc(kdpc, null, "");
        return new QueuedKdpc(kdpc, routine, ImportanceName(v.TryUInt("Importance") ?? 1));
    }

    /// <summary>_KDPC.Importance as wdm.h names it (KDPC_IMPORTANCE).</summary>
    public static string ImportanceName(ulong v) => v switch { 0 => "Low", 1 => "Medium", 2 => "High", 3 => "MediumHigh", var x => "0x" + x.ToString("x") };

    // Adaptive read-ahead over all queues: blocks pay off when KDPCs share them (drivers keep KDPC arrays); once
    // blocks stop serving other KDPCs (KDPCs scattered over pool pages), each KDPC is read alone.
    private readonly HashSet<ulong> _blocks = new();
    private int _blockReads, _blockServed;

    private void Prefetch(ulong addr)
    {
        ulong size = Kdpc.Size;
        ulong first = addr & ~(Block - 1), last = (addr + size - 1) & ~(Block - 1);
        if (_blocks.Contains(first) && _blocks.Contains(last)) { _blockServed++; return; }
        if (_blockReads < BlockTrial || _blockServed >= _blockReads)
        {
            for (ulong b = first; b <= last; b += Block) _blocks.Add(b);
            _blockReads++;
            // Served from the cache when the block was read before (no round trip).
            ulong start = addr & ~(Block - 1);
            ulong end = (addr + size + Block - 1) & ~(Block - 1);
            _r.Memory.Prefetch(start, (int)(end - start));
        }
        else _r.Memory.Prefetch(addr, (int)size);
    }
}
