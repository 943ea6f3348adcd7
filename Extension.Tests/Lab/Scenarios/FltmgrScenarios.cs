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
    public required NdisLabTarget Target { get; init; }
    public Dictionary<uint, ulong> FrameAddresses { get; } = new();
    public Dictionary<string, ulong> FilterAddresses { get; } = new();
    public List<ulong> FrameZeroVolumes { get; } = new();
    /// <summary>Per volume: device objects bottom to top.</summary>
    public List<List<ulong>> Stacks { get; } = new();

    private static readonly Dictionary<string, IsfDocument> NtCache = new();

    /// <summary>nt ISF for a layouts build label: 1607 -> 14393.6343 (Server 2016), 2004/20H2 -> 19041.804, Win11 -> 22000.2538.</summary>
    public static IsfDocument NtIsf(string layoutsPath, string label)
    {
        string guid = label switch
        {
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
        return LayInto(new NdisLabTarget(mem, syms, info, modules), flt, spec);
    }

    /// <summary>Lays the scenario into a target's memory; its symbols must have "fltmgr" = <paramref name="flt"/> at <see cref="FltmgrBase"/> and nt types.</summary>
    public static FltmgrScenario LayInto(NdisLabTarget target, IsfDocument flt, FltmgrScenarioSpec spec)
    {
        var sc = new FltmgrScenario { Spec = spec, Memory = target.Memory, Target = target };
        sc.Lay(new NdisStructWriter(target.Memory, target.Symbols), flt);
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

    private void Lay(NdisStructWriter w, IsfDocument flt)
    {
        const string F = "fltmgr";
        var heap = new LabHeap(0xffffe000_10000000);
        ulong globals = FltmgrBase + flt.GetSymbolRva("FltGlobals");
        var gType = w.Type(F, "_GLOBALS");
        Memory.Map(globals, gType.Size);
        ulong rList = w.Offset(F, "_FLT_RESOURCE_LIST_HEAD", "rList");
        ulong frameHead = globals + w.Offset(F, "_GLOBALS", "FrameList") + rList;
        InitList(Memory, frameHead);

        ulong Obj(ulong size) { ulong a = heap.Alloc(size + 0x100, 0x40); Memory.Map(a, size + 0x100); return a; }

        // Driver objects.
        var drivers = new Dictionary<string, ulong>();
        ulong Driver(string name)
        {
            if (drivers.TryGetValue(name, out var d)) return d;
            var t = w.Type("nt", "_DRIVER_OBJECT");
            d = Obj(t.Size);
            w.UnicodeString(d + w.Offset("nt", "_DRIVER_OBJECT", "DriverName"), heap.Alloc((ulong)name.Length * 2 + 8), name);
            // The I/O manager's driver extension: ServiceKeyName = the service key (the driver name's last component).
            ulong ext = Obj(w.Type("nt", "_DRIVER_EXTENSION").Size);
            string service = name[(name.LastIndexOf('\\') + 1)..];
            w.Set(ext, "nt", "_DRIVER_EXTENSION", "DriverObject", d);
            w.UnicodeString(ext + w.Offset("nt", "_DRIVER_EXTENSION", "ServiceKeyName"), heap.Alloc((ulong)service.Length * 2 + 8), service);
            w.Set(d, "nt", "_DRIVER_OBJECT", "DriverExtension", ext);
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
                    w.UnicodeString(table + (ulong)(i * 32 + j * 16), strings, text);
                    strings += ((ulong)text.Length * 2 + 2 + 7) & ~7UL;
                }
            }
        }

        // The SYSTEM hive (service load-order groups), on nt!CmpHiveListHead.
        if (Spec.SystemHive)
        {
            var proc = Spec.HiveInRegistryProcess ? RegistryProcessSpace.Create(Memory, Target.Symbols, size => heap.Alloc(size, 0x40)) : null;
            if (proc is not null) Target.AddProcessSpace(proc.EProcess, proc.Memory);
            HiveLayer.Lay(Memory, Target.Symbols, heap, SystemHiveImage(), @"\REGISTRY\MACHINE\SYSTEM", new HiveLayerOptions { RegistryProcess = proc });
        }

        // Frames.
        var frameType = w.Type(F, "_FLTP_FRAME");
        foreach (var (id, low, high) in Spec.Frames)
        {
            ulong fa = Obj(frameType.Size);
            FrameAddresses[id] = fa;
            w.Set(fa, F, "_FLTP_FRAME", "FrameID", id);
            w.UnicodeString(fa + w.Offset(F, "_FLTP_FRAME", "AltitudeIntervalLow"), heap.Alloc(32), low);
            w.UnicodeString(fa + w.Offset(F, "_FLTP_FRAME", "AltitudeIntervalHigh"), heap.Alloc(32), high);
            InitList(Memory, fa + w.Offset(F, "_FLTP_FRAME", "RegisteredFilters") + rList);
            InitList(Memory, fa + w.Offset(F, "_FLTP_FRAME", "AttachedVolumes") + rList);
            InsertTail(Memory, frameHead, fa + w.Offset(F, "_FLTP_FRAME", "Links"));
        }

        // Volumes: one _FLT_VOLUME per (volume, frame in the stack); device stacks.
        var volType = w.Type(F, "_FLT_VOLUME");
        var devType = w.Type("nt", "_DEVICE_OBJECT");
        var extType = w.Type("nt", "_DEVOBJ_EXTENSION");
        ulong volPrimary = w.Offset(F, "_FLT_VOLUME", "Base.PrimaryLink");
        var fltVolumes = new Dictionary<(int Vol, uint Frame), ulong>();
        for (int v = 0; v < Spec.Volumes; v++)
        {
            var stack = new List<ulong>();
            ulong Device(string driver)
            {
                ulong d = Obj(devType.Size);
                ulong ext = Obj(extType.Size);
                w.Set(d, "nt", "_DEVICE_OBJECT", "DriverObject", Driver(driver));
                w.Set(d, "nt", "_DEVICE_OBJECT", "DeviceObjectExtension", ext);
                w.Set(ext, "nt", "_DEVOBJ_EXTENSION", "DeviceObject", d);
                if (stack.Count > 0)
                {
                    ulong below = stack[^1];
                    w.Set(below, "nt", "_DEVICE_OBJECT", "AttachedDevice", d);
                    w.Set(ext, "nt", "_DEVOBJ_EXTENSION", "AttachedTo", below);
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
                ulong va = heap.Alloc(volType.Size + 0x100, 0x40);
                Memory.Map(va, volType.Size + 0x100);
                // DeviceName string right after the volume object.
                string name = $@"\Device\HarddiskVolume{v + 1}";
                w.UnicodeString(va + w.Offset(F, "_FLT_VOLUME", "DeviceName"), va + volType.Size + 0x10, name);
                w.Set(va, F, "_FLT_VOLUME", "DeviceObject", dev);
                w.Set(va, F, "_FLT_VOLUME", "Frame", FrameAddresses[fid]);
                if (frameZeroVol == 0) frameZeroVol = va;
                w.Set(va, F, "_FLT_VOLUME", "FrameZeroVolume", frameZeroVol);
                InitList(Memory, va + w.Offset(F, "_FLT_VOLUME", "InstanceList") + rList);
                InsertTail(Memory, FrameAddresses[fid] + w.Offset(F, "_FLTP_FRAME", "AttachedVolumes") + rList, va + volPrimary);
                if (fltVolumes.TryGetValue((v, fid), out _)) throw new InvalidOperationException("lab: a frame appears twice in one stack");
                fltVolumes[(v, fid)] = va;
            }
            // Chain the per-frame volume objects.
            var perFrame = Spec.Stack.Where(s => s.StartsWith("frame:")).Select(s => fltVolumes[(v, uint.Parse(s[6..]))]).ToList();
            for (int i = 0; i + 1 < perFrame.Count; i++) w.Set(perFrame[i], F, "_FLT_VOLUME", "VolumeInNextFrame", perFrame[i + 1]);
            FrameZeroVolumes.Add(frameZeroVol);
            Stacks.Add(stack);
        }

        // Filters and instances.
        var filterType = w.Type(F, "_FLT_FILTER");
        var instType = w.Type(F, "_FLT_INSTANCE");
        ulong filterPrimary = w.Offset(F, "_FLT_FILTER", "Base.PrimaryLink");
        ulong instList = w.Offset(F, "_FLT_FILTER", "InstanceList") + rList;
        ulong instLink = w.Offset(F, "_FLT_INSTANCE", "FilterLink");
        foreach (var mf in Spec.Minifilters)
        {
            ulong fa = Obj(filterType.Size);
            FilterAddresses[mf.Name] = fa;
            w.UnicodeString(fa + w.Offset(F, "_FLT_FILTER", "Name"), heap.Alloc((ulong)mf.Name.Length * 2 + 8), mf.Name);
            w.UnicodeString(fa + w.Offset(F, "_FLT_FILTER", "DefaultAltitude"), heap.Alloc(32), mf.Altitude);
            w.Set(fa, F, "_FLT_FILTER", "Frame", FrameAddresses[mf.Frame]);
            w.Set(fa, F, "_FLT_FILTER", "DriverObject", Driver(@"\FileSystem\" + mf.Name));
            InitList(Memory, fa + instList);
            InsertTail(Memory, FrameAddresses[mf.Frame] + w.Offset(F, "_FLTP_FRAME", "RegisteredFilters") + rList, fa + filterPrimary);
            var vols = mf.Volumes ?? Enumerable.Range(0, Spec.Volumes).ToArray();
            foreach (int v in vols)
            {
                if (!fltVolumes.TryGetValue((v, mf.Frame), out var va)) throw new InvalidOperationException($"lab: frame {mf.Frame} is not on volume {v}'s stack");
                ulong ia = heap.Alloc(instType.Size + 0x100, 0x40);
                Memory.Map(ia, instType.Size + 0x100);
                string iname = mf.Name + " Instance";
                w.UnicodeString(ia + w.Offset(F, "_FLT_INSTANCE", "Altitude"), ia + instType.Size + 0x10, mf.Altitude);
                w.UnicodeString(ia + w.Offset(F, "_FLT_INSTANCE", "Name"), ia + instType.Size + 0x40, iname);
                w.Set(ia, F, "_FLT_INSTANCE", "Volume", va);
                w.Set(ia, F, "_FLT_INSTANCE", "Filter", fa);
                InsertTail(Memory, fa + instList, ia + instLink);
                InsertTail(Memory, va + w.Offset(F, "_FLT_VOLUME", "InstanceList") + rList, ia + w.Offset(F, "_FLT_INSTANCE", "Base.PrimaryLink"));
            }
        }
    }
}
