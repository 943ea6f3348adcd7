using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// !nblowners on the seed NBL scenario (scale 1 = 3,005 NBLs, 10 = 30,050, 100 = 300,500), NBL entries back to back
/// per pool, vs. the manual walk !ndiskd.pendingnbls-style: each pool (dt), each NBL entry of each pool's allocated
/// list (link, NBL and the owner stamp in its context: one request per entry), the owner miniport; real reads through
/// the engine-cache model, counted in KD packets like the command.
/// </summary>
public class NblOwnersBenchCase : IBenchCase
{
    public string Command => "nblowners";
    public string Scenario => "ndis-pending-nbls";
    public IReadOnlyList<string> Builds { get; } = new[] { "win10", "2016" };
    public IReadOnlyList<int> Scales { get; } = new[] { 1, 10, 100 };
    public virtual string? Variant => null;
    public string Arguments(ScenarioResult scenario) => "";

    public ManualProcedure Manual(ScenarioResult s)
    {
        var b = s.Builder;
        ulong poolSize = b.SizeOf("_NDIS_NET_BUFFER_LIST_POOL", "ndis");
        ulong linkOff = b.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "GlobalNetBufferListPoolList", "ndis");
        ulong allocOff = b.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "AllocatedList", "ndis");
        ulong nblSize = b.SizeOf("_NET_BUFFER_LIST", "ndis");
        ulong hdr = s.Fact("entryHeaderSize"), entryLink = s.Fact("entryLinkageOffset");
        int entryRead = (int)(hdr + nblSize + 0x40);
        var m = new ManualProcedureBuilder(s.CreateTarget());
        m.Note("walk the NBL pool list (dt ndis!_NDIS_NET_BUFFER_LIST_POOL per pool)")
         .Note("walk each pool's allocated list (dt ndis!_NET_BUFFER_LIST per NBL + the owner stamp)");
        ulong head = s.Fact("poolListHead");
        var seen = new HashSet<ulong>();
        ulong flink = U64(m.Read(head, 16), 0);
        while (flink != head && flink != 0 && seen.Add(flink) && seen.Count < 10_000)
        {
            ulong pool = flink - linkOff;
            var pb = m.Read(pool, (int)poolSize);
            if (pb is null) break;
            ulong listHead = pool + allocOff;
            ulong e = U64(pb, (int)allocOff);
            var seenE = new HashSet<ulong>();
            while (e != listHead && e != 0 && seenE.Add(e))
            {
                var eb = m.Read(e - entryLink, entryRead);
                if (eb is null) break;
                e = U64(eb, (int)entryLink);
            }
            flink = U64(pb, (int)linkOff);
        }
        m.Read(s.Fact("miniport"), (int)b.SizeOf("_NDIS_MINIPORT_BLOCK", "ndis"));
        m.Note("dt ndis!_NDIS_MINIPORT_BLOCK (the owner)");
        return m.Build();
    }

    private static ulong U64(byte[]? b, int off) => b is null || off + 8 > b.Length ? 0 : BitConverter.ToUInt64(b, off);
}

/// <summary>The same with NBL entries scattered over pool pages (about one per page, list order unrelated to address order).</summary>
public sealed class NblOwnersScatteredBenchCase : NblOwnersBenchCase
{
    public override string? Variant => "scattered";
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
        var m = new ManualProcedureBuilder(s.CreateTarget())
            .Dt("fltmgr!_FLTP_FRAME (!fltkd.frames)", b.Layout("_FLTP_FRAME", "fltmgr").Size)
            .Dt("fltmgr!_FLT_FILTER (!fltkd.filter)", b.Layout("_FLT_FILTER", "fltmgr").Size, 3)
            .Dt("fltmgr!_FLT_INSTANCE (!fltkd.instance)", b.Layout("_FLT_INSTANCE", "fltmgr").Size, 7)
            .Dt("fltmgr!_FLT_VOLUME (!fltkd.volumes)", b.Layout("_FLT_VOLUME", "fltmgr").Size, 3)
            .Dt("nt!_DEVICE_OBJECT (!devstack, per device)", b.Layout("_DEVICE_OBJECT").Size, 12)
            .Dt("nt!_DEVOBJ_EXTENSION (!devstack)", b.Layout("_DEVOBJ_EXTENSION").Size, 12)
            .Step("du driver/filter/volume/altitude names", 1, 64, 30)
            .Step("!drvobj <legacy driver> (DriverExtension.ServiceKeyName)", 2, 0x200, 2);
        // The legacy filters' groups by hand: !reg hivelist, then !reg querykey down to each service key and its Group
        // value, replayed cell by cell at the hive's real addresses (RegManualReplay), counted like the command's reads.
        var reg = new RegManualReplay(m, b, s.Facts.TryGetValue("registryProcess", out var rp) ? rp : null);
        if (!reg.HiveList("SYSTEM")) throw new InvalidOperationException("manual replay: the SYSTEM hive is not on CmpHiveListHead");
        foreach (var (service, group) in FltmgrScenario.SeedLegacyGroups())
        {
            var data = reg.QueryValue($@"ControlSet001\Services\{service}", "Group");
            string got = data is null ? "(not found)" : System.Text.Encoding.Unicode.GetString(data).TrimEnd('\0');
            if (got != group) throw new InvalidOperationException($"manual replay: {service}\\Group read as {got}, the hive holds {group}");
        }
        return m.Build();
    }
}
