using NtSleuth.Commands.Kernel;
using System.Buffers.Binary;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.NblOwners;

/// <summary>
/// !nblowners analysis. Finds the NBL pools through ndis's global pool list, walks each pool's allocated list
/// reading NBL memory in bulk windows, classifies every NBL (freed / at home / pending = current owner is not the
/// pool's owner, as !ndiskd.pendingnbls defines it), groups pending NBLs by current owner, identifies each owner by
/// the global list it is on (miniports, filter modules, opens, protocols) and reads the owning miniports' state.
/// All offsets come from the ndis symbols and from the self-describing offsets of ndis!ndisGlobalTriageBlock.
/// </summary>
public sealed class NblOwnersAnalyzer
{
    public const string Module = "ndis";
    /// <summary>
    /// Bulk window for NBL memory where the layout proves contiguous: when an entry is the previous one's neighbour,
    /// one request covers this many bytes around it. Entries scattered over pool pages (other allocations between
    /// them) are read one entry span per request instead, so read-ahead never moves bytes nobody uses.
    /// </summary>
    public const int Window = 0x4000;
    public const int MaxPools = 10_000;
    public const int MaxNblsPerPool = 1_000_000;
    public const int MaxListObjects = 4096;
    public const int SamplesPerOwner = 5;
    public const int MaxOwnerListing = 100_000;

    private readonly KernelReader _r;
    private readonly ulong? _ownerFilter;
    private readonly ulong? _poolFilter;
    private readonly HashSet<ulong> _windows = new();
    private int _streak, _windowsRead, _windowHits;

    public NblOwnersAnalyzer(KernelReader reader, ulong? ownerFilter = null, ulong? poolFilter = null)
    {
        _r = reader; _ownerFilter = ownerFilter; _poolFilter = poolFilter;
    }

    public NblOwnersReport Analyze()
    {
        var rep = new NblOwnersReport { OwnerFilter = _ownerFilter, PoolFilter = _poolFilter };
        var types = _r.Types;
        if (!types.Symbols.HasSymbols(Module) && !IsLoaded())
            throw new ModuleNotLoadedException("ndis.sys is not loaded on the target (no NDIS: nothing to report).");
        var poolType = types.TryGet(Module, "_NDIS_NET_BUFFER_LIST_POOL")
            ?? throw new MissingSymbolException("type ndis!_NDIS_NET_BUFFER_LIST_POOL", Module);

        // 1. The triage block: tracking level and the offsets ndis publishes for debuggers.
        ulong? triAddr = types.TrySymbol("ndis!ndisGlobalTriageBlock");
        var triType = types.TryGet(Module, "_NDIS_GLOBAL_TRIAGE_BLOCK");
        StructView? tri = null;
        if (triAddr is not null && triType is not null)
        {
            try { tri = _r.Read(triType, triAddr.Value); }
            catch (TargetReadException e) { rep.Notes.Add($"ndis!ndisGlobalTriageBlock at {Output.Fmt.Addr(triAddr.Value)} is not readable ({e.Message}); using the ndis types' offsets"); }
        }
        else rep.Notes.Add("ndis!ndisGlobalTriageBlock (or its type) is not in the ndis symbols; using the ndis types' offsets");

        var off = rep.Offsets;
        off.PoolLinkOffset = Pick(tri, "NBLPoolListOffset", poolType, "GlobalNetBufferListPoolList", rep);
        off.AllocatedListOffset = Pick(tri, "AllocatedListOffset", poolType, "AllocatedList", rep);
        off.OwnerHandleOffset = Pick(tri, "OwnerHandleOffset", poolType, "OwnerHandle", rep);
        off.Source = tri is not null ? "ndis!ndisGlobalTriageBlock" : "ndis!_NDIS_NET_BUFFER_LIST_POOL";
        var nblType = types.TryGet(Module, "_NET_BUFFER_LIST");
        off.NblSize = (int)(TriU16(tri, "NblSize") ?? (ushort)(nblType?.Size ?? 0));
        off.EntryLinkageOffset = TriU16(tri, "EntryLinkageOffset") ?? 0;
        off.EntryHeaderSize = TriU16(tri, "EntryHeaderSize") ?? 0;
        int? curOwnerOff = TriU16(tri, "NblCurrentOwnerOffset");
        off.NblCurrentOwnerOffset = curOwnerOff ?? 0;
        if (tri is null)
            rep.Notes.Add("without the triage block the pool-entry header and the NBL current-owner slot are unknown: NBLs are counted, owners are not");
        else if (curOwnerOff is null or 0)
            rep.Notes.Add("the triage block publishes no NBL current-owner offset (NblCurrentOwnerOffset = 0): owners cannot be read");

        // 2. Tracking level.
        ReadTrackingLevel(rep, tri);
        bool ownersReadable = rep.TrackingOn && tri is not null && curOwnerOff is > 0;
        if (!rep.TrackingOn)
            rep.Guidance = "NBL tracking is off, so NDIS did not record which driver holds each NBL. On the target set the REG_DWORD value\n" +
                           "  HKLM\\SYSTEM\\CurrentControlSet\\Services\\NDIS\\Parameters  TrackNblOwner = 1\n" +
                           "and reboot, then capture the dump again (level 1 = most recent owner, what !nblowners and !ndiskd.pendingnbls need).";

        // 3. The pool list head.
        ulong? head = types.TrySymbol("ndis!ndisGlobalNetBufferListPoolList");
        if (head is null && tri is not null && tri.TryUInt("GlobalNetBufferListPoolList") is { } p && p != 0) head = p;
        if (head is null && tri is not null && triType!.HasField("GlobalNetBufferListPoolList"))
            // The symbols are fine (the triage block and its type resolved): its field holds no list head. Memory, not symbols.
            throw new Cli.CommandFailedException($"the NBL pool list cannot be found: ndis!ndisGlobalNetBufferListPoolList is not in these ndis symbols, and " +
                $"ndisGlobalTriageBlock.GlobalNetBufferListPoolList at {Output.Fmt.Addr(triAddr!.Value + triType.GetField("GlobalNetBufferListPoolList").Offset)} " +
                $"{(tri.TryUInt("GlobalNetBufferListPoolList") is null ? "is not readable" : "reads 0")} (the triage block is damaged, or ndis has not initialised it)");
        if (head is null && tri is null && triAddr is not null && triType is not null)
            throw new Cli.CommandFailedException($"the NBL pool list cannot be found: ndis!ndisGlobalNetBufferListPoolList is not in these ndis symbols, and " +
                $"ndis!ndisGlobalTriageBlock at {Output.Fmt.Addr(triAddr.Value)}, which publishes it, is not readable (paged out or not in the dump)");
        if (head is null)
            throw new MissingSymbolException("ndis!ndisGlobalNetBufferListPoolList (or ndisGlobalTriageBlock.GlobalNetBufferListPoolList)", Module);
        rep.PoolListHead = head.Value;

        // 4. Walk the pools.
        var groups = new Dictionary<ulong, NblOwnerGroup>();
        var groupPools = new Dictionary<ulong, HashSet<ulong>>();
        if (_ownerFilter is not null) rep.OwnerNbls = new List<NblEntry>();
        var poolWalk = new ListWalkResult();
        int poolsRecovered = 0;
        foreach (var link in _r.WalkListBothWays(head.Value, poolWalk, MaxPools, n => poolsRecovered = n))
        {
            ulong pool = KernelReader.ContainingRecord(link, (ulong)off.PoolLinkOffset);
            // Read the whole pool (it contains the link, so the walk's next read is served from the cache).
            StructView? pv = null;
            try { pv = _r.Read(poolType, pool); } catch (TargetReadException) { }
            rep.PoolCount++;
            if (_poolFilter is not null && pool != _poolFilter.Value) continue;
            var info = new NblPoolInfo { Address = pool };
            rep.Pools.Add(info);
            if (pv is null && _r.Memory.IsInterruptRequested) { rep.Pools.Remove(info); rep.PoolCount--; rep.Interrupted = true; break; }
            if (pv is null || pv.Length < off.OwnerHandleOffset + 8 || pv.Length < off.AllocatedListOffset + 16)
            {
                info.Readable = false;
                rep.UnreadablePools++;
                info.WalkNote = $"pool {Output.Fmt.Addr(pool)} is not readable (paged out or not in the dump); its NBLs are not counted";
                continue;
            }
            info.OwnerHandle = ReadU64(pv, off.OwnerHandleOffset);
            if (pv.TryUInt("Tag") is { } tag) info.Tag = NdisNames.Tag((uint)tag);
            WalkPool(rep, info, pool, ownersReadable, groups, groupPools);
            if (_r.Memory.IsInterruptRequested) { rep.Interrupted = true; break; }
        }
        if (!poolWalk.IsComplete)
        {
            // Left early on Ctrl+Break (rep.Interrupted): not a walk problem.
            if (poolWalk.StopReason == ListStop.Interrupted || rep.Interrupted) rep.Interrupted = true;
            else rep.Notes.Add(poolWalk.Describe("NBL pool list (ndis global pool list)") + Recovered(poolWalk, poolsRecovered, "pool(s)"));
        }
        if (_poolFilter is not null && rep.Pools.Count == 0)
            rep.Notes.Add($"pool {Output.Fmt.Addr(_poolFilter.Value)} is not on the NBL pool list ({rep.PoolCount} pools walked)");

        // Ctrl+Break: the counts so far, by owner handle, and nothing more. Identifying the owners walks ndis's global
        // lists and reads the miniports (each symbol lookup is tens of ms, and the engine fails lookups and reads while
        // the interrupt is pending), so an owner it could not identify now is not "stale or corrupted".
        if (rep.Interrupted || _r.Memory.IsInterruptRequested)
        {
            rep.Interrupted = true;
            rep.Owners = groups.Values.OrderByDescending(g => g.Count).ThenBy(g => g.Handle).ToList();
            foreach (var g in rep.Owners) g.PoolCount = groupPools[g.Handle].Count;
            rep.Notes.Add($"interrupted by user (Ctrl+Break) after {rep.Pools.Count} pool(s) and {rep.TotalNbls} NBL(s): totals are partial; " +
                "owners were not identified (miniport, filter, open and protocol lists not walked) and no verdict is given");
            return rep;
        }

        // 5. Identify owners (pending owners and pool owners) by the global list they are on.
        var handles = new HashSet<ulong>(groups.Keys);
        foreach (var pi in rep.Pools) if (pi.OwnerHandle != 0) handles.Add(pi.OwnerHandle);
        if (_ownerFilter is not null) handles.Add(_ownerFilter.Value);
        var ident = new NdisHandleIdentifier(_r, rep.Notes);
        var kinds = ident.Identify(handles);
        foreach (var pi in rep.Pools)
            if (kinds.TryGetValue(pi.OwnerHandle, out var k)) { pi.OwnerKind = k.Kind; pi.OwnerName = k.Name; }
        foreach (var g in groups.Values)
        {
            if (kinds.TryGetValue(g.Handle, out var k)) { g.Kind = k.Kind; g.Name = k.Name; }
            g.PoolCount = groupPools[g.Handle].Count;
        }
        rep.Owners = groups.Values.OrderByDescending(g => g.Count).ThenBy(g => g.Handle).ToList();
        if (_r.Memory.IsInterruptRequested) return InterruptedWhile(rep, "identifying the owners");

        // 6. Owning miniports: state, PnP, operational status, references; the verdicts.
        var miniports = rep.TrackingOn
            ? rep.Owners.Where(g => g.Kind == NdisHandleKind.Miniport).Select(g => (g.Handle, g.Count)).ToList()
            : rep.Pools.Where(pi => pi.OwnerKind == NdisHandleKind.Miniport).Select(pi => (Handle: pi.OwnerHandle, Count: 0)).Distinct().ToList();
        foreach (var (h, count) in miniports)
        {
            var ms = ident.ReadMiniportState(h);
            ms.PendingHeld = count;
            rep.Miniports.Add(ms);
        }
        if (_r.Memory.IsInterruptRequested) return InterruptedWhile(rep, "reading the owning miniports");
        if (rep.TrackingOn) BuildVerdicts(rep);
        // 7. Opens, the miniport drivers' receive lists, tcpip's send rundown, and what this build cannot tell.
        new NblOwnersPaths(_r, rep).ReadAll(ident);
        if (rep.Interrupted || _r.Memory.IsInterruptRequested)
        {
            rep.Interrupted = true;
            rep.Notes.Add($"interrupted by user (Ctrl+Break) after {rep.Pools.Count} pool(s) and {rep.TotalNbls} NBL(s) while identifying owners: " +
                "owners, states and paths may be incomplete");
        }
        return rep;
    }

    /// <summary>Ctrl+Break after the counts: an owner not identified (yet) is not called stale, and no verdict is given.</summary>
    private static NblOwnersReport InterruptedWhile(NblOwnersReport rep, string what)
    {
        rep.Interrupted = true;
        rep.Notes.Add($"interrupted by user (Ctrl+Break) while {what}: the counts are complete ({rep.Pools.Count} pool(s), {rep.TotalNbls} NBL(s)); " +
            "owners may be unidentified and no verdict is given");
        return rep;
    }

    private bool IsLoaded()
    {
        return KernelModules.IsLoaded(_r.Target, "ndis");
    }

    private void ReadTrackingLevel(NblOwnersReport rep, StructView? tri)
    {
        if (tri?.TryUInt("NdisTrackNblOwner") is { } lvl)
        {
            rep.TrackingLevel = (int)lvl; rep.TrackingSource = "ndis!ndisGlobalTriageBlock.NdisTrackNblOwner"; return;
        }
        foreach (var sym in new[] { "ndis!ndisTrackNblOwner", "ndis!ndisNblTrackerMode" })
        {
            if (_r.Types.TrySymbol(sym) is { } a)
            {
                if (_r.Memory.TryReadU32(a, out var v)) { rep.TrackingLevel = (int)v; rep.TrackingSource = sym; return; }
                rep.Notes.Add($"{sym} at {Output.Fmt.Addr(a)} is not readable");
            }
        }
        rep.TrackingSource = "unknown";
        rep.Notes.Add("the NBL tracking level could not be read (no triage block, ndisTrackNblOwner or ndisNblTrackerMode): treating tracking as off");
    }

    private static int Pick(StructView? tri, string triField, TypeLayout poolType, string poolField, NblOwnersReport rep)
    {
        var f = poolType.TryGetField(poolField)
            ?? throw new MissingSymbolException($"field ndis!_NDIS_NET_BUFFER_LIST_POOL.{poolField}", Module);
        int fromType = (int)f.Offset;
        if (tri?.TryUInt(triField) is { } v && v != 0)
        {
            if (v + 8 > poolType.Size)
            {
                rep.Notes.Add($"triage block {triField} = 0x{v:x} lies outside _NDIS_NET_BUFFER_LIST_POOL (0x{poolType.Size:x} bytes); using the type's offset 0x{fromType:x}");
                return fromType;
            }
            if ((int)v != fromType)
                rep.Notes.Add($"triage block {triField} = 0x{v:x} differs from _NDIS_NET_BUFFER_LIST_POOL.{poolField} at 0x{fromType:x}; using the triage value (it is what ndis itself publishes)");
            return (int)v;
        }
        return fromType;
    }

    private static int? TriU16(StructView? tri, string field) => tri?.TryUInt(field) is { } v ? (int)v : null;

    private static ulong ReadU64(StructView v, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(v.Bytes.Slice(offset, 8));

    /// <summary>
    /// Makes [address, address+length) cached before the walk reads its link. Read-ahead is adaptive: a window (one
    /// request of <see cref="Window"/> bytes) is read only once the walk has seen <see cref="StreakForWindow"/>
    /// neighbouring entries in a row (back-to-back entries of a pool's block), and it stops for good when the windows
    /// read so far served too few entries (<see cref="MinEntriesPerWindow"/> each: fewer do not pay for the window's
    /// bytes on KDNET). Otherwise just the entry is read (scattered pool: other allocations between the entries, a
    /// window would move bytes nobody uses). A pool's first entry follows the streak the previous pool ended with.
    /// </summary>
    private void EnsureWindow(ulong address, int length, ulong? previous)
    {
        int span = Math.Max(length, 1);
        ulong first = address & ~(ulong)(Window - 1);
        ulong last = (address + (ulong)span - 1) & ~(ulong)(Window - 1);
        bool inWindows = _windows.Contains(first) && _windows.Contains(last);
        if (previous is { } p)
        {
            bool neighbour = (p > address ? p - address : address - p) <= 2UL * (ulong)span;
            _streak = neighbour ? _streak + 1 : 0;
        }
        if (inWindows) { _windowHits++; return; }
        bool windowsPay = _windowsRead < 4 || _windowHits >= MinEntriesPerWindow * _windowsRead;
        if (_streak < StreakForWindow || !windowsPay) { _r.Memory.Prefetch(address, span); return; }
        for (ulong w = first; w <= last; w += Window)
            if (_windows.Add(w)) { _r.Memory.Prefetch(w, Window); _windowsRead++; }
    }

    /// <summary>Neighbouring entries in a row (list order = address order) before the walk reads a window.</summary>
    public const int StreakForWindow = 2;
    /// <summary>Entries a window must serve on average for read-ahead to go on (a 16 KB window costs as much as ~11 entry reads on KDNET).</summary>
    public const int MinEntriesPerWindow = 12;

    private void WalkPool(NblOwnersReport rep, NblPoolInfo info, ulong pool, bool ownersReadable,
        Dictionary<ulong, NblOwnerGroup> groups, Dictionary<ulong, HashSet<ulong>> groupPools)
    {
        var off = rep.Offsets;
        ulong allocHead = pool + (ulong)off.AllocatedListOffset;
        var walk = new ListWalkResult();
        int ownerOff = off.NblCurrentOwnerOffset;
        int entrySpan = off.EntryHeaderSize + Math.Max(off.NblSize, ownerOff + 8);
        // The walk reads each entry's link; the entry (or, on a contiguous layout, its window) is prefetched before the
        // walk moves on, so the next link read is served from the cache.
        int recovered = 0;
        ulong? previous = null;
        foreach (var link in _r.WalkListBothWays(allocHead, walk, MaxNblsPerPool, n => recovered = n))
        {
            if (rep.Interrupted) break;
            ulong entry = KernelReader.ContainingRecord(link, (ulong)off.EntryLinkageOffset);
            ulong nbl = entry + (ulong)off.EntryHeaderSize;
            EnsureWindow(entry, entrySpan, previous);
            previous = entry;
            info.Nbls++; rep.TotalNbls++;
            if (!ownersReadable) continue;
            if (!_r.Memory.TryReadU64(nbl + (ulong)ownerOff, out var owner))
            {
                // The engine fails reads while a Ctrl+Break is pending: that NBL is not unreadable, the walk stops.
                if (_r.Memory.IsInterruptRequested) { info.Nbls--; rep.TotalNbls--; rep.Interrupted = true; break; }
                info.Unreadable++; rep.UnreadableNbls++;
                continue;
            }
            if (owner == 0) { info.Freed++; rep.FreedNbls++; continue; }
            if (_ownerFilter is not null && owner == _ownerFilter.Value && rep.OwnerNbls!.Count < MaxOwnerListing)
                rep.OwnerNbls.Add(new NblEntry { Nbl = nbl, Pool = pool, CurrentOwner = owner });
            if (owner == info.OwnerHandle) { rep.AtHomeNbls++; continue; }
            info.Pending++; rep.PendingNbls++;
            if (!groups.TryGetValue(owner, out var g))
            {
                g = new NblOwnerGroup { Handle = owner, Oldest = nbl };
                groups[owner] = g; groupPools[owner] = new HashSet<ulong>();
            }
            g.Count++;
            groupPools[owner].Add(pool);
            if (g.Samples.Count < SamplesPerOwner) g.Samples.Add(new NblEntry { Nbl = nbl, Pool = pool, CurrentOwner = owner });
        }
        if (rep.Interrupted) return;
        if (!walk.IsComplete)
        {
            if (walk.StopReason == ListStop.Interrupted) rep.Interrupted = true;
            else
            {
                // The entry whose link could not be read was yielded and counted (as unreadable when its NBL was too).
                info.WalkNote = walk.Describe($"pool {Output.Fmt.Addr(pool)} allocated list") + Recovered(walk, recovered, "NBL(s)");
                rep.Notes.Add(info.WalkNote);
            }
        }
    }

    private static string Recovered(ListWalkResult fwd, int n, string what) =>
        fwd.StopReason is ListStop.Unreadable or ListStop.NullLink
            ? $"; walking back from the list head through Blink recovered {n} more {what}; entries between the break and those could not be reached"
            : "";

    private static void BuildVerdicts(NblOwnersReport rep)
    {
        int total = rep.TotalNbls;
        foreach (var g in rep.Owners)
        {
            string name = g.Name is null ? "" : $" '{g.Name}'";
            switch (g.Kind)
            {
                case NdisHandleKind.Miniport:
                    var ms = rep.Miniports.FirstOrDefault(m => m.Handle == g.Handle);
                    string cond = ms is null ? "in an unknown state" : MiniportCondition(ms);
                    rep.Verdicts.Add($"{g.Count} of {total} NBLs are held by miniport {g.Handle:x}{name}, which is {cond}: the miniport has not completed its NBLs");
                    break;
                case NdisHandleKind.FilterModule:
                    rep.Verdicts.Add($"{g.Count} of {total} NBLs are held by filter module {g.Handle:x}{name}: the filter has not passed on or completed its NBLs");
                    break;
                case NdisHandleKind.ProtocolOpen:
                    rep.Verdicts.Add($"{g.Count} of {total} NBLs are held by protocol open {g.Handle:x}{name}: the protocol has not returned its NBLs");
                    break;
                case NdisHandleKind.Protocol:
                    rep.Verdicts.Add($"{g.Count} of {total} NBLs are held by protocol {g.Handle:x}{name}: the protocol has not returned its NBLs");
                    break;
                default:
                    rep.Verdicts.Add($"{g.Count} of {total} NBLs are held by {g.Handle:x}, which is not on ndis's miniport, filter, open or protocol lists (stale or corrupted owner stamp?)");
                    break;
            }
        }
        if (rep.Owners.Count == 0 && rep.TotalNbls > 0)
            rep.Verdicts.Add($"no pending NBLs: all {rep.TotalNbls - rep.UnreadableNbls} readable NBLs are freed or at home");
    }

    /// <summary>"DORMANT_PAUSED after QUERY_REMOVED", "PAUSED", "RUNNING", ...</summary>
    public static string MiniportCondition(MiniportState ms)
    {
        string cond;
        if (ms.OperStatusFlags.Contains("DORMANT_PAUSED")) cond = "DORMANT_PAUSED";
        else if (ms.State is "PAUSED" or "PAUSING" or "HALTED") cond = ms.State;
        else if (ms.OperStatus is not ("" or "UP")) cond = $"{ms.State} with operational status {ms.OperStatus}";
        else cond = ms.State == "" ? "in an unknown state" : ms.State;
        if (ms.PnPState is not ("" or "STARTED")) cond += " after " + ms.PnPState;
        return cond;
    }
}

/// <summary>ndis is not loaded: a clear message, not an error.</summary>

/// <summary>
/// Identifies NDIS handles by the global list they are on: ndisMiniportList (NextGlobalMiniport),
/// ndisGlobalFilterList (NextGlobalFilter), ndisGlobalOpenList (NextGlobalOpen), ndisProtocolList (NextProtocol).
/// Each list is walked once (bounded, cycle-safe) and only when a handle is still unidentified.
/// </summary>
public sealed class NdisHandleIdentifier(KernelReader r, List<string> notes)
{
    private const string M = NblOwnersAnalyzer.Module;

    public Dictionary<ulong, (NdisHandleKind Kind, string? Name)> Identify(IReadOnlyCollection<ulong> handles)
    {
        var result = new Dictionary<ulong, (NdisHandleKind, string?)>();
        if (handles.Count == 0) return result;
        var lists = new (string Sym, string Type, string Next, NdisHandleKind Kind)[]
        {
            ("ndis!ndisMiniportList", "_NDIS_MINIPORT_BLOCK", "NextGlobalMiniport", NdisHandleKind.Miniport),
            ("ndis!ndisGlobalFilterList", "_NDIS_FILTER_BLOCK", "NextGlobalFilter", NdisHandleKind.FilterModule),
            ("ndis!ndisGlobalOpenList", "_NDIS_OPEN_BLOCK", "NextGlobalOpen", NdisHandleKind.ProtocolOpen),
            ("ndis!ndisProtocolList", "_NDIS_PROTOCOL_BLOCK", "NextProtocol", NdisHandleKind.Protocol),
        };
        foreach (var (sym, type, next, kind) in lists)
        {
            if (result.Count == handles.Count) break;
            var layout = r.Types.TryGet(M, type);
            ulong? headSym = r.Types.TrySymbol(sym);
            if (layout?.TryGetField(next) is not { } nf || headSym is null)
            {
                notes.Add($"{sym} or {M}!{type}.{next} is not in the ndis symbols: {NdisNames.Kind(kind).ToLowerInvariant()} handles cannot be identified");
                continue;
            }
            var first = r.TryReadPointer(headSym.Value);
            if (first is null) { notes.Add($"{sym} at {Output.Fmt.Addr(headSym.Value)} is not readable"); continue; }
            var walk = new ListWalkResult();
            foreach (var obj in r.WalkSingle(first.Value, nf.Offset, walk, NblOwnersAnalyzer.MaxListObjects))
                if (handles.Contains(obj) && !result.ContainsKey(obj)) result[obj] = (kind, ReadName(kind, obj));
            if (!walk.IsComplete && walk.StopReason != ListStop.Interrupted) notes.Add(walk.Describe(sym));
        }
        return result;
    }

    private string? ReadName(NdisHandleKind kind, ulong obj)
    {
        try
        {
            switch (kind)
            {
                case NdisHandleKind.Miniport:
                    return MiniportName(obj);
                case NdisHandleKind.FilterModule:
                    return StringViaPointer("_NDIS_FILTER_BLOCK", obj, "FilterFriendlyName");
                case NdisHandleKind.ProtocolOpen:
                    string? bind = StringViaPointer("_NDIS_OPEN_BLOCK", obj, "BindDeviceName") ?? StringViaPointer("_NDIS_OPEN_BLOCK", obj, "RootDeviceName");
                    string? mpName = null;
                    if (r.Types.TryGet(M, "_NDIS_OPEN_BLOCK")?.TryGetField("MiniportHandle") is { } mh && r.TryReadPointer(obj + mh.Offset) is { } mp && mp != 0)
                        mpName = MiniportName(mp);
                    return mpName is null ? bind : $"{bind ?? "open"} (bound to miniport '{mpName}')";
                case NdisHandleKind.Protocol:
                    return Embedded("_NDIS_PROTOCOL_BLOCK", obj, "Name");
            }
        }
        catch (MissingSymbolException) { }
        return null;
    }

    /// <summary>An open's bind name (BindDeviceName, else RootDeviceName).</summary>
    public string? OpenBindName(ulong open) =>
        StringViaPointer("_NDIS_OPEN_BLOCK", open, "BindDeviceName") ?? StringViaPointer("_NDIS_OPEN_BLOCK", open, "RootDeviceName");

    /// <summary>A protocol block's name (_NDIS_PROTOCOL_BLOCK.Name).</summary>
    public string? ProtocolName(ulong protocol)
    {
        try { return Embedded("_NDIS_PROTOCOL_BLOCK", protocol, "Name"); }
        catch (MissingSymbolException) { return null; }
    }

    public string? MiniportName(ulong mp) =>
        StringViaPointer("_NDIS_MINIPORT_BLOCK", mp, "pAdapterInstanceName")
        ?? Embedded("_NDIS_MINIPORT_BLOCK", mp, "MiniportName");

    private string? StringViaPointer(string type, ulong obj, string field)
    {
        var layout = r.Types.TryGet(M, type);
        if (layout?.TryGetField(field) is not { } f) return null;
        var p = r.TryReadPointer(obj + f.Offset);
        if (p is null or 0) return null;
        var s = r.ReadUnicodeString(p.Value);
        return string.IsNullOrEmpty(s) ? null : s;
    }

    private string? Embedded(string type, ulong obj, string field)
    {
        var layout = r.Types.TryGet(M, type);
        if (layout?.TryGetField(field) is not { } f) return null;
        var s = r.ReadUnicodeString(obj + f.Offset);
        return string.IsNullOrEmpty(s) ? null : s;
    }

    /// <summary>Reads the miniport block once (one request) and decodes state, PnP, operational status, references.</summary>
    public MiniportState ReadMiniportState(ulong mp)
    {
        var ms = new MiniportState { Handle = mp };
        StructView v;
        try { v = r.Read(M, "_NDIS_MINIPORT_BLOCK", mp); }
        catch (TargetReadException e) { ms.ReadNote = e.Message; return ms; }
        ms.Name = MiniportName(mp);
        if (v.TryUInt("State") is { } st) ms.State = NdisNames.MiniportState(st);
        if (v.TryUInt("PnPDeviceState") is { } pnp) ms.PnPState = NdisNames.PnPState(pnp);
        if (v.TryUInt("OldPnPDeviceState") is { } opnp) ms.OldPnPState = NdisNames.PnPState(opnp);
        if (v.TryUInt("OperStatus") is { } os) ms.OperStatus = NdisNames.OperStatus(os);
        if (v.TryUInt("OperStatusFlags") is { } osf) ms.OperStatusFlags = NdisNames.OperStatusFlags((uint)osf);
        if (v.TryUInt("MediaConnectState") is { } mc) ms.MediaConnectState = NdisNames.MediaConnect(mc);
        if (v.TryUInt("Ref.ReferenceCount") is { } rc) ms.References = (long)rc;
        if (v.TryUInt("ShortRef.ReferenceCount") is { } src) ms.ShortReferences = (long)src;
        if (v.Length < (int)v.Layout.Size) ms.ReadNote = $"miniport block {Output.Fmt.Addr(mp)} only partly readable (0x{v.Length:x} of 0x{v.Layout.Size:x} bytes)";
        if (v.TryUInt("DriverHandle") is { } drv && drv != 0)
        {
            var dl = r.Types.TryGet(M, "_NDIS_M_DRIVER_BLOCK");
            if (dl?.TryGetField("ServiceName") is { } sn) ms.DriverName = r.ReadUnicodeString(drv + sn.Offset);
        }
        return ms;
    }
}
