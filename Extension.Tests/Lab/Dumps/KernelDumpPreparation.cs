using System.Text;
using NtSleuth.Commands.Symbols.Isf;

using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Dumps;

/// <summary>A loaded module for PsLoadedModuleList: its image (mapped at <see cref="Base"/>) or just its size.</summary>
public sealed record KernelModuleSpec
{
    /// <summary>Base name, e.g. "ntoskrnl.exe", "ndis.sys".</summary>
    public required string Name { get; init; }
    public required ulong Base { get; init; }
    /// <summary>The image file (e.g. the forged ntoskrnl.exe); null = no image, <see cref="SizeOfImage"/> zero pages mapped.</summary>
    public byte[]? Image { get; init; }
    /// <summary>Used when <see cref="Image"/> is null; otherwise the image header's values win.</summary>
    public uint SizeOfImage { get; init; }
    public uint TimeDateStamp { get; init; }
    public uint CheckSum { get; init; }
    /// <summary>FullDllName; default \SystemRoot\system32\[drivers\]NAME.</summary>
    public string? FullPath { get; init; }
}

/// <summary>Register values for the crash context (everything else: CONTEXT defaults of a kernel-mode thread).</summary>
public sealed record CrashRegisters
{
    public ulong Rip { get; init; }
    public ulong Rsp { get; init; }
    public ulong Rbp { get; init; }
    public ulong Rax { get; init; }
    public ulong Rcx { get; init; }
    public ulong Rdx { get; init; }
    public ulong R8 { get; init; }
    public ulong R9 { get; init; }
    public uint EFlags { get; init; } = 0x246;
}

/// <summary>What the dump preparation writes into a scenario before it becomes a kernel dump.</summary>
public sealed record KernelDumpPlan
{
    public required IsfDocument Nt { get; init; }
    public required uint BuildNumber { get; init; }
    /// <summary>ntoskrnl.exe first (its Base is the kernel base), then the other drivers.</summary>
    public required IReadOnlyList<KernelModuleSpec> Modules { get; init; }
    public int ProcessorCount { get; init; } = 1;
    /// <summary>Existing KPRCBs laid out by the scenario (one per processor), or null to create KPCR+KPRCB per processor.</summary>
    public IReadOnlyList<ulong>? Prcbs { get; init; }
    /// <summary>Current thread per processor (KPRCB.CurrentThread); null/0 = an idle thread created here.</summary>
    public IReadOnlyList<ulong>? CurrentThreads { get; init; }
    public int EventProcessor { get; init; }
    public uint BugCheckCode { get; init; }
    public ulong[] BugCheckParameters { get; init; } = new ulong[4];
    /// <summary>Registers of the event processor; Rip default nt!KeBugCheckEx, Rsp default inside a stack created here.</summary>
    public CrashRegisters? Registers { get; init; }
    public DateTime SystemTimeUtc { get; init; } = new(2026, 11, 21, 12, 0, 0, DateTimeKind.Utc);
    public TimeSpan SystemUpTime { get; init; } = TimeSpan.FromHours(5);
    public uint ProductType { get; init; } = 1;
    /// <summary>Where the preparation allocates its own structures (KPCR, GDT, CONTEXT, module entries, names, stacks).</summary>
    public ulong ScratchBase { get; init; } = 0xFFFF_F900_0000_0000;
    public PhysicalLayoutOptions Physical { get; init; } = new();
    /// <summary>nt!MmPfnDatabase value and DUMP_HEADER64.PfnDataBase (the PFN array itself is not modelled).</summary>
    public ulong PfnDatabase { get; init; } = 0xFFFF_FA80_0000_0000;
}

/// <summary>What the preparation produced: the dump header to write and where it put things.</summary>
public sealed record PreparedKernelDump(KernelDumpHeader Header, ulong KernelBase, ulong KdDebuggerDataBlock,
    IReadOnlyList<ulong> Prcbs, IReadOnlyList<ulong> Pcrs, IReadOnlyList<ulong> CurrentThreads, ulong Gdt,
    IReadOnlyList<ulong> ModuleEntries, PhysicalLayoutOptions Physical);

/// <summary>
/// Writes into a scenario's memory what Microsoft's engine needs to open it as a kernel dump (facts:
/// ../shared/docs/symbol-forge-facts.md, "Synthetic kernel dumps"): KDDEBUGGER_DATA64 at nt!KdDebuggerDataBlock (layout
/// from wdbgexts.h, see <see cref="KdDebuggerData64"/>; every Offset*/Size* value computed from the ISF), KPCR/KPRCB
/// per processor with KPRCB.Context -> CONTEXT and ProcessorState (CONTEXT + KSPECIAL_REGISTERS with CR3 and the GDTR),
/// a GDT, nt!KiProcessorBlock, PsLoadedModuleList with a _KLDR_DATA_TABLE_ENTRY per module (images mapped), an empty
/// PsActiveProcessHead if the scenario has no processes, KUSER_SHARED_DATA, NtBuildNumber/NtBuildLab/KeNumberProcessors.
/// All kernel-type offsets come from the ISF; only KDDEBUGGER_DATA64 (not in any PDB) and architectural values (GDT
/// descriptors, control-register bits, selectors) are written by hand.
/// </summary>
public static class KernelDumpPreparation
{
    // x64 selectors Windows uses (KGDT64_* in ntosp/ksamd64: R0 code 0x10, R0 data 0x18, R3 compat code 0x20 (|3 = 0x23),
    // R3 data 0x28 (0x2b), R3 code 0x30 (0x33), TSS 0x40, R3 compat TEB 0x50 (0x53)).
    public const ushort SelR0Code = 0x10, SelR0Data = 0x18, SelR3CmCode = 0x23, SelR3Data = 0x2b, SelR3Code = 0x33, SelTss = 0x40, SelR3CmTeb = 0x53;
    public const ulong KUserSharedData = 0xFFFF_F780_0000_0000;

    public static PreparedKernelDump Prepare(SparseMemory mem, KernelDumpPlan plan)
    {
        var isf = plan.Nt;
        var w = new TypedMemory(mem, isf);
        if (plan.Modules.Count == 0 || !plan.Modules[0].Name.Equals("ntoskrnl.exe", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException("the first module must be ntoskrnl.exe (its base is the kernel base)");
        ulong nt = plan.Modules[0].Base;
        ulong Sym(string name) => nt + isf.GetSymbolRva(name);
        ulong? TrySym(string name) => isf.Symbols.TryGetValue(name, out var r) ? nt + r : null;
        ulong dtb = plan.Physical.Pml4Pfn << 12;
        ulong scratch = plan.ScratchBase;
        ulong Alloc(ulong size, ulong align = 16)
        {
            scratch = (scratch + align - 1) & ~(align - 1);
            ulong a = scratch;
            scratch += Math.Max(size, 1);
            mem.Map(a, size);
            return a;
        }

        // --- module images and PsLoadedModuleList ---
        var entries = new List<ulong>();
        // _KLDR_DATA_TABLE_ENTRY where the table has it; the 8.1 table only has _LDR_DATA_TABLE_ENTRY, whose leading fields
        // (InLoadOrderLinks .. BaseDllName) the engine reads the same way.
        string ldr = isf.UserTypes.ContainsKey("_KLDR_DATA_TABLE_ENTRY") ? "_KLDR_DATA_TABLE_ENTRY" : "_LDR_DATA_TABLE_ENTRY";
        int kldr = (int)w.SizeOf(ldr);
        foreach (var m in plan.Modules)
        {
            uint size = m.SizeOfImage, tds = m.TimeDateStamp, chk = m.CheckSum, entry = 0;
            if (m.Image is not null)
            {
                var pe = new PeImage(m.Image);
                pe.MapInto(mem, m.Base);
                size = pe.SizeOfImage; tds = pe.TimeDateStamp; chk = pe.CheckSum; entry = pe.AddressOfEntryPoint;
            }
            else mem.Map(m.Base, size);
            ulong e = Alloc((ulong)kldr);
            string full = m.FullPath ?? (m.Name.EndsWith(".sys", StringComparison.OrdinalIgnoreCase)
                ? @"\SystemRoot\system32\drivers\" + m.Name : @"\SystemRoot\system32\" + m.Name);
            w.Set(e, ldr, "DllBase", m.Base);
            if (entry != 0) w.Set(e, ldr, "EntryPoint", m.Base + entry);
            w.Set(e, ldr, "SizeOfImage", size);
            w.SetUnicodeString(e, ldr, "FullDllName", full, Alloc((ulong)(full.Length + 1) * 2));
            w.SetUnicodeString(e, ldr, "BaseDllName", m.Name, Alloc((ulong)(m.Name.Length + 1) * 2));
            TrySet(w, e, ldr, "Flags", 0x49104000); // LDRP_IMAGE_DLL|ENTRY_PROCESSED|... as on live systems; not interpreted by the engine
            TrySet(w, e, ldr, "LoadCount", 1);
            if (w.Has(ldr, "CheckSum")) w.Set(e, ldr, "CheckSum", chk);
            if (w.Has(ldr, "TimeDateStamp")) w.Set(e, ldr, "TimeDateStamp", tds);
            if (w.Has(ldr, "SizeOfImageNotRounded")) w.Set(e, ldr, "SizeOfImageNotRounded", size);
            entries.Add(e);
        }
        int linkOff = (int)w.Field(ldr, "InLoadOrderLinks").Offset;
        ulong moduleList = Sym("PsLoadedModuleList");
        w.LinkList(moduleList, entries.Select(e => e + (ulong)linkOff).ToList());

        // --- PsActiveProcessHead: keep the scenario's list; otherwise an empty list ---
        ulong procHead = Sym("PsActiveProcessHead");
        mem.Map(procHead, 16);
        if (mem.ReadU64(procHead) == 0) w.LinkList(procHead, []);

        // --- GDT, IDT, TSS (architectural descriptors: Intel SDM 3A §3.4.5 / §8.2.3) ---
        ulong gdt = Alloc(0x1000, 0x1000), idt = Alloc(0x1000, 0x1000), tss = Alloc(0x68, 16);
        WriteGdt(mem, gdt, tss);

        // --- processors ---
        int n = Math.Max(1, plan.ProcessorCount);
        int prcbInPcr = (int)w.Field("_KPCR", "Prcb").Offset;
        var prcbs = new List<ulong>();
        var pcrs = new List<ulong>();
        for (int i = 0; i < n; i++)
        {
            ulong prcb, pcr;
            if (plan.Prcbs is not null && i < plan.Prcbs.Count && plan.Prcbs[i] != 0) { prcb = plan.Prcbs[i]; pcr = prcb - (ulong)prcbInPcr; mem.Map(pcr, (ulong)w.SizeOf("_KPCR")); }
            else { pcr = Alloc((ulong)w.SizeOf("_KPCR"), 0x1000); prcb = pcr + (ulong)prcbInPcr; }
            prcbs.Add(prcb); pcrs.Add(pcr);
        }

        // Idle process (not on PsActiveProcessHead, as on Windows) and per-processor idle threads where the scenario gave none.
        ulong idleProcess = Alloc((ulong)w.SizeOf("_EPROCESS"), 0x40);
        w.Set(idleProcess, "_EPROCESS", "Pcb.DirectoryTableBase", dtb);
        w.SetBytes(idleProcess, "_EPROCESS", "ImageFileName", Encoding.ASCII.GetBytes("Idle\0"));
        if (w.Has("_EPROCESS", "Pcb.Header.Type")) w.Set(idleProcess, "_EPROCESS", "Pcb.Header.Type", 3); // ProcessObject
        // Extra process address spaces (e.g. the Registry process): their _EPROCESS's DirectoryTableBase is the PML4 the
        // writer builds for them (PhysicalLayoutOptions.ProcessPml4Pfn).
        for (int i = 0; i < plan.Physical.ProcessSpaces.Count; i++)
            w.Set(plan.Physical.ProcessSpaces[i].EProcess, "_EPROCESS", "Pcb.DirectoryTableBase", plan.Physical.ProcessPml4Pfn(i) << 12);

        var threads = new List<ulong>();
        for (int i = 0; i < n; i++)
        {
            ulong t = plan.CurrentThreads is not null && i < plan.CurrentThreads.Count ? plan.CurrentThreads[i] : 0;
            ulong idle = Alloc((ulong)w.SizeOf("_ETHREAD"), 0x40);
            w.Set(idle, "_ETHREAD", "Tcb.Header.Type", 6); // ThreadObject
            w.Set(idle, "_ETHREAD", "Tcb.ApcState.Process", idleProcess);
            if (w.Has("_ETHREAD", "Tcb.Process")) w.Set(idle, "_ETHREAD", "Tcb.Process", idleProcess);
            w.Set(idle, "_ETHREAD", "Tcb.State", 2); // Running
            if (w.Has("_KTHREAD", "NextProcessor")) w.Set(idle, "_ETHREAD", "Tcb.NextProcessor", (ulong)i);
            ulong stack = Alloc(0x6000, 0x1000);
            w.Set(idle, "_ETHREAD", "Tcb.InitialStack", stack + 0x6000);
            w.Set(idle, "_ETHREAD", "Tcb.StackBase", stack + 0x6000);
            w.Set(idle, "_ETHREAD", "Tcb.StackLimit", stack);
            w.Set(idle, "_ETHREAD", "Tcb.KernelStack", stack + 0x5000);
            w.Set(prcbs[i], "_KPRCB", "IdleThread", idle);
            threads.Add(t != 0 ? t : idle);
        }

        // Crash context (event processor) and per-processor contexts.
        ulong bugcheck = TrySym("KeBugCheckEx") ?? nt + 0x1000;
        var regs = plan.Registers ?? new CrashRegisters();
        ulong eventStack = Alloc(0x6000, 0x1000);
        byte[] eventCtx = BuildContext(isf, regs with
        {
            Rip = regs.Rip != 0 ? regs.Rip : bugcheck,
            Rsp = regs.Rsp != 0 ? regs.Rsp : eventStack + 0x5000,
        });
        int ctxSize = (int)w.SizeOf("_CONTEXT");
        var specials = new List<byte[]>();
        for (int i = 0; i < n; i++)
        {
            ulong pcr = pcrs[i], prcb = prcbs[i];
            TrySet(w, pcr, "_KPCR", "Self", pcr);
            TrySet(w, pcr, "_KPCR", "CurrentPrcb", prcb);
            TrySet(w, pcr, "_KPCR", "GdtBase", gdt);
            TrySet(w, pcr, "_KPCR", "IdtBase", idt);
            TrySet(w, pcr, "_KPCR", "TssBase", tss);
            TrySet(w, pcr, "_KPCR", "MajorVersion", 1);
            TrySet(w, pcr, "_KPCR", "MinorVersion", 1);
            w.Set(prcb, "_KPRCB", "Number", (ulong)i);
            w.Set(prcb, "_KPRCB", "CurrentThread", threads[i]);
            TrySet(w, prcb, "_KPRCB", "MHz", 3000);
            TrySet(w, prcb, "_KPRCB", "CpuType", 6);
            if (w.Has("_KPRCB", "VendorString")) w.SetBytes(prcb, "_KPRCB", "VendorString", Encoding.ASCII.GetBytes("GenuineIntel\0"));
            byte[] ctx = i == plan.EventProcessor ? eventCtx : BuildContext(isf, new CrashRegisters { Rip = TrySym("KiIdleLoop") ?? bugcheck, Rsp = eventStack + 0x4000 });
            ulong ctxVa = Alloc((ulong)ctxSize, 16);
            mem.Write(ctxVa, ctx);
            w.Set(prcb, "_KPRCB", "Context", ctxVa);
            TrySet(w, prcb, "_KPRCB", "ContextFlagsInit", 0x10001F);
            var (psOff, _) = w.Field("_KPRCB", "ProcessorState.ContextFrame");
            mem.Write(prcb + (ulong)psOff, ctx);
            ulong sr = prcb + (ulong)w.Field("_KPRCB", "ProcessorState.SpecialRegisters").Offset;
            w.Set(sr, "_KSPECIAL_REGISTERS", "Cr0", 0x80050033);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Cr3", dtb);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Cr4", 0x406F8);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Gdtr.Base", gdt);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Gdtr.Limit", 0x57);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Idtr.Base", idt);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Idtr.Limit", 0xfff);
            w.Set(sr, "_KSPECIAL_REGISTERS", "Tr", SelTss);
            w.Set(sr, "_KSPECIAL_REGISTERS", "MxCsr", 0x1f80);
            w.Set(sr, "_KSPECIAL_REGISTERS", "MsrGsBase", pcr);
            var srBytes = new byte[w.SizeOf("_KSPECIAL_REGISTERS")];
            mem.Read(sr, srBytes);
            specials.Add(srBytes);
        }

        // nt globals.
        ulong kpb = Sym("KiProcessorBlock");
        for (int i = 0; i < n; i++) mem.WriteU64(kpb + 8 * (ulong)i, prcbs[i]);
        if (TrySym("KeNumberProcessors") is ulong knp) mem.WriteU32(knp, (uint)n);
        if (TrySym("NtBuildNumber") is ulong nbn) mem.WriteU32(nbn, 0xF0000000 | plan.BuildNumber);
        string buildLab = $"{plan.BuildNumber}.1.amd64fre.ntsleuth_lab.261121-1200";
        if (TrySym("NtBuildLab") is ulong nbl) mem.Write(nbl, Encoding.ASCII.GetBytes(buildLab + "\0"));
        if (TrySym("MmPfnDatabase") is ulong mpd) mem.WriteU64(mpd, plan.PfnDatabase);
        if (TrySym("MmSystemRangeStart") is ulong msr) mem.WriteU64(msr, 0xFFFF_8000_0000_0000);
        if (TrySym("MmHighestUserAddress") is ulong mhu) mem.WriteU64(mhu, 0x7FF_FFFE_FFFF);
        if (TrySym("MmUserProbeAddress") is ulong mup) mem.WriteU64(mup, 0x7FF_FFFF_0000);
        ulong pteBase = plan.Physical.SelfMapIndex is int si ? KernelDumpWriter.Canonical((ulong)si << 39) : 0;
        if (pteBase != 0 && TrySym("MmPteBase") is ulong mpb) mem.WriteU64(mpb, pteBase);

        // KUSER_SHARED_DATA (fields the engine reads for version/time; names from the ISF).
        if (isf.UserTypes.ContainsKey("_KUSER_SHARED_DATA"))
        {
            mem.Map(KUserSharedData, (ulong)w.SizeOf("_KUSER_SHARED_DATA"));
            var (maj, min) = VersionOf(plan.BuildNumber);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "NtMajorVersion", maj);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "NtMinorVersion", min);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "NtBuildNumber", plan.BuildNumber);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "NtProductType", plan.ProductType);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "ProductTypeIsValid", 1);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "NumberOfPhysicalPages", 0x100000);
            ulong ft = (ulong)plan.SystemTimeUtc.ToFileTimeUtc();
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.LowPart", ft & 0xffffffff);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.High1Time", ft >> 32);
            TrySet(w, KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.High2Time", ft >> 32);
        }

        // KDDEBUGGER_DATA64.
        ulong kdbg = Sym("KdDebuggerDataBlock");
        WriteKdDebuggerData(w, kdbg, nt, plan, prcbs, pteBase);

        var ex = new byte[w.SizeOf("_EXCEPTION_RECORD64")];
        var exMem = new SparseMemory();
        var exw = new TypedMemory(exMem, isf);
        exw.Set(0x1000, "_EXCEPTION_RECORD64", "ExceptionCode", 0x80000003); // STATUS_BREAKPOINT, as in Windows-written kernel dumps
        exw.Set(0x1000, "_EXCEPTION_RECORD64", "ExceptionAddress", regs.Rip != 0 ? regs.Rip : bugcheck);
        exMem.Read(0x1000, ex);

        var header = new KernelDumpHeader
        {
            BuildNumber = plan.BuildNumber,
            PfnDataBase = plan.PfnDatabase,
            PsLoadedModuleList = moduleList,
            PsActiveProcessHead = procHead,
            KdDebuggerDataBlock = kdbg,
            NumberProcessors = (uint)n,
            BugCheckCode = plan.BugCheckCode,
            BugCheckParameters = plan.BugCheckParameters,
            // CONTEXT then KSPECIAL_REGISTERS of the event processor (the engine reads both for an x64 kernel dump context).
            ContextRecord = [.. eventCtx, .. specials[Math.Clamp(plan.EventProcessor, 0, n - 1)]],
            Exception = ex,
            SystemTimeUtc = plan.SystemTimeUtc,
            SystemUpTime = plan.SystemUpTime,
            ProductType = plan.ProductType,
        };
        return new PreparedKernelDump(header, nt, kdbg, prcbs, pcrs, threads, gdt, entries, plan.Physical);
    }

    /// <summary>Prepares and writes a kernel dump of the scenario.</summary>
    public static (PreparedKernelDump Prepared, KernelDumpResult Result) WriteDump(string path, SparseMemory mem, KernelDumpPlan plan, KernelDumpKind kind)
    {
        var prep = Prepare(mem, plan);
        var r = KernelDumpWriter.Write(path, mem, prep.Header, kind, plan.Physical);
        return (prep, r);
    }

    /// <summary>(major, minor) NT version of a build number (7601 -> 6.1, 9600 -> 6.3, 10240+ -> 10.0).</summary>
    public static (uint Major, uint Minor) VersionOf(uint build) => build switch
    {
        < 7600 => (6, 0),
        < 9200 => (6, 1),
        < 9600 => (6, 2),
        < 10240 => (6, 3),
        _ => (10, 0),
    };

    /// <summary>An x64 CONTEXT laid out from the ISF _CONTEXT: kernel-mode segments, CONTEXT_FULL|SEGMENTS|DEBUG flags.</summary>
    public static byte[] BuildContext(IsfDocument isf, CrashRegisters r)
    {
        var m = new SparseMemory();
        var w = new TypedMemory(m, isf);
        const ulong at = 0x1000;
        int size = (int)w.SizeOf("_CONTEXT");
        m.Map(at, (ulong)size);
        w.Set(at, "_CONTEXT", "ContextFlags", 0x10001F); // CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT | DEBUG_REGISTERS (winnt.h)
        w.Set(at, "_CONTEXT", "MxCsr", 0x1f80);
        w.Set(at, "_CONTEXT", "SegCs", SelR0Code);
        w.Set(at, "_CONTEXT", "SegSs", SelR0Data);
        w.Set(at, "_CONTEXT", "SegDs", SelR3Data);
        w.Set(at, "_CONTEXT", "SegEs", SelR3Data);
        w.Set(at, "_CONTEXT", "SegFs", SelR3CmTeb);
        w.Set(at, "_CONTEXT", "SegGs", SelR3Data);
        w.Set(at, "_CONTEXT", "EFlags", r.EFlags);
        w.Set(at, "_CONTEXT", "Rip", r.Rip);
        w.Set(at, "_CONTEXT", "Rsp", r.Rsp);
        w.Set(at, "_CONTEXT", "Rbp", r.Rbp);
        w.Set(at, "_CONTEXT", "Rax", r.Rax);
        w.Set(at, "_CONTEXT", "Rcx", r.Rcx);
        w.Set(at, "_CONTEXT", "Rdx", r.Rdx);
        w.Set(at, "_CONTEXT", "R8", r.R8);
        w.Set(at, "_CONTEXT", "R9", r.R9);
        var b = new byte[size];
        m.Read(at, b);
        return b;
    }

    private static void TrySet(TypedMemory w, ulong addr, string type, string path, ulong value)
    {
        if (w.Has(type, path)) w.Set(addr, type, path, value);
    }

    /// <summary>
    /// x64 GDT as Windows sets it up (selectors above): 8-byte code/data descriptors (L bit for 64-bit code, DPL 0/3)
    /// and a 16-byte available 64-bit TSS descriptor (type 9). Encodings: Intel SDM 3A §3.4.5 and §7.2.3.
    /// </summary>
    public static void WriteGdt(SparseMemory mem, ulong gdt, ulong tss)
    {
        static ulong Seg(bool code, int dpl, bool longMode, bool def32)
        {
            ulong type = code ? 0xBUL : 0x3UL;                  // code: execute/read, accessed; data: read/write, accessed
            ulong d = 0xFFFFUL;                              // limit 15:0
            d |= (type | 0x10UL | ((ulong)dpl << 5) | 0x80UL) << 40; // S=1, DPL, P=1
            d |= 0xFUL << 48;                                // limit 19:16
            if (longMode) d |= 1UL << 53;                    // L
            if (def32) d |= 1UL << 54;                       // D/B
            d |= 1UL << 55;                                  // G
            return d;
        }
        mem.Map(gdt, 0x60);
        mem.WriteU64(gdt + 0x10, Seg(true, 0, true, false));   // KGDT64_R0_CODE
        mem.WriteU64(gdt + 0x18, Seg(false, 0, false, true));  // KGDT64_R0_DATA
        mem.WriteU64(gdt + 0x20, Seg(true, 3, false, true));   // KGDT64_R3_CMCODE
        mem.WriteU64(gdt + 0x28, Seg(false, 3, false, true));  // KGDT64_R3_DATA
        mem.WriteU64(gdt + 0x30, Seg(true, 3, true, false));   // KGDT64_R3_CODE
        ulong limit = 0x67;
        ulong lo = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89UL << 40) | (((tss >> 24) & 0xff) << 56);
        mem.WriteU64(gdt + 0x40, lo);                          // KGDT64_SYS_TSS (16 bytes)
        mem.WriteU64(gdt + 0x48, tss >> 32);
        mem.WriteU64(gdt + 0x50, Seg(false, 3, false, true) & ~(0xFUL << 48) | 0x3C00UL); // KGDT64_R3_CMTEB (limit 0x3c00, byte granular)
    }

    private static void WriteKdDebuggerData(TypedMemory w, ulong kdbg, ulong nt, KernelDumpPlan plan, IReadOnlyList<ulong> prcbs, ulong pteBase)
    {
        var mem = w.Memory;
        var isf = plan.Nt;
        mem.Map(kdbg, (ulong)KdDebuggerData64.Size);
        mem.Write(kdbg, new byte[KdDebuggerData64.Size]);
        // Header: List (LIST_ENTRY64 to itself, as a lone block), OwnerTag 'KDBG', Size.
        mem.WriteU64(kdbg, kdbg);
        mem.WriteU64(kdbg + 8, kdbg);
        mem.WriteU32(kdbg + KdDebuggerData64.OwnerTag, KdDebuggerData64.OwnerTagKdbg);
        mem.WriteU32(kdbg + KdDebuggerData64.HeaderSize, KdDebuggerData64.Size);
        // Every pointer field that names an nt global gets that global's address (KDBG holds addresses of variables).
        foreach (var (name, off) in KdDebuggerData64.U64Fields)
            if (isf.Symbols.TryGetValue(name, out var rva)) mem.WriteU64(kdbg + (ulong)off, nt + rva);
        mem.WriteU64(kdbg + (ulong)KdDebuggerData64.U64Fields["KernBase"], nt);
        if (pteBase != 0) mem.WriteU64(kdbg + (ulong)KdDebuggerData64.U64Fields["PteBase"], pteBase);

        int? O(string type, string path) => (int?)w.TryOffset(type, path);
        int? Sz(string type) => isf.UserTypes.TryGetValue(type, out var t) ? t.Size : null;
        var u16 = new Dictionary<string, int?>
        {
            ["OffsetKThreadNextProcessor"] = O("_KTHREAD", "NextProcessor"),
            ["OffsetKThreadTeb"] = O("_KTHREAD", "Teb"),
            ["OffsetKThreadKernelStack"] = O("_KTHREAD", "KernelStack"),
            ["OffsetKThreadInitialStack"] = O("_KTHREAD", "InitialStack"),
            ["OffsetKThreadApcProcess"] = O("_KTHREAD", "ApcState.Process"),
            ["OffsetKThreadState"] = O("_KTHREAD", "State"),
            ["SizeEProcess"] = Sz("_EPROCESS"),
            ["OffsetEprocessPeb"] = O("_EPROCESS", "Peb"),
            ["OffsetEprocessParentCID"] = O("_EPROCESS", "InheritedFromUniqueProcessId"),
            ["OffsetEprocessDirectoryTableBase"] = O("_EPROCESS", "Pcb.DirectoryTableBase"),
            ["SizePrcb"] = Sz("_KPRCB"),
            ["OffsetPrcbDpcRoutine"] = O("_KPRCB", "DpcRoutineActive"),
            ["OffsetPrcbCurrentThread"] = O("_KPRCB", "CurrentThread"),
            ["OffsetPrcbMhz"] = O("_KPRCB", "MHz"),
            ["OffsetPrcbCpuType"] = O("_KPRCB", "CpuType"),
            ["OffsetPrcbVendorString"] = O("_KPRCB", "VendorString"),
            ["OffsetPrcbProcStateContext"] = O("_KPRCB", "ProcessorState.ContextFrame"),
            ["OffsetPrcbNumber"] = O("_KPRCB", "Number"),
            ["SizeEThread"] = Sz("_ETHREAD"),
            ["SizePcr"] = Sz("_KPCR"),
            ["OffsetPcrSelfPcr"] = O("_KPCR", "Self"),
            ["OffsetPcrCurrentPrcb"] = O("_KPCR", "CurrentPrcb"),
            ["OffsetPcrContainedPrcb"] = O("_KPCR", "Prcb"),
            ["OffsetPrcbProcStateSpecialReg"] = O("_KPRCB", "ProcessorState.SpecialRegisters"),
            ["GdtR0Code"] = SelR0Code, ["GdtR0Data"] = SelR0Data, ["GdtR0Pcr"] = SelR3CmTeb, ["GdtR3Code"] = SelR3Code,
            ["GdtR3Data"] = SelR3Data, ["GdtR3Teb"] = SelR3CmTeb, ["GdtLdt"] = 0, ["GdtTss"] = SelTss,
            ["Gdt64R3CmCode"] = SelR3CmCode, ["Gdt64R3CmTeb"] = SelR3CmTeb,
            ["OffsetPrcbContext"] = O("_KPRCB", "Context"),
            ["OffsetPrcbIdleThread"] = O("_KPRCB", "IdleThread"),
            ["OffsetPrcbNormalDpcState"] = O("_KPRCB", "NormalDpcState"),
            ["OffsetPrcbDpcStack"] = O("_KPRCB", "DpcStack"),
            ["OffsetPrcbIsrStack"] = O("_KPRCB", "IsrStack"),
            ["SizeKDPC_STACK_FRAME"] = Sz("_KDPC_STACK_FRAME"),
            ["OffsetKPriQueueThreadListHead"] = O("_KPRIQUEUE", "ThreadListHead"),
            ["OffsetKThreadWaitReason"] = O("_KTHREAD", "WaitReason"),
        };
        foreach (var (name, v) in u16)
            if (v is int value) mem.WriteU16(kdbg + (ulong)KdDebuggerData64.U16Fields[name], checked((ushort)value));
        var u32 = new Dictionary<string, int?>
        {
            ["OffsetKThreadStackLimit"] = O("_KTHREAD", "StackLimit"),
            ["OffsetKThreadStackBase"] = O("_KTHREAD", "StackBase"),
            ["OffsetKThreadQueueListEntry"] = O("_KTHREAD", "QueueListEntry"),
            ["OffsetEThreadIrpList"] = O("_ETHREAD", "IrpList"),
        };
        foreach (var (name, v) in u32)
            if (v is int value) mem.WriteU32(kdbg + (ulong)KdDebuggerData64.U32Fields[name], (uint)value);
    }
}
