using NtSleuth.Commands.Target;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// A small generic kernel that works on every lab build: System/smss/csrss/winlogon/lsass/svchost processes with threads
/// (one of them waiting WrLpcReply for 4:21:40 with an IRP to \FileSystem\Mup), ntoskrnl + a few drivers in
/// PsLoadedModuleList, 4 CPUs with KPRCBs, the clock. Scale multiplies the svchost processes and their threads.
/// </summary>
public sealed class BaselineKernelScenario : IScenario
{
    public string Name => "baseline-kernel";
    public string Seed => "";

    public bool Supports(LabBuild build) => true;

    public ScenarioResult Build(LabBuild build, ScenarioOptions options)
    {
        var b = new KernelScenarioBuilder(build);
        b.SetClock(new DateTime(2024, 3, 14, 9, 26, 53, DateTimeKind.Utc), TimeSpan.FromHours(27.5));
        var system = b.AddProcess("System", 4);
        var sysThread = b.AddThread(system, 8);
        b.AddProcessors(4);
        b.EventProcessor = 0;
        b.Prcb(0).Set("CurrentThread", sysThread.Address);

        var ntfs = b.AddLoadedModule("Ntfs.sys", 0x2a0000);
        var mup = b.AddLoadedModule("mup.sys", 0x25000);
        b.AddLoadedModule("ndis.sys", 0x150000);
        b.AddLoadedModule("fltmgr.sys", 0x80000);
        b.AddSymbol("mup!MupFsdIrpPassThrough", mup.Address == 0 ? 0 : b.ReadPointer(mup.AddressOf("DllBase")) + 0x2140);

        var mupDrv = b.AddDriver(@"\FileSystem\Mup");
        var mupDev = b.AddDevice(mupDrv, deviceType: 0x14);

        int scale = Math.Max(1, options.Scale);
        var names = new List<(string, ulong)> { ("smss.exe", 0x164), ("csrss.exe", 0x1f0), ("winlogon.exe", 0x258), ("lsass.exe", 0x2a4) };
        for (int i = 0; i < 2 * scale; i++) names.Add(("svchost.exe", 0x300 + (ulong)i * 4));
        ulong tid = 0x1000;
        StructWriter? winlogon = null;
        foreach (var (name, pid) in names)
        {
            var p = b.AddProcess(name, pid);
            if (name == "winlogon.exe") winlogon = p;
            for (int t = 0; t < 3; t++)
            {
                var th = b.AddThread(p, tid += 4);
                if (t > 0) b.SetWait(th, "UserRequest", TimeSpan.FromSeconds(30 * t), userMode: true);
            }
        }

        // A thread blocked on an IRP to \FileSystem\Mup for 4:21:40.
        var blocked = b.AddThread(winlogon!, 0x2d4);
        var ev = b.New("_KEVENT");
        ev.Set("Header.Type", 1UL);
        b.InitializeListHead(ev.AddressOf("Header.WaitListHead"));
        b.SetWait(blocked, "Executive", new TimeSpan(4, 21, 40), false, ev.Address);
        var file = b.AddFile(mupDev, @"\DC005.contoso.com\PIPE\lsarpc");
        var irp = b.AddIrp(blocked, 2, fileObject: file);
        b.IrpStack(irp, 1).Set("MajorFunction", 3UL).Set("DeviceObject", mupDev.Address).Set("FileObject", file.Address);
        b.CurrentThread = sysThread.Address;
        b.CurrentProcess = system.Address;

        var r = new ScenarioResult(Name, b, options);
        r.Facts["system"] = system.Address;
        r.Facts["winlogon"] = winlogon!.Address;
        r.Facts["blockedThread"] = blocked.Address;
        r.Facts["blockedIrp"] = irp.Address;
        r.Facts["mupDriver"] = mupDrv.Address;
        r.Facts["file"] = file.Address;
        r.Facts["processCount"] = (ulong)names.Count + 1;
        r.Facts["ntfsEntry"] = ntfs.Address;
        // Our commands on a kernel with no problem: the DPC-pressure view of every CPU, and !alpcchain on a thread that
        // waits for an IRP rather than an ALPC reply (it says what the thread is doing instead).
        r.Commands.Add("!dpcblame");
        r.Commands.Add($"!alpcchain {blocked.Address:x}");
        return r;
    }
}
