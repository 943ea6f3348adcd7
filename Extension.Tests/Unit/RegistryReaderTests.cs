using NtSleuth.Commands.Output;
using System.Text;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Kernel.Registry;
using NtSleuth.Lab;
using NtSleuth.Lab.Registry;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// The in-memory registry reader against hives the lab lays into scenario kernels of every ISF build (a SYSTEM hive
/// behind a decoy SOFTWARE hive): values by path, the current control set, 'ri' lists, case and UTF-16 names, damage
/// (unreadable blocks and map entries, bad signatures, free cells, cycles), the Registry process (Windows 10 2004+)
/// and the round trips of one service lookup.
/// </summary>
public class RegistryReaderTests
{
    private const string System = @"\REGISTRY\MACHINE\SYSTEM";
    private const string Software = @"\REGISTRY\MACHINE\SOFTWARE";
    private const string EncKey = @"ControlSet001\Services\EncryptionLegacy";
    private const int ManyServices = 1200;
    private const string Cyrillic = "Служба";

    public static IEnumerable<string> Builds => LabBuilds.Keys;
    /// <summary>Builds with nt!CmpRegistryProcess (hive bins in the Registry process).</summary>
    public static IEnumerable<string> RegistryProcessBuilds => ["win10", "win11"];

    private static HiveImage SystemImage()
    {
        var h = new HiveImage();
        h.Key("Select").Dword("Current", 1).Dword("Default", 1).Dword("LastKnownGood", 2);
        var svc = h.Key(@"ControlSet001\Services");
        svc.Key("EncryptionLegacy")
            .String("Group", "FSFilter Encryption").Dword("Start", 0).Dword("Type", 2)
            .MultiString("DependOnService", "FltMgr", "Ntfs").ExpandString("ImagePath", @"System32\drivers\enclegacy.sys")
            .Value("Значение", 3, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        svc.Key("AVLegacy").String("Group", "FSFilter Anti-Virus").Dword("Start", 0);
        svc.Key(Cyrillic).String("Group", "Unicode group");
        svc.Key("Utf16Ascii").Utf16Name().String("Group", "stored as UTF-16");
        svc.ManySubKeys("Svc", ManyServices);
        h.Key(@"ControlSet001\Enum").List(SubKeyListKind.Lf).Leaves(16).ManySubKeys("Dev", 40);
        h.Key(@"ControlSet001\Control\Li").List(SubKeyListKind.Li).ManySubKeys("Item", 7);
        h.Key(@"ControlSet002\Services\EncryptionLegacy").String("Group", "FSFilter Encryption (ControlSet002)");
        return h;
    }

    private static HiveImage DecoyImage()
    {
        var h = new HiveImage();
        h.Key("Select").Dword("Current", 1);
        h.Key(@"ControlSet001\Services\EncryptionLegacy").String("Group", "DECOY (SOFTWARE hive)");
        h.Key(@"Microsoft\Windows NT\CurrentVersion").String("ProductName", "Lab");
        return h;
    }

    private sealed record Lab(KernelScenarioBuilder B, InMemoryTarget T, LaidHive Sys, LaidHive Soft, RegistryProcessSpace? Proc)
    {
        public (RegistryReader R, ReadStats Stats) Reader()
        {
            var stats = new ReadStats();
            return (new RegistryReader(new KernelReader(T, stats)), stats);
        }
        public uint Key(string path) => Sys.Image.KeyCells[path];
        public uint ValueCell(string key, string value) => Sys.Image.ValueCells[(key, value)];
    }

    private static Lab Make(string key, Action<HiveImage>? tweak = null, HiveLayerOptions? opts = null, bool processBins = false, bool registerProcess = true)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var b = new KernelScenarioBuilder(build);
        var proc = processBins ? RegistryProcessSpace.Create(b.Memory, b.Symbols, s => b.Alloc(s)) : null;
        var soft = HiveLayer.Lay(b, DecoyImage(), Software, new HiveLayerOptions { RegistryProcess = proc });
        var img = SystemImage();
        tweak?.Invoke(img);
        var sys = HiveLayer.Lay(b, img, System, (opts ?? new HiveLayerOptions()) with { RegistryProcess = proc });
        var t = b.CreateTarget();
        if (proc is not null && registerProcess) t.AddProcessSpace(proc.EProcess, proc.Memory);
        return new Lab(b, t, sys, soft, proc);
    }

    private static void Dump(RegistryReader r, ReadStats? s = null)
    {
        foreach (var n in r.Notes) TestContext.Out.WriteLine("note: " + n);
        if (s is not null) TestContext.Out.WriteLine(s.ToString());
    }

    // =====================================================================================
    // Reading
    // =====================================================================================

    [TestCaseSource(nameof(Builds))]
    public void ReadsServiceValuesOfTheCurrentControlSet(string key)
    {
        var lab = Make(key);
        var (r, stats) = lab.Reader();
        var group = r.GetServiceValue("EncryptionLegacy", "Group", out var why);
        Dump(r, stats);
        Assert.That(why, Is.Null);
        Assert.That(group, Is.Not.Null);
        Assert.That(group!.Type, Is.EqualTo(RegValue.RegSz));
        Assert.That(group.AsString(), Is.EqualTo("FSFilter Encryption"));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Start", out _)?.AsDword(), Is.EqualTo(0u));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Type", out _)?.AsDword(), Is.EqualTo(2u));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "DependOnService", out _)?.AsMultiString(), Is.EqualTo(new[] { "FltMgr", "Ntfs" }));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "ImagePath", out _)?.AsString(), Is.EqualTo(@"System32\drivers\enclegacy.sys"));
        Assert.That(r.GetServiceValue("AVLegacy", "Group", out _)?.AsString(), Is.EqualTo("FSFilter Anti-Virus"));
        Assert.That(r.Notes, Is.Empty);

        var hive = r.OpenHive(System)!;
        Assert.That(hive.CmHive, Is.EqualTo(lab.Sys.CmHive));
        Assert.That(hive.CurrentControlSetName(), Is.EqualTo("ControlSet001"));
        Assert.That(hive.Root!.Cell, Is.EqualTo(lab.Sys.Image.RootCell));
        Assert.That(r.ListHives(), Is.EqualTo(new[] { (Software, lab.Soft.CmHive), (System, lab.Sys.CmHive) }));

        var enc = hive.OpenKey(EncKey)!;
        Assert.That(enc.Cell, Is.EqualTo(lab.Key(EncKey)));
        Assert.That(enc.Values().Select(v => (v.Name, v.Type)), Is.EqualTo(new[]
        {
            ("Group", 1u), ("Start", 4u), ("Type", 4u), ("DependOnService", 7u), ("ImagePath", 2u), ("Значение", 3u),
        }));
        Assert.That(enc.GetValue("Значение")!.Data, Is.EqualTo(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }));
        Assert.That(enc.GetValue("NoSuchValue"), Is.Null);
        Assert.That(hive.OpenKey(@"ControlSet001\Services\NoSuchService"), Is.Null);
        Assert.That(r.GetServiceValue("NoSuchService", "Group", out var why2), Is.Null);
        Assert.That(why2, Does.Contain(@"ControlSet001\Services\NoSuchService").And.Contain("not found"));
        Assert.That(r.Notes, Is.Empty, "absent keys and values are not read failures");
    }

    [TestCaseSource(nameof(Builds))]
    public void TheControlSetComesFromSelectCurrent(string key)
    {
        var lab = Make(key, h => h.Key("Select").Dword("Current", 2));
        var (r, _) = lab.Reader();
        Assert.That(r.OpenHive(System)!.CurrentControlSetName(), Is.EqualTo("ControlSet002"));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out _)?.AsString(), Is.EqualTo("FSFilter Encryption (ControlSet002)"));
        Assert.That(r.GetServiceValue("AVLegacy", "Group", out var why), Is.Null);
        Assert.That(why, Does.Contain(@"ControlSet002\Services\AVLegacy"));
    }

    [TestCaseSource(nameof(Builds))]
    public void NamesAreCaseInsensitiveAndMayBeUtf16(string key)
    {
        var lab = Make(key);
        var (r, _) = lab.Reader();
        var hive = r.OpenHive(@"\registry\machine\system")!;
        var enc = hive.OpenKey(@"controlset001\SERVICES\encryptionLEGACY");
        Assert.That(enc, Is.Not.Null);
        Assert.That(enc!.Name, Is.EqualTo("EncryptionLegacy"), "the stored name, not the one asked for");
        Assert.That(enc.Path, Is.EqualTo(EncKey));
        Assert.That(enc.GetValue("gRoUp")?.AsString(), Is.EqualTo("FSFilter Encryption"));
        Assert.That(enc.GetValue("значение")?.Data.Length, Is.EqualTo(9), "UTF-16 value name, other case");
        var services = hive.OpenKey(@"ControlSet001\Services")!;
        var cyr = services.SubKey("СЛУЖБА");
        Assert.That(cyr?.Name, Is.EqualTo(Cyrillic));
        Assert.That(cyr!.GetValue("Group")?.AsString(), Is.EqualTo("Unicode group"));
        Assert.That(services.SubKey("utf16ascii")?.GetValue("Group")?.AsString(), Is.EqualTo("stored as UTF-16"));
        // The key node really is UTF-16 (no KEY_COMP_NAME): check the bytes the lab wrote.
        var nk = new byte[0x50 + 20];
        lab.B.Memory.Read(lab.Sys.CellAddress(lab.Key(@"ControlSet001\Services\Utf16Ascii")) + 4, nk);
        Assert.That(BitConverter.ToUInt16(nk, HiveImage.NkFlags) & HiveImage.KeyCompName, Is.Zero);
        Assert.That(Encoding.Unicode.GetString(nk, HiveImage.NkName, 20), Is.EqualTo("Utf16Ascii"));
        Assert.That(r.Notes, Is.Empty);
    }

    [TestCaseSource(nameof(Builds))]
    public void BigSubkeyListsUnderRiAndLfLiLeaves(string key)
    {
        var lab = Make(key);
        var (r, _) = lab.Reader();
        var hive = r.OpenHive(System)!;
        var services = hive.OpenKey(@"ControlSet001\Services")!;
        // The lab split the list: an 'ri' over 'lh' leaves.
        uint list = lab.Sys.Image.SubKeyListCells[@"ControlSet001\Services"];
        Assert.That(ReadSig(lab, list), Is.EqualTo("ri"));
        Assert.That(lab.Sys.Image.LeafCells[@"ControlSet001\Services"], Has.Count.EqualTo(3));
        var names = services.SubKeyNames();
        Assert.That(names, Has.Count.EqualTo(ManyServices + 4));
        Assert.That(services.SubKeyCount, Is.EqualTo((uint)(ManyServices + 4)));
        Assert.That(names, Is.Unique);
        Assert.That(names, Does.Contain("Svc0000").And.Contain("Svc1199").And.Contain(Cyrillic));
        Assert.That(services.SubKey("svc1199")?.Cell, Is.EqualTo(lab.Key(@"ControlSet001\Services\Svc1199")));
        Assert.That(services.SubKey("Svc0600")?.Name, Is.EqualTo("Svc0600"));
        Assert.That(services.SubKey("Svc9999"), Is.Null);

        // 'lf' leaves under an 'ri', and a plain 'li'.
        var en = hive.OpenKey(@"ControlSet001\Enum")!;
        Assert.That(ReadSig(lab, lab.Sys.Image.SubKeyListCells[@"ControlSet001\Enum"]), Is.EqualTo("ri"));
        Assert.That(ReadSig(lab, lab.Sys.Image.LeafCells[@"ControlSet001\Enum"][0]), Is.EqualTo("lf"));
        Assert.That(en.SubKeyNames(), Has.Count.EqualTo(40));
        Assert.That(en.SubKey("DEV0039")?.Name, Is.EqualTo("Dev0039"));
        var li = hive.OpenKey(@"ControlSet001\Control\Li")!;
        Assert.That(ReadSig(lab, lab.Sys.Image.SubKeyListCells[@"ControlSet001\Control\Li"]), Is.EqualTo("li"));
        Assert.That(li.SubKeyNames(), Is.EqualTo(Enumerable.Range(0, 7).Select(i => $"Item{i:D4}")));
        Assert.That(li.SubKey("item0003")?.Name, Is.EqualTo("Item0003"));
        Assert.That(r.Notes, Is.Empty);
    }

    [TestCaseSource(nameof(Builds))]
    public void SmallDirMapAndHiveFoundByFileNameWhenRootPathIsEmpty(string key)
    {
        var lab = Make(key, opts: new HiveLayerOptions { UseSmallDir = true, HiveRootPath = "" });
        var (r, _) = lab.Reader();
        Assert.That(r.ListHives().Select(h => h.Name), Is.EqualTo(new[] { Software, @"\SystemRoot\System32\Config\SYSTEM" }));
        var hive = r.OpenHive(System);
        Assert.That(hive?.CmHive, Is.EqualTo(lab.Sys.CmHive), "matched through FileUserName ...\\Config\\SYSTEM");
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out _)?.AsString(), Is.EqualTo("FSFilter Encryption"));
        Assert.That(r.OpenHive(@"\REGISTRY\MACHINE\SAM"), Is.Null);
        Assert.That(r.Notes.Single(), Does.Contain(@"\REGISTRY\MACHINE\SAM not found among the 2 hive(s)"));
    }

    [TestCaseSource(nameof(Builds))]
    public void DataCellsSpanningBlocksAreReadAndBigDataIsNoted(string key)
    {
        var blob = Enumerable.Range(0, 10000).Select(i => (byte)(i * 7)).ToArray();
        var lab = Make(key, h => h.Key(EncKey).Binary("Blob", blob).Binary("Huge", new byte[20000]));
        var (r, _) = lab.Reader();
        var enc = r.OpenHive(System)!.OpenKey(EncKey)!;
        Assert.That(enc.GetValue("Blob")?.Data, Is.EqualTo(blob));
        uint db = lab.Sys.Image.DataCells[(EncKey, "Huge")];
        Assert.That(ReadSig(lab, db), Is.EqualTo("db"));
        Assert.That(enc.GetValue("Huge"), Is.Null);
        Assert.That(r.Notes.Single(), Does.Contain("'Huge'").And.Contain("big-data ('db') cell").And.Contain($"0x{db:x8}").And.Contain($"{Fmt.Addr(lab.Sys.CellAddress(db))}"));
        Assert.That(enc.Values().Select(v => v.Name), Does.Contain("Blob").And.Not.Contain("Huge"));
    }

    [TestCaseSource(nameof(Builds))]
    public void HiveImageFormatMatchesTheSymbols(string key)
    {
        // The lab writes cells with the documented on-disk offsets; the reader takes them from the symbols: they must agree.
        var build = LabTestSupport.BuildOrIgnore(key);
        var types = new TypeCache(new KernelScenarioBuilder(build).Symbols);
        var nk = types.Get("nt", "_CM_KEY_NODE");
        ulong Off(string t, string f) => types.FieldOffset("nt", t, f);
        Assert.That(Off("_CM_KEY_NODE", "Flags"), Is.EqualTo((ulong)HiveImage.NkFlags));
        Assert.That(Off("_CM_KEY_NODE", "SubKeyCounts"), Is.EqualTo((ulong)HiveImage.NkSubKeyCounts));
        Assert.That(Off("_CM_KEY_NODE", "SubKeyLists"), Is.EqualTo((ulong)HiveImage.NkSubKeyLists));
        Assert.That(Off("_CM_KEY_NODE", "ValueList.Count"), Is.EqualTo((ulong)HiveImage.NkValueCount));
        Assert.That(Off("_CM_KEY_NODE", "ValueList.List"), Is.EqualTo((ulong)HiveImage.NkValueList));
        Assert.That(Off("_CM_KEY_NODE", "NameLength"), Is.EqualTo((ulong)HiveImage.NkNameLength));
        Assert.That(Off("_CM_KEY_NODE", "Name"), Is.EqualTo((ulong)HiveImage.NkName));
        Assert.That(Off("_CM_KEY_VALUE", "DataLength"), Is.EqualTo((ulong)HiveImage.VkDataLength));
        Assert.That(Off("_CM_KEY_VALUE", "Data"), Is.EqualTo((ulong)HiveImage.VkData));
        Assert.That(Off("_CM_KEY_VALUE", "Type"), Is.EqualTo((ulong)HiveImage.VkType));
        Assert.That(Off("_CM_KEY_VALUE", "Flags"), Is.EqualTo((ulong)HiveImage.VkFlags));
        Assert.That(Off("_CM_KEY_VALUE", "Name"), Is.EqualTo((ulong)HiveImage.VkName));
        Assert.That(nk.Size, Is.GreaterThanOrEqualTo((ulong)HiveImage.NkName));
    }

    // =====================================================================================
    // Damage
    // =====================================================================================

    [TestCaseSource(nameof(Builds))]
    public void UnreadableBlockGivesNullAndANoteWithTheCell(string key)
    {
        var lab = Make(key);
        uint enc = lab.Key(EncKey);
        ulong block = lab.Sys.BlockAddress(enc);
        lab.T.MakeUnreadable(block, 0x1000);
        var (r, _) = lab.Reader();
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out var why), Is.Null);
        Dump(r);
        Assert.That(why, Does.Contain("not readable"));
        // The note names a cell of the damaged block (the first one the lookup needed there) and its address.
        var note = r.Notes.Single(n => n.Contains("not readable"));
        var cells = lab.Sys.Image.KeyCells.Values.Concat(lab.Sys.Image.LeafCells.Values.SelectMany(x => x))
            .Where(c => lab.Sys.BlockAddress(c) == block).ToList();
        Assert.That(cells.Any(c => note.Contains($"cell 0x{c:x8} at {Fmt.Addr(lab.Sys.CellAddress(c))}")), Is.True, note);
        // Partial results: the rest of the hive still reads.
        var hive = r.OpenHive(System)!;
        Assert.That(hive.CurrentControlSetName(), Is.EqualTo("ControlSet001"));
        Assert.That(lab.Sys.BlockAddress(lab.Key(@"ControlSet002\Services\EncryptionLegacy")), Is.Not.EqualTo(block));
        Assert.That(hive.OpenKey(@"ControlSet002\Services\EncryptionLegacy")?.GetValue("Group")?.AsString(), Is.EqualTo("FSFilter Encryption (ControlSet002)"));
    }

    [TestCaseSource(nameof(Builds))]
    public void UnreadableMapEntryIsNoted(string key)
    {
        var lab = Make(key);
        uint select = lab.Key("Select");
        ulong entry = lab.Sys.EntryAddress(select);
        lab.T.MakeUnreadable(entry, lab.Sys.HmapEntrySize);
        var (r, _) = lab.Reader();
        Assert.That(r.OpenHive(System)!.CurrentControlSetName(), Is.Null);
        Dump(r);
        Assert.That(r.Notes, Has.Some.Contains($"map entry of cell 0x").And.Contains($"(_HMAP_ENTRY at {Fmt.Addr(entry)}) is not readable"));
    }

    [TestCaseSource(nameof(Builds))]
    public void BadSignaturesAndFreeCellsAreRejected(string key)
    {
        var lab = Make(key);
        uint enc = lab.Key(EncKey);
        ulong encVa = lab.Sys.CellAddress(enc);
        lab.B.Memory.Write(encVa + 4, "xx"u8);                       // 'nk' -> 'xx'
        uint av = lab.Key(@"ControlSet001\Services\AVLegacy");
        lab.B.Memory.WriteU32(lab.Sys.CellAddress(av), 0x60);          // allocated -> free
        uint grp = lab.ValueCell(@"ControlSet002\Services\EncryptionLegacy", "Group");
        lab.B.Memory.Write(lab.Sys.CellAddress(grp) + 4, "nk"u8);      // 'vk' -> 'nk'
        uint enumLeaf = lab.Sys.Image.LeafCells[@"ControlSet001\Enum"][1];
        lab.B.Memory.Write(lab.Sys.CellAddress(enumLeaf) + 4, "zz"u8); // 'lf' -> 'zz'
        var (r, _) = lab.Reader();
        var hive = r.OpenHive(System)!;
        Assert.That(hive.OpenKey(EncKey), Is.Null);
        Assert.That(hive.OpenKey(@"ControlSet001\Services\AVLegacy"), Is.Null);
        Assert.That(hive.OpenKey(@"ControlSet002\Services\EncryptionLegacy")!.GetValue("Group"), Is.Null);
        Assert.That(hive.OpenKey(@"ControlSet001\Enum")!.SubKeyNames(), Has.Count.EqualTo(40 - 16), "the damaged leaf is skipped, the others read");
        Dump(r);
        Assert.That(r.Notes, Has.Some.Contains($"cell 0x{enc:x8} at {Fmt.Addr(encVa)} has signature 'xx', not 'nk'"));
        Assert.That(r.Notes, Has.Some.Contains($"cell 0x{av:x8} at {Fmt.Addr(lab.Sys.CellAddress(av))} is free"));
        Assert.That(r.Notes, Has.Some.Contains($"cell 0x{grp:x8} at {Fmt.Addr(lab.Sys.CellAddress(grp))} has signature 'nk', not 'vk'"));
        Assert.That(r.Notes, Has.Some.Contains($"subkey list cell 0x{enumLeaf:x8} at {Fmt.Addr(lab.Sys.CellAddress(enumLeaf))} has signature 'zz'"));
        // Undamaged neighbours still read.
        Assert.That(hive.OpenKey(@"ControlSet001\Services\Svc0001"), Is.Not.Null);
    }

    [TestCaseSource(nameof(Builds))]
    public void CycleInRiIsDetected(string key)
    {
        var lab = Make(key);
        uint ri = lab.Sys.Image.SubKeyListCells[@"ControlSet001\Services"];
        var leaves = lab.Sys.Image.LeafCells[@"ControlSet001\Services"];
        // ri entry 1 points back at the ri itself.
        lab.B.Memory.WriteU32(lab.Sys.CellAddress(ri) + 4 + 4 + 4, ri);
        var (r, _) = lab.Reader();
        var services = r.OpenHive(System)!.OpenKey(@"ControlSet001\Services")!;
        var names = services.SubKeyNames();
        Dump(r);
        int leaf1 = Math.Min(500, ManyServices + 4 - 500);
        Assert.That(names, Has.Count.EqualTo(ManyServices + 4 - leaf1), "the looping entry is skipped, the other leaves read");
        Assert.That(r.Notes, Has.Some.Contains($"subkey index cell 0x{ri:x8} is listed twice (cycle"));
        Assert.That(leaves, Has.Count.EqualTo(3));
    }

    [TestCaseSource(nameof(Builds))]
    public void InterruptStopsAWalkWithPartialResults(string key)
    {
        var lab = Make(key);
        var (r, _) = lab.Reader();
        var services = r.OpenHive(System)!.OpenKey(@"ControlSet001\Services")!;
        lab.T.InterruptNow = true;
        var names = services.SubKeyNames();
        Assert.That(names.Count, Is.LessThan(ManyServices));
        Assert.That(r.Notes, Has.Some.Contains("interrupted by user"));
    }

    // =====================================================================================
    // The Registry process (Windows 10 2004+)
    // =====================================================================================

    [TestCaseSource(nameof(RegistryProcessBuilds))]
    public void BinsInTheRegistryProcessAreReadInItsContext(string key)
    {
        var lab = Make(key, processBins: true);
        var proc = lab.Proc!;
        ulong firstBin = lab.Sys.Bins.Values.First();
        Assert.That(firstBin, Is.LessThan(0x0000_8000_0000_0000UL), "bins at user addresses");
        Assert.That(lab.B.Memory.IsMapped(firstBin), Is.False, "not in kernel memory");
        Assert.That(lab.B.Memory.ReadU64(lab.B.Symbol("CmpRegistryProcess")), Is.EqualTo(proc.EProcess));
        var (r, stats) = lab.Reader();
        var group = r.GetServiceValue("EncryptionLegacy", "Group", out var why);
        Dump(r, stats);
        Assert.That(why, Is.Null);
        Assert.That(group?.AsString(), Is.EqualTo("FSFilter Encryption"));
        Assert.That(r.Notes, Is.Empty);
        Assert.That(lab.T.ProcessReadCalls, Is.GreaterThan(0));
        Assert.That(stats.RoundTrips, Is.EqualTo(lab.T.ReadCalls), "process reads are counted with the command's round trips");
    }

    [TestCaseSource(nameof(RegistryProcessBuilds))]
    public void BinsInTheRegistryProcessOnATargetThatCannotReadThemGiveAPreciseNote(string key)
    {
        var lab = Make(key, processBins: true, registerProcess: false);
        var (r, _) = lab.Reader();
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out var why), Is.Null);
        Dump(r);
        string expected = $"SYSTEM hive bins are in the Registry process (EPROCESS {Fmt.Addr(lab.Proc!.EProcess)}) address space, which this target cannot read; a kernel dump without user pages does not contain them";
        Assert.That(r.Notes, Has.Some.StartsWith(expected));
        Assert.That(why, Does.Contain(expected));
        Assert.That(r.Notes.Count(n => n.Contains("Registry process")), Is.EqualTo(1), "said once, not per cell");
    }

    [Test]
    public void ProcessReadsAreCachedPerProcessAndCounted()
    {
        // TargetMemory.ForProcess: one cache per process (the same user VA differs between processes), counted with the rest.
        var kernel = new SparseMemory();
        kernel.WriteU64(0xffff_f000_0000_0000, 0x1111);
        var t = new InMemoryTarget(kernel, new NtSleuth.Commands.Symbols.Isf.IsfSymbolProvider(), new NtSleuth.Commands.Target.TargetInfo(), []);
        var a = new SparseMemory(); a.WriteU64(0x10000, 0xaaaa);
        var b = new SparseMemory(); b.WriteU64(0x10000, 0xbbbb);
        t.AddProcessSpace(0xffff_e000_0000_1000, a);
        t.AddProcessSpace(0xffff_e000_0000_2000, b);
        var stats = new ReadStats();
        var mem = new TargetMemory(t, stats);
        Assert.That(mem.ForProcess(0xffff_e000_0000_1000).TryReadU64(0x10000, out var va) ? va : 0, Is.EqualTo(0xaaaaUL));
        Assert.That(mem.ForProcess(0xffff_e000_0000_2000).TryReadU64(0x10000, out var vb) ? vb : 0, Is.EqualTo(0xbbbbUL));
        Assert.That(mem.TryReadU64(0x10000, out _), Is.False, "the kernel view has no user pages");
        Assert.That(stats.RoundTrips, Is.EqualTo(3));
        Assert.That(mem.ForProcess(0xffff_e000_0000_1000).TryReadU64(0x10000, out va) ? va : 0, Is.EqualTo(0xaaaaUL));
        Assert.That(stats.RoundTrips, Is.EqualTo(3), "cached per process");
        Span<byte> buf = stackalloc byte[8];
        Assert.That(mem.ReadProcess(0xffff_e000_0000_3000, 0x10000, buf), Is.Zero, "a process the target cannot read");
        Assert.That(mem.ReadProcess(0xffff_e000_0000_3000, 0xffff_f000_0000_0000, buf), Is.EqualTo(8), "kernel addresses read in any process context");
        Assert.That(stats.RoundTrips, Is.EqualTo(t.ReadCalls));
    }

    // =====================================================================================
    // Round trips
    // =====================================================================================

    [TestCaseSource(nameof(Builds))]
    public void ServiceLookupRoundTripBudget(string key)
    {
        var lab = Make(key);
        var (r, stats) = lab.Reader();
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out _)?.AsString(), Is.EqualTo("FSFilter Encryption"));
        long first = stats.RoundTrips;
        TestContext.Out.WriteLine($"{key}: Select\\Current + ControlSet001\\Services\\EncryptionLegacy\\Group: {stats}");
        Assert.That(first, Is.LessThanOrEqualTo(15), stats.ToString()); // measured 13 on every build
        Assert.That(stats.RoundTrips, Is.EqualTo(lab.T.ReadCalls), "every transport read is counted");
        // A second value of the same service costs no round trip (hive, map and blocks are cached).
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Start", out _)?.AsDword(), Is.EqualTo(0u));
        TestContext.Out.WriteLine($"{key}: + Start: {stats}");
        Assert.That(stats.RoundTrips - first, Is.Zero);
    }

    // =====================================================================================
    // The layer is usable from the ndis/fltmgr labs too
    // =====================================================================================

    [Test]
    public void LaysIntoAFltmgrScenarioTarget()
    {
        var layouts = SharedData.LayoutsFile;
        if (layouts is null) Assert.Ignore("../shared/realdata/layouts/ndis-fltmgr-layouts.json is absent");
        var sc = FltmgrScenario.SeedBroken(layouts!);
        var heap = new TypedMemory(sc.Memory, sc.Target.Symbols, "registry test", heapStart: 0xffffe000_40000000);
        var proc = RegistryProcessSpace.Create(sc.Memory, sc.Target.Symbols, s => heap.Allocate(s));
        HiveLayer.Lay(heap, SystemImage(), System, new HiveLayerOptions { RegistryProcess = proc });
        sc.Target.AddProcessSpace(proc.EProcess, proc.Memory);
        var r = new RegistryReader(new KernelReader(sc.Target));
        Assert.That(r.GetServiceValue("EncryptionLegacy", "Group", out var why)?.AsString(), Is.EqualTo("FSFilter Encryption"), why);
        Assert.That(r.GetServiceValue("AVLegacy", "Group", out _)?.AsString(), Is.EqualTo("FSFilter Anti-Virus"));
    }

    private static string ReadSig(Lab lab, uint cell)
    {
        var b = new byte[2];
        lab.Sys.BinMemory.Read(lab.Sys.CellAddress(cell) + 4, b);
        return Encoding.ASCII.GetString(b);
    }
}
