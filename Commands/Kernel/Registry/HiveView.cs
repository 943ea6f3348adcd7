using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Kernel.Registry;

/// <summary>
/// One loaded hive (_CMHIVE): its root key and cells by index. A cell index is (bit 31) Stable/Volatile storage,
/// (bits 30-21) _HMAP_DIRECTORY index, (bits 20-12) _HMAP_TABLE index, (bits 11-0) offset in the 4 KB block.
/// Blocks are read whole (one request each, then cached for the command); map tables are read in windows of entries.
/// </summary>
public sealed class HiveView
{
    public const uint CellNil = 0xffffffff;
    public const uint HiveSignature = 0xbee0bee0;
    public const uint RegfSignature = 0x66676572; // "regf"
    /// <summary>Largest cell accepted (a bin is at most a few MB; value data above 16344 bytes goes to 'db' cells).</summary>
    public const int MaxCellSize = 0x100000;
    /// <summary>Deepest key path (the registry limits depth to 512).</summary>
    public const int MaxPathDepth = 512;
    private const int BlockSize = 0x1000;
    private const int EntryWindow = 32;

    private readonly RegistryReader _rr;
    private readonly KernelReader _r;
    private bool _initDone, _initOk;
    private uint _rootCell = CellNil;
    private readonly ulong[] _map = new ulong[2];
    private readonly uint[] _length = new uint[2];
    private TypeLayout? _entry;
    private ulong _entrySize, _dirStride;
    private bool _entryHasBlockAddress;
    private readonly Dictionary<uint, ulong> _blocks = new();       // (index & ~0xfff) -> block VA
    private readonly Dictionary<uint, ulong> _tables = new();       // (type<<10 | dir) -> _HMAP_TABLE VA
    private readonly Dictionary<uint, Cell> _cells = new();
    private bool _processNoteDone, _processReadWorked;
    private KeyView? _root;
    private bool _rootRead;

    internal HiveView(RegistryReader rr, string name, ulong cmHive)
    {
        _rr = rr; _r = rr.Kernel; Name = name; CmHive = cmHive;
    }

    public string Name { get; }
    public ulong CmHive { get; }
    internal RegistryReader Reader => _rr;
    internal KernelReader Kernel => _r;

    /// <summary>Short name for notes ("SYSTEM" for \REGISTRY\MACHINE\SYSTEM).</summary>
    internal string ShortName
    {
        get { var n = RegistryReader.Normalize(Name); int i = n.LastIndexOf('\\'); return i >= 0 ? n[(i + 1)..] : n; }
    }

    /// <summary>The root key (_HBASE_BLOCK.RootCell); null with a note when unreadable.</summary>
    public KeyView? Root
    {
        get
        {
            if (!_rootRead)
            {
                _rootRead = true;
                if (Init()) _root = ReadKey(_rootCell, "", "root key");
            }
            return _root;
        }
    }

    /// <summary>A key by path relative to the hive root (backslash separated, case-insensitive); null when absent or unreadable (see notes).</summary>
    public KeyView? OpenKey(string path)
    {
        var key = Root;
        if (key is null) return null;
        var parts = path.Split('\\', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length > MaxPathDepth) { _rr.Note($"key path '{path}' is deeper than {MaxPathDepth} levels; not followed"); return null; }
        foreach (var p in parts)
        {
            key = key.SubKey(p);
            if (key is null) return null;
        }
        return key;
    }

    /// <summary>"ControlSet001" from Select\Current (REG_DWORD); null with a note when it cannot be read.</summary>
    public string? CurrentControlSetName()
    {
        var select = OpenKey("Select");
        if (select is null) { if (Root is not null) _rr.Note($@"{ShortName}\Select not found: the current control set is unknown"); return null; }
        var cur = select.GetValue("Current");
        var n = cur?.AsDword();
        if (n is null)
        {
            if (cur is not null) _rr.Note($@"{ShortName}\Select\Current is {RegValue.TypeName(cur.Type)} ({cur.Data.Length} bytes), not a REG_DWORD");
            else _rr.Note($@"{ShortName}\Select has no readable value 'Current'");
            return null;
        }
        if (n.Value is 0 or > 999) { _rr.Note($@"{ShortName}\Select\Current = {n.Value} is not a control set number"); return null; }
        return $"ControlSet{n.Value:D3}";
    }

    // =====================================================================================
    // Hive header: _HHIVE (Storage maps) and _HBASE_BLOCK (RootCell)
    // =====================================================================================

    private bool Init()
    {
        if (_initDone) return _initOk;
        _initDone = true;
        var types = _r.Types;
        try
        {
            var cm = types.Get("nt", "_CMHIVE");
            ulong hiveOff = types.ResolvePath(cm, "Hive").Offset;
            var hhLayout = types.Get("nt", "_HHIVE");
            StructView hive;
            try { hive = _r.Read(hhLayout, CmHive + hiveOff); }
            catch (TargetReadException ex) { _rr.Note($"hive {Name}: _HHIVE at {Output.Fmt.Addr(CmHive + hiveOff)} is not readable ({ex.Message})"); return false; }
            uint sig = (uint)(hive.TryUInt("Signature") ?? 0);
            if (sig != HiveSignature) { _rr.Note($"hive {Name}: _HHIVE at {Output.Fmt.Addr(hive.Address)} has signature {sig:x8}, not {HiveSignature:x8} (not a hive or corrupted)"); return false; }
            ulong baseBlock = hive.TryUInt("BaseBlock") ?? 0;

            var (storageOff, storageType) = hive.Resolve("Storage");
            if (storageType.Kind != TypeKind.Array || storageType.Inner is null)
            { _rr.Note($"nt!_HHIVE.Storage is {storageType}, not an array of _DUAL"); return false; }
            var dual = types.Get("nt", storageType.Inner.Name);
            ulong dualSize = storageType.Inner.Size != 0 ? storageType.Inner.Size : dual.Size;
            ulong mapOff = types.ResolvePath(dual, "Map").Offset, lenOff = types.ResolvePath(dual, "Length").Offset;
            for (int i = 0; i < 2 && (ulong)i < storageType.Count; i++)
            {
                ulong at = storageOff + (ulong)i * dualSize;
                if (at + mapOff + (ulong)_r.PointerSize > (ulong)hive.Length) continue;
                _map[i] = _r.PointerSize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(hive.Bytes[(int)(at + mapOff)..])
                                              : BinaryPrimitives.ReadUInt32LittleEndian(hive.Bytes[(int)(at + mapOff)..]);
                _length[i] = BinaryPrimitives.ReadUInt32LittleEndian(hive.Bytes[(int)(at + lenOff)..]);
            }

            var dir = types.Get("nt", "_HMAP_DIRECTORY");
            var dirField = types.ResolvePath(dir, "Directory");
            _dirStride = dirField.Type.Inner?.Size is > 0 and var ds ? ds : (ulong)_r.PointerSize;
            var table = types.Get("nt", "_HMAP_TABLE");
            var tableField = types.ResolvePath(table, "Table");
            _entry = types.Get("nt", "_HMAP_ENTRY");
            _entrySize = tableField.Type.Inner?.Size is > 0 and var es ? es : _entry.Size;
            _entryHasBlockAddress = _entry.HasField("BlockAddress");
            if (!_entryHasBlockAddress && !(_entry.HasField("PermanentBinAddress") && _entry.HasField("BlockOffset")))
            { _rr.Note("nt!_HMAP_ENTRY has neither BlockAddress nor PermanentBinAddress+BlockOffset on this build: cells cannot be located"); return false; }

            // Base block: only its head (Signature .. RootCell) is needed.
            if (baseBlock == 0) { _rr.Note($"hive {Name}: _HHIVE.BaseBlock is NULL"); return false; }
            var bbLayout = types.Get("nt", "_HBASE_BLOCK");
            ulong rootOff = types.ResolvePath(bbLayout, "RootCell").Offset;
            int want = (int)Math.Max(rootOff + 4, types.ResolvePath(bbLayout, "Signature").Offset + 4);
            var head = new byte[want];
            if (_r.Memory.Read(baseBlock, head) != want) { _rr.Note($"hive {Name}: base block (_HBASE_BLOCK at {Output.Fmt.Addr(baseBlock)}) is not readable"); return false; }
            var bb = new StructView(bbLayout, baseBlock, head, types);
            if (bb.U32("Signature") != RegfSignature) { _rr.Note($"hive {Name}: base block at {Output.Fmt.Addr(baseBlock)} has signature {bb.U32("Signature"):x8}, not 'regf'"); return false; }
            _rootCell = bb.U32("RootCell");
            _initOk = true;
            return true;
        }
        catch (MissingSymbolException ex) { _rr.Note($"hive {Name}: {ex.What} is missing from the symbols; the hive cannot be read"); return false; }
    }

    // =====================================================================================
    // Cells
    // =====================================================================================

    /// <summary>An allocated cell: index, address of its size field, data (after the 4-byte size).</summary>
    internal sealed record Cell(uint Index, ulong Address, byte[] Data)
    {
        public ulong DataAddress => Address + 4;
        public ushort Signature => Data.Length >= 2 ? BinaryPrimitives.ReadUInt16LittleEndian(Data) : (ushort)0;
        public string SignatureText => Data.Length >= 2 ? Printable(Data[0]) + Printable(Data[1]) : "??";
        private static string Printable(byte b) => b is >= 0x20 and < 0x7f ? ((char)b).ToString() : $"\\x{b:x2}";
    }

    /// <summary>The cell <paramref name="index"/>; null with a note naming <paramref name="what"/>, the index and the address when it cannot be read.</summary>
    internal Cell? GetCell(uint index, string what)
    {
        if (!Init()) return null;
        if (_cells.TryGetValue(index, out var cached)) return cached;
        if (index == CellNil) { _rr.Note($"hive {Name}: {what}: cell index is HCELL_NIL"); return null; }
        int type = (int)(index >> 31);
        uint offset = index & 0x7fffffff;
        string storage = type == 0 ? "stable" : "volatile";
        if (_map[type] == 0) { _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} is in {storage} storage, which has no map"); return null; }
        if (offset >= _length[type]) { _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} is beyond the {storage} storage length 0x{_length[type]:x}"); return null; }
        ulong? block = BlockAddress(index, what);
        if (block is null) return null;
        ulong va = block.Value + (index & 0xfff);
        var mem = MemoryFor(va, index, what);
        if (mem is null) return null;
        // The whole block in one request: later cells of this block come from the cache.
        int inBlock = mem.Prefetch(block.Value, BlockSize);
        Span<byte> hdr = stackalloc byte[4];
        if (mem.Read(va, hdr) != 4)
        {
            if (inBlock == 0 && _rr.IsUserAddress(va) && !_processReadWorked) NoteProcessUnreadable(va, index, what);
            else NoteUnreadable(va, index, what, "cell header");
            return null;
        }
        if (_rr.IsUserAddress(va)) _processReadWorked = true;
        int raw = BinaryPrimitives.ReadInt32LittleEndian(hdr);
        if (raw >= 0) { _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} at {Output.Fmt.Addr(va)} is free (size field +0x{raw:x}); stale index or corrupted hive"); return null; }
        long size = -(long)raw;
        if (size < 8 || size > MaxCellSize) { _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} at {Output.Fmt.Addr(va)} has an invalid size 0x{size:x}"); return null; }
        var data = new byte[size - 4];
        int got = mem.Read(va + 4, data);
        if (got != data.Length) { NoteUnreadable(va + 4 + (ulong)got, index, what, $"cell data (0x{data.Length:x} bytes at {Output.Fmt.Addr(va + 4)})"); return null; }
        var cell = new Cell(index, va, data);
        _cells[index] = cell;
        return cell;
    }

    private void NoteUnreadable(ulong at, uint index, string what, string part)
    {
        if (_rr.IsUserAddress(at) && _rr.RegistryProcess(out _) is { } proc)
            _rr.Note($"hive {Name}: {what}: {part} of cell 0x{index:x8} at {Output.Fmt.Addr(at)} is not readable in the Registry process (EPROCESS {Output.Fmt.Addr(proc)}) (paged out or not in the dump)");
        else
            _rr.Note($"hive {Name}: {what}: {part} of cell 0x{index:x8} at {Output.Fmt.Addr(at)} is not readable (paged out or not in the dump)");
    }

    /// <summary>The memory a block at <paramref name="va"/> is read from: kernel, or the Registry process for user addresses.</summary>
    private TargetMemory? MemoryFor(ulong va, uint index, string what)
    {
        if (!_rr.IsUserAddress(va)) return _r.Memory;
        var proc = _rr.RegistryProcess(out var why);
        if (proc is null)
        {
            _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} is at user address {Output.Fmt.Addr(va)}, but the Registry process is unknown ({why})");
            return null;
        }
        return _r.Memory.ForProcess(proc.Value);
    }

    /// <summary>Nothing of the Registry process could be read so far: the target cannot read in its context (or has no user pages).</summary>
    private void NoteProcessUnreadable(ulong va, uint index, string what)
    {
        if (_processNoteDone) return;
        _processNoteDone = true;
        ulong proc = _rr.RegistryProcess(out _) ?? 0;
        _rr.Note($"{ShortName} hive bins are in the Registry process (EPROCESS {Output.Fmt.Addr(proc)}) address space, which this target cannot read; " +
                 $"a kernel dump without user pages does not contain them (first unreadable: {what}, cell 0x{index:x8} at {Output.Fmt.Addr(va)})");
    }

    /// <summary>Block VA of a cell index through the map (cached per block); null with a note.</summary>
    private ulong? BlockAddress(uint index, string what)
    {
        uint key = index & 0xfffff000;
        if (_blocks.TryGetValue(key, out var b)) return b;
        int type = (int)(index >> 31);
        uint dir = (index >> 21) & 0x3ff, tbl = (index >> 12) & 0x1ff;
        uint tkey = ((uint)type << 10) | dir;
        if (!_tables.TryGetValue(tkey, out var table))
        {
            ulong slot = _map[type] + dir * _dirStride;
            var t = _r.TryReadPointer(slot);
            if (t is null) { _rr.Note($"hive {Name}: {what}: map directory entry {dir} for cell 0x{index:x8} (at {Output.Fmt.Addr(slot)}) is not readable"); return null; }
            table = t.Value;
            _tables[tkey] = table;
        }
        if (table == 0) { _rr.Note($"hive {Name}: {what}: cell 0x{index:x8} has no map table (directory entry {dir} is NULL)"); return null; }
        // A window of entries around the one needed: neighbouring blocks cost no further round trip.
        uint first = tbl & ~(uint)(EntryWindow - 1);
        _r.Memory.Prefetch(table + first * _entrySize, (int)(EntryWindow * _entrySize));
        ulong entryVa = table + tbl * _entrySize;
        var raw = _r.Memory.ReadExact(entryVa, (int)_entry!.Size);
        if (raw is null) { _rr.Note($"hive {Name}: {what}: map entry of cell 0x{index:x8} (_HMAP_ENTRY at {Output.Fmt.Addr(entryVa)}) is not readable"); return null; }
        var e = new StructView(_entry, entryVa, raw, _r.Types);
        ulong va = _entryHasBlockAddress
            ? e.Ptr("BlockAddress") & ~0xFUL
            : (e.Ptr("PermanentBinAddress") & ~0xFUL) + e.UInt("BlockOffset");
        if (va == 0 || (_entryHasBlockAddress ? e.Ptr("BlockAddress") : e.Ptr("PermanentBinAddress")) < 0x10)
        { _rr.Note($"hive {Name}: {what}: block of cell 0x{index:x8} is not present (_HMAP_ENTRY at {Output.Fmt.Addr(entryVa)} has no address)"); return null; }
        _blocks[key] = va;
        return va;
    }

    // =====================================================================================
    // Key nodes
    // =====================================================================================

    internal const ushort SigNk = 0x6b6e, SigVk = 0x6b76, SigLf = 0x666c, SigLh = 0x686c, SigLi = 0x696c, SigRi = 0x6972, SigDb = 0x6264;
    internal const ushort KeyCompName = 0x20;
    internal const ushort ValueCompName = 0x1;

    /// <summary>A key or value name as stored: one byte per character when compressed (KEY_COMP_NAME / VALUE_COMP_NAME), else UTF-16.</summary>
    internal static string DecodeName(ReadOnlySpan<byte> bytes, bool compressed) =>
        compressed ? Encoding.Latin1.GetString(bytes) : Encoding.Unicode.GetString(bytes[..(bytes.Length & ~1)]);

    /// <summary>Reads the key node ('nk') at <paramref name="cell"/>; null with a note when unreadable or not a key node.</summary>
    internal KeyView? ReadKey(uint cell, string path, string what)
    {
        var c = GetCell(cell, what);
        if (c is null) return null;
        var layout = _r.Types.TryGet("nt", "_CM_KEY_NODE");
        if (layout is null) { _rr.MissingSymbol("type nt!_CM_KEY_NODE", "type nt!_CM_KEY_NODE is not in the symbols"); return null; }
        var nk = new StructView(layout, c.DataAddress, c.Data, _r.Types);
        if (c.Signature != SigNk) { _rr.Note($"hive {Name}: {what}: cell 0x{cell:x8} at {Output.Fmt.Addr(c.Address)} has signature '{c.SignatureText}', not 'nk'"); return null; }
        ulong nameOff = nk.OffsetOf("Name");
        ulong? len = nk.TryUInt("NameLength");
        ulong? flags = nk.TryUInt("Flags");
        if (len is null || flags is null || nameOff + len.Value > (ulong)c.Data.Length)
        { _rr.Note($"hive {Name}: {what}: key node 0x{cell:x8} at {Output.Fmt.Addr(c.Address)} is truncated (name of {len ?? 0} bytes does not fit in 0x{c.Data.Length:x})"); return null; }
        var nameBytes = c.Data.AsSpan((int)nameOff, (int)len.Value);
        string name = DecodeName(nameBytes, (flags.Value & KeyCompName) != 0);
        string full = path.Length == 0 ? name : path + "\\" + name;
        if (what == "root key") full = "";
        return new KeyView(this, cell, name, full, nk);
    }
}
