using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Layouts;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// The ndis/fltmgr layout table (../shared/realdata/layouts/ndis-fltmgr-layouts.json, PDB-derived via selene) turned into
/// per-build symbol tables (ISF documents) for the modules "ndis" and "fltmgr" by <see cref="LayoutTable.ToIsf"/>: types
/// with their per-build field offsets, globals at their per-build RVAs.
/// Build labels map to nt ISF builds: "Windows 10 v1607" -> 14393 (Server 2016 ISF 14393.6343),
/// "Windows 10 v20H2" -> 19041 (ISF 19041.804, whose nt offsets the table's 20H2 column matches exactly).
/// </summary>
public static class NdisFltmgrLayouts
{
    public const string V1607 = "Windows 10 v1607";
    public const string V20H2 = "Windows 10 v20H2";
    public const string V2004 = "Windows 10 v2004";
    public const string Win11 = "Windows 11";

    public static int BuildNumberOf(string label) => label switch
    {
        V1607 => 14393, V2004 => 19041, V20H2 => 19042, Win11 => 22621, _ => 0,
    };

    /// <summary>The module's symbol table for a build label: <see cref="LayoutTable.ToIsf"/>, the lab's one layout conversion.</summary>
    public static IsfDocument BuildIsf(string layoutsPath, string module, string label) => LayoutTable.Open(layoutsPath).ToIsf(module, label);
}
