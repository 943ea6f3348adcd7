namespace NtSleuth.Lab.Dumps;

/// <summary>
/// KDDEBUGGER_DATA64 field offsets (x64). This structure is NOT in the kernel PDB/ISF; its layout is documented in the
/// Debugging Tools' wdbgexts.h (struct _KDDEBUGGER_DATA64: DBGKD_DEBUG_DATA_HEADER64 {LIST_ENTRY64 List; ULONG
/// OwnerTag; ULONG Size} then ULONG64 pointers in declaration order, the "Offset*" USHORTs from the Server 2003
/// addition on, OffsetPrcbContext (Windows 7 addition) at 0x338, ... PteBase (RS1) at 0x360; size 0x368 for the
/// blocks this writer produces, as the symbol-forge facts doc states). Names below are wdbgexts.h's.
/// </summary>
public static class KdDebuggerData64
{
    public const uint OwnerTagKdbg = 0x4742444B; // 'KDBG'
    public const int Size = 0x368;

    public const int List = 0x00, OwnerTag = 0x10, HeaderSize = 0x14;

    /// <summary>The ULONG64 fields from KernBase to MmVirtualTranslationBase and the later ULONG64 additions, in order.</summary>
    public static readonly IReadOnlyDictionary<string, int> U64Fields = Build();

    private static Dictionary<string, int> Build()
    {
        string[] first =
        [
            "KernBase", "BreakpointWithStatus", "SavedContext",
            "_ThCallbackStack_NextCallback_FramePointer_PaeEnabled", // 4 USHORTs (0x30)
            "KiCallUserMode", "KeUserCallbackDispatcher", "PsLoadedModuleList", "PsActiveProcessHead", "PspCidTable",
            "ExpSystemResourcesList", "ExpPagedPoolDescriptor", "ExpNumberOfPagedPools", "KeTimeIncrement",
            "KeBugCheckCallbackListHead", "KiBugcheckData", "IopErrorLogListHead", "ObpRootDirectoryObject", "ObpTypeObjectType",
            "MmSystemCacheStart", "MmSystemCacheEnd", "MmSystemCacheWs", "MmPfnDatabase", "MmSystemPtesStart", "MmSystemPtesEnd",
            "MmSubsectionBase", "MmNumberOfPagingFiles", "MmLowestPhysicalPage", "MmHighestPhysicalPage", "MmNumberOfPhysicalPages",
            "MmMaximumNonPagedPoolInBytes", "MmNonPagedSystemStart", "MmNonPagedPoolStart", "MmNonPagedPoolEnd", "MmPagedPoolStart",
            "MmPagedPoolEnd", "MmPagedPoolInformation", "MmPageSize", "MmSizeOfPagedPoolInBytes", "MmTotalCommitLimit",
            "MmTotalCommittedPages", "MmSharedCommit", "MmDriverCommit", "MmProcessCommit", "MmPagedPoolCommit", "MmExtendedCommit",
            "MmZeroedPageListHead", "MmFreePageListHead", "MmStandbyPageListHead", "MmModifiedPageListHead",
            "MmModifiedNoWritePageListHead", "MmAvailablePages", "MmResidentAvailablePages", "PoolTrackTable",
            "NonPagedPoolDescriptor", "MmHighestUserAddress", "MmSystemRangeStart", "MmUserProbeAddress", "KdPrintCircularBuffer",
            "KdPrintCircularBufferEnd", "KdPrintWritePointer", "KdPrintRolloverCount", "MmLoadedUserImageList",
            "NtBuildLab", "KiNormalSystemCall",
            "KiProcessorBlock", "MmUnloadedDrivers", "MmLastUnloadedDriver", "MmTriageActionTaken", "MmSpecialPoolTag",
            "KernelVerifier", "MmVerifierData", "MmAllocatedNonPagedPool", "MmPeakCommitment", "MmTotalCommitLimitMaximum",
            "CmNtCSDVersion", "MmPhysicalMemoryBlock", "MmSessionBase", "MmSessionSize", "MmSystemParentTablePage",
            "MmVirtualTranslationBase",
        ];
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        int off = 0x18;
        foreach (var n in first) { if (!n.StartsWith('_')) d[n] = off; off += 8; }
        // off == 0x298: the Server 2003 USHORT block starts here.
        if (off != 0x298) throw new InvalidOperationException($"KDDEBUGGER_DATA64 table broken: 0x{off:x}");
        d["KdPrintCircularBufferPtr"] = 0x2c8; d["KdPrintBufferSize"] = 0x2d0; d["KeLoaderBlock"] = 0x2d8;
        d["IopNumTriageDumpDataBlocks"] = 0x308; d["IopTriageDumpDataBlocks"] = 0x310;
        d["VfCrashDataBlock"] = 0x318; d["MmBadPagesDetected"] = 0x320; d["MmZeroedPageSingleBitErrorsDetected"] = 0x328;
        d["EtwpDebuggerData"] = 0x330; d["PteBase"] = 0x360;
        return d;
    }

    /// <summary>USHORT fields (Server 2003 .. Windows 10 additions).</summary>
    public static readonly IReadOnlyDictionary<string, int> U16Fields = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["OffsetKThreadNextProcessor"] = 0x298, ["OffsetKThreadTeb"] = 0x29a, ["OffsetKThreadKernelStack"] = 0x29c,
        ["OffsetKThreadInitialStack"] = 0x29e, ["OffsetKThreadApcProcess"] = 0x2a0, ["OffsetKThreadState"] = 0x2a2,
        ["OffsetKThreadBStore"] = 0x2a4, ["OffsetKThreadBStoreLimit"] = 0x2a6, ["SizeEProcess"] = 0x2a8,
        ["OffsetEprocessPeb"] = 0x2aa, ["OffsetEprocessParentCID"] = 0x2ac, ["OffsetEprocessDirectoryTableBase"] = 0x2ae,
        ["SizePrcb"] = 0x2b0, ["OffsetPrcbDpcRoutine"] = 0x2b2, ["OffsetPrcbCurrentThread"] = 0x2b4, ["OffsetPrcbMhz"] = 0x2b6,
        ["OffsetPrcbCpuType"] = 0x2b8, ["OffsetPrcbVendorString"] = 0x2ba, ["OffsetPrcbProcStateContext"] = 0x2bc,
        ["OffsetPrcbNumber"] = 0x2be, ["SizeEThread"] = 0x2c0,
        ["SizePcr"] = 0x2e0, ["OffsetPcrSelfPcr"] = 0x2e2, ["OffsetPcrCurrentPrcb"] = 0x2e4, ["OffsetPcrContainedPrcb"] = 0x2e6,
        ["OffsetPcrInitialBStore"] = 0x2e8, ["OffsetPcrBStoreLimit"] = 0x2ea, ["OffsetPcrInitialStack"] = 0x2ec,
        ["OffsetPcrStackLimit"] = 0x2ee, ["OffsetPrcbPcrPage"] = 0x2f0, ["OffsetPrcbProcStateSpecialReg"] = 0x2f2,
        ["GdtR0Code"] = 0x2f4, ["GdtR0Data"] = 0x2f6, ["GdtR0Pcr"] = 0x2f8, ["GdtR3Code"] = 0x2fa, ["GdtR3Data"] = 0x2fc,
        ["GdtR3Teb"] = 0x2fe, ["GdtLdt"] = 0x300, ["GdtTss"] = 0x302, ["Gdt64R3CmCode"] = 0x304, ["Gdt64R3CmTeb"] = 0x306,
        ["OffsetPrcbContext"] = 0x338, ["OffsetPrcbMaxBreakpoints"] = 0x33a, ["OffsetPrcbMaxWatchpoints"] = 0x33c,
        ["OffsetPrcbIdleThread"] = 0x350, ["OffsetPrcbNormalDpcState"] = 0x352, ["OffsetPrcbDpcStack"] = 0x354,
        ["OffsetPrcbIsrStack"] = 0x356, ["SizeKDPC_STACK_FRAME"] = 0x358, ["OffsetKPriQueueThreadListHead"] = 0x35a,
        ["OffsetKThreadWaitReason"] = 0x35c,
    };

    /// <summary>ULONG fields (Windows 8 addition).</summary>
    public static readonly IReadOnlyDictionary<string, int> U32Fields = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["OffsetKThreadStackLimit"] = 0x340, ["OffsetKThreadStackBase"] = 0x344, ["OffsetKThreadQueueListEntry"] = 0x348,
        ["OffsetEThreadIrpList"] = 0x34c,
    };
}
