using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Forge;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;


/// <summary>
/// The real-dump tier: the real Windows 10 19041 triage dump opened in the real engine with a forged ntkrnlmp.pdb +
/// ntoskrnl.exe carrying that dump's identity. Every expected value is read from the .expected.json beside the dump
/// (and from the ISF for RVAs/offsets), not written here.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class RealDumpEngineTests
{
    private const string GuidAge = "5278AFF86C341677D7D7835C85B7B844-1";
    private string _dump = "", _sym = "";
    private JsonElement _exp;
    private JsonDocument? _expDoc;
    private IsfDocument _isf = null!;
    private TriageDumpDrivers _drivers = null!;
    private ForgeResult _nt = null!;
    private Dictionary<string, string> _out = new();
    private string _all = "";

    private static readonly string[] Commands =
    [
        "vertarget", ".bugcheck", "lm", "lm m nt", "!lmi nt", "x nt!PoolTrackTable", "dt nt!_KALPC_MESSAGE",
        "dt nt!_KPRCB @$prcb DpcWatchdogPeriod", "dt nt!_EPROCESS @$proc ImageFileName UniqueProcessId",
        "dx -r0 ((nt!_ETHREAD*)@$thread)->Cid.UniqueProcess", "dx -r0 ((nt!_ETHREAD*)@$thread)->Cid.UniqueThread",
        "dx -r0 ((nt!_KTHREAD*)@$thread)->State", "? nt!KdDebuggerDataBlock",
        "ld Wdf01000", "ld ndis", "lm m Wdf01000", "x Wdf01000!FxTimer::TimerHandler", "lm m ndis", "x ndis!ndisMiniportList",
        "dt ndis!_NDIS_MINIPORT_BLOCK NextGlobalMiniport State PnPDeviceState MiniportName",
    ];

    [OneTimeSetUp]
    public void ForgeAndRun()
    {
        _dump = Path.Combine(TestPaths.SharedDir, "realdata", "dumps", "kernel", "win10-19041-triage-0x1000007e.dmp");
        string expected = Path.ChangeExtension(_dump, null) + ".expected.json";
        if (!File.Exists(_dump) || !File.Exists(expected)) Assert.Ignore($"real dump not found at {_dump}");
        RealEngine.Require();
        var tools = ForgeTestEnv.Tools();
        _expDoc = JsonDocument.Parse(File.ReadAllBytes(expected));
        _exp = _expDoc.RootElement.EnumerateArray().First(e => e.GetProperty("file").GetString()!.Contains("triage_x64"));
        _isf = ForgeTestEnv.Isf(GuidAge);
        _drivers = TriageDumpDrivers.Read(_dump);
        // The identity: GUID/age of the matching symbol table, TimeDateStamp/SizeOfImage/CheckSum from the dump's driver list.
        var id = _drivers.KernelIdentity(ForgeIdentity.ParseStoreGuid(_isf.PdbGuid!), _isf.PdbAge);
        var forge = new SymbolForge(tools);
        _sym = ForgeTestEnv.TempCache("realdump-sym");
        // Beside nt: Wdf01000.sys (synthetic publics) and ndis.sys (the layout table's v2004 publics), each with the
        // identity the dump's driver list records for it, to show non-kernel modules load as well.
        var mods = forge.ForgeInto(_sym,
        [
            ForgeModules.Kernel(_isf, id),
            ForgeModules.Wdf01000(_drivers.DriverIdentity("Wdf01000.sys", ForgeModules.StableGuid("Wdf01000.pdb"))),
            .. LayoutModule("ndis", "ndis.sys"),
        ]);
        _nt = mods[0];
        var sw = Stopwatch.StartNew();
        (_out, _all) = RealEngine.Run(_dump, _sym, Commands);
        TestContext.Out.WriteLine($"forge {_nt.Elapsed.TotalSeconds:F2} s{(_nt.FromCache ? " (cache)" : "")}, engine {sw.Elapsed.TotalSeconds:F2} s");
    }

    private IEnumerable<ForgeModuleSpec> LayoutModule(string module, string image)
    {
        string layouts = Path.Combine(TestPaths.SharedDir, "realdata", "layouts", "ndis-fltmgr-layouts.json");
        if (!File.Exists(layouts)) yield break;
        yield return ForgeModules.FromLayoutsWithTypes(layouts, module, "Windows 10 v2004", _isf, out _, _drivers.DriverIdentity(image, ForgeModules.StableGuid(image, "realdump")));
    }

    [OneTimeTearDown]
    public void Cleanup()
    {
        _expDoc?.Dispose();
        ForgeTestEnv.Cleanup();
    }

    private string Out(string cmd) =>
        _out.TryGetValue(cmd, out var s) ? s : throw new AssertionException($"no output for '{cmd}'. Transcript:\n{_all[..Math.Min(_all.Length, 6000)]}");

    private static ulong Hex(JsonElement e) => Convert.ToUInt64(e.GetString()!.Replace("0x", ""), 16);
    private JsonElement Walk => _exp.GetProperty("isf_walk_with_" + GuidAge);

    [Test]
    public void VertargetShowsTheDumpsBuildAndProcessors()
    {
        string o = Out("vertarget");
        Assert.That(o, Does.Contain($"Kernel Version {_exp.GetProperty("MinorVersion(build)").GetInt32()} MP ({_exp.GetProperty("NumberProcessors").GetInt32()} procs)"));
        Assert.That(o, Does.Contain($"Kernel base = 0x{Fmt(Hex(Walk.GetProperty("ntoskrnl_base")))}"));
        Assert.That(o, Does.Contain($"PsLoadedModuleList = 0x{Fmt(Hex(_exp.GetProperty("PsLoadedModuleList")))}"));
    }

    [Test]
    public void BugcheckCodeAndParameters()
    {
        string o = Out(".bugcheck");
        Assert.That(o, Does.Contain($"Bugcheck code {Hex(_exp.GetProperty("BugCheckCode")):X8}"));
        foreach (var p in _exp.GetProperty("BugCheckParameters").EnumerateArray())
            Assert.That(o, Does.Contain(Fmt(Hex(p))));
    }

    [Test]
    public void NtLoadsTheForgedPdbAsPrivateSymbolsWithTheDumpsImageIdentity()
    {
        Assert.That(Out("lm m nt"), Does.Contain("(private pdb symbols)"));
        Assert.That(Out("lm m nt"), Does.Contain("ntkrnlmp.pdb"));
        string lmi = Out("!lmi nt");
        var nt = _drivers.Find("ntoskrnl.exe");
        Assert.That(lmi, Does.Match($@"Time Stamp:\s+{nt.TimeDateStamp:x}\b"));
        Assert.That(lmi, Does.Match($@"Size:\s+{nt.SizeOfImage:x}\b"));
        Assert.That(lmi, Does.Match($@"CheckSum:\s+{nt.CheckSum:x}\b"));
        Assert.That(lmi, Does.Contain("private symbols"));
    }

    [Test]
    public void ModuleListHasEveryDriver()
    {
        // One line per loaded module: "start end name ..."; the unloaded-module list that follows is not counted.
        string lm = Out("lm");
        int unloaded = lm.IndexOf("Unloaded modules:", StringComparison.Ordinal);
        var lines = (unloaded < 0 ? lm : lm[..unloaded]).Split('\n').Where(l => Regex.IsMatch(l, @"^[0-9a-f]{8}`[0-9a-f]{8} [0-9a-f]{8}`[0-9a-f]{8}\s+\S+")).ToList();
        Assert.That(lines, Has.Count.EqualTo(_exp.GetProperty("driver_count_parsed").GetInt32()), Out("lm"));
        foreach (var d in _exp.GetProperty("drivers").EnumerateArray().Take(20))
            Assert.That(lines, Has.Some.StartWith(Fmt(Hex(d.GetProperty("DllBase")))));
    }

    [Test]
    public void PublicsResolveAtTheirIsfRvas()
    {
        ulong ntBase = Hex(Walk.GetProperty("ntoskrnl_base"));
        Assert.That(Out("x nt!PoolTrackTable"), Does.Contain(Fmt(ntBase + _isf.GetSymbolRva("PoolTrackTable")) + " nt!PoolTrackTable"));
        Assert.That(Out("? nt!KdDebuggerDataBlock"), Does.Contain(Fmt(Hex(_exp.GetProperty("KdDebuggerDataBlock")))));
    }

    [Test]
    public void ForgedDriverModulesLoadBesideNt()
    {
        var wdf = _drivers.Find("Wdf01000.sys");
        Assert.That(Out("lm m Wdf01000"), Does.Contain("(private pdb symbols)"));
        // The decorated public undecorates to FxTimer::TimerHandler at its RVA.
        Assert.That(Out("x Wdf01000!FxTimer::TimerHandler"), Does.Contain(Fmt(wdf.DllBase + 0x1000)));
        string layouts = Path.Combine(TestPaths.SharedDir, "realdata", "layouts", "ndis-fltmgr-layouts.json");
        if (!File.Exists(layouts)) return;
        var ndis = _drivers.Find("ndis.sys");
        var spec = ForgeModules.FromLayouts(layouts, "ndis", "Windows 10 v2004");
        Assert.That(Out("lm m ndis"), Does.Contain("(private pdb symbols)"));
        Assert.That(Out("x ndis!ndisMiniportList"), Does.Contain(Fmt(ndis.DllBase + spec.Publics["ndisMiniportList"]) + " ndis!ndisMiniportList"));
        // ndis types from the layout table (v2004 column), read straight from the JSON for the expectation.
        using var doc = JsonDocument.Parse(File.ReadAllBytes(layouts));
        var mb = doc.RootElement.GetProperty("modules").GetProperty("ndis").GetProperty("types").GetProperty("_NDIS_MINIPORT_BLOCK").GetProperty("fields");
        string dt = Out("dt ndis!_NDIS_MINIPORT_BLOCK NextGlobalMiniport State PnPDeviceState MiniportName");
        foreach (var f in new[] { "NextGlobalMiniport", "State", "PnPDeviceState", "MiniportName" })
            Assert.That(dt, Does.Match($@"\+0x{mb.GetProperty(f).GetProperty("offset").GetProperty("Windows 10 v2004").GetInt32():x3} {f}\s+:"), dt);
    }

    /// <summary>Our own target (DbgEngTarget) on the real dump: the extension reads the triage PRCB through it.</summary>
    [Test]
    public void OurTargetReadsTheRealDump()
    {
        var run = RealEngine.Run(_dump, [".load " + ExtensionPackage.DllWinPath(), "!help -diag", "!dpcblame", "!dpcblame -json"],
            new EngineOptions { SymbolPath = _sym, Plain = true, TimeoutSeconds = 600 });
        string diag = run["!help -diag"].Output;
        TestContext.Out.WriteLine(diag);
        Assert.That(diag, Does.Contain($"build {_exp.GetProperty("MinorVersion(build)").GetInt32()}"), diag);
        string text = run["!dpcblame"].Output;
        TestContext.Out.WriteLine(text);
        Assert.That(text, Does.Contain("1000007E").IgnoreCase, "the bugcheck is read through our target");
        // The event CPU's PRCB is in the triage dump: its watchdog period must come out as the .expected.json says.
        int period = Walk.GetProperty("KPRCB.DpcWatchdogPeriod").GetInt32();
        var cpu0Watchdog = text[text.IndexOf("CPU 0 ", StringComparison.Ordinal)..].Split('\n').First(l => l.Contains("watchdog:"));
        Assert.That(cpu0Watchdog, Does.Contain($"DpcWatchdogPeriod 0x{period:x}"), text);
        using var json = JsonDocument.Parse(run["!dpcblame -json"].Output);
        Assert.That(json.RootElement.GetRawText(), Does.Contain(period.ToString()));
    }

    [Test]
    public void TypesComeOutAtTheirIsfOffsets()
    {
        string o = Out("dt nt!_KALPC_MESSAGE");
        foreach (var f in _isf.GetUserType("_KALPC_MESSAGE").Fields.Where(f => f.Type.Kind != "bitfield"))
            Assert.That(o, Does.Match($@"\+0x{f.Offset:x3} {Regex.Escape(f.Name)}\s+:"), $"_KALPC_MESSAGE.{f.Name}");
    }

    [Test]
    public void RealProcessThreadAndPrcbFieldsReadThroughForgedTypes()
    {
        var walk = Walk;
        string proc = Out("dt nt!_EPROCESS @$proc ImageFileName UniqueProcessId");
        Assert.That(proc, Does.Contain($"\"{walk.GetProperty("EPROCESS.ImageFileName").GetString()}\""));
        Assert.That(proc, Does.Match($@"UniqueProcessId : 0x0*{Hex(walk.GetProperty("EPROCESS.UniqueProcessId")):x}\b").Or.Match($@"UniqueProcessId : 0x00000000`0*{Hex(walk.GetProperty("EPROCESS.UniqueProcessId")):x}\b"));
        var cid = walk.GetProperty("ETHREAD.Cid").EnumerateArray().Select(Hex).ToArray();
        Assert.That(Out("dx -r0 ((nt!_ETHREAD*)@$thread)->Cid.UniqueProcess"), Does.Match($@": 0x{cid[0]:x}\b"));
        Assert.That(Out("dx -r0 ((nt!_ETHREAD*)@$thread)->Cid.UniqueThread"), Does.Match($@": 0x{cid[1]:x}\b"));
        Assert.That(Out("dx -r0 ((nt!_KTHREAD*)@$thread)->State"), Does.Match($@": 0x{walk.GetProperty("KTHREAD.State").GetInt32():x}\b"));
        Assert.That(Out("dt nt!_KPRCB @$prcb DpcWatchdogPeriod"),
            Does.Contain($"+0x{_isf.GetUserType("_KPRCB").Fields.First(f => f.Name == "DpcWatchdogPeriod").Offset:x} DpcWatchdogPeriod : 0n{walk.GetProperty("KPRCB.DpcWatchdogPeriod").GetInt32()}"));
    }

    /// <summary>
    /// The engine's check is real: the right image with a PDB whose GUID differs from the image's CodeView record is not
    /// loaded. (A triage dump holds no ntoskrnl CodeView record, so the engine matches the image by TimeDateStamp +
    /// SizeOfImage from the driver list and then the PDB against the image's RSDS GUID/age.)
    /// </summary>
    [Test]
    public void APdbWhoseGuidDiffersFromTheImageIsRefused()
    {
        var tools = ForgeTestEnv.Tools();
        var id = _drivers.KernelIdentity(ForgeModules.StableGuid("not-the-dump"), 1);
        var wrong = new SymbolForge(tools).Forge(ForgeModules.Kernel(_isf, id));
        string sym = ForgeTestEnv.TempCache("realdump-wrong");
        File.Copy(_nt.ImagePath, Path.Combine(sym, _nt.ImageName));
        File.Copy(wrong.PdbPath, Path.Combine(sym, wrong.PdbName));
        var (o, all) = RealEngine.Run(_dump, sym, ["lm m nt", "!lmi nt"]);
        TestContext.Out.WriteLine(o["!lmi nt"]);
        Assert.That(o["lm m nt"], Does.Not.Contain("private pdb symbols"), all);
    }

    /// <summary>
    /// An image whose TimeDateStamp is not the driver list's is not used for the dump's nt: the engine falls back to an
    /// image without debug directories ("Image Type: MEMORY"), so it never learns the PDB name/GUID and loads no symbols.
    /// </summary>
    [Test]
    public void AnImageWithAnotherTimeDateStampIsNotUsed()
    {
        var tools = ForgeTestEnv.Tools();
        var id = _drivers.KernelIdentity(ForgeIdentity.ParseStoreGuid(_isf.PdbGuid!), _isf.PdbAge) with { TimeDateStamp = 0x12345678 };
        var wrong = new SymbolForge(tools).Forge(ForgeModules.Kernel(_isf, id));
        string sym = ForgeTestEnv.TempCache("realdump-wrongts");
        wrong.CopyToFlat(sym);
        var (o, all) = RealEngine.Run(_dump, sym, ["lm m nt", "!lmi nt"]);
        TestContext.Out.WriteLine(o["lm m nt"] + o["!lmi nt"]);
        Assert.That(o["lm m nt"], Does.Not.Contain("private pdb symbols"), all);
        Assert.That(o["!lmi nt"], Does.Contain("no symbols loaded"), all);
    }

    private static string Fmt(ulong v) => $"{v >> 32:x8}`{v & 0xffffffff:x8}";
}
