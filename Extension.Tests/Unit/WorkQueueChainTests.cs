using NtSleuth.Commands.AlpcChain;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>!alpcchain past the blocker: into the starved system work queue (issue 16 step 3).</summary>
[TestFixture]
public class WorkQueueChainTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;

    private static ScenarioResult Build(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        if (!SeedWorkQueues.Supports(build)) Assert.Ignore($"{build.Label} lacks the work-queue types");
        return new AlpcLogonHangScenario().Build(build, ScenarioOptions.Default);
    }

    private static (AlpcChainReport, ReadStats) Chain(ScenarioResult s, int items = AlpcChainAnalyzer.DefaultWorkQueueItems, bool all = false)
    {
        var stats = new ReadStats();
        var a = new AlpcChainAnalyzer(new KernelReader(s.CreateTarget(), stats), items);
        return (all ? a.AnalyzeAll() : a.AnalyzeThread(AlpcLogonHangScenario.WinlogonThread), stats);
    }

    [TestCaseSource(nameof(Builds))]
    public void Seed_chain_ends_at_the_mpio_dsm_workers(string key)
    {
        var s = Build(key);
        var (r, _) = Chain(s);
        var c = r.Chains.Single();
        var q = c.WorkQueue!;
        Assert.That(q, Is.Not.Null);
        Assert.That(q.QueueAddress, Is.EqualTo(s.Fact("delayedQueue")));
        Assert.That((q.Starved, q.Pending, q.Examined), Is.EqualTo((true, 18_023L, 1_000L)));
        Assert.That(q.Routines[0].Routine, Is.EqualTo("mpio!MPIOPathVerify"));
        Assert.That(q.Routines.Sum(g => g.Count), Is.EqualTo(1_000));
        Assert.That((q.Workers, q.IdleWorkers, q.BlockedInCount, q.BlockedIn, q.CalledFrom), Is.EqualTo((20, 0, 20, "MyBadDSM", "mpio!MPIOPathVerify+0x14b")));
        Assert.That(q.Why, Does.Contain(@"\FileSystem\Mup"));
        Assert.That(q.BlockerDriverItems, Is.Empty, "no Mup work item in the queue");
        Assert.That(c.Summary, Does.Contain(@"\FileSystem\Mup").And.EndWith("blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"));
        Assert.That(r.Reads!.WorkQueueRoundTrips, Is.GreaterThan(1_000).And.LessThan(1_300));
    }

    [Test]
    public void Wqitems_zero_uses_the_queues_own_count_only()
    {
        var s = Build("win7");
        var (r, stats) = Chain(s, items: 0);
        var q = r.Chains.Single().WorkQueue!;
        Assert.That((q.Pending, q.Examined, q.Routines.Count), Is.EqualTo((18_023L, 0L, 0)));
        Assert.That(stats.Packets, Is.LessThan(250), "no item read: queue headers and the workers only");
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("alpcchain", "fffffa8073d3d770 -wqitems 0", s.CreateTarget(), sink), Is.Zero);
        Assert.That(sink.Text.Split('\n')[0], Does.EndWith("blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"));
        var bad = new BufferSink();
        Assert.That(CommandDispatcher.Run("alpcchain", "fffffa8073d3d770 -wqitems lots", s.CreateTarget(), bad), Is.Not.Zero);
        Assert.That(bad.All, Does.Contain("-wqitems"));
    }

    [Test]
    public void Blocker_that_is_a_worker_thread_goes_to_its_own_queue()
    {
        var s = Build("win10");
        var b = s.Builder;
        // lsm's request to svchost is taken by a system worker of the Delayed queue instead of svchost's own thread.
        b.At("_KALPC_MESSAGE", AlpcLogonHangScenario.Msg3).Set("ServerThread", SeedWorkQueues.FirstWorker);
        var (r, _) = Chain(s);
        var c = r.Chains.Single();
        Assert.That(c.Blocker!.Address, Is.EqualTo(SeedWorkQueues.FirstWorker));
        Assert.That(c.WorkQueue!.Why, Does.Contain("the blocker is a worker thread of the system work queue node 0 pool 0"));
        Assert.That(c.WorkQueue.QueueAddress, Is.EqualTo(s.Fact("delayedQueue")));
        Assert.That(c.Summary, Does.EndWith("blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"));
    }

    [Test]
    public void All_merges_chains_that_end_in_the_same_starved_queue()
    {
        var s = Build("win7");
        var (before, _) = Chain(s, all: true);
        var b = s.Builder;
        // lsm 1a74's server (svchost 1ea8, idle on a timer) now waits in the kernel on an IRP of its own.
        ulong msg = b.ReadPointer(s.Fact("lsmTimerWaiter") + b.OffsetOf("_ETHREAD", "AlpcMessage"));
        ulong server = b.ReadPointer(msg + b.OffsetOf("_KALPC_MESSAGE", "ServerThread"));
        var t = b.View("_ETHREAD", server);
        t.SetEnum("Tcb.WaitReason", "Executive", "_KWAIT_REASON").Set("Tcb.WaitMode", 0UL);
        b.AddIrp(t, 1);
        var (after, _) = Chain(s, all: true);
        Assert.That(after.Chains, Has.Count.EqualTo(before.Chains.Count - 1));
        var merged = after.Chains.Single(c => c.WorkQueue is not null);
        Assert.That(merged.Waiters, Is.EqualTo(before.Chains.Single(c => c.WorkQueue is not null).Waiters + 1));
        Assert.That(merged.WaiterThreads, Does.Contain(s.Fact("lsmTimerWaiter")));
    }

    [Test]
    public void User_mode_blocker_does_not_go_into_the_queues()
    {
        var s = Build("win7");
        var (r, _) = Chain(s, all: true);
        var timer = r.Chains.Single(c => c.WaiterThreads.Contains(s.Fact("lsmTimerWaiter")));
        Assert.That(timer.WorkQueue, Is.Null);
        Assert.That(timer.WorkQueueRoundTrips, Is.Zero);
    }
}
