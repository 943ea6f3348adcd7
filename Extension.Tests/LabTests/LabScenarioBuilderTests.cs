using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

[TestFixture]
public class LabScenarioBuilderTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;

    [TestCaseSource(nameof(Builds))]
    public void Baseline_scenario_reads_back_through_KernelReader(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var s = ScenarioCatalog.Build("baseline-kernel", build);
        var target = s.CreateTarget();
        var stats = new ReadStats();
        var reader = new KernelReader(target, stats);

        // Process list: names and PIDs via the ISF offsets.
        ulong head = reader.Types.Symbol("nt!PsActiveProcessHead");
        var walk = new ListWalkResult();
        var names = new List<string>();
        foreach (var link in reader.WalkList(head, walk))
        {
            var p = reader.Read("nt", "_EPROCESS", reader.ContainingRecord(link, "nt", "_EPROCESS", "ActiveProcessLinks"));
            names.Add(p.Ascii("ImageFileName") + ":" + p.UInt("UniqueProcessId"));
        }
        Assert.That(walk.IsComplete, walk.Describe("PsActiveProcessHead"));
        Assert.That(names, Has.Count.EqualTo((int)s.Fact("processCount")));
        Assert.That(names[0], Is.EqualTo("System:4"));
        Assert.That(names, Does.Contain("winlogon.exe:600"));

        // Blocked thread: wait reason, state, wait time, IRP -> file name, driver name.
        var t = reader.Read("nt", "_ETHREAD", s.Fact("blockedThread"));
        Assert.That(t.U8("Tcb.State"), Is.EqualTo(5), "Waiting");
        Assert.That(t.U8("Tcb.WaitReason"), Is.EqualTo(0), "Executive");
        Assert.That(t.UInt("Cid.UniqueThread"), Is.EqualTo(0x2d4));
        Assert.That(t.Ptr("Tcb.ApcState.Process"), Is.EqualTo(s.Fact("winlogon")));
        ulong ticksNow = s.Builder.TickCount;
        Assert.That((ticksNow - t.U32("Tcb.WaitTime")) * 156250UL / 10_000_000UL, Is.EqualTo((ulong)new TimeSpan(4, 21, 40).TotalSeconds));
        var irpWalk = new ListWalkResult();
        var irps = reader.WalkList(t.AddressOf("IrpList"), irpWalk).ToList();
        Assert.That(irps, Has.Count.EqualTo(1));
        var irp = reader.Read("nt", "_IRP", reader.ContainingRecord(irps[0], "nt", "_IRP", "ThreadListEntry"));
        Assert.That(irp.Address, Is.EqualTo(s.Fact("blockedIrp")));
        var sl = reader.Read("nt", "_IO_STACK_LOCATION", irp.Ptr("Tail.Overlay.CurrentStackLocation"));
        var file = reader.Read("nt", "_FILE_OBJECT", sl.Ptr("FileObject"));
        Assert.That(reader.ReadUnicodeString(file.AddressOf("FileName")), Is.EqualTo(@"\DC005.contoso.com\PIPE\lsarpc"));
        var dev = reader.Read("nt", "_DEVICE_OBJECT", sl.Ptr("DeviceObject"));
        var drv = reader.Read("nt", "_DRIVER_OBJECT", dev.Ptr("DriverObject"));
        Assert.That(reader.ReadUnicodeString(drv.AddressOf("DriverName")), Is.EqualTo(@"\FileSystem\Mup"));

        // Modules, processors, shared user data.
        var modWalk = new ListWalkResult();
        var mods = reader.WalkList(reader.Types.Symbol("nt!PsLoadedModuleList"), modWalk)
            .Select(l => reader.ReadUnicodeString(l + reader.Types.FieldOffset("nt", s.Builder.LdrEntryType, "BaseDllName"))).ToList();
        Assert.That(mods, Is.EqualTo(new[] { "ntoskrnl.exe", "Ntfs.sys", "mup.sys", "ndis.sys", "fltmgr.sys" }));
        ulong kpb = reader.Types.Symbol("nt!KiProcessorBlock");
        for (int i = 0; i < 4; i++)
        {
            var prcb = reader.Read("nt", "_KPRCB", reader.ReadPointer(kpb + (ulong)i * 8));
            Assert.That(prcb.U32("Number"), Is.EqualTo((uint)i));
        }
        var ksd = reader.Read("nt", "_KUSER_SHARED_DATA", KernelScenarioBuilder.SharedUserData);
        Assert.That(ksd.U32("TickCount.LowPart"), Is.EqualTo((uint)ticksNow));
        Assert.That(DateTime.FromFileTimeUtc((long)(ksd.U32("SystemTime.LowPart") | ((ulong)ksd.U32("SystemTime.High1Time") << 32))),
            Is.EqualTo(target.Info.SystemTimeUtc));
        Assert.That(stats.RoundTrips, Is.GreaterThan(0));
        Assert.That(target.ReadCalls, Is.EqualTo(stats.RoundTrips - stats.Searches));
    }
}
