using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Layouts;

namespace NtSleuth.Lab.Scenario;

public sealed partial class KernelScenarioBuilder
{
    /// <summary>True when the layout table (../shared) has <paramref name="module"/> for this build (Windows 10 1607 / 2004 / 11 labels).</summary>
    public bool HasLayoutModule(string module) =>
        Build.LayoutLabel is not null && Scenarios.NdisFltmgrLayouts.Has(module, Build.LayoutLabel);

    /// <summary>
    /// Loads ndis/fltmgr (or another module of the layout table) for this build: places its image (and a loader entry in
    /// PsLoadedModuleList), and registers its types and globals as symbol module <paramref name="module"/> beside nt, so
    /// New("_NDIS_MINIPORT_BLOCK", module: "ndis") and Symbol("ndis!ndisMiniportList") work. Returns the module's symbol table.
    /// </summary>
    public IsfDocument AddLayoutModule(string module, uint imageSize = 0, ulong? imageBase = null)
    {
        if (Build.LayoutLabel is null)
            throw new ScenarioLayoutException($"the ndis/fltmgr layout tables have no build matching {Build.Label}");
        LayoutTable table; string label;
        try { (table, label) = Scenarios.NdisFltmgrLayouts.Resolve(module, Build.LayoutLabel); }
        catch (FileNotFoundException e) { throw new ScenarioLayoutException(e.Message); }
        var doc = table.ToIsf(module, label, Build.Isf);
        ulong maxRva = doc.Symbols.Values.DefaultIfEmpty(0x10000UL).Max();
        uint size = imageSize != 0 ? imageSize : (uint)((maxRva + 0x20000) & ~0xffffUL);
        var entry = AddLoadedModule(table.ImageName(module), size, imageBase);
        ulong b = ReadPointer(entry.AddressOf("DllBase"));
        Symbols.Add(module, doc, b);
        return doc;
    }
}
