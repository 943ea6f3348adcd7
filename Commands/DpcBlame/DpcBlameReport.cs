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
    [JsonConverter(typeof(HexConverter))] public ulong TriageBlock { get; set; }
    public Dictionary<string, string>? TriageFields { get; set; }
    public string Meaning { get; set; } = "";
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
    public List<string> Guidance { get; } = new();
    public List<string> Notes { get; } = new();
    public ReadFigures? Stats { get; set; }
}
