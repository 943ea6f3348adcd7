using System.Text.Json.Nodes;
using Moq;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// Issue 21 item 3: in -json mode every outcome is exactly one JSON document with schema, version, status and
/// findings, valid against docs/schema/ntsleuth.&lt;command&gt;.json; -out writes it to a file.
/// </summary>
[TestFixture]
public class JsonReportTests
{
    private static readonly string[] Builds = ["7601", "19041"];

    /// <summary>Parses the whole output as one JSON value (trailing text fails) and validates it against the command's schema.</summary>
    private static JsonObject OneDocument(string command, BufferSink sink)
    {
        Assert.That(sink.Errors, Is.Empty, "in -json mode nothing goes to the error channel");
        JsonNode? node = null;
        Assert.DoesNotThrow(() => node = JsonNode.Parse(sink.Text), "output is not exactly one JSON document:\n" + sink.Text);
        var doc = node as JsonObject ?? throw new AssertionException("not a JSON object: " + sink.Text);
        var errors = JsonSchemaValidator.Validate(doc, JsonSchemas.For(command));
        Assert.That(errors, Is.Empty, $"!{command} document does not match its schema:\n{string.Join("\n", errors)}\n{sink.Text}");
        Assert.That(doc["schema"]!.GetValue<string>(), Is.EqualTo("ntsleuth." + command));
        Assert.That(doc["version"]!.GetValue<int>(), Is.EqualTo(JsonReport.Version));
        return doc;
    }

    [TestCaseSource(typeof(JsonSchemas), nameof(JsonSchemas.ModelTypes))]
    public void CommittedSchemaIsTheGeneratedOne(KeyValuePair<string, Type> command)
    {
        var path = Path.Combine(TestPaths.RepoRoot, "docs", "schema", JsonReport.SchemaName(command.Key) + ".json");
        Assert.That(File.Exists(path), Is.True, $"{path} missing: dotnet run --project Extension.Tests/Lab -- json-schemas docs/schema");
        Assert.That(File.ReadAllText(path), Is.EqualTo(JsonSchemas.Text(command.Key)),
            $"{path} is stale: dotnet run --project Extension.Tests/Lab -- json-schemas docs/schema");
    }

    public static IEnumerable<TestCaseData> CatalogCases() =>
        ScenarioCatalog.All.SelectMany(s => Builds.Select(b => new TestCaseData(s.Name, b).SetName($"CatalogScenarioJsonMatchesSchema({s.Name},{b})")));

    /// <summary>Every lab scenario's sample commands (every variant) write one schema-valid document; seeds have findings.</summary>
    [TestCaseSource(nameof(CatalogCases))]
    public void CatalogScenarioJsonMatchesSchema(string scenario, string build)
    {
        var lb = LabBuilds.TryGet(build);
        if (lb is null) Assert.Ignore($"lab build {build} unavailable: {LabBuilds.UnavailableReason}");
        var sc = ScenarioCatalog.Get(scenario);
        if (!sc.Supports(lb!)) Assert.Ignore($"{scenario} does not support {lb!.Label}");
        int runs = 0;
        bool seedFinding = false;
        foreach (var variant in sc.SampleVariants)
        {
            ScenarioResult r;
            try { r = sc.Build(lb!, variant == "" ? ScenarioOptions.Default : new ScenarioOptions { Variant = variant }); }
            catch (FileNotFoundException e) { Assert.Ignore($"{scenario}: lab data missing: {e.Message}"); return; }
            foreach (var line in r.Commands)
            {
                var name = line.TrimStart('!').Split(' ')[0];
                var sink = new BufferSink();
                int rc = CommandDispatcher.Run(name, line[(name.Length + 1)..] + " -json -stats", r.CreateTarget(), sink);
                var doc = OneDocument(name, sink);
                Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("ok"), sink.Text);
                Assert.That(rc, Is.Zero);
                Assert.That(doc["readStats"]!["roundTrips"]!.GetValue<long>(), Is.GreaterThan(0));
                var findings = doc["findings"]!.AsArray();
                if (variant == "" && findings.Any(f => f!["severity"]!.GetValue<string>() is "error" or "critical" or "warning")) seedFinding = true;
                foreach (var f in findings)
                {
                    // Each finding's detail is a JSON pointer into the same document.
                    JsonNode? n = doc;
                    foreach (var part in f!["detail"]!.GetValue<string>().Split('/', StringSplitOptions.RemoveEmptyEntries))
                        n = n is JsonArray a ? a[int.Parse(part)] : n?[part];
                    Assert.That(n, Is.Not.Null, $"finding {f["id"]} points at {f["detail"]}, which is not in the document");
                }
                runs++;
            }
        }
        Assert.That(runs, Is.GreaterThan(0), "the scenario has no commands");
        if (sc.Seed != "") Assert.That(seedFinding, Is.True, $"{scenario} ({sc.Seed}): no command reported a finding of warning or above");
    }

    /// <summary>The user-mode DHCP sample (seed 000) and its healthy twin: one valid document; the seed is an error finding.</summary>
    [TestCase(true)]
    [TestCase(false)]
    public void DhcpScenarioJsonMatchesSchema(bool seed)
    {
        var b = (seed ? NtSleuth.Lab.Scenarios.DhcpLeaseScenario.Seed() : NtSleuth.Lab.Scenarios.DhcpLeaseScenario.EightDays()).Build();
        var sink = new BufferSink();
        Assert.That(CommandDispatcher.Run("dhcptimer", "-json", b.Target, sink), Is.Zero, sink.All);
        var doc = OneDocument("dhcptimer", sink);
        Assert.That(doc["severity"]!.GetValue<string>(), Is.EqualTo(seed ? "error" : "none"));
        if (seed) Assert.That(doc["findings"]![0]!["detail"]!.GetValue<string>(), Is.EqualTo("/adapters/0"));
    }

    [TestCase("nblowners", "-json", "error", CommandDispatcher.E_FAIL)]
    [TestCase("frameorder", "-json", "error", CommandDispatcher.E_FAIL)]
    [TestCase("dhcptimer", "-json", "error", CommandDispatcher.E_FAIL)]
    [TestCase("leaktag", "-nosuch -json", "usageError", CommandDispatcher.E_INVALIDARG)]
    [TestCase("leaktag", "-json \"unterminated", "usageError", CommandDispatcher.E_INVALIDARG)]
    [TestCase("alpcchain", "nosuchsymbol!x -json", "usageError", CommandDispatcher.E_INVALIDARG)]
    [TestCase("dpcblame", "-? -json", "help", 0)]
    public void EveryOutcomeIsOneDocument(string command, string args, string status, int hr)
    {
        var lb = LabBuilds.TryGet("19041") ?? LabBuilds.TryGet("7601");
        if (lb is null) Assert.Ignore($"no lab build: {LabBuilds.UnavailableReason}");
        var r = ScenarioCatalog.Build("baseline-kernel", lb!);
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run(command, args, r.CreateTarget(), sink);
        var doc = OneDocument(command, sink);
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo(status), sink.Text);
        Assert.That(rc, Is.EqualTo(hr));
        if (status != "ok") Assert.That(doc["error"]!["message"]!.GetValue<string>(), Is.Not.Empty);
    }

    /// <summary>No ndis / fltmgr on the target (no module, no symbols): "notApplicable", not an error.</summary>
    [TestCase("nblowners")]
    [TestCase("frameorder")]
    public void ModuleNotLoadedIsNotApplicable(string command)
    {
        var target = new Mock<ITarget> { DefaultValue = DefaultValue.Mock };
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run(command, "-json", target.Object, sink);
        var doc = OneDocument(command, sink);
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("notApplicable"), sink.Text);
        Assert.That(doc["error"]!["message"]!.GetValue<string>(), Does.Contain("not loaded"));
        Assert.That(rc, Is.Zero);
    }

    [Test]
    public void InternalErrorCaughtByTheBarrierIsADocument()
    {
        var target = new Mock<ITarget>();
        target.Setup(t => t.Info).Throws(new InvalidOperationException("boom from the target"));
        target.Setup(t => t.IsInterruptRequested).Returns(false);
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run("leaktag", "-json", target.Object, sink);
        var doc = OneDocument("leaktag", sink);
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("internalError"));
        Assert.That(doc["error"]!["message"]!.GetValue<string>(), Does.Contain("boom from the target"));
        Assert.That(rc, Is.EqualTo(CommandDispatcher.E_FAIL));
        // The same failure in text mode stays a text line on the error channel.
        var text = new BufferSink();
        CommandDispatcher.Run("leaktag", "", target.Object, text);
        Assert.That(text.Errors, Does.Contain("internal error").And.Contain("boom from the target"));
    }

    [Test]
    public void HostBarrierFailureIsADocumentInJsonMode()
    {
        var sink = new BufferSink();
        int rc = CommandDispatcher.ReportHostFailure("frameorder", "-v -json", sink, new InvalidOperationException("no target"));
        var doc = OneDocument("frameorder", sink);
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("internalError"));
        Assert.That(doc["error"]!["message"]!.GetValue<string>(), Does.Contain("no target"));
        Assert.That(rc, Is.EqualTo(CommandDispatcher.E_FAIL));
        var text = new BufferSink();
        CommandDispatcher.ReportHostFailure("frameorder", "-v", text, new InvalidOperationException("no target"));
        Assert.That(text.Text, Is.Empty);
        Assert.That(text.Errors, Does.Contain("internal error in !frameorder").And.Contain("no target"));
    }

    [Test]
    public void UnknownCommandInJsonMode()
    {
        var sink = new BufferSink();
        int rc = CommandDispatcher.Run("nosuch", "-json", new Mock<ITarget>().Object, sink);
        var doc = JsonNode.Parse(sink.Text)!.AsObject();
        Assert.That(doc["status"]!.GetValue<string>(), Is.EqualTo("usageError"));
        Assert.That(doc["error"]!["kind"]!.GetValue<string>(), Is.EqualTo("unknownCommand"));
        Assert.That(rc, Is.EqualTo(CommandDispatcher.E_INVALIDARG));
    }

    [Test]
    public void OutWritesTheDocumentToAFile()
    {
        var dir = Directory.CreateTempSubdirectory("ntsleuth-out-");
        try
        {
            // -json -out: the document goes to the file, nothing to the debugger.
            var file = Path.Combine(dir.FullName, "lease.json");
            var sink = new BufferSink();
            int rc = CommandDispatcher.Run("dhcptimer", $"-lease 86400 -json -out \"{file}\"", new Mock<ITarget>().Object, sink);
            Assert.That(rc, Is.Zero, sink.All);
            Assert.That(sink.All, Is.Empty);
            var fileSink = new BufferSink();
            fileSink.Write(File.ReadAllText(file), false);
            var doc = OneDocument("dhcptimer", fileSink);
            Assert.That(doc["lease"], Is.Not.Null);
            Assert.That(Directory.GetFiles(dir.FullName), Has.Length.EqualTo(1), "no temporary file left behind");

            // Text mode -out: the plain text goes to the file and one line says where.
            var txt = Path.Combine(dir.FullName, "lease.txt");
            var tsink = new BufferSink(prefersDml: true);
            rc = CommandDispatcher.Run("dhcptimer", $"-lease 86400 -out {txt}", new Mock<ITarget>().Object, tsink);
            Assert.That(rc, Is.Zero, tsink.All);
            Assert.That(tsink.Text.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(tsink.Text, Does.Contain("output written to " + txt));
            Assert.That(File.ReadAllText(txt), Does.Contain("T1").And.Not.Contain("<exec"));

            // A file that cannot be written: the document comes to the debugger with outFileError, and the run fails.
            var bad = Path.Combine(dir.FullName, "no", "such", "dir", "x.json");
            var bsink = new BufferSink();
            rc = CommandDispatcher.Run("dhcptimer", $"-lease 86400 -json -out {bad}", new Mock<ITarget>().Object, bsink);
            doc = OneDocument("dhcptimer", bsink);
            Assert.That(doc["outFileError"]!.GetValue<string>(), Does.Contain("x.json"));
            Assert.That(rc, Is.EqualTo(CommandDispatcher.E_FAIL));
        }
        finally { dir.Delete(true); }
    }

    [Test]
    public void ValidatorRejectsWrongDocuments()
    {
        var schema = JsonSchemas.For("dhcptimer");
        var sink = new BufferSink();
        CommandDispatcher.Run("dhcptimer", "-lease 86400 -json", new Mock<ITarget>().Object, sink);
        var good = JsonNode.Parse(sink.Text)!.AsObject();
        Assert.That(JsonSchemaValidator.Validate(good, schema), Is.Empty);
        var wrongSchema = good.DeepClone().AsObject(); wrongSchema["schema"] = "ntsleuth.leaktag";
        var unknownField = good.DeepClone().AsObject(); unknownField["surprise"] = 1;
        var missing = good.DeepClone().AsObject(); missing.Remove("status");
        var badStatus = good.DeepClone().AsObject(); badStatus["status"] = "fine";
        var badType = good.DeepClone().AsObject(); badType["findings"] = "none";
        foreach (var d in new[] { wrongSchema, unknownField, missing, badStatus, badType })
            Assert.That(JsonSchemaValidator.Validate(d, schema), Is.Not.Empty, d.ToJsonString());
    }

    [Test]
    public void SeverityParsesAndOrders()
    {
        Assert.That(Findings.TryParse("ERROR", out var s) && s == Severity.Error, Is.True);
        Assert.That(Findings.TryParse("bogus", out _), Is.False);
        Assert.That(Severity.Critical > Severity.Error && Severity.Error > Severity.Warning && Severity.Warning > Severity.Info, Is.True);
    }
}
