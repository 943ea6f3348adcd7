using System.Text;
using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Scenario;

/// <summary>Common kernel furniture: clock, processes/threads, loaded modules, processors, I/O objects, DPCs.</summary>
public sealed partial class KernelScenarioBuilder
{
    private ulong _moduleListHead;
    private ulong _processListHead;
    private readonly Dictionary<int, StructWriter> _prcbs = new();

    // ---------------------------------------------------------------- clock

    /// <summary>Current tick count (KUSER_SHARED_DATA.TickCount) after <see cref="SetClock"/>.</summary>
    public ulong TickCount { get; private set; }
    public uint TimeIncrement { get; private set; } = DefaultTimeIncrement;

    /// <summary>
    /// Sets the target's clock: KUSER_SHARED_DATA (TickCountMultiplier, TickCount, InterruptTime, SystemTime, NtBuildNumber,
    /// versions), KeMaximumIncrement / KeTimeIncrement (nt globals as this build has them) and the TargetInfo times.
    /// </summary>
    public void SetClock(DateTime systemTimeUtc, TimeSpan upTime, uint timeIncrement = DefaultTimeIncrement)
    {
        SystemTimeUtc = DateTime.SpecifyKind(systemTimeUtc, DateTimeKind.Utc);
        UpTime = upTime;
        TimeIncrement = timeIncrement;
        TickCount = (ulong)(upTime.Ticks / timeIncrement);
        var ksd = At("_KUSER_SHARED_DATA", SharedUserData);
        ksd.Set("TickCountMultiplier", 0x0fa00000u);
        if (ksd.Has("TickCountLowDeprecated")) ksd.Set("TickCountLowDeprecated", TickCount & 0xffffffff);
        WriteSystemTime(ksd.AddressOf("TickCount"), TickCount);
        WriteSystemTime(ksd.AddressOf("InterruptTime"), (ulong)upTime.Ticks);
        WriteSystemTime(ksd.AddressOf("SystemTime"), (ulong)SystemTimeUtc.Value.ToFileTimeUtc());
        ksd.SetIfPresent("NtBuildNumber", (ulong)Build.BuildNumber);
        ksd.SetIfPresent("NtMajorVersion", Build.BuildNumber >= 10240 ? 10UL : 6UL);
        ksd.SetIfPresent("NtMinorVersion", Build.BuildNumber switch { 7601 => 1UL, 9600 => 3UL, _ => 0UL });
        ksd.SetIfPresent("NtProductType", 1UL);
        ksd.SetIfPresent("ActiveProcessorCount", (ulong)ProcessorCount);
        foreach (var g in new[] { "KeMaximumIncrement", "KeTimeIncrement" })
            if (HasSymbol(g)) WriteU32(Symbol(g), timeIncrement);
        if (HasSymbol("KeMinimumIncrement")) WriteU32(Symbol("KeMinimumIncrement"), 5000);
    }

    private void WriteSystemTime(ulong address, ulong value)
    {
        var st = At("_KSYSTEM_TIME", address);
        st.Set("LowPart", value & 0xffffffff).Set("High1Time", value >> 32).Set("High2Time", value >> 32);
    }

    /// <summary>The tick count <paramref name="ago"/> before now (for KTHREAD.WaitTime): TickCount - ago / increment.</summary>
    public ulong TicksAgo(TimeSpan ago)
    {
        if (SystemTimeUtc is null) throw new InvalidOperationException("call SetClock before TicksAgo");
        ulong t = (ulong)(ago.Ticks / TimeIncrement);
        if (t > TickCount) throw new ScenarioLayoutException($"wait of {ago} is longer than the uptime {UpTime}");
        return TickCount - t;
    }

    // ---------------------------------------------------------------- processes and threads

    /// <summary>nt!PsActiveProcessHead, initialised on first use.</summary>
    public ulong ProcessListHead
    {
        get
        {
            if (_processListHead == 0) { _processListHead = Symbol("PsActiveProcessHead"); InitializeListHead(_processListHead); }
            return _processListHead;
        }
    }

    /// <summary>
    /// An EPROCESS (with object header) linked into PsActiveProcessHead: ImageFileName, UniqueProcessId, ThreadListHead
    /// (both EPROCESS and KPROCESS), dispatcher header type ProcessObject.
    /// </summary>
    public StructWriter AddProcess(string imageName, ulong pid, ulong? at = null, bool linkActive = true)
    {
        var p = NewObject("_EPROCESS", at);
        p.Set("Pcb.Header.Type", 3UL)
         .Set("Pcb.Header.Size", SizeOf("_KPROCESS") / 4 > 0xff ? 0 : SizeOf("_KPROCESS") / 4)
         .Set("UniqueProcessId", pid)
         .Ascii("ImageFileName", imageName)
         .ListHead("ThreadListHead")
         .ListHead("Pcb.ThreadListHead")
         .Set("Pcb.DirectoryTableBase", 0x1aa000UL + pid * 0x1000);
        if (linkActive) InsertTailList(ProcessListHead, p.AddressOf("ActiveProcessLinks"));
        else InitializeListHead(p.AddressOf("ActiveProcessLinks"));
        return p;
    }

    /// <summary>
    /// An ETHREAD (with object header) of <paramref name="process"/>: Cid, Tcb.Process / ApcState.Process, linked into the
    /// process's ThreadListHead (ETHREAD.ThreadListEntry) and KPROCESS.ThreadListHead (KTHREAD.ThreadListEntry);
    /// IrpList initialised; State Running unless <see cref="SetWait"/> is used.
    /// </summary>
    public StructWriter AddThread(StructWriter process, ulong tid, ulong? at = null)
    {
        var t = NewObject("_ETHREAD", at);
        ulong pid = ReadPointer(process.AddressOf("UniqueProcessId"));
        t.Set("Tcb.Header.Type", 6UL)
         .Set("Cid.UniqueProcess", pid)
         .Set("Cid.UniqueThread", tid)
         .ListHead("IrpList")
         .Set("Tcb.ApcState.Process", process.Address)
         .SetEnum("Tcb.State", "Running", "_KTHREAD_STATE");
        if (t.Has("Tcb.Process")) t.Set("Tcb.Process", process.Address);
        if (t.Has("ThreadsProcess")) t.Set("ThreadsProcess", process.Address);
        InitializeListHead(t.AddressOf("Tcb.Header.WaitListHead"));
        InsertTailList(process.AddressOf("ThreadListHead"), t.AddressOf("ThreadListEntry"));
        InsertTailList(process.AddressOf("Pcb.ThreadListHead"), t.AddressOf("Tcb.ThreadListEntry"));
        return t;
    }

    /// <summary>
    /// Makes a thread wait: State Waiting, WaitReason (a _KWAIT_REASON constant: "WrLpcReply", "Executive", ...),
    /// WaitTime = the tick count <paramref name="waited"/> ago, WaitMode, and a KWAIT_BLOCK on <paramref name="objects"/>
    /// (WaitBlockList; each block linked into the object's dispatcher WaitListHead).
    /// </summary>
    public StructWriter SetWait(StructWriter thread, string waitReason, TimeSpan waited, bool userMode = false, params ulong[] objects)
    {
        thread.SetEnum("Tcb.State", "Waiting", "_KTHREAD_STATE")
              .SetEnum("Tcb.WaitReason", waitReason, "_KWAIT_REASON")
              .Set("Tcb.WaitTime", TicksAgo(waited))
              .Set("Tcb.WaitMode", userMode ? 1UL : 0UL);
        if (objects.Length > 0)
        {
            var wbl = Layout("_KWAIT_BLOCK");
            ulong first = 0, prev = 0;
            for (int i = 0; i < objects.Length; i++)
            {
                // The first blocks live inside the thread (WaitBlock[]) when the build has them; extra ones in pool.
                StructWriter wb = thread.Has("Tcb.WaitBlock") && (ulong)i < thread.TypeOf("Tcb.WaitBlock").Count
                    ? thread.Sub("Tcb").Element("WaitBlock", i) : New("_KWAIT_BLOCK");
                wb.Set("Thread", thread.Address).Set("Object", objects[i]).Set("WaitKey", (ulong)i)
                  .SetIfPresent("WaitType", objects.Length > 1 ? 1UL : 0UL);
                if (wb.Has("NextWaitBlock")) wb.Set("NextWaitBlock", wb.Address);
                if (prev != 0 && wb.Has("NextWaitBlock")) WritePointer(prev + wbl.GetField("NextWaitBlock").Offset, wb.Address);
                if (first == 0) first = wb.Address;
                prev = wb.Address;
                ulong objWaitList = objects[i] + OffsetOf("_DISPATCHER_HEADER", "WaitListHead");
                if (Memory.IsMapped(objects[i]))
                    InsertTailList(objWaitList, wb.AddressOf("WaitListEntry"));
            }
            if (prev != 0 && Has("_KWAIT_BLOCK", "NextWaitBlock")) WritePointer(prev + wbl.GetField("NextWaitBlock").Offset, first);
            thread.Set("Tcb.WaitBlockList", first);
        }
        return thread;
    }

    // ---------------------------------------------------------------- loaded modules

    /// <summary>nt!PsLoadedModuleList, initialised on first use with an entry for ntoskrnl.exe.</summary>
    public ulong LoadedModuleListHead
    {
        get
        {
            if (_moduleListHead == 0)
            {
                _moduleListHead = Symbol("PsLoadedModuleList");
                InitializeListHead(_moduleListHead);
                NewLdrEntry("ntoskrnl.exe", KernelBase, KernelSize);
            }
            return _moduleListHead;
        }
    }

    /// <summary>The loader entry type of this build: _KLDR_DATA_TABLE_ENTRY (Windows 10+) or _LDR_DATA_TABLE_ENTRY (7, 8.1).</summary>
    public string LdrEntryType => Has("_KLDR_DATA_TABLE_ENTRY") ? "_KLDR_DATA_TABLE_ENTRY" : "_LDR_DATA_TABLE_ENTRY";

    /// <summary>
    /// Places a driver image (PE header mapped) and links a loader entry into PsLoadedModuleList
    /// (FullDllName \SystemRoot\system32\drivers\NAME, BaseDllName NAME, DllBase, SizeOfImage). Returns the entry.
    /// </summary>
    public StructWriter AddLoadedModule(string fileName, uint size, ulong? imageBase = null, string? fullPath = null)
    {
        _ = LoadedModuleListHead;
        ulong b = PlaceImage(fileName, size, imageBase);
        return NewLdrEntry(fileName, b, (uint)Align(size, 0x1000), fullPath);
    }

    private StructWriter NewLdrEntry(string fileName, ulong dllBase, uint size, string? fullPath = null)
    {
        var e = New(LdrEntryType);
        e.Set("DllBase", dllBase).Set("SizeOfImage", size)
         .Unicode("FullDllName", fullPath ?? (fileName.Equals("ntoskrnl.exe", StringComparison.OrdinalIgnoreCase)
             ? @"\SystemRoot\system32\ntoskrnl.exe" : @"\SystemRoot\system32\drivers\" + fileName))
         .Unicode("BaseDllName", fileName)
         .SetIfPresent("LoadCount", 1)
         .SetIfPresent("EntryPoint", dllBase + 0x1000);
        InsertTailList(_moduleListHead, e.AddressOf("InLoadOrderLinks"));
        return e;
    }

    // ---------------------------------------------------------------- processors

    /// <summary>
    /// Creates <paramref name="count"/> processors: a KPCR (Self, CurrentPrcb) with its embedded KPRCB (Number,
    /// CurrentThread/IdleThread = a per-CPU idle thread), KiProcessorBlock[i], KeNumberProcessors, per-CPU DPC lists initialised.
    /// </summary>
    public IReadOnlyList<StructWriter> AddProcessors(int count, StructWriter? idleProcess = null)
    {
        if (count < 1 || count > 640) throw new ArgumentOutOfRangeException(nameof(count));
        ProcessorCount = count;
        idleProcess ??= AddProcess("Idle", 0, linkActive: false);
        ulong kpb = Symbol("KiProcessorBlock");
        Memory.Map(kpb, (ulong)count * 8);
        var list = new List<StructWriter>();
        for (int i = 0; i < count; i++)
        {
            var pcr = New("_KPCR", region: PoolRegion.NonPaged);
            var prcb = pcr.Sub("Prcb");
            pcr.Set("Self", pcr.Address).Set("CurrentPrcb", prcb.Address);
            var idle = AddThread(idleProcess, 0, null);
            idle.SetIfPresent("Tcb.NextProcessor", (ulong)i);
            prcb.Set("Number", (ulong)i).Set("CurrentThread", idle.Address).Set("IdleThread", idle.Address);
            var dpcType = prcb.TypeOf("DpcData");
            int n = dpcType.Kind == Commands.Symbols.TypeKind.Array ? (int)dpcType.Count : 1;
            for (int k = 0; k < n; k++) InitDpcData(dpcType.Kind == Commands.Symbols.TypeKind.Array ? prcb.Element("DpcData", k) : prcb.Sub("DpcData"));
            WritePointer(kpb + (ulong)i * 8, prcb.Address);
            _prcbs[i] = prcb;
            list.Add(prcb);
        }
        if (HasSymbol("KeNumberProcessors")) WriteU32(Symbol("KeNumberProcessors"), (uint)count);
        if (Memory.IsMapped(SharedUserData)) At("_KUSER_SHARED_DATA", SharedUserData).SetIfPresent("ActiveProcessorCount", (ulong)count);
        return list;
    }

    /// <summary>The KPRCB of processor <paramref name="cpu"/> (after <see cref="AddProcessors"/>).</summary>
    public StructWriter Prcb(int cpu) => _prcbs.TryGetValue(cpu, out var p) ? p : throw new ScenarioLayoutException($"processor {cpu} does not exist (AddProcessors first; {ProcessorCount} CPUs)");

    private void InitDpcData(StructWriter dd)
    {
        if (dd.Has("DpcListHead")) dd.ListHead("DpcListHead");                         // Windows 7: LIST_ENTRY
        else if (dd.Has("DpcList.ListHead")) { dd.Set("DpcList.ListHead.Next", 0UL); dd.Set("DpcList.LastEntry", dd.AddressOf("DpcList.ListHead")); } // 8.1+: _KDPC_LIST
    }

    /// <summary>A KDPC (Type DpcObject, DeferredRoutine, DeferredContext).</summary>
    public StructWriter NewDpc(ulong routine, ulong context = 0, ulong? at = null, bool threaded = false)
    {
        var d = New("_KDPC", at);
        d.Set("Type", threaded ? 0x18UL : 0x13UL).Set("Importance", 1UL).Set("DeferredRoutine", routine).Set("DeferredContext", context);
        return d;
    }

    /// <summary>Queues a DPC on a CPU's normal DPC queue (DpcData[0]): LIST_ENTRY list on Windows 7, _KDPC_LIST (singly linked, LastEntry) on 8.1+.
    /// Updates DpcQueueDepth and KDPC.DpcData.</summary>
    public void QueueDpc(int cpu, StructWriter dpc, int queue = 0)
    {
        var prcb = Prcb(cpu);
        var t = prcb.TypeOf("DpcData");
        var dd = t.Kind == Commands.Symbols.TypeKind.Array ? prcb.Element("DpcData", queue) : prcb.Sub("DpcData");
        if (dd.Has("DpcListHead"))
            InsertTailList(dd.AddressOf("DpcListHead"), dpc.AddressOf("DpcListEntry"));
        else
        {
            ulong head = dd.AddressOf("DpcList.ListHead");
            ulong last = ReadPointer(dd.AddressOf("DpcList.LastEntry"));
            ulong entry = dpc.AddressOf("DpcListEntry");
            WritePointer(entry, 0);
            WritePointer(last == 0 ? head : last, entry);
            dd.Set("DpcList.LastEntry", entry);
        }
        dd.Set("DpcQueueDepth", ReadLe(dd.AddressOf("DpcQueueDepth"), 4) + 1);
        dpc.Set("DpcData", dd.Address);
    }

    // ---------------------------------------------------------------- I/O objects

    /// <summary>A DRIVER_OBJECT (IO_TYPE_DRIVER) with DriverName ("\FileSystem\Mup"), DriverStart/DriverSize from an image when given.</summary>
    public StructWriter AddDriver(string driverName, ModuleInfo? image = null, ulong? at = null)
    {
        var d = NewObject("_DRIVER_OBJECT", at);
        d.Set("Type", 4L).Set("Size", d.Size).Unicode("DriverName", driverName);
        if (image is not null) d.Set("DriverStart", image.Base).Set("DriverSize", (ulong)image.Size);
        return d;
    }

    /// <summary>A DEVICE_OBJECT (IO_TYPE_DEVICE) of a driver, linked as the driver's DeviceObject chain head.</summary>
    public StructWriter AddDevice(StructWriter driver, ulong? at = null, uint deviceType = 0x14, ulong stackSize = 1)
    {
        var dev = NewObject("_DEVICE_OBJECT", at);
        dev.Set("Type", 3L).Set("Size", dev.Size).Set("DriverObject", driver.Address).Set("DeviceType", (ulong)deviceType)
           .Set("StackSize", stackSize).Set("ReferenceCount", 1L);
        dev.Set("NextDevice", ReadPointer(driver.AddressOf("DeviceObject")));
        driver.Set("DeviceObject", dev.Address);
        return dev;
    }

    /// <summary>A FILE_OBJECT (IO_TYPE_FILE) on a device with FileName ("\DC005.contoso.com\PIPE\lsarpc").</summary>
    public StructWriter AddFile(StructWriter? device, string fileName, ulong? at = null)
    {
        var f = NewObject("_FILE_OBJECT", at);
        f.Set("Type", 5L).Set("Size", f.Size).Unicode("FileName", fileName);
        if (device is not null) f.Set("DeviceObject", device.Address);
        return f;
    }

    /// <summary>Size of an IRP with <paramref name="stackCount"/> stack locations (IoSizeOfIrp).</summary>
    public ulong IrpSize(int stackCount) => SizeOf("_IRP") + (ulong)stackCount * SizeOf("_IO_STACK_LOCATION");

    /// <summary>
    /// An IRP (IO_TYPE_IRP) with <paramref name="stackCount"/> IO_STACK_LOCATIONs after it, queued on the thread's IrpList
    /// (IRP.ThreadListEntry) with Tail.Overlay.Thread set. The current location is the last one until <see cref="SetCurrentStack"/>.
    /// </summary>
    public StructWriter AddIrp(StructWriter? thread, int stackCount, ulong? at = null, StructWriter? fileObject = null)
    {
        var irp = New("_IRP", at, extraBytes: (ulong)stackCount * SizeOf("_IO_STACK_LOCATION"));
        irp.Set("Type", 6L).Set("Size", IrpSize(stackCount)).Set("StackCount", (ulong)stackCount)
           .ListHead("ThreadListEntry");
        if (fileObject is not null) irp.Set("Tail.Overlay.OriginalFileObject", fileObject.Address);
        if (thread is not null)
        {
            irp.Set("Tail.Overlay.Thread", thread.Address);
            InsertTailList(thread.AddressOf("IrpList"), irp.AddressOf("ThreadListEntry"));
        }
        SetCurrentStack(irp, stackCount - 1, stackCount);
        return irp;
    }

    /// <summary>Stack location <paramref name="index"/> (0 = first) of an IRP.</summary>
    public StructWriter IrpStack(StructWriter irp, int index) =>
        At("_IO_STACK_LOCATION", irp.Address + SizeOf("_IRP") + (ulong)index * SizeOf("_IO_STACK_LOCATION"));

    /// <summary>Sets CurrentLocation (1-based, as the I/O manager counts) and Tail.Overlay.CurrentStackLocation to stack index <paramref name="index"/>.</summary>
    public void SetCurrentStack(StructWriter irp, int index, int? stackCount = null)
    {
        irp.Set("CurrentLocation", (ulong)(index + 1));
        irp.Set("Tail.Overlay.CurrentStackLocation", IrpStack(irp, index).Address);
    }

    // ---------------------------------------------------------------- misc

    /// <summary>Writes an ASCII tag/string into memory (e.g. pool tag bytes inside a driver image).</summary>
    public void WriteAscii(ulong address, string text) => Memory.Write(address, Encoding.Latin1.GetBytes(text));

    /// <summary>Adds an innermost-first frame to the current stack (return address, stack pointer).</summary>
    public void PushFrame(ulong instruction, ulong returnAddress = 0, ulong stackPointer = 0, ulong framePointer = 0) =>
        CurrentStack.Add(new StackFrameInfo(instruction, returnAddress, stackPointer, framePointer));
}
