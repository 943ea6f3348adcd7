using System.Buffers.Binary;

namespace NtSleuth.Commands.Model;

/// <summary>
/// The one way a field's bytes become its value: little-endian integer, bit-field extraction, sign extension. Shared by
/// <see cref="StructView"/> (one struct read from the target) and <see cref="PackedField"/> (entries of a bulk-read table).
/// </summary>
internal static class FieldValue
{
    /// <summary>Little-endian unsigned integer of 1 to 8 bytes.</summary>
    public static ulong LittleEndian(ReadOnlySpan<byte> s) => s.Length switch
    {
        1 => s[0],
        2 => BinaryPrimitives.ReadUInt16LittleEndian(s),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(s),
        8 => BinaryPrimitives.ReadUInt64LittleEndian(s),
        _ => Odd(s),
    };

    private static ulong Odd(ReadOnlySpan<byte> s)
    {
        ulong v = 0;
        for (int i = s.Length - 1; i >= 0; i--) v = (v << 8) | s[i];
        return v;
    }

    /// <summary>The <paramref name="bitLength"/> bits at <paramref name="bitPosition"/> of the storage unit <paramref name="raw"/>.</summary>
    public static ulong Bits(ulong raw, int bitPosition, int bitLength)
    {
        ulong v = raw >> bitPosition;
        return bitLength >= 64 ? v : v & ((1UL << bitLength) - 1);
    }

    /// <summary>A signed integer of <paramref name="size"/> bytes (below 8) widened to 64 bits.</summary>
    public static ulong SignExtend(ulong value, int size)
    {
        if (size is <= 0 or >= 8) return value;
        int shift = 64 - size * 8;
        return unchecked((ulong)((long)(value << shift) >> shift));
    }
}
