using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The spine in Microsoft's real debugger engine: .load of the built ntsleuth.dll, help, usage for all six commands,
/// errors, .unload/.load, no-runtime message, faults inside managed handlers. Targets are the real user-mode
/// minidumps in ../shared/realdata/dumps/user/.
/// </summary>
[TestFixture, Category("EndToEnd"), NonParallelizable]
public class SpineTests
{
    static readonly string[] Six = { "leaktag", "alpcchain", "nblowners", "dpcblame", "frameorder", "dhcptimer" };
    RealEngine _e = null!;
    string _dump = null!;
    string _load = null!;

    [OneTimeSetUp]
    public void Setup()
    {
        string shared = Path.GetFullPath(Path.Combine(RealEngine.FindRepoRoot(), "..", "shared"));
        _dump = Path.Combine(shared, "realdata", "dumps", "user", "win7sp1-x64-calc.dmp");
        if (!File.Exists(_dump)) Assert.Ignore($"../shared is absent: {_dump} not found");
        _e = RealEngine.Get();
        _load = ".load " + _e.WinPath(Path.Combine(_e.Package(withRuntime: true), "ntsleuth.dll"));
    }

    static void AssertHealthy(EngineRun run)
    {
        Assert.That(run.Completed, Is.True, "the engine host did not finish normally:\n" + run.Raw);
        Assert.That(run.ExitCode, Is.EqualTo(0), run.Raw);
    }

    [Test]
    public void Load_Help_And_QualifiedHelp_ListAllSixCommands()
    {
        var run = _e.Run(_dump, new[] { _load, "!help", "!ntsleuth.help" });
        AssertHealthy(run);
        Assert.That(run[0].Output, Does.Not.Contain("@@err"), run.Raw);
        foreach (var help in new[] { run[1], run[2] })
            foreach (var c in Six)
                Assert.That(help.Output, Does.Contain(c), $"{help.Command} does not list {c}:\n{help.Output}");
        TestContext.Out.WriteLine($"first command (.NET start) {run[1].Milliseconds:F1} ms; second {run[2].Milliseconds:F1} ms; wall {run.WallMilliseconds:F0} ms");
    }

    [Test]
    public void Usage_ForAllSixCommands()
    {
        var run = _e.Run(_dump, new[] { _load }.Concat(Six.Select(c => $"!{c} -?")));
        AssertHealthy(run);
        for (int i = 0; i < Six.Length; i++)
        {
            var r = run[i + 1];
            Assert.That(r.Output, Does.Contain(Six[i]), r.Output);
            Assert.That(r.Output.ToLowerInvariant(), Does.Contain("usage"), $"!{Six[i]} -? printed no usage:\n{r.Output}");
            Assert.That(r.Output, Does.Not.Contain("@@err"), r.Output);
        }
    }

    [Test]
    public void BadArgument_PrintsClearError_AndUsage()
    {
        var run = _e.Run(_dump, new[] { _load, "!alpcchain -nosuchflag", "!help" });
        AssertHealthy(run);
        var bad = run[1].Output;
        Assert.That(bad, Does.Contain("@@err"), "no error-class output:\n" + bad);
        Assert.That(bad, Does.Contain("!alpcchain"), bad);
        Assert.That(bad, Does.Contain("nosuchflag"), bad);
        Assert.That(bad.ToLowerInvariant(), Does.Contain("usage"), bad);
        Assert.That(run[2].Output, Does.Contain("dhcptimer"), "engine unusable after the error");
    }

    [Test]
    public void Unload_ThenLoad_Works()
    {
        var run = _e.Run(_dump, new[] { _load, "!help", ".unload ntsleuth", "!help", _load, "!help", ".chain" });
        AssertHealthy(run);
        Assert.That(run[1].Output, Does.Contain("leaktag"));
        Assert.That(run[3].Output, Does.Not.Contain("leaktag"), "!help still ran our extension after .unload:\n" + run[3].Output);
        Assert.That(run[5].Output, Does.Contain("leaktag"), "!help after .load again:\n" + run[5].Output);
        Assert.That(run[6].Output, Does.Contain("ntsleuth.dll"));
    }

    [Test]
    public void NoRuntime_PrintsActionableMessage_AndEngineSurvives()
    {
        string empty = Path.Combine(Path.GetTempPath(), $"ntsleuth-e2e-{Environment.ProcessId}", "empty-dotnet-root");
        Directory.CreateDirectory(empty);
        string load = ".load " + _e.WinPath(Path.Combine(_e.Package(withRuntime: false), "ntsleuth.dll"));
        var run = _e.Run(_dump, new[] { load, "!leaktag Ddk", "!help", "lm m calc" },
                         new Dictionary<string, string?> { ["DOTNET_ROOT"] = _e.WinPath(empty) });
        AssertHealthy(run);
        Assert.That(run[0].Output, Does.Not.Contain("@@err"), "DebugExtensionInitialize must not fail without .NET:\n" + run[0].Output);
        var msg = run[1].Output;
        Assert.That(msg, Does.Contain("@@err ntsleuth: cannot run !leaktag"), msg);
        Assert.That(msg, Does.Contain("app-local runtime"), msg);
        Assert.That(msg, Does.Contain(_e.WinPath(empty)), "message must show the DOTNET_ROOT value:\n" + msg);
        Assert.That(msg, Does.Contain("0x80008083"), msg);
        Assert.That(msg, Does.Contain("install the .NET 10 x64 runtime"), msg);
        Assert.That(msg.Split('\n').Count(l => l.StartsWith("@@err")), Is.EqualTo(1), "exactly one message:\n" + msg);
        Assert.That(run[3].Output, Does.Contain("calc"), "engine unusable after the failure");
    }

    [Test]
    public void NoRuntime_DotnetRootNotSet_SaysNotSet()
    {
        string load = ".load " + _e.WinPath(Path.Combine(_e.Package(withRuntime: false), "ntsleuth.dll"));
        var run = _e.Run(_dump, new[] { load, "!dpcblame" });
        AssertHealthy(run);
        if (!run[1].Output.Contains("cannot run !dpcblame"))
            Assert.Ignore("a global .NET runtime is installed in this environment; the no-runtime case needs DOTNET_ROOT (covered above)");
        Assert.That(run[1].Output, Does.Contain("DOTNET_ROOT: not set"), run[1].Output);
    }

    [TestCase("throw", "InvalidOperationException")]
    [TestCase("av", "Exception")]
    public void FaultInsideManagedHandler_IsReportedAsText(string mode, string expected)
    {
        var run = _e.Run(_dump, new[] { _load, "!leaktag Ddk", "!help", "lm m calc" },
                         new Dictionary<string, string?> { ["NTSLEUTH_TEST_FAULT"] = mode });
        AssertHealthy(run);
        var o = run[1].Output;
        Assert.That(o, Does.Contain("@@err"), o);
        Assert.That(o, Does.Contain("leaktag"), o);
        Assert.That(o, Does.Contain(expected), o);
        Assert.That(run[2].Output, Does.Contain("dhcptimer"), "help must still work after the fault");
        Assert.That(run[3].Output, Does.Contain("calc"), "engine must still work after the fault");
    }

    [Test]
    public void Timing_FirstCommand_And_SteadyState()
    {
        var cmds = new List<string> { _load, "!help" };
        for (int i = 0; i < 20; i++) cmds.Add("!leaktag -?");
        var run = _e.Run(_dump, cmds);
        AssertHealthy(run);
        double first = run[1].Milliseconds;
        var steady = run.Commands.Skip(2).Select(c => c.Milliseconds).OrderBy(x => x).ToList();
        double median = steady[steady.Count / 2];
        TestContext.Out.WriteLine($"first command incl. .NET start: {first:F1} ms; steady-state per command median {median:F2} ms (min {steady[0]:F2}, max {steady[^1]:F2}); wall {run.WallMilliseconds:F0} ms");
        Assert.That(first, Is.LessThan(10_000), "first command (.NET start) took too long");
        Assert.That(median, Is.LessThan(500), "steady-state per-command overhead too high");
    }
}
