using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Extension.Analysis;
using NtSleuth.Extension.Interop;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Analysis;

/// <summary>
/// The !analyze plug-in without ext.dll: !dpcblame's report -> FA entries (mapping), the entries -> a fake
/// IDebugFailureAnalysis2 called through the plug-in's own interop (writer), and the whole contribution on the lab's
/// DPC-watchdog kernel (the same scenario the dpc-watchdog sample dump is made from).
/// </summary>
[TestFixture]
public class AnalyzePluginTests
{
    private static DpcWatchdogScenario Scenario(string build = PoolDpcBuilds.Win10, ulong p1 = 0, bool unwindable = true)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build);
        if (nt is null) Assert.Ignore($"../shared/realdata/isf/ntkrnlmp.pdb/{build}.json.xz not found (the shared real data is absent)");
        return new DpcWatchdogScenario(new LabKernel(nt!, build, 0xfffff803_09400000), p1, 2, unwindable, 0);
    }

    private static DpcBlameReport Report(InMemoryTarget t) => new DpcBlameAnalyzer(new KernelReader(t)).Analyze(null);

    private static FaEntry Only(IReadOnlyList<FaEntry> list, uint tag) => list.Single(e => e.Tag == tag);

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win10)]
    [TestCase(PoolDpcBuilds.Win11)]
    public void MapsTheCulpritToBlameEntriesAndTheEvidence(string build)
    {
        var r = Report(Scenario(build).Kernel.CreateTarget());
        var entries = DpcBlameFailureAnalysis.Map(r, "ECHO.sys");
        Assert.That(entries.Select(e => e.Tag), Is.EqualTo(new[] { Extsfns.DEBUG_FLR_MODULE_NAME, Extsfns.DEBUG_FLR_IMAGE_NAME,
            Extsfns.DEBUG_FLR_SYMBOL_NAME, Extsfns.DEBUG_FLR_FAULTING_IP, Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT }), string.Join("\n", entries));
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_MODULE_NAME), Is.EqualTo(FaEntry.SetString(Extsfns.DEBUG_FLR_MODULE_NAME, "ECHO")));
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_IMAGE_NAME), Is.EqualTo(FaEntry.SetString(Extsfns.DEBUG_FLR_IMAGE_NAME, "ECHO.sys")));
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_SYMBOL_NAME), Is.EqualTo(FaEntry.SetString(Extsfns.DEBUG_FLR_SYMBOL_NAME, "ECHO!EchoEvtTimerFunc+7d")));
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_FAULTING_IP), Is.EqualTo(FaEntry.SetUlong64(Extsfns.DEBUG_FLR_FAULTING_IP, DpcWatchdogScenario.EchoReturn)));
        var text = Only(entries, Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT);
        Assert.That(text.Replace, Is.False, "the evidence is added beside the default analysis's debug text, never replacing it");
        Assert.That(text.Text, Does.StartWith("ntsleuth !dpcblame: ECHO!EchoEvtTimerFunc+0x7d (fffff880`04be3409) was running in the DPC when the watchdog fired on CPU 0.")
            .And.Contain("A single DPC ran 0x283 ticks (limit 0x282).")
            .And.Contain("Dispatched via Wdf01000!FxTimer::TimerHandler, nt!KiProcessExpiredTimerList")
            .And.Contain("KeStallExecutionProcessor in a loop: call at fffff880`04be3403")
            .And.Contain("Found by the engine's stack unwind.")
            .And.EndWith("Run !ntsleuth.dpcblame for every CPU's DPC queue and watchdog counters."));
        Assert.That(text.Text!.Length, Is.LessThanOrEqualTo(DpcBlameFailureAnalysis.MaxTextLength));
    }

    [Test]
    public void StackScanCulpritSaysHowItWasFound()
    {
        var r = Report(Scenario(unwindable: false).Kernel.CreateTarget());
        Assume.That(r.Culprit?.Method, Is.EqualTo("stack-scan"));
        var entries = DpcBlameFailureAnalysis.Map(r, null);
        Assert.That(entries.Any(e => e.Tag == Extsfns.DEBUG_FLR_IMAGE_NAME), Is.False, "no image name given, none written");
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_MODULE_NAME).Text, Is.EqualTo("ECHO"));
        Assert.That(Only(entries, Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT).Text, Does.Contain("Found by a return-address scan of the DPC stack."));
    }

    [Test]
    public void CumulativeWatchdogSaysOthersMayShareTheBlame()
    {
        var r = Report(Scenario(p1: 1).Kernel.CreateTarget());
        Assume.That(r.BugCheck!.Kind, Is.EqualTo("cumulative"));
        Assert.That(Only(DpcBlameFailureAnalysis.Map(r, "ECHO.sys"), Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT).Text,
            Does.Contain("Cumulative DPC time exceeded the watchdog period").And.Contain("other DPCs may share the blame"));
    }

    [Test]
    public void SaysNothingWhenTheBugCheckIsNot0x133()
    {
        var r = new DpcBlameReport { BugCheck = new DpcBugCheck { Code = 0xA, IsDpcWatchdog = false } };
        Assert.That(DpcBlameFailureAnalysis.Map(r, "x.sys"), Is.Empty);
        Assert.That(DpcBlameFailureAnalysis.Map(new DpcBlameReport(), "x.sys"), Is.Empty, "no bug check at all");
    }

    [Test]
    public void NoDriverFrameKeepsTheDefaultBlameAndNamesTheQueues()
    {
        var r = new DpcBlameReport { BugCheckCpu = 1, BugCheck = new DpcBugCheck { Code = 0x133, IsDpcWatchdog = true, Kind = "single", TicksTaken = 0x501, TickLimit = 0x500 } };
        r.Culprit = new DpcCulprit { Method = "stack" };
        r.Blame.Add(new BlameRow { Module = "NDIS", Queued = 4 });
        r.Blame.Add(new BlameRow { Module = "USBPORT", Queued = 2 });
        var entries = DpcBlameFailureAnalysis.Map(r, null);
        Assert.That(entries, Has.Count.EqualTo(1));
        Assert.That(entries[0].Tag, Is.EqualTo(Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT));
        Assert.That(entries[0].Text, Does.Contain("no driver frame found on the DPC stack (only nt/hal), so the default blame stays.")
            .And.Contain("A single DPC ran 0x501 ticks (limit 0x500).").And.Contain("Most queued DPCs: NDIS 4 queued, USBPORT 2 queued."));
    }

    [Test]
    public void SymbolNameWithoutARoutineIsModulePlusOffset()
    {
        var r = new DpcBlameReport();
        r.Blame.Add(new BlameRow { Module = "USBPORT", Base = 0xfffff880_01700000 });
        var c = new DpcCulprit { Module = "USBPORT", Address = 0xfffff880_01701df0 };
        Assert.That(DpcBlameFailureAnalysis.SymbolName(c, r), Is.EqualTo("USBPORT+1df0"));
        Assert.That(DpcBlameFailureAnalysis.SymbolName(new DpcCulprit { Module = "X", Symbol = "X!F+0x10" }, r), Is.EqualTo("X!F+10"));
        Assert.That(DpcBlameFailureAnalysis.SymbolName(new DpcCulprit { Module = "X", Symbol = "X!F" }, r), Is.EqualTo("X!F"));
        Assert.That(DpcBlameFailureAnalysis.SymbolName(new DpcCulprit { Module = "Y", Address = 5 }, r), Is.Null, "no base: no offset to give");
    }

    [Test]
    public void TargetStringsCannotCarryMarkupControlCharactersOrUnboundedLength()
    {
        Assert.That(DpcBlameFailureAnalysis.Clean("<link cmd=\"!x;.kill\">a&b</link>\r\n\u00e9"), Is.EqualTo("?link cmd=?!x;.kill??a?b?/link????"));
        Assert.That(DpcBlameFailureAnalysis.Clean(new string('A', 5000)), Has.Length.EqualTo(DpcBlameFailureAnalysis.MaxTextLength));
        var r = new DpcBlameReport { BugCheck = new DpcBugCheck { Code = 0x133, IsDpcWatchdog = true } };
        r.Culprit = new DpcCulprit { Module = "<b>evil", Symbol = "<b>evil!F\u0007+0x1", Address = 1 };
        foreach (var e in DpcBlameFailureAnalysis.Map(r, "<i>evil.sys").Where(e => e.IsString))
            Assert.That(e.Text, Does.Not.Contain("<").And.Not.Contain(">").And.Not.Contain("\u0007"), e.ToString());
    }

    // ---------- the writer, through the interop, into a fake IDebugFailureAnalysis2 ----------

    private static readonly FaEntry[] Sample =
    [
        FaEntry.SetString(Extsfns.DEBUG_FLR_MODULE_NAME, "ECHO"),
        FaEntry.SetUlong64(Extsfns.DEBUG_FLR_FAULTING_IP, 0xfffff880_04be3409),
        FaEntry.AddString(Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT, "evidence"),
    ];

    [Test]
    public void WriterUsesSetForBlameAndAddForEvidenceWhenTheTagTypesFit()
    {
        using var fa = new FakeFailureAnalysis().WithStringAndAddressTypes();
        var outcomes = FailureAnalysisWriter.Apply(new FailureAnalysis2(fa.Pointer), Sample);
        Assert.That(outcomes.All(o => o.Written), Is.True, string.Join("\n", outcomes));
        Assert.That(fa.Writes, Is.EqualTo(new[]
        {
            ("SetString", Extsfns.DEBUG_FLR_MODULE_NAME, (string?)"ECHO", 0UL),
            ("SetUlong64", Extsfns.DEBUG_FLR_FAULTING_IP, null, 0xfffff880_04be3409UL),
            ("AddString", Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT, "evidence", 0UL),
        }));
        Assert.That(fa.Calls, Does.Not.Contain("unexpected").And.Not.Contain("QueryInterface").And.Not.Contain("Release"));
    }

    [Test]
    public void WriterSkipsATagWhoseTypeDoesNotFit()
    {
        using var fa = new FakeFailureAnalysis().WithStringAndAddressTypes();
        fa.TagTypes[Extsfns.DEBUG_FLR_FAULTING_IP] = Extsfns.DEBUG_FA_ENTRY_ANSI_STRING;
        fa.TagTypes.Remove(Extsfns.DEBUG_FLR_MODULE_NAME); // NO_TYPE
        var outcomes = FailureAnalysisWriter.Apply(new FailureAnalysis2(fa.Pointer), Sample);
        Assert.That(fa.Writes.Select(w => w.Tag), Is.EqualTo(new[] { Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT }));
        Assert.That(outcomes.Where(o => !o.Written).Select(o => o.Reason), Is.EqualTo(new[]
            { "the analysis types DEBUG_FLR_MODULE_NAME as FA_ENTRY_TYPE 0", "the analysis types DEBUG_FLR_FAULTING_IP as FA_ENTRY_TYPE 5" }));
    }

    [Test]
    public void WithoutATagTableOnlyStringsAreWrittenAndRefusalsAreReported()
    {
        using var fa = new FakeFailureAnalysis { HasTagTable = false };
        fa.RefuseTags.Add(Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT);
        var outcomes = FailureAnalysisWriter.Apply(new FailureAnalysis2(fa.Pointer), Sample);
        Assert.That(fa.Writes.Select(w => w.Method), Is.EqualTo(new[] { "SetString", "AddString" }));
        Assert.That(outcomes.Select(o => o.Written), Is.EqualTo(new[] { true, false, false }));
        Assert.That(outcomes[1].Reason, Is.EqualTo("no tag table to confirm the tag's type"));
        Assert.That(outcomes[2].Reason, Does.Contain("did not store it"));
    }

    // ---------- the plug-in ----------

    [Test]
    public void ContributesOnTheLabDpcWatchdogKernel()
    {
        var t = Scenario().Kernel.CreateTarget();
        using var fa = new FakeFailureAnalysis().WithStringAndAddressTypes();
        var sink = new BufferSink(false);
        int hr = AnalyzePlugin.Contribute(new FailureAnalysis2(fa.Pointer), t, sink);
        Assert.That(hr, Is.EqualTo(0), sink.Text + sink.Errors);
        Assert.That(fa.Writes.Select(w => (w.Method, w.Tag)), Is.EqualTo(new[]
        {
            ("SetString", Extsfns.DEBUG_FLR_MODULE_NAME), ("SetString", Extsfns.DEBUG_FLR_IMAGE_NAME), ("SetString", Extsfns.DEBUG_FLR_SYMBOL_NAME),
            ("SetUlong64", Extsfns.DEBUG_FLR_FAULTING_IP), ("AddString", Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT),
        }));
        Assert.That(fa.Writes[1].Text, Is.EqualTo("ECHO.sys"), "image name from the module list");
        Assert.That(sink.Text, Is.EqualTo("ntsleuth: !analyze: DPC_WATCHDOG_VIOLATION blamed on ECHO!EchoEvtTimerFunc+7d (from !dpcblame; run !ntsleuth.dpcblame for the evidence)\n"));
        Assert.That(sink.Errors, Is.Empty);
    }

    [Test]
    public void InterruptWritesNothingAndReturnsEAbort()
    {
        var t = Scenario().Kernel.CreateTarget();
        t.InterruptAfterReads = 3;
        using var fa = new FakeFailureAnalysis().WithStringAndAddressTypes();
        var sink = new BufferSink(false);
        int hr = AnalyzePlugin.Contribute(new FailureAnalysis2(fa.Pointer), t, sink);
        Assert.That(hr, Is.EqualTo(unchecked((int)0x80004004)));
        Assert.That(fa.Writes, Is.Empty);
        Assert.That(sink.Errors, Does.Contain("interrupted by user"));
    }

    [Test]
    public void ImageNameComesFromTheModulesPathOnly()
    {
        Assert.That(AnalyzePlugin.ImageFileName(new("ECHO", 1, 2, @"\SystemRoot\system32\drivers\ECHO.sys")), Is.EqualTo("ECHO.sys"));
        Assert.That(AnalyzePlugin.ImageFileName(new("ECHO", 1, 2, "ECHO.sys")), Is.EqualTo("ECHO.sys"));
        Assert.That(AnalyzePlugin.ImageFileName(new("ECHO", 1, 2)), Is.Null, "no path: no IMAGE_NAME (the module name is not a file name)");
    }

    [Test]
    public void OnlyThePreBucketingPhaseOfA0x133FailureDoesAnything()
    {
        using var fa = new FakeFailureAnalysis();
        foreach (var phase in new[] { Extsfns.FA_PLUGIN_INITILIZATION, Extsfns.FA_PLUGIN_STACK_ANALYSIS, Extsfns.FA_PLUGIN_POST_BUCKETING })
            Assert.That(AnalyzePlugin.Run(1, phase, fa.Pointer), Is.EqualTo(0));
        Assert.That(fa.Calls, Is.Empty, "other phases do not touch the analysis");
        fa.FailureCode = 0xA;
        Assert.That(AnalyzePlugin.Run(1, Extsfns.FA_PLUGIN_PRE_BUCKETING, fa.Pointer), Is.EqualTo(0));
        Assert.That(fa.Calls, Is.EqualTo(new[] { "GetFailureCode" }), "another bug check: asked the code, said nothing");
        Assert.That(AnalyzePlugin.Run(1, Extsfns.FA_PLUGIN_PRE_BUCKETING, 0), Is.EqualTo(unchecked((int)0x80070057)));
    }
}
