using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Bench;

/// <summary>
/// The reads the manual procedure a command replaces would make (the built-in commands of the seed: !thread, !alpc,
/// dt, !poolused, ...), as KD packets (<see cref="KdnetModel.Packets"/> per request, the same rule as the command's own
/// counters) and bytes. Build it with <see cref="ManualProcedureBuilder"/>.
/// </summary>
public sealed record ManualProcedure(string Description, long RoundTrips, long Bytes)
{
    /// <summary>Every request the replayed steps sent to the lab target (address, length), below the engine-cache model; null without a target.</summary>
    public IReadOnlyList<(ulong Address, int Length)>? TransportLog { get; init; }
    /// <summary>Packets and bytes of the hand-modelled steps (<see cref="ManualProcedureBuilder.Step"/>), not replayed at real addresses.</summary>
    public long ModelledRoundTrips { get; init; }
    public long ModelledBytes { get; init; }

    public double KdnetSeconds => KdnetModel.Seconds(RoundTrips, Bytes);
}

/// <summary>
/// Accumulates the modelled reads of a manual procedure step by step, counted as the commands' own reads are: each
/// request of N bytes is <see cref="KdnetModel.Packets"/>(N) KD packets. With a target, <see cref="Read"/> and
/// <see cref="Search"/> go through a <see cref="TargetMemory"/> standing for the engine's cache on a stopped target:
/// bytes read once (or pages searched once) are not transferred again, exactly as the command's cache counts its side.
/// </summary>
public sealed class ManualProcedureBuilder
{
    private long _rt, _bytes;
    private readonly List<string> _steps = new();
    private readonly TargetMemory? _engine;

    public ManualProcedureBuilder() { }

    /// <summary>A builder whose <see cref="Read"/>/<see cref="Search"/> steps go through the engine-cache model over <paramref name="target"/>.</summary>
    public ManualProcedureBuilder(NtSleuth.Commands.Target.ITarget target)
    {
        // The lab's target logs every request, so tests can recount this side from the transport (BenchCountsBothSidesTheSameWay).
        if (target is NtSleuth.Lab.Target.InMemoryTarget lab) lab.ReadLog ??= new();
        _engine = new TargetMemory(target);
    }

    /// <summary>The engine-cache model (null without a target).</summary>
    public TargetMemory? Engine => _engine;

    /// <summary>A debugger command that makes <paramref name="requests"/> requests moving <paramref name="bytes"/> bytes in total (evenly).</summary>
    public ManualProcedureBuilder Step(string command, long requests, long bytes, int times = 1)
    {
        long per = requests <= 0 ? 0 : (bytes + requests - 1) / requests;
        _rt += Math.Max(requests, 0) * KdnetModel.Packets(per) * times; _bytes += bytes * times;
        _steps.Add(times == 1 ? command : $"{times} x {command}");
        return this;
    }

    /// <summary>`dt`/`dx` of one structure: one request of its size (the engine reads the whole type).</summary>
    public ManualProcedureBuilder Dt(string what, ulong size, int times = 1) => Step($"dt {what}", 1, (long)size, times);

    /// <summary>A list walk by hand (dt -l / !list): one request per entry of <paramref name="entrySize"/> bytes.</summary>
    public ManualProcedureBuilder Walk(string what, int entries, ulong entrySize) =>
        Step($"walk {what}", entries, entries * (long)entrySize);

    /// <summary>One read at a real address through the engine-cache model (needs the target constructor). Returns the bytes, null when unreadable.</summary>
    public byte[]? Read(ulong address, int size)
    {
        var e = _engine ?? throw new InvalidOperationException("Read needs the ManualProcedureBuilder(ITarget) constructor");
        return e.ReadExact(address, size);
    }

    /// <summary>A named step of real reads (recorded in the description).</summary>
    public ManualProcedureBuilder Note(string command) { _steps.Add(command); return this; }

    /// <summary>`s -a` over a range through the engine-cache model: the engine reads the range's pages not read before.</summary>
    public ulong? Search(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        var e = _engine ?? throw new InvalidOperationException("Search needs the ManualProcedureBuilder(ITarget) constructor");
        return e.Search(start, length, pattern);
    }

    public ManualProcedure Build() =>
        new(string.Join("; ", _steps), _rt + (_engine?.Stats.Packets ?? 0), _bytes + (_engine?.Stats.TransferBytes ?? 0))
        {
            TransportLog = (_engine?.Target as NtSleuth.Lab.Target.InMemoryTarget)?.ReadLog,
            ModelledRoundTrips = _rt, ModelledBytes = _bytes,
        };
}

/// <summary>
/// One benchmark: a command run on a scenario at several scales, with the manual procedure it replaces. Implementations
/// (public, parameterless constructor) anywhere in the lab assembly are discovered by reflection; command helpers add
/// theirs under Extension.Tests/Lab/Bench/Cases/ or next to their scenario.
/// </summary>
public interface IBenchCase
{
    /// <summary>Command name without "!" ("alpcchain").</summary>
    string Command { get; }
    /// <summary>Scenario name in <see cref="ScenarioCatalog"/>.</summary>
    string Scenario { get; }
    /// <summary>Build keys to run on (first available is used when <see cref="LabBuilds"/> lacks some).</summary>
    IReadOnlyList<string> Builds { get; }
    IReadOnlyList<int> Scales { get; }
    /// <summary>Scenario variant (e.g. "scattered"); null = the default layout.</summary>
    string? Variant => null;
    /// <summary>Arguments for the command on this scenario instance (e.g. the hang thread's address).</summary>
    string Arguments(ScenarioResult scenario);
    /// <summary>Modelled reads of the manual procedure on this instance.</summary>
    ManualProcedure Manual(ScenarioResult scenario);
}

/// <summary>One row; RoundTrips are KD packets on both sides (see <see cref="KdnetModel"/>).</summary>
public sealed record BenchRow(string Command, string Scenario, string Build, int Scale, long RoundTrips, long Bytes, double KdnetSeconds,
    long ManualRoundTrips, long ManualBytes, double ManualSeconds, int HResult, double WallMs, string Note)
{
    /// <summary>How many times faster than the manual procedure (modelled KDNET time); 0 when unknown.</summary>
    public double Ratio => KdnetSeconds > 0 ? ManualSeconds / KdnetSeconds : 0;
}

public static class BenchRunner
{
    public static IReadOnlyList<IBenchCase> Discover(params Assembly[] assemblies)
    {
        if (assemblies.Length == 0) assemblies = [typeof(BenchRunner).Assembly];
        var list = new List<IBenchCase>();
        foreach (var asm in assemblies)
            foreach (var t in asm.GetTypes())
                if (typeof(IBenchCase).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false } && t.GetConstructor(Type.EmptyTypes) is not null)
                    list.Add((IBenchCase)Activator.CreateInstance(t)!);
        return list.OrderBy(c => c.Command, StringComparer.Ordinal).ThenBy(c => c.Scenario, StringComparer.Ordinal).ToList();
    }

    /// <summary>Runs one case at one scale on one build through <see cref="CommandDispatcher.Run"/> with a <see cref="ReadStats"/>.</summary>
    public static BenchRow RunOne(IBenchCase c, LabBuild build, int scale)
    {
        var scenario = ScenarioCatalog.Build(c.Scenario, build, new ScenarioOptions { Scale = scale, Variant = c.Variant });
        var target = scenario.CreateTarget();
        var stats = new ReadStats();
        var sink = new BufferSink();
        string args = c.Arguments(scenario);
        var sw = Stopwatch.StartNew();
        int hr = CommandDispatcher.Run(c.Command, args, target, sink, stats);
        sw.Stop();
        var manual = c.Manual(scenario);
        string note = hr == CommandDispatcher.S_OK ? "" : FirstLine(sink.Errors);
        return new BenchRow(c.Command, c.Variant is null ? c.Scenario : $"{c.Scenario} ({c.Variant})", build.Key, scale, stats.Packets, stats.TransferBytes, stats.ModelledKdnetSeconds,
            manual.RoundTrips, manual.Bytes, manual.KdnetSeconds, hr, sw.Elapsed.TotalMilliseconds, note);
    }

    private static string FirstLine(string s)
    {
        s = s.Trim();
        int i = s.IndexOf('\n');
        return i < 0 ? s : s[..i];
    }

    public static List<BenchRow> Run(IEnumerable<IBenchCase> cases, string? command = null, string? scenario = null, string? buildKey = null,
        IReadOnlyList<int>? scales = null, TextWriter? log = null)
    {
        var rows = new List<BenchRow>();
        foreach (var c in cases)
        {
            if (command is not null && !string.Equals(c.Command, command, StringComparison.OrdinalIgnoreCase)) continue;
            if (scenario is not null && !string.Equals(c.Scenario, scenario, StringComparison.OrdinalIgnoreCase)) continue;
            var builds = buildKey is not null ? [buildKey] : c.Builds;
            var build = builds.Select(LabBuilds.TryGet).FirstOrDefault(b => b is not null);
            if (build is null) { log?.WriteLine($"skip {c.Command}/{c.Scenario}: none of {string.Join(",", builds)} available"); continue; }
            foreach (int scale in scales ?? c.Scales)
            {
                try { rows.Add(RunOne(c, build, scale)); }
                catch (Exception ex)
                {
                    rows.Add(new BenchRow(c.Command, c.Scenario, build.Key, scale, 0, 0, 0, 0, 0, 0, CommandDispatcher.E_FAIL, 0,
                        $"scenario failed: {ex.GetType().Name}: {ex.Message}"));
                }
            }
        }
        return rows;
    }

    /// <summary>The one table: command, scenario, scale, round trips, bytes, modelled KDNET s, manual round trips/bytes/s, ratio.</summary>
    public static string Format(IReadOnlyList<BenchRow> rows)
    {
        var ci = CultureInfo.InvariantCulture;
        var header = new[] { "command", "scenario", "build", "scale", "RT (packets)", "bytes", "KDNET s", "manual RT", "manual bytes", "manual s", "ratio", "note" };
        var table = rows.Select(r => new[]
        {
            "!" + r.Command, r.Scenario, r.Build, r.Scale + "x",
            r.RoundTrips.ToString("N0", ci), r.Bytes.ToString("N0", ci), r.KdnetSeconds.ToString("0.000", ci),
            r.ManualRoundTrips.ToString("N0", ci), r.ManualBytes.ToString("N0", ci), r.ManualSeconds.ToString("0.000", ci),
            // Two decimals below 10x, so a row at parity shows which side wins (1.01x, 0.99x).
            r.Ratio > 0 ? r.Ratio.ToString(r.Ratio < 10 ? "0.00" : "0.0", ci) + "x" : "-", r.Note,
        }).ToList();
        var sb = new StringBuilder();
        if (table.Count == 0)
        {
            sb.Append("no bench cases ran (commands register an IBenchCase as they land)\n");
            return sb.ToString();
        }
        var widths = header.Select((h, i) => Math.Max(h.Length, table.Max(r => r[i].Length))).ToArray();
        bool[] right = [false, false, false, true, true, true, true, true, true, true, true, false];
        void Line(string[] cells)
        {
            for (int i = 0; i < cells.Length; i++)
            {
                if (i > 0) sb.Append("  ");
                sb.Append(right[i] ? cells[i].PadLeft(widths[i]) : cells[i].PadRight(widths[i]));
            }
            sb.Append('\n');
        }
        Line(header);
        Line(widths.Select(w => new string('-', w)).ToArray());
        foreach (var r in table) Line(r);
        sb.Append($"KDNET model (both sides): round trips (RT) are KD packets: a read request of N bytes = ceil(N / {KdnetModel.MaxPacketData:N0}) KD packets, {KdnetModel.SecondsPerRoundTrip * 1000:0} ms per packet + bytes at {KdnetModel.BytesPerSecond / 1e6:0} MB/s;\n");
        sb.Append("searches charged as the pages they transfer; the engine's cache on a stopped target: nothing is read twice; ratio = manual s / command s (< 1.0x: the manual way is faster).\n");
        return sb.ToString().Replace(" \n", "\n");
    }
}

/// <summary>
/// Bench rows measured by a command's own harness (when its scenario needs more than one command run per row, e.g.
/// !alpcchain's chain and -all, or !leaktag's module-count scaling). Discovered by reflection like <see cref="IBenchCase"/>.
/// </summary>
public interface IBenchRowSource
{
    string Command { get; }
    IEnumerable<BenchRow> Rows(string? buildKey, IReadOnlyList<int>? scales);
}

public static class BenchRowSources
{
    public static IReadOnlyList<IBenchRowSource> Discover() =>
        typeof(BenchRowSources).Assembly.GetTypes()
            .Where(t => !t.IsAbstract && typeof(IBenchRowSource).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (IBenchRowSource)Activator.CreateInstance(t)!)
            .OrderBy(s => s.Command, StringComparer.Ordinal).ToList();

    public static BenchRow Row(string command, string scenario, string build, int scale, long rt, long bytes, long mrt, long mbytes, string note = "") =>
        new(command, scenario, build, scale, rt, bytes, KdnetModel.Seconds(rt, bytes), mrt, mbytes, KdnetModel.Seconds(mrt, mbytes), 0, 0, note);
}
