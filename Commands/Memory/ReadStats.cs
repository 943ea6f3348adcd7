namespace NtSleuth.Commands.Memory;

/// <summary>Round trips and bytes actually requested from the target (after caching).</summary>
public sealed class ReadStats
{
    public long RoundTrips { get; private set; }
    public long Bytes { get; private set; }
    public long Searches { get; private set; }
    public long CacheHits { get; private set; }

    public void AddRead(long bytes) { RoundTrips++; Bytes += bytes; }
    public void AddSearch() { RoundTrips++; Searches++; }
    public void AddHit() => CacheHits++;

    /// <summary>Modelled KDNET time: 1 ms per round trip plus the bytes at 2 MB/s.</summary>
    public double ModelledKdnetSeconds => KdnetModel.Seconds(RoundTrips, Bytes);

    public override string ToString() => $"{RoundTrips} round trips, {Bytes:N0} bytes, modelled KDNET {ModelledKdnetSeconds:0.000} s";
}

public static class KdnetModel
{
    public const double SecondsPerRoundTrip = 0.001;
    public const double BytesPerSecond = 2_000_000;
    public static double Seconds(long roundTrips, long bytes) => roundTrips * SecondsPerRoundTrip + bytes / BytesPerSecond;
}

/// <summary>A command's read figures as its report carries them (JSON <c>Stats</c>).</summary>
public sealed class ReadFigures
{
    public long RoundTrips { get; set; }
    public long Bytes { get; set; }
    public long Searches { get; set; }
    public double ModelledKdnetSeconds { get; set; }

    /// <summary>The figures of a command run so far (KDNET seconds rounded to 0.1 ms).</summary>
    public static ReadFigures From(ReadStats s) => new()
    {
        RoundTrips = s.RoundTrips, Bytes = s.Bytes, Searches = s.Searches,
        ModelledKdnetSeconds = Math.Round(s.ModelledKdnetSeconds, 4),
    };
}
