using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>!alpcchain rows (seed chain and -all, at each scale) in the lab's bench table.</summary>
public sealed class AlpcChainBenchSource : IBenchRowSource
{
    public string Command => "alpcchain";

    public IEnumerable<BenchRow> Rows(string? buildKey, IReadOnlyList<int>? scales)
    {
        foreach (var key in buildKey is null ? new[] { "win7", "win10" } : new[] { buildKey })
        {
            var build = LabBuilds.TryGet(key);
            if (build is null) continue;
            foreach (int scale in scales ?? [1])
                foreach (var r in AlpcChainBench.Run(build, scale))
                    yield return BenchRowSources.Row("alpcchain", r.Case, build.Key, scale, r.RoundTrips, r.Bytes, r.ManualRoundTrips, r.ManualBytes,
                        $"manual: {r.ManualCommands} debugger commands");
            // Threads, ports and messages scattered over pool pages (other allocations between them), seed scale to 100x.
            foreach (int scale in scales ?? [1, 10, 100])
                foreach (var r in AlpcChainBench.Run(build, scale, "scattered"))
                    yield return BenchRowSources.Row("alpcchain", r.Case, build.Key, scale, r.RoundTrips, r.Bytes, r.ManualRoundTrips, r.ManualBytes,
                        $"manual: {r.ManualCommands} debugger commands");
        }
    }
}

/// <summary>!workqueue rows: the seed-003 Delayed WorkQueue (18,023 scattered items, 20 workers) vs the seed's hand walk.</summary>
public sealed class WorkQueueBenchSource : IBenchRowSource
{
    public string Command => "workqueue";

    public IEnumerable<BenchRow> Rows(string? buildKey, IReadOnlyList<int>? scales)
    {
        foreach (var key in buildKey is null ? new[] { "win7", "win10" } : new[] { buildKey })
        {
            var build = LabBuilds.TryGet(key);
            if (build is null || !SeedWorkQueues.Supports(build)) continue;
            foreach (var (variant, name) in AlpcChainBench.WorkQueueLayouts)
            {
                var r = AlpcChainBench.WorkQueueRow(build, variant, name);
                yield return BenchRowSources.Row("workqueue", r.Case, build.Key, 1, r.RoundTrips, r.Bytes, r.ManualRoundTrips, r.ManualBytes,
                    $"manual: dt of the queue, !list with dq+dps per item, !thread per worker ({r.ManualCommands} commands)");
            }
        }
    }
}

/// <summary>!leaktag and !dpcblame rows (seed, ~10x, ~100x objects) in the lab's bench table.</summary>
public sealed class PoolDpcBenchSource : IBenchRowSource
{
    public string Command => "leaktag,dpcblame";

    public IEnumerable<BenchRow> Rows(string? buildKey, IReadOnlyList<int>? scales) =>
        PoolDpcBench.Run(buildKey is null ? PoolDpcBuilds.Win10 : MapBuild(buildKey))
            .Concat(PoolDpcBench.RunScattered(buildKey is null ? PoolDpcBuilds.Win10 : MapBuild(buildKey)))
            .Concat(PoolDpcBench.RunImagesPresent(buildKey is null ? PoolDpcBuilds.Win10 : MapBuild(buildKey)))
            .Select(f => BenchRowSources.Row(f.Command.TrimStart('!'), f.Scenario, buildKey ?? "win10", 1, f.RoundTrips, f.Bytes, f.ManualRoundTrips, f.ManualBytes));

    private static string MapBuild(string key) => LabBuilds.TryGet(key)?.GuidAge ?? key;
}
