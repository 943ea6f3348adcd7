using System.Diagnostics;

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

    public static PoolTagDescriptions? TryLoad(string path)
    {
        try { return File.Exists(path) ? Parse(path, File.ReadLines(path)) : null; }
        catch (Exception) { return null; }
    }

    /// <summary>Finds pooltag.txt: $NTSLEUTH_POOLTAG, then the host process directory and dbgeng.dll's directory.</summary>
    public static PoolTagDescriptions? Locate()
    {
        try
        {
            var env = Environment.GetEnvironmentVariable("NTSLEUTH_POOLTAG");
            if (!string.IsNullOrEmpty(env) && TryLoad(env) is { } e) return e;
            var dirs = new List<string?>();
            try
            {
                using var p = Process.GetCurrentProcess();
                foreach (ProcessModule m in p.Modules)
                    if (string.Equals(System.IO.Path.GetFileName(m.FileName), "dbgeng.dll", StringComparison.OrdinalIgnoreCase))
                        dirs.Add(System.IO.Path.GetDirectoryName(m.FileName));
            }
            catch (Exception) { }
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
