using System.Text.RegularExpressions;
using NtSleuth.Lab.Samples;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// A day of use in one debugger session (issue 20): every command of a sample, many times, interleaved in text, DML
/// (<c>.prefer_dml 1</c>) and <c>-json</c>, with <c>.unload</c>/<c>.load</c> cycles, in one real engine process. The
/// process must survive, each command+mode must print the same thing every time, and the engine process's private
/// memory must stay flat after warm-up. The soak runs the old crash repro (<c>!leaktag Leak</c>, which killed the
/// debugger on its 6th run with "Internal CLR error" while .NET ran with W^X under wine) 1,000 times in one session.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[Category("Session")]
[NonParallelizable]
public class SessionTests
{
    // 10 rounds x 3 modes = 30 runs of every command; memory is judged after 3 warm-up rounds over the last 7 rounds (21 runs).
    private const int Rounds = 10, WarmupRounds = 3, ReloadEvery = 3, SoakCommands = 1000;
    public static readonly string[] SampleNames = ["pool-leak-19041", "ndis-pending-nbls-19041", "logon-hang-alpc-19041", "dpc-watchdog-19041", "fltmgr-frame-order-19041"];

    private static (string Dump, string Sym, CatalogSample Sample) Get(string name)
    {
        var s = LabSamples.Named(name);
        return (s.Dump, s.SymbolPath, s);
    }

    /// <summary>Masks what legitimately varies between two runs of the same command: durations, and dbgeng's own
    /// one-time symbol-loading lines (<c>&lt;Activity ...&gt;</c>, <c>&lt;Log message=...&gt;</c>) and the blank lines around them.</summary>
    internal static string Mask(string output)
    {
        var lines = output.Replace("\r", "").Split('\n')
            .Where(l => !Regex.IsMatch(l, @"^\s*</?(?:Activity|Log)\b|^Unable to load image |^\*\*\* WARNING: Unable to verify"))
            .Select(l => Regex.Replace(l, @"\d+(?:[.,]\d+)?\s?(?:ms|s)\b", "<t>"));
        return string.Join("\n", lines).Trim();
    }

    public static IEnumerable<TestCaseData> Sessions => SampleNames.Select(n => new TestCaseData(n));

    private static readonly Regex ManagedLine = new(@"^ntsleuth memory: managed heap (\d+) bytes, gc heap size \d+, gc committed (\d+),.*?budget collections (\d+) in ([0-9.]+) ms,.*?session cache (\d+) layouts (\d+) symbols", RegexOptions.Multiline);

    /// <summary>
    /// Memory is judged after warm-up (the first <see cref="WarmupRounds"/> rounds: .NET start, layouts, the GC's first
    /// budgets, the first .unload/.load) over the last 7 rounds = the last 21 runs of every command. Two figures per
    /// round, both printed: the engine process's private bytes (enginehost -mem; wine: pagefile usage) and the
    /// extension's own memory (<c>!help -mem</c> at the end of each round: GC heap, GC committed, session cache).
    /// Measured (wine 8, Dec 2026) before the extension's garbage budget (<c>GarbageBudget</c>): the growth was our
    /// uncollected garbage (GC committed 28 -> 57 MB on ndis while the live heap after a full GC stayed 1.95 MB; dpc and
    /// fltmgr grew exactly by their allocation, 1.1 MB a round, until the first GC); built-in <c>dt</c>/<c>dq</c> of the
    /// same data and <c>!help</c> alone, the same number of times with the same reloads, stayed within 0.5%.
    /// </summary>
    [TestCaseSource(nameof(Sessions))]
    public void EveryCommandManyTimesInOneSessionIsStableAndFlat(string name)
    {
        var (dump, sym, sample) = Get(name);
        string load = ".load " + ExtensionPackage.DllWinPath();
        var cmds = new List<string> { load };
        var keys = new List<string?> { null };
        void Add(string c, string? key) { cmds.Add(c); keys.Add(key); }
        var roundEnds = new List<int>();
        for (int r = 1; r <= Rounds; r++)
        {
            foreach (var c in sample.Commands)
            {
                Add(c, "text|" + c);
                Add(".prefer_dml 1", null);
                Add(c, "dml|" + c);
                Add(".prefer_dml 0", null);
                Add(c + " -json", "json|" + c);
            }
            Add("!help -mem", null);
            roundEnds.Add(cmds.Count - 1);
            if (r % ReloadEvery == 0 && r < Rounds) { Add(".unload ntsleuth", null); Add(load, null); }
        }
        var run = RealEngine.Run(dump, cmds, new EngineOptions { SymbolPath = sym, TimeoutSeconds = 900, ReportMemory = true });
        TestContext.Out.WriteLine($"{name}: {cmds.Count} commands in {run.Wall.TotalSeconds:F1} s");
        Assert.That(run.Commands, Has.Count.EqualTo(cmds.Count), $"the engine process did not survive the session:\n{run.Errors}\n{run.Transcript[^Math.Min(4000, run.Transcript.Length)..]}");
        Assert.That(run.Transcript, Does.Not.Contain("Internal CLR error").And.Not.Contain("Fatal error."));

        var first = new Dictionary<string, string>();
        for (int i = 0; i < cmds.Count; i++)
        {
            var o = run.Commands[i].Output;
            Assert.That(o, Does.Not.Contain("Exception").And.Not.Contain("   at "), $"{cmds[i]} leaked an exception");
            if (keys[i] is not { } k) continue;
            var m = Mask(o);
            Assert.That(m, Is.Not.Empty, $"{k} printed nothing");
            if (!first.TryAdd(k, m))
                Assert.That(m, Is.EqualTo(first[k]), $"{k} printed something else on command #{i} than the first time");
        }
        var mem = RealEngine.PrivateBytes(run.Transcript);
        Assert.That(mem, Has.Count.EqualTo(cmds.Count), "enginehost -mem reported no private bytes");
        var managed = roundEnds.Select(i => ManagedLine.Match(run.Commands[i].Output)).ToList();
        Assert.That(managed.All(m => m.Success), Is.True, "!help -mem printed no memory line: " + run.Commands[roundEnds[0]].Output);
        static string Mb(long v) => (v / 1048576.0).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        long L(Match m, int g) => long.Parse(m.Groups[g].Value, System.Globalization.CultureInfo.InvariantCulture);
        var perRound = roundEnds.Select(i => mem[i]).ToList();
        TestContext.Out.WriteLine($"engine private bytes per round (MB): {string.Join(" ", perRound.Select(Mb))}");
        TestContext.Out.WriteLine($"extension GC heap per round (MB):    {string.Join(" ", managed.Select(m => Mb(L(m, 1))))}");
        TestContext.Out.WriteLine($"extension GC committed per round (MB): {string.Join(" ", managed.Select(m => Mb(L(m, 2))))}");
        TestContext.Out.WriteLine($"extension budget collections: {managed[^1].Groups[3].Value} in {managed[^1].Groups[4].Value} ms; session cache {managed[^1].Groups[5].Value} layouts, {managed[^1].Groups[6].Value} symbols");
        long warm = perRound[WarmupRounds - 1], last = perRound[^1];
        double engineGrowth = 100.0 * (last - warm) / warm;
        // The engine's step at each .unload/.load (the round after one) is reported apart: the extension drops its
        // session cache there and asks the engine again for every type and symbol; the engine keeps ~0.1 MB per such
        // cycle plus, now and then, a 2-4 MB heap step of its own (measured: logon-hang-alpc, .unload/.load + one
        // !alpcchain per round, 16 cycles: +7.9 MB with the extension's GC heap 0.12 MB and GC committed 1.59 MB flat;
        // the same 16 cycles with !help: +0.0 MB; the same commands without reloads: flat; pool-leak, !leaktag Leak with a
        // cycle every round: 52.4 -> 60.2 -> 56.4 MB, not monotone). What a repeated command
        // costs is the growth inside the reload cycles, judged below.
        var afterReload = Enumerable.Range(WarmupRounds, Rounds - WarmupRounds).Where(r => r % ReloadEvery == 0).ToHashSet(); // 0-based round r follows a reload
        long reloadSteps = afterReload.Sum(r => perRound[r] - perRound[r - 1]);
        long commandGrowth = last - warm - reloadSteps;
        long managedGrowth = L(managed[^1], 2) - L(managed[WarmupRounds - 1], 2);
        TestContext.Progress.WriteLine($"[session] {name}: engine private {Mb(warm)} -> {Mb(last)} MB ({engineGrowth:F1}%) over the last {Rounds - WarmupRounds} rounds: " +
            $"{Mb(commandGrowth)} MB within reload cycles ({100.0 * commandGrowth / warm:F1}%), {Mb(reloadSteps)} MB at {afterReload.Count} .unload/.load; " +
            $"extension GC committed {managedGrowth / 1048576.0:+0.0;-0.0} MB, live {Mb(L(managed[^1], 1))} MB");
        Assert.Multiple(() =>
        {
            Assert.That(commandGrowth, Is.LessThan(warm / 10), $"engine private memory grew {Mb(commandGrowth)} MB ({100.0 * commandGrowth / warm:F1}%) over the last {3 * (Rounds - WarmupRounds)} runs of each command after warm-up, .unload/.load steps ({Mb(reloadSteps)} MB) apart ({warm:N0} -> {last:N0} bytes)");
            // Not a leak bound on the engine's heap: around .unload/.load it moves by up to ~5 MB and goes back down
            // (pool-leak, one cycle a round: 52.4 -> 60.2 -> 56.4 MB); 5 MB a cycle on average is the bound.
            Assert.That(reloadSteps, Is.LessThan(afterReload.Count * (5L << 20)), $"the engine kept {Mb(reloadSteps)} MB over {afterReload.Count} .unload/.load cycles (measured: 0.1-5 MB a cycle, not monotone)");
            // The extension's own memory: the GC's committed memory and the session cache must not grow with repetitions.
            Assert.That(managedGrowth, Is.LessThan(2L << 20), $"the extension's GC committed memory grew {managedGrowth / 1048576.0:F1} MB after warm-up");
            Assert.That(managed.Skip(WarmupRounds).Select(m => m.Groups[5].Value + "/" + m.Groups[6].Value).Distinct().Count(), Is.EqualTo(1), "the session cache grew after warm-up");
        });
    }

    /// <summary>1,000 commands in one session: the old crash repro, <c>!leaktag Leak</c> (which died on its 6th run in
    /// one session), 1,000 times.</summary>
    [Test]
    public void SoakAThousandCommandsInOneSession()
    {
        var (dump, sym, _) = Get("pool-leak-19041");
        var cmds = new List<string> { ".load " + ExtensionPackage.DllWinPath() };
        cmds.AddRange(Enumerable.Repeat("!leaktag Leak", SoakCommands));
        var run = RealEngine.Run(dump, cmds, new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 1200, ReportMemory = true });
        TestContext.Out.WriteLine($"soak: {cmds.Count} commands in {run.Wall.TotalSeconds:F1} s");
        Assert.That(run.Commands, Has.Count.EqualTo(cmds.Count), $"the engine process died during the soak:\n{run.Errors}\n{run.Transcript[^Math.Min(4000, run.Transcript.Length)..]}");
        Assert.That(run.Commands[1].Output, Does.Contain("601 outstanding"));
        var first = new Dictionary<string, string>();
        for (int i = 1; i < run.Commands.Count; i++)
        {
            var m = Mask(run.Commands[i].Output);
            if (!first.TryAdd(cmds[i], m)) Assert.That(m, Is.EqualTo(first[cmds[i]]), $"{cmds[i]} (command #{i}) printed something else than the first time");
        }
        var mem = RealEngine.PrivateBytes(run.Transcript);
        Assert.That(mem, Has.Count.EqualTo(cmds.Count));
        long warm = mem[100], last = mem[^1];
        TestContext.Out.WriteLine($"private bytes after command 100: {warm:N0}, after command {SoakCommands}: {last:N0}");
        Assert.That(last, Is.LessThan(warm * 1.10), "private memory grew more than 10% over the soak");
    }

    /// <summary>
    /// The issue's own repro, 1,000 times: <c>!nblowners</c> on ndis-pending-nbls in DML mode (<c>.prefer_dml 1</c>) in
    /// one session. Before the fixes two such runs killed the debugger in 37 of 38 sessions ("Internal CLR error").
    /// Measured (wine 8, 2 cores, Dec 2026): 17-20 s, of which ~8 s are the extension's garbage-budget collections (a run
    /// allocates ~2.2 MB); private bytes 57.4 MB after run 100, 60.5 MB after run 1,000.
    /// </summary>
    [Test]
    public void SoakNblOwnersInDmlAThousandTimesInOneSession()
    {
        var (dump, sym, _) = Get("ndis-pending-nbls-19041");
        var cmds = new List<string> { ".load " + ExtensionPackage.DllWinPath(), ".prefer_dml 1" };
        cmds.AddRange(Enumerable.Repeat("!nblowners", SoakCommands));
        var run = RealEngine.Run(dump, cmds, new EngineOptions { SymbolPath = sym, TimeoutSeconds = 1200, ReportMemory = true });
        TestContext.Progress.WriteLine($"[soak] !nblowners DML x{SoakCommands}: {cmds.Count} commands in {run.Wall.TotalSeconds:F1} s");
        Assert.That(run.Commands, Has.Count.EqualTo(cmds.Count), $"the engine process died during the soak:\n{run.Errors}\n{run.Transcript[^Math.Min(4000, run.Transcript.Length)..]}");
        Assert.That(run.Transcript, Does.Not.Contain("Internal CLR error").And.Not.Contain("Fatal error."));
        Assert.That(run.Commands[2].Output, Does.Contain("<exec cmd=").And.Contain("1854 of 3005 NBLs"), "not DML output of the ndis sample");
        string firstOut = Mask(run.Commands[2].Output);
        for (int i = 3; i < run.Commands.Count; i++)
            Assert.That(Mask(run.Commands[i].Output), Is.EqualTo(firstOut), $"!nblowners (command #{i}) printed something else than the first time");
        var mem = RealEngine.PrivateBytes(run.Transcript);
        Assert.That(mem, Has.Count.EqualTo(cmds.Count));
        long warm = mem[101], last = mem[^1];
        TestContext.Progress.WriteLine($"[soak] private bytes after run 100: {warm:N0}, after run {SoakCommands}: {last:N0} ({100.0 * (last - warm) / warm:F1}%)");
        Assert.That(last, Is.LessThan(warm * 1.10), "private memory grew more than 10% over the soak");
    }
}
