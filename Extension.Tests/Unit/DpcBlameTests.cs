using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

public class DpcBlameTests
{
    private static DpcWatchdogScenario Scenario(string build, ulong p1 = 0, int cpus = 2, bool unwindable = true, int extraDpcs = 0)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build);
        if (nt is null) Assert.Ignore($"../shared/realdata/isf/ntkrnlmp.pdb/{build}.json.xz not found (the shared real data is absent)");
        return new DpcWatchdogScenario(new LabKernel(nt!, build, 0xfffff803_09400000), p1, cpus, unwindable, extraDpcs);
    }

    private static (int Hr, BufferSink Sink, ReadStats Stats) Run(InMemoryTarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        var stats = new ReadStats();
        return (CommandDispatcher.Run("dpcblame", args, t, sink, stats), sink, stats);
    }

    private static DpcBlameReport Analyze(InMemoryTarget t, int? cpu = null) => new DpcBlameAnalyzer(new KernelReader(t)).Analyze(cpu);

    private static readonly string[] SeedRoutines =
        ["NDIS!NdisReturnNetBufferLists", "ataport!AtaPortInitialize", "nt!KiBalanceSetManagerDeferredRoutine", "ataport!AtaPortInitialize", "USBPORT+0x1df0"];

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win2012R2)]
    [TestCase(PoolDpcBuilds.Win10)]
    [TestCase(PoolDpcBuilds.Win11)]
    public void SeedSingleDpcNamesEchoWithTheStallLoop(string build)
    {
        var s = Scenario(build);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck!.IsDpcWatchdog, Is.True);
        Assert.That(r.BugCheck.Kind, Is.EqualTo("single"));
        Assert.That(r.BugCheck.TicksTaken, Is.EqualTo(0x283UL));
        Assert.That(r.BugCheck.TickLimit, Is.EqualTo(0x282UL));
        var c = r.Culprit!;
        Assert.That(c.Method, Is.EqualTo("stack"));
        Assert.That(c.Module, Is.EqualTo("ECHO"));
        Assert.That(c.Symbol, Is.EqualTo("ECHO!EchoEvtTimerFunc+0x7d"));
        Assert.That(c.InStallRoutine, Is.True);
        Assert.That(c.DispatchChain, Does.Contain("Wdf01000!FxTimer::TimerHandler"));
        Assert.That(c.DispatchChain, Does.Contain("nt!KiExpireTimerTable"));
        var h = c.StallLoop!;
        Assert.That(h.CallSite, Is.EqualTo(0xfffff880_04be3403UL));
        Assert.That(h.CallTarget, Is.EqualTo(s.StallRoutine));
        Assert.That(h.CallTargetName, Does.Contain("KeStallExecutionProcessor"));
        Assert.That(h.JumpAt, Is.EqualTo(0xfffff880_04be340dUL));
        Assert.That(h.JumpTarget, Is.EqualTo(0xfffff880_04be33feUL));
        Assert.That(h.StallMicroseconds, Is.EqualTo(100u));
        Assert.That(h.Iterations, Is.EqualTo(0x1d4c0u));

        var cpu0 = r.Processors[0];
        Assert.That(cpu0.IsBugCheckCpu, Is.True);
        Assert.That(cpu0.Prcb, Is.EqualTo(0xfffff803_09974180UL));
        Assert.That(cpu0.QueueDepth, Is.EqualTo(5));
        Assert.That(cpu0.Queued.Select(q => q.Kdpc), Is.EqualTo(DpcWatchdogScenario.SeedKdpcs));
        Assert.That(cpu0.Queued.Select(q => q.Symbol), Is.EqualTo(SeedRoutines));
        Assert.That(cpu0.Queued[2].Importance, Is.EqualTo("High"));
        bool ticks = build == PoolDpcBuilds.Win11;
        Assert.That(cpu0.Watchdog[ticks ? "DpcTimeLimitTicks" : "DpcTimeLimit"], Is.EqualTo(0x282));
        Assert.That(cpu0.Watchdog[ticks ? "DpcWatchdogPeriodTicks" : "DpcWatchdogPeriod"], Is.EqualTo(0x1e00));
        Assert.That(cpu0.Watchdog["DpcTimeCount"], Is.EqualTo(0x283));
        Assert.That(r.Processors[1].Queued, Has.Count.EqualTo(2));
        Assert.That(r.Blame[0].Module, Is.EqualTo("ECHO"));
        Assert.That(r.Blame[0].Culprit, Is.True);
        var ata = r.Blame.Single(b => b.Module == "ataport");
        Assert.That(ata.Queued, Is.EqualTo(2));
        Assert.That(r.TotalQueued, Is.EqualTo(7));
        Assert.That(r.Processors.Select(p => p.Note), Is.All.Null, "no spurious per-CPU notes on a healthy queue");
        Assert.That(r.Blame.Single(b => b.Module == "USBPORT").HasSymbols, Is.False);
        Assert.That(r.Blame.Single(b => b.Module == "NDIS").HasSymbols, Is.True);
        if (s.Kernel.Layout("_KPRCB").HasField("CurrentDpcRoutine"))
        {
            Assert.That(cpu0.CurrentDpcSymbol, Is.EqualTo("Wdf01000!FxTimer::TimerHandler"));
            Assert.That(r.Blame.Single(b => b.Module == "Wdf01000").HasSymbols, Is.True);
        }

        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        TestContext.Out.WriteLine(sink.Text);
        Assert.That(sink.Text, Does.Contain("Bugcheck 00000133 (0, 283, 282, 0)  DPC_WATCHDOG_VIOLATION"));
        Assert.That(sink.Text, Does.Contain("Culprit: ECHO  ECHO!EchoEvtTimerFunc+0x7d (fffff880`04be3409)"));
        Assert.That(sink.Text, Does.Contain("calls " + h.CallTargetName + " in a loop"));
        Assert.That(sink.Text, Does.Contain("100 us per call, up to 120,000 iterations (~12 s at DISPATCH_LEVEL)"));
        Assert.That(sink.Text, Does.Contain("fffffa80`020ce790 fffff880`012e4e9c [Normal] NDIS!NdisReturnNetBufferLists"));
        Assert.That(sink.Text, Does.Contain("fffffa80`02082300 fffff880`01701df0 [Normal] USBPORT+0x1df0"));
        Assert.That(sink.Text, Does.Contain("<- bugcheck CPU"));
        Assert.That(sink.Text, Does.Contain("<- culprit"));
        Assert.That(sink.Text, Does.Contain("method: stack"));
    }

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win2012R2)]
    [TestCase(PoolDpcBuilds.Win10)]
    public void WithoutUnwindDataTheDpcStackIsScanned(string build)
    {
        var s = Scenario(build, unwindable: false);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.Culprit!.Method, Is.EqualTo("stack-scan"));
        Assert.That(r.Culprit.MethodNote, Does.Contain("no unwind data"));
        Assert.That(r.Culprit.Module, Is.EqualTo("ECHO"));
        Assert.That(r.Culprit.Frames[0].StackAddress, Is.EqualTo(0xfffff803_08c184b0UL - 8));
        Assert.That(r.Culprit.StallLoop, Is.Not.Null);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "-v");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("method: stack-scan"));
        Assert.That(sink.Text, Does.Contain("fffff803`08c18928  fffff880`04be3409  ECHO!EchoEvtTimerFunc+0x7d"));
    }

    [Test]
    public void CumulativeGivesWmitraceCommands()
    {
        var s = Scenario(PoolDpcBuilds.Win10, p1: 1);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck!.Kind, Is.EqualTo("cumulative"));
        Assert.That(r.BugCheck.WatchdogPeriod, Is.EqualTo(0x1e00UL));
        Assert.That(r.Guidance, Has.Some.EqualTo("!wmitrace.strdump"));
        Assert.That(r.Guidance, Has.Some.StartsWith("!wmitrace.logsave <LoggerId"));
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "", dml: true);
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("the bugcheck stack alone does not show the culprit"));
        Assert.That(sink.Text, Does.Contain("Running when the watchdog fired (cumulative timeout: not necessarily the culprit): <b>ECHO</b>"));
        Assert.That(sink.Text, Does.Contain("&lt;- on the bugcheck stack"));
        Assert.That(sink.Text, Does.Not.Contain("Culprit:"));
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"!wmitrace.strdump\">!wmitrace.strdump</exec>"));
        Assert.That(sink.Text, Does.Contain("!wmitrace.logsave &lt;LoggerId"));
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"dt nt!_KDPC fffffa80`020ce790\">"));
    }

    [Test]
    public void WithoutABugCheckItIsADpcPressureView()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        s.Kernel.BugCheck = null;
        s.Kernel.IsLive = true;
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck, Is.Null);
        Assert.That(r.Culprit, Is.Null);
        Assert.That(r.TotalQueued, Is.EqualTo(7));
        Assert.That(r.Notes, Has.Some.Contains("DPC-pressure view"));
    }

    [Test]
    public void OtherBugCheckIsANote()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        s.Kernel.BugCheck = new NtSleuth.Commands.Target.BugCheckInfo(0x1000007e, 0xc0000005, 0, 0, 0);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.BugCheck!.IsDpcWatchdog, Is.False);
        Assert.That(r.Notes, Has.Some.Contains("not DPC_WATCHDOG_VIOLATION"));
        Assert.That(r.Processors, Has.Count.EqualTo(2));
    }

    [Test]
    public void CpuOptionSelectsOneProcessorAndValidates()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var r = Analyze(s.Kernel.CreateTarget(), 1);
        Assert.That(r.Processors.Select(p => p.Cpu), Is.EqualTo(new[] { 1 }));
        Assert.That(Run(s.Kernel.CreateTarget(), "-cpu 7").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(Run(s.Kernel.CreateTarget(), "-cpu x").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(Run(s.Kernel.CreateTarget(), "extra").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
    }

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win10)]
    public void CorruptedDpcListIsBoundedAndCycleSafe(string build)
    {
        var s = Scenario(build);
        var k = s.Kernel;
        // Point the 4th KDPC's link back at the 2nd: a cycle that never returns to the head.
        ulong link = k.Offset("_KDPC", "DpcListEntry");
        k.WritePtr(DpcWatchdogScenario.SeedKdpcs[3] + link, DpcWatchdogScenario.SeedKdpcs[1] + link);
        var r = Analyze(k.CreateTarget());
        var cpu0 = r.Processors[0];
        Assert.That(cpu0.Queued, Has.Count.EqualTo(4));
        Assert.That(cpu0.Note, Does.Contain("cycle detected"));
        Assert.That(r.Processors[1].Queued, Has.Count.EqualTo(2));
    }

    [Test]
    public void UnreadablePrcbIsAPerCpuNote()
    {
        var s = Scenario(PoolDpcBuilds.Win10, cpus: 3);
        s.Kernel.Memory.Unmap(s.Prcbs[1], s.Kernel.SizeOf("_KPRCB"));
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.Processors[1].Note, Does.Contain("not readable"));
        Assert.That(r.Processors[0].Queued, Has.Count.EqualTo(5));
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "");
        Assert.That(hr, Is.EqualTo(0), sink.All);
    }

    [Test]
    public void UnreadableKdpcIsFlagged()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        // Win7: the LIST_ENTRY walk reads Flink of the previous entry; unmapping the USBPORT KDPC page stops there.
        s.Kernel.Memory.Unmap(DpcWatchdogScenario.SeedKdpcs[4], 1);
        var r = Analyze(s.Kernel.CreateTarget());
        Assert.That(r.Processors[0].Note, Does.Contain("not readable"));
        Assert.That(r.Processors[0].Queued.Count(q => !q.Unreadable), Is.EqualTo(4));
    }

    [Test]
    public void JsonParses()
    {
        var s = Scenario(PoolDpcBuilds.Win11);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "-json");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        using var doc = JsonDocument.Parse(sink.Text);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("culprit").GetProperty("module").GetString(), Is.EqualTo("ECHO"));
        Assert.That(root.GetProperty("bugCheck").GetProperty("p2").GetString(), Is.EqualTo("0x283"));
        Assert.That(root.GetProperty("processors")[0].GetProperty("watchdog").GetProperty("DpcWatchdogPeriodTicks").GetInt64(), Is.EqualTo(0x1e00));
        Assert.That(root.GetProperty("processors")[0].GetProperty("currentDpcSymbol").GetString(), Is.EqualTo("Wdf01000!FxTimer::TimerHandler"));
    }

    [Test]
    public void DmlEscapesTargetStrings()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        s.Kernel.Symbols.AddSymbol("NDIS!<evil>&\"x\"", DpcWatchdogScenario.NdisReturnNbls);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "", dml: true);
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Not.Contain("<evil>"));
        Assert.That(sink.Text, Does.Contain("&lt;evil&gt;&amp;&quot;x&quot;"));
    }

    [Test]
    public void SixtyFourCpusWithAThousandDpcsStayUnder300RoundTrips()
    {
        var s = Scenario(PoolDpcBuilds.Win10, cpus: 64, extraDpcs: 1000 - 7);
        var (hr, sink, stats) = Run(s.Kernel.CreateTarget(), "-json");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        using var doc = JsonDocument.Parse(sink.Text);
        Assert.That(doc.RootElement.GetProperty("totalQueued").GetInt32(), Is.EqualTo(1000));
        TestContext.Out.WriteLine($"!dpcblame 64 CPUs / 1000 DPCs: {stats.RoundTrips} round trips, {stats.Bytes:N0} bytes, modelled {stats.ModelledKdnetSeconds:0.000} s");
        var (manualRt, manualBytes) = s.ManualProcedureCost();
        double manual = KdnetModel.Seconds(manualRt, manualBytes);
        TestContext.Out.WriteLine($"manual k + ub/u + !pcr and dt nt!_KPRCB Dpc* per CPU: {manualRt} round trips, {manualBytes:N0} bytes, modelled {manual:0.000} s");
        Assert.That(manual / stats.ModelledKdnetSeconds, Is.GreaterThan(5.0));
        Assert.That(stats.RoundTrips, Is.LessThan(300));
    }

    [Test]
    public void PrcbFieldsTakeAtMostTwoReadsPerProcessor()
    {
        foreach (var build in new[] { PoolDpcBuilds.Win7, PoolDpcBuilds.Win2012R2, PoolDpcBuilds.Win2016, PoolDpcBuilds.Win10, PoolDpcBuilds.Win11 })
        {
            var s = Scenario(build, cpus: 8);
            s.Kernel.Stack.Clear();
            s.Kernel.BugCheck = null; // no culprit work: only the processor block, PRCBs and queues
            var t = s.Kernel.CreateTarget();
            t.ReadLog = new();
            var (hr, sink, stats) = Run(t, "");
            Assert.That(hr, Is.EqualTo(0), sink.All);
            if (stats.RoundTrips > 25) foreach (var (a, l) in t.ReadLog) TestContext.Out.WriteLine($"  read {a:x16} {l:x}");
            // 1 read of KiProcessorBlock + KeNumberProcessors + <= 2 per PRCB + one block per queued KDPC (7 KDPCs)
            TestContext.Out.WriteLine($"{build}: {stats.RoundTrips} round trips, {stats.Bytes:N0} bytes");
            Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(2 + 2 * 8 + 7), build);
        }
    }

    // Stall-loop decoder on other encodings: call rel32 (E8) to the stall routine, loops closed by jmp rel32 (E9)
    // and jcc rel32 (0F 85); and no hint when the backward jump does not reach the call or the callee is not a stall.
    [TestCase(new byte[] { 0xb9, 0x0a, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xff, 0xcb, 0xe9, 0xef, 0xff, 0xff, 0xff }, true, 10u)]
    [TestCase(new byte[] { 0xb9, 0x32, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xff, 0xcb, 0x0f, 0x85, 0xee, 0xff, 0xff, 0xff }, true, 50u)]
    [TestCase(new byte[] { 0xb9, 0x32, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xff, 0xcb, 0x75, 0x02, 0x90, 0x90, 0xc3 }, false, 0u)]
    public void StallLoopDecoderHandlesRel32Forms(byte[] code, bool loops, uint micros)
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var k = s.Kernel;
        // call rel32 only reaches +-2 GB: kernel code near the stall routine (drivers use the import slot instead).
        ulong at = (s.StallRoutine & ~0xfffUL) + 0x20100;
        k.Memory.Map(at - 0x100, 0x1000);
        var bytes = (byte[])code.Clone();
        ulong callEnd = at + 10;
        BitConverter.GetBytes((int)(long)(s.StallRoutine - callEnd)).CopyTo(bytes, 6);
        k.Memory.Write(at, bytes);
        var h = new DpcBlameAnalyzer(new KernelReader(k.CreateTarget())).FindStallLoop(callEnd);
        if (!loops) { Assert.That(h, Is.Null); return; }
        Assert.That(h, Is.Not.Null);
        Assert.That(h!.CallSite, Is.EqualTo(at + 5));
        Assert.That(h.CallTarget, Is.EqualTo(s.StallRoutine));
        Assert.That(h.JumpTarget, Is.EqualTo(at));
        Assert.That(h.StallMicroseconds, Is.EqualTo(micros));
    }

    [Test]
    public void CallToAnotherRoutineIsNoStallHint()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        ulong at = DpcWatchdogScenario.EchoBase + 0x5000;
        var bytes = new byte[] { 0xb9, 0x0a, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xeb, 0xf4 };
        BitConverter.GetBytes((int)(long)(DpcWatchdogScenario.EchoTimerFunc - (at + 10))).CopyTo(bytes, 6);
        s.Kernel.Memory.Write(at, bytes);
        Assert.That(new DpcBlameAnalyzer(new KernelReader(s.Kernel.CreateTarget())).FindStallLoop(at + 10), Is.Null);
    }

    [TestCase(PoolDpcBuilds.Win2012R2)]
    [TestCase(PoolDpcBuilds.Win11)]
    public void SeedOnTheSharedInMemoryTarget(string build)
    {
        var s = Scenario(build);
        var t = s.Kernel.CreateTarget();
        var sink = new BufferSink();
        var stats = new ReadStats();
        Assert.That(CommandDispatcher.Run("dpcblame", "", t, sink, stats), Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("Culprit: ECHO  ECHO!EchoEvtTimerFunc+0x7d"));
        Assert.That(sink.Text, Does.Contain("Stall loop:"));
        Assert.That(sink.Text, Does.Contain("[Normal] NDIS!NdisReturnNetBufferLists"));
        Assert.That(t.ReadCalls, Is.EqualTo(stats.RoundTrips));
    }

    [TestCaseSource(typeof(NtSleuth.Lab.Scenario.LabBuilds), nameof(NtSleuth.Lab.Scenario.LabBuilds.Keys))]
    public void CatalogueScenarioOnEveryBuild(string key)
    {
        var build = NtSleuth.Lab.Scenario.LabBuilds.TryGet(key);
        if (build is null) Assert.Ignore(NtSleuth.Lab.Scenario.LabBuilds.UnavailableReason ?? key + " not available");
        var sc = NtSleuth.Lab.Scenario.ScenarioCatalog.Get("dpc-watchdog");
        var res = sc.Build(build!, NtSleuth.Lab.Scenario.ScenarioOptions.Default);
        var r = new DpcBlameAnalyzer(new KernelReader(res.CreateTarget())).Analyze(null);
        Assert.That(r.Culprit!.Module, Is.EqualTo("ECHO"));
        Assert.That(r.Culprit.StallLoop, Is.Not.Null);
        Assert.That(r.Processors[0].Prcb, Is.EqualTo(res.Fact("cpu0Prcb")));
        Assert.That(r.Processors[0].Queued.Select(q => q.Symbol), Is.EqualTo(SeedRoutines));
        Assert.That(r.TotalQueued, Is.EqualTo(7));
        Assert.That(r.Processors.Select(p => p.Note), Is.All.Null);

        var cum = sc.Build(build!, new NtSleuth.Lab.Scenario.ScenarioOptions { Variant = "cumulative" });
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("dpcblame", "", cum.CreateTarget(), sink), Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("!wmitrace.strdump"));
    }
}
