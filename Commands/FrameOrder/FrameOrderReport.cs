using System.Globalization;
using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.FrameOrder;

public sealed class FrameOrderReport
{
    public List<FrameInfo> Frames { get; set; } = new();
    public List<FilterInfo> Filters { get; set; } = new();
    public List<VolumeStack> Volumes { get; set; } = new();
    /// <summary>fltmc-style rows: legacy filters first, then minifilters by frame and altitude (highest first).</summary>
    public List<FltmcRow> Fltmc { get; set; } = new();
    public List<Disorder> Disorders { get; set; } = new();
    public List<string> Notes { get; set; } = new();
    /// <summary>Ctrl+Break stopped part of the command (volumes not shown, or the registry not read): see the notes.</summary>
    public bool Interrupted { get; set; }
    public string? VolumeFilter { get; set; }
    /// <summary>fltmgr's group -> legacy altitude table as read from the target (empty when unavailable), and where it is.</summary>
    [JsonConverter(typeof(HexConverter))] public ulong LegacyAltitudeMap { get; set; }
    public Dictionary<string, string> LegacyAltitudes { get; set; } = new();
    public bool Clean => Disorders.Count == 0;
}

public sealed class FrameInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public uint Id { get; set; }
    public string Low { get; set; } = "";
    public string High { get; set; } = "";
    public int FilterCount { get; set; }
    public int VolumeCount { get; set; }
}

public sealed class FilterInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public string Name { get; set; } = "";
    public string Altitude { get; set; } = "";
    public uint FrameId { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Frame { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong DriverObject { get; set; }
    public List<InstanceInfo> Instances { get; set; } = new();
}

public sealed class InstanceInfo
{
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public string Name { get; set; } = "";
    public string Altitude { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Volume { get; set; }
}

public enum StackItemKind { FileSystem, Frame, Legacy, Unknown }

/// <summary>One device object of a volume's file-system stack, bottom to top.</summary>
public sealed class StackItem
{
    public StackItemKind Kind { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Device { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Driver { get; set; }
    public string DriverName { get; set; } = "";
    /// <summary>Legacy filter: the name fltmc shows (driver name without \Driver\ / \FileSystem\).</summary>
    public string? Name { get; set; }
    /// <summary>Frame: its id and interval; legacy filter: its altitude and where that came from.</summary>
    public uint? FrameId { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong FltVolume { get; set; }
    public string? Altitude { get; set; }
    public string? AltitudeSource { get; set; }
    /// <summary>Legacy filter: its service (DRIVER_OBJECT.DriverExtension->ServiceKeyName) and that service's load-order group.</summary>
    public string? Service { get; set; }
    public string? LoadOrderGroup { get; set; }
    /// <summary>Frame: the minifilter instances on this volume in that frame, lowest altitude first.</summary>
    public List<StackMinifilter> Minifilters { get; set; } = new();
}

public sealed class StackMinifilter
{
    public string Name { get; set; } = "";
    public string Altitude { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Filter { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Instance { get; set; }
    public string InstanceName { get; set; } = "";
}

public sealed class VolumeStack
{
    public string Name { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong FrameZeroVolume { get; set; }
    public List<StackItem> Stack { get; set; } = new();
    public string? Problem { get; set; }
}

public sealed class FltmcRow
{
    public string Name { get; set; } = "";
    public int? Instances { get; set; }
    public string Altitude { get; set; } = "";
    public string Frame { get; set; } = "";
}

public sealed class Disorder
{
    public string Volume { get; set; } = "";
    public string Lower { get; set; } = "";
    public string LowerAltitude { get; set; } = "";
    public string? LowerFrame { get; set; }
    public string Upper { get; set; } = "";
    public string UpperAltitude { get; set; } = "";
    public string Message { get; set; } = "";
    public string? Fix { get; set; }
}

/// <summary>
/// The documented file-system filter load-order groups and their altitude ranges (Microsoft: "Load order groups and
/// altitudes for minifilter drivers"). Groups load bottom first, i.e. in ascending altitude order.
/// </summary>
public static class LoadOrderGroups
{
    public sealed record Group(string Name, decimal Low, decimal High);

    public static readonly IReadOnlyList<Group> All = new Group[]
    {
        new("FSFilter Bottom", 40000, 49999),
        new("FSFilter Copy Protection", 60000, 69999),
        new("FSFilter Security Enhancer", 80000, 89999),
        new("FSFilter Open File", 100000, 109999),
        new("FSFilter Physical Quota Management", 120000, 129999),
        new("FSFilter Virtualization", 130000, 139999),
        new("FSFilter Encryption", 140000, 149999),
        new("FSFilter Compression", 160000, 169999),
        new("FSFilter Imaging", 170000, 174999),
        new("FSFilter HSM", 180000, 189999),
        new("FSFilter Cluster File System", 200000, 209999),
        new("FSFilter System Recovery", 220000, 229999),
        new("FSFilter Quota Management", 240000, 249999),
        new("FSFilter Content Screener", 260000, 269999),
        new("FSFilter Continuous Backup", 280000, 289999),
        new("FSFilter Replication", 300000, 309999),
        new("FSFilter Anti-Virus", 320000, 329999),
        new("FSFilter Undelete", 340000, 349999),
        new("FSFilter Activity Monitor", 360000, 389999),
        new("FSFilter Top", 400000, 409999),
    };

    public static Group? Containing(decimal altitude) => All.FirstOrDefault(g => altitude >= g.Low && altitude < g.High + 1);

    public static bool TryParse(string? s, out decimal v) =>
        decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out v);

    /// <summary>What I/O a filter below a legacy filter of this altitude sees.</summary>
    public static string Effect(decimal legacyAltitude, string legacyName) => Containing(legacyAltitude)?.Name switch
    {
        "FSFilter Encryption" => "it sees encrypted I/O",
        "FSFilter Compression" => "it sees compressed I/O",
        "FSFilter Virtualization" => "it sees virtualized (redirected) I/O",
        "FSFilter HSM" => "it sees I/O after HSM recall/redirection",
        _ => $"it sees I/O only after {legacyName} has processed it",
    };
}
