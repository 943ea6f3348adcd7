using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.NblOwners;

public enum NdisHandleKind { Unknown, Miniport, FilterModule, ProtocolOpen, Protocol }

/// <summary>Result model of !nblowners (rendered as text/DML or JSON).</summary>
public sealed class NblOwnersReport
{
    /// <summary>Tracking level in effect (TrackNblOwner 0..4); null when it could not be read.</summary>
    public int? TrackingLevel { get; set; }
    /// <summary>Where the level came from (e.g. "ndis!ndisGlobalTriageBlock.NdisTrackNblOwner").</summary>
    public string TrackingSource { get; set; } = "";
    public bool TrackingOn => TrackingLevel is > 0;
    /// <summary>Offsets and sizes used, as published by the triage block or taken from the ndis types.</summary>
    public NblOffsets Offsets { get; set; } = new();
    [JsonConverter(typeof(HexConverter))] public ulong PoolListHead { get; set; }
    public int PoolCount { get; set; }
    public int UnreadablePools { get; set; }
    public int TotalNbls { get; set; }
    public int FreedNbls { get; set; }
    public int PendingNbls { get; set; }
    public int AtHomeNbls { get; set; }
    public int UnreadableNbls { get; set; }
    public bool Interrupted { get; set; }
    [JsonConverter(typeof(NullableHexConverter))] public ulong? OwnerFilter { get; set; }
    [JsonConverter(typeof(NullableHexConverter))] public ulong? PoolFilter { get; set; }
    public List<NblPoolInfo> Pools { get; set; } = new();
    /// <summary>Pending NBLs grouped by current owner, largest group first.</summary>
    public List<NblOwnerGroup> Owners { get; set; } = new();
    /// <summary>Miniports that hold pending NBLs (or own pools, when tracking is off) with their state.</summary>
    public List<MiniportState> Miniports { get; set; } = new();
    /// <summary>Protocol opens bound to the miniports above, with their reference / outstanding-send counts where the build has them.</summary>
    public List<OpenState> Opens { get; set; } = new();
    /// <summary>The miniport drivers' own receive lists (netkvm), when their symbols have the adapter type.</summary>
    public List<ReceivePath> ReceivePaths { get; set; } = new();
    /// <summary>tcpip's per-CPU send rundown (tcpip!Provider_Rundown_Protection), when its symbols are loaded.</summary>
    public SendPath? SendPath { get; set; }
    /// <summary>What this build (as its symbols show it) or this dump cannot tell.</summary>
    public List<string> CannotTell { get; set; } = new();
    /// <summary>With -owner: the NBLs that owner currently holds.</summary>
    public List<NblEntry>? OwnerNbls { get; set; }
    public List<string> Verdicts { get; set; } = new();
    public List<string> Notes { get; set; } = new();
    /// <summary>The registry value to set when tracking is off (null when on).</summary>
    public string? Guidance { get; set; }
}

public sealed class NblOffsets
{
    public string Source { get; set; } = "";
    public int PoolLinkOffset { get; set; }
    public int AllocatedListOffset { get; set; }
    public int OwnerHandleOffset { get; set; }
    public int EntryLinkageOffset { get; set; }
    public int EntryHeaderSize { get; set; }
    public int NblSize { get; set; }
    public int NblCurrentOwnerOffset { get; set; }
}

public sealed class NblPoolInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong OwnerHandle { get; set; }
    public NdisHandleKind OwnerKind { get; set; }
    public string? OwnerName { get; set; }
    public string Tag { get; set; } = "";
    public bool Readable { get; set; } = true;
    public int Nbls { get; set; }
    public int Freed { get; set; }
    public int Pending { get; set; }
    public int Unreadable { get; set; }
    public string? WalkNote { get; set; }
}

public sealed class NblOwnerGroup
{
    [JsonConverter(typeof(HexConverter))] public ulong Handle { get; set; }
    public NdisHandleKind Kind { get; set; }
    public string? Name { get; set; }
    public int Count { get; set; }
    /// <summary>The first pending NBL met on its pool's allocated list (the longest-allocated one).</summary>
    [JsonConverter(typeof(HexConverter))] public ulong Oldest { get; set; }
    public List<NblEntry> Samples { get; set; } = new();
    public int PoolCount { get; set; }
}

public sealed class NblEntry
{
    [JsonConverter(typeof(HexConverter))] public ulong Nbl { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Pool { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong CurrentOwner { get; set; }
}

public sealed class MiniportState
{
    [JsonConverter(typeof(HexConverter))] public ulong Handle { get; set; }
    public string? Name { get; set; }
    public string? DriverName { get; set; }
    public string State { get; set; } = "";
    public string PnPState { get; set; } = "";
    public string OldPnPState { get; set; } = "";
    public string OperStatus { get; set; } = "";
    public string OperStatusFlags { get; set; } = "";
    public string MediaConnectState { get; set; } = "";
    public long? References { get; set; }
    public long? ShortReferences { get; set; }
    public int PendingHeld { get; set; }
    public string? ReadNote { get; set; }
}

public sealed class OpenState
{
    [JsonConverter(typeof(HexConverter))] public ulong Handle { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Miniport { get; set; }
    public string? BindName { get; set; }
    public string? Protocol { get; set; }
    public int? References { get; set; }
    public int? OutstandingSends { get; set; }
}

public sealed class ReceivePath
{
    [JsonConverter(typeof(HexConverter))] public ulong Miniport { get; set; }
    public string Driver { get; set; } = "";
    public string AdapterType { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong AdapterContext { get; set; }
    /// <summary>Entries on NetReceiveBuffers (free buffers the NIC can fill).</summary>
    public int? FreeListed { get; set; }
    public long? NetNofReceiveBuffers { get; set; }
    /// <summary>Entries on NetReceiveBuffersWaiting (indicated up, waiting to be returned).</summary>
    public int? Waiting { get; set; }
    public string? Note { get; set; }
    /// <summary>No free receive buffer left while buffers wait to be returned: the NIC cannot receive.</summary>
    public bool Starved => FreeListed == 0 && (NetNofReceiveBuffers ?? 0) == 0 && Waiting is > 0;
}

public sealed class SendPath
{
    public string Symbol { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong CacheAware { get; set; }
    public string? Layout { get; set; }
    public List<long> PerCpu { get; set; } = new();
    public long InFlight { get; set; }
    public int Unreadable { get; set; }
    public string? Note { get; set; }
}

/// <summary>
/// Names of the ndis enumerations and public flag words the report prints. The numeric values are the PDB's
/// (_NDIS_MINIPORT_STATE, _NDIS_PNP_DEVICE_STATE, _NDIS_FILTER_STATE) and the public ndis.h/ifdef.h ones
/// (NET_IF_OPER_STATUS, NET_IF_OPER_STATUS_* flags, NET_IF_MEDIA_CONNECT_STATE).
/// </summary>
public static class NdisNames
{
    public static string MiniportState(ulong v) => v switch
    {
        0 => "UNDEFINED", 1 => "HALTED", 2 => "INITIALIZING", 3 => "RESTARTING", 4 => "RUNNING", 5 => "PAUSING", 6 => "PAUSED",
        _ => $"STATE_{v}",
    };
    public static string PnPState(ulong v) => v switch
    {
        0 => "ADDED", 1 => "STARTED", 2 => "QUERY_STOPPED", 3 => "STOPPED", 4 => "QUERY_REMOVED", 5 => "REMOVED", 6 => "SURPRISE_REMOVED",
        _ => $"PNP_{v}",
    };
    public static string OperStatus(ulong v) => v switch
    {
        1 => "UP", 2 => "DOWN", 3 => "TESTING", 4 => "UNKNOWN", 5 => "DORMANT", 6 => "NOT_PRESENT", 7 => "LOWER_LAYER_DOWN",
        _ => $"STATUS_{v}",
    };
    public const uint DormantPaused = 0x4;
    public static string OperStatusFlags(uint v)
    {
        var parts = new List<string>();
        if ((v & 0x1) != 0) parts.Add("DOWN_NOT_AUTHENTICATED");
        if ((v & 0x2) != 0) parts.Add("DOWN_NOT_MEDIA_CONNECTED");
        if ((v & 0x4) != 0) parts.Add("DORMANT_PAUSED");
        if ((v & 0x8) != 0) parts.Add("DORMANT_LOW_POWER");
        uint rest = v & ~0xfu;
        if (rest != 0) parts.Add($"0x{rest:x}");
        return parts.Count == 0 ? "NONE" : string.Join(", ", parts);
    }
    public static string MediaConnect(ulong v) => v switch { 0 => "UNKNOWN", 1 => "CONNECTED", 2 => "DISCONNECTED", _ => $"STATE_{v}" };
    public static string Kind(NdisHandleKind k) => k switch
    {
        NdisHandleKind.Miniport => "Miniport",
        NdisHandleKind.FilterModule => "Filter",
        NdisHandleKind.ProtocolOpen => "Open",
        NdisHandleKind.Protocol => "Protocol",
        _ => "Unknown",
    };
    public static string Tag(uint tag)
    {
        Span<char> c = stackalloc char[4];
        for (int i = 0; i < 4; i++) { byte b = (byte)(tag >> (8 * i)); c[i] = b is >= 0x20 and < 0x7f ? (char)b : '.'; }
        return new string(c);
    }
}
