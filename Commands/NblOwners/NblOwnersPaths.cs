using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.NblOwners;

/// <summary>
/// What !nblowners reads besides the NBL pools, for the builds where owner stamps alone do not tell the story (seed 001,
/// Windows Server 2008 R2): the protocol opens bound to the reported miniports with their reference and outstanding-send
/// counters, the miniport driver's own receive lists (netkvm's PARANDIS_ADAPTER: NetReceiveBuffers / NetNofReceiveBuffers /
/// NetReceiveBuffersWaiting), tcpip's per-CPU send rundown (tcpip!Provider_Rundown_Protection) and what the build's ndis
/// cannot tell. Everything is resolved by name from the target's symbols; a missing type, field or symbol gives a note.
/// </summary>
public sealed class NblOwnersPaths(KernelReader r, NblOwnersReport rep)
{
    private const string M = NblOwnersAnalyzer.Module;
    public const int MaxOpens = 4096;
    public const int MaxReceiveBuffers = 100_000;
    /// <summary>Adapter-context types known to hold a miniport's receive lists (netkvm's, as the seed reads it).</summary>
    public static readonly string[] AdapterTypes = ["_tagPARANDIS_ADAPTER", "PARANDIS_ADAPTER"];
    public const string RundownSymbol = "tcpip!Provider_Rundown_Protection";

    public void ReadAll(NdisHandleIdentifier ident)
    {
        var miniports = rep.Miniports.Select(m => m.Handle).ToHashSet();
        ReadOpens(miniports, ident);
        foreach (var ms in rep.Miniports) ReadReceivePath(ms);
        ReadSendPath();
        BuildLimits();
    }

    private void ReadOpens(HashSet<ulong> miniports, NdisHandleIdentifier ident)
    {
        if (miniports.Count == 0) return;
        var ol = r.Types.TryGet(M, "_NDIS_OPEN_BLOCK");
        ulong? head = r.Types.TrySymbol("ndis!ndisGlobalOpenList");
        if (ol?.TryGetField("NextGlobalOpen") is not { } next || ol.TryGetField("MiniportHandle") is null || head is null)
        {
            rep.Notes.Add("ndis!ndisGlobalOpenList or _NDIS_OPEN_BLOCK.NextGlobalOpen/MiniportHandle is not in the ndis symbols: the opens bound to the miniports are not shown");
            return;
        }
        var first = r.TryReadPointer(head.Value);
        if (first is null) { rep.Notes.Add($"ndis!ndisGlobalOpenList at {head:x} is not readable: opens not shown"); return; }
        var walk = new ListWalkResult();
        foreach (var o in r.WalkSingle(first.Value, next.Offset, walk, MaxOpens))
        {
            StructView v;
            try { v = r.Read(ol, o); } catch (TargetReadException e) { rep.Notes.Add($"open {o:x}: {e.Message}"); continue; }
            ulong mp = v.TryUInt("MiniportHandle") ?? 0;
            if (!miniports.Contains(mp)) continue;
            var os = new OpenState { Handle = o, Miniport = mp };
            if (v.TryUInt("References") is { } refs) os.References = (int)(uint)refs;
            if (v.TryUInt("OutstandingSends") is { } sends) os.OutstandingSends = (int)(uint)sends;
            os.BindName = ident.OpenBindName(o);
            if (v.TryUInt("ProtocolHandle") is { } ph && ph != 0) os.Protocol = ident.ProtocolName(ph);
            rep.Opens.Add(os);
            if (r.Memory.IsInterruptRequested) { rep.Interrupted = true; break; }
        }
        if (!walk.IsComplete && walk.StopReason != ListStop.Interrupted) rep.Notes.Add(walk.Describe("ndis!ndisGlobalOpenList"));
        if (rep.Opens.Count > 0 && !ol.HasField("OutstandingSends") && !ol.HasField("References"))
            rep.CannotTell.Add("per-open reference and outstanding-send counts: _NDIS_OPEN_BLOCK has neither References nor OutstandingSends in these symbols");
    }

    private void ReadReceivePath(MiniportState ms)
    {
        if (ms.DriverName is not { Length: > 0 } driver) return;
        string module = driver.Trim();
        if (module.Any(c => !(char.IsLetterOrDigit(c) || c is '_' or '-'))) return;
        TypeLayout? at = null;
        string? typeName = null;
        foreach (var t in AdapterTypes)
        {
            try { at = r.Types.TryGet(module, t); } catch (Exception e) when (e is MissingSymbolException or ArgumentException) { at = null; }
            if (at is not null) { typeName = t; break; }
        }
        if (at is null || typeName is null) return; // not a driver whose receive lists we know
        var rp = new ReceivePath { Miniport = ms.Handle, Driver = driver, AdapterType = $"{module}!{typeName}" };
        rep.ReceivePaths.Add(rp);
        var ctxField = r.Types.TryGet(M, "_NDIS_MINIPORT_BLOCK")?.TryGetField("MiniportAdapterContext");
        if (ctxField is null) { rp.Note = "_NDIS_MINIPORT_BLOCK.MiniportAdapterContext is not in the ndis symbols: the adapter context cannot be found"; return; }
        var ctx = r.TryReadPointer(ms.Handle + ctxField.Offset);
        if (ctx is null or 0) { rp.Note = $"miniport {ms.Handle:x}: MiniportAdapterContext is {(ctx is null ? "not readable" : "NULL")}"; return; }
        rp.AdapterContext = ctx.Value;
        StructView v;
        try { v = r.Read(at, ctx.Value); } catch (TargetReadException e) { rp.Note = $"adapter context {ctx:x}: {e.Message}"; return; }
        if (v.TryUInt("NetNofReceiveBuffers") is { } n) rp.NetNofReceiveBuffers = (long)n;
        rp.FreeListed = CountList(at, ctx.Value, "NetReceiveBuffers", rp);
        rp.Waiting = CountList(at, ctx.Value, "NetReceiveBuffersWaiting", rp);
        if (rp.FreeListed is null && rp.Waiting is null && rp.NetNofReceiveBuffers is null)
            rp.Note ??= $"{rp.AdapterType} has none of NetReceiveBuffers, NetNofReceiveBuffers, NetReceiveBuffersWaiting";
        string name = ms.Name is null ? "" : $" '{ms.Name}'";
        if (rp.Starved)
            rep.Verdicts.Add($"miniport {ms.Handle:x}{name} ({driver}) has no free receive buffers: NetReceiveBuffers is empty (NetNofReceiveBuffers {rp.NetNofReceiveBuffers?.ToString() ?? "?"}) " +
                             $"and {rp.Waiting} buffers wait on NetReceiveBuffersWaiting for NDIS to return them: they are held above the miniport (indicated up, not returned), so the NIC cannot receive");
    }

    private int? CountList(TypeLayout at, ulong ctx, string field, ReceivePath rp)
    {
        if (at.TryGetField(field) is not { } f) return null;
        var walk = new ListWalkResult();
        int n = r.WalkList(ctx + f.Offset, walk, MaxReceiveBuffers).Count();
        if (!walk.IsComplete)
        {
            if (walk.StopReason == ListStop.Interrupted) rep.Interrupted = true;
            else rp.Note = (rp.Note is null ? "" : rp.Note + "; ") + walk.Describe($"{field} list") + $" ({n} counted)";
            // Nothing counted from a broken list is no count at all (an unreadable free list is not an empty one).
            if (n == 0) return null;
        }
        return n;
    }

    private void ReadSendPath()
    {
        ulong? sym = r.Types.TrySymbol(RundownSymbol);
        int build = 0;
        try { build = r.Target.Info.BuildNumber; } catch { }
        // The seed's note is about Windows Server 2008 R2 (7600/7601), where engineers used to read the open's references.
        bool appliesByBuild = build is 7600 or 7601;
        if (sym is null)
        {
            if (appliesByBuild && rep.Opens.Count > 0)
                rep.Notes.Add($"send path: from Windows Server 2008 R2 on, tcpip counts its sends in the per-CPU rundown {RundownSymbol}, not in the open's references; that symbol is not loaded (.reload tcpip.sys), so pending sends cannot be counted here");
            return;
        }
        var sp = new SendPath { Symbol = RundownSymbol, Address = sym.Value };
        rep.SendPath = sp;
        sp.Note = "from Windows Server 2008 R2 on, the open's references no longer count sends: tcpip holds one rundown reference per send in flight, per CPU";
        var ca = r.Types.TryGet("tcpip", "_EX_RUNDOWN_REF_CACHE_AWARE") ?? r.Types.TryGet("nt", "_EX_RUNDOWN_REF_CACHE_AWARE");
        if (ca is null || ca.TryGetField("RunRefs") is null || ca.TryGetField("RunRefSize") is null || ca.TryGetField("Number") is null)
        {
            sp.Note += "; the type _EX_RUNDOWN_REF_CACHE_AWARE (RunRefs, RunRefSize, Number) is not in the tcpip or nt symbols, so the per-CPU counts cannot be decoded";
            return;
        }
        // The symbol holds a pointer to the cache-aware rundown (ExAllocateCacheAwareRundownProtection); an inline structure
        // is accepted too. The shape that passes the checks is used and named.
        foreach (var (addr, how) in Candidates(sym.Value))
        {
            StructView v;
            try { v = r.Read(ca, addr); } catch (TargetReadException) { continue; }
            ulong refs = v.TryUInt("RunRefs") ?? 0, size = v.TryUInt("RunRefSize") ?? 0, number = v.TryUInt("Number") ?? 0;
            if (refs == 0 || size < 8 || size > 0x1000 || size % 8 != 0 || number == 0 || number > 2048) continue;
            sp.Layout = how;
            sp.CacheAware = addr;
            var buf = new byte[checked((int)(size * number))];
            int got = r.Memory.Read(refs, buf);
            for (int i = 0; i < (int)number; i++)
            {
                int o = (int)size * i;
                if (o + 8 > got) { sp.Unreadable++; continue; }
                ulong count = BitConverter.ToUInt64(buf, o);
                sp.PerCpu.Add((long)(count >> 1)); // EX_RUNDOWN_REF: bit 0 = rundown active, the count above it
            }
            sp.InFlight = sp.PerCpu.Sum();
            return;
        }
        sp.Note += $"; {RundownSymbol} at {sym:x} does not hold a recognisable cache-aware rundown (pointer or inline): counts not shown";
    }

    private IEnumerable<(ulong Addr, string How)> Candidates(ulong sym)
    {
        if (r.TryReadPointer(sym) is { } p && p != 0) yield return (p, "pointer to _EX_RUNDOWN_REF_CACHE_AWARE");
        yield return (sym, "inline _EX_RUNDOWN_REF_CACHE_AWARE");
    }

    /// <summary>What this build's ndis (as its symbols show it) and this dump cannot tell, said plainly.</summary>
    private void BuildLimits()
    {
        if (!rep.TrackingOn)
            rep.CannotTell.Add("which driver holds each NBL: NBL owner tracking is off (TrackNblOwner 0; the default on servers), so NDIS stamped no current owner; pools and allocated counts only");
        var tri = r.Types.TryGet(M, "_NDIS_GLOBAL_TRIAGE_BLOCK");
        bool tracker = r.Types.TryGet(M, "_NDIS_NBL_TRACKER") is not null || tri?.HasField("NblTrackerContextOffset") == true;
        if (!tracker)
            rep.CannotTell.Add("an NBL's history (!ndiskd.nbl -log) or who held it before: this ndis has no NBL tracker or history log (Windows 8 and later); at most the most recent owner is stamped (TrackNblOwner 1, Windows 7 SP1 / 2008 R2 SP1)");
        if (!rep.TrackingOn && rep.ReceivePaths.Count == 0 && rep.Miniports.Count > 0)
            rep.CannotTell.Add("a miniport's own free / waiting receive buffers: they live in the miniport driver's private adapter context, whose type is known here only for netkvm (PARANDIS_ADAPTER)");
    }
}
