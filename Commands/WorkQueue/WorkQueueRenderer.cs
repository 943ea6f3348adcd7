using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.WorkQueue;

public static class WorkQueueRenderer
{
    private const int GroupsShown = 8;
    private const int FramesShown = 10;

    public static Doc Render(WorkQueueReport r, bool verbose = false)
    {
        var d = new Doc();
        d.Line($"System work queues ({r.Shape}: {r.ShapeSource})");
        foreach (var q in r.Queues)
        {
            d.Line();
            d.Text("**** ").Text(q.Name).Text("  ").Addr(q.Address, $"dt nt!_EX_WORK_QUEUE {Fmt.Addr(q.Address)}");
            var parts = new List<string> { $"{q.Pending:N0}{(q.Complete ? "" : "+")} pending" };
            if (q.OwnCount is { } own) parts.Add($"own count {own:N0}{(q.CountAgrees == false ? " (DISAGREES)" : "")}");
            if (q.QueueDepthLastPass is { } dl) parts.Add($"QueueDepthLastPass {dl:N0}");
            if (q.WorkItemsProcessed is { } wp) parts.Add($"processed {wp:N0}");
            d.Line("  " + string.Join(", ", parts));
            foreach (var l in q.Lists)
            {
                if (q.Lists.Count > 1 || l.Name != q.Name) d.Line($"  {l.Name}: {l.Pending:N0}{(l.Complete ? "" : "+")} pending");
                int shown = 0;
                foreach (var g in l.Groups)
                {
                    if (!verbose && shown++ >= GroupsShown) { d.Line($"    ... {l.Groups.Count - GroupsShown} more routine(s) (-v)"); break; }
                    d.Text($"    {g.Count,9:N0}  ");
                    if (g.RoutineAddress != 0) d.Link(g.Routine, "ln " + Fmt.Addr(g.RoutineAddress)); else d.Text(g.Routine);
                    if (g.Driver is not null) d.Text("  [").Text(g.Driver).Text("]");
                    d.Text(g.IoWorkItem ? "  IO_WORKITEM" : "");
                    d.Text($"  first #{g.FirstPosition:N0} ");
                    d.Addr(g.FirstItem, $"dt nt!{(g.IoWorkItem ? "_IO_WORKITEM" : "_WORK_QUEUE_ITEM")} {Fmt.Addr(g.FirstItem)}").Line();
                }
                if (l.WalkNote is not null) d.Line("    Note: " + l.WalkNote);
            }
            var w = q.Workers;
            d.Text("  Workers: ").Text($"{w.Total}");
            if (w.Static is not null || w.Dynamic is not null) d.Text($" ({w.Static} static, {w.Dynamic} dynamic)");
            if (w.Maximum is { } mx) d.Text(w.MaximumOf == "dynamic" ? $", at most {mx} dynamic" : $", at most {mx}");
            d.Line($"; {w.Idle} idle, {w.Busy} busy");
            foreach (var g in w.Groups)
            {
                d.Text($"    {g.Count,4} x ").Text(g.State);
                if (g.LongestWait is not null) d.Text($" for up to {g.LongestWait}");
                if (g.BlockedIn is not null) d.Text("  blocked in ").Bold(g.BlockedIn);
                d.Line();
                int nf = 0;
                foreach (var f in g.Frames)
                {
                    if (!verbose && nf++ >= FramesShown) { d.Line($"           ... {g.Frames.Count - FramesShown} more frame(s) (-v)"); break; }
                    d.Text("           ").Text(f).Line();
                }
                if (g.StackNote is not null) d.Line("           (" + g.StackNote + ")");
                d.Text("         ");
                int nt = 0;
                foreach (var t in g.Threads)
                {
                    if (!verbose && nt++ >= 8) { d.Text($" ... {g.Threads.Count - 8} more"); break; }
                    d.Text(" ").Link(Fmt.Addr(t.Address), "!thread " + Fmt.Addr(t.Address));
                }
                d.Line();
            }
            if (w.WalkNote is not null) d.Line("  Note: " + w.WalkNote);
            foreach (var n in q.Notes) d.Line("  Note: " + n);
        }
        if (r.RoutineFilter is not null)
        {
            d.Line();
            d.Text("Items running ").Text(r.RoutineFilter).Line($": {r.MatchingTotal:N0}{(r.MatchingTotal > r.MatchingItems.Count ? $" ({r.MatchingItems.Count} listed)" : "")}");
            foreach (var i in r.MatchingItems)
            {
                d.Text($"  #{i.Position,-7:N0} ");
                d.Addr(i.Address, $"dt nt!{(i.IoWorkItem ? "_IO_WORKITEM" : "_WORK_QUEUE_ITEM")} {Fmt.Addr(i.Address)}");
                d.Text("  ").Text(i.Routine);
                if (i.Driver is not null) d.Text("  [").Text(i.Driver).Text("]");
                if (i.Irp != 0) d.Text("  IRP ").Addr(i.Irp, "!irp " + Fmt.Addr(i.Irp));
                else if (i.Parameter != 0) d.Text($"  {(i.IoWorkItem ? "Context" : "Parameter")} {Fmt.Addr(i.Parameter)}");
                d.Text("  (").Text(i.List).Line(")");
            }
        }
        d.Line();
        foreach (var v in r.Verdicts) d.Bold(v).Line();
        foreach (var n in r.Notes) d.Line("Note: " + n);
        return d;
    }
}
