namespace NtSleuth.Lab.Fuzz;

/// <summary>
/// <c>NtSleuth.Lab fuzz</c>: a corrupted-memory campaign on make-samples' kernel samples in the real engine
/// (scripts/fuzz.sh fills in the engine, host and package paths).
/// </summary>
public static class FuzzCli
{
    public const string Usage = """
usage: NtSleuth.Lab fuzz --samples DIR --engine WINDIR --host ENGINEHOST.EXE --dll WINPATH\ntsleuth.dll [--wine WINE64]
                         [--mutants N (200)] [--seed S (1)] [--strategies flip,pointer,zero,unicodelength,markup]
                         [--only NAME[,NAME]] [--exclude-command PREFIX] [--all-modes] [--batch N (25)]
                         [--timeout-ms MS (120000)] [--workers N (2)] [--work DIR] [--keep] [--env K=V]...
       one mutant = (sample, strategy, seed): the same triple always gives the same bytes
""";

    public static int Run(string[] args)
    {
        string? samples = null, engineDir = null, host = null, dll = null, wine = null, work = null;
        var plan = new FuzzPlan();
        var only = new List<string>();
        var exclude = new List<string>();
        var env = new Dictionary<string, string>();
        int batch = 25, timeout = 120_000, workers = 2;
        bool keep = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--samples": samples = Next(); break;
                case "--engine": engineDir = Next(); break;
                case "--host": host = Next(); break;
                case "--dll": dll = Next(); break;
                case "--wine": wine = Next(); break;
                case "--work": work = Next(); break;
                case "--mutants": plan = plan with { MutantsPerSample = int.Parse(Next()) }; break;
                case "--seed": plan = plan with { FirstSeed = int.Parse(Next()) }; break;
                case "--strategies": plan = plan with { Strategies = [.. Next().Split(',').Select(x => Enum.Parse<MutationStrategy>(x, true))] }; break;
                case "--only": only.AddRange(Next().Split(',')); break;
                case "--exclude-command": exclude.Add(Next()); break;
                case "--all-modes": plan = plan with { AllModes = true }; break;
                case "--batch": batch = int.Parse(Next()); break;
                case "--timeout-ms": timeout = int.Parse(Next()); break;
                case "--keep": keep = true; break;
                case "--workers": workers = int.Parse(Next()); break;
                case "--env": { var kv = Next(); int eq = kv.IndexOf('='); env[kv[..eq]] = kv[(eq + 1)..]; break; }
                default: Console.Error.WriteLine($"fuzz: unknown option '{args[i]}'\n{Usage}"); return 2;
            }
        }
        if (samples is null || engineDir is null || host is null || dll is null) { Console.Error.WriteLine(Usage); return 2; }
        plan = plan with { ExcludeCommands = exclude };
        var list = FuzzSample.FromManifest(samples).Where(s => only.Count == 0 || only.Any(o => s.Name.Contains(o, StringComparison.Ordinal))).ToList();
        if (list.Count == 0) { Console.Error.WriteLine($"fuzz: no kernel sample in {samples}/manifest.json matches"); return 2; }
        var engine = new FuzzEngine
        {
            Wine = wine, HostExe = host, EngineDir = engineDir, ExtensionDll = dll, WinPath = p => wine is null ? Path.GetFullPath(p) : "Z:" + Path.GetFullPath(p).Replace('/', '\\'),
            Environment = env, BatchSize = batch, CommandTimeoutMs = timeout, Workers = workers,
        };
        work ??= Path.Combine(Path.GetTempPath(), $"ntsleuth-fuzz-{Environment.ProcessId}");
        var results = FuzzCampaign.Run(engine, list, plan, work, Console.Error, keep);
        Console.Write(FuzzRunner.Report(results, 200));
        Console.WriteLine($"failing mutants kept in {work}");
        return results.Any(r => r.Class is not (FuzzClass.Ok or FuzzClass.Unopenable)) ? 3 : 0;
    }
}
