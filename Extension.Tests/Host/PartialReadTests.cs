using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>PartialRead over a fake engine that, like dbgeng on a dump, fails a whole request when any page is missing.</summary>
public class PartialReadTests
{
    private sealed class FakeEngine(ulong readableStart, ulong readableEnd, bool shortReads = false)
    {
        public List<(ulong Address, int Length)> Calls { get; } = new();
        public int Read(ulong addr, int offset, int len)
        {
            Calls.Add((addr, len));
            ulong end = addr + (ulong)len;
            if (addr >= readableStart && end <= readableEnd) return len;
            if (shortReads && addr >= readableStart && addr < readableEnd) return (int)(readableEnd - addr);
            return -1;
        }
    }

    [Test]
    public void FullyReadableIsOneRoundTrip()
    {
        var e = new FakeEngine(0x10000, 0x20000);
        Assert.That(PartialRead.Read(0x10010, 0x3000, e.Read), Is.EqualTo(0x3000));
        Assert.That(e.Calls, Has.Count.EqualTo(1));
    }

    [Test]
    public void FailedRequestFindsReadablePrefixPageByPage()
    {
        var e = new FakeEngine(0x10000, 0x12000);
        int n = PartialRead.Read(0x10800, 0x3000, e.Read);
        Assert.That(n, Is.EqualTo(0x1800), "0x10800..0x12000 readable");
        // whole request, then page pieces: 0x10800-0x11000, 0x11000-0x12000, 0x12000 (fails)
        Assert.That(e.Calls.Select(c => c.Address), Is.EqualTo(new ulong[] { 0x10800, 0x10800, 0x11000, 0x12000 }));
        Assert.That(e.Calls[1].Length, Is.EqualTo(0x800));
    }

    [Test]
    public void FirstByteUnreadableReturnsZero()
    {
        var e = new FakeEngine(0x10000, 0x12000);
        Assert.That(PartialRead.Read(0xF000, 0x100, e.Read), Is.EqualTo(0));
    }

    [Test]
    public void ShortEngineReadContinuesFromTheFirstUnreadByte()
    {
        var e = new FakeEngine(0x10000, 0x11800, shortReads: true);
        Assert.That(PartialRead.Read(0x10000, 0x4000, e.Read), Is.EqualTo(0x1800));
    }

    [Test]
    public void BufferOffsetsMatchAddresses()
    {
        var offsets = new List<(ulong, int)>();
        PartialRead.Read(0x10ff0, 0x2000, (a, off, len) => { offsets.Add((a, off)); return a == 0x10ff0 && len == 0x2000 ? -1 : len; });
        foreach (var (a, off) in offsets) Assert.That(a - 0x10ff0, Is.EqualTo((ulong)off));
    }
}
