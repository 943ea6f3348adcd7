using System.Text.Json.Nodes;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// Runs a command by name with the exception barrier: nothing escapes. Returns an HRESULT for the engine.
/// In -json mode every outcome (result, usage error, not applicable, failure, interruption, internal error) is
/// exactly one JSON document (<see cref="JsonReport"/>); -out writes the output to a file (docs/json.md).
/// </summary>
public static class CommandDispatcher
{
    public const int S_OK = 0;
    public const int E_FAIL = unchecked((int)0x80004005);
    public const int E_INVALIDARG = unchecked((int)0x80070057);
    public const int E_ABORT = unchecked((int)0x80004004);

    public static int Run(string name, string? args, ITarget target, IOutputSink sink, ReadStats? stats = null)
    {
        var (json, outFile) = (false, (string?)null);
        try
        {
            (json, outFile) = ParsedArgs.PeekOutput(args);
            if (string.Equals(name, "help", StringComparison.OrdinalIgnoreCase))
            {
                sink.Write(CommandRegistry.HelpText(), false);
                return S_OK;
            }
            var cmd = CommandRegistry.Find(name);
            if (cmd is null)
            {
                string msg = $"ntsleuth: unknown command '{name}'. Run !ntsleuth.help for the list.";
                if (json) return EmitJson(sink, JsonReport.Failure(name, args, "usageError", "unknownCommand", msg), outFile, E_INVALIDARG);
                sink.WriteError(msg + "\n");
                return E_INVALIDARG;
            }
            return RunCommand(cmd, args, target, sink, stats, json, outFile);
        }
        catch (Exception ex)
        {
            string msg = $"ntsleuth: internal error: {ex.GetType().Name}: {ex.Message}";
            if (json)
            {
                try { return EmitJson(sink, JsonReport.Failure(name, args, "internalError", "internal", msg), outFile, E_FAIL); }
                catch { /* fall back to the text line */ }
            }
            SafeError(sink, msg + "\n");
            return E_FAIL;
        }
    }

    /// <summary>
    /// The host's own barrier (an exception before or around the dispatcher, e.g. while creating the target): in
    /// -json mode still one JSON document (status internalError), else the text lines. Never throws.
    /// </summary>
    public static int ReportHostFailure(string name, string? args, IOutputSink sink, Exception ex)
    {
        string msg = $"ntsleuth: internal error in !{name}: {ex.GetType().FullName}: {ex.Message}";
        try
        {
            var (json, outFile) = ParsedArgs.PeekOutput(args);
            if (json) return EmitJson(sink, JsonReport.Failure(name, args, "internalError", "internal", msg), outFile, E_FAIL);
        }
        catch { /* fall back to the text line */ }
        SafeError(sink, msg + "\n  The debugger session is unaffected; please report this with the command line.\n");
        return E_FAIL;
    }

    /// <summary>How a run ended when it produced no result.</summary>
    private sealed record Outcome(int HResult, string Status, string Kind, string Message, bool WithUsage = false);

    private static int RunCommand(ICommand cmd, string? args, ITarget target, IOutputSink sink, ReadStats? stats, bool json, string? outFile)
    {
        ParsedArgs parsed;
        try
        {
            parsed = ParsedArgs.Parse(args, cmd.Spec);
        }
        catch (UsageException ue)
        {
            return Fail(cmd, args, sink, null, json, outFile, new Outcome(E_INVALIDARG, "usageError", "usage", ue.Message, true));
        }
        if (parsed.WantsHelp)
        {
            if (json) return EmitJson(sink, JsonReport.Failure(cmd.Name, args, "help", "help", "usage requested", cmd.Usage), outFile, S_OK);
            sink.Write(cmd.Usage, false);
            return S_OK;
        }
        CommandContext? ctx = null;
        Outcome outcome;
        try
        {
            ctx = new CommandContext(target, sink, parsed, stats);
            cmd.Execute(ctx);
            return Finish(cmd, args, sink, ctx, parsed);
        }
        catch (UsageException ue) { outcome = new Outcome(E_INVALIDARG, "usageError", "usage", ue.Message, true); }
        catch (CommandNotApplicableException na) { outcome = new Outcome(S_OK, "notApplicable", "notApplicable", na.Message); }
        catch (Kernel.ModuleNotLoadedException nl) { outcome = new Outcome(S_OK, "notApplicable", "notApplicable", nl.Message); }
        catch (CommandFailedException cf) { outcome = new Outcome(E_FAIL, "error", "failed", cf.Message); }
        catch (MissingSymbolException ms) when (target.IsInterruptRequested || AbortedByEngine(target, ms, out _reaskMs))
        {
            // The engine aborts a symbol load for a Ctrl+Break and swallows it: the "not found" was the interrupt.
            target.DistrustSymbolAnswers();
            outcome = new Outcome(E_ABORT, "interrupted", "interrupted",
                $"interrupted by user (Ctrl+Break) while the engine was loading symbols: it aborted the lookup of {ms.What} " +
                $"(it has it when asked again{(_reaskMs > 0 ? $", {_reaskMs:F0} ms" : "")}); nothing to show yet. Run the command again.");
        }
        catch (MissingSymbolException ms) { target.DistrustSymbolAnswers(); outcome = new Outcome(E_FAIL, "error", "missingSymbol", SymbolDiagnosis.Explain(target, ms)); } // symbols missing, or memory (module list, image header) damaged: say which
        // The target may say where it stopped ("... while loading the layout of nt!_EPROCESS from the symbols").
        catch (OperationCanceledException oce) { outcome = new Outcome(E_ABORT, "interrupted", "interrupted",
            oce.Message.StartsWith("interrupted by user", StringComparison.Ordinal) ? oce.Message + "; nothing to show yet." : "interrupted by user (Ctrl+Break)."); }
        catch (TargetReadException tr) { outcome = new Outcome(E_FAIL, "error", "targetRead", tr.Message); }
        catch (Exception ex)
        {
            outcome = new Outcome(E_FAIL, "internalError", "internal", $"internal error: {ex.GetType().FullName}: {ex.Message}" +
                (parsed.Verbose ? "\n" + ex.StackTrace : (json ? "" : "\n  (run with -v for the stack; please report it)")));
        }
        return Fail(cmd, args, sink, ctx, json, outFile, outcome);
    }

    /// <summary>A "not found" the engine answers when asked again: its first answer was an aborted lookup. Never throws.</summary>
    private static bool AbortedByEngine(ITarget target, MissingSymbolException ms, out double ms2)
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        try { return target.EngineHasItNow(ms.What); }
        catch { return false; }
        finally { ms2 = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds; }
    }

    [ThreadStatic] private static double _reaskMs;

    private static int Fail(ICommand cmd, string? args, IOutputSink sink, CommandContext? ctx, bool json, string? outFile, Outcome o)
    {
        if (json)
            return EmitJson(sink, JsonReport.Failure(cmd.Name, args, o.Status, o.Kind, o.Message, o.WithUsage ? cmd.Usage : null,
                ctx?.Capture, ctx?.Args.Has("stats") == true ? ctx.Stats : null), outFile, o.HResult);
        // Text: what the command wrote before it failed (captured with -out) still reaches the user, then the error.
        if (ctx?.Capture is { } cap)
        {
            if (cap.Text.Length > 0) SafeWrite(sink, cap.Text);
            if (cap.Errors.Length > 0) SafeError(sink, cap.Errors);
        }
        SafeError(sink, $"!{cmd.Name}: {o.Message}\n");
        if (o.WithUsage) SafeWrite(sink, cmd.Usage);
        return o.HResult;
    }

    private static int Finish(ICommand cmd, string? args, IOutputSink sink, CommandContext ctx, ParsedArgs parsed)
    {
        var stats = parsed.Has("stats") ? ctx.Stats : null;
        if (ctx.IsJson)
        {
            var doc = ctx.JsonModel is { } model
                ? JsonReport.Ok(cmd.Name, args, model, ctx.Capture, stats)
                : JsonReport.Failure(cmd.Name, args, "internalError", "noResult", "the command produced no JSON result", null, ctx.Capture, stats);
            return EmitJson(sink, doc, parsed.Get("out"), ctx.JsonModel is null ? E_FAIL : S_OK);
        }
        if (stats is not null) ctx.Sink.Write($"[ntsleuth] {stats}\n", false);
        if (parsed.Get("out") is { } path && ctx.Capture is { } cap)
        {
            if (cap.Errors.Length > 0) sink.WriteError(cap.Errors);
            if (TryWriteFile(path, cap.Text, out var full, out var err))
            {
                sink.Write($"ntsleuth: !{cmd.Name} output written to {full} ({cap.Text.Length:N0} characters)\n", false);
                return S_OK;
            }
            sink.Write(cap.Text, false);
            sink.WriteError($"!{cmd.Name}: cannot write -out file '{path}': {err}\n");
            return E_FAIL;
        }
        return S_OK;
    }

    /// <summary>Writes the document to the debugger, or to the -out file (then nothing is printed). When the file
    /// cannot be written the document goes to the debugger with <c>outFileError</c> and the run fails.</summary>
    private static int EmitJson(IOutputSink sink, JsonObject doc, string? outFile, int hr)
    {
        if (outFile is not null)
        {
            if (TryWriteFile(outFile, JsonReport.Serialize(doc), out _, out var err)) return hr;
            doc["outFileError"] = $"cannot write '{outFile}': {err}";
            hr = E_FAIL;
        }
        sink.Write(JsonReport.Serialize(doc), false);
        return hr;
    }

    /// <summary>Writes through a temporary file in the same folder and renames, so a reader never sees half a file.</summary>
    private static bool TryWriteFile(string path, string text, out string fullPath, out string error)
    {
        fullPath = path; error = "";
        try
        {
            fullPath = Path.GetFullPath(path);
            var tmp = fullPath + $".tmp{Environment.ProcessId}";
            File.WriteAllText(tmp, text);
            File.Move(tmp, fullPath, overwrite: true);
            return true;
        }
        catch (Exception ex) { error = ex.Message; return false; }
    }

    private static void SafeWrite(IOutputSink sink, string text)
    {
        try { sink.Write(text, false); } catch { /* the barrier: never throw into the engine */ }
    }

    private static void SafeError(IOutputSink sink, string text)
    {
        try { sink.WriteError(text); } catch { /* the barrier: never throw into the engine */ }
    }
}
