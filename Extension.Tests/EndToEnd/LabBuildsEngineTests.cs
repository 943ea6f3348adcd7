using NtSleuth.Lab.Scenario;
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
        var build = LabSamples.Build(key);
        var sample = LabSamples.Get(build, "baseline-kernel");
        var alpc = sample.Commands.Single(c => c.StartsWith("!alpcchain", StringComparison.Ordinal));
        var run = RealEngine.Run(sample.Dump, ["vertarget", "dt nt!_KTHREAD WaitReason", ".load " + ExtensionPackage.DllWinPath(), alpc],
            new EngineOptions { SymbolPath = sample.SymbolPath, Plain = true, TimeoutSeconds = 300 });
        Assert.That(run["vertarget"].Output, Does.Contain($"Version {build.BuildNumber}"), run.Transcript);
        int wr = build.Isf.GetUserType("_KTHREAD").Fields.First(f => f.Name == "WaitReason").Offset;
        Assert.That(run["dt nt!_KTHREAD WaitReason"].Output, Does.Contain($"+0x{wr:x3} WaitReason"), run.Transcript);
        var o = run[alpc].Output;
        TestContext.Out.WriteLine($"{key}: {o}");
        Assert.That(o, Does.Contain("winlogon.exe").And.Contain("is not waiting for an ALPC reply"), run.Transcript);
        Assert.That(o, Does.Contain("4:21:40").And.Contain(@"\FileSystem\Mup").And.Contain(@"\DC005.contoso.com\PIPE\lsarpc"), run.Transcript);
    }
}
