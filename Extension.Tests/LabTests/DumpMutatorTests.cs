using System.Buffers.Binary;
using System.Text;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Fuzz;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>
/// The corrupted-memory tier's mutator (issue 20, item 3) on a small hand-made kernel dump: reproducible from
/// (sample, strategy, seed), never touching the header, the page tables or KDDEBUGGER_DATA64, and each strategy doing
/// what it says. Also the runner's classifier on hand-written outputs.
/// </summary>
public class DumpMutatorTests
{
    private const ulong Data = 0xFFFF_F800_0100_0000, Kdbg = 0xFFFF_F800_0200_0000, Str = 0xFFFF_F800_0100_1000;

    private static byte[] Dump(KernelDumpKind kind = KernelDumpKind.Complete)
    {
        var m = new SparseMemory();
        // A list of three LIST_ENTRY-like objects (kernel pointers), a UNICODE_STRING and names.
        for (int i = 0; i < 3; i++)
        {
            ulong o = Data + (ulong)(0x100 * i);
            m.WriteU64(o, Data + (ulong)(0x100 * ((i + 1) % 3)));
            m.WriteU64(o + 8, Data + (ulong)(0x100 * ((i + 2) % 3)));
        }
        m.WriteU16(Data + 0x400, 24); m.WriteU16(Data + 0x402, 26); m.WriteU32(Data + 0x404, 0); m.WriteU64(Data + 0x408, Str);
        m.Write(Str, Encoding.Unicode.GetBytes("ntoskrnl.exe"));
        m.Write(Str + 0x100, Encoding.ASCII.GetBytes("explorer.exe\0"));
        m.Write(Str + 0x200, Encoding.ASCII.GetBytes("\0Leak\0"));
        m.WriteU64(Kdbg, 0x4742444B); // the page of KDDEBUGGER_DATA64
        m.WriteU64(Kdbg + 8, Data);
        var layout = KernelDumpWriter.Layout(m);
        using var ms = new MemoryStream();
        KernelDumpWriter.Write(ms, layout, new KernelDumpHeader { BuildNumber = 19041, PsLoadedModuleList = Data, PsActiveProcessHead = Data + 0x100, KdDebuggerDataBlock = Kdbg }, kind);
        return ms.ToArray();
    }

    [Test]
    public void TheSameTripleGivesTheSameBytesAndAnotherSeedOthers()
    {
        var d = Dump();
        foreach (var s in Enum.GetValues<MutationStrategy>())
        {
            var a = new DumpMutator("x", d).Mutate(s, 7);
            var b = new DumpMutator("x", d).Mutate(s, 7);
            Assert.That(a.Dump, Is.EqualTo(b.Dump), s.ToString());
            Assert.That(a.Changes.Select(c => c.What), Is.EqualTo(b.Changes.Select(c => c.What)));
            Assert.That(a.Dump, Is.Not.EqualTo(d), $"{s} changed nothing");
            Assert.That(Enumerable.Range(8, 12).Any(seed => !new DumpMutator("x", d).Mutate(s, seed).Dump.SequenceEqual(a.Dump)), Is.True, $"{s}: other seeds give other mutants");
            Assert.That(new DumpMutator("y", d).Mutate(s, 7).Id, Is.EqualTo($"y.{s.ToString().ToLowerInvariant()}.7"));
        }
    }

    [TestCase(KernelDumpKind.Complete)]
    [TestCase(KernelDumpKind.BitmapFull)]
    public void HeaderPageTablesAndKdbgAreNeverTouched(KernelDumpKind kind)
    {
        var d = Dump(kind);
        var r = new KernelDumpReader(d);
        var tables = new HashSet<long>();
        void Walk(ulong pfn, int level)
        {
            Assert.That(r.TryGetPageOffset(pfn, out long off), Is.True);
            tables.Add(off);
            if (level == 1) return;
            for (int i = 0; i < 512; i++)
            {
                ulong e = r.ReadPhysicalU64((pfn << 12) + (ulong)i * 8);
                if ((e & 1) == 0) continue;
                ulong child = (e & KernelDumpWriter.PtePfnMask) >> 12;
                if (child != pfn && !tables.Contains(r.TryGetPageOffset(child, out long co) ? co : -1)) Walk(child, level - 1);
            }
        }
        Walk(r.DirectoryTableBase >> 12, 4);
        int bodyStart = kind == KernelDumpKind.Complete ? KernelDumpWriter.HeaderSize : (int)r.BitmapFirstPage;
        long kdbg = r.TryGetPageOffset(r.Translate(Kdbg)!.Value >> 12, out long ko) ? ko : -1;
        foreach (var s in Enum.GetValues<MutationStrategy>())
            for (int seed = 1; seed <= 20; seed++)
            {
                var m = new DumpMutator("x", d).Mutate(s, seed).Dump;
                Assert.That(m.AsSpan(0, bodyStart).SequenceEqual(d.AsSpan(0, bodyStart)), Is.True, $"{s} {seed}: header/bitmap changed");
                Assert.That(m.AsSpan((int)kdbg, 0x1000).SequenceEqual(d.AsSpan((int)kdbg, 0x1000)), Is.True, $"{s} {seed}: KDDEBUGGER_DATA64 page changed");
                foreach (var t in tables)
                    for (int q = 0; q < 0x1000; q += 8)
                    {
                        ulong before = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan((int)t + q)), after = BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan((int)t + q));
                        if (before == after) continue;
                        // Only "paged out" may touch a table: a leaf entry losing its Present bit, nothing else.
                        Assert.That(s == MutationStrategy.Zero && after == (before & ~1UL), Is.True, $"{s} {seed}: page-table entry at file offset {t + q:x} changed {before:x} -> {after:x}");
                    }
                Assert.DoesNotThrow(() => new KernelDumpReader(m), $"{s} {seed}: the mutant must still parse");
            }
    }

    [Test]
    public void PagedOutPagesOnlyLoseThePresentBit()
    {
        var d = Dump();
        for (int seed = 1; seed <= 30; seed++)
        {
            var mu = new DumpMutator("x", d).Mutate(MutationStrategy.Zero, seed);
            foreach (var c in mu.Changes.Where(c => c.What.StartsWith("page paged out")))
            {
                var r = new KernelDumpReader(mu.Dump);
                Assert.That(r.Translate(c.VirtualAddress!.Value), Is.Null, c.What);
                Assert.That(new KernelDumpReader(d).Translate(c.VirtualAddress!.Value), Is.Not.Null);
            }
        }
    }

    [Test]
    public void StrategiesDoWhatTheySay()
    {
        var d = Dump();
        var mut = new DumpMutator("x", d);
        Assert.That(mut.Strings().Select(s => s.Text), Is.SupersetOf(new[] { "ntoskrnl.exe", "explorer.exe", "Leak" }));
        var markups = Enumerable.Range(1, 20).Select(s => mut.Mutate(MutationStrategy.Markup, s)).ToList();
        Assert.That(markups.SelectMany(m => m.Payloads), Is.Not.Empty);
        Assert.That(markups.SelectMany(m => m.Payloads).Distinct(), Is.SubsetOf(DumpMutator.MarkupPayloads.Concat(DumpMutator.ShortPayloads)), "whole payloads only, never cut");
        var ptr = Enumerable.Range(1, 20).SelectMany(s => mut.Mutate(MutationStrategy.Pointer, s).Changes).Select(c => c.What).ToList();
        foreach (var kind in new[] { "(wild)", "(NULL)", "(self)", "a cycle)" }) Assert.That(ptr, Has.Some.EndsWith(kind));
        var uni = mut.Mutate(MutationStrategy.UnicodeLength, 3);
        var pr = new KernelDumpReader(uni.Dump);
        Span<byte> b = stackalloc byte[4];
        pr.ReadVirtual(Data + 0x400, b);
        Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(b), Is.GreaterThan(0x200), uni.Describe());
    }

    [Test]
    public void TheClassifierSeesLeaksInjectionsChainsBadJsonAndSymbolBlame()
    {
        string[] payloads = ["<link cmd=\".shell calc\">", ";q;x"];
        Assert.That(FuzzRunner.Classify(FuzzOutput.Dml, "Tag <exec cmd=\"!leaktag Leak\">Leak</exec> &lt;link cmd=&quot;.shell calc&quot;&gt;\n", payloads).Item1, Is.EqualTo(FuzzClass.Ok));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Dml, "image <link cmd=\".shell calc\">\n", payloads).Item1, Is.EqualTo(FuzzClass.Injection));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Dml, "<exec cmd=\"!leaktag ;q;x\">;q;x</exec>\n", payloads).Item1, Is.EqualTo(FuzzClass.Injection));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Dml, "<exec cmd=\"lmvm a;.shell calc\">a</exec>\n", []).Item1, Is.EqualTo(FuzzClass.Injection));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Text, "<exec cmd=\"!leaktag ;q;x\">\n", payloads).Item1, Is.EqualTo(FuzzClass.Ok), "text mode has no markup");
        Assert.That(FuzzRunner.Classify(FuzzOutput.Text, "!x: internal error: System.NullReferenceException: boom\n", []).Item1, Is.EqualTo(FuzzClass.LeakedException));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Text, "   at NtSleuth.Commands.Foo.Bar(Int32 x)\n", []).Item1, Is.EqualTo(FuzzClass.LeakedException));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Text, "  fffff800`02a81234  nt!KiDispatchException+0x1c2\n", []).Item1, Is.EqualTo(FuzzClass.Ok), "a target symbol is not a leak");
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "{ \"a\": 1 }\n", []).Item1, Is.EqualTo(FuzzClass.Ok));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "{ \"a\": 1 }\n{ \"b\": 2 }\n", []).Item1, Is.EqualTo(FuzzClass.BadJson));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "note: x\n{ \"a\": 1 }\n", []).Item1, Is.EqualTo(FuzzClass.BadJson));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "@@err GetContextState failed, 0xD0000147\n{ \"a\": 1 }\n", []).Item1, Is.EqualTo(FuzzClass.Ok), "errors are a separate channel");
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "@@err !x: cannot read\n", []).Item1, Is.EqualTo(FuzzClass.Ok));
        Assert.That(FuzzRunner.Classify(FuzzOutput.Json, "Unable to get program counter\nUnable to get current machine context, NTSTATUS 0xC0000147\n{ \"a\": 1 }\n", []).Item1,
            Is.EqualTo(FuzzClass.Ok), "the engine's own context errors (printed before any extension command) are not ours");
        Assert.That(FuzzRunner.Classify(FuzzOutput.Text, "@@err !leaktag: symbol nt!X not found: symbols for 'nt' are missing or wrong. Run .symfix\n", []).Item1, Is.EqualTo(FuzzClass.WrongDiagnosis));
    }
}
