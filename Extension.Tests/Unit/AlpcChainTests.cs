using System.Text.Json;
using NtSleuth.Commands.AlpcChain;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

[TestFixture]
public class AlpcChainTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;
    private const string ExpectedChain =
        @"winlogon.exe (384.1e2c) -> LogonUI.exe (1ac) -> lsm.exe (2e0) -> svchost.exe (574.1ea0): blocked 4:21:40 in Executive wait, IRP fffffa80514558b0 \FileSystem\Mup \DC005.contoso.com\PIPE\lsarpc";

    /// <summary>The seed's summary line: past Mup, into the starved Delayed WorkQueue, ending at the MPIO/DSM workers.</summary>
    private static string Expected(string key) => ExpectedChain + (key == "win7"
        ? " -> Delayed WorkQueue starved: 18,023 items pending, mostly mpio!MPIOPathVerify -> all 20 workers (4 static + 16 dynamic, dynamic at the maximum of 16) blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"
        : " -> Delayed WorkQueue (priority 12), node 0 pool 0 starved: 18,023 items pending, mostly mpio!MPIOPathVerify -> all 20 workers (4 static + 16 dynamic, at the maximum of 20) blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)");

    private static readonly Dictionary<string, ScenarioResult> Cache = new();

    private static ScenarioResult Scenario(string key, string? variant = null)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        string k = key + "/" + variant;
        lock (Cache)
        {
            if (!Cache.TryGetValue(k, out var s))
            {
                var sc = new AlpcLogonHangScenario();
                if (!sc.Supports(build)) Assert.Ignore($"{build.Label} lacks the ALPC types");
                Cache[k] = s = sc.Build(build, new ScenarioOptions { Variant = variant });
            }
            return s;
        }
    }

    private static (AlpcChainReport Report, ReadStats Stats) Analyze(InMemoryTarget t, Func<AlpcChainAnalyzer, AlpcChainReport> f)
    {
        var stats = new ReadStats();
        var r = f(new AlpcChainAnalyzer(new KernelReader(t, stats)));
        return (r, stats);
    }

    private static string Run(InMemoryTarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        int hr = CommandDispatcher.Run("alpcchain", args, t, sink);
        Assert.That(sink.Errors, Is.Empty, sink.Errors);
        Assert.That(hr, Is.EqualTo(CommandDispatcher.S_OK));
        return sink.Text;
    }

    [TestCaseSource(nameof(Builds))]
    public void Seed_chain_model_on_every_build(string key)
    {
        var s = Scenario(key);
        var (r, stats) = Analyze(s.CreateTarget(), a => a.AnalyzeThread(AlpcLogonHangScenario.WinlogonThread));
        Assert.That(r.Problem, Is.Null);
        Assert.That(r.Chains, Has.Count.EqualTo(1));
        var c = r.Chains[0];
        Assert.That(c.Summary, Is.EqualTo(Expected(key)));
        Assert.That(c.End, Is.EqualTo(ChainEnd.Blocker));
        Assert.That(c.Hops.Select(h => h.Waiter.Address), Is.EqualTo(new[] { AlpcLogonHangScenario.WinlogonThread, AlpcLogonHangScenario.LogonUiWaiter, AlpcLogonHangScenario.LsmWaiter }));
        Assert.That(c.Hops.Select(h => h.Next), Is.EqualTo(new[] { "inferred", "inferred", "end" }));

        var h1 = c.Hops[0];
        Assert.That(h1.Message!.MessageId, Is.EqualTo(0x464));
        Assert.That(h1.Message.CallbackId, Is.EqualTo(0x2844F0));
        Assert.That(h1.Message.Sequence, Is.EqualTo(0xB));
        Assert.That(h1.Message.DataLength, Is.EqualTo(0x64));
        Assert.That(h1.Message.TotalLength, Is.EqualTo(0x8C));
        Assert.That(h1.Message.Type, Is.EqualTo("LPC_REQUEST"));
        Assert.That(h1.QueuePort!.Address, Is.EqualTo(AlpcLogonHangScenario.LogonUiPort));
        Assert.That(h1.QueuePort.OwnerImage, Is.EqualTo("LogonUI.exe"));
        Assert.That(h1.ServerThread, Is.EqualTo(AlpcLogonHangScenario.LogonUiServerThread));
        Assert.That(h1.ServerThreadState!.WaitReason, Is.EqualTo("UserRequest"));
        Assert.That(h1.ServerThreadState.WaitObjects.Single().Type, Is.EqualTo("NotificationEvent"));
        Assert.That(h1.Inference, Does.StartWith("inference:"));
        Assert.That(h1.Waiter.WaitTime, Is.EqualTo("0:00:29"));
        Assert.That(h1.Waiter.Ticks, Is.EqualTo(1882));
        Assert.That(c.Hops[2].Message!.MessageId, Is.EqualTo(0x3C4));
        Assert.That(c.Hops[2].Waiter.Ticks, Is.EqualTo(1006475));
        Assert.That(c.Hops[2].Waiter.WaitTime, Is.EqualTo("4:21:41"));

        var b = c.Blocker!;
        Assert.That(b.Address, Is.EqualTo(AlpcLogonHangScenario.BlockerThread));
        Assert.That(b.Cid, Is.EqualTo("574.1ea0"));
        Assert.That(b.WaitMode, Is.EqualTo("KernelMode"));
        Assert.That(b.Ticks, Is.EqualTo(1006437));
        Assert.That(b.WaitObjects.Single().Address, Is.EqualTo(AlpcLogonHangScenario.BlockerEvent));
        Assert.That(b.WaitObjects.Single().Type, Is.EqualTo("SynchronizationEvent"));
        var irp = b.Irps.Single();
        Assert.That(irp.Address, Is.EqualTo(AlpcLogonHangScenario.Irp));
        Assert.That((irp.CurrentLocation, irp.StackCount), Is.EqualTo((3, 4)));
        Assert.That(irp.Device, Is.EqualTo(AlpcLogonHangScenario.MupDevice));
        Assert.That(irp.Driver, Is.EqualTo(@"\FileSystem\Mup"));
        Assert.That(irp.FileObject, Is.EqualTo(AlpcLogonHangScenario.FileObject));
        Assert.That(irp.FileName, Is.EqualTo(@"\DC005.contoso.com\PIPE\lsarpc"));
        Assert.That(r.TickIncrement, Is.EqualTo(AlpcLogonHangScenario.TickIncrement));

        // Speed: per hop within 6 round trips and 8 KB (inference explores the sibling chains, counted in the hop).
        TestContext.Out.WriteLine($"{key}: {stats} over {c.Hops.Count} hops; per hop: " +
            string.Join(", ", c.Hops.Select(h => $"{h.RoundTrips} RT/{h.Bytes} B")));
        Assert.That(c.Hops[^1].RoundTrips, Is.LessThanOrEqualTo(6), "the direct last hop");
        Assert.That(c.Hops[^1].Bytes, Is.LessThanOrEqualTo(8192));
        Assert.That(r.Reads!.SetupRoundTrips, Is.LessThanOrEqualTo(2));
    }

    [TestCaseSource(nameof(Builds))]
    public void Direct_hops_cost_at_most_6_round_trips_and_8_KB(string key)
    {
        var s = Scenario(key);
        // The lsm waiter's chain is one direct hop to the blocker: thread + process + message + port (+ server thread).
        var (r, _) = Analyze(s.CreateTarget(), a => a.AnalyzeThread(AlpcLogonHangScenario.LsmWaiter));
        var h = r.Chains[0].Hops.Single();
        TestContext.Out.WriteLine($"{key}: hop {h.RoundTrips} round trips, {h.Bytes} bytes");
        Assert.That(h.RoundTrips, Is.LessThanOrEqualTo(6));
        Assert.That(h.Bytes, Is.LessThanOrEqualTo(8192));
        // The cycle: two direct hops.
        var (cr, _) = Analyze(s.CreateTarget(), a => a.AnalyzeThread(s.Fact("cycleA")));
        foreach (var hop in cr.Chains[0].Hops)
        {
            Assert.That(hop.RoundTrips, Is.LessThanOrEqualTo(6));
            Assert.That(hop.Bytes, Is.LessThanOrEqualTo(8192));
        }
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Text_output_has_summary_first_and_the_blocker(string key)
    {
        var s = Scenario(key);
        var text = Run(s.CreateTarget(), "fffffa80`73d3d770 -text");
        TestContext.Out.WriteLine(text);
        Assert.That(text.Split('\n')[0], Is.EqualTo(Expected(key)));
        Assert.That(text, Does.Contain("waits for reply to ALPC message fffff880`1ffd9cf0 id 0x464 LPC_REQUEST seq 0xb data 0x64"));
        Assert.That(text, Does.Contain("queued at port fffffa80`4e9d9370 owned by LogonUI.exe (1ac)"));
        Assert.That(text, Does.Contain("BLOCKER THREAD fffffa80`51435940 svchost.exe 574.1ea0  Executive (KernelMode) 4:21:40 (1006437 ticks)"));
        Assert.That(text, Does.Contain(@"fffffa80`514558b0 stack 3/4 (0,0) device fffffa80`31d1a840 \FileSystem\Mup file fffffa80`5145aec0 \DC005.contoso.com\PIPE\lsarpc"));
        Assert.That(text, Does.Contain("inference: server thread LogonUI.exe 1ac.9fc waits UserRequest (UserMode) on NotificationEvent, not on ALPC; followed LogonUI.exe 1ac.438"));
        Assert.That(text, Does.Contain("reads: "));
    }

    [Test]
    public void Dml_links_follow_ups_and_escapes_target_strings()
    {
        var s = Scenario("win10");
        // A hostile process name in the target.
        var b = s.Builder;
        b.At("_EPROCESS", AlpcLogonHangScenario.LogonUiProcess).Ascii("ImageFileName", "<exec cmd=\"x\">");
        var dml = Run(s.CreateTarget(), "0xfffffa8073d3d770 -dml");
        b.At("_EPROCESS", AlpcLogonHangScenario.LogonUiProcess).Ascii("ImageFileName", "LogonUI.exe");
        Assert.That(dml, Does.Not.Contain("<exec cmd=\"x\">"));
        Assert.That(dml, Does.Contain("&lt;exec cmd=&quot;x&quot;&gt;"));
        Assert.That(dml, Does.Contain("<exec cmd=\"!thread 0xfffffa8073d3d770\">fffffa80`73d3d770</exec>"));
        Assert.That(dml, Does.Contain("<exec cmd=\"!alpc /m 0xfffff8801ffd9cf0\">"));
        Assert.That(dml, Does.Contain("<exec cmd=\"!alpc /p 0xfffffa804e9d9370\">"));
        Assert.That(dml, Does.Contain("<exec cmd=\"!irp 0xfffffa80514558b0\">"));
        Assert.That(dml, Does.Contain("<exec cmd=\"!process 0xfffffa804ea4fc10 1\">"));
        Assert.That(dml, Does.Contain("<exec cmd=\"dt nt!_FILE_OBJECT 0xfffffa805145aec0\">"));
    }

    [Test]
    public void Json_is_valid_and_has_the_same_facts()
    {
        var s = Scenario("win10");
        var json = Run(s.CreateTarget(), "fffffa8073d3d770 -json");
        using var doc = JsonDocument.Parse(json);
        var chain = doc.RootElement.GetProperty("chains")[0];
        Assert.That(chain.GetProperty("summary").GetString(), Is.EqualTo(Expected("win10")));
        Assert.That(chain.GetProperty("end").GetString(), Is.EqualTo("blocker"));
        Assert.That(chain.GetProperty("hops").GetArrayLength(), Is.EqualTo(3));
        Assert.That(chain.GetProperty("hops")[0].GetProperty("message").GetProperty("messageId").GetInt32(), Is.EqualTo(0x464));
        var blocker = chain.GetProperty("blocker");
        Assert.That(blocker.GetProperty("address").GetString(), Is.EqualTo("0xfffffa8051435940"));
        Assert.That(blocker.GetProperty("waitTime").GetString(), Is.EqualTo("4:21:40"));
        Assert.That(blocker.GetProperty("irps")[0].GetProperty("fileName").GetString(), Is.EqualTo(@"\DC005.contoso.com\PIPE\lsarpc"));
        Assert.That(doc.RootElement.GetProperty("reads").GetProperty("roundTrips").GetInt64(), Is.GreaterThan(0));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Cycle_is_reported_as_deadlock_with_members(string key)
    {
        var s = Scenario(key);
        var (r, _) = Analyze(s.CreateTarget(), a => a.AnalyzeThread(s.Fact("cycleA")));
        var c = r.Chains.Single();
        Assert.That(c.End, Is.EqualTo(ChainEnd.Deadlock));
        Assert.That(c.CycleMembers.Select(m => m.Address), Is.EquivalentTo(new[] { s.Fact("cycleA"), s.Fact("cycleB") }));
        Assert.That(c.Summary, Does.Contain("DEADLOCK: spoolsv.exe (6a0.6a4) -> svchost.exe (700.704)"));
    }

    [TestCase("win7")]
    [TestCase("win11")]
    public void Missing_server_thread_means_server_not_receiving_with_queue_depth(string key)
    {
        var s = Scenario(key);
        var (r, _) = Analyze(s.CreateTarget(), a => a.AnalyzeThread(s.Fact("noServerWaiter")));
        var c = r.Chains.Single();
        Assert.That(c.End, Is.EqualTo(ChainEnd.ServerNotReceiving));
        Assert.That(c.IdlePort!.OwnerImage, Is.EqualTo("SearchIndexer.e"), "EPROCESS.ImageFileName holds 15 characters");
        Assert.That(c.IdlePort.MainQueueLength, Is.EqualTo(5));
        Assert.That(c.Summary, Does.Contain("SearchIndexer.e (7c0): server not receiving").And.Contain("5 message(s)"));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Paged_out_message_gives_the_chain_so_far_and_what_was_unreadable(string key)
    {
        var s = Scenario(key);
        var t = s.CreateTarget();
        t.MakeUnreadable(AlpcLogonHangScenario.Msg3, 0x100);
        var (r, _) = Analyze(t, a => a.AnalyzeThread(AlpcLogonHangScenario.WinlogonThread));
        var c = r.Chains.Single();
        // The lsm branch cannot be followed; the inference falls back and the chain notes name the message.
        var text = AlpcChainRenderer.Render(r, false).Render(OutputMode.Text);
        Assert.That(text, Does.Contain("fffff880`1fe00cf0").Or.Contain("fffff8801fe00cf0"));
        Assert.That(text, Does.Contain("not readable"));
        Assert.That(c.Hops[0].Waiter.Address, Is.EqualTo(AlpcLogonHangScenario.WinlogonThread));

        // Starting right at the lsm waiter: chain so far (one hop), End Unreadable, precise note.
        var (r2, _) = Analyze(t, a => a.AnalyzeThread(AlpcLogonHangScenario.LsmWaiter));
        Assert.That(r2.Chains[0].End, Is.EqualTo(ChainEnd.Unreadable));
        Assert.That(r2.Chains[0].Notes.Single(), Does.Contain("fffff880`1fe00cf0").And.Contain("not readable"));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Paged_out_server_thread_stops_the_chain_with_a_note(string key)
    {
        var s = Scenario(key);
        var t = s.CreateTarget();
        t.MakeUnreadable(AlpcLogonHangScenario.BlockerThread, 0x10);
        var (r, _) = Analyze(t, a => a.AnalyzeThread(AlpcLogonHangScenario.LsmWaiter));
        Assert.That(r.Chains[0].End, Is.EqualTo(ChainEnd.Unreadable));
        Assert.That(r.Chains[0].Notes.Single(), Does.Contain("server thread fffffa80`51435940"));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Bad_input_gives_one_clear_line(string key)
    {
        var s = Scenario(key);
        var t = s.CreateTarget();
        var notThread = Run(t, $"{AlpcLogonHangScenario.LsmProcess:x}");
        Assert.That(notThread, Does.Contain("is not a thread: its dispatcher header type is 3 (ProcessObject)"));
        Assert.That(Run(t, "0"), Does.Contain("0 is not a thread address"));
        Assert.That(Run(t, "ffffdeadbeef0000"), Does.Contain("is not a readable thread"));
        var idle = Run(t, $"{AlpcLogonHangScenario.LogonUiServerThread:x}");
        Assert.That(idle, Does.Contain("is not waiting for an ALPC reply: it waits UserRequest (UserMode) on NotificationEvent fffffa80`516be920"));
        var blocker = Run(t, $"{AlpcLogonHangScenario.BlockerThread:x}");
        Assert.That(blocker, Does.Contain("Executive (KernelMode)").And.Contain("1 IRP(s) pending").And.Contain(@"\FileSystem\Mup"));
        // Garbage where the thread is: no exception, one line.
        var g = Scenario(key, "garbage");
        var gt = g.CreateTarget();
        gt.Faults.Garbage(AlpcLogonHangScenario.LogonUiWaiter, 0x40);
        var sink = new BufferSink();
        int hr = CommandDispatcher.Run("alpcchain", $"{AlpcLogonHangScenario.LogonUiWaiter:x}", gt, sink);
        Assert.That(hr, Is.EqualTo(CommandDispatcher.S_OK), sink.All);
        Assert.That(sink.Text, Does.Contain("is not a thread"));
    }

    [TestCase("win7")]
    [TestCase("2012r2")]
    [TestCase("2016")]
    [TestCase("win10")]
    [TestCase("win11")]
    public void All_merges_the_seven_winlogon_sessions(string key)
    {
        var s = Scenario(key);
        var (r, stats) = Analyze(s.CreateTarget(), a => a.AnalyzeAll());
        Assert.That(r.Interrupted, Is.False);
        var main = r.Chains.Single(c => c.Blocker?.Address == AlpcLogonHangScenario.BlockerThread);
        Assert.That(main.Waiters, Is.EqualTo(7), string.Join(",", main.WaiterThreads.Select(x => x.ToString("x"))));
        Assert.That(main.WaiterThreads, Does.Contain(AlpcLogonHangScenario.WinlogonThread));
        Assert.That(r.Chains.Any(c => c.End == ChainEnd.Deadlock), Is.True);
        Assert.That(r.Chains.Any(c => c.End == ChainEnd.ServerNotReceiving), Is.True);
        Assert.That(r.Chains.Count(c => c.End == ChainEnd.Deadlock), Is.EqualTo(1), "a cycle is printed once");
        var text = AlpcChainRenderer.Render(r, false).Render(OutputMode.Text);
        Assert.That(text, Does.Contain("7 waiting threads share this chain"));
        TestContext.Out.WriteLine($"{key} -all: {stats}, {r.ThreadsExamined} threads");
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void All_on_10000_threads_within_2_round_trips_per_4_KB(string key)
    {
        var s = Scenario(key, "10k");
        var t = s.CreateTarget();
        var (r, stats) = Analyze(t, a => a.AnalyzeAll());
        Assert.That(r.ThreadsExamined, Is.GreaterThan(10_000));
        var main = r.Chains.Single(c => c.Blocker?.Address == AlpcLogonHangScenario.BlockerThread);
        Assert.That(main.Waiters, Is.EqualTo(7));
        double perFourKb = stats.RoundTrips / (stats.Bytes / 4096.0);
        TestContext.Out.WriteLine($"{key} -all 10k: {stats}; {perFourKb:0.00} round trips per 4 KB");
        Assert.That(perFourKb, Is.LessThanOrEqualTo(2.0));
    }

    [Test]
    public void Ctrl_break_stops_all_promptly()
    {
        var s = Scenario("win10", "10k");
        var t = s.CreateTarget();
        t.InterruptAfterReads = 200;
        var (r, stats) = Analyze(t, a => a.AnalyzeAll());
        Assert.That(r.Interrupted, Is.True);
        Assert.That(stats.RoundTrips, Is.LessThan(260));
    }

    [TestCase("win7")]
    [TestCase("win10")]
    public void Process_mode_lists_the_process_waiters(string key)
    {
        var s = Scenario(key);
        var (r, _) = Analyze(s.CreateTarget(), a => a.AnalyzeProcess(AlpcLogonHangScenario.LsmProcess));
        Assert.That(r.Chains.Select(c => c.End), Is.All.EqualTo(ChainEnd.Blocker));
        Assert.That(r.Chains.Any(c => c.Blocker!.Address == AlpcLogonHangScenario.BlockerThread), Is.True);
        var json = Run(s.CreateTarget(), $"-p {AlpcLogonHangScenario.LsmProcess:x} -json");
        Assert.DoesNotThrow(() => JsonDocument.Parse(json));
    }

    [Test]
    public void Corrupted_thread_list_is_bounded()
    {
        var s = Scenario("win10", "cycle-list");
        var t = s.CreateTarget();
        var lsm = s.Builder.At("_EPROCESS", AlpcLogonHangScenario.LsmProcess);
        ulong first = s.Builder.ReadPointer(lsm.AddressOf("ThreadListHead"));
        t.Faults.ListSelfLoop(first);
        var (r, _) = Analyze(t, a => a.AnalyzeProcess(AlpcLogonHangScenario.LsmProcess));
        Assert.That(r.Notes.Any(n => n.Contains("cycle detected")), Is.True, string.Join("\n", r.Notes));
    }

    [Test]
    public void Wait_reason_and_object_names_match_the_symbol_tables()
    {
        foreach (var key in LabBuilds.Keys)
        {
            var b = LabBuilds.TryGet(key);
            if (b is null) continue;
            var e = b.Isf.Enums["_KWAIT_REASON"].Constants;
            foreach (var (name, v) in e)
                if (!name.StartsWith("Maximum") && !name.StartsWith("WrSpare")) Assert.That(KernelEnums.WaitReason((int)v), Is.EqualTo(name), key);
            Assert.That(b.Isf.Enums["_KOBJECTS"].Constants["ThreadObject"], Is.EqualTo(KernelEnums.ThreadObject));
        }
    }

    [Test]
    public void Usage_errors()
    {
        var s = Scenario("win10");
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("alpcchain", "", s.CreateTarget(), sink), Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(sink.Errors, Does.Contain("give a thread address"));
        sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("alpcchain", "-all 1234", s.CreateTarget(), sink), Is.EqualTo(CommandDispatcher.E_INVALIDARG));
    }
}

[TestFixture]
public class AlpcChainBenchTests
{
    [TestCase("win7")]
    [TestCase("win10")]
    public void Command_beats_the_manual_procedure(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        foreach (var row in AlpcChainBench.Run(build))
        {
            TestContext.Out.WriteLine(row.ToString());
            Assert.That(row.ManualCommands, Is.GreaterThan(10));
            Assert.That(row.RoundTrips, Is.LessThan(row.ManualRoundTrips), row.ToString());
            Assert.That(row.Ratio, Is.GreaterThan(1.0), row.ToString());
        }
    }
}
