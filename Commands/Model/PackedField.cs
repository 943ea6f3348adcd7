using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Model;

/// <summary>Reads one integer field of a fixed-layout entry from a byte span (for bulk-read tables).</summary>
public readonly struct PackedField
{
    public PackedField(int offset, int size, bool signed, int bitPos = -1, int bitLen = -1)
    { Offset = offset; Size = size; Signed = signed; BitPos = bitPos; BitLen = bitLen; }

    public int Offset { get; }
    public int Size { get; }
    public bool Signed { get; }
    public int BitPos { get; }
    public int BitLen { get; }
    public bool Present => Size > 0;

    public static PackedField From(TypeLayout layout, string name, bool required = true)
    {
        var f = layout.TryGetField(name);
        if (f is null)
        {
            if (required) throw new MissingSymbolException($"field {layout.Module}!{layout.Name}.{name}", layout.Module);
            return default;
        }
        var t = f.Type;
        if (t.Kind == TypeKind.Bitfield)
            return new PackedField((int)f.Offset, (int)(t.Inner?.Size ?? t.Size), false, t.BitPosition, t.BitLength);
        int size = (int)(t.Kind == TypeKind.Pointer && t.Size == 0 ? 8 : t.Size);
        return new PackedField((int)f.Offset, size, t.IsSigned);
    }

    public ulong Get(ReadOnlySpan<byte> entry)
    {
        if (Size == 0 || Offset + Size > entry.Length) return 0;
        if (Size is not (1 or 2 or 4 or 8)) return 0;
        ulong v = FieldValue.LittleEndian(entry.Slice(Offset, Size));
        if (BitPos >= 0) return FieldValue.Bits(v, BitPos, BitLen);
        if (Signed) v = FieldValue.SignExtend(v, Size);
        return v;
    }
}
