using NtSleuth.Lab;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Another .NET in the debugger (issue 20, item 6), in Microsoft's real engine: enginehost starts a CoreCLR the way SOS
/// does (LoadLibrary + coreclr_initialize, no hostfxr; <c>-coreclr</c>) before the extension's first command, or after
/// it; the extension must say so in words, never crash or hang, and leave the debugger working.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class AnotherDotNetEngineTests
{
    private string _dump = "", _sym = "";

    [OneTimeSetUp]
    public void MakeSample()
    {
        var sample = LabSamples.Get(LabSamples.Build("19041"), "pool-leak");
        _dump = sample.Dump;
        _sym = sample.SymbolPath;
    }

    /// <summary>The runtime folder the package runs on (its app-local dotnet\ folder).</summary>
    private static string OwnRuntimeDir() =>
        Directory.GetDirectories(Path.Combine(ExtensionPackage.Get(withRuntime: true), "dotnet", "shared", "Microsoft.NETCore.App")).Single();

    /// <summary>A second copy of the runtime in another folder (what SOS loads when it picks another .NET install).</summary>
    private string OtherRuntimeCopy()
    {
        string dir = Path.Combine(LabSamples.Root, "other-runtime");
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "coreclr.dll", "System.Private.CoreLib.dll" })
            if (!File.Exists(Path.Combine(dir, f))) File.Copy(Path.Combine(OwnRuntimeDir(), f), Path.Combine(dir, f));
        return Path.Combine(dir, "coreclr.dll");
    }

    private EngineRun Run(string coreclr, int at, params string[] commands)
    {
        string load = ".load " + ExtensionPackage.DllWinPath();
        var all = commands.Select(c => c == ".load" ? load : c).ToArray();
        var run = RealEngine.Run(_dump, all, new EngineOptions { SymbolPath = _sym, Plain = true, TimeoutSeconds = 180, ForeignCoreClr = coreclr, ForeignCoreClrAt = at });
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  (hr 0x{c.HResult:x8}, {c.Milliseconds:F0} ms)\n{c.Output}");
        Assert.That(run.ExitCode, Is.EqualTo(0), "the debugger survives\n" + run.Transcript + run.Errors);
        Assert.That(run.Commands, Has.Count.EqualTo(all.Length), "every command ran\n" + run.Transcript);
        Assert.That(run.Transcript, Does.Contain("@@host done"));
        return run;
    }

    private static int Count(string text, string what) => text.Split(what).Length - 1;

    [Test]
    public void ARuntimeStartedBeforeUsWithoutTheHostIsReportedInWordsAndNothingStarts()
    {
        string clr = Path.Combine(OwnRuntimeDir(), "coreclr.dll"); // the very runtime ntsleuth would use: still refused
        var run = Run(clr, 0, ".load", "!help", "!leaktag Leak", ".unload ntsleuth", ".load", "!leaktag Leak", "vertarget");
        Assert.That(run.Transcript, Does.Match(@"@@host coreclr .*coreclr\.dll module \S+ initialize 0x00000000"), "the other runtime started");
        foreach (int i in new[] { 1, 2, 5 })
        {
            var o = run[i].Output;
            Assert.Multiple(() =>
            {
                Assert.That(o, Does.Contain($"ntsleuth: cannot run {run[i].Command.Split(' ')[0]}: another .NET runtime is already running in the debugger process:"), o);
                Assert.That(o, Does.Contain("coreclr.dll"), o);
                Assert.That(o, Does.Contain("the .NET host cannot attach to a"), o);
                Assert.That(o, Does.Not.Contain("install the .NET 10 x64 runtime"), "not the misleading 'no runtime' advice");
                Assert.That(o, Does.Not.Contain("601 outstanding"), "nothing ran");
                Assert.That(run[i].Milliseconds, Is.LessThan(5000), "no hang");
            });
        }
        Assert.That(run[6].Output, Does.Contain("Kernel Version 19041"), "the debugger keeps working");
    }

    [Test]
    public void ASecondRuntimeStartedAfterUsIsReportedOnceAndCommandsGoOn()
    {
        string other = OtherRuntimeCopy();
        var run = Run(other, 3, ".load", "!help", "!leaktag Leak", "!leaktag Leak", ".unload ntsleuth", ".load", "!leaktag Leak");
        const string warning = "ntsleuth: WARNING: a second .NET runtime was loaded into the debugger process after ntsleuth started:";
        Assert.Multiple(() =>
        {
            Assert.That(run.Transcript, Does.Match(@"@@host coreclr .*other-runtime\\coreclr\.dll module \S+ initialize 0x00000000"),
                "a second CoreCLR really started in the process");
            Assert.That(run[1].Output, Does.Not.Contain(warning), "none before it was loaded");
            Assert.That(Count(run[2].Output, warning), Is.EqualTo(1), run[2].Output);
            Assert.That(run[2].Output, Does.Contain("other-runtime\\coreclr.dll"));
            Assert.That(run[2].Output, Does.Contain("ntsleuth runs on: "));
            Assert.That(run[2].Output, Does.Contain("601 outstanding, 615,424,000 bytes"), "the command still runs");
            Assert.That(run[3].Output, Does.Not.Contain(warning), "said once");
            Assert.That(run[3].Output, Does.Contain("601 outstanding, 615,424,000 bytes"));
            // After .unload/.load the extension attaches to its own runtime again (hostfxr has it) and says it once more.
            Assert.That(Count(run[6].Output, warning), Is.EqualTo(1), run[6].Output);
            Assert.That(run[6].Output, Does.Contain("601 outstanding, 615,424,000 bytes"));
        });
    }

    [Test]
    public void SameRuntimeStartedAgainAfterUsFailsOnTheOtherSideAndWeGoOn()
    {
        // SOS pointed at the very coreclr.dll ntsleuth runs on: its coreclr_initialize fails (HOST_E_INVALIDOPERATION,
        // one module, one runtime) and SOS would fall back to the .NET Framework; ntsleuth is unaffected, no warning.
        string clr = Path.Combine(OwnRuntimeDir(), "coreclr.dll");
        var run = Run(clr, 3, ".load", "!help", "!leaktag Leak");
        Assert.Multiple(() =>
        {
            Assert.That(run.Transcript, Does.Match(@"@@host coreclr .*coreclr\.dll module \S+ initialize 0x80131022"), run.Transcript);
            Assert.That(run[2].Output, Does.Not.Contain("WARNING: a second .NET runtime"));
            Assert.That(run[2].Output, Does.Contain("601 outstanding, 615,424,000 bytes"));
        });
    }
}
