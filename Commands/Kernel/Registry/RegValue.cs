using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Commands.Kernel.Registry;

/// <summary>A registry value as stored in the hive: name ("" = the default value), REG_* type and raw data.</summary>
public sealed record RegValue(string Name, uint Type, byte[] Data)
{
    public const uint RegNone = 0, RegSz = 1, RegExpandSz = 2, RegBinary = 3, RegDword = 4, RegDwordBigEndian = 5,
        RegLink = 6, RegMultiSz = 7, RegQword = 11;

    /// <summary>REG_SZ / REG_EXPAND_SZ / REG_LINK as text (UTF-16LE, cut at the first NUL); null for other types.</summary>
    public string? AsString()
    {
        if (Type is not (RegSz or RegExpandSz or RegLink)) return null;
        var s = Encoding.Unicode.GetString(Data, 0, Data.Length & ~1);
        int z = s.IndexOf('\0');
        return z >= 0 ? s[..z] : s;
    }

    /// <summary>REG_DWORD (little endian) or REG_DWORD_BIG_ENDIAN with at least 4 bytes; null otherwise.</summary>
    public uint? AsDword() => Data.Length < 4 ? null : Type switch
    {
        RegDword => BinaryPrimitives.ReadUInt32LittleEndian(Data),
        RegDwordBigEndian => BinaryPrimitives.ReadUInt32BigEndian(Data),
        _ => null,
    };

    /// <summary>REG_MULTI_SZ as its strings (the empty string ends the list); null for other types.</summary>
    public string[]? AsMultiString()
    {
        if (Type != RegMultiSz) return null;
        var s = Encoding.Unicode.GetString(Data, 0, Data.Length & ~1);
        var parts = s.Split('\0');
        int n = Array.IndexOf(parts, "");
        return n < 0 ? parts : parts[..n];
    }

    public static string TypeName(uint type) => type switch
    {
        RegNone => "REG_NONE", RegSz => "REG_SZ", RegExpandSz => "REG_EXPAND_SZ", RegBinary => "REG_BINARY", RegDword => "REG_DWORD",
        RegDwordBigEndian => "REG_DWORD_BIG_ENDIAN", RegLink => "REG_LINK", RegMultiSz => "REG_MULTI_SZ", RegQword => "REG_QWORD",
        _ => $"type {type}",
    };
}
