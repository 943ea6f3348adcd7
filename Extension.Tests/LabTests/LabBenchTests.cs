using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

[TestFixture]
public class LabBenchTests
{
    /// <summary>A case over the dispatcher's built-in "help" (no target reads) to exercise the runner and table.</summary>
    private sealed class HelpCase : IBenchCase
    {
        public string Command => "help";
        public string Scenario => "baseline-kernel";
        public IReadOnlyList<string> Builds => ["win10", "win7"];
        public IReadOnlyList<int> Scales => [1, 10];
        public string Arguments(ScenarioResult s) => "";
        public ManualProcedure Manual(ScenarioResult s) =>
            new ManualProcedureBuilder().Step("!process 0 0", 1, 0).Walk("ActiveProcessLinks", (int)s.Fact("processCount"), s.Builder.SizeOf("_EPROCESS")).Build();
    }

    [Test]
    public void Runner_scales_the_scenario_and_prints_one_table()
    {
        LabTestSupport.BuildOrIgnore("win10");
        var rows = BenchRunner.Run([new HelpCase()]);
        Assert.That(rows, Has.Count.EqualTo(2));
        Assert.That(rows.Select(r => r.Scale), Is.EqualTo(new[] { 1, 10 }));
        Assert.That(rows.All(r => r.HResult == 0 && r.RoundTrips == 0), Is.True);
        Assert.That(rows[1].ManualRoundTrips, Is.GreaterThan(rows[0].ManualRoundTrips), "10x scale has more processes to walk by hand");
        long eprocess = (long)LabBuilds.Get("win10").Isf.GetUserType("_EPROCESS").Size;
        Assert.That(rows[0].ManualBytes, Is.EqualTo(eprocess * (rows[0].ManualRoundTrips - 1)));
        var table = BenchRunner.Format(rows);
        Assert.That(table, Does.Contain("command").And.Contain("manual RT").And.Contain("!help").And.Contain("baseline-kernel").And.Contain("10x"));
        Assert.That(table.Split('\n').Count(l => l.StartsWith("!help")), Is.EqualTo(2));
    }

    [Test]
    public void Kdnet_model_and_ratio()
    {
        var r = new BenchRow("x", "s", "win10", 1, 10, 2_000_000, NtSleuth.Commands.Memory.KdnetModel.Seconds(10, 2_000_000), 1000, 0,
            NtSleuth.Commands.Memory.KdnetModel.Seconds(1000, 0), 0, 0, "");
        Assert.That(r.KdnetSeconds, Is.EqualTo(1.01).Within(1e-9));
        Assert.That(r.Ratio, Is.EqualTo(1.0 / 1.01).Within(1e-9));
    }
}

/// <summary>
/// Both columns of the bench are counted by one rule: every request that reaches the target costs
/// ceil(bytes / 3,944) KD packets. Recounted here from the in-memory target's own transport log (below both caches), so
/// the test fails if either side counted requests instead of packets, or bytes it did not move.
/// </summary>
[TestFixture]
public class BenchCountsBothSidesTheSameWay
{
    private static long PacketsOf(IEnumerable<(ulong Address, int Length)> log) =>
        log.Sum(r => NtSleuth.Commands.Memory.KdnetModel.Packets(r.Length));

    [TestCase("nblowners", null, "win10")]
    [TestCase("nblowners", "scattered", "win10")]
    [TestCase("frameorder", null, "win10")]
    [TestCase("frameorder", null, "win7")]
    public void RowRecountedFromTheTransportLog(string command, string? variant, string buildKey)
    {
        LabTestSupport.BuildOrIgnore(buildKey);
        IBenchCase c = command == "frameorder" ? new NtSleuth.Lab.Scenarios.FrameOrderBenchCase()
            : variant is null ? new NtSleuth.Lab.Scenarios.NblOwnersBenchCase() : new NtSleuth.Lab.Scenarios.NblOwnersScatteredBenchCase();
        var build = LabBuilds.Get(buildKey);
        var row = BenchRunner.RunOne(c, build, 1);
        Assert.That(row.HResult, Is.EqualTo(0), row.Note);

        // The command's side: the same scenario, its transport log.
        var scenario = ScenarioCatalog.Build(c.Scenario, build, new ScenarioOptions { Scale = 1, Variant = c.Variant });
        var t = scenario.CreateTarget();
        t.ReadLog = new();
        var stats = new NtSleuth.Commands.Memory.ReadStats();
        var sink = new NtSleuth.Commands.Output.BufferSink();
        Assert.That(NtSleuth.Commands.Cli.CommandDispatcher.Run(c.Command, c.Arguments(scenario), t, sink, stats), Is.EqualTo(0), sink.All);
        Assert.That(t.SearchCalls, Is.EqualTo(0));
        Assert.That(row.RoundTrips, Is.EqualTo(PacketsOf(t.ReadLog)), "command side: KD packets of every request");
        Assert.That(row.Bytes, Is.EqualTo(t.ReadLog.Sum(r => (long)r.Length)), "command side: bytes requested");
        // The compact layout is read in 16 KB windows: requests over 3,944 bytes cost more than one packet each.
        if (command == "nblowners" && variant is null) Assert.That(row.RoundTrips, Is.GreaterThan(t.ReadLog.Count), "requests over 3,944 bytes cost more than one packet");

        // The manual side: its replay's transport log (the engine-cache model's requests at real addresses).
        var manual = c.Manual(scenario);
        Assert.That(manual.TransportLog, Is.Not.Null.And.Not.Empty);
        Assert.That(manual.RoundTrips - manual.ModelledRoundTrips, Is.EqualTo(PacketsOf(manual.TransportLog!)), "manual side: KD packets of every request");
        Assert.That(manual.Bytes - manual.ModelledBytes, Is.EqualTo(manual.TransportLog!.Sum(r => (long)r.Length)), "manual side: bytes requested");
        Assert.That(row.ManualRoundTrips, Is.EqualTo(manual.RoundTrips));
    }

    [Test]
    public void OneRequestCostsTheSameOnBothSides()
    {
        var mem = new NtSleuth.Lab.SparseMemory();
        const ulong at = 0xfffffa80_10000000;
        mem.Map(at, 0x20000);
        NtSleuth.Lab.Target.InMemoryTarget Target() => new(mem, new NtSleuth.Commands.Symbols.Isf.IsfSymbolProvider(),
            new NtSleuth.Commands.Target.TargetInfo { Kind = NtSleuth.Commands.Target.TargetKind.Kernel, PointerSize = 8 }, []);
        foreach (int size in new[] { 8, 3944, 3945, 0x4000, 0x10000 })
        {
            var mb = new ManualProcedureBuilder(Target());
            mb.Read(at, size);
            var stats = new NtSleuth.Commands.Memory.ReadStats();
            var ours = new NtSleuth.Commands.Memory.TargetMemory(Target(), stats);
            ours.Prefetch(at, size);
            var m = mb.Build();
            long expected = (size + 3943) / 3944;
            Assert.That(stats.Packets, Is.EqualTo(m.RoundTrips), $"{size} bytes");
            Assert.That(stats.TransferBytes, Is.EqualTo(m.Bytes), $"{size} bytes");
            Assert.That(m.RoundTrips, Is.EqualTo(expected), $"{size} bytes: KD packets, not requests");
        }
    }

    /// <summary>Issue 15: never slower than the manual procedure in modelled KDNET time on scattered pool (rows of scripts/bench.sh).</summary>
    [Test]
    public void NeverSlowerOnScatteredPool()
    {
        LabTestSupport.BuildOrIgnore("win10");
        foreach (var key in new[] { "win7", "win10" })
        {
            var build = LabBuilds.TryGet(key);
            if (build is null) continue;
            foreach (int scale in new[] { 1, 100 })
                foreach (var r in NtSleuth.Lab.Scenarios.AlpcChainBench.Run(build, scale, "scattered"))
                {
                    TestContext.Out.WriteLine(r.ToString());
                    Assert.That(r.Ratio, Is.GreaterThanOrEqualTo(1.0), $"!alpcchain {r.Case} on {key}");
                }
        }
        var nbl = BenchRunner.RunOne(new NtSleuth.Lab.Scenarios.NblOwnersScatteredBenchCase(), LabBuilds.Get("win10"), 1);
        TestContext.Out.WriteLine($"!nblowners scattered: {nbl.RoundTrips} / {nbl.ManualRoundTrips} packets, {nbl.Ratio:0.000}x");
        Assert.That(nbl.Ratio, Is.GreaterThanOrEqualTo(1.0), "!nblowners on scattered NBLs");
    }

    /// <summary>Issue 15: !workqueue's rows (the seed's layout, compact, one item per page) never slower than the seed's hand
    /// walk, and page read-ahead where it pays: fewer packets than one per item on the seed's layout (8 items per page in
    /// random order) and compact, and not more than the probe's few pages over one per item on the sparse layout.</summary>
    [Test]
    public void WorkQueueNeverSlowerOnAnyLayout()
    {
        LabTestSupport.BuildOrIgnore("win10");
        var build = LabBuilds.Get("win10");
        foreach (var (variant, name) in NtSleuth.Lab.Scenarios.AlpcChainBench.WorkQueueLayouts)
        {
            var r = NtSleuth.Lab.Scenarios.AlpcChainBench.WorkQueueRow(build, variant, name);
            double ours = NtSleuth.Commands.Memory.KdnetModel.Seconds(r.RoundTrips, r.Bytes), manual = NtSleuth.Commands.Memory.KdnetModel.Seconds(r.ManualRoundTrips, r.ManualBytes);
            TestContext.Out.WriteLine($"!workqueue {name}: {r.RoundTrips} / {r.ManualRoundTrips} packets, {ours:0.000} / {manual:0.000} s, {manual / ours:0.00}x");
            Assert.That(manual / ours, Is.GreaterThanOrEqualTo(1.0), $"!workqueue {name}");
            int items = NtSleuth.Lab.Scenarios.SeedWorkQueues.Pending;
            if (variant == "wq-sparse")
                Assert.That(r.RoundTrips, Is.LessThanOrEqualTo(items + 200 + 2 * NtSleuth.Commands.Kernel.ItemPageReadAhead.PagesBeforeJudging), "sparse: page mode must stop after its probe");
            else
                Assert.That(r.RoundTrips, Is.LessThan(items / 3), $"{name}: whole pages must serve the items that share them");
        }
    }
}
