using System.Diagnostics;
using System.Text.Json;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Samples;

/// <summary>One manifest entry (issue 3, item 6): paths relative to the output folder.</summary>
public sealed record SampleEntry(string Name, string Dump, string SymbolPath, string Build, string Kind, IReadOnlyList<string> Commands, string Seed)
{
    public long DumpBytes { get; init; }
    public double GenerationSeconds { get; init; }
}

/// <summary>
/// <c>NtSleuth.Lab make-samples OUTDIR [--builds 19041,7601] [--bitmap]</c>: for every registered scenario and every
/// kernel ISF under ../shared/realdata/isf/ntkrnlmp.pdb whose types the scenario needs, lays the scenario out, forges
/// ntoskrnl.exe + ntkrnlmp.pdb (symbol forge, cached), writes the kernel dump and OUTDIR/manifest.json.
/// </summary>
public static class SampleMaker
{
    /// <summary>Windows build of each kernel symbol table in the shared set (../shared/realdata/README.md table).</summary>
    public static readonly IReadOnlyDictionary<string, (uint Build, string Version)> KnownKernelTables = new Dictionary<string, (uint, string)>(StringComparer.OrdinalIgnoreCase)
    {
        ["339E74133576439CBCDF7E0229DA3773-1"] = (7601, "6.1.7601.24540"),
        ["169C65213E3E42DDBEB4E3AC66312B82-1"] = (9600, "6.3.9600.21620"),
        ["DBBC830E3E9A48FDA25A2144C146930E-1"] = (14393, "10.0.14393.6343"),
        ["5278AFF86C341677D7D7835C85B7B844-1"] = (19041, "10.0.19041.804"),
        ["0CE4A95C0CD782A7596B034D8648E585-1"] = (22000, "10.0.22000.2538"),
    };

    public const ulong DefaultKernelBase = 0xFFFF_F800_0460_0000;

    /// <summary>Finds ../shared from the current directory or the executable's directory upwards (the folder beside the one holding NtSleuthExt.sln).</summary>
    public static string? FindShared()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "NtSleuthExt.sln")))
                {
                    var s = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared"));
                    if (Directory.Exists(s)) return s;
                }
        return null;
    }

    /// <summary>
    /// <c>make-samples OUTDIR [--builds 7601,19041|win7,win10] [--all-builds] [--scenarios a,b] [--bitmap]</c>: every scenario of
    /// the lab catalogue on the chosen builds (default 7601 and 19041) -> OUTDIR/dumps, OUTDIR/symbols/NAME, OUTDIR/manifest.json.
    /// </summary>
    public static int Run(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: NtSleuth.Lab make-samples OUTDIR [--builds 7601,19041] [--all-builds] [--scenarios a,b] [--bitmap]"); return 2; }
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
        var list = CatalogSampleMaker.Make(outDir, new SymbolForge(tools), builds, scenarios, bitmap ? KernelDumpKind.BitmapFull : KernelDumpKind.Complete, Console.Out, user);
        Console.WriteLine($"{list.Count} samples, {list.Sum(s => s.DumpBytes):N0} dump bytes, {sw.Elapsed.TotalSeconds:F1} s -> {Path.Combine(outDir, "manifest.json")}");
        return list.Count > 0 ? 0 : 1;
    }

    public static List<SampleEntry> Make(string outDir, string shared, SymbolForge forge, ISet<uint>? builds, bool bitmap, TextWriter log)
    {
        Directory.CreateDirectory(outDir);
        var entries = new List<SampleEntry>();
        var isfDir = Path.Combine(shared, "realdata", "isf", "ntkrnlmp.pdb");
        foreach (var file in Directory.GetFiles(isfDir, "*.json*").Order())
        {
            string id = Path.GetFileName(file).Split('.')[0];
            if (!KnownKernelTables.TryGetValue(id, out var bv)) { log.WriteLine($"skip {id}: build unknown"); continue; }
            if (builds is not null && !builds.Contains(bv.Build)) continue;
            var isf = IsfDocument.Load(file);
            string symRel = Path.Combine("symbols", bv.Build.ToString());
            ForgeResult? nt = null;
            foreach (var sc in SampleCatalog.Kernel)
            {
                if (!sc.Supports(isf)) { log.WriteLine($"skip {sc.Name} on {bv.Build}: types missing"); continue; }
                var sw = Stopwatch.StartNew();
                nt ??= forge.Forge(ForgeModules.Kernel(isf));
                string name = $"{sc.Name}-{bv.Build}";
                string dumpRel = Path.Combine("dumps", name + ".dmp");
                var (setup, result) = WriteKernelSample(Path.Combine(outDir, dumpRel), isf, bv.Build, nt, sc, forge, Path.Combine(outDir, symRel),
                    bitmap ? KernelDumpKind.BitmapFull : KernelDumpKind.Complete);
                nt.CopyToFlat(Path.Combine(outDir, symRel));
                var e = new SampleEntry(name, dumpRel, symRel, bv.Version, "kernel", setup.Commands, sc.Seed)
                { DumpBytes = result.FileSize, GenerationSeconds = sw.Elapsed.TotalSeconds };
                entries.Add(e);
                log.WriteLine($"{name}: {result.FileSize:N0} bytes ({result.Layout.PresentPages} physical pages), {sw.Elapsed.TotalSeconds:F2} s (forge {nt.Elapsed.TotalSeconds:F2} s{(nt.FromCache ? ", cached" : "")})");
            }
        }
        WriteManifest(Path.Combine(outDir, "manifest.json"), entries);
        return entries;
    }

    /// <summary>Lays out <paramref name="scenario"/> for one build, prepares the kernel state and writes the dump.</summary>
    public static (KernelSampleSetup Setup, KernelDumpResult Result) WriteKernelSample(string dumpPath, IsfDocument isf, uint build, ForgeResult nt,
        IKernelSampleScenario scenario, SymbolForge? forge, string? symbolDir, KernelDumpKind kind, ulong kernelBase = DefaultKernelBase)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(dumpPath)!);
        var mem = new SparseMemory();
        var plan0 = new PhysicalLayoutOptions();
        var ctx = new KernelSampleContext
        {
            Nt = isf, BuildNumber = build, KernelBase = kernelBase, Memory = mem, Writer = new IsfStructWriter(isf, mem),
            DirectoryTableBase = plan0.Pml4Pfn << 12,
        };
        var setup = scenario.Build(ctx);
        var modules = new List<KernelModuleSpec> { new() { Name = "ntoskrnl.exe", Base = kernelBase, Image = File.ReadAllBytes(nt.ImagePath) } };
        foreach (var (mod, spec) in setup.Drivers)
        {
            var m = mod;
            if (spec is not null && forge is not null)
            {
                var r = forge.Forge(spec);
                if (symbolDir is not null) r.CopyToFlat(symbolDir);
                m = m with { Image = File.ReadAllBytes(r.ImagePath) };
            }
            modules.Add(m);
        }
        var plan = new KernelDumpPlan
        {
            Nt = isf, BuildNumber = build, Modules = modules, ProcessorCount = setup.ProcessorCount,
            CurrentThreads = setup.CurrentThreads, BugCheckCode = setup.BugCheckCode, BugCheckParameters = setup.BugCheckParameters,
            Physical = plan0,
        };
        var (_, result) = KernelDumpPreparation.WriteDump(dumpPath, mem, plan, kind);
        return (setup, result);
    }

    public static void WriteManifest(string path, IEnumerable<SampleEntry> entries)
    {
        static string Rel(string p) => p.Replace('\\', '/');
        var doc = new
        {
            samples = entries.Select(e => new
            {
                name = e.Name, dump = Rel(e.Dump), symbolPath = Rel(e.SymbolPath), build = e.Build, kind = e.Kind,
                commands = e.Commands, seed = e.Seed,
            }),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
