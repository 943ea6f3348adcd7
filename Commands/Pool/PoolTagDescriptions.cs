using System.Diagnostics;

namespace NtSleuth.Commands.Pool;

/// <summary>
/// Tag descriptions from the debugger's pooltag.txt ("Tag  - binary - description" lines, "//" comments).
/// Located beside the engine (triage\pooltag.txt), through the NTSLEUTH_POOLTAG environment variable, or through
/// <see cref="EngineDirectoryProvider"/> which the DbgEng-backed host may set to the engine's directory.
/// </summary>
public sealed class PoolTagDescriptions
{
    private readonly Dictionary<string, string> _byTag = new(StringComparer.Ordinal);

    public string Path { get; }
    public int Count => _byTag.Count;

    private PoolTagDescriptions(string path) => Path = path;

    /// <summary>Optional hook: returns the directory of the debugger engine (dbgeng.dll); set by the host.</summary>
    public static Func<string?>? EngineDirectoryProvider { get; set; }

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

    /// <summary>The directories of the process's dbgeng.dll: found once per process (listing the process's modules
    /// costs hundreds of milliseconds under some loaders; the engine's DLL does not move while it runs).</summary>
    private static readonly Lazy<IReadOnlyList<string>> EngineDllDirectories = new(() =>
    {
        var r = new List<string>();
        try
        {
            using var p = Process.GetCurrentProcess();
            foreach (ProcessModule m in p.Modules)
                if (string.Equals(System.IO.Path.GetFileName(m.FileName), "dbgeng.dll", StringComparison.OrdinalIgnoreCase)
                    && System.IO.Path.GetDirectoryName(m.FileName) is { Length: > 0 } dir)
                    r.Add(dir);
        }
        catch (Exception) { }
        return r;
    });

    /// <summary>Finds pooltag.txt: $NTSLEUTH_POOLTAG, the engine directory hook, then the host process directory and dbgeng.dll's directory.</summary>
    public static PoolTagDescriptions? Locate()
    {
        try
        {
            var env = Environment.GetEnvironmentVariable("NTSLEUTH_POOLTAG");
            if (!string.IsNullOrEmpty(env) && TryLoad(env) is { } e) return e;
            var dirs = new List<string?>();
            try { dirs.Add(EngineDirectoryProvider?.Invoke()); } catch (Exception) { }
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
