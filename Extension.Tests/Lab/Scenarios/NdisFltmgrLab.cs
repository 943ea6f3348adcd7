using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Layouts;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// The ndis/fltmgr layout tables turned into per-build symbol tables (ISF documents) for the modules "ndis" and "fltmgr" by
/// <see cref="LayoutTable.ToIsf"/>: types with their per-build field offsets, globals at their per-build RVAs.
/// Two tables, one format:
/// - ../shared/realdata/layouts/ndis-fltmgr-layouts.json (PDB-derived via selene): Windows 10 1607 / 2004 / 20H2 / 11.
///   "Windows 10 v1607" -> 14393 (Server 2016 ISF 14393.6343), "Windows 10 v20H2" -> 19041 (ISF 19041.804).
/// - Extension.Tests/Lab/Layouts/ndis-layouts-7601-9600.json (this project, facts from ntdiff/headers, see
///   docs/layouts-7601-9600.md): ndis.sys on "Windows 7 SP1" (7601) and "Windows 8.1" (9600).
/// fltMgr.sys has no public PDB-derived layout for 7601 / 9600: <see cref="Resolve"/> gives the earliest published one
/// (Windows 10 v1607) for those labels and says so (<see cref="FallbackNote"/>).
/// </summary>
public static class NdisFltmgrLayouts
{
    public const string V1607 = "Windows 10 v1607";
    public const string V20H2 = "Windows 10 v20H2";
    public const string V2004 = "Windows 10 v2004";
    public const string Win11 = "Windows 11";
    public const string Win7 = "Windows 7 SP1";
    public const string Win81 = "Windows 8.1";

    /// <summary>The project's own table (ndis.sys on 7601 and 9600), relative to the repository root.</summary>
    public const string ProjectTableRelative = "Extension.Tests/Lab/Layouts/ndis-layouts-7601-9600.json";

    public static int BuildNumberOf(string label) => label switch
    {
        Win7 => 7601, Win81 => 9600, V1607 => 14393, V2004 => 19041, V20H2 => 19042, Win11 => 22621, _ => 0,
    };

    public static bool IsOldBuild(string label) => label is Win7 or Win81;

    /// <summary>The project's table, or null when the repository root is not found.</summary>
    public static string? ProjectTablePath =>
        SharedData.FindRepoRoot() is { } root && File.Exists(Path.Combine(root, ProjectTableRelative)) ? Path.Combine(root, ProjectTableRelative) : null;

    /// <summary>Why a module's layout for an old build is not the build's own, or null when it is.</summary>
    public static string? FallbackNote(string module, string label) =>
        IsOldBuild(label) && module == "fltmgr"
            ? $"fltMgr.sys has no public PDB-derived layout for {label}: the lab uses the {V1607} layout (the earliest published); see docs/layouts-7601-9600.md"
            : null;

    /// <summary>
    /// Which table and label hold <paramref name="module"/> for <paramref name="label"/>: ndis on 7601/9600 from the project's
    /// table; fltmgr on 7601/9600 from the shared table's <see cref="V1607"/> column (no public source for those builds);
    /// everything else from the shared table at <paramref name="sharedPath"/> (or ../shared when null).
    /// </summary>
    public static (LayoutTable Table, string Label) Resolve(string module, string label, string? sharedPath = null)
    {
        LayoutTable Shared() => sharedPath is not null ? LayoutTable.Open(sharedPath)
            : LayoutTable.Shared ?? throw new FileNotFoundException(SharedData.AbsentReason, "ndis-fltmgr-layouts.json");
        if (!IsOldBuild(label)) return (Shared(), label);
        if (module == "ndis")
        {
            var p = ProjectTablePath ?? throw new FileNotFoundException($"{ProjectTableRelative} not found (repository root not located)", ProjectTableRelative);
            return (LayoutTable.Open(p), label);
        }
        return (Shared(), V1607);
    }

    /// <summary>True when the layout tables have <paramref name="module"/> for <paramref name="label"/> (old builds: ndis needs the project table, fltmgr the shared one).</summary>
    public static bool Has(string module, string label)
    {
        try { var (t, l) = Resolve(module, label); return t.Modules.Contains(module) && t.Labels.Contains(l); }
        catch (FileNotFoundException) { return false; }
    }

    /// <summary>The module's symbol table for a build label: <see cref="LayoutTable.ToIsf"/>, the lab's one layout conversion.</summary>
    public static IsfDocument BuildIsf(string layoutsPath, string module, string label)
    {
        var (t, l) = Resolve(module, label, layoutsPath);
        return t.ToIsf(module, l);
    }
}
