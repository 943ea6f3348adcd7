using NtSleuth.Lab.Bench;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab;

public static class Program
{
    private const string Usage = """
usage: NtSleuth.Lab make-samples <outdir>
       NtSleuth.Lab bench [--command NAME] [--scenario NAME] [--build KEY] [--scales 1,10,100]
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
