using NtSleuth.Commands.AlpcChain;
using NtSleuth.Commands.DhcpTimer;
using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.FrameOrder;
using NtSleuth.Commands.NblOwners;
using NtSleuth.Commands.LeakTag;
using NtSleuth.Commands.WorkQueue;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// How bad a finding is, for lab pipelines (<c>scripts/triage --fail-on</c>). Ordered: a gate at a level fails on
/// that level and above. Documented in docs/json.md.
/// </summary>
public enum Severity { Info = 0, Warning = 1, Error = 2, Critical = 3 }

/// <summary>One thing a command found, as it appears in the JSON document's <c>findings</c>.</summary>
/// <param name="Id">Stable within a document: command name, kind, index (e.g. "frameorder.disorder.0").</param>
/// <param name="Detail">JSON pointer (RFC 6901) to the part of the document that holds the details.</param>
public sealed record Finding(string Id, Severity Severity, string Title, string Detail);

/// <summary>
/// Derives the findings of a command's result model: one place that says what each command's verdicts mean for a
/// pipeline. Pure function of the model (no target access), so the JSON document, the unit tests and the lab report
/// agree.
/// </summary>
public static class Findings
{
    /// <summary>An ALPC reply waited for less than this is not reported above info.</summary>
    public const double ShortWaitSeconds = 60;

    public static List<Finding> Of(string command, object? model)
    {
        var list = new List<Finding>();
        switch (model)
        {
            case AlpcChainReport a:
                for (int i = 0; i < a.Chains.Count; i++)
                {
                    var c = a.Chains[i];
                    // A reply that has been waited for under a minute (by every waiter of the chain) is ordinary traffic.
                    double? waited = c.Hops.Count > 0 ? c.Hops.Max(h => h.Waiter.WaitSeconds) : null;
                    var sev = c.End switch
                    {
                        ChainEnd.Deadlock => Severity.Critical,
                        ChainEnd.Blocker or ChainEnd.ServerNotReceiving when waited is < ShortWaitSeconds => Severity.Info,
                        ChainEnd.Blocker or ChainEnd.ServerNotReceiving => Severity.Error,
                        ChainEnd.Unreadable or ChainEnd.HopLimit => Severity.Warning,
                        _ => Severity.Info,
                    };
                    string title = c.Summary.Length > 0 ? c.Summary : $"ALPC chain ends: {c.End}";
                    list.Add(new Finding($"{command}.chain.{i}", sev, title, $"/chains/{i}"));
                }
                break;
            case LeakTagReport l:
                if (l.Totals.NonPagedExcessive || l.Totals.PagedExcessive)
                    list.Add(new Finding($"{command}.pool", Severity.Error,
                        $"{(l.Totals.NonPagedExcessive ? "nonpaged" : "paged")} pool at 80% or more of its maximum" +
                        (l.Top.Count > 0 ? $"; top consumer tag '{l.Top[0].Tag}' ({l.Top[0].TotalBytes:N0} bytes)" : ""), "/totals"));
                else if (l.Query is null && l.Top.Count > 0)
                    list.Add(new Finding($"{command}.top", Severity.Info,
                        $"top pool consumer: tag '{l.Top[0].Tag}' ({l.Top[0].TotalBytes:N0} bytes, {l.Top[0].NonPagedOutstanding + l.Top[0].PagedOutstanding:N0} outstanding)", "/top/0"));
                for (int i = 0; i < l.Matches.Count; i++)
                {
                    var m = l.Matches[i];
                    long outstanding = m.NonPagedOutstanding + m.PagedOutstanding;
                    if (outstanding <= 0) continue;
                    var modules = l.Sites.Select(s => s.Module).Where(s => s.Length > 0).Distinct().ToList();
                    list.Add(new Finding($"{command}.tag.{i}", Severity.Warning,
                        $"tag '{m.Tag}': {outstanding:N0} outstanding, {m.TotalBytes:N0} bytes" +
                        (modules.Count > 0 ? $"; used by {string.Join(", ", modules)}" : ""), $"/matches/{i}"));
                }
                break;
            case DpcBlameReport d:
                if (d.Verdict is { Basis: "profile" } dv)
                    list.Add(new Finding($"{command}.culprit", Severity.Critical,
                        $"DPC watchdog (0x133): {dv.Routine} ({dv.Samples} of {dv.TotalSamples} watchdog-profile samples)"
                        + (dv.RunningIsCulprit == false ? $"; the running DPC {dv.RunningDpc} is not the culprit" : ""), "/verdict"));
                else if (d.Culprit is { } cu)
                {
                    bool watchdog = d.BugCheck?.IsDpcWatchdog == true;
                    string where = cu.Symbol ?? cu.Module ?? $"0x{cu.Address:x}";
                    list.Add(new Finding($"{command}.culprit", watchdog ? Severity.Critical : Severity.Error,
                        (watchdog ? "DPC watchdog (0x133): " : "DPC time: ") + where + (cu.InStallRoutine ? " (stalling in KeStallExecutionProcessor)" : ""), "/culprit"));
                }
                else if (d.BugCheck?.IsDpcWatchdog == true)
                    list.Add(new Finding($"{command}.bugcheck", Severity.Critical, "DPC watchdog (0x133); culprit not identified", "/bugCheck"));
                break;
            case NblOwnersReport n:
                if (n.PendingNbls > 0)
                    for (int i = 0; i < n.Verdicts.Count; i++)
                        list.Add(new Finding($"{command}.verdict.{i}", Severity.Error, n.Verdicts[i], $"/verdicts/{i}"));
                for (int i = 0; i < n.ReceivePaths.Count; i++)
                    if (n.ReceivePaths[i].Starved)
                        list.Add(new Finding($"{command}.receive.{i}", Severity.Error,
                            $"miniport {n.ReceivePaths[i].Miniport:x} ({n.ReceivePaths[i].Driver}): no free receive buffers, {n.ReceivePaths[i].Waiting} held above the miniport", $"/receivePaths/{i}"));
                if (n.Guidance is { } g) list.Add(new Finding($"{command}.tracking", Severity.Info, g, "/guidance"));
                break;
            case FrameOrderReport f:
                for (int i = 0; i < f.Disorders.Count; i++)
                    list.Add(new Finding($"{command}.disorder.{i}", Severity.Error, f.Disorders[i].Message, $"/disorders/{i}"));
                break;
            case WorkQueueReport w:
                for (int i = 0; i < w.Verdicts.Count; i++)
                {
                    var v = w.Verdicts[i];
                    // A starved queue hangs everything queued behind it; a backlog with idle workers is a warning.
                    var sev = v.Contains(" starved: ", StringComparison.Ordinal) ? Severity.Error : w.TotalPending > 0 ? Severity.Warning : Severity.Info;
                    list.Add(new Finding($"{command}.verdict.{i}", sev, v, $"/verdicts/{i}"));
                }
                for (int i = 0; i < w.Queues.Count; i++)
                    if (w.Queues[i].CountAgrees == false)
                        list.Add(new Finding($"{command}.count.{i}", Severity.Warning,
                            $"{w.Queues[i].Name}: the queue's own count ({w.Queues[i].OwnCount:N0}) disagrees with the {w.Queues[i].Pending:N0} item(s) counted on its list(s)", $"/queues/{i}"));
                break;
            case DhcpTimerReport h:
                for (int i = 0; i < h.Adapters.Count; i++)
                {
                    var a = h.Adapters[i];
                    Severity? sev = a.Verdict switch
                    {
                        DhcpVerdict.Expired => Severity.Critical,
                        DhcpVerdict.RenewalMissed or DhcpVerdict.Overdue => Severity.Error,
                        DhcpVerdict.NotRecognised or DhcpVerdict.Unreadable => Severity.Warning,
                        _ => null,
                    };
                    if (sev is { } s)
                        list.Add(new Finding($"{command}.adapter.{i}", s, $"{a.Name ?? "adapter"}: {a.VerdictText}", $"/adapters/{i}"));
                }
                break;
        }
        return list;
    }

    public static string Name(Severity s) => s.ToString().ToLowerInvariant();

    public static bool TryParse(string? s, out Severity severity) =>
        Enum.TryParse(s, true, out severity) && Enum.IsDefined(severity);
}
