using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab;

public static class Program
{
    private const string Usage = """
usage: NtSleuth.Lab make-samples <outdir>
       NtSleuth.Lab bench [--command NAME] [--scenario NAME] [--build KEY] [--scales 1,10,100]
       NtSleuth.Lab trace --scenario NAME [--variant V] [--build KEY] [--scale N] [--] <command> [args]
                                   (every read request of one command run, in order: address, length, KD packets)
       NtSleuth.Lab json-schemas <dir>   (writes docs/schema/ntsleuth.<command>.json)
       NtSleuth.Lab scenarios      (list scenarios and the builds they support)
       NtSleuth.Lab forge ...      (symbol forge: see 'forge --help')
       NtSleuth.Lab fuzz ...       (corrupted-memory campaign in the real engine: scripts/fuzz.sh)
""";

    public static int Main(string[] args)
    {
        if (args.Length == 0) { Console.Error.WriteLine(Usage); return 2; }
        try
        {
            return args[0] switch
            {
                "bench" => Bench(args[1..]),
                "trace" => Trace(args[1..]),
                "forge" => Forge.ForgeCli.Run(args[1..]),
                "fuzz" => Fuzz.FuzzCli.Run(args[1..]),
                "make-samples" => Samples.SampleMaker.Run(args[1..]),
                "scenarios" => Scenarios(),
                "json-schemas" => args.Length == 2 ? JsonSchemaFiles(args[1]) : UsageError("json-schemas needs a folder"),
                _ => UsageError($"unknown verb '{args[0]}'"),
            };
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"NtSleuth.Lab {args[0]}: {ex.GetType().Name}: {ex.Message}");
            return 1;
        }
    }

    private static int UsageError(string msg)
    {
        Console.Error.WriteLine(msg);
        Console.Error.WriteLine(Usage);
        return 2;
    }

    private static int JsonSchemaFiles(string dir)
    {
        Directory.CreateDirectory(dir);
        foreach (var c in NtSleuth.Commands.Cli.JsonSchemas.ModelTypes.Keys)
        {
            var path = Path.Combine(dir, NtSleuth.Commands.Cli.JsonReport.SchemaName(c) + ".json");
            File.WriteAllText(path, NtSleuth.Commands.Cli.JsonSchemas.Text(c));
            Console.WriteLine(path);
        }
        return 0;
    }

    private static int Scenarios()
    {
        if (LabBuilds.UnavailableReason is { } why) { Console.Error.WriteLine(why); return 1; }
        foreach (var s in ScenarioCatalog.All)
            Console.WriteLine($"{s.Name,-28} {(s.Seed == "" ? "-" : s.Seed),-40} {string.Join(" ", LabBuilds.All.Where(s.Supports).Select(b => b.Key))}");
        return 0;
    }

    /// <summary>Runs one command on one scenario and prints each read request that reached the target (below the command's cache).</summary>
    private static int Trace(string[] args)
    {
        string? scenario = null, variant = null, build = null; int scale = 1; int i = 0;
        for (; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            if (args[i] == "--") { i++; break; }
            if (!args[i].StartsWith("--")) break;
            switch (args[i])
            {
                case "--scenario": scenario = Next(); break;
                case "--variant": variant = Next(); break;
                case "--build": build = Next(); break;
                case "--scale": scale = int.Parse(Next()); break;
                default: return UsageError($"trace: unknown option '{args[i]}'");
            }
        }
        if (scenario is null || i >= args.Length) return UsageError("trace needs --scenario and a command");
        if (LabBuilds.UnavailableReason is { } why) { Console.Error.WriteLine($"trace: {why}"); return 1; }
        var b = LabBuilds.TryGet(build ?? "win10") ?? throw new ArgumentException($"build {build} not available");
        var s = ScenarioCatalog.Build(scenario, b, new ScenarioOptions { Scale = scale, Variant = variant });
        var t = s.CreateTarget();
        t.ReadLog = new();
        var stats = new NtSleuth.Commands.Memory.ReadStats();
        var sink = new NtSleuth.Commands.Output.BufferSink();
        int hr = NtSleuth.Commands.Cli.CommandDispatcher.Run(args[i].TrimStart('!'), string.Join(' ', args[(i + 1)..]), t, sink, stats);
        long packets = 0;
        foreach (var (a, n) in t.ReadLog)
        {
            long p = NtSleuth.Commands.Memory.KdnetModel.Packets(n);
            packets += p;
            Console.WriteLine($"{a:x16} {n,7} {p,4} {packets,8}");
        }
        Console.Error.Write(sink.All);
        Console.WriteLine($"hr 0x{hr:x8}; {stats}");
        return hr == 0 ? 0 : 3;
    }

    private static int Bench(string[] args)
    {
        string? command = null, scenario = null, build = null; List<int>? scales = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--command": command = Next().TrimStart('!'); break;
                case "--scenario": scenario = Next(); break;
                case "--build": build = Next(); break;
                case "--scales": scales = Next().Split(',').Select(x => int.Parse(x.TrimEnd('x', 'X'))).ToList(); break;
                default: return UsageError($"bench: unknown option '{args[i]}'");
            }
        }
        if (LabBuilds.UnavailableReason is { } why) { Console.Error.WriteLine($"bench: {why}"); return 1; }
        var cases = BenchRunner.Discover();
        var rows = BenchRunner.Run(cases, command, scenario, build, scales, Console.Error);
        // Commands whose bench rows come from their own harness (several command runs per row).
        foreach (var src in BenchRowSources.Discover())
        {
            if (command is not null && !src.Command.Split(',').Contains(command)) continue;
            if (scenario is not null) continue;
            try { rows.AddRange(src.Rows(build, scales)); }
            catch (Exception ex) { Console.Error.WriteLine($"bench: {src.Command}: {ex.Message}"); }
        }
        Console.Write(BenchRunner.Format(rows));
        return rows.Any(r => r.HResult != 0) ? 3 : 0;
    }
}
