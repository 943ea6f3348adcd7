using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>The seed-003 work-queue state as the lab writes it, read back with the lab's own struct reader (no command).</summary>
[TestFixture]
public class SeedWorkQueuesLabTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;

    [TestCaseSource(nameof(Builds))]
    public void Every_build_has_the_work_queue_types_in_its_own_shape(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        Assert.That(SeedWorkQueues.Supports(build), Is.True, "every lab build's ISF has the work-queue types");
        var r = new AlpcLogonHangScenario().Build(build, ScenarioOptions.Default);
        var b = r.Builder;
        var exwq = b.Layout("_EX_WORK_QUEUE");
        // The shapes of the real symbol tables: _KQUEUE on 7601, _KPRIQUEUE from 9600, a partition pointer from 1809.
        Assert.That(exwq.HasField("WorkerQueue"), Is.EqualTo(build.BuildNumber == 7601));
        Assert.That(exwq.HasField("WorkPriQueue"), Is.EqualTo(build.BuildNumber >= 9600));
        Assert.That(exwq.HasField("Partition"), Is.EqualTo(build.BuildNumber >= 17763));
        Assert.That(b.HasSymbol("PspSystemPartition"), Is.EqualTo(build.BuildNumber >= 17763));
        if (build.BuildNumber == 7601) Assert.That(exwq.Size, Is.EqualTo(0x58UL), "the seed: each entry is 0x58 bytes");

        var entries = b.ListEntries(r.Fact("delayedHead"));
        Assert.That(entries, Has.Count.EqualTo(SeedWorkQueues.Pending));
        Assert.That(entries[0], Is.EqualTo(SeedWorkQueues.FirstItem));
        Assert.That(entries[^1], Is.EqualTo(SeedWorkQueues.LastItem));
        // Scattered: list order is not address order, and no page holds more than 8 items.
        Assert.That(entries.Zip(entries.Skip(1)).Count(p => p.Second > p.First), Is.InRange(SeedWorkQueues.Pending / 3, 2 * SeedWorkQueues.Pending / 3));
        Assert.That(entries.GroupBy(e => e & ~0xfffUL).Max(g => g.Count()), Is.LessThanOrEqualTo(8));
        ulong routineOff = b.OffsetOf("_IO_WORKITEM", "Routine");
        Assert.That(entries.Count(e => b.ReadPointer(e + routineOff) == SeedWorkQueues.MpioPathVerify), Is.EqualTo(SeedWorkQueues.MpioItems));
        Assert.That(entries.Count(e => b.ReadPointer(e + routineOff) == SeedWorkQueues.SmbDelayedStartTcpSession), Is.EqualTo(SeedWorkQueues.SmbItems));
        foreach (var irp in SeedWorkQueues.SmbIrps) Assert.That(b.Memory.IsMapped(irp), Is.True);
        Assert.That(b.Memory.IsMapped(SeedWorkQueues.FirstWorker), Is.True);
    }

    [TestCase("wq-cycle")]
    [TestCase("wq-pagedout")]
    [TestCase("wq-count")]
    public void Fault_variants_damage_what_they_say(string variant)
    {
        var build = LabTestSupport.BuildOrIgnore("win7");
        var r = new AlpcLogonHangScenario().Build(build, new ScenarioOptions { Variant = variant });
        var b = r.Builder;
        switch (variant)
        {
            case "wq-cycle": Assert.That(b.ReadPointer(r.Fact("item10000")), Is.EqualTo(r.Fact("item5000"))); break;
            case "wq-pagedout": Assert.That(b.Memory.IsMapped(r.Fact("item9000")), Is.False); break;
            case "wq-count": Assert.That(b.ReadLe(r.Fact("delayedQueue") + b.OffsetOf("_EX_WORK_QUEUE", "WorkerQueue.Header.SignalState"), 4), Is.EqualTo(18_100UL)); break;
        }
    }
}
