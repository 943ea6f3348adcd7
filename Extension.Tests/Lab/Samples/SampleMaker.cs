using System.Diagnostics;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Samples;

/// <summary>The <c>make-samples</c> verb: options in, <see cref="CatalogSampleMaker"/> does the work.</summary>
public static class SampleMaker
{
    /// <summary>
    /// <c>make-samples OUTDIR [--builds 7601,19041|win7,win10] [--all-builds] [--scenarios a,b] [--bitmap]</c>: every scenario of
    /// the lab catalogue on the chosen builds (default 7601 and 19041) -> OUTDIR/dumps, OUTDIR/symbols/NAME, OUTDIR/manifest.json.
    /// </summary>
    public static int Run(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: NtSleuth.Lab make-samples OUTDIR [--builds 7601,19041] [--all-builds] [--scenarios a,b] [--variants v,w] [--bitmap]"); return 2; }
        string outDir = Path.GetFullPath(args[0]);
        string? Opt(string n) { int i = Array.IndexOf(args, n); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
        bool bitmap = args.Contains("--bitmap");
        if (LabBuilds.UnavailableReason is { } why0) { Console.Error.WriteLine(why0); return 1; }
        var tools = ForgeToolchain.Find(out var why);
        if (tools is null) { Console.Error.WriteLine(why); return 1; }
        IEnumerable<LabBuild> builds;
        if (args.Contains("--all-builds")) builds = LabBuilds.All;
        else
        {
            var keys = Opt("--builds")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? CatalogSampleMaker.DefaultBuilds;
            var bl = new List<LabBuild>();
            foreach (var k in keys)
                if (LabBuilds.TryGet(k) is { } lb) bl.Add(lb);
                else Console.WriteLine($"skip build {k}: no symbol table for it under ../shared/realdata/isf/ntkrnlmp.pdb (known: {string.Join(", ", LabBuilds.Keys)})");
            builds = bl;
        }
        var names = Opt("--scenarios")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var scenarios = names is null ? ScenarioCatalog.All : ScenarioCatalog.All.Where(s => names.Contains(s.Name, StringComparer.OrdinalIgnoreCase)).ToList();
        var sw = Stopwatch.StartNew();
        // The user-mode DHCP samples (minidumps) come with every run unless --scenarios leaves out "dhcp-lease".
        bool user = names is null || names.Contains("dhcp-lease", StringComparer.OrdinalIgnoreCase);
        // --variants: these variants of each scenario instead of its sample variants ("" = the plain scenario).
        var variants = Opt("--variants")?.Split(',', StringSplitOptions.TrimEntries).Select(v => v == "plain" ? "" : v).ToList();
        var list = CatalogSampleMaker.Make(outDir, new SymbolForge(tools), builds, scenarios, bitmap ? KernelDumpKind.BitmapFull : KernelDumpKind.Complete, Console.Out, user, variants);
        Console.WriteLine($"{list.Count} samples, {list.Sum(s => s.DumpBytes):N0} dump bytes, {sw.Elapsed.TotalSeconds:F1} s -> {Path.Combine(outDir, "manifest.json")}");
        return list.Count > 0 ? 0 : 1;
    }
}
