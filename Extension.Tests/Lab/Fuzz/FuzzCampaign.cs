using System.Diagnostics;
using System.Text.Json;

namespace NtSleuth.Lab.Fuzz;

/// <summary>A kernel sample of make-samples' manifest.json: its dump, symbol folder and commands.</summary>
public sealed record FuzzSample(string Name, string Dump, string SymbolPath, IReadOnlyList<string> Commands)
{
    /// <summary>The kernel samples of OUTDIR/manifest.json (user-mode minidumps are not mutated by this tier).</summary>
    public static List<FuzzSample> FromManifest(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "manifest.json")));
        var list = new List<FuzzSample>();
        foreach (var s in doc.RootElement.GetProperty("samples").EnumerateArray())
        {
            if (s.GetProperty("kind").GetString() != "kernel") continue;
            list.Add(new FuzzSample(s.GetProperty("name").GetString()!, Path.Combine(dir, s.GetProperty("dump").GetString()!),
                Path.Combine(dir, s.GetProperty("symbolPath").GetString()!), [.. s.GetProperty("commands").EnumerateArray().Select(c => c.GetString()!)]));
        }
        return list;
    }
}

/// <summary>What to run: mutants per sample from a first seed, strategies in turn, and all modes or one rotating mode.</summary>
public sealed record FuzzPlan
{
    public int MutantsPerSample { get; init; } = 200;
    public int FirstSeed { get; init; } = 1;
    public IReadOnlyList<MutationStrategy> Strategies { get; init; } = Enum.GetValues<MutationStrategy>();
    /// <summary>True: every command in all six (call path x output) combinations on every mutant; false: one combination per
    /// command and mutant, rotating, so each combination gets a sixth of the mutants.</summary>
    public bool AllModes { get; init; }
    /// <summary>Commands to leave out (prefix match), e.g. to fit a time budget.</summary>
    public IReadOnlyList<string> ExcludeCommands { get; init; } = [];

    public static readonly (CallPath, FuzzOutput)[] Combinations =
        [.. from p in Enum.GetValues<CallPath>() from o in Enum.GetValues<FuzzOutput>() select (p, o)];

    public IEnumerable<(MutationStrategy Strategy, int Seed, List<FuzzInvocation> Invocations)> For(FuzzSample s)
    {
        var commands = s.Commands.Where(c => !ExcludeCommands.Any(x => c.StartsWith(x, StringComparison.Ordinal))).ToList();
        for (int i = 0; i < MutantsPerSample; i++)
        {
            var inv = new List<FuzzInvocation>();
            for (int k = 0; k < commands.Count; k++)
            {
                if (AllModes) inv.AddRange(Combinations.Select(c => new FuzzInvocation(commands[k], c.Item1, c.Item2)));
                else { var (p, o) = Combinations[(i + k) % Combinations.Length]; inv.Add(new FuzzInvocation(commands[k], p, o)); }
            }
            yield return (Strategies[i % Strategies.Count], FirstSeed + i, inv);
        }
    }
}

/// <summary>Mutates, writes, runs and cleans up, a batch at a time (mutant files are deleted unless they failed).</summary>
public static class FuzzCampaign
{
    public static List<FuzzResult> Run(FuzzEngine engine, IReadOnlyList<FuzzSample> samples, FuzzPlan plan, string workDir, TextWriter? progress = null, bool keepAll = false)
    {
        Directory.CreateDirectory(workDir);
        var sw = Stopwatch.StartNew();
        var chunks = new List<(FuzzSample Sample, DumpMutator Mutator, (MutationStrategy Strategy, int Seed, List<FuzzInvocation> Invocations)[] Items)>();
        foreach (var s in samples)
        {
            var mutator = new DumpMutator(s.Name, File.ReadAllBytes(s.Dump));
            progress?.WriteLine($"[fuzz] {s.Name}: {mutator.DataPageCount} data pages mutable, {mutator.TablePageCount} page-table pages kept");
            foreach (var c in plan.For(s).Chunk(Math.Max(1, engine.BatchSize))) chunks.Add((s, mutator, c));
        }
        // Engine processes side by side (each one is mostly single-threaded); results keep the plan's order.
        var perChunk = new List<FuzzResult>[chunks.Count];
        var prog = progress is null ? null : TextWriter.Synchronized(progress);
        Parallel.For(0, chunks.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, engine.Workers) }, i =>
        {
            var (s, mutator, items) = chunks[i];
            var cases = new List<FuzzCase>();
            foreach (var (strategy, seed, inv) in items)
            {
                var m = mutator.Mutate(strategy, seed);
                string path = Path.Combine(workDir, m.Id + ".dmp");
                File.WriteAllBytes(path, m.Dump);
                cases.Add(new FuzzCase(m, path, s.SymbolPath, inv));
            }
            var r = FuzzRunner.Run(engine, cases, prog);
            perChunk[i] = r;
            var failed = r.Where(x => x.Class is not (FuzzClass.Ok or FuzzClass.NotRun)).Select(x => x.Case.DumpPath).ToHashSet();
            if (!keepAll) foreach (var c in cases) if (!failed.Contains(c.DumpPath)) try { File.Delete(c.DumpPath); } catch { }
        });
        var results = perChunk.SelectMany(x => x).ToList();
        progress?.WriteLine($"[fuzz] {results.Count} runs on {results.Select(r => r.Case.Mutant.Id).Distinct().Count()} mutants in {sw.Elapsed.TotalSeconds:F0} s ({engine.Workers} engine process(es) at a time)");
        return results;
    }
}
