using System.Reflection;
using NtSleuth.Lab.Target;

namespace NtSleuth.Lab.Scenario;

/// <summary>Options every scenario accepts. <see cref="Scale"/> multiplies object counts (1 = seed scale; bench uses 10, 100).</summary>
public sealed record ScenarioOptions
{
    public int Scale { get; init; } = 1;
    /// <summary>Free-form variant name ("fixed", "tracking-off", ...) for scenarios with variants.</summary>
    public string? Variant { get; init; }
    public static ScenarioOptions Default { get; } = new();
}

/// <summary>What a scenario built: the builder (memory, symbols, facts) and a fresh in-memory target over it.</summary>
public sealed class ScenarioResult
{
    public ScenarioResult(string name, KernelScenarioBuilder builder, ScenarioOptions options)
    {
        Name = name; Builder = builder; Options = options;
    }

    public string Name { get; }
    public KernelScenarioBuilder Builder { get; }
    public ScenarioOptions Options { get; }
    public LabBuild Build => Builder.Build;
    public SparseMemory Memory => Builder.Memory;
    /// <summary>Named addresses/values for tests ("hangThread", "leakTagAllocations", ...).</summary>
    public IDictionary<string, ulong> Facts => Builder.Facts;
    /// <summary>Commands a user would run on this scenario ("!alpcchain fffffa8073d3d770") - for samples and bench.</summary>
    public List<string> Commands { get; } = new();

    public ulong Fact(string name) => Facts.TryGetValue(name, out var v) ? v
        : throw new KeyNotFoundException($"scenario {Name} on {Build.Key} has no fact '{name}' (has: {string.Join(", ", Facts.Keys)})");

    /// <summary>A new target over the scenario memory (own counters and faults).</summary>
    public InMemoryTarget CreateTarget() => Builder.CreateTarget();
}

/// <summary>
/// A scenario kernel (or user process). Implementations live under Extension.Tests/Lab/Scenarios/ and are discovered by
/// reflection: a public non-abstract class with a parameterless constructor.
/// </summary>
public interface IScenario
{
    /// <summary>Unique name, e.g. "baseline-kernel", "logon-hang-alpc".</summary>
    string Name { get; }
    /// <summary>Seed file in ../shared/seeds/ this reproduces (or "" for generic scenarios).</summary>
    string Seed { get; }
    /// <summary>True when every type/field/symbol the scenario needs exists on the build.</summary>
    bool Supports(LabBuild build);
    ScenarioResult Build(LabBuild build, ScenarioOptions options);
    /// <summary>Variants make-samples writes ("" = the default); a variant's sample is named scenario-variant-build.</summary>
    IReadOnlyList<string> SampleVariants => [""];
}

/// <summary>All scenarios in the lab assembly (and any extra assemblies registered), by name.</summary>
public static class ScenarioCatalog
{
    private static readonly Lazy<IReadOnlyList<IScenario>> _all = new(() => Discover(typeof(ScenarioCatalog).Assembly));

    public static IReadOnlyList<IScenario> All => _all.Value;

    public static IScenario? Find(string name) => All.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase));

    public static IScenario Get(string name) => Find(name)
        ?? throw new KeyNotFoundException($"no scenario '{name}' (known: {string.Join(", ", All.Select(s => s.Name))})");

    /// <summary>Builds a scenario by name on a build (error naming both when unsupported).</summary>
    public static ScenarioResult Build(string name, LabBuild build, ScenarioOptions? options = null)
    {
        var s = Get(name);
        if (!s.Supports(build)) throw new NotSupportedException($"scenario '{name}' does not support {build.Label}");
        return s.Build(build, options ?? ScenarioOptions.Default);
    }

    /// <summary>Names for [TestCaseSource] (works without ../shared).</summary>
    public static IEnumerable<string> Names => All.Select(s => s.Name);

    public static IReadOnlyList<IScenario> Discover(params Assembly[] assemblies)
    {
        var list = new List<IScenario>();
        foreach (var asm in assemblies)
        {
            Type[] types;
            try { types = asm.GetTypes(); } catch (ReflectionTypeLoadException e) { types = e.Types.Where(t => t is not null).ToArray()!; }
            foreach (var t in types)
                if (typeof(IScenario).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false } && t.GetConstructor(Type.EmptyTypes) is not null)
                    list.Add((IScenario)Activator.CreateInstance(t)!);
        }
        var dup = list.GroupBy(s => s.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new InvalidOperationException($"two scenarios are named '{dup.Key}': {string.Join(", ", dup.Select(s => s.GetType().FullName))}");
        return list.OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
    }
}
