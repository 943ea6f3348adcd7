using System.Globalization;
using System.Text.RegularExpressions;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Samples;
using NtSleuth.Lab.Scenario;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Ctrl+Break for real (issue 20, item 4): enginehost's interrupt thread calls IDebugControl::SetInterrupt while a long
/// command runs on a big lab sample in Microsoft's engine, and measures the time from SetInterrupt to Execute's return.
/// The command must return within 100 ms with a partial result and a note saying it was interrupted, and the next command
/// in the same session must run normally (the interrupt must not stick).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class InterruptEngineTests
{
    private const double MaxLatencyMs = 100;
    /// <summary>The bound for the big-table cases in CI (noisy 2-core machines); the goal, and the usual figure, is under 100 ms.</summary>
    private const double CiLatencyMs = 500;

    private (string Dump, string Sym, CatalogSample Sample) Make(string scenario, string variant, int scale)
    {
        var s = LabSamples.Get(LabSamples.Build("19041"), scenario, variant, scale);
        TestContext.Out.WriteLine($"{s.Name}: {s.DumpBytes:N0} dump bytes, written in {s.Seconds:F1} s");
        return (s.Dump, s.SymbolPath, s);
    }

    private static readonly Regex Requested = new(@"@@host interrupt requested at ([0-9.]+) ms hr=0x([0-9a-f]{8})");
    private static readonly Regex Latency = new(@"@@host interrupt latency ([0-9.]+) ms");

    /// <summary>
    /// .load, <paramref name="light"/> (warm-up: the .NET start and the type layouts), <paramref name="heavy"/> interrupted
    /// after <paramref name="afterMs"/>, then <paramref name="light"/> again, which must print exactly what it printed first.
    /// </summary>
    private static (string Interrupted, double LatencyMs) RunInterrupted(string dump, string sym, string light, string heavy, int afterMs, int onWalkEntry = 0, string? atPoint = null)
    {
        string load = ".load " + ExtensionPackage.DllWinPath();
        var run = RealEngine.Run(dump, [load, light, heavy, light],
            new EngineOptions
            {
                SymbolPath = sym, Plain = true, TimeoutSeconds = 600, InterruptAfterMs = afterMs, InterruptCommand = 3,
                InterruptOnWalkEntry = onWalkEntry, InterruptAtPoint = atPoint, Environment = ProfileEnv(),
            });
        foreach (var c in run.Commands)
            TestContext.Out.WriteLine($"> {c.Command}  (hr 0x{c.HResult:x8}, {c.Milliseconds:F1} ms)\n{Head(c.Output)}");
        Assert.That(run.Commands, Has.Count.EqualTo(4), run.Transcript[^Math.Min(4000, run.Transcript.Length)..]);
        var h = run[2];
        var req = Requested.Match(h.Output);
        Assert.That(req.Success, Is.True, $"{heavy} returned in {h.Milliseconds:F0} ms, before the interrupt at {afterMs} ms" +
            (onWalkEntry > 0 ? $" after a walk's entry {onWalkEntry}" : "") + (atPoint is null ? "" : $" at {atPoint}") + $": the sample is too small\n{Head(h.Output)}");
        Assert.That(req.Groups[2].Value, Is.EqualTo("00000000"), "SetInterrupt failed");
        var lat = Latency.Match(h.Output);
        Assert.That(lat.Success, Is.True, h.Output);
        double ms = double.Parse(lat.Groups[1].Value, CultureInfo.InvariantCulture);
        TestContext.Progress.WriteLine($"[interrupt] {heavy}: requested at {req.Groups[1].Value} ms, returned {ms:F2} ms later (whole command {h.Milliseconds:F0} ms)");
        // The interrupt must not stick: the same light command prints the same thing after it (no layout lost, no
        // read refused).
        // Compared as the session tier compares repeated runs (the engine's asynchronous log lines and blank lines around them masked).
        Assert.That(SessionTests.Mask(run[3].Output), Is.EqualTo(SessionTests.Mask(run[1].Output)), "the command after the interrupted one differs from its warm-up run");
        return (h.Output, ms);
    }

    /// <summary>NTSLEUTH_INTERRUPT_PROFILE=1: the engine host runs with NTSLEUTH_PROFILE=2 (every slow engine call, in order).</summary>
    private static IReadOnlyDictionary<string, string> ProfileEnv() =>
        Environment.GetEnvironmentVariable("NTSLEUTH_INTERRUPT_PROFILE") == "1"
            ? new Dictionary<string, string> { ["NTSLEUTH_PROFILE"] = "2" } : new Dictionary<string, string>();

    private static string Head(string s) => s.Length <= 3000 ? s : s[..3000] + $"\n... ({s.Length:N0} chars)";

    [Test]
    public void AlpcChainAllOnTenThousandThreadsStopsPromptly()
    {
        var (dump, sym, s) = Make("logon-hang-alpc", "10k", 1);
        string seedChain = s.Commands.First(c => c != "!alpcchain -all");
        // Interrupted when the process and thread walks have yielded 2,000 entries (the extension's walk signal), not at a
        // fixed time: under load the .NET code of -all or the engine's symbol loading could still be running at any fixed ms.
        var (outp, ms) = RunInterrupted(dump, sym, seedChain, "!alpcchain -all", 0, onWalkEntry: 2000);
        Assert.Multiple(() =>
        {
            Assert.That(ms, Is.LessThan(MaxLatencyMs), "interrupt latency");
            Assert.That(outp, Does.Contain("(INTERRUPTED: partial)"), Head(outp));
            Assert.That(Regex.Match(outp, @"(\d+) threads examined").Groups[1].Value, Is.Not.EqualTo("").And.Not.EqualTo("0"), Head(outp));
        });
    }

    /// <summary>
    /// Ctrl+Break while nt's type layouts are still being loaded (the first command of the session): the command stops,
    /// says where, and the layouts built so far are not kept (the session's layout cache is not poisoned). A "not found"
    /// the engine answers again when asked is an aborted lookup, reported as the interrupt (not as missing symbols).
    /// </summary>
    [Test]
    public void InterruptDuringTypeLoadingDoesNotPoisonTheSession()
    {
        var (dump, sym, s) = Make("logon-hang-alpc", "10k", 1);
        string seedChain = s.Commands.First(c => c != "!alpcchain -all");
        string load = ".load " + ExtensionPackage.DllWinPath();
        var run = RealEngine.Run(dump, [load, "!ntsleuth.help", "!alpcchain -all", seedChain],
            new EngineOptions
            {
                SymbolPath = sym, Plain = true, TimeoutSeconds = 600, InterruptAfterMs = 60, InterruptCommand = 3,
            });
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  ({c.Milliseconds:F1} ms)\n{Head(c.Output)}");
        var h = run[2].Output;
        var lat = Latency.Match(h);
        Assert.That(lat.Success, Is.True, h);
        double ms = double.Parse(lat.Groups[1].Value, CultureInfo.InvariantCulture);
        TestContext.Progress.WriteLine($"[interrupt] !alpcchain -all during type loading: returned {ms:F2} ms after SetInterrupt");
        // When Ctrl+Break lands inside the engine's own symbol load (nt's PDB, on the first type lookup) the engine call
        // returns only when the engine is done with it: measured (wine 8, Dec 2026) 165-376 ms after SetInterrupt, the
        // command then stops at once ("while the engine was loading symbols"). That call is not ours to cut short, so
        // the bound there is the engine's (500 ms); anywhere else it is 100 ms.
        bool inEngineLoad = h.Contains("while the engine was loading symbols", StringComparison.Ordinal);
        Assert.Multiple(() =>
        {
            Assert.That(ms, Is.LessThan(inEngineLoad ? 500 : MaxLatencyMs), "interrupt latency");
            // Since .NET starts at .load (the data-model provider), nt's types may already be loaded when the interrupt
            // lands: then the walk itself stops ("(INTERRUPTED: partial)"). Either way the command says it was interrupted.
            Assert.That(h, Does.Contain("interrupted by user (Ctrl+Break)").Or.Contain("(INTERRUPTED: partial)"), h);
            // Before the fix the next command read every structure with half-built layouts: no image names, bogus links.
            Assert.That(run[3].Output, Does.Contain("winlogon.exe (384.1e2c) -> LogonUI.exe (1ac)"), run[3].Output);
            Assert.That(run[3].Output, Does.Not.Contain("not readable"), run[3].Output);
        });
    }

    /// <summary>
    /// <c>!leaktag Leak</c> on the x100 pool-leak sample (153 modules, 65,536 big-page entries): Ctrl+Break while the tracker
    /// tables, the big-page table or the module search run. The command stops with what it has and says so.
    /// </summary>
    [Test]
    public void LeakTagOnHundredfoldTablesStopsPromptly()
    {
        var (dump, sym, _) = Make("pool-leak", "", 100);
        // Interrupted when the module search starts (the extension's test point), after the tables were summed: the one-tag
        // report takes only ~100 ms since names go through the data model, so a fixed timer could miss it under load or
        // idle. (Before the interrupt fix every lookup the engine refused under the pending interrupt cost ~40 ms and left
        // a false "missing" note.)
        var (outp, ms) = RunInterrupted(dump, sym, "!leaktag -nonpaged -n 5", "!leaktag Leak", 0, atPoint: "leaktag.modules");
        Assert.Multiple(() =>
        {
            Assert.That(ms, Is.LessThan(CiLatencyMs), "interrupt latency");
            Assert.That(outp, Does.Contain("Interrupted (Ctrl+Break): partial"), Head(outp));
            Assert.That(outp, Does.Contain("Leak       601    615424000"), "the tracker table sums read before the interrupt are shown");
            // What the engine refused while the interrupt was pending is not reported as missing or unreadable.
            Assert.That(outp, Does.Not.Contain("are missing").And.Not.Contain("is not readable").And.Not.Contain("not in the symbols"), Head(outp));
        });
    }

    /// <summary>
    /// <c>!nblowners</c> on the x100 ndis sample (300,500 NBLs in their pools): Ctrl+Break in the middle of the pool walk.
    /// The totals so far are printed, marked partial.
    /// </summary>
    [Test]
    public void NblOwnersOnThreeHundredThousandNblsStopsPromptly()
    {
        var (dump, sym, _) = Make("ndis-pending-nbls", "", 100);
        // The whole command takes ~450-650 ms here (wine, 2 cores); the same command runs first (warm-up) and after the
        // interrupted one, where it must print the full report again.
        // Interrupted when the walks have yielded 10,000 entries (the extension's walk signal): in the first pool's NBLs.
        var (outp, ms) = RunInterrupted(dump, sym, "!nblowners", "!nblowners", 0, onWalkEntry: 10_000);
        Assert.Multiple(() =>
        {
            Assert.That(ms, Is.LessThan(CiLatencyMs), "interrupt latency");
            Assert.That(outp, Does.Contain("Interrupted (Ctrl+Break): the result below is partial"), Head(outp));
            Assert.That(outp, Does.Contain("interrupted by user (Ctrl+Break)"), Head(outp));
            // Owners not identified because of the interrupt are not called stale, and a read the engine refused under
            // the pending interrupt is not an unreadable NBL.
            Assert.That(outp, Does.Not.Contain("stale or corrupted").And.Not.Contain("unreadable").And.Not.Contain("NBL pool list (ndis global pool list)"), Head(outp));
        });
    }
}
