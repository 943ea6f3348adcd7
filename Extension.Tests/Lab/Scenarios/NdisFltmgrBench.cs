using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>!nblowners on the seed NBL scenario (scale 1 = 3,005 NBLs, 10 = 30,050) vs. !ndiskd.pendingnbls-style reading of every pool and NBL.</summary>
public sealed class NblOwnersBenchCase : IBenchCase
{
    public string Command => "nblowners";
    public string Scenario => "ndis-pending-nbls";
    public IReadOnlyList<string> Builds { get; } = new[] { "win10", "2016" };
    public IReadOnlyList<int> Scales { get; } = new[] { 1, 10 };
    public string Arguments(ScenarioResult scenario) => "";

    public ManualProcedure Manual(ScenarioResult s)
    {
        var poolType = s.Builder.Layout("_NDIS_NET_BUFFER_LIST_POOL", "ndis");
        var nblType = s.Builder.Layout("_NET_BUFFER_LIST", "ndis");
        int nbls = (int)s.Fact("totalNbls");
        return new ManualProcedureBuilder()
            .Walk("NBL pool list (dt ndis!_NDIS_NET_BUFFER_LIST_POOL per pool)", 20, poolType.Size)
            .Walk("each pool's allocated list (dt ndis!_NET_BUFFER_LIST per NBL, owner stamp)", nbls, nblType.Size + 0x40)
            .Dt("ndis!_NDIS_MINIPORT_BLOCK (the owner)", s.Builder.Layout("_NDIS_MINIPORT_BLOCK", "ndis").Size)
            .Build();
    }
}

/// <summary>!frameorder on the seed's broken stack (3 volumes) vs. !fltkd.frames / !fltkd.filter / !devstack by hand.</summary>
public sealed class FrameOrderBenchCase : IBenchCase
{
    public string Command => "frameorder";
    public string Scenario => "fltmgr-frame-order";
    public IReadOnlyList<string> Builds { get; } = new[] { "win10", "2016" };
    public IReadOnlyList<int> Scales { get; } = new[] { 1 };
    // No hints: the legacy altitudes come from the dump (registry group + fltmgr's table).
    public string Arguments(ScenarioResult scenario) => "";

    public ManualProcedure Manual(ScenarioResult s)
    {
        var b = s.Builder;
        return new ManualProcedureBuilder()
            .Dt("fltmgr!_FLTP_FRAME (!fltkd.frames)", b.Layout("_FLTP_FRAME", "fltmgr").Size)
            .Dt("fltmgr!_FLT_FILTER (!fltkd.filter)", b.Layout("_FLT_FILTER", "fltmgr").Size, 3)
            .Dt("fltmgr!_FLT_INSTANCE (!fltkd.instance)", b.Layout("_FLT_INSTANCE", "fltmgr").Size, 7)
            .Dt("fltmgr!_FLT_VOLUME (!fltkd.volumes)", b.Layout("_FLT_VOLUME", "fltmgr").Size, 3)
            .Dt("nt!_DEVICE_OBJECT (!devstack, per device)", b.Layout("_DEVICE_OBJECT").Size, 12)
            .Dt("nt!_DEVOBJ_EXTENSION (!devstack)", b.Layout("_DEVOBJ_EXTENSION").Size, 12)
            .Step("du driver/filter/volume/altitude names", 1, 64, 30)
            // The legacy filters' groups: !drvobj (service key name), then !reg on the SYSTEM hive: hivelist, and per
            // service querykey (key node, subkey lists down the path) and the Group value (value list, vk, data).
            .Step("!drvobj <legacy driver> (DriverExtension.ServiceKeyName)", 2, 0x200, 2)
            .Step("!reg hivelist (CmpHiveListHead, _CMHIVE names)", 2, 0x800, 1)
            .Step(@"!reg querykey \REGISTRY\MACHINE\SYSTEM\ControlSet001\Services\<svc> (nk + subkey lists per level)", 8, 0x2000, 2)
            .Step("!reg valuelist / !reg kvcb Group (value list, vk, data cell)", 3, 0x100, 2)
            .Build();
    }
}
