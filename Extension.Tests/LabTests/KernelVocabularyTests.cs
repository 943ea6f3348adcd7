using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>
/// Round trip of the commands' kernel vocabulary (Commands/Kernel) on every lab build: the lab writes processes,
/// threads, waits, IRPs, drivers, modules, processors (KiProcessorBlock, DPC queues), call instructions before return addresses and the
/// clock (baseline-kernel scenario); Kernel/ reads them back.
/// </summary>
[TestFixture]
public class KernelVocabularyTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;

    [TestCaseSource(nameof(Builds))]
    public void Baseline_kernel_reads_back_through_the_Kernel_types(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var s = ScenarioCatalog.Build("baseline-kernel", build);
        // A service key for \FileSystem\Mup (DRIVER_OBJECT.DriverExtension->ServiceKeyName), written by the lab.
        var b = s.Builder;
        var ext = b.New("_DRIVER_EXTENSION").Set("DriverObject", s.Fact("mupDriver")).Unicode("ServiceKeyName", "Mup");
        b.WritePointer(s.Fact("mupDriver") + b.OffsetOf("_DRIVER_OBJECT", "DriverExtension"), ext.Address);
        var r = new KernelReader(s.CreateTarget(), new ReadStats());
        var notes = new List<string>();

        // Processes: the active process list, names, pids; a thread is not a process.
        var procs = new KernelProcesses(r, notes);
        var walk = new ListWalkResult();
        var all = procs.All(walk).Select(a => procs.Read(a)!).ToList();
        Assert.That(walk.IsComplete, walk.Describe("PsActiveProcessHead"));
        Assert.That(all, Has.Count.EqualTo((int)s.Fact("processCount")));
        Assert.That(all[0].Image, Is.EqualTo("System"));
        Assert.That(all[0].Pid, Is.EqualTo(4UL));
        Assert.That(procs.Name(s.Fact("winlogon")), Is.EqualTo(new KernelProcess(s.Fact("winlogon"), "winlogon.exe", 0x258)));
        Assert.That(procs.Read(s.Fact("blockedThread")), Is.Null, "an _ETHREAD is not a process object");
        Assert.That(procs.Name(0).Image, Is.EqualTo("?"));

        // Threads of winlogon: 3 + the blocked one.
        var tw = new ListWalkResult();
        var threads = procs.Threads(s.Fact("winlogon"), tw, out string image).ToList();
        Assert.That(image, Is.EqualTo("winlogon.exe"));
        Assert.That(tw.IsComplete && threads.Count == 4, tw.Describe("winlogon threads"));
        Assert.That(threads[^1], Is.EqualTo(s.Fact("blockedThread")));

        // The blocked thread: waiting Executive (KernelMode) for 4:21:40 on an event, one IRP to \FileSystem\Mup.
        var kt = new KernelThreads(r);
        var t = kt.Read(s.Fact("blockedThread"), out var notThread)!;
        Assert.That(notThread, Is.Null);
        Assert.That((t.State, t.IsWaiting, t.WaitReason, t.WaitMode, t.Tid, t.Process, t.Cid),
            Is.EqualTo(("Waiting", true, "Executive", "KernelMode", 0x2d4UL, s.Fact("winlogon"), "258.2d4")));
        Assert.That(t.HasIrps, Is.True);
        Assert.That(kt.Read(s.Fact("winlogon"), out notThread), Is.Null);
        Assert.That(notThread, Does.Contain("is not a thread: its dispatcher header type is 3 (ProcessObject)"));
        var running = kt.Read(threads[0], out _)!;
        Assert.That((running.State, running.IsWaiting, running.HasIrps), Is.EqualTo(("Running", false, false)));
        var userWait = kt.Read(threads[1], out _)!;
        Assert.That((userWait.WaitReason, userWait.WaitMode), Is.EqualTo(("UserRequest", "UserMode")));

        var clock = KernelClock.Read(r, notes);
        Assert.That(clock.IsKnown, string.Join("; ", notes));
        Assert.That(clock.TickIncrement, Is.EqualTo(b.TimeIncrement));
        Assert.That(clock.SecondsSince(t.WaitTick), Is.EqualTo(new TimeSpan(4, 21, 40).TotalSeconds).Within(0.02));
        Assert.That(clock.SecondsSince(userWait.WaitTick), Is.EqualTo(30).Within(0.02));

        var waits = WaitBlocks.Objects(r, t);
        Assert.That(waits, Has.Count.EqualTo(1));
        Assert.That((waits[0].TypeCode, waits[0].Type), Is.EqualTo((1, "SynchronizationEvent")));
        Assert.That(WaitBlocks.Objects(r, running), Is.Empty);

        var drivers = new DriverNames(r);
        var iw = new ListWalkResult();
        var irps = new Irps(r, drivers).OfThread(t, iw);
        Assert.That(iw.IsComplete && irps.Count == 1, iw.Describe("IRP list"));
        var irp = irps[0];
        Assert.That((irp.Address, irp.MajorFunction, irp.Driver, irp.FileName, irp.FileObject, irp.Note),
            Is.EqualTo((s.Fact("blockedIrp"), 3, @"\FileSystem\Mup", @"\DC005.contoso.com\PIPE\lsarpc", s.Fact("file"), (string?)null)));
        Assert.That(drivers.DriverOf(irp.Device), Is.EqualTo(s.Fact("mupDriver")));
        Assert.That(drivers.ServiceKey(s.Fact("mupDriver")), Is.EqualTo("Mup"));
        Assert.That(DriverNames.ShortName(drivers.Name(s.Fact("mupDriver"))!), Is.EqualTo("Mup"));

        // Modules and symbols: mup!MupFsdIrpPassThrough at mup + 0x2140.
        var sym = new Symbolizer(r.Target);
        var mup = KernelModules.Find(sym.Modules, "mup")!;
        Assert.That(mup, Is.Not.Null);
        Assert.That(KernelModules.IsLoaded(r.Target, "fltmgr") && !KernelModules.IsLoaded(r.Target, "dhcpcore"));
        Assert.That(sym.ModuleOf(mup.Base + 0x2150), Is.EqualTo(mup));
        Assert.That(sym.Routine(mup.Base + 0x2150), Is.EqualTo("mup!MupFsdIrpPassThrough+0x10"));
        Assert.That(sym.Describe(mup.Base + 0x2140), Is.EqualTo("mup!MupFsdIrpPassThrough"));
        Assert.That(sym.ModuleOffset(mup.Base + 0x10), Is.EqualTo("mup+0x10"));
        Assert.That(sym.Describe(0x1000), Is.Null);

        // A stack with two return addresses into mup among noise: the scan finds both, innermost first.
        ulong stack = b.Alloc(0x100);
        b.WritePointer(stack + 0x18, mup.Base + 0x2150);
        b.WritePointer(stack + 0x20, 0x1234);
        b.WritePointer(stack + 0x48, mup.Base + 0x3000);
        var r2 = new KernelReader(s.CreateTarget());
        var slots = ReturnAddressStackScan.Scan(r2, new Symbolizer(r2.Target), stack, 0x100).ToList();
        Assert.That(slots, Is.EqualTo(new[] { new StackSlot(stack + 0x18, mup.Base + 0x2150), new StackSlot(stack + 0x48, mup.Base + 0x3000) }));

        Assert.That(Processors.Count(r), Is.EqualTo(4));
        // nt!KiProcessorBlock as the lab wrote it: every PRCB, in one read.
        var r3 = new KernelReader(s.CreateTarget(), new ReadStats());
        var block = Processors.Block(r3);
        Assert.That(block.Prcbs, Is.EqualTo(Enumerable.Range(0, 4).Select(i => b.Prcb(i).Address)));
        Assert.That((block.Readable, block.Note), Is.EqualTo((4, (string?)null)));
        Assert.That(r3.PointerAt(BitConverter.GetBytes(b.Prcb(1).Address), 0), Is.EqualTo(b.Prcb(1).Address));

        // DPC queues: two KDPCs the lab queues on CPU 2 (8.1+: _KDPC_LIST; 7: LIST_ENTRY) read back in order.
        var d1 = b.NewDpc(mup.Base + 0x2140, 0x11);
        var d2 = b.NewDpc(mup.Base + 0x3000, 0x22);
        b.QueueDpc(2, d1);
        b.QueueDpc(2, d2);
        var r5 = new KernelReader(s.CreateTarget(), new ReadStats());
        var dpcs = new DpcQueues(r5);
        ulong prcb2 = b.Prcb(2).Address;
        var prcbImage = r5.Memory.ReadExact(prcb2, (int)dpcs.DataEnd)!;
        var q2 = dpcs.Queue(prcbImage, prcb2, 0);
        Assert.That((q2.Queue, q2.Depth, q2.IsEmpty), Is.EqualTo((0, 2, false)));
        var qwalk = new ListWalkResult();
        var queued = dpcs.Walk(q2, qwalk, 10).ToList();
        Assert.That(qwalk.IsComplete, qwalk.Describe("CPU 2 DPC queue"));
        Assert.That(queued, Is.EqualTo(new[] { new QueuedKdpc(d1.Address, mup.Base + 0x2140, "Medium"), new QueuedKdpc(d2.Address, mup.Base + 0x3000, "Medium") }));
        var q0 = dpcs.Queue(r5.Memory.ReadExact(b.Prcb(0).Address, (int)dpcs.DataEnd)!, b.Prcb(0).Address, 0);
        Assert.That((q0.Depth, q0.IsEmpty), Is.EqualTo((0, q0.First == 0)), "CPU 0's queue is empty");
        Assert.That(dpcs.Walk(q0, new ListWalkResult(), 10), Is.Empty);
        Assert.That(dpcs.Read(0x1000).Unreadable, Is.True);

        // Names inside and outside modules; the kernel's own modules by short name.
        Assert.That(sym.DescribeAny(mup.Base + 0x2150), Is.EqualTo("mup!MupFsdIrpPassThrough+0x10"));
        Assert.That(sym.DescribeAny(mup.Base + 0x10), Is.EqualTo("mup+0x10"));
        Assert.That(sym.DescribeAny(0x1000), Is.Null);
        Assert.That((sym.ModulesError, KernelModules.IsKernel("nt"), KernelModules.IsKernel("ntkrnlmp"), KernelModules.IsKernel("HAL"), KernelModules.IsKernel("mup")),
            Is.EqualTo(((string?)null, true, true, true, false)));

        // Return addresses after calls the lab writes (decoded, KernelStackScan.FollowsCall), and values that follow none.
        ulong code = b.Alloc(0x100);
        byte[][] calls = [[0xe8, 0x10, 0x20, 0, 0], [0x48, 0xff, 0x15, 0x31, 0x2a, 0, 0], [0xff, 0x54, 0x24, 0x08], [0x41, 0xff, 0x90, 0x38, 0x01, 0, 0]];
        var rets = new List<ulong>();
        ulong at = code + 0x10;
        foreach (var c in calls) { b.Memory.Write(at, c); at += (ulong)c.Length; rets.Add(at); }
        b.Memory.Write(at, new byte[] { 0x48, 0x8b, 0xc8, 0xff, 0xe0 }); // mov rcx, rax; jmp rax
        var r4 = new KernelReader(s.CreateTarget(), new ReadStats());
        Assert.That(rets.Select(x => KernelStackScan.FollowsCall(r4.Memory, x)), Is.All.True);
        Assert.That(KernelStackScan.FollowsCall(r4.Memory, at + 3) || KernelStackScan.FollowsCall(r4.Memory, at + 5), Is.False);
    }
}
