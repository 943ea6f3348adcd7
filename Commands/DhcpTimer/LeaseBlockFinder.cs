using System.Buffers.Binary;

namespace NtSleuth.Commands.DhcpTimer;

public enum LeaseTimeUnit { UnixSeconds64, FileTime, UnixSeconds32 }

/// <summary>Where the lease timers sit in an adapter context, and their values.</summary>
public sealed record LeaseBlock
{
    public LeaseTimeUnit Unit { get; init; }
    public int ObtainedOffset { get; init; }
    public int T1Offset { get; init; }
    public int T2Offset { get; init; }
    public int ExpiresOffset { get; init; }
    public int? RunTimeOffset { get; init; }
    /// <summary>Offset of a 32-bit lease-duration field equal to Expires - Obtained, when one sits next to the times.</summary>
    public int? LeaseDurationOffset { get; init; }
    public DateTime Obtained { get; init; }
    public DateTime T1 { get; init; }
    public DateTime T2 { get; init; }
    public DateTime Expires { get; init; }
    public DateTime? RunTime { get; init; }
    public long LeaseSeconds => (long)Math.Round((Expires - Obtained).TotalSeconds);
    /// <summary>True when T1/T2 are the RFC 2131 defaults (1/2 and 7/8 of the lease); false when the server set other timers.</summary>
    public bool DefaultTimers { get; init; }
}

/// <summary>
/// Finds the lease-time block of a DHCP client adapter context by its structure rather than by offsets
/// (dhcpcore's public symbols carry no types): four time values in field order, obtained &lt;= T1 &lt;= T2 &lt;= expiry,
/// T1 - obtained ~ 1/2 lease and T2 - obtained ~ 7/8 lease, in one of the time encodings a Windows build may use
/// (64-bit time_t, FILETIME, 32-bit time_t). RunTime (the next scheduled action) is the time field that follows
/// the block, as in the NT DHCP client's context where the run time follows the lease expiry.
/// </summary>
public static class LeaseBlockFinder
{
    private static readonly DateTime MinPlausible = new(1995, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime MaxPlausible = new(2110, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private const int MaxGapSlots = 2;
    /// <summary>Leases outside 1 minute .. 20 years are not considered (0xFFFFFFFF = infinite leases have no timers).</summary>
    private const double MinLeaseSeconds = 60, MaxLeaseSeconds = 20 * 365.25 * 86400;

    public static LeaseBlock? Find(ReadOnlySpan<byte> context)
    {
        foreach (var unit in new[] { LeaseTimeUnit.UnixSeconds64, LeaseTimeUnit.FileTime, LeaseTimeUnit.UnixSeconds32 })
        {
            var strict = Find(context, unit, strictRatios: true);
            if (strict is not null) return strict;
        }
        foreach (var unit in new[] { LeaseTimeUnit.UnixSeconds64, LeaseTimeUnit.FileTime, LeaseTimeUnit.UnixSeconds32 })
        {
            var relaxed = Find(context, unit, strictRatios: false);
            if (relaxed is not null) return relaxed;
        }
        return null;
    }

    private static int SlotSize(LeaseTimeUnit u) => u == LeaseTimeUnit.UnixSeconds32 ? 4 : 8;

    internal static DateTime? Decode(ReadOnlySpan<byte> b, LeaseTimeUnit unit)
    {
        try
        {
            DateTime t = unit switch
            {
                LeaseTimeUnit.UnixSeconds64 => DateTime.UnixEpoch.AddSeconds(BinaryPrimitives.ReadInt64LittleEndian(b)),
                LeaseTimeUnit.UnixSeconds32 => DateTime.UnixEpoch.AddSeconds(BinaryPrimitives.ReadUInt32LittleEndian(b)),
                _ => DateTime.FromFileTimeUtc(BinaryPrimitives.ReadInt64LittleEndian(b)),
            };
            return t >= MinPlausible && t <= MaxPlausible ? t : null;
        }
        catch (ArgumentException) { return null; }
    }

    private static LeaseBlock? Find(ReadOnlySpan<byte> ctx, LeaseTimeUnit unit, bool strictRatios)
    {
        int s = SlotSize(unit);
        var slots = new List<(int Off, DateTime T)>();
        for (int off = 0; off + s <= ctx.Length; off += s)
        {
            var t = Decode(ctx.Slice(off, s), unit);
            if (t is not null) slots.Add((off, t.Value));
        }
        int maxGap = (MaxGapSlots + 1) * s;
        for (int a = 0; a < slots.Count; a++)
        for (int b = a + 1; b < slots.Count; b++)
        {
            if (slots[b].Off - slots[a].Off > maxGap) break;
            for (int c = b + 1; c < slots.Count; c++)
            {
                if (slots[c].Off - slots[b].Off > maxGap) break;
                for (int d = c + 1; d < slots.Count; d++)
                {
                    if (slots[d].Off - slots[c].Off > maxGap) break;
                    var (o, t1, t2, e) = (slots[a].T, slots[b].T, slots[c].T, slots[d].T);
                    if (!(o < t1 && t1 <= t2 && t2 < e)) continue;
                    double L = (e - o).TotalSeconds;
                    if (L < MinLeaseSeconds || L > MaxLeaseSeconds) continue;
                    double r1 = (t1 - o).TotalSeconds, r2 = (t2 - o).TotalSeconds;
                    double tol = Math.Max(2.0, L * 0.01);
                    bool isDefault = Math.Abs(r1 - L / 2) <= tol && Math.Abs(r2 - L * 7 / 8) <= tol;
                    bool plausible = r1 >= 0.3 * L && r1 <= 0.7 * L && r2 >= 0.6 * L && r2 <= 0.95 * L;
                    if (strictRatios ? !isDefault : !plausible) continue;
                    int? durationOffset = FindLeaseDuration(ctx, slots[a].Off, (long)Math.Round(L));
                    // Server-set timers are accepted only when a lease-duration field beside the block confirms it.
                    // 32-bit times are too common in random data (most 32-bit values are a date between 1995 and 2106):
                    // they too need that confirmation.
                    if ((!strictRatios || unit == LeaseTimeUnit.UnixSeconds32) && durationOffset is null) continue;
                    var run = FindRunTime(slots, d, a, maxGap, o, e, L);
                    return new LeaseBlock
                    {
                        Unit = unit,
                        ObtainedOffset = slots[a].Off, T1Offset = slots[b].Off, T2Offset = slots[c].Off, ExpiresOffset = slots[d].Off,
                        RunTimeOffset = run?.Off, RunTime = run?.T,
                        Obtained = o, T1 = t1, T2 = t2, Expires = e,
                        DefaultTimers = isDefault,
                        LeaseDurationOffset = durationOffset,
                    };
                }
            }
        }
        return null;
    }

    private static (int Off, DateTime T)? FindRunTime(List<(int Off, DateTime T)> slots, int expiryIndex, int obtainedIndex, int maxGap, DateTime o, DateTime e, double L)
    {
        bool Valid(DateTime t) => t >= o && t <= e.AddSeconds(L);
        // The field after the expiry, then the one before the obtained time.
        if (expiryIndex + 1 < slots.Count && slots[expiryIndex + 1].Off - slots[expiryIndex].Off <= maxGap && Valid(slots[expiryIndex + 1].T))
            return slots[expiryIndex + 1];
        if (obtainedIndex > 0 && slots[obtainedIndex].Off - slots[obtainedIndex - 1].Off <= maxGap && Valid(slots[obtainedIndex - 1].T))
            return slots[obtainedIndex - 1];
        return null;
    }

    private static int? FindLeaseDuration(ReadOnlySpan<byte> ctx, int obtainedOffset, long lease)
    {
        if (lease <= 0 || lease > uint.MaxValue) return null;
        for (int delta = 4; delta <= 16; delta += 4)
        {
            int off = obtainedOffset - delta;
            if (off >= 0 && BinaryPrimitives.ReadUInt32LittleEndian(ctx.Slice(off, 4)) == (uint)lease) return off;
        }
        return null;
    }
}
