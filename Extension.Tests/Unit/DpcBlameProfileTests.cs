using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// Issue 17: bug check 0x133 with P1 = 1 decided on the kernel's own evidence (the documented triage block, the DPC
/// watchdog profile, ActiveDpc, IsrDpcStats) on every lab build that has them; the profile missing or corrupt.
/// </summary>
public class DpcBlameProfileTests
{
    public static readonly string[] ProfileBuilds = [PoolDpcBuilds.Win2016, PoolDpcBuilds.Win10, PoolDpcBuilds.Win11];

    private static DpcWatchdogScenario Scenario(string build, string? variant = null, ulong p1 = 1)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build);
        if (nt is null) Assert.Ignore($"../shared/realdata/isf/ntkrnlmp.pdb/{build}.json.xz not found (the shared real data is absent)");
        var s = new DpcWatchdogScenario(new LabKernel(nt!, build, 0xfffff803_09400000), p1, 2, true);
        s.AddCumulativeEvidence(variant);
        return s;
    }

    private static DpcBlameReport Analyze(InMemoryTarget t) => new DpcBlameAnalyzer(new KernelReader(t)).Analyze(null);

    private static (int Hr, BufferSink Sink) Run(InMemoryTarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        return (CommandDispatcher.Run("dpcblame", args, t, sink, new ReadStats()), sink);
    }

    [TestCaseSource(nameof(ProfileBuilds))]
    public void ProfileNamesTheSpinningDriverAndClearsTheRunningDpc(string build)
    {
        var s = Scenario(build);
        var r = Analyze(s.Kernel.CreateTarget());
        var t = r.BugCheck!.Triage!;
        Assert.That(t.Address, Is.EqualTo(s.TriageBlock));
        Assert.That(t.From, Is.EqualTo("parameter 3"));
        Assert.That(t.SignatureValid, Is.True);
        Assert.That(t.Signature, Is.EqualTo(0xAEBECEDEUL));
        Assert.That((t.Revision, t.Size, t.DpcWatchdogProfileLength), Is.EqualTo((1u, 0x10u, 0x2000u)));
        Assert.That(t.DpcWatchdogProfileOffset, Is.EqualTo(s.Kernel.Offset("_KPRCB", "DpcWatchdogProfile")));
        Assert.That(t.OffsetMatchesSymbols, Is.True);
        Assert.That(t.IsKernelGlobal, Is.True);

        var p = r.Processors[0].Profile!;
        Assert.That(p.State, Is.EqualTo("ok"), p.Note);
        Assert.That(p.Buffer, Is.EqualTo(s.ProfileBuffer));
        Assert.That((ulong)p.FilledBytes, Is.EqualTo(s.ProfileUsedBytes));
        Assert.That(p.Captures, Is.EqualTo(40));
        Assert.That(p.CapacityBytes, Is.EqualTo(0x10000));
        Assert.That(r.Processors[1].Profile!.State, Is.EqualTo("empty"));

        Assert.That(r.ProfileSamples, Is.EqualTo(40));
        Assert.That(r.ProfileHistogram.Select(h => (h.Routine, h.Samples)), Is.EqualTo(new[]
        {
            ("spindrv!SpdProcessRing", DpcWatchdogScenario.SpinCaptures),
            ("ECHO!EchoEvtTimerFunc", DpcWatchdogScenario.EchoCaptures),
            ("spindrv!SpdRxDpcRoutine", DpcWatchdogScenario.SpinRxCaptures),
        }));
        Assert.That(r.ProfileHistogram[0].Share, Is.EqualTo(0.75));

        var v = r.Verdict!;
        Assert.That(v.Basis, Is.EqualTo("profile"));
        Assert.That((v.Module, v.Routine, v.Samples, v.TotalSamples), Is.EqualTo(("spindrv", "spindrv!SpdProcessRing", 30, 40)));
        Assert.That(v.RunningIsCulprit, Is.False);
        Assert.That(v.EvidenceAgrees, Is.False);
        Assert.That(v.RunningDpc, Does.Contain("Wdf01000!FxTimer::TimerHandler"));

        // The running DPC from ActiveDpc (8.1+), also where CurrentDpcRoutine (19041+) is absent.
        Assert.That(r.Processors[0].ActiveDpc, Is.EqualTo(s.ActiveKdpc));
        Assert.That(r.Processors[0].ActiveDpcSymbol, Is.EqualTo("Wdf01000!FxTimer::TimerHandler"));
        Assert.That(r.Processors[0].IsrDpcStats!.Fields["DpcCount"], Is.EqualTo(0x5c1UL));
        Assert.That(r.WatchdogConfig!.CaptureRoutine, Is.Not.Zero);

        var spin = r.Blame[0];
        Assert.That(spin.Module, Is.EqualTo("spindrv"));
        Assert.That(spin.ProfileSamples, Is.EqualTo(34));
        bool history = s.Kernel.Layout("_KPRCB").HasField("DpcRuntimeHistoryHashTable");
        Assert.That(spin.Evidence, Is.EqualTo(history ? new[] { "profile", "history" } : new[] { "profile" }));
        var echo = r.Blame.Single(b => b.Module == "ECHO");
        Assert.That(echo.Evidence, Does.Contain("profile").And.Contain("stack"));

        var (hr, sink) = Run(s.Kernel.CreateTarget(), "");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("Culprit (DPC watchdog profile): spindrv!SpdProcessRing in spindrv: 30 of 40 captured stacks (75%) on CPU 0"));
        Assert.That(sink.Text, Does.Contain("is not the culprit"));
        Assert.That(sink.Text, Does.Contain("signature 0xaebecede ok, revision 1"));
        Assert.That(sink.Text, Does.Contain("inferred, not documented"));
        Assert.That(sink.Text, Does.Not.Contain("!wmitrace.strdump"), "the ETW advice is for when the kernel kept no evidence");
    }

    [TestCase(PoolDpcBuilds.Win10)]
    [TestCase(PoolDpcBuilds.Win11)]
    public void RuntimeHistoryKeysAreNamed(string build)
    {
        var s = Scenario(build);
        var r = Analyze(s.Kernel.CreateTarget());
        var h = r.Processors[0].RuntimeHistory!;
        Assert.That(h.Table, Is.EqualTo(s.HistoryTable));
        Assert.That((h.EntryCount, h.BucketCount, h.EntriesRead, h.OtherKeys), Is.EqualTo((3u, 4u, 3, 0)));
        Assert.That(h.Routines.Keys, Is.EquivalentTo(new[] { "spindrv!SpdRxDpcRoutine", "Wdf01000!FxTimer::TimerHandler", "NDIS!NdisReturnNetBufferLists" }));
        Assert.That(r.Processors[1].RuntimeHistory, Is.Null, "only the bugcheck processor's table is walked");
        Assert.That(r.Blame.Single(b => b.Module == "spindrv").Evidence, Is.EqualTo(new[] { "profile", "history" }));
        // A bucket chain that loops is cut, with a note.
        ulong buckets = s.Kernel.ReadLe(s.HistoryTable + s.Kernel.Offset("_RTL_HASH_TABLE", "Buckets"), 8);
        ulong first = s.Kernel.ReadLe(buckets + 8, 8);
        s.Kernel.WritePtr(s.Kernel.ReadLe(first, 8), first);
        var r2 = Analyze(s.Kernel.CreateTarget());
        Assert.That(r2.Processors[0].RuntimeHistory!.Note, Does.Contain("cycle"));
    }

    [Test]
    public void JsonCarriesTheHistogramAndTheVerdict()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var (hr, sink) = Run(s.Kernel.CreateTarget(), "-json");
        Assert.That(hr, Is.EqualTo(0));
        using var doc = JsonDocument.Parse(sink.Text);
        var root = doc.RootElement;
        var hist = root.GetProperty("profileHistogram");
        Assert.That(hist.GetArrayLength(), Is.EqualTo(3));
        Assert.That(hist[0].GetProperty("routine").GetString(), Is.EqualTo("spindrv!SpdProcessRing"));
        Assert.That(hist[0].GetProperty("samples").GetInt32(), Is.EqualTo(30));
        Assert.That(root.GetProperty("verdict").GetProperty("runningIsCulprit").GetBoolean(), Is.False);
        Assert.That(root.GetProperty("bugCheck").GetProperty("triage").GetProperty("signature").GetString(), Is.EqualTo("0xaebecede"));
        var f = root.GetProperty("findings")[0];
        Assert.That(f.GetProperty("title").GetString(), Does.Contain("spindrv!SpdProcessRing").And.Contain("is not the culprit"));
        Assert.That(f.GetProperty("severity").GetString(), Is.EqualTo("critical"));
    }

    [TestCaseSource(nameof(ProfileBuilds))]
    public void MissingProfileSaysWhichDumpWouldHaveIt(string build)
    {
        var s = Scenario(build, "profile-missing");
        var r = Analyze(s.Kernel.CreateTarget());
        var p = r.Processors[0].Profile!;
        Assert.That(p.State, Is.EqualTo("missing"));
        Assert.That(p.Note, Does.Contain("not in the dump").And.Contain("kernel, automatic or complete memory dump"));
        Assert.That(r.ProfileSamples, Is.Zero);
        Assert.That(r.Verdict!.Basis, Is.EqualTo("inconclusive"));
        Assert.That(r.Verdict.Lines[0], Does.Contain("not in the dump"));
        Assert.That(r.BugCheck!.Triage!.SignatureValid, Is.True);
        var (hr, sink) = Run(s.Kernel.CreateTarget(), "");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("not necessarily the culprit"));
        Assert.That(sink.Text, Does.Contain("!wmitrace.strdump"));
    }

    [TestCaseSource(nameof(ProfileBuilds))]
    public void CorruptProfileAndTriageBlockAreNotDecoded(string build)
    {
        var s = Scenario(build, "profile-corrupt");
        var r = Analyze(s.Kernel.CreateTarget());
        var t = r.BugCheck!.Triage!;
        Assert.That(t.SignatureValid, Is.False);
        Assert.That(t.Signature, Is.EqualTo(0xDEADBEEFUL));
        Assert.That(r.Notes, Has.Some.Contains("is not 0xaebecede"));
        var p = r.Processors[0].Profile!;
        Assert.That(p.State, Is.EqualTo("corrupt"));
        Assert.That(p.Note, Does.Contain("not inside the profile buffer"));
        Assert.That(r.ProfileSamples, Is.Zero);
        Assert.That(r.Verdict!.Basis, Is.EqualTo("inconclusive"));
        var (hr, sink) = Run(s.Kernel.CreateTarget(), "", dml: true);
        Assert.That(hr, Is.EqualTo(0), sink.All);
    }

    [Test]
    public void ProfileWithoutCodeAddressesIsCorruptNotACulprit()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        for (ulong a = s.ProfileBuffer; a < s.ProfileBuffer + s.ProfileUsedBytes; a += 8) s.Kernel.Memory.WriteU64(a, 0x4141414141414141);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.Processors[0].Profile!.State, Is.EqualTo("corrupt"));
        Assert.That(r.Processors[0].Profile!.Note, Does.Contain("no code addresses"));
        Assert.That(r.Verdict!.Basis, Is.EqualTo("inconclusive"));
    }

    [Test]
    public void TriageBlockOfASingleDpcTimeoutIsParameter4()
    {
        var s = Scenario(PoolDpcBuilds.Win10, p1: 0);
        s.Kernel.BugCheck = new NtSleuth.Commands.Target.BugCheckInfo(0x133, 0, 0x501, 0x500, s.TriageBlock);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck!.Kind, Is.EqualTo("single"));
        Assert.That(r.BugCheck.Triage!.From, Is.EqualTo("parameter 4"));
        Assert.That(r.BugCheck.Triage.SignatureValid, Is.True);
        // The profile still speaks: spindrv held the processor before ECHO's DPC ran too long.
        Assert.That(r.Verdict!.Routine, Is.EqualTo("spindrv!SpdProcessRing"));
    }

    [Test]
    public void UnreadableTriageBlockIsANote()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        s.Kernel.BugCheck = new NtSleuth.Commands.Target.BugCheckInfo(0x133, 1, 0x1e00, 0xffffc000_00001000, 0);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck!.Triage!.Readable, Is.False);
        Assert.That(r.Notes, Has.Some.Contains("is not readable"));
    }

    [Test]
    public void ProfileRoutineNamesAreEscapedInDml()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        s.Kernel.Symbols.AddSymbol("spindrv!<b>x;.shell", DpcWatchdogScenario.SpinProcessRing - 0x10);
        var (hr, sink) = Run(s.Kernel.CreateTarget(), "", dml: true);
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.All, Does.Not.Contain("<b>x;"));
        Assert.That(sink.All, Does.Not.Contain("cmd=\"x spindrv!&lt;b&gt;x;.shell\""));
    }

    [TestCaseSource(typeof(LabBuilds), nameof(LabBuilds.Keys))]
    public void CatalogueScenarioOnEveryBuildThatKeepsAProfile(string key)
    {
        var build = LabBuilds.TryGet(key);
        if (build is null) Assert.Ignore(LabBuilds.UnavailableReason ?? key + " not available");
        var sc = ScenarioCatalog.Get("dpc-cumulative");
        if (!sc.Supports(build!)) { Assert.That(DpcWatchdogScenario.BuildHasProfile(build!.Isf), Is.False); Assert.Pass($"{key}: no DPC watchdog profile on this build"); }
        var res = sc.Build(build!, ScenarioOptions.Default);
        var r = new DpcBlameAnalyzer(new KernelReader(res.CreateTarget())).Analyze(null);
        Assert.That(r.Verdict!.Routine, Is.EqualTo("spindrv!SpdProcessRing"));
        Assert.That(r.Verdict.RunningIsCulprit, Is.False);
        Assert.That(r.BugCheck!.Triage!.Address, Is.EqualTo(res.Fact("triageBlock")));
    }
}
