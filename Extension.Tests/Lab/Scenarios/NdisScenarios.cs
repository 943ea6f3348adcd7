using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Target;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>What an NBL is doing in a scenario.</summary>
public enum LabNblState { Freed, AtHome, PendingMiniport, PendingFilter, PendingOpen }

/// <summary>Parameters of an NDIS NBL scenario.</summary>
public sealed record NdisScenarioSpec
{
    public string BuildLabel { get; init; } = NdisFltmgrLayouts.V20H2;
    public int TrackingLevel { get; init; } = 1;
    public int Pools { get; init; } = 20;
    public int Freed { get; init; } = 550;
    public int PendingOnMiniport { get; init; } = 1854;
    public int PendingOnFilter { get; init; }
    public int PendingOnOpen { get; init; }
    public int AtHome { get; init; } = 601;
    public string AdapterName { get; init; } = "My Ethernet 1Gb 4-port Adapter";
    public int MiniportState { get; init; } = 4;      // running
    public int PnPState { get; init; } = 4;           // query_removed
    public int OperStatus { get; init; } = 5;         // dormant
    public uint OperStatusFlags { get; init; } = 4;   // DORMANT_PAUSED
    public int References { get; init; } = 9;
    /// <summary>Entry header in front of each NBL and where its list linkage lies (published in the triage block).</summary>
    public int EntryHeaderSize { get; init; } = 0x20;
    public int EntryLinkageOffset { get; init; } = 0x10;
    /// <summary>Extra bytes after the NBL in each entry (NDIS context, where the current-owner stamp lives).</summary>
    public int ContextBytes { get; init; } = 0x40;
    /// <summary>
    /// 0: each pool's NBL entries lie back to back in list order. N &gt; 0: as real pool does, each entry takes a random
    /// slot among N times as many entry-sized slots (the others stand for other allocations between them), so about
    /// one NBL per page at N = 8, in an address order unrelated to the list order.
    /// </summary>
    public int ScatterFactor { get; init; }
    /// <summary>Driver (service) name of the seed miniport.</summary>
    public string DriverName { get; init; } = "MyMiniPortDriver";
    /// <summary>Seed 001: the miniport driver keeps netkvm's receive lists in its adapter context (null: no such driver).</summary>
    public NetkvmReceiveSpec? Receive { get; init; }
    /// <summary>The tcpip open's counters (_NDIS_OPEN_BLOCK.References / OutstandingSends, where the build has them).</summary>
    public int OpenReferences { get; init; }
    public int OpenOutstandingSends { get; init; }
    /// <summary>tcpip!Provider_Rundown_Protection per-CPU counts (null: tcpip not laid).</summary>
    public int[]? TcpipRundownPerCpu { get; init; }
    public int Total => Freed + PendingOnMiniport + PendingOnFilter + PendingOnOpen + AtHome;
}

/// <summary>
/// Builds NDIS kernels with NBL pools: ndis.sys globals at their per-build RVAs, ndisGlobalTriageBlock filled with
/// the offsets the build's types give, pools on the global pool list, NBL entries (header + NET_BUFFER_LIST + context)
/// laid out contiguously per pool, current-owner stamps per state, miniport/filter/open/protocol objects on ndis's
/// global lists. The seed scenario (20 pools, 3,005 NBLs, 550 freed, 1,854 pending on one DORMANT_PAUSED miniport
/// after QUERY_REMOVED) is <see cref="Seed"/>.
/// </summary>
public sealed class NdisScenario
{
    public const ulong NdisBase = 0xfffff880_00e00000;
    public const ulong MiniportAddr = 0xfffffa80_142d31a0;
    public const ulong Miniport2Addr = 0xfffffa80_0e5021a0;
    public const ulong FilterAddr = 0xfffffa80_0f1c8010;
    public const ulong OpenAddr = 0xfffffa80_0f2a4c10;
    public const ulong ProtocolAddr = 0xfffffa80_0d8e9a30;
    public const ulong PoolArea = 0xfffffa80_12000000;
    public const ulong NblArea = 0xfffffa80_20000000;

    public required NdisScenarioSpec Spec { get; init; }
    public required SparseMemory Memory { get; init; }
    public required InMemoryTarget Target { get; init; }
    public List<ulong> PoolAddresses { get; } = new();
    /// <summary>Each pool's NBL addresses (in list order) and states.</summary>
    public Dictionary<ulong, List<(ulong Nbl, ulong Entry, LabNblState State)>> Nbls { get; } = new();
    public ulong PoolListHead { get; set; }
    public int NblSize { get; set; }
    public int CurrentOwnerOffset { get; set; }
    public int EntryStride { get; set; }

    public static NdisScenario Seed(string layoutsPath, string label = NdisFltmgrLayouts.V20H2) =>
        Build(layoutsPath, new NdisScenarioSpec { BuildLabel = label });

    public static NdisScenario SeedTrackingOff(string layoutsPath, string label = NdisFltmgrLayouts.V20H2) =>
        Build(layoutsPath, new NdisScenarioSpec { BuildLabel = label, TrackingLevel = 0 });

    public static NdisScenario Build(string layoutsPath, NdisScenarioSpec spec)
    {
        var doc = NdisFltmgrLayouts.BuildIsf(layoutsPath, "ndis", spec.BuildLabel);
        var syms = new IsfSymbolProvider().Add("ndis", doc, NdisBase);
        var mem = new SparseMemory();
        var info = new TargetInfo { Kind = TargetKind.Kernel, IsDump = true, PointerSize = 8, BuildNumber = NdisFltmgrLayouts.BuildNumberOf(spec.BuildLabel), ProcessorCount = 4 };
        var modules = new List<ModuleInfo> { new("ndis", NdisBase, 0x150000, @"\SystemRoot\system32\drivers\ndis.sys") };
        return LayInto(new InMemoryTarget(mem, syms, info, modules), doc, spec);
    }

    /// <summary>Lays the scenario into a target's memory; its symbols must have "ndis" = <paramref name="doc"/> at <see cref="NdisBase"/>.</summary>
    public static NdisScenario LayInto(InMemoryTarget target, IsfDocument doc, NdisScenarioSpec spec)
    {
        var sc = new NdisScenario { Spec = spec, Memory = target.Memory, Target = target };
        sc.Lay(new TypedMemory(target.Memory, target.Symbols, doc.Source, heapStart: 0xfffffa80_0c000000), doc);
        return sc;
    }

    private void Lay(TypedMemory w, IsfDocument doc)
    {
        const string N = "ndis";
        ulong Sym(string name) => NdisBase + doc.GetSymbolRva(name);
        // ndis .data pages for the globals we use.
        foreach (var g in new[] { "ndisGlobalTriageBlock", "ndisMiniportList", "ndisGlobalFilterList", "ndisGlobalOpenList", "ndisProtocolList", "ndisNblTrackerMode" })
            if (doc.Symbols.ContainsKey(g)) Memory.Map(Sym(g), 0x200); // ndisNblTrackerMode: Windows 10+ only

        // Objects on ndis's global lists.
        var mp = w.Layout("_NDIS_MINIPORT_BLOCK", N);
        Memory.Map(MiniportAddr, mp.Size); Memory.Map(Miniport2Addr, mp.Size);
        Memory.WriteU64(Sym("ndisMiniportList"), MiniportAddr);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "NextGlobalMiniport", Miniport2Addr, N);
        w.Set(Miniport2Addr, "_NDIS_MINIPORT_BLOCK", "NextGlobalMiniport", 0, N);
        NameMiniport(w, MiniportAddr, Spec.AdapterName, Spec.DriverName);
        NameMiniport(w, Miniport2Addr, "Microsoft Kernel Debug Network Adapter", "kdnic");
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "State", (ulong)Spec.MiniportState, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "PnPDeviceState", (ulong)Spec.PnPState, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "OldPnPDeviceState", 1, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "OperStatus", (ulong)Spec.OperStatus, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "OperStatusFlags", Spec.OperStatusFlags, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "MediaConnectState", 1, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "Ref.ReferenceCount", (ulong)Spec.References, N);
        w.Set(MiniportAddr, "_NDIS_MINIPORT_BLOCK", "ShortRef.ReferenceCount", 2, N);
        w.Set(Miniport2Addr, "_NDIS_MINIPORT_BLOCK", "State", 4, N);
        w.Set(Miniport2Addr, "_NDIS_MINIPORT_BLOCK", "PnPDeviceState", 1, N);
        w.Set(Miniport2Addr, "_NDIS_MINIPORT_BLOCK", "OperStatus", 1, N);

        var fb = w.Layout("_NDIS_FILTER_BLOCK", N);
        Memory.Map(FilterAddr, fb.Size);
        Memory.WriteU64(Sym("ndisGlobalFilterList"), FilterAddr);
        ulong fname = w.Allocate(16);
        w.WriteUnicodeString(fname, "WFP Native MAC Layer LightWeight Filter-0000", w.Allocate(0x100));
        w.Set(FilterAddr, "_NDIS_FILTER_BLOCK", "FilterFriendlyName", fname, N);
        w.Set(FilterAddr, "_NDIS_FILTER_BLOCK", "Miniport", MiniportAddr, N);
        w.Set(FilterAddr, "_NDIS_FILTER_BLOCK", "State", 5, N);

        var ob = w.Layout("_NDIS_OPEN_BLOCK", N);
        Memory.Map(OpenAddr, ob.Size);
        Memory.WriteU64(Sym("ndisGlobalOpenList"), OpenAddr);
        ulong bname = w.Allocate(16);
        w.WriteUnicodeString(bname, @"\DEVICE\{5B3A0E1C-7D2F-4C3E-9A11-0B2C3D4E5F60}", w.Allocate(0x100));
        w.Set(OpenAddr, "_NDIS_OPEN_BLOCK", "BindDeviceName", bname, N);
        w.Set(OpenAddr, "_NDIS_OPEN_BLOCK", "MiniportHandle", MiniportAddr, N);
        w.Set(OpenAddr, "_NDIS_OPEN_BLOCK", "ProtocolHandle", ProtocolAddr, N);
        var openLayout = w.Layout("_NDIS_OPEN_BLOCK", N);
        if (openLayout.HasField("References")) w.Set(OpenAddr, "_NDIS_OPEN_BLOCK", "References", (ulong)Spec.OpenReferences, N);
        if (openLayout.HasField("OutstandingSends")) w.Set(OpenAddr, "_NDIS_OPEN_BLOCK", "OutstandingSends", (ulong)Spec.OpenOutstandingSends, N);
        if (Spec.Receive is { } rx) NdisReceivePath.LayAdapter(w, MiniportAddr, rx);
        if (Spec.TcpipRundownPerCpu is { } rd) NdisReceivePath.LayRundown(w, rd);

        var pb = w.Layout("_NDIS_PROTOCOL_BLOCK", N);
        Memory.Map(ProtocolAddr, pb.Size);
        Memory.WriteU64(Sym("ndisProtocolList"), ProtocolAddr);
        w.WriteUnicodeString(ProtocolAddr + w.OffsetOf("_NDIS_PROTOCOL_BLOCK", "Name", N), "TCPIP", w.Allocate(0x40));

        // NBL geometry: NBL size from the build's type, current-owner stamp in the context after the NBL.
        var nblType = w.Layout("_NET_BUFFER_LIST", N);
        NblSize = (int)nblType.Size;
        CurrentOwnerOffset = NblSize + 0x10;
        EntryStride = (Spec.EntryHeaderSize + NblSize + Spec.ContextBytes + 0xf) & ~0xf;

        // Triage block: what ndis publishes at run time for debuggers.
        const string T = "_NDIS_GLOBAL_TRIAGE_BLOCK";
        ulong tri = Sym("ndisGlobalTriageBlock");
        Memory.Map(tri, w.Layout(T, N).Size);
        w.Set(tri, T, "Signature", 0x5349444e, N); // 'NDIS'
        w.Set(tri, T, "Size", w.Layout(T, N).Size, N);
        w.Set(tri, T, "NBLPoolListOffset", w.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "GlobalNetBufferListPoolList", N), N);
        w.Set(tri, T, "AllocatedListOffset", w.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "AllocatedList", N), N);
        w.Set(tri, T, "OwnerHandleOffset", w.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "OwnerHandle", N), N);
        w.Set(tri, T, "EntryLinkageOffset", (ulong)Spec.EntryLinkageOffset, N);
        w.Set(tri, T, "EntryHeaderSize", (ulong)Spec.EntryHeaderSize, N);
        w.Set(tri, T, "NblSize", (ulong)NblSize, N);
        w.Set(tri, T, "NblCurrentOwnerOffset", (ulong)CurrentOwnerOffset, N);
        w.Set(tri, T, "SourceHandleOffset", w.OffsetOf("_NET_BUFFER_LIST", "SourceHandle", N), N);
        w.Set(tri, T, "NdisTrackNblOwner", (ulong)Spec.TrackingLevel, N);
        w.Set(tri, T, "MaxNumberOfProcessors", 4, N);
        if (doc.Symbols.ContainsKey("ndisNblTrackerMode")) Memory.WriteU32(Sym("ndisNblTrackerMode"), (uint)Spec.TrackingLevel);

        // Pool list head: the public global on 1607, otherwise a head published through the triage block.
        ulong? headSym = doc.Symbols.TryGetValue("ndisGlobalNetBufferListPoolList", out var hr) ? NdisBase + hr : null;
        PoolListHead = headSym ?? w.Allocate(16);
        Memory.Map(PoolListHead, 16);
        w.Set(tri, T, "GlobalNetBufferListPoolList", PoolListHead, N);

        // Pools: owners rotate (miniport receive pools, tcpip send pools, filter pools).
        var poolType = w.Layout("_NDIS_NET_BUFFER_LIST_POOL", N);
        ulong linkOff = w.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "GlobalNetBufferListPoolList", N);
        ulong allocOff = w.OffsetOf("_NDIS_NET_BUFFER_LIST_POOL", "AllocatedList", N);
        var states = StateSequence();
        int perPool = states.Count / Spec.Pools, extra = states.Count % Spec.Pools, si = 0;
        ulong prevLink = PoolListHead;
        for (int p = 0; p < Spec.Pools; p++)
        {
            ulong pool = PoolArea + (ulong)p * 0x400;
            Memory.Map(pool, poolType.Size);
            PoolAddresses.Add(pool);
            ulong owner = (p % 4) switch { 0 => MiniportAddr, 3 => FilterAddr, _ => ProtocolAddr };
            w.Set(pool, "_NDIS_NET_BUFFER_LIST_POOL", "OwnerHandle", owner, N);
            w.Set(pool, "_NDIS_NET_BUFFER_LIST_POOL", "Tag", (p % 4) switch { 0 => 0x4c424e65u, 3 => 0x4c424e66u, _ => 0x4c424e54u }, N); // eNBL fNBL TNBL
            w.Set(pool, "_NDIS_NET_BUFFER_LIST_POOL", "ContextSize", (ulong)Spec.ContextBytes, N);
            // Global pool list: head <-> pools.
            Memory.WriteU64(prevLink, pool + linkOff);
            Memory.WriteU64(pool + linkOff + 8, prevLink);
            prevLink = pool + linkOff;

            int count = perPool + (p < extra ? 1 : 0);
            var list = new List<(ulong, ulong, LabNblState)>();
            ulong areaSize = Math.Max(0x0100_0000UL, ((ulong)count * (ulong)Math.Max(1, Spec.ScatterFactor) * (ulong)EntryStride + 0xff_ffff) & ~0xff_ffffUL);
            ulong area = NblArea + (ulong)p * (Spec.ScatterFactor > 0 ? areaSize : 0x0100_0000);
            int[]? slots = null;
            if (Spec.ScatterFactor > 0)
            {
                var rnd = new Random(1000 + p);
                var all = Enumerable.Range(0, count * Spec.ScatterFactor).ToArray();
                rnd.Shuffle(all);
                slots = all[..count];
            }
            ulong prevEntryLink = pool + allocOff;
            for (int i = 0; i < count; i++, si++)
            {
                var st = states[si];
                ulong entry = area + (ulong)(slots?[i] ?? i) * (ulong)EntryStride;
                ulong nbl = entry + (ulong)Spec.EntryHeaderSize;
                Memory.Map(entry, (ulong)EntryStride);
                ulong link = entry + (ulong)Spec.EntryLinkageOffset;
                Memory.WriteU64(prevEntryLink, link);
                Memory.WriteU64(link + 8, prevEntryLink);
                prevEntryLink = link;
                w.Set(nbl, "_NET_BUFFER_LIST", "NdisPoolHandle", pool, N);
                ulong cur = st switch
                {
                    LabNblState.Freed => 0,
                    LabNblState.AtHome => owner,
                    LabNblState.PendingMiniport => MiniportAddr,
                    LabNblState.PendingFilter => FilterAddr,
                    _ => OpenAddr,
                };
                // A miniport's own NBL pending on itself would be at home: such NBLs go to the tcpip open instead.
                if ((st == LabNblState.PendingMiniport && owner == MiniportAddr) || (st == LabNblState.PendingFilter && owner == FilterAddr))
                    throw new InvalidOperationException("lab: state sequence error");
                if (Spec.TrackingLevel > 0) Memory.WriteU64(nbl + (ulong)CurrentOwnerOffset, cur);
                list.Add((nbl, entry, st));
            }
            Memory.WriteU64(prevEntryLink, pool + allocOff);
            Memory.WriteU64(pool + allocOff + 8, prevEntryLink);
            Nbls[pool] = list;
        }
        Memory.WriteU64(prevLink, PoolListHead);
        Memory.WriteU64(PoolListHead + 8, prevLink);
    }

    /// <summary>
    /// States in pool order so that miniport-owned pools (every 4th) only get freed/at-home/open-pending NBLs and
    /// the miniport-pending ones go to tcpip/filter pools.
    /// </summary>
    private List<LabNblState> StateSequence()
    {
        int total = Spec.Total;
        int perPool = total / Spec.Pools, extra = total % Spec.Pools;
        var slots = new List<(int Pool, bool MiniportPool)>(total);
        for (int p = 0; p < Spec.Pools; p++)
            for (int i = 0, n = perPool + (p < extra ? 1 : 0); i < n; i++) slots.Add((p, p % 4 == 0));
        int miniportSlots = slots.Count(x => x.MiniportPool);
        // Miniport-owned pools take no miniport-pending NBLs (those would be at home): fill them first from the others.
        var left = new Dictionary<LabNblState, int>
        {
            [LabNblState.Freed] = Spec.Freed, [LabNblState.AtHome] = Spec.AtHome, [LabNblState.PendingOpen] = Spec.PendingOnOpen,
            [LabNblState.PendingFilter] = Spec.PendingOnFilter, [LabNblState.PendingMiniport] = Spec.PendingOnMiniport,
        };
        if (total - Spec.PendingOnMiniport < miniportSlots)
            throw new InvalidOperationException("lab: cannot place the NBL states (too many pending on the miniport for the non-miniport pools)");
        var order = new[] { LabNblState.Freed, LabNblState.AtHome, LabNblState.PendingOpen, LabNblState.PendingFilter, LabNblState.PendingMiniport };
        var result = new LabNblState[total];
        // Proportional (Bresenham-like) interleaving so each pool gets a mix.
        void Fill(IEnumerable<int> idx, LabNblState[] allowed)
        {
            var list = idx.ToList();
            int n = list.Count;
            var acc = allowed.ToDictionary(a => a, _ => 0.0);
            for (int k = 0; k < n; k++)
            {
                int remaining = n - k;
                int avail = allowed.Sum(a => left[a]);
                LabNblState best = allowed.First(a => left[a] > 0);
                double bestScore = double.MinValue;
                foreach (var a in allowed)
                {
                    if (left[a] == 0) continue;
                    acc[a] += (double)left[a] / Math.Max(avail, 1);
                    if (acc[a] > bestScore) { bestScore = acc[a]; best = a; }
                }
                acc[best] -= 1.0;
                result[list[k]] = best;
                left[best]--;
                _ = remaining;
            }
        }
        var nonPm = order.Where(o => o != LabNblState.PendingMiniport).ToArray();
        // Reserve for the miniport pools in proportion, then the rest everywhere else.
        Fill(Enumerable.Range(0, total).Where(i => slots[i].MiniportPool), nonPm);
        // Filter-owned pools take no filter-pending NBLs (those would be at home either).
        Fill(Enumerable.Range(0, total).Where(i => slots[i].Pool % 4 == 3), order.Where(o => o != LabNblState.PendingFilter).ToArray());
        Fill(Enumerable.Range(0, total).Where(i => !slots[i].MiniportPool && slots[i].Pool % 4 != 3), order);
        if (left.Values.Any(v => v != 0)) throw new InvalidOperationException("lab: state distribution did not balance");
        return result.ToList();
    }

    private static void NameMiniport(TypedMemory w, ulong mp, string name, string driver)
    {
        const string N = "ndis";
        ulong us = w.Allocate(16);
        w.WriteUnicodeString(us, name, w.Allocate((ulong)(name.Length * 2 + 16)));
        w.Set(mp, "_NDIS_MINIPORT_BLOCK", "pAdapterInstanceName", us, N);
        w.WriteUnicodeString(mp + w.OffsetOf("_NDIS_MINIPORT_BLOCK", "MiniportName", N), @"\DEVICE\{5B3A0E1C-7D2F-4C3E-9A11-0B2C3D4E5F60}", w.Allocate(0x100));
        var db = w.Layout("_NDIS_M_DRIVER_BLOCK", N);
        ulong drv = w.Allocate(db.Size);
        w.Memory.Map(drv, db.Size);
        w.WriteUnicodeString(drv + w.OffsetOf("_NDIS_M_DRIVER_BLOCK", "ServiceName", N), driver, w.Allocate(0x80));
        w.Set(mp, "_NDIS_MINIPORT_BLOCK", "DriverHandle", drv, N);
    }
}
