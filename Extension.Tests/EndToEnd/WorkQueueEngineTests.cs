using NtSleuth.Lab.Samples;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Issue 16 in Microsoft's real engine, on the seed-003 sample of every lab build: !workqueue counts the 18,023 items
/// of the starved Delayed WorkQueue through the DbgEng-backed target (each build's own queue shape, found by name in the
/// forged nt symbols), groups them by routine and driver, folds the 20 blocked workers, and !alpcchain on winlogon's
/// thread ends at the MPIO/DSM workers. One fault variant (the page of item 9,000 absent from the dump) gives partial
/// counts with the address in the real engine too.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class WorkQueueEngineTests
{
    public static IEnumerable<string> Builds => LabBuilds.UnavailableReason is null ? LabBuilds.All.Select(b => b.Key) : ["(no symbol tables)"];
    private static (string Dump, string Sym, CatalogSample Sample) Make(string key, string variant)
    {
        var build = LabSamples.Build(key);
        if (!SeedWorkQueues.Supports(build)) Assert.Ignore($"{build.Label} lacks the work-queue types");
        var sample = LabSamples.Get(build, "logon-hang-alpc", variant);
        return (sample.Dump, sample.SymbolPath, sample);
    }

    [TestCaseSource(nameof(Builds))]
    public void WorkQueueCountsTheSeedBacklogAndTheChainEndsAtTheMpioWorkers(string key)
    {
        var (dump, sym, _) = Make(key, "");
        var chain = $"!alpcchain {AlpcLogonHangScenario.WinlogonThread:x}";
        var run = RealEngine.Run(dump, [".load " + ExtensionPackage.DllWinPath(), "!workqueue", "!workqueue -routine smb!SmbDelayedStartTcpSession", chain],
            new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300 });
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  ({c.Milliseconds:F0} ms)\n{c.Output}");
        var wq = run["!workqueue"].Output;
        Assert.That(wq, Does.Contain("18,023 pending, own count 18,023"), run.Transcript);
        Assert.That(wq, Does.Contain(@"17,950  mpio!MPIOPathVerify  [\Driver\mpio]  IO_WORKITEM  first #1 fffffa80`50226f00"));
        Assert.That(wq, Does.Contain(@"37  smb!SmbDelayedStartTcpSession  [\Driver\Smb]  IO_WORKITEM"));
        Assert.That(wq, Does.Contain("Workers: 20 (4 static, 16 dynamic)"));
        Assert.That(wq, Does.Contain("20 x waits Executive (KernelMode) on SynchronizationEvent for up to 9:26:24  blocked in MyBadDSM"));
        Assert.That(wq, Does.Contain("MyBadDSM+0xb698").And.Contain("mpio!MPIOPathVerify+0x14b"));
        Assert.That(wq, Does.Contain("starved: 18,023 item(s) pending (17,950 mpio!MPIOPathVerify, 37 smb!SmbDelayedStartTcpSession, 36 nt!CcWorkerThread)"));
        Assert.That(run["!workqueue -routine smb!SmbDelayedStartTcpSession"].Output, Does.Contain("Items running smb!SmbDelayedStartTcpSession: 37")
            .And.Contain("IRP fffffa80`7274e5a0"));
        // The first line that is not empty (the engine may leave a blank line where it wrote its own log line).
        var first = run[chain].Output.Split('\n').Select(l => l.TrimEnd('\r')).First(l => l.Length > 0);
        Assert.That(first, Does.Contain(@"\FileSystem\Mup").And.Contain("starved: 18,023 items pending, mostly mpio!MPIOPathVerify")
            .And.EndWith("blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"), run.Transcript);
    }

    [Test]
    public void PagedOutItemsGivePartialCountsInTheRealEngine()
    {
        var (dump, sym, sample) = Make("win10", "wq-pagedout");
        var run = RealEngine.Run(dump, [".load " + ExtensionPackage.DllWinPath(), "!workqueue"],
            new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300 });
        var o = run["!workqueue"].Output;
        TestContext.Out.WriteLine(o);
        ulong page = sample.Facts["item9000"] & ~0xfffUL;
        Assert.That(o, Does.Contain("item list (forward, Flink): link at " + NtSleuth.Commands.Output.Fmt.Addr(page)[..^3]), run.Transcript);
        Assert.That(o, Does.Contain("not readable after").And.Contain("counted back from the tail"));
        Assert.That(o, Does.Contain("+ item(s) pending").And.Contain("starved"));
        Assert.That(o, Does.Not.Contain("Exception"));
    }
}
