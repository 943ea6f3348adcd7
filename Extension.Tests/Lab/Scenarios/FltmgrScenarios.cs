using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Target;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.FrameOrder;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Registry;

namespace NtSleuth.Lab.Scenarios;

/// <summary>A minifilter of a scenario: name, altitude, frame, and the volumes (indexes) it has instances on (null = all).</summary>
public sealed record LabMinifilter(string Name, string Altitude, uint Frame, int[]? Volumes = null);

/// <summary>Parameters of a filter-manager scenario.</summary>
public sealed record FltmgrScenarioSpec
{
    public string BuildLabel { get; init; } = NdisFltmgrLayouts.V20H2;
    /// <summary>Frames: id, altitude interval.</summary>
    public (uint Id, string Low, string High)[] Frames { get; init; } = Array.Empty<(uint, string, string)>();
    public LabMinifilter[] Minifilters { get; init; } = Array.Empty<LabMinifilter>();
    /// <summary>Device stack of every volume above the file system, bottom to top: "frame:N" or "legacy:DriverName".</summary>
    public string[] Stack { get; init; } = Array.Empty<string>();
    public int Volumes { get; init; } = 1;
    public string FileSystem { get; init; } = "Ntfs";
    /// <summary>Load-order group of each legacy filter's service (registry Group value), by driver name.</summary>
    public Dictionary<string, string> LegacyGroups { get; init; } = new(StringComparer.OrdinalIgnoreCase);
    /// <summary>
    /// fltmgr!LegacyFilterAltitdudeMap as laid into fltMgr.sys .data: UNICODE_STRING pairs (group, altitude); null = leave
    /// the table zeroed (a build whose table is not in the recognised shape).
    /// </summary>
    public (string Group, string Altitude)[]? AltitudeMap { get; init; } = FltmgrScenario.DocumentedAltitudeMap();
    /// <summary>Lay the SYSTEM hive (Select, ControlSet001\Services\... with Group/Start/Type, minifilter Instances) on nt!CmpHiveListHead.</summary>
    public bool SystemHive { get; init; } = true;
    /// <summary>Put the hive's bins in a "Registry" process's user address space (Windows 10 2004+), not kernel pool.</summary>
    public bool HiveInRegistryProcess { get; init; }
}

/// <summary>
/// Builds filter-manager kernels: fltmgr!FltGlobals.FrameList with _FLTP_FRAMEs, their registered _FLT_FILTERs and
/// _FLT_INSTANCEs (altitude/name strings stored right after each instance), per-frame _FLT_VOLUMEs, and nt device stacks
/// (file system volume device, fltmgr frame devices, legacy filter devices) linked both ways (AttachedDevice up,
/// _DEVOBJ_EXTENSION.AttachedTo down). nt types come from the nt ISF of the matching build, fltmgr types from the layouts.
/// </summary>
public sealed class FltmgrScenario
{
    public const ulong FltmgrBase = 0xfffff880_01000000;
    public const ulong NtBase = 0xfffff800_01800000;

    public required FltmgrScenarioSpec Spec { get; init; }
    public required SparseMemory Memory { get; init; }
    public required InMemoryTarget Target { get; init; }
    public Dictionary<uint, ulong> FrameAddresses { get; } = new();
    public Dictionary<string, ulong> FilterAddresses { get; } = new();
    public List<ulong> FrameZeroVolumes { get; } = new();
    /// <summary>Per volume: device objects bottom to top.</summary>
    public List<List<ulong>> Stacks { get; } = new();

    private static readonly Dictionary<string, IsfDocument> NtCache = new();

    /// <summary>nt ISF for a layouts build label: Windows 7 SP1 -> 7601.24540, 8.1 -> 9600.21620, 1607 -> 14393.6343 (Server 2016), 2004/20H2 -> 19041.804, Win11 -> 22000.2538.</summary>
    public static IsfDocument NtIsf(string layoutsPath, string label)
    {
        string guid = label switch
        {
            NdisFltmgrLayouts.Win7 => "339E74133576439CBCDF7E0229DA3773-1",
            NdisFltmgrLayouts.Win81 => "169C65213E3E42DDBEB4E3AC66312B82-1",
            NdisFltmgrLayouts.V1607 => "DBBC830E3E9A48FDA25A2144C146930E-1",
            NdisFltmgrLayouts.Win11 => "0CE4A95C0CD782A7596B034D8648E585-1",
            _ => "5278AFF86C341677D7D7835C85B7B844-1",
        };
        string path = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(layoutsPath)!, "..", "isf", "ntkrnlmp.pdb", guid + ".json.xz"));
        lock (NtCache)
        {
            if (!NtCache.TryGetValue(path, out var d)) NtCache[path] = d = IsfDocument.Load(path);
            return d;
        }
    }

    /// <summary>The documented file-system filter groups with the legacy altitude fltmgr gives them (top of range - 0.01).</summary>
    public static (string Group, string Altitude)[] DocumentedAltitudeMap() =>
        NtSleuth.Commands.FrameOrder.LoadOrderGroups.All.Reverse()
            .Select(g => (g.Name, (g.High - 0.01m).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture))).ToArray();

    /// <summary>
    /// The legacy altitude table as the seed's own Windows 7 / 2008 R2 machine shows it: fltmc printed 389998.99 for the
    /// legacy filter of group "FSFilter Anti-Virus" (seed 004's fltmc output), the other groups at the documented top of
    /// range - 0.01. No public source gives 7601's fltmgr table itself; this is the seed's observation (docs/layouts-7601-9600.md).
    /// </summary>
    public static (string Group, string Altitude)[] SeedWin7AltitudeMap() =>
        DocumentedAltitudeMap().Select(e => e.Group == "FSFilter Anti-Virus" ? (e.Group, "389998.99") : e).ToArray();

    /// <summary>Seed 004's legacy filters: their services' load-order groups.</summary>
    public static Dictionary<string, string> SeedLegacyGroups() => new(StringComparer.OrdinalIgnoreCase)
    {
        ["EncryptionLegacy"] = "FSFilter Encryption", ["AVLegacy"] = "FSFilter Anti-Virus",
    };

    public static FltmgrScenario SeedBroken(string layouts, string label = NdisFltmgrLayouts.V20H2) => Build(layouts, BrokenSpec(label));

    public static FltmgrScenarioSpec BrokenSpec(string label) => new()
    {
        BuildLabel = label,
        Frames = new[] { (0u, "0", "329998.99") },
        Minifilters = new[]
        {
            new LabMinifilter("AVMiniFilter", "328000", 0), new LabMinifilter("luafv", "135000", 0, new[] { 0 }), new LabMinifilter("FileInfo", "45000", 0),
        },
        Stack = new[] { "frame:0", "legacy:EncryptionLegacy", "legacy:AVLegacy" },
        Volumes = 3,
        LegacyGroups = SeedLegacyGroups(),
    };

    public static FltmgrScenario SeedFixed(string layouts, string label = NdisFltmgrLayouts.V20H2) => Build(layouts, FixedSpec(label));

    public static FltmgrScenarioSpec FixedSpec(string label) => new()
    {
        BuildLabel = label,
        Frames = new[] { (0u, "0", "149998.99"), (1u, "149998.99", "329998.99") },
        Minifilters = new[]
        {
            new LabMinifilter("AVMiniFilter", "328000", 1), new LabMinifilter("NullFilter", "160030", 1),
            new LabMinifilter("luafv", "135000", 0, new[] { 0 }), new LabMinifilter("FileInfo", "45000", 0),
        },
        Stack = new[] { "frame:0", "legacy:EncryptionLegacy", "frame:1", "legacy:AVLegacy" },
        Volumes = 3,
        LegacyGroups = SeedLegacyGroups(),
    };

    public static FltmgrScenario NoLegacy(string layouts, string label = NdisFltmgrLayouts.V20H2, int volumes = 2, int extraFilters = 0) =>
        Build(layouts, NoLegacySpec(label, volumes, extraFilters));

    public static FltmgrScenarioSpec NoLegacySpec(string label, int volumes = 2, int extraFilters = 0)
    {
        var filters = new List<LabMinifilter>
        {
            new("WdFilter", "328010", 0), new("luafv", "135000", 0, new[] { 0 }), new("FileInfo", "45000", 0),
        };
        for (int i = 0; i < extraFilters; i++) filters.Add(new LabMinifilter($"Vendor{i:00}", (360000 + i * 100).ToString(), 0));
        return new FltmgrScenarioSpec
        {
            BuildLabel = label, Frames = new[] { (0u, "0", "409999") }, Minifilters = filters.ToArray(), Stack = new[] { "frame:0" }, Volumes = volumes,
        };
    }

    public static FltmgrScenario Build(string layoutsPath, FltmgrScenarioSpec spec)
    {
        var flt = NdisFltmgrLayouts.BuildIsf(layoutsPath, "fltmgr", spec.BuildLabel);
        var nt = NtIsf(layoutsPath, spec.BuildLabel);
        var syms = new IsfSymbolProvider().Add("fltmgr", flt, FltmgrBase).Add("nt", nt, NtBase);
        var mem = new SparseMemory();
        var info = new TargetInfo { Kind = TargetKind.Kernel, IsDump = true, PointerSize = 8, BuildNumber = NdisFltmgrLayouts.BuildNumberOf(spec.BuildLabel), ProcessorCount = 4 };
        var modules = new List<ModuleInfo> { new("nt", NtBase, 0x1000000), new("FLTMGR", FltmgrBase, 0x80000, @"\SystemRoot\System32\drivers\FLTMGR.SYS") };
        return LayInto(new InMemoryTarget(mem, syms, info, modules), flt, spec);
    }

    /// <summary>Lays the scenario into a target's memory; its symbols must have "fltmgr" = <paramref name="flt"/> at <see cref="FltmgrBase"/> and nt types.</summary>
    public static FltmgrScenario LayInto(InMemoryTarget target, IsfDocument flt, FltmgrScenarioSpec spec)
    {
        var sc = new FltmgrScenario { Spec = spec, Memory = target.Memory, Target = target };
        sc.Lay(new TypedMemory(target.Memory, target.Symbols, flt.Source, heapStart: 0xffffe000_10000000), flt);
        return sc;
    }

    /// <summary>The services of the scenario's filters as the SYSTEM hive holds them.</summary>
    public HiveImage SystemHiveImage()
    {
        var h = new HiveImage();
        h.Key("Select").Dword("Current", 1).Dword("Default", 1).Dword("LastKnownGood", 2);
        h.Key(@"ControlSet001\Control\ServiceGroupOrder").MultiString("List", LoadOrderGroups.All.Select(g => g.Name).ToArray());
        foreach (var (driver, group) in Spec.LegacyGroups)
            h.Key($@"ControlSet001\Services\{driver}").String("Group", group).Dword("Start", 0).Dword("Type", 2)
             .ExpandString("ImagePath", $@"system32\drivers\{driver}.sys");
        foreach (var mf in Spec.Minifilters)
        {
            var k = h.Key($@"ControlSet001\Services\{mf.Name}").Dword("Start", 0).Dword("Type", 2);
            if (LoadOrderGroups.TryParse(mf.Altitude, out var a) && LoadOrderGroups.Containing(a) is { } g) k.String("Group", g.Name);
            h.Key($@"ControlSet001\Services\{mf.Name}\Instances").String("DefaultInstance", mf.Name + " Instance");
            h.Key($@"ControlSet001\Services\{mf.Name}\Instances\{mf.Name} Instance").String("Altitude", mf.Altitude).Dword("Flags", 0);
        }
        h.Key(@"ControlSet001\Services\Ntfs").String("Group", "Boot File System").Dword("Start", 0).Dword("Type", 2);
        return h;
    }

    private static void InitList(SparseMemory m, ulong head) { m.WriteU64(head, head); m.WriteU64(head + 8, head); }

    private static void InsertTail(SparseMemory m, ulong head, ulong entry)
    {
        ulong last = m.ReadU64(head + 8);
        m.WriteU64(entry, head); m.WriteU64(entry + 8, last);
        m.WriteU64(last, entry); m.WriteU64(head + 8, entry);
    }

    private void Lay(TypedMemory w, IsfDocument flt)
    {
        const string F = "fltmgr";
        ulong globals = FltmgrBase + flt.GetSymbolRva("FltGlobals");
        var gType = w.Layout("_GLOBALS", F);
        Memory.Map(globals, gType.Size);
        ulong rList = w.OffsetOf("_FLT_RESOURCE_LIST_HEAD", "rList", F);
        ulong frameHead = globals + w.OffsetOf("_GLOBALS", "FrameList", F) + rList;
        InitList(Memory, frameHead);

        ulong Obj(ulong size) { ulong a = w.Allocate(size + 0x100, 0x40); Memory.Map(a, size + 0x100); return a; }

        // Driver objects.
        var drivers = new Dictionary<string, ulong>();
        ulong Driver(string name)
        {
            if (drivers.TryGetValue(name, out var d)) return d;
            var t = w.Layout("_DRIVER_OBJECT", "nt");
            d = Obj(t.Size);
            w.WriteUnicodeString(d + w.OffsetOf("_DRIVER_OBJECT", "DriverName", "nt"), name, w.Allocate((ulong)name.Length * 2 + 8));
            // The I/O manager's driver extension: ServiceKeyName = the service key (the driver name's last component).
            ulong ext = Obj(w.Layout("_DRIVER_EXTENSION", "nt").Size);
            string service = name[(name.LastIndexOf('\\') + 1)..];
            w.Set(ext, "_DRIVER_EXTENSION", "DriverObject", d, "nt");
            w.WriteUnicodeString(ext + w.OffsetOf("_DRIVER_EXTENSION", "ServiceKeyName", "nt"), service, w.Allocate((ulong)service.Length * 2 + 8));
            w.Set(d, "_DRIVER_OBJECT", "DriverExtension", ext, "nt");
            drivers[name] = d;
            return d;
        }

        // fltmgr's legacy altitude table in .data, its strings in .rdata.
        if (Spec.AltitudeMap is { } amap && flt.Symbols.ContainsKey("LegacyFilterAltitdudeMap"))
        {
            ulong table = FltmgrBase + flt.GetSymbolRva("LegacyFilterAltitdudeMap");
            ulong strings = FltmgrBase + 0x1e000;
            Memory.Map(table, (ulong)amap.Length * 32 + 16);
            foreach (var (i, (g, a)) in amap.Index())
            {
                foreach (var (j, text) in new[] { g, a }.Index())
                {
                    Memory.Map(strings, (ulong)text.Length * 2 + 2);
                    w.WriteUnicodeString(table + (ulong)(i * 32 + j * 16), text, strings);
                    strings += ((ulong)text.Length * 2 + 2 + 7) & ~7UL;
                }
            }
        }

        // The SYSTEM hive (service load-order groups), on nt!CmpHiveListHead.
        if (Spec.SystemHive)
        {
            var proc = Spec.HiveInRegistryProcess ? RegistryProcessSpace.Create(Memory, Target.Symbols, size => w.Allocate(size, 0x40)) : null;
            if (proc is not null) Target.AddProcessSpace(proc.EProcess, proc.Memory);
            HiveLayer.Lay(w, SystemHiveImage(), @"\REGISTRY\MACHINE\SYSTEM", new HiveLayerOptions { RegistryProcess = proc });
        }

        // Frames.
        var frameType = w.Layout("_FLTP_FRAME", F);
        foreach (var (id, low, high) in Spec.Frames)
        {
            ulong fa = Obj(frameType.Size);
            FrameAddresses[id] = fa;
            w.Set(fa, "_FLTP_FRAME", "FrameID", id, F);
            w.WriteUnicodeString(fa + w.OffsetOf("_FLTP_FRAME", "AltitudeIntervalLow", F), low, w.Allocate(32));
            w.WriteUnicodeString(fa + w.OffsetOf("_FLTP_FRAME", "AltitudeIntervalHigh", F), high, w.Allocate(32));
            InitList(Memory, fa + w.OffsetOf("_FLTP_FRAME", "RegisteredFilters", F) + rList);
            InitList(Memory, fa + w.OffsetOf("_FLTP_FRAME", "AttachedVolumes", F) + rList);
            InsertTail(Memory, frameHead, fa + w.OffsetOf("_FLTP_FRAME", "Links", F));
        }

        // Volumes: one _FLT_VOLUME per (volume, frame in the stack); device stacks.
        var volType = w.Layout("_FLT_VOLUME", F);
        var devType = w.Layout("_DEVICE_OBJECT", "nt");
        var extType = w.Layout("_DEVOBJ_EXTENSION", "nt");
        ulong volPrimary = w.OffsetOf("_FLT_VOLUME", "Base.PrimaryLink", F);
        var fltVolumes = new Dictionary<(int Vol, uint Frame), ulong>();
        for (int v = 0; v < Spec.Volumes; v++)
        {
            var stack = new List<ulong>();
            ulong Device(string driver)
            {
                ulong d = Obj(devType.Size);
                ulong ext = Obj(extType.Size);
                w.Set(d, "_DEVICE_OBJECT", "DriverObject", Driver(driver), "nt");
                w.Set(d, "_DEVICE_OBJECT", "DeviceObjectExtension", ext, "nt");
                w.Set(ext, "_DEVOBJ_EXTENSION", "DeviceObject", d, "nt");
                if (stack.Count > 0)
                {
                    ulong below = stack[^1];
                    w.Set(below, "_DEVICE_OBJECT", "AttachedDevice", d, "nt");
                    w.Set(ext, "_DEVOBJ_EXTENSION", "AttachedTo", below, "nt");
                }
                stack.Add(d);
                return d;
            }
            Device(@"\FileSystem\" + Spec.FileSystem);
            ulong frameZeroVol = 0;
            foreach (var item in Spec.Stack)
            {
                if (item.StartsWith("legacy:")) { Device(@"\Driver\" + item["legacy:".Length..]); continue; }
                uint fid = uint.Parse(item["frame:".Length..]);
                ulong dev = Device(@"\FileSystem\FltMgr");
                ulong va = w.Allocate(volType.Size + 0x100, 0x40);
                Memory.Map(va, volType.Size + 0x100);
                // DeviceName string right after the volume object.
                string name = $@"\Device\HarddiskVolume{v + 1}";
                w.WriteUnicodeString(va + w.OffsetOf("_FLT_VOLUME", "DeviceName", F), name, va + volType.Size + 0x10);
                w.Set(va, "_FLT_VOLUME", "DeviceObject", dev, F);
                w.Set(va, "_FLT_VOLUME", "Frame", FrameAddresses[fid], F);
                if (frameZeroVol == 0) frameZeroVol = va;
                w.Set(va, "_FLT_VOLUME", "FrameZeroVolume", frameZeroVol, F);
                InitList(Memory, va + w.OffsetOf("_FLT_VOLUME", "InstanceList", F) + rList);
                InsertTail(Memory, FrameAddresses[fid] + w.OffsetOf("_FLTP_FRAME", "AttachedVolumes", F) + rList, va + volPrimary);
                if (fltVolumes.TryGetValue((v, fid), out _)) throw new InvalidOperationException("lab: a frame appears twice in one stack");
                fltVolumes[(v, fid)] = va;
            }
            // Chain the per-frame volume objects.
            var perFrame = Spec.Stack.Where(s => s.StartsWith("frame:")).Select(s => fltVolumes[(v, uint.Parse(s[6..]))]).ToList();
            for (int i = 0; i + 1 < perFrame.Count; i++) w.Set(perFrame[i], "_FLT_VOLUME", "VolumeInNextFrame", perFrame[i + 1], F);
            FrameZeroVolumes.Add(frameZeroVol);
            Stacks.Add(stack);
        }

        // Filters and instances.
        var filterType = w.Layout("_FLT_FILTER", F);
        var instType = w.Layout("_FLT_INSTANCE", F);
        ulong filterPrimary = w.OffsetOf("_FLT_FILTER", "Base.PrimaryLink", F);
        ulong instList = w.OffsetOf("_FLT_FILTER", "InstanceList", F) + rList;
        ulong instLink = w.OffsetOf("_FLT_INSTANCE", "FilterLink", F);
        foreach (var mf in Spec.Minifilters)
        {
            ulong fa = Obj(filterType.Size);
            FilterAddresses[mf.Name] = fa;
            w.WriteUnicodeString(fa + w.OffsetOf("_FLT_FILTER", "Name", F), mf.Name, w.Allocate((ulong)mf.Name.Length * 2 + 8));
            w.WriteUnicodeString(fa + w.OffsetOf("_FLT_FILTER", "DefaultAltitude", F), mf.Altitude, w.Allocate(32));
            w.Set(fa, "_FLT_FILTER", "Frame", FrameAddresses[mf.Frame], F);
            w.Set(fa, "_FLT_FILTER", "DriverObject", Driver(@"\FileSystem\" + mf.Name), F);
            InitList(Memory, fa + instList);
            InsertTail(Memory, FrameAddresses[mf.Frame] + w.OffsetOf("_FLTP_FRAME", "RegisteredFilters", F) + rList, fa + filterPrimary);
            var vols = mf.Volumes ?? Enumerable.Range(0, Spec.Volumes).ToArray();
            foreach (int v in vols)
            {
                if (!fltVolumes.TryGetValue((v, mf.Frame), out var va)) throw new InvalidOperationException($"lab: frame {mf.Frame} is not on volume {v}'s stack");
                ulong ia = w.Allocate(instType.Size + 0x100, 0x40);
                Memory.Map(ia, instType.Size + 0x100);
                string iname = mf.Name + " Instance";
                w.WriteUnicodeString(ia + w.OffsetOf("_FLT_INSTANCE", "Altitude", F), mf.Altitude, ia + instType.Size + 0x10);
                w.WriteUnicodeString(ia + w.OffsetOf("_FLT_INSTANCE", "Name", F), iname, ia + instType.Size + 0x40);
                w.Set(ia, "_FLT_INSTANCE", "Volume", va, F);
                w.Set(ia, "_FLT_INSTANCE", "Filter", fa, F);
                InsertTail(Memory, fa + instList, ia + instLink);
                InsertTail(Memory, va + w.OffsetOf("_FLT_VOLUME", "InstanceList", F) + rList, ia + w.OffsetOf("_FLT_INSTANCE", "Base.PrimaryLink", F));
            }
        }
    }
}
