using System.Diagnostics;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Samples;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Tests.LabTests;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The end-to-end tier's one source of lab samples: each (scenario, variant, scale, build, dump kind) is written once
/// per test run, into its own folder under one per-process temp root, and handed out to every class that asks
/// (<see cref="CatalogSample.Dump"/> and <see cref="CatalogSample.SymbolPath"/> are absolute paths here). A sample
/// the maker skipped is remembered with the maker's reason, so every caller sees the same answer. Tests must treat the
/// files as read-only (write mutants next to them under a name of their own). The root is deleted once, after the whole
/// tier (<see cref="EndToEndTierTeardown"/>); NTSLEUTH_KEEP_SAMPLES=1 keeps it for a look by hand.
/// </summary>
public static class LabSamples
{
    private sealed record Entry(CatalogSample? Sample, string Log, double Seconds)
    {
        /// <summary>The test classes that asked for it (each wrote its own copy before this cache).</summary>
        public readonly HashSet<string> Classes = [];
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(string Scenario, string Variant, int Scale, string Build, KernelDumpKind Kind), Entry> Made = new();
    private static SymbolForge? _forge;
    private static string? _root;

    /// <summary>The per-process folder every sample of this run is written under.</summary>
    public static string Root => _root ??= Path.Combine(Path.GetTempPath(), $"ntsleuth-e2e-samples-{Environment.ProcessId}");

    /// <summary>
    /// The real engine and the lab build the samples are written for: skips (or fails under NTSLEUTH_REQUIRE_E2E=1) when
    /// the engine cannot run, when ../shared's symbol tables are not on this machine, or when this build's table is not.
    /// </summary>
    public static LabBuild Build(string key)
    {
        RealEngine.Require();
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        return LabBuilds.TryGet(key) ?? throw new IgnoreException($"no {key} symbol table under ../shared/realdata/isf/ntkrnlmp.pdb");
    }

    /// <summary>One sample (made now or taken from this run's cache); null with the maker's log line when it was not written.</summary>
    public static CatalogSample? TryGet(LabBuild build, string scenario, out string log, string variant = "", int scale = 1,
        KernelDumpKind kind = KernelDumpKind.Complete)
    {
        var key = (scenario, variant, Math.Max(1, scale), build.Key, kind);
        Entry e;
        lock (Gate)
        {
            if (!Made.TryGetValue(key, out e!))
            {
                _forge ??= new SymbolForge(ForgeTestEnv.Tools());
                string dir = Path.Combine(Root, $"{build.Key}-{kind}".ToLowerInvariant(), $"{scenario}{(variant == "" ? "" : "-" + variant)}{(scale > 1 ? $"-x{scale}" : "")}");
                var sw = Stopwatch.StartNew();
                var w = new StringWriter();
                var made = CatalogSampleMaker.Make(dir, _forge, [build], [ScenarioCatalog.Get(scenario)], kind, w, variants: [variant], scale: scale);
                var s = made.SingleOrDefault();
                s = s is null ? null : s with { Dump = Path.Combine(dir, s.Dump), SymbolPath = Path.Combine(dir, s.SymbolPath) };
                Made[key] = e = new Entry(s, w.ToString().TrimEnd(), sw.Elapsed.TotalSeconds);
                TestContext.Progress.WriteLine($"[samples] {e.Log} ({e.Seconds:F1} s)");
            }
            e.Classes.Add(TestContext.CurrentContext.Test.ClassName ?? "?");
        }
        log = e.Log;
        return e.Sample;
    }

    /// <summary>One sample; fails the test with the maker's log when it was not written.</summary>
    public static CatalogSample Get(LabBuild build, string scenario, string variant = "", int scale = 1, KernelDumpKind kind = KernelDumpKind.Complete) =>
        TryGet(build, scenario, out var log, variant, scale, kind) ?? throw new AssertionException($"no {scenario}{(variant == "" ? "" : " " + variant)} sample on {build.Label}:\n{log}");

    /// <summary>
    /// A sample by the name the maker gives it, "&lt;scenario&gt;[-&lt;variant&gt;]-&lt;build&gt;" (pool-leak-19041,
    /// fltmgr-frame-order-fixed-7601): skips as <see cref="Build"/> does; fails the test with the maker's log when no
    /// catalogue scenario has that variant or the maker did not write it.
    /// </summary>
    public static CatalogSample Named(string name)
    {
        int dash = name.LastIndexOf('-');
        var build = Build(name[(dash + 1)..]);
        string stem = name[..dash];
        var match = ScenarioCatalog.All.SelectMany(sc => sc.SampleVariants.Select(v => (sc, v)))
            .FirstOrDefault(x => (x.v == "" ? x.sc.Name : $"{x.sc.Name}-{x.v}") == stem);
        if (match.sc is null) throw new AssertionException($"make-samples wrote no sample {name}: no catalogue scenario or variant '{stem}'");
        return TryGet(build, match.sc.Name, out var log, match.v) ?? throw new AssertionException($"make-samples wrote no sample {name}\n{log}");
    }

    private static readonly Dictionary<string, (string Dump, string Sym)> UserMade = new();

    /// <summary>A user-mode sample (the scenario's full-memory minidump + its forged publics), written once per run under
    /// <paramref name="name"/>: skips when the engine cannot run (the user samples need no ../shared symbol table).</summary>
    public static (string Dump, string Sym) User(string name, Func<DhcpLeaseScenario> scenario)
    {
        RealEngine.Require();
        lock (Gate)
        {
            if (UserMade.TryGetValue(name, out var made)) return made;
            var (dump, sym, _) = scenario().WriteSample(Path.Combine(Root, "user", name), name, _forge ??= new SymbolForge(ForgeTestEnv.Tools()));
            return UserMade[name] = (dump, sym);
        }
    }

    /// <summary>What the cache did this run: samples written, seconds spent, and the samples (and seconds) it spared
    /// against every class writing its own copy.</summary>
    public static string Summary()
    {
        lock (Gate)
        {
            int made = Made.Count, spared = Made.Values.Sum(e => Math.Max(0, e.Classes.Count - 1));
            double spent = Made.Values.Sum(e => e.Seconds), saved = Made.Values.Sum(e => e.Seconds * Math.Max(0, e.Classes.Count - 1));
            return $"{made} sample(s) written in {spent:F1} s; {spared} more copies spared by sharing them between classes (~{saved:F1} s)";
        }
    }

    internal static void DeleteAll()
    {
        lock (Gate)
        {
            if (Made.Count > 0) TestContext.Progress.WriteLine($"[samples] {Summary()}");
            if (_root is not null && Environment.GetEnvironmentVariable("NTSLEUTH_KEEP_SAMPLES") != "1")
                try { Directory.Delete(_root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            Made.Clear();
            UserMade.Clear();
        }
    }
}

/// <summary>Runs once after every end-to-end class: the shared samples and the forge's temp caches are deleted.</summary>
[SetUpFixture]
public sealed class EndToEndTierTeardown
{
    [OneTimeTearDown]
    public void DeleteSamples()
    {
        LabSamples.DeleteAll();
        ForgeTestEnv.Cleanup();
    }
}
