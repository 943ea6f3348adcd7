using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Lab.Registry;

/// <summary>How a key's subkeys are indexed: 'lh' (hash leaves, Windows XP+ default), 'lf' (4-character hints) or 'li' (plain).</summary>
public enum SubKeyListKind { Lh, Lf, Li }

/// <summary>
/// A registry hive built from a key tree, as real hive bytes (the on-disk "regf" format that the kernel keeps in memory):
/// 'hbin' bins (4 KB multiples, FileOffset/Size), allocated cells (negative size, 8-byte aligned; the unused tail of a
/// bin is one free cell), 'nk' key nodes (ASCII names compressed with KEY_COMP_NAME, others UTF-16), 'lh'/'lf'/'li'
/// subkey leaves sorted by upcased name (split under an 'ri' when longer than the leaf size), value lists, 'vk' values
/// (data of 4 bytes or less inline, larger in a data cell, above 16344 bytes in a 'db' big-data cell).
/// The bytes do not depend on the Windows build; <see cref="HiveLayer"/> lays them into a kernel.
/// <code>
/// var h = new HiveImage();
/// h.Key("Select").Dword("Current", 1);
/// h.Key(@"ControlSet001\Services\EncryptionLegacy").String("Group", "FSFilter Encryption").Dword("Start", 0).Dword("Type", 2);
/// </code>
/// </summary>
public sealed class HiveImage
{
    public const uint CellNil = 0xffffffff;
    public const int BlockSize = 0x1000;
    public const int BinHeaderSize = 0x20;
    /// <summary>Largest value data stored in one cell; more goes to a 'db' cell with segments of this size.</summary>
    public const int BigDataSegment = 16344;

    // On-disk cell formats (documented; the reader takes them from the symbols, a test checks they agree).
    public const int NkFlags = 0x02, NkLastWrite = 0x04, NkParent = 0x10, NkSubKeyCounts = 0x14, NkSubKeyLists = 0x1c, NkValueCount = 0x24,
        NkValueList = 0x28, NkSecurity = 0x2c, NkClass = 0x30, NkMaxNameLen = 0x34, NkNameLength = 0x48, NkClassLength = 0x4a, NkName = 0x4c;
    public const int VkNameLength = 0x02, VkDataLength = 0x04, VkData = 0x08, VkType = 0x0c, VkFlags = 0x10, VkName = 0x14;
    public const ushort KeyHiveEntry = 0x4, KeyNoDelete = 0x8, KeyCompName = 0x20, ValueCompName = 0x1;

    public HiveImage(string rootName = "ROOT") => Root = new HiveKey(this, rootName, null);

    public HiveKey Root { get; }
    /// <summary>Size of a new bin (a multiple of 4 KB); bigger cells get a bigger bin. Bins of several blocks exercise BlockOffset.</summary>
    public int BinSize { get; set; } = 0x2000;
    /// <summary>Most entries of one subkey leaf; longer lists are split into leaves under an 'ri'.</summary>
    public int MaxLeafEntries { get; set; } = 500;
    /// <summary>Hive format minor version (_HBASE_BLOCK.Minor): 5 on Windows 8.1+, 3 on Windows 7.</summary>
    public uint Minor { get; set; } = 5;
    public long LastWriteTime { get; set; } = 0x01d6_0000_0000_0000;

    /// <summary>The key at <paramref name="path"/> below the root (backslash separated), created with its parents when new.</summary>
    public HiveKey Key(string path) => Root.Key(path);

    /// <summary>Serialises the tree into bins.</summary>
    public HiveBuild Build() => new Serializer(this).Run();

    // =====================================================================================
    private sealed class Serializer(HiveImage image)
    {
        private byte[] _buf = new byte[0x10000];
        private int _binStart = -1, _binEnd, _cur;
        private readonly HiveBuild _out = new();

        public HiveBuild Run()
        {
            uint root = EmitKey(image.Root, CellNil, "");
            CloseBin();
            _out.RootCell = root;
            _out.Bins = _buf.AsSpan(0, _binEnd).ToArray();
            return _out;
        }

        private void Ensure(int size)
        {
            if (size <= _buf.Length) return;
            Array.Resize(ref _buf, Math.Max(size, _buf.Length * 2));
        }

        private void CloseBin()
        {
            if (_binStart < 0 || _cur >= _binEnd) return;
            // The rest of the bin is one free cell (positive size).
            BinaryPrimitives.WriteInt32LittleEndian(_buf.AsSpan(_cur), _binEnd - _cur);
            _cur = _binEnd;
        }

        private void NewBin(int atLeast)
        {
            CloseBin();
            int size = Math.Max(image.BinSize, (atLeast + BinHeaderSize + BlockSize - 1) / BlockSize * BlockSize);
            if (size % BlockSize != 0) throw new InvalidOperationException("lab: bin sizes are multiples of 4 KB");
            _binStart = _binEnd;
            _binEnd = _binStart + size;
            Ensure(_binEnd);
            var h = _buf.AsSpan(_binStart, BinHeaderSize);
            h.Clear();
            "hbin"u8.CopyTo(h);
            BinaryPrimitives.WriteUInt32LittleEndian(h[4..], (uint)_binStart);   // FileOffset (from the first bin)
            BinaryPrimitives.WriteUInt32LittleEndian(h[8..], (uint)size);        // Size
            BinaryPrimitives.WriteInt64LittleEndian(h[0x14..], image.LastWriteTime);
            _out.BinList.Add(((uint)_binStart, (uint)size));
            _cur = _binStart + BinHeaderSize;
        }

        /// <summary>Allocates a cell with <paramref name="payload"/> bytes of data; returns its index (offset from the first bin).</summary>
        private uint Alloc(int payload)
        {
            int size = (payload + 4 + 7) & ~7;
            if (_binStart < 0 || _cur + size > _binEnd) NewBin(size);
            BinaryPrimitives.WriteInt32LittleEndian(_buf.AsSpan(_cur), -size);
            _buf.AsSpan(_cur + 4, size - 4).Clear();
            uint index = (uint)_cur;
            _cur += size;
            return index;
        }

        private Span<byte> Data(uint cell, int offset, int length) => _buf.AsSpan((int)cell + 4 + offset, length);
        private void U16(uint cell, int off, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Data(cell, off, 2), v);
        private void U32(uint cell, int off, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Data(cell, off, 4), v);
        private void Sig(uint cell, string s) { Data(cell, 0, 2)[0] = (byte)s[0]; Data(cell, 0, 2)[1] = (byte)s[1]; }

        private uint EmitKey(HiveKey k, uint parent, string path)
        {
            var (nameBytes, comp) = HiveKey.EncodeName(k.Name, k.ForceUtf16Name);
            uint nk = Alloc(NkName + nameBytes.Length);
            _out.KeyCells[path] = nk;

            // Values.
            var vcells = new List<uint>();
            foreach (var v in k.ValueList)
            {
                var (vn, vcomp) = HiveKey.EncodeName(v.Name, false);
                uint vk = Alloc(VkName + vn.Length);
                _out.ValueCells[(path, v.Name)] = vk;
                Sig(vk, "vk");
                U16(vk, VkNameLength, (ushort)vn.Length);
                U32(vk, VkType, v.Type);
                U16(vk, VkFlags, vcomp ? ValueCompName : (ushort)0);
                vn.CopyTo(Data(vk, VkName, vn.Length));
                if (v.Data.Length <= 4)
                {
                    U32(vk, VkDataLength, 0x80000000u | (uint)v.Data.Length);
                    v.Data.CopyTo(Data(vk, VkData, v.Data.Length));
                }
                else
                {
                    U32(vk, VkDataLength, (uint)v.Data.Length);
                    uint dcell = v.Data.Length > BigDataSegment && image.Minor >= 4 ? EmitBigData(v.Data) : EmitBlob(v.Data);
                    U32(vk, VkData, dcell);
                    _out.DataCells[(path, v.Name)] = dcell;
                }
                vcells.Add(vk);
            }
            uint vlist = CellNil;
            if (vcells.Count > 0)
            {
                vlist = Alloc(4 * vcells.Count);
                for (int i = 0; i < vcells.Count; i++) U32(vlist, 4 * i, vcells[i]);
                _out.ValueListCells[path] = vlist;
            }

            // Subkeys, sorted by upcased name (as the kernel keeps them).
            var children = k.Children.OrderBy(c => c.Name.ToUpperInvariant(), StringComparer.Ordinal).ToList();
            var childCells = new List<(uint Cell, string Name)>();
            foreach (var c in children)
                childCells.Add((EmitKey(c, nk, path.Length == 0 ? c.Name : path + "\\" + c.Name), c.Name));
            uint list = CellNil;
            if (childCells.Count > 0)
            {
                int leafSize = Math.Max(1, k.LeafSize ?? image.MaxLeafEntries);
                var leaves = new List<uint>();
                for (int i = 0; i < childCells.Count; i += leafSize)
                    leaves.Add(EmitLeaf(k.ListKind, childCells.Skip(i).Take(leafSize).ToList()));
                if (leaves.Count == 1) list = leaves[0];
                else
                {
                    list = Alloc(4 + 4 * leaves.Count);
                    Sig(list, "ri");
                    U16(list, 2, (ushort)leaves.Count);
                    for (int i = 0; i < leaves.Count; i++) U32(list, 4 + 4 * i, leaves[i]);
                }
                _out.SubKeyListCells[path] = list;
                _out.LeafCells[path] = leaves;
            }

            Sig(nk, "nk");
            ushort flags = (ushort)((comp ? KeyCompName : 0) | (parent == CellNil ? KeyHiveEntry | KeyNoDelete : 0));
            U16(nk, NkFlags, flags);
            BinaryPrimitives.WriteInt64LittleEndian(Data(nk, NkLastWrite, 8), image.LastWriteTime);
            U32(nk, NkParent, parent);
            U32(nk, NkSubKeyCounts, (uint)childCells.Count);
            U32(nk, NkSubKeyCounts + 4, 0);
            U32(nk, NkSubKeyLists, list);
            U32(nk, NkSubKeyLists + 4, CellNil);
            U32(nk, NkValueCount, (uint)vcells.Count);
            U32(nk, NkValueList, vlist);
            U32(nk, NkSecurity, CellNil);
            U32(nk, NkClass, CellNil);
            U32(nk, NkMaxNameLen, (uint)children.Select(c => c.Name.Length * 2).DefaultIfEmpty(0).Max());
            U16(nk, NkNameLength, (ushort)nameBytes.Length);
            U16(nk, NkClassLength, 0);
            nameBytes.CopyTo(Data(nk, NkName, nameBytes.Length));
            return nk;
        }

        private uint EmitLeaf(SubKeyListKind kind, List<(uint Cell, string Name)> entries)
        {
            int stride = kind == SubKeyListKind.Li ? 4 : 8;
            uint leaf = Alloc(4 + stride * entries.Count);
            Sig(leaf, kind switch { SubKeyListKind.Lh => "lh", SubKeyListKind.Lf => "lf", _ => "li" });
            U16(leaf, 2, (ushort)entries.Count);
            for (int i = 0; i < entries.Count; i++)
            {
                U32(leaf, 4 + stride * i, entries[i].Cell);
                if (kind == SubKeyListKind.Lh) U32(leaf, 8 + stride * i, LhHash(entries[i].Name));
                else if (kind == SubKeyListKind.Lf) U32(leaf, 8 + stride * i, LfHint(entries[i].Name));
            }
            return leaf;
        }

        private uint EmitBlob(byte[] data)
        {
            uint c = Alloc(data.Length);
            data.CopyTo(Data(c, 0, data.Length));
            return c;
        }

        private uint EmitBigData(byte[] data)
        {
            var segs = new List<uint>();
            for (int i = 0; i < data.Length; i += BigDataSegment)
                segs.Add(EmitBlob(data.AsSpan(i, Math.Min(BigDataSegment, data.Length - i)).ToArray()));
            uint list = Alloc(4 * segs.Count);
            for (int i = 0; i < segs.Count; i++) U32(list, 4 * i, segs[i]);
            uint db = Alloc(8);
            Sig(db, "db");
            U16(db, 2, (ushort)segs.Count);
            U32(db, 4, list);
            return db;
        }
    }

    /// <summary>'lh' hash: h = 37 * h + upcase(c).</summary>
    public static uint LhHash(string name)
    {
        uint h = 0;
        foreach (char c in name) h = unchecked(h * 37 + char.ToUpperInvariant(c));
        return h;
    }

    /// <summary>'lf' hint: the first four characters as bytes (0 when a character does not fit in a byte, 0-padded).</summary>
    public static uint LfHint(string name)
    {
        uint h = 0;
        for (int i = 0; i < 4 && i < name.Length; i++)
            h |= (uint)(name[i] <= 0xff ? (byte)name[i] : 0) << (8 * i);
        return h;
    }
}

/// <summary>A key of a <see cref="HiveImage"/>; every method returns the key for chaining.</summary>
public sealed class HiveKey
{
    private readonly HiveImage _image;
    private readonly List<HiveKey> _children = new();
    private readonly List<(string Name, uint Type, byte[] Data)> _values = new();

    internal HiveKey(HiveImage image, string name, HiveKey? parent) { _image = image; Name = name; Parent = parent; }

    public string Name { get; }
    public HiveKey? Parent { get; }
    public IReadOnlyList<HiveKey> Children => _children;
    public IReadOnlyList<(string Name, uint Type, byte[] Data)> ValueList => _values;
    public SubKeyListKind ListKind { get; private set; } = SubKeyListKind.Lh;
    public int? LeafSize { get; private set; }
    /// <summary>Store the name as UTF-16 even when it would compress (Windows compresses names whose characters all fit in a byte).</summary>
    public bool ForceUtf16Name { get; private set; }

    /// <summary>The subkey at <paramref name="path"/> (created when new; names compare case-insensitively, as in the registry).</summary>
    public HiveKey Key(string path)
    {
        var k = this;
        foreach (var part in path.Split('\\', StringSplitOptions.RemoveEmptyEntries))
        {
            var c = k._children.FirstOrDefault(x => string.Equals(x.Name, part, StringComparison.OrdinalIgnoreCase));
            if (c is null) { c = new HiveKey(_image, part, k); k._children.Add(c); }
            k = c;
        }
        return k;
    }

    /// <summary>Adds <paramref name="count"/> subkeys named <paramref name="prefix"/>0000.. (big lists that need an 'ri').</summary>
    public HiveKey ManySubKeys(string prefix, int count)
    {
        for (int i = 0; i < count; i++) Key($"{prefix}{i:D4}");
        return this;
    }

    public HiveKey Value(string name, uint type, byte[] data)
    {
        _values.RemoveAll(v => string.Equals(v.Name, name, StringComparison.OrdinalIgnoreCase));
        _values.Add((name, type, data));
        return this;
    }

    public HiveKey String(string name, string value) => Value(name, 1, Encoding.Unicode.GetBytes(value + "\0"));
    public HiveKey ExpandString(string name, string value) => Value(name, 2, Encoding.Unicode.GetBytes(value + "\0"));
    public HiveKey Binary(string name, byte[] data) => Value(name, 3, data);
    public HiveKey Dword(string name, uint value) => Value(name, 4, BitConverter.GetBytes(value));
    public HiveKey Qword(string name, ulong value) => Value(name, 11, BitConverter.GetBytes(value));
    public HiveKey MultiString(string name, params string[] values) =>
        Value(name, 7, Encoding.Unicode.GetBytes(string.Concat(values.Select(v => v + "\0")) + "\0"));

    /// <summary>Index kind of this key's subkey list.</summary>
    public HiveKey List(SubKeyListKind kind) { ListKind = kind; return this; }
    /// <summary>Leaf size for this key's subkey list (smaller than the count: an 'ri' over several leaves).</summary>
    public HiveKey Leaves(int entriesPerLeaf) { LeafSize = entriesPerLeaf; return this; }
    public HiveKey Utf16Name(bool on = true) { ForceUtf16Name = on; return this; }

    internal static (byte[] Bytes, bool Compressed) EncodeName(string name, bool forceUtf16)
    {
        bool comp = !forceUtf16 && name.All(c => c <= 0xff);
        return comp ? (Encoding.Latin1.GetBytes(name), true) : (Encoding.Unicode.GetBytes(name), false);
    }
}

/// <summary>The serialised hive: bins (from the first bin; cell index = offset in here), root cell, and where things went.</summary>
public sealed class HiveBuild
{
    public byte[] Bins { get; internal set; } = [];
    public uint RootCell { get; internal set; }
    /// <summary>(offset, size) of every bin.</summary>
    public List<(uint Offset, uint Size)> BinList { get; } = new();
    /// <summary>Key path ("" = root, "ControlSet001\Services") -> its 'nk' cell.</summary>
    public Dictionary<string, uint> KeyCells { get; } = new(StringComparer.OrdinalIgnoreCase);
    public Dictionary<(string Key, string Value), uint> ValueCells { get; } = new();
    public Dictionary<(string Key, string Value), uint> DataCells { get; } = new();
    public Dictionary<string, uint> ValueListCells { get; } = new(StringComparer.OrdinalIgnoreCase);
    /// <summary>Key path -> top subkey list cell (a leaf, or the 'ri').</summary>
    public Dictionary<string, uint> SubKeyListCells { get; } = new(StringComparer.OrdinalIgnoreCase);
    public Dictionary<string, List<uint>> LeafCells { get; } = new(StringComparer.OrdinalIgnoreCase);
    public int Length => Bins.Length;
    public int BlockCount => Bins.Length / HiveImage.BlockSize;
}
