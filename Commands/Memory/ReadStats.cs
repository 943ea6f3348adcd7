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
    public void Reset() { RoundTrips = Bytes = Searches = CacheHits = 0; }

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
