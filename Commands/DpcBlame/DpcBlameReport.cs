using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.DpcBlame;

public sealed class DpcBugCheck
{
    [JsonConverter(typeof(HexConverter))] public ulong Code { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong P1 { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong P2 { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong P3 { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong P4 { get; set; }
    public bool IsDpcWatchdog { get; set; }
    /// <summary>"single" (p1 = 0), "cumulative" (p1 = 1), or null.</summary>
    public string? Kind { get; set; }
    public ulong? TicksTaken { get; set; }
    public ulong? TickLimit { get; set; }
    public ulong? WatchdogPeriod { get; set; }
    /// <summary>Address of the DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK: parameter 3 when P1 = 1, parameter 4 when P1 = 0 (0 = none).</summary>
    [JsonConverter(typeof(HexConverter))] public ulong TriageBlock { get; set; }
    /// <summary>The triage block decoded from its documented layout (wdm.h), or null when there is none.</summary>
    public DpcTriageBlock? Triage { get; set; }
    public string Meaning { get; set; } = "";
}

/// <summary>
/// DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK as wdm.h declares it: ULONG Signature (+0x0, 0xAEBECEDE), USHORT Revision (+0x4),
/// USHORT Size (+0x6), USHORT DpcWatchdogProfileOffset (+0x8), ULONG DpcWatchdogProfileLength (+0xC). The type is not
/// in the kernel's public symbols, so it is decoded from that layout.
/// </summary>
public sealed class DpcTriageBlock
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    /// <summary>"parameter 3" or "parameter 4".</summary>
    public string From { get; set; } = "";
    public bool Readable { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Signature { get; set; }
    public bool SignatureValid { get; set; }
    public uint Revision { get; set; }
    public uint Size { get; set; }
    /// <summary>Offset in the KPRCB of the pointer to the processor's DPC watchdog profile.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong DpcWatchdogProfileOffset { get; set; }
    public uint DpcWatchdogProfileLength { get; set; }
    /// <summary>True when the address is nt!KeDpcWatchdogProfileGlobalTriageBlock (null when the symbol is absent).</summary>
    public bool? IsKernelGlobal { get; set; }
    /// <summary>True when DpcWatchdogProfileOffset equals the symbols' _KPRCB.DpcWatchdogProfile offset (null when the field is absent).</summary>
    public bool? OffsetMatchesSymbols { get; set; }
    public List<string> Notes { get; } = new();
}

/// <summary>One row of the watchdog-profile histogram: the innermost frame outside nt/hal of each captured stack, by routine.</summary>
public sealed class ProfileHistogramRow
{
    public string Module { get; set; } = "";
    /// <summary>module!routine (no displacement), or module+0xrva without symbols.</summary>
    public string Routine { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public int Samples { get; set; }
    public double Share { get; set; }
    public List<int> Cpus { get; } = new();
}

/// <summary>A processor's DPC watchdog profile (_KPRCB.DpcWatchdogProfile .. DpcWatchdogProfileCurrentEmptyCapture).</summary>
public sealed class DpcWatchdogProfile
{
    public int Cpu { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Buffer { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong CurrentEmptyCapture { get; set; }
    /// <summary>Bytes between the buffer and the next empty capture (what was captured so far).</summary>
    public long FilledBytes { get; set; }
    /// <summary>Capacity in bytes when the build says (KeDpcWatchdogProfileBufferSizeBytes, KiDpcWatchdogProfileArrayLength, the triage block).</summary>
    public long? CapacityBytes { get; set; }
    public string? CapacitySource { get; set; }
    /// <summary>Captured stacks found (runs of code addresses).</summary>
    public int Captures { get; set; }
    /// <summary>Captures whose frames are all in nt/hal.</summary>
    public int KernelOnlyCaptures { get; set; }
    /// <summary>"ok", "empty", "missing" (not in the dump / unreadable), "corrupt".</summary>
    public string State { get; set; } = "ok";
    public string? Note { get; set; }
}

/// <summary>
/// _KPRCB.DpcRuntimeHistoryHashTable (19041+): an _RTL_HASH_TABLE of _RTL_HASH_ENTRY. The record around each entry (the
/// runtime figures) is in no public symbol file: only the keys are read, and named when they are code addresses.
/// </summary>
public sealed class DpcRuntimeHistory
{
    [JsonConverter(typeof(HexConverter))] public ulong Table { get; set; }
    public uint EntryCount { get; set; }
    public uint BucketCount { get; set; }
    public int EntriesRead { get; set; }
    /// <summary>Entries whose key is a code address, by module!routine.</summary>
    public Dictionary<string, int> Routines { get; } = new();
    /// <summary>Entries whose key is not a code address (not interpreted).</summary>
    public int OtherKeys { get; set; }
    public string? Note { get; set; }
}

/// <summary>_ISRDPCSTATS of a processor (through _KPRCB.IsrDpcStats).</summary>
public sealed class IsrDpcStatsInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public Dictionary<string, ulong> Fields { get; } = new();
}

/// <summary>The kernel's DPC watchdog profiling configuration (nt globals by name; only those the build has).</summary>
public sealed class DpcWatchdogConfig
{
    public Dictionary<string, ulong> Globals { get; } = new();
    /// <summary>nt!KiDpcWatchdogCaptureStack (the routine that captures the profile stacks), 0 when absent.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong CaptureRoutine { get; set; }
}

/// <summary>What the evidence says, in order: the culprit, whether the running DPC is it, and on which evidence.</summary>
public sealed class DpcVerdict
{
    /// <summary>"profile" (the watchdog profile names one routine), "stack" (single DPC: the bugcheck stack), "inconclusive", "none".</summary>
    public string Basis { get; set; } = "none";
    public string? Module { get; set; }
    public string? Routine { get; set; }
    public int Samples { get; set; }
    public int TotalSamples { get; set; }
    public double Share { get; set; }
    /// <summary>The DPC running at the bug check (CurrentDpcRoutine, ActiveDpc, or the stack), when known.</summary>
    public string? RunningDpc { get; set; }
    public string? RunningModule { get; set; }
    /// <summary>true: the running DPC is the culprit; false: it is not; null: unknown.</summary>
    public bool? RunningIsCulprit { get; set; }
    public bool EvidenceAgrees { get; set; }
    public List<string> Lines { get; } = new();
}

public sealed class DpcFrame
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public string? Symbol { get; set; }
    public string? Module { get; set; }
    /// <summary>Stack address where a scanned return address was found (stack-scan method only).</summary>
    [JsonConverter(typeof(HexConverter))] public ulong StackAddress { get; set; }
}

public sealed class StallLoopHint
{
    [JsonConverter(typeof(HexConverter))] public ulong CallSite { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong CallTarget { get; set; }
    public string CallTargetName { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong JumpAt { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong JumpTarget { get; set; }
    public uint? StallMicroseconds { get; set; }
    public uint? Iterations { get; set; }
    public string Text { get; set; } = "";
}

public sealed class DpcCulprit
{
    /// <summary>"stack" (engine unwind) or "stack-scan" (return addresses found by scanning the DPC stack).</summary>
    public string Method { get; set; } = "";
    public string MethodNote { get; set; } = "";
    public string? Module { get; set; }
    public string? Symbol { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    /// <summary>Dispatch context found above the culprit (e.g. "nt!KiExpireTimerTable", "Wdf01000!FxTimer::TimerHandler").</summary>
    public List<string> DispatchChain { get; } = new();
    public bool InStallRoutine { get; set; }
    public StallLoopHint? StallLoop { get; set; }
    public List<DpcFrame> Frames { get; } = new();
}

public sealed class QueuedDpc
{
    [JsonConverter(typeof(HexConverter))] public ulong Kdpc { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Routine { get; set; }
    public string? Symbol { get; set; }
    public string Module { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong ModuleBase { get; set; }
    public string Importance { get; set; } = "";
    public string Queue { get; set; } = "Normal";
    public bool Unreadable { get; set; }
}

public sealed class ProcessorDpcState
{
    public int Cpu { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Prcb { get; set; }
    public bool IsBugCheckCpu { get; set; }
    public int? QueueDepth { get; set; }
    public int? ThreadedQueueDepth { get; set; }
    public uint? DpcCount { get; set; }
    public bool? DpcRoutineActive { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong CurrentDpcRoutine { get; set; }
    public string? CurrentDpcSymbol { get; set; }
    /// <summary>_KDPC_DATA.ActiveDpc (8.1 and later): the KDPC running now, and its DeferredRoutine.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong ActiveDpc { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong ActiveDpcRoutine { get; set; }
    public string? ActiveDpcSymbol { get; set; }
    public IsrDpcStatsInfo? IsrDpcStats { get; set; }
    public DpcWatchdogProfile? Profile { get; set; }
    public DpcRuntimeHistory? RuntimeHistory { get; set; }
    /// <summary>Watchdog counters by their field names on this build (DpcWatchdogPeriod or DpcWatchdogPeriodTicks, ...).</summary>
    public Dictionary<string, long> Watchdog { get; } = new();
    public List<QueuedDpc> Queued { get; } = new();
    public string? Note { get; set; }
}

public sealed class BlameRow
{
    public string Module { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Base { get; set; }
    public bool HasSymbols { get; set; }
    public int Queued { get; set; }
    public int Running { get; set; }
    public bool Culprit { get; set; }
    public double Share { get; set; }
    /// <summary>Watchdog-profile samples whose innermost non-kernel frame is in this module.</summary>
    public int ProfileSamples { get; set; }
    public double ProfileShare { get; set; }
    /// <summary>What the row rests on: "profile", "running", "queued", "stack".</summary>
    public List<string> Evidence { get; } = new();
}

public sealed class DpcBlameReport
{
    public int Build { get; set; }
    public int ProcessorCount { get; set; }
    public int BugCheckCpu { get; set; } = -1;
    public int? OnlyCpu { get; set; }
    public DpcBugCheck? BugCheck { get; set; }
    public DpcCulprit? Culprit { get; set; }
    public List<ProcessorDpcState> Processors { get; } = new();
    public List<BlameRow> Blame { get; } = new();
    public int TotalQueued { get; set; }
    public DpcWatchdogConfig? WatchdogConfig { get; set; }
    /// <summary>Samples of every processor's watchdog profile by module!routine, most first.</summary>
    public List<ProfileHistogramRow> ProfileHistogram { get; } = new();
    public int ProfileSamples { get; set; }
    public DpcVerdict? Verdict { get; set; }
    public List<string> Guidance { get; } = new();
    public List<string> Notes { get; } = new();
    public ReadFigures? Stats { get; set; }
}
