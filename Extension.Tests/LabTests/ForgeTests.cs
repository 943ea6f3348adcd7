using System.Diagnostics;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Forge;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>Where the forge tests find ../shared and the LLVM tools; skips (or fails under NTSLEUTH_REQUIRE_E2E=1).</summary>
internal static class ForgeTestEnv
{
    public static bool RequireE2E => Environment.GetEnvironmentVariable("NTSLEUTH_REQUIRE_E2E") == "1";

    public static string IsfDir()
    {
        string dir = Path.Combine(TestPaths.SharedDir, "realdata", "isf", "ntkrnlmp.pdb");
        if (!Directory.Exists(dir)) Assert.Ignore($"ISF symbol tables not found at {dir} (../shared/realdata is not on this machine)");
        return dir;
    }

    public static string IsfPath(string guidAge)
    {
        string p = Path.Combine(IsfDir(), guidAge + ".json.xz");
        if (!File.Exists(p)) Assert.Ignore($"ISF {p} not found");
        return p;
    }

    public static ForgeToolchain Tools()
    {
        var t = ForgeToolchain.Find(out var why);
        if (t is null)
        {
            if (RequireE2E) Assert.Fail(why + " (NTSLEUTH_REQUIRE_E2E=1)");
            Assert.Ignore(why);
        }
        return t!;
    }

    public static string PdbUtil(ForgeToolchain t)
    {
        if (t.PdbUtil is null)
        {
            const string why = "llvm-pdbutil-14 not found (apt: llvm-14)";
            if (RequireE2E) Assert.Fail(why + " (NTSLEUTH_REQUIRE_E2E=1)");
            Assert.Ignore(why);
        }
        return t.PdbUtil!;
    }

    private static readonly Dictionary<string, IsfDocument> Loaded = new();
    public static IsfDocument Isf(string guidAge)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(guidAge, out var d)) Loaded[guidAge] = d = IsfDocument.Load(IsfPath(guidAge));
            return d;
        }
    }

    /// <summary>A fresh cache folder per test run (the default cache is shared with make-samples; tests measure real generation).</summary>
    public static string TempCache(string name)
    {
        string p = Path.Combine(Path.GetTempPath(), "ntsleuth-forge-tests", name + "-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(p);
        lock (Created) Created.Add(p);
        return p;
    }

    private static readonly List<string> Created = [];

    /// <summary>Deletes the temp caches this process made.</summary>
    public static void Cleanup()
    {
        lock (Created)
        {
            foreach (var d in Created)
                try { if (Directory.Exists(d)) Directory.Delete(d, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            Created.Clear();
        }
    }
}

[TestFixture]
public class ForgeEmitterTests
{
    private static string Expand(string json) =>
        System.Text.RegularExpressions.Regex.Replace(json.Replace("@UL@", UL), @"@BITS:(\d+):(\d+)@", m => Bits(int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value)));

    private static IsfDocument Doc(string userTypes, string enums = "{}", string symbols = "{}") => DocRaw(Expand(userTypes), enums, symbols);

    private static IsfDocument DocRaw(string userTypes, string enums, string symbols) =>
        IsfDocument.Parse(new MemoryStream(System.Text.Encoding.UTF8.GetBytes($$$"""
        {"metadata":{"format":"6.1.0","windows":{"pdb":{"GUID":"00112233445566778899AABBCCDDEEFF","age":2,"database":"test.pdb"} } },
         "base_types":{"unsigned long":{"size":4,"signed":false,"kind":"int","endian":"little"},
                       "unsigned char":{"size":1,"signed":false,"kind":"char","endian":"little"},
                       "unsigned long long":{"size":8,"signed":false,"kind":"int","endian":"little"},
                       "void":{"size":0,"signed":true,"kind":"void","endian":"little"},
                       "pointer":{"size":8,"signed":false,"kind":"int","endian":"little"} },
         "user_types":{{{userTypes}}}, "enums":{{{enums}}}, "symbols":{{{symbols}}}}
        """)), "test.json");

    private const string UL = """{"kind":"base","name":"unsigned long"}""";
    private static string Bits(int pos, int len) => "{\"kind\":\"bitfield\",\"bit_position\":" + pos + ",\"bit_length\":" + len + ",\"type\":" + UL + "}";

    [Test]
    public void OverlappingFieldsBecomeAnUnionOfLayersAndBitfieldsShareOneUnit()
    {
        var isf = Doc("""
        {"_T":{"kind":"struct","size":24,"fields":{
            "Flags":{"offset":0,"type":@UL@},
            "A":{"offset":0,"type":@BITS:0:1@},
            "B":{"offset":0,"type":@BITS:3:2@},
            "Next":{"offset":8,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_T"}}},
            "Other":{"offset":16,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_UNDEFINED"}}}}}}
        """);
        var cpp = new CppTypeEmitter(isf).Emit();
        // Flags and the A/B storage unit overlap: one anonymous union with two layers.
        Assert.That(cpp, Does.Contain("  union {\n    struct {\n      unsigned long Flags;\n    };\n    struct {\n      unsigned long A : 1;\n      unsigned long : 2;\n      unsigned long B : 2;\n      unsigned long : 27;\n    };\n  };"));
        // 4-byte hole after the union filled with an unnamed bitfield byte by byte; pointers typed to their struct.
        Assert.That(cpp, Does.Contain("  unsigned char : 8;\n  struct _T *Next;\n  struct _UNDEFINED *Other;"));
        Assert.That(cpp, Does.Contain("struct _UNDEFINED;"), "forward declaration for a pointee the ISF does not define");
        Assert.That(cpp, Does.Contain("static_assert(sizeof(struct _T) == 24"));
        Assert.That(cpp, Does.Contain("static_assert(__builtin_offsetof(struct _T, Next) == 8"));
        Assert.That(cpp, Does.Not.Contain("offsetof(struct _T, A)"), "no offsetof on bitfields");
        Assert.That(cpp, Does.Contain("struct _T* k0;"), "every type referenced from the keep-all global");
    }

    [Test]
    public void BitfieldsWithOverlappingBitRangesAreSplitIntoSeparateUnits()
    {
        var isf = Doc("""
        {"_U":{"kind":"struct","size":4,"fields":{
            "Low":{"offset":0,"type":@BITS:0:16@},
            "All":{"offset":0,"type":@BITS:0:32@}}}}
        """);
        var cpp = new CppTypeEmitter(isf).Emit();
        Assert.That(cpp, Does.Contain("unsigned long All : 32;"));
        Assert.That(cpp, Does.Contain("unsigned long Low : 16;\n      unsigned long : 16;"));
        Assert.That(cpp, Does.Contain("  union {"), "two overlapping units become union layers");
    }

    [Test]
    public void EnumsAreScopedWithTheirBaseAndInvalidNamesAreRenamed()
    {
        var isf = Doc("{}", """{"<unnamed-enum-X>":{"base":"unsigned long","size":4,"constants":{"X_A":1,"X_B":4294967295}}}""");
        var e = new CppTypeEmitter(isf);
        var cpp = e.Emit();
        Assert.That(cpp, Does.Contain("enum class _unnamed_enum_X_ : unsigned long {"));
        Assert.That(cpp, Does.Contain("X_B = 4294967295,"));
        Assert.That(e.Renamed["<unnamed-enum-X>"], Is.EqualTo("_unnamed_enum_X_"));
    }

    [Test]
    public void PublicsAreLabelsInOneTextSectionAtRvaMinus0x1000()
    {
        var asm = SymbolForge.PublicsAssembly(new Dictionary<string, ulong> { ["B"] = 0x1010, ["A"] = 0x1000, ["$$0"] = 0x2000, ["Hdr"] = 0x40 },
            out var skipped, out int placed);
        Assert.That(skipped, Is.EqualTo(new[] { "Hdr" }), "RVAs inside the headers cannot be placed");
        Assert.That(placed, Is.EqualTo(3));
        Assert.That(asm, Does.StartWith("\t.text\n"));
        Assert.That(asm, Does.Not.Contain(".bss"));
        Assert.That(asm, Does.Contain("\"A\":\n\t.zero\t16\n\t.globl\t\"B\"\n\"B\":\n\t.zero\t4080\n\t.globl\t\"$$0\"\n\"$$0\":"));
    }

    [Test]
    public void StoreGuidRoundTripsInTheSymbolStoreSpelling()
    {
        var g = ForgeIdentity.ParseStoreGuid("5278AFF86C341677D7D7835C85B7B844");
        Assert.That(ForgeIdentity.StoreGuid(g), Is.EqualTo("5278AFF86C341677D7D7835C85B7B844"));
        // The on-disk (RSDS/PDB info stream) byte order: Data1..3 little-endian, Data4 as is.
        Assert.That(Convert.ToHexString(g.ToByteArray()), Is.EqualTo("F8AF7852346C7716D7D7835C85B7B844"));
    }

    [Test]
    public void VerifierReportsEveryKindOfMismatch()
    {
        // A canned llvm-pdbutil dump of a struct with a pointer, a bitfield, and a public; compared with an ISF that disagrees.
        const string dump = """
                                 Types (TPI Stream)
          ============================================================
            0x1000 | LF_STRUCTURE [size = 40] `_T`
                     unique name: `.?AU_T@@`
                     vtable: <no type>, base list: <no type>, field list: <no type>
                     options: forward ref (-> 0x1004) | has unique name, sizeof 0
            0x1001 | LF_POINTER [size = 12]
                     referent = 0x1000, mode = pointer, opts = None, kind = ptr64
            0x1002 | LF_BITFIELD [size = 12]
                     type = 0x0022 (unsigned long), bit offset = 1, # bits = 2
            0x1003 | LF_FIELDLIST [size = 60]
                     - LF_MEMBER [name = `Next`, Type = 0x1001, offset = 0, attrs = public]
                     - LF_MEMBER [name = `B`, Type = 0x1002, offset = 8, attrs = public]
            0x1004 | LF_STRUCTURE [size = 40] `_T`
                     unique name: `.?AU_T@@`
                     vtable: <no type>, base list: <no type>, field list: 0x1003
                     options: has unique name, sizeof 16
                                  Public Symbols
          ============================================================
             0 | S_PUB32 [size = 20] `Sym`
                 flags = none, addr = 0001:16
        """;
        var good = Doc("""{"_T":{"kind":"struct","size":16,"fields":{"Next":{"offset":0,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_T"}}},"B":{"offset":8,"type":@BITS:1:2@}}}}""");
        var spec = new ForgeModuleSpec { ImageName = "t.sys", PdbName = "t.pdb", Types = good, Publics = new Dictionary<string, ulong> { ["Sym"] = 0x1010 }, Identity = new ForgeIdentity { PdbGuid = Guid.Empty } };
        var ok = PdbVerifier.Compare(dump.Replace("\r", ""), [0x1000u], spec);
        Assert.That(ok.Mismatches, Is.Empty, string.Join("\n", ok.Mismatches));
        Assert.That((ok.Types, ok.Fields, ok.Bitfields, ok.StructPointers, ok.Publics), Is.EqualTo((1, 2, 1, 1, 1)));

        var bad = Doc("""{"_T":{"kind":"struct","size":24,"fields":{"Next":{"offset":0,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_OTHER"}}},"B":{"offset":12,"type":@BITS:2:2@}}}}""");
        var r = PdbVerifier.Compare(dump.Replace("\r", ""), [0x1000u], spec with { Types = bad, Publics = new Dictionary<string, ulong> { ["Sym"] = 0x1020, ["Gone"] = 0x2000 } });
        Assert.That(r.Mismatches, Has.Some.Contains("_T: size 16 in the PDB, 24 in the ISF"));
        Assert.That(r.Mismatches, Has.Some.Contains("_T.Next*: struct _OTHER expected"));
        Assert.That(r.Mismatches, Has.Some.Contains("_T.B: offset 0x8 in the PDB, 0xc in the ISF"));
        Assert.That(r.Mismatches, Has.Some.Contains("_T.B: bits 1:2 in the PDB, 2:2 in the ISF"));
        Assert.That(r.Mismatches, Has.Some.Contains("public Sym: RVA 0x1010 in the PDB, 0x1020 in the spec"));
        Assert.That(r.Mismatches, Has.Some.Contains("public Gone: not in the PDB"));
        Assert.That(r.Mismatches, Has.Count.EqualTo(6));
    }
}

/// <summary>Forges the real PDB + image for every ISF build and checks them with llvm-pdbutil (needs clang-cl/lld-link).</summary>
[TestFixture]
[NonParallelizable]
public class ForgeBuildTests
{
    [OneTimeTearDown]
    public void DeleteTempCaches() => ForgeTestEnv.Cleanup();

    public static IEnumerable<string> Builds()
    {
        // The five ISF tables in ../shared (discovered at run time would hide a missing build; these are the known set).
        yield return "339E74133576439CBCDF7E0229DA3773-1"; // Windows 7 SP1 7601
        yield return "169C65213E3E42DDBEB4E3AC66312B82-1"; // Server 2012 R2 9600
        yield return "DBBC830E3E9A48FDA25A2144C146930E-1"; // Server 2016 14393
        yield return "5278AFF86C341677D7D7835C85B7B844-1"; // Windows 10 19041
        yield return "0CE4A95C0CD782A7596B034D8648E585-1"; // Windows 11 22000
    }

    [TestCaseSource(nameof(Builds))]
    public void ForgedKernelPdbMatchesTheIsfExactly(string guidAge)
    {
        var tools = ForgeTestEnv.Tools();
        string pdbUtil = ForgeTestEnv.PdbUtil(tools);
        var isf = ForgeTestEnv.Isf(guidAge);
        var forge = new SymbolForge(tools, ForgeTestEnv.TempCache("build"));
        var spec = ForgeModuleSpec.ForKernel(isf);
        var r = forge.Forge(spec);
        Assert.That(r.FromCache, Is.False);
        var sw = Stopwatch.StartNew();
        var v = PdbVerifier.Verify(pdbUtil, r, spec);
        TestContext.Out.WriteLine($"{guidAge}: generation {r.Elapsed.TotalSeconds:F2} s, pdb {new FileInfo(r.PdbPath).Length:N0} bytes, image {new FileInfo(r.ImagePath).Length:N0} bytes; verify {sw.Elapsed.TotalSeconds:F2} s: {v}");
        Assert.That(v.Mismatches, Is.Empty, string.Join("\n", v.Mismatches.Take(30)));
        Assert.That(v.Types, Is.EqualTo(isf.UserTypes.Count));
        Assert.That(v.Enums, Is.EqualTo(isf.Enums.Count));
        Assert.That(v.Fields, Is.EqualTo(isf.UserTypes.Values.Sum(t => t.Fields.Count)));
        Assert.That(v.Publics, Is.EqualTo(isf.Symbols.Count(kv => kv.Value >= 0x1000)));
        Assert.That(r.SkippedPublics, Is.Empty);
        // Identity: the table's own GUID/age in the PDB (info stream and DBI) and in the image's RSDS record.
        var (g, age, dbiAge) = PdbIdentityPatcher.Read(File.ReadAllBytes(r.PdbPath));
        var pe = PeImagePatcher.Read(File.ReadAllBytes(r.ImagePath));
        Assert.That(ForgeIdentity.StoreGuid(g) + age.ToString("X"), Is.EqualTo(guidAge.Replace("-", "")));
        Assert.That(dbiAge, Is.EqualTo(age));
        Assert.That(pe.CodeViewGuid, Is.EqualTo(g));
        Assert.That(pe.CodeViewAge, Is.EqualTo(age));
        Assert.That(pe.CodeViewPdb, Is.EqualTo("ntkrnlmp.pdb"));
        Assert.That(pe.Sections[0].Name, Is.EqualTo(".text"));
        Assert.That(pe.Sections[0].Rva, Is.EqualTo(0x1000u));
        Assert.That(pe.Sections[0].RawSize, Is.EqualTo(0u), "the public-symbol fill is stripped from the file");
        Assert.That(new FileInfo(r.ImagePath).Length, Is.LessThan(16 * 1024));
    }

    [Test]
    public void IdentityOptionsArePatchedIntoImageAndPdb()
    {
        var tools = ForgeTestEnv.Tools();
        var isf = ForgeTestEnv.Isf("339E74133576439CBCDF7E0229DA3773-1");
        var id = new ForgeIdentity
        {
            PdbGuid = ForgeIdentity.ParseStoreGuid("0123456789ABCDEF0123456789ABCDEF"), Age = 7,
            TimeDateStamp = 0x5a5a1234, SizeOfImage = 0x800000,
        };
        var r = new SymbolForge(tools, ForgeTestEnv.TempCache("identity")).Forge(ForgeModuleSpec.ForKernel(isf, id));
        var bytes = File.ReadAllBytes(r.ImagePath);
        var pe = PeImagePatcher.Read(bytes);
        Assert.That((pe.TimeDateStamp, pe.SizeOfImage, pe.CodeViewAge), Is.EqualTo((0x5a5a1234u, 0x800000u, 7)));
        Assert.That(pe.CodeViewGuid, Is.EqualTo(id.PdbGuid));
        Assert.That(pe.CheckSum, Is.EqualTo(PeImagePatcher.CheckSumOf(bytes)), "a real PE checksum");
        Assert.That(pe.CheckSum, Is.EqualTo(r.CheckSum));
        var (g, age, dbiAge) = PdbIdentityPatcher.Read(File.ReadAllBytes(r.PdbPath));
        Assert.That((g, age, dbiAge), Is.EqualTo((id.PdbGuid, 7, 7)));
        Assert.That(r.PdbIdentity, Is.EqualTo("0123456789ABCDEF0123456789ABCDEF7"));

        // A requested SizeOfImage smaller than the sections is refused with a clear message.
        var ex = Assert.Throws<ForgeException>(() => new SymbolForge(tools, ForgeTestEnv.TempCache("identity-small")).Forge(ForgeModuleSpec.ForKernel(isf, id with { SizeOfImage = 0x2000 })));
        Assert.That(ex!.Message, Does.Contain("smaller than the forged image's sections"));

        // Symbol-store layout.
        string store = ForgeTestEnv.TempCache("store");
        r.CopyToSymbolStore(store);
        Assert.That(File.Exists(Path.Combine(store, "ntkrnlmp.pdb", "0123456789ABCDEF0123456789ABCDEF7", "ntkrnlmp.pdb")));
        Assert.That(File.Exists(Path.Combine(store, "ntoskrnl.exe", "5A5A1234800000", "ntoskrnl.exe")));
    }

    [Test]
    public void SecondForgeComesFromTheCacheAndConcurrentForgesAgree()
    {
        var tools = ForgeTestEnv.Tools();
        var isf = ForgeTestEnv.Isf("339E74133576439CBCDF7E0229DA3773-1");
        string cache = ForgeTestEnv.TempCache("cache");
        var spec = ForgeModuleSpec.ForKernel(isf);
        // Two forges racing on an empty cache: both succeed and see the same entry.
        var results = new ForgeResult[2];
        Parallel.For(0, 2, i => results[i] = new SymbolForge(tools, cache).Forge(spec));
        Assert.That(results[0].Directory, Is.EqualTo(results[1].Directory));
        Assert.That(File.ReadAllBytes(results[0].PdbPath), Is.EqualTo(File.ReadAllBytes(results[1].PdbPath)));
        var again = new SymbolForge(tools, cache).Forge(spec);
        Assert.That(again.FromCache, Is.True);
        Assert.That(again.Directory, Is.EqualTo(results[0].Directory));
        Assert.That(Directory.GetDirectories(cache).Where(d => Path.GetFileName(d).StartsWith(".tmp-")), Is.Empty, "no temp folders left behind");
        // A different identity is a different entry.
        var other = new SymbolForge(tools, cache).Forge(spec with { Identity = spec.Identity with { TimeDateStamp = 1 } });
        Assert.That(other.Directory, Is.Not.EqualTo(results[0].Directory));
    }
}
