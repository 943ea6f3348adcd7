using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.LeakTag;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

[NonParallelizable]
public class LeakTagTests
{
    private static PoolLeakScenario Scenario(string build, int processors = 4, int extraModules = 3, int bigPages = 4096, bool live = false)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build);
        if (nt is null) Assert.Ignore($"../shared/realdata/isf/ntkrnlmp.pdb/{build}.json.xz not found (the shared real data is absent)");
        var k = new LabKernel(nt!, build) { IsLive = live };
        return new PoolLeakScenario(k, processors, extraModules, bigPages);
    }

    private static (int Hr, BufferSink Sink, ReadStats Stats) Run(InMemoryTarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        var stats = new ReadStats();
        int hr = CommandDispatcher.Run("leaktag", args, t, sink, stats);
        return (hr, sink, stats);
    }

    private static LeakTagReport Analyze(InMemoryTarget t, LeakTagOptions o) => new LeakTagAnalyzer(new KernelReader(t)).Analyze(o);

    [SetUp]
    public void NoPoolTagFile() => LeakTagCommand.DescriptionsOverride = null;

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win2016)]
    [TestCase(PoolDpcBuilds.Win10)]
    [TestCase(PoolDpcBuilds.Win11)]
    public void TopConsumersMatchTheSeed(string build)
    {
        var s = Scenario(build);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Sort = PoolSort.NonPaged, TopN = 5 });
        Assert.That(r.Top.Select(u => u.Tag), Is.EqualTo(new[] { "Leak", "Pool", "nVsC", "netv", "Thre" }));
        var leak = r.Top[0];
        Assert.That(leak.NonPagedOutstanding, Is.EqualTo(601));
        Assert.That(leak.NonPagedBytes, Is.EqualTo(615_424_000UL));
        Assert.That(r.Top[3].PagedOutstanding, Is.EqualTo(1));
        Assert.That(r.Totals.NonPagedAllocs, Is.EqualTo(PoolLeakScenario.TotalNpAllocs));
        Assert.That(r.Totals.NonPagedBytes, Is.EqualTo(PoolLeakScenario.TotalNpBytes));
        Assert.That(r.Totals.PagedAllocs, Is.EqualTo(PoolLeakScenario.TotalPAllocs));
        Assert.That(r.Totals.PagedBytes, Is.EqualTo(PoolLeakScenario.TotalPBytes));
        Assert.That(r.Tables, Has.Count.EqualTo(s.TrackerTables.Count));
        Assert.That(r.TrackerEntrySize, Is.EqualTo(s.Kernel.SizeOf("_POOL_TRACKER_TABLE")));
        Assert.That(r.Partial, Is.False);

        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "-nonpaged -n 5");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        TestContext.Out.WriteLine(sink.Text);
        Assert.That(sink.Text, Does.Contain("Sorting by NonPaged Pool Consumed"));
        Assert.That(sink.Text, Does.Contain("Leak       601    615424000          0            0"));
        Assert.That(sink.Text, Does.Contain("netv      4369      1172224          1          144"));
        Assert.That(sink.Text, Does.Contain("TOTAL      43424    634209952      63565    126487760"));
        Assert.That(sink.Text, Does.Contain("Top consumer: Leak, 601 allocations, 615,424,000 bytes nonpaged"));
        if (s.Kernel.HasSym("MmMaximumNonPagedPoolInBytes"))
            Assert.That(sink.Text, Does.Contain("Excessive NonPaged Pool Usage"));
    }

    [Test]
    public void Windows11SumsEveryTrackerTable()
    {
        var s = Scenario(PoolDpcBuilds.Win11, processors: 6);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Sort = PoolSort.NonPaged, TopN = 3 });
        Assert.That(r.TrackerEntrySize, Is.EqualTo(0x50UL));
        Assert.That(r.Tables.Select(t => t.Source), Is.EqualTo(new[] { "PoolTrackTable", "ExPoolTagTables[1]", "ExPoolTagTables[2]", "ExPoolTagTables[3]", "ExPoolTagTables[4]", "ExPoolTagTables[5]", "PoolTrackTableExpansion" }));
        Assert.That(r.Top[0].Tables, Is.EqualTo(6)); // 'Leak' is in the global and the 5 other per-CPU tables
        Assert.That(r.Top[0].NonPagedOutstanding, Is.EqualTo(601));
        Assert.That(r.Top[0].NonPagedBytes, Is.EqualTo(PoolLeakScenario.LeakBytes));
        Assert.That(r.Totals.NonPagedBytes, Is.EqualTo(PoolLeakScenario.TotalNpBytes));
        Assert.That(r.Totals.PagedBytes, Is.EqualTo(PoolLeakScenario.TotalPBytes));
    }

    [Test]
    public void GlobalTableAloneWouldBeWrongOnWindows10()
    {
        // Guard against a reader that only reads nt!PoolTrackTable: the global table holds only a share.
        var s = Scenario(PoolDpcBuilds.Win10);
        var t = s.Kernel.CreateTarget();
        t.HiddenSymbols.Add("nt!ExPoolTagTables");
        var r = Analyze(t, new LeakTagOptions { Sort = PoolSort.NonPaged, TopN = 1 });
        Assert.That(r.Tables, Has.Count.EqualTo(1));
        Assert.That(r.Top[0].NonPagedBytes, Is.LessThan(PoolLeakScenario.LeakBytes));
    }

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win10)]
    public void OneTagFindsMyfaultSitesBigPoolAndPoolHitTag(string build)
    {
        var s = Scenario(build);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") });
        Assert.That(r.Matches, Has.Count.EqualTo(1));
        Assert.That(r.Matches[0].NonPagedOutstanding, Is.EqualTo(601));
        Assert.That(r.Sites.Select(x => (x.Module, x.Address, x.Offset)), Is.EqualTo(new[]
        {
            ("myfault", PoolLeakScenario.Site1, 0x13aaUL), ("myfault", PoolLeakScenario.Site2, 0x1621UL),
        }));
        Assert.That(r.ModuleSearchComplete, Is.True);
        Assert.That(r.PoolHitTag, Is.EqualTo(0xffffff0fu));
        Assert.That(r.BigPoolMatchCount, Is.EqualTo(601UL));
        Assert.That(r.BigPoolMatchBytes, Is.EqualTo(PoolLeakScenario.LeakBytes));
        Assert.That(r.BigPool.All(b => b.NumberOfBytes == 1_024_000 && b.NonPaged), Is.True);
        Assert.That(r.VerifierPoolTracking, Is.False);

        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "Leak");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        TestContext.Out.WriteLine(sink.Text);
        Assert.That(sink.Text, Does.Contain("fffff880`044b63aa  myfault+0x13aa"));
        Assert.That(sink.Text, Does.Contain("fffff880`044b6621  myfault+0x1621"));
        Assert.That(sink.Text, Does.Contain("myfault  (2 site(s))"));
        Assert.That(sink.Text, Does.Contain("ffffff0f  default"));
        Assert.That(sink.Text, Does.Contain("Big-pool allocations with this tag: 601 (615,424,000 bytes)"));
        Assert.That(sink.Text, Does.Contain("(ULONG 0x6b61654c)"));
    }

    /// <summary>
    /// Ctrl+Break at every point of a one-tag report (after each read): the command never fails, says it was interrupted,
    /// names the parts it did not read and does not print them (issue 20, item 4).
    /// </summary>
    [Test]
    public void CtrlBreakAnywhereGivesAPartialReportNamingWhatWasNotRead()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var full = s.Kernel.CreateTarget();
        Analyze(full, new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") });
        long reads = full.ReadCalls;
        Assert.That(reads, Is.GreaterThan(5));
        var seen = new HashSet<string>();
        for (long n = 1; n <= reads; n++)
        {
            var t = s.Kernel.CreateTarget();
            t.InterruptAfterReads = n;
            var r = Analyze(t, new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") });
            if (!r.Interrupted) continue;
            seen.Add(string.Join(",", r.NotRead));
            Assert.That(r.Notes.Count(x => x.Contains("interrupted by user", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(1), $"after {n} reads");
            var t2 = s.Kernel.CreateTarget();
            t2.InterruptAfterReads = n;
            var (hr, sink, _) = Run(t2, "Leak");
            Assert.That(hr, Is.Zero, sink.All);
            Assert.That(sink.Text, Does.Contain("Interrupted (Ctrl+Break): partial"), $"after {n} reads");
            if (r.NotRead.Contains(LeakTagAnalyzer.PartBigPool)) Assert.That(sink.Text, Does.Not.Contain("Big-pool allocations"), $"after {n} reads");
            if (r.NotRead.Contains(LeakTagAnalyzer.PartModules)) Assert.That(sink.Text, Does.Not.Contain("Modules containing"), $"after {n} reads");
        }
        TestContext.Out.WriteLine($"{reads} reads; parts not read: {string.Join(" | ", seen)}");
        // The interrupt was seen in the tracker tables and in later parts (not only at one place).
        Assert.That(seen, Has.Count.GreaterThanOrEqualTo(3), string.Join(" | ", seen));
    }

    [Test]
    public void JsonParsesAndCarriesTheModel()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "Leak -json");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        using var doc = JsonDocument.Parse(sink.Text);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("matches")[0].GetProperty("nonPagedBytes").GetUInt64(), Is.EqualTo(615_424_000UL));
        Assert.That(root.GetProperty("sites")[0].GetProperty("address").GetString(), Is.EqualTo("0xfffff880044b63aa"));
        Assert.That(root.GetProperty("poolHitTag").GetUInt32(), Is.EqualTo(0xffffff0fu));
        Assert.That(root.GetProperty("stats").GetProperty("roundTrips").GetInt64(), Is.GreaterThan(0));
    }

    [TestCase("Le?k")]
    [TestCase("Lea*")]
    [TestCase("L*")]
    public void WildcardsMatchLeak(string pattern)
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Tag = PoolTagPattern.Parse(pattern) });
        Assert.That(r.Matches.Select(m => m.Tag), Does.Contain("Leak"));
        Assert.That(r.ModuleSearchSkipped, Is.True);
        Assert.That(r.Notes, Has.Some.Contains("exact tag"));
    }

    [Test]
    public void ShortTagsArePaddedWithSpaces()
    {
        var p = PoolTagPattern.Parse("Ab");
        Assert.That(p.Padded, Is.EqualTo("Ab  "));
        Assert.That(p.KeyValue, Is.EqualTo(0x20206241u));
        Assert.That(p.Matches(0x20206241u), Is.True);
        Assert.That(p.Matches(0x43436241u), Is.False);
        Assert.That(PoolTagPattern.Parse("Leak").Matches(0x6b61654cu | PoolTagText.ProtectedBit), Is.True);
    }

    [TestCase("Leaky")]
    [TestCase("L*k")]
    [TestCase("Le\u00e9k")]
    public void BadTagsAreUsageErrors(string tag)
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "\"" + tag + "\"");
        Assert.That(hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(sink.Errors, Does.Contain("!leaktag:"));
        Assert.That(sink.Text, Does.Contain("Usage: !leaktag"));
    }

    [Test]
    public void ConflictingSortsAndBadCountAreUsageErrors()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        Assert.That(Run(s.Kernel.CreateTarget(), "-paged -nonpaged").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(Run(s.Kernel.CreateTarget(), "-n zero").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(Run(s.Kernel.CreateTarget(), "-live").Hr, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
    }

    [Test]
    public void MissingPoolTrackTableSaysWhatToReload()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        var t = s.Kernel.CreateTarget();
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        var (hr, sink, _) = Run(t, "");
        Assert.That(hr, Is.EqualTo(CommandDispatcher.E_FAIL));
        Assert.That(sink.Errors, Does.Contain("nt!PoolTrackTable"));
        Assert.That(sink.Errors, Does.Contain(".reload"));
        // A "not found" may be the engine's answer to a swallowed Ctrl+Break: the session cache must not keep it.
        Assert.That(t.SymbolAnswersDistrusted, Is.EqualTo(1));
        var ok = s.Kernel.CreateTarget();
        Assert.That(Run(ok, "").Hr, Is.EqualTo(CommandDispatcher.S_OK));
        Assert.That(ok.SymbolAnswersDistrusted, Is.Zero, "a command that succeeds keeps its answers");
    }

    [Test]
    public void UnreadableTablePagesGivePartialFlaggedCounts()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        ulong table = s.TrackerTables[0];
        s.Kernel.Memory.Unmap(table + 0x3000, 0x1000);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Sort = PoolSort.NonPaged });
        Assert.That(r.Partial, Is.True);
        Assert.That(r.Tables[0].Partial, Is.True);
        Assert.That(r.Tables[0].Note, Does.Contain("unreadable page"));
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "");
        Assert.That(hr, Is.EqualTo(0));
        Assert.That(sink.Text, Does.Contain("PARTIAL"));
        Assert.That(sink.Text, Does.Contain(Fmt.Addr(table + 0x3000)));
    }

    [Test]
    public void CtrlBreakStopsTheModuleSearchWithPartialResults()
    {
        var s = Scenario(PoolDpcBuilds.Win10, extraModules: 150);
        // The module search reads the images (nt, hal, myfault, the drivers) in order: Ctrl+Break right after the
        // last read of myfault's image, in the first driver after it.
        var probe = s.Kernel.CreateTarget();
        probe.ReadLog = new();
        Analyze(probe, new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") });
        int lastMyfaultRead = probe.ReadLog.FindLastIndex(r => r.Address >= PoolLeakScenario.MyfaultBase && r.Address < PoolLeakScenario.MyfaultBase + PoolLeakScenario.MyfaultSize);
        Assert.That(lastMyfaultRead, Is.GreaterThan(0));
        var t = s.Kernel.CreateTarget();
        t.InterruptAfterReads = lastMyfaultRead + 3;
        var r = Analyze(t, new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") });
        Assert.That(r.ModuleSearchComplete, Is.False);
        Assert.That(r.Sites, Has.Count.EqualTo(2));
        Assert.That(r.ModulesSearched, Is.LessThan(r.ModulesTotal));
        Assert.That(r.Notes, Has.Some.Contains("interrupted by user"));
    }

    [Test]
    public void LiveSuggestionsAreDmlLinks()
    {
        var s = Scenario(PoolDpcBuilds.Win7, live: true);
        var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "Leak -live", dml: true);
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"ed nt!PoolHitTag 6b61654c\">"));
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"eb fffff880`044b63aa+3 31\">"));
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"eb fffff880`044b6621+3 32\">"));
        Assert.That(sink.Text, Does.Contain("<exec cmd=\"u fffff880`044b63aa\">"));
    }

    [Test]
    public void LiveOnADumpIsANoteNotASuggestion()
    {
        var s = Scenario(PoolDpcBuilds.Win7);
        var r = Analyze(s.Kernel.CreateTarget(), new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak"), Live = true });
        Assert.That(r.Suggestions, Is.Empty);
        Assert.That(r.Notes, Has.Some.Contains("live kernel session"));
    }

    [Test]
    public void PoolTagDescriptionsAreUsedAndEscapedInDml()
    {
        LeakTagCommand.DescriptionsOverride = PoolTagDescriptions.Parse("pooltag.txt", new[]
        {
            "// comment", "Thre - nt!ps        - Thread objects", "Leak - myfault.sys - <b>leaky & \"bad\"</b>",
        });
        try
        {
            var s = Scenario(PoolDpcBuilds.Win7);
            var (hr, sink, _) = Run(s.Kernel.CreateTarget(), "-nonpaged -n 5", dml: true);
            Assert.That(hr, Is.EqualTo(0), sink.All);
            Assert.That(sink.Text, Does.Contain("Thread objects, Binary: nt!ps"));
            Assert.That(sink.Text, Does.Contain("&lt;b&gt;leaky &amp; &quot;bad&quot;&lt;/b&gt;"));
            Assert.That(sink.Text, Does.Not.Contain("<b>leaky"));
            Assert.That(sink.Text, Does.Contain("<exec cmd=\"!leaktag Leak\">Leak</exec>"));
        }
        finally { LeakTagCommand.DescriptionsOverride = null; }
    }

    [Test]
    public void SpeedAgainstTheManualProcedure()
    {
        var s = Scenario(PoolDpcBuilds.Win10, processors: 4, extraModules: 150, bigPages: 65536);
        var t = s.Kernel.CreateTarget();
        var (hr, sink, stats) = Run(t, "Leak");
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("myfault  (2 site(s))"));
        var (mrt, mbytes) = s.ManualProcedureCost();
        double ours = stats.ModelledKdnetSeconds, manual = KdnetModel.Seconds(mrt, mbytes);
        TestContext.Out.WriteLine($"!leaktag Leak: {stats.RoundTrips} round trips ({stats.Searches} searches), {stats.Bytes:N0} bytes, modelled {ours:0.000} s");
        TestContext.Out.WriteLine($"manual !poolused + !for_each_module s -a: {mrt} round trips, {mbytes:N0} bytes, modelled {manual:0.000} s; ratio {manual / ours:0.0}x");
        // Bulk: the tracker tables and the big-page table take at most one request per 64 KB; the rest of the requests
        // are the module images read in packet-sized requests (one KD packet each), nothing searched target-side.
        ulong tableBytes = (ulong)s.TrackerTables.Count * 2048 * s.Kernel.SizeOf("_POOL_TRACKER_TABLE") + 65536 * s.Kernel.SizeOf("_POOL_TRACKER_BIG_PAGES");
        long bulkPackets = (long)((tableBytes + KdnetModel.MaxPacketData - 1) / KdnetModel.MaxPacketData) + s.TrackerTables.Count + 1;
        long imagePages = s.Kernel.Modules.Sum(m => (long)((m.Size + 0xfff) / 0x1000));
        Assert.That(stats.Searches, Is.EqualTo(0));
        Assert.That(stats.Packets, Is.LessThanOrEqualTo(bulkPackets + imagePages + 40));
        // Counted the same way on both sides (KD packets, the search's pages): never slower than the manual procedure.
        Assert.That(manual / ours, Is.GreaterThanOrEqualTo(1.0));
    }

    [Test]
    public void ASecondSearchOnTheSameDumpReadsNoImageAgain()
    {
        var s = Scenario(PoolDpcBuilds.Win10);
        s.MakeImagesPresent();
        var t = s.Kernel.CreateTarget();
        t.Session = new NtSleuth.Commands.Target.SessionStore();
        var o = new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") };
        var first = Analyze(t, o);
        Assert.That(first.ModulesRemembered, Is.EqualTo(0));
        Assert.That(first.Sites.Select(x => x.Address), Is.EqualTo(new[] { PoolLeakScenario.Site1, PoolLeakScenario.Site2 }));
        t.ReadLog = new();
        var second = Analyze(t, o);
        Assert.That(second.ModulesRemembered, Is.EqualTo(s.Kernel.Modules.Count));
        Assert.That(second.Sites.Select(x => (x.Address, x.Module, x.Function)), Is.EqualTo(first.Sites.Select(x => (x.Address, x.Module, x.Function))));
        Assert.That(t.ReadLog.Where(r => s.Kernel.Modules.Any(m => r.Address >= m.Base + 0x1000 && r.Address < m.End)), Is.Empty,
            "no image page is read again (nt's globals are read by the other parts)");
        Assert.That(second.BigPoolMatchCount, Is.EqualTo(first.BigPoolMatchCount));

        // Another tag, and a module that is not the same any more (other timestamp), are searched again.
        var other = Analyze(t, new LeakTagOptions { Tag = PoolTagPattern.Parse("Pool") });
        Assert.That(other.ModulesRemembered, Is.EqualTo(0));
        int i = s.Kernel.Modules.FindIndex(m => m.Name == "myfault.sys");
        s.Kernel.Modules[i] = s.Kernel.Modules[i] with { TimeDateStamp = 0x12345678 };
        var t2 = s.Kernel.CreateTarget();
        t2.Session = t.Session;
        var third = Analyze(t2, o);
        Assert.That(third.ModulesRemembered, Is.EqualTo(s.Kernel.Modules.Count - 1));
        Assert.That(third.Sites, Has.Count.EqualTo(2));
        // The target dropped the store (module change, .reload, another dump: EngineSessionCache): searched again.
        t2.Session!.Clear();
        Assert.That(Analyze(t2, o).ModulesRemembered, Is.EqualTo(0));
    }

    [Test]
    public void ALiveTargetRemembersNoSearch()
    {
        var s = Scenario(PoolDpcBuilds.Win7, live: true);
        var t = s.Kernel.CreateTarget();
        t.Session = new NtSleuth.Commands.Target.SessionStore();
        var o = new LeakTagOptions { Tag = PoolTagPattern.Parse("Leak") };
        Analyze(t, o);
        var second = Analyze(t, o);
        Assert.That(second.ModulesRemembered, Is.EqualTo(0));
        Assert.That(t.Session.Count, Is.EqualTo(0));
        Assert.That(second.Sites, Has.Count.EqualTo(2));
    }

    [TestCase(PoolDpcBuilds.Win7)]
    [TestCase(PoolDpcBuilds.Win10)]
    public void SeedOnTheSharedInMemoryTarget(string build)
    {
        var s = Scenario(build);
        var t = s.Kernel.CreateTarget();
        var sink = new BufferSink();
        var stats = new ReadStats();
        Assert.That(CommandDispatcher.Run("leaktag", "Leak", t, sink, stats), Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("Leak       601    615424000"));
        Assert.That(sink.Text, Does.Contain("fffff880`044b63aa  myfault+0x13aa"));
        Assert.That(sink.Text, Does.Contain("fffff880`044b6621  myfault+0x1621"));
        Assert.That(sink.Text, Does.Contain("ffffff0f"));
        Assert.That(t.ReadCalls + t.SearchCalls, Is.EqualTo(stats.RoundTrips), "every round trip is counted");
    }

    [TestCaseSource(typeof(NtSleuth.Lab.Scenario.LabBuilds), nameof(NtSleuth.Lab.Scenario.LabBuilds.Keys))]
    public void CatalogueScenarioOnEveryBuild(string key)
    {
        var build = NtSleuth.Lab.Scenario.LabBuilds.TryGet(key);
        if (build is null) Assert.Ignore(NtSleuth.Lab.Scenario.LabBuilds.UnavailableReason ?? key + " not available");
        var sc = NtSleuth.Lab.Scenario.ScenarioCatalog.Get("pool-leak");
        Assert.That(sc.Supports(build!), Is.True);
        var res = sc.Build(build!, NtSleuth.Lab.Scenario.ScenarioOptions.Default);
        var t = res.CreateTarget();
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("leaktag", "-nonpaged -n 5", t, sink), Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("Leak       601    615424000"));
        Assert.That(sink.Text, Does.Contain("TOTAL      43424    634209952      63565    126487760"));
        sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("leaktag", "Leak", res.CreateTarget(), sink), Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain("myfault  (2 site(s))"));
        Assert.That(sink.Text, Does.Contain("fffff880`044b63aa  myfault+0x13aa"));
        Assert.That(sink.Text, Does.Contain("ffffff0f"));
        Assert.That(res.Commands, Does.Contain("!leaktag Leak"));
    }
}
