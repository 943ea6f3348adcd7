using NtSleuth.Lab.Target;
using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.NblOwners;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

public class NblOwnersTests
{
    private static string Layouts()
    {
        var p = SharedData.LayoutsFile;
        if (p is null) Assert.Ignore("../shared/realdata/layouts/ndis-fltmgr-layouts.json is absent: ndis scenarios need the layout table");
        return p!;
    }

    private static (NblOwnersReport rep, ReadStats stats) Analyze(NdisScenario sc, ulong? owner = null, ulong? pool = null)
    {
        var stats = new ReadStats();
        var reader = new KernelReader(sc.Target, stats);
        return (new NblOwnersAnalyzer(reader, owner, pool).Analyze(), stats);
    }

    private static (int rc, BufferSink sink) Run(ITarget target, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        int rc = CommandDispatcher.Run("nblowners", args, target, sink);
        return (rc, sink);
    }

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V2004)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    [TestCase(NdisFltmgrLayouts.Win11)]
    [TestCase(NdisFltmgrLayouts.Win7)]
    [TestCase(NdisFltmgrLayouts.Win81)]
    public void SeedScenarioCountsAndVerdict(string label)
    {
        var sc = NdisScenario.Seed(Layouts(), label);
        var (rep, stats) = Analyze(sc);
        Assert.That(rep.TrackingOn, Is.True);
        Assert.That(rep.TrackingLevel, Is.EqualTo(1));
        Assert.That(rep.PoolCount, Is.EqualTo(20));
        Assert.That(rep.TotalNbls, Is.EqualTo(3005));
        Assert.That(rep.FreedNbls, Is.EqualTo(550));
        Assert.That(rep.PendingNbls, Is.EqualTo(1854));
        Assert.That(rep.AtHomeNbls, Is.EqualTo(601));
        Assert.That(rep.UnreadableNbls, Is.Zero);
        Assert.That(rep.Owners, Has.Count.EqualTo(1));
        var g = rep.Owners[0];
        Assert.That(g.Handle, Is.EqualTo(NdisScenario.MiniportAddr));
        Assert.That(g.Kind, Is.EqualTo(NdisHandleKind.Miniport));
        Assert.That(g.Name, Is.EqualTo("My Ethernet 1Gb 4-port Adapter"));
        Assert.That(g.Count, Is.EqualTo(1854));
        // The oldest is the first pending NBL met on the pool lists.
        var firstPending = sc.PoolAddresses.SelectMany(p => sc.Nbls[p]).First(n => n.State == LabNblState.PendingMiniport).Nbl;
        Assert.That(g.Oldest, Is.EqualTo(firstPending));
        var ms = rep.Miniports.Single();
        Assert.That(ms.State, Is.EqualTo("RUNNING"));
        Assert.That(ms.PnPState, Is.EqualTo("QUERY_REMOVED"));
        Assert.That(ms.OperStatus, Is.EqualTo("DORMANT"));
        Assert.That(ms.OperStatusFlags, Is.EqualTo("DORMANT_PAUSED"));
        Assert.That(ms.References, Is.EqualTo(9));
        Assert.That(ms.DriverName, Is.EqualTo("MyMiniPortDriver"));
        Assert.That(rep.Verdicts, Has.Member(
            "1854 of 3005 NBLs are held by miniport fffffa80142d31a0 'My Ethernet 1Gb 4-port Adapter', which is DORMANT_PAUSED after QUERY_REMOVED: the miniport has not completed its NBLs"));
        // Pools identified by owner kind.
        Assert.That(rep.Pools.Count(p => p.OwnerKind == NdisHandleKind.Miniport), Is.EqualTo(5));
        Assert.That(rep.Pools.Count(p => p.OwnerKind == NdisHandleKind.Protocol), Is.EqualTo(10));
        Assert.That(rep.Pools.Count(p => p.OwnerKind == NdisHandleKind.FilterModule), Is.EqualTo(5));
        Assert.That(rep.Pools.Sum(p => p.Nbls), Is.EqualTo(3005));

        // Speed: <= 1 round trip per 4 KB of NBL memory + 1 per pool, and >= 10x fewer than one read per NBL.
        long nblBytes = 3005L * sc.EntryStride;
        long budget = (nblBytes + 4095) / 4096 + 20 + 30;
        TestContext.Out.WriteLine($"{label} seed: {stats} (NBL memory {nblBytes:N0} bytes, budget {budget})");
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(budget));
        Assert.That(stats.RoundTrips * 10, Is.LessThanOrEqualTo(3005));
    }

    [Test]
    public void OffsetsComeFromTheTriageBlockNotFromTheBuild()
    {
        // Same build, a different entry header and linkage: only the triage block says so.
        var sc = NdisScenario.Build(Layouts(), new NdisScenarioSpec { EntryHeaderSize = 0x40, EntryLinkageOffset = 0x28, ContextBytes = 0x60 });
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Offsets.EntryHeaderSize, Is.EqualTo(0x40));
        Assert.That(rep.Offsets.EntryLinkageOffset, Is.EqualTo(0x28));
        Assert.That(rep.Offsets.NblCurrentOwnerOffset, Is.EqualTo(sc.CurrentOwnerOffset));
        Assert.That(rep.PendingNbls, Is.EqualTo(1854));
        Assert.That(rep.Owners[0].Samples.Select(s => s.Nbl), Is.SubsetOf(sc.Nbls.Values.SelectMany(l => l).Select(n => n.Nbl)));
    }

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    public void TrackingOffPrintsGuidanceAndStillReportsPools(string label)
    {
        var sc = NdisScenario.SeedTrackingOff(Layouts(), label);
        var (rep, _) = Analyze(sc);
        Assert.That(rep.TrackingOn, Is.False);
        Assert.That(rep.TrackingLevel, Is.EqualTo(0));
        Assert.That(rep.PoolCount, Is.EqualTo(20));
        Assert.That(rep.TotalNbls, Is.EqualTo(3005));
        Assert.That(rep.PendingNbls, Is.Zero);
        Assert.That(rep.Owners, Is.Empty);
        Assert.That(rep.Miniports.Select(m => m.Handle), Is.EquivalentTo(new[] { NdisScenario.MiniportAddr }));
        var (rc, sink) = Run(sc.Target, "-text");
        Assert.That(rc, Is.Zero);
        Assert.That(sink.Text, Does.Contain(@"HKLM\SYSTEM\CurrentControlSet\Services\NDIS\Parameters  TrackNblOwner = 1"));
        Assert.That(sink.Text, Does.Contain("reboot"));
        Assert.That(sink.Text, Does.Contain("NBL tracking: OFF"));
        Assert.That(sink.Text, Does.Contain("NBL pools: 20"));
        Assert.That(sink.Text, Does.Contain("3005 total"));
        Assert.That(sink.Text, Does.Contain("My Ethernet 1Gb 4-port Adapter"));
        Assert.That(sink.Text, Does.Not.Contain("Verdict"));
    }

    [Test]
    public void RendersTextDmlAndJson()
    {
        var sc = NdisScenario.Seed(Layouts());
        var (rc, text) = Run(sc.Target, "-text");
        Assert.That(rc, Is.Zero, text.All);
        Assert.That(text.Text, Does.Contain("NBL pools: 20   NBLs: 3005 total, 550 freed, 1854 pending, 601 at home"));
        Assert.That(text.Text, Does.Contain("fffffa80`142d31a0 [Miniport] My Ethernet 1Gb 4-port Adapter  holds 1854 NBL(s)"));
        Assert.That(text.Text, Does.Contain("Verdict: 1854 of 3005 NBLs are held by miniport fffffa80142d31a0"));
        Assert.That(text.Text, Does.Contain("PnP QUERY_REMOVED (was STARTED)"));

        var (_, dml) = Run(sc.Target, "-dml");
        Assert.That(dml.Text, Does.Contain("<exec cmd=\"!ndiskd.miniport fffffa80142d31a0\">fffffa80`142d31a0</exec>"));
        Assert.That(dml.Text, Does.Contain("<exec cmd=\"!ndiskd.nblpool "));
        Assert.That(dml.Text, Does.Contain("<exec cmd=\"!ndiskd.nbl "));
        Assert.That(dml.Text, Does.Contain("<exec cmd=\"dt ndis!_NET_BUFFER_LIST "));

        var (_, json) = Run(sc.Target, "-json");
        using var doc = JsonDocument.Parse(json.Text);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("pendingNbls").GetInt32(), Is.EqualTo(1854));
        Assert.That(root.GetProperty("owners")[0].GetProperty("handle").GetString(), Is.EqualTo("0xfffffa80142d31a0"));
        Assert.That(root.GetProperty("owners")[0].GetProperty("kind").GetString(), Is.EqualTo("miniport"));
        Assert.That(root.GetProperty("trackingOn").GetBoolean(), Is.True);
    }

    [Test]
    public void DmlEscapesAdapterNames()
    {
        var sc = NdisScenario.Build(Layouts(), new NdisScenarioSpec { AdapterName = "Evil <exec cmd=\".reboot\">x</exec> & \"NIC\"" });
        var (rc, dml) = Run(sc.Target, "-dml");
        Assert.That(rc, Is.Zero);
        Assert.That(dml.Text, Does.Not.Contain("<exec cmd=\".reboot\">"));
        Assert.That(dml.Text, Does.Contain("Evil &lt;exec cmd=&quot;.reboot&quot;&gt;x&lt;/exec&gt; &amp; &quot;NIC&quot;"));
        var (_, json) = Run(sc.Target, "-json");
        using var doc = JsonDocument.Parse(json.Text);
        Assert.That(doc.RootElement.GetProperty("owners")[0].GetProperty("name").GetString(), Does.StartWith("Evil <exec"));
    }

    [Test]
    public void OwnerAndPoolFilters()
    {
        var sc = NdisScenario.Build(Layouts(), new NdisScenarioSpec { PendingOnMiniport = 1000, PendingOnFilter = 500, PendingOnOpen = 354 });
        var (rep, _) = Analyze(sc, owner: NdisScenario.FilterAddr);
        Assert.That(rep.Owners.Select(o => (o.Kind, o.Count)), Is.EquivalentTo(new[]
        {
            (NdisHandleKind.Miniport, 1000), (NdisHandleKind.FilterModule, 500), (NdisHandleKind.ProtocolOpen, 354),
        }));
        // -owner lists every NBL the filter currently holds: its pending ones and the ones at home in its own pools.
        var expected = sc.PoolAddresses.Select((p, i) => (p, i)).SelectMany(x => sc.Nbls[x.p].Where(n =>
            n.State == LabNblState.PendingFilter || (n.State == LabNblState.AtHome && x.i % 4 == 3))).Select(n => n.Nbl).ToList();
        Assert.That(rep.OwnerNbls, Has.Count.EqualTo(expected.Count));
        Assert.That(expected.Count, Is.GreaterThan(500));
        Assert.That(rep.OwnerNbls!.Select(e => e.Nbl), Is.EquivalentTo(expected));
        Assert.That(rep.Verdicts.Count(v => v.Contains("filter module fffffa800f1c8010 'WFP Native MAC Layer LightWeight Filter-0000'")), Is.EqualTo(1));
        Assert.That(rep.Verdicts.Count(v => v.Contains("protocol open fffffa800f2a4c10")), Is.EqualTo(1));

        ulong pool = sc.PoolAddresses[5];
        var (rp, _) = Analyze(sc, pool: pool);
        Assert.That(rp.Pools.Select(p => p.Address), Is.EqualTo(new[] { pool }));
        Assert.That(rp.TotalNbls, Is.EqualTo(sc.Nbls[pool].Count));
        Assert.That(rp.PendingNbls, Is.EqualTo(sc.Nbls[pool].Count(n => n.State is not (LabNblState.Freed or LabNblState.AtHome))));

        var (rc, sink) = Run(sc.Target, $"-owner {NdisScenario.FilterAddr:x} -text");
        Assert.That(rc, Is.Zero);
        Assert.That(sink.Text, Does.Contain($"NBLs currently held by fffffa80`0f1c8010: {expected.Count}"));
    }

    [Test]
    public void ReceiveBuffersNeverReturnedByTheProtocol()
    {
        // Seed 001: the NIC's receive NBLs are indicated up and never returned (the application does not read).
        var sc = NdisScenario.Build(Layouts(), new NdisScenarioSpec
        {
            AdapterName = "Red Hat VirtIO Ethernet Adapter", PendingOnMiniport = 0, PendingOnOpen = 1200, Freed = 300, AtHome = 500,
            MiniportState = 4, PnPState = 1, OperStatus = 1, OperStatusFlags = 0,
        });
        var (rep, _) = Analyze(sc);
        Assert.That(rep.PendingNbls, Is.EqualTo(1200));
        var g = rep.Owners.Single();
        Assert.That(g.Kind, Is.EqualTo(NdisHandleKind.ProtocolOpen));
        Assert.That(g.Handle, Is.EqualTo(NdisScenario.OpenAddr));
        Assert.That(g.Name, Does.EndWith("(bound to miniport 'Red Hat VirtIO Ethernet Adapter')"));
        Assert.That(rep.Verdicts.Single(), Does.StartWith("1200 of 2000 NBLs are held by protocol open fffffa800f2a4c10"));
        Assert.That(rep.Verdicts.Single(), Does.EndWith("the protocol has not returned its NBLs"));
        Assert.That(rep.Miniports, Is.Empty);
    }

    [Test]
    public void MiniportConditionWording()
    {
        Assert.That(NblOwnersAnalyzer.MiniportCondition(new MiniportState { State = "PAUSED", PnPState = "STARTED", OperStatus = "DORMANT", OperStatusFlags = "NONE" }), Is.EqualTo("PAUSED"));
        Assert.That(NblOwnersAnalyzer.MiniportCondition(new MiniportState { State = "RUNNING", PnPState = "STARTED", OperStatus = "UP", OperStatusFlags = "NONE" }), Is.EqualTo("RUNNING"));
        Assert.That(NblOwnersAnalyzer.MiniportCondition(new MiniportState { State = "PAUSING", PnPState = "SURPRISE_REMOVED", OperStatus = "DORMANT", OperStatusFlags = "DORMANT_PAUSED" }),
            Is.EqualTo("DORMANT_PAUSED after SURPRISE_REMOVED"));
        Assert.That(NdisNames.OperStatusFlags(0x6), Is.EqualTo("DOWN_NOT_MEDIA_CONNECTED, DORMANT_PAUSED"));
        Assert.That(NdisNames.Tag(0x4c424e54), Is.EqualTo("TNBL"));
    }

    [Test]
    public void HundredThousandNblsStayWithinTheRoundTripBudget()
    {
        var sc = NdisScenario.Build(Layouts(), new NdisScenarioSpec { Pools = 50, Freed = 20_000, PendingOnMiniport = 60_000, AtHome = 20_000 });
        var (rep, stats) = Analyze(sc);
        Assert.That(rep.TotalNbls, Is.EqualTo(100_000));
        Assert.That(rep.PendingNbls, Is.EqualTo(60_000));
        long nblBytes = 100_000L * sc.EntryStride;
        long budget = (nblBytes + 4095) / 4096 + 50 + 30;
        TestContext.Out.WriteLine($"100k: {stats} (NBL memory {nblBytes:N0} bytes, budget {budget}); one read per NBL would be >= 100,000");
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(budget));
        Assert.That(stats.RoundTrips * 10, Is.LessThanOrEqualTo(100_000));
    }

    [Test]
    public void UnreadableNblMemoryIsCountedNotDropped()
    {
        var sc = NdisScenario.Seed(Layouts());
        ulong pool = sc.PoolAddresses[6];
        var nbls = sc.Nbls[pool];
        // Unmap the page holding the 10th entry's current-owner slot but keep its link readable where possible:
        // everything on that page becomes unreadable; the walk stops at the first unreadable link.
        ulong victim = nbls[10].Nbl + (ulong)sc.CurrentOwnerOffset;
        sc.Memory.Unmap(victim, 1);
        var (rep, _) = Analyze(sc);
        Assert.That(rep.UnreadableNbls, Is.GreaterThan(0));
        Assert.That(rep.Notes.Any(n => n.Contains("not readable") && n.Contains("recovered")), Is.True, string.Join("\n", rep.Notes));
        // Walking back from the head recovers the entries beyond the unreadable page; only that page's entries are lost.
        var pi = rep.Pools.Single(p => p.Address == pool);
        Assert.That(pi.Nbls, Is.GreaterThanOrEqualTo(nbls.Count - 0x1000 / sc.EntryStride - 1));
        Assert.That(pi.Nbls, Is.LessThan(nbls.Count));
        Assert.That(pi.Unreadable, Is.InRange(1, 2));
        // Totals still include every other pool completely.
        Assert.That(rep.PoolCount, Is.EqualTo(20));
        Assert.That(rep.Pools.Where(p => p.Address != pool).Sum(p => p.Nbls), Is.EqualTo(3005 - nbls.Count));
        var (_, text) = Run(sc.Target, "-text");
        Assert.That(text.Text, Does.Contain("unreadable"));
    }

    [Test]
    public void UnreadablePoolIsFlaggedAndCorruptListsAreBounded()
    {
        var sc = NdisScenario.Seed(Layouts());
        // A cycle inside pool 2's allocated list: the last entry points back to the 3rd.
        ulong pool = sc.PoolAddresses[2];
        var nbls = sc.Nbls[pool];
        ulong lastLink = nbls[^1].Entry + (ulong)sc.Spec.EntryLinkageOffset;
        sc.Memory.WriteU64(lastLink, nbls[2].Entry + (ulong)sc.Spec.EntryLinkageOffset);
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Notes.Any(n => n.Contains("cycle detected")), Is.True, string.Join("\n", rep.Notes));
        Assert.That(rep.TotalNbls, Is.EqualTo(3005));

        // A pool list whose 5th pool is paged out: the walk stops there with a precise note.
        var sc2 = NdisScenario.Seed(Layouts());
        sc2.Memory.Unmap(sc2.PoolAddresses[4], 0x180);
        var (rep2, _) = Analyze(sc2);
        Assert.That(rep2.Notes.Any(n => n.Contains("NBL pool list") && n.Contains("not readable")), Is.True, string.Join("\n", rep2.Notes));
        // The lab's pools are 0x400 apart: the unmapped page holds pools 4-7. The forward walk stops at pool 4, the walk
        // back from the head recovers pools 19..8 and meets pool 7: both ends of the hole are counted unreadable, 5 and 6 are unreachable.
        Assert.That(rep2.UnreadablePools, Is.EqualTo(2));
        Assert.That(rep2.PoolCount, Is.EqualTo(18));
        Assert.That(rep2.Pools.Where(p => p.Readable).Sum(p => p.Nbls), Is.EqualTo(3005 - Enumerable.Range(4, 4).Sum(i => sc2.Nbls[sc2.PoolAddresses[i]].Count)));
    }

    [Test]
    public void CtrlBreakStopsWithPartialTotals()
    {
        var sc = NdisScenario.Seed(Layouts());
        sc.Target.InterruptAfterReads = 40;
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Interrupted, Is.True);
        Assert.That(rep.TotalNbls, Is.LessThan(3005));
        Assert.That(rep.Notes.Any(n => n.Contains("interrupted by user")), Is.True);
        var (rc, sink) = Run(sc.Target, "-text");
        Assert.That(rc, Is.Zero);
        Assert.That(sink.Text, Does.Contain("Interrupted (Ctrl+Break)"));
    }

    [TestCase("2016", "")]
    [TestCase("win10", "")]
    [TestCase("win11", "tracking-off")]
    public void CatalogScenarioOnLabKernels(string build, string variant)
    {
        Layouts();
        var lb = LabBuilds.TryGet(build);
        if (lb is null) Assert.Ignore($"lab build {build} unavailable: {LabBuilds.UnavailableReason}");
        var r = ScenarioCatalog.Build("ndis-pending-nbls", lb!, new ScenarioOptions { Variant = variant });
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run("nblowners", "-json", r.CreateTarget(), sink);
        Assert.That(rc, Is.Zero, sink.All);
        using var doc = JsonDocument.Parse(sink.Text);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("totalNbls").GetInt32(), Is.EqualTo(3005));
        Assert.That(root.GetProperty("poolCount").GetInt32(), Is.EqualTo(20));
        if (variant == "tracking-off") Assert.That(root.GetProperty("trackingOn").GetBoolean(), Is.False);
        else
        {
            Assert.That(root.GetProperty("pendingNbls").GetInt32(), Is.EqualTo(1854));
            Assert.That(root.GetProperty("verdicts")[0].GetString(), Does.Contain("which is DORMANT_PAUSED after QUERY_REMOVED"));
        }
    }

    [Test]
    public void NdisNotLoadedOrNoSymbolsGivesAClearMessage()
    {
        var empty = new InMemoryTarget(new SparseMemory(), new IsfSymbolProvider(), new TargetInfo(), Array.Empty<ModuleInfo>());
        var (rc, sink) = Run(empty, "");
        Assert.That(sink.Errors, Does.Contain("ndis.sys is not loaded"));

        var loaded = new InMemoryTarget(new SparseMemory(), new IsfSymbolProvider(), new TargetInfo(),
            new[] { new ModuleInfo("ndis", 0xfffff880_00e00000, 0x150000) });
        var (rc2, sink2) = Run(loaded, "");
        Assert.That(rc2, Is.Not.Zero);
        Assert.That(sink2.Errors, Does.Contain("ndis!_NDIS_NET_BUFFER_LIST_POOL"));
        Assert.That(sink2.Errors, Does.Contain(".reload"));
        Assert.That(rc, Is.Zero);
    }

    [Test]
    public void BadArgumentsPrintUsage()
    {
        var sc = NdisScenario.Seed(Layouts());
        var (rc, sink) = Run(sc.Target, "-owner");
        Assert.That(rc, Is.Not.Zero);
        Assert.That(sink.All, Does.Contain("Usage: !nblowners"));
        var (rc2, sink2) = Run(sc.Target, "-owner notanaddress");
        Assert.That(rc2, Is.Not.Zero);
        Assert.That(sink2.Errors, Does.Contain("cannot evaluate"));
    }

    /// <summary>
    /// Regression (corrupted-memory tier, ndis-pending-nbls-19041 pointer.42 / zero.173): with the triage block's pool-list
    /// field damaged the command said "symbols for 'ndis' are missing or wrong. Run .symfix"; the symbols were fine.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void ADamagedTriageBlockPoolListFieldIsMemoryNotSymbols(bool unreadable)
    {
        var sc = NdisScenario.Seed(Layouts(), NdisFltmgrLayouts.V20H2);
        var syms = sc.Target.Symbols;
        Assume.That(syms.GetSymbolAddress("ndis!ndisGlobalNetBufferListPoolList"), Is.Null, "this build publishes the head only through the triage block");
        ulong tri = syms.GetSymbolAddress("ndis!ndisGlobalTriageBlock")!.Value;
        ulong field = tri + syms.GetTypeLayout("ndis", "_NDIS_GLOBAL_TRIAGE_BLOCK")!.GetField("GlobalNetBufferListPoolList").Offset;
        if (unreadable)
        {
            // The whole triage block's page gone: the block itself is not readable.
            sc.Memory.Unmap(tri & ~0xfffUL, 0x1000);
        }
        else sc.Memory.WriteU64(field, 0);
        var (rc, sink) = Run(sc.Target, "");
        Assert.That(rc, Is.Not.EqualTo(0), sink.All);
        Assert.That(sink.Errors, Does.Contain("the NBL pool list cannot be found"));
        Assert.That(sink.Errors, Does.Contain(unreadable ? $"ndis!ndisGlobalTriageBlock at {Fmt.Addr(tri)}, which publishes it, is not readable" : $"GlobalNetBufferListPoolList at {Fmt.Addr(field)} reads 0"));
        Assert.That(sink.Errors, Does.Not.Contain(".symfix"));
    }

    /// <summary>Seed 001 (2008 R2): owner tracking off, netkvm's receive buffers all held above the miniport, tcpip's per-CPU send rundown.</summary>
    [TestCase("win7")]
    [TestCase("2012r2")]
    [TestCase("win10")]
    public void ReceiveBuffersSeedGivesWhatTheBuildKeeps(string key)
    {
        var build = LabBuilds.TryGet(key);
        if (build is null) Assert.Ignore($"lab build {key} unavailable: {LabBuilds.UnavailableReason}");
        var sc = ScenarioCatalog.Get("ndis-receive-buffers");
        if (!sc.Supports(build!)) Assert.Ignore($"no ndis layouts for {key}");
        var r = sc.Build(build!, ScenarioOptions.Default);
        var rep = new NblOwnersAnalyzer(new KernelReader(r.CreateTarget())).Analyze();
        Assert.That(rep.TrackingOn, Is.False);
        Assert.That(rep.TotalNbls, Is.EqualTo(512));
        Assert.That(rep.PoolCount, Is.EqualTo(8));
        var ms = rep.Miniports.Single();
        Assert.That(ms.Handle, Is.EqualTo(NdisScenario.MiniportAddr));
        Assert.That((ms.Name, ms.DriverName, ms.State, ms.PnPState, ms.OperStatus), Is.EqualTo(("Red Hat VirtIO Ethernet Adapter #2", "netkvm", "RUNNING", "STARTED", "UP")));
        var open = rep.Opens.Single();
        Assert.That(open.Handle, Is.EqualTo(NdisScenario.OpenAddr));
        Assert.That(open.Protocol, Is.EqualTo("TCPIP"));
        Assert.That((open.References, open.OutstandingSends), Is.EqualTo(((int?)1, (int?)0)));
        var rp = rep.ReceivePaths.Single();
        Assert.That((rp.FreeListed, rp.NetNofReceiveBuffers, rp.Waiting), Is.EqualTo(((int?)0, (long?)0, (int?)256)));
        Assert.That(rp.AdapterType, Is.EqualTo("netkvm!_tagPARANDIS_ADAPTER"));
        Assert.That(rep.Verdicts, Has.Some.Contains("has no free receive buffers: NetReceiveBuffers is empty (NetNofReceiveBuffers 0) and 256 buffers wait on NetReceiveBuffersWaiting"));
        Assert.That(rep.SendPath, Is.Not.Null);
        Assert.That(rep.SendPath!.PerCpu, Is.EqualTo(new long[] { 0, 1, 0, 2 }));
        Assert.That(rep.SendPath.InFlight, Is.EqualTo(3));
        Assert.That(rep.CannotTell, Has.Some.StartsWith("which driver holds each NBL: NBL owner tracking is off"));
        bool hasTracker = key != "win7";
        Assert.That(rep.CannotTell.Any(c => c.Contains("no NBL tracker or history log")), Is.EqualTo(!hasTracker));
        var (rc, sink) = Run(r.CreateTarget(), "");
        Assert.That(rc, Is.Zero);
        TestContext.Out.WriteLine(sink.Text);
        Assert.That(sink.Text, Does.Contain("NetReceiveBuffers 0 free   NetNofReceiveBuffers 0   NetReceiveBuffersWaiting 256 (held above the miniport)"));
        Assert.That(sink.Text, Does.Contain("sends in flight 3 (per CPU: 0 1 0 2"));
        Assert.That(sink.Text, Does.Contain("What this build / this dump cannot tell:"));
    }

    /// <summary>Damaged receive-path data gives partial results with a precise note, never an exception.</summary>
    [Test]
    public void ReceivePathAndSendPathDegradeWithNotes()
    {
        var build = LabBuilds.TryGet("win7");
        if (build is null) Assert.Ignore($"lab build win7 unavailable: {LabBuilds.UnavailableReason}");
        var r = ScenarioCatalog.Get("ndis-receive-buffers").Build(build!, ScenarioOptions.Default);
        var t = r.CreateTarget();
        var reader = new KernelReader(t);
        ulong ctxField = reader.Types.Get("ndis", "_NDIS_MINIPORT_BLOCK").GetField("MiniportAdapterContext").Offset;
        ulong ctx = reader.TryReadPointer(NdisScenario.MiniportAddr + ctxField)!.Value;
        // The waiting list loops back on itself after one entry; the free list head points nowhere; tcpip's pointer is wild.
        ulong waitingHead = ctx + 1304, first = reader.TryReadPointer(waitingHead)!.Value;
        t.Faults.ListSelfLoop(first);
        t.Faults.ListWildPointer(ctx + 1280);
        ulong rundown = reader.Types.Symbol("tcpip!Provider_Rundown_Protection");
        t.Faults.ListWildPointer(rundown);
        var rep = new NblOwnersAnalyzer(new KernelReader(t)).Analyze();
        var rp = rep.ReceivePaths.Single();
        Assert.That(rp.Waiting, Is.EqualTo(1));
        Assert.That(rp.Note, Does.Contain("NetReceiveBuffersWaiting list"));
        Assert.That(rp.Note, Does.Contain("NetReceiveBuffers list"));
        Assert.That(rp.FreeListed, Is.EqualTo(1), "the walker yields the entry whose link is wild (as for NBL entries), with the note");
        Assert.That(rp.Starved, Is.False, "an unreadable free list is not proof of starvation");
        Assert.That(rep.SendPath!.PerCpu, Is.Empty);
        Assert.That(rep.SendPath.Note, Does.Contain("does not hold a recognisable cache-aware rundown"));
        var (rc, sink) = Run(t, "");
        Assert.That(rc, Is.Zero, sink.Text);
    }
}
