using System.Buffers.Binary;

namespace NtSleuth.Lab.Dumps;

/// <summary>
/// The few PE/COFF header values the dump writers need (Microsoft PE/COFF specification: e_lfanew at 0x3c,
/// "PE\0\0", COFF header (TimeDateStamp +8 from the signature), PE32+ optional header (SizeOfImage +0x38,
/// SizeOfHeaders +0x3c, CheckSum +0x40), section table entries of 40 bytes (VirtualSize +8, VirtualAddress +12,
/// SizeOfRawData +16, PointerToRawData +20)), the CodeView RSDS record of the debug directory (data directory 6),
/// and mapping an image into virtual memory the way the loader lays it out.
/// </summary>
public sealed class PeImage
{
    public byte[] File { get; }
    public uint TimeDateStamp { get; }
    public uint SizeOfImage { get; }
    public uint SizeOfHeaders { get; }
    public uint CheckSum { get; }
    public uint AddressOfEntryPoint { get; }
    public IReadOnlyList<(uint VirtualAddress, uint VirtualSize, uint RawPointer, uint RawSize)> Sections { get; }
    /// <summary>CodeView RSDS identity (GUID, age, PDB name), or null when the image has none.</summary>
    public (Guid Guid, uint Age, string PdbName)? CodeView { get; }

    public PeImage(byte[] file)
    {
        File = file;
        var s = file.AsSpan();
        if (file.Length < 0x40 || s[0] != 'M' || s[1] != 'Z') throw new DumpFormatException("not a PE image (no MZ)");
        int pe = BinaryPrimitives.ReadInt32LittleEndian(s[0x3c..]);
        if (pe <= 0 || pe + 0x18 > file.Length || BinaryPrimitives.ReadUInt32LittleEndian(s[pe..]) != 0x00004550) throw new DumpFormatException("not a PE image (no PE signature)");
        int nsec = BinaryPrimitives.ReadUInt16LittleEndian(s[(pe + 6)..]);
        TimeDateStamp = BinaryPrimitives.ReadUInt32LittleEndian(s[(pe + 8)..]);
        int optSize = BinaryPrimitives.ReadUInt16LittleEndian(s[(pe + 0x14)..]);
        int opt = pe + 0x18;
        if (BinaryPrimitives.ReadUInt16LittleEndian(s[opt..]) != 0x20b) throw new DumpFormatException("not a PE32+ (x64) image");
        AddressOfEntryPoint = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x10)..]);
        SizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x38)..]);
        SizeOfHeaders = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x3c)..]);
        CheckSum = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x40)..]);
        var secs = new List<(uint, uint, uint, uint)>();
        int st = opt + optSize;
        for (int i = 0; i < nsec; i++)
        {
            int e = st + 40 * i;
            secs.Add((BinaryPrimitives.ReadUInt32LittleEndian(s[(e + 12)..]), BinaryPrimitives.ReadUInt32LittleEndian(s[(e + 8)..]),
                BinaryPrimitives.ReadUInt32LittleEndian(s[(e + 20)..]), BinaryPrimitives.ReadUInt32LittleEndian(s[(e + 16)..])));
        }
        Sections = secs;
        // Data directory 6 (debug) at optional header + 0x70 + 6*8 for PE32+.
        uint dbgRva = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x70 + 6 * 8)..]);
        uint dbgSize = BinaryPrimitives.ReadUInt32LittleEndian(s[(opt + 0x70 + 6 * 8 + 4)..]);
        for (uint d = 0; dbgRva != 0 && d + 28 <= dbgSize; d += 28)
        {
            if (RvaToFile(dbgRva + d) is not int de) break;
            if (BinaryPrimitives.ReadUInt32LittleEndian(s[(de + 12)..]) != 2) continue; // IMAGE_DEBUG_TYPE_CODEVIEW
            int raw = BinaryPrimitives.ReadInt32LittleEndian(s[(de + 24)..]);
            if (raw <= 0 || raw + 24 > file.Length || BinaryPrimitives.ReadUInt32LittleEndian(s[raw..]) != 0x53445352) continue; // 'RSDS'
            var g = new Guid(s.Slice(raw + 4, 16));
            uint age = BinaryPrimitives.ReadUInt32LittleEndian(s[(raw + 20)..]);
            int end = s[(raw + 24)..].IndexOf((byte)0);
            string name = System.Text.Encoding.UTF8.GetString(s.Slice(raw + 24, end < 0 ? file.Length - raw - 24 : end));
            CodeView = (g, age, name);
            break;
        }
    }

    public int? RvaToFile(uint rva)
    {
        if (rva < SizeOfHeaders) return (int)rva;
        foreach (var (va, vs, rp, rs) in Sections)
            if (rva >= va && rva < va + Math.Max(vs, rs) && rva - va < rs) return (int)(rp + (rva - va));
        return null;
    }

    /// <summary>Maps the image at <paramref name="baseVa"/>: SizeOfImage bytes present (zero-filled), headers and section raw data copied.</summary>
    public void MapInto(SparseMemory memory, ulong baseVa)
    {
        memory.Map(baseVa, SizeOfImage);
        memory.Write(baseVa, File.AsSpan(0, (int)Math.Min(SizeOfHeaders, (uint)File.Length)));
        foreach (var (va, vs, rp, rs) in Sections)
        {
            uint n = Math.Min(rs, vs == 0 ? rs : vs);
            if (rp >= File.Length || n == 0) continue;
            n = (uint)Math.Min(n, File.Length - rp);
            memory.Write(baseVa + va, File.AsSpan((int)rp, (int)n));
        }
    }
}
