using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The data-model provider in Microsoft's real engine (issue 21 item 2): <c>dx @$ntsleuth.&lt;Command&gt;(...)</c> on
/// the samples returns the seed facts, typed addresses can be followed, LINQ and <c>dx -g</c> work, dx agrees with
/// the command's -json document, <c>&lt;thread&gt;.NtSleuth.AlpcChain</c> works, and <c>.unload</c>/<c>.load</c>
/// cycles remove and restore <c>@$ntsleuth</c> without leaking.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class DataModelEngineTests
{
    /// <summary>A small gen-0 budget for the memory test: the runtime's default under wine here is ~60 MB, so without
    /// it the engine's private bytes measure garbage not yet collected (a plain dx call flattens after the first GC
    /// at ~390 calls), not what stays alive.</summary>
    private static readonly Dictionary<string, string> SmallGen0 = new() { ["DOTNET_GCgen0size"] = "0x400000" };

    private static EngineRun Run(string sample, IEnumerable<string> commands, bool memory = false)
    {
        var s = LabSamples.Named(sample);
        string dump = s.Dump, sym = s.SymbolPath;
        var cmds = new List<string> { ".load " + ExtensionPackage.DllWinPath() };
        cmds.AddRange(commands);
        var run = RealEngine.Run(dump, cmds, new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300, ReportMemory = memory, Environment = memory ? SmallGen0 : new Dictionary<string, string>() });
        Assert.That(run.Commands, Has.Count.EqualTo(cmds.Count), $"the engine process did not survive:\n{run.Errors}\n{run.Transcript[^Math.Min(4000, run.Transcript.Length)..]}");
        foreach (var c in run.Commands)
            Assert.That(c.Output, Does.Not.Contain("Exception").And.Not.Contain("   at "), $"{c.Command} leaked an exception");
        return run;
    }

    /// <summary>The value dx prints for an expression: the text after " : " on its first line, "[Type: ...]" kept.</summary>
    internal static string Value(EngineCommandResult r)
    {
        var line = r.Output.Replace("\r", "").Split('\n').Select(l => l.TrimEnd()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith("Unable to load image") && !l.StartsWith("*** WARNING"))
                   ?? throw new AssertionException($"{r.Command} printed nothing");
        Assert.That(line, Does.Not.StartWith("Error:"), $"{r.Command}: {r.Output}");
        int i = line.IndexOf(" : ", StringComparison.Ordinal);
        Assert.That(i, Is.GreaterThan(0), $"{r.Command}: no value in '{line}'");
        return line[(i + 3)..].Trim();
    }

    private static JsonObject Json(EngineCommandResult r)
    {
        var t = r.Output;
        return JsonNode.Parse(t[t.IndexOf('{')..(t.LastIndexOf('}') + 1)])!.AsObject();
    }

    private static ulong Number(string dxValue)
    {
        var m = Regex.Match(dxValue, @"^(0x[0-9a-fA-F`]+|\d+)");
        Assert.That(m.Success, $"not a number: {dxValue}");
        var s = m.Value.Replace("`", "");
        return s.StartsWith("0x") ? ulong.Parse(s[2..], NumberStyles.HexNumber) : ulong.Parse(s, CultureInfo.InvariantCulture);
    }

    [Test]
    public void AlpcChainBlockerIsATypedThreadAndAgreesWithJson()
    {
        const string chain = "@$ntsleuth.AlpcChain(0xfffffa8073d3d770).Chains[0]";
        var run = Run("logon-hang-alpc-19041",
        [
            "!alpcchain fffffa8073d3d770 -json",
            $"dx {chain}.Blocker.Image",
            $"dx {chain}.Blocker.Tid",
            $"dx {chain}.Blocker.Address",
            $"dx {chain}.Blocker.Address->Cid.UniqueThread",
            $"dx {chain}.Hops.Count()",
            $"dx {chain}.Hops.Select(h => h.Waiter.Image).Last()",
            "dx @$cursession.Processes[900].Threads.First().NtSleuth.AlpcChain.Chains[0].Blocker.Image",
            "dx @$ntsleuth.AlpcChain(0x10).Problem",
            ".unload ntsleuth",
            "dx @$cursession.Processes[900].Threads.First().NtSleuth",
            ".load " + ExtensionPackage.DllWinPath(),
            "dx @$cursession.Processes[900].Threads.First().NtSleuth.AlpcChain.Chains[0].Blocker.Image",
        ]);
        var doc = Json(run[1]);
        var blocker = doc["chains"]![0]!["blocker"]!;
        Assert.That(Value(run[2]), Is.EqualTo("svchost.exe"));
        Assert.That(Value(run[2]), Is.EqualTo(blocker["image"]!.GetValue<string>()));
        Assert.That(Number(Value(run[3])), Is.EqualTo(blocker["tid"]!.GetValue<ulong>()));
        Assert.That(Value(run[4]), Does.Contain("[Type: _ETHREAD *]"), "the blocker's address is a typed pointer the debugger can follow");
        Assert.That(Number(Value(run[4])), Is.EqualTo(Convert.ToUInt64(blocker["address"]!.GetValue<string>(), 16)));
        Assert.That(Number(Value(run[5])), Is.EqualTo(blocker["tid"]!.GetValue<ulong>()), "following the pointer reaches the thread's own Cid");
        var hops = doc["chains"]![0]!["hops"]!.AsArray();
        Assert.That(Number(Value(run[6])), Is.EqualTo((ulong)hops.Count));
        Assert.That(Value(run[7]), Is.EqualTo(hops[^1]!["waiter"]!["image"]!.GetValue<string>()), "LINQ over the hops");
        Assert.That(Value(run[8]), Is.EqualTo("svchost.exe"), "the thread's NtSleuth.AlpcChain (Debugger.Models.Thread)");
        Assert.That(Value(run[9]), Does.Contain("is not a readable thread"), "a bad thread is the command's own answer, not a crash");
        Assert.That(run[11].Output, Does.Contain("Error"), "the thread extension is removed on .unload");
        Assert.That(Value(run[13]), Is.EqualTo("svchost.exe"), "and back after .load");
    }

    [Test]
    public void LeakTagSeedAndLinq()
    {
        var run = Run("pool-leak-19041",
        [
            "!leaktag Leak -json",
            "dx @$ntsleuth.LeakTag(\"Leak\").Matches[0].NonPagedOutstanding",
            "dx @$ntsleuth.LeakTag(\"Leak\").Sites.Where(s => s.Module == \"myfault\").Count()",
            "dx @$ntsleuth.LeakTag(\"Leak\").Sites.Select(s => s.Module).First()",
            "dx @$ntsleuth.LeakTag(\"Leak\").BigPoolMatchCount",
            "dx @$ntsleuth.LeakTag(\"Leak\", \"-out x.txt\")",
        ]);
        var doc = Json(run[1]);
        Assert.That(Number(Value(run[2])), Is.EqualTo(601));
        Assert.That(Number(Value(run[2])), Is.EqualTo(doc["matches"]![0]!["nonPagedOutstanding"]!.GetValue<ulong>()));
        int myfault = doc["sites"]!.AsArray().Count(s => s!["module"]!.GetValue<string>() == "myfault");
        Assert.That(myfault, Is.GreaterThan(0));
        Assert.That(Number(Value(run[3])), Is.EqualTo((ulong)myfault), "LINQ Where over the code sites");
        Assert.That(Value(run[4]), Is.EqualTo("myfault"));
        Assert.That(Number(Value(run[5])), Is.EqualTo(doc["bigPoolMatchCount"]!.GetValue<ulong>()));
        Assert.That(run[6].Output, Does.Contain("has no meaning in dx"));
    }

    [Test]
    public void NblOwnersGridAndTypedMiniport()
    {
        var run = Run("ndis-pending-nbls-19041",
        [
            "!nblowners -json",
            "dx -g @$ntsleuth.NblOwners().Owners",
            "dx @$ntsleuth.NblOwners().Miniports[0].Handle",
            "dx @$ntsleuth.NblOwners().Miniports[0].Name",
            "dx @$ntsleuth.NblOwners().Owners.Where(o => o.Kind == \"miniport\").Count()",
        ]);
        var doc = Json(run[1]);
        var mp = doc["miniports"]![0]!;
        Assert.That(run[2].Output, Does.Contain("My Ethernet 1Gb 4-port Adapter").And.Contain("miniport").And.Contain("Handle"), "dx -g grid of the owners");
        Assert.That(Value(run[3]), Does.Contain("[Type: _NDIS_MINIPORT_BLOCK *]"));
        Assert.That(Number(Value(run[3])), Is.EqualTo(Convert.ToUInt64(mp["handle"]!.GetValue<string>(), 16)));
        Assert.That(Value(run[4]), Is.EqualTo(mp["name"]!.GetValue<string>()));
        Assert.That(Number(Value(run[5])), Is.EqualTo((ulong)doc["owners"]!.AsArray().Count(o => o!["kind"]!.GetValue<string>() == "miniport")));
    }

    [Test]
    public void DpcBlameAndFrameOrderAgreeWithJson()
    {
        var dpc = Run("dpc-watchdog-19041", ["!dpcblame -json", "dx @$ntsleuth.DpcBlame().Culprit.Symbol", "dx @$ntsleuth.DpcBlame().Culprit.InStallRoutine"]);
        var d = Json(dpc[1]);
        Assert.That(Value(dpc[2]), Is.EqualTo(d["culprit"]!["symbol"]!.GetValue<string>()).And.StartWith("ECHO!"));
        Assert.That(Value(dpc[3]), Is.EqualTo("true"));
        var fo = Run("fltmgr-frame-order-19041", ["!frameorder -json", "dx @$ntsleuth.FrameOrder().Clean", "dx @$ntsleuth.FrameOrder().Disorders.Count()", "dx @$ntsleuth.FrameOrder().Disorders[0].Lower"]);
        var f = Json(fo[1]);
        Assert.That(Value(fo[2]), Is.EqualTo("false"));
        Assert.That(Number(Value(fo[3])), Is.EqualTo((ulong)f["disorders"]!.AsArray().Count));
        Assert.That(Value(fo[4]), Is.EqualTo("AVMiniFilter"));
    }

    /// <summary>WorkQueues() on the seed-003 work queues: the 18,023 pending items and the starved queue's name agree with
    /// -json, and a worker thread is a typed _ETHREAD.</summary>
    [Test]
    public void WorkQueuesAgreeWithJson()
    {
        var wq = Run("logon-hang-alpc-19041", ["!workqueue -json", "dx @$ntsleuth.WorkQueues().TotalPending",
            "dx @$ntsleuth.WorkQueues().Queues.Where(q => q.Pending > 1000).Count()",
            "dx @$ntsleuth.WorkQueues().Queues.Where(q => q.Pending > 1000).First().Name",
            "dx @$ntsleuth.WorkQueues().Queues.Where(q => q.Pending > 1000).First().Workers.Groups[0].Threads[0].Address"]);
        var j = Json(wq[1]);
        Assert.That(Number(Value(wq[2])), Is.EqualTo(j["totalPending"]!.GetValue<ulong>()).And.GreaterThanOrEqualTo(18_023UL));
        var starved = j["queues"]!.AsArray().Where(q => q!["pending"]!.GetValue<long>() > 1000).ToList();
        Assert.That(Number(Value(wq[3])), Is.EqualTo((ulong)starved.Count).And.GreaterThan(0UL));
        Assert.That(Value(wq[4]), Is.EqualTo(starved[0]!["name"]!.GetValue<string>()));
        Assert.That(Value(wq[5]), Does.Contain("[Type: _ETHREAD *]"));
    }

    /// <summary>Unload removes @$ntsleuth, load restores it; 16 cycles leave memory flat after warm-up (pool-leak: its commands'
    /// own memory is flat in the session tier, unlike alpc/ndis/dpc/fltmgr, issue 20).</summary>
    [Test]
    public void UnloadLoadCyclesRemoveAndRestoreIt()
    {
        const int Cycles = 16, Warm = 8;
        var cmds = new List<string>();
        for (int i = 0; i < Cycles; i++)
        {
            cmds.Add("dx @$ntsleuth.LeakTag(\"Leak\").Matches[0].NonPagedOutstanding");
            cmds.Add("dx -v @$ntsleuth");
            cmds.Add(".unload ntsleuth");
            cmds.Add("dx @$ntsleuth");
            cmds.Add(".load " + ExtensionPackage.DllWinPath());
        }
        var run = Run("pool-leak-19041", cmds, memory: true);
        var mem = RealEngine.PrivateBytes(run.Transcript);
        for (int i = 0; i < Cycles; i++)
        {
            int b = 1 + i * 5;
            Assert.That(Number(Value(run[b])), Is.EqualTo(601), $"cycle {i}");
            foreach (var m in new[] { "AlpcChain", "LeakTag", "NblOwners", "DpcBlame", "FrameOrder", "DhcpTimer" })
                Assert.That(run[b + 1].Output, Does.Contain(m), $"cycle {i}: dx -v @$ntsleuth lists no {m}");
            Assert.That(run[b + 3].Output, Does.Contain("Error"), $"cycle {i}: @$ntsleuth still there after .unload");
        }
        Assert.That(mem, Has.Count.EqualTo(run.Commands.Count));
        // The engine process warms up over the first cycles with or without the data model (measured: 25 cycles of
        // !leaktag Leak + .unload/.load grow 47 -> 65 MB by cycle 8, then stay flat; dx the same, ~4 MB higher).
        long warm = mem[Warm * 5], last = mem[^1];
        TestContext.Out.WriteLine($"private bytes after cycle {Warm}: {warm:N0}, after cycle {Cycles}: {last:N0}; {run.Wall.TotalSeconds:F1} s");
        Assert.That(last, Is.LessThan(warm * 1.10), "memory grew over the unload/load cycles");
    }
}
