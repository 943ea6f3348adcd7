namespace NtSleuth.Commands.Kernel;

/// <summary>
/// Kernel enumerations as the debugger names them (<c>!thread</c>, <c>dt nt!_KTHREAD_STATE</c>, <c>_KWAIT_REASON</c>,
/// <c>_KOBJECTS</c>). The codes are stable across the builds the commands support (Windows 7 .. 11); the lab writes
/// them from the same symbol tables and a unit test checks every name against the forged enums.
/// </summary>
public static class KernelEnums
{
    /// <summary>_KOBJECTS: dispatcher header Type of a process.</summary>
    public const int ProcessObject = 3;
    /// <summary>_KOBJECTS: dispatcher header Type of a thread.</summary>
    public const int ThreadObject = 6;
    /// <summary>_KTHREAD_STATE.Waiting.</summary>
    public const int Waiting = 5;
    /// <summary>_KWAIT_REASON.WrLpcReceive: a server thread waiting for the next request.</summary>
    public const int WrLpcReceive = 16;
    /// <summary>_KWAIT_REASON.WrLpcReply: a client thread waiting for an (A)LPC reply.</summary>
    public const int WrLpcReply = 17;

    private static readonly string[] WaitReasons =
    [
        "Executive", "FreePage", "PageIn", "PoolAllocation", "DelayExecution", "Suspended", "UserRequest",
        "WrExecutive", "WrFreePage", "WrPageIn", "WrPoolAllocation", "WrDelayExecution", "WrSuspended",
        "WrUserRequest", "WrEventPair", "WrQueue", "WrLpcReceive", "WrLpcReply", "WrVirtualMemory", "WrPageOut",
        "WrRendezvous", "WrKeyedEvent", "WrTerminated", "WrProcessInSwap", "WrCpuRateControl", "WrCalloutStack",
        "WrKernel", "WrResource", "WrPushLock", "WrMutex", "WrQuantumEnd", "WrDispatchInt", "WrPreempted",
        "WrYieldExecution", "WrFastMutex", "WrGuardedMutex", "WrRundown", "WrAlertByThreadId", "WrDeferredPreempt",
        "WrPhysicalFault", "WrIoRing",
    ];

    /// <summary>_KWAIT_REASON name of <paramref name="code"/> (<c>WaitReason{n}</c> when unknown).</summary>
    public static string WaitReason(int code) => code >= 0 && code < WaitReasons.Length ? WaitReasons[code] : $"WaitReason{code}";

    private static readonly string[] States =
        ["Initialized", "Ready", "Running", "Standby", "Terminated", "Waiting", "Transition", "DeferredReady", "GateWaitObsolete", "WaitingForProcessInSwap"];

    /// <summary>_KTHREAD_STATE name of <paramref name="code"/> (<c>State{n}</c> when unknown).</summary>
    public static string ThreadState(int code) => code >= 0 && code < States.Length ? States[code] : $"State{code}";

    /// <summary>_KOBJECTS names as !thread prints them for wait objects.</summary>
    public static string ObjectType(int type) => type switch
    {
        0 => "NotificationEvent", 1 => "SynchronizationEvent", 2 => "Mutant", 3 => "ProcessObject", 4 => "QueueObject",
        5 => "Semaphore", 6 => "ThreadObject", 7 => "GateObject", 8 => "NotificationTimer", 9 => "SynchronizationTimer",
        _ => $"Object type {type}",
    };

    /// <summary>KPROCESSOR_MODE: 0 KernelMode, otherwise UserMode.</summary>
    public static string ProcessorMode(int mode) => mode == 0 ? "KernelMode" : "UserMode";
}
