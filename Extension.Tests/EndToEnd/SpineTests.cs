using System.Diagnostics;
using NtSleuth.Commands.Cli;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The spine in Microsoft's real engine: ntsleuth.dll loads, hosts .NET, registers the six commands, prints usage and
/// errors, survives .unload/.load, reports a missing runtime and managed faults as text. Targets: the real user-mode
/// minidumps in ../shared/realdata/dumps/user.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class SpineTests
{
    private static string UserDump(string name = "win7sp1-x64-calc.dmp") => TestPaths.SharedFile("realdata", "dumps", "user", name);

    private static string Load(bool withRuntime = true) => ".load " + ExtensionPackage.DllWinPath(withRuntime);

    [Test]
    public void ExportsEveryCommand()
    {
        var dll = Path.Combine(TestPaths.ExtensionBin, "ntsleuth.dll");
        if (!File.Exists(dll)) TestPaths.Unavailable($"{dll} not built");
        string? objdump = RealEngine.IsWindows ? null : "/usr/bin/x86_64-w64-mingw32-objdump";
        if (objdump is null || !File.Exists(objdump)) { Assert.Ignore("x86_64-w64-mingw32-objdump not available"); return; }
        var psi = new ProcessStartInfo(objdump, ["-p", dll]) { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string[] expected = ["DebugExtensionInitialize", "DebugExtensionUninitialize", "DebugExtensionNotify", "help", "_EFN_Analyze", .. CommandRegistry.ExportedNames];
        var names = System.Text.RegularExpressions.Regex.Matches(text, @"^\s*\[\s*\d+\]\s+(\S+)\s*$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToHashSet();
        Assert.That(names, Is.SupersetOf(expected), text);
    }

    [Test]
    public void LoadsListsCommandsAndPrintsUsage()
    {
        var cmds = new List<string> { Load(), "!help", "!ntsleuth.help" };
        cmds.AddRange(CommandRegistry.ExportedNames.Select(n => $"!{n} -?"));
        var run = RealEngine.Run(UserDump(), cmds);
        Assert.That(run[0].Output, Does.Not.Contain("Unable to").And.Not.Contain("failed"), run[0].Output);
        foreach (var help in new[] { run[1], run[2] })
            foreach (var n in CommandRegistry.ExportedNames)
                Assert.That(help.Output, Does.Contain("!" + n), $"{help.Command} does not list !{n}:\n{help.Output}");
        foreach (var n in CommandRegistry.ExportedNames)
            Assert.That(run[$"!{n} -?"].Output, Does.Contain($"Usage: !{n}"), run.Transcript);
    }

    [Test]
    public void BadArgumentPrintsClearErrorAndUsage()
    {
        var run = RealEngine.Run(UserDump(), [Load(), "!alpcchain -bogus", "!leaktag TooLongTag", "!dpcblame -cpu"]);
        Assert.That(run["!alpcchain -bogus"].Output, Does.Contain("unknown option '-bogus'").And.Contain("Usage: !alpcchain"));
        Assert.That(run["!dpcblame -cpu"].Output, Does.Contain("option -cpu needs a value"));
        Assert.That(run["!leaktag TooLongTag"].Output, Does.Contain("!leaktag:"), run.Transcript);
    }

    [Test]
    public void UnloadThenLoadAgainWorks()
    {
        var run = RealEngine.Run(UserDump(), [Load(), "!help", ".unload ntsleuth", Load(), "!help", ".chain"]);
        Assert.That(run[1].Output, Does.Contain("!alpcchain"));
        Assert.That(run[2].Output, Does.Contain("Unloading"));
        Assert.That(run[4].Output, Does.Contain("!alpcchain"), run.Transcript);
        Assert.That(run[5].Output, Does.Contain("ntsleuth"));
    }

    [Test]
    public void NoRuntimeGivesActionableMessage()
    {
        var run = RealEngine.Run(UserDump(), [Load(withRuntime: false), "!help", "!alpcchain -?", "lm"],
            new EngineOptions { Environment = new Dictionary<string, string> { ["DOTNET_ROOT"] = @"C:\no-such-dotnet" } });
        var o = run["!help"].Output;
        Assert.That(run[0].Output, Does.Not.Contain("failed"), "DebugExtensionInitialize must not fail because of .NET");
        Assert.That(o, Does.Contain("cannot run !help: no usable .NET"));
        Assert.That(o, Does.Contain("app-local runtime").And.Contain("DOTNET_ROOT").And.Contain(@"C:\no-such-dotnet").And.Contain("global install"));
        Assert.That(o, Does.Contain("install the .NET 10"));
        Assert.That(run["!alpcchain -?"].Output, Does.Contain("cannot run !alpcchain"));
        Assert.That(run["lm"].Output, Does.Contain("start"), "the debugger keeps working");
    }

    [TestCase("throw", "InvalidOperationException")]
    [TestCase("av", "internal error")]
    public void ManagedFaultIsReportedAsText(string fault, string expected)
    {
        var run = RealEngine.Run(UserDump(), [Load(), "!dpcblame", "!dpcblame -json", "!help"],
            new EngineOptions { Environment = new Dictionary<string, string> { ["NTSLEUTH_TEST_FAULT"] = fault } });
        Assert.That(run["!dpcblame"].Output, Does.Contain(expected), run.Transcript);
        // -json: the host's barrier still answers with one JSON document (docs/json.md).
        var doc = System.Text.Json.Nodes.JsonNode.Parse(run["!dpcblame -json"].Output)!;
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("internalError"), run["!dpcblame -json"].Output);
        Assert.That(doc["error"]!["message"]!.GetValue<string>(), Does.Contain(expected));
        Assert.That(run["!help"].Output, Does.Contain("!alpcchain"), "the next command still works");
        Assert.That(run.Commands.Count, Is.EqualTo(4), "the engine survived and ran the next commands");
    }

    [Test]
    public void MeasuresStartupAndSteadyStateOverhead()
    {
        var cmds = new List<string> { Load() };
        for (int i = 0; i < 11; i++) cmds.Add("!help");
        var run = RealEngine.Run(UserDump(), cmds);
        // .NET starts in .load (the data model provider registers @$ntsleuth there, docs/dx.md).
        double load = run[0].Milliseconds, first = run[1].Milliseconds;
        var steady = run.Commands.Skip(2).Select(c => c.Milliseconds).OrderBy(x => x).ToList();
        double median = steady[steady.Count / 2];
        TestContext.Out.WriteLine($"[measure] .load (.NET start + @$ntsleuth) {load:0.0} ms; first command {first:0.0} ms; steady-state !help median {median:0.00} ms (min {steady[0]:0.00}, max {steady[^1]:0.00}); whole run {run.Wall.TotalMilliseconds:0} ms");
        Assert.That(run[1].Output, Does.Contain("!alpcchain"));
        Assert.That(median, Is.LessThan(load), "steady state is cheaper than the load that starts .NET");
    }
}
