using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// !dhcptimer in Microsoft's real engine: the lab's svchost (seed 000, and the healthy eight-day lease) written as a
/// full-memory user minidump with a forged dhcpcore.dll + dhcpcore.pdb (publics only, as Microsoft ships it) whose
/// identity the dump's module list carries.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class DhcpTimerEngineTests
{
    [Test]
    public void SeedDumpShowsMissedRenewalAndOverflow()
    {
        var (dump, sym) = LabSamples.User("seed", DhcpLeaseScenario.Seed);
        var run = RealEngine.Run(dump, [".load " + ExtensionPackage.DllWinPath(), "lm m dhcpcore", "x dhcpcore!DhcpGlobalNICList", "!dhcptimer", "!dhcptimer -json",
                "dx @$ntsleuth.DhcpTimer().Adapters[0].Verdict", "dx @$ntsleuth.DhcpTimer().Adapters[0].IpAddress"],
            new EngineOptions { SymbolPath = sym, Plain = true });
        Assert.That(run["x dhcpcore!DhcpGlobalNICList"].Output, Does.Contain("dhcpcore!DhcpGlobalNICList"), run.Transcript);
        var o = run["!dhcptimer"].Output;
        Assert.That(o, Does.Contain("RENEWAL MISSED: renewal missed: RunTime == T1 and T1 passed"), run.Transcript);
        Assert.That(o, Does.Contain("15,768,000,000 ms").And.Contain("OVERFLOW"));
        Assert.That(o, Does.Contain("IP 10.20.30.41 mask 255.255.255.0"));
        Assert.That(o, Does.Contain("now 2018-10-29 12:43:47 UTC (dump time)"));
        Assert.That(o, Does.Contain("Main thread 1ea4: dhcpcore!ProcessDhcpRequestForever waiting in WaitForMultipleObjectsEx"));
        Assert.That(o, Does.Contain("dwMilliseconds = 0xFFFFFFFF (INFINITE)"));
        TestContext.Out.WriteLine(o);
        Assert.That(run["!dhcptimer -json"].Output, Does.Contain("\"verdict\": \"renewalMissed\""));
        // The data model (issue 21 item 2) on a user-mode target: the same document through dx.
        Assert.That(DataModelEngineTests.Value(run["dx @$ntsleuth.DhcpTimer().Adapters[0].Verdict"]), Is.EqualTo("renewalMissed"));
        Assert.That(DataModelEngineTests.Value(run["dx @$ntsleuth.DhcpTimer().Adapters[0].IpAddress"]), Is.EqualTo("10.20.30.41"));
    }

    [Test]
    public void EightDayLeaseIsHealthyInTheRealEngine()
    {
        var (dump, sym) = LabSamples.User("eightdays", DhcpLeaseScenario.EightDays);
        var run = RealEngine.Run(dump, [".load " + ExtensionPackage.DllWinPath(), "!dhcptimer"], new EngineOptions { SymbolPath = sym, Plain = true });
        var o = run["!dhcptimer"].Output;
        Assert.That(o, Does.Contain("OK: renewal pending normally: T1 renewal in 3."), run.Transcript);
        Assert.That(o, Does.Not.Contain("OVERFLOW"));
    }
}
