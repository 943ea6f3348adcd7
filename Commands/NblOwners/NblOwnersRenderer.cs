using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.NblOwners;

/// <summary>Renders <see cref="NblOwnersReport"/> as a <see cref="Doc"/> (text or DML; every target string escaped).</summary>
public static class NblOwnersRenderer
{
    public static Doc Render(NblOwnersReport r, bool verbose = false)
    {
        var d = new Doc();
        d.Text("NBL tracking: ");
        if (r.TrackingOn) d.Text($"ON (TrackNblOwner = {r.TrackingLevel}, from {r.TrackingSource})").Line();
        else
        {
            d.Bold($"OFF (TrackNblOwner = {(r.TrackingLevel?.ToString() ?? "unknown")}, from {r.TrackingSource})").Line();
            if (r.Guidance is not null) d.Line(r.Guidance);
            d.Line("Pending NBLs cannot be attributed to an owner; the pools, their owners and allocated counts follow.");
        }
        d.Text("NBL pools: ").Text(r.PoolCount.ToString());
        if (r.PoolFilter is not null) d.Text($" (showing {Fmt.Addr(r.PoolFilter.Value)})");
        d.Text($"   NBLs: {r.TotalNbls} total");
        if (r.TrackingOn) d.Text($", {r.FreedNbls} freed, {r.PendingNbls} pending, {r.AtHomeNbls} at home");
        if (r.UnreadableNbls > 0) d.Text($", {r.UnreadableNbls} unreadable");
        if (r.UnreadablePools > 0) d.Text($"   ({r.UnreadablePools} pool(s) unreadable)");
        d.Line();
        if (r.Interrupted) d.Bold("Interrupted (Ctrl+Break): the result below is partial (see the notes).").Line();
        if (verbose)
        {
            var o = r.Offsets;
            d.Line($"Offsets ({o.Source}): pool link +0x{o.PoolLinkOffset:x}, allocated list +0x{o.AllocatedListOffset:x}, owner handle +0x{o.OwnerHandleOffset:x}, " +
                   $"entry linkage +0x{o.EntryLinkageOffset:x}, entry header 0x{o.EntryHeaderSize:x}, NBL size 0x{o.NblSize:x}, current owner +0x{o.NblCurrentOwnerOffset:x}");
        }
        d.Line();

        d.Line("Pools");
        d.Line(r.TrackingOn
            ? "  Pool               Tag   NBLs  Freed  Pending  Owner (allocating driver)"
            : "  Pool               Tag   NBLs (allocated)  Owner (allocating driver)");
        foreach (var p in r.Pools)
        {
            d.Text("  ").Link(Fmt.Addr(p.Address), $"!ndiskd.nblpool {p.Address:x}").Text("  ");
            if (!p.Readable) { d.Text("(unreadable)").Line(); continue; }
            d.Text(Fmt.Clean(p.Tag).PadRight(4));
            if (r.TrackingOn) d.Text($"  {p.Nbls,5}  {p.Freed,5}  {p.Pending,7}  ");
            else d.Text($"  {p.Nbls,16}  ");
            OwnerRef(d, p.OwnerHandle, p.OwnerKind, p.OwnerName);
            if (p.Unreadable > 0) d.Text($"  [{p.Unreadable} unreadable]");
            d.Line();
        }

        if (r.TrackingOn)
        {
            d.Line();
            d.Line($"Pending NBLs by current owner ({r.PendingNbls} of {r.TotalNbls})");
            if (r.Owners.Count == 0) d.Line("  none");
            foreach (var g in r.Owners)
            {
                d.Text("  ");
                OwnerRef(d, g.Handle, g.Kind, g.Name);
                d.Text($"  holds {g.Count} NBL(s) from {g.PoolCount} pool(s)").Line();
                d.Text("      oldest ").Link(Fmt.Addr(g.Oldest), $"!ndiskd.nbl {g.Oldest:x}");
                d.Text("  samples");
                foreach (var s in g.Samples) d.Text(" ").Link(Fmt.Addr(s.Nbl), $"!ndiskd.nbl {s.Nbl:x}");
                d.Text("  ").Link("[dt]", $"dt ndis!_NET_BUFFER_LIST {g.Oldest:x}").Line();
            }
        }

        if (r.Miniports.Count > 0)
        {
            d.Line();
            d.Line(r.TrackingOn ? "Owning miniports" : "Miniports owning NBL pools");
            foreach (var m in r.Miniports)
            {
                d.Text("  ").Link(Fmt.Addr(m.Handle), $"!ndiskd.miniport {m.Handle:x}");
                d.Text(" '").Text(Fmt.Clean(m.Name ?? "?")).Text("'");
                if (m.DriverName is not null) d.Text("  driver ").Text(Fmt.Clean(m.DriverName));
                d.Line();
                if (m.ReadNote is not null) d.Line("      " + m.ReadNote);
                d.Text($"      State {Or(m.State)}   PnP {Or(m.PnPState)}");
                if (m.OldPnPState != "" && m.OldPnPState != m.PnPState) d.Text($" (was {m.OldPnPState})");
                d.Text($"   Operational status {Or(m.OperStatus)}");
                if (m.OperStatusFlags is not ("" or "NONE")) d.Text($" ({m.OperStatusFlags})");
                d.Line();
                d.Text($"      References {(m.References?.ToString() ?? "?")}");
                if (m.ShortReferences is not null) d.Text($" (short {m.ShortReferences})");
                if (m.MediaConnectState != "") d.Text($"   Media {m.MediaConnectState}");
                if (r.TrackingOn) d.Text($"   Pending NBLs held {m.PendingHeld}");
                d.Line();
            }
        }

        if (r.Opens.Count > 0)
        {
            d.Line();
            d.Line("Protocol opens bound to these miniports");
            foreach (var o in r.Opens)
            {
                d.Text("  ").Link(Fmt.Addr(o.Handle), $"!ndiskd.mopen {o.Handle:x}");
                if (o.Protocol is not null) d.Text(" protocol ").Text(Fmt.Clean(o.Protocol));
                d.Text(" -> miniport ").Link(Fmt.Addr(o.Miniport), $"!ndiskd.miniport {o.Miniport:x}");
                d.Text($"   References {(o.References?.ToString() ?? "-")}   Outstanding sends {(o.OutstandingSends?.ToString() ?? "-")}");
                d.Line();
                if (o.BindName is not null) d.Text("      bound to ").Text(Fmt.Clean(o.BindName)).Line();
            }
        }

        if (r.ReceivePaths.Count > 0)
        {
            d.Line();
            d.Line("Receive path (the miniport driver's own buffer lists)");
            foreach (var p in r.ReceivePaths)
            {
                d.Text("  miniport ").Link(Fmt.Addr(p.Miniport), $"!ndiskd.miniport {p.Miniport:x}").Text("  ").Text(Fmt.Clean(p.AdapterType));
                if (p.AdapterContext != 0) d.Text(" ").Link(Fmt.Addr(p.AdapterContext), $"dt {Fmt.Clean(p.AdapterType)} {p.AdapterContext:x}");
                d.Line();
                d.Text($"      NetReceiveBuffers {(p.FreeListed?.ToString() ?? "?")} free   NetNofReceiveBuffers {(p.NetNofReceiveBuffers?.ToString() ?? "?")}   NetReceiveBuffersWaiting {(p.Waiting?.ToString() ?? "?")} (held above the miniport)").Line();
                if (p.Note is not null) d.Text("      ").Text(Fmt.Clean(p.Note)).Line();
            }
        }

        if (r.SendPath is { } sp)
        {
            d.Line();
            d.Text("Send path: ").Text(Fmt.Clean(sp.Symbol)).Text(" ").Link(Fmt.Addr(sp.Address), $"dq {sp.Address:x} L1").Line();
            if (sp.PerCpu.Count > 0)
                d.Line($"  sends in flight {sp.InFlight} (per CPU: {string.Join(" ", sp.PerCpu)}; {sp.Layout})" + (sp.Unreadable > 0 ? $", {sp.Unreadable} CPU slot(s) unreadable" : ""));
            if (sp.Note is not null) d.Text("  ").Text(Fmt.Clean(sp.Note)).Line();
        }

        if (r.OwnerNbls is not null)
        {
            d.Line();
            d.Line($"NBLs currently held by {Fmt.Addr(r.OwnerFilter ?? 0)}: {r.OwnerNbls.Count}");
            foreach (var e in r.OwnerNbls)
            {
                d.Text("  ").Link(Fmt.Addr(e.Nbl), $"!ndiskd.nbl {e.Nbl:x}").Text("  pool ")
                 .Link(Fmt.Addr(e.Pool), $"!ndiskd.nblpool {e.Pool:x}").Text("  ")
                 .Link("[dt]", $"dt ndis!_NET_BUFFER_LIST {e.Nbl:x}").Line();
            }
        }

        if (r.Verdicts.Count > 0)
        {
            d.Line();
            foreach (var v in r.Verdicts) d.Text("Verdict: ").Bold(Fmt.Clean(v)).Line();
        }
        if (r.CannotTell.Count > 0)
        {
            d.Line();
            d.Line("What this build / this dump cannot tell:");
            foreach (var n in r.CannotTell) d.Line("  " + Fmt.Clean(n));
        }
        if (r.Notes.Count > 0)
        {
            d.Line();
            d.Line("Notes:");
            foreach (var n in r.Notes) d.Line("  " + Fmt.Clean(n));
        }
        return d;
    }

    private static string Or(string s) => s == "" ? "?" : s;

    private static void OwnerRef(Doc d, ulong handle, NdisHandleKind kind, string? name)
    {
        if (handle == 0) { d.Text("(none)"); return; }
        string cmd = kind switch
        {
            NdisHandleKind.Miniport => $"!ndiskd.miniport {handle:x}",
            NdisHandleKind.FilterModule => $"!ndiskd.filter {handle:x}",
            NdisHandleKind.ProtocolOpen => $"!ndiskd.mopen {handle:x}",
            NdisHandleKind.Protocol => $"!ndiskd.protocol {handle:x}",
            _ => $"!pool {handle:x} 2",
        };
        d.Link(Fmt.Addr(handle), cmd).Text($" [{NdisNames.Kind(kind)}]");
        if (name is not null) d.Text(" ").Text(Fmt.Clean(name));
    }
}
