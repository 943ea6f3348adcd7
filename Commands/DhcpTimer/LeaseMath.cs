using System.Globalization;
using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.DhcpTimer;

/// <summary>
/// DHCP lease timer arithmetic (RFC 2131 §4.4.5: T1 = 0.5 x lease, T2 = 0.875 x lease) and the 32-bit
/// millisecond wait check: a Win32 wait takes a DWORD of milliseconds, 0xFFFFFFFF meaning INFINITE, so any
/// timer further than 4,294,967.295 s (49.7 days) away cannot be expressed.
/// </summary>
public static class LeaseMath
{
    public const uint Infinite = 0xFFFFFFFF;
    /// <summary>Largest finite wait in milliseconds (0xFFFFFFFE); 0xFFFFFFFF is INFINITE.</summary>
    public const ulong MaxFiniteWaitMs = 0xFFFFFFFE;
    /// <summary>A DHCP lease of 0xFFFFFFFF seconds is an infinite lease (RFC 2132 option 51).</summary>
    public const ulong InfiniteLease = 0xFFFFFFFF;

    /// <summary>Parses "86400", "365.00:00:00", "8.00:00:00" or "12:00:00"; usage error otherwise or when not positive.</summary>
    public static ulong ParseLeaseSeconds(string text)
    {
        text = text.Trim();
        if (text.StartsWith('-')) throw new UsageException($"lease '{text}' is negative; give seconds or d.hh:mm:ss");
        if (ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var secs))
        {
            if (secs == 0) throw new UsageException("lease must be greater than zero");
            if (secs > InfiniteLease) throw new UsageException($"lease {secs} s does not fit DHCP's 32-bit lease time (max 4294967295 = infinite)");
            return secs;
        }
        string[] formats = ["d\\.hh\\:mm\\:ss", "d\\.h\\:mm\\:ss", "hh\\:mm\\:ss", "h\\:mm\\:ss"];
        if (TimeSpan.TryParseExact(text, formats, CultureInfo.InvariantCulture, out var ts))
        {
            if (ts <= TimeSpan.Zero) throw new UsageException("lease must be greater than zero");
            double total = Math.Floor(ts.TotalSeconds);
            if (total > InfiniteLease) throw new UsageException($"lease {text} does not fit DHCP's 32-bit lease time");
            return (ulong)total;
        }
        throw new UsageException($"cannot parse lease '{text}': give seconds (86400) or d.hh:mm:ss (365.00:00:00)");
    }

    /// <summary>A wait of <paramref name="seconds"/> seconds expressed as a 32-bit millisecond timeout.</summary>
    public static WaitCheck CheckWait(string timer, long seconds)
    {
        long s = Math.Max(0, seconds);
        ulong ms = (ulong)s * 1000UL;
        bool overflows = ms > MaxFiniteWaitMs;
        uint truncated = unchecked((uint)ms);
        return new WaitCheck
        {
            Timer = timer,
            Seconds = seconds,
            Milliseconds = ms,
            Overflows32 = overflows,
            Truncated32 = truncated,
            TruncatedIsInfinite = truncated == Infinite,
        };
    }

    public static LeaseCalculation Calculate(ulong leaseSeconds)
    {
        if (leaseSeconds == InfiniteLease)
            return new LeaseCalculation { LeaseSeconds = leaseSeconds, IsInfiniteLease = true, Waits = [] };
        long t1 = (long)(leaseSeconds / 2);
        long t2 = (long)(leaseSeconds * 7 / 8);
        return new LeaseCalculation
        {
            LeaseSeconds = leaseSeconds,
            T1Seconds = t1,
            T2Seconds = t2,
            Waits = [CheckWait("T1", t1), CheckWait("T2", t2), CheckWait("Expiry", (long)leaseSeconds)],
        };
    }

    /// <summary>Longest timer, in seconds, that fits a finite 32-bit millisecond wait.</summary>
    public static double MaxWaitSeconds => MaxFiniteWaitMs / 1000.0;

    public static string Span(long seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Abs(seconds));
        string s = t.Days > 0 ? $"{t.Days}.{t.Hours:00}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Hours}:{t.Minutes:00}:{t.Seconds:00}";
        return seconds < 0 ? "-" + s : s;
    }

    /// <summary>"in 1.02:03:04" / "2:00:00 ago" relative to now.</summary>
    public static string Relative(DateTime when, DateTime now)
    {
        long d = (long)Math.Round((when - now).TotalSeconds);
        return d >= 0 ? "in " + Span(d) : Span(-d) + " ago";
    }
}

public sealed record WaitCheck
{
    public string Timer { get; init; } = "";
    public long Seconds { get; init; }
    public ulong Milliseconds { get; init; }
    /// <summary>True when the milliseconds do not fit a finite 32-bit wait (> 0xFFFFFFFE).</summary>
    public bool Overflows32 { get; init; }
    /// <summary>The low 32 bits: what a wait computed in 32-bit arithmetic would get.</summary>
    public uint Truncated32 { get; init; }
    public bool TruncatedIsInfinite { get; init; }
}

public sealed record LeaseCalculation
{
    public ulong LeaseSeconds { get; init; }
    public bool IsInfiniteLease { get; init; }
    public long T1Seconds { get; init; }
    public long T2Seconds { get; init; }
    public IReadOnlyList<WaitCheck> Waits { get; init; } = [];
    public bool AnyOverflow => Waits.Any(w => w.Overflows32);
}
