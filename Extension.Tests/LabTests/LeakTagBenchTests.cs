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
        // Counted the same way on both sides (KD packets; the manual !for_each_module s -a charged as the image pages it
        // transfers), !leaktag is never slower than the manual procedure, though it also reads the big-page table the
        // manual one skips: it reads the images in packet-sized requests and skips pages that cannot be read (issue 15:
        // the old 78x counted our search as free; counted honestly it was 0.99x before this strategy).
        Assert.That(leak100.Ratio, Is.GreaterThanOrEqualTo(1.0));
        var dpc100 = rows.Single(r => r.Command == "!dpcblame" && r.Scenario.StartsWith("100x"));
        Assert.That(dpc100.RoundTrips, Is.LessThan(300));
        Assert.That(rows.Where(r => r.Command == "!dpcblame").All(r => r.Ratio > 1.0), Is.True);
        Assert.That(rows.All(r => r.Ratio >= 1.0), Is.True);
        var scattered = PoolDpcBench.RunScattered().ToList();
        foreach (var r in scattered) TestContext.Out.WriteLine(r.ToString());
        Assert.That(scattered.All(r => r.Ratio >= 1.0), Is.True, "never slower on scattered KDPCs");
    }

    /// <summary>
    /// Every page of every image present (live target, complete dump): the scan reads what the manual s -a is charged
    /// for, minus the x64 exception directories (ImageScanPlan), plus the big-page table the manual procedure skips.
    /// Before ImageScanPlan these rows were 0.99x; they fail below 1.00x.
    /// </summary>
    [Test]
    public void NeverSlowerWhenTheImagesArePresent()
    {
        if (PoolDpcBuilds.TryLoadNt(PoolDpcBuilds.Win10) is null) Assert.Ignore("../shared/realdata/isf is absent");
        var rows = PoolDpcBench.RunImagesPresent().ToList();
        foreach (var r in rows) TestContext.Out.WriteLine(r.ToString() + $" ({r.ManualSeconds / r.Seconds:0.000})");
        Assert.That(rows, Has.Count.EqualTo(3));
        // Both sides moved about every image byte: the scenario really has its images present.
        foreach (var r in rows) Assert.That(r.ManualBytes, Is.GreaterThan(8_000_000));
        Assert.That(rows.Select(r => r.Ratio), Has.All.GreaterThanOrEqualTo(1.0));
        // The documented threshold (docs/bench.md): with every image's exception directory at 1.5% of it, still >= 1.00x
        // (break-even is 1.2% at seed scale, 1.4% at 100x; the measured images hold 0.9-3.7%).
        var threshold = PoolDpcBench.RunImagesPresent(exceptionDirectoryShare: 0.015).ToList();
        foreach (var r in threshold) TestContext.Out.WriteLine("1.5%: " + r + $" ({r.ManualSeconds / r.Seconds:0.000})");
        Assert.That(threshold.Select(r => r.Ratio), Has.All.GreaterThanOrEqualTo(1.0));
    }
}
