using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.AlpcChain;

/// <summary>Renders an <see cref="AlpcChainReport"/> as a <see cref="Doc"/> (text or DML; every target string escaped).</summary>
public static class AlpcChainRenderer
{
    private static string H(ulong a) => "0x" + a.ToString("x");

    /// <summary>One line: winlogon.exe (384.1e2c) -> LogonUI.exe (1ac) -> ... -> svchost.exe (574.1ea0): blocked 4:21:40 in Executive wait, IRP ...</summary>
    public static string SummaryLine(AlpcWaitChain c)
    {
        var parts = new List<string>();
        for (int i = 0; i < c.Hops.Count; i++)
        {
            var w = c.Hops[i].Waiter;
            parts.Add(i == 0 ? $"{Fmt.Clean(w.Image)} ({w.Cid})" : $"{Fmt.Clean(w.Image)} ({w.Pid:x})");
        }
        string tail;
        switch (c.End)
        {
            case ChainEnd.Blocker when c.Blocker is { } b:
                parts.Add($"{Fmt.Clean(b.Image)} ({b.Cid})");
                tail = $"blocked {b.WaitTime ?? $"{b.Ticks} ticks"} in {b.WaitReason} wait";
                foreach (var irp in b.Irps.Take(1))
                    tail += $", IRP {irp.Address:x}{(irp.Driver is null ? "" : " " + Fmt.Clean(irp.Driver))}{(string.IsNullOrEmpty(irp.FileName) ? "" : " " + Fmt.Clean(irp.FileName))}";
                if (b.Irps.Count > 1) tail += $" (+{b.Irps.Count - 1} more IRPs)";
                if (b.State != "Waiting") tail = $"blocker is {b.State}";
                if (c.WorkQueue is { } wq) tail += " -> " + Fmt.Clean(wq.Verdict);
                break;
            case ChainEnd.ServerNotReceiving:
                var p = c.IdlePort;
                parts.Add($"{Fmt.Clean(p?.OwnerImage ?? "?")} ({p?.OwnerPid ?? 0:x})");
                tail = $"server not receiving: no server thread took the message queued at port {Fmt.Addr(p?.Address ?? 0)}"
                       + (p?.MainQueueLength is { } q ? $", {q} message(s) in its main queue" : "");
                break;
            case ChainEnd.Deadlock:
                tail = "DEADLOCK: " + string.Join(" -> ", c.CycleMembers.Select(m => $"{Fmt.Clean(m.Image)} ({m.Cid})")) + " -> back to the first";
                break;
            case ChainEnd.Unreadable:
                tail = "chain incomplete: the next hop could not be read";
                break;
            case ChainEnd.Interrupted:
                tail = "interrupted";
                break;
            default:
                tail = $"stopped after {c.Hops.Count} hops";
                break;
        }
        return string.Join(" -> ", parts) + ": " + tail;
    }

    public static Doc Render(AlpcChainReport r, bool verbose)
    {
        var d = new Doc();
        if (r.Problem is not null)
        {
            d.Text("!alpcchain: ").Line(Fmt.Clean(r.Problem));
            if (r.StartThread is { } st)
            {
                d.Text("  ");
                ThreadRef(d, st);
                d.Line();
                Irps(d, st, "  ");
            }
        }
        if (r.Mode != "thread")
            d.Line($"{r.Chains.Count} chain(s) from {r.Chains.Sum(c => c.Waiters)} waiting thread(s); {r.ThreadsExamined} threads examined{(r.Interrupted ? " (INTERRUPTED: partial)" : "")}");
        for (int ci = 0; ci < r.Chains.Count; ci++)
        {
            var c = r.Chains[ci];
            if (ci > 0 || r.Mode != "thread") d.Line();
            d.Bold(Fmt.Clean(c.Summary)).Line();
            if (c.Waiters > 1)
            {
                d.Text($"  {c.Waiters} waiting threads share this chain:");
                foreach (var w in c.WaiterThreads.Take(verbose ? int.MaxValue : 16)) { d.Text(" "); d.Addr(w, $"!thread {H(w)}"); }
                if (!verbose && c.WaiterThreads.Count > 16) d.Text(" ...");
                d.Line();
            }
            for (int i = 0; i < c.Hops.Count; i++) Hop(d, c.Hops[i], i + 1, verbose);
            End(d, c, verbose);
            foreach (var n in c.Notes) d.Text("  note: ").Line(Fmt.Clean(n));
        }
        foreach (var n in r.Notes) d.Text("note: ").Line(Fmt.Clean(n));
        if (r.Reads is { } f && (verbose || r.Chains.Count > 0))
            d.Line($"reads: {f.RoundTrips + f.SetupRoundTrips} round trips, {f.Bytes + f.SetupBytes:N0} bytes; {f.Hops} hop(s) at {f.RoundTripsPerHop} round trips and {f.BytesPerHop:N0} bytes per hop"
                   + (f.BlockerRoundTrips > 0 ? $", blocker details {f.BlockerRoundTrips} round trips / {f.BlockerBytes:N0} bytes" : "")
                   + (f.WorkQueueRoundTrips > 0 ? $", work queues {f.WorkQueueRoundTrips} round trips / {f.WorkQueueBytes:N0} bytes" : "")
                   + $", clock {f.SetupRoundTrips}; modelled KDNET {f.ModelledKdnetSeconds:0.000} s");
        return d;
    }

    private static void ThreadRef(Doc d, AlpcThread t)
    {
        d.Text("THREAD ").Addr(t.Address, $"!thread {H(t.Address)}").Text(" ");
        d.Link(Fmt.Clean(t.Image), $"!process {H(t.Process)} 1").Text($" {t.Cid}");
        if (t.State == "Waiting")
            d.Text($"  {t.WaitReason} ({t.WaitMode}) {t.WaitTime ?? "?"} ({t.Ticks} ticks)");
        else d.Text($"  {t.State}");
    }

    private static void Hop(Doc d, AlpcHop h, int n, bool verbose)
    {
        d.Text($"[{n}] ");
        ThreadRef(d, h.Waiter);
        d.Line();
        if (h.Message is { } m)
        {
            d.Text("    waits for reply to ALPC message ").Addr(m.Address, $"!alpc /m {H(m.Address)}");
            d.Text($" id 0x{m.MessageId:x} {m.Type} seq 0x{m.Sequence:x} data 0x{m.DataLength:x}");
            if (verbose) { d.Text($" total 0x{m.TotalLength:x} callback 0x{m.CallbackId:x} {m.QueueType} owner port "); d.Addr(m.OwnerPort, $"!alpc /p {H(m.OwnerPort)}"); d.Text(" "); d.Link("dt", $"dt nt!_KALPC_MESSAGE {H(m.Address)}"); }
            d.Line();
        }
        if (h.QueuePort is { } p)
        {
            d.Text("    queued at port ").Addr(p.Address, $"!alpc /p {H(p.Address)}").Text(" owned by ");
            d.Link($"{Fmt.Clean(p.OwnerImage ?? "?")} ({p.OwnerPid:x})", $"!process {H(p.OwnerProcess)} 1");
            if (verbose) d.Text($" main queue {p.MainQueueLength?.ToString() ?? "?"}, pending queue {p.PendingQueueLength?.ToString() ?? "?"}");
            d.Line();
        }
        if (h.ServerThread != 0)
        {
            d.Text("    server thread ").Addr(h.ServerThread, $"!thread {H(h.ServerThread)}");
            d.Line(h.Next switch { "direct" => " waits for an ALPC reply itself: next hop", "inferred" => "", _ => "" });
        }
        if (h.Next == "inferred" && h.ServerThreadState is { } s)
        {
            d.Text("      ");
            ThreadRef(d, s);
            d.Line();
            foreach (var o in s.WaitObjects) { d.Text("        waits on ").Addr(o.Address, $"dt nt!_DISPATCHER_HEADER {H(o.Address)}").Line(" " + o.Type); }
            d.Text("    ").Line(Fmt.Clean(h.Inference));
        }
        if (verbose) d.Line($"    ({h.RoundTrips} round trips, {h.Bytes:N0} bytes for this hop)");
    }

    private static void End(Doc d, AlpcWaitChain c, bool verbose)
    {
        switch (c.End)
        {
            case ChainEnd.Blocker when c.Blocker is { } b:
                d.Text("BLOCKER ");
                ThreadRef(d, b);
                d.Line();
                d.Text("    process ").Addr(b.Process, $"!process {H(b.Process)} 1").Line($" {Fmt.Clean(b.Image)}, wait started at tick {b.WaitTick}");
                foreach (var o in b.WaitObjects) { d.Text("    waits on ").Addr(o.Address, $"dt nt!_DISPATCHER_HEADER {H(o.Address)}").Line(" " + o.Type); }
                Irps(d, b, "    ");
                if (c.WorkQueue is { } wq) WorkQueue(d, wq, verbose);
                break;
            case ChainEnd.ServerNotReceiving when c.IdlePort is { } p:
                d.Text("SERVER NOT RECEIVING: no thread of ").Link($"{Fmt.Clean(p.OwnerImage ?? "?")} ({p.OwnerPid:x})", $"!process {H(p.OwnerProcess)} 1");
                d.Text(" took the message; port ").Addr(p.Address, $"!alpc /p {H(p.Address)}");
                d.Line($" main queue {p.MainQueueLength?.ToString() ?? "unknown"}, pending queue {p.PendingQueueLength?.ToString() ?? "unknown"}");
                break;
            case ChainEnd.Deadlock:
                d.Line("DEADLOCK: each of these threads waits for a reply that the next one must send:");
                foreach (var m in c.CycleMembers) { d.Text("    "); ThreadRef(d, m); d.Line(); }
                break;
        }
    }

    private static void WorkQueue(Doc d, AlpcWorkQueueEnd q, bool verbose)
    {
        d.Text("WORK QUEUE ").Addr(q.QueueAddress, $"dt nt!_EX_WORK_QUEUE {H(q.QueueAddress)}").Text(" ").Text(Fmt.Clean(q.Queue));
        d.Line(q.Starved ? "  STARVED" : "");
        d.Line("    why: " + Fmt.Clean(q.Why));
        d.Line($"    {q.Pending:N0} item(s) pending{(q.Examined < q.Pending ? $"; the first {q.Examined:N0} examined" : "")}:");
        foreach (var g in q.Routines.Take(verbose ? int.MaxValue : 6))
        {
            d.Text($"      {g.Count,7:N0}  {Fmt.Clean(g.Routine)}");
            if (g.Driver is not null) d.Text("  [" + Fmt.Clean(g.Driver) + "]");
            d.Text($"  first #{g.FirstPosition:N0} ").Addr(g.FirstItem, $"dt nt!_WORK_QUEUE_ITEM {H(g.FirstItem)}").Line();
        }
        if (q.BlockerDriverItems.Count > 0)
            foreach (var g in q.BlockerDriverItems)
                d.Line($"    the blocker's driver {Fmt.Clean(g.Driver)} has {g.Count:N0} item(s) queued, the first at #{g.FirstPosition:N0}");
        else d.Line("    none of the examined items belongs to the driver(s) of the blocker's IRPs: their work waits behind the backlog or in a driver's own queue");
        d.Text($"    workers: {q.Workers}");
        if (q.DynamicWorkers is not null) d.Text($" ({q.StaticWorkers} static, {q.DynamicWorkers} dynamic)");
        if (q.MaximumWorkers is { } mx) d.Text(q.MaximumOf == "dynamic" ? $", at most {mx} dynamic" : $", at most {mx}");
        d.Line($", {q.IdleWorkers} idle");
        if (q.BlockedIn is not null)
        {
            d.Text($"    {q.BlockedInCount} x ").Text(Fmt.Clean(q.WorkerState ?? "")).Text("  blocked in ").Bold(Fmt.Clean(q.BlockedIn));
            if (q.CalledFrom is not null) d.Text(" (called from " + Fmt.Clean(q.CalledFrom) + ")");
            d.Line();
            foreach (var f in q.WorkerFrames.Take(verbose ? int.MaxValue : 6)) d.Line("        " + Fmt.Clean(f));
        }
        if (q.WorkerThreads.Count > 0)
        {
            d.Text("     ");
            foreach (var t in q.WorkerThreads) d.Text(" ").Addr(t, $"!thread {H(t)}");
            d.Line();
        }
        d.Text("    ").Link("!workqueue", "!workqueue").Line(" counts every item and shows every worker group");
        foreach (var n in q.Notes) d.Line("    note: " + Fmt.Clean(n));
    }

    private static void Irps(Doc d, AlpcThread b, string ind)
    {
        if (b.Irps.Count == 0) return;
        d.Line($"{ind}IRP list{(b.IrpListPartial ? " (partial)" : "")}:");
        foreach (var i in b.Irps)
        {
            d.Text(ind + "  ").Addr(i.Address, $"!irp {H(i.Address)}");
            d.Text($" stack {i.CurrentLocation}/{i.StackCount} ({i.MajorFunction:x},{i.MinorFunction:x}) ");
            if (i.Device != 0) { d.Text("device ").Addr(i.Device, $"!devobj {H(i.Device)}").Text(" "); }
            if (i.Driver is not null) d.Text(Fmt.Clean(i.Driver) + " ");
            if (i.FileObject != 0) { d.Text("file ").Addr(i.FileObject, $"dt nt!_FILE_OBJECT {H(i.FileObject)}").Text(" "); }
            if (i.FileName is not null) d.Text(Fmt.Clean(i.FileName));
            if (i.Note is not null) d.Text(" [" + Fmt.Clean(i.Note) + "]");
            d.Line();
        }
    }
}
