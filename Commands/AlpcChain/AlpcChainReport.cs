using System.Text.Json.Serialization;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.AlpcChain;

/// <summary>The result of one !alpcchain run: one or more chains (merged for -p / -all), notes and read figures.</summary>
public sealed class AlpcChainReport
{
    /// <summary>"thread", "process" or "all".</summary>
    public string Mode { get; set; } = "thread";
    [JsonConverter(typeof(HexConverter))] public ulong Start { get; set; }
    public int Build { get; set; }
    /// <summary>Length of one clock tick in 100 ns units (KeMaximumIncrement); 0 when unknown.</summary>
    public uint TickIncrement { get; set; }
    public string TickSource { get; set; } = "";
    public uint CurrentTick { get; set; }
    public List<AlpcWaitChain> Chains { get; set; } = new();
    /// <summary>Set when the starting thread is not waiting on ALPC / not a thread: one clear line.</summary>
    public string? Problem { get; set; }
    public AlpcThread? StartThread { get; set; }
    public List<string> Notes { get; set; } = new();
    public int ThreadsExamined { get; set; }
    public bool Interrupted { get; set; }
    public AlpcReadFigures? Reads { get; set; }
}

public sealed class AlpcReadFigures
{
    /// <summary>Everything after the one-time setup reads.</summary>
    public long RoundTrips { get; set; }
    public long Bytes { get; set; }
    /// <summary>One-time reads (the clock).</summary>
    public long SetupRoundTrips { get; set; }
    public long SetupBytes { get; set; }
    public int Hops { get; set; }
    /// <summary>Reads of the hops themselves (thread, process, message, port, server thread; inference included).</summary>
    public long HopRoundTrips { get; set; }
    public long HopBytes { get; set; }
    /// <summary>Reads for the blocker's details (IRPs, stack locations, devices, drivers, file names, wait objects).</summary>
    public long BlockerRoundTrips { get; set; }
    public long BlockerBytes { get; set; }
    /// <summary>Reads past the blocker: the system work queues (headers, the head of a starved list, its workers' stacks).</summary>
    public long WorkQueueRoundTrips { get; set; }
    public long WorkQueueBytes { get; set; }
    public double RoundTripsPerHop => Hops == 0 ? 0 : Math.Round((double)HopRoundTrips / Hops, 2);
    public double BytesPerHop => Hops == 0 ? 0 : Math.Round((double)HopBytes / Hops, 0);
    public double ModelledKdnetSeconds { get; set; }
}

public enum ChainEnd
{
    /// <summary>The last thread waits on something other than ALPC: it is the blocker.</summary>
    Blocker,
    /// <summary>The message has no server thread: the server process is not receiving.</summary>
    ServerNotReceiving,
    /// <summary>The chain comes back to a thread seen before.</summary>
    Deadlock,
    /// <summary>Memory needed for the next hop was not readable.</summary>
    Unreadable,
    /// <summary>The hop limit was reached.</summary>
    HopLimit,
    Interrupted,
}

public sealed class AlpcWaitChain
{
    public List<AlpcHop> Hops { get; set; } = new();
    public ChainEnd End { get; set; }
    public AlpcThread? Blocker { get; set; }
    /// <summary>ServerNotReceiving: the process/port that does not take the message.</summary>
    public AlpcPortInfo? IdlePort { get; set; }
    /// <summary>Deadlock: the threads of the cycle.</summary>
    public List<AlpcThread> CycleMembers { get; set; } = new();
    /// <summary>Number of waiting threads (from -p/-all) whose chains merged into this one.</summary>
    public int Waiters { get; set; } = 1;
    [JsonConverter(typeof(HexListConverter))] public List<ulong> WaiterThreads { get; set; } = new();
    public List<string> Notes { get; set; } = new();
    public string Summary { get; set; } = "";
    public long BlockerRoundTrips { get; set; }
    public long BlockerBytes { get; set; }
    /// <summary>Where the chain goes past the blocker: the starved system work queue its I/O waits behind (or the queue
    /// of a blocker that is itself a system worker thread).</summary>
    public AlpcWorkQueueEnd? WorkQueue { get; set; }
    public long WorkQueueRoundTrips { get; set; }
    public long WorkQueueBytes { get; set; }
}

/// <summary>The chain's last step: a system work queue, its backlog and what its workers are blocked in.</summary>
public sealed class AlpcWorkQueueEnd
{
    /// <summary>Why the chain went on into the work queues.</summary>
    public string Why { get; set; } = "";
    /// <summary>"Delayed WorkQueue" or "Delayed WorkQueue (priority 12), node 0 pool 0".</summary>
    public string Queue { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong QueueAddress { get; set; }
    public bool Starved { get; set; }
    /// <summary>Items pending on the queue (its own count when only the head of the list was examined).</summary>
    public long Pending { get; set; }
    /// <summary>Items examined from the head of the list (bounded; !workqueue reads them all).</summary>
    public long Examined { get; set; }
    /// <summary>The examined items by routine, largest first: "1,000 mpio!MPIOPathVerify [\Driver\mpio]".</summary>
    public List<AlpcQueuedWork> Routines { get; set; } = new();
    /// <summary>Items of the drivers the blocker's IRPs are pending on (their position in the backlog).</summary>
    public List<AlpcQueuedWork> BlockerDriverItems { get; set; } = new();
    public int Workers { get; set; }
    public int IdleWorkers { get; set; }
    public int? DynamicWorkers { get; set; }
    public int? StaticWorkers { get; set; }
    public int? MaximumWorkers { get; set; }
    public string? MaximumOf { get; set; }
    /// <summary>Where the largest group of busy workers is stuck (module), and who called it.</summary>
    public string? BlockedIn { get; set; }
    public string? CalledFrom { get; set; }
    public int BlockedInCount { get; set; }
    public string? WorkerState { get; set; }
    public List<string> WorkerFrames { get; set; } = new();
    [JsonConverter(typeof(HexListConverter))] public List<ulong> WorkerThreads { get; set; } = new();
    public string Verdict { get; set; } = "";
    public List<string> Notes { get; set; } = new();
}

public sealed class AlpcQueuedWork
{
    public string Routine { get; set; } = "";
    public string? Driver { get; set; }
    public long Count { get; set; }
    public long FirstPosition { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong FirstItem { get; set; }
}

/// <summary>One hop: a thread that waits for a reply to an ALPC message, the message, its port and the server thread.</summary>
public sealed class AlpcHop
{
    public AlpcThread Waiter { get; set; } = new();
    public AlpcMessageInfo? Message { get; set; }
    public AlpcPortInfo? QueuePort { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong ServerThread { get; set; }
    /// <summary>How the next hop was chosen: "direct" (the server thread itself waits on ALPC), "inferred", or "end".</summary>
    public string Next { get; set; } = "end";
    /// <summary>For an inferred next hop: the server thread's own (non-ALPC) state and why we looked elsewhere.</summary>
    public AlpcThread? ServerThreadState { get; set; }
    public string? Inference { get; set; }
    public long RoundTrips { get; set; }
    public long Bytes { get; set; }
}

public sealed class AlpcThread
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Process { get; set; }
    public string Image { get; set; } = "";
    public ulong Pid { get; set; }
    public ulong Tid { get; set; }
    public string State { get; set; } = "";
    public int WaitReasonCode { get; set; }
    public string WaitReason { get; set; } = "";
    public string WaitMode { get; set; } = "";
    public uint WaitTick { get; set; }
    public uint Ticks { get; set; }
    /// <summary>h:mm:ss, or null when the tick length is unknown.</summary>
    public string? WaitTime { get; set; }
    public double? WaitSeconds { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong AlpcMessage { get; set; }
    public ulong AlpcMessageId { get; set; }
    public List<AlpcWaitObject> WaitObjects { get; set; } = new();
    public List<AlpcIrp> Irps { get; set; } = new();
    public bool IrpListPartial { get; set; }

    [JsonIgnore] public bool WaitsForAlpcReply => State == "Waiting" && WaitReasonCode == KernelEnums.WrLpcReply && AlpcMessage != 0;
    [JsonIgnore] public string Cid => $"{Pid:x}.{Tid:x}";
}

public sealed class AlpcWaitObject
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public string Type { get; set; } = "";
}

public sealed class AlpcIrp
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public int StackCount { get; set; }
    public int CurrentLocation { get; set; }
    public int MajorFunction { get; set; }
    public int MinorFunction { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Device { get; set; }
    public string? Driver { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong FileObject { get; set; }
    public string? FileName { get; set; }
    public string? Note { get; set; }
}

public sealed class AlpcMessageInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public uint MessageId { get; set; }
    public uint CallbackId { get; set; }
    public int Sequence { get; set; }
    public int TypeCode { get; set; }
    public string Type { get; set; } = "";
    public int DataLength { get; set; }
    public int TotalLength { get; set; }
    public string QueueType { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong WaitingThread { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong OwnerPort { get; set; }
}

public sealed class AlpcPortInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong OwnerProcess { get; set; }
    public string? OwnerImage { get; set; }
    public ulong OwnerPid { get; set; }
    public uint? MainQueueLength { get; set; }
    public uint? PendingQueueLength { get; set; }
}

/// <summary>Names of kernel enumerations the chain prints. These values are architectural (identical in every
/// symbol table from Windows 7 to 11; the unit tests check them against the tables).</summary>
public static class AlpcNames
{
    /// <summary>LPC/ALPC message types (PORT_MESSAGE.u2.s2.Type &amp; 0xff).</summary>
    public static string MessageType(int type) => (type & 0xff) switch
    {
        1 => "LPC_REQUEST", 2 => "LPC_REPLY", 3 => "LPC_DATAGRAM", 4 => "LPC_LOST_REPLY", 5 => "LPC_PORT_CLOSED",
        6 => "LPC_CLIENT_DIED", 7 => "LPC_EXCEPTION", 8 => "LPC_DEBUG_EVENT", 9 => "LPC_ERROR_EVENT",
        10 => "LPC_CONNECTION_REQUEST", 11 => "ALPC_REQUEST", 12 => "ALPC_CONNECTION_REQUEST",
        _ => $"type 0x{type:x}",
    };

    public static string QueueType(ulong q) => q switch
    {
        0 => "ALPC_MSGQUEUE_NONE", 1 => "ALPC_MSGQUEUE_MAIN", 2 => "ALPC_MSGQUEUE_PENDING", 3 => "ALPC_MSGQUEUE_LARGE",
        _ => $"queue {q}",
    };
}
