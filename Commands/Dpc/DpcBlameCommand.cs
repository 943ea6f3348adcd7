using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Pool;

namespace NtSleuth.Commands.Dpc;

public sealed class DpcBlameCommand : ICommand
{
    public string Name => "dpcblame";
    public string Summary => "who is burning DPC time: bug check 0x133 triage and per-CPU DPC queues";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("cpu");
    public string Usage => """
Usage: !dpcblame [-cpu N] [-v] [-json]
  Decodes DPC_WATCHDOG_VIOLATION (0x133), names the driver running in the DPC, shows every
  processor's DPC queue and watchdog counters, and a blame table by module.
  -cpu N       only processor N
  -v           also list the frames the culprit was chosen from (with stack addresses for a stack scan)
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        int? cpu = null;
        if (ctx.Args.Get("cpu") is { } cs)
        {
            bool hex = cs.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
            if (!int.TryParse(hex ? cs[2..] : cs, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None, null, out var c))
                throw new UsageException($"-cpu needs a processor number, not '{cs}'");
            cpu = c;
        }
        var result = new DpcBlameAnalyzer(ctx.Reader).Analyze(cpu);
        result.Stats = new ReadFigures
        {
            RoundTrips = ctx.Stats.RoundTrips, Bytes = ctx.Stats.Bytes, Searches = ctx.Stats.Searches,
            ModelledKdnetSeconds = Math.Round(ctx.Stats.ModelledKdnetSeconds, 4),
        };
        if (ctx.IsJson) ctx.WriteJson(result);
        else ctx.Write(DpcBlameRenderer.Render(result, ctx.Args.Verbose));
    }
}

public static class DpcBlameRenderer
{
    public static Doc Render(DpcBlameResult r, bool verbose = false)
    {
        var d = new Doc();
        if (r.BugCheck is { } bc)
        {
            d.Text($"Bugcheck {bc.Code:X8} ({bc.P1:x}, {bc.P2:x}, {bc.P3:x}, {bc.P4:x})");
            if (bc.IsDpcWatchdog) d.Text("  DPC_WATCHDOG_VIOLATION");
            d.Line();
            d.Line("  " + bc.Meaning);
            if (bc.TriageFields is { Count: > 0 })
                d.Line("  triage block: " + string.Join(", ", bc.TriageFields.Select(kv => kv.Key + "=" + kv.Value)));
            d.Line();
        }
        if (r.Culprit is { } c)
        {
            if (c.Module is not null)
            {
                bool cumulative = r.BugCheck?.Kind == "cumulative";
                d.Text(cumulative ? "Running when the watchdog fired (cumulative timeout: not necessarily the culprit): " : "Culprit: ").Bold(c.Module).Text("  ");
                if (c.Symbol is not null) d.Link(c.Symbol, "u " + Fmt.Addr(c.Address)).Text(" ");
                d.Line($"({Fmt.Addr(c.Address)})");
                if (c.DispatchChain.Count > 0) d.Line("  running under " + string.Join(" <- ", c.DispatchChain));
                if (c.InStallRoutine) d.Line("  it was inside the stall routine (KeStallExecutionProcessor) when the watchdog fired");
                if (c.StallLoop is { } h)
                {
                    d.Text("  Stall loop: ").Line(h.Text);
                    d.Text("    ").Link("ub " + Fmt.Addr(c.Address), "ub " + Fmt.Addr(c.Address)).Text("  ").Link("u " + Fmt.Addr(c.Address), "u " + Fmt.Addr(c.Address)).Line();
                }
            }
            d.Line($"  method: {c.Method} - {c.MethodNote}");
            if (verbose || c.Module is null)
                foreach (var f in c.Frames)
                {
                    d.Text("    ");
                    if (f.StackAddress != 0) d.Text(Fmt.Addr(f.StackAddress) + "  ");
                    d.Addr(f.Address, "u " + Fmt.Addr(f.Address)).Line("  " + (f.Symbol ?? "?"));
                }
            d.Line();
        }
        foreach (var p in r.Processors)
        {
            d.Text($"CPU {p.Cpu}  PRCB ").Addr(p.Prcb, $"dt nt!_KPRCB {Fmt.Addr(p.Prcb)} Dpc*").Text("  ").Link("!pcr", $"!pcr {p.Cpu}");
            if (p.IsBugCheckCpu) d.Text("  ").Bold("<- bugcheck CPU");
            d.Line();
            var parts = new List<string>();
            if (p.QueueDepth is int qd) parts.Add($"DPC queue depth {qd}");
            if (p.ThreadedQueueDepth is int tq && tq > 0) parts.Add($"threaded {tq}");
            if (p.DpcCount is uint dc) parts.Add($"DpcCount {dc}");
            if (p.DpcRoutineActive is bool act) parts.Add(act ? "DPC routine active" : "no DPC running");
            if (parts.Count > 0) d.Line("  " + string.Join(", ", parts));
            if (p.Watchdog.Count > 0) d.Line("  watchdog: " + string.Join("  ", p.Watchdog.Select(kv => $"{kv.Key} 0x{kv.Value:x}")));
            if (p.CurrentDpcRoutine != 0) d.Text("  CurrentDpcRoutine: ").Link(p.CurrentDpcSymbol ?? Fmt.Addr(p.CurrentDpcRoutine), "ln " + Fmt.Addr(p.CurrentDpcRoutine)).Line();
            if (p.Note is not null) d.Line("  Note: " + p.Note);
            if (p.Queued.Count > 0)
            {
                d.Line("  DpcQueue:");
                foreach (var q in p.Queued)
                {
                    d.Text("    ").Addr(q.Kdpc, $"dt nt!_KDPC {Fmt.Addr(q.Kdpc)}");
                    if (q.Unreadable) { d.Line("  (KDPC not readable)"); continue; }
                    d.Text(" ").Addr(q.Routine, "u " + Fmt.Addr(q.Routine)).Text($" [{q.Queue}] ");
                    d.Link(q.Symbol ?? q.Module, "ln " + Fmt.Addr(q.Routine)).Line($"  ({q.Importance})");
                }
            }
            d.Line();
        }
        if (r.Blame.Count > 0)
        {
            d.Line("Blame by module:");
            d.Line("  Module               Base               Queued  Running  Queue share");
            foreach (var b in r.Blame)
            {
                d.Text("  ").Link(b.Module.PadRight(20), "lmvm ", b.Module).Text(" ");
                d.Text(b.Base == 0 ? "?".PadRight(17) : Fmt.Addr(b.Base));
                string mark = !b.Culprit ? "" : r.BugCheck?.Kind == "cumulative" ? "  <- on the bugcheck stack" : "  <- culprit";
                d.Line($"  {b.Queued,6}  {b.Running,7}  {b.Share * 100,5:0.0}%{mark}{(b.HasSymbols ? "" : "  (no symbols)")}");
            }
            d.Line($"  {r.TotalQueued} queued DPC(s) on {r.Processors.Count} processor(s)");
            d.Line();
        }
        foreach (var g in r.Guidance)
        {
            if (g == "!wmitrace.strdump") d.Text("  ").Link(g, g).Line();
            else if (g.StartsWith("!wmitrace", StringComparison.Ordinal)) d.Line("  " + g);
            else d.Line(g);
        }
        foreach (var n in r.Notes) d.Line("Note: " + n);
        return d;
    }
}
