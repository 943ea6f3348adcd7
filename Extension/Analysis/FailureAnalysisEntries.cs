using System.Globalization;
using System.Text;
using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Output;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension.Analysis;

/// <summary>What one failure-analysis (FA) entry should hold: a string or a 64-bit value under a tag.</summary>
/// <param name="Replace">true: Set* (the plug-in's value replaces the default analysis's); false: Add* (a new entry beside theirs).</param>
public sealed record FaEntry(uint Tag, bool IsString, bool Replace, string? Text, ulong Value)
{
    public static FaEntry SetString(uint tag, string text) => new(tag, true, true, text, 0);
    public static FaEntry AddString(uint tag, string text) => new(tag, true, false, text, 0);
    public static FaEntry SetUlong64(uint tag, ulong value) => new(tag, false, true, null, value);

    public override string ToString() =>
        $"{(Replace ? "Set" : "Add")}{(IsString ? "String" : "Ulong64")} {Extsfns.TagName(Tag)} = {(IsString ? Text : "0x" + Value.ToString("x", CultureInfo.InvariantCulture))}";
}

/// <summary>
/// Maps what !dpcblame found (its report, from <see cref="DpcBlameAnalyzer"/>) to !analyze's failure-analysis
/// entries: the culprit driver and routine replace the default analysis's blame (MODULE_NAME, IMAGE_NAME,
/// SYMBOL_NAME, FAULTING_IP), and one ADDITIONAL_DEBUGTEXT line gives the evidence. No analysis of its own.
/// </summary>
public static class DpcBlameFailureAnalysis
{
    /// <summary>FA_ENTRY sizes are USHORTs; the evidence line stays far below that.</summary>
    public const int MaxTextLength = 1000;

    /// <param name="imageName">the culprit module's image file name (e.g. "ECHO.sys"), when the module list has it.</param>
    public static IReadOnlyList<FaEntry> Map(DpcBlameReport report, string? imageName)
    {
        var list = new List<FaEntry>();
        var bc = report.BugCheck;
        if (bc is null || !bc.IsDpcWatchdog) return list; // not 0x133: nothing to say
        var c = report.Culprit;
        if (c?.Module is { Length: > 0 } module)
        {
            list.Add(FaEntry.SetString(Extsfns.DEBUG_FLR_MODULE_NAME, Clean(module)));
            if (!string.IsNullOrWhiteSpace(imageName)) list.Add(FaEntry.SetString(Extsfns.DEBUG_FLR_IMAGE_NAME, Clean(imageName)));
            if (SymbolName(c, report) is { } sym) list.Add(FaEntry.SetString(Extsfns.DEBUG_FLR_SYMBOL_NAME, Clean(sym)));
            if (c.Address != 0) list.Add(FaEntry.SetUlong64(Extsfns.DEBUG_FLR_FAULTING_IP, c.Address));
        }
        list.Add(FaEntry.AddString(Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT, Evidence(report)));
        return list;
    }

    /// <summary>
    /// !analyze's SYMBOL_NAME form: module!function+hexoffset without "0x" (e.g. "ECHO!EchoEvtTimerFunc+7d"), or
    /// module+hexoffset when the routine has no name.
    /// </summary>
    public static string? SymbolName(DpcCulprit c, DpcBlameReport report)
    {
        if (c.Symbol is { Length: > 0 } s)
        {
            int plus = s.LastIndexOf('+');
            if (plus > 0 && s.AsSpan(plus + 1).StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[..(plus + 1)] + s[(plus + 3)..];
            return s;
        }
        var row = report.Blame.FirstOrDefault(b => string.Equals(b.Module, c.Module, StringComparison.OrdinalIgnoreCase));
        return row is not null && row.Base != 0 && c.Address >= row.Base ? $"{c.Module}+{c.Address - row.Base:x}" : null;
    }

    /// <summary>One line: who, what the bug check says, how the culprit was found, where to look next.</summary>
    public static string Evidence(DpcBlameReport report)
    {
        var bc = report.BugCheck!;
        var c = report.Culprit;
        var sb = new StringBuilder("ntsleuth !dpcblame: ");
        if (c?.Module is { Length: > 0 })
        {
            sb.Append(c.Symbol ?? c.Module).Append(" (").Append(Fmt.Addr(c.Address)).Append(") was running in the DPC when the watchdog fired");
            if (report.BugCheckCpu >= 0) sb.Append(" on CPU ").Append(report.BugCheckCpu.ToString(CultureInfo.InvariantCulture));
            sb.Append(". ");
        }
        else sb.Append("no driver frame found on the DPC stack (only nt/hal), so the default blame stays. ");
        if (bc.Kind == "single" && bc.TicksTaken is { } taken && bc.TickLimit is { } limit)
            sb.Append($"A single DPC ran 0x{taken:x} ticks (limit 0x{limit:x}). ");
        else if (bc.Kind == "cumulative")
            sb.Append($"Cumulative DPC time exceeded the watchdog period{(bc.WatchdogPeriod is { } p ? $" (0x{p:x} ticks)" : "")}: other DPCs may share the blame. ");
        if (c?.Module is { Length: > 0 })
        {
            if (c.DispatchChain.Count > 0) sb.Append("Dispatched via ").Append(string.Join(", ", c.DispatchChain)).Append(". ");
            if (c.StallLoop is { } loop) sb.Append("Stall loop: ").Append(loop.Text).Append(". ");
            else if (c.InStallRoutine) sb.Append("It was inside KeStallExecutionProcessor. ");
            sb.Append("Found by ").Append(c.Method == "stack" ? "the engine's stack unwind" : "a return-address scan of the DPC stack").Append(". ");
        }
        else
        {
            var top = report.Blame.Where(b => b.Queued > 0).OrderByDescending(b => b.Queued).Take(3)
                .Select(b => $"{b.Module} {b.Queued} queued").ToList();
            if (top.Count > 0) sb.Append("Most queued DPCs: ").Append(string.Join(", ", top)).Append(". ");
        }
        sb.Append("Run !ntsleuth.dpcblame for every CPU's DPC queue and watchdog counters.");
        return Clean(sb.ToString());
    }

    /// <summary>
    /// FA strings are ANSI and !analyze may print them as DML: printable ASCII only, no markup characters, bounded.
    /// Names from the target can hold anything.
    /// </summary>
    public static string Clean(string s)
    {
        var sb = new StringBuilder(Math.Min(s.Length, MaxTextLength));
        foreach (char ch in s)
        {
            if (sb.Length >= MaxTextLength) break;
            sb.Append(ch is >= ' ' and <= '~' && ch is not ('<' or '>' or '&' or '"') ? ch : '?');
        }
        return sb.ToString();
    }
}
