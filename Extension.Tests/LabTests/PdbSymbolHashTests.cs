using NtSleuth.Lab.Forge;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>
/// The forged PDBs keep every public in the name-hash bucket its name hashes to, as Microsoft's PDBs do: lld-link 14
/// misplaces some (PdbSymbolHash), and the data model's hashed lookups (the extension's symbol names, dx) then miss
/// them. Checked by our reader and by llvm-pdbutil (the PDB stays readable, nothing lost).
/// </summary>
[TestFixture]
public class PdbSymbolHashTests
{
    [OneTimeTearDown]
    public void Cleanup() => ForgeTestEnv.Cleanup();

    // 8-character names are the ones lld-link 14 hashed past their end in the 19041 kernel (strcpy_s, PfTStart, ...).
    private static readonly string[] Names =
        ["strcpy_s", "PfTStart", "XmSmswOp", "iswdigit", "EtwWrite", "wcscpy_s", "KiOp_Div", "PiDcInit", "isxdigit", "wcstombs",
         "PoolTrackTable", "KiProcessorBlock", "ndisMiniportList", "A", "Bc", "Def", "Ghij", "_lconv_c", "strcat_s", "strtoi64"];

    private static IReadOnlyDictionary<string, ulong> Publics()
    {
        var p = new Dictionary<string, ulong>(StringComparer.Ordinal);
        ulong rva = 0x1000;
        foreach (var n in Names) { p[n] = rva; rva += 0x40; }
        for (int i = 0; i < 600; i++) { p[$"Sym{i:x5}{new string('x', i % 9)}"] = rva; rva += 0x40; }
        return p;
    }

    [Test]
    public void EveryForgedPublicIsInItsHashBucket()
    {
        var tools = ForgeToolchain.Find(out _) ?? ForgeTestEnv.Tools();
        var spec = ForgeModules.Synthetic("hashtest.sys", ForgeModuleKind.Driver, Publics());
        var linked = new SymbolForge(tools, ForgeTestEnv.TempCache("hash-lld"), rehashPublics: false).Forge(spec);
        var forged = new SymbolForge(tools, ForgeTestEnv.TempCache("hash-fixed")).Forge(spec);

        var before = PdbSymbolHash.Check(File.ReadAllBytes(linked.PdbPath)).Single(t => t.Stream == "publics");
        var after = PdbSymbolHash.Check(File.ReadAllBytes(forged.PdbPath));
        TestContext.Out.WriteLine($"lld-link: {before.Records} publics, {before.Misplaced} misplaced ({string.Join(", ", before.MisplacedNames.Take(12))})");
        foreach (var t in after) TestContext.Out.WriteLine($"forged {t.Stream}: {t.Records} records in {t.NonEmptyBuckets} buckets, {t.Misplaced} misplaced");

        var pub = after.Single(t => t.Stream == "publics");
        Assert.That(pub.Records, Is.EqualTo(before.Records), "no public lost or added");
        Assert.That(pub.Records, Is.GreaterThanOrEqualTo(Publics().Count));
        Assert.That(after.Sum(t => t.Misplaced), Is.Zero, string.Join(", ", after.SelectMany(t => t.MisplacedNames)));
        if (before.Misplaced == 0) Assert.Warn("this lld-link put every public into its bucket: the rehash had nothing to do");

        // llvm-pdbutil (an independent reader) still reads the fixed PDB and finds every name through the hash table.
        string pdbutil = ForgeTestEnv.PdbUtil(tools);
        var psi = new System.Diagnostics.ProcessStartInfo(pdbutil) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "dump", "-publics", forged.PdbPath }) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string dump = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.Zero, p.StandardError.ReadToEnd());
        foreach (var n in Names) Assert.That(dump, Does.Contain($"`{n}`"), n);
    }

    [Test]
    public void HashIsTheReferenceHash()
    {
        // Buckets of names in the forged 19041 kernel as lld-link placed them where it hashed right (llvm-pdbutil agrees).
        Assert.That(PdbSymbolHash.HashV1("PoolTrackTable"u8) % PdbSymbolHash.Buckets, Is.EqualTo(3236u));
        Assert.That(PdbSymbolHash.HashV1("PoolTrackTable"u8), Is.EqualTo(PdbSymbolHash.HashV1("pooltracktable"u8)), "case-folded");
        Assert.That(PdbSymbolHash.HashV1("a"u8), Is.Not.EqualTo(PdbSymbolHash.HashV1("b"u8)));
    }
}
