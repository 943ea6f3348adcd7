using System.Diagnostics;
using NtSleuth.Lab.Scenario;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Issue 19, item 4: README's "What it prints" blocks are what the samples print now in Microsoft's engine.
/// scripts/readme-output.sh --check runs every block's command on its sample and fails with a diff when README differs;
/// after a deliberate output change, run scripts/readme-output.sh SAMPLES (without --check) and commit README.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class ReadmeOutputTests
{
    private string? _dir;

    [OneTimeTearDown]
    public void Cleanup()
    {
        if (_dir is not null) try { Directory.Delete(_dir, true); } catch { }
    }

    [Test]
    public void ReadmeShowsWhatTheSamplesPrintNow()
    {
        if (RealEngine.IsWindows) Assert.Ignore("scripts/readme-output.sh runs under bash (Linux: wine; Windows: Git Bash, not part of the Windows test run)");
        RealEngine.Require();
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        _dir = Path.Combine(Path.GetTempPath(), $"ntsleuth-readme-e2e-{Environment.ProcessId}");
        string samples = Path.Combine(_dir, "samples");
        var sw = Stopwatch.StartNew();
        int made = NtSleuth.Lab.Samples.SampleMaker.Run([samples, "--builds", "19041,7601", "--scenarios",
            "logon-hang-alpc,pool-leak,dpc-watchdog,dpc-cumulative,ndis-pending-nbls,fltmgr-frame-order,dhcp-lease"]);
        Assert.That(made, Is.Zero, "make-samples failed");
        var psi = new ProcessStartInfo(Path.Combine(TestPaths.RepoRoot, "scripts", "readme-output.sh"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot,
        };
        foreach (var a in (string[])[samples, "--check", "--config", TestPaths.Configuration, "--no-build", "--package", ExtensionPackage.Get(true)])
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string o = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(600_000)) { p.Kill(true); Assert.Fail("readme-output.sh did not finish in 10 minutes"); }
        TestContext.Out.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s\n{o}\n{err.Result}");
        Assert.That(p.ExitCode, Is.Zero, "README.md's sample output differs from what the samples print now " +
            "(update it with scripts/readme-output.sh SAMPLES):\n" + o + err.Result);
        Assert.That(o, Does.Contain("block(s) match the samples"));
    }
}
