using NtSleuth.Commands.Cli;
using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension.Analysis;

/// <summary>
/// The !analyze plug-in (ntsleuth.dll!_EFN_Analyze -> Entry.Analyze): on bug check 0x133, in the pre-bucketing
/// phase, runs !dpcblame's analyzer on the target and writes what it found into the failure analysis, so that
/// !analyze names the driver and routine instead of the kernel. Says nothing on other failures and phases.
/// Never throws: every outcome is an HRESULT (S_OK when it contributed or had nothing to say).
/// </summary>
internal static class AnalyzePlugin
{
    public const int S_OK = 0;
    public const int E_INVALIDARG = unchecked((int)0x80070057);

    public static int Run(nint debugClient, uint phase, nint analysisPointer)
    {
        if (phase != Extsfns.FA_PLUGIN_PRE_BUCKETING) return S_OK;
        if (debugClient == 0 || analysisPointer == 0) return E_INVALIDARG;
        var analysis = new FailureAnalysis2(analysisPointer);
        if (analysis.GetFailureCode() != DpcBlameAnalyzer.DpcWatchdogViolation) return S_OK;

        DbgEngSession? session = null;
        DbgEngTarget? target = null;
        IOutputSink? sink = null;
        try
        {
            session = new DbgEngSession(debugClient);
            if (session.Control is not null) sink = new DbgEngOutputSink(new DbgEngControlOutput(session.Control), false);
            target = new DbgEngTarget(session);
            return Contribute(analysis, target, sink);
        }
        catch (Exception ex)
        {
            Say(sink, $"ntsleuth: no !dpcblame contribution to !analyze: internal error {ex.GetType().Name}: {ex.Message}\n", error: true);
            return CommandDispatcher.E_FAIL;
        }
        finally
        {
            try { target?.EndCommand(); } catch { /* never throw into the engine */ }
            session?.Dispose();
        }
    }

    /// <summary>Analyzes, maps and writes; the engine-independent part (tests drive it with a lab target).</summary>
    internal static int Contribute(FailureAnalysis2 analysis, Commands.Target.ITarget target, IOutputSink? sink)
    {
        DpcBlameReport report;
        string? image = null;
        try
        {
            report = new DpcBlameAnalyzer(new KernelReader(target)).Analyze(null);
            if (report.BugCheck?.IsDpcWatchdog != true) return S_OK; // the target itself does not say 0x133
            if (report.Culprit is { Module: not null } c)
            {
                Commands.Target.ModuleInfo? mod = null;
                try { mod = target.GetModules().FirstOrDefault(m => m.Contains(c.Address)); }
                catch (Exception ex) when (ex is not OperationCanceledException) { /* no image name: the other entries still go */ }
                if (mod is not null) image = ImageFileName(mod);
            }
        }
        catch (OperationCanceledException)
        {
            // Ctrl+Break: nothing is written (a half-made blame would be worse than the default analysis).
            Say(sink, "ntsleuth: no !dpcblame contribution to !analyze: interrupted by user (Ctrl+Break)\n", error: true);
            return CommandDispatcher.E_ABORT;
        }
        catch (MissingSymbolException ms)
        {
            target.DistrustSymbolAnswers();
            Say(sink, $"ntsleuth: no !dpcblame contribution to !analyze: {ms.Message}\n", error: true);
            return CommandDispatcher.E_FAIL;
        }
        catch (Exception ex) when (ex is CommandFailedException or CommandNotApplicableException or ModuleNotLoadedException or TargetReadException)
        {
            Say(sink, $"ntsleuth: no !dpcblame contribution to !analyze: {ex.Message}\n", error: true);
            return CommandDispatcher.E_FAIL;
        }
        var entries = DpcBlameFailureAnalysis.Map(report, image);
        var outcomes = FailureAnalysisWriter.Apply(analysis, entries);
        var blamed = report.Culprit?.Module is not null ? DpcBlameFailureAnalysis.SymbolName(report.Culprit, report) : null;
        Say(sink, blamed is not null
            ? $"ntsleuth: !analyze: DPC_WATCHDOG_VIOLATION blamed on {DpcBlameFailureAnalysis.Clean(blamed)} (from !dpcblame; run !ntsleuth.dpcblame for the evidence)\n"
            : "ntsleuth: !analyze: !dpcblame found no driver frame; evidence added, default blame kept\n", error: false);
        foreach (var o in outcomes.Where(o => !o.Written))
            Say(sink, $"ntsleuth: !analyze: {Extsfns.TagName(o.Entry.Tag)} not written: {o.Reason}\n", error: true);
        return S_OK;
    }

    /// <summary>"ECHO.sys" from the module's image path; null when the module list gives no path (no name invented).</summary>
    internal static string? ImageFileName(Commands.Target.ModuleInfo m)
    {
        var p = m.ImagePath;
        if (string.IsNullOrWhiteSpace(p)) return null;
        int slash = Math.Max(p.LastIndexOf('\\'), p.LastIndexOf('/'));
        return slash >= 0 ? p[(slash + 1)..] : p;
    }

    private static void Say(IOutputSink? sink, string text, bool error)
    {
        if (sink is null) return;
        try { if (error) sink.WriteError(text); else sink.Write(text, false); } catch { /* output is best effort */ }
    }
}
