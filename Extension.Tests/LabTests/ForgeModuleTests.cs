using System.Text.Json;
using NtSleuth.Lab.Forge;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>Other modules (ndis/fltmgr from the layout table, synthetic drivers, dhcpcore.dll) and the real dump's identity.</summary>
[TestFixture]
[NonParallelizable]
public class ForgeModuleTests
{
    [OneTimeTearDown]
    public void DeleteTempCaches() => ForgeTestEnv.Cleanup();

    private static string LayoutsPath()
    {
        string p = Path.Combine(TestPaths.SharedDir, "realdata", "layouts", "ndis-fltmgr-layouts.json");
        if (!File.Exists(p)) Assert.Ignore($"layout table not found at {p}");
        return p;
    }

    public static IEnumerable<TestCaseData> LayoutModules()
    {
        foreach (var m in new[] { "ndis", "fltmgr" })
            foreach (var b in new[] { "Windows 10 v1607", "Windows 10 v2004", "Windows 11", "Windows 10 v20H2" })
                yield return new TestCaseData(m, b);
    }

    [TestCaseSource(nameof(LayoutModules))]
    public void LayoutModulePublicsAreAtTheirRvas(string module, string build)
    {
        var tools = ForgeTestEnv.Tools();
        string pdbUtil = ForgeTestEnv.PdbUtil(tools);
        string layouts = LayoutsPath();
        var spec = ForgeModules.FromLayouts(layouts, module, build);
        // Expected count straight from the table (independent of FromLayouts' loop).
        using var doc = JsonDocument.Parse(File.ReadAllBytes(layouts));
        var m = doc.RootElement.GetProperty("modules").GetProperty(module);
        int expected = new[] { "globals", "other_symbols" }.Sum(g => m.GetProperty(g).EnumerateObject().Count(s => s.Value.GetProperty("rva").TryGetProperty(build, out _)));
        Assert.That(spec.Publics, Has.Count.EqualTo(expected));
        var r = new SymbolForge(tools, ForgeTestEnv.TempCache("layout")).Forge(spec);
        var v = PdbVerifier.Verify(pdbUtil, r, spec);
        TestContext.Out.WriteLine($"{module} {build}: {r.ImageName}/{r.PdbName} {v}, {r.Elapsed.TotalSeconds:F2} s");
        Assert.That(v.Mismatches, Is.Empty, string.Join("\n", v.Mismatches.Take(20)));
        Assert.That(v.Publics, Is.EqualTo(expected));
        Assert.That(r.ImageName, Is.EqualTo(module == "ndis" ? "ndis.sys" : "fltMgr.sys"));
    }

    /// <summary>The nt ISF closest to each layout build column (for by-value nt types inside ndis/fltmgr structs).</summary>
    private static string NtFor(string build) => build switch
    {
        "Windows 10 v1607" => "DBBC830E3E9A48FDA25A2144C146930E-1",
        "Windows 11" => "0CE4A95C0CD782A7596B034D8648E585-1",
        _ => "5278AFF86C341677D7D7835C85B7B844-1",
    };

    [TestCaseSource(nameof(LayoutModules))]
    public void LayoutModuleTypesAreInThePdbAtTheTablesOffsets(string module, string build)
    {
        var tools = ForgeTestEnv.Tools();
        string pdbUtil = ForgeTestEnv.PdbUtil(tools);
        string layouts = LayoutsPath();
        var spec = ForgeModules.FromLayoutsWithTypes(layouts, module, build, ForgeTestEnv.Isf(NtFor(build)), out var notes);
        var types = spec.Types!;
        // 1. The converted table holds every plain member of the build column at the table's offset (read straight from the JSON).
        using var doc = JsonDocument.Parse(File.ReadAllBytes(layouts));
        int checkedFields = 0;
        var missing = new List<string>();
        foreach (var t in doc.RootElement.GetProperty("modules").GetProperty(module).GetProperty("types").EnumerateObject())
        {
            if (!t.Value.GetProperty("builds").EnumerateArray().Any(b => b.GetString() == build)) continue;
            if (!types.UserTypes.TryGetValue(t.Name, out var ut))
            {
                if (!notes.Any(n => n.StartsWith($"{t.Name}: no members", StringComparison.Ordinal))) missing.Add(t.Name + " (type)");
                continue;
            }
            foreach (var f in t.Value.GetProperty("fields").EnumerateObject())
            {
                if (!f.Value.GetProperty("offset").TryGetProperty(build, out var off)) continue;
                var mine = ut.Fields.FirstOrDefault(x => x.Name == f.Name);
                if (mine is null)
                {
                    if (!notes.Any(n => n.StartsWith($"{t.Name}.{f.Name}:", StringComparison.Ordinal))) missing.Add($"{t.Name}.{f.Name}");
                    continue;
                }
                checkedFields++;
                if (mine.Offset != off.GetInt32()) missing.Add($"{t.Name}.{f.Name} at 0x{mine.Offset:x}, table 0x{off.GetInt32():x}");
                if (f.Value.TryGetProperty("bit_position", out var bp) && bp.TryGetProperty(build, out var pos) && mine.Type.BitPosition != pos.GetInt32())
                    missing.Add($"{t.Name}.{f.Name} bit {mine.Type.BitPosition}, table {pos.GetInt32()}");
            }
        }
        Assert.That(missing, Is.Empty, "members lost or moved without a note");
        Assert.That(checkedFields, Is.GreaterThan(500));
        // 2. The forged PDB holds exactly the converted table (and the publics).
        var r = new SymbolForge(tools, ForgeTestEnv.TempCache("layout-types")).Forge(spec);
        var v = PdbVerifier.Verify(pdbUtil, r, spec);
        TestContext.Out.WriteLine($"{module} {build}: {checkedFields} table members checked, {notes.Count} approximations; pdb {new FileInfo(r.PdbPath).Length:N0} bytes: {v}");
        Assert.That(v.Mismatches, Is.Empty, string.Join("\n", v.Mismatches.Take(20)));
    }

    public static IEnumerable<TestCaseData> SyntheticModules()
    {
        yield return new TestCaseData("ECHO.sys", "EchoEvtTimerFunc");
        yield return new TestCaseData("Wdf01000.sys", "?TimerHandler@FxTimer@@CAXPEAU_KDPC@@PEAX11@Z");
        yield return new TestCaseData("myfault.sys", "DriverEntry");
        yield return new TestCaseData("dhcpcore.dll", "DhcpGlobalNICList");
    }

    [TestCaseSource(nameof(SyntheticModules))]
    public void SyntheticModulesCarryTheirPublics(string image, string mustHave)
    {
        var tools = ForgeTestEnv.Tools();
        string pdbUtil = ForgeTestEnv.PdbUtil(tools);
        var spec = image switch
        {
            "ECHO.sys" => ForgeModules.Echo(),
            "Wdf01000.sys" => ForgeModules.Wdf01000(),
            "myfault.sys" => ForgeModules.MyFault(),
            _ => ForgeModules.DhcpCore(),
        };
        Assert.That(spec.Publics.Keys, Does.Contain(mustHave));
        var r = new SymbolForge(tools, ForgeTestEnv.TempCache("synthetic")).Forge(spec);
        var v = PdbVerifier.Verify(pdbUtil, r, spec);
        Assert.That(v.Mismatches, Is.Empty, string.Join("\n", v.Mismatches));
        Assert.That(v.Publics, Is.EqualTo(spec.Publics.Count));
        var pe = PeImagePatcher.Read(File.ReadAllBytes(r.ImagePath));
        Assert.That(pe.CodeViewPdb, Is.EqualTo(spec.PdbName));
        Assert.That(pe.SizeOfImage, Is.EqualTo(r.SizeOfImage));
        Assert.That(pe.SizeOfImage, Is.GreaterThan((uint)spec.Publics.Values.Max()));
        Assert.That(pe.CodeViewGuid, Is.EqualTo(ForgeModules.StableGuid(spec.PdbName)), "synthetic identities are stable between runs");
    }

    [Test]
    public void TriageDriverListMatchesTheExpectedDecoding()
    {
        string dump = Path.Combine(TestPaths.SharedDir, "realdata", "dumps", "kernel", "win10-19041-triage-0x1000007e.dmp");
        string expected = Path.ChangeExtension(dump, null) + ".expected.json";
        if (!File.Exists(dump) || !File.Exists(expected)) Assert.Ignore($"real dump not found at {dump}");
        var t = TriageDumpDrivers.Read(dump);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(expected));
        var exp = doc.RootElement.EnumerateArray().First(e => e.GetProperty("file").GetString()!.Contains("triage_x64"));
        static ulong Hex(JsonElement e) => Convert.ToUInt64(e.GetString()![2..], 16);
        Assert.That(t.BuildNumber, Is.EqualTo(exp.GetProperty("MinorVersion(build)").GetInt32()));
        Assert.That(t.Processors, Is.EqualTo(exp.GetProperty("NumberProcessors").GetInt32()));
        Assert.That((ulong)t.BugCheckCode, Is.EqualTo(Hex(exp.GetProperty("BugCheckCode"))));
        var drivers = exp.GetProperty("drivers").EnumerateArray().ToList();
        Assert.That(t.Drivers, Has.Count.EqualTo(exp.GetProperty("driver_count_parsed").GetInt32()));
        Assert.That(t.Drivers, Has.Count.EqualTo(drivers.Count));
        for (int i = 0; i < drivers.Count; i++)
        {
            Assert.That(t.Drivers[i].Name, Is.EqualTo(drivers[i].GetProperty("name").GetString()), $"driver {i}");
            Assert.That(t.Drivers[i].DllBase, Is.EqualTo(Hex(drivers[i].GetProperty("DllBase"))), $"driver {i}");
            Assert.That((ulong)t.Drivers[i].SizeOfImage, Is.EqualTo(Hex(drivers[i].GetProperty("SizeOfImage"))), $"driver {i}");
            Assert.That((ulong)t.Drivers[i].TimeDateStamp, Is.EqualTo(Hex(drivers[i].GetProperty("TimeDateStamp"))), $"driver {i}");
        }
        var id = t.KernelIdentity(ForgeIdentity.ParseStoreGuid("5278AFF86C341677D7D7835C85B7B844"), 1);
        Assert.That((ulong)id.TimeDateStamp, Is.EqualTo(Hex(drivers[0].GetProperty("TimeDateStamp"))));
        Assert.That((ulong)id.SizeOfImage, Is.EqualTo(Hex(drivers[0].GetProperty("SizeOfImage"))));
        Assert.That(id.CheckSum, Is.Not.Null.And.Not.EqualTo(0u), "the driver list records ntoskrnl's PE checksum");
    }
}
