using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.WorkQueue;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

[TestFixture]
public class WorkQueueTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;
    private static readonly Dictionary<string, ScenarioResult> Cache = new();

    private static ScenarioResult Scenario(string key, string? variant = null)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        string k = key + "/" + variant;
        lock (Cache)
        {
            if (!Cache.TryGetValue(k, out var s))
            {
                if (!SeedWorkQueues.Supports(build)) Assert.Ignore($"{build.Label} lacks the work-queue types");
                Cache[k] = s = new AlpcLogonHangScenario().Build(build, new ScenarioOptions { Variant = variant });
            }
            return s;
        }
    }

    private static (WorkQueueReport Report, ReadStats Stats) Analyze(ScenarioResult s, string? routine = null)
    {
        var stats = new ReadStats();
        var r = new WorkQueueAnalyzer(new KernelReader(s.CreateTarget(), stats)).Analyze(routine);
        return (r, stats);
    }

    private static string Run(InMemoryTarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        int hr = CommandDispatcher.Run("workqueue", args, t, sink);
        Assert.That(sink.Errors, Is.Empty, sink.Errors);
        Assert.That(hr, Is.EqualTo(CommandDispatcher.S_OK));
        return sink.Text;
    }

    private static string ExpectedShape(string key) => key switch
    {
        "win7" => "ExWorkerQueue", "2012r2" or "2016" => "KeNodeBlock", _ => "PspSystemPartition",
    };

    [TestCaseSource(nameof(Builds))]
    public void Seed_delayed_queue_on_every_build(string key)
    {
        var s = Scenario(key);
        var (r, stats) = Analyze(s);
        Assert.That(r.Shape, Is.EqualTo(ExpectedShape(key)));
        Assert.That(r.TotalPending, Is.EqualTo(SeedWorkQueues.Pending));
        var q = r.Queues.Single(x => x.Pending > 0);
        Assert.That(q.Address, Is.EqualTo(s.Fact("delayedQueue")));
        Assert.That(q.OwnCount, Is.EqualTo(SeedWorkQueues.Pending));
        Assert.That(q.CountAgrees, Is.True);
        Assert.That(q.Complete, Is.True);
        var l = q.Lists.Single();
        Assert.That(l.Name, Does.StartWith("Delayed WorkQueue"));
        Assert.That(l.Head, Is.EqualTo(s.Fact("delayedHead")));
        if (key != "win7") Assert.That(l.Priority, Is.EqualTo(12));
        Assert.That(l.Groups.Select(g => (g.Routine, g.Driver, g.Count)), Is.EqualTo(new[]
        {
            ("mpio!MPIOPathVerify", (string?)@"\Driver\mpio", (long)SeedWorkQueues.MpioItems),
            ("smb!SmbDelayedStartTcpSession", @"\Driver\Smb", SeedWorkQueues.SmbItems),
            ("nt!CcWorkerThread", null, SeedWorkQueues.CcItems),
        }));
        var smb = l.Groups[1];
        Assert.That(smb.IoWorkItem, Is.True);
        Assert.That(smb.FirstItem, Is.EqualTo(s.Fact("firstSmbItem")));
        Assert.That(smb.FirstPosition, Is.EqualTo((long)s.Fact("firstSmbPosition")));
        Assert.That(l.Groups[0].FirstItem, Is.EqualTo(SeedWorkQueues.FirstItem));
        Assert.That(l.Groups[2].IoWorkItem, Is.False);

        var w = q.Workers;
        Assert.That((w.Total, w.Idle, w.Busy, w.Dynamic, w.Static), Is.EqualTo((20, 0, 20, (int?)16, (int?)4)));
        Assert.That(w.Maximum, Is.EqualTo(key == "win7" ? 16 : 20));
        var g = w.Groups.Single();
        Assert.That(g.Count, Is.EqualTo(20));
        Assert.That(g.BlockedIn, Is.EqualTo("MyBadDSM"));
        Assert.That(g.CalledFrom, Is.EqualTo("mpio!MPIOPathVerify+0x14b"));
        Assert.That(g.State, Is.EqualTo("waits Executive (KernelMode) on SynchronizationEvent"));
        Assert.That(g.Frames.Take(8), Is.EqualTo(new[]
        {
            "nt!KiSwapThread+0x13a", "nt!KeWaitForSingleObject+0x2cb", "MyBadDSM+0xb698", "MyBadDSM+0x6a06", "mpio!MPIOPathVerify+0x14b",
            "nt!IopProcessWorkItem+0x27", "nt!ExpWorkerThread+0xfb", "nt!PspSystemThreadStartup+0x57",
        }), "the function pointer mpio!MPIOPathVerify stored on each stack (not after a call) is no frame");
        // KxStartSystemThread and KiStartSystemThread share an address: either name.
        Assert.That(g.Frames[^1], Does.Match(@"^nt!K[ix]StartSystemThread\+0x16$"));
        Assert.That(g.Threads[0].Address, Is.EqualTo(SeedWorkQueues.FirstWorker));
        Assert.That(g.Threads[0].Cid, Is.EqualTo("4.44"));
        Assert.That(g.LongestWait, Is.EqualTo("9:26:24"), "the seed's worker: Ticks 2178462 (0:09:26:24.225)");
        Assert.That(r.Queues.Where(x => x != q).All(x => x.Workers.Idle == x.Workers.Total && x.Workers.Total > 0), Is.True);

        Assert.That(r.Starved, Is.True);
        Assert.That(r.Verdicts[0], Does.Contain("Delayed WorkQueue").And.Contain("starved: 18,023 item(s) pending (17,950 mpio!MPIOPathVerify, 37 smb!SmbDelayedStartTcpSession, 36 nt!CcWorkerThread)")
            .And.Contain("all 20 worker(s) (4 static + 16 dynamic, ").And.Contain("blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"));
        // One read per item (the item's link, routine and I/O fields together), plus the queues and workers.
        Assert.That(stats.Packets, Is.LessThan(SeedWorkQueues.Pending + 400), $"{stats}");
        Assert.That(r.Notes, Is.Empty);
        Assert.That(r.Queues.SelectMany(x => x.Notes), Is.Empty, "every queue points back at the node / partition it was found through");
    }

    [TestCase("2016", "Node")]
    [TestCase("win10", "Partition")]
    public void Queue_whose_back_pointer_is_wrong_is_noted(string key, string field)
    {
        var s = new AlpcLogonHangScenario().Build(LabTestSupport.BuildOrIgnore(key), ScenarioOptions.Default);
        s.Builder.View("_EX_WORK_QUEUE", s.Fact("delayedQueue")).Set(field, 0xfffff800_12345670UL);
        var r = new WorkQueueAnalyzer(new KernelReader(s.CreateTarget())).Analyze();
        Assert.That(r.Queues.First(q => q.Address == s.Fact("delayedQueue")).Notes,
            Has.Some.Contains($"_EX_WORK_QUEUE.{field} is fffff800`12345670, not "));
        Assert.That(r.TotalPending, Is.EqualTo(SeedWorkQueues.Pending), "a note, not a stop");
    }

    [TestCaseSource(nameof(Builds))]
    public void Cycle_in_the_item_list_is_cut_and_the_rest_counted_from_the_tail(string key)
    {
        var s = Scenario(key, "wq-cycle");
        var (r, _) = Analyze(s);
        var q = r.Queues.Single(x => x.Pending > 0);
        var l = q.Lists.Single();
        Assert.That(l.Complete, Is.False);
        Assert.That(l.WalkNote, Does.Contain($"cycle detected at {NtSleuth.Commands.Output.Fmt.Addr(s.Fact("item5000"))} after 10000 entries"));
        Assert.That(l.RecoveredFromTail, Is.EqualTo(SeedWorkQueues.Pending - 10_000));
        Assert.That(l.Pending, Is.EqualTo(SeedWorkQueues.Pending), "forward to the cycle + back from the tail to the break = every item");
        Assert.That(q.Complete, Is.False);
        Assert.That(r.Verdicts[0], Does.Contain("18,023+ item(s) pending"));
    }

    [TestCaseSource(nameof(Builds))]
    public void Paged_out_item_gives_partial_counts_with_the_address(string key)
    {
        var s = Scenario(key, "wq-pagedout");
        var (r, _) = Analyze(s);
        var q = r.Queues.Single(x => x.Pending > 0);
        var l = q.Lists.Single();
        Assert.That(l.Complete, Is.False);
        // The page of item 9,000 is gone with the other items on it: the forward walk stops at the first of them in list order.
        ulong page = s.Fact("item9000") & ~0xfffUL;
        var m = System.Text.RegularExpressions.Regex.Match(l.WalkNote!, @"\(forward, Flink\): link at ([0-9a-f]{8})`([0-9a-f]{8}) not readable after (\d+) entries");
        Assert.That(m.Success, Is.True, l.WalkNote);
        Assert.That(Convert.ToUInt64(m.Groups[1].Value + m.Groups[2].Value, 16) & ~0xfffUL, Is.EqualTo(page), l.WalkNote);
        Assert.That(l.Groups.Any(g => g.Routine == "(item not readable)" && (g.FirstItem & ~0xfffUL) == page), Is.True);
        Assert.That(l.RecoveredFromTail, Is.GreaterThan(0));
        Assert.That(q.Pending, Is.LessThan(SeedWorkQueues.Pending).And.EqualTo(long.Parse(m.Groups[3].Value) + l.RecoveredFromTail));
        Assert.That(q.Notes, Has.Some.Contains("walk incomplete"));
        Assert.That(r.Verdicts[0], Does.Contain("+ item(s) pending").And.Contain("starved"));
    }

    [TestCaseSource(nameof(Builds))]
    public void Own_count_that_disagrees_with_the_list_is_reported(string key)
    {
        var s = Scenario(key, "wq-count");
        var (r, _) = Analyze(s);
        var q = r.Queues.Single(x => x.Pending > 0);
        Assert.That((q.Pending, q.OwnCount, q.CountAgrees, q.Complete), Is.EqualTo((18_023L, (long?)18_100, (bool?)false, true)));
        Assert.That(q.Notes, Has.Some.Contains("own count (SignalState) is 18,100 but its list(s) hold 18,023 item(s)"));
        var doc = Json(s.CreateTarget(), "");
        Assert.That(doc["findings"]!.AsArray().Select(f => f!["id"]!.GetValue<string>()), Has.Some.StartWith("workqueue.count."));
    }

    private static System.Text.Json.Nodes.JsonNode Json(InMemoryTarget t, string args)
    {
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("workqueue", args + " -json", t, sink), Is.Zero, sink.All);
        var doc = System.Text.Json.Nodes.JsonNode.Parse(sink.Text)!;
        Assert.That(JsonSchemaValidator.Validate(doc, JsonSchemas.For("workqueue")), Is.Empty);
        return doc;
    }

    [TestCaseSource(nameof(Builds))]
    public void Json_document_matches_the_schema_and_has_the_starved_finding(string key)
    {
        var s = Scenario(key);
        var doc = Json(s.CreateTarget(), "-routine smb!SmbDelayedStartTcpSession");
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("ok"));
        Assert.That(doc["severity"]!.GetValue<string>(), Is.EqualTo("error"));
        Assert.That(doc["findings"]![0]!["title"]!.GetValue<string>(), Does.Contain("starved"));
        Assert.That(doc["totalPending"]!.GetValue<long>(), Is.EqualTo(SeedWorkQueues.Pending));
        Assert.That(doc["matchingTotal"]!.GetValue<int>(), Is.EqualTo(SeedWorkQueues.SmbItems));
        Assert.That(doc["shape"]!.GetValue<string>(), Is.EqualTo(ExpectedShape(key)));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Routine_lists_matching_items_with_links(string key)
    {
        var s = Scenario(key);
        var t = s.CreateTarget();
        string dml = Run(t, "-routine SmbDelayedStartTcpSession", dml: true);
        Assert.That(dml, Does.Contain("Items running SmbDelayedStartTcpSession: 37"));
        Assert.That(dml, Does.Contain($"<exec cmd=\"dt nt!_IO_WORKITEM fffffa80`4b7c7e30\">"));
        Assert.That(dml, Does.Contain($"<exec cmd=\"!irp fffffa80`7274e5a0\">"), "an IO_WORKITEM whose context is an IRP links to !irp");
        Assert.That(dml, Does.Contain($"<exec cmd=\"!thread fffffa80`30a39720\">"));
        var (r, _) = Analyze(s, "mpio!");
        Assert.That((r.MatchingTotal, r.MatchingItems.Count), Is.EqualTo((SeedWorkQueues.MpioItems, SystemWorkQueues.MaxListedItems)));
        Assert.That(r.MatchingItems[0].Position, Is.EqualTo(1));
        Assert.That(Run(t, "-routine nosuch!Routine"), Does.Contain("Items running nosuch!Routine: 0"));
    }

    [Test]
    public void Target_strings_are_escaped_in_dml()
    {
        var s = new AlpcLogonHangScenario().Build(LabTestSupport.BuildOrIgnore("win7"), ScenarioOptions.Default);
        var b = s.Builder;
        // The Smb driver's name becomes markup with a chained command.
        ulong drv = b.ReadPointer(SeedWorkQueues.SmbDevice + b.OffsetOf("_DEVICE_OBJECT", "DriverObject"));
        b.WriteUnicodeString(drv + b.OffsetOf("_DRIVER_OBJECT", "DriverName"), "<exec cmd=\".shell calc\">x</exec>;.shell calc");
        string dml = Run(s.CreateTarget(), "-routine SmbDelayedStartTcpSession", dml: true);
        Assert.That(dml, Does.Not.Contain("<exec cmd=\".shell"));
        Assert.That(dml, Does.Contain("[&lt;exec cmd=&quot;.shell calc&quot;&gt;x&lt;/exec&gt;;.shell calc]"));
    }

    [TestCase("win7", "no work queue could be read", "nt!_EX_WORK_QUEUE at ")]
    [TestCase("2016", "no system work queue found", "nt!KeNodeBlock[0] is not readable or NULL")]
    [TestCase("win10", "no system work queue found", "the system partition's work queues cannot be found: nt!PspSystemPartition")]
    public void Kernel_without_queue_state_says_what_it_could_not_read(string key, string verdict, string note)
    {
        var s = ScenarioCatalog.Build("baseline-kernel", LabTestSupport.BuildOrIgnore(key));
        var r = new WorkQueueAnalyzer(new KernelReader(s.CreateTarget())).Analyze();
        Assert.That(r.Verdicts.Single(), Does.StartWith(verdict));
        Assert.That(r.Notes.Concat(r.Queues.SelectMany(q => q.Notes)), Has.Some.Contains(note));
        Assert.That(r.Starved, Is.False);
    }

    [Test]
    public void Interrupt_stops_the_walk_with_partial_results()
    {
        var s = Scenario("win7");
        var t = s.CreateTarget();
        // Mid-walk: the Delayed queue's 18,023 items cost ~2,250 page reads (8 items per page); Ctrl+Break is polled
        // every 64 items, so at most 64 more reads follow it.
        t.InterruptAfterReads = 1_000;
        var sink = new BufferSink();
        CommandDispatcher.Run("workqueue", "", t, sink);
        Assert.That(sink.All, Does.Contain("interrupted by user"));
        Assert.That(t.ReadCalls, Is.LessThan(1_000 + 64 + 8));
    }

    [Test]
    public void Missing_symbol_names_what_is_missing()
    {
        var s = Scenario("win7");
        var t = s.CreateTarget();
        t.HiddenSymbols.Add("nt!ExWorkerQueue");
        var sink = new BufferSink();
        CommandDispatcher.Run("workqueue", "", t, sink);
        Assert.That(sink.All, Does.Contain("nt!ExWorkerQueue"));
    }

    [TestCaseSource(nameof(Builds))]
    public void Text_output_has_counts_groups_workers_and_verdict(string key)
    {
        var s = Scenario(key);
        var text = Run(s.CreateTarget(), "-stats");
        Assert.That(text, Does.Contain("17,950  mpio!MPIOPathVerify  [\\Driver\\mpio]  IO_WORKITEM  first #1 fffffa80`50226f00"));
        Assert.That(text, Does.Contain("Workers: 20 (4 static, 16 dynamic)"));
        Assert.That(text, Does.Contain("20 x waits Executive (KernelMode) on SynchronizationEvent for up to 9:26:24  blocked in MyBadDSM"));
        Assert.That(text, Does.Contain("starved: 18,023 item(s) pending"));
        Assert.That(text, Does.Contain("[ntsleuth] "));
        Assert.That(Run(s.CreateTarget(), "-?"), Does.Contain("Usage: !workqueue"));
    }
}
