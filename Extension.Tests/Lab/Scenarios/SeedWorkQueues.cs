using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 003, second half ("All these IRPs are waiting on SMB Transport Driver" on): the system work queues of the hung
/// server. The Delayed WorkQueue holds 18,023 pending items scattered over pool (list order unrelated to address order,
/// 8 items per page in random slots): 17,950 IO_WORKITEMs of mpio!MPIOPathVerify, 37 of smb!SmbDelayedStartTcpSession
/// (the SMB transport's work, stuck behind them) and 36 nt!CcWorkerThread items; every worker of that queue, the 16
/// dynamic threads (Windows 7's maximum) included, waits in an Executive wait inside MyBadDSM called from
/// mpio!MPIOPathVerify (the seed's stack, return addresses on each worker's kernel stack after real call instructions).
/// The three \Driver\Smb IRPs the seed dumps from rdbss!RxIrpsList are placed at their addresses. Seed addresses: the first
/// and last items and the ones the seed's !list shows, worker fffffa80`30a39720 (Cid 4.44, stack fffffa60`02326000-
/// fffffa60`0232c000), mpio/smb/MyBadDSM at their fffffa60`... addresses, the Smb device fffffa80`4b1fd8d0.
/// The queue shape follows the build's own symbol table: nt!ExWorkerQueue (_EX_WORK_QUEUE + _KQUEUE) on 7601;
/// nt!KeNodeBlock -> _ENODE.ExWorkQueues (_KPRIQUEUE, Delayed = priority 12) on 9600/14393; nt!PspSystemPartition ->
/// _EPARTITION.ExPartition -> _EX_PARTITION.WorkQueues[node][pool] (+ WorkQueueManagers) on 19041/22000.
/// Fault variants: "wq-cycle" (item 10,000's Flink back to item 5,000), "wq-pagedout" (the page of item 9,000 not in
/// memory), "wq-count" (the queue's own count says 18,100). Layout variants for the bench: "wq-compact" (the scattered items
/// back to back in list order instead), "wq-sparse" (one per page at a random offset, random order).
/// </summary>
public static class SeedWorkQueues
{
    public const int Pending = 18_023, MpioItems = 17_950, SmbItems = 37, CcItems = Pending - MpioItems - SmbItems;
    public const int StaticWorkers = 4, DynamicWorkers = 16;
    public const ulong MpioBase = 0xfffffa60_00be0000, DsmBase = 0xfffffa60_00c91000, SmbBase = 0xfffffa60_0f4f0000;
    public const ulong MpioPathVerify = 0xfffffa60_00becb58, SmbDelayedStartTcpSession = 0xfffffa60_0f5002e4;
    public const ulong FirstWorker = 0xfffffa80_30a39720, FirstWorkerEvent = 0xfffffa80_31e8fe58;
    public const ulong FirstStackBase = 0xfffffa60_0232c000, FirstKernelStack = 0xfffffa60_0232b800, FirstInitialStack = 0xfffffa60_0232bdb0;
    public const ulong SmbDevice = 0xfffffa80_4b1fd8d0, SmbFile = 0xfffffa80_50f012f0, MpioDevice = 0xfffffa80_31c4e050;
    public static readonly ulong[] SmbIrps = [0xfffffa80_7274e5a0, 0xfffffa80_50f16160, 0xfffffa80_51491760];
    public const ulong FirstItem = 0xfffffa80_50226f00, LastItem = 0xfffffa80_5183f9f0;
    /// <summary>Items the seed's !list shows, in list order near the start (smb) and the end (mpio).</summary>
    public static readonly ulong[] SeedSmbItems = [0xfffffa80_4b7c7e30, 0xfffffa80_72544e00, 0xfffffa80_72759d50, 0xfffffa80_73b416e0];
    public static readonly ulong[] SeedTailMpioItems = [0xfffffa80_518392e0, 0xfffffa80_31fafa60, 0xfffffa80_31fafab0, 0xfffffa80_31fafc30, 0xfffffa80_5183f9a0, 0xfffffa80_4ea092e0];
    /// <summary>Where the scattered items live: 8 per page in random 0x200-byte slots.</summary>
    public const ulong ScatterBase = 0xfffffa80_60000000;
    public const uint CurrentTick = AlpcLogonHangScenario.CurrentTick, FirstWorkerWaitTick = 2015907;

    public static bool Supports(LabBuild build)
    {
        var d = build.Isf;
        if (!d.UserTypes.TryGetValue("_EX_WORK_QUEUE", out var q) || !d.UserTypes.ContainsKey("_WORK_QUEUE_ITEM") || !d.UserTypes.ContainsKey("_IO_WORKITEM")) return false;
        if (!d.Symbols.ContainsKey("IopProcessWorkItem")) return false;
        if (q.Fields.Any(f => f.Name == "WorkerQueue")) return d.Symbols.ContainsKey("ExWorkerQueue");
        if (!q.Fields.Any(f => f.Name == "WorkPriQueue")) return false;
        if (q.Fields.Any(f => f.Name == "Partition"))
            return d.Symbols.ContainsKey("PspSystemPartition") && d.UserTypes.ContainsKey("_EX_PARTITION") && d.UserTypes.ContainsKey("_EPARTITION");
        return d.Symbols.ContainsKey("KeNodeBlock") && d.UserTypes.TryGetValue("_ENODE", out var n) && n.Fields.Any(f => f.Name == "ExWorkQueues");
    }

    private sealed record Queue(StructWriter Ex, string Inner, bool Pri);

    public static void Add(KernelScenarioBuilder b, ScenarioResult r, StructWriter system, string? variant)
    {
        var nt = b.Build;
        // ---- modules and drivers
        b.AddLoadedModule("mpio.sys", 0x30000, MpioBase);
        b.AddLoadedModule("MyBadDSM.sys", 0x10000, DsmBase);
        b.AddLoadedModule("smb.sys", 0x30000, SmbBase);
        b.AddSymbol("mpio!MPIOPathVerify", MpioPathVerify);
        b.AddSymbol("smb!SmbDelayedStartTcpSession", SmbDelayedStartTcpSession);
        var mpioDrv = b.AddDriver(@"\Driver\mpio", b.Modules.First(m => m.Name == "mpio"));
        var mpioDev = b.AddDevice(mpioDrv, MpioDevice);
        var smbDrv = b.AddDriver(@"\Driver\Smb", b.Modules.First(m => m.Name == "smb"));
        var smbDev = b.AddDevice(smbDrv, SmbDevice);
        var smbFile = b.AddFile(smbDev, @"\Device\NetbiosSmb", SmbFile);
        // The three IRPs the seed dumps: pending on \Driver\Smb (2 stack locations, 2 current), no thread.
        byte[] majors = [0xf, 0xe, 0xe];
        for (int i = 0; i < SmbIrps.Length; i++)
        {
            var irp = b.AddIrp(null, 2, SmbIrps[i], smbFile);
            b.IrpStack(irp, 1).Set("MajorFunction", (ulong)majors[i]).Set("DeviceObject", smbDev.Address).Set("FileObject", smbFile.Address).Set("Control", 0xe1UL);
            b.SetCurrentStack(irp, 1);
            r.Facts[$"smbIrp{i}"] = irp.Address;
        }

        // ---- the queues, in the build's shape
        var (delayed, others) = MakeQueues(b, r);
        ulong iop = b.Symbol("IopProcessWorkItem");

        // ---- the Delayed WorkQueue's items
        // The seed's items are 0x50 apart in places: on builds whose IO_WORKITEM is larger (0x58) the ones that would
        // overlap their neighbour are left out (replaced by scattered items).
        ulong itemSize = b.SizeOf("_IO_WORKITEM");
        var fixedItems = new List<ulong> { FirstItem, LastItem };
        fixedItems.AddRange(SeedSmbItems);
        var seedTail = new List<ulong>();
        foreach (var a in SeedTailMpioItems)
            if (!fixedItems.Concat(seedTail).Any(o => o + itemSize + 0x10 > a && a + itemSize + 0x10 > o)) seedTail.Add(a);
        int slots = Pending - 2 - SeedSmbItems.Length - seedTail.Count;
        var rng = new Random(3003);
        var scattered = new List<ulong>(slots);
        int pages;
        if (variant == "wq-compact")
        {
            // Back to back in list order (a pool header of 0x10 before each item), as a burst of allocations queued in turn.
            ulong slot = (itemSize + 0x10 + 0xf) & ~0xfUL;
            pages = (int)(((ulong)slots * slot + 0xfff) / 0x1000);
            for (int i = 0; i < slots; i++) scattered.Add(ScatterBase + (ulong)i * slot + 0x10);
        }
        else if (variant == "wq-sparse")
        {
            // One item per page at a random 0x10-aligned offset (the rest of each page: other allocations), random order.
            pages = slots;
            int offsets = (int)((0x1000 - itemSize - 0x10) / 0x10);
            for (int p = 0; p < pages; p++) scattered.Add(ScatterBase + (ulong)p * 0x1000 + (ulong)rng.Next(0, offsets) * 0x10 + 0x10);
            Shuffle(scattered, rng);
        }
        else
        {
            pages = (slots + 7) / 8;
            for (int p = 0; p < pages; p++)
            {
                var s = Enumerable.Range(0, 8).OrderBy(_ => rng.Next()).Take(Math.Min(8, slots - scattered.Count)).ToList();
                foreach (int k in s) scattered.Add(ScatterBase + (ulong)p * 0x1000 + (ulong)k * 0x200 + 0x10);
            }
            Shuffle(scattered, rng);
        }
        b.Place(ScatterBase, (ulong)pages * 0x1000);
        // List order: the seed's first item, smb items spread over the first half (the seed's four among them), the
        // scattered mpio/Cc items, the seed's last mpio items, the seed's last item.
        var order = new List<(ulong Addr, int Kind)>(Pending) { (FirstItem, 0) };
        int si = 0;
        var smbPositions = new SortedSet<int>();
        while (smbPositions.Count < SmbItems) smbPositions.Add(rng.Next(1, Pending / 2));
        var ccPositions = new SortedSet<int>();
        while (ccPositions.Count < CcItems) { int p = rng.Next(1, Pending - 8); if (!smbPositions.Contains(p)) ccPositions.Add(p); }
        int seedSmb = 0;
        for (int pos = 1; order.Count < Pending - 1 - seedTail.Count; pos++)
        {
            if (smbPositions.Contains(pos))
                order.Add((seedSmb < SeedSmbItems.Length ? SeedSmbItems[seedSmb++] : scattered[si++], 1));
            else order.Add((scattered[si++], ccPositions.Contains(pos) ? 2 : 0));
        }
        foreach (var a in seedTail) order.Add((a, 0));
        order.Add((LastItem, 0));
        foreach (var (a, _) in order.Where(o => o.Addr < ScatterBase || o.Addr >= ScatterBase + (ulong)pages * 0x1000))
            b.Place(a - 0x10, itemSize + 0x10);

        ulong head = delayed.Pri ? ListHeadOf(b, delayed, 12) : delayed.Ex.AddressOf("WorkerQueue.EntryListHead");
        ulong cc = b.Symbol("CcWorkerThread");
        var entries = new List<ulong>(order.Count);
        foreach (var (a, kind) in order)
        {
            var w = b.View("_IO_WORKITEM", a);
            if (kind == 2)
            {
                // A plain WORK_QUEUE_ITEM (the cache manager's): only the first 0x20 bytes are the item.
                b.View("_WORK_QUEUE_ITEM", a).Set("WorkerRoutine", cc).Set("Parameter", a + 0x100);
            }
            else
            {
                w.Set("WorkItem.WorkerRoutine", iop).Set("WorkItem.Parameter", a)
                 .Set("Routine", kind == 1 ? SmbDelayedStartTcpSession : MpioPathVerify)
                 .Set("IoObject", kind == 1 ? smbDev.Address : mpioDev.Address)
                 .Set("Context", kind == 1 ? SmbIrps[entries.Count % SmbIrps.Length] : mpioDev.Address + 0x200)
                 .Set("Type", 1UL);
            }
            entries.Add(a);
        }
        b.LinkList(head, entries);
        long own = variant == "wq-count" ? 18_100 : Pending;
        delayed.Ex.Set(delayed.Inner + ".Header.SignalState", own);
        if (!delayed.Pri) delayed.Ex.Set("QueueDepthLastPass", (ulong)Pending).Set("WorkItemsProcessed", 2_315_771UL);
        else delayed.Ex.Set("WorkItemsProcessed", 2_315_771UL);
        r.Facts["delayedQueue"] = delayed.Ex.Address;
        r.Facts["delayedHead"] = head;
        r.Facts["item5000"] = entries[4999];
        r.Facts["item9000"] = entries[8999];
        r.Facts["item10000"] = entries[9999];
        r.Facts["firstSmbItem"] = entries[smbPositions.Min];
        r.Facts["firstSmbPosition"] = (ulong)smbPositions.Min + 1;
        if (variant == "wq-cycle") b.WritePointer(entries[9999], entries[4999]);
        if (variant == "wq-pagedout") b.Memory.Unmap(SparseMemory.PageOf(entries[8999]), 0x1000);

        // ---- workers: every Delayed worker blocked in MyBadDSM under mpio!MPIOPathVerify
        var frames = new List<ulong>
        {
            b.Symbol("KiSwapThread") + 0x13a, b.Symbol("KeWaitForSingleObject") + 0x2cb, DsmBase + 0xb698, DsmBase + 0x6a06,
            MpioPathVerify + 0x14b, iop + 0x27, b.Symbol("ExpWorkerThread") + 0xfb, b.Symbol("PspSystemThreadStartup") + 0x57,
            b.Symbol("KxStartSystemThread") + 0x16,
        };
        foreach (var ret in frames) WriteCall(b, ret);
        var workers = new List<ulong>();
        for (int i = 0; i < StaticWorkers + DynamicWorkers; i++)
        {
            var t = b.AddThread(system, 0x44 + (ulong)i * 4, i == 0 ? FirstWorker : null);
            var ev = b.New("_KEVENT", i == 0 ? FirstWorkerEvent : null);
            ev.Set("Header.Type", 1UL);
            b.InitializeListHead(ev.AddressOf("Header.WaitListHead"));
            b.SetWait(t, "Executive", TimeSpan.Zero, false, ev.Address);
            t.Set("Tcb.WaitTime", FirstWorkerWaitTick + (uint)i * 97);
            JoinQueue(b, t, delayed);
            ulong stackBase = FirstStackBase + (ulong)i * 0x8000;
            ulong kstack = FirstKernelStack + (ulong)i * 0x8000, init = FirstInitialStack + (ulong)i * 0x8000;
            b.Place(stackBase - 0x6000, 0x6000);
            t.Set("Tcb.StackBase", stackBase).Set("Tcb.StackLimit", stackBase - 0x6000).Set("Tcb.KernelStack", kstack).Set("Tcb.InitialStack", init)
             .SetIfPresent("Win32StartAddress", b.Symbol("ExpWorkerThread")).SetIfPresent("StartAddress", b.Symbol("PspSystemThreadStartup"));
            // Return addresses innermost first; a function pointer (not after a call) and the event in between, as on a real stack.
            ulong sp = kstack + 0x38;
            for (int f = 0; f < frames.Count; f++)
            {
                b.WritePointer(sp, frames[f]);
                b.WritePointer(sp + 8, f == 4 ? MpioPathVerify : ev.Address);
                sp += f == 2 ? 0x90UL : 0x60UL;
            }
            workers.Add(t.Address);
        }
        if (!delayed.Pri) delayed.Ex.Set("DynamicThreadCount", (ulong)DynamicWorkers);
        else delayed.Ex.Set("ThreadCount", (long)(StaticWorkers + DynamicWorkers)).Set("MinThreads", (long)StaticWorkers).Set("MaxThreads", (long)(StaticWorkers + DynamicWorkers));
        r.Facts["firstWorker"] = workers[0];
        r.Facts["lastWorker"] = workers[^1];

        // ---- idle workers of the other queues (waiting on the queue itself: WrQueue)
        int tid = 0x100;
        foreach (var (q, n) in others)
            for (int i = 0; i < n; i++)
            {
                var t = b.AddThread(system, (ulong)tid++ * 4);
                t.SetEnum("Tcb.State", "Waiting", "_KTHREAD_STATE").SetEnum("Tcb.WaitReason", "WrQueue", "_KWAIT_REASON").Set("Tcb.WaitTime", CurrentTick - 3u).Set("Tcb.WaitMode", 0UL);
                JoinQueue(b, t, q);
                if (q.Pri) q.Ex.Set("ThreadCount", (long)n).Set("MinThreads", (long)n).Set("MaxThreads", 4096L);
            }
    }

    /// <summary>Creates the build's queues; returns the one holding the Delayed items and the others with their idle worker counts.</summary>
    private static (Queue Delayed, List<(Queue, int)> Others) MakeQueues(KernelScenarioBuilder b, ScenarioResult r)
    {
        var exwq = b.Layout("_EX_WORK_QUEUE");
        if (exwq.HasField("WorkerQueue"))
        {
            ulong baseAddr = b.Symbol("ExWorkerQueue");
            var qs = new List<Queue>();
            for (int i = 0; i < 3; i++)
            {
                var q = b.At("_EX_WORK_QUEUE", baseAddr + (ulong)i * exwq.Size);
                q.Set("WorkerQueue.Header.Type", 4UL).Set("WorkerQueue.MaximumCount", 0x10UL)
                 .ListHead("WorkerQueue.Header.WaitListHead").ListHead("WorkerQueue.EntryListHead").ListHead("WorkerQueue.ThreadListHead");
                qs.Add(new Queue(q, "WorkerQueue", false));
            }
            return (qs[1], [(qs[0], 2), (qs[2], 1)]);
        }
        // 8.1+: a _KPRIQUEUE per pool.
        Queue NewPri(StructWriter q)
        {
            q.Set("WorkPriQueue.MaximumCount", 2UL).ListHead("WorkPriQueue.Header.WaitListHead").ListHead("WorkPriQueue.ThreadListHead");
            for (int p = 0; p < 32; p++) b.InitializeListHead(q.AddressOf("WorkPriQueue.EntryListHead") + (ulong)p * 16);
            return new Queue(q, "WorkPriQueue", true);
        }
        var enode = b.New("_ENODE");
        b.Memory.Map(b.Symbol("KeNodeBlock"), 8);
        b.WritePointer(b.Symbol("KeNodeBlock"), enode.Address);
        b.Memory.Map(b.Symbol("KeNumberNodes"), 2);
        b.Memory.WriteU16(b.Symbol("KeNumberNodes"), 1);
        Queue q0, q1;
        if (exwq.HasField("Partition"))
        {
            var ep = b.New("_EPARTITION");
            var xp = b.New("_EX_PARTITION");
            ep.Set("ExPartition", xp.Address);
            b.Memory.Map(b.Symbol("PspSystemPartition"), 8);
            b.WritePointer(b.Symbol("PspSystemPartition"), ep.Address);
            ulong perNodeArray = b.Alloc(8), pools = b.Alloc(16), managers = b.Alloc(8);
            q0 = NewPri(b.New("_EX_WORK_QUEUE"));
            q1 = NewPri(b.New("_EX_WORK_QUEUE"));
            b.WritePointer(perNodeArray, pools);
            b.WritePointer(pools, q0.Ex.Address);
            b.WritePointer(pools + 8, q1.Ex.Address);
            var mgr = b.New("_EX_WORK_QUEUE_MANAGER");
            mgr.Set("Partition", xp.Address).Set("Node", enode.Address);
            b.WritePointer(managers, mgr.Address);
            xp.Set("PartitionObject", ep.Address).Set("WorkQueues", perNodeArray).Set("WorkQueueManagers", managers).Set("QueueAllocationMask", 3L);
            foreach (var q in new[] { q0, q1 }) q.Ex.Set("Partition", xp.Address).Set("Node", enode.Address);
            q1.Ex.SetIfPresent("QueueIndex", 1);
            r.Facts["exPartition"] = xp.Address;
        }
        else
        {
            // _ENODE embeds its queue(s): ExWorkQueue (+ IoWorkQueue on 14393); ExWorkQueues[] points at them.
            q0 = NewPri(enode.Sub("ExWorkQueue"));
            q1 = enode.Has("IoWorkQueue") ? NewPri(enode.Sub("IoWorkQueue")) : NewPri(b.New("_EX_WORK_QUEUE"));
            ulong arr = enode.AddressOf("ExWorkQueues");
            b.WritePointer(arr, q0.Ex.Address);
            b.WritePointer(arr + 8, q1.Ex.Address);
            foreach (var q in new[] { q0, q1 }) q.Ex.Set("Node", enode.Address);
            q1.Ex.SetIfPresent("QueueIndex", 1);
        }
        r.Facts["enode"] = enode.Address;
        return (q0, [(q1, 2)]);
    }

    private static ulong ListHeadOf(KernelScenarioBuilder b, Queue q, int priority) => q.Ex.AddressOf("WorkPriQueue.EntryListHead") + (ulong)priority * 16;

    private static void JoinQueue(KernelScenarioBuilder b, StructWriter thread, Queue q)
    {
        ulong inner = q.Ex.AddressOf(q.Inner);
        thread.Set("Tcb.Queue", inner);
        b.InsertTailList(q.Ex.AddressOf(q.Inner + ".ThreadListHead"), thread.AddressOf("Tcb.QueueListEntry"));
    }

    /// <summary>Writes a call instruction (E8 rel32) ending at <paramref name="ret"/>, so a stack scan takes it for a return address.</summary>
    private static void WriteCall(KernelScenarioBuilder b, ulong ret)
    {
        b.Memory.Map(ret - 5, 5);
        var code = new byte[5];
        code[0] = 0xE8;
        BitConverter.GetBytes(0x100).CopyTo(code, 1);
        b.Memory.Write(ret - 5, code);
    }

    private static void Shuffle(List<ulong> list, Random rng)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
