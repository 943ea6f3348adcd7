using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace NtSleuth.Lab.Forge;

/// <summary>The LLVM tools the forge runs (Debian's clang-14/lld-14 names; override with NTSLEUTH_CLANG_CL etc.).</summary>
public sealed record ForgeToolchain(string ClangCl, string LldLink, string LlvmMc, string? PdbUtil)
{
    /// <summary>Finds the tools on PATH, or returns null and a reason naming what is missing.</summary>
    public static ForgeToolchain? Find(out string reason)
    {
        string? cl = Locate("NTSLEUTH_CLANG_CL", "clang-cl-14", "clang-cl");
        string? lld = Locate("NTSLEUTH_LLD_LINK", "lld-link-14", "lld-link");
        string? mc = Locate("NTSLEUTH_LLVM_MC", "llvm-mc-14", "llvm-mc");
        string? pu = Locate("NTSLEUTH_LLVM_PDBUTIL", "llvm-pdbutil-14", "llvm-pdbutil");
        var missing = new List<string>();
        if (cl is null) missing.Add("clang-cl-14 (apt: clang-14)");
        if (lld is null) missing.Add("lld-link-14 (apt: lld-14)");
        if (mc is null) missing.Add("llvm-mc-14 (apt: llvm-14)");
        reason = missing.Count == 0 ? "" : "symbol forge tools not found: " + string.Join(", ", missing);
        return missing.Count == 0 ? new ForgeToolchain(cl!, lld!, mc!, pu) : null;
    }

    private static string? Locate(string env, params string[] names)
    {
        var fromEnv = Environment.GetEnvironmentVariable(env);
        if (!string.IsNullOrEmpty(fromEnv) && File.Exists(fromEnv)) return fromEnv;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            foreach (var n in names)
            {
                if (dir.Length == 0) continue;
                var p = Path.Combine(dir, n);
                if (File.Exists(p)) return p;
            }
        return null;
    }
}

/// <summary>
/// Forges a module image + PDB the real debugger engine loads as private symbols: types compiled by clang-cl /Z7 from
/// <see cref="CppTypeEmitter"/> output, publics placed by an llvm-mc assembly file, linked by lld-link /debug, then the
/// identity patched into both files (<see cref="PeImagePatcher"/>, <see cref="PdbIdentityPatcher"/>).
/// Outputs are cached by a hash of everything that goes into them; concurrent callers are safe (build in a private
/// temp folder, then an atomic rename).
/// </summary>
public sealed class SymbolForge
{
    /// <summary>Bump when the generator changes output for the same inputs (invalidates the cache).</summary>
    public const string GeneratorVersion = "forge-3"; // forge-3: publics re-bucketed (PdbSymbolHash)

    private readonly ForgeToolchain _tools;
    public string CacheRoot { get; }

    /// <summary>false: keep lld-link's publics hash as linked (tests show what <see cref="PdbSymbolHash.Rehash"/> fixes).</summary>
    private readonly bool _rehash;

    public SymbolForge(ForgeToolchain tools, string? cacheRoot = null, bool rehashPublics = true)
    {
        _tools = tools;
        CacheRoot = cacheRoot ?? DefaultCacheRoot();
        _rehash = rehashPublics;
    }

    /// <summary>$NTSLEUTH_FORGE_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/ntsleuth/forge.</summary>
    public static string DefaultCacheRoot()
    {
        var env = Environment.GetEnvironmentVariable("NTSLEUTH_FORGE_CACHE");
        if (!string.IsNullOrEmpty(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(xdg)) xdg = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(xdg, "ntsleuth", "forge");
    }

    /// <summary>Forges (or takes from the cache) the module; the files are in <see cref="ForgeResult.Directory"/> (flat).</summary>
    public ForgeResult Forge(ForgeModuleSpec spec)
    {
        var sw = Stopwatch.StartNew();
        string cpp = "";
        IReadOnlyDictionary<string, string> renamed = new Dictionary<string, string>();
        int typeCount = 0;
        if (spec.Types is not null)
        {
            var emitter = new CppTypeEmitter(spec.Types);
            cpp = emitter.Emit();
            renamed = emitter.Renamed;
            typeCount = emitter.TypeCount;
        }
        else cpp = "// publics only\nint __forge_no_types;\n";
        string asm = PublicsAssembly(spec.Publics, out var skipped, out int placed, out string entry);
        string key = CacheKey(spec, cpp, asm);
        string final = Path.Combine(CacheRoot, key);
        var meta = Path.Combine(final, "forge.json");
        if (File.Exists(meta))
        {
            var cached = FromMeta(final, meta, spec);
            if (cached is not null)
                return cached with { FromCache = true, Elapsed = sw.Elapsed, CacheKey = key, RenamedTypes = renamed, SkippedPublics = skipped, TypeCount = typeCount, PublicCount = placed };
        }

        Directory.CreateDirectory(CacheRoot);
        string work = Path.Combine(CacheRoot, $".tmp-{key[..12]}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        bool ok = false;
        try
        {
            File.WriteAllText(Path.Combine(work, "types.cpp"), cpp);
            File.WriteAllText(Path.Combine(work, "publics.s"), asm);
            Run(work, _tools.LlvmMc, ["-filetype=obj", "-triple=x86_64-pc-windows-msvc", "-o", "publics.obj", "publics.s"]);
            Run(work, _tools.ClangCl, ["/nologo", "/c", "/Z7", "/GS-", "/TP", "/std:c++17", "/clang:-fstandalone-debug", "-Wno-everything",
                "/Fotypes.obj", "types.cpp"]);
            var link = new List<string>
            {
                "/nologo", "/machine:x64", "/nodefaultlib", "/debug:full", "/opt:noref", "/opt:noicf",
                "/entry:" + entry, "/pdbaltpath:" + spec.PdbName,
                "/out:" + spec.ImageName, "/pdb:" + spec.PdbName,
            };
            // Kernel image and drivers: a native image (a /dll /noentry build made the engine complain about the checksum).
            if (spec.Kind == ForgeModuleKind.UserDll) link.AddRange(["/dll", "/subsystem:windows"]);
            else link.AddRange(["/subsystem:native", "/driver"]);
            // publics.obj first: its .text is the first contribution to the first section, at RVA 0x1000.
            link.AddRange(["publics.obj", "types.obj"]);
            Run(work, _tools.LldLink, link);

            string imgPath = Path.Combine(work, spec.ImageName), pdbPath = Path.Combine(work, spec.PdbName);
            var pe = PeImagePatcher.Patch(File.ReadAllBytes(imgPath), spec.Identity, out uint soi, out uint chk);
            File.WriteAllBytes(imgPath, pe);
            var pdb = File.ReadAllBytes(pdbPath);
            // lld-link 14 puts some publics into the wrong name-hash bucket (see PdbSymbolHash): hashed lookups of
            // those names (the data model, dx) would miss them, where Microsoft's PDBs find every name.
            if (_rehash) pdb = PdbSymbolHash.Rehash(pdb, out _);
            PdbIdentityPatcher.Patch(pdb, spec.Identity.PdbGuid, spec.Identity.Age);
            File.WriteAllBytes(pdbPath, pdb);
            foreach (var f in Directory.GetFiles(work))
            {
                string n = Path.GetFileName(f);
                if (n != spec.ImageName && n != spec.PdbName && n != "types.cpp" && n != "publics.s") File.Delete(f);
            }
            File.WriteAllText(Path.Combine(work, "forge.json"), JsonSerializer.Serialize(new Meta
            {
                ImageName = spec.ImageName, PdbName = spec.PdbName, Guid = ForgeIdentity.StoreGuid(spec.Identity.PdbGuid), Age = spec.Identity.Age,
                TimeDateStamp = spec.Identity.TimeDateStamp, SizeOfImage = soi, CheckSum = chk, Generator = GeneratorVersion,
                GenerationMs = sw.ElapsedMilliseconds,
            }));
            try { Directory.Move(work, final); }
            catch (IOException) when (File.Exists(meta)) { /* another process won the race; its files are identical */ }
            catch (IOException) when (Directory.Exists(final))
            {
                // A stale partial entry (should not happen: entries appear only by rename). Replace it.
                Directory.Delete(final, true);
                Directory.Move(work, final);
            }
            ok = true;
        }
        finally
        {
            // A failed build's folder is kept for inspection unless NTSLEUTH_FORGE_KEEP_FAILED=0 (its path is in the exception).
            if (Directory.Exists(work) && (ok || Environment.GetEnvironmentVariable("NTSLEUTH_FORGE_KEEP_FAILED") == "0")) Directory.Delete(work, true);
        }
        var r = FromMeta(final, meta, spec) ?? throw new ForgeException($"forge output missing in {final}");
        return r with { Elapsed = sw.Elapsed, CacheKey = key, RenamedTypes = renamed, SkippedPublics = skipped, TypeCount = typeCount, PublicCount = placed };
    }

    /// <summary>
    /// Forges every module (cached) and copies the files into one symbol folder — flat (image + PDB side by side) or a
    /// symbol-store layout. Either works as a plain engine symbol/image path (no srv*: no symsrv.dll in the package).
    /// </summary>
    public IReadOnlyList<ForgeResult> ForgeInto(string symbolDir, IEnumerable<ForgeModuleSpec> specs, bool symbolStoreLayout = false)
    {
        var results = new List<ForgeResult>();
        foreach (var spec in specs)
        {
            var r = Forge(spec);
            if (symbolStoreLayout) r.CopyToSymbolStore(symbolDir); else r.CopyToFlat(symbolDir);
            results.Add(r);
        }
        return results;
    }

    private sealed class Meta
    {
        public string ImageName { get; set; } = "";
        public string PdbName { get; set; } = "";
        public string Guid { get; set; } = "";
        public int Age { get; set; }
        public uint TimeDateStamp { get; set; }
        public uint SizeOfImage { get; set; }
        public uint CheckSum { get; set; }
        public string Generator { get; set; } = "";
        public long GenerationMs { get; set; }
    }

    private static ForgeResult? FromMeta(string dir, string metaPath, ForgeModuleSpec spec)
    {
        Meta? m;
        try { m = JsonSerializer.Deserialize<Meta>(File.ReadAllText(metaPath)); }
        catch (Exception) { return null; }
        if (m is null) return null;
        string img = Path.Combine(dir, m.ImageName), pdb = Path.Combine(dir, m.PdbName);
        if (!File.Exists(img) || !File.Exists(pdb)) return null;
        return new ForgeResult
        {
            Directory = dir, ImagePath = img, PdbPath = pdb, ImageName = m.ImageName, PdbName = m.PdbName,
            PdbGuid = ForgeIdentity.ParseStoreGuid(m.Guid), Age = m.Age, TimeDateStamp = m.TimeDateStamp, SizeOfImage = m.SizeOfImage,
            CheckSum = m.CheckSum,
        };
    }

    private string CacheKey(ForgeModuleSpec spec, string cpp, string asm)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string s) { h.AppendData(Encoding.UTF8.GetBytes(s)); h.AppendData([0]); }
        Add(GeneratorVersion);
        if (!_rehash) Add("lld-hash");
        Add(spec.ImageName); Add(spec.PdbName); Add(spec.Kind.ToString());
        Add(ForgeIdentity.StoreGuid(spec.Identity.PdbGuid)); Add(spec.Identity.Age.ToString(CultureInfo.InvariantCulture));
        Add(spec.Identity.TimeDateStamp.ToString(CultureInfo.InvariantCulture)); Add(spec.Identity.SizeOfImage.ToString(CultureInfo.InvariantCulture));
        Add(spec.Identity.CheckSum?.ToString(CultureInfo.InvariantCulture) ?? "-");
        Add(_tools.ClangCl); Add(_tools.LldLink); Add(_tools.LlvmMc);
        Add(cpp); Add(asm);
        return Convert.ToHexString(h.GetHashAndReset())[..32].ToLowerInvariant();
    }

    private const string DefaultEntry = "__forge_entry";


    /// <summary>
    /// One .text section (lld-link always places .text first, at RVA 0x1000) with a global label per public at section
    /// offset RVA-0x1000 and .zero fill between. Not .bss: lld merges .bss into .data, placed after .rdata, which would
    /// shift every RVA. Names are quoted (ISF publics include '$$0', '??_C@...').
    /// </summary>
    /// The entry point is the lowest public (so no extra symbol shows up in <c>ln</c>), or an own label when there are none.
    public static string PublicsAssembly(IReadOnlyDictionary<string, ulong> publics, out List<string> skipped, out int placed) =>
        PublicsAssembly(publics, out skipped, out placed, out _);

    public static string PublicsAssembly(IReadOnlyDictionary<string, ulong> publics, out List<string> skipped, out int placed, out string entry)
    {
        skipped = [];
        var sb = new StringBuilder(publics.Count * 48 + 256);
        sb.AppendLine("\t.text");
        ulong pos = 0x1000;
        placed = 0;
        entry = "";
        foreach (var (name, rva) in publics.OrderBy(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (rva < 0x1000 || name == DefaultEntry || name.IndexOfAny(['"', '\n', '\r', '\0']) >= 0) { skipped.Add(name); continue; }
            if (rva > pos) { sb.Append("\t.zero\t").Append(rva - pos).AppendLine(); pos = rva; }
            string q = "\"" + name.Replace("\\", "\\\\") + "\"";
            sb.Append("\t.globl\t").AppendLine(q);
            sb.Append(q).AppendLine(":");
            if (placed++ == 0) entry = name;
        }
        if (placed == 0)
        {
            sb.Append("\t.globl\t").AppendLine(DefaultEntry);
            sb.Append(DefaultEntry).AppendLine(":");
            entry = DefaultEntry;
        }
        sb.AppendLine("\t.zero\t16");
        return sb.ToString();
    }

    private static void Run(string cwd, string exe, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new ForgeException($"cannot start {exe}");
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            string all = (output + "\n" + err.Result).Trim();
            if (all.Length > 4000) all = all[..4000] + "\n...";
            throw new ForgeException($"{Path.GetFileName(exe)} failed (exit {p.ExitCode}) in {cwd}:\n{all}");
        }
    }
}
