using System.Buffers.Binary;
using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel.Registry;

/// <summary>
/// A key node ('nk' cell, nt!_CM_KEY_NODE) of a <see cref="HiveView"/>: its stable subkeys (index lists 'lf'/'lh'/'li',
/// split by 'ri') and its values ('vk' cells). Lookups by name are case-insensitive; 'lh' hashes and 'lf' hints skip
/// key nodes that cannot match, so a lookup reads few cells. Walks are bounded and cycle-safe.
/// </summary>
public sealed class KeyView
{
    /// <summary>Most subkeys or values read from one key.</summary>
    public const int MaxEntries = 65536;
    /// <summary>'ri' lists may nest this deep (Windows writes one level).</summary>
    public const int MaxIndexDepth = 2;
    /// <summary>Largest value data (above it: 'db' big-data cells, not read).</summary>
    public const int MaxSmallValueData = 16344;

    private readonly HiveView _hive;
    private readonly StructView _nk;

    internal KeyView(HiveView hive, uint cell, string name, string path, StructView nk)
    {
        _hive = hive; Cell = cell; Name = name; Path = path; _nk = nk;
    }

    public string Name { get; }
    public uint Cell { get; }
    /// <summary>Path from the hive root ("" for the root).</summary>
    public string Path { get; }
    public HiveView Hive => _hive;

    private RegistryReader R => _hive.Reader;
    private string Describe => Path.Length == 0 ? $"{_hive.ShortName} root key" : $@"key {_hive.ShortName}\{Path}";

    private uint Field(string path, int index = 0)
    {
        var (off, t) = _nk.Resolve(path);
        ulong stride = t.Kind == Symbols.TypeKind.Array && t.Inner is not null ? t.Inner.Size : 0;
        int at = (int)(off + (ulong)index * stride);
        return at + 4 <= _nk.Length ? BinaryPrimitives.ReadUInt32LittleEndian(_nk.Bytes[at..]) : 0;
    }

    /// <summary>Number of stable subkeys (SubKeyCounts[0]).</summary>
    public uint SubKeyCount => Field("SubKeyCounts");

    public IReadOnlyList<string> SubKeyNames()
    {
        var names = new List<string>();
        WalkSubKeys(null, (_, k) => { names.Add(k.Name); return false; });
        return names;
    }

    /// <summary>The subkey named <paramref name="name"/> (case-insensitive); null when absent or unreadable (see notes).</summary>
    public KeyView? SubKey(string name)
    {
        KeyView? found = null;
        WalkSubKeys(name, (_, k) =>
        {
            if (!string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase)) return false;
            found = k; return true;
        });
        return found;
    }

    /// <summary>
    /// Walks the stable subkey list. <paramref name="want"/> (a name) lets leaf hints skip cells; <paramref name="visit"/>
    /// returns true to stop.
    /// </summary>
    private void WalkSubKeys(string? want, Func<uint, KeyView, bool> visit)
    {
        uint count = SubKeyCount;
        if (count == 0) return;
        if (count > MaxEntries) R.Note($"{Describe}: subkey count {count} is above {MaxEntries} (corrupted?); only the first {MaxEntries} are read");
        uint list = Field("SubKeyLists");
        var state = new WalkState(want, visit, new HashSet<uint>());
        WalkIndex(list, 0, state);
    }

    private sealed class WalkState(string? want, Func<uint, KeyView, bool> visit, HashSet<uint> seen)
    {
        public string? Want { get; } = want;
        public uint? WantHash { get; } = want is not null && IsAscii(want) ? LhHash(want) : null;
        public Func<uint, KeyView, bool> Visit { get; } = visit;
        public HashSet<uint> Seen { get; } = seen;
        public int Entries;
        public bool Stop;
    }

    private void WalkIndex(uint listCell, int depth, WalkState st)
    {
        if (st.Stop) return;
        if (R.Kernel.Memory.IsInterruptRequested) { R.Note($"{Describe}: subkey walk interrupted by user; results are partial"); st.Stop = true; return; }
        if (!st.Seen.Add(listCell)) { R.Note($"{Describe}: subkey index cell 0x{listCell:x8} is listed twice (cycle in the index); skipped, results are partial"); return; }
        var c = _hive.GetCell(listCell, $"subkey list of {Describe}");
        if (c is null) return;
        var types = R.Kernel.Types;
        var idx = types.TryGet("nt", "_CM_KEY_INDEX");
        if (idx is null) { R.MissingSymbol("type nt!_CM_KEY_INDEX", "type nt!_CM_KEY_INDEX is not in the symbols"); st.Stop = true; return; }
        var view = new StructView(idx, c.DataAddress, c.Data, types);
        ulong? countField = view.TryUInt("Count");
        ulong listOff = view.OffsetOf("List");
        if (countField is null) { R.Note($"{Describe}: subkey list cell 0x{listCell:x8} at {Output.Fmt.Addr(c.Address)} is too small"); return; }
        int count = (int)countField.Value;
        ushort sig = c.Signature;
        int stride = sig switch
        {
            HiveView.SigLf or HiveView.SigLh => (int)(types.TryGet("nt", "_CM_INDEX")?.Size ?? 8),
            HiveView.SigLi or HiveView.SigRi => 4,
            _ => 0,
        };
        if (stride == 0)
        {
            R.Note($"{Describe}: subkey list cell 0x{listCell:x8} at {Output.Fmt.Addr(c.Address)} has signature '{c.SignatureText}', not 'lf', 'lh', 'li' or 'ri'");
            return;
        }
        int fits = (int)Math.Max(0, ((long)c.Data.Length - (long)listOff) / stride);
        if (count > fits)
        {
            R.Note($"{Describe}: subkey list cell 0x{listCell:x8} at {Output.Fmt.Addr(c.Address)} claims {count} entries but holds {fits}; reading {fits}");
            count = fits;
        }
        if (sig == HiveView.SigRi && depth >= MaxIndexDepth)
        {
            R.Note($"{Describe}: 'ri' list 0x{listCell:x8} at {Output.Fmt.Addr(c.Address)} nests deeper than {MaxIndexDepth} levels (corrupted); not followed");
            return;
        }
        for (int i = 0; i < count && !st.Stop; i++)
        {
            int at = (int)listOff + i * stride;
            uint child = BinaryPrimitives.ReadUInt32LittleEndian(c.Data.AsSpan(at));
            if (sig == HiveView.SigRi)
            {
                WalkIndex(child, depth + 1, st);
                continue;
            }
            if (st.Entries >= MaxEntries) { R.Note($"{Describe}: stopped after {MaxEntries} subkeys"); st.Stop = true; return; }
            st.Entries++;
            if (st.Want is not null && sig != HiveView.SigLi)
            {
                uint hint = BinaryPrimitives.ReadUInt32LittleEndian(c.Data.AsSpan(at + 4));
                if (sig == HiveView.SigLh && st.WantHash is { } h && hint != h) continue;
                if (sig == HiveView.SigLf && !HintMayMatch(hint, st.Want)) continue;
            }
            if ((i & 63) == 0 && R.Kernel.Memory.IsInterruptRequested) { R.Note($"{Describe}: subkey walk interrupted by user; results are partial"); st.Stop = true; return; }
            var key = _hive.ReadKey(child, Path, $"subkey {i} of {Describe}");
            if (key is null) continue;
            if (st.Visit(child, key)) { st.Stop = true; return; }
        }
    }

    /// <summary>The 'lh' hash: h = h * 37 + upcase(c) over the name.</summary>
    internal static uint LhHash(string name)
    {
        uint h = 0;
        foreach (char ch in name) h = unchecked(h * 37 + char.ToUpperInvariant(ch));
        return h;
    }

    private static bool IsAscii(string s)
    {
        foreach (char c in s) if (c > 0x7f) return false;
        return true;
    }

    /// <summary>'lf' hint = the first four name characters (as bytes; 0 pads short names). Only a certain mismatch skips.</summary>
    private static bool HintMayMatch(uint hint, string name)
    {
        for (int i = 0; i < 4; i++)
        {
            byte h = (byte)(hint >> (8 * i));
            if (h == 0) return true; // hint ended or unrepresentable: cannot tell
            if (i >= name.Length) return false;
            char c = name[i];
            if (c > 0x7f || h > 0x7f) continue;
            if (char.ToUpperInvariant(c) != char.ToUpperInvariant((char)h)) return false;
        }
        return true;
    }

    // =====================================================================================
    // Values
    // =====================================================================================

    /// <summary>Number of values (ValueList.Count).</summary>
    public uint ValueCount => Field("ValueList.Count");

    /// <summary>Every readable value (unreadable ones are left out, with a note).</summary>
    public IReadOnlyList<RegValue> Values()
    {
        var list = new List<RegValue>();
        foreach (var (cell, hdr) in ValueHeaders())
        {
            var v = ReadData(cell, hdr);
            if (v is not null) list.Add(v);
        }
        return list;
    }

    /// <summary>The value named <paramref name="name"/> ("" = default value), case-insensitive; null when absent or unreadable (see notes).</summary>
    public RegValue? GetValue(string name)
    {
        foreach (var (cell, hdr) in ValueHeaders())
            if (string.Equals(hdr.Name, name, StringComparison.OrdinalIgnoreCase)) return ReadData(cell, hdr);
        return null;
    }

    private sealed record ValueHeader(string Name, uint Type, uint DataLength, uint DataCell, byte[] Inline);

    private IEnumerable<(uint Cell, ValueHeader Header)> ValueHeaders()
    {
        uint count = ValueCount;
        if (count == 0) yield break;
        if (count > MaxEntries) { R.Note($"{Describe}: value count {count} is above {MaxEntries} (corrupted?); only the first {MaxEntries} are read"); count = MaxEntries; }
        uint listCell = Field("ValueList.List");
        var c = _hive.GetCell(listCell, $"value list of {Describe}");
        if (c is null) yield break;
        int fits = c.Data.Length / 4;
        if (count > fits) { R.Note($"{Describe}: value list cell 0x{listCell:x8} at {Output.Fmt.Addr(c.Address)} holds {fits} of {count} entries; reading {fits}"); count = (uint)fits; }
        var seen = new HashSet<uint>();
        for (int i = 0; i < count; i++)
        {
            if ((i & 63) == 0 && R.Kernel.Memory.IsInterruptRequested) { R.Note($"{Describe}: value walk interrupted by user; results are partial"); yield break; }
            uint vc = BinaryPrimitives.ReadUInt32LittleEndian(c.Data.AsSpan(i * 4));
            if (!seen.Add(vc)) { R.Note($"{Describe}: value cell 0x{vc:x8} is listed twice in the value list; skipped"); continue; }
            var h = ReadValueHeader(vc, i);
            if (h is not null) yield return (vc, h);
        }
    }

    private ValueHeader? ReadValueHeader(uint cell, int i)
    {
        string what = $"value {i} of {Describe}";
        var c = _hive.GetCell(cell, what);
        if (c is null) return null;
        var types = R.Kernel.Types;
        var layout = types.TryGet("nt", "_CM_KEY_VALUE");
        if (layout is null) { R.MissingSymbol("type nt!_CM_KEY_VALUE", "type nt!_CM_KEY_VALUE is not in the symbols"); return null; }
        if (c.Signature != HiveView.SigVk) { R.Note($"hive {_hive.Name}: {what}: cell 0x{cell:x8} at {Output.Fmt.Addr(c.Address)} has signature '{c.SignatureText}', not 'vk'"); return null; }
        var vk = new StructView(layout, c.DataAddress, c.Data, types);
        ulong nameOff = vk.OffsetOf("Name");
        ulong? len = vk.TryUInt("NameLength"), flags = vk.TryUInt("Flags"), dlen = vk.TryUInt("DataLength"), data = vk.TryUInt("Data"), type = vk.TryUInt("Type");
        if (len is null || flags is null || dlen is null || data is null || type is null || nameOff + len.Value > (ulong)c.Data.Length)
        { R.Note($"hive {_hive.Name}: {what}: value cell 0x{cell:x8} at {Output.Fmt.Addr(c.Address)} is truncated"); return null; }
        var nb = c.Data.AsSpan((int)nameOff, (int)len.Value);
        string name = HiveView.DecodeName(nb, (flags.Value & HiveView.ValueCompName) != 0);
        var (dataOff, dataType) = vk.Resolve("Data");
        var inline = c.Data.AsSpan((int)dataOff, (int)Math.Min(dataType.Size == 0 ? 4 : dataType.Size, 4)).ToArray();
        return new ValueHeader(name, (uint)type.Value, (uint)dlen.Value, (uint)data.Value, inline);
    }

    private RegValue? ReadData(uint cell, ValueHeader h)
    {
        string label = $"value '{h.Name}' of {Describe}";
        if ((h.DataLength & 0x80000000) != 0)
        {
            int n = (int)(h.DataLength & 0x7fffffff);
            if (n > 4) { R.Note($"{label}: inline data length {n} is above 4 (vk cell 0x{cell:x8}); not read"); return null; }
            return new RegValue(h.Name, h.Type, h.Inline[..n]);
        }
        if (h.DataLength == 0) return new RegValue(h.Name, h.Type, Array.Empty<byte>());
        var c = _hive.GetCell(h.DataCell, $"data of {label}");
        if (c is null) return null;
        if (h.DataLength > MaxSmallValueData && c.Signature == HiveView.SigDb)
        {
            R.Note($"{label}: {h.DataLength} bytes of data are in a big-data ('db') cell 0x{h.DataCell:x8} at {Output.Fmt.Addr(c.Address)}; not read");
            return null;
        }
        if (h.DataLength > (uint)c.Data.Length)
        {
            R.Note($"{label}: data length {h.DataLength} is larger than its cell 0x{h.DataCell:x8} at {Output.Fmt.Addr(c.Address)} (0x{c.Data.Length:x} bytes); not read");
            return null;
        }
        return new RegValue(h.Name, h.Type, c.Data.AsSpan(0, (int)h.DataLength).ToArray());
    }

    public override string ToString() => Path.Length == 0 ? $"{_hive.Name} (root)" : $@"{_hive.Name}\{Path}";
}
