using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.DhcpTimer;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>!dhcptimer on the lab's svchost (seed 000) and a healthy eight-day lease, through the in-memory target.</summary>
public class DhcpTimerScenarioTests
{
    private static (int rc, BufferSink sink, DhcpLeaseScenario.Built b) Run(DhcpLeaseScenario s, string args, bool dml = false, Action<DhcpLeaseScenario.Built>? damage = null)
    {
        var b = s.Build();
        damage?.Invoke(b);
        var sink = new BufferSink(dml);
        int rc = CommandDispatcher.Run("dhcptimer", args, b.Target, sink);
        return (rc, sink, b);
    }

    private static DhcpTimerReport Analyze(DhcpLeaseScenario s, Action<DhcpLeaseScenario.Built>? damage = null)
    {
        var (rc, sink, _) = Run(s, "-json", damage: damage);
        Assert.That(rc, Is.EqualTo(0), sink.All);
        return JsonSerializer.Deserialize<DhcpTimerReport>(sink.Text, JsonOut.Options)!;
    }

    [Test]
    public void SeedReportsMissedRenewalAndOverflow()
    {
        var r = Analyze(DhcpLeaseScenario.Seed());
        Assert.That(r.Adapters, Has.Count.EqualTo(1));
        var a = r.Adapters[0];
        Assert.That(a.Verdict, Is.EqualTo(DhcpVerdict.RenewalMissed), a.VerdictText);
        Assert.That(a.LeaseSeconds, Is.EqualTo(31_536_000));
        Assert.That(a.IpAddress, Is.EqualTo("10.20.30.41"));
        Assert.That(a.SubnetMask, Is.EqualTo("255.255.255.0"));
        Assert.That(a.Name, Is.EqualTo("{9C8A1B6E-2F3D-4E5A-8B7C-1D2E3F405162}"));
        Assert.That(a.TimeUnit, Is.EqualTo(LeaseTimeUnit.UnixSeconds64));
        var t1 = a.Timers.Single(t => t.Name == "T1");
        Assert.That(a.Timers.Single(t => t.Name == "RunTime").Utc, Is.EqualTo(t1.Utc));
        Assert.That(a.WaitWhenScheduled!.Seconds, Is.EqualTo(15_768_000));
        Assert.That(a.WaitWhenScheduled.Overflows32, Is.True);
        Assert.That(r.MainThread, Is.Not.Null);
        Assert.That(r.MainThread!.ThreadId, Is.EqualTo(DhcpLeaseScenario.MainThreadId));
        Assert.That(r.MainThread.InWaitForMultipleObjectsEx, Is.True);
        Assert.That(r.MainThread.TimeoutFromHomeSlot, Is.EqualTo(0xFFFFFFFFu));
    }

    [Test]
    public void SeedTextNamesTheProblem()
    {
        var (rc, sink, _) = Run(DhcpLeaseScenario.Seed(), "");
        Assert.That(rc, Is.EqualTo(0), sink.All);
        var t = sink.Text;
        Assert.That(t, Does.Contain("RENEWAL MISSED: renewal missed: RunTime == T1 and T1 passed"));
        Assert.That(t, Does.Contain("== T1"));
        Assert.That(t, Does.Contain("15,768,000,000 ms"));
        Assert.That(t, Does.Contain("OVERFLOW"));
        Assert.That(t, Does.Contain("INFINITE"));
        Assert.That(t, Does.Contain("IP 10.20.30.41 mask 255.255.255.0"));
        Assert.That(t, Does.Contain("lease 365.00:00:00"));
    }

    [Test]
    public void EightDayLeaseIsHealthy()
    {
        var r = Analyze(DhcpLeaseScenario.EightDays());
        var a = r.Adapters.Single();
        Assert.That(a.Verdict, Is.EqualTo(DhcpVerdict.RenewalPending), a.VerdictText);
        Assert.That(a.VerdictText, Does.Contain("T1 renewal in 3."));
        Assert.That(a.WaitWhenScheduled!.Overflows32, Is.False);
        Assert.That(a.WaitFromNow!.Overflows32, Is.False);
        Assert.That(r.MainThread!.TimeoutFromHomeSlot, Is.Not.EqualTo(0xFFFFFFFFu));
    }

    [Test]
    public void DmlEscapesAdapterNamesAndLinksTheContext()
    {
        var s = DhcpLeaseScenario.Seed();
        s = new DhcpLeaseScenario { DumpTimeUtc = s.DumpTimeUtc, Adapters = [s.Adapters[0] with { Name = "<exec cmd=\".kill\">x</exec>" }] };
        var (rc, sink, b) = Run(s, "-dml", dml: true);
        Assert.That(rc, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Not.Contain("<exec cmd=\".kill\">"));
        Assert.That(sink.Text, Does.Contain("&lt;exec cmd=&quot;.kill&quot;&gt;"));
        Assert.That(sink.Text, Does.Contain($"<exec cmd=\"dq {b.Contexts[0]:x} L80\">"));
    }

    [Test]
    public void KernelTargetIsRefusedClearly()
    {
        var b = DhcpLeaseScenario.Seed().Build();
        b.Target.Info = b.Target.Info with { Kind = TargetKind.Kernel };
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run("dhcptimer", "", b.Target, sink);
        Assert.That(rc, Is.EqualTo(CommandDispatcher.E_FAIL));
        Assert.That(sink.Errors, Does.Contain("needs a user-mode target"));
        Assert.That(sink.All, Does.Not.Contain("Usage:"), "not a usage error");
    }

    [Test]
    public void ProcessWithoutDhcpCoreIsRefusedClearly()
    {
        var b = DhcpLeaseScenario.Seed().Build();
        var noDhcp = new NtSleuth.Lab.Target.InMemoryTarget(b.Memory, b.Symbols, b.Target.Info,
            b.Target.GetModules().Where(m => m.Name != "dhcpcore").ToList());
        var sink = new BufferSink();
        CommandDispatcher.Run("dhcptimer", "", noDhcp, sink);
        Assert.That(sink.Errors, Does.Contain("dhcpcore.dll is not loaded"));
    }

    [Test]
    public void MissingSymbolNamesWhatToReload()
    {
        var b = DhcpLeaseScenario.Seed().Build();
        var noSyms = new NtSleuth.Lab.Target.InMemoryTarget(b.Memory, new NtSleuth.Commands.Symbols.Isf.IsfSymbolProvider(), b.Target.Info, b.Target.GetModules());
        var sink = new BufferSink();
        CommandDispatcher.Run("dhcptimer", "", noSyms, sink);
        Assert.That(sink.Errors, Does.Contain("dhcpcore!DhcpGlobalNICList").And.Contain(".reload"));
    }

    [Test]
    public void UnreadableContextIsNotedOthersStillShown()
    {
        var s = DhcpLeaseScenario.Seed();
        s = new DhcpLeaseScenario { DumpTimeUtc = s.DumpTimeUtc, Adapters = [s.Adapters[0], DhcpLeaseScenario.EightDays().Adapters[0]] };
        var r = Analyze(s, b => b.Target.MakeUnreadable(b.Contexts[0] + 0x10, 0x3f0));
        Assert.That(r.Adapters, Has.Count.EqualTo(2));
        Assert.That(r.Adapters[0].Verdict, Is.EqualTo(DhcpVerdict.Unreadable));
        Assert.That(r.Adapters[0].VerdictText, Does.Contain("not readable"));
        Assert.That(r.Adapters[1].Verdict, Is.EqualTo(DhcpVerdict.RenewalPending));
    }

    [Test]
    public void CorruptedNicListIsBoundedAndNoted()
    {
        var r = Analyze(DhcpLeaseScenario.Seed(), b => b.Memory.WriteU64(b.Contexts[0], b.Contexts[0]));
        Assert.That(r.Adapters, Has.Count.EqualTo(1));
        Assert.That(string.Join("\n", r.Notes), Does.Contain("cycle detected"));
    }

    [Test]
    public void UnrecognisedLayoutSaysSoInsteadOfGuessing()
    {
        var r = Analyze(DhcpLeaseScenario.Seed(), b =>
        {
            var junk = new byte[0x28];
            new Random(3).NextBytes(junk);
            b.Memory.Write(b.Contexts[0] + 0x60, junk);
        });
        var a = r.Adapters.Single();
        Assert.That(a.Verdict, Is.EqualTo(DhcpVerdict.NotRecognised));
        Assert.That(a.VerdictText, Does.Contain("layout of dhcpcore 6.1.7601.17514 not recognised"));
    }

    [Test]
    public void ReadsStayFewPerAdapter()
    {
        var b = DhcpLeaseScenario.Seed().Build();
        var stats = new NtSleuth.Commands.Memory.ReadStats();
        CommandDispatcher.Run("dhcptimer", "", b.Target, new BufferSink(), stats);
        TestContext.Out.WriteLine($"[measure] !dhcptimer seed: {stats}");
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(8), stats.ToString());
    }
}

public class DhcpTimerStackScanTests
{
    [Test]
    public void MainThreadIsFoundByStackScanWhenTheEngineCannotUnwind()
    {
        var b = DhcpLeaseScenario.Seed().Build();
        // What the engine gives without unwind data: the innermost frame only.
        var main = b.Target.ThreadStacks.Single(t => t.ThreadId == DhcpLeaseScenario.MainThreadId);
        b.Target.ThreadStacks.Clear();
        b.Target.ThreadStacks.Add(main with { Frames = [main.Frames[0]] });
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("dhcptimer", "-json", b.Target, sink), Is.EqualTo(0), sink.All);
        var r = JsonSerializer.Deserialize<DhcpTimerReport>(sink.Text, JsonOut.Options)!;
        Assert.That(r.MainThread, Is.Not.Null);
        Assert.That(r.MainThread!.InWaitForMultipleObjectsEx, Is.True);
        Assert.That(r.MainThread.TimeoutFromHomeSlot, Is.EqualTo(0xFFFFFFFFu));
        Assert.That(r.MainThread.TimeoutNote, Does.Contain("found by a stack scan"));
    }
}
