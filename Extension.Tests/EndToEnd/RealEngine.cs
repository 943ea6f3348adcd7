using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>One command's result in the real engine: its output and the HRESULT/time enginehost measured.</summary>
public sealed record EngineCommandResult(string Command, string Output, uint HResult, double Milliseconds);

/// <summary>A whole enginehost run.</summary>
public sealed record EngineRun(IReadOnlyList<EngineCommandResult> Commands, string Transcript, string Errors, int ExitCode, TimeSpan Wall)
{
    public EngineCommandResult this[string command] =>
        Commands.FirstOrDefault(c => c.Command == command) ?? throw new KeyNotFoundException($"command '{command}' not in the run:\n{Transcript}");
    public EngineCommandResult this[int index] => Commands[index];
}

public sealed record EngineOptions
{
    public string? SymbolPath { get; init; }
    /// <summary>The engine prefers DML (as WinDbg); output arrives raw so links can be checked.</summary>
    public bool PreferDml { get; init; }
    /// <summary>Classic text callbacks: DML rendered to text by the engine, as kd/cdb print it (otherwise -rawdml).</summary>
    public bool Plain { get; init; }
    public int InterruptAfterMs { get; init; }
    /// <summary>enginehost -mem: a "@@mem &lt;private bytes&gt;" line after every "@@end" (see <see cref="RealEngine.PrivateBytes"/>).</summary>
    public bool ReportMemory { get; init; }
    /// <summary>With <see cref="InterruptAfterMs"/>: interrupt only this command (1-based index in the run); 0 = every command.</summary>
    public int InterruptCommand { get; init; }
    /// <summary>
    /// Interrupt when a list walk of the extension yields this many entries (then <see cref="InterruptAfterMs"/> more):
    /// enginehost -interrupt-on-event and the extension's NTSLEUTH_TEST_WALK_SIGNAL hook; 0 = on the timer alone.
    /// </summary>
    public int InterruptOnWalkEntry { get; init; }
    /// <summary>Interrupt when the extension's analysis reaches this named test point (KernelReader.TestPoint), e.g.
    /// "leaktag.modules"; same mechanism as <see cref="InterruptOnWalkEntry"/>.</summary>
    public string? InterruptAtPoint { get; init; }
    public int TimeoutSeconds { get; init; } = 120;
    /// <summary>enginehost -ext: the extension DLL that "@call ..." and "@analyze" (its _EFN_Analyze) use.</summary>
    public string? ExtensionDll { get; init; }
    /// <summary>enginehost -coreclr: a coreclr.dll started as SOS does (LoadLibrary + coreclr_initialize, no hostfxr).</summary>
    public string? ForeignCoreClr { get; init; }
    /// <summary>With <see cref="ForeignCoreClr"/>: before the n-th command (1-based); 0 = before the dump opens.</summary>
    public int ForeignCoreClrAt { get; init; }
    /// <summary>Extra environment for the debugger process (e.g. DOTNET_ROOT, NTSLEUTH_TEST_FAULT).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
}

/// <summary>
/// Drives Microsoft's real dbgeng.dll (NuGet Microsoft.Debugging.Platform.DbgEng) through Native/enginehost:
/// under wine64 on Linux (facts and traps: ../shared/docs/real-engine-on-linux.md), natively on Windows.
/// </summary>
public static class RealEngine
{
    public const string DbgEngPackageVersion = "20260109.1235.0";
    private static readonly object Gate = new();
    private static bool _prefixReady;

    public static bool IsWindows => OperatingSystem.IsWindows();

    public static string? FindWine()
    {
        if (IsWindows) return null;
        foreach (var c in new[] { System.Environment.GetEnvironmentVariable("NTSLEUTH_WINE"), "/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine" })
            if (!string.IsNullOrEmpty(c) && File.Exists(c)) return c;
        return null;
    }

    public static string WinePrefix =>
        System.Environment.GetEnvironmentVariable("WINEPREFIX") is { Length: > 0 } p ? p
        : Path.Combine(System.Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile), ".cache"), "ntsleuth", "wineprefix");

    public static string NuGetPackages =>
        System.Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
        : Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>content/amd64 of the DbgEng package (restored by the test project's PackageDownload).</summary>
    public static string? EngineDir
    {
        get
        {
            var d = Path.Combine(NuGetPackages, "microsoft.debugging.platform.dbgeng", DbgEngPackageVersion, "content", "amd64");
            return File.Exists(Path.Combine(d, "dbgeng.dll")) ? d : null;
        }
    }

    public static string EngineHostExe => Path.Combine(TestPaths.ExtensionBin, "enginehost.exe");

    /// <summary>Checks every prerequisite; skips (or fails when required) naming what is missing.</summary>
    public static void Require()
    {
        if (!IsWindows && FindWine() is null) TestPaths.Unavailable("wine64 is not installed (apt-get install wine64)");
        if (EngineDir is null) TestPaths.Unavailable($"Microsoft.Debugging.Platform.DbgEng {DbgEngPackageVersion} is not restored in {NuGetPackages}");
        if (!File.Exists(EngineHostExe)) TestPaths.Unavailable($"{EngineHostExe} was not built (mingw-w64 missing? scripts/setup-linux.sh)");
        if (!IsWindows) EnsurePrefix();
    }

    /// <summary>A path as the Windows side sees it (Z: maps / under wine).</summary>
    public static string WinPath(string path) => IsWindows ? Path.GetFullPath(path) : "Z:" + Path.GetFullPath(path).Replace('/', '\\');

    private static void EnsurePrefix()
    {
        lock (Gate)
        {
            if (_prefixReady) return;
            var prefix = WinePrefix;
            Directory.CreateDirectory(prefix);
            using (var lockFile = AcquireLock(Path.Combine(Path.GetDirectoryName(prefix)!, ".prefix.lock")))
            {
                if (!File.Exists(Path.Combine(prefix, "system.reg")))
                {
                    // mscoree disabled only for wineboot (skips wine-mono); never at run time.
                    RunQuiet(FindWine()!, ["wineboot", "-i"], new() { ["WINEDLLOVERRIDES"] = "mscoree=d" }, 300);
                    RunQuiet(WineServer, ["-w"], new(), 120);
                }
            }
            // Keep one wineserver warm for the whole test run (each cold start costs ~0.5 s).
            try { RunQuiet(WineServer, ["-p", "120"], new(), 10, wait: false); } catch { }
            _prefixReady = true;
        }
    }

    private static string WineServer
    {
        get
        {
            var dir = Path.GetDirectoryName(FindWine()!)!;
            var s = Path.Combine(dir, "wineserver");
            return File.Exists(s) ? s : "/usr/lib/wine/wineserver";
        }
    }

    private static FileStream AcquireLock(string path)
    {
        for (int i = 0; ; i++)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) when (i < 600) { Thread.Sleep(500); }
        }
    }

    private static void RunQuiet(string exe, string[] args, Dictionary<string, string> env, int timeoutSeconds, bool wait = true)
    {
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        ApplyWineEnv(psi);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        if (!wait) return;
        p.StandardOutput.ReadToEndAsync();
        p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000)) { try { p.Kill(true); } catch { } }
    }

    private static void ApplyWineEnv(ProcessStartInfo psi)
    {
        if (IsWindows) return;
        psi.Environment["WINEPREFIX"] = WinePrefix;
        psi.Environment["WINEDEBUG"] = "-all";
        psi.Environment["DISPLAY"] = "";
        // Wine's stub dbgeng/dbghelp would win even for a full path.
        psi.Environment["WINEDLLOVERRIDES"] = "dbgeng,dbghelp,dbgcore,dbgmodel,msdia140=n";
        // A Linux DOTNET_ROOT means nothing to the Windows side and must not leak into the debugger.
        psi.Environment.Remove("DOTNET_ROOT");
        psi.Environment.Remove("_NT_SYMBOL_PATH");
    }

    /// <summary>
    /// The environment changes <see cref="ApplyWineEnv"/> makes, for hosts started elsewhere (the fuzz tier's runner
    /// in the lab): name -> value, "" = removed.
    /// </summary>
    public static IReadOnlyDictionary<string, string> WineEnvironment()
    {
        var psi = new ProcessStartInfo("x");
        var before = psi.Environment.ToDictionary(e => e.Key, e => e.Value);
        ApplyWineEnv(psi);
        var diff = new Dictionary<string, string>();
        foreach (var (k, v) in psi.Environment) if (!before.TryGetValue(k, out var old) || old != v) diff[k] = v ?? "";
        foreach (var k in before.Keys) if (!psi.Environment.ContainsKey(k)) diff[k] = "";
        return diff;
    }

    private static int _signalSeq;

    /// <summary>Opens <paramref name="dump"/> in the real engine and runs <paramref name="commands"/> in order.</summary>
    public static EngineRun Run(string dump, IReadOnlyList<string> commands, EngineOptions? options = null)
    {
        Require();
        options ??= new EngineOptions();
        var psi = new ProcessStartInfo(IsWindows ? EngineHostExe : FindWine()!)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
        };
        if (!IsWindows) psi.ArgumentList.Add(EngineHostExe);
        psi.ArgumentList.Add("-engine"); psi.ArgumentList.Add(WinPath(EngineDir!));
        psi.ArgumentList.Add("-z"); psi.ArgumentList.Add(WinPath(dump));
        // Never leave the symbol path empty or pointing at a big folder: the default srv* fails offline, and a
        // folder with thousands of entries makes the engine spin for minutes.
        string sym = options.SymbolPath ?? EmptySymbolDir();
        psi.ArgumentList.Add("-y"); psi.ArgumentList.Add(sym.Contains(':') && !IsWindows && !sym.StartsWith('/') ? sym : WinPath(sym));
        if (options.PreferDml) psi.ArgumentList.Add("-dml");
        if (!options.Plain) psi.ArgumentList.Add("-rawdml");
        if (options.InterruptAfterMs > 0) { psi.ArgumentList.Add("-interrupt-after"); psi.ArgumentList.Add(options.InterruptAfterMs.ToString(CultureInfo.InvariantCulture)); }
        if (options.ReportMemory) psi.ArgumentList.Add("-mem");
        if (options.InterruptCommand > 0) { psi.ArgumentList.Add("-interrupt-cmd"); psi.ArgumentList.Add(options.InterruptCommand.ToString(CultureInfo.InvariantCulture)); }
        if (options.InterruptOnWalkEntry > 0 || options.InterruptAtPoint is not null)
        {
            string ev = $"ntsleuth-walk-{System.Environment.ProcessId}-{Interlocked.Increment(ref _signalSeq)}";
            psi.ArgumentList.Add("-interrupt-on-event"); psi.ArgumentList.Add(ev);
            psi.Environment["NTSLEUTH_TEST_WALK_SIGNAL"] = options.InterruptAtPoint is { } point
                ? $"{ev},@{point}" : $"{ev},{options.InterruptOnWalkEntry}";
        }
        if (options.ExtensionDll is { } ext) { psi.ArgumentList.Add("-ext"); psi.ArgumentList.Add(ext); }
        psi.ArgumentList.Add("-timeout"); psi.ArgumentList.Add((options.TimeoutSeconds * 1000).ToString(CultureInfo.InvariantCulture));
        if (options.ForeignCoreClr is { } clr)
        {
            psi.ArgumentList.Add("-coreclr"); psi.ArgumentList.Add(WinPath(clr));
            psi.ArgumentList.Add("-coreclr-at"); psi.ArgumentList.Add(options.ForeignCoreClrAt.ToString(CultureInfo.InvariantCulture));
        }
        foreach (var c in commands) { psi.ArgumentList.Add("-c"); psi.ArgumentList.Add(c); }
        ApplyWineEnv(psi);
        foreach (var (k, v) in options.Environment) psi.Environment[k] = v;

        // Wine occasionally hangs while the engine opens the dump (before any of our code runs; seen as a stall
        // after "loading ntdll.dll"). Such a run is retried once; a hang after the dump opened is a real failure.
        for (int attempt = 1; ; attempt++)
        {
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(psi)!;
            var stdout = new PipeText(p.StandardOutput);
            var stderr = new PipeText(p.StandardError);
            bool exited = p.WaitForExit((options.TimeoutSeconds + 30) * 1000);
            if (!exited) { try { p.Kill(true); } catch { } }
            p.WaitForExit();
            sw.Stop();
            // When this run was the first wine process since wineserver started, wine's own services (services.exe,
            // winedevice, explorer) inherit its pipes and keep them open after enginehost exits: reading to the end
            // would wait forever. The text enginehost wrote is complete once it exited; give the pipe a grace period.
            string all = stdout.Text(TimeSpan.FromSeconds(10)), err = stderr.Text(TimeSpan.FromSeconds(2));
            bool opened = all.Contains("@@begin ", StringComparison.Ordinal);
            bool timedOut = !exited || p.ExitCode == 5 || all.Contains("@@fatal timeout");
            if (timedOut && !opened && attempt == 1)
            {
                TestContext.Progress.WriteLine($"[RealEngine] the engine did not open {Path.GetFileName(dump)} in {options.TimeoutSeconds} s (wine stall); retrying once");
                continue;
            }
            // enginehost itself never exits with 1 and always prints "@@" lines: an exit 1 with no output at all is
            // wine failing to start the process (seen once in CI, 22 ms, empty stdout and stderr, e.g. while a
            // persistent wineserver shut down). Retried once after a pause; our code never ran.
            if (!IsWindows && p.ExitCode == 1 && !all.Contains("@@", StringComparison.Ordinal) && attempt == 1)
            {
                TestContext.Progress.WriteLine($"[RealEngine] wine did not start enginehost (exit 1 in {sw.ElapsedMilliseconds} ms, no output: '{err.Trim()}'); retrying once");
                Thread.Sleep(1000);
                continue;
            }
            if (timedOut)
                Assert.Fail($"enginehost timed out after {options.TimeoutSeconds} s:\n{Tail(all)}\n{err}");
            if (p.ExitCode != 0)
                Assert.Fail($"enginehost failed (exit {p.ExitCode}): {err}\n{Tail(all)}");
            return new EngineRun(Parse(all), all, err, p.ExitCode, sw.Elapsed);
        }
    }

    /// <summary>Runs the commands with a symbol (and image) path; returns each command's output keyed by command text, and the transcript.</summary>
    public static (Dictionary<string, string> ByCommand, string All) Run(string dump, string symPath, IReadOnlyList<string> commands, int timeoutSeconds = 600)
    {
        var run = Run(dump, commands, new EngineOptions { SymbolPath = symPath, Plain = true, TimeoutSeconds = timeoutSeconds });
        var by = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var c in run.Commands) by[c.Command] = c.Output;
        return (by, run.Transcript);
    }

    private static string Tail(string s) => s.Length <= 4000 ? s : "..." + s[^4000..];

    private static readonly Regex EndLine = new(@"^@@end (?:0x)?([0-9a-fA-F]{8}) ([0-9.]+)\r?$", RegexOptions.Multiline);

    private static readonly Regex MemLine = new(@"^@@mem (\d+)(?: (\d+) (\d+))?\r?$", RegexOptions.Multiline);

    /// <summary>The engine process's private bytes after each command, in command order (enginehost -mem); where the
    /// system reports none (wine 8: PrivateUsage 0), the pagefile usage, else the working set.</summary>
    public static List<long> PrivateBytes(string transcript) =>
        MemLine.Matches(transcript).Select(m => Enumerable.Range(1, 3).Select(g => m.Groups[g].Success ? long.Parse(m.Groups[g].Value, CultureInfo.InvariantCulture) : 0)
            .FirstOrDefault(v => v > 0)).ToList();

    /// <summary>The engine's own extension-gallery log lines (&lt;Log message="DownloadUpdates completed..." component="DbgEng"
    /// category="ExtensionGallery" .../&gt;): written asynchronously by the engine into whatever command runs then, never by
    /// the extension (docs/real-engine-lab.md, Traps); not part of a command's output.</summary>
    private static readonly Regex EngineGalleryLog =
        new(@"(?:\r?\n)*<Log message=""[^""\n]*"" component=""DbgEng"" category=""ExtensionGallery""[^\n]*?/>(?:\r?\n)*");

    /// <summary>Removes the engine's gallery log lines with the line breaks the engine wrote around them (seen in CI: a blank
    /// line left at the start of the first command's output): at the start or end of the output the log and its breaks go;
    /// between two lines of the command's own output one line break stays.</summary>
    internal static string StripEngineLog(string body) =>
        EngineGalleryLog.Replace(body, m => m.Index == 0 || m.Index + m.Length == body.Length ? "" : "\n");

    internal static List<EngineCommandResult> Parse(string transcript)
    {
        var list = new List<EngineCommandResult>();
        int pos = 0;
        while (true)
        {
            int b = transcript.IndexOf("@@begin ", pos, StringComparison.Ordinal);
            if (b < 0) break;
            int nl = transcript.IndexOf('\n', b);
            if (nl < 0) nl = transcript.Length;
            string cmd = transcript[(b + 8)..nl].TrimEnd('\r');
            var m = EndLine.Match(transcript, nl);
            if (!m.Success) { list.Add(new EngineCommandResult(cmd, transcript[(nl + 1)..], 0xFFFFFFFF, 0)); break; }
            string body = StripEngineLog(transcript[(nl + 1)..m.Index]);
            if (body.EndsWith('\n')) body = body[..^1];
            list.Add(new EngineCommandResult(cmd, body, uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber),
                double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)));
            pos = m.Index + m.Length;
        }
        return list;
    }

    private static string EmptySymbolDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "ntsleuth-e2e-nosymbols");
        Directory.CreateDirectory(d);
        return d;
    }
}

/// <summary>Drains a child's pipe into memory; <see cref="Text"/> returns what arrived, waiting at most a grace period
/// for the end of the stream (another process may hold the write end open after the child exited).</summary>
internal sealed class PipeText
{
    private readonly System.Text.StringBuilder _text = new();
    private readonly Task _pump;

    public PipeText(StreamReader reader)
    {
        _pump = Task.Run(async () =>
        {
            var buf = new char[16384];
            int n;
            while ((n = await reader.ReadAsync(buf.AsMemory()).ConfigureAwait(false)) > 0)
                lock (_text) _text.Append(buf, 0, n);
        });
    }

    public string Text(TimeSpan grace)
    {
        try { _pump.Wait(grace); } catch (AggregateException) { }
        lock (_text) return _text.ToString();
    }
}
