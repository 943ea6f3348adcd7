using System.Buffers.Binary;
using Microsoft.Diagnostics.Runtime;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>
/// The lab's user-mode minidumps read back by an independent reader, ClrMD (Microsoft.Diagnostics.Runtime): the
/// process id, every module (base, size, time stamp, path), every thread's CONTEXT (Rip, Rsp) and every mapped page
/// must come back as <see cref="MinidumpWriter"/> wrote them; an address the lab did not map must not.
/// </summary>
[TestFixture]
public class MinidumpClrMdTests
{
    private string _dir = "";

    [SetUp]
    public void MakeDir() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "ntsleuth-clrmd-" + Guid.NewGuid().ToString("N")[..8]));

    [TearDown]
    public void RemoveDir() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    public static IEnumerable<TestCaseData> Scenarios()
    {
        yield return new TestCaseData("seed").SetName("DhcpLeaseSeedReadsBackThroughClrMd");
        yield return new TestCaseData("eight-days").SetName("DhcpLeaseEightDaysReadsBackThroughClrMd");
    }

    [TestCaseSource(nameof(Scenarios))]
    public void ScenarioDumpReadsBackThroughClrMd(string which)
    {
        var scenario = which == "seed" ? DhcpLeaseScenario.Seed() : DhcpLeaseScenario.EightDays();
        var b = scenario.Build();
        var modules = b.Target.GetModules().Select((m, i) => new MinidumpModule(m.ImagePath!, m.Base, m.Size, 0x4ce7b8a1u + (uint)i)).ToList();
        var threads = b.Target.GetThreadStacks(64).Select((t, i) => new MinidumpThread(t.ThreadId, t.ThreadAddress,
            t.Frames[0].InstructionOffset, t.Frames[0].StackOffset, 0x1000 + (ulong)i, DhcpLeaseScenario.StackBase, DhcpLeaseScenario.StackBase + 0x10000)).ToList();
        Assert.That(modules, Has.Count.GreaterThanOrEqualTo(3));
        Assert.That(threads, Has.Count.GreaterThanOrEqualTo(2));
        string path = Path.Combine(_dir, which + ".dmp");
        MinidumpWriter.Write(path, b.Memory, new MinidumpSpec { DumpTimeUtc = scenario.DumpTimeUtc, ProcessId = 0x3a4, Modules = modules, Threads = threads });
        Check(path, b.Memory, modules, threads, 0x3a4);
    }

    [Test]
    public void HandMadeDumpReadsBackThroughClrMd()
    {
        // Pages with distinct contents (a page-boundary-crossing pattern, a lone page far away), two modules, three threads.
        var mem = new SparseMemory();
        var rng = new Random(14);
        var bytes = new byte[0x3000];
        rng.NextBytes(bytes);
        mem.Write(0x0000_0000_0040_0000, bytes);
        mem.Write(0x0000_7ff6_1234_5000, bytes.AsSpan(0, 0x1000));
        mem.Write(0x0000_0000_0100_0000, bytes.AsSpan(0x800, 0x1000));
        var modules = new List<MinidumpModule>
        {
            new(@"C:\Windows\System32\lab-one.dll", 0x0000_7ff6_1234_0000, 0x20000, 0x5f000001),
            new(@"C:\Program Files\Lab\two.exe", 0x0000_0000_0040_0000, 0x3000, 0x5f000002),
        };
        var threads = new List<MinidumpThread>
        {
            new(0x10, 0x7ff_fffd_0000, 0x0000_7ff6_1234_5010, 0x0100_0100, 0x0100_0200, 0x0100_0000, 0x0100_1000),
            new(0x24, 0x7ff_fffd_2000, 0x0000_0000_0040_1234, 0x0100_0800, 0, 0x0100_0000, 0x0100_1000),
            new(0x3c, 0x7ff_fffd_4000, 0x0000_7ff6_1234_5ff0, 0x0100_0f00, 0, 0x0100_0000, 0x0100_1000),
        };
        string path = Path.Combine(_dir, "hand.dmp");
        MinidumpWriter.Write(path, mem, new MinidumpSpec { DumpTimeUtc = new DateTime(2026, 12, 4, 0, 0, 0, DateTimeKind.Utc), ProcessId = 4242, Modules = modules, Threads = threads });
        Check(path, mem, modules, threads, 4242);
    }

    private static void Check(string path, SparseMemory mem, IReadOnlyList<MinidumpModule> modules, IReadOnlyList<MinidumpThread> threads, int pid)
    {
        using var dt = DataTarget.LoadDump(path);
        var r = dt.DataReader;
        Assert.Multiple(() =>
        {
            Assert.That(r.ProcessId, Is.EqualTo(pid), "process id");
            Assert.That(r.PointerSize, Is.EqualTo(8));

            // Modules: the same set, each at its base with its size, time stamp and path.
            var read = r.EnumerateModules().OrderBy(m => m.ImageBase).ToList();
            Assert.That(read.Select(m => m.ImageBase), Is.EqualTo(modules.Select(m => m.Base).OrderBy(x => x)), "module bases");
            foreach (var m in modules)
            {
                var got = read.FirstOrDefault(x => x.ImageBase == m.Base);
                if (got is null) continue;
                Assert.That(got.FileName, Is.EqualTo(m.Path), $"path of the module at {m.Base:x}");
                Assert.That(got.IndexFileSize, Is.EqualTo((int)m.Size), $"SizeOfImage of {m.Path}");
                Assert.That(got.IndexTimeStamp, Is.EqualTo((int)m.TimeDateStamp), $"TimeDateStamp of {m.Path}");
            }

            // Threads: each id has the CONTEXT the lab wrote (x64 CONTEXT: Rsp at 0x98, Rbp at 0xa0, Rip at 0xf8).
            var ctx = new byte[0x4d0];
            foreach (var t in threads)
            {
                bool ok = r.GetThreadContext(t.ThreadId, 0x10001f, ctx);
                Assert.That(ok, Is.True, $"thread {t.ThreadId:x} has a context");
                if (!ok) continue;
                Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(ctx.AsSpan(0xf8)), Is.EqualTo(t.Rip), $"Rip of thread {t.ThreadId:x}");
                Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(ctx.AsSpan(0x98)), Is.EqualTo(t.Rsp), $"Rsp of thread {t.ThreadId:x}");
                Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(ctx.AsSpan(0xa0)), Is.EqualTo(t.Rbp), $"Rbp of thread {t.ThreadId:x}");
            }
            uint absent = threads.Max(t => t.ThreadId) + 4;
            Assert.That(r.GetThreadContext(absent, 0x10001f, ctx), Is.False, "a thread the lab did not write");

            // Memory: every mapped page byte for byte; a page in the middle of two mapped ones, and one after the last, are absent.
            var page = new byte[SparseMemory.PageSize];
            int pages = 0;
            foreach (var (va, data) in mem.Pages)
            {
                Array.Clear(page);
                int n = r.Read(va, page);
                Assert.That(n, Is.EqualTo(page.Length), $"page {va:x} readable");
                Assert.That(page, Is.EqualTo(data), $"page {va:x} contents");
                pages++;
            }
            Assert.That(pages, Is.GreaterThan(0));
            ulong last = mem.Pages.Last().Key;
            Assert.That(r.Read(last + 0x10_0000, page), Is.EqualTo(0), "an unmapped address reads nothing");
            // A read across the end of a mapped run stops at the end of the run.
            ulong runEnd = last + SparseMemory.PageSize;
            if (!mem.IsMapped(runEnd))
                Assert.That(r.Read(runEnd - 0x10, new byte[0x20]), Is.EqualTo(0x10), "a read over the end of the last page returns the mapped part");
        });
    }
}
