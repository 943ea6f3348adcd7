using System.Collections.Immutable;
using System.Reflection.PortableExecutable;

namespace NtSleuth.Lab.Dumps;

/// <summary>
/// The lab's one PE/COFF reader, over System.Reflection.PortableExecutable (PEHeaders, PEReader): the header values
/// the dump writers and the forge need, the section table, the debug directory and its CodeView (RSDS) record, the file
/// offsets of the fields the forge patches, and mapping an image into virtual memory the way the loader lays it out.
/// Only PE32+ (x64) images are accepted.
/// </summary>
public sealed class PeImage
{
    /// <summary>A section: where it is in memory and in the file, and where its 40-byte header sits in the file.</summary>
    public sealed record Section(string Name, uint VirtualAddress, uint VirtualSize, uint RawPointer, uint RawSize, int HeaderOffset);

    /// <summary>A debug directory entry: the file offset of the 28-byte entry itself, its type and where its data is.</summary>
    public sealed record DebugEntry(int EntryOffset, DebugDirectoryEntryType Type, uint DataRva, uint DataPointer, uint DataSize);

    public byte[] File { get; }
    public uint TimeDateStamp { get; }
    public uint SizeOfImage { get; }
    public uint SizeOfHeaders { get; }
    public uint CheckSum { get; }
    public uint FileAlignment { get; }
    public uint AddressOfEntryPoint { get; }
    /// <summary>File offsets of the COFF file header and of the optional header (the forge patches fields there).</summary>
    public int CoffHeaderOffset { get; }
    public int OptionalHeaderOffset { get; }
    /// <summary>File offsets of TimeDateStamp, SizeOfImage and CheckSum.</summary>
    public int TimeDateStampOffset => CoffHeaderOffset + 4;
    public int SizeOfImageOffset => OptionalHeaderOffset + 56;
    public int CheckSumOffset => OptionalHeaderOffset + 64;
    public IReadOnlyList<Section> Sections { get; }
    public IReadOnlyList<DebugEntry> DebugEntries { get; }
    /// <summary>CodeView RSDS identity (GUID, age, PDB name) of the first CodeView entry, or null when the image has none.</summary>
    public (Guid Guid, uint Age, string PdbName)? CodeView { get; }

    /// <exception cref="DumpFormatException">Not a PE image, or not PE32+.</exception>
    public PeImage(byte[] file)
    {
        File = file;
        if (file.Length < 0x40 || file[0] != 'M' || file[1] != 'Z') throw new DumpFormatException("not a PE image (no MZ)");
        try
        {
            using var pe = new PEReader(ImmutableArray.Create(file));
            var h = pe.PEHeaders;
            if (h.PEHeader is not { } opt) throw new DumpFormatException("not a PE image (no optional header)");
            if (opt.Magic != PEMagic.PE32Plus) throw new DumpFormatException("not a PE32+ (x64) image");
            CoffHeaderOffset = h.CoffHeaderStartOffset;
            OptionalHeaderOffset = h.PEHeaderStartOffset;
            TimeDateStamp = unchecked((uint)h.CoffHeader.TimeDateStamp);
            AddressOfEntryPoint = unchecked((uint)opt.AddressOfEntryPoint);
            SizeOfImage = unchecked((uint)opt.SizeOfImage);
            SizeOfHeaders = unchecked((uint)opt.SizeOfHeaders);
            CheckSum = opt.CheckSum;
            FileAlignment = unchecked((uint)opt.FileAlignment);
            int table = h.PEHeaderStartOffset + h.CoffHeader.SizeOfOptionalHeader;
            Sections = h.SectionHeaders.Select((s, i) => new Section(s.Name, unchecked((uint)s.VirtualAddress), unchecked((uint)s.VirtualSize),
                unchecked((uint)s.PointerToRawData), unchecked((uint)s.SizeOfRawData), table + 40 * i)).ToList();

            var entries = new List<DebugEntry>();
            var dir = opt.DebugTableDirectory;
            if (dir.RelativeVirtualAddress != 0 && dir.Size != 0 && RvaToFile(unchecked((uint)dir.RelativeVirtualAddress)) is int at)
            {
                var read = pe.ReadDebugDirectory();
                for (int i = 0; i < read.Length; i++)
                {
                    var e = read[i];
                    entries.Add(new DebugEntry(at + 28 * i, e.Type, unchecked((uint)e.DataRelativeVirtualAddress), unchecked((uint)e.DataPointer), unchecked((uint)e.DataSize)));
                    if (CodeView is null && e.Type == DebugDirectoryEntryType.CodeView && e.DataPointer != 0 && e.DataSize >= 24)
                    {
                        try { var cv = pe.ReadCodeViewDebugDirectoryData(e); CodeView = (cv.Guid, unchecked((uint)cv.Age), cv.Path); }
                        catch (BadImageFormatException) { } // not an RSDS record: the image has no usable CodeView identity
                    }
                }
            }
            DebugEntries = entries;
        }
        catch (BadImageFormatException ex) { throw new DumpFormatException($"not a readable PE image ({ex.Message})"); }
    }

    /// <summary>File offsets of a section header's SizeOfRawData and PointerToRawData (the forge repacks raw data).</summary>
    public static int RawSizeOffset(Section s) => s.HeaderOffset + 16;
    public static int RawPointerOffset(Section s) => s.HeaderOffset + 20;
    /// <summary>File offsets of a debug entry's TimeDateStamp and PointerToRawData.</summary>
    public static int EntryTimeDateStampOffset(DebugEntry e) => e.EntryOffset + 4;
    public static int EntryDataPointerOffset(DebugEntry e) => e.EntryOffset + 24;

    /// <summary>File offset of an RVA: in the headers, or in a section's raw data; null where the file has no bytes for it.</summary>
    public int? RvaToFile(uint rva)
    {
        if (rva < SizeOfHeaders) return (int)rva;
        foreach (var s in Sections)
            if (rva >= s.VirtualAddress && rva < s.VirtualAddress + Math.Max(s.VirtualSize, s.RawSize) && rva - s.VirtualAddress < s.RawSize)
                return (int)(s.RawPointer + (rva - s.VirtualAddress));
        return null;
    }

    /// <summary>Maps the image at <paramref name="baseVa"/>: SizeOfImage bytes present (zero-filled), headers and section raw data copied.</summary>
    public void MapInto(SparseMemory memory, ulong baseVa)
    {
        memory.Map(baseVa, SizeOfImage);
        memory.Write(baseVa, File.AsSpan(0, (int)Math.Min(SizeOfHeaders, (uint)File.Length)));
        foreach (var s in Sections)
        {
            uint n = Math.Min(s.RawSize, s.VirtualSize == 0 ? s.RawSize : s.VirtualSize);
            if (s.RawPointer >= File.Length || n == 0) continue;
            n = (uint)Math.Min(n, File.Length - s.RawPointer);
            memory.Write(baseVa + s.VirtualAddress, File.AsSpan((int)s.RawPointer, (int)n));
        }
    }
}
