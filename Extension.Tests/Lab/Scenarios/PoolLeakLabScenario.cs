using NtSleuth.Commands.Target;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Shared helpers of the pool/DPC catalogue scenarios: modules of the lab kernel view registered with the builder
/// (PsLoadedModuleList entries, PE headers), stack and bug check copied to the builder's target info.
/// </summary>
internal static class PoolDpcCatalog
{
    public static void Publish(LabKernel k, KernelScenarioBuilder b)
    {
        foreach (var m in k.Modules.Skip(1))
        {
            string file = m.Name.Contains('.') ? m.Name : m.Name + ".dll";
            b.AddLoadedModule(file, m.Size, m.Base);
        }
        b.CurrentStack.AddRange(k.Stack);
        b.BugCheck = k.BugCheck;
        b.EventProcessor = k.EventProcessor;
        b.IsDump = !k.IsLive;
    }
}

/// <summary>The seed's pool leak ("Leak", 601 allocations, 615,424,000 bytes nonpaged; myfault.sys sites) in the scenario catalogue.</summary>
public sealed class PoolLeakLabScenario : IScenario
{
    public string Name => "pool-leak";
    public string Seed => "004_057968894f01db56.txt";

    public bool Supports(LabBuild build) =>
        build.Isf.UserTypes.ContainsKey("_POOL_TRACKER_TABLE") && build.Isf.UserTypes.ContainsKey("_POOL_TRACKER_BIG_PAGES")
        && build.Isf.Symbols.ContainsKey("PoolTrackTable") && build.Isf.Symbols.ContainsKey("PoolBigPageTable");

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        int scale = Math.Max(1, options.Scale);
        var b = new KernelScenarioBuilder(build);
        b.AddProcessors(4);
        b.EventProcessor = 0;
        var k = new LabKernel(b) { ProcessorCount = 4, EventProcessor = 0 };
        var s = new PoolLeakScenario(k, 4, extraModules: Math.Min(150, 3 * scale), bigPageEntries: scale >= 100 ? 65536 : 4096 * scale);
        PoolDpcCatalog.Publish(k, b);
        // Variants: "images-present" every page of every image (live target, complete dump); "image-pages-missing"
        // myfault.sys's pages other than its header absent (a dump that lacks the image's pages; its file is in the
        // sample's symbol folder).
        if (options.Variant == "images-present") s.MakeImagesPresent();
        if (options.Variant == "image-pages-missing") b.Memory.Unmap(PoolLeakScenario.MyfaultBase + 0x1000, PoolLeakScenario.MyfaultSize - 0x1000);
        var r = new ScenarioResult(Name, b, options);
        r.Facts["site1"] = PoolLeakScenario.Site1;
        r.Facts["site2"] = PoolLeakScenario.Site2;
        r.Facts["leakBytes"] = PoolLeakScenario.LeakBytes;
        r.Facts["leakAllocs"] = PoolLeakScenario.LeakAllocs;
        r.Facts["bigPageTable"] = s.BigPageTable;
        r.Commands.Add("!leaktag -nonpaged -n 5");
        r.Commands.Add("!leaktag Leak");
        return r;
    }
}

/// <summary>The seed's bug check 0x133 (0, 0x283, 0x282, 0) with ECHO!EchoEvtTimerFunc in the scenario catalogue; Variant "cumulative" gives p1 = 1.</summary>
public sealed class DpcWatchdogLabScenario : IScenario
{
    public string Name => "dpc-watchdog";
    public string Seed => "004_057968894f01db56.txt";

    public bool Supports(LabBuild build) =>
        build.Isf.UserTypes.ContainsKey("_KDPC_DATA") && build.Isf.Symbols.ContainsKey("KiProcessorBlock");

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        int scale = Math.Max(1, options.Scale);
        int cpus = scale >= 100 ? 64 : scale >= 10 ? 8 : 2;
        int extra = scale >= 100 ? 993 : scale >= 10 ? 93 : 0;
        var b = new KernelScenarioBuilder(build);
        b.AddProcessors(cpus);
        var k = new LabKernel(b);
        var s = new DpcWatchdogScenario(k, options.Variant == "cumulative" ? 1UL : 0UL, cpus, unwindable: options.Variant != "no-unwind", extra);
        PoolDpcCatalog.Publish(k, b);
        var r = new ScenarioResult(Name, b, options);
        r.Facts["echoReturn"] = DpcWatchdogScenario.EchoReturn;
        r.Facts["cpu0Prcb"] = s.Prcbs[0];
        r.Facts["queued"] = (ulong)s.QueuedTotal;
        r.Commands.Add("!dpcblame");
        return r;
    }
}

/// <summary>
/// Issue 17: bug check 0x133 with parameter 1 = 1 on a build that keeps the DPC watchdog profile (2016 / 14393 and
/// later): ECHO's timer DPC is running at the bug check, but the profile's captured stacks point to spindrv.sys (the
/// case !analyze gets wrong). Variants: the profile's pages missing from the dump, and a corrupt profile/triage block.
/// </summary>
public sealed class DpcCumulativeLabScenario : IScenario
{
    public string Name => "dpc-cumulative";
    public string Seed => "004_057968894f01db56.txt";
    public IReadOnlyList<string> SampleVariants => ["", "profile-missing", "profile-corrupt"];

    public bool Supports(LabBuild build) =>
        build.Isf.UserTypes.ContainsKey("_KDPC_DATA") && build.Isf.Symbols.ContainsKey("KiProcessorBlock") && DpcWatchdogScenario.BuildHasProfile(build.Isf);

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        var b = new KernelScenarioBuilder(build);
        b.AddProcessors(2);
        var k = new LabKernel(b);
        var s = new DpcWatchdogScenario(k, 1, 2, unwindable: true);
        s.AddCumulativeEvidence(options.Variant);
        PoolDpcCatalog.Publish(k, b);
        var r = new ScenarioResult(Name, b, options);
        r.Facts["profileBuffer"] = s.ProfileBuffer;
        r.Facts["triageBlock"] = s.TriageBlock;
        r.Facts["cpu0Prcb"] = s.Prcbs[0];
        r.Facts["activeDpc"] = s.ActiveKdpc;
        r.Commands.Add("!dpcblame");
        return r;
    }
}
