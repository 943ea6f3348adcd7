using NtSleuth.Extension;
using NtSleuth.Lab;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Reads in another process's context (DbgEngTarget.ReadProcessVirtual -> ProcessReadContext) in Microsoft's real
/// engine, on the 19041 fltmgr-frame-order sample whose SYSTEM hive bins live only in the Registry process's user
/// address space (<c>!frameorder</c> finds EncryptionLegacy's altitude only through them).
/// <list type="bullet">
/// <item>On a dump nothing is changed: <c>.cache</c> and <c>.process</c> print the same before and after, and no
/// .cache option is set (NTSLEUTH_TRACE shows every setting the extension changes).</item>
/// <item>With the test hook NTSLEUTH_TEST_PROCESS_READ=live the dump is treated as a live kernel target (the real
/// engine accepts the .cache options on dumps): the whole query / set / verify / restore sequence runs against the
/// real dbgeng, including the private client that reads <c>.cache</c>'s output, after an exception thrown in the
/// middle of the command and after a Ctrl+Break (IDebugControl::SetInterrupt) in the middle of it.</item>
/// </list>
/// What this cannot show: that a live KDNET target returns the right process's pages (docs/live-targets.md).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class LiveTargetEngineTests
{
    private const string Altitude = "altitude 149998.99 (group \"FSFilter Encryption\" in fltmgr's legacy altitude table)";
    private string _dump = "", _sym = "";

    [OneTimeSetUp]
    public void MakeSample()
    {
        var sample = LabSamples.Get(LabSamples.Build("19041"), new FltmgrFrameOrderScenario().Name);
        _dump = sample.Dump;
        _sym = sample.SymbolPath;
    }

    private EngineRun Run(string? hook, params string[] commands)
    {
        var env = new Dictionary<string, string> { ["NTSLEUTH_TRACE"] = "1" };
        if (hook is not null) env[ProcessReadContext.TestHookVariable] = hook;
        string load = ".load " + ExtensionPackage.DllWinPath();
        var run = RealEngine.Run(_dump, [load, .. commands], new EngineOptions { SymbolPath = _sym, Plain = true, TimeoutSeconds = 300, Environment = env });
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  (hr 0x{c.HResult:x8}, {c.Milliseconds:F0} ms)\n{c.Output}");
        Assert.That(run.ExitCode, Is.EqualTo(0), "the debugger survives\n" + run.Transcript + run.Errors);
        Assert.That(run.Commands, Has.Count.EqualTo(commands.Length + 1), run.Transcript);
        return run;
    }

    /// <summary>The engine's own text without blank lines (the engine and its asynchronous gallery log lines leave
    /// a varying number of line breaks around a command's output).</summary>
    private static string Norm(string output) =>
        string.Join("\n", output.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0));

    private static int Count(string text, string what) => text.Split(what).Length - 1;

    [Test]
    public void OnADumpNothingButTheImplicitProcessIsTouchedAndItIsRestored()
    {
        var run = Run(null, ".cache", ".process", "!frameorder", ".cache", ".process");
        var fo = run[3].Output;
        Assert.Multiple(() =>
        {
            Assert.That(fo, Does.Contain(Altitude), "the command did read the Registry process's user pages");
            Assert.That(fo, Does.Not.Contain(".cache"), "no .cache option was set or even queried on a dump");
            Assert.That(Norm(run[4].Output), Is.EqualTo(Norm(run[1].Output)), ".cache identical before and after");
            Assert.That(Norm(run[5].Output), Is.EqualTo(Norm(run[2].Output)), "implicit process identical before and after");
            Assert.That(run[1].Output, Does.Not.Contain("translated to physical addresses"));
        });
    }

    [Test]
    public void LiveSequenceSetsForceDecodeUserForTheCommandAndRestoresIt()
    {
        var run = Run("live", ".cache", "!frameorder", ".cache", ".cache forcedecodeuser", "!frameorder", ".cache", ".cache noforcedecodeptes");
        Assert.Multiple(() =>
        {
            Assert.That(run[2].Output, Does.Contain(Altitude));
            Assert.That(run[2].Output, Does.Contain("ntsleuth: .cache forcedecodeuser set and verified (was noforcedecodeptes)"));
            Assert.That(run[2].Output, Does.Contain("ntsleuth: .cache noforcedecodeptes restored and verified"));
            Assert.That(run[2].Output, Does.Not.Contain("Max cache size"), "the private client's .cache output never reaches the user");
            Assert.That(Norm(run[3].Output), Is.EqualTo(Norm(run[1].Output)), ".cache identical before and after");
            // The user's own forcedecodeuser is respected and left on.
            Assert.That(run[5].Output, Does.Contain(Altitude));
            Assert.That(run[5].Output, Does.Contain("ntsleuth: .cache forcedecodeuser already in effect: nothing changed"));
            Assert.That(run[5].Output, Does.Not.Contain("restored"));
            Assert.That(run[6].Output, Does.Contain("** User virtual addresses are translated to physical addresses before access"));
            Assert.That(run.Transcript, Does.Not.Contain("WARNING: the engine"));
        });
    }

    [Test]
    public void AnExceptionInTheMiddleOfTheCommandStillRestoresEverything()
    {
        var run = Run("live,throw", ".cache", ".process", "!frameorder", ".cache", ".process", "!frameorder", ".cache");
        Assert.Multiple(() =>
        {
            Assert.That(run[3].Output, Does.Contain("ntsleuth: .cache noforcedecodeptes restored and verified"), "restored after the exception");
            Assert.That(run[3].Output, Does.Not.Contain(Altitude), "the injected exception cost the hive read");
            Assert.That(Norm(run[4].Output), Is.EqualTo(Norm(run[1].Output)), ".cache identical before and after");
            Assert.That(Norm(run[5].Output), Is.EqualTo(Norm(run[2].Output)), "implicit process identical before and after");
            Assert.That(run[6].Output, Does.Contain(Altitude), "the next command works");
            Assert.That(Norm(run[7].Output), Is.EqualTo(Norm(run[1].Output)));
        });
    }

    [Test]
    public void ACtrlBreakInTheMiddleOfTheCommandStillRestoresEverything()
    {
        var run = Run("live,interrupt", ".cache", ".process", "!frameorder", ".cache", ".process", "!frameorder", ".cache");
        Assert.Multiple(() =>
        {
            Assert.That(run[3].Output, Does.Contain("ntsleuth: .cache noforcedecodeptes restored and verified"), "restored with a Ctrl+Break pending");
            Assert.That(Norm(run[4].Output), Is.EqualTo(Norm(run[1].Output)), ".cache identical before and after");
            Assert.That(Norm(run[5].Output), Is.EqualTo(Norm(run[2].Output)), "implicit process identical before and after");
            Assert.That(Count(run[6].Output, "fltmgr frames: 1"), Is.EqualTo(1), "the next command runs");
            Assert.That(run[6].Output, Does.Contain("ntsleuth: .cache noforcedecodeptes restored and verified"));
            Assert.That(run[6].Output, Does.Contain(Altitude), "the next command reads the registry again (nothing poisoned)");
            Assert.That(run[3].Output, Does.Not.Contain("is not in the symbols"), "the interrupt is not a missing type");
            Assert.That(Norm(run[7].Output), Is.EqualTo(Norm(run[1].Output)));
            Assert.That(run.Transcript, Does.Not.Contain("WARNING: the engine"));
        });
    }

    /// <summary>
    /// Issue 20: a Ctrl+Break in the middle of the registry read (NTSLEUTH_TEST_PROCESS_READ=interrupt: SetInterrupt
    /// after the first read in the Registry process) printed "type nt!_CM_KEY_NODE is not in the symbols", and so did
    /// every later !frameorder until .unload: the missing type was kept in the session cache. Now the interrupted
    /// command says it was interrupted in the registry, and the next ones read the groups again.
    /// </summary>
    [Test]
    public void ACtrlBreakInTheRegistryIsTheInterruptAndDoesNotPoisonTheSession()
    {
        var run = Run("interrupt", "!frameorder", "!frameorder", "!frameorder");
        Assert.Multiple(() =>
        {
            Assert.That(run[1].Output, Does.Contain("interrupted by user (Ctrl+Break) while reading the registry"));
            Assert.That(run[1].Output, Does.Not.Contain("is not in the symbols").And.Not.Contain(Altitude));
            Assert.That(run[2].Output, Does.Contain(Altitude), "the next command is whole");
            Assert.That(run[2].Output, Does.Not.Contain("interrupted").And.Not.Contain("is not in the symbols"));
            Assert.That(Norm(run[3].Output), Is.EqualTo(Norm(run[2].Output)));
        });
    }
}
