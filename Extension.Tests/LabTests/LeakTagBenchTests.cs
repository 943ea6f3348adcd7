using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

public class LeakTagBenchTests
{
    [Test]
    public void BenchCasesBeatTheManualProcedure()
    {
        if (PoolDpcBuilds.TryLoadNt(PoolDpcBuilds.Win10) is null) Assert.Ignore("../shared/realdata/isf is absent");
        var rows = PoolDpcBench.Run().ToList();
        foreach (var r in rows) TestContext.Out.WriteLine(r.ToString());
        Assert.That(rows, Has.Count.EqualTo(6));
        var leak100 = rows.Single(r => r.Command.StartsWith("!leaktag") && r.Scenario.StartsWith("100x"));
        Assert.That(leak100.Ratio, Is.GreaterThanOrEqualTo(20.0));
        var dpc100 = rows.Single(r => r.Command == "!dpcblame" && r.Scenario.StartsWith("100x"));
        Assert.That(dpc100.RoundTrips, Is.LessThan(300));
        Assert.That(rows.All(r => r.Ratio > 1.0), Is.True);
    }
}
