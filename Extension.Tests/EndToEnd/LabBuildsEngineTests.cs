using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Samples;
using NtSleuth.Lab.Scenario;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Every Windows build of the shared symbol tables, in the real engine: the baseline lab kernel written as a dump with
/// forged nt symbols; the engine resolves nt types (vertarget, dt) and our extension reads scenario objects through
/// the DbgEng-backed target (!alpcchain on a thread blocked 4:21:40 on an IRP to \FileSystem\Mup).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class LabBuildsEngineTests
{
    public static IEnumerable<string> Builds => LabBuilds.UnavailableReason is null ? LabBuilds.All.Select(b => b.Key) : ["(no symbol tables)"];

    [TestCaseSource(nameof(Builds))]
    public void BaselineKernelOpensAndOurTargetReadsItsObjects(string key)
    {
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        RealEngine.Require();
        var build = LabBuilds.Get(key);
        var dir = Path.Combine(Path.GetTempPath(), $"ntsleuth-builds-e2e-{Environment.ProcessId}", key);
        var log = new StringWriter();
        var samples = CatalogSampleMaker.Make(dir, new SymbolForge(ForgeTestEnv.Tools()), [build],
            ScenarioCatalog.All.Where(s => s.Name == "baseline-kernel"), KernelDumpKind.Complete, log);
        var sample = samples.SingleOrDefault();
        Assert.That(sample, Is.Not.Null, $"no baseline sample on {key}:\n{log}");
        var alpc = sample!.Commands.Single(c => c.StartsWith("!alpcchain", StringComparison.Ordinal));
        var run = RealEngine.Run(Path.Combine(dir, sample.Dump), ["vertarget", "dt nt!_KTHREAD WaitReason", ".load " + ExtensionPackage.DllWinPath(), alpc],
            new EngineOptions { SymbolPath = Path.Combine(dir, sample.SymbolPath), Plain = true, TimeoutSeconds = 300 });
        Assert.That(run["vertarget"].Output, Does.Contain($"Version {build.BuildNumber}"), run.Transcript);
        int wr = build.Isf.GetUserType("_KTHREAD").Fields.First(f => f.Name == "WaitReason").Offset;
        Assert.That(run["dt nt!_KTHREAD WaitReason"].Output, Does.Contain($"+0x{wr:x3} WaitReason"), run.Transcript);
        var o = run[alpc].Output;
        TestContext.Out.WriteLine($"{key}: {o}");
        Assert.That(o, Does.Contain("winlogon.exe").And.Contain("is not waiting for an ALPC reply"), run.Transcript);
        Assert.That(o, Does.Contain("4:21:40").And.Contain(@"\FileSystem\Mup").And.Contain(@"\DC005.contoso.com\PIPE\lsarpc"), run.Transcript);
    }
}
