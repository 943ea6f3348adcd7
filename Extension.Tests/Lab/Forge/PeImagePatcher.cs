using System.Buffers.Binary;

namespace NtSleuth.Lab.Forge;

/// <summary>
/// Post-link edits of a PE32+ image: the identity the engine matches (CodeView RSDS GUID/age, TimeDateStamp,
/// SizeOfImage, CheckSum) and removal of all-zero raw section data (the public-symbol section is pure fill: a
/// 16 MB kernel image shrinks to a few KB; the loader/engine treat a section without raw data as zero-filled).
/// </summary>
public static class PeImagePatcher
{
    public sealed record PeInfo(uint TimeDateStamp, uint SizeOfImage, uint CheckSum, Guid? CodeViewGuid, int CodeViewAge, string? CodeViewPdb,
        IReadOnlyList<(string Name, uint Rva, uint VirtualSize, uint RawSize)> Sections);

    private const int DebugTypeCodeView = 2;

    public static PeInfo Read(byte[] pe)
    {
        var h = Headers.Parse(pe);
        Guid? guid = null; int age = 0; string? name = null;
        foreach (var (entry, type, _, ptr, size) in h.DebugEntries(pe))
        {
            if (type != DebugTypeCodeView || ptr == 0 || size < 24) continue;
            if (BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan((int)ptr)) != 0x53445352) continue; // 'RSDS'
            guid = new Guid(pe.AsSpan((int)ptr + 4, 16));
            age = BinaryPrimitives.ReadInt32LittleEndian(pe.AsSpan((int)ptr + 20));
            int end = Array.IndexOf(pe, (byte)0, (int)ptr + 24);
            name = System.Text.Encoding.UTF8.GetString(pe, (int)ptr + 24, Math.Max(0, end - (int)ptr - 24));
        }
        var secs = h.Sections(pe).Select(s => (s.Name, s.Rva, s.VirtualSize, s.RawSize)).ToList();
        return new PeInfo(BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.FileHeader + 4)),
            BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 56)),
            BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 64)), guid, age, name, secs);
    }

    /// <summary>Applies the identity, strips zero raw data, sets the checksum; returns the new file.</summary>
    public static byte[] Patch(byte[] pe, ForgeIdentity id, out uint sizeOfImage, out uint checkSum)
    {
        pe = StripZeroRawData(pe);
        var h = Headers.Parse(pe);
        BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(h.FileHeader + 4), id.TimeDateStamp);
        uint linkedSize = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 56));
        if (id.SizeOfImage != 0)
        {
            uint lastEnd = h.Sections(pe).Select(s => s.Rva + s.VirtualSize).DefaultIfEmpty(0u).Max();
            if (id.SizeOfImage < lastEnd)
                throw new ForgeException($"requested SizeOfImage 0x{id.SizeOfImage:x} is smaller than the forged image's sections (end at RVA 0x{lastEnd:x})");
            BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(h.Optional + 56), id.SizeOfImage);
        }
        sizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 56));
        bool sawCv = false;
        foreach (var (entry, type, _, ptr, size) in h.DebugEntries(pe))
        {
            BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(entry + 4), id.TimeDateStamp);
            if (type != DebugTypeCodeView || ptr == 0 || size < 24) continue;
            if (BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan((int)ptr)) != 0x53445352) continue;
            id.PdbGuid.TryWriteBytes(pe.AsSpan((int)ptr + 4, 16));
            BinaryPrimitives.WriteInt32LittleEndian(pe.AsSpan((int)ptr + 20), id.Age);
            sawCv = true;
        }
        if (!sawCv) throw new ForgeException("the linked image has no CodeView (RSDS) debug record");
        checkSum = id.CheckSum ?? ComputeCheckSum(pe, h.Optional + 64);
        BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(h.Optional + 64), checkSum);
        return pe;
    }

    /// <summary>The PE checksum (IMAGEHLP CheckSumMappedFile): 16-bit one's-complement-style sum, checksum field skipped, plus file length.</summary>
    public static uint ComputeCheckSum(byte[] pe, int checkSumOffset)
    {
        ulong sum = 0;
        int n = pe.Length & ~1;
        for (int i = 0; i < n; i += 2)
        {
            if (i == checkSumOffset || i == checkSumOffset + 2) continue;
            sum += BinaryPrimitives.ReadUInt16LittleEndian(pe.AsSpan(i));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        if ((pe.Length & 1) != 0) { sum += pe[^1]; sum = (sum & 0xffff) + (sum >> 16); }
        sum = (sum & 0xffff) + (sum >> 16);
        return (uint)(sum + (ulong)pe.Length);
    }

    public static uint CheckSumOf(byte[] pe) => ComputeCheckSum(pe, Headers.Parse(pe).Optional + 64);

    /// <summary>Drops the raw data of sections that hold only zero/int3 fill and packs the remaining raw data.</summary>
    public static byte[] StripZeroRawData(byte[] pe)
    {
        var h = Headers.Parse(pe);
        uint fileAlign = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 36));
        uint sizeOfHeaders = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(h.Optional + 60));
        var secs = h.Sections(pe).ToList();
        var output = new MemoryStream();
        output.Write(pe, 0, (int)sizeOfHeaders);
        var newPtr = new Dictionary<int, (uint Ptr, uint Raw)>();
        foreach (var s in secs)
        {
            // "Empty" = only zero bytes and lld's int3 (0xCC) padding between code contributions.
            bool zero = s.RawSize == 0 || pe.AsSpan((int)s.RawPtr, (int)Math.Min(s.RawSize, (uint)pe.Length - s.RawPtr)).IndexOfAnyExcept((byte)0, (byte)0xCC) < 0;
            if (zero) { newPtr[s.Header] = (0, 0); continue; }
            uint ptr = (uint)output.Length;
            output.Write(pe, (int)s.RawPtr, (int)s.RawSize);
            long pad = (fileAlign - output.Length % fileAlign) % fileAlign;
            output.Write(new byte[pad]);
            newPtr[s.Header] = (ptr, s.RawSize);
        }
        var result = output.ToArray();
        foreach (var (hdr, (ptr, raw)) in newPtr)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(hdr + 16), raw);
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(hdr + 20), ptr);
        }
        var h2 = Headers.Parse(result);
        // The debug directory moved with its section: re-point each entry's file pointer at its data's new place.
        foreach (var (entry, _, rva, _, _) in h2.DebugEntries(result))
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(entry + 24), rva == 0 ? 0 : h2.RvaToFile(result, rva));
        return result;
    }

    private sealed record Headers(int FileHeader, int Optional, int SectionTable, int SectionCount)
    {
        public static Headers Parse(byte[] pe)
        {
            if (pe.Length < 0x40 || pe[0] != 'M' || pe[1] != 'Z') throw new ForgeException("not a PE image (no MZ)");
            int lfanew = BinaryPrimitives.ReadInt32LittleEndian(pe.AsSpan(0x3c));
            if (BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(lfanew)) != 0x4550) throw new ForgeException("not a PE image (no PE signature)");
            int fh = lfanew + 4;
            int count = BinaryPrimitives.ReadUInt16LittleEndian(pe.AsSpan(fh + 2));
            int optSize = BinaryPrimitives.ReadUInt16LittleEndian(pe.AsSpan(fh + 16));
            int opt = fh + 20;
            if (BinaryPrimitives.ReadUInt16LittleEndian(pe.AsSpan(opt)) != 0x20b) throw new ForgeException("not a PE32+ image");
            return new Headers(fh, opt, opt + optSize, count);
        }

        public IEnumerable<(int Header, string Name, uint Rva, uint VirtualSize, uint RawSize, uint RawPtr)> Sections(byte[] pe)
        {
            for (int i = 0; i < SectionCount; i++)
            {
                int s = SectionTable + 40 * i;
                string name = System.Text.Encoding.ASCII.GetString(pe, s, 8).TrimEnd('\0');
                yield return (s, name, BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(s + 12)), BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(s + 8)),
                    BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(s + 16)), BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(s + 20)));
            }
        }

        public uint RvaToFile(byte[] pe, uint rva)
        {
            foreach (var s in Sections(pe))
                if (rva >= s.Rva && rva < s.Rva + Math.Max(s.VirtualSize, s.RawSize))
                    return rva - s.Rva < s.RawSize ? s.RawPtr + (rva - s.Rva) : throw new ForgeException($"RVA 0x{rva:x} has no raw data");
            throw new ForgeException($"RVA 0x{rva:x} is in no section");
        }

        /// <summary>Debug directory entries: (entry file offset, type, rva, file pointer, size).</summary>
        public List<(int Entry, uint Type, uint Rva, uint Ptr, uint Size)> DebugEntries(byte[] pe)
        {
            var list = new List<(int, uint, uint, uint, uint)>();
            uint dirRva = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(Optional + 112 + 6 * 8));
            uint dirSize = BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(Optional + 112 + 6 * 8 + 4));
            if (dirRva == 0 || dirSize == 0) return list;
            int at = (int)RvaToFile(pe, dirRva);
            for (int i = 0; i < dirSize / 28; i++)
            {
                int e = at + 28 * i;
                list.Add((e, BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(e + 12)), BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(e + 20)),
                    BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(e + 24)), BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan(e + 16))));
            }
            return list;
        }
    }
}

/// <summary>
/// Edits the identity inside an MSF 7.00 PDB in place: the PDB info stream (stream 1: version, signature, age, GUID)
/// and the DBI stream header age (stream 3, offset 8). Both ages must agree with the image's RSDS age.
/// </summary>
public static class PdbIdentityPatcher
{
    // "Microsoft C/C++ MSF 7.00\r\n" 0x1A "DS" 0 0 0 (\x1a is split off: C# \x takes up to four hex digits).
    private static readonly byte[] Magic = System.Text.Encoding.ASCII.GetBytes("Microsoft C/C++ MSF 7.00\r\n\x1a" + "DS\0\0\0");

    public static void Patch(byte[] pdb, Guid guid, int age)
    {
        var msf = new Msf(pdb);
        Span<byte> g = stackalloc byte[16];
        guid.TryWriteBytes(g);
        Span<byte> a = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(a, age);
        msf.Write(1, 8, a);
        msf.Write(1, 12, g);
        msf.Write(3, 8, a);
    }

    public static (Guid Guid, int Age, int DbiAge) Read(byte[] pdb)
    {
        var msf = new Msf(pdb);
        var info = msf.ReadBytes(1, 0, 28);
        var dbi = msf.ReadBytes(3, 8, 4);
        return (new Guid(info.AsSpan(12, 16)), BinaryPrimitives.ReadInt32LittleEndian(info.AsSpan(8)), BinaryPrimitives.ReadInt32LittleEndian(dbi));
    }

    private sealed class Msf
    {
        private readonly byte[] _f;
        private readonly int _blockSize;
        private readonly List<uint[]> _streamBlocks = [];
        private readonly List<uint> _streamSizes = [];

        public Msf(byte[] f)
        {
            _f = f;
            if (f.Length < 56 || !f.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw new ForgeException("not an MSF 7.00 PDB");
            _blockSize = BinaryPrimitives.ReadInt32LittleEndian(f.AsSpan(32));
            int dirBytes = BinaryPrimitives.ReadInt32LittleEndian(f.AsSpan(44));
            int mapAddr = BinaryPrimitives.ReadInt32LittleEndian(f.AsSpan(52));
            int dirBlocks = (dirBytes + _blockSize - 1) / _blockSize;
            var dir = new byte[dirBlocks * _blockSize];
            for (int i = 0; i < dirBlocks; i++)
            {
                uint b = BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(mapAddr * _blockSize + 4 * i));
                Array.Copy(f, (long)b * _blockSize, dir, i * _blockSize, _blockSize);
            }
            int n = BinaryPrimitives.ReadInt32LittleEndian(dir);
            int p = 4 + 4 * n;
            for (int i = 0; i < n; i++)
            {
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(dir.AsSpan(4 + 4 * i));
                if (size == uint.MaxValue) size = 0;
                int blocks = (int)((size + _blockSize - 1) / _blockSize);
                var list = new uint[blocks];
                for (int k = 0; k < blocks; k++) { list[k] = BinaryPrimitives.ReadUInt32LittleEndian(dir.AsSpan(p)); p += 4; }
                _streamSizes.Add(size);
                _streamBlocks.Add(list);
            }
        }

        private long FileOffset(int stream, int offset)
        {
            if (stream >= _streamBlocks.Count || offset >= _streamSizes[stream]) throw new ForgeException($"PDB stream {stream} has no byte {offset}");
            return (long)_streamBlocks[stream][offset / _blockSize] * _blockSize + offset % _blockSize;
        }

        public void Write(int stream, int offset, ReadOnlySpan<byte> data)
        {
            for (int i = 0; i < data.Length; i++) _f[FileOffset(stream, offset + i)] = data[i];
        }

        public byte[] ReadBytes(int stream, int offset, int count)
        {
            var r = new byte[count];
            for (int i = 0; i < count; i++) r[i] = _f[FileOffset(stream, offset + i)];
            return r;
        }
    }
}
