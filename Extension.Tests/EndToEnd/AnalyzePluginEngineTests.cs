using System.Text.RegularExpressions;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The !analyze plug-in in Microsoft's real engine, as far as it can go without ext.dll (which implements !analyze
/// and is not in the engine package): enginehost's "@analyze" loads ntsleuth.dll, calls its _EFN_Analyze for the four
/// phases with a fake IDebugFailureAnalysis2 whose failure code is the dump's own bug check (ReadBugCheckData), and
/// prints every entry the plug-in writes. The plug-in reads the dump through the real engine (DbgEngTarget) exactly as
/// !dpcblame does. What stays untested: ext.dll finding ntsleuth.alz on the extension path and calling the plug-in,
/// and how !analyze shows and buckets the entries (docs/analyze.md).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class AnalyzePluginEngineTests
{
    private static string[] Fa(string output) => output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.StartsWith("@@fa ", StringComparison.Ordinal)).ToArray();

    [Test]
    public void PluginBlamesTheDriverDpcBlameFindsOnTheDpcWatchdogSample()
    {
        var s = LabSamples.Named("dpc-watchdog-19041");
        string dump = s.Dump, sym = s.SymbolPath;
        var dll = ExtensionPackage.DllWinPath();
        var load = ".load " + dll;
        var run = RealEngine.Run(dump, [load, "@analyze", "!dpcblame", ".chain"],
            new EngineOptions { SymbolPath = sym, Plain = true, ExtensionDll = dll, TimeoutSeconds = 300 });
        TestContext.Out.WriteLine(run["@analyze"].Output);
        Assert.That(run[load].HResult, Is.EqualTo(0u), run.Transcript);
        var a = run["@analyze"];
        Assert.That(a.HResult, Is.EqualTo(0u), run.Transcript);
        var fa = Fa(a.Output);
        Assert.That(fa.Where(l => !l.StartsWith("@@fa phase", StringComparison.Ordinal)), Is.EqualTo(new[]
        {
            "@@fa GetFailureCode -> 0x133",
            "@@fa SetString 0x00010006 ECHO",
            "@@fa SetString 0x00010001 ECHO.sys",
            "@@fa SetString 0x00010002 ECHO!EchoEvtTimerFunc+7d",
            "@@fa SetUlong64 0x80000000 0xfffff88004be3409",
        }.Concat(fa.Where(l => l.StartsWith("@@fa AddString 0x0001000a ", StringComparison.Ordinal)))), a.Output);
        var evidence = fa.Single(l => l.StartsWith("@@fa AddString 0x0001000a ", StringComparison.Ordinal));
        Assert.That(evidence, Does.Contain("ECHO!EchoEvtTimerFunc+0x7d (fffff880`04be3409) was running in the DPC when the watchdog fired")
            .And.Contain("A single DPC ran 0x283 ticks (limit 0x282).").And.Contain("KeStallExecutionProcessor in a loop")
            .And.Contain("Found by a return-address scan of the DPC stack."));
        Assert.That(fa.Where(l => l.StartsWith("@@fa phase", StringComparison.Ordinal)),
            Is.EqualTo(new[] { "@@fa phase 1 hr 0x00000000", "@@fa phase 2 hr 0x00000000", "@@fa phase 4 hr 0x00000000", "@@fa phase 8 hr 0x00000000" }));
        Assert.That(a.Output, Does.Contain("ntsleuth: !analyze: DPC_WATCHDOG_VIOLATION blamed on ECHO!EchoEvtTimerFunc+7d"));
        Assert.That(a.Output, Does.Not.Contain("@@fa unexpected").And.Not.Contain("@@fa QueryInterface"));
        // The extension is unchanged by the new export: the command and the chain still work in the same session.
        Assert.That(run["!dpcblame"].Output, Does.Contain("ECHO!EchoEvtTimerFunc"), run.Transcript);
        Assert.That(run[".chain"].Output, Does.Contain("ntsleuth.dll").IgnoreCase);
    }

    [Test]
    public void PluginSaysNothingOnAnotherBugCheckAndStartsWithoutLoad()
    {
        var s = LabSamples.Named("pool-leak-19041");
        string dump = s.Dump, sym = s.SymbolPath;
        var dll = ExtensionPackage.DllWinPath();
        // No .load: !analyze loads the plug-in DLL itself, so the first call into it must be able to start .NET.
        var run = RealEngine.Run(dump, ["@analyze"], new EngineOptions { SymbolPath = sym, Plain = true, ExtensionDll = dll, TimeoutSeconds = 300 });
        var a = run["@analyze"];
        var fa = Fa(a.Output);
        var code = fa.Select(l => Regex.Match(l, @"^@@fa GetFailureCode -> 0x([0-9a-f]+)$")).Single(m => m.Success).Groups[1].Value;
        Assume.That(code, Is.Not.EqualTo("133"), "the pool-leak sample must carry another bug check for this test to mean anything");
        Assert.That(fa.Where(l => l.Contains("String") || l.Contains("Ulong64")), Is.Empty, a.Output);
        Assert.That(a.HResult, Is.EqualTo(0u), a.Output);
        Assert.That(a.Output, Does.Not.Contain("ntsleuth:"), "says nothing");
    }
}
