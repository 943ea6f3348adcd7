using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.DhcpTimer;

public enum DhcpVerdict { RenewalPending, RenewalMissed, Overdue, Expired, NotRecognised, Unreadable }

public sealed record TimerValue(string Name, DateTime Utc, string? Relative, int Offset);

public sealed record AdapterTimers
{
    [JsonConverter(typeof(HexConverter))] public ulong Context { get; init; }
    public string? Name { get; init; }
    public string? IpAddress { get; init; }
    public string? SubnetMask { get; init; }
    public LeaseTimeUnit? TimeUnit { get; init; }
    public long? LeaseSeconds { get; init; }
    public bool? DefaultTimers { get; init; }
    public IReadOnlyList<TimerValue> Timers { get; init; } = [];
    public DhcpVerdict Verdict { get; init; }
    public string VerdictText { get; init; } = "";
    /// <summary>Wait from now to RunTime, in the 32-bit millisecond check.</summary>
    public WaitCheck? WaitFromNow { get; init; }
    /// <summary>Wait the service computed when it scheduled RunTime (at lease obtained / last renewal).</summary>
    public WaitCheck? WaitWhenScheduled { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
}

public sealed record MainThreadWait
{
    public uint ThreadId { get; init; }
    [JsonConverter(typeof(HexConverter))] public ulong Thread { get; init; }
    public bool InProcessDhcpRequestForever { get; init; }
    public bool InWaitForMultipleObjectsEx { get; init; }
    public IReadOnlyList<string> Frames { get; init; } = [];
    /// <summary>dwMilliseconds as found in the caller's r9 home slot (valid only if the callee spilled r9 there).</summary>
    public uint? TimeoutFromHomeSlot { get; init; }
    [JsonConverter(typeof(HexConverter))] public ulong TimeoutSlotAddress { get; init; }
    public string? TimeoutNote { get; init; }
}

public sealed record DhcpTimerReport
{
    public LeaseCalculation? Lease { get; init; }
    public string? Module { get; init; }
    [JsonConverter(typeof(HexConverter))] public ulong ModuleBase { get; init; }
    public string? ModuleVersion { get; init; }
    [JsonConverter(typeof(HexConverter))] public ulong NicListHead { get; init; }
    public DateTime? NowUtc { get; init; }
    public string? NowSource { get; init; }
    public List<AdapterTimers> Adapters { get; init; } = [];
    public MainThreadWait? MainThread { get; init; }
    public List<string> Notes { get; init; } = [];
}
