using NtSleuth.Commands.Output;
using NtSleuth.Commands.Model;
using NtSleuth.Lab;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>Every fault kind yields the right partial result / ListWalkResult note through KernelReader.</summary>
[TestFixture]
public class LabFaultInjectionTests
{
    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var b in new[] { "win7", "win10" })
            foreach (var k in Enum.GetValues<FaultKind>())
                yield return new TestCaseData(b, k);
    }

    [TestCaseSource(nameof(Cases))]
    public void Fault_produces_precise_partial_result(string key, FaultKind kind)
    {
        var build = LabTestSupport.BuildOrIgnore(key);
        var s = ScenarioCatalog.Build("baseline-kernel", build, new ScenarioOptions { Scale = 2 });
        var b = s.Builder;
        ulong head = b.Symbol("PsActiveProcessHead");
        var entries = b.ListEntries(head);
        Assert.That(entries, Has.Count.EqualTo((int)s.Fact("processCount")));
        var target = s.CreateTarget();
        var reader = new KernelReader(target);
        ulong linkOff = b.OffsetOf("_EPROCESS", "ActiveProcessLinks");
        ulong eproc2 = entries[2] - linkOff;
        int expectedCount = -1; ListStop expectedStop = ListStop.Complete; ulong expectedAt = 0;

        switch (kind)
        {
            case FaultKind.PagedOut:
            {
                ulong page = SparseMemory.PageOf(entries[3]);
                int k = entries.FindIndex(e => SparseMemory.PageOf(e) == page || SparseMemory.PageOf(e + 7) == page);
                target.Faults.PageOut(entries[3]);
                expectedCount = k + 1; expectedStop = ListStop.Unreadable; expectedAt = entries[k];
                break;
            }
            case FaultKind.Truncated:
            {
                ulong size = b.SizeOf("_EPROCESS");
                ulong nameOff = b.OffsetOf("_EPROCESS", "ImageFileName");
                target.Faults.Truncate(eproc2, nameOff, size);
                var v = reader.Read("nt", "_EPROCESS", eproc2);
                Assert.That(v.Length, Is.EqualTo((int)nameOff), "partial read stops at the truncation");
                Assert.That(v.UInt("UniqueProcessId"), Is.Not.Zero, "fields before the cut are served");
                Assert.That(v.TryUInt("ImageFileName"), Is.Null);
                var ex = Assert.Throws<TargetReadException>(() => v.Ascii("ImageFileName"))!;
                Assert.That(ex.Address, Is.EqualTo(eproc2 + nameOff));
                Assert.That(ex.Message, Does.Contain("ImageFileName").And.Contain("was not readable"));
                return;
            }
            case FaultKind.ListCycle:
                target.Faults.ListCycle(entries[4], entries[1]);
                expectedCount = 5; expectedStop = ListStop.Cycle; expectedAt = entries[1];
                break;
            case FaultKind.ListWildPointer:
                target.Faults.ListWildPointer(entries[2]);
                expectedCount = 4; expectedStop = ListStop.Unreadable; expectedAt = FaultInjector.WildAddress;
                break;
            case FaultKind.ListSelfLoop:
                target.Faults.ListSelfLoop(entries[2]);
                expectedCount = 3; expectedStop = ListStop.Cycle; expectedAt = entries[2];
                break;
            case FaultKind.ListNull:
                target.Faults.ListNull(entries[2]);
                expectedCount = 3; expectedStop = ListStop.NullLink; expectedAt = entries[2];
                break;
            case FaultKind.Garbage:
            {
                ulong pidAddr = eproc2 + b.OffsetOf("_EPROCESS", "UniqueProcessId");
                target.Faults.Garbage(pidAddr, 8, seed: 42);
                var expected = new byte[8]; new Random(42).NextBytes(expected);
                var v = reader.Read("nt", "_EPROCESS", eproc2);
                Assert.That(v.UInt("UniqueProcessId"), Is.EqualTo(BitConverter.ToUInt64(expected)));
                expectedCount = entries.Count; expectedStop = ListStop.Complete; expectedAt = entries[^1];
                reader = new KernelReader(target);
                break;
            }
            case FaultKind.Interrupt:
                target.Faults.InterruptAfter(3);
                expectedStop = ListStop.Interrupted;
                break;
        }

        var walk = new ListWalkResult();
        var got = reader.WalkList(head, walk).ToList();
        Assert.That(walk.StopReason, Is.EqualTo(expectedStop), walk.Describe("PsActiveProcessHead"));
        if (kind == FaultKind.Interrupt)
        {
            Assert.That(walk.Count, Is.LessThan(entries.Count));
            Assert.That(walk.Describe("PsActiveProcessHead"), Does.Contain("interrupted by user"));
            return;
        }
        Assert.That(walk.Count, Is.EqualTo(expectedCount));
        Assert.That(walk.StopAddress, Is.EqualTo(expectedAt));
        string note = walk.Describe("PsActiveProcessHead");
        Assert.That(note, Does.Contain(expectedStop switch
        {
            ListStop.Unreadable => "not readable", ListStop.Cycle => "cycle detected", ListStop.NullLink => "NULL link",
            _ => $"{entries.Count} entries",
        }));
        if (expectedStop != ListStop.Complete) Assert.That(note, Does.Contain(Fmt.Addr(expectedAt)));
    }

    [Test]
    public void Unreadable_range_clips_reads_at_byte_granularity_and_counts_round_trips()
    {
        var build = LabTestSupport.BuildOrIgnore("win10");
        var b = new KernelScenarioBuilder(build);
        ulong a = b.Alloc(0x100);
        b.Memory.Write(a, Enumerable.Range(0, 0x100).Select(i => (byte)i).ToArray());
        var t = b.CreateTarget();
        t.MakeUnreadable(a + 0x40, 0x10);
        var buf = new byte[0x100];
        Assert.That(t.ReadVirtual(a, buf), Is.EqualTo(0x40));
        Assert.That(buf[0x3f], Is.EqualTo(0x3f));
        Assert.That(t.ReadVirtual(a + 0x44, buf), Is.EqualTo(0));
        Assert.That(t.ReadVirtual(a + 0x50, buf.AsSpan(0, 0x10)), Is.EqualTo(0x10));
        Assert.That(t.ReadVirtual(0xffff9999_00000000, buf), Is.EqualTo(0));
        Assert.That(t.ReadCalls, Is.EqualTo(4));
        Assert.That(t.BytesReturned, Is.EqualTo(0x50));
    }
}
