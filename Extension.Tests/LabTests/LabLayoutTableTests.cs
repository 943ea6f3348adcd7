using NtSleuth.Commands.Model;
using NtSleuth.Lab.Layouts;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

[TestFixture]
public class LabLayoutTableTests
{
    private static LayoutTable TableOrIgnore()
    {
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        return LayoutTable.Shared ?? throw new IgnoreException("../shared/realdata/layouts/ndis-fltmgr-layouts.json is absent");
    }

    private static IEnumerable<TestCaseData> LabelsAndModules()
    {
        foreach (var l in new[] { "Windows 10 v1607", "Windows 10 v2004", "Windows 11", "Windows 10 v20H2" })
            foreach (var m in new[] { "ndis", "fltmgr", "nt" })
                yield return new TestCaseData(l, m);
    }

    [TestCaseSource(nameof(LabelsAndModules))]
    public void Every_label_converts_to_a_valid_symbol_table(string label, string module)
    {
        var t = TableOrIgnore();
        var nt = LabBuilds.Get("win10").Isf;
        var doc = t.ToIsf(module, label, nt);
        var names = t.TypeNames(module, label).ToList();
        Assert.That(names, Is.Not.Empty);
        foreach (var n in names) Assert.That(doc.UserTypes.ContainsKey(n), $"{module}!{n} missing on {label}");
        if (module != "nt") Assert.That(doc.Symbols, Is.Not.Empty);
        Assert.That(doc.PdbName, Does.EndWith(".pdb").IgnoreCase);
    }

    [Test]
    public void Documented_offsets_come_through()
    {
        var t = TableOrIgnore();
        var nt = LabBuilds.Get("win10").Isf;
        var frame = t.GetLayout("fltmgr", "Windows 10 v20H2", "_FLTP_FRAME", nt)!;
        Assert.That(frame.GetField("RegisteredFilters").Offset, Is.EqualTo(0x48UL));
        Assert.That(frame.Size, Is.EqualTo(0x780UL));
        var mp = t.GetLayout("ndis", "Windows 10 v2004", "_NDIS_MINIPORT_BLOCK", nt)!;
        Assert.That(mp.GetField("MiniportName").Offset, Is.EqualTo(0xee0UL));
        Assert.That(mp.GetField("NextGlobalMiniport").Offset, Is.EqualTo(0xf08UL));
        Assert.That(mp.GetField("State").Offset, Is.EqualTo(0x8c8UL));
        Assert.That(mp.GetField("PnPDeviceState").Offset, Is.EqualTo(0x5f0UL));
        Assert.That(mp.GetField("MiniportName").Type.Name, Is.EqualTo("_UNICODE_STRING"));
        var nbl = t.GetLayout("ndis", "Windows 10 v2004", "_NET_BUFFER_LIST", nt)!;
        Assert.That(nbl.GetField("Next").Offset, Is.EqualTo(0UL));
        Assert.That(t.Globals("fltmgr", "Windows 10 v2004"), Does.ContainKey("FltGlobals"));
        Assert.That(t.Globals("ndis", "Windows 10 v2004"), Does.ContainKey("ndisMiniportList"));
    }

    [Test]
    public void Unknown_label_and_module_give_clear_errors()
    {
        var t = TableOrIgnore();
        Assert.That(() => t.ToIsf("ndis", "Windows 7"), Throws.TypeOf<LayoutTableException>().With.Message.Contains("unknown build label 'Windows 7'"));
        Assert.That(() => t.ToIsf("tcpip", "Windows 11"), Throws.TypeOf<LayoutTableException>().With.Message.Contains("no module 'tcpip'"));
    }

    [TestCase("win7")]
    [TestCase("2012r2")]
    [TestCase("2016")]
    [TestCase("win10")]
    [TestCase("win11")]
    public void Layout_modules_serve_beside_nt_in_a_scenario(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        TableOrIgnore();
        var b = new KernelScenarioBuilder(build);
        b.AddLayoutModule("ndis");
        b.AddLayoutModule("fltmgr");
        var mp = b.New("_NDIS_MINIPORT_BLOCK", module: "ndis");
        mp.Unicode("MiniportName", @"\DEVICE\{5A2B}");
        var globals = b.Global("fltmgr!FltGlobals", "_GLOBALS", "fltmgr");
        globals.ListHead("FrameList.rList");
        var target = b.CreateTarget();
        var r = new KernelReader(target);
        var v = r.Read("ndis", "_NDIS_MINIPORT_BLOCK", mp.Address);
        Assert.That(r.ReadUnicodeString(v.AddressOf("MiniportName")), Is.EqualTo(@"\DEVICE\{5A2B}"));
        var g = r.Read("fltmgr", "_GLOBALS", r.Types.Symbol("fltmgr!FltGlobals"));
        Assert.That(g.Ptr("FrameList.rList.Flink"), Is.EqualTo(g.AddressOf("FrameList.rList")));
        Assert.That(target.Symbols.GetSymbolAddress("nt!PsActiveProcessHead"), Is.Not.Null);
        Assert.That(target.GetModules().Select(m => m.Name), Does.Contain("ndis").And.Contain("fltMgr"));
    }

    [TestCase("win7", "Windows 7 SP1", 0x1478, 0x1b8)]
    [TestCase("2012r2", "Windows 8.1", 0xf20, 0x1e8)]
    public void Old_builds_take_ndis_from_the_project_table_and_say_fltmgr_has_no_source(string key, string label, int nextGlobalMiniport, int triageSize)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        TableOrIgnore();
        Assert.That(build.LayoutLabel, Is.EqualTo(label));
        var (ndis, ndisLabel) = NtSleuth.Lab.Scenarios.NdisFltmgrLayouts.Resolve("ndis", label);
        Assert.That(ndis.Source, Does.EndWith("ndis-layouts-7601-9600.json"));
        Assert.That(ndisLabel, Is.EqualTo(label));
        var mp = ndis.GetLayout("ndis", label, "_NDIS_MINIPORT_BLOCK", build.Isf)!;
        Assert.That(mp.GetField("NextGlobalMiniport").Offset, Is.EqualTo((ulong)nextGlobalMiniport));
        Assert.That(ndis.GetLayout("ndis", label, "_NDIS_GLOBAL_TRIAGE_BLOCK", build.Isf)!.Size, Is.EqualTo((ulong)triageSize));
        var (flt, fltLabel) = NtSleuth.Lab.Scenarios.NdisFltmgrLayouts.Resolve("fltmgr", label);
        Assert.That(fltLabel, Is.EqualTo("Windows 10 v1607"));
        Assert.That(flt.Source, Does.EndWith("ndis-fltmgr-layouts.json"));
        Assert.That(NtSleuth.Lab.Scenarios.NdisFltmgrLayouts.FallbackNote("fltmgr", label), Does.Contain("no public PDB-derived layout"));
        Assert.That(NtSleuth.Lab.Scenarios.NdisFltmgrLayouts.FallbackNote("ndis", label), Is.Null);
    }
}
