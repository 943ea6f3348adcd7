using System.Diagnostics;
using System.Text.Json.Nodes;
using NtSleuth.Commands.Cli;
using NtSleuth.Lab.Scenario;
using NtSleuth.Tests.LabTests;
using NtSleuth.Tests.Unit;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Issue 19: scripts/triage (scripts/triage.py + scripts/ntsleuth-triage.txt) on a sample folder in the real engine
/// under wine: every seed's finding is in triage.jsonl, a broken dump is an error that does not stop the run, a second
/// run resumes (skips what is done), the HTML report parses (Python's html.parser) and opens in a headless browser with one row per dump (sorting by a column works) and every
/// finding link resolving, and the exit status gates on --fail-on. Linux only (Windows runs scripts/triage.ps1 with cdb).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class TriageRunnerTests
{
    private string? _dir;

    [OneTimeTearDown]
    public void Cleanup()
    {
        ForgeTestEnv.Cleanup();
        if (_dir is not null) try { Directory.Delete(_dir, true); } catch { }
    }

    private static (int Exit, string Out) Sh(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = TestPaths.RepoRoot };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(600_000)) { p.Kill(true); Assert.Fail($"{file} did not finish in 10 minutes"); }
        return (p.ExitCode, o + err.Result);
    }

    private static Dictionary<string, JsonObject> Records(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, "triage.jsonl")).Where(l => l.Trim().Length > 0)
            .Select(l => JsonNode.Parse(l)!.AsObject()).ToDictionary(r => r["id"]!.GetValue<string>());

    [Test]
    public void TriagesTheSampleFolderResumesAndReports()
    {
        if (RealEngine.IsWindows) Assert.Ignore("scripts/triage is the Linux runner (Windows: scripts/triage.ps1 with cdb.exe)");
        RealEngine.Require();
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        _dir = Path.Combine(Path.GetTempPath(), $"ntsleuth-triage-e2e-{Environment.ProcessId}");
        string samples = Path.Combine(_dir, "samples"), outDir = Path.Combine(_dir, "out");
        var sw = Stopwatch.StartNew();
        int made = NtSleuth.Lab.Samples.SampleMaker.Run([samples, "--builds", "19041,7601", "--scenarios", "dpc-watchdog,fltmgr-frame-order,logon-hang-alpc,dhcp-lease"]);
        Assert.That(made, Is.Zero, "make-samples failed");
        // dpc-watchdog and logon-hang on both builds would double the run: keep 7601 for the user-mode DHCP samples only.
        foreach (var f in Directory.GetFiles(Path.Combine(samples, "dumps"), "*-7601.dmp").Where(f => !Path.GetFileName(f).StartsWith("dhcp", StringComparison.Ordinal)))
            File.Delete(f);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(samples, "manifest.json")))!.AsObject();
        var kept = manifest["samples"]!.AsArray().Where(s => File.Exists(Path.Combine(samples, s!["dump"]!.GetValue<string>()))).Select(s => s!.DeepClone()).ToArray();
        manifest["samples"] = new JsonArray(kept);
        File.WriteAllText(Path.Combine(samples, "manifest.json"), manifest.ToJsonString());
        // A dump the engine cannot open, found by its suffix (not in the manifest): reported, the run goes on.
        File.WriteAllText(Path.Combine(samples, "dumps", "broken.dmp"), "PAGEDU64 this is not a dump");
        int dumps = kept.Length + 1;
        TestContext.Progress.WriteLine($"[triage] {kept.Length} samples made in {sw.Elapsed.TotalSeconds:F1} s");

        string triage = Path.Combine(TestPaths.RepoRoot, "scripts", "triage");
        string[] common = [samples, "-o", outDir, "-j", "2", "--timeout", "300", "--config", TestPaths.Configuration, "--package", ExtensionPackage.Get(true)];
        sw.Restart();
        var (exit, output) = Sh(triage, [.. common, "--fail-on", "critical"]);
        TestContext.Out.WriteLine($"first run {sw.Elapsed.TotalSeconds:F1} s, exit {exit}\n{output}");
        Assert.That(exit, Is.EqualTo(2), "a dump that could not be triaged gives exit status 2\n" + output);
        Assert.That(output, Does.Contain($"{dumps}/{dumps} dumps").And.Contain("ETA"), "progress bar");

        var recs = Records(outDir);
        Assert.That(recs, Has.Count.EqualTo(dumps));
        Assert.That(recs["broken"]["status"]!.GetValue<string>(), Is.EqualTo("error"));
        Assert.That(recs["broken"]["errors"]!.ToJsonString(), Does.Contain("could not open the dump"));
        foreach (var (id, r) in recs.Where(kv => kv.Key != "broken"))
        {
            Assert.That(r["status"]!.GetValue<string>(), Is.EqualTo("ok"), $"{id}: {r["errors"]?.ToJsonString()}");
            foreach (var (cmd, doc) in r["commands"]!.AsObject())
                Assert.That(JsonSchemaValidator.Validate(doc, JsonSchemas.For(cmd)), Is.Empty, $"{id} !{cmd}");
        }
        string Findings(string id) => recs[id]["findings"]!.ToJsonString();
        Assert.That(recs["dpc-watchdog-19041"]["bugCheck"]!["code"]!.GetValue<string>(), Is.EqualTo("0x133"));
        Assert.That(recs["dpc-watchdog-19041"]["build"]!.GetValue<string>(), Is.EqualTo("19041"));
        Assert.That(Findings("dpc-watchdog-19041"), Does.Contain("ECHO!EchoEvtTimerFunc").And.Contain("\"critical\""));
        Assert.That(Findings("logon-hang-alpc-19041"), Does.Contain("DEADLOCK").And.Contain("\"alpcchain\""));
        Assert.That(Findings("fltmgr-frame-order-19041"), Does.Contain("AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99)"));
        Assert.That(recs["fltmgr-frame-order-fixed-19041"]["findings"]!.AsArray().Where(f => f!["command"]!.GetValue<string>() == "frameorder"), Is.Empty);
        Assert.That(recs["dhcp-lease-7601"]["kind"]!.GetValue<string>(), Is.EqualTo("user"));
        Assert.That(Findings("dhcp-lease-7601"), Does.Contain("renewal missed").And.Contain("\"dhcptimer\""));
        Assert.That(recs["dhcp-lease-8days-7601"]["severity"]!.GetValue<string>(), Is.EqualTo("none"));

        // The HTML report: parsed by Python's html.parser; one row per dump; every in-page link has its target.
        var check = Sh("python3", "-c", """
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(s): super().__init__(); s.rows = 0; s.ids = set(); s.links = []; s.tbody = False; s.headers = 0
    def handle_starttag(s, tag, attrs):
        a = dict(attrs)
        if "id" in a: s.ids.add(a["id"])
        if tag == "tbody": s.tbody = True
        if tag == "tr" and s.tbody: s.rows += 1
        if tag == "th": s.headers += 1
        if tag == "a" and a.get("href", "").startswith("#"): s.links.append(a["href"][1:])
    def handle_endtag(s, tag):
        if tag == "tbody": s.tbody = False
p = P(); p.feed(open(sys.argv[1], encoding="utf-8").read()); p.close()
missing = [l for l in p.links if l not in p.ids]
print(p.rows, p.headers, len(p.links), len(missing), missing[:3])
""", Path.Combine(outDir, "report.html"));
        Assert.That(check.Exit, Is.Zero, check.Out);
        var parts = check.Out.Split(' ', 5);
        Assert.That(int.Parse(parts[0]), Is.EqualTo(dumps), "table rows = dumps: " + check.Out);
        Assert.That(int.Parse(parts[2]), Is.GreaterThan(dumps), "finding and detail links: " + check.Out);
        Assert.That(int.Parse(parts[3]), Is.Zero, "links without a target: " + check.Out);
        Assert.That(File.ReadAllText(Path.Combine(outDir, "report.md")), Does.Contain("| dpc-watchdog-19041 |"));

        // The same page in a headless browser, its script run: one row per dump, and report.html?sort=dump re-sorts the
        // table by name (the page's own order is by severity, so this fails when the script does not run or sorts wrong).
        if (HeadlessBrowser.Missing() is { } noBrowser) Assert.Fail(noBrowser);
        string page = Path.Combine(outDir, "report.html");
        var firstCells = new System.Text.RegularExpressions.Regex(@"<tr class=""row""><td><a href=""#d\d+"">([^<]*)</a>");
        string asWritten = HeadlessBrowser.DumpDom(page);
        var written = firstCells.Matches(asWritten).Select(m => m.Groups[1].Value).ToList();
        Assert.That(asWritten, Does.Contain("data-ready=\"1\""), "the page's script did not run");
        Assert.That(written, Has.Count.EqualTo(dumps), "rows in the browser");
        string sorted = HeadlessBrowser.DumpDom(page, "?sort=dump");
        var byName = firstCells.Matches(sorted).Select(m => m.Groups[1].Value).ToList();
        Assert.That(sorted, Does.Contain("data-sorted-by=\"dump asc\""));
        Assert.That(byName, Is.EqualTo(written.Order(StringComparer.Ordinal).ToList()).Or.EqualTo(written.OrderBy(x => x, StringComparer.InvariantCulture).ToList()));
        Assert.That(byName, Is.Not.EqualTo(written), "the severity order of the page happens to be the name order: the sort test proves nothing");

        // Resume: the done dumps are skipped, the broken one is tried again; still one record per dump.
        var finished = recs.ToDictionary(kv => kv.Key, kv => kv.Value["finished"]!.GetValue<string>());
        sw.Restart();
        (exit, output) = Sh(triage, [.. common, "--fail-on", "critical"]);
        TestContext.Out.WriteLine($"resume {sw.Elapsed.TotalSeconds:F1} s, exit {exit}\n{output}");
        Assert.That(output, Does.Contain($"{dumps} dump(s), {dumps - 1} already done, 1 to run"));
        Assert.That(exit, Is.EqualTo(2));
        var again = Records(outDir);
        Assert.That(again, Has.Count.EqualTo(dumps));
        foreach (var (id, r) in again.Where(kv => kv.Key != "broken"))
            Assert.That(r["finished"]!.GetValue<string>(), Is.EqualTo(finished[id]), $"{id} was run again");

        // The script alone: "live" never resumes the target, "live-go" does (on a dump the engine answers that nothing
        // can run), without a folder it prints its usage.
        string script = RealEngine.WinPath(Path.Combine(TestPaths.RepoRoot, "scripts", "ntsleuth-triage.txt"));
        string live = Path.Combine(_dir, "live"), liveGo = Path.Combine(_dir, "live-go");
        Directory.CreateDirectory(live); Directory.CreateDirectory(liveGo);
        string[] liveCmds = [".load " + ExtensionPackage.DllWinPath(), $"$$>a<{script} {RealEngine.WinPath(live)} live",
                             $"$$>a<{script} {RealEngine.WinPath(liveGo)} live-go", $"$$>a<{script}"];
        var lr = RealEngine.Run(Path.Combine(samples, "dumps", "dhcp-lease-7601.dmp"), liveCmds,
            new EngineOptions { SymbolPath = Path.Combine(samples, "symbols", "dhcp-lease-7601"), Plain = true, TimeoutSeconds = 300 });
        Assert.That(lr[liveCmds[1]].Output, Does.Contain("@@ntsleuth run dhcptimer").And.Contain("@@ntsleuth done").And.Not.Contain("resuming"));
        Assert.That(File.Exists(Path.Combine(live, "dhcptimer.json")), Is.True);
        Assert.That(lr[liveCmds[2]].Output, Does.Contain("resuming the target (live-go)"));
        Assert.That(lr[liveCmds[3]].Output, Does.Contain("usage:"));

        // Without the broken dump the exit status gates on the findings' severity.
        File.Delete(Path.Combine(samples, "dumps", "broken.dmp"));
        Assert.That(Sh(triage, [.. common, "--fail-on", "critical"]).Exit, Is.EqualTo(1), "a critical finding with --fail-on critical");
        Assert.That(Sh(triage, [.. common]).Exit, Is.Zero, "no gate by default");
    }
}
