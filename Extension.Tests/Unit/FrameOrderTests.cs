using NtSleuth.Lab.Target;
using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.FrameOrder;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

public class FrameOrderTests
{
    private static string Layouts()
    {
        var p = SharedData.LayoutsFile;
        if (p is null) Assert.Ignore("../shared/realdata/layouts/ndis-fltmgr-layouts.json is absent: fltmgr scenarios need the layout table");
        if (SharedData.NtIsfDirectory is null) Assert.Ignore("../shared/realdata/isf/ntkrnlmp.pdb is absent: fltmgr scenarios need the nt symbol tables");
        return p!;
    }

    private static (FrameOrderReport rep, ReadStats stats) Analyze(FltmgrScenario sc, string? volume = null, string? legacy = null)
    {
        var stats = new ReadStats();
        var reader = new KernelReader(sc.Target, stats);
        var rep = new FrameOrderAnalyzer(reader, volume, FrameOrderAnalyzer.ParseLegacy(legacy), new RegistryGroupSource(reader)).Analyze();
        return (rep, stats);
    }

    private static (int rc, BufferSink sink) Run(ITarget t, string args, bool dml = false)
    {
        var sink = new BufferSink(dml);
        return (CommandDispatcher.Run("frameorder", args, t, sink), sink);
    }

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    public void SeedBrokenStackReportsDisorderAndFix(string label)
    {
        var sc = FltmgrScenario.SeedBroken(Layouts(), label);
        var (rep, stats) = Analyze(sc, legacy: "EncryptionLegacy=149998.99");
        TestContext.Out.WriteLine($"{label} broken: {stats}");
        Assert.That(rep.Frames.Select(f => (f.Id, f.Low, f.High)), Is.EqualTo(new[] { (0u, "0", "329998.99") }));
        Assert.That(rep.Volumes, Has.Count.EqualTo(3));
        var c = rep.Volumes[0];
        Assert.That(c.Name, Is.EqualTo(@"\Device\HarddiskVolume1"));
        Assert.That(c.Stack.Select(s => s.Kind), Is.EqualTo(new[] { StackItemKind.FileSystem, StackItemKind.Frame, StackItemKind.Legacy, StackItemKind.Legacy }));
        Assert.That(c.Stack[0].DriverName, Is.EqualTo(@"\FileSystem\Ntfs"));
        Assert.That(c.Stack[1].Minifilters.Select(m => (m.Name, m.Altitude)), Is.EqualTo(new[] { ("FileInfo", "45000"), ("luafv", "135000"), ("AVMiniFilter", "328000") }));
        Assert.That(c.Stack[2].Name, Is.EqualTo("EncryptionLegacy"));
        Assert.That(c.Stack[2].Altitude, Is.EqualTo("149998.99"));
        Assert.That(c.Stack[3].Name, Is.EqualTo("AVLegacy"));
        Assert.That(c.Stack[3].Altitude, Is.EqualTo("329998.99"));
        Assert.That(c.Stack[2].AltitudeSource, Is.EqualTo("-legacy"));
        Assert.That(c.Stack[3].AltitudeSource, Is.EqualTo("group \"FSFilter Anti-Virus\" in fltmgr's legacy altitude table"));
        Assert.That(c.Stack.Select(s => s.Device), Is.EqualTo(sc.Stacks[0]));
        var d = rep.Disorders.Where(x => x.Volume == c.Name).ToList();
        Assert.That(d.Select(x => x.Message), Is.EqualTo(new[] { "AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O" }));
        Assert.That(d[0].Fix, Does.Contain("\"FSFilter Compression\" (160000-169999)"));
        Assert.That(d[0].Fix, Does.Contain("SERVICE_BOOT_START"));
        Assert.That(d[0].Fix, Does.Contain("before AVLegacy (FSFilter Anti-Virus)"));
        Assert.That(rep.Clean, Is.False);
        // fltmc table.
        Assert.That(rep.Fltmc.Select(r => (r.Name, r.Instances, r.Altitude, r.Frame)), Is.EqualTo(new (string, int?, string, string)[]
        {
            ("AVLegacy", null, "329998.99", "<Legacy>"), ("EncryptionLegacy", null, "149998.99", "<Legacy>"),
            ("AVMiniFilter", 3, "328000", "0"), ("luafv", 1, "135000", "0"), ("FileInfo", 3, "45000", "0"),
        }));
        // Speed: <= 3 round trips per object.
        int objects = rep.Frames.Count + rep.Filters.Count + rep.Filters.Sum(f => f.Instances.Count) + rep.Volumes.Count + rep.Volumes.Sum(v => v.Stack.Count);
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(3 * objects));
    }

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    [TestCase(NdisFltmgrLayouts.Win11)]
    public void SeedBrokenStackWithoutHintsIsReportedFromTheDumpAlone(string label)
    {
        // As fltmgr computes it: EncryptionLegacy's service -> Group "FSFilter Encryption" in the SYSTEM hive in memory ->
        // fltmgr!LegacyFilterAltitdudeMap -> 149998.99. No -legacy.
        var sc = FltmgrScenario.SeedBroken(Layouts(), label);
        var (rep, stats) = Analyze(sc);
        TestContext.Out.WriteLine($"{label} broken, no hints: {stats}");
        var enc = rep.Volumes[0].Stack[2];
        Assert.That((enc.Name, enc.Service, enc.LoadOrderGroup, enc.Altitude), Is.EqualTo(("EncryptionLegacy", "EncryptionLegacy", "FSFilter Encryption", "149998.99")));
        Assert.That(enc.AltitudeSource, Is.EqualTo("group \"FSFilter Encryption\" in fltmgr's legacy altitude table"));
        var av = rep.Volumes[0].Stack[3];
        Assert.That((av.LoadOrderGroup, av.Altitude), Is.EqualTo(("FSFilter Anti-Virus", "329998.99")));
        Assert.That(rep.Disorders.Where(x => x.Volume == rep.Volumes[0].Name).Select(x => x.Message),
            Is.EqualTo(new[] { "AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O" }));
        Assert.That(rep.Disorders[0].Fix, Does.Contain("\"FSFilter Compression\" (160000-169999)").And.Contain("before AVLegacy (FSFilter Anti-Virus)"));
        Assert.That(rep.Notes, Is.Empty, string.Join("\n", rep.Notes));
        Assert.That(rep.Fltmc.Take(2).Select(r => (r.Name, r.Altitude, r.Frame)), Is.EqualTo(new[] { ("AVLegacy", "329998.99", "<Legacy>"), ("EncryptionLegacy", "149998.99", "<Legacy>") }));
        int objects = rep.Frames.Count + rep.Filters.Count + rep.Filters.Sum(f => f.Instances.Count) + rep.Volumes.Count + rep.Volumes.Sum(v => v.Stack.Count);
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(3 * objects), "the registry and the table must fit the per-object budget");
    }

    [Test]
    public void BrokenStackWithoutTheSystemHiveSaysWhatIsMissing()
    {
        var sc = FltmgrScenario.Build(Layouts(), FltmgrScenario.BrokenSpec(NdisFltmgrLayouts.V20H2) with { SystemHive = false });
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Volumes[0].Stack[2].Altitude, Is.Null);
        Assert.That(rep.Notes.Any(n => n.Contains("-legacy EncryptionLegacy=<altitude>")), Is.True, string.Join("\n", rep.Notes));
        Assert.That(rep.Notes, Has.Some.StartsWith("the SYSTEM hive is not loaded or not readable"));
        Assert.That(rep.Notes.Any(n => n.Contains("load-order group")), Is.True);
        Assert.That(rep.Disorders, Is.Empty);
    }

    [Test]
    public void HiveInTheRegistryProcessIsReadThroughItsAddressSpace()
    {
        var sc = FltmgrScenario.Build(Layouts(), FltmgrScenario.BrokenSpec(NdisFltmgrLayouts.V20H2) with { HiveInRegistryProcess = true });
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Volumes[0].Stack[2].Altitude, Is.EqualTo("149998.99"));
        Assert.That(rep.Disorders, Is.Not.Empty);
    }

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    public void FixedStackIsClean(string label)
    {
        var sc = FltmgrScenario.SeedFixed(Layouts(), label);
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Frames.Select(f => (f.Id, f.Low, f.High)), Is.EqualTo(new[] { (0u, "0", "149998.99"), (1u, "149998.99", "329998.99") }));
        var c = rep.Volumes[0];
        Assert.That(c.Stack.Select(s => s.Kind), Is.EqualTo(new[] { StackItemKind.FileSystem, StackItemKind.Frame, StackItemKind.Legacy, StackItemKind.Frame, StackItemKind.Legacy }));
        Assert.That(c.Stack[2].Altitude, Is.EqualTo("149998.99"));
        Assert.That(c.Stack[2].AltitudeSource, Is.EqualTo("group \"FSFilter Encryption\" in fltmgr's legacy altitude table"));
        Assert.That(c.Stack[3].Minifilters.Select(m => m.Name), Is.EqualTo(new[] { "NullFilter", "AVMiniFilter" }));
        Assert.That(c.Stack[4].Altitude, Is.EqualTo("329998.99"));
        Assert.That(rep.Disorders, Is.Empty);
        Assert.That(rep.Clean, Is.True);
        Assert.That(rep.Notes, Is.Empty);
        var (rc, sink) = Run(sc.Target, "-text");
        Assert.That(rc, Is.Zero);
        Assert.That(sink.Text, Does.Contain("Altitude order: clean"));
        Assert.That(sink.Text, Does.Contain("NullFilter                                  3        160030      1"));
    }

    [Test]
    public void FrameBoundariesGiveAltitudesWhenTheRegistryCannot()
    {
        var fixedSc = FltmgrScenario.Build(Layouts(), FltmgrScenario.FixedSpec(NdisFltmgrLayouts.V20H2) with { SystemHive = false });
        var (rep, _) = Analyze(fixedSc);
        var st = rep.Volumes[0].Stack;
        Assert.That((st[2].Altitude, st[2].AltitudeSource), Is.EqualTo(("149998.99", "low end of frame 1")));
        Assert.That((st[4].Altitude, st[4].AltitudeSource), Is.EqualTo(("329998.99", "high end of frame 1")));
        Assert.That(rep.Clean, Is.True);
        Assert.That(rep.Notes, Is.Empty, "every altitude was derived: no note");
        var broken = FltmgrScenario.Build(Layouts(), FltmgrScenario.BrokenSpec(NdisFltmgrLayouts.V20H2) with { SystemHive = false });
        var (rep2, _) = Analyze(broken);
        Assert.That((rep2.Volumes[0].Stack[3].Altitude, rep2.Volumes[0].Stack[3].AltitudeSource), Is.EqualTo(("329998.99", "high end of frame 0")));
    }

    [Test]
    public void StackWithoutLegacyFiltersIsClean()
    {
        var sc = FltmgrScenario.NoLegacy(Layouts());
        var (rep, _) = Analyze(sc);
        Assert.That(rep.Volumes, Has.Count.EqualTo(2));
        Assert.That(rep.Volumes.All(v => v.Stack.Count == 2 && v.Stack[1].Kind == StackItemKind.Frame), Is.True);
        Assert.That(rep.Clean, Is.True);
        Assert.That(rep.Fltmc.All(r => r.Frame == "0"), Is.True);
    }

    [Test]
    public void ThirtyVolumesAndTwentyFiltersUnderAThousandRoundTrips()
    {
        var sc = FltmgrScenario.NoLegacy(Layouts(), volumes: 30, extraFilters: 17);
        var (rep, stats) = Analyze(sc);
        TestContext.Out.WriteLine($"30 volumes / 20 filters: {stats}");
        Assert.That(rep.Volumes, Has.Count.EqualTo(30));
        Assert.That(rep.Filters, Has.Count.EqualTo(20));
        Assert.That(stats.RoundTrips, Is.LessThan(1000));
    }

    [Test]
    public void VolumeFilterAndRendering()
    {
        var sc = FltmgrScenario.SeedBroken(Layouts());
        var (rep, _) = Analyze(sc, volume: "HarddiskVolume2", legacy: "EncryptionLegacy=149998.99");
        Assert.That(rep.Volumes.Select(v => v.Name), Is.EqualTo(new[] { @"\Device\HarddiskVolume2" }));
        var (rep2, _) = Analyze(sc, volume: $"{sc.FrameZeroVolumes[2]:x}");
        Assert.That(rep2.Volumes.Select(v => v.Name), Is.EqualTo(new[] { @"\Device\HarddiskVolume3" }));

        var (rc, dml) = Run(sc.Target, "-dml -legacy EncryptionLegacy=149998.99");
        Assert.That(rc, Is.Zero, dml.All);
        Assert.That(dml.Text, Does.Contain($"<exec cmd=\"!fltkd.frame {sc.FrameAddresses[0]:x}\">"));
        Assert.That(dml.Text, Does.Contain($"<exec cmd=\"dt fltmgr!_FLTP_FRAME {sc.FrameAddresses[0]:x}\">"));
        Assert.That(dml.Text, Does.Contain($"<exec cmd=\"!fltkd.filter {sc.FilterAddresses["AVMiniFilter"]:x}\">AVMiniFilter</exec>"));
        Assert.That(dml.Text, Does.Contain($"<exec cmd=\"!devobj {sc.Stacks[0][2]:x}\">"));
        Assert.That(dml.Text, Does.Contain("<exec cmd=\"!drvobj "));
        Assert.That(dml.Text, Does.Contain("<b>AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O</b>"));

        var (_, json) = Run(sc.Target, "-json -legacy EncryptionLegacy=149998.99");
        using var doc = JsonDocument.Parse(json.Text);
        Assert.That(doc.RootElement.GetProperty("disorders").GetArrayLength(), Is.EqualTo(3));
        Assert.That(doc.RootElement.GetProperty("frames")[0].GetProperty("address").GetString(), Is.EqualTo($"0x{sc.FrameAddresses[0]:x}"));

        var (rc3, bad) = Run(sc.Target, "-legacy EncryptionLegacy");
        Assert.That(rc3, Is.Not.Zero);
        Assert.That(bad.All, Does.Contain("Usage: !frameorder"));
    }

    [Test]
    public void DamagedStacksAreFlaggedOthersShown()
    {
        var sc = FltmgrScenario.SeedBroken(Layouts());
        // Volume 2's frame device points up to a device that is not in the dump; volume 3's AttachedDevice chain made cyclic.
        ulong attached = sc.Target.Symbols.GetTypeLayout("nt", "_DEVICE_OBJECT")!.GetField("AttachedDevice").Offset;
        sc.Memory.WriteU64(sc.Stacks[1][1] + attached, 0xffffe000_dead0000);
        sc.Memory.WriteU64(sc.Stacks[2][3] + attached, sc.Stacks[2][1]);
        var (rep, _) = Analyze(sc, legacy: "EncryptionLegacy=149998.99");
        Assert.That(rep.Volumes, Has.Count.EqualTo(3));
        Assert.That(rep.Volumes[0].Problem, Is.Null);
        Assert.That(rep.Volumes[1].Problem, Does.Contain("not readable"));
        Assert.That(rep.Volumes[2].Problem, Does.Contain("cycle"));
        Assert.That(rep.Volumes[2].Stack, Has.Count.LessThanOrEqualTo(FrameOrderAnalyzer.MaxStack));
        Assert.That(rep.Disorders.Any(d => d.Volume == @"\Device\HarddiskVolume1"), Is.True);
    }

    [TestCase("2016", "", false)]
    [TestCase("win10", "", false)]
    [TestCase("win10", "fixed", true)]
    [TestCase("win11", "no-legacy", true)]
    public void CatalogScenarioOnLabKernels(string build, string variant, bool clean)
    {
        Layouts();
        var lb = LabBuilds.TryGet(build);
        if (lb is null) Assert.Ignore($"lab build {build} unavailable: {LabBuilds.UnavailableReason}");
        var r = ScenarioCatalog.Build("fltmgr-frame-order", lb!, new ScenarioOptions { Variant = variant });
        var sink = new BufferSink();
        var cmd = r.Commands.Single();
        int rc = CommandDispatcher.Run("frameorder", cmd["!frameorder".Length..] + " -json", r.CreateTarget(), sink);
        Assert.That(rc, Is.Zero, sink.All);
        using var doc = JsonDocument.Parse(sink.Text);
        Assert.That(doc.RootElement.GetProperty("clean").GetBoolean(), Is.EqualTo(clean));
        if (!clean)
            Assert.That(doc.RootElement.GetProperty("disorders")[0].GetProperty("message").GetString(),
                Is.EqualTo("AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O"));
    }

    [Test]
    public void FltmgrNotLoadedOrNoSymbols()
    {
        var none = new InMemoryTarget(new SparseMemory(), new IsfSymbolProvider(), new TargetInfo(), Array.Empty<ModuleInfo>());
        var (rc, sink) = Run(none, "");
        Assert.That(rc, Is.Zero);
        Assert.That(sink.Errors, Does.Contain("fltmgr.sys is not loaded"));
        var loaded = new InMemoryTarget(new SparseMemory(), new IsfSymbolProvider(), new TargetInfo(), new[] { new ModuleInfo("fltmgr", 0xfffff880_01000000, 0x80000) });
        var (rc2, sink2) = Run(loaded, "");
        Assert.That(rc2, Is.Not.Zero);
        Assert.That(sink2.Errors, Does.Contain("fltmgr!FltGlobals"));
        Assert.That(sink2.Errors, Does.Contain(".reload"));
    }

    /// <summary>
    /// Ctrl+Break at every read of the seed's !frameorder (which reads the SYSTEM hive in memory for the legacy filters'
    /// groups): every note the interrupted run prints is the interrupt, never a missing type, key or unreadable cell
    /// (issue 20: the registry reader turned the engine's refused lookups into "type nt!_CM_KEY_NODE is not in the symbols").
    /// </summary>
    [Test]
    public void CtrlBreakAnywhereIsReportedAsTheInterruptNeverAsAMissingTypeOrKey()
    {
        var sc = FltmgrScenario.SeedBroken(Layouts(), NdisFltmgrLayouts.V20H2);
        sc.Target.ResetCounters();
        Analyze(sc);
        long reads = sc.Target.ReadCalls;
        int inRegistry = 0;
        for (long n = 1; n <= reads; n++)
        {
            sc.Target.ResetCounters();
            sc.Target.InterruptAfterReads = n;
            var (rep, _) = Analyze(sc);
            Assert.That(rep.Notes.Where(x => !x.Contains("interrupted by user", StringComparison.Ordinal)
                    && !x.StartsWith("some legacy filter altitudes are unknown", StringComparison.Ordinal)
                    && !x.Contains("is a legacy filter of unknown altitude", StringComparison.Ordinal)), Is.Empty,
                $"interrupt after {n} of {reads} reads:\n" + string.Join("\n", rep.Notes));
            if (rep.Notes.Any(x => x.Contains("while reading the registry", StringComparison.Ordinal))) { inRegistry++; Assert.That(rep.Interrupted, Is.True); }
        }
        sc.Target.InterruptAfterReads = null;
        TestContext.Out.WriteLine($"{reads} reads; the interrupt landed in the registry {inRegistry} time(s)");
        Assert.That(inRegistry, Is.GreaterThan(0), "no interrupt point fell in the registry reads");
    }

    /// <summary>
    /// The engine swallows a Ctrl+Break and fails the type lookup it was running (GetInterrupt never reports it; the
    /// engine has the type when asked again): the registry reader reports the interrupt, not a missing type, and the
    /// command's symbol answers are distrusted (not kept for the session). A type the engine really lacks stays a
    /// precise note, and is distrusted too (the next command asks again).
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public void TypeLookupTheEngineAbortedIsTheInterruptAndIsNotCached(bool engineHasItNow)
    {
        var sc = FltmgrScenario.SeedBroken(Layouts(), NdisFltmgrLayouts.V20H2);
        var t = new TypeLookupFails(sc.Target, "_CM_KEY_NODE", engineHasItNow);
        var (rc, sink) = Run(t, "");
        TestContext.Out.WriteLine(sink.All);
        Assert.That(rc, Is.Zero, sink.All);
        Assert.That(t.Distrusted, Is.GreaterThan(0), "the session cache must not keep what this command learnt");
        if (engineHasItNow)
        {
            Assert.That(sink.Text, Does.Contain("interrupted by user (Ctrl+Break) while reading the registry: the engine aborted the lookup of type nt!_CM_KEY_NODE"));
            Assert.That(sink.Text, Does.Not.Contain("is not in the symbols"));
        }
        else Assert.That(sink.Text, Does.Contain("type nt!_CM_KEY_NODE is not in the symbols"));
    }

    /// <summary>The scenario's target with one nt type refused (as the engine does for a lookup it aborted).</summary>
    private sealed class TypeLookupFails(InMemoryTarget inner, string type, bool engineHasItNow) : ITarget, ISymbolProvider
    {
        public int Distrusted;
        public TargetInfo Info => inner.Info;
        public void DistrustSymbolAnswers() => Distrusted++;
        public bool EngineHasItNow(string what) => engineHasItNow && what == $"type nt!{type}";
        public int ReadVirtual(ulong address, Span<byte> buffer) => inner.ReadVirtual(address, buffer);
        public ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern) => inner.SearchVirtual(start, length, pattern);
        public ISymbolProvider Symbols => this;
        public IReadOnlyList<ModuleInfo> GetModules() => inner.GetModules();
        public bool TryEvaluate(string expression, out ulong value, out string? error) => inner.TryEvaluate(expression, out value, out error);
        public IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames) => inner.GetCurrentStack(maxFrames);
        public bool IsInterruptRequested => false;
        public int ReadProcessVirtual(ulong process, ulong address, Span<byte> buffer) => ((ITarget)inner).ReadProcessVirtual(process, address, buffer);
        public ulong? GetSymbolAddress(string qualifiedName) => inner.Symbols.GetSymbolAddress(qualifiedName);
        public string? GetNameByAddress(ulong address, out ulong displacement) => inner.Symbols.GetNameByAddress(address, out displacement);
        public NtSleuth.Commands.Symbols.TypeLayout? GetTypeLayout(string module, string typeName) =>
            module == "nt" && typeName == type ? null : inner.Symbols.GetTypeLayout(module, typeName);
        public bool HasSymbols(string module) => inner.Symbols.HasSymbols(module);
    }

    /// <summary>A group source from a dictionary: the chain's logic apart from where groups come from (the registry).</summary>
    private sealed class Groups(Dictionary<string, string> d) : ILoadOrderGroupSource
    {
        public string? GroupOf(string service, out string? whyNot)
        {
            whyNot = d.ContainsKey(service) ? null : $"no Group value for service {service}";
            return d.GetValueOrDefault(service);
        }
    }

    private static FrameOrderReport AnalyzeWithGroups(FltmgrScenario sc, ILoadOrderGroupSource groups, string? legacy = null) =>
        new FrameOrderAnalyzer(new KernelReader(sc.Target), null, FrameOrderAnalyzer.ParseLegacy(legacy), groups).Analyze();

    [TestCase(NdisFltmgrLayouts.V20H2)]
    [TestCase(NdisFltmgrLayouts.V1607)]
    [TestCase(NdisFltmgrLayouts.Win11)]
    public void LegacyAltitudeMapIsReadFromFltmgr(string label)
    {
        var sc = FltmgrScenario.SeedBroken(Layouts(), label);
        var stats = new ReadStats();
        var map = LegacyAltitudeMap.Read(new KernelReader(sc.Target, stats));
        Assert.That(map.Problem, Is.Null);
        Assert.That(map.Entries, Has.Count.EqualTo(LoadOrderGroups.All.Count));
        Assert.That(map.Entries["FSFilter Encryption"], Is.EqualTo("149998.99"));
        Assert.That(map.Entries["fsfilter anti-virus"], Is.EqualTo("329998.99"));
        Assert.That(stats.RoundTrips, Is.LessThanOrEqualTo(3), stats.ToString());
    }

    [Test]
    public void SeedBrokenStackWithoutHintsTakesTheAltitudeFromFltmgrsTable()
    {
        // The table differs from the documented ranges on purpose: the altitude must come from the target's table.
        var spec = FltmgrScenario.BrokenSpec(NdisFltmgrLayouts.V20H2) with
        {
            AltitudeMap = new[] { ("FSFilter Anti-Virus", "329998.99"), ("FSFilter Encryption", "141234.5"), ("FSFilter Bottom", "49998.99") },
        };
        var sc = FltmgrScenario.Build(Layouts(), spec);
        var rep = AnalyzeWithGroups(sc, new Groups(FltmgrScenario.SeedLegacyGroups()));
        var enc = rep.Volumes[0].Stack[2];
        Assert.That((enc.Name, enc.Service, enc.LoadOrderGroup), Is.EqualTo(("EncryptionLegacy", "EncryptionLegacy", "FSFilter Encryption")));
        Assert.That(enc.Altitude, Is.EqualTo("141234.5"));
        Assert.That(enc.AltitudeSource, Is.EqualTo("group \"FSFilter Encryption\" in fltmgr's legacy altitude table"));
        Assert.That(rep.Volumes[0].Stack[3].Altitude, Is.EqualTo("329998.99"));
        Assert.That(rep.LegacyAltitudes, Has.Count.EqualTo(3));
        Assert.That(rep.Disorders.Where(d => d.Volume == rep.Volumes[0].Name).Select(d => d.Message),
            Is.EqualTo(new[] { "AVMiniFilter (328000, frame 0) is below EncryptionLegacy (141234.5): it sees encrypted I/O" }));
        Assert.That(rep.Disorders[0].Fix, Does.Contain("it loads after EncryptionLegacy (FSFilter Encryption) and before AVLegacy (FSFilter Anti-Virus)"));
        Assert.That(rep.Notes, Is.Empty, string.Join("\n", rep.Notes));
        var text = FrameOrderRenderer.Render(rep).Render(OutputMode.Text);
        Assert.That(text, Does.Contain("altitude 141234.5 (group \"FSFilter Encryption\" in fltmgr's legacy altitude table)"));
    }

    [Test]
    public void UnrecognisedTableFallsBackToTheDocumentedRangeAndSaysSo()
    {
        var spec = FltmgrScenario.BrokenSpec(NdisFltmgrLayouts.V20H2) with { AltitudeMap = null };
        var sc = FltmgrScenario.Build(Layouts(), spec);
        var rep = AnalyzeWithGroups(sc, new Groups(FltmgrScenario.SeedLegacyGroups()));
        var enc = rep.Volumes[0].Stack[2];
        Assert.That(enc.Altitude, Is.EqualTo("149998.99"));
        Assert.That(enc.AltitudeSource, Is.EqualTo("group \"FSFilter Encryption\" (140000-149999), documented range"));
        // AVLegacy: the frame boundary (read from the target) is preferred to the documented range.
        Assert.That(rep.Volumes[0].Stack[3].AltitudeSource, Is.EqualTo("high end of frame 0"));
        Assert.That(rep.Notes.Single(), Does.Contain("LegacyFilterAltitdudeMap").And.Contain("documented load-order group ranges"));
        Assert.That(rep.Disorders.Count(d => d.Volume == rep.Volumes[0].Name), Is.EqualTo(1));
    }

    [Test]
    public void UnknownGroupAndUnreadableGroupAreNamed()
    {
        var sc = FltmgrScenario.SeedBroken(Layouts());
        var rep = AnalyzeWithGroups(sc, new Groups(new() { ["EncryptionLegacy"] = "Vendor Special Group" }));
        Assert.That(rep.Volumes[0].Stack[2].Altitude, Is.Null);
        Assert.That(rep.Notes, Has.Some.Contains("\"Vendor Special Group\" is neither in fltmgr's legacy altitude table nor a documented"));
        var rep2 = AnalyzeWithGroups(sc, new Groups(new()));
        Assert.That(rep2.Notes, Has.Some.EqualTo("no Group value for service EncryptionLegacy"));
        Assert.That(rep2.Notes, Has.Some.Contains("-legacy Name=altitude"));
        Assert.That(rep2.Volumes[0].Stack[3].AltitudeSource, Is.EqualTo("high end of frame 0"));
    }

    [Test]
    public void TableThatDisagreesWithTheFramesIsNoted()
    {
        var spec = FltmgrScenario.FixedSpec(NdisFltmgrLayouts.V20H2) with { AltitudeMap = new[] { ("FSFilter Encryption", "145000"), ("FSFilter Anti-Virus", "329998.99") } };
        var rep = AnalyzeWithGroups(FltmgrScenario.Build(Layouts(), spec), new Groups(FltmgrScenario.SeedLegacyGroups()));
        Assert.That(rep.Volumes[0].Stack[2].Altitude, Is.EqualTo("145000"));
        Assert.That(rep.Notes, Has.Some.Contains("EncryptionLegacy altitude 145000").And.Contains("low end of frame 1 is 149998.99"));
    }

    /// <summary>Seed 004 on its own OS (7601): the broken stack as fltmc showed it there, and the NullFilter fix.</summary>
    [Test]
    public void SeedOnWindows7ReproducesTheBrokenStackAndItsFix()
    {
        var build = LabBuilds.TryGet("win7");
        if (build is null) Assert.Ignore($"lab build win7 unavailable: {LabBuilds.UnavailableReason}");
        var sc = ScenarioCatalog.Get("fltmgr-frame-order");
        if (!sc.Supports(build!)) Assert.Ignore("no fltmgr layouts for win7");
        var broken = sc.Build(build!, ScenarioOptions.Default);
        static FrameOrderReport Of(ScenarioResult r) { var rd = new KernelReader(r.CreateTarget()); return new FrameOrderAnalyzer(rd, null, null, new RegistryGroupSource(rd)).Analyze(); }
        var rep = Of(broken);
        var (rc, sink) = Run(broken.CreateTarget(), "");
        TestContext.Out.WriteLine(sink.Text);
        Assert.That(rc, Is.Zero);
        Assert.That(rep.Fltmc.Select(r => (r.Name, r.Altitude, r.Frame)), Is.EqualTo(new (string, string, string)[]
        {
            ("AVLegacy", "389998.99", "<Legacy>"), ("EncryptionLegacy", "149998.99", "<Legacy>"),
            ("AVMiniFilter", "328000", "0"), ("luafv", "135000", "0"), ("FileInfo", "45000", "0"),
        }));
        Assert.That(rep.Frames.Select(f => (f.Id, f.Low, f.High)), Is.EqualTo(new[] { (0u, "0", "329998.99") }));
        var c = rep.Volumes[0];
        Assert.That(c.Stack.Select(s => s.Kind), Is.EqualTo(new[] { StackItemKind.FileSystem, StackItemKind.Frame, StackItemKind.Legacy, StackItemKind.Legacy }));
        Assert.That((c.Stack[2].Name, c.Stack[2].Altitude, c.Stack[3].Name, c.Stack[3].Altitude), Is.EqualTo(("EncryptionLegacy", "149998.99", "AVLegacy", "389998.99")));
        Assert.That(rep.Disorders.Where(d => d.Volume == c.Name).Select(d => d.Message),
            Is.EqualTo(new[] { "AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O" }));
        Assert.That(rep.Disorders[0].Fix, Does.Contain("\"FSFilter Compression\" (160000-169999)"));
        // The registry is in paged pool on 7601 (no Registry process): the groups come from the hive directly.
        Assert.That(c.Stack[3].AltitudeSource, Does.Contain("FSFilter Anti-Virus"));

        var fixedSc = sc.Build(build!, new ScenarioOptions { Variant = "fixed" });
        var fixedRep = Of(fixedSc);
        Assert.That(fixedRep.Frames.Select(f => (f.Id, f.Low, f.High)), Is.EquivalentTo(new[] { (0u, "0", "149998.99"), (1u, "149998.99", "329998.99") }));
        Assert.That(fixedRep.Disorders, Is.Empty);
        Assert.That(fixedRep.Fltmc.Where(r => r.Name is "AVMiniFilter" or "NullFilter").Select(r => (r.Name, r.Frame)),
            Is.EquivalentTo(new[] { ("AVMiniFilter", "1"), ("NullFilter", "1") }));
    }
}
