using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 001 "the packets reach the NIC, the server does not receive" (Windows Server 2008 R2): a paravirtual NIC (netkvm)
/// whose receive buffers are all held above the miniport (NetReceiveBuffers empty, NetNofReceiveBuffers 0, 256 buffers on
/// NetReceiveBuffersWaiting, waiting for NDIS to return them), the miniport itself RUNNING and STARTED, NBL owner tracking off
/// (TrackNblOwner 0, the server default), tcpip's open and tcpip!Provider_Rundown_Protection's per-CPU send counts (the
/// 2008 R2 send path of the seed).
/// </summary>
public sealed class NdisReceiveBuffersScenario : IScenario
{
    public string Name => "ndis-receive-buffers";
    public string Seed => "001_ef8e52de4445cda1.txt";
    public bool Supports(LabBuild build) => build.LayoutLabel is { } l && NdisFltmgrLayouts.Has("ndis", l);

    public static NdisScenarioSpec SeedSpec(string label) => new()
    {
        BuildLabel = label, TrackingLevel = 0, Pools = 8, Freed = 200, PendingOnMiniport = 0, AtHome = 312,
        AdapterName = "Red Hat VirtIO Ethernet Adapter #2", DriverName = "netkvm",
        MiniportState = 4, PnPState = 1, OperStatus = 1, OperStatusFlags = 0, References = 6,
        Receive = new NetkvmReceiveSpec(FreeBuffers: 0, WaitingBuffers: 256),
        OpenReferences = 1, OpenOutstandingSends = 0, TcpipRundownPerCpu = [0, 1, 0, 2],
    };

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        var spec = SeedSpec(build.LayoutLabel!);
        var b = new KernelScenarioBuilder(build);
        b.AddLoadedModule("ndis.sys", 0x150000, NdisScenario.NdisBase);
        var doc = NdisFltmgrLayouts.BuildIsf(NdisFltmgrCatalog.LayoutsPath, "ndis", spec.BuildLabel);
        b.AddSymbolModule("ndis", doc, NdisScenario.NdisBase);
        b.AddLoadedModule("netkvm.sys", 0x40000, NdisReceivePath.NetkvmBase);
        b.AddSymbolModule("netkvm", NdisReceivePath.NetkvmIsf(), NdisReceivePath.NetkvmBase);
        b.AddLoadedModule("tcpip.sys", 0x200000, NdisReceivePath.TcpipBase);
        b.AddSymbolModule("tcpip", NdisReceivePath.TcpipIsf(), NdisReceivePath.TcpipBase);
        var sc = NdisScenario.LayInto(NdisFltmgrCatalog.TargetOver(b), doc, spec);
        b.Facts["miniport"] = NdisScenario.MiniportAddr;
        b.Facts["open"] = NdisScenario.OpenAddr;
        b.Facts["totalNbls"] = (ulong)spec.Total;
        b.Facts["waitingReceiveBuffers"] = (ulong)spec.Receive!.WaitingBuffers;
        var r = new ScenarioResult(Name, b, options);
        r.Commands.Add("!nblowners");
        return r;
    }
}
