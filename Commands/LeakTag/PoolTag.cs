using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.LeakTag;

/// <summary>
/// A pool tag as the user typed it: up to 4 characters, space-padded as the kernel pads short tags,
/// with '?' (any one character) and '*' (any rest) wildcards.
/// </summary>
public sealed class PoolTagPattern
{
    private PoolTagPattern(string text, string padded, bool wild) { Text = text; Padded = padded; HasWildcards = wild; }

    /// <summary>As typed.</summary>
    public string Text { get; }
    /// <summary>Space-padded to 4 characters (wildcards kept).</summary>
    public string Padded { get; }
    public bool HasWildcards { get; }

    public static PoolTagPattern Parse(string text)
    {
        if (string.IsNullOrEmpty(text)) throw new UsageException("empty pool tag");
        foreach (char c in text)
            if (c < 0x20 || c > 0x7e)
                throw new UsageException($"pool tag '{Fmt(text)}' contains a character that is not printable ASCII");
        int starAt = text.IndexOf('*');
        if (starAt >= 0 && starAt != text.Length - 1)
            throw new UsageException($"pool tag '{text}': '*' is only allowed as the last character");
        string core = starAt >= 0 ? text[..starAt] : text;
        if (core.Length > 4 || (starAt < 0 && text.Length > 4))
            throw new UsageException($"pool tag '{text}' is longer than 4 characters");
        bool wild = starAt >= 0 || text.Contains('?');
        // A star matches the rest; pad the fixed part with '?' then. Without a star, pad with spaces like the kernel.
        string padded = starAt >= 0 ? core.PadRight(4, '?') : text.PadRight(4, ' ');
        return new PoolTagPattern(text, padded, wild);
    }

    private static string Fmt(string s) => new(s.Select(c => c < 0x20 || c > 0x7e ? '?' : c).ToArray());

    /// <summary>Matches a tracker key (the protected-pool bit is ignored).</summary>
    public bool Matches(uint key)
    {
        string t = PoolTagText.FromKey(key);
        for (int i = 0; i < 4; i++)
            if (Padded[i] != '?' && Padded[i] != t[i]) return false;
        return true;
    }

    /// <summary>The exact 4 bytes to search for in module images; null when the tag has wildcards.</summary>
    public byte[]? SearchBytes => HasWildcards ? null : Encoding.ASCII.GetBytes(Padded);

    /// <summary>The ULONG value of the tag as the kernel stores it (little-endian ASCII), e.g. 'Leak' = 0x6b61654c.</summary>
    public uint? KeyValue => HasWildcards ? null : BinaryPrimitives.ReadUInt32LittleEndian(Encoding.ASCII.GetBytes(Padded));
}

public static class PoolTagText
{
    /// <summary>The protected-pool bit some builds set in the high byte of the key.</summary>
    public const uint ProtectedBit = 0x80000000;

    /// <summary>4-character text of a key; non-printable bytes shown as '.'. The protected bit is masked.</summary>
    public static string FromKey(uint key)
    {
        key &= ~ProtectedBit;
        Span<char> c = stackalloc char[4];
        for (int i = 0; i < 4; i++)
        {
            byte b = (byte)(key >> (8 * i));
            c[i] = b is >= 0x20 and <= 0x7e ? (char)b : '.';
        }
        return new string(c);
    }
}
