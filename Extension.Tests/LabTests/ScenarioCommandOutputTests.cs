using System.Security.Cryptography;
using System.Text;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>
/// Every command's results on every lab scenario (each build, each sample variant), text and DML, with its HRESULT and
/// read counts, pinned by a digest per run in Golden/scenario-command-outputs.txt. A lab change that must not change
/// behaviour (one struct writer, one layout converter, one target) keeps every line; a change meant to alter results
/// regenerates the file (NTSLEUTH_UPDATE_GOLDEN=1) and the diff shows which runs moved.
/// </summary>
[TestFixture]
public class ScenarioCommandOutputTests
{
    private static string GoldenPath => Path.Combine(TestPaths.RepoRoot, "Extension.Tests", "LabTests", "Golden", "scenario-command-outputs.txt");

    /// <summary>One line per run: scenario/variant/build, command line, HRESULT, round trips, bytes, digest of text+DML output.</summary>
    internal static List<string> Runs()
    {
        var lines = new List<string>();
        foreach (var s in ScenarioCatalog.All)
            foreach (var build in LabBuilds.All.Where(s.Supports))
                foreach (var variant in s.SampleVariants)
                {
                    var opts = new ScenarioOptions { Variant = variant == "" ? null : variant };
                    var r = s.Build(build, opts);
                    var commands = r.Commands.Select(c => c.TrimStart('!'))
                        .Concat(CommandRegistry.All.Select(c => c.Name))   // every command, bare, on every scenario
                        .Distinct(StringComparer.OrdinalIgnoreCase).ToList();
                    foreach (var line in commands)
                    {
                        int sp = line.IndexOf(' ');
                        string name = sp < 0 ? line : line[..sp], args = sp < 0 ? "" : line[(sp + 1)..];
                        lines.Add($"{s.Name}/{(variant == "" ? "-" : variant)}/{build.Key}\t!{line}\t{RunTwice(name, args, r.CreateTarget)}");
                    }
                }
        // The ndis/fltmgr scenarios as the unit tests build them (standalone targets over the layout table, every label).
        if (SharedData.LayoutsFile is { } layouts)
            foreach (var label in new[] { NdisFltmgrLayouts.Win7, NdisFltmgrLayouts.Win81, NdisFltmgrLayouts.V1607, NdisFltmgrLayouts.V2004, NdisFltmgrLayouts.V20H2, NdisFltmgrLayouts.Win11 })
            {
                var standalone = new (string Name, Func<InMemoryTarget> Make, string[] Commands)[]
                {
                    ("ndis-seed", () => NdisScenario.Seed(layouts, label).Target, ["nblowners", $"nblowners -owner {NdisScenario.MiniportAddr:x}"]),
                    ("ndis-tracking-off", () => NdisScenario.SeedTrackingOff(layouts, label).Target, ["nblowners"]),
                    ("fltmgr-broken", () => FltmgrScenario.SeedBroken(layouts, label).Target, ["frameorder"]),
                    ("fltmgr-fixed", () => FltmgrScenario.SeedFixed(layouts, label).Target, ["frameorder"]),
                    ("fltmgr-no-legacy", () => FltmgrScenario.NoLegacy(layouts, label).Target, ["frameorder"]),
                };
                foreach (var (sname, make, cmds) in standalone)
                    foreach (var line in cmds)
                    {
                        int sp = line.IndexOf(' ');
                        string name = sp < 0 ? line : line[..sp], args = sp < 0 ? "" : line[(sp + 1)..];
                        string result;
                        try { make(); result = RunTwice(name, args, make); }
                        catch (Exception e) { result = $"scenario not built: {e.GetType().Name}: {e.Message}"; }
                        lines.Add($"{sname}/{label}\t!{line}\t{result}");
                    }
            }
        return lines;
    }

    /// <summary>Runs a command in text and in DML mode on fresh targets: HRESULT, round trips, bytes and a digest of both outputs.</summary>
    private static string RunTwice(string name, string args, Func<ITarget> target)
    {
        var sb = new StringBuilder();
        long rt = 0, bytes = 0; int hr = 0;
        foreach (bool dml in new[] { false, true })
        {
            var sink = new BufferSink(dml);
            var stats = new ReadStats();
            hr = CommandDispatcher.Run(name, args, target(), sink, stats);
            sb.Append(sink.Text).Append('\u0001').Append(sink.Errors).Append('\u0002');
            if (!dml) { rt = stats.RoundTrips; bytes = stats.Bytes; }
        }
        string digest = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..16];
        return $"hr=0x{hr:x8}\trt={rt}\tbytes={bytes}\t{digest}";
    }

    [Test]
    public void EveryCommandOnEveryScenarioKeepsItsResults()
    {
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        var now = Runs();
        if (Environment.GetEnvironmentVariable("NTSLEUTH_UPDATE_GOLDEN") == "1")
        {
            File.WriteAllLines(GoldenPath, now);
            Assert.Pass($"wrote {now.Count} runs to {GoldenPath}");
        }
        Assert.That(File.Exists(GoldenPath), $"{GoldenPath} is missing (NTSLEUTH_UPDATE_GOLDEN=1 writes it)");
        var golden = File.ReadAllLines(GoldenPath).Where(l => l.Length > 0).ToList();
        var changed = now.Except(golden).ToList();
        var gone = golden.Except(now).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(changed, Is.Empty, "runs whose results changed or are new:\n" + string.Join("\n", changed.Take(30)));
            Assert.That(gone, Is.Empty, "golden runs no longer produced the same:\n" + string.Join("\n", gone.Take(30)));
            Assert.That(now.Count, Is.GreaterThan(50), "every scenario x build x variant x command");
        });
    }
}
