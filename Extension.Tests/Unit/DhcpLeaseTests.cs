using System.Buffers.Binary;
using System.Text.Json;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.DhcpTimer;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;
using Moq;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

public class DhcpLeaseTests
{
    [TestCase("86400", 86400UL)]
    [TestCase("365.00:00:00", 31_536_000UL)]
    [TestCase("8.00:00:00", 691_200UL)]
    [TestCase("12:00:00", 43_200UL)]
    public void ParsesLeaseForms(string text, ulong seconds) => Assert.That(LeaseMath.ParseLeaseSeconds(text), Is.EqualTo(seconds));

    [TestCase("0")]
    [TestCase("-5")]
    [TestCase("-1.00:00:00")]
    [TestCase("abc")]
    [TestCase("4294967296")]
    [TestCase("00:00:00")]
    public void RejectsBadLeases(string text) => Assert.Throws<UsageException>(() => LeaseMath.ParseLeaseSeconds(text));

    [Test]
    public void OneYearLeaseOverflowsAtT1()
    {
        var c = LeaseMath.Calculate(31_536_000);
        Assert.That(c.T1Seconds, Is.EqualTo(15_768_000));
        Assert.That(c.T2Seconds, Is.EqualTo(27_594_000));
        var t1 = c.Waits.Single(w => w.Timer == "T1");
        Assert.That(t1.Milliseconds, Is.EqualTo(15_768_000_000UL));
        Assert.That(t1.Overflows32, Is.True);
        Assert.That(t1.Truncated32, Is.EqualTo((uint)(15_768_000_000UL % 0x1_0000_0000UL)));
        Assert.That(c.AnyOverflow, Is.True);
    }

    [Test]
    public void OneDayLeaseFits()
    {
        var c = LeaseMath.Calculate(86_400);
        Assert.That(c.T1Seconds, Is.EqualTo(43_200));
        Assert.That(c.T2Seconds, Is.EqualTo(75_600));
        Assert.That(c.Waits.All(w => !w.Overflows32), Is.True);
    }

    [Test]
    public void BoundaryIs49Point7Days()
    {
        Assert.That(LeaseMath.CheckWait("x", 4_294_967).Overflows32, Is.False);
        Assert.That(LeaseMath.CheckWait("x", 4_294_968).Overflows32, Is.True);
    }

    private static (int rc, string text) RunNoTarget(string args)
    {
        var target = new Mock<ITarget>(MockBehavior.Strict);
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run("dhcptimer", args, target.Object, sink);
        return (rc, sink.All);
    }

    [Test]
    public void LeaseOptionNeedsNoTarget()
    {
        var (rc, text) = RunNoTarget("-lease 365.00:00:00");
        Assert.That(rc, Is.EqualTo(0), text);
        Assert.That(text, Does.Contain("15,768,000,000"));
        Assert.That(text, Does.Contain("OVERFLOW"));
        Assert.That(text, Does.Contain("T1"));
    }

    [Test]
    public void LeaseOptionJsonIsValid()
    {
        var (rc, text) = RunNoTarget("-lease 86400 -json");
        Assert.That(rc, Is.EqualTo(0), text);
        using var doc = JsonDocument.Parse(text);
        var lease = doc.RootElement.GetProperty("lease");
        Assert.That(lease.GetProperty("t1Seconds").GetInt64(), Is.EqualTo(43_200));
        Assert.That(lease.GetProperty("waits")[0].GetProperty("overflows32").GetBoolean(), Is.False);
    }

    [TestCase("-lease 0")]
    [TestCase("-lease -1")]
    [TestCase("-lease soon")]
    public void BadLeaseIsAUsageError(string args)
    {
        var (rc, text) = RunNoTarget(args);
        Assert.That(rc, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
        Assert.That(text, Does.Contain("Usage: !dhcptimer"));
    }

    private static byte[] Context(long obtained, long lease, long? runTime, int at = 0x60)
    {
        var b = new byte[0x200];
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at - 4), (uint)lease);
        long[] vals = [obtained, obtained + lease / 2, obtained + lease * 7 / 8, obtained + lease, runTime ?? 0];
        for (int i = 0; i < vals.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(at + 8 * i), vals[i]);
        return b;
    }

    [Test]
    public void FinderLocatesBlockAndRunTimeEqualToT1()
    {
        long obtained = 1_500_000_000, lease = 31_536_000;
        var blk = LeaseBlockFinder.Find(Context(obtained, lease, obtained + lease / 2));
        Assert.That(blk, Is.Not.Null);
        Assert.That(blk!.Unit, Is.EqualTo(LeaseTimeUnit.UnixSeconds64));
        Assert.That(blk.ObtainedOffset, Is.EqualTo(0x60));
        Assert.That(blk.RunTimeOffset, Is.EqualTo(0x80));
        Assert.That(blk.RunTime, Is.EqualTo(blk.T1));
        Assert.That(blk.LeaseSeconds, Is.EqualTo(lease));
        Assert.That(blk.LeaseDurationOffset, Is.EqualTo(0x5c));
        Assert.That(blk.DefaultTimers, Is.True);
    }

    [Test]
    public void FinderRejectsGarbage()
    {
        var rng = new Random(7);
        int found = 0;
        for (int i = 0; i < 300; i++)
        {
            var b = new byte[0x400];
            rng.NextBytes(b);
            if (LeaseBlockFinder.Find(b) is not null) found++;
        }
        Assert.That(found, Is.Zero, "random context bytes must not be taken for a lease block");
    }

    [Test]
    public void FinderFindsFileTimeEncoding()
    {
        var b = new byte[0x100];
        var o = new DateTime(2018, 3, 1, 0, 0, 0, DateTimeKind.Utc);
        var lease = TimeSpan.FromDays(8);
        DateTime[] v = [o, o + lease / 2, o + lease * 7 / 8, o + lease, o + lease / 2];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(0x20 + 8 * i), v[i].ToFileTimeUtc());
        var blk = LeaseBlockFinder.Find(b);
        Assert.That(blk, Is.Not.Null);
        Assert.That(blk!.Unit, Is.EqualTo(LeaseTimeUnit.FileTime));
        Assert.That(blk.Expires, Is.EqualTo(o + lease));
    }

    [Test]
    public void JudgeSeesMissedRenewalAndOverflow()
    {
        long obtained = 1_500_000_000, lease = 31_536_000;
        var blk = LeaseBlockFinder.Find(Context(obtained, lease, obtained + lease / 2))!;
        var now = DateTime.UnixEpoch.AddSeconds(obtained + lease - 3600);
        var sched = LeaseMath.CheckWait("RunTime - Obtained", lease / 2);
        var (v, text) = DhcpTimerAnalyzer.Judge(blk, now, sched);
        Assert.That(v, Is.EqualTo(DhcpVerdict.RenewalMissed));
        Assert.That(text, Does.Contain("RunTime == T1"));
        Assert.That(text, Does.Contain("32-bit"));
    }

    [Test]
    public void JudgeEightDayLeaseIsHealthy()
    {
        long obtained = 1_500_000_000, lease = 8 * 86400;
        var blk = LeaseBlockFinder.Find(Context(obtained, lease, obtained + lease / 2))!;
        var now = DateTime.UnixEpoch.AddSeconds(obtained + 3600);
        var (v, _) = DhcpTimerAnalyzer.Judge(blk, now, LeaseMath.CheckWait("x", lease / 2));
        Assert.That(v, Is.EqualTo(DhcpVerdict.RenewalPending));
    }

    [Test]
    public void AddressFinderNeedsContiguousMask()
    {
        var b = new byte[] { 0, 0, 0, 0, 10, 1, 2, 30, 255, 255, 255, 0, 0, 0, 0, 0 };
        Assert.That(DhcpTimerAnalyzer.FindAddress(b, b.Length), Is.EqualTo(("10.1.2.30", "255.255.255.0")));
        var bad = new byte[] { 10, 1, 2, 30, 255, 0, 255, 0 };
        Assert.That(DhcpTimerAnalyzer.FindAddress(bad, bad.Length), Is.EqualTo(((string?)null, (string?)null)));
    }
}
