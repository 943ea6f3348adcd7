using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>Output of one command run by enginehost.exe (framed by "@@begin cmd" / "@@end hr ms").</summary>
public sealed record EngineCommand(string Command, string Output, uint Hr, double Milliseconds);

public sealed record EngineRun(IReadOnlyList<EngineCommand> Commands, string Raw, int ExitCode, double WallMilliseconds)
{
    public EngineCommand this[int i] => Commands[i];
    public EngineCommand Single(string command) => Commands.Single(c => c.Command == command);
    /// <summary>True when the host reached its normal end (the engine did not crash or hang).</summary>
    public bool Completed => Raw.Contains("@@host done");
}

/// <summary>
/// Runs Microsoft's real dbgeng.dll (NuGet Microsoft.Debugging.Platform.DbgEng) through enginehost.exe:
/// natively on Windows, under wine64 on Linux. Finds every prerequisite and skips (or fails when
/// NTSLEUTH_REQUIRE_E2E=1) with a clear reason when one is missing.
/// </summary>
public sealed class RealEngine
{
    public const string DbgEngVersion = "20260109.1235.0";
    public string RepoRoot { get; }
    public string SharedDir => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
    public string BuildDir { get; }
    public string EngineDir { get; }
    public string EngineHost { get; }
    public string? Wine { get; }
    public string? WineServer { get; }
    public string? WinePrefix { get; }

    RealEngine(string root, string build, string engine, string host, string? wine, string? wineServer, string? prefix)
    {
        RepoRoot = root; BuildDir = build; EngineDir = engine; EngineHost = host; Wine = wine; WineServer = wineServer; WinePrefix = prefix;
    }

    static RealEngine? _instance;
    static string? _unavailable;
    static readonly object Gate = new();

    public static bool Required => Environment.GetEnvironmentVariable("NTSLEUTH_REQUIRE_E2E") == "1";

    /// <summary>Skips the test (Assert.Ignore), or fails it when NTSLEUTH_REQUIRE_E2E=1.</summary>
    public static void Unavailable(string reason)
    {
        if (Required) Assert.Fail($"end-to-end prerequisite missing (NTSLEUTH_REQUIRE_E2E=1): {reason}");
        Assert.Ignore($"end-to-end tier skipped: {reason}");
    }

    /// <summary>The shared engine (wine kept warm for the whole run).</summary>
    public static RealEngine Get()
    {
        lock (Gate)
        {
            if (_instance is null && _unavailable is null)
            {
                try { _instance = Create(out _unavailable); }
                catch (Exception ex) { _unavailable = ex.Message; }
            }
            if (_instance is null) Unavailable(_unavailable!);
            return _instance!;
        }
    }

    public static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "NtSleuthExt.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("NtSleuthExt.sln not found above the test directory");
    }

    static RealEngine? Create(out string? reason)
    {
        reason = null;
        string root = FindRepoRoot();
        string config = TestContext.CurrentContext.TestDirectory.Replace('\\', '/').Contains("/Release/") ? "Release" : "Debug";
        string build = Path.Combine(root, "Extension", "bin", config, "net10.0");
        foreach (var f in new[] { "ntsleuth.dll", "nethost.dll", "enginehost.exe", "NtSleuth.Extension.dll" })
            if (!File.Exists(Path.Combine(build, f)))
            {
                reason = $"{Path.Combine(build, f)} not built (the native build needs x86_64-w64-mingw32-gcc: run scripts/setup-linux.sh, then dotnet build)";
                return null;
            }
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np
            ? np : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string engine = Path.Combine(packages, "microsoft.debugging.platform.dbgeng", DbgEngVersion, "content", "amd64");
        if (!File.Exists(Path.Combine(engine, "dbgeng.dll")))
        {
            reason = $"dbgeng.dll not found in {engine} (restore of Microsoft.Debugging.Platform.DbgEng {DbgEngVersion} missing)";
            return null;
        }
        if (OperatingSystem.IsWindows())
            return new RealEngine(root, build, engine, Path.Combine(build, "enginehost.exe"), null, null, null);

        string? wine = FindExe("wine64", "/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/lib/x86_64-linux-gnu/wine/wine64");
        string? server = FindExe("wineserver", "/usr/lib/wine/wineserver", "/usr/lib/wine/wineserver64", "/usr/bin/wineserver");
        if (wine is null || server is null) { reason = "wine64 not installed (run scripts/setup-linux.sh)"; return null; }
        string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x
            ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        string prefix = Environment.GetEnvironmentVariable("WINEPREFIX") is { Length: > 0 } wp ? wp : Path.Combine(cache, "ntsleuth", "wineprefix");
        var e = new RealEngine(root, build, engine, Path.Combine(build, "enginehost.exe"), wine, server, prefix);
        if (!File.Exists(Path.Combine(prefix, "system.reg")))
        {
            // Create the prefix the same way the scripts do (mscoree disabled only for wineboot).
            var psi = new ProcessStartInfo("bash", new[] { "-c", $". '{Path.Combine(root, "scripts", "wine-env.sh")}'" });
            psi.Environment["WINEPREFIX"] = prefix;
            using var p = Process.Start(psi)!;
            p.WaitForExit(180_000);
            if (!File.Exists(Path.Combine(prefix, "system.reg"))) { reason = $"could not create the wine prefix {prefix}"; return null; }
        }
        // Keep one wineserver warm for the whole test run (exits 120 s after the last wine process).
        try
        {
            var psi = new ProcessStartInfo(server, "-p120") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            psi.Environment["WINEPREFIX"] = prefix;
            using var p = Process.Start(psi)!;
            p.WaitForExit(10_000);
        }
        catch { /* a server may already run: fine */ }
        return e;
    }

    static string? FindExe(string name, params string[] candidates)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return candidates.FirstOrDefault(File.Exists);
    }

    /// <summary>A path as the Windows process sees it (wine maps / to Z:).</summary>
    public string WinPath(string path) => Wine is null ? Path.GetFullPath(path) : "Z:" + Path.GetFullPath(path).Replace('/', '\\');

    /// <summary>Lays out the user package (like scripts/package.sh) in a temp folder; cached per process.</summary>
    public string Package(bool withRuntime)
    {
        lock (Gate)
        {
            string dir = Path.Combine(Path.GetTempPath(), $"ntsleuth-e2e-{Environment.ProcessId}", withRuntime ? "pkg-rt" : "pkg");
            if (File.Exists(Path.Combine(dir, "ntsleuth.dll"))) return dir;
            Directory.CreateDirectory(dir);
            foreach (var f in Directory.GetFiles(BuildDir))
            {
                string n = Path.GetFileName(f);
                if (n is "ntsleuth.dll" or "nethost.dll" || (n.StartsWith("NtSleuth.") && (n.EndsWith(".dll") || n.EndsWith(".json") || n.EndsWith(".pdb"))))
                    File.Copy(f, Path.Combine(dir, n), true);
            }
            if (withRuntime) LayOutRuntime(Path.Combine(dir, "dotnet"));
            return dir;
        }
    }

    static void LayOutRuntime(string dotnetRoot)
    {
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np
            ? np : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string packRoot = Path.Combine(packages, "microsoft.netcore.app.runtime.win-x64");
        var version = Directory.Exists(packRoot)
            ? Directory.GetDirectories(packRoot).Select(Path.GetFileName).Where(v => v!.StartsWith("10.")).OrderBy(v => Version.TryParse(v, out var pv) ? pv : new Version()).LastOrDefault()
            : null;
        if (version is null) Unavailable($"Microsoft.NETCore.App.Runtime.win-x64 10.x not in {packages} (dotnet build of Extension restores it)");
        string pack = Path.Combine(packRoot, version!, "runtimes", "win-x64");
        string fxr = Path.Combine(dotnetRoot, "host", "fxr", version!);
        string shared = Path.Combine(dotnetRoot, "shared", "Microsoft.NETCore.App", version!);
        Directory.CreateDirectory(fxr);
        Directory.CreateDirectory(shared);
        File.Copy(Path.Combine(pack, "native", "hostfxr.dll"), Path.Combine(fxr, "hostfxr.dll"), true);
        foreach (var f in Directory.GetFiles(Path.Combine(pack, "lib", "net10.0")))
            File.Copy(f, Path.Combine(shared, Path.GetFileName(f)), true);
        foreach (var f in Directory.GetFiles(Path.Combine(pack, "native")))
            if (Path.GetFileName(f) is not ("hostfxr.dll" or "createdump.exe") && !f.EndsWith(".lib") && !f.EndsWith(".pdb"))
                File.Copy(f, Path.Combine(shared, Path.GetFileName(f)), true);
    }

    /// <summary>Runs enginehost on a dump with the given commands. env: extra variables (null value = remove).
    /// A run that never got the dump open (a wine/wineserver hiccup on a loaded machine, before any of our code runs)
    /// is retried once; everything after the dump is open counts.</summary>
    public EngineRun Run(string dump, IEnumerable<string> commands, IDictionary<string, string?>? env = null,
                         bool dml = false, int interruptAfterMs = 0, int timeoutMs = 30_000)
    {
        var list = commands.ToList();
        var run = RunOnce(dump, list, env, dml, interruptAfterMs, timeoutMs);
        if (!run.Raw.Contains("@@host dump opened"))
        {
            TestContext.Out.WriteLine("engine host never opened the dump; retrying once. First attempt:\n" + run.Raw);
            run = RunOnce(dump, list, env, dml, interruptAfterMs, timeoutMs);
        }
        return run;
    }

    EngineRun RunOnce(string dump, IEnumerable<string> commands, IDictionary<string, string?>? env = null,
                         bool dml = false, int interruptAfterMs = 0, int timeoutMs = 30_000)
    {
        var args = new List<string> { "-tagerr", "-engine", WinPath(EngineDir), "-y", WinPath(Path.Combine(Path.GetTempPath(), "ntsleuth-e2e-nosyms")), "-z", WinPath(dump), "-timeout", timeoutMs.ToString() };
        Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "ntsleuth-e2e-nosyms"));
        if (dml) args.Add("-dml");
        if (interruptAfterMs > 0) { args.Add("-interrupt-after"); args.Add(interruptAfterMs.ToString()); }
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }

        var psi = new ProcessStartInfo(Wine ?? EngineHost) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (Wine is not null) psi.ArgumentList.Add(EngineHost);
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (Wine is not null)
        {
            psi.Environment["WINEPREFIX"] = WinePrefix;
            psi.Environment["WINEDEBUG"] = "-all";
            psi.Environment["DISPLAY"] = "";
            psi.Environment["WINEDLLOVERRIDES"] = "dbgeng,dbghelp,dbgcore,dbgmodel,msdia140=n";
        }
        // The Linux side's .NET variables mean nothing to the Windows process.
        psi.Environment.Remove("DOTNET_ROOT");
        psi.Environment.Remove("_NT_SYMBOL_PATH");
        psi.Environment.Remove("NTSLEUTH_TEST_FAULT");
        if (env is not null)
            foreach (var (k, v) in env) { if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v; }

        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(timeoutMs + 10_000)) { try { p.Kill(true); } catch { } }
        sw.Stop();
        string raw = stdout + stderr.Result;
        return new EngineRun(Parse(stdout), raw, p.HasExited ? p.ExitCode : -1, sw.Elapsed.TotalMilliseconds);
    }

    internal static List<EngineCommand> Parse(string stdout)
    {
        var list = new List<EngineCommand>();
        string? cmd = null;
        var sb = new StringBuilder();
        foreach (var rawLine in stdout.Replace("\r\n", "\n").Split('\n'))
        {
            if (rawLine.StartsWith("@@begin ")) { cmd = rawLine[8..]; sb.Clear(); continue; }
            if (rawLine.StartsWith("@@end ") && cmd is not null)
            {
                var parts = rawLine.Split(' ');
                uint hr = Convert.ToUInt32(parts[1], 16);
                double ms = parts.Length > 2 ? double.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture) : 0;
                list.Add(new EngineCommand(cmd, sb.ToString(), hr, ms));
                cmd = null;
                continue;
            }
            if (cmd is not null) sb.Append(rawLine).Append('\n');
        }
        return list;
    }
}
