using NtSleuth.Lab.Target;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// The ndis/fltmgr scenarios in the lab catalogue (for samples, bench and dump writers): laid into a
/// <see cref="KernelScenarioBuilder"/> kernel of the build (nt furniture from the build's ISF) with ndis.sys / fltMgr.sys
/// images, their symbol tables converted from the layout table for the build's <see cref="LabBuild.LayoutLabel"/>.
/// </summary>
public static class NdisFltmgrCatalog
{
    public static string LayoutsPath => SharedData.LayoutsFile ?? throw new InvalidOperationException(SharedData.AbsentReason);

    public static InMemoryTarget TargetOver(KernelScenarioBuilder b) =>
        new(b.Memory, b.Symbols, b.Info, b.Modules.ToList());
}

/// <summary>
/// Seed 004 "TrackNblOwner to the Rescue": variants "" (tracking on), "tracking-off" and "scattered" (tracking on, NBL
/// entries spread over pool pages with other allocations between them, about one per page); Scale multiplies the NBLs.
/// </summary>
public sealed class NdisPendingNblsScenario : IScenario
{
    public string Name => "ndis-pending-nbls";
    public string Seed => "004_057968894f01db56.txt";
    public bool Supports(LabBuild build) => build.LayoutLabel is { } l && NdisFltmgrLayouts.Has("ndis", l);

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        int k = Math.Max(1, options.Scale);
        var spec = new NdisScenarioSpec
        {
            BuildLabel = build.LayoutLabel!, TrackingLevel = options.Variant == "tracking-off" ? 0 : 1,
            Freed = 550 * k, PendingOnMiniport = 1854 * k, AtHome = 601 * k,
            ScatterFactor = options.Variant == "scattered" ? 8 : 0,
        };
        var b = new KernelScenarioBuilder(build);
        b.AddLoadedModule("ndis.sys", 0x150000, NdisScenario.NdisBase);
        var doc = NdisFltmgrLayouts.BuildIsf(NdisFltmgrCatalog.LayoutsPath, "ndis", spec.BuildLabel);
        b.AddSymbolModule("ndis", doc, NdisScenario.NdisBase);
        var sc = NdisScenario.LayInto(NdisFltmgrCatalog.TargetOver(b), doc, spec);
        b.Facts["miniport"] = NdisScenario.MiniportAddr;
        b.Facts["poolListHead"] = sc.PoolListHead;
        b.Facts["totalNbls"] = (ulong)spec.Total;
        b.Facts["pendingNbls"] = (ulong)spec.PendingOnMiniport;
        b.Facts["entryHeaderSize"] = (ulong)spec.EntryHeaderSize;
        b.Facts["entryLinkageOffset"] = (ulong)spec.EntryLinkageOffset;
        var r = new ScenarioResult(Name, b, options);
        r.Commands.Add("!nblowners");
        r.Commands.Add($"!nblowners -owner {NdisScenario.MiniportAddr:x}");
        return r;
    }
}

/// <summary>Seed 004 "Minifilter and Legacy Filter Load Order": variants "" (broken), "fixed", "no-legacy".</summary>
public sealed class FltmgrFrameOrderScenario : IScenario
{
    public string Name => "fltmgr-frame-order";
    public string Seed => "004_057968894f01db56.txt";
    public bool Supports(LabBuild build) => build.LayoutLabel is { } l && NdisFltmgrLayouts.Has("fltmgr", l);
    /// <summary>Samples: the seed's broken stack, its fix (NullFilter forcing frame 1), and a stack without legacy filters.</summary>
    public IReadOnlyList<string> SampleVariants => ["", "fixed", "no-legacy"];

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        var layouts = NdisFltmgrCatalog.LayoutsPath;
        var label = build.LayoutLabel!;
        // The specs of the standalone scenarios (their nt ISF is replaced by the build's).
        var spec = options.Variant switch
        {
            "fixed" => FltmgrScenario.FixedSpec(label),
            "no-legacy" => FltmgrScenario.NoLegacySpec(label, volumes: 2 * Math.Max(1, options.Scale)),
            _ => FltmgrScenario.BrokenSpec(label),
        };
        // As on real Windows 10 2004+ / 11: the SYSTEM hive's bins in the Registry process's user space where nt has
        // CmpRegistryProcess.
        spec = spec with { HiveInRegistryProcess = build.Isf.Symbols.ContainsKey("CmpRegistryProcess") };
        // The seed's own OS (Windows 7 / 2008 R2): fltmc showed the anti-virus legacy filter at 389998.99.
        if (label == NdisFltmgrLayouts.Win7) spec = spec with { AltitudeMap = FltmgrScenario.SeedWin7AltitudeMap() };
        var b = new KernelScenarioBuilder(build);
        b.AddLoadedModule("fltmgr.sys", 0x80000, FltmgrScenario.FltmgrBase);
        var flt = NdisFltmgrLayouts.BuildIsf(layouts, "fltmgr", label);
        b.AddSymbolModule("fltmgr", flt, FltmgrScenario.FltmgrBase);
        var target = NdisFltmgrCatalog.TargetOver(b);
        var sc = FltmgrScenario.LayInto(target, flt, spec);
        foreach (var (e, m) in target.ProcessSpaces) b.AddProcessSpace(e, m);
        foreach (var (e, m) in target.ProcessSpaces)
        {
            b.Facts["registryProcess"] = e;
            b.Facts["registryBins"] = m.Pages.Min(p => p.Key); // the first hbin (user VA, only in the Registry process)
        }
        foreach (var (id, a) in sc.FrameAddresses) b.Facts[$"frame{id}"] = a;
        var r = new ScenarioResult(Name, b, options);
        r.Commands.Add("!frameorder");
        return r;
    }
}

