using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 003 (hung logon at "Applying User Settings"): winlogon -> LogonUI -> lsm -> svchost, the svchost thread blocked
/// 4:21:40 in an Executive wait on an IRP to \FileSystem\Mup for \DC005.contoso.com\PIPE\lsarpc. Addresses, PIDs, TIDs,
/// message ids/sequences/lengths and tick counts are the seed's (KeMaximumIncrement 156001 reproduces its h:mm:ss).
/// One deviation: the seed's lsm server thread fffffa80`5180c700 is shown only briefly; here it waits idle (UserRequest) so
/// the chain reaches lsm thread 1a70 by inference, as the seed's author did by dumping lsm's threads.
/// Also present, independent of the seed chain: six more sessions (winlogon + LogonUI each, "seven waiters" for -all),
/// lsm thread 1a74 waiting on an idle svchost timer thread, a two-thread ALPC deadlock (spoolsv <-> svchost 700) and a
/// message nobody receives (taskhostw -> SearchIndexer, 5 queued). Variant "10k" adds 10,000 idle threads in 100 processes;
/// Scale N adds 50*N. Variant "scattered": the ALPC half alone (no work queues), every object without a seed address at a
/// random offset of a random pool page.
/// </summary>
public sealed class AlpcLogonHangScenario : IScenario
{
    public string Name => "logon-hang-alpc";
    public string Seed => "003_7ae1898a557dba99.txt";

    // The seed's numbers.
    public const ulong WinlogonThread = 0xfffffa80_73d3d770, WinlogonProcess = 0xfffffa80_6e132c10;
    public const ulong LogonUiProcess = 0xfffffa80_6e134c10, LogonUiServerThread = 0xfffffa80_4f96d5a0, LogonUiWaiter = 0xfffffa80_4e9e5060;
    public const ulong LsmProcess = 0xfffffa80_6e130c10, LsmServerThread = 0xfffffa80_5180c700, LsmWaiter = 0xfffffa80_50910060;
    public const ulong SvchostProcess = 0xfffffa80_4ea4fc10, BlockerThread = 0xfffffa80_51435940;
    public const ulong Msg1 = 0xfffff880_1ffd9cf0, Msg2 = 0xfffff880_1ffaacf0, Msg3 = 0xfffff880_1fe00cf0;
    public const ulong LogonUiPort = 0xfffffa80_4e9d9370, LsmPort = 0xfffffa80_4e9b6060, SvchostPort = 0xfffffa80_4e876b60;
    public const ulong Irp = 0xfffffa80_514558b0, FileObject = 0xfffffa80_5145aec0, MupDevice = 0xfffffa80_31d1a840, FltMgrDevice = 0xfffffa80_31d1b880;
    public const ulong BlockerEvent = 0xfffffa60_1086d3e8, LogonUiEvent = 0xfffffa80_516be920;
    public const uint CurrentTick = 4194369, TickIncrement = 156001;

    public bool Supports(LabBuild build)
    {
        var d = build.Isf;
        return d.UserTypes.TryGetValue("_KALPC_MESSAGE", out _) && d.UserTypes.TryGetValue("_ALPC_PORT", out var port)
               && port.Fields.Any(f => f.Name == "OwnerProcess")
               && d.UserTypes["_ETHREAD"].Fields.Any(f => f.Name == "AlpcMessage");
    }

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        var b = new KernelScenarioBuilder(build);
        // "scattered": every object without a seed address (the other sessions' threads, ports and messages, the
        // filler threads, the work items' pages) at a random offset of a random pool page, as real pool places them.
        if (options.Variant == "scattered") b.ScatterAllocations(15);
        // Uptime chosen so that KUSER_SHARED_DATA.TickCount = 4194369 with a 15.6001 ms tick.
        b.SetClock(new DateTime(2010, 6, 3, 14, 12, 0, DateTimeKind.Utc), TimeSpan.FromTicks((long)CurrentTick * TickIncrement), TickIncrement);
        var system = b.AddProcess("System", 4);
        var sysThread = b.AddThread(system, 8);
        b.AddProcessors(2);
        b.Prcb(0).Set("CurrentThread", sysThread.Address);
        b.CurrentThread = sysThread.Address; b.CurrentProcess = system.Address;

        var mupDrv = b.AddDriver(@"\FileSystem\Mup");
        var mup = b.AddDevice(mupDrv, at: MupDevice);
        var fltDrv = b.AddDriver(@"\FileSystem\FltMgr");
        var flt = b.AddDevice(fltDrv, at: FltMgrDevice);

        var winlogon = b.AddProcess("winlogon.exe", 0x384, WinlogonProcess);
        var logonui = b.AddProcess("LogonUI.exe", 0x1ac, LogonUiProcess);
        var lsm = b.AddProcess("lsm.exe", 0x2e0, LsmProcess);
        var svchost = b.AddProcess("svchost.exe", 0x574, SvchostProcess);
        var r = new ScenarioResult(Name, b, options);

        // hop 1: winlogon 384.1e2c -> LogonUI port; server thread 9fc idle on a NotificationEvent.
        var tW = AlpcWaiter(b, winlogon, 0x1e2c, WinlogonThread, 4192487);
        var cW = Port(b, winlogon, 0xfffffa80_481ba9b0);
        var pL = Port(b, logonui, LogonUiPort);
        var tL1 = b.AddThread(logonui, 0x9fc, LogonUiServerThread);
        var ev1 = Event(b, 0, LogonUiEvent);
        b.SetWait(tL1, "UserRequest", TimeSpan.Zero, true, ev1.Address);
        tL1.Set("Tcb.WaitTime", 4192487u);
        Message(b, Msg1, tW, cW, pL, tL1.Address, 0x464, 0x2844F0, 0xB, 0x64, 0x8C);

        // hop 2: LogonUI 1ac.438 -> lsm port; server thread 5180c700 idle.
        var tL2 = AlpcWaiter(b, logonui, 0x438, LogonUiWaiter, 4192488);
        var cL = Port(b, logonui, 0xfffffa80_4ea03c80);
        var pS = Port(b, lsm, LsmPort);
        var tS1 = b.AddThread(lsm, 0x1b64, LsmServerThread);
        b.SetWait(tS1, "UserRequest", TimeSpan.Zero, true, Event(b, 0).Address);
        tS1.Set("Tcb.WaitTime", 4192488u);
        Message(b, Msg2, tL2, cL, pS, tS1.Address, 0x474, 0x2844F6, 0xD, 0x58, 0x80);

        // hop 3: lsm 2e0.1a70 -> svchost port; server thread 1ea0 = the blocker.
        var tS2 = AlpcWaiter(b, lsm, 0x1a70, LsmWaiter, 3187894);
        var cS = Port(b, lsm, 0xfffffa80_4ef15d30);
        var pV = Port(b, svchost, SvchostPort);
        var tV1 = b.AddThread(svchost, 0x1ea0, BlockerThread);
        var ev2 = Event(b, 1, BlockerEvent);
        b.SetWait(tV1, "Executive", TimeSpan.Zero, false, ev2.Address);
        tV1.Set("Tcb.WaitTime", 3187932u);
        Message(b, Msg3, tS2, cS, pV, tV1.Address, 0x3C4, 0x2140C2, 0x21, 0xC0, 0xE8);
        // The IRP: 4 stacks, 3 is current (\FileSystem\Mup), 4 is FltMgr; file \DC005.contoso.com\PIPE\lsarpc.
        var file = b.AddFile(mup, @"\DC005.contoso.com\PIPE\lsarpc", FileObject);
        var irp = b.AddIrp(tV1, 4, Irp, file);
        b.IrpStack(irp, 2).Set("MajorFunction", 0UL).Set("DeviceObject", mup.Address).Set("FileObject", file.Address);
        b.IrpStack(irp, 3).Set("MajorFunction", 0UL).Set("DeviceObject", flt.Address).Set("FileObject", file.Address);
        b.SetCurrentStack(irp, 2);

        // lsm 1a74 waits on an svchost "notification timer" thread that sits idle: a second, uninteresting chain.
        var tS3 = AlpcWaiter(b, lsm, 0x1a74, null, 4190001);
        var tV2 = b.AddThread(svchost, 0x1ea8);
        var timer = b.New("_KTIMER");
        timer.Set("Header.Type", 8UL);
        b.InitializeListHead(timer.AddressOf("Header.WaitListHead"));
        b.SetWait(tV2, "UserRequest", TimeSpan.Zero, true, timer.Address);
        tV2.Set("Tcb.WaitTime", 4190001u);
        Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), tS3, Port(b, lsm), pV, tV2.Address, 0x3C8, 0x2140C4, 0x22, 0x30, 0x58);

        // Six more sessions: winlogon_s -> LogonUI_s (idle server, one waiter) -> lsm port (idle lsm server thread).
        for (int s = 2; s <= 7; s++)
        {
            var w = b.AddProcess("winlogon.exe", 0x384 + (ulong)s * 0x100);
            var u = b.AddProcess("LogonUI.exe", 0x1ac + (ulong)s * 0x100);
            var wt = AlpcWaiter(b, w, 0x1e2c + (ulong)s * 0x10, null, 4192487);
            var up = Port(b, u);
            var us = b.AddThread(u, 0x9fc + (ulong)s * 0x10);
            b.SetWait(us, "UserRequest", TimeSpan.Zero, true, Event(b, 0).Address);
            us.Set("Tcb.WaitTime", 4192487u);
            Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), wt, Port(b, w), up, us.Address, 0x500u + (uint)s, 0x2844F0u + (uint)s, 0xB, 0x64, 0x8C);
            var uw = AlpcWaiter(b, u, 0x438 + (ulong)s * 0x10, null, 4192488);
            var ls = b.AddThread(lsm, 0x1b64 + (ulong)s * 0x10);
            b.SetWait(ls, "UserRequest", TimeSpan.Zero, true, Event(b, 0).Address);
            ls.Set("Tcb.WaitTime", 4192488u);
            Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), uw, Port(b, u), pS, ls.Address, 0x600u + (uint)s, 0x2844F6u + (uint)s, 0xD, 0x58, 0x80);
            r.Facts[$"winlogon{s}Thread"] = wt.Address;
        }

        // A deadlock: spoolsv 6a0.6a4 <-> svchost 700.704, each the other's server thread.
        var spool = b.AddProcess("spoolsv.exe", 0x6a0);
        var svc7 = b.AddProcess("svchost.exe", 0x700);
        var dA = AlpcWaiter(b, spool, 0x6a4, null, 4000000);
        var dB = AlpcWaiter(b, svc7, 0x704, null, 4000100);
        var pA = Port(b, spool); var pB = Port(b, svc7);
        Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), dA, Port(b, spool), pB, dB.Address, 0x700, 1, 1, 0x20, 0x48);
        Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), dB, Port(b, svc7), pA, dA.Address, 0x701, 2, 1, 0x20, 0x48);

        // A server that does not receive: taskhostw 7a0.7a4 -> SearchIndexer port, no server thread, 5 queued.
        var th = b.AddProcess("taskhostw.exe", 0x7a0);
        var si = b.AddProcess("SearchIndexer.exe", 0x7c0);
        var nW = AlpcWaiter(b, th, 0x7a4, null, 4100000);
        var sip = Port(b, si);
        sip.Set("MainQueueLength", 5u);
        Message(b, b.Alloc(b.SizeOf("_KALPC_MESSAGE"), PoolRegion.Paged), nW, Port(b, th), sip, 0, 0x800, 3, 1, 0x10, 0x38);
        b.AddThread(si, 0x7c4);

        // The second half of the seed: the starved Delayed WorkQueue (where the build's symbols have the work-queue types).
        // The scattered variant is the ALPC half alone (threads, ports, messages), so its bench rows compare the ALPC walk
        // like for like, not the 18,023-item queue both sides would spend most of their packets on.
        bool workQueues = SeedWorkQueues.Supports(build) && options.Variant != "scattered";
        if (workQueues) SeedWorkQueues.Add(b, r, system, options.Variant);

        // Scale: idle threads in filler processes.
        int filler = options.Variant == "10k" ? 10_000 : options.Scale > 1 ? 50 * options.Scale : 0;
        for (int i = 0; i < filler; i += 100)
        {
            var p = b.AddProcess("svchost.exe", 0x2000 + (ulong)i);
            for (int k = 0; k < 100 && i + k < filler; k++)
            {
                var t = b.AddThread(p, 0x4000 + (ulong)(i + k) * 4);
                t.SetEnum("Tcb.State", "Waiting", "_KTHREAD_STATE").SetEnum("Tcb.WaitReason", "WrQueue", "_KWAIT_REASON").Set("Tcb.WaitTime", 4194000u).Set("Tcb.WaitMode", 1UL);
            }
        }

        r.Facts["winlogonThread"] = tW.Address;
        r.Facts["logonUiWaiter"] = tL2.Address;
        r.Facts["lsmWaiter"] = tS2.Address;
        r.Facts["lsmTimerWaiter"] = tS3.Address;
        r.Facts["blockerThread"] = tV1.Address;
        r.Facts["irp"] = irp.Address;
        r.Facts["msg3"] = Msg3;
        r.Facts["cycleA"] = dA.Address;
        r.Facts["cycleB"] = dB.Address;
        r.Facts["noServerWaiter"] = nW.Address;
        r.Facts["noServerPort"] = sip.Address;
        r.Facts["lsmProcess"] = lsm.Address;
        r.Facts["logonUiEvent"] = ev1.Address;
        r.Facts["idleThread"] = tL1.Address;
        r.Commands.Add($"!alpcchain {WinlogonThread:x}");
        r.Commands.Add("!alpcchain -all");
        if (workQueues) r.Commands.Add("!workqueue");
        return r;
    }

    private static StructWriter AlpcWaiter(KernelScenarioBuilder b, StructWriter process, ulong tid, ulong? at, uint waitTick)
    {
        var t = b.AddThread(process, tid, at);
        var sem = t.Sub("AlpcWaitSemaphore");
        sem.Set("Header.Type", 5UL).Set("Limit", 1L);
        b.InitializeListHead(sem.AddressOf("Header.WaitListHead"));
        b.SetWait(t, "WrLpcReply", TimeSpan.Zero, true, sem.Address);
        t.Set("Tcb.WaitTime", waitTick);
        return t;
    }

    private static StructWriter Event(KernelScenarioBuilder b, int type, ulong? at = null)
    {
        var e = b.New("_KEVENT", at);
        e.Set("Header.Type", (ulong)type);
        b.InitializeListHead(e.AddressOf("Header.WaitListHead"));
        return e;
    }

    private static StructWriter Port(KernelScenarioBuilder b, StructWriter owner, ulong? at = null)
    {
        var p = b.NewObject("_ALPC_PORT", at);
        p.Set("OwnerProcess", owner.Address);
        foreach (var q in new[] { "MainQueue", "PendingQueue", "LargeMessageQueue", "WaitQueue" }) if (p.Has(q)) p.ListHead(q);
        return p;
    }

    private static void Message(KernelScenarioBuilder b, ulong at, StructWriter waiter, StructWriter ownerPort, StructWriter queuePort, ulong serverThread,
        uint id, uint callback, int seq, int dataLength, int totalLength)
    {
        var m = b.Memory.IsMapped(at) ? b.At("_KALPC_MESSAGE", at) : b.New("_KALPC_MESSAGE", at);
        m.Set("PortMessage.MessageId", id).Set("PortMessage.CallbackId", callback).Set("SequenceNo", seq)
         .Set("PortMessage.u1.s1.DataLength", (ulong)dataLength).Set("PortMessage.u1.s1.TotalLength", (ulong)totalLength)
         .Set("PortMessage.u2.s2.Type", 1UL)
         .Set("PortMessage.ClientId.UniqueProcess", b.ReadPointer(waiter.AddressOf("Cid.UniqueProcess")))
         .Set("PortMessage.ClientId.UniqueThread", b.ReadPointer(waiter.AddressOf("Cid.UniqueThread")))
         .Set("OwnerPort", ownerPort.Address).Set("WaitingThread", waiter.Address).Set("PortQueue", queuePort.Address)
         .Set("u1.s1.QueueType", 2UL).Set("ServerThread", serverThread);
        b.InitializeListHead(m.AddressOf("Entry"));
        waiter.Set("AlpcMessage", at).Set("AlpcMessageId", (ulong)id);
        if (serverThread == 0)
            b.InsertTailList(queuePort.AddressOf("MainQueue"), m.AddressOf("Entry"));
    }
}
