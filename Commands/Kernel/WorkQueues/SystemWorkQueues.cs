using System.Buffers.Binary;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// Reads the system work queues of the build and counts what is pending on them, the way the seed-003 engineer did
/// by hand (<c>x nt!ExWorkerQueue</c>, <c>dt nt!_KQUEUE</c>, <c>!list ... dps +0x20</c>, <c>!thread</c> on each worker),
/// for every shape the kernel has used, found by type and field names at run time:
/// <list type="bullet">
/// <item>Windows 7 / 2008 R2: <c>nt!ExWorkerQueue</c>, an array of three <c>_EX_WORK_QUEUE</c> (Critical, Delayed,
/// HyperCritical), each holding a <c>_KQUEUE</c> (<c>WorkerQueue</c>): one item list, one thread list.</item>
/// <item>8.1 to 1803: per NUMA node, <c>nt!KeNodeBlock[n]</c> -&gt; <c>_ENODE.ExWorkQueues[pool]</c>, each an
/// <c>_EX_WORK_QUEUE</c> holding a <c>_KPRIQUEUE</c> (<c>WorkPriQueue</c>): 32 item lists by priority (Delayed = 12,
/// Critical = 13, HyperCritical = 15, ...), one thread list, <c>MinThreads</c>/<c>MaxThreads</c>.</item>
/// <item>1809 and later: <c>nt!PspSystemPartition</c> -&gt; <c>_EPARTITION.ExPartition</c> (an <c>_EX_PARTITION</c>)
/// -&gt; <c>WorkQueues[node][pool]</c>, the same <c>_EX_WORK_QUEUE</c>/<c>_KPRIQUEUE</c>.</item>
/// </list>
/// Each item costs at most one read (the whole <c>_IO_WORKITEM</c>-sized record: its link, routine, parameter and the I/O
/// fields together), and on a long list whose items share pool pages a page read serves several (<see cref="ItemPageReadAhead"/>); the list walks are bounded, cycle-safe and poll Ctrl+Break, and when the forward walk stops early the rest
/// is counted back from the tail (Blink).
/// </summary>
public sealed class SystemWorkQueues
{
    public const int MaxItemsPerList = 500_000;
    public const int MaxWorkersPerQueue = 4_096;
    public const int MaxNodes = 64;
    public const int MaxListedItems = 200;
    /// <summary>Windows 7 / 2008 R2 create at most 16 dynamic worker threads per queue (a constant of that kernel, not a
    /// variable in its symbols; the seed: "16 additional threads, which is the maximum").</summary>
    public const int Win7MaxDynamicThreads = 16;
    private const int KPriQueueLevels = 32;
    private const string Nt = "nt";
    private const int WrQueue = 15;

    private readonly KernelReader _r;
    private readonly KernelStackScan _scan;
    private readonly KernelThreads _threads;
    private readonly DriverNames _driverNames;
    private readonly Dictionary<ulong, string?> _drivers = new();
    private string? _routineFilter;
    private ulong? _routineFilterAddress;
    private ulong _iopProcessWorkItem;
    private KernelClock? _clock;
    private int? _itemLimit;

    /// <param name="clock">The caller's clock when it has one (no second read of KUSER_SHARED_DATA).</param>
    public SystemWorkQueues(KernelReader reader, KernelClock? clock = null)
    {
        _r = reader;
        _clock = clock;
        _scan = new KernelStackScan(reader, new Symbolizer(reader.Target));
        _threads = new KernelThreads(reader);
        _driverNames = new DriverNames(reader);
    }

    /// <param name="routine">-routine: a symbol ("mpio!MPIOPathVerify", "MPIOPathVerify", a module "mpio!") matched against
    /// each item's routine name, or its address already evaluated by the caller.</param>
    /// <param name="itemLimit">Items examined per list (null: all, up to <see cref="MaxItemsPerList"/>); with a limit the
    /// pending counts are the queues' own counts and the groups describe the head of each list.</param>
    public T Read<T>(T report, string? routine = null, ulong? routineAddress = null, int? itemLimit = null) where T : WorkQueueScan
    {
        report.Build = _r.Target.Info.BuildNumber;
        report.RoutineFilter = routine;
        report.ItemsExaminedPerList = itemLimit;
        _itemLimit = itemLimit;
        _routineFilter = routine;
        _routineFilterAddress = routineAddress;
        _iopProcessWorkItem = _r.Types.TrySymbol("nt!IopProcessWorkItem") ?? 0;
        if (_iopProcessWorkItem == 0) report.Notes.Add("nt!IopProcessWorkItem is not in the symbols: IO_WORKITEMs are shown by their WorkerRoutine, not their own routine and driver");
        _clock ??= KernelClock.Read(_r, report.Notes);

        var exwq = _r.Types.Get(Nt, "_EX_WORK_QUEUE");
        var queues = new List<(WorkQueueInfo Info, ulong Address)>();
        if (exwq.HasField("WorkerQueue")) FindKQueueShape(report, exwq, queues);
        else if (exwq.HasField("WorkPriQueue"))
        {
            if (exwq.HasField("Partition") && _r.Types.TrySymbol("nt!PspSystemPartition") is { } psp && _r.Types.TryGet(Nt, "_EX_PARTITION") is not null)
                FindPartitionShape(report, psp, queues);
            else FindNodeShape(report, queues);
        }
        else throw new MissingSymbolException("field nt!_EX_WORK_QUEUE.WorkerQueue or .WorkPriQueue", Nt);

        foreach (var (info, addr) in queues)
        {
            if (_r.Memory.IsInterruptRequested) { report.Interrupted = true; break; }
            report.Queues.Add(info);
            try { ReadQueue(report, info, exwq); }
            catch (TargetReadException ex) { info.Complete = false; info.Notes.Add($"queue {Fmt.Addr(addr)}: {ex.Message}"); }
            if (report.Interrupted) break;
        }
        report.TotalPending = report.Queues.Sum(q => q.Pending);
        if (report.Interrupted) report.Notes.Add("interrupted by user (Ctrl+Break): the counts are partial");
        Verdicts(report);
        return report;
    }

    // ------------------------------------------------------------------ shapes

    private static readonly string[] Win7Names = ["Critical WorkQueue", "Delayed WorkQueue", "HyperCritical WorkQueue"];

    private void FindKQueueShape(WorkQueueScan report, TypeLayout exwq, List<(WorkQueueInfo, ulong)> queues)
    {
        ulong baseAddr = _r.Types.Symbol("nt!ExWorkerQueue");
        report.Shape = "ExWorkerQueue";
        report.ShapeSource = $"nt!ExWorkerQueue ({Fmt.Addr(baseAddr)}): {Win7Names.Length} x nt!_EX_WORK_QUEUE (0x{exwq.Size:x} bytes) with a _KQUEUE";
        // The three queues in one request.
        _r.Memory.Prefetch(baseAddr, (int)exwq.Size * Win7Names.Length);
        for (int i = 0; i < Win7Names.Length; i++)
        {
            ulong a = baseAddr + (ulong)i * exwq.Size;
            queues.Add((new WorkQueueInfo { Name = Win7Names[i], Address = a }, a));
        }
    }

    private int NodeCount(WorkQueueScan report)
    {
        int nodes = 1;
        if (_r.Types.TrySymbol("nt!KeNumberNodes") is { } kn && _r.Memory.ReadExact(kn, 2) is { } nb)
            nodes = BinaryPrimitives.ReadUInt16LittleEndian(nb);
        else report.Notes.Add("nt!KeNumberNodes not readable: node 0 only");
        if (nodes < 1 || nodes > MaxNodes) { report.Notes.Add($"nt!KeNumberNodes = {nodes} is not plausible: node 0 only"); nodes = 1; }
        return nodes;
    }

    private void FindNodeShape(WorkQueueScan report, List<(WorkQueueInfo, ulong)> queues)
    {
        ulong block = _r.Types.Symbol("nt!KeNodeBlock");
        var enode = _r.Types.Get(Nt, "_ENODE");
        var (wqOff, wqType) = _r.Types.ResolvePath(enode, "ExWorkQueues");
        int pools = wqType.Kind == TypeKind.Array && wqType.Count is > 0 and <= 64 ? (int)wqType.Count : 8;
        int nodes = NodeCount(report);
        report.Shape = "KeNodeBlock";
        report.ShapeSource = $"nt!KeNodeBlock[{nodes}] -> nt!_ENODE.ExWorkQueues[{pools}] -> nt!_EX_WORK_QUEUE with a _KPRIQUEUE";
        int ps = _r.PointerSize;
        for (int n = 0; n < nodes; n++)
        {
            if (!_r.Memory.TryReadPointer(block + (ulong)(n * ps), out var node) || node == 0)
            { report.Notes.Add($"nt!KeNodeBlock[{n}] is not readable or NULL: node {n} skipped"); continue; }
            var ptrs = _r.Memory.ReadExact(node + wqOff, pools * ps);
            if (ptrs is null) { report.Notes.Add($"_ENODE {Fmt.Addr(node)} (node {n}): ExWorkQueues not readable; node skipped"); continue; }
            for (int p = 0; p < pools; p++)
            {
                ulong q = ReadPtr(ptrs, p * ps);
                if (q == 0) continue;
                queues.Add((new WorkQueueInfo { Name = $"node {n} pool {p}", Address = q, Node = n, Pool = p }, q));
                _expectedOwner[q] = ("Node", node);
            }
        }
    }

    /// <summary>Queue -> the back pointer it should hold (field, value): _EX_WORK_QUEUE.Node (8.1-1803) or .Partition (1809+).</summary>
    private readonly Dictionary<ulong, (string Field, ulong Value)> _expectedOwner = new();

    private void FindPartitionShape(WorkQueueScan report, ulong psp, List<(WorkQueueInfo, ulong)> queues)
    {
        report.Shape = "PspSystemPartition";
        ulong epart = 0, expart = 0;
        StructView xp;
        try
        {
            epart = _r.ReadPointer(psp);
            if (epart == 0) throw new TargetReadException(psp, _r.PointerSize, $"nt!PspSystemPartition ({Fmt.Addr(psp)}) holds NULL");
            var ep = _r.Read(Nt, "_EPARTITION", epart);
            expart = ep.Ptr("ExPartition");
            if (expart == 0) throw new TargetReadException(epart, _r.PointerSize, $"_EPARTITION {Fmt.Addr(epart)}: ExPartition is NULL");
            xp = _r.Read(Nt, "_EX_PARTITION", expart);
        }
        catch (TargetReadException ex)
        {
            report.ShapeSource = "nt!PspSystemPartition -> _EPARTITION.ExPartition -> _EX_PARTITION.WorkQueues[node][pool]";
            report.Notes.Add($"the system partition's work queues cannot be found: {ex.Message}");
            return;
        }
        ulong wq = xp.Ptr("WorkQueues");
        long mask = xp.Int("QueueAllocationMask");
        int nodes = NodeCount(report);
        var pools = new List<int>();
        for (int b = 0; b < 32; b++) if ((mask & (1L << b)) != 0) pools.Add(b);
        if (pools.Count == 0) { pools.AddRange([0, 1]); report.Notes.Add($"_EX_PARTITION {Fmt.Addr(expart)}: QueueAllocationMask is 0; pools 0 and 1 read"); }
        report.ShapeSource = $"nt!PspSystemPartition -> _EPARTITION {Fmt.Addr(epart)} -> ExPartition _EX_PARTITION {Fmt.Addr(expart)} -> WorkQueues[{nodes} node(s)][pools {string.Join(",", pools)}] -> nt!_EX_WORK_QUEUE with a _KPRIQUEUE";
        int ps = _r.PointerSize;
        int maxPool = pools.Max() + 1;
        for (int n = 0; n < nodes; n++)
        {
            if (!_r.Memory.TryReadPointer(wq + (ulong)(n * ps), out var perNode) || perNode == 0)
            { report.Notes.Add($"_EX_PARTITION.WorkQueues[{n}] is not readable or NULL: node {n} skipped"); continue; }
            var ptrs = _r.Memory.ReadExact(perNode, maxPool * ps);
            if (ptrs is null) { report.Notes.Add($"_EX_PARTITION.WorkQueues[{n}] ({Fmt.Addr(perNode)}) not readable: node {n} skipped"); continue; }
            foreach (int p in pools)
            {
                ulong q = ReadPtr(ptrs, p * ps);
                if (q == 0) continue;
                queues.Add((new WorkQueueInfo { Name = $"node {n} pool {p}", Address = q, Node = n, Pool = p }, q));
                _expectedOwner[q] = ("Partition", expart);
            }
        }
    }

    // ------------------------------------------------------------------ one queue

    private void ReadQueue(WorkQueueScan report, WorkQueueInfo info, TypeLayout exwq)
    {
        var q = _r.Read(exwq, info.Address);
        if (q.Length < (int)exwq.Size)
            throw new TargetReadException(info.Address + (ulong)q.Length, (int)exwq.Size - q.Length,
                $"nt!_EX_WORK_QUEUE at {Fmt.Addr(info.Address)}: only 0x{q.Length:x} of 0x{exwq.Size:x} bytes readable");
        bool kq = exwq.HasField("WorkerQueue");
        byte[] qb = q.Bytes.ToArray();
        // The queue points back at the node / partition it was found through; anything else is a wrong pointer on the way.
        if (_expectedOwner.TryGetValue(info.Address, out var owner) && q.TryUInt(owner.Field) is { } back && back != owner.Value)
            info.Notes.Add($"_EX_WORK_QUEUE.{owner.Field} is {Fmt.Addr(back)}, not {Fmt.Addr(owner.Value)} it was found through: the pointer to this queue may be wrong");
        string inner = kq ? "WorkerQueue" : "WorkPriQueue";
        info.OwnCount = q.TryUInt(inner + ".Header.SignalState") is { } ss ? (int)(uint)ss : null;
        if (kq)
        {
            info.QueueDepthLastPass = q.TryUInt("QueueDepthLastPass") is { } d ? (long)d : null;
            info.WorkItemsProcessed = q.TryUInt("WorkItemsProcessed") is { } wp ? (long)wp : null;
            var list = new WorkList { Name = info.Name, Head = q.AddressOf("WorkerQueue.EntryListHead") };
            info.Lists.Add(list);
            WalkItems(report, info, list, q.Ptr("WorkerQueue.EntryListHead.Flink"));
        }
        else
        {
            info.WorkItemsProcessed = q.TryUInt("WorkItemsProcessed") is { } wp ? (long)wp : null;
            var (headOff, _) = q.Resolve("WorkPriQueue.EntryListHead");
            int le = 2 * _r.PointerSize;
            for (int p = 0; p < KPriQueueLevels; p++)
            {
                if (report.Interrupted) break;
                ulong head = info.Address + headOff + (ulong)(p * le);
                ulong flink = ReadPtr(qb, (int)headOff + p * le);
                if (flink == head) continue;
                var list = new WorkList { Name = PriorityName(p), Priority = p, Head = head };
                info.Lists.Add(list);
                WalkItems(report, info, list, flink);
            }
        }
        info.Pending = info.Lists.Sum(l => l.Pending);
        info.Complete = info.Lists.All(l => l.Complete);
        if (info.Lists.Any(l => l.Limited))
        {
            // A limited look: the queue's own count stands for the total.
            if (info.OwnCount is { } o && o > info.Pending) info.Pending = o;
        }
        else if (info.OwnCount is { } own)
        {
            info.CountAgrees = own == info.Pending;
            if (!info.CountAgrees.Value)
                info.Notes.Add(info.Complete
                    ? $"the queue's own count (SignalState) is {own:N0} but its list(s) hold {info.Pending:N0} item(s): the count and the list disagree (list corrupted, or the dump was taken while an item was being inserted or removed)"
                    : $"the queue's own count (SignalState) is {own:N0}; {info.Pending:N0} item(s) could be counted on its list(s) (walk incomplete, see the notes)");
        }
        ReadWorkers(report, info, q, kq);
    }

    /// <summary>Priorities of the documented WORK_QUEUE_TYPEs on a _KPRIQUEUE (wdm.h: Critical 13, Delayed 12, HyperCritical
    /// 15, Normal 8, Background 7, RealTime 18, SuperCritical 14).</summary>
    public static string PriorityName(int p) => p switch
    {
        12 => "Delayed WorkQueue (priority 12)",
        13 => "Critical WorkQueue (priority 13)",
        15 => "HyperCritical WorkQueue (priority 15)",
        8 => "Normal WorkQueue (priority 8)",
        7 => "Background WorkQueue (priority 7)",
        18 => "RealTime WorkQueue (priority 18)",
        14 => "SuperCritical WorkQueue (priority 14)",
        _ => $"priority {p}",
    };

    /// <summary>Walks one item list: forward from the head (one read per item), then back from the tail when the forward walk
    /// stopped early. Groups the items by routine (and driver for IO_WORKITEMs).</summary>
    private void WalkItems(WorkQueueScan report, WorkQueueInfo queue, WorkList list, ulong firstFlink)
    {
        var wqi = _r.Types.Get(Nt, "_WORK_QUEUE_ITEM");
        var iow = _r.Types.TryGet(Nt, "_IO_WORKITEM");
        int itemSize = (int)Math.Max(wqi.Size, iow?.Size ?? 0);
        ulong routineOff = wqi.GetField("WorkerRoutine").Offset, paramOff = wqi.GetField("Parameter").Offset;
        ulong? ioRoutineOff = iow?.TryGetField("Routine")?.Offset, ioObjOff = iow?.TryGetField("IoObject")?.Offset, ioCtxOff = iow?.TryGetField("Context")?.Offset;
        var groups = new Dictionary<(ulong, string?), RoutineGroup>();
        var seen = new HashSet<ulong> { list.Head };
        long position = 0;
        var buf = new byte[itemSize];
        // The queue's own count less what its other lists held: the most this list can hold (KQUEUE: exactly its count).
        long? expected = queue.OwnCount is { } own ? Math.Max(0, own - queue.Lists.Where(l => l != list).Sum(l => l.Pending)) : null;
        var ahead = new ItemPageReadAhead(_r, itemSize, (int)routineOff, expected, _itemLimit);

        void Item(ulong item)
        {
            position++;
            ahead.Before(item);
            int got = _r.Memory.Read(item, buf);
            ulong routine = 0, param = 0, ioRoutine = 0, ioObj = 0, ctx = 0;
            if (got >= (int)routineOff + _r.PointerSize) routine = ReadPtr(buf, (int)routineOff);
            if (got >= (int)paramOff + _r.PointerSize) param = ReadPtr(buf, (int)paramOff);
            if (got >= (int)routineOff + _r.PointerSize) ahead.SeenRoutine(routine);
            bool io = _iopProcessWorkItem != 0 && routine == _iopProcessWorkItem && ioRoutineOff is { } ro && got >= (int)ro + _r.PointerSize;
            string? driver = null;
            if (io)
            {
                ioRoutine = ReadPtr(buf, (int)ioRoutineOff!.Value);
                if (ioObjOff is { } oo && got >= (int)oo + _r.PointerSize) ioObj = ReadPtr(buf, (int)oo);
                if (ioCtxOff is { } co && got >= (int)co + _r.PointerSize) ctx = ReadPtr(buf, (int)co);
                driver = DriverOf(ioObj);
            }
            ulong shown = io ? ioRoutine : routine;
            var key = (shown, driver);
            if (!groups.TryGetValue(key, out var g))
            {
                var m = _scan.Symbols.ModuleOf(shown);
                groups[key] = g = new RoutineGroup
                {
                    RoutineAddress = shown, Routine = got == 0 ? "(item not readable)" : shown == 0 ? "(no routine)" : _scan.NameOf(shown),
                    Module = m is null ? null : KernelModules.ShortName(m.Name), Driver = driver, IoWorkItem = io,
                    FirstPosition = position, FirstItem = item,
                };
            }
            g.Count++;
            if (_routineFilter is not null && Matches(g))
            {
                report.MatchingTotal++;
                if (report.MatchingItems.Count < MaxListedItems)
                    report.MatchingItems.Add(new WorkItemInfo
                    {
                        Address = item, Queue = queue.Name, List = list.Name, Position = position, Routine = g.Routine, RoutineAddress = shown,
                        IoWorkItem = io, Parameter = io ? ctx : param, Driver = driver, Irp = IsIrp(io ? ctx : param) ? (io ? ctx : param) : 0,
                    });
            }
        }

        // Forward.
        var walk = new ListWalkResult();
        ulong last = list.Head;
        if (firstFlink != list.Head)
        {
            // The head's Flink was read with the queue: start from it without re-reading the head.
            foreach (var item in WalkFrom(list.Head, firstFlink, walk, seen))
            {
                Item(item);
                last = item;
            }
        }
        else walk.Stop(ListStop.Complete, list.Head);
        list.Pending = position;
        if (walk.StopReason == ListStop.LimitReached && _itemLimit is not null)
        {
            list.Limited = true;
            list.WalkNote = $"{queue.Name}: {list.Name}: the first {position:N0} item(s) examined (!workqueue counts them all)";
        }
        else if (walk.StopReason == ListStop.Interrupted) { report.Interrupted = true; list.Complete = false; list.WalkNote = walk.Describe($"{queue.Name}: {list.Name} item list"); }
        else if (!walk.IsComplete)
        {
            list.Complete = false;
            string fwd = walk.Describe($"{queue.Name}: {list.Name} item list (forward, Flink)");
            // Backward from the tail, up to an item the forward walk already counted.
            long before = position;
            var back = new ListWalkResult();
            foreach (var item in WalkBack(list.Head, back, seen))
            {
                Item(item);
            }
            list.RecoveredFromTail = position - before;
            list.Pending = position;
            string how = back.StopReason switch
            {
                ListStop.Complete => "the backward walk (Blink) met the forward walk: every item between is counted, except the one(s) at the break",
                ListStop.Interrupted => "the backward walk was interrupted by user",
                _ => back.Describe("the backward walk (Blink)"),
            };
            if (back.StopReason == ListStop.Interrupted) report.Interrupted = true;
            list.WalkNote = $"{fwd}; {list.RecoveredFromTail:N0} more item(s) counted back from the tail ({how})";
        }
        foreach (var g in groups.Values.OrderByDescending(g => g.Count).ThenBy(g => g.FirstPosition)) list.Groups.Add(g);
    }

    /// <summary>The item walks ask the engine for Ctrl+Break once every <c>PollMask + 1</c> items (each ask is a call into
    /// the engine: once per item it cost more CPU than the walk itself on an 18,000-item queue), and again whenever a read
    /// fails, since the engine fails reads while an interrupt is pending: such a stop is the interrupt, not the memory.</summary>
    private const int PollMask = 63;

    private ListStop UnreadableOrInterrupted() => _r.Memory.IsInterruptRequested ? ListStop.Interrupted : ListStop.Unreadable;

    /// <summary><see cref="KernelReader.WalkList"/> with the head's Flink already known.</summary>
    private IEnumerable<ulong> WalkFrom(ulong head, ulong first, ListWalkResult result, HashSet<ulong> seen)
    {
        ulong n = first;
        while (true)
        {
            if ((result.Count & PollMask) == 0 && _r.Memory.IsInterruptRequested) { result.Stop(ListStop.Interrupted, n); yield break; }
            if (n == head) { result.Stop(ListStop.Complete, n); yield break; }
            if (n == 0) { result.Stop(ListStop.NullLink, n); yield break; }
            if (!seen.Add(n)) { result.Stop(ListStop.Cycle, n); yield break; }
            if (result.Count >= (_itemLimit ?? MaxItemsPerList)) { result.Stop(ListStop.LimitReached, n); yield break; }
            result.Count++;
            yield return n;
            if (!_r.Memory.TryReadPointer(n, out var next)) { result.Stop(UnreadableOrInterrupted(), n); yield break; }
            n = next;
        }
    }

    /// <summary>Walks Blink from the head's tail until it meets an entry already seen (the forward walk's), bounded.</summary>
    private IEnumerable<ulong> WalkBack(ulong head, ListWalkResult result, HashSet<ulong> seen)
    {
        int ps = _r.PointerSize;
        if (!_r.Memory.TryReadPointer(head + (ulong)ps, out var n)) { result.Stop(ListStop.Unreadable, head + (ulong)ps); yield break; }
        while (true)
        {
            if ((result.Count & PollMask) == 0 && _r.Memory.IsInterruptRequested) { result.Stop(ListStop.Interrupted, n); yield break; }
            if (n == head || seen.Contains(n)) { result.Stop(ListStop.Complete, n); yield break; }
            if (n == 0) { result.Stop(ListStop.NullLink, n); yield break; }
            if (result.Count >= MaxItemsPerList) { result.Stop(ListStop.LimitReached, n); yield break; }
            seen.Add(n);
            result.Count++;
            yield return n;
            if (!_r.Memory.TryReadPointer(n + (ulong)ps, out var prev)) { result.Stop(UnreadableOrInterrupted(), n + (ulong)ps); yield break; }
            n = prev;
        }
    }

    private bool Matches(RoutineGroup g)
    {
        if (_routineFilterAddress is { } a && a != 0 && g.RoutineAddress == a) return true;
        string f = _routineFilter!;
        if (f.EndsWith('!')) return g.Routine.StartsWith(f, StringComparison.OrdinalIgnoreCase) || (g.Module?.Equals(f[..^1], StringComparison.OrdinalIgnoreCase) ?? false);
        string name = g.Routine;
        int plus = name.IndexOf('+');
        string bare = plus > 0 ? name[..plus] : name;
        if (bare.Equals(f, StringComparison.OrdinalIgnoreCase)) return true;
        int bang = bare.IndexOf('!');
        return !f.Contains('!') && bang >= 0 && bare[(bang + 1)..].Equals(f, StringComparison.OrdinalIgnoreCase);
    }

    private bool IsIrp(ulong a)
    {
        if (a == 0 || _r.Memory.ReadExact(a, 2) is not { } b) return false;
        return BinaryPrimitives.ReadUInt16LittleEndian(b) == 6; // IO_TYPE_IRP
    }

    /// <summary>The driver name of an IO_WORKITEM's IoObject: a device object's driver, or the driver object itself.</summary>
    private string? DriverOf(ulong ioObject)
    {
        if (ioObject == 0) return null;
        if (_drivers.TryGetValue(ioObject, out var d)) return d;
        d = null;
        var dev = _r.Types.Get(Nt, "_DEVICE_OBJECT");
        var b = _r.Memory.ReadExact(ioObject, (int)dev.GetField("DriverObject").Offset + _r.PointerSize);
        if (b is not null)
        {
            int type = BinaryPrimitives.ReadInt16LittleEndian(b);
            ulong drv = type == 3 ? ReadPtr(b, (int)dev.GetField("DriverObject").Offset) : type == 4 ? ioObject : 0;
            if (drv != 0) d = DriverName(drv);
            else d = $"(IoObject {Fmt.Addr(ioObject)}: type {type}, not a device or driver)";
        }
        else d = $"(IoObject {Fmt.Addr(ioObject)} not readable)";
        _drivers[ioObject] = d;
        return d;
    }

    private string DriverName(ulong driver) => _driverNames.Name(driver) ?? $"(driver {Fmt.Addr(driver)}: name not readable)";

    // ------------------------------------------------------------------ workers

    private void ReadWorkers(WorkQueueScan report, WorkQueueInfo info, StructView q, bool kq)
    {
        var w = info.Workers;
        string inner = kq ? "WorkerQueue" : "WorkPriQueue";
        w.ThreadListHead = q.AddressOf(inner + ".ThreadListHead");
        var threads = new List<ulong>();
        var walk = new ListWalkResult();
        foreach (var t in _r.WalkRecords(w.ThreadListHead, Nt, "_KTHREAD", "QueueListEntry", walk, MaxWorkersPerQueue)) threads.Add(t);
        if (walk.StopReason == ListStop.Interrupted) report.Interrupted = true;
        if (!walk.IsComplete) w.WalkNote = walk.Describe($"{info.Name}: worker thread list");
        w.Total = threads.Count;
        if (kq)
        {
            if (q.TryUInt("DynamicThreadCount") is { } dyn)
            {
                w.Dynamic = (int)dyn;
                w.Static = Math.Max(0, w.Total - w.Dynamic.Value);
                w.Maximum = Win7MaxDynamicThreads;
                w.MaximumOf = "dynamic";
                w.MaximumSource = "the Windows 7 / 2008 R2 kernel's fixed limit of dynamic worker threads per queue";
            }
        }
        else
        {
            int? count = q.TryUInt("ThreadCount") is { } tc ? (int)tc : null;
            int? min = q.TryUInt("MinThreads") is { } mt ? (int)mt : null;
            int? max = q.TryUInt("MaxThreads") is { } xt ? (int)xt : null;
            if (min is not null) { w.Static = min; w.Dynamic = Math.Max(0, (count ?? w.Total) - min.Value); }
            if (max is not null) { w.Maximum = max; w.MaximumOf = "threads"; w.MaximumSource = "_EX_WORK_QUEUE.MaxThreads"; }
            if (count is not null && count.Value != w.Total)
                info.Notes.Add($"_EX_WORK_QUEUE.ThreadCount is {count.Value} but {w.Total} thread(s) are on its thread list");
        }

        var groups = new Dictionary<string, WorkerGroup>();
        foreach (var t in threads)
        {
            if (_r.Memory.IsInterruptRequested) { report.Interrupted = true; break; }
            KernelThread? k;
            try { k = _threads.Read(t, out var notThread); if (k is null) { info.Notes.Add($"worker thread list entry: {notThread}"); continue; } }
            catch (TargetReadException ex) { info.Notes.Add($"worker thread {Fmt.Addr(t)}: {ex.Message}"); continue; }
            if (k.IsWaiting && k.WaitReasonCode == WrQueue) { w.Idle++; continue; }
            w.Busy++;
            var wt = new WorkerThread { Address = t, Cid = k.Cid };
            string stateText;
            if (k.IsWaiting)
            {
                string objType = "";
                try
                {
                    var objs = WaitBlocks.Objects(_r, k);
                    if (objs.Count > 0) { wt.WaitObject = objs[0].Address; objType = objs[0].Type; }
                }
                catch (TargetReadException) { objType = "an unreadable wait block"; }
                stateText = $"waits {k.WaitReason} ({k.WaitMode}){(objType.Length > 0 ? " on " + objType : "")}";
                wt.WaitSeconds = _clock?.SecondsSince(k.WaitTick);
            }
            else stateText = $"is {k.State}";
            var stack = _scan.Scan(k.View.TryUInt("Tcb.KernelStack") ?? 0, k.View.TryUInt("Tcb.InitialStack") ?? 0);
            string key = stateText + "#" + stack.Key + "#" + (stack.Frames.Count == 0 ? stack.Note : "");
            if (!groups.TryGetValue(key, out var g))
            {
                g = new WorkerGroup { State = stateText, StackNote = stack.Note };
                g.Frames.AddRange(stack.Frames.Select(f => f.Name));
                var outside = stack.Frames.Where(f => !KernelModules.IsKernel(f.Module)).ToList();
                if (outside.Count > 0)
                {
                    g.BlockedIn = outside[0].Module;
                    g.CalledFrom = outside.FirstOrDefault(f => !f.Module.Equals(outside[0].Module, StringComparison.OrdinalIgnoreCase))?.Name;
                }
                groups[key] = g;
            }
            g.Count++;
            g.Threads.Add(wt);
        }
        foreach (var g in groups.Values.OrderByDescending(g => g.Count))
        {
            var longest = g.Threads.Max(x => x.WaitSeconds);
            if (longest is { } s) g.LongestWait = Fmt.Duration(TimeSpan.FromSeconds(s));
            w.Groups.Add(g);
        }
    }

    // ------------------------------------------------------------------ verdicts

    private static void Verdicts(WorkQueueScan report)
    {
        var lists = report.Queues.SelectMany(q => q.Lists.Select(l => (Queue: q, List: l))).Where(x => x.List.Pending > 0)
            .OrderByDescending(x => x.List.Pending).ToList();
        if (lists.Count == 0)
        {
            int unread = report.Queues.Count(q => !q.Complete && q.Lists.Count == 0);
            report.Verdicts.Add(report.Queues.Count == 0 ? "no system work queue found (see the notes)"
                : unread == report.Queues.Count ? "no work queue could be read (see the notes)"
                : unread > 0 ? $"no readable work queue has pending items ({unread} of {report.Queues.Count} not readable)"
                : "no work queue has pending items");
            return;
        }
        foreach (var (q, l) in lists)
        {
            var w = q.Workers;
            bool starved = w.Idle == 0;
            if (starved) report.Starved = true;
            string where = q.Node is null ? l.Name : $"{l.Name}, {q.Name}";
            string groups = string.Join(", ", l.Groups.Take(3).Select(g => $"{g.Count:N0} {g.Routine}"));
            long rest = l.Pending - l.Groups.Take(3).Sum(g => g.Count);
            if (rest > 0) groups += $", {rest:N0} other";
            string count = l.Limited
                ? $"{q.Pending:N0} item(s) pending on the queue (the first {l.Pending:N0}: {groups})"
                : $"{l.Pending:N0}{(l.Complete ? "" : "+")} item(s) pending ({groups})";
            string workers;
            if (w.Total == 0) workers = "no worker thread on its thread list";
            else if (!starved) workers = $"{w.Idle} of {w.Total} worker(s) idle";
            else
            {
                string dyn = w.Composition() is { Length: > 0 } c ? $" ({c})" : "";
                var top = w.Groups.FirstOrDefault();
                string where2 = top?.BlockedIn is { } bi ? $" blocked in {bi}{(top.CalledFrom is { } cf ? $" (called from {cf})" : "")}" : top is not null ? " busy" : "";
                string share = top is not null && top.Count < w.Busy ? $"; {top.Count} of them" + where2 : where2;
                workers = top is not null && top.Count == w.Busy ? $"all {w.Total} worker(s){dyn}{where2}" : $"all {w.Total} worker(s){dyn} busy{share}";
            }
            report.Verdicts.Add(starved ? $"{where} starved: {count}; {workers}" : $"{where}: {count}; {workers}");
        }
    }

    // ------------------------------------------------------------------ names and small readers

    private ulong ReadPtr(byte[] b, int off) => _r.PointerAt(b, off);
}
