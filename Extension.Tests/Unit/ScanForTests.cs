using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// TargetMemory.ScanFor (the module search of !leaktag: packet-sized reads compared on the host) finds exactly what the
/// target-side search finds, on ranges with occurrences at packet and page boundaries, overlapping occurrences and
/// pages that cannot be read; and it pays one packet per request, never for a page it read before.
/// </summary>
public class ScanForTests
{
    private const ulong Base = 0xfffff880_04000000;

    private static (InMemoryTarget Target, ulong Length) Image(int seed)
    {
        var mem = new SparseMemory();
        ulong length = 0x40000;
        mem.Map(Base, length);
        var rnd = new Random(seed);
        var junk = new byte[(int)length];
        rnd.NextBytes(junk);
        // Keep the random bytes free of 'L' so only the planted occurrences match.
        for (int i = 0; i < junk.Length; i++) if (junk[i] == (byte)'L') junk[i] = 0;
        mem.Write(Base, junk);
        byte[] tag = "Leak"u8.ToArray();
        // Across a packet boundary (3,944), across page boundaries, at the very start and end, overlapping ("LeakLeak"
        // and a pattern that overlaps itself is not possible for "Leak", so two back to back), then unmapped pages.
        foreach (ulong off in new ulong[] { 0, (ulong)KdnetModel.MaxPacketData - 2, 2 * (ulong)KdnetModel.MaxPacketData - 1, 0x1ffe, 0x3000, 0x3004, 0x7ffd, 0x9ffe, length - 4 })
            mem.Write(Base + off, tag);
        for (int i = 0; i < 20; i++) mem.Write(Base + (ulong)rnd.Next(0x10000, (int)length - 4), tag);
        // Not present: a page in the middle (an occurrence across its start is no occurrence), a run of pages.
        mem.Unmap(Base + 0xa000, 0x1000);
        mem.Unmap(Base + 0x20000, 0x8000);
        return (new InMemoryTarget(mem, new IsfSymbolProvider(), new TargetInfo { Kind = TargetKind.Kernel, PointerSize = 8 }, []), length);
    }

    private static List<ulong> SearchLoop(ITarget t, ulong start, ulong length, byte[] pattern, int max)
    {
        var hits = new List<ulong>();
        ulong end = start + length, a = start;
        while (a < end && hits.Count < max && t.SearchVirtual(a, end - a, pattern) is { } h && h >= a && h < end) { hits.Add(h); a = h + 1; }
        return hits;
    }

    [TestCase(1, 64)]
    [TestCase(2, 64)]
    [TestCase(3, 5)]
    public void FindsWhatTheTargetSideSearchFinds(int seed, int max)
    {
        var (t, length) = Image(seed);
        var pattern = "Leak"u8.ToArray();
        var expected = SearchLoop(t, Base, length, pattern, max);
        Assert.That(expected, Has.Count.GreaterThanOrEqualTo(Math.Min(max, 8)));
        var m = new TargetMemory(t);
        var got = m.ScanFor(Base, length, pattern, max);
        Assert.That(got, Is.EqualTo(expected));
    }

    [Test]
    public void OnePacketPerRequestAndNothingReadTwice()
    {
        var (t, length) = Image(4);
        var m = new TargetMemory(t);
        // The command read the first two pages before: the scan takes them from the cache.
        m.Prefetch(Base, 0x2000);
        long before = m.Stats.Packets;
        t.ReadLog = new();
        m.ScanFor(Base, length, "Leak"u8.ToArray(), 1000);
        Assert.That(t.ReadLog.All(r => r.Length <= KdnetModel.MaxPacketData), "every request fits one KD packet");
        Assert.That(t.ReadLog.Any(r => r.Address < Base + 0x2000), Is.False, "pages read before are not read again");
        Assert.That(m.Stats.Packets - before, Is.EqualTo(t.ReadLog.Count), "one packet per request");
        Assert.That(m.Stats.Searches, Is.EqualTo(0));
        // Readable bytes: 0x40000 - 0x2000 cached - 9 pages unmapped; each unreadable page costs one failed request.
        long readable = (long)length - 0x2000 - 9 * 0x1000;
        Assert.That(t.ReadLog.Count, Is.LessThanOrEqualTo(KdnetModel.Packets(readable) + 2 * 9));
        // Cheaper than the target-side search of the same range, counted by the same rule (pages it transfers).
        var searched = new TargetMemory(t);
        searched.Prefetch(Base, 0x2000);
        long sb = searched.Stats.Packets;
        ulong a = Base;
        while (searched.Search(a, Base + length - a, "Leak"u8) is { } h) a = h + 1;
        Assert.That(m.Stats.ModelledKdnetSeconds, Is.LessThan(searched.Stats.ModelledKdnetSeconds));
        Assert.That(m.Stats.Packets - before, Is.LessThan(searched.Stats.Packets - sb));
    }
}
