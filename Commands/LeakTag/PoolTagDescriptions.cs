using System.Diagnostics;
using System.Runtime.InteropServices;

namespace NtSleuth.Commands.LeakTag;

/// <summary>
/// Tag descriptions from the debugger's pooltag.txt ("Tag  - binary - description" lines, "//" comments).
/// Located through the NTSLEUTH_POOLTAG environment variable or beside the engine (triage\pooltag.txt).
/// </summary>
public sealed class PoolTagDescriptions
{
    private readonly Dictionary<string, string> _byTag = new(StringComparer.Ordinal);

    public string Path { get; }
    public int Count => _byTag.Count;

    private PoolTagDescriptions(string path) => Path = path;

    public static PoolTagDescriptions Parse(string path, IEnumerable<string> lines)
    {
        var d = new PoolTagDescriptions(path);
        foreach (var raw in lines)
        {
            var line = raw.TrimEnd();
            if (line.Length < 4 || line.StartsWith("//", StringComparison.Ordinal) || line.StartsWith(";", StringComparison.Ordinal)) continue;
            int dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash < 1 || dash > 6) continue;
            string tag = line[..dash].TrimStart();
            if (tag.Length is 0 or > 4) continue;
            tag = tag.PadRight(4);
            string rest = line[(dash + 3)..].Trim();
            // "binary - description" or just "description"
            string desc = rest;
            int d2 = rest.IndexOf(" - ", StringComparison.Ordinal);
            if (d2 > 0)
            {
                string bin = rest[..d2].Trim();
                desc = rest[(d2 + 3)..].Trim() + (bin.Length > 0 ? ", Binary: " + bin : "");
            }
            d._byTag.TryAdd(tag, desc);
        }
        return d;
    }

    /// <summary>Parsed files by path, with the size and time they had: a debugger session reads pooltag.txt once.</summary>
    private static readonly Dictionary<string, (long Length, DateTime Written, PoolTagDescriptions Parsed)> Loaded = new(StringComparer.Ordinal);

    public static PoolTagDescriptions? TryLoad(string path)
    {
        try
        {
            var fi = new FileInfo(path);
            if (!fi.Exists) return null;
            lock (Loaded)
                if (Loaded.TryGetValue(path, out var c) && c.Length == fi.Length && c.Written == fi.LastWriteTimeUtc) return c.Parsed;
            var parsed = Parse(path, File.ReadLines(path));
            lock (Loaded) Loaded[path] = (fi.Length, fi.LastWriteTimeUtc, parsed);
            return parsed;
        }
        catch (Exception) { return null; }
    }

    /// <summary>The directory of the process's dbgeng.dll, found once per process by the loader's own answer
    /// (GetModuleHandleW + GetModuleFileNameW). Not Process.Modules: listing every module of the debugger cost ~800 ms of
    /// `!leaktag`'s first run under wine (docs/bench.md "First runs"); the engine's DLL does not move while it runs.</summary>
    private static readonly Lazy<IReadOnlyList<string>> EngineDllDirectories = new(() =>
    {
        var r = new List<string>();
        try
        {
            if (!OperatingSystem.IsWindows()) return r;   // dbgeng.dll is a Windows module (wine included)
            IntPtr h = GetModuleHandleW("dbgeng.dll");
            if (h == IntPtr.Zero) return r;
            var buf = new char[32768];
            uint n = GetModuleFileNameW(h, buf, (uint)buf.Length);
            if (n == 0 || n >= buf.Length) return r;
            if (System.IO.Path.GetDirectoryName(new string(buf, 0, (int)n)) is { Length: > 0 } dir) r.Add(dir);
        }
        catch (Exception) { }
        return r;
    });

    [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    private static extern IntPtr GetModuleHandleW(string moduleName);

    [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
    private static extern uint GetModuleFileNameW(IntPtr module, [Out] char[] fileName, uint size);

    /// <summary>Finds pooltag.txt: $NTSLEUTH_POOLTAG, then the host process directory and dbgeng.dll's directory.</summary>
    public static PoolTagDescriptions? Locate()
    {
        try
        {
            var env = Environment.GetEnvironmentVariable("NTSLEUTH_POOLTAG");
            if (!string.IsNullOrEmpty(env) && TryLoad(env) is { } e) return e;
            var dirs = new List<string?>();
            dirs.AddRange(EngineDllDirectories.Value);
            foreach (var d in dirs)
            {
                if (string.IsNullOrEmpty(d)) continue;
                foreach (var rel in new[] { System.IO.Path.Combine("triage", "pooltag.txt"), "pooltag.txt" })
                    if (TryLoad(System.IO.Path.Combine(d, rel)) is { } found) return found;
            }
        }
        catch (Exception) { }
        return null;
    }

    public string? Describe(string tag)
    {
        if (_byTag.TryGetValue(tag, out var d)) return d;
        return null;
    }
}
