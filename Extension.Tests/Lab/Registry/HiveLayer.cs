using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;

namespace NtSleuth.Lab.Registry;

/// <summary>How <see cref="HiveLayer"/> lays a hive.</summary>
public sealed record HiveLayerOptions
{
    /// <summary>_CMHIVE.HiveRootPath; null = the root path given to Lay; "" = left empty (readers must fall back to the file names).</summary>
    public string? HiveRootPath { get; init; }
    /// <summary>_CMHIVE.FileUserName; null = \SystemRoot\System32\Config\&lt;leaf of the root path&gt;.</summary>
    public string? FileUserName { get; init; }
    /// <summary>_CMHIVE.FileFullPath; null = \Device\HarddiskVolume2\Windows\System32\config\&lt;leaf&gt;.</summary>
    public string? FileFullPath { get; init; }
    /// <summary>Map through _DUAL.SmallDir (Map = &amp;SmallDir, as the kernel does for hives of at most 512 blocks) instead of a full _HMAP_DIRECTORY.</summary>
    public bool UseSmallDir { get; init; }
    /// <summary>Bins in the user address space of this Registry process (Windows 10 2004+) instead of kernel pool.</summary>
    public RegistryProcessSpace? RegistryProcess { get; init; }
}

/// <summary>
/// The "Registry" process of Windows 10 2004+: an _EPROCESS in kernel memory (nt!CmpRegistryProcess points at it) and
/// its own user address space (a separate <see cref="SparseMemory"/>; register it on the target with
/// AddProcessSpace(EProcess, Memory) so ReadProcessVirtual can serve it).
/// </summary>
public sealed class RegistryProcessSpace
{
    public ulong EProcess { get; }
    public SparseMemory Memory { get; } = new();
    private ulong _next;

    private RegistryProcessSpace(ulong eprocess, ulong userBase) { EProcess = eprocess; _next = userBase; }

    /// <summary>Lays an _EPROCESS ("Registry") and sets nt!CmpRegistryProcess (when the build has it) to it.</summary>
    public static RegistryProcessSpace Create(SparseMemory kernel, ISymbolProvider symbols, Func<ulong, ulong> alloc, ulong userBase = 0x0000_01d3_a000_0000)
    {
        var types = new TypeCache(symbols);
        var ep = types.Get("nt", "_EPROCESS");
        ulong e = alloc(ep.Size);
        kernel.Map(e, ep.Size);
        if (types.TryResolvePath(ep, "ImageFileName") is { } f)
        {
            var name = new byte[f.Type.Size];
            Encoding.ASCII.GetBytes("Registry").AsSpan(0, Math.Min(8, name.Length)).CopyTo(name);
            kernel.Write(e + f.Offset, name);
        }
        if (symbols.GetSymbolAddress("nt!CmpRegistryProcess") is { } p) { kernel.Map(p, 8); kernel.WriteU64(p, e); }
        return new RegistryProcessSpace(e, userBase);
    }

    /// <summary>A page-aligned user range with an unmapped guard page after it.</summary>
    internal ulong Alloc(ulong size)
    {
        ulong a = _next;
        _next = (a + size + 0x1000 + 0xfff) & ~0xfffUL;
        Memory.Map(a, size);
        return a;
    }
}

/// <summary>A hive laid into a kernel: where its structures are (for tests and fault injection).</summary>
public sealed class LaidHive
{
    public required HiveBuild Image { get; init; }
    public required string RootPath { get; init; }
    public ulong CmHive { get; internal set; }
    public ulong BaseBlock { get; internal set; }
    /// <summary>The _HMAP_DIRECTORY (or, with SmallDir, the address of _DUAL.SmallDir that Map points at).</summary>
    public ulong Map { get; internal set; }
    public List<ulong> Tables { get; } = new();
    /// <summary>Bin offset -> bin VA (kernel, or the Registry process's user space).</summary>
    public Dictionary<uint, ulong> Bins { get; } = new();
    /// <summary>Memory the bins were written to.</summary>
    public required SparseMemory BinMemory { get; init; }
    public ulong HmapEntrySize { get; internal set; }

    /// <summary>VA of the 4 KB block holding <paramref name="cell"/>.</summary>
    public ulong BlockAddress(uint cell)
    {
        uint off = cell & 0x7fffffff & ~0xfffu;
        var (binOff, _) = Image.BinList.Last(b => b.Offset <= off);
        return Bins[binOff] + (off - binOff);
    }

    /// <summary>VA of the cell's size field.</summary>
    public ulong CellAddress(uint cell) => BlockAddress(cell) + (cell & 0xfff);

    /// <summary>VA of the cell's _HMAP_ENTRY.</summary>
    public ulong EntryAddress(uint cell) => Tables[(int)((cell >> 21) & 0x3ff)] + ((cell >> 12) & 0x1ff) * HmapEntrySize;
}

/// <summary>
/// Lays a <see cref="HiveImage"/> into a kernel's <see cref="SparseMemory"/> with every offset from the build's symbols:
/// the base block (_HBASE_BLOCK: 'regf', RootCell, Length, FileName, CheckSum), the bins (separate page-aligned
/// allocations, as the kernel allocates them), the cell map (_HMAP_DIRECTORY -> _HMAP_TABLE -> _HMAP_ENTRY with
/// BlockAddress/BinAddress on 7601/9600 or PermanentBinAddress+BlockOffset on 14393+, entry size from the type), the
/// _CMHIVE (_HHIVE signature, BaseBlock, Storage[Stable], HiveRootPath/FileUserName/FileFullPath) linked on
/// nt!CmpHiveListHead (initialised when empty). Usable from <see cref="KernelScenarioBuilder"/> and from the
/// ndis/fltmgr labs (a <see cref="TypedMemory"/> with a heap): both are a SparseMemory + ISymbolProvider. Kernel-side structures are in
/// the kernel SparseMemory, so the dump writers include them.
/// </summary>
public static class HiveLayer
{
    /// <summary>Lays the hive into <paramref name="w"/>'s memory, allocating from it (a scenario builder's pool, or a TypedMemory heap).</summary>
    public static LaidHive Lay(TypedMemory w, HiveImage image, string rootPath, HiveLayerOptions? opts = null) =>
        Lay(w.Memory, w.SymbolProvider, size => w.Allocate(size, 0x10), image, rootPath, opts);

    /// <summary>Lays the hive; <paramref name="alloc"/>(size) returns kernel addresses for new objects (mapped here when needed).</summary>
    public static LaidHive Lay(SparseMemory mem, ISymbolProvider syms, Func<ulong, ulong> alloc, HiveImage image, string rootPath, HiveLayerOptions? opts = null)
    {
        opts ??= new HiveLayerOptions();
        var build = image.Build();
        var types = new TypeCache(syms);
        var w = new TypedMemory(mem, syms, "hive layer");
        string leaf = rootPath.TrimEnd('\\')[(rootPath.TrimEnd('\\').LastIndexOf('\\') + 1)..];
        var proc = opts.RegistryProcess;
        var laid = new LaidHive { Image = build, RootPath = rootPath, BinMemory = proc?.Memory ?? mem };

        ulong Kalloc(ulong size, ulong align = 0x10)
        {
            ulong a = alloc(size + align);
            a = (a + align - 1) & ~(align - 1);
            mem.Map(a, size);
            return a;
        }

        // Bins: each its own page-aligned allocation.
        foreach (var (off, size) in build.BinList)
        {
            ulong va = proc is not null ? proc.Alloc(size) : Kalloc(size, 0x1000);
            laid.BinMemory.Write(va, build.Bins.AsSpan((int)off, (int)size));
            laid.Bins[off] = va;
        }

        // Base block.
        var bbT = types.Get("nt", "_HBASE_BLOCK");
        ulong bb = Kalloc(bbT.Size, 0x1000);
        laid.BaseBlock = bb;
        w.View(bbT, bb).Set("Signature", HiveViewConst.Regf);
        w.View(bbT, bb).Set("Sequence1", 1);
        w.View(bbT, bb).Set("Sequence2", 1);
        w.View(bbT, bb).Set("Major", 1);
        w.View(bbT, bb).Set("Minor", image.Minor);
        w.View(bbT, bb).Set("Type", 0);
        w.View(bbT, bb).Set("Format", 1);
        w.View(bbT, bb).Set("RootCell", build.RootCell);
        w.View(bbT, bb).Set("Length", (ulong)build.Length);
        w.View(bbT, bb).Set("Cluster", 1);
        string userName = opts.FileUserName ?? $@"\SystemRoot\System32\Config\{leaf}";
        if (types.TryResolvePath(bbT, "FileName") is { } fn)
        {
            var tail = Encoding.Unicode.GetBytes(userName.Length > 31 ? userName[^31..] : userName);
            mem.Write(bb + fn.Offset, tail.AsSpan(0, Math.Min(tail.Length, (int)fn.Type.Size)));
        }
        if (types.TryResolvePath(bbT, "CheckSum") is { } cs)
        {
            var bbHead = new byte[cs.Offset];
            mem.Read(bb, bbHead);
            uint sum = 0;
            for (int i = 0; i + 4 <= bbHead.Length; i += 4) sum ^= BinaryPrimitives.ReadUInt32LittleEndian(bbHead.AsSpan(i));
            mem.WriteU32(bb + cs.Offset, sum);
        }

        // _CMHIVE.
        var cmT = types.Get("nt", "_CMHIVE");
        ulong cm = Kalloc(cmT.Size, 0x40);
        laid.CmHive = cm;
        ulong hive = cm + types.ResolvePath(cmT, "Hive").Offset;
        var hhT = types.Get("nt", "_HHIVE");
        w.View(hhT, hive).Set("Signature", HiveViewConst.HiveSig);
        w.View(hhT, hive).Set("BaseBlock", bb);
        w.View(hhT, hive).SetIfPresent("Version", image.Minor);
        w.View(hhT, hive).SetIfPresent("Cluster", 1);
        w.View(hhT, hive).SetIfPresent("StorageTypeCount", 2);
        var (storageOff, storageT) = types.ResolvePath(hhT, "Storage");
        var dualT = types.Get("nt", storageT.Inner!.Name);
        ulong stable = hive + storageOff;                 // Storage[0] (Stable)
        ulong vol = stable + storageT.Inner.Size;          // Storage[1] (Volatile): empty
        w.View(dualT, stable).Set("Length", (ulong)build.Length);
        w.View(dualT, vol).Set("Length", 0);
        w.View(dualT, vol).Set("Map", 0);

        // Map: tables of 512 entries (one per 4 KB block), directory of 1024 tables.
        var tableT = types.Get("nt", "_HMAP_TABLE");
        var (tableFieldOff, tableField) = types.ResolvePath(tableT, "Table");
        var entryT = types.Get("nt", "_HMAP_ENTRY");
        ulong entrySize = tableField.Inner?.Size is > 0 and var es ? es : entryT.Size;
        laid.HmapEntrySize = entrySize;
        int blocks = build.BlockCount;
        int tableCount = (blocks + 511) / 512;
        for (int t = 0; t < tableCount; t++) laid.Tables.Add(Kalloc(tableT.Size, 0x10));
        bool hasBlockAddress = entryT.HasField("BlockAddress");
        foreach (var (binOff, binSize) in build.BinList)
        {
            for (uint k = 0; k < binSize / HiveImage.BlockSize; k++)
            {
                uint blockIndex = binOff / HiveImage.BlockSize + k;
                ulong entry = laid.Tables[(int)(blockIndex / 512)] + tableFieldOff + (blockIndex % 512) * entrySize;
                ulong binVa = laid.Bins[binOff];
                ulong flags = (k == 0 ? 1UL : 0UL) | 2UL; // "new allocation" on a bin's first block, "in pool" on all
                if (hasBlockAddress)
                {
                    w.View(entryT, entry).Set("BlockAddress", binVa + k * HiveImage.BlockSize);
                    w.View(entryT, entry).SetIfPresent("BinAddress", binVa | flags);
                }
                else
                {
                    w.View(entryT, entry).Set("PermanentBinAddress", binVa | flags);
                    w.View(entryT, entry).Set("BlockOffset", k * HiveImage.BlockSize);
                }
                w.View(entryT, entry).SetIfPresent("MemAlloc", k == 0 ? binSize : 0);
            }
        }
        if (opts.UseSmallDir)
        {
            if (tableCount > 1) throw new InvalidOperationException($"lab: a SmallDir map holds 512 blocks; this hive has {blocks}");
            ulong smallDir = stable + types.ResolvePath(dualT, "SmallDir").Offset;
            mem.WriteU64(smallDir, laid.Tables[0]);
            w.View(dualT, stable).Set("Map", smallDir);
            laid.Map = smallDir;
        }
        else
        {
            var dirT = types.Get("nt", "_HMAP_DIRECTORY");
            var (dirOff, dirField) = types.ResolvePath(dirT, "Directory");
            ulong dir = Kalloc(dirT.Size, 0x10);
            for (int t = 0; t < tableCount; t++) mem.WriteU64(dir + dirOff + (ulong)t * dirField.Inner!.Size, laid.Tables[t]);
            w.View(dualT, stable).Set("Map", dir);
            laid.Map = dir;
        }

        // Names.
        string rootName = opts.HiveRootPath ?? rootPath;
        Unicode(w, cm, cmT, "HiveRootPath", rootName, Kalloc);
        Unicode(w, cm, cmT, "FileUserName", userName, Kalloc);
        Unicode(w, cm, cmT, "FileFullPath", opts.FileFullPath ?? $@"\Device\HarddiskVolume2\Windows\System32\config\{leaf}", Kalloc);

        // nt!CmpHiveListHead.
        ulong head = syms.GetSymbolAddress("nt!CmpHiveListHead") ?? throw new ScenarioLayoutException("symbol nt!CmpHiveListHead is not in the symbol table");
        mem.Map(head, 16);
        if (mem.ReadU64(head) == 0) { mem.WriteU64(head, head); mem.WriteU64(head + 8, head); }
        ulong link = cm + types.ResolvePath(cmT, "HiveList").Offset;
        ulong last = mem.ReadU64(head + 8);
        mem.WriteU64(link, head); mem.WriteU64(link + 8, last);
        mem.WriteU64(last, link); mem.WriteU64(head + 8, link);
        return laid;
    }

    private static class HiveViewConst
    {
        public const ulong Regf = 0x66676572;
        public const ulong HiveSig = 0xbee0bee0;
    }

    /// <summary>A UNICODE_STRING field (skipped when this build lacks it); empty text = no buffer, MaximumLength 0.</summary>
    private static void Unicode(TypedMemory w, ulong obj, TypeLayout t, string path, string text, Func<ulong, ulong, ulong> alloc)
    {
        if (w.TryOffset(t.Name, path, t.Module) is not { } off) return;
        if (text.Length == 0) { w.View(t, obj).Set(path + ".Length", 0UL).Set(path + ".MaximumLength", 0UL).Set(path + ".Buffer", 0UL); return; }
        w.WriteUnicodeString(obj + off, text, alloc((ulong)System.Text.Encoding.Unicode.GetByteCount(text) + 2, 0x10));
    }
}
