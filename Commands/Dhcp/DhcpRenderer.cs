using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Dhcp;

public static class DhcpRenderer
{
    private static string Utc(DateTime t) => t.ToString("yyyy-MM-dd HH:mm:ss") + " UTC";

    public static Doc RenderLease(LeaseCalculation c)
    {
        var d = new Doc();
        if (c.IsInfiniteLease)
            return d.Line("Lease 0xFFFFFFFF = infinite: the client never renews, no timers are scheduled.");
        d.Line($"Lease {LeaseMath.Span((long)c.LeaseSeconds)} ({c.LeaseSeconds:N0} s = 0x{c.LeaseSeconds:x8})");
        d.Line($"  {"timer",-7} {"after start",-14} {"seconds",13} {"milliseconds",17}  32-bit wait");
        foreach (var w in c.Waits)
        {
            d.Text($"  {w.Timer,-7} {LeaseMath.Span(w.Seconds),-14} {w.Seconds,13:N0} {w.Milliseconds,17:N0}  ");
            if (w.Overflows32) d.Bold("OVERFLOW").Line($" (low 32 bits 0x{w.Truncated32:x8} = {w.Truncated32:N0} ms = {LeaseMath.Span(w.Truncated32 / 1000)}; saturated: 0xFFFFFFFF = INFINITE)");
            else d.Line("fits");
        }
        d.Line($"A finite 32-bit millisecond wait reaches at most {LeaseMath.MaxFiniteWaitMs:N0} ms = {LeaseMath.Span((long)LeaseMath.MaxWaitSeconds)} (49.7 days); any lease with T1 beyond that (lease > 99.4 days) overflows.");
        if (c.AnyOverflow)
            d.Bold("Verdict: ").Line($"with this lease a client that computes its wait in 32-bit milliseconds cannot wait for {string.Join(", ", c.Waits.Where(w => w.Overflows32).Select(w => w.Timer))}: it waits INFINITE or a truncated time and misses the renewal (the Windows 7 / 2008 R2 DHCP client bug, fixed in Windows 10 1903).");
        else
            d.Bold("Verdict: ").Line("every timer fits a 32-bit millisecond wait.");
        return d;
    }

    public static Doc Render(DhcpTimerReport r, bool verbose)
    {
        var d = new Doc();
        d.Text("DHCP client lease timers: ").Link(r.Module ?? "dhcpcore", "lmvm dhcpcore").Text($" {r.ModuleVersion} at ").Addr(r.ModuleBase, "lmvm dhcpcore");
        d.Line(r.NowUtc is { } now ? $"; now {Utc(now)} ({r.NowSource})" : "; current time unknown");
        d.Text("DhcpGlobalNICList at ").Addr(r.NicListHead, $"dq {r.NicListHead:x} L2").Line($": {r.Adapters.Count} adapter context(s)");
        foreach (var a in r.Adapters)
        {
            d.Line();
            d.Text("Adapter ").Text(a.Name is null ? "(name not found)" : Fmt.Clean(a.Name)).Text(" context ").Addr(a.Context, $"dq {a.Context:x} L80");
            if (a.IpAddress is not null) d.Text($"  IP {a.IpAddress} mask {a.SubnetMask}");
            if (a.LeaseSeconds is { } ls) d.Text($"  lease {LeaseMath.Span(ls)} ({ls:N0} s)");
            if (a.TimeUnit is { } tu) d.Text($", times as {UnitName(tu)}");
            d.Line();
            foreach (var t in a.Timers)
            {
                d.Text($"  {t.Name,-9}{Utc(t.Utc)}");
                if (t.Relative is not null) d.Text($"  ({t.Relative})");
                if (t.Name == "RunTime")
                {
                    var same = a.Timers.FirstOrDefault(o => o.Name != "RunTime" && o.Utc == t.Utc);
                    if (same is not null) d.Text($"  == {same.Name}");
                }
                if (verbose) d.Text($"  [context+0x{t.Offset:x}]");
                d.Line();
            }
            d.Text("  ").Bold(VerdictLabel(a.Verdict)).Line(": " + a.VerdictText);
            if (a.WaitWhenScheduled is { } ws) WriteWait(d, ws, "when scheduled");
            if (a.WaitFromNow is { } wn && wn.Seconds > 0) WriteWait(d, wn, "from now");
            foreach (var n in a.Notes) d.Line("  note: " + n);
        }
        if (r.MainThread is { } m)
        {
            d.Line();
            d.Text("Main thread ").Link($"{m.ThreadId:x}", $"~~[{m.ThreadId:x}]kL").Text(": dhcpcore!ProcessDhcpRequestForever");
            d.Line(m.InWaitForMultipleObjectsEx ? " waiting in WaitForMultipleObjectsEx" : " (not in WaitForMultipleObjectsEx)");
            if (m.TimeoutNote is not null) d.Line("  " + m.TimeoutNote);
            if (verbose) foreach (var f in m.Frames) d.Line("    " + Fmt.Clean(f));
        }
        else if (r.Adapters.Count > 0) d.Line().Line("No thread in dhcpcore!ProcessDhcpRequestForever was found (or the target cannot list thread stacks).");
        foreach (var n in r.Notes) d.Line("note: " + n);
        return d;
    }

    private static void WriteWait(Doc d, WaitCheck w, string when)
    {
        d.Text($"  32-bit wait {when}: {w.Timer} = {w.Seconds:N0} s = {w.Milliseconds:N0} ms ");
        if (w.Overflows32)
            d.Bold("> 0xFFFFFFFE: OVERFLOW").Line($" (low 32 bits 0x{w.Truncated32:x8} = {LeaseMath.Span(w.Truncated32 / 1000)}; saturated: INFINITE)");
        else d.Line("fits");
    }

    private static string UnitName(LeaseTimeUnit u) => u switch
    {
        LeaseTimeUnit.UnixSeconds64 => "64-bit time_t",
        LeaseTimeUnit.UnixSeconds32 => "32-bit time_t",
        _ => "FILETIME",
    };

    private static string VerdictLabel(DhcpVerdict v) => v switch
    {
        DhcpVerdict.RenewalPending => "OK",
        DhcpVerdict.RenewalMissed => "RENEWAL MISSED",
        DhcpVerdict.Overdue => "OVERDUE",
        DhcpVerdict.Expired => "EXPIRED",
        DhcpVerdict.NotRecognised => "NOT RECOGNISED",
        _ => "UNREADABLE",
    };
}
