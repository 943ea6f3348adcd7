using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Scenario;

/// <summary>
/// One Windows build of the lab: a kernel symbol table (Volatility-3 ISF) from ../shared/realdata/isf/ntkrnlmp.pdb/.
/// The table is decoded lazily (xz, ~1 s) and cached for the whole process.
/// </summary>
public sealed class LabBuild
{
    private readonly Lazy<IsfDocument> _isf;

    internal LabBuild(string key, string label, int buildNumber, string version, string guidAge, string isfPath, string? layoutLabel, ulong kernelBase, ulong poolBase)
    {
        Key = key; Label = label; BuildNumber = buildNumber; Version = version; GuidAge = guidAge; IsfPath = isfPath;
        LayoutLabel = layoutLabel; KernelBase = kernelBase; PoolBase = poolBase;
        _isf = new Lazy<IsfDocument>(() => IsfDocument.Load(isfPath), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    private LabBuild(LabBuild b, ulong kernelBase) : this(b.Key, b.Label, b.BuildNumber, b.Version, b.GuidAge, b.IsfPath, b.LayoutLabel, kernelBase, b.PoolBase)
    {
        _isf = b._isf; // the same decoded table
    }

    /// <summary>This build with ntoskrnl placed at another base (scenarios pinned to a seed's addresses).</summary>
    public LabBuild WithKernelBase(ulong kernelBase) => kernelBase == KernelBase ? this : new LabBuild(this, kernelBase);

    /// <summary>Short key used in test names and the bench table: "win7", "2012r2", "2016", "win10", "win11".</summary>
    public string Key { get; }
    /// <summary>Human name, e.g. "Windows 7 SP1 / 2008 R2 (7601)".</summary>
    public string Label { get; }
    public int BuildNumber { get; }
    /// <summary>Full version of the kernel the table was made from, e.g. "6.1.7601.24540".</summary>
    public string Version { get; }
    /// <summary>PDB GUID and age as in the file name: "339E74133576439CBCDF7E0229DA3773-1".</summary>
    public string GuidAge { get; }
    public string IsfPath { get; }
    /// <summary>Build label of the ndis/fltmgr layouts (../shared table for 14393+, the project table for 7601/9600: <see cref="Scenarios.NdisFltmgrLayouts.Resolve"/>); null when there is none.</summary>
    public string? LayoutLabel { get; }
    /// <summary>Where the lab places ntoskrnl for this build (Windows 7: fffff800`02a00000, Windows 10+: fffff804`7ba00000 style).</summary>
    public ulong KernelBase { get; }
    /// <summary>Start of the nonpaged-pool-like region scenarios allocate from (Windows 7: fffffa80`..., later: ffff....).</summary>
    public ulong PoolBase { get; }
    public bool IsLoaded => _isf.IsValueCreated;

    /// <summary>The nt symbol table (decoded on first use, then cached per process).</summary>
    public IsfDocument Isf => _isf.Value;

    public override string ToString() => $"{Key} ({BuildNumber})";
}

/// <summary>
/// The build catalogue: finds the shared data (repo root = the folder with NtSleuthExt.sln; ../shared beside it)
/// and names each symbol table in it.
/// </summary>
public static class LabBuilds
{
    private static readonly (string Guid, string Key, string Label, int Build, string Version, string? LayoutLabel, ulong KernelBase, ulong PoolBase)[] Known =
    [
        ("339E74133576439CBCDF7E0229DA3773-1", "win7", "Windows 7 SP1 / 2008 R2 (7601)", 7601, "6.1.7601.24540", "Windows 7 SP1", 0xfffff800_02a00000, 0xfffffa80_00000000),
        ("169C65213E3E42DDBEB4E3AC66312B82-1", "2012r2", "Windows Server 2012 R2 (9600)", 9600, "6.3.9600.21620", "Windows 8.1", 0xfffff801_5a000000, 0xffffe000_00000000),
        ("DBBC830E3E9A48FDA25A2144C146930E-1", "2016", "Windows Server 2016 (14393)", 14393, "10.0.14393.6343", "Windows 10 v1607", 0xfffff802_1c600000, 0xffffc80f_00000000),
        ("5278AFF86C341677D7D7835C85B7B844-1", "win10", "Windows 10 20H2 (19041)", 19041, "10.0.19041.804", "Windows 10 v2004", 0xfffff804_7ba00000, 0xffffa58c_00000000),
        ("0CE4A95C0CD782A7596B034D8648E585-1", "win11", "Windows 11 21H2 (22000)", 22000, "10.0.22000.2538", "Windows 11", 0xfffff806_1e200000, 0xffffd601_00000000),
    ];

    private static readonly Lazy<IReadOnlyList<LabBuild>> _all = new(Discover);

    /// <summary>The shared data folder (<see cref="SharedData.Directory"/>), or null when absent.</summary>
    public static string? SharedDirectory => SharedData.Directory;

    /// <summary>Why builds are unavailable (for Assert.Ignore), or null when the shared data is present.</summary>
    public static string? UnavailableReason =>
        SharedDirectory is null ? SharedData.AbsentReason
        : All.Count == 0 ? $"no ISF tables in {Path.Combine(SharedDirectory, "realdata", "isf", "ntkrnlmp.pdb")}" : null;

    /// <summary>Every build whose ISF file is present, oldest first.</summary>
    public static IReadOnlyList<LabBuild> All => _all.Value;

    /// <summary>Build keys for NUnit [TestCaseSource]: works even when ../shared is absent (tests then Ignore).</summary>
    public static IEnumerable<string> Keys => Known.Select(k => k.Key);

    public static LabBuild? TryGet(string keyOrBuild) =>
        All.FirstOrDefault(b => string.Equals(b.Key, keyOrBuild, StringComparison.OrdinalIgnoreCase) || b.BuildNumber.ToString() == keyOrBuild
                                || string.Equals(b.GuidAge, keyOrBuild, StringComparison.OrdinalIgnoreCase));

    public static LabBuild Get(string keyOrBuild) =>
        TryGet(keyOrBuild) ?? throw new InvalidOperationException(
            $"lab build '{keyOrBuild}' is not available ({UnavailableReason ?? "known: " + string.Join(", ", All.Select(b => b.Key))})");

    public static LabBuild Get(int buildNumber) => Get(buildNumber.ToString());

    public static string SharedPath(params string[] parts) => SharedData.PathOf(parts);

    private static IReadOnlyList<LabBuild> Discover()
    {
        if (SharedDirectory is null) return [];
        var dir = Path.Combine(SharedDirectory, "realdata", "isf", "ntkrnlmp.pdb");
        var list = new List<LabBuild>();
        foreach (var k in Known)
        {
            var path = Path.Combine(dir, k.Guid + ".json.xz");
            if (!File.Exists(path)) path = Path.Combine(dir, k.Guid + ".json");
            if (File.Exists(path)) list.Add(new LabBuild(k.Key, k.Label, k.Build, k.Version, k.Guid, path, k.LayoutLabel, k.KernelBase, k.PoolBase));
        }
        return list;
    }
}
