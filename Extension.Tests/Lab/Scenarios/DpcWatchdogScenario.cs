using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 004 "Determining the source of Bug Check 0x133": 0x133 (0, 0x283, 0x282, 0) with ECHO!EchoEvtTimerFunc
/// spinning on KeStallExecutionProcessor (the seed's code bytes), called from Wdf01000!FxTimer::TimerHandler under
/// nt!KiExpireTimerTable; CPU 0's DPC queue as the seed's !pcr shows it (NDIS!NdisReturnNetBufferLists, ataport x2,
/// nt!KiBalanceSetManagerDeferredRoutine, USBPORT without symbols). Variants: parameter 1 = 1 (cumulative),
/// no unwind data (stack only in memory), and many processors with many queued DPCs for speed.
/// </summary>
public sealed class DpcWatchdogScenario
{
    public const ulong EchoBase = 0xfffff880_04be0000;
    public const ulong EchoTimerFunc = 0xfffff880_04be338c;   // EchoEvtTimerFunc+0x7d = ...3409
    public const ulong EchoReturn = 0xfffff880_04be3409;
    public const ulong EchoIat = 0xfffff880_04be4000;
    public const ulong WdfBase = 0xfffff880_01100000;
    public const ulong WdfTimerHandler = 0xfffff880_0112025c; // +0x92 = ...02ee
    public const ulong NdisBase = 0xfffff880_01200000;
    public const ulong NdisReturnNbls = 0xfffff880_012e4e9c;
    public const ulong AtaBase = 0xfffff880_00c00000;
    public const ulong AtaPortInitialize = 0xfffff880_00c0ca00;
    public const ulong UsbBase = 0xfffff880_01700000;
    public const ulong UsbRoutine = 0xfffff880_01701df0;
    public const ulong Cpu0Pcr = 0xfffff803_09974000;
    public const ulong DpcStackTop = 0xfffff803_08c19000;
    public static readonly ulong[] SeedKdpcs = [0xfffffa80_020ce790, 0xfffffa80_0185f118, 0xfffff803_0994fda0, 0xfffffa80_01dbc118, 0xfffffa80_02082300];

    /// <summary>
    /// The scenario's drivers with their publics as RVAs, for forging matching images/PDBs (end-to-end tier):
    /// forge these exact RVAs so the real engine names the same frames and DPC routines as the in-memory target.
    /// USBPORT deliberately has no symbols (the seed shows it by module only).
    /// </summary>
    public static readonly IReadOnlyList<(string File, ulong Base, uint Size, IReadOnlyDictionary<string, ulong> Publics)> DriverModules =
    [
        ("ECHO.sys", EchoBase, 0x8000, new Dictionary<string, ulong> { ["EchoEvtTimerFunc"] = EchoTimerFunc - EchoBase, ["_imp_KeStallExecutionProcessor"] = EchoIat - EchoBase }),
        ("Wdf01000.sys", WdfBase, 0xc0000, new Dictionary<string, ulong> { ["FxTimer::TimerHandler"] = WdfTimerHandler - WdfBase }),
        ("NDIS.sys", NdisBase, 0x130000, new Dictionary<string, ulong> { ["NdisReturnNetBufferLists"] = NdisReturnNbls - NdisBase }),
        ("ataport.sys", AtaBase, 0x30000, new Dictionary<string, ulong> { ["AtaPortInitialize"] = AtaPortInitialize - AtaBase }),
        ("USBPORT.sys", UsbBase, 0x60000, new Dictionary<string, ulong>()),
    ];

    public LabKernel Kernel { get; }
    public List<ulong> Prcbs { get; } = new();
    public ulong HalBase { get; }
    public ulong StallRoutine { get; private set; }
    public ulong BalanceRoutine { get; private set; }
    private ulong _synthetic;
    public int QueuedTotal { get; private set; }
    /// <summary>Every queued KDPC's address (what !pcr's DpcQueue lines read).</summary>
    public List<ulong> QueuedDpcs { get; } = new();

    public DpcWatchdogScenario(LabKernel k, ulong p1 = 0, int processors = 2, bool unwindable = true, int extraDpcs = 0, int extraDrivers = 16, bool scatterDpcs = false)
    {
        Kernel = k;
        HalBase = k.NtBase + 0x1000000;
        _synthetic = k.SyntheticCodeBase;
        if (k.Standalone) k.Modules[0] = k.Modules[0] with { Size = 0x1000000 };
        k.Modules.Add(new ModuleInfo("hal", HalBase, 0x80000, @"\SystemRoot\system32\hal.dll"));
        k.AddModule("ECHO.sys", EchoBase, 0x8000, 0x8000);
        k.AddModule("Wdf01000.sys", WdfBase, 0xc0000, 0);
        k.AddModule("NDIS.sys", NdisBase, 0x130000, 0);
        k.AddModule("ataport.sys", AtaBase, 0x30000, 0);
        k.AddModule("USBPORT.sys", UsbBase, 0x60000, 0);
        k.Symbols.AddSymbol("ECHO!EchoEvtTimerFunc", EchoTimerFunc);
        k.Symbols.AddSymbol("ECHO!_imp_KeStallExecutionProcessor", EchoIat);
        k.Symbols.AddSymbol("Wdf01000!FxTimer::TimerHandler", WdfTimerHandler);
        k.Symbols.AddSymbol("NDIS!NdisReturnNetBufferLists", NdisReturnNbls);
        k.Symbols.AddSymbol("ataport!AtaPortInitialize", AtaPortInitialize);
        k.Symbols.AddSymbol("hal!HalpTimerClockInterrupt", HalBase + 0x1000);
        k.Symbols.AddSymbol("hal!HalpTscQueryCounter", HalBase + 0x2000);
        k.Symbols.AddSymbol("hal!HalpTimerStallExecutionProcessor", HalBase + 0x3000);
        StallRoutine = k.HasSym("KeStallExecutionProcessor") ? k.Sym("KeStallExecutionProcessor") : HalBase + 0x4000;
        if (!k.HasSym("KeStallExecutionProcessor")) k.Symbols.AddSymbol("hal!KeStallExecutionProcessor", StallRoutine);
        BalanceRoutine = NtFunc("KiBalanceSetManagerDeferredRoutine");

        k.ProcessorCount = processors;
        k.EventProcessor = 0;
        k.BugCheck = p1 == 0 ? new BugCheckInfo(0x133, 0, 0x283, 0x282, 0) : new BugCheckInfo(0x133, 1, 0x1e00, 0, 0);
        WriteEchoCode();
        BuildPrcbs(processors);
        BuildSeedQueue();
        if (extraDpcs > 0) BuildExtraQueues(extraDpcs, extraDrivers, scatterDpcs);
        BuildStack(unwindable);
    }

    /// <summary>nt function address: the symbol table's when the build has it, a synthetic one in the image otherwise.</summary>
    private ulong NtFunc(string name)
    {
        if (Kernel.HasSym(name)) return Kernel.Sym(name);
        var existing = Kernel.Symbols.GetSymbolAddress("nt!" + name);
        if (existing is not null) return existing.Value;
        ulong a = _synthetic; _synthetic += 0x400;
        Kernel.Symbols.AddSymbol("nt!" + name, a);
        return a;
    }

    private void WriteEchoCode()
    {
        // The seed's ub/u of ECHO!EchoEvtTimerFunc+0x54 .. +0x8f.
        byte[] code =
        [
            0x44, 0x8b, 0x43, 0x20, 0x48, 0x8b, 0x0d, 0x6d, 0x2a, 0x00, 0x00, 0x48, 0x83, 0x63, 0x18, 0x00, 0x48, 0x8b, 0xd7,
            0xff, 0x15, 0x0f, 0x26, 0x00, 0x00, 0xbb, 0xc0, 0xd4, 0x01, 0x00, 0xb9, 0x64, 0x00, 0x00, 0x00,
            0xff, 0x15, 0xf7, 0x0b, 0x00, 0x00, 0x48, 0x83, 0xeb, 0x01, 0x75, 0xef, 0x48, 0x8b, 0x5c, 0x24, 0x30,
            0x48, 0x83, 0xc4, 0x20, 0x5f, 0xc3, 0xcc, 0xcc,
        ];
        Kernel.Memory.Write(0xfffff880_04be33e0, code);
        Kernel.Memory.WriteU64(EchoIat, StallRoutine);
    }

    private void BuildPrcbs(int n)
    {
        var k = Kernel;
        ulong pcrSize = k.SizeOf("_KPCR");
        ulong prcbOff = k.Offset("_KPCR", "Prcb");
        ulong kpb = k.Sym("KiProcessorBlock");
        k.Memory.WriteU32(k.Sym("KeNumberProcessors"), (uint)n);
        for (int i = 0; i < n; i++)
        {
            ulong prcb;
            if (!k.Standalone)
                prcb = k.Builder.Prcb(i).Address; // the shared builder's processors (KiProcessorBlock already set)
            else
            {
                ulong pcr = i == 0 ? Cpu0Pcr : k.Alloc(pcrSize, 0x1000);
                k.Memory.Map(pcr, pcrSize);
                prcb = pcr + prcbOff;
                k.WritePtr(kpb + (ulong)i * 8, prcb);
                k.Set("_KPRCB", prcb, "Number", (ulong)i);
            }
            Prcbs.Add(prcb);
            SetEither(prcb, "DpcWatchdogPeriod", 0x1e00);
            SetEither(prcb, "DpcTimeLimit", 0x282);
            if (i == 0)
            {
                k.Set("_KPRCB", prcb, "DpcTimeCount", 0x283);
                k.Set("_KPRCB", prcb, "DpcWatchdogCount", 0x1d00);
                k.Set("_KPRCB", prcb, "DpcRoutineActive", 1);
                if (k.Layout("_KPRCB").HasField("CurrentDpcRoutine")) k.Set("_KPRCB", prcb, "CurrentDpcRoutine", WdfTimerHandler);
                if (k.Layout("_KPRCB").HasField("DpcStack")) { k.Set("_KPRCB", prcb, "DpcStack", DpcStackTop); k.Memory.Map(DpcStackTop - 0x6000, 0x6000); }
            }
            InitQueue(prcb);
        }
    }

    private void SetEither(ulong prcb, string name, ulong v)
    {
        var l = Kernel.Layout("_KPRCB");
        if (l.HasField(name)) Kernel.Set("_KPRCB", prcb, name, v);
        else if (l.HasField(name + "Ticks")) Kernel.Set("_KPRCB", prcb, name + "Ticks", v);
    }

    private bool SingleList => Kernel.Layout("_KDPC_DATA").HasField("DpcList");
    private ulong DpcData(ulong prcb, int q = 0) => prcb + Kernel.Offset("_KPRCB", "DpcData") + (ulong)q * Kernel.SizeOf("_KDPC_DATA");

    private void InitQueue(ulong prcb)
    {
        if (SingleList) return; // empty singly linked list: ListHead.Next = 0, LastEntry = 0
        // Windows 7: both DPC queues (normal and threaded) are empty circular lists.
        for (int q = 0; q < 2; q++)
        {
            ulong head = DpcData(prcb, q) + Kernel.Offset("_KDPC_DATA", "DpcListHead");
            Kernel.WritePtr(head, head); Kernel.WritePtr(head + 8, head);
        }
    }

    /// <summary>Appends a KDPC (fields by name) to a processor's normal DPC queue.</summary>
    public void Queue(int cpu, ulong kdpc, ulong routine, byte importance = 1)
    {
        var k = Kernel;
        k.Memory.Map(kdpc, k.SizeOf("_KDPC"));
        k.Set("_KDPC", kdpc, "Type", 0x13);
        k.Set("_KDPC", kdpc, "Importance", importance);
        k.Set("_KDPC", kdpc, "Number", (ulong)cpu);
        k.Set("_KDPC", kdpc, "DeferredRoutine", routine);
        k.Set("_KDPC", kdpc, "DeferredContext", kdpc + 0x100);
        ulong dd = DpcData(Prcbs[cpu]);
        ulong link = kdpc + k.Offset("_KDPC", "DpcListEntry");
        if (SingleList)
        {
            ulong listHead = dd + k.Offset("_KDPC_DATA", "DpcList.ListHead");
            ulong lastAddr = dd + k.Offset("_KDPC_DATA", "DpcList.LastEntry");
            ulong last = k.ReadLe(lastAddr, 8);
            k.WritePtr(link, 0);
            if (last == 0) k.WritePtr(listHead, link); else k.WritePtr(last, link);
            k.WritePtr(lastAddr, link);
        }
        else
        {
            ulong head = dd + k.Offset("_KDPC_DATA", "DpcListHead");
            ulong tail = k.ReadLe(head + 8, 8);
            k.WritePtr(link, head); k.WritePtr(link + 8, tail);
            k.WritePtr(tail, link); k.WritePtr(head + 8, link);
        }
        k.Set("_KDPC_DATA", dd, "DpcQueueDepth", k.ReadLe(dd + k.Offset("_KDPC_DATA", "DpcQueueDepth"), 4) + 1);
        QueuedTotal++;
        QueuedDpcs.Add(kdpc);
    }

    private void BuildSeedQueue()
    {
        Queue(0, SeedKdpcs[0], NdisReturnNbls);
        Queue(0, SeedKdpcs[1], AtaPortInitialize);
        Queue(0, SeedKdpcs[2], BalanceRoutine, 2);
        Queue(0, SeedKdpcs[3], AtaPortInitialize);
        Queue(0, SeedKdpcs[4], UsbRoutine);
        if (Prcbs.Count > 1)
        {
            Queue(1, 0xfffffa80_020ce890, NdisReturnNbls);
            Queue(1, 0xfffffa80_02082400, UsbRoutine, 0);
        }
    }

    /// <summary>
    /// Many DPCs: each extra driver keeps an array of KDPCs (as NDIS miniports keep per-queue DPCs) spread over the
    /// processors; <paramref name="scatter"/>: each KDPC lives in its own pool allocation instead (one per page at a random
    /// offset, other allocations between them, in an address order unrelated to the queue order).
    /// </summary>
    private void BuildExtraQueues(int count, int drivers, bool scatter)
    {
        var k = Kernel;
        ulong dpcSize = k.SizeOf("_KDPC");
        var arrays = new List<(ulong Array, ulong Routine, int Next)>();
        int per = (count + drivers - 1) / drivers;
        for (int d = 0; d < drivers; d++)
        {
            ulong b = 0xfffff880_06000000 + (ulong)d * 0x100000;
            string name = $"nic{d:00}.sys";
            k.AddModule(name, b, 0x80000, 0);
            k.Symbols.AddSymbol($"nic{d:00}!RxQueueDpc", b + 0x1200);
            arrays.Add((k.Alloc(dpcSize * (ulong)per, 0x40), b + 0x1200, 0));
        }
        int[] slots = Enumerable.Range(0, count).ToArray();
        var rnd = new Random(133);
        ulong region = 0;
        if (scatter) { rnd.Shuffle(slots); region = k.Alloc((ulong)count * 0x1000, 0x1000); }
        for (int i = 0; i < count; i++)
        {
            int d = i % drivers;
            var (arr, routine, next) = arrays[d];
            arrays[d] = (arr, routine, next + 1);
            ulong kdpc = scatter ? region + (ulong)slots[i] * 0x1000 + (ulong)rnd.Next(0, 0x1000 / 0x40 - 1) * 0x40 : arr + (ulong)next * dpcSize;
            Queue(i % Prcbs.Count, kdpc, routine);
        }
    }

    // ---------- parameter 1 = 1 with the kernel's own evidence (Windows 10 1607 / Server 2016 and later) ----------

    public const ulong SpinBase = 0xfffff880_05200000;
    public const ulong SpinRxDpc = SpinBase + 0x1a40;      // spindrv!SpdRxDpcRoutine
    public const ulong SpinProcessRing = SpinBase + 0x2200; // spindrv!SpdProcessRing (spins on the hardware ring)
    /// <summary>Captures in the profile: the spinning driver's, and the one running at the bug check (ECHO, timer DPC).</summary>
    public const int SpinCaptures = 30, SpinRxCaptures = 4, EchoCaptures = 6;
    public ulong ProfileBuffer { get; private set; }
    public ulong ProfileUsedBytes { get; private set; }
    public ulong TriageBlock { get; private set; }
    public ulong ActiveKdpc { get; private set; }
    public ulong HistoryTable { get; private set; }

    /// <summary>True when the build keeps a DPC watchdog profile (_KPRCB.DpcWatchdogProfile, the triage block global).</summary>
    public static bool BuildHasProfile(NtSleuth.Commands.Symbols.Isf.IsfDocument nt) =>
        nt.UserTypes.TryGetValue("_KPRCB", out var prcb) && prcb.Fields.Any(f => f.Name == "DpcWatchdogProfile")
        && prcb.Fields.Any(f => f.Name == "DpcWatchdogProfileCurrentEmptyCapture") && nt.Symbols.ContainsKey("KeDpcWatchdogProfileGlobalTriageBlock");

    /// <summary>
    /// Bug check 0x133 (1, 0x1e00, &amp;KeDpcWatchdogProfileGlobalTriageBlock, 0) where ECHO's timer DPC runs at the bug check
    /// (stack, CurrentDpcRoutine, ActiveDpc) but the kernel's DPC watchdog profile on CPU 0 holds 40 captured stacks, 34 of
    /// them in spindrv.sys (SpdProcessRing under SpdRxDpcRoutine, under nt!KiExecuteAllDpcs): the case !analyze blames on
    /// what ran last. The triage block is written from its documented layout (wdm.h). Captures are laid out as the
    /// command reads them (a header of two non-code words, then the frames innermost first); the real record layout is
    /// not documented (docs/dpcblame.md). <paramref name="variant"/>: "profile-missing" (the buffer's pages are not in
    /// the dump), "profile-corrupt" (bad triage signature, DpcWatchdogProfileCurrentEmptyCapture before the buffer).
    /// </summary>
    public void AddCumulativeEvidence(string? variant)
    {
        var k = Kernel;
        if (!BuildHasProfile(k.Nt)) throw new NotSupportedException($"{k.BuildId} has no DPC watchdog profile");
        k.AddModule("spindrv.sys", SpinBase, 0x20000, 0x4000);
        k.Symbols.AddSymbol("spindrv!SpdRxDpcRoutine", SpinRxDpc);
        k.Symbols.AddSymbol("spindrv!SpdProcessRing", SpinProcessRing);
        ulong prcb = Prcbs[0];
        const ulong slots = 0x2000;                               // pointer slots (KiDpcWatchdogProfileArrayLength)
        ProfileBuffer = k.Alloc(slots * 8, 0x1000);
        k.Memory.Map(ProfileBuffer, slots * 8);

        ulong Fn(string name, ulong disp) => NtFunc(name) + disp;
        ulong capture = k.HasSym("KiDpcWatchdogCaptureStack") ? k.Sym("KiDpcWatchdogCaptureStack") + 0x3c : Fn("KiDpcWatchdogCaptureStack", 0x3c);
        ulong[] interrupt = [capture, Fn("KeAccumulateTicks", 0x1a3), Fn("KeClockInterruptNotify", 0x8f3), HalBase + 0x1000 + 0x63, Fn("KiInterruptDispatchNoLockNoEtw", 0x37)];
        ulong[] dpcTail = [Fn("KiExecuteAllDpcs", 0x2e1), Fn("KiRetireDpcList", 0x1f6), Fn("KiIdleLoop", 0x5a)];
        ulong[] timerTail = [WdfTimerHandler + 0x92, Fn("KiProcessExpiredTimerList", 0x214), Fn("KiExpireTimerTable", 0xa9), Fn("KiTimerExpiration", 0xc8), Fn("KiRetireDpcList", 0x1f6), Fn("KiIdleLoop", 0x5a)];
        var words = new List<ulong>();
        ulong time = 0x0000_1c89_d39e_0000;
        void Capture(IEnumerable<ulong> frames)
        {
            var f = frames.ToList();
            words.Add(time); time += 0x2710;                       // header: a time stamp and the frame count
            words.Add((ulong)f.Count);
            words.AddRange(f);
        }
        int spin = 0, rx = 0, echo = 0;
        for (int i = 0; i < SpinCaptures + SpinRxCaptures + EchoCaptures; i++)
        {
            // ECHO's timer DPC runs last (its captures at the end); spindrv's DPC held the processor before.
            if (i >= SpinCaptures + SpinRxCaptures) { Capture(interrupt.Concat([EchoReturn]).Concat(timerTail)); echo++; }
            else if (i % 9 == 4 && rx < SpinRxCaptures) { Capture(interrupt.Concat([SpinRxDpc + 0x51]).Concat(dpcTail)); rx++; }
            else { Capture(interrupt.Concat([SpinProcessRing + 0x3c + (ulong)(i % 3) * 4, SpinRxDpc + 0x87]).Concat(dpcTail)); spin++; }
        }
        if (spin != SpinCaptures || rx != SpinRxCaptures || echo != EchoCaptures) throw new InvalidOperationException("capture plan");
        for (int i = 0; i < words.Count; i++) k.Memory.WriteU64(ProfileBuffer + (ulong)i * 8, words[i]);
        ProfileUsedBytes = (ulong)words.Count * 8;

        k.Set("_KPRCB", prcb, "DpcWatchdogProfile", ProfileBuffer);
        k.Set("_KPRCB", prcb, "DpcWatchdogProfileCurrentEmptyCapture", variant == "profile-corrupt" ? ProfileBuffer - 0x100 : ProfileBuffer + ProfileUsedBytes);
        SetEitherTicks(prcb, "DpcWatchdogProfileCumulativeDpcThreshold", 0x1b80);
        SetEitherTicks(prcb, "DpcWatchdogProfileSingleDpcThreshold", 0x478);
        // Other processors: armed, nothing captured.
        for (int i = 1; i < Prcbs.Count; i++)
        {
            ulong other = k.Alloc(0x1000, 0x1000);
            k.Set("_KPRCB", Prcbs[i], "DpcWatchdogProfile", other);
            k.Set("_KPRCB", Prcbs[i], "DpcWatchdogProfileCurrentEmptyCapture", other);
        }
        // The kernel's configuration globals, where the build has them.
        void Global(string name, uint v) { if (k.HasSym(name)) k.Memory.WriteU32(k.Sym(name), v); }
        Global("KiDpcWatchdogProfileArrayLength", (uint)slots);
        Global("KeDpcWatchdogProfileBufferSizeBytes", (uint)(slots * 8));
        Global("KiDpcWatchdogProfileCumulativeDpcThreshold", 0x1b80);
        Global("KeDpcWatchdogProfileCumulativeDpcThresholdMs", 110000);
        Global("KiDpcWatchdogProfileSingleDpcThreshold", 0x478);
        Global("KeDpcWatchdogProfileSingleDpcThresholdMs", 18333);
        Global("KeDpcWatchdogProfileOffset", 0x280);
        Global("KeDpcWatchdogProfileOffsetMs", 10000);

        // DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK (wdm.h): Signature, Revision, Size, DpcWatchdogProfileOffset, DpcWatchdogProfileLength.
        TriageBlock = k.Sym("KeDpcWatchdogProfileGlobalTriageBlock");
        k.Memory.WriteU32(TriageBlock, variant == "profile-corrupt" ? 0xDEADBEEF : 0xAEBECEDE);
        k.Memory.WriteU16(TriageBlock + 4, 1);
        k.Memory.WriteU16(TriageBlock + 6, 0x10);
        k.Memory.WriteU16(TriageBlock + 8, (ushort)k.Offset("_KPRCB", "DpcWatchdogProfile"));
        k.Memory.WriteU16(TriageBlock + 10, 0);
        k.Memory.WriteU32(TriageBlock + 12, (uint)slots);
        k.BugCheck = new BugCheckInfo(0x133, 1, 0x1e00, TriageBlock, 0);

        // The running DPC as 8.1+ records it: _KDPC_DATA.ActiveDpc (ECHO's WDF timer DPC).
        ActiveKdpc = k.Alloc(k.SizeOf("_KDPC"), 0x40);
        k.Set("_KDPC", ActiveKdpc, "Type", 0x13);
        k.Set("_KDPC", ActiveKdpc, "Importance", 1);
        k.Set("_KDPC", ActiveKdpc, "DeferredRoutine", WdfTimerHandler);
        k.Set("_KDPC_DATA", DpcData(prcb), "ActiveDpc", ActiveKdpc);
        // _ISRDPCSTATS through _KPRCB.IsrDpcStats.
        if (k.HasType("_ISRDPCSTATS") && k.Layout("_KPRCB").HasField("IsrDpcStats"))
        {
            ulong isr = k.Alloc(k.SizeOf("_ISRDPCSTATS"), 0x40);
            k.Set("_ISRDPCSTATS", isr, "DpcTime", 0x1e00);
            k.Set("_ISRDPCSTATS", isr, "DpcCount", 0x5c1);
            k.Set("_ISRDPCSTATS", isr, "IsrCount", 0x2f3);
            k.Set("_KPRCB", prcb, "IsrDpcStats", isr);
        }
        // _KPRCB.DpcRuntimeHistoryHashTable (19041+): four buckets, three entries keyed by DPC routine.
        if (k.Layout("_KPRCB").HasField("DpcRuntimeHistoryHashTable"))
        {
            ulong table = k.Alloc(k.SizeOf("_RTL_HASH_TABLE"), 0x40), buckets = k.Alloc(4 * 8, 0x40);
            k.Set("_RTL_HASH_TABLE", table, "EntryCount", 3);
            k.Set("_RTL_HASH_TABLE", table, "MaskBitCount", 2);
            k.Set("_RTL_HASH_TABLE", table, "BucketCount", 4);
            k.Set("_RTL_HASH_TABLE", table, "Buckets", buckets);
            ulong linkOff = k.Offset("_RTL_HASH_ENTRY", "BucketLink"), keyOff = k.Offset("_RTL_HASH_ENTRY", "Key");
            ulong[] keys = [SpinRxDpc, WdfTimerHandler, NdisReturnNbls];
            int[] bucketOf = [1, 3, 1];
            for (int i = 0; i < keys.Length; i++)
            {
                ulong e = k.Alloc(0x40, 0x40);                     // the record around the entry: its other fields are not public
                k.Memory.WriteU64(e + keyOff, keys[i]);
                ulong head = buckets + (ulong)bucketOf[i] * 8;
                k.WritePtr(e + linkOff, k.ReadLe(head, 8));
                k.WritePtr(head, e + linkOff);
            }
            k.Set("_KPRCB", prcb, "DpcRuntimeHistoryHashTable", table);
            HistoryTable = table;
        }
        if (variant == "profile-missing") k.Memory.Unmap(ProfileBuffer, slots * 8);
    }

    private void SetEitherTicks(ulong prcb, string name, ulong v)
    {
        var l = Kernel.Layout("_KPRCB");
        if (l.HasField(name)) Kernel.Set("_KPRCB", prcb, name, v);
        else if (l.HasField(name + "Ticks")) Kernel.Set("_KPRCB", prcb, name + "Ticks", v);
    }

    /// <summary>
    /// Modelled cost of the seed's manual procedure over KDNET, counted as the command's reads are (KD packets per
    /// request, the engine's cache on a stopped target: nothing read twice): k (one 0x100-byte stack read per frame),
    /// ub + u of the culprit, and per processor !pcr (the KPCR page, DPC data, each queued KDPC) and
    /// dt nt!_KPRCB &lt;prcb&gt; Dpc* (the whole KPRCB).
    /// </summary>
    public (long RoundTrips, long Bytes) ManualProcedureCost()
    {
        var k = Kernel;
        var m = new NtSleuth.Lab.Bench.ManualProcedureBuilder(k.CreateTarget());
        m.Step("k", SeedStack.Length, SeedStack.Length * 0x100L);
        m.Step("ub; u", 2, 0x80);
        ulong prcbSize = k.SizeOf("_KPRCB"), kdpc = k.SizeOf("_KDPC");
        ulong prcbOff = k.Offset("_KPCR", "Prcb");
        foreach (var prcb in Prcbs)
        {
            ulong pcr = prcb - prcbOff;
            m.Read(pcr & ~0xfffUL, 0x1000);                                    // !pcr: the KPCR page
            m.Read(DpcData(prcb), 0x100);                                      // !pcr: DPC data
            m.Read(prcb, (int)prcbSize);                                       // dt nt!_KPRCB Dpc*
        }
        foreach (var d in QueuedDpcs) m.Read(d, (int)kdpc);                    // !pcr's DpcQueue lines
        var r = m.Build();
        return (r.RoundTrips, r.Bytes);
    }

    private static readonly (string Module, string Function, ulong Disp, ulong ChildSp)[] SeedStack =
    [
        ("nt", "KeBugCheckEx", 0, 0xfffff803_08c18428),
        ("nt", "KeUpdateRunTime", 0x51, 0xfffff803_08c184b0),
        ("nt", "KeUpdateTime", 0x3f9, 0xfffff803_08c184e0),
        ("hal", "HalpTimerClockInterrupt", 0x86, 0xfffff803_08c186d0),
        ("nt", "KiInterruptDispatchLBControl", 0x1ce, 0xfffff803_08c18700),
        ("hal", "HalpTscQueryCounter", 0x2, 0xfffff803_08c18898),
        ("hal", "HalpTimerStallExecutionProcessor", 0x131, 0xfffff803_08c188a0),
        ("ECHO", "EchoEvtTimerFunc", 0x7d, 0xfffff803_08c18930),
        ("Wdf01000", "FxTimer::TimerHandler", 0x92, 0xfffff803_08c18960),
        ("nt", "KiProcessExpiredTimerList", 0x214, 0xfffff803_08c189a0),
        ("nt", "KiExpireTimerTable", 0xa9, 0xfffff803_08c18ae0),
        ("nt", "KiTimerExpiration", 0xc8, 0xfffff803_08c18b80),
        ("nt", "KiRetireDpcList", 0x1f6, 0xfffff803_08c18c30),
        ("nt", "KiIdleLoop", 0x5a, 0xfffff803_08c18da0),
    ];

    private void BuildStack(bool unwindable)
    {
        var k = Kernel;
        var ips = new List<(ulong Ip, ulong Fn, ulong Sp)>();
        foreach (var (mod, fn, disp, sp) in SeedStack)
        {
            ulong f = mod switch
            {
                "nt" => NtFunc(fn),
                _ => k.Symbols.GetSymbolAddress(mod + "!" + fn) ?? throw new InvalidOperationException(fn),
            };
            ips.Add((f + disp, f, sp));
        }
        for (int i = 1; i < ips.Count; i++)
        {
            var (ip, _, _) = ips[i];
            if (ip == EchoReturn) continue; // the seed's own bytes (call [ECHO!_imp_KeStallExecutionProcessor])
            // call rel32 to the callee's function right before each return address
            ulong callee = ips[i - 1].Fn;
            int rel = (int)(long)(callee - ip);
            var b = new byte[5]; b[0] = 0xE8; BitConverter.GetBytes(rel).CopyTo(b, 1);
            k.Memory.Write(ip - 5, b);
        }
        // A real stack holds the return addresses (what a dump carries and a stack scan finds); an unwindable target
        // also reports the frames themselves.
        for (int i = 1; i < ips.Count; i++) k.Memory.WriteU64(ips[i].Sp - 8, ips[i].Ip);
        if (unwindable)
            foreach (var (ip, _, sp) in ips) k.Stack.Add(new StackFrameInfo(ip, 0, sp, 0));
    }
}
