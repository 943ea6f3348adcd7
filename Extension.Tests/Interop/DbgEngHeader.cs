using System.Text.RegularExpressions;

namespace NtSleuth.Tests.Interop;

/// <summary>A DECLARE_INTERFACE_ method of dbgeng.h: name and parameter count (without THIS; '...' counts as one).</summary>
public sealed record HeaderMethod(string Name, int ParameterCount);

/// <summary>Minimal independent parser of dbgeng.h: interface IIDs (DEFINE_GUID) and vtable-ordered methods.</summary>
public sealed class DbgEngHeader
{
    public Dictionary<string, Guid> Iids { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, List<HeaderMethod>> Interfaces { get; } = new(StringComparer.Ordinal);

    public const string PackageVersion = "20260109.1235.0";

    /// <summary>The header inside the NuGet package cache (NUGET_PACKAGES or ~/.nuget/packages); null when absent.</summary>
    public static string? Locate() => Locate("dbgeng.h");

    /// <summary>A header of the package (dbgeng.h, dbgmodel.h) in the NuGet package cache; null when absent.</summary>
    public static string? Locate(string header)
    {
        var roots = new List<string>();
        var env = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (!string.IsNullOrEmpty(env)) roots.Add(env);
        roots.Add(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"));
        foreach (var r in roots)
        {
            var p = Path.Combine(r, "microsoft.debugging.platform.dbgeng", PackageVersion, "build", "native", "inc", header);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    public static DbgEngHeader Parse(string text)
    {
        var h = new DbgEngHeader();
        // One pass, leftmost first, as the C preprocessor reads them: a "/*" inside a line comment (dbgmodel.h has
        // some) does not open a block comment, and a "//" inside a block comment does not end at the line.
        text = Regex.Replace(text, @"//[^\n]*|/\*.*?\*/", " ", RegexOptions.Singleline);
        foreach (Match m in Regex.Matches(text, @"DEFINE_GUID\(\s*IID_(\w+)\s*,([^)]*)\)"))
        {
            var p = m.Groups[2].Value.Split(',').Select(x => Convert.ToUInt64(x.Trim(), 16)).ToArray();
            h.Iids[m.Groups[1].Value] = new Guid((uint)p[0], (ushort)p[1], (ushort)p[2],
                (byte)p[3], (byte)p[4], (byte)p[5], (byte)p[6], (byte)p[7], (byte)p[8], (byte)p[9], (byte)p[10]);
        }
        foreach (Match m in Regex.Matches(text, @"DECLARE_INTERFACE_\(\s*(\w+)\s*,\s*\w+\s*\)\s*\{"))
        {
            int i = m.Index + m.Length, depth = 1;
            while (depth > 0) { if (text[i] == '{') depth++; else if (text[i] == '}') depth--; i++; }
            string body = text.Substring(m.Index + m.Length, i - 1 - (m.Index + m.Length));
            var methods = new List<HeaderMethod>();
            foreach (Match mm in Regex.Matches(body, @"STDMETHODV?(?:_\(\s*\w+\s*,\s*(\w+)\s*\)|\(\s*(\w+)\s*\))\s*\((.*?)\)\s*PURE\s*;", RegexOptions.Singleline))
            {
                string name = mm.Groups[1].Success ? mm.Groups[1].Value : mm.Groups[2].Value;
                methods.Add(new HeaderMethod(name, CountParams(mm.Groups[3].Value)));
            }
            h.Interfaces[m.Groups[1].Value] = methods;
        }
        return h;
    }

    private static int CountParams(string list)
    {
        // Drop SAL annotations with their (possibly nested) argument lists, then split on top-level commas.
        int depth = 0, count = 0; bool any = false;
        var parts = new List<string>(); var cur = new System.Text.StringBuilder();
        foreach (char c in list)
        {
            if (c == '(') depth++;
            if (c == ')') depth--;
            if (c == ',' && depth == 0) { parts.Add(cur.ToString()); cur.Clear(); continue; }
            cur.Append(c);
        }
        parts.Add(cur.ToString());
        foreach (var raw in parts)
        {
            var p = raw.Trim();
            if (p == "THIS" || p == "THIS_" || p.Length == 0) continue;
            if (p.StartsWith("THIS_")) p = p[5..].Trim();
            if (p.Length == 0) continue;
            any = true; count++;
        }
        return any ? count : 0;
    }
}

/// <summary>Compares our declaration of an interface with the header's vtable.</summary>
public static class VtableComparer
{
    private static readonly string[] IUnknown = ["QueryInterface", "AddRef", "Release"];

    /// <summary>
    /// Problems found (empty = OK). <paramref name="ours"/> lists our methods in declaration order without IUnknown's;
    /// it must match the header's slots 3.. in name and parameter count for every method we declare.
    /// </summary>
    public static List<string> Compare(string iface, IReadOnlyList<HeaderMethod> header, IReadOnlyList<HeaderMethod> ours)
    {
        var problems = new List<string>();
        var h = header.ToList();
        if (h.Count < 3 || !h.Take(3).Select(x => x.Name).SequenceEqual(IUnknown))
            problems.Add($"{iface}: header does not start with IUnknown's methods");
        else h = h.Skip(3).ToList();
        if (ours.Count > h.Count)
            problems.Add($"{iface}: we declare {ours.Count} methods, the header has {h.Count}");
        for (int i = 0; i < Math.Min(ours.Count, h.Count); i++)
        {
            if (ours[i].Name != h[i].Name)
                problems.Add($"{iface}: vtable slot {i + 3}: we declare {ours[i].Name}, header has {h[i].Name}");
            else if (ours[i].ParameterCount != h[i].ParameterCount)
                problems.Add($"{iface}.{ours[i].Name}: {ours[i].ParameterCount} parameters, header has {h[i].ParameterCount}");
        }
        return problems;
    }
}
