using System.Diagnostics;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The extension laid out as users get it (scripts/package.sh): ntsleuth.dll + nethost.dll + managed files, with or
/// without the app-local runtime in dotnet\. The runtime (78 MB, from the Microsoft.NETCore.App.Runtime.win-x64 pack)
/// is laid out once per machine and linked into each test package.
/// </summary>
public static class ExtensionPackage
{
    private static readonly object Gate = new();
    private static readonly Dictionary<bool, string> Made = new();

    public static string Get(bool withRuntime)
    {
        lock (Gate)
        {
            if (Made.TryGetValue(withRuntime, out var p)) return p;
            RealEngine.Require();
            var bin = TestPaths.ExtensionBin;
            var dir = Path.Combine(Path.GetTempPath(), $"ntsleuth-e2e-{Environment.ProcessId}", withRuntime ? "pkg" : "pkg-noruntime");
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.CreateDirectory(dir);
            foreach (var f in Directory.GetFiles(bin))
            {
                var n = Path.GetFileName(f);
                if (n is "ntsleuth.dll" or "ntsleuth.alz" or "nethost.dll" or "NtSleuth.Extension.runtimeconfig.json" or "NtSleuth.Extension.deps.json"
                      or "Iced.dll" // the x86-64 decoder NtSleuth.Commands uses (as scripts/package.sh copies it)
                    || (n.StartsWith("NtSleuth.", StringComparison.Ordinal) && n.EndsWith(".dll", StringComparison.Ordinal)))
                    File.Copy(f, Path.Combine(dir, n));
            }
            if (!File.Exists(Path.Combine(dir, "ntsleuth.dll"))) TestPaths.Unavailable($"ntsleuth.dll not built in {bin}");
            if (withRuntime)
            {
                var rt = RuntimeLayout();
                if (RealEngine.IsWindows) CopyDir(rt, Path.Combine(dir, "dotnet"));
                else File.CreateSymbolicLink(Path.Combine(dir, "dotnet"), rt);
            }
            Made[withRuntime] = dir;
            return dir;
        }
    }

    public static string DllWinPath(bool withRuntime = true) => RealEngine.WinPath(Path.Combine(Get(withRuntime), "ntsleuth.dll"));

    /// <summary>host/fxr/&lt;v&gt;/hostfxr.dll + shared/Microsoft.NETCore.App/&lt;v&gt;/ from the win-x64 runtime pack.</summary>
    public static string RuntimeLayout()
    {
        string ver = typeof(object).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "10.0.0";
        string? pack = FindRuntimePack(ref ver);
        if (pack is null) { TestPaths.Unavailable("Microsoft.NETCore.App.Runtime.win-x64 is not restored (dotnet restore of the test project)"); return ""; }
        var root = Path.Combine(Path.GetDirectoryName(RealEngine.WinePrefix)!, "runtime", ver);
        var fxr = Path.Combine(root, "host", "fxr", ver);
        var shared = Path.Combine(root, "shared", "Microsoft.NETCore.App", ver);
        if (File.Exists(Path.Combine(fxr, "hostfxr.dll")) && File.Exists(Path.Combine(shared, "coreclr.dll"))) return root;
        var tmp = root + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        var tfxr = Path.Combine(tmp, "host", "fxr", ver);
        var tshared = Path.Combine(tmp, "shared", "Microsoft.NETCore.App", ver);
        Directory.CreateDirectory(tfxr);
        Directory.CreateDirectory(tshared);
        File.Copy(Path.Combine(pack, "native", "hostfxr.dll"), Path.Combine(tfxr, "hostfxr.dll"));
        foreach (var f in Directory.GetFiles(Path.Combine(pack, "lib", "net10.0"))) File.Copy(f, Path.Combine(tshared, Path.GetFileName(f)));
        foreach (var f in Directory.GetFiles(Path.Combine(pack, "native")))
        {
            var n = Path.GetFileName(f);
            if (n != "hostfxr.dll" && !n.EndsWith(".pdb") && !n.EndsWith(".lib")) File.Copy(f, Path.Combine(tshared, n));
        }
        try { Directory.Move(tmp, root); } catch (IOException) { Directory.Delete(tmp, true); }
        return root;
    }

    private static string? FindRuntimePack(ref string ver)
    {
        var baseDir = Path.Combine(RealEngine.NuGetPackages, "microsoft.netcore.app.runtime.win-x64");
        var exact = Path.Combine(baseDir, ver, "runtimes", "win-x64");
        if (Directory.Exists(exact)) return exact;
        if (!Directory.Exists(baseDir)) return null;
        var best = Directory.GetDirectories(baseDir).Select(Path.GetFileName).Where(n => n!.StartsWith("10.", StringComparison.Ordinal))
            .OrderByDescending(n => Version.TryParse(n, out var v) ? v : new Version()).FirstOrDefault();
        if (best is null) return null;
        ver = best;
        return Path.Combine(baseDir, best, "runtimes", "win-x64");
    }

    private static void CopyDir(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(d.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, f.Replace(from, to), true);
    }
}
