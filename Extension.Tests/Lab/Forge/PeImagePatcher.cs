using NtSleuth.Lab.Dumps;
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

    private const uint Rsds = 0x53445352; // 'RSDS'

    /// <summary>Reads the image through <see cref="PeImage"/> (System.Reflection.PortableExecutable).</summary>
    public static PeInfo Read(byte[] pe)
    {
        var img = Open(pe);
        return new PeInfo(img.TimeDateStamp, img.SizeOfImage, img.CheckSum, img.CodeView?.Guid, (int)(img.CodeView?.Age ?? 0), img.CodeView?.PdbName,
            img.Sections.Select(s => (s.Name, s.VirtualAddress, s.VirtualSize, s.RawSize)).ToList());
    }

    /// <summary>Applies the identity, strips zero raw data, sets the checksum; returns the new file.</summary>
    public static byte[] Patch(byte[] pe, ForgeIdentity id, out uint sizeOfImage, out uint checkSum)
    {
        pe = StripZeroRawData(pe);
        var img = Open(pe);
        BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(img.TimeDateStampOffset), id.TimeDateStamp);
        if (id.SizeOfImage != 0)
        {
            uint lastEnd = img.Sections.Select(s => s.VirtualAddress + s.VirtualSize).DefaultIfEmpty(0u).Max();
            if (id.SizeOfImage < lastEnd)
                throw new ForgeException($"requested SizeOfImage 0x{id.SizeOfImage:x} is smaller than the forged image's sections (end at RVA 0x{lastEnd:x})");
            BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(img.SizeOfImageOffset), id.SizeOfImage);
        }
        sizeOfImage = id.SizeOfImage != 0 ? id.SizeOfImage : img.SizeOfImage;
        bool sawCv = false;
        foreach (var e in img.DebugEntries)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(PeImage.EntryTimeDateStampOffset(e)), id.TimeDateStamp);
            if (e.Type != System.Reflection.PortableExecutable.DebugDirectoryEntryType.CodeView || e.DataPointer == 0 || e.DataSize < 24) continue;
            if (BinaryPrimitives.ReadUInt32LittleEndian(pe.AsSpan((int)e.DataPointer)) != Rsds) continue;
            id.PdbGuid.TryWriteBytes(pe.AsSpan((int)e.DataPointer + 4, 16));
            BinaryPrimitives.WriteInt32LittleEndian(pe.AsSpan((int)e.DataPointer + 20), id.Age);
            sawCv = true;
        }
        if (!sawCv) throw new ForgeException("the linked image has no CodeView (RSDS) debug record");
        checkSum = id.CheckSum ?? ComputeCheckSum(pe, img.CheckSumOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(pe.AsSpan(img.CheckSumOffset), checkSum);
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

    public static uint CheckSumOf(byte[] pe) => ComputeCheckSum(pe, Open(pe).CheckSumOffset);

    /// <summary>Drops the raw data of sections that hold only zero/int3 fill and packs the remaining raw data.</summary>
    public static byte[] StripZeroRawData(byte[] pe)
    {
        var img = Open(pe);
        uint fileAlign = img.FileAlignment;
        var output = new MemoryStream();
        output.Write(pe, 0, (int)img.SizeOfHeaders);
        var newPtr = new List<(PeImage.Section Section, uint Ptr, uint Raw)>();
        foreach (var s in img.Sections)
        {
            // "Empty" = only zero bytes and lld's int3 (0xCC) padding between code contributions.
            bool zero = s.RawSize == 0 || pe.AsSpan((int)s.RawPointer, (int)Math.Min(s.RawSize, (uint)pe.Length - s.RawPointer)).IndexOfAnyExcept((byte)0, (byte)0xCC) < 0;
            if (zero) { newPtr.Add((s, 0, 0)); continue; }
            uint ptr = (uint)output.Length;
            output.Write(pe, (int)s.RawPointer, (int)s.RawSize);
            long pad = (fileAlign - output.Length % fileAlign) % fileAlign;
            output.Write(new byte[pad]);
            newPtr.Add((s, ptr, s.RawSize));
        }
        var result = output.ToArray();
        foreach (var (s, ptr, raw) in newPtr)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(PeImage.RawSizeOffset(s)), raw);
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(PeImage.RawPointerOffset(s)), ptr);
        }
        var moved = Open(result);
        // The debug directory moved with its section: re-point each entry's file pointer at its data's new place.
        foreach (var e in moved.DebugEntries)
        {
            uint at = e.DataRva == 0 ? 0 : moved.RvaToFile(e.DataRva) is int f ? (uint)f : throw new ForgeException($"RVA 0x{e.DataRva:x} has no raw data");
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(PeImage.EntryDataPointerOffset(e)), at);
        }
        return result;
    }

    private static PeImage Open(byte[] pe)
    {
        try { return new PeImage(pe); }
        catch (DumpFormatException ex) { throw new ForgeException(ex.Message); }
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
