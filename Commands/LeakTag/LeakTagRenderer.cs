using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.LeakTag;

public static class LeakTagRenderer
{
    public static Doc Render(LeakTagReport r)
    {
        var d = new Doc();
        string tables = string.Join(", ", r.Tables.Select(t => t.Source));
        d.Line($"Pool tracker: {r.Tables.Count} table(s) summed ({tables}), entry size 0x{r.TrackerEntrySize:x}, {r.TagsInUse} tags in use{(r.Partial ? "  [PARTIAL: unreadable table pages]" : "")}");
        foreach (var t in r.Tables.Where(t => t.Note is not null)) d.Line($"  {t.Source} at {Fmt.Addr(t.Address)}: {t.Note}");
        if (r.Interrupted)
            d.Bold("Interrupted (Ctrl+Break): partial" + (r.NotRead.Count > 0 ? $"; not read: {string.Join(", ", r.NotRead)}" : "") + ".").Line();
        if (r.Query is null) RenderTop(d, r); else RenderTag(d, r);
        if (r.Notes.Count > 0)
        {
            d.Line();
            foreach (var n in r.Notes) d.Line("Note: " + n);
        }
        return d;
    }

    private static void Header(Doc d)
    {
        d.Line("               NonPaged                  Paged");
        d.Line("Tag     Allocs         Used     Allocs         Used");
        d.Line();
    }

    private static void Row(Doc d, PoolTagUsage u, bool link)
    {
        string tag = u.Tag;
        if (link) d.Link(tag, "!leaktag ", tag); else d.Text(tag);
        d.Text($" {u.NonPagedOutstanding,9} {u.NonPagedBytes,12} {u.PagedOutstanding,10} {u.PagedBytes,12}");
        d.Text(u.Protected ? "  (protected)" : "");
        d.Line(u.Description is null ? $"    UNKNOWN pooltag '{tag}'" : "    " + u.Description);
    }

    private static void RenderTop(Doc d, LeakTagReport r)
    {
        d.Line();
        d.Line(r.Sort switch
        {
            "nonpaged" => "Sorting by NonPaged Pool Consumed",
            "paged" => "Sorting by Paged Pool Consumed",
            _ => "Sorting by Total Pool Consumed",
        } + $" (top {r.TopN})");
        d.Line();
        Header(d);
        foreach (var u in r.Top) Row(d, u, true);
        d.Line();
        d.Line($"TOTAL  {r.Totals.NonPagedAllocs,9} {r.Totals.NonPagedBytes,12} {r.Totals.PagedAllocs,10} {r.Totals.PagedBytes,12}");
        d.Line();
        Totals(d, r.Totals);
        if (r.Top.Count > 0)
        {
            var top = r.Top[0];
            bool np = r.Sort != "paged" && (r.Sort == "nonpaged" || top.NonPagedBytes >= top.PagedBytes);
            d.Text("Top consumer: ").Link(top.Tag, "!leaktag ", top.Tag);
            d.Line(np ? $", {top.NonPagedOutstanding:N0} allocations, {top.NonPagedBytes:N0} bytes nonpaged"
                      : $", {top.PagedOutstanding:N0} allocations, {top.PagedBytes:N0} bytes paged");
        }
    }

    private static void Totals(Doc d, PoolTotals t)
    {
        d.Line($"NonPagedPool Usage: {t.NonPagedBytes,16:N0} bytes ({t.NonPagedBytes / 1024,10:N0} Kb)");
        if (t.NonPagedMaximum is ulong npm)
            d.Line($"NonPagedPool Max:   {npm,16:N0} bytes ({npm / 1024,10:N0} Kb)  {Pct(t.NonPagedBytes, npm)}");
        if (t.NonPagedExcessive) d.Bold("********** Excessive NonPaged Pool Usage *****").Line();
        d.Line($"PagedPool Usage:    {t.PagedBytes,16:N0} bytes ({t.PagedBytes / 1024,10:N0} Kb)");
        if (t.PagedMaximum is ulong pm)
            d.Line($"PagedPool Maximum:  {pm,16:N0} bytes ({pm / 1024,10:N0} Kb)  {Pct(t.PagedBytes, pm)}");
        if (t.PagedExcessive) d.Bold("********** Excessive Paged Pool Usage *****").Line();
        d.Text("(tracked bytes from the tracker tables; ").Link("!vm 1", "!vm 1").Line(" shows the memory manager's view)");
    }

    private static string Pct(ulong used, ulong max) => max == 0 ? "" : $"{100.0 * used / max:0.0}% used";

    private static void RenderTag(Doc d, LeakTagReport r)
    {
        d.Line();
        d.Line($"Tag '{r.QueryPadded}'" + (r.QueryKey != 0 ? $" (ULONG 0x{r.QueryKey:x8})" : " (wildcards)"));
        d.Line();
        if (r.Matches.Count > 0)
        {
            Header(d);
            foreach (var u in r.Matches) Row(d, u, r.Matches.Count > 1);
            foreach (var u in r.Matches.Take(1))
                d.Line($"  nonpaged: {u.NonPagedAllocs:N0} allocs, {u.NonPagedFrees:N0} frees, {u.NonPagedOutstanding:N0} outstanding, {u.NonPagedBytes:N0} bytes; paged: {u.PagedAllocs:N0} allocs, {u.PagedFrees:N0} frees, {u.PagedOutstanding:N0} outstanding, {u.PagedBytes:N0} bytes ({u.Tables} table(s))");
        }
        d.Line(r.PoolTagFile is null ? "pooltag.txt: not found beside the engine (set NTSLEUTH_POOLTAG to its path)" : $"pooltag.txt: {r.PoolTagFile}");
        d.Line();

        if (!r.ModuleSearchSkipped && !r.NotRead.Contains(LeakTagAnalyzer.PartModules))
        {
            d.Line($"Modules containing the tag bytes ({r.ModulesSearched} of {r.ModulesTotal} modules searched{(r.ModuleSearchComplete ? "" : ", INTERRUPTED - partial")}):");
            if (r.Sites.Count == 0) d.Line("  none (the tag may be built at run time, or the code is paged out)");
            foreach (var g in r.Sites.GroupBy(s => s.Module))
            {
                d.Text("  ").Link(g.Key, "lmvm ", g.Key).Line($"  ({g.Count()} site(s))");
                foreach (var s in g)
                {
                    d.Text("    ").Addr(s.Address, $"u {Fmt.Addr(s.Address)}").Text($"  {s.Module}+0x{s.Offset:x}");
                    if (s.Function is not null) d.Text("  ").Link(s.Function, "ln " + Fmt.Addr(s.Address));
                    d.Line();
                }
            }
            d.Line();
        }

        if (!r.NotRead.Contains(LeakTagAnalyzer.PartBigPool))
        {
            d.Line($"Big-pool allocations with this tag: {r.BigPoolMatchCount:N0} ({r.BigPoolMatchBytes:N0} bytes) in a {r.BigPoolTableEntries:N0}-entry big-page table{(r.BigPoolPartial ? " [PARTIAL]" : "")}");
            foreach (var b in r.BigPool)
            {
                d.Text("  ").Addr(b.Va, $"!pool {Fmt.Addr(b.Va)}").Line($"  {b.NumberOfBytes,12:N0} bytes  {(b.NonPaged ? "NonPaged" : "Paged")}  {b.Tag}");
            }
            if ((ulong)r.BigPool.Count < r.BigPoolMatchCount) d.Line($"  ... {r.BigPoolMatchCount - (ulong)r.BigPool.Count:N0} more");
            d.Line();
        }

        if (r.VerifierPoolTracking is bool vt)
        {
            if (vt)
            {
                d.Text($"Driver Verifier: pool tracking is ON (level 0x{r.VerifierLevel:x}); outstanding allocations per driver: ");
                foreach (var m in r.Sites.Select(s => s.Module).Distinct()) d.Link($"!verifier 3 {m}.sys", "!verifier 3 ", m + ".sys").Text(" ");
                d.Line();
            }
            else d.Line($"Driver Verifier: pool tracking is off (level 0x{r.VerifierLevel:x}); enable it for the driver (verifier /flags 0x8 /driver <name>) to get per-allocation call sites");
        }

        if (r.PoolHitTag is uint ph)
        {
            d.Text("PoolHitTag: ").Link(Fmt.Addr(r.PoolHitTagAddress), "dc nt!PoolHitTag l1").Line($"  {ph:x8}  {r.PoolHitTagText}");
        }
        if (r.Suggestions.Count > 0)
        {
            d.Line();
            d.Line("Live suggestions (click to run):");
            foreach (var s in r.Suggestions) d.Text("  ").Link(s.Command, s.Command).Line("    " + s.Text);
        }
    }
}
