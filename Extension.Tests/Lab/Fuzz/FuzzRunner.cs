using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace NtSleuth.Lab.Fuzz;

/// <summary>How a command reaches the extension: IDebugControl::Execute ("!cmd") or IDebugControl::CallExtension.</summary>
public enum CallPath { Execute, CallExtension }

/// <summary>The command's output mode (its own -dml / -json switches; text is the default).</summary>
public enum FuzzOutput { Text, Dml, Json }

/// <summary>The verdict on one command run.</summary>
public enum FuzzClass
{
    Ok, Crash, Hang, LeakedException, Injection, BadJson,
    /// <summary>The command blames the symbols although only memory was damaged (the mutants never touch symbol files).</summary>
    WrongDiagnosis,
    /// <summary>The engine could not open the mutant (no extension code ran): not a defect of ours, counted apart.</summary>
    Unopenable,
    /// <summary>Not run: an earlier command on the same mutant ended the engine process (that command carries the verdict).</summary>
    NotRun,
}

/// <summary>One command of a sample in one call path and output mode.</summary>
public sealed record FuzzInvocation(string Command, CallPath Path, FuzzOutput Output)
{
    /// <summary>The enginehost -c argument: "!name args -dml" or "@call name args -dml".</summary>
    public string HostCommand
    {
        get
        {
            string c = Command.TrimStart('!') + Output switch { FuzzOutput.Dml => " -dml", FuzzOutput.Json => " -json", _ => "" };
            return Path == CallPath.Execute ? "!" + c : "@call " + c;
        }
    }
    public string Label => $"{Command} [{(Path == CallPath.Execute ? "exec" : "callext")},{Output.ToString().ToLowerInvariant()}]";
}

/// <summary>A mutant written to disk with the invocations to run on it.</summary>
public sealed record FuzzCase(Mutant Mutant, string DumpPath, string SymbolPath, IReadOnlyList<FuzzInvocation> Invocations);

public sealed record FuzzResult(FuzzCase Case, FuzzInvocation Invocation, FuzzClass Class, string Detail, string Output, double Milliseconds);

/// <summary>Where the engine and the extension are (the test tier and scripts/fuzz.sh fill it in).</summary>
public sealed record FuzzEngine
{
    /// <summary>wine64 on Linux; null on Windows.</summary>
    public string? Wine { get; init; }
    public required string HostExe { get; init; }
    /// <summary>Folder with dbgeng.dll, as the Windows side sees it.</summary>
    public required string EngineDir { get; init; }
    /// <summary>ntsleuth.dll of a package with its runtime, as the Windows side sees it.</summary>
    public required string ExtensionDll { get; init; }
    /// <summary>Host path -> the path the Windows side sees (Z:\... under wine).</summary>
    public required Func<string, string> WinPath { get; init; }
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
    public int CommandTimeoutMs { get; init; } = 120_000;
    /// <summary>Mutants opened one after another in one engine process (EndSession + OpenDumpFile).</summary>
    public int BatchSize { get; init; } = 25;
    /// <summary>Engine processes running at the same time.</summary>
    public int Workers { get; init; } = 1;
}

/// <summary>
/// Runs fuzz cases in Microsoft's real engine through Native/enginehost: several mutants per process (EndSession +
/// OpenDumpFile between them), `.load` of the extension on each, then every invocation; a per-command timeout
/// (enginehost -cmdtimeout) turns a hang into a verdict. A crash or hang ends the process: the failing run is
/// classified and the batch resumes after it in a new process.
/// </summary>
public static class FuzzRunner
{
    public static List<FuzzResult> Run(FuzzEngine engine, IReadOnlyList<FuzzCase> cases, TextWriter? progress = null)
    {
        var results = new List<FuzzResult>();
        int next = 0;
        while (next < cases.Count)
        {
            var batch = cases.Skip(next).Take(Math.Max(1, engine.BatchSize)).ToList();
            int done = RunBatch(engine, batch, results, progress);
            next += Math.Max(1, done);
        }
        return results;
    }

    /// <summary>Runs a batch; returns how many of its cases are finished (all, or up to and including the one that killed the host).</summary>
    private static int RunBatch(FuzzEngine engine, List<FuzzCase> batch, List<FuzzResult> results, TextWriter? progress)
    {
        var psi = new ProcessStartInfo(engine.Wine ?? engine.HostExe)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = Encoding.UTF8,
        };
        var args = psi.ArgumentList;
        if (engine.Wine is not null) args.Add(engine.HostExe);
        args.Add("-engine"); args.Add(engine.EngineDir);
        args.Add("-rawdml");
        args.Add("-tagerr");
        args.Add("-ext"); args.Add(engine.ExtensionDll);
        args.Add("-cmdtimeout"); args.Add(engine.CommandTimeoutMs.ToString(CultureInfo.InvariantCulture));
        int total = 60_000 + batch.Sum(c => 5_000 + c.Invocations.Count * engine.CommandTimeoutMs);
        args.Add("-timeout"); args.Add(total.ToString(CultureInfo.InvariantCulture));
        foreach (var c in batch)
        {
            args.Add("-z"); args.Add(engine.WinPath(c.DumpPath));
            args.Add("-y"); args.Add(engine.WinPath(c.SymbolPath));
            args.Add("-c"); args.Add(".load " + engine.ExtensionDll);
            foreach (var inv in c.Invocations) { args.Add("-c"); args.Add(inv.HostCommand); }
        }
        foreach (var (k, v) in engine.Environment) { if (v.Length == 0) psi.Environment.Remove(k); else psi.Environment[k] = v; }
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(total + 30_000)) { try { p.Kill(true); } catch { } }
        p.WaitForExit();
        string transcript = stdout.Result;
        int exit = p.ExitCode;
        var groups = SplitGroups(transcript, batch.Count);
        int finished = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var c = batch[i];
            var g = groups[i];
            if (g is null) break;                       // never reached: the host ended earlier
            finished = i + 1;
            if (g.Contains("\n@@dumpfail ", StringComparison.Ordinal) || (!g.Contains("@@begin ", StringComparison.Ordinal) && i < batch.Count - 1 && groups[i + 1] is not null))
            {
                foreach (var inv in c.Invocations) results.Add(new FuzzResult(c, inv, FuzzClass.Unopenable, "the engine did not open the mutant", Tail(g), 0));
                continue;
            }
            var runs = ParseCommands(g);
            bool last = i == batch.Count - 1 || groups[i + 1] is null;
            bool ended = transcript.Contains("@@host done", StringComparison.Ordinal);
            if (!last || ended)
            {
                foreach (var inv in c.Invocations)
                {
                    var r = runs.FirstOrDefault(x => x.Command == inv.HostCommand && x.Ended);
                    results.Add(r is null ? new FuzzResult(c, inv, FuzzClass.Crash, "no result framed for the command", Tail(g), 0) : Classify(c, inv, r.Output, r.Ms));
                }
                continue;
            }
            // The host died in this group: before the dump opened, or in a command.
            bool hang = exit == 6 || g.Contains("@@fatal hang", StringComparison.Ordinal);
            bool opened = g.Contains("@@begin ", StringComparison.Ordinal);
            foreach (var inv in c.Invocations)
            {
                var r = runs.FirstOrDefault(x => x.Command == inv.HostCommand);
                if (r is { Ended: true }) results.Add(Classify(c, inv, r.Output, r.Ms));
                else if (r is not null)
                    results.Add(new FuzzResult(c, inv, hang ? FuzzClass.Hang : FuzzClass.Crash,
                        hang ? $"no answer in {engine.CommandTimeoutMs} ms" : $"engine process ended (exit {exit}) during the command; stderr: {Tail(stderr.Result, 600)}", Tail(r.Output), 0));
                else if (!opened)
                    results.Add(new FuzzResult(c, inv, FuzzClass.Unopenable, $"the engine process ended while opening the mutant (exit {exit})", Tail(g), 0));
                else results.Add(new FuzzResult(c, inv, FuzzClass.NotRun, "an earlier command on this mutant ended the engine process", "", 0));
            }
            break;
        }
        progress?.WriteLine($"[fuzz] batch of {batch.Count} mutant(s): {finished} done in {sw.Elapsed.TotalSeconds:F1} s (exit {exit})");
        return finished;
    }

    /// <summary>The transcript of each "@@dump n" group (null when the host never got there).</summary>
    private static string?[] SplitGroups(string transcript, int n)
    {
        var res = new string?[n];
        var marks = Regex.Matches(transcript, @"^@@dump (\d+) ", RegexOptions.Multiline);
        for (int i = 0; i < marks.Count; i++)
        {
            int idx = int.Parse(marks[i].Groups[1].Value, CultureInfo.InvariantCulture);
            int start = marks[i].Index, end = i + 1 < marks.Count ? marks[i + 1].Index : transcript.Length;
            if (idx < n) res[idx] = transcript[start..end];
        }
        // A single dump has no "@@dump" line: the whole transcript is its group.
        if (n == 1 && marks.Count == 0) res[0] = transcript;
        return res;
    }

    private sealed record CommandRun(string Command, string Output, bool Ended, double Ms);

    private static readonly Regex EndLine = new(@"^@@end (?:0x)?([0-9a-fA-F]{8}) ([0-9.]+)\r?$", RegexOptions.Multiline);

    private static List<CommandRun> ParseCommands(string g)
    {
        var list = new List<CommandRun>();
        int pos = 0;
        while (true)
        {
            int b = g.IndexOf("@@begin ", pos, StringComparison.Ordinal);
            if (b < 0) break;
            int nl = g.IndexOf('\n', b);
            if (nl < 0) nl = g.Length;
            string cmd = g[(b + 8)..nl].TrimEnd('\r');
            var m = EndLine.Match(g, Math.Min(nl, g.Length));
            int nextBegin = g.IndexOf("@@begin ", Math.Min(nl, g.Length), StringComparison.Ordinal);
            if (!m.Success || (nextBegin >= 0 && m.Index > nextBegin))
            {
                list.Add(new CommandRun(cmd, g[Math.Min(nl + 1, g.Length)..(nextBegin >= 0 ? nextBegin : g.Length)], false, 0));
                if (nextBegin < 0) break;
                pos = nextBegin;
                continue;
            }
            string body = g[Math.Min(nl + 1, m.Index)..m.Index];
            list.Add(new CommandRun(cmd, body, true, double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)));
            pos = m.Index + m.Length;
        }
        return list;
    }

    // ---- classification ----------------------------------------------------------------------------------------

    /// <summary>.NET exception names and stack-trace lines that must never reach the user (a symbol such as
    /// nt!KiDispatchException in a stack is the target's, not a leak).</summary>
    private static readonly Regex Leak = new(@"(?<![!\w])System\.[A-Z][A-Za-z]+|(?<![!\w+])[A-Z][A-Za-z]*Exception\b|^\s+at [\w.`<>\[\]]+\(|internal error|NtSleuth\.[A-Z]\w+\.", RegexOptions.Multiline);
    /// <summary>The "symbols are missing, run .symfix" advice (MissingSymbolException's message).</summary>
    private static readonly Regex SymbolBlame = new(@"symbols for '[^']*' are missing or wrong|Run \.symfix");
    private static readonly Regex LinkCmd = new("<(?:exec|link)\\s[^>]*?cmd=\"([^\"]*)\"", RegexOptions.Singleline);
    /// <summary>The engine's own DML (log, activity, telemetry) interleaved with command output.</summary>
    /// <summary>
    /// The engine's own output in a command's frame: its DML log, activity and telemetry elements, and the context
    /// errors it prints before it calls any extension command on a target whose register context is damaged (seen for
    /// !ntsleuth.help, which reads nothing: "GetContextState failed, 0xD0000147", "Unable to get program counter") and
    /// from inside IDebugControl::GetStackTrace ("Unable to get current machine context, NTSTATUS 0xC0000147").
    /// </summary>
    private static readonly Regex EngineNoise = new(@"<Log [^>]*?/>|<Log message=""[\s\S]*?/>|<Activity[\s\S]*?</Activity>|<Event [^>]*/>" +
        @"|^(?:@@err )?(?:GetContextState failed, 0x[0-9A-Fa-f]+|Unable to get program counter|Unable to get current machine context, NTSTATUS 0x[0-9A-Fa-f]+)\r?$", RegexOptions.Multiline);

    public static FuzzResult Classify(FuzzCase c, FuzzInvocation inv, string rawOutput, double ms)
    {
        var (cls, detail) = Classify(inv.Output, rawOutput, c.Mutant.Payloads);
        return new FuzzResult(c, inv, cls, detail, Tail(rawOutput), ms);
    }

    /// <summary>The verdict on one command's raw output (as the engine's IDebugOutputCallbacks2 received it).</summary>
    public static (FuzzClass, string) Classify(FuzzOutput mode, string rawOutput, IReadOnlyList<string> payloads)
    {
        // enginehost -tagerr: "@@err " starts each DEBUG_OUTPUT_ERROR chunk (the engine's own errors, ours).
        string output = EngineNoise.Replace(rawOutput, "");
        string normal = string.Join('\n', output.Split('\n').Where(l => !l.StartsWith("@@err ", StringComparison.Ordinal)));
        output = output.Replace("@@err ", "");
        if (Leak.Match(output) is { Success: true } lm)
            return (FuzzClass.LeakedException, $"'{lm.Value}' in: {LineOf(output, lm.Index)}");
        if (mode == FuzzOutput.Dml)
        {
            foreach (var p in payloads)
            {
                if (p.IndexOfAny(['<', '>', '&', '"']) >= 0 && p.Length >= 2 && output.Contains(p, StringComparison.Ordinal))
                    return (FuzzClass.Injection, $"target text '{p}' appears unescaped in DML: {LineOf(output, output.IndexOf(p, StringComparison.Ordinal))}");
            }
            foreach (Match m in LinkCmd.Matches(output))
            {
                string cmd = System.Net.WebUtility.HtmlDecode(m.Groups[1].Value);
                foreach (var p in payloads)
                    if (p.Length >= 3 && p.IndexOfAny([';', '"', '<', '>']) >= 0 && cmd.Contains(p, StringComparison.Ordinal))
                        return (FuzzClass.Injection, $"link command carries target text '{p}': {cmd}");
                if (cmd.Contains(';') || cmd.IndexOfAny(['\r', '\n']) >= 0)
                    return (FuzzClass.Injection, $"link command chains commands: {cmd}");
            }
        }
        if (SymbolBlame.Match(output) is { Success: true } sb)
            return (FuzzClass.WrongDiagnosis, $"blames symbols for damaged memory: {LineOf(output, sb.Index)}");
        if (mode == FuzzOutput.Json)
        {
            // The document is the normal output; errors (ours, and the engine's own such as "GetContextState failed")
            // go to DEBUG_OUTPUT_ERROR, which a -json consumer reads apart. A failed command prints only its error.
            string json = normal.Trim();
            if (json.StartsWith('{') || json.StartsWith('['))
            {
                try { using var _ = JsonDocument.Parse(json); }
                catch (JsonException je) { return (FuzzClass.BadJson, $"not one JSON document: {je.Message}"); }
            }
            else if (json.Contains('{'))
                return (FuzzClass.BadJson, $"text around the JSON document: {LineOf(json, 0)}");
        }
        return (FuzzClass.Ok, "");
    }

    private static string LineOf(string s, int index)
    {
        int a = s.LastIndexOf('\n', Math.Max(0, Math.Min(index, s.Length - 1))) + 1;
        int b = s.IndexOf('\n', Math.Min(index, s.Length));
        string line = s[a..(b < 0 ? s.Length : b)].Trim();
        return line.Length > 200 ? line[..200] + "..." : line;
    }

    private static string Tail(string s, int n = 3000) => s.Length <= n ? s : "..." + s[^n..];

    // ---- reporting ---------------------------------------------------------------------------------------------

    /// <summary>Figures per command and per class, then every failure with its reproduction (sample, strategy, seed).</summary>
    public static string Report(IReadOnlyList<FuzzResult> results, int maxFailures = 40)
    {
        var sb = new StringBuilder();
        var classes = Enum.GetValues<FuzzClass>();
        sb.AppendLine($"{"command",-44} {"mutants",7} {"runs",6} " + string.Join(" ", classes.Select(c => $"{c,8}")));
        foreach (var g in results.GroupBy(r => r.Invocation.Command).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            int mutants = g.Select(r => r.Case.Mutant.Id).Distinct().Count();
            sb.AppendLine($"{g.Key,-44} {mutants,7} {g.Count(),6} " + string.Join(" ", classes.Select(c => $"{g.Count(r => r.Class == c),8}")));
        }
        sb.AppendLine($"{"total",-44} {results.Select(r => r.Case.Mutant.Id).Distinct().Count(),7} {results.Count,6} " + string.Join(" ", classes.Select(c => $"{results.Count(r => r.Class == c),8}")));
        sb.AppendLine("per strategy (runs not ok / runs): " + string.Join(", ", results.GroupBy(r => r.Case.Mutant.Strategy).Select(g => $"{g.Key} {g.Count(r => r.Class != FuzzClass.Ok)}/{g.Count()}")));
        var bad = results.Where(r => r.Class is not (FuzzClass.Ok or FuzzClass.NotRun)).ToList();
        foreach (var f in bad.Take(maxFailures))
            sb.AppendLine($"{f.Class}: {f.Invocation.Label} on {f.Case.Mutant.Id}: {f.Detail}\n    mutation: {f.Case.Mutant.Describe()}\n    output: {Indent(f.Output)}");
        if (bad.Count > maxFailures) sb.AppendLine($"... {bad.Count - maxFailures} more");
        return sb.ToString();
    }

    private static string Indent(string s)
    {
        var lines = s.Replace("\r", "").Split('\n').Where(l => l.Length > 0).TakeLast(12);
        return string.Join("\n      ", lines);
    }
}
