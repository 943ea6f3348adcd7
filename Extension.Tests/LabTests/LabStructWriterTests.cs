using NtSleuth.Commands.Model;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

[TestFixture]
public class LabStructWriterTests
{
    private static IEnumerable<string> Builds => LabBuilds.Keys;

    [TestCaseSource(nameof(Builds))]
    public void Fields_land_at_the_isf_offsets(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var b = new KernelScenarioBuilder(build);
        var isf = build.Isf;
        var p = b.New("_EPROCESS");
        p.Set("UniqueProcessId", 0x1234UL).Ascii("ImageFileName", "averyveryverylongname.exe");
        ulong pidOff = (ulong)isf.GetUserType("_EPROCESS").Fields.Single(f => f.Name == "UniqueProcessId").Offset;
        ulong nameOff = (ulong)isf.GetUserType("_EPROCESS").Fields.Single(f => f.Name == "ImageFileName").Offset;
        Assert.That(b.Memory.ReadU64(p.Address + pidOff), Is.EqualTo(0x1234UL));
        var name = new byte[15];
        b.Memory.Read(p.Address + nameOff, name);
        Assert.That(System.Text.Encoding.ASCII.GetString(name), Is.EqualTo("averyveryverylo"), "truncated to the 15-byte array");

        // Bitfields: _MMPTE_HARDWARE exists on every build.
        var pte = b.New("_MMPTE_HARDWARE");
        pte.Set("Valid", 1UL).Set("Dirty", 1UL).Set("PageFrameNumber", 0xabcdeUL).Set("NoExecute", 1UL);
        var v = new KernelReader(b.CreateTarget()).Read("nt", "_MMPTE_HARDWARE", pte.Address);
        Assert.That(v.UInt("Valid"), Is.EqualTo(1));
        Assert.That(v.UInt("Dirty"), Is.EqualTo(1));
        Assert.That(v.UInt("PageFrameNumber"), Is.EqualTo(0xabcdeUL));
        Assert.That(v.UInt("NoExecute"), Is.EqualTo(1));
        Assert.That(b.Memory.ReadU64(pte.Address), Is.EqualTo(0x80000000_abcde000UL | 1UL | (1UL << 6)));
        Assert.That(() => pte.Set("Valid", 2UL), Throws.TypeOf<ScenarioLayoutException>().With.Message.Contains("does not fit in 1 bits"));

        // Enums by constant name.
        var t = b.New("_KTHREAD");
        t.SetEnum("WaitReason", "WrLpcReply", "_KWAIT_REASON").SetEnum("State", "Waiting", "_KTHREAD_STATE");
        var tv = new KernelReader(b.CreateTarget()).Read("nt", "_KTHREAD", t.Address);
        Assert.That(tv.U8("WaitReason"), Is.EqualTo(17));
        Assert.That(tv.U8("State"), Is.EqualTo(5));
    }

    [TestCaseSource(nameof(Builds))]
    public void Missing_fields_are_named_and_Has_tells(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var b = new KernelScenarioBuilder(build);
        bool win11 = build.BuildNumber >= 22000;
        Assert.That(b.Has("_KPRCB", "DpcWatchdogPeriod"), Is.EqualTo(!win11));
        Assert.That(b.Has("_KDPC_DATA", "DpcListHead"), Is.EqualTo(build.BuildNumber == 7601));
        Assert.That(b.Has("_KDPC_DATA", "DpcList"), Is.EqualTo(build.BuildNumber != 7601));
        var prcb = b.New("_KPRCB");
        if (win11)
            Assert.That(() => prcb.Set("DpcWatchdogPeriod", 7680UL), Throws.TypeOf<ScenarioLayoutException>()
                .With.Message.Contains("nt!_KPRCB has no field 'DpcWatchdogPeriod'").And.Message.Contains(build.Label));
        Assert.That(() => b.New("_NO_SUCH_TYPE"), Throws.TypeOf<ScenarioLayoutException>().With.Message.Contains("nt!_NO_SUCH_TYPE"));
    }

    [TestCaseSource(nameof(Builds))]
    public void Dpc_queue_and_lists_follow_the_build_layout(string key)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var b = new KernelScenarioBuilder(build);
        b.AddProcessors(2);
        var dpcs = Enumerable.Range(0, 3).Select(i => b.NewDpc(b.KernelBase + 0x1000 + (ulong)i)).ToList();
        foreach (var d in dpcs) b.QueueDpc(1, d);
        var r = new KernelReader(b.CreateTarget());
        var prcb = r.Read("nt", "_KPRCB", b.Prcb(1).Address);
        ulong dd = prcb.AddressOf("DpcData");
        var walk = new ListWalkResult();
        List<ulong> links = build.BuildNumber == 7601
            ? r.WalkList(dd + r.Types.FieldOffset("nt", "_KDPC_DATA", "DpcListHead"), walk).ToList()
            : r.WalkSingle(r.ReadPointer(dd + r.Types.FieldOffset("nt", "_KDPC_DATA", "DpcList.ListHead")), 0, walk).ToList();
        Assert.That(walk.IsComplete, walk.Describe("DPC queue"));
        Assert.That(links.Select(l => r.ContainingRecord(l, "nt", "_KDPC", "DpcListEntry")), Is.EqualTo(dpcs.Select(d => d.Address)));
        Assert.That(r.Read("nt", "_KDPC_DATA", dd).UInt("DpcQueueDepth"), Is.EqualTo(3));
    }

    [Test]
    public void Evaluate_and_search()
    {
        var build = LabTestSupport.BuildOrIgnore("win7");
        var b = new KernelScenarioBuilder(build);
        ulong thread = b.New("_ETHREAD", at: 0xfffffa80_73d3d770).Address;
        b.AddSymbol("ECHO!EchoEvtTimerFunc", b.PlaceImage("ECHO.sys", 0x8000) + 0x1230);
        b.WriteAscii(b.Modules.Single(m => m.Name == "ECHO").Base + 0x2000, "Leak");
        b.WritePointer(b.Symbol("PsActiveProcessHead"), thread);
        var t = b.CreateTarget();
        ulong psh = b.Symbol("PsActiveProcessHead");
        foreach (var (expr, want) in new (string, ulong)[]
        {
            ("fffffa80`73d3d770", thread), ("0xfffffa8073d3d770", thread), ("FFFFFA8073D3D770", thread),
            ("nt!PsActiveProcessHead", psh), ("nt!PsActiveProcessHead+0x10", psh + 0x10), ("nt!PsActiveProcessHead - 8", psh - 8),
            ("poi(nt!PsActiveProcessHead)", thread), ("ECHO!EchoEvtTimerFunc", b.Symbol("ECHO!EchoEvtTimerFunc")), ("0n16", 16),
        })
        {
            Assert.That(t.TryEvaluate(expr, out var v, out var err), Is.True, $"{expr}: {err}");
            Assert.That(v, Is.EqualTo(want), expr);
        }
        Assert.That(t.TryEvaluate("nt!NoSuchSymbol", out _, out var e2), Is.False);
        Assert.That(e2, Does.Contain("NoSuchSymbol"));
        Assert.That(t.Symbols.GetNameByAddress(b.Symbol("ECHO!EchoEvtTimerFunc") + 0x2a, out var disp), Is.EqualTo("ECHO!EchoEvtTimerFunc"));
        Assert.That(disp, Is.EqualTo(0x2aUL));
        var echo = t.GetModules().Single(m => m.Name == "ECHO");
        Assert.That(t.SearchVirtual(echo.Base, echo.Size, "Leak"u8), Is.EqualTo(echo.Base + 0x2000));
        Assert.That(t.SearchVirtual(echo.Base, 0x1000, "Leak"u8), Is.Null);
        Assert.That(t.SearchCalls, Is.EqualTo(2));
    }
}
