using System.Buffers.Binary;
using System.Diagnostics;

namespace NtSleuth.Lab.Dumps;

/// <summary>Which kind of x64 kernel dump file to write (DUMP_HEADER64.DumpType, mindumpdef.h DUMP_TYPES).</summary>
public enum KernelDumpKind
{
    /// <summary>DumpType 1 (DUMP_TYPE_FULL): "Kernel Complete Dump File" — every page of the PHYSICAL_MEMORY_DESCRIPTOR runs, in run order.</summary>
    Complete = 1,
    /// <summary>DumpType 5 (DUMP_TYPE_BITMAP_FULL): BMP_HEADER64 'FDMP' + a bitmap of present physical pages.</summary>
    BitmapFull = 5,
    /// <summary>DumpType 6 (DUMP_TYPE_BITMAP_KERNEL): BMP_HEADER64 'SDMP' + bitmap ("kernel memory" bitmap dump).</summary>
    BitmapKernel = 6,
}

/// <summary>
/// What goes into DUMP_HEADER64 besides the memory: the kernel's identity, the bugcheck and the register state.
/// Addresses are kernel VAs (KdDebuggerDataBlock, PsLoadedModuleList, ...). <see cref="ContextRecord"/> is the raw x64
/// CONTEXT (0x4d0 bytes; see <see cref="KernelDumpPreparation.BuildContext"/>, which lays it out from the ISF
/// _CONTEXT) optionally followed by KSPECIAL_REGISTERS; at most 3000 bytes (DUMP_HEADER64.ContextRecord[3000]).
/// </summary>
public sealed record KernelDumpHeader
{
    public required uint BuildNumber { get; init; }
    /// <summary>0xF = free build, 0xC = checked (mindumpdef.h; crash-dump-format.md line for 0x008).</summary>
    public uint MajorVersion { get; init; } = 0xF;
    public ulong PfnDataBase { get; init; }
    public required ulong PsLoadedModuleList { get; init; }
    public required ulong PsActiveProcessHead { get; init; }
    public required ulong KdDebuggerDataBlock { get; init; }
    public uint NumberProcessors { get; init; } = 1;
    public uint BugCheckCode { get; init; }
    public ulong[] BugCheckParameters { get; init; } = new ulong[4];
    public byte[] ContextRecord { get; init; } = [];
    /// <summary>Raw EXCEPTION_RECORD64 (0x98 bytes) or null for a zeroed record.</summary>
    public byte[]? Exception { get; init; }
    public DateTime SystemTimeUtc { get; init; } = new(2026, 11, 21, 12, 0, 0, DateTimeKind.Utc);
    public TimeSpan SystemUpTime { get; init; } = TimeSpan.FromHours(5);
    /// <summary>NT_PRODUCT_TYPE: 1 WinNt (workstation), 2 LanManNt (DC), 3 Server.</summary>
    public uint ProductType { get; init; } = 1;
    public uint SuiteMask { get; init; } = 0x110;
    public string? Comment { get; init; }
}

/// <summary>Choices about the physical side of the dump (the scenario only has virtual pages).</summary>
public sealed record PhysicalLayoutOptions
{
    /// <summary>PFN of the PML4 (DirectoryTableBase = PFN * 0x1000). PFN 0 is left unused and absent from bitmaps.</summary>
    public ulong Pml4Pfn { get; init; } = 1;
    /// <summary>
    /// PML4 index of the page-table self-map entry (PML4[i] -> PML4), as Windows does: 0x1ED is the fixed index of
    /// Windows 7 .. 10 1511 (PTE base 0xFFFFF680`00000000); later builds randomise it. Null = no self-map.
    /// </summary>
    public int? SelfMapIndex { get; init; } = 0x1ED;
    /// <summary>Share one physical page for every all-zero virtual page (read-only semantics are not modelled).</summary>
    public bool ShareZeroPages { get; init; } = true;
    /// <summary>
    /// Other processes' user address spaces (e.g. the Registry process). Each gets its own PML4 at
    /// <see cref="ProcessPml4Pfn"/> (kernel half = the system PML4's entries, user half = that process's pages on their
    /// own physical pages); <see cref="KernelDumpPreparation"/> writes that PML4's address into the process's
    /// _EPROCESS.Pcb.DirectoryTableBase. Empty = one address space (the layout is then exactly as without this option).
    /// </summary>
    public IReadOnlyList<ProcessAddressSpace> ProcessSpaces { get; init; } = [];

    /// <summary>PFN of the PML4 of <see cref="ProcessSpaces"/>[index]: the PFNs right after the system PML4.</summary>
    public ulong ProcessPml4Pfn(int index) => Pml4Pfn + 1 + (ulong)index;
}

/// <summary>A process's user address space for the dump: its _EPROCESS (kernel VA) and its user pages.</summary>
public sealed record ProcessAddressSpace(ulong EProcess, SparseMemory Memory);

/// <summary>The physical memory assigned to a scenario: PFN -> page bytes, VA page -> PFN, and the page tables.</summary>
public sealed class PhysicalLayout
{
    public required ulong DirectoryTableBase { get; init; }
    /// <summary>PFN of the shared zero page, or null when sharing is off.</summary>
    public ulong? ZeroPagePfn { get; init; }
    /// <summary>Index = PFN; null = page not present (PFN 0, holes).</summary>
    public required IReadOnlyList<byte[]?> Pages { get; init; }
    public required IReadOnlyDictionary<ulong, ulong> VaToPfn { get; init; }
    public required int PageTablePages { get; init; }
    public int? SelfMapIndex { get; init; }
    /// <summary>EPROCESS -> DirectoryTableBase of each extra process address space (<see cref="PhysicalLayoutOptions.ProcessSpaces"/>).</summary>
    public IReadOnlyDictionary<ulong, ulong> ProcessDirectoryTableBases { get; init; } = new Dictionary<ulong, ulong>();
    /// <summary>EPROCESS -> (user VA page -> PFN) of each extra process address space.</summary>
    public IReadOnlyDictionary<ulong, IReadOnlyDictionary<ulong, ulong>> ProcessVaToPfn { get; init; } = new Dictionary<ulong, IReadOnlyDictionary<ulong, ulong>>();

    public ulong PageCount => (ulong)Pages.Count;
    public ulong PresentPages => (ulong)Pages.Count(p => p is not null);

    /// <summary>PTE base VA of the self-map (KDDEBUGGER_DATA64.PteBase, nt!MmPteBase), or 0 without one.</summary>
    public ulong PteBase => SelfMapIndex is int i ? KernelDumpWriter.Canonical((ulong)i << 39) : 0;
}

/// <summary>Result of writing a dump: where, how big, how long, and the physical layout used.</summary>
public sealed record KernelDumpResult(string Path, KernelDumpKind Kind, long FileSize, TimeSpan Elapsed, PhysicalLayout Layout);

/// <summary>
/// Writes Windows x64 kernel crash dumps ("PAGEDU64") from a scenario's <see cref="SparseMemory"/>:
/// assigns physical pages (one shared zero page for all-zero virtual pages), builds 4-level x64 page tables in
/// physical memory, and writes DUMP_HEADER64 followed by a complete (DumpType 1) or bitmap (DumpType 5/6) body.
/// Header offsets: ../shared/docs/crash-dump-format.md (Windows SDK um/mindumpdef.h DUMP_HEADER64; kdmp-parser's
/// static_asserts pin BugCheckParameters 0x40, KdDebuggerDataBlock 0x80, ContextRecord 0x348, Exception 0xf00,
/// Comment 0xfb0). Page-table entry format: Intel SDM vol. 3A §4.5 (4-level paging: bits 47:39/38:30/29:21/20:12
/// index PML4/PDPT/PD/PT; bit 0 Present, bit 1 R/W, bit 2 U/S, bit 5 Accessed, bit 6 Dirty, bit 7 PS, bits 51:12 PFN).
/// </summary>
public static class KernelDumpWriter
{
    public const int HeaderSize = 0x2000;
    public const int PageSize = 0x1000;

    // DUMP_HEADER64 field offsets (crash-dump-format.md table).
    public const int OffSignature = 0x000, OffValidDump = 0x004, OffMajorVersion = 0x008, OffMinorVersion = 0x00c,
        OffDirectoryTableBase = 0x010, OffPfnDataBase = 0x018, OffPsLoadedModuleList = 0x020, OffPsActiveProcessHead = 0x028,
        OffMachineImageType = 0x030, OffNumberProcessors = 0x034, OffBugCheckCode = 0x038, OffBugCheckParameters = 0x040,
        OffVersionUser = 0x060, OffKdDebuggerDataBlock = 0x080, OffPhysicalMemoryBlock = 0x088, OffContextRecord = 0x348,
        OffException = 0xf00, OffDumpType = 0xf98, OffRequiredDumpSpace = 0xfa0, OffSystemTime = 0xfa8, OffComment = 0xfb0,
        OffSystemUpTime = 0x1030, OffMiniDumpFields = 0x1038, OffSecondaryDataState = 0x103c, OffProductType = 0x1040,
        OffSuiteMask = 0x1044, OffWriterStatus = 0x1048, OffKdSecondaryVersion = 0x104d, OffAttributes = 0x1050, OffBootId = 0x1054;
    public const int ContextRecordSize = 3000;          // DUMP_HEADER64.ContextRecord[3000]
    public const int PhysicalMemoryBlockSize = 700;     // DUMP_HEADER64.PhysicalMemoryBlockBuffer[700]
    public const uint SignaturePage = 0x45474150;       // 'PAGE' (DUMP_SIGNATURE64)
    public const uint ValidDumpDu64 = 0x34365544;       // 'DU64' (DUMP_VALID_DUMP64)
    public const uint BmpSignatureSdmp = 0x504D4453;    // 'SDMP' (kdmp-parser BMP_HEADER64::ExpectedSignature)
    public const uint BmpSignatureFdmp = 0x504D4446;    // 'FDMP' (BMP_HEADER64::ExpectedSignature2)
    public const uint BmpValidDump = 0x504D5544;        // 'DUMP'
    public const int BmpOffFirstPage = 0x20, BmpOffTotalPresentPages = 0x28, BmpOffPages = 0x30, BmpOffBitmap = 0x38;

    // PTE bits (Intel SDM 3A §4.5).
    public const ulong PtePresent = 1, PteWrite = 2, PteUser = 4, PteAccessed = 0x20, PteDirty = 0x40, PteLargePage = 0x80;
    public const ulong PtePfnMask = 0x000F_FFFF_FFFF_F000;

    /// <summary>Sign-extends bit 47 (canonical x64 address).</summary>
    public static ulong Canonical(ulong va) => (va & (1UL << 47)) != 0 ? va | 0xFFFF_0000_0000_0000 : va & 0x0000_FFFF_FFFF_FFFF;

    /// <summary>Assigns physical pages and builds the page tables (deterministic for the same memory).</summary>
    public static PhysicalLayout Layout(SparseMemory memory, PhysicalLayoutOptions? options = null)
    {
        options ??= new PhysicalLayoutOptions();
        if (options.Pml4Pfn == 0) throw new ArgumentException("the PML4 cannot be PFN 0 (PFN 0 is left unused)");
        var pages = new List<byte[]?>();
        void Put(ulong pfn, byte[] page)
        {
            while ((ulong)pages.Count <= pfn) pages.Add(null);
            pages[(int)pfn] = page;
        }
        ulong next = 0;
        ulong Alloc(byte[] page)
        {
            while (next < (ulong)pages.Count && (pages[(int)next] is not null || next == 0)) next++;
            if (next == 0) next = 1;
            Put(next, page);
            return next++;
        }

        var pml4 = new byte[PageSize];
        Put(options.Pml4Pfn, pml4);
        var processPml4s = new List<byte[]>();
        for (int i = 0; i < options.ProcessSpaces.Count; i++)
        {
            var sp = options.ProcessSpaces[i];
            if (sp.EProcess < 0xFFFF_8000_0000_0000) throw new ArgumentException($"process space {i}: EPROCESS {sp.EProcess:x} is not a kernel address");
            var kernelPage = sp.Memory.Pages.Select(p => p.Key).FirstOrDefault(va => va >= 0x0000_8000_0000_0000);
            if (kernelPage != 0) throw new ArgumentException($"process space of EPROCESS {sp.EProcess:x}: page {kernelPage:x} is not a user address (the kernel half is shared)");
            var p4 = new byte[PageSize];
            ulong pfn = options.ProcessPml4Pfn(i);
            if ((ulong)pages.Count > pfn && pages[(int)pfn] is not null) throw new ArgumentException($"process PML4 PFN {pfn} is taken");
            Put(pfn, p4);
            processPml4s.Add(p4);
        }
        ulong? zeroPfn = null;
        if (options.ShareZeroPages) zeroPfn = Alloc(new byte[PageSize]);

        if (options.SelfMapIndex is int self)
        {
            if (self is < 256 or > 511) throw new ArgumentException("self-map index must be a kernel-half PML4 slot (256..511)");
            ulong lo = Canonical((ulong)self << 39), hi = lo + (1UL << 39);
            var clash = memory.Pages.Select(p => p.Key).FirstOrDefault(va => va >= lo && va < hi);
            if (clash != 0) throw new ArgumentException($"scenario page {clash:x} lies in the page-table self-map range (PML4 slot 0x{self:x})");
            WriteEntry(pml4, self, options.Pml4Pfn, PtePresent | PteWrite | PteAccessed | PteDirty);
        }

        int tableCount = 1 + processPml4s.Count;
        var vaToPfn = new Dictionary<ulong, ulong>();
        MapPages(memory, pml4, vaToPfn);

        // Extra process spaces: kernel half = the system PML4's entries (self-map: the process's own PML4, as Windows
        // does), user half = the process's pages.
        var processDtbs = new Dictionary<ulong, ulong>();
        var processVaToPfn = new Dictionary<ulong, IReadOnlyDictionary<ulong, ulong>>();
        for (int i = 0; i < processPml4s.Count; i++)
        {
            var sp = options.ProcessSpaces[i];
            var p4 = processPml4s[i];
            ulong pfn = options.ProcessPml4Pfn(i);
            pml4.AsSpan(256 * 8, 256 * 8).CopyTo(p4.AsSpan(256 * 8));
            if (options.SelfMapIndex is int si) WriteEntry(p4, si, pfn, PtePresent | PteWrite | PteAccessed | PteDirty);
            var map = new Dictionary<ulong, ulong>();
            MapPages(sp.Memory, p4, map);
            processDtbs[sp.EProcess] = pfn << 12;
            processVaToPfn[sp.EProcess] = map;
        }

        void MapPages(SparseMemory space, byte[] root, Dictionary<ulong, ulong> vaPfn)
        {
            foreach (var (va, data) in space.Pages)
            {
                ulong pfn;
                if (zeroPfn is ulong z && data.AsSpan().IndexOfAnyExcept((byte)0) < 0) pfn = z;
                else pfn = Alloc((byte[])data.Clone());
                vaPfn[va] = pfn;

                bool user = va < 0x0000_8000_0000_0000;
                ulong flags = PtePresent | PteWrite | PteAccessed | (user ? PteUser : 0);
                // Walk PML4 -> PDPT -> PD, creating tables as needed; then the PT entry.
                byte[] table = root;
                for (int level = 4; level > 1; level--)
                {
                    int shift = 12 + 9 * (level - 1);
                    int idx = (int)((va >> shift) & 0x1ff);
                    ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(table.AsSpan(idx * 8));
                    byte[] child;
                    if ((entry & PtePresent) == 0)
                    {
                        child = new byte[PageSize];
                        ulong childPfn = Alloc(child);
                        tableCount++;
                        WriteEntry(table, idx, childPfn, flags);
                    }
                    else child = pages[(int)((entry & PtePfnMask) >> 12)]!;
                    table = child;
                }
                WriteEntry(table, (int)((va >> 12) & 0x1ff), pfn, flags | PteDirty);
            }
        }
        return new PhysicalLayout
        {
            DirectoryTableBase = options.Pml4Pfn << 12, ZeroPagePfn = zeroPfn, Pages = pages, VaToPfn = vaToPfn,
            PageTablePages = tableCount, SelfMapIndex = options.SelfMapIndex,
            ProcessDirectoryTableBases = processDtbs, ProcessVaToPfn = processVaToPfn,
        };
    }

    private static void WriteEntry(byte[] table, int index, ulong pfn, ulong flags) =>
        BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(index * 8), (pfn << 12) | flags);

    /// <summary>Lays out physical memory and writes the dump file.</summary>
    public static KernelDumpResult Write(string path, SparseMemory memory, KernelDumpHeader header, KernelDumpKind kind,
        PhysicalLayoutOptions? options = null)
    {
        var sw = Stopwatch.StartNew();
        var layout = Layout(memory, options);
        using (var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            Write(fs, layout, header, kind);
        return new KernelDumpResult(path, kind, new FileInfo(path).Length, sw.Elapsed, layout);
    }

    /// <summary>Writes the dump for an existing physical layout to a stream.</summary>
    public static void Write(Stream output, PhysicalLayout layout, KernelDumpHeader header, KernelDumpKind kind)
    {
        ulong n = layout.PageCount;
        long bodyOffset;
        byte[]? bmpHeader = null;
        if (kind == KernelDumpKind.Complete) bodyOffset = HeaderSize;
        else
        {
            int bitmapBytes = (int)((n + 7) / 8);
            bodyOffset = AlignUp(HeaderSize + BmpOffBitmap + bitmapBytes, PageSize);
            bmpHeader = new byte[bodyOffset - HeaderSize];
            var b = bmpHeader.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(b, kind == KernelDumpKind.BitmapFull ? BmpSignatureFdmp : BmpSignatureSdmp);
            BinaryPrimitives.WriteUInt32LittleEndian(b[4..], BmpValidDump);
            BinaryPrimitives.WriteUInt64LittleEndian(b[BmpOffFirstPage..], (ulong)bodyOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(b[BmpOffTotalPresentPages..], layout.PresentPages);
            BinaryPrimitives.WriteUInt64LittleEndian(b[BmpOffPages..], n);
            for (ulong pfn = 0; pfn < n; pfn++)
                if (layout.Pages[(int)pfn] is not null) b[BmpOffBitmap + (int)(pfn / 8)] |= (byte)(1 << (int)(pfn % 8));
        }
        ulong bodyPages = kind == KernelDumpKind.Complete ? n : layout.PresentPages;
        long total = bodyOffset + (long)bodyPages * PageSize;

        output.Write(BuildHeader(layout, header, kind, total));
        if (bmpHeader is not null) output.Write(bmpHeader);
        var zero = new byte[PageSize];
        for (ulong pfn = 0; pfn < n; pfn++)
        {
            var page = layout.Pages[(int)pfn];
            if (page is null) { if (kind == KernelDumpKind.Complete) output.Write(zero); }
            else output.Write(page);
        }
    }

    private static long AlignUp(long v, long a) => (v + a - 1) / a * a;

    /// <summary>DUMP_HEADER64 (0x2000 bytes). Unused bytes hold 'PAGE', as Windows writes them (crash-dump-format.md, Attributes note).</summary>
    public static byte[] BuildHeader(PhysicalLayout layout, KernelDumpHeader h, KernelDumpKind kind, long fileSize)
    {
        var buf = new byte[HeaderSize];
        var s = buf.AsSpan();
        for (int i = 0; i < HeaderSize; i += 4) BinaryPrimitives.WriteUInt32LittleEndian(s[i..], SignaturePage);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffSignature..], SignaturePage);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffValidDump..], ValidDumpDu64);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffMajorVersion..], h.MajorVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffMinorVersion..], h.BuildNumber);
        BinaryPrimitives.WriteUInt64LittleEndian(s[OffDirectoryTableBase..], layout.DirectoryTableBase);
        BinaryPrimitives.WriteUInt64LittleEndian(s[OffPfnDataBase..], h.PfnDataBase);
        BinaryPrimitives.WriteUInt64LittleEndian(s[OffPsLoadedModuleList..], h.PsLoadedModuleList);
        BinaryPrimitives.WriteUInt64LittleEndian(s[OffPsActiveProcessHead..], h.PsActiveProcessHead);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffMachineImageType..], 0x8664); // IMAGE_FILE_MACHINE_AMD64
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffNumberProcessors..], h.NumberProcessors);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffBugCheckCode..], h.BugCheckCode);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(OffBugCheckCode + 4)..], 0);
        if (h.BugCheckParameters.Length != 4) throw new ArgumentException("exactly 4 bugcheck parameters");
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteUInt64LittleEndian(s[(OffBugCheckParameters + 8 * i)..], h.BugCheckParameters[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(s[OffKdDebuggerDataBlock..], h.KdDebuggerDataBlock);

        // PHYSICAL_MEMORY_DESCRIPTOR64: NumberOfRuns u32, pad u32, NumberOfPages u64, Run[] {BasePage u64, PageCount u64}.
        // One run covering PFN 0..n-1 (PFN 0 is part of the run; bitmap dumps mark it absent).
        var pm = s.Slice(OffPhysicalMemoryBlock, PhysicalMemoryBlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(pm, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(pm[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(pm[8..], layout.PageCount);
        BinaryPrimitives.WriteUInt64LittleEndian(pm[0x10..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(pm[0x18..], layout.PageCount);

        if (h.ContextRecord.Length > ContextRecordSize) throw new ArgumentException($"context record is {h.ContextRecord.Length} bytes; at most {ContextRecordSize}");
        var ctx = s.Slice(OffContextRecord, ContextRecordSize);
        ctx.Clear();
        h.ContextRecord.CopyTo(ctx);

        var ex = s.Slice(OffException, 0x98);
        ex.Clear();
        if (h.Exception is not null)
        {
            if (h.Exception.Length > 0x98) throw new ArgumentException("EXCEPTION_RECORD64 is 0x98 bytes");
            h.Exception.CopyTo(ex);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffDumpType..], (uint)kind);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(OffDumpType + 4)..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(s[OffRequiredDumpSpace..], fileSize);
        BinaryPrimitives.WriteInt64LittleEndian(s[OffSystemTime..], h.SystemTimeUtc.ToFileTimeUtc());
        if (h.Comment is not null)
        {
            var c = s.Slice(OffComment, 128);
            c.Clear();
            var bytes = System.Text.Encoding.ASCII.GetBytes(h.Comment);
            bytes.AsSpan(0, Math.Min(bytes.Length, 127)).CopyTo(c);
        }
        BinaryPrimitives.WriteInt64LittleEndian(s[OffSystemUpTime..], h.SystemUpTime.Ticks); // 100 ns units, like FILETIME
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffMiniDumpFields..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffSecondaryDataState..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffProductType..], h.ProductType);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffSuiteMask..], h.SuiteMask);
        BinaryPrimitives.WriteUInt32LittleEndian(s[OffWriterStatus..], 0);
        return buf;
    }
}
