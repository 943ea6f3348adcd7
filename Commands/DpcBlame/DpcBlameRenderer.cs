using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.DpcBlame;

public static class DpcBlameRenderer
{
    public static Doc Render(DpcBlameReport r, bool verbose = false)
    {
        var d = new Doc();
        if (r.BugCheck is { } bc)
        {
            d.Text($"Bugcheck {bc.Code:X8} ({bc.P1:x}, {bc.P2:x}, {bc.P3:x}, {bc.P4:x})");
            if (bc.IsDpcWatchdog) d.Text("  DPC_WATCHDOG_VIOLATION");
            d.Line();
            d.Line("  " + bc.Meaning);
            if (bc.Triage is { Readable: true } t)
            {
                d.Text($"  triage block ({t.From}): ").Link(Fmt.Addr(t.Address), $"dd {Fmt.Addr(t.Address)} L4");
                if (t.SignatureValid)
                    d.Line($"  DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK signature 0x{t.Signature:x8} ok, revision {t.Revision}, size 0x{t.Size:x}, DpcWatchdogProfileOffset 0x{t.DpcWatchdogProfileOffset:x} (PRCB)"
                           + (t.OffsetMatchesSymbols == true ? " = _KPRCB.DpcWatchdogProfile" : "") + $", DpcWatchdogProfileLength 0x{t.DpcWatchdogProfileLength:x} (unit not documented)");
                else d.Line($"  signature 0x{t.Signature:x8} is not 0x{DpcBlameAnalyzer.TriageSignature:x8}: not decoded");
            }
            d.Line();
        }
        if (r.Verdict is { Lines.Count: > 0 } v)
        {
            foreach (var line in v.Lines)
            {
                if (line.StartsWith("Culprit", StringComparison.Ordinal) && v.Routine is not null)
                {
                    int at = line.IndexOf(v.Routine, StringComparison.Ordinal);
                    d.Bold(line[..at]).Link(v.Routine, "x ", v.Routine).Bold(line[(at + v.Routine.Length)..]).Line();
                }
                else d.Line(line.StartsWith("Profile format", StringComparison.Ordinal) ? "  " + line : line);
            }
            d.Line();
        }
        if (r.ProfileHistogram.Count > 0)
        {
            d.Line($"DPC watchdog profile: {r.ProfileSamples} captured stack(s), innermost frame outside nt/hal");
            if (r.WatchdogConfig is { Globals.Count: > 0 } cfg)
                d.Line("  configuration: " + string.Join("  ", cfg.Globals.Select(kv => $"{kv.Key} 0x{kv.Value:x}")));
            d.Line("  Samples  Share   CPUs  Routine");
            foreach (var h in r.ProfileHistogram)
                d.Line($"  {h.Samples,7}  {h.Share * 100,5:0.0}%  {string.Join(",", h.Cpus),4}  {h.Routine}");
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
            if (p.ActiveDpc != 0)
            {
                d.Text("  ActiveDpc: ").Addr(p.ActiveDpc, $"dt nt!_KDPC {Fmt.Addr(p.ActiveDpc)}");
                if (p.ActiveDpcRoutine != 0) d.Text(" ").Link(p.ActiveDpcSymbol ?? Fmt.Addr(p.ActiveDpcRoutine), "ln " + Fmt.Addr(p.ActiveDpcRoutine));
                d.Line();
            }
            if (p.IsrDpcStats is { } isr)
            {
                d.Text("  IsrDpcStats: ").Addr(isr.Address, $"dt nt!_ISRDPCSTATS {Fmt.Addr(isr.Address)}");
                if (isr.Fields.Count > 0) d.Text("  " + string.Join("  ", isr.Fields.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key} 0x{kv.Value:x}")));
                d.Line();
            }
            if (p.RuntimeHistory is { } rh)
            {
                d.Text("  DPC runtime history: ").Addr(rh.Table, $"dt nt!_RTL_HASH_TABLE {Fmt.Addr(rh.Table)}")
                 .Text($" EntryCount {rh.EntryCount}, {rh.EntriesRead} entries read");
                if (rh.Routines.Count > 0) d.Text("; keys naming routines: " + string.Join(", ", rh.Routines.Select(kv => kv.Value > 1 ? $"{kv.Key} x{kv.Value}" : kv.Key)));
                if (rh.OtherKeys > 0) d.Text($"; {rh.OtherKeys} other key(s)");
                d.Line(" (the runtime figures around each entry are not in public symbols)");
                if (rh.Note is not null) d.Line("    " + rh.Note);
            }
            if (p.Profile is { } pr && (pr.State != "empty" || p.IsBugCheckCpu))
            {
                d.Text("  DPC watchdog profile: ");
                if (pr.Buffer != 0) d.Addr(pr.Buffer, $"dps {Fmt.Addr(pr.Buffer)} L{Math.Clamp(pr.FilledBytes / 8, 1, 0x200):x}").Text(" ");
                d.Text(pr.State switch
                {
                    "ok" => $"0x{pr.FilledBytes:x} bytes captured, {pr.Captures} stack(s)" + (pr.KernelOnlyCaptures > 0 ? $" ({pr.KernelOnlyCaptures} in nt/hal only)" : ""),
                    _ => pr.State,
                });
                if (pr.CapacityBytes is long cap) d.Text($", capacity 0x{cap:x} bytes");
                d.Line();
                if (pr.Note is not null) d.Line("    " + pr.Note);
            }
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
        if (r.Blame.Count > 0 && r.ProfileSamples > 0)
        {
            d.Line("Blame by module:");
            d.Line("  Module               Base               Profile  Queued  Running  Evidence");
            foreach (var b in r.Blame)
            {
                d.Text("  ").Link(b.Module.PadRight(20), "lmvm ", b.Module).Text(" ");
                d.Text(b.Base == 0 ? "?".PadRight(17) : Fmt.Addr(b.Base));
                d.Line($"  {b.ProfileShare * 100,6:0.0}%  {b.Queued,6}  {b.Running,7}  {string.Join(", ", b.Evidence)}{(b.HasSymbols ? "" : "  (no symbols)")}");
            }
            d.Line($"  {r.ProfileSamples} profile sample(s), {r.TotalQueued} queued DPC(s) on {r.Processors.Count} processor(s)");
            d.Line();
        }
        else if (r.Blame.Count > 0)
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
