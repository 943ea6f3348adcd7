using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Kernel;

/// <summary>What <see cref="SystemWorkQueues"/> read: every system work queue of the build, its pending items and its workers.</summary>
public class WorkQueueScan
{
    public int Build { get; set; }
    /// <summary>How the build keeps its queues: "ExWorkerQueue" (_EX_WORK_QUEUE array with a _KQUEUE: Windows 7 / 2008 R2),
    /// "KeNodeBlock" (per NUMA node _ENODE.ExWorkQueues, _KPRIQUEUE: 8.1 to 1803), "PspSystemPartition" (_EX_PARTITION
    /// WorkQueues[node][pool], _KPRIQUEUE: 1809 and later).</summary>
    public string Shape { get; set; } = "";
    /// <summary>Where the shape was found (symbols and types used), for the reader who wants to check by hand.</summary>
    public string ShapeSource { get; set; } = "";
    public List<WorkQueueInfo> Queues { get; } = new();
    /// <summary>Total items counted on every queue's lists.</summary>
    public long TotalPending { get; set; }
    /// <summary>One line per starved or backed-up list, worst first; "no work queue has pending items" when all are empty.</summary>
    public List<string> Verdicts { get; } = new();
    /// <summary>True when a list has pending items and none of its queue's workers is free to take them.</summary>
    public bool Starved { get; set; }
    /// <summary>-routine: the filter and the matching items (at most <see cref="SystemWorkQueues.MaxListedItems"/> listed).</summary>
    public string? RoutineFilter { get; set; }
    public int MatchingTotal { get; set; }
    public List<WorkItemInfo> MatchingItems { get; } = new();
    public bool Interrupted { get; set; }
    /// <summary>Set when the item walks were limited (a chain command looks only at the head of each list): the counts are
    /// then the queues' own counts, and the groups describe the first <see cref="ItemsExaminedPerList"/> items.</summary>
    public int? ItemsExaminedPerList { get; set; }
    public List<string> Notes { get; } = new();
}

public sealed class WorkQueueInfo
{
    /// <summary>"Delayed WorkQueue" (Windows 7) or "node 0 pool 0" (8.1+: _ENODE.ExWorkQueues[0] / _EX_PARTITION.WorkQueues[0][0]).</summary>
    public string Name { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public int? Node { get; set; }
    public int? Pool { get; set; }
    /// <summary>The queue's own count of queued entries (its dispatcher header's SignalState).</summary>
    public long? OwnCount { get; set; }
    /// <summary>Windows 7: _EX_WORK_QUEUE.QueueDepthLastPass (the depth the balance manager saw on its last pass).</summary>
    public long? QueueDepthLastPass { get; set; }
    public long? WorkItemsProcessed { get; set; }
    /// <summary>Items counted on the queue's lists.</summary>
    public long Pending { get; set; }
    /// <summary>True when every list was walked to its end.</summary>
    public bool Complete { get; set; } = true;
    /// <summary>Null when the own count is unknown; else whether it equals the items counted (only meaningful when complete).</summary>
    public bool? CountAgrees { get; set; }
    public List<WorkList> Lists { get; } = new();
    public WorkerSummary Workers { get; set; } = new();
    public List<string> Notes { get; } = new();
}

/// <summary>One list of pending items: the queue's only list (_KQUEUE) or one priority of a _KPRIQUEUE.</summary>
public sealed class WorkList
{
    /// <summary>"Delayed WorkQueue", "Delayed WorkQueue (priority 12)", "priority 9".</summary>
    public string Name { get; set; } = "";
    public int? Priority { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Head { get; set; }
    public long Pending { get; set; }
    public bool Complete { get; set; } = true;
    /// <summary>The walk stopped at the caller's item limit (not at the end of the list): <see cref="Pending"/> is the number examined.</summary>
    public bool Limited { get; set; }
    /// <summary>Items found walking back from the tail (Blink) after the forward walk stopped early.</summary>
    public long RecoveredFromTail { get; set; }
    public string? WalkNote { get; set; }
    /// <summary>Items grouped by what they will run, largest first.</summary>
    public List<RoutineGroup> Groups { get; } = new();
}

public sealed class RoutineGroup
{
    /// <summary>What the item runs: WORK_QUEUE_ITEM.WorkerRoutine, or for an IO_WORKITEM (WorkerRoutine nt!IopProcessWorkItem)
    /// its own Routine.</summary>
    public string Routine { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong RoutineAddress { get; set; }
    public string? Module { get; set; }
    /// <summary>IO_WORKITEM: the driver of its IoObject (device object's driver, or the driver object itself).</summary>
    public string? Driver { get; set; }
    public bool IoWorkItem { get; set; }
    public long Count { get; set; }
    /// <summary>1-based position of the first such item in its list (how far back in the backlog it sits).</summary>
    public long FirstPosition { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong FirstItem { get; set; }
}

public sealed class WorkerSummary
{
    [JsonConverter(typeof(HexConverter))] public ulong ThreadListHead { get; set; }
    public int Total { get; set; }
    public int? Static { get; set; }
    public int? Dynamic { get; set; }
    /// <summary>Most dynamic threads (Windows 7: the kernel's fixed 16) or most threads (8.1+: MaxThreads).</summary>
    public int? Maximum { get; set; }
    /// <summary>What <see cref="Maximum"/> counts: "dynamic" (Windows 7) or "threads" (8.1+).</summary>
    public string? MaximumOf { get; set; }
    public string? MaximumSource { get; set; }
    /// <summary>Threads waiting on the queue itself (WrQueue): free to take an item.</summary>
    public int Idle { get; set; }
    public int Busy { get; set; }
    public string? WalkNote { get; set; }
    /// <summary>Busy workers folded by identical stack.</summary>
    public List<WorkerGroup> Groups { get; } = new();

    /// <summary>"4 static + 16 dynamic, dynamic at the maximum of 16" / "4 static + 16 dynamic, at the maximum of 20"; "" when unknown.</summary>
    public string Composition()
    {
        if (Dynamic is not { } d) return "";
        string s = $"{Static} static + {d} dynamic";
        if (Maximum is { } mx)
            s += MaximumOf == "dynamic" ? (d >= mx ? $", dynamic at the maximum of {mx}" : $", at most {mx} dynamic")
                : Total >= mx ? $", at the maximum of {mx}" : $", at most {mx}";
        return s;
    }
}

public sealed class WorkerGroup
{
    public int Count { get; set; }
    /// <summary>Innermost module that is not the kernel's own (where the thread is stuck), e.g. "MyBadDSM".</summary>
    public string? BlockedIn { get; set; }
    /// <summary>The next outer frame in another non-kernel module (who called it), e.g. "mpio!MPIOPathVerify+0x14b".</summary>
    public string? CalledFrom { get; set; }
    /// <summary>"Executive (KernelMode) on SynchronizationEvent" or the thread state.</summary>
    public string State { get; set; } = "";
    public List<string> Frames { get; } = new();
    public List<WorkerThread> Threads { get; } = new();
    public string? StackNote { get; set; }
    /// <summary>Longest wait of the group (h:mm:ss), when the clock is known.</summary>
    public string? LongestWait { get; set; }
}

public sealed class WorkItemInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public string Queue { get; set; } = "";
    public string List { get; set; } = "";
    public long Position { get; set; }
    public string Routine { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong RoutineAddress { get; set; }
    public bool IoWorkItem { get; set; }
    /// <summary>WORK_QUEUE_ITEM.Parameter, or the IO_WORKITEM's Context.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong Parameter { get; set; }
    public string? Driver { get; set; }
    /// <summary>The parameter/context when it is an IRP (IO_TYPE_IRP at its start); 0 otherwise.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong Irp { get; set; }
}

public sealed class WorkerThread
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    /// <summary>"4.44" (process id.thread id, hex).</summary>
    public string Cid { get; set; } = "";
    public double? WaitSeconds { get; set; }
    /// <summary>The object of its first wait block.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong WaitObject { get; set; }
}
