using System.Buffers.Binary;
using System.Text;
using NtSleuth.Lab.Registry;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Bench;

/// <summary>
/// The manual registry steps of a procedure (<c>!reg hivelist</c>, then <c>!reg querykey</c> down to a key and its
/// value) replayed at the hive's real addresses through a <see cref="ManualProcedureBuilder"/>, so they are counted as
/// every other step (KD packets per request, the engine's cache: nothing read twice): the hive list (each _CMHIVE as
/// one <c>dt</c>, its file names), then per cell the map translation (the directory slot, the _HMAP_ENTRY) and the
/// cell itself (its size field, then its data: the size is not known before), per path level the key node and its
/// subkey index, candidate key nodes by hash/hint as the kernel's own lookup does (every one for 'li'), and at the key
/// the value list, the value nodes up to the wanted one and its data cell. Bins in the Registry process (Windows 10
/// 2004+) are read in that process's context, as <c>!reg</c> must.
/// </summary>
public sealed class RegManualReplay
{
    private readonly ManualProcedureBuilder _m;
    private readonly KernelScenarioBuilder _b;
    private readonly ulong? _registryProcess;
    private ulong _cmHive, _map;
    private byte[]? _cm;
    private readonly ulong _entrySize;
    private readonly bool _blockAddress;

    public RegManualReplay(ManualProcedureBuilder m, KernelScenarioBuilder b, ulong? registryProcess)
    {
        _m = m; _b = b; _registryProcess = registryProcess;
        var entry = b.Layout("_HMAP_ENTRY");
        _entrySize = entry.Size;
        _blockAddress = entry.HasField("BlockAddress");
    }

    /// <summary>Requests the replay made that could not be read (a lab fault would make the step incomplete).</summary>
    public int Unreadable { get; private set; }

    /// <summary><c>!reg hivelist</c>: walks nt!CmpHiveListHead, dt of each _CMHIVE and its two file names; selects the hive whose FileUserName ends in <paramref name="leaf"/>.</summary>
    public bool HiveList(string leaf)
    {
        _m.Note("!reg hivelist (CmpHiveListHead, dt _CMHIVE, file names)");
        ulong head = _b.Symbol("CmpHiveListHead");
        ulong linkOff = _b.OffsetOf("_CMHIVE", "HiveList");
        int cmSize = (int)_b.SizeOf("_CMHIVE");
        var h = _m.Read(head, 16);
        ulong flink = U64(h, 0);
        var seen = new HashSet<ulong>();
        while (flink != head && flink != 0 && seen.Add(flink) && seen.Count <= 4096)
        {
            ulong cm = flink - linkOff;
            var cb = _m.Read(cm, cmSize);
            if (cb is null) { Unreadable++; break; }
            string? user = null;
            foreach (var f in new[] { "FileFullPath", "FileUserName" })
            {
                int off = (int)_b.OffsetOf("_CMHIVE", f);
                int len = BinaryPrimitives.ReadUInt16LittleEndian(cb.AsSpan(off));
                ulong buf = U64(cb, off + 8);
                var s = len == 0 || buf == 0 ? null : _m.Read(buf, len);
                if (f == "FileUserName" && s is not null) user = Encoding.Unicode.GetString(s);
            }
            if (_cm is null && user is not null && user.EndsWith("\\" + leaf, StringComparison.OrdinalIgnoreCase))
            {
                _cmHive = cm; _cm = cb;
                _map = U64(cb, (int)(_b.OffsetOf("_CMHIVE", "Hive.Storage") + _b.OffsetOf("_DUAL", "Map")));
            }
            flink = U64(cb, (int)linkOff);
        }
        return _cm is not null;
    }

    /// <summary><c>!reg querykey</c> of <paramref name="path"/> (relative to the selected hive's root), then the value <paramref name="valueName"/>: its data, null when not found.</summary>
    public byte[]? QueryValue(string path, string valueName)
    {
        if (_cm is null) return null;
        _m.Note($@"!reg querykey ...\{path} and its value {valueName} (map entries, nk, subkey index, vk, data cells)");
        ulong bb = U64(_cm, (int)_b.OffsetOf("_CMHIVE", "Hive.BaseBlock"));
        var rc = _m.Read(bb + _b.OffsetOf("_HBASE_BLOCK", "RootCell"), 4);
        if (rc is null) { Unreadable++; return null; }
        uint cell = BinaryPrimitives.ReadUInt32LittleEndian(rc);
        var nk = Cell(cell);
        foreach (var part in path.Split('\\', StringSplitOptions.RemoveEmptyEntries))
        {
            if (nk is null) return null;
            uint count = U32(nk, HiveImage.NkSubKeyCounts);
            uint list = U32(nk, HiveImage.NkSubKeyLists);
            if (count == 0) return null;
            nk = FindSubKey(list, part, 0);
        }
        if (nk is null) return null;
        uint values = U32(nk, HiveImage.NkValueCount), vlist = U32(nk, HiveImage.NkValueList);
        if (values == 0) return null;
        var vl = Cell(vlist);
        if (vl is null) return null;
        for (int i = 0; i < values && 4 * i + 4 <= vl.Length; i++)
        {
            var vk = Cell(U32(vl, 4 * i));
            if (vk is null || !NameIs(vk, HiveImage.VkNameLength, HiveImage.VkName, HiveImage.VkFlags, HiveImage.ValueCompName, valueName)) continue;
            uint len = U32(vk, HiveImage.VkDataLength);
            if ((len & 0x80000000) != 0) return vk.AsSpan(HiveImage.VkData, (int)Math.Min(len & 0x7fffffff, 4)).ToArray();
            return Cell(U32(vk, HiveImage.VkData));
        }
        return null;
    }

    private byte[]? FindSubKey(uint listCell, string name, int depth)
    {
        var idx = Cell(listCell);
        if (idx is null || idx.Length < 4 || depth > 2) return null;
        string sig = Encoding.ASCII.GetString(idx, 0, 2);
        int n = BinaryPrimitives.ReadUInt16LittleEndian(idx.AsSpan(2));
        uint lh = HiveImage.LhHash(name), lf = HiveImage.LfHint(name);
        for (int i = 0; i < n; i++)
        {
            byte[]? hit;
            switch (sig)
            {
                case "ri":
                    if (4 + 4 * i + 4 > idx.Length) return null;
                    hit = FindSubKey(U32(idx, 4 + 4 * i), name, depth + 1);
                    if (hit is not null) return hit;
                    continue;
                case "li":
                    if (4 + 4 * i + 4 > idx.Length) return null;
                    hit = Cell(U32(idx, 4 + 4 * i));
                    break;
                case "lh" or "lf":
                    if (4 + 8 * i + 8 > idx.Length) return null;
                    uint hint = U32(idx, 4 + 8 * i + 4);
                    if (sig == "lh" ? hint != lh : !LfMayMatch(hint, lf, name)) continue;
                    hit = Cell(U32(idx, 4 + 8 * i));
                    break;
                default: return null;
            }
            if (hit is not null && NameIs(hit, HiveImage.NkNameLength, HiveImage.NkName, HiveImage.NkFlags, HiveImage.KeyCompName, name)) return hit;
        }
        return null;
    }

    private static bool LfMayMatch(uint hint, uint want, string name)
    {
        // The hint holds the first four characters: compare those present (case-insensitively).
        for (int i = 0; i < 4 && i < name.Length; i++)
        {
            char a = char.ToUpperInvariant((char)((hint >> (8 * i)) & 0xff)), b = char.ToUpperInvariant((char)((want >> (8 * i)) & 0xff));
            if (a != b) return false;
        }
        return true;
    }

    private static bool NameIs(byte[] c, int lenOff, int nameOff, int flagsOff, ushort compFlag, string want)
    {
        if (c.Length < nameOff) return false;
        int len = BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(lenOff));
        bool comp = (BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(flagsOff)) & compFlag) != 0;
        if (nameOff + len > c.Length) return false;
        var s = comp ? Encoding.Latin1.GetString(c, nameOff, len) : Encoding.Unicode.GetString(c, nameOff, len & ~1);
        return s.Equals(want, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>A cell's data: the directory slot and the _HMAP_ENTRY (map translation), the size field, then the data.</summary>
    private byte[]? Cell(uint index)
    {
        if (index == HiveImage.CellNil || _map == 0) return null;
        uint dir = (index >> 21) & 0x3ff, tbl = (index >> 12) & 0x1ff;
        if ((index >> 31) != 0) return null; // volatile storage: the lab's hives have none on the paths read
        var slot = _m.Read(_map + dir * 8, 8);
        if (slot is null) { Unreadable++; return null; }
        ulong table = U64(slot, 0);
        var e = table == 0 ? null : _m.Read(table + tbl * _entrySize, (int)_entrySize);
        if (e is null) { Unreadable++; return null; }
        ulong block = _blockAddress
            ? U64(e, (int)_b.OffsetOf("_HMAP_ENTRY", "BlockAddress")) & ~0xFUL
            : (U64(e, (int)_b.OffsetOf("_HMAP_ENTRY", "PermanentBinAddress")) & ~0xFUL) + U32(e, (int)_b.OffsetOf("_HMAP_ENTRY", "BlockOffset"));
        ulong va = block + (index & 0xfff);
        var size = ReadAt(va, 4);
        if (size is null) { Unreadable++; return null; }
        int raw = BinaryPrimitives.ReadInt32LittleEndian(size);
        if (raw >= 0 || -(long)raw > 0x100000 || -(long)raw < 8) return null;
        var data = ReadAt(va + 4, -raw - 4);
        if (data is null) Unreadable++;
        return data;
    }

    private byte[]? ReadAt(ulong va, int length)
    {
        if (va >= 0xffff8000_00000000 || _registryProcess is not { } p) return _m.Read(va, length);
        return _m.Engine!.ForProcess(p).ReadExact(va, length);
    }

    private static ulong U64(byte[]? b, int off) => b is null || off + 8 > b.Length ? 0 : BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(off));
    private static uint U32(byte[]? b, int off) => b is null || off + 4 > b.Length ? 0 : BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(off));
}
