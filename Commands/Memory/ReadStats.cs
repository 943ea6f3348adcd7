namespace NtSleuth.Commands.Memory;

/// <summary>
/// What reached the target (after caching), counted as KDNET moves it: each read request of N bytes is
/// <see cref="KdnetModel.Packets"/>(N) KD packets (at most <see cref="KdnetModel.MaxPacketData"/> bytes each, one round
/// trip each); a search is charged as the engine reading the pages it covers (see docs/bench.md).
/// </summary>
public sealed class ReadStats
{
    /// <summary>Engine requests: read requests plus searches (what the command asked the engine for).</summary>
    public long RoundTrips { get; private set; }
    /// <summary>Bytes the read requests moved (searches not included; see <see cref="TransferBytes"/>).</summary>
    public long Bytes { get; private set; }
    /// <summary>KD packets = KDNET round trips: each read request split at <see cref="KdnetModel.MaxPacketData"/> bytes, plus the searches' page reads.</summary>
    public long Packets { get; private set; }
    public long Searches { get; private set; }
    /// <summary>Pages the searches transfer (the engine reads the searched range; see docs/bench.md).</summary>
    public long SearchPages { get; private set; }
    public long CacheHits { get; private set; }
    /// <summary>Bytes over the link: read bytes plus searched pages.</summary>
    public long TransferBytes => Bytes + SearchPages * KdnetModel.PageSize;

    public void AddRead(long bytes) { RoundTrips++; Packets += KdnetModel.Packets(bytes); Bytes += bytes; }

    /// <summary>A search: charged as the engine reading the <paramref name="pages"/> pages of the range it has not read yet, in one request.</summary>
    public void AddSearch(long pages)
    {
        RoundTrips++; Searches++;
        SearchPages += pages;
        Packets += KdnetModel.Packets(pages * KdnetModel.PageSize);
    }

    public void AddHit() => CacheHits++;
    public void Reset() { RoundTrips = Bytes = Packets = Searches = SearchPages = CacheHits = 0; }

    /// <summary>Modelled KDNET time: 1 ms per KD packet plus the transferred bytes at 2 MB/s.</summary>
    public double ModelledKdnetSeconds => KdnetModel.Seconds(Packets, TransferBytes);

    public override string ToString() =>
        $"{RoundTrips} round trips = {Packets} KD packets, {TransferBytes:N0} bytes{(Searches > 0 ? $" ({Searches} searches over {SearchPages:N0} pages)" : "")}, modelled KDNET {ModelledKdnetSeconds:0.000} s";
}

/// <summary>
/// The KDNET cost model shared by the commands' -stats and the lab bench (both sides of every comparison): a KD read
/// packet carries at most 3,944 bytes of data (4,000-byte packet, 56-byte header) and each packet is a round trip of
/// about 1 ms; the link moves about 2 MB/s.
/// </summary>
public static class KdnetModel
{
    public const double SecondsPerRoundTrip = 0.001;
    public const double BytesPerSecond = 2_000_000;
    public const int MaxPacketData = 3944;
    public const int PageSize = 0x1000;

    public static double Seconds(long packets, long bytes) => packets * SecondsPerRoundTrip + bytes / BytesPerSecond;

    /// <summary>KD packets of one read request of <paramref name="bytes"/> bytes (at least one).</summary>
    public static long Packets(long bytes) => bytes <= 0 ? 1 : (bytes + MaxPacketData - 1) / MaxPacketData;

    /// <summary>4 KB pages overlapping [start, start+length).</summary>
    public static long PagesCovering(ulong start, ulong length)
    {
        if (length == 0) return 0;
        ulong first = start / PageSize, last = (start + length - 1) / PageSize;
        return (long)(last - first + 1);
    }
}
