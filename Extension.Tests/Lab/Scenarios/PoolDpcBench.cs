using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>One benchmark row: the command's reads over the in-memory target and the modelled manual procedure.</summary>
public sealed record BenchFigures(string Command, string Scenario, long RoundTrips, long Bytes, long ManualRoundTrips, long ManualBytes)
{
    public double Seconds => KdnetModel.Seconds(RoundTrips, Bytes);
    public double ManualSeconds => KdnetModel.Seconds(ManualRoundTrips, ManualBytes);
    public double Ratio => Seconds == 0 ? 0 : ManualSeconds / Seconds;
    public override string ToString() =>
        $"{Command,-18} {Scenario,-44} {RoundTrips,7} {Bytes,12:N0} {Seconds,8:0.000} s | manual {ManualRoundTrips,7} {ManualBytes,13:N0} {ManualSeconds,8:0.000} s | {Ratio,6:0.0}x";
}

/// <summary>
/// Bench cases of !leaktag and !dpcblame at seed scale and scaled up (about 10x and 100x objects), for the lab's
/// bench harness (scripts/bench.sh). Each case runs the real command through the dispatcher with read counters.
/// </summary>
public static class PoolDpcBench
{
    public static IEnumerable<BenchFigures> Run(string build = PoolDpcBuilds.Win10)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build) ?? throw new InvalidOperationException($"symbol table {build} not found under ../shared/realdata/isf");
        foreach (var (mods, big, label) in new[] { (3, 4096, "seed: 6 modules, 4K big pages"), (30, 16384, "10x: 33 modules, 16K big pages"), (150, 65536, "100x: 153 modules (~100 MB), 64K big pages") })
        {
            var s = new PoolLeakScenario(new LabKernel(nt, build), 4, mods, big);
            var (rt, bytes) = RunCommand("leaktag", "Leak", s.Kernel.CreateTarget());
            var (mrt, mb) = s.ManualProcedureCost();
            yield return new BenchFigures("!leaktag Leak", label, rt, bytes, mrt, mb);
        }
        foreach (var f in Dpc(build, [(2, 0, false, "seed: 2 CPUs, 7 DPCs"), (8, 93, false, "10x: 8 CPUs, 100 DPCs"), (64, 993, false, "100x: 64 CPUs, 1,000 DPCs")]))
            yield return f;
    }

    /// <summary>
    /// !leaktag Leak with every page of every image present (a live target or a complete dump; the default rows map only
    /// the drivers' headers, so unreadable pages flatter the command): both sides read every image byte they search.
    /// </summary>
    public static IEnumerable<BenchFigures> RunImagesPresent(string build = PoolDpcBuilds.Win10, double? exceptionDirectoryShare = null)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build) ?? throw new InvalidOperationException($"symbol table {build} not found under ../shared/realdata/isf");
        foreach (var (mods, big, label) in new[] { (3, 4096, "images present, seed: 6 modules, 4K big pages"), (30, 16384, "images present, 10x: 33 modules, 16K big pages"), (150, 65536, "images present, 100x: 153 modules, 64K big pages") })
        {
            var s = new PoolLeakScenario(new LabKernel(nt, build), 4, mods, big);
            s.MakeImagesPresent(exceptionDirectoryShare);
            var (rt, bytes) = RunCommand("leaktag", "Leak", s.Kernel.CreateTarget());
            var (mrt, mb) = s.ManualProcedureCost();
            yield return new BenchFigures("!leaktag Leak", label, rt, bytes, mrt, mb);
        }
    }

    /// <summary>!dpcblame with the KDPCs scattered over pool pages (one per page, random offsets), at seed scale, 10x and 100x.</summary>
    public static IEnumerable<BenchFigures> RunScattered(string build = PoolDpcBuilds.Win10) =>
        Dpc(build, [(2, 30, true, "scattered: 2 CPUs, 37 DPCs"), (8, 363, true, "scattered 10x: 8 CPUs, 370 DPCs"), (64, 3693, true, "scattered 100x: 64 CPUs, 3,700 DPCs")]);

    private static IEnumerable<BenchFigures> Dpc(string build, (int Cpus, int Dpcs, bool Scatter, string Label)[] cases)
    {
        var nt = PoolDpcBuilds.TryLoadNt(build) ?? throw new InvalidOperationException($"symbol table {build} not found under ../shared/realdata/isf");
        foreach (var (cpus, dpcs, scatter, label) in cases)
        {
            var s = new DpcWatchdogScenario(new LabKernel(nt, build, 0xfffff803_09400000), 0, cpus, true, dpcs, scatterDpcs: scatter);
            var (rt, bytes) = RunCommand("dpcblame", "", s.Kernel.CreateTarget());
            var (mrt, mb) = s.ManualProcedureCost();
            yield return new BenchFigures("!dpcblame", label, rt, bytes, mrt, mb);
        }
    }

    private static (long, long) RunCommand(string name, string args, InMemoryTarget t)
    {
        var stats = new ReadStats();
        var sink = new BufferSink();
        int hr = CommandDispatcher.Run(name, args, t, sink, stats);
        if (hr != 0) throw new InvalidOperationException($"!{name} {args} failed: {sink.Errors}");
        return (stats.Packets, stats.TransferBytes);
    }
}
