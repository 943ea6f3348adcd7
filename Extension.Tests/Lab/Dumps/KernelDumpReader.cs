using System.Buffers.Binary;

namespace NtSleuth.Lab.Dumps;

/// <summary>Bad or unsupported dump input.</summary>
public sealed class DumpFormatException(string message) : Exception(message);

/// <summary>
/// A small, independent reader for x64 kernel dumps (DumpType 1 complete, 5/6 bitmap): parses DUMP_HEADER64, maps
/// PFNs to file offsets from the PHYSICAL_MEMORY_DESCRIPTOR runs or the BMP_HEADER64 bitmap, and translates VAs
/// through the 4-level page tables (2 MB / 1 GB large pages too). Tests use it to check writer output without wine.
/// Offsets: ../shared/docs/crash-dump-format.md.
/// </summary>
public sealed class KernelDumpReader
{
    private readonly byte[] _file;
    private readonly Dictionary<ulong, long> _pfnToOffset = new();

    public uint Signature { get; }
    public uint ValidDump { get; }
    public uint MajorVersion { get; }
    public uint MinorVersion { get; }
    public ulong DirectoryTableBase { get; }
    public ulong PfnDataBase { get; }
    public ulong PsLoadedModuleList { get; }
    public ulong PsActiveProcessHead { get; }
    public uint MachineImageType { get; }
    public uint NumberProcessors { get; }
    public uint BugCheckCode { get; }
    public ulong[] BugCheckParameters { get; }
    public ulong KdDebuggerDataBlock { get; }
    public uint DumpType { get; }
    public long RequiredDumpSpace { get; }
    public DateTime SystemTimeUtc { get; }
    public TimeSpan SystemUpTime { get; }
    public uint ProductType { get; }
    public IReadOnlyList<(ulong BasePage, ulong PageCount)> Runs { get; }
    public ulong NumberOfPages { get; }
    public ReadOnlyMemory<byte> ContextRecord => _file.AsMemory(KernelDumpWriter.OffContextRecord, KernelDumpWriter.ContextRecordSize);
    public ReadOnlyMemory<byte> Exception => _file.AsMemory(KernelDumpWriter.OffException, 0x98);
    /// <summary>Bitmap dumps: BMP_HEADER64 signature, first-page offset, present pages and bitmap size in pages.</summary>
    public uint BitmapSignature { get; }
    public ulong BitmapFirstPage { get; }
    public ulong BitmapTotalPresentPages { get; }
    public ulong BitmapPages { get; }
    public IEnumerable<ulong> PresentPfns => _pfnToOffset.Keys.Order();
    public long FileSize => _file.Length;

    public KernelDumpReader(byte[] file)
    {
        _file = file;
        if (file.Length < KernelDumpWriter.HeaderSize) throw new DumpFormatException($"file is {file.Length} bytes; a DUMP_HEADER64 is 0x2000");
        var s = file.AsSpan();
        Signature = U32(KernelDumpWriter.OffSignature);
        ValidDump = U32(KernelDumpWriter.OffValidDump);
        if (Signature != KernelDumpWriter.SignaturePage || ValidDump != KernelDumpWriter.ValidDumpDu64)
            throw new DumpFormatException($"not a PAGEDU64 dump (signature {Signature:x8} {ValidDump:x8})");
        MajorVersion = U32(KernelDumpWriter.OffMajorVersion);
        MinorVersion = U32(KernelDumpWriter.OffMinorVersion);
        DirectoryTableBase = U64(KernelDumpWriter.OffDirectoryTableBase);
        PfnDataBase = U64(KernelDumpWriter.OffPfnDataBase);
        PsLoadedModuleList = U64(KernelDumpWriter.OffPsLoadedModuleList);
        PsActiveProcessHead = U64(KernelDumpWriter.OffPsActiveProcessHead);
        MachineImageType = U32(KernelDumpWriter.OffMachineImageType);
        NumberProcessors = U32(KernelDumpWriter.OffNumberProcessors);
        BugCheckCode = U32(KernelDumpWriter.OffBugCheckCode);
        BugCheckParameters = [.. Enumerable.Range(0, 4).Select(i => U64(KernelDumpWriter.OffBugCheckParameters + 8 * i))];
        KdDebuggerDataBlock = U64(KernelDumpWriter.OffKdDebuggerDataBlock);
        DumpType = U32(KernelDumpWriter.OffDumpType);
        RequiredDumpSpace = (long)U64(KernelDumpWriter.OffRequiredDumpSpace);
        SystemTimeUtc = DateTime.FromFileTimeUtc((long)U64(KernelDumpWriter.OffSystemTime));
        SystemUpTime = TimeSpan.FromTicks((long)U64(KernelDumpWriter.OffSystemUpTime));
        ProductType = U32(KernelDumpWriter.OffProductType);

        int pm = KernelDumpWriter.OffPhysicalMemoryBlock;
        uint runs = U32(pm);
        NumberOfPages = U64(pm + 8);
        if (runs > (KernelDumpWriter.PhysicalMemoryBlockSize - 0x10) / 0x10) throw new DumpFormatException($"{runs} memory runs do not fit the header");
        var list = new List<(ulong, ulong)>();
        for (int i = 0; i < runs; i++) list.Add((U64(pm + 0x10 + 0x10 * i), U64(pm + 0x18 + 0x10 * i)));
        Runs = list;

        switch (DumpType)
        {
            case 1:
            {
                long off = KernelDumpWriter.HeaderSize;
                foreach (var (basePage, count) in Runs)
                    for (ulong p = 0; p < count; p++, off += KernelDumpWriter.PageSize) _pfnToOffset[basePage + p] = off;
                if (off > file.Length) throw new DumpFormatException($"runs need {off} bytes; file has {file.Length}");
                break;
            }
            case 5: case 6:
            {
                int b = KernelDumpWriter.HeaderSize;
                BitmapSignature = U32(b);
                if (BitmapSignature is not (KernelDumpWriter.BmpSignatureSdmp or KernelDumpWriter.BmpSignatureFdmp) || U32(b + 4) != KernelDumpWriter.BmpValidDump)
                    throw new DumpFormatException($"bad BMP_HEADER64 signature {BitmapSignature:x8}");
                BitmapFirstPage = U64(b + KernelDumpWriter.BmpOffFirstPage);
                BitmapTotalPresentPages = U64(b + KernelDumpWriter.BmpOffTotalPresentPages);
                BitmapPages = U64(b + KernelDumpWriter.BmpOffPages);
                long off = (long)BitmapFirstPage;
                for (ulong pfn = 0; pfn < BitmapPages; pfn++)
                {
                    if ((s[b + KernelDumpWriter.BmpOffBitmap + (int)(pfn / 8)] & (1 << (int)(pfn % 8))) == 0) continue;
                    _pfnToOffset[pfn] = off;
                    off += KernelDumpWriter.PageSize;
                }
                if ((ulong)_pfnToOffset.Count != BitmapTotalPresentPages) throw new DumpFormatException($"bitmap has {_pfnToOffset.Count} pages, header says {BitmapTotalPresentPages}");
                if (off > file.Length) throw new DumpFormatException($"bitmap pages need {off} bytes; file has {file.Length}");
                break;
            }
            default:
                throw new DumpFormatException($"DumpType {DumpType} is not supported by this reader (1, 5, 6)");
        }
    }

    public static KernelDumpReader Open(string path) => new(File.ReadAllBytes(path));

    private uint U32(int off) => BinaryPrimitives.ReadUInt32LittleEndian(_file.AsSpan(off));
    private ulong U64(int off) => BinaryPrimitives.ReadUInt64LittleEndian(_file.AsSpan(off));

    public bool TryGetPageOffset(ulong pfn, out long fileOffset) => _pfnToOffset.TryGetValue(pfn, out fileOffset);

    public bool ReadPhysical(ulong pa, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = pa + (ulong)done;
            if (!_pfnToOffset.TryGetValue(a >> 12, out long off)) return false;
            int inPage = (int)(a & 0xfff);
            int n = Math.Min(KernelDumpWriter.PageSize - inPage, buffer.Length - done);
            _file.AsSpan((int)(off + inPage), n).CopyTo(buffer[done..]);
            done += n;
        }
        return true;
    }

    public ulong ReadPhysicalU64(ulong pa)
    {
        Span<byte> b = stackalloc byte[8];
        if (!ReadPhysical(pa, b)) throw new DumpFormatException($"physical address {pa:x} is not in the dump");
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Translates a VA through the page tables at <paramref name="dtb"/> (default: the header's DirectoryTableBase); null when not present.</summary>
    public ulong? Translate(ulong va, ulong? dtb = null)
    {
        ulong table = (dtb ?? DirectoryTableBase) & KernelDumpWriter.PtePfnMask;
        Span<byte> b = stackalloc byte[8];
        for (int level = 4; level >= 1; level--)
        {
            int shift = 12 + 9 * (level - 1);
            ulong idx = (va >> shift) & 0x1ff;
            if (!ReadPhysical(table + idx * 8, b)) return null;
            ulong e = BinaryPrimitives.ReadUInt64LittleEndian(b);
            if ((e & KernelDumpWriter.PtePresent) == 0) return null;
            if (level is 3 or 2 && (e & KernelDumpWriter.PteLargePage) != 0)
            {
                ulong mask = (1UL << shift) - 1;
                return (e & KernelDumpWriter.PtePfnMask & ~mask) | (va & mask);
            }
            table = e & KernelDumpWriter.PtePfnMask;
        }
        return table | (va & 0xfff);
    }

    /// <summary>Reads virtual memory; returns the bytes read contiguously from <paramref name="va"/>.</summary>
    public int ReadVirtual(ulong va, Span<byte> buffer, ulong? dtb = null)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = va + (ulong)done;
            if (Translate(a, dtb) is not ulong pa) break;
            int n = Math.Min(KernelDumpWriter.PageSize - (int)(a & 0xfff), buffer.Length - done);
            if (!ReadPhysical(pa, buffer.Slice(done, n))) break;
            done += n;
        }
        return done;
    }

    public ulong ReadVirtualU64(ulong va)
    {
        Span<byte> b = stackalloc byte[8];
        if (ReadVirtual(va, b) != 8) throw new DumpFormatException($"virtual address {va:x} is not readable");
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }
}
