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
