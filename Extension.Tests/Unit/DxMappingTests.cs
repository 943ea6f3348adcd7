using System.Text.Json.Nodes;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Extension.DataModel;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// The report -> data model mapping (issue 21 item 2) without the engine: a command's -json document becomes the
/// object dx shows, with PascalCase names, 64-bit fields as numbers and known kernel addresses as typed pointers.
/// </summary>
[TestFixture]
public class DxMappingTests
{
    [Test]
    public void EveryExportedCommandHasAMethod()
    {
        // Adding a command to the data model is one line in DataModelProvider.Commands; this fails until it is there.
        Assert.That(DataModelProvider.Commands.Select(c => c.Command), Is.SupersetOf(CommandRegistry.ExportedNames));
        foreach (var c in DataModelProvider.Commands)
        {
            Assert.That(CommandRegistry.Find(c.Command), Is.Not.Null, $"{c.Method} runs an unknown command {c.Command}");
            Assert.That(c.Method, Does.Match("^[A-Z][A-Za-z]+$"));
        }
        Assert.That(DataModelProvider.Commands.Select(c => c.Method), Is.Unique);
    }

    [Test]
    public void EveryTypedAddressIsAHexFieldOfItsSchema()
    {
        // The pointer type table names fields by (enclosing property, property): a renamed report field fails here.
        foreach (var (command, entries) in DxPointerTypes.ByCommand)
        {
            var shape = DxShape.For(command);
            foreach (var (parents, key, type) in entries)
                foreach (var p in parents.Split('|'))
                {
                    if (p == "*") Assert.That(shape.HexFields.Any(h => h.Key == key), $"{command}: no hex field named {key}");
                    else Assert.That(shape.IsHex(p, key), $"{command}: {p}.{key} is not a 0x... field of the schema");
                    Assert.That(type, Does.Match(@"^\w+!_\w+$"), $"{command}: {type} is not module!type");
                }
        }
    }

    [Test]
    public void NamesArePascalCaseAndHexOnlyWhereTheSchemaSaysSo()
    {
        var doc = JsonNode.Parse("""
            {"schema":"ntsleuth.alpcchain","status":"ok","mode":"thread","start":"0xfffffa8073d3d770",
             "chains":[{"waiterThreads":["0xfffffa8073d3d770"],"blocker":{"address":"0xfffffa8051435940","image":"0x1234","pid":1396,"waitSeconds":15700.518,"irpListPartial":false},
                        "hops":[]}]}
            """)!.AsObject();
        var root = DxMapping.Root(doc, "alpcchain");
        Assert.That(root.Members.Select(m => m.Name), Is.EqualTo(new[] { "Schema", "Status", "Mode", "Start", "Chains" }));
        Assert.That(root["Start"], Is.EqualTo(new DxAddress(0xfffffa8073d3d770, null)), "start is hex, its type depends on the mode");
        var chain = ((DxArray)root["Chains"]!).Item(0) as DxObject;
        Assert.That(chain, Is.Not.Null);
        var waiters = (DxArray)chain!["WaiterThreads"]!;
        Assert.That(waiters.Item(0), Is.EqualTo(new DxAddress(0xfffffa8073d3d770, "nt!_ETHREAD")));
        var blocker = (DxObject)chain["Blocker"]!;
        Assert.That(blocker["Address"], Is.EqualTo(new DxAddress(0xfffffa8051435940, "nt!_ETHREAD")));
        Assert.That(blocker["Image"], Is.EqualTo(new DxString("0x1234")), "a string from the target stays a string, even when it looks hex");
        Assert.That(blocker["Pid"], Is.EqualTo(new DxInteger(1396)));
        Assert.That(blocker["WaitSeconds"], Is.EqualTo(new DxDouble(15700.518)));
        Assert.That(blocker["IrpListPartial"], Is.EqualTo(new DxBool(false)));
        Assert.That(((DxArray)chain["Hops"]!).Count, Is.Zero);
        Assert.That(blocker["NoSuchField"], Is.Null);
    }

    [Test]
    public void ArgumentsAreTheCommandLine()
    {
        Assert.That(DataModelProvider.Arguments("AlpcChain", [0xfffffa8073d3d770UL]), Is.EqualTo("0xfffffa8073d3d770"));
        Assert.That(DataModelProvider.Arguments("LeakTag", ["Leak"]), Is.EqualTo("Leak"));
        Assert.That(DataModelProvider.Arguments("DhcpTimer", ["-lease 365.00:00:00"]), Is.EqualTo("-lease 365.00:00:00"));
        Assert.That(DataModelProvider.Arguments("NblOwners", []), Is.EqualTo(""));
        foreach (var bad in new[] { "-json", "Leak -out c:\\x.txt", "/dml", "-TEXT", "-stats" })
            Assert.That(() => DataModelProvider.Arguments("LeakTag", [bad]), Throws.Exception.With.Message.Contains("has no meaning in dx"), bad);
    }

    public static IEnumerable<TestCaseData> Scenarios() => ScenarioCatalog.All.Select(s => new TestCaseData(s.Name));

    /// <summary>Every lab scenario's documents (build 19041) map completely: every value reachable, every schema hex
    /// field a number or typed address with the document's value, nothing lost.</summary>
    [TestCaseSource(nameof(Scenarios))]
    public void EveryScenarioDocumentMapsCompletely(string scenario)
    {
        var lb = LabBuilds.TryGet("19041");
        if (lb is null) Assert.Ignore($"lab build 19041 unavailable: {LabBuilds.UnavailableReason}");
        var sc = ScenarioCatalog.Get(scenario);
        if (!sc.Supports(lb!)) Assert.Ignore($"{scenario} does not support {lb!.Label}");
        ScenarioResult r;
        try { r = sc.Build(lb!, ScenarioOptions.Default); }
        catch (FileNotFoundException e) { Assert.Ignore($"{scenario}: lab data missing: {e.Message}"); return; }
        int values = 0, addresses = 0;
        foreach (var line in r.Commands)
        {
            var name = line.TrimStart('!').Split(' ')[0];
            var sink = new BufferSink();
            CommandDispatcher.Run(name, line[(name.Length + 1)..] + " -json", r.CreateTarget(), sink);
            var doc = JsonNode.Parse(sink.Text)!.AsObject();
            var shape = DxShape.For(name);
            Walk(DxMapping.Root(doc, name), doc, "", "", shape, ref values, ref addresses, 0);
        }
        Assert.That(values, Is.GreaterThan(10));
        TestContext.Out.WriteLine($"{scenario}: {values} values, {addresses} addresses");
    }

    private static void Walk(DxValue v, JsonNode? json, string parent, string key, DxShape shape, ref int values, ref int addresses, int depth)
    {
        Assert.That(depth, Is.LessThan(64));
        values++;
        switch (v)
        {
            case DxObject o:
                Assert.That(json, Is.InstanceOf<JsonObject>());
                Assert.That(o.Members.Count(), Is.EqualTo(json!.AsObject().Count));
                foreach (var (n, k) in o.Members)
                {
                    Assert.That(n, Is.EqualTo(char.ToUpperInvariant(k[0]) + k[1..]));
                    Walk(o.Member(k), json[k], key, k, shape, ref values, ref addresses, depth + 1);
                }
                break;
            case DxArray a:
                Assert.That(a.Count, Is.EqualTo(json!.AsArray().Count));
                for (int i = 0; i < a.Count; i++) Walk(a.Item(i), json[i], parent, key, shape, ref values, ref addresses, depth + 1);
                break;
            case DxAddress ad:
                addresses++;
                Assert.That(shape.IsHex(parent, key), $"{parent}.{key} became an address but is no hex field");
                Assert.That(json!.GetValue<string>(), Is.EqualTo("0x" + ad.Value.ToString("x")));
                Assert.That(ad.Type, Is.EqualTo(shape.PointerType(parent, key)));
                break;
            case DxString s:
                Assert.That(json!.GetValue<string>(), Is.EqualTo(s.Value));
                if (shape.IsHex(parent, key)) Assert.That(s.Value, Does.Not.Match("^0x[0-9a-f]+$"), $"{parent}.{key} is hex but stayed a string");
                break;
            case DxNull:
                Assert.That(json, Is.Null);
                break;
            default:
                Assert.That(json, Is.InstanceOf<JsonValue>());
                break;
        }
    }
}
