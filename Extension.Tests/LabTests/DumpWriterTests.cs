using System.Buffers.Binary;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>Kernel dump writer output checked with the independent <see cref="KernelDumpReader"/> and raw header bytes.</summary>
[TestFixture]
public class DumpWriterTests
{
    private static SparseMemory SampleMemory()
    {
        var m = new SparseMemory();
        m.WriteU64(0xFFFF_F800_0100_0000, 0x1122334455667788);     // kernel page with data
        m.Map(0xFFFF_F800_0100_1000, 0x3000);                      // three zero pages
        m.Write(0xFFFF_C000_2000_0ff8, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }); // straddles two pages
        m.WriteU64(0x0000_7FF6_0000_0000, 0xCAFEBABE);              // a user-mode page
        m.WriteU64(0xFFFF_FFFF_FFFF_E000, 0xFEEDFACE);              // near the top (last PML4/PDPT/PD slots; SparseMemory.Map loops on the very last page)
        return m;
    }

    private static KernelDumpHeader Header(byte[]? ctx = null) => new()
    {
        BuildNumber = 19041, PsLoadedModuleList = 0xFFFF_F800_0100_0100, PsActiveProcessHead = 0xFFFF_F800_0100_0200,
        KdDebuggerDataBlock = 0xFFFF_F800_0100_0300, PfnDataBase = 0xFFFF_FA80_0000_0000, NumberProcessors = 4,
        BugCheckCode = 0x133, BugCheckParameters = [0, 0x283, 0x282, 0], ContextRecord = ctx ?? [0xAA, 0xBB],
        SystemTimeUtc = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc), SystemUpTime = TimeSpan.FromSeconds(15700), ProductType = 3,
    };

    private static byte[] Write(SparseMemory m, KernelDumpKind kind, PhysicalLayoutOptions? o = null, KernelDumpHeader? h = null)
    {
        var layout = KernelDumpWriter.Layout(m, o);
        using var ms = new MemoryStream();
        KernelDumpWriter.Write(ms, layout, h ?? Header(), kind);
        return ms.ToArray();
    }

    [TestCase(KernelDumpKind.Complete)]
    [TestCase(KernelDumpKind.BitmapFull)]
    [TestCase(KernelDumpKind.BitmapKernel)]
    public void HeaderFieldsAtDocumentedOffsets(KernelDumpKind kind)
    {
        var f = Write(SampleMemory(), kind);
        uint U32(int o) => BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(o));
        ulong U64(int o) => BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(o));
        Assert.Multiple(() =>
        {
            Assert.That(U32(0x000), Is.EqualTo(0x45474150), "'PAGE'");
            Assert.That(U32(0x004), Is.EqualTo(0x34365544), "'DU64'");
            Assert.That(U32(0x008), Is.EqualTo(0xF));
            Assert.That(U32(0x00c), Is.EqualTo(19041));
            Assert.That(U64(0x010), Is.EqualTo(0x1000), "DirectoryTableBase = PML4 PFN 1");
            Assert.That(U64(0x018), Is.EqualTo(0xFFFF_FA80_0000_0000));
            Assert.That(U64(0x020), Is.EqualTo(0xFFFF_F800_0100_0100));
            Assert.That(U64(0x028), Is.EqualTo(0xFFFF_F800_0100_0200));
            Assert.That(U32(0x030), Is.EqualTo(0x8664));
            Assert.That(U32(0x034), Is.EqualTo(4));
            Assert.That(U32(0x038), Is.EqualTo(0x133));
            Assert.That(new[] { U64(0x40), U64(0x48), U64(0x50), U64(0x58) }, Is.EqualTo(new ulong[] { 0, 0x283, 0x282, 0 }));
            Assert.That(U64(0x080), Is.EqualTo(0xFFFF_F800_0100_0300));
            Assert.That(U32(0x088), Is.EqualTo(1), "one memory run");
            Assert.That(f[0x348], Is.EqualTo(0xAA)); Assert.That(f[0x349], Is.EqualTo(0xBB));
            Assert.That(U32(0xf98), Is.EqualTo((uint)kind));
            Assert.That((long)U64(0xfa0), Is.EqualTo(f.LongLength), "RequiredDumpSpace = file size");
            Assert.That(DateTime.FromFileTimeUtc((long)U64(0xfa8)), Is.EqualTo(new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc)));
            Assert.That(U32(0xfb0), Is.EqualTo(0x45474150), "Comment without a comment keeps the 'PAGE' filler");
            Assert.That(TimeSpan.FromTicks((long)U64(0x1030)), Is.EqualTo(TimeSpan.FromSeconds(15700)));
            Assert.That(U32(0x1040), Is.EqualTo(3), "ProductType");
            Assert.That(U32(0x1ffc), Is.EqualTo(0x45474150), "unused tail is 'PAGE'");
        });
        var r = new KernelDumpReader(f);
        Assert.That(r.BugCheckParameters, Is.EqualTo(new ulong[] { 0, 0x283, 0x282, 0 }));
        Assert.That(r.NumberProcessors, Is.EqualTo(4));
    }

    [TestCase(KernelDumpKind.Complete)]
    [TestCase(KernelDumpKind.BitmapFull)]
    public void EveryMappedPageTranslatesToItsBytes(KernelDumpKind kind)
    {
        var m = SampleMemory();
        var layout = KernelDumpWriter.Layout(m);
        var r = new KernelDumpReader(Write(m, kind));
        foreach (var (va, page) in m.Pages)
        {
            var pa = r.Translate(va);
            Assert.That(pa, Is.EqualTo(layout.VaToPfn[va] << 12), $"VA {va:x}");
            var buf = new byte[0x1000];
            Assert.That(r.ReadVirtual(va, buf), Is.EqualTo(0x1000));
            Assert.That(buf, Is.EqualTo(page), $"bytes of VA {va:x}");
        }
        Assert.That(r.Translate(0xFFFF_F800_0200_0000), Is.Null, "unmapped VA");
        var straddle = new byte[16];
        Assert.That(r.ReadVirtual(0xFFFF_C000_2000_0ff8, straddle), Is.EqualTo(16));
        Assert.That(straddle[15], Is.EqualTo(16));
        Assert.That(r.ReadVirtualU64(0xFFFF_FFFF_FFFF_E000), Is.EqualTo(0xFEEDFACEUL));
    }

    [Test]
    public void UserPagesCarryTheUserBitKernelPagesDoNot()
    {
        var m = SampleMemory();
        var r = new KernelDumpReader(Write(m, KernelDumpKind.Complete));
        ulong Pte(ulong va)
        {
            ulong t = r.DirectoryTableBase;
            ulong e = 0;
            for (int level = 4; level >= 1; level--)
            {
                e = r.ReadPhysicalU64(t + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8);
                t = e & KernelDumpWriter.PtePfnMask;
            }
            return e;
        }
        Assert.That(Pte(0x0000_7FF6_0000_0000) & KernelDumpWriter.PteUser, Is.Not.Zero);
        Assert.That(Pte(0xFFFF_F800_0100_0000) & KernelDumpWriter.PteUser, Is.Zero);
    }

    [Test]
    public void AllZeroPagesShareOnePhysicalPage()
    {
        var m = SampleMemory();
        m.Map(0xFFFF_F800_1000_0000, 0x100_0000); // a 16 MB zero image
        var shared = KernelDumpWriter.Layout(m);
        var zeroVas = m.Pages.Where(p => p.Value.All(b => b == 0)).Select(p => p.Key).ToList();
        Assert.That(zeroVas.Count, Is.GreaterThan(4096));
        Assert.That(zeroVas.Select(v => shared.VaToPfn[v]).Distinct(), Is.EqualTo(new[] { shared.ZeroPagePfn!.Value }));
        var unshared = KernelDumpWriter.Layout(m, new PhysicalLayoutOptions { ShareZeroPages = false });
        Assert.That(unshared.PageCount, Is.GreaterThan(shared.PageCount + 4000));
        var f = Write(m, KernelDumpKind.BitmapFull);
        Assert.That(f.Length, Is.LessThan(200 * 1024), "16 MB of zero pages cost one page plus page tables");
        var r = new KernelDumpReader(f);
        Assert.That(r.ReadVirtualU64(0xFFFF_F800_1080_0000), Is.Zero);
    }

    [Test]
    public void BitmapMatchesPresentPagesAndPfnZeroIsAbsent()
    {
        var m = SampleMemory();
        var layout = KernelDumpWriter.Layout(m);
        var f = Write(m, KernelDumpKind.BitmapFull);
        var r = new KernelDumpReader(f);
        Assert.Multiple(() =>
        {
            Assert.That(r.BitmapSignature, Is.EqualTo(KernelDumpWriter.BmpSignatureFdmp));
            Assert.That(r.BitmapPages, Is.EqualTo(layout.PageCount));
            Assert.That(r.BitmapTotalPresentPages, Is.EqualTo(layout.PresentPages));
            Assert.That(r.PresentPfns, Does.Not.Contain(0UL));
            Assert.That(r.BitmapFirstPage % 0x1000, Is.Zero);
            Assert.That(f.LongLength, Is.EqualTo((long)r.BitmapFirstPage + (long)layout.PresentPages * 0x1000));
        });
        var complete = new KernelDumpReader(Write(m, KernelDumpKind.Complete));
        Assert.That(complete.FileSize, Is.EqualTo(0x2000 + (long)layout.PageCount * 0x1000));
        Assert.That(complete.Runs, Is.EqualTo(new[] { (0UL, layout.PageCount) }));
    }

    [Test]
    public void SelfMapEntryMakesThePml4ReadableThroughPteBase()
    {
        var m = SampleMemory();
        var layout = KernelDumpWriter.Layout(m);
        Assert.That(layout.PteBase, Is.EqualTo(0xFFFF_F680_0000_0000UL));
        var r = new KernelDumpReader(Write(m, KernelDumpKind.Complete));
        // PML4 self-mapped: VA with all four indices = 0x1ED reads the PML4 itself.
        ulong pml4Va = KernelDumpWriter.Canonical((0x1EDUL << 39) | (0x1EDUL << 30) | (0x1EDUL << 21) | (0x1EDUL << 12));
        Assert.That(r.Translate(pml4Va), Is.EqualTo(r.DirectoryTableBase));
        Assert.That(r.ReadVirtualU64(pml4Va + 0x1ED * 8) & KernelDumpWriter.PtePfnMask, Is.EqualTo(r.DirectoryTableBase));
        m.WriteU64(0xFFFF_F680_0000_1000, 1);
        Assert.Throws<ArgumentException>(() => KernelDumpWriter.Layout(m), "scenario page inside the self-map range");
    }

    [TestCase(KernelDumpKind.Complete)]
    [TestCase(KernelDumpKind.BitmapFull)]
    public void ProcessSpaceHasItsOwnPml4SharingTheKernelHalf(KernelDumpKind kind)
    {
        var kernel = SampleMemory();
        var proc = new SparseMemory();
        const ulong bins = 0x0000_01d3_a000_0000, clash = 0x0000_7FF6_0000_0000;
        proc.Write(bins, "hbin"u8.ToArray());
        proc.WriteU64(bins + 0x1ff8, 0x0BADC0DE);   // second page of the range
        proc.WriteU64(clash, 0x5EC0D5EC);            // same VA as the system space's user page, other bytes
        const ulong eprocess = 0xFFFF_F800_0100_0000;
        var o = new PhysicalLayoutOptions { ProcessSpaces = [new ProcessAddressSpace(eprocess, proc)] };
        var layout = KernelDumpWriter.Layout(kernel, o);
        var r = new KernelDumpReader(Write(kernel, kind, o));
        ulong dtb = layout.ProcessDirectoryTableBases[eprocess];
        Assert.Multiple(() =>
        {
            Assert.That(dtb, Is.EqualTo(o.ProcessPml4Pfn(0) << 12).And.Not.EqualTo(r.DirectoryTableBase));
            Assert.That(r.Translate(bins), Is.Null, "the process's pages are not in the system address space");
            var b = new byte[4];
            Assert.That(r.ReadVirtual(bins, b, dtb), Is.EqualTo(4));
            Assert.That(b, Is.EqualTo("hbin"u8.ToArray()));
            var q = new byte[8];
            Assert.That(r.ReadVirtual(bins + 0x1ff8, q, dtb), Is.EqualTo(8));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(q), Is.EqualTo(0x0BADC0DEUL));
            r.ReadVirtual(clash, q, dtb);
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(q), Is.EqualTo(0x5EC0D5ECUL), "user half is the process's own");
            Assert.That(r.ReadVirtualU64(clash), Is.EqualTo(0xCAFEBABEUL), "system space keeps its user page");
            r.ReadVirtual(0xFFFF_F800_0100_0000, q, dtb);
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(q), Is.EqualTo(0x1122334455667788UL), "kernel half shared");
            ulong e = r.ReadPhysicalU64(dtb + 0x1ED * 8);
            Assert.That(e & KernelDumpWriter.PtePfnMask, Is.EqualTo(dtb), "the process's self-map points at its own PML4");
            for (int i = 256; i < 512; i++)
                if (i != 0x1ED) Assert.That(r.ReadPhysicalU64(dtb + (ulong)i * 8), Is.EqualTo(r.ReadPhysicalU64(r.DirectoryTableBase + (ulong)i * 8)), $"PML4[{i:x}]");
            Assert.That(r.ReadPhysicalU64(dtb + (ulong)((bins >> 39) & 0x1ff) * 8) & KernelDumpWriter.PteUser, Is.Not.Zero, "user bit on the process's user tables");
        });
    }

    [Test]
    public void WithoutProcessSpacesTheDumpIsUnchanged()
    {
        var a = Write(SampleMemory(), KernelDumpKind.BitmapFull);
        var b = Write(SampleMemory(), KernelDumpKind.BitmapFull, new PhysicalLayoutOptions { ProcessSpaces = [] });
        Assert.That(b, Is.EqualTo(a));
    }

    [Test]
    public void ProcessSpacesMustHoldUserPagesOnly()
    {
        var proc = new SparseMemory();
        proc.WriteU64(0xFFFF_F800_2000_0000, 1);
        var o = new PhysicalLayoutOptions { ProcessSpaces = [new ProcessAddressSpace(0xFFFF_F800_0100_0000, proc)] };
        Assert.That(() => KernelDumpWriter.Layout(SampleMemory(), o), Throws.ArgumentException.With.Message.Contains("not a user address"));
    }

    [Test]
    public void ReaderRejectsForeignFiles()
    {
        Assert.Throws<DumpFormatException>(() => new KernelDumpReader(new byte[0x2000]));
        Assert.Throws<DumpFormatException>(() => new KernelDumpReader(new byte[10]));
    }

    [Test]
    public void KdDebuggerDataLayoutMatchesWdbgexts()
    {
        // Spot checks against wdbgexts.h offsets that other tools also pin (volatility/rekall KDBG profiles).
        Assert.Multiple(() =>
        {
            Assert.That(KdDebuggerData64.U64Fields["KernBase"], Is.EqualTo(0x18));
            Assert.That(KdDebuggerData64.U64Fields["PsLoadedModuleList"], Is.EqualTo(0x48));
            Assert.That(KdDebuggerData64.U64Fields["PsActiveProcessHead"], Is.EqualTo(0x50));
            Assert.That(KdDebuggerData64.U64Fields["MmPfnDatabase"], Is.EqualTo(0xc0));
            Assert.That(KdDebuggerData64.U64Fields["PoolTrackTable"], Is.EqualTo(0x1b8));
            Assert.That(KdDebuggerData64.U64Fields["NtBuildLab"], Is.EqualTo(0x208));
            Assert.That(KdDebuggerData64.U64Fields["KiProcessorBlock"], Is.EqualTo(0x218));
            Assert.That(KdDebuggerData64.U64Fields["MmVirtualTranslationBase"], Is.EqualTo(0x290));
            Assert.That(KdDebuggerData64.U16Fields["OffsetPrcbProcStateSpecialReg"], Is.EqualTo(0x2f2));
            Assert.That(KdDebuggerData64.U16Fields["OffsetPrcbContext"], Is.EqualTo(0x338));
            Assert.That(KdDebuggerData64.U64Fields["PteBase"], Is.EqualTo(0x360));
        });
    }
}

/// <summary>The ISF-driven preparation, checked through the written dump (needs ../shared/realdata/isf).</summary>
[TestFixture]
public class DumpPreparationTests
{
    private const string Win10 = "5278AFF86C341677D7D7835C85B7B844-1", Win7 = "339E74133576439CBCDF7E0229DA3773-1";

    /// <summary>A fake ntoskrnl image is enough here: a minimal PE32+ header with SizeOfImage.</summary>
    internal static byte[] MinimalPe(uint sizeOfImage, uint timeDateStamp)
    {
        var f = new byte[0x400];
        f[0] = (byte)'M'; f[1] = (byte)'Z';
        BinaryPrimitives.WriteInt32LittleEndian(f.AsSpan(0x3c), 0x80);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x80), 0x4550);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x84), 0x8664);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x88), timeDateStamp);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x94), 0xf0);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x98), 0x20b);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x98 + 0x38), sizeOfImage);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x98 + 0x3c), 0x400);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x98 + 0x40), 0x1234);
        return f;
    }

    [TestCase(Win10, 19041u)]
    [TestCase(Win7, 7601u)]
    public void PreparedKernelStateReadsBackThroughTheDump(string guidAge, uint build)
    {
        var isf = IsfDocument.Load(ForgeTestEnv.IsfPath(guidAge));
        const ulong nt = 0xFFFF_F800_0460_0000;
        uint soi = (uint)((isf.Symbols.Values.Max() + 0x2000) & ~0xfffUL);
        var mem = new SparseMemory();
        var plan = new KernelDumpPlan
        {
            Nt = isf, BuildNumber = build, ProcessorCount = 2, BugCheckCode = 0x133, BugCheckParameters = [0, 0x283, 0x282, 0],
            Modules =
            [
                new KernelModuleSpec { Name = "ntoskrnl.exe", Base = nt, Image = MinimalPe(soi, 0x5f5f5f5f) },
                new KernelModuleSpec { Name = "ECHO.sys", Base = 0xFFFF_F800_1000_0000, SizeOfImage = 0x8000, TimeDateStamp = 0x11223344 },
            ],
        };
        var prep = KernelDumpPreparation.Prepare(mem, plan);
        var layout = KernelDumpWriter.Layout(mem, plan.Physical);
        using var ms = new MemoryStream();
        KernelDumpWriter.Write(ms, layout, prep.Header, KernelDumpKind.BitmapFull);
        var r = new KernelDumpReader(ms.ToArray());
        var w = new TypedMemory(mem, isf);
        ulong kdbg = nt + isf.GetSymbolRva("KdDebuggerDataBlock");
        Assert.That(r.KdDebuggerDataBlock, Is.EqualTo(kdbg));
        var k = new byte[KdDebuggerData64.Size];
        Assert.That(r.ReadVirtual(kdbg, k), Is.EqualTo(k.Length));
        ushort K16(string n) => BinaryPrimitives.ReadUInt16LittleEndian(k.AsSpan(KdDebuggerData64.U16Fields[n]));
        ulong K64(string n) => BinaryPrimitives.ReadUInt64LittleEndian(k.AsSpan(KdDebuggerData64.U64Fields[n]));
        Assert.Multiple(() =>
        {
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(k.AsSpan(0x10)), Is.EqualTo(KdDebuggerData64.OwnerTagKdbg));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(k.AsSpan(0x14)), Is.EqualTo(0x368));
            Assert.That(K64("KernBase"), Is.EqualTo(nt));
            Assert.That(K64("PsLoadedModuleList"), Is.EqualTo(nt + isf.GetSymbolRva("PsLoadedModuleList")));
            Assert.That(K64("KiProcessorBlock"), Is.EqualTo(nt + isf.GetSymbolRva("KiProcessorBlock")));
            Assert.That(K16("OffsetPrcbContext"), Is.EqualTo(w.Field("_KPRCB", "Context").Offset));
            Assert.That(K16("OffsetPrcbProcStateSpecialReg"), Is.EqualTo(w.Field("_KPRCB", "ProcessorState.SpecialRegisters").Offset));
            Assert.That(K16("SizeEProcess"), Is.EqualTo(isf.GetUserType("_EPROCESS").Size));
            Assert.That(K16("OffsetKThreadState"), Is.EqualTo(w.Field("_KTHREAD", "State").Offset));
        });

        // KiProcessorBlock -> KPRCB -> Context -> CONTEXT.Rip = nt!KeBugCheckEx; CR3 in the special registers = DTB.
        ulong prcb0 = r.ReadVirtualU64(nt + isf.GetSymbolRva("KiProcessorBlock"));
        ulong prcb1 = r.ReadVirtualU64(nt + isf.GetSymbolRva("KiProcessorBlock") + 8);
        Assert.That(new[] { prcb0, prcb1 }, Is.EqualTo(prep.Prcbs));
        ulong ctx = r.ReadVirtualU64(prcb0 + (ulong)w.Field("_KPRCB", "Context").Offset);
        Assert.That(r.ReadVirtualU64(ctx + (ulong)w.Field("_CONTEXT", "Rip").Offset), Is.EqualTo(nt + isf.GetSymbolRva("KeBugCheckEx")));
        Assert.That(r.ReadVirtualU64(prcb0 + (ulong)w.Field("_KPRCB", "ProcessorState.SpecialRegisters.Cr3").Offset), Is.EqualTo(r.DirectoryTableBase));
        ulong gdt = r.ReadVirtualU64(prcb0 + (ulong)w.Field("_KPRCB", "ProcessorState.SpecialRegisters.Gdtr.Base").Offset);
        Assert.That((r.ReadVirtualU64(gdt + 0x10) >> 53) & 1, Is.EqualTo(1UL), "KGDT64_R0_CODE is a long-mode code segment");
        // Header context record = CONTEXT of the event processor.
        ulong hdrRip = BinaryPrimitives.ReadUInt64LittleEndian(r.ContextRecord.Span[(int)w.Field("_CONTEXT", "Rip").Offset..]);
        Assert.That(hdrRip, Is.EqualTo(nt + isf.GetSymbolRva("KeBugCheckEx")));

        // PsLoadedModuleList: ntoskrnl.exe then ECHO.sys, names through UNICODE_STRINGs.
        string ldr = isf.UserTypes.ContainsKey("_KLDR_DATA_TABLE_ENTRY") ? "_KLDR_DATA_TABLE_ENTRY" : "_LDR_DATA_TABLE_ENTRY";
        ulong head = r.PsLoadedModuleList, e = r.ReadVirtualU64(head);
        var names = new List<string>();
        for (int i = 0; e != head && i < 10; i++, e = r.ReadVirtualU64(e))
        {
            ulong us = e + (ulong)w.Field(ldr, "BaseDllName").Offset;
            int len = (int)(r.ReadVirtualU64(us) & 0xffff);
            var b = new byte[len];
            r.ReadVirtual(r.ReadVirtualU64(us + 8), b);
            names.Add(System.Text.Encoding.Unicode.GetString(b));
            if (i == 0) Assert.That(r.ReadVirtualU64(e + (ulong)w.Field(ldr, "DllBase").Offset), Is.EqualTo(nt));
        }
        Assert.That(names, Is.EqualTo(new[] { "ntoskrnl.exe", "ECHO.sys" }));
        // The image header is mapped at the kernel base; the whole SizeOfImage is present.
        Assert.That(r.ReadVirtualU64(nt) & 0xffff, Is.EqualTo(0x5a4dUL));
        Assert.That(r.Translate(nt + soi - 0x1000), Is.Not.Null);
        Assert.That(r.PsActiveProcessHead, Is.EqualTo(r.ReadVirtualU64(r.PsActiveProcessHead)), "empty process list points to itself");
    }

    [Test]
    public void ProcessSpaceDirectoryTableBaseIsWrittenIntoItsEProcess()
    {
        var isf = IsfDocument.Load(ForgeTestEnv.IsfPath(Win10));
        const ulong nt = 0xFFFF_F800_0460_0000, eprocess = 0xFFFF_A58C_0200_0000, bins = 0x0000_01d3_a000_0000;
        uint soi = (uint)((isf.Symbols.Values.Max() + 0x2000) & ~0xfffUL);
        var mem = new SparseMemory();
        var w = new TypedMemory(mem, isf);
        mem.Map(eprocess, (ulong)w.SizeOf("_EPROCESS"));
        w.SetBytes(eprocess, "_EPROCESS", "ImageFileName", "Registry\0"u8.ToArray());
        var proc = new SparseMemory();
        proc.Write(bins, "hbin"u8.ToArray());
        var plan = new KernelDumpPlan
        {
            Nt = isf, BuildNumber = 19041,
            Modules = [new KernelModuleSpec { Name = "ntoskrnl.exe", Base = nt, Image = MinimalPe(soi, 0x5f5f5f5f) }],
            Physical = new PhysicalLayoutOptions { ProcessSpaces = [new ProcessAddressSpace(eprocess, proc)] },
        };
        var prep = KernelDumpPreparation.Prepare(mem, plan);
        var layout = KernelDumpWriter.Layout(mem, plan.Physical);
        using var ms = new MemoryStream();
        KernelDumpWriter.Write(ms, layout, prep.Header, KernelDumpKind.Complete);
        var r = new KernelDumpReader(ms.ToArray());
        ulong dtb = r.ReadVirtualU64(eprocess + (ulong)w.Field("_EPROCESS", "Pcb.DirectoryTableBase").Offset);
        Assert.That(dtb, Is.EqualTo(layout.ProcessDirectoryTableBases[eprocess]).And.Not.EqualTo(r.DirectoryTableBase));
        var b = new byte[4];
        Assert.That(r.ReadVirtual(bins, b), Is.EqualTo(0), "not in the system space");
        Assert.That(r.ReadVirtual(bins, b, dtb), Is.EqualTo(4));
        Assert.That(b, Is.EqualTo("hbin"u8.ToArray()));
    }
}
