using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Samples;

/// <summary>One written catalogue sample (manifest entry + measurements + notes).</summary>
public sealed record CatalogSample(string Name, string Dump, string SymbolPath, string Build, string Kind, IReadOnlyList<string> Commands, string Seed,
    IReadOnlyList<string> Notes, long DumpBytes, double Seconds, IReadOnlyDictionary<string, ulong> Facts);

/// <summary>
/// Writes every scenario of the lab catalogue (<see cref="ScenarioCatalog"/>) as a kernel dump + forged symbols:
/// the scenario's own <see cref="SparseMemory"/>, prepared by <see cref="KernelDumpPreparation"/> (KDBG, KPRCB contexts
/// of the scenario's processors, PsLoadedModuleList with the forged ntoskrnl.exe and the scenario's other modules mapped),
/// ntoskrnl.exe + ntkrnlmp.pdb from the build's ISF, and for every other module a forged image + PDB carrying the
/// publics the scenario placed in it (and its types when the scenario registered a symbol table for it: ndis, fltmgr).
/// </summary>
public static class CatalogSampleMaker
{
    /// <summary>Default builds: Windows 7 SP1 (7601) and Windows 10 (19041).</summary>
    public static readonly string[] DefaultBuilds = ["7601", "19041"];

    private static readonly Regex PlainName = new(@"^[A-Za-z_?$][A-Za-z0-9_?@$]*$");

    /// <summary>Undecorated names scenarios use for C++ functions -> the MSVC-decorated public Microsoft's PDB has.</summary>
    private static readonly Dictionary<string, string> Decorated = new(StringComparer.Ordinal)
    {
        ["FxTimer::TimerHandler"] = "?TimerHandler@FxTimer@@CAXPEAU_KDPC@@PEAX11@Z",
    };

    public static List<CatalogSample> Make(string outDir, SymbolForge forge, IEnumerable<LabBuild> builds, IEnumerable<IScenario> scenarios,
        KernelDumpKind kind, TextWriter log, bool userSamples = false, IReadOnlyList<string>? variants = null, int scale = 1)
    {
        Directory.CreateDirectory(outDir);
        var list = new List<CatalogSample>();
        var scs = scenarios.ToList();
        foreach (var build in builds)
        {
            ForgeResult? nt = null;
            // The scenarios' own sample variants, or only the given ones.
            foreach (var (sc, variant) in scs.SelectMany(sc => (variants ?? sc.SampleVariants).Select(v => (sc, v))))
            {
                string name = (variant == "" ? $"{sc.Name}-{build.BuildNumber}" : $"{sc.Name}-{variant}-{build.BuildNumber}") + (scale > 1 ? $"-x{scale}" : "");
                try
                {
                    if (!sc.Supports(build)) { log.WriteLine($"skip {name}: the scenario's types/symbols are missing on {build.Label}"); continue; }
                    var sw = Stopwatch.StartNew();
                    var r = sc.Build(build, variant == "" && scale <= 1 ? ScenarioOptions.Default : new ScenarioOptions { Variant = variant, Scale = Math.Max(1, scale) });
                    if (r.Builder.Kind != TargetKind.Kernel) { log.WriteLine($"skip {name}: user-mode scenario (minidump samples not written yet)"); continue; }
                    nt ??= forge.Forge(ForgeModules.Kernel(build.Isf));
                    var s = WriteOne(outDir, name, sc, r, nt, forge, kind);
                    s = s with { Seconds = sw.Elapsed.TotalSeconds };
                    list.Add(s);
                    log.WriteLine($"{name}: {s.DumpBytes:N0} bytes, {s.Seconds:F2} s{(s.Notes.Count > 0 ? "; " + string.Join("; ", s.Notes) : "")}");
                }
                catch (Exception e)
                {
                    log.WriteLine($"skip {name}: {e.GetType().Name}: {e.Message}");
                }
            }
        }
        if (userSamples) list.AddRange(MakeUserSamples(outDir, forge, log));
        WriteManifest(Path.Combine(outDir, "manifest.json"), list);
        return list;
    }

    /// <summary>The user-mode samples: seed 000's svchost (one-year lease, renewal missed) and a healthy eight-day lease.</summary>
    private static IEnumerable<CatalogSample> MakeUserSamples(string outDir, SymbolForge forge, TextWriter log)
    {
        foreach (var (name, sc) in new[] { ("dhcp-lease-7601", Scenarios.DhcpLeaseScenario.Seed()), ("dhcp-lease-8days-7601", Scenarios.DhcpLeaseScenario.EightDays()) })
        {
            CatalogSample? s = null;
            try
            {
                var sw = Stopwatch.StartNew();
                var (dump, sym, bytes) = sc.WriteSample(outDir, name, forge);
                s = new CatalogSample(name, Path.GetRelativePath(outDir, dump), Path.GetRelativePath(outDir, sym), "6.1.7601.17514", "user",
                    ["!dhcptimer", "!dhcptimer -lease 365.00:00:00"], "000_39f7cd67dd109944.txt", [], bytes, sw.Elapsed.TotalSeconds, new Dictionary<string, ulong>());
                log.WriteLine($"{name}: {bytes:N0} bytes (user minidump), {s.Seconds:F2} s");
            }
            catch (Exception e) { log.WriteLine($"skip {name}: {e.GetType().Name}: {e.Message}"); }
            if (s is not null) yield return s;
        }
    }

    private static CatalogSample WriteOne(string outDir, string name, IScenario sc, ScenarioResult r, ForgeResult nt, SymbolForge forge, KernelDumpKind kind)
    {
        var b = r.Builder;
        var notes = new List<string>();
        string symRel = Path.Combine("symbols", name);
        string symDir = Path.Combine(outDir, symRel);
        Directory.CreateDirectory(symDir);
        nt.CopyToFlat(symDir);

        // Other modules: forge an image whose publics are the scenario's symbols in that module (RVAs as placed).
        var modules = new List<KernelModuleSpec> { new() { Name = "ntoskrnl.exe", Base = b.KernelBase, Image = File.ReadAllBytes(nt.ImagePath) } };
        foreach (var m in b.Modules.Skip(1))
        {
            string file = Path.GetFileName(m.ImagePath ?? m.Name);
            if (!file.Contains('.')) file += ".sys";
            string mod = Path.GetFileNameWithoutExtension(file);
            var pubs = new Dictionary<string, ulong>(StringComparer.Ordinal);
            foreach (var (q, addr) in b.Symbols.ExtraSymbols)
            {
                int bang = q.IndexOf('!');
                if (bang < 0 || !q[..bang].Equals(mod, StringComparison.OrdinalIgnoreCase)) continue;
                if (addr < m.Base + 0x1000 || addr >= m.Base + m.Size) { notes.Add($"{q}: outside {file}'s image, not in its PDB"); continue; }
                string n = q[(bang + 1)..];
                if (Decorated.TryGetValue(n, out var dec)) n = dec;
                if (!PlainName.IsMatch(n)) { notes.Add($"{q}: name not representable as a public, not in its PDB"); continue; }
                pubs[n] = addr - m.Base;
            }
            IsfDocument? types = null;
            foreach (var (key, (doc, bas)) in b.Symbols.Modules)
                if (!key.Equals("nt", StringComparison.OrdinalIgnoreCase) && key.Equals(mod, StringComparison.OrdinalIgnoreCase) && bas == m.Base)
                {
                    types = doc;
                    foreach (var (sn, rva) in doc.Symbols) if (rva >= 0x1000 && rva < m.Size && PlainName.IsMatch(sn)) pubs.TryAdd(sn, rva);
                }
            // The forge's ready-made drivers (ECHO, Wdf01000, myfault): their publics where the scenario placed none.
            if (ReadySpec(mod) is { } ready)
                foreach (var (pn, rva) in ready.Publics)
                    if (rva >= 0x1000 && rva + 0x3000 <= m.Size && !pubs.ContainsKey(pn) && !pubs.ContainsValue(rva)) pubs[pn] = rva;
            if (pubs.Count == 0 && types is null)
            {
                notes.Add($"{file}: no symbols (the scenario names nothing in it)");
                modules.Add(new KernelModuleSpec { Name = file, Base = m.Base, SizeOfImage = m.Size, TimeDateStamp = m.TimeDateStamp, FullPath = m.ImagePath?.StartsWith('\\') == true ? m.ImagePath : null });
                continue;
            }
            var spec = new ForgeModuleSpec
            {
                ImageName = file, PdbName = mod + ".pdb", Kind = ForgeModuleKind.Driver, Types = types, Publics = pubs,
                Identity = new ForgeIdentity
                {
                    PdbGuid = ForgeModules.StableGuid(mod + ".pdb", r.Build.Key), Age = 1,
                    TimeDateStamp = m.TimeDateStamp != 0 ? m.TimeDateStamp : 0x5f000000, SizeOfImage = m.Size,
                },
            };
            var fr = ForgeWithFallback(forge, spec, mod, r.Build, notes);
            if (fr is not null)
            {
                fr.CopyToFlat(symDir);
                modules.Add(new KernelModuleSpec { Name = file, Base = m.Base, Image = File.ReadAllBytes(fr.ImagePath) });
                if (fr.SkippedPublics.Count > 0) notes.Add($"{file}: publics not placed: {string.Join(", ", fr.SkippedPublics)}");
            }
            else modules.Add(new KernelModuleSpec { Name = file, Base = m.Base, SizeOfImage = m.Size, TimeDateStamp = m.TimeDateStamp });
        }

        if (b.CurrentStack.Count > 0)
            notes.Add($"the scenario's {b.CurrentStack.Count}-frame bugcheck stack (in-memory target) is not in the dump: the engine unwinds from the crash CONTEXT (Rip nt!KeBugCheckEx) and the forged images carry no unwind data");

        // The scenario's processors and their current threads.
        var prcbs = new List<ulong>();
        var threads = new List<ulong>();
        for (int i = 0; i < b.ProcessorCount; i++)
        {
            try
            {
                var p = b.Prcb(i);
                prcbs.Add(p.Address);
                threads.Add(b.ReadPointer(p.AddressOf("CurrentThread")));
            }
            catch (ScenarioLayoutException) { prcbs.Add(0); threads.Add(0); }
        }
        int ev = b.EventProcessor >= 0 ? b.EventProcessor : 0;
        if (b.CurrentThread != 0 && ev < threads.Count) threads[ev] = b.CurrentThread;
        var bc = b.BugCheck;
        var physical = new PhysicalLayoutOptions { ProcessSpaces = [.. b.ProcessSpaces.Select(p => new ProcessAddressSpace(p.EProcess, p.Memory))] };
        var plan = new KernelDumpPlan
        {
            Nt = b.Build.Isf, BuildNumber = (uint)b.Build.BuildNumber, Modules = modules,
            ProcessorCount = Math.Max(1, b.ProcessorCount), Prcbs = prcbs.Count > 0 ? prcbs : null, CurrentThreads = threads.Count > 0 ? threads : null,
            EventProcessor = ev, BugCheckCode = bc?.Code ?? 0,
            BugCheckParameters = bc is null ? new ulong[4] : [bc.P1, bc.P2, bc.P3, bc.P4],
            Physical = physical,
        };
        if (b.SystemTimeUtc is { } st) plan = plan with { SystemTimeUtc = st };
        if (b.UpTime is { } up) plan = plan with { SystemUpTime = up };

        // Module images are mapped over the scenario's pages; keep every scenario byte the image and the preparation did
        // not set (globals in nt's .data, "Leak" in myfault.sys, ...), except each image's header page.
        var before = new Dictionary<ulong, byte[]>();
        foreach (var mod in modules)
        {
            ulong size = mod.Image is not null ? new PeImage(mod.Image).SizeOfImage : mod.SizeOfImage;
            for (ulong pg = SparseMemory.PageOf(mod.Base) + 0x1000; pg < mod.Base + size; pg += 0x1000)
                if (b.Memory.IsMapped(pg)) { var buf = new byte[0x1000]; b.Memory.Read(pg, buf); if (buf.AsSpan().IndexOfAnyExcept((byte)0) >= 0) before[pg] = buf; }
        }
        var imageOnly = new SparseMemory();
        foreach (var mod in modules) if (mod.Image is not null) new PeImage(mod.Image).MapInto(imageOnly, mod.Base);
        var prep = KernelDumpPreparation.Prepare(b.Memory, plan);
        var cur = new byte[0x1000];
        var img = new byte[0x1000];
        foreach (var (pg, old) in before)
        {
            b.Memory.Read(pg, cur);
            Array.Clear(img);
            if (imageOnly.IsMapped(pg)) imageOnly.Read(pg, img);
            bool changed = false;
            // Per aligned qword (pointers must never be mixed byte by byte): the scenario's value comes back only where
            // the page still holds exactly what the image mapping put there.
            for (int i = 0; i < 0x1000; i += 8)
            {
                ulong o = BitConverter.ToUInt64(old, i), c = BitConverter.ToUInt64(cur, i), m = BitConverter.ToUInt64(img, i);
                if (o != 0 && c == m && c != o) { Array.Copy(old, i, cur, i, 8); changed = true; }
            }
            if (changed) b.Memory.Write(pg, cur);
        }
        string dumpRel = Path.Combine("dumps", name + ".dmp");
        string dumpPath = Path.Combine(outDir, dumpRel);
        Directory.CreateDirectory(Path.GetDirectoryName(dumpPath)!);
        var res = KernelDumpWriter.Write(dumpPath, b.Memory, prep.Header, kind, physical);
        return new CatalogSample(name, dumpRel, symRel, b.Build.Version, "kernel", r.Commands.ToList(), sc.Seed, notes, res.FileSize, 0,
            new Dictionary<string, ulong>(r.Facts));
    }

    /// <summary>
    /// Forges a module: with the scenario's types; when the forge cannot express them, with the forge's own layout
    /// conversion (ndis/fltmgr, <see cref="ForgeModules.FromLayoutsWithTypes"/>); else publics only. Each step down is a note.
    /// </summary>
    private static ForgeResult? ForgeWithFallback(SymbolForge forge, ForgeModuleSpec spec, string mod, LabBuild build, List<string> notes)
    {
        string file = spec.ImageName;
        try { return forge.Forge(spec); }
        catch (Exception e) when (spec.Types is not null)
        {
            notes.Add($"{file}: scenario types not forgeable ({FirstLine(e)})"); if (Environment.GetEnvironmentVariable("NTSLEUTH_FORGE_DEBUG") == "1") Console.Error.WriteLine(e.Message);
        }
        catch (Exception e)
        {
            notes.Add($"{file}: symbols not forged ({FirstLine(e)})");
            return null;
        }
        string? layoutMod = mod.ToLowerInvariant() switch { "ndis" => "ndis", "fltmgr" => "fltmgr", _ => null };
        if (layoutMod is not null && build.LayoutLabel is { } buildLabel && Scenarios.NdisFltmgrLayouts.Has(layoutMod, buildLabel))
        {
            var (table, label) = Scenarios.NdisFltmgrLayouts.Resolve(layoutMod, buildLabel);
            string layouts = table.Source;
            try
            {
                var conv = ForgeModules.FromLayoutsWithTypes(layouts, layoutMod, label, build.Isf, out var approx);
                var pubs = new Dictionary<string, ulong>(conv.Publics, StringComparer.Ordinal);
                foreach (var (k, v) in spec.Publics) pubs[k] = v;
                var fr = forge.Forge(spec with { Types = conv.Types, Publics = pubs });
                notes.Add($"{file}: types from the forge's layout conversion ({label}; {approx.Count} approximations)");
                return fr;
            }
            catch (Exception e) { notes.Add($"{file}: layout types not forgeable ({FirstLine(e)})"); }
        }
        try
        {
            var fr = forge.Forge(spec with { Types = null });
            notes.Add($"{file}: publics only, no types");
            return fr;
        }
        catch (Exception e)
        {
            notes.Add($"{file}: symbols not forged ({FirstLine(e)})");
            return null;
        }
    }

    private static ForgeModuleSpec? ReadySpec(string mod) => mod.ToLowerInvariant() switch
    {
        "echo" => ForgeModules.Echo(),
        "wdf01000" => ForgeModules.Wdf01000(),
        "myfault" => ForgeModules.MyFault(),
        _ => null,
    };

    private static string FirstLine(Exception e) => e.Message.Split('\n')[0];

    public static void WriteManifest(string path, IEnumerable<CatalogSample> samples)
    {
        static string Rel(string p) => p.Replace('\\', '/');
        var doc = new
        {
            samples = samples.Select(e => new
            {
                name = e.Name, dump = Rel(e.Dump), symbolPath = Rel(e.SymbolPath), build = e.Build, kind = e.Kind,
                commands = e.Commands, seed = e.Seed, notes = e.Notes, dumpBytes = e.DumpBytes, seconds = Math.Round(e.Seconds, 2),
            }),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
