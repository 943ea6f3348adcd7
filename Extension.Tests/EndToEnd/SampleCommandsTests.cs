using NtSleuth.Lab.Samples;
using NtSleuth.Tests.Unit;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The samples users get from scripts/make-samples.sh, in Microsoft's real engine: make-samples writes the seed
/// scenarios of the lab catalogue on Windows 10 19041 (dump + forged symbols), then each sample's own commands run
/// after <c>.load ntsleuth.dll</c> (our package with an app-local .NET runtime), through the DbgEng-backed target.
/// Each command must print the seed's key fact.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class SampleCommandsTests
{
    /// <summary>Seed scenario -> (command prefix, facts its output must contain).</summary>
    private static readonly Dictionary<string, (string Command, string[] Facts)[]> Expected = new()
    {
        ["logon-hang-alpc"] = [("!alpcchain fffffa80", ["blocked 4:21:40", "starved: 18,023 items pending, mostly mpio!MPIOPathVerify -> all 20 workers",
                                   "blocked in MyBadDSM (called from mpio!MPIOPathVerify+0x14b)"]),
                               ("!workqueue", ["18,023 pending, own count 18,023", @"17,950  mpio!MPIOPathVerify  [\Driver\mpio]  IO_WORKITEM",
                                   @"37  smb!SmbDelayedStartTcpSession  [\Driver\Smb]", "20 x waits Executive (KernelMode) on SynchronizationEvent for up to 9:26:24  blocked in MyBadDSM",
                                   "starved: 18,023 item(s) pending (17,950 mpio!MPIOPathVerify"])],
        ["pool-leak"] = [("!leaktag Leak", ["601 outstanding, 615,424,000 bytes", "myfault  (2 site(s))"])],
        ["dpc-watchdog"] = [("!dpcblame", ["ECHO!EchoEvtTimerFunc", "KeStallExecutionProcessor"])],
        // Issue 17: P1 = 1; the kernel's DPC watchdog profile names spindrv, not ECHO's timer DPC that ran last.
        ["dpc-cumulative"] = [("!dpcblame", [
            "Culprit (DPC watchdog profile): spindrv!SpdProcessRing in spindrv: 30 of 40 captured stacks (75%) on CPU 0",
            "is not the culprit: Wdf01000 and ECHO hold 6 of 40 captured stacks (15%)",
            "DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK signature 0xaebecede ok, revision 1"])],
        ["dpc-cumulative-profile-missing"] = [("!dpcblame", ["is not in the dump: a kernel, automatic or complete memory dump keeps it", "!wmitrace.strdump"])],
        ["dpc-cumulative-profile-corrupt"] = [("!dpcblame", ["signature 0xdeadbeef is not 0xaebecede", "is not inside the profile buffer"])],
        ["ndis-pending-nbls"] = [("!nblowners", ["1854"])],
        ["fltmgr-frame-order"] = [("!frameorder", [
            "AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O",
            "altitude 149998.99 (group \"FSFilter Encryption\" in fltmgr's legacy altitude table)",
            "\"FSFilter Compression\" (160000-169999)"])],
        ["fltmgr-frame-order-fixed"] = [("!frameorder", [
            "Altitude order: clean", "NullFilter                                  3        160030      1",
            "altitude 149998.99 (group \"FSFilter Encryption\" in fltmgr's legacy altitude table)"])],
        ["fltmgr-frame-order-no-legacy"] = [("!frameorder", ["Altitude order: clean", "WdFilter                                    2        328010      0"])],
        ["ndis-receive-buffers"] = [("!nblowners", [
            "NBL tracking: OFF (TrackNblOwner = 0, from ndis!ndisGlobalTriageBlock.NdisTrackNblOwner)",
            "NetReceiveBuffers 0 free   NetNofReceiveBuffers 0   NetReceiveBuffersWaiting 256 (held above the miniport)",
            "fffffa80`0f2a4c10 protocol TCPIP -> miniport fffffa80`142d31a0   References 1   Outstanding sends 0",
            "sends in flight 3 (per CPU: 0 1 0 2; pointer to _EX_RUNDOWN_REF_CACHE_AWARE)",
            "State RUNNING   PnP STARTED   Operational status UP",
            "What this build / this dump cannot tell:"])],
    };

    /// <summary>Facts a build adds to its scenario's (the seeds' own Windows: 7601 = 2008 R2, 9600 = 2012 R2).</summary>
    private static readonly Dictionary<(string Scenario, string Build), string[]> ExpectedOnBuild = new()
    {
        [("fltmgr-frame-order", "7601")] = [
            "AVLegacy                                          389998.99  <Legacy>",
            "EncryptionLegacy                                  149998.99  <Legacy>",
            "AVMiniFilter                                3        328000      0"],
        [("fltmgr-frame-order-fixed", "7601")] = ["AVMiniFilter                                3        328000      1"],
        [("ndis-receive-buffers", "7601")] = ["this ndis has no NBL tracker or history log (Windows 8 and later)"],
        [("ndis-pending-nbls", "7601")] = ["1854 of 3005 NBLs are held by miniport fffffa80142d31a0", "this ndis has no NBL tracker or history log"],
        [("ndis-pending-nbls", "9600")] = ["1854 of 3005 NBLs are held by miniport fffffa80142d31a0", "DORMANT_PAUSED after QUERY_REMOVED"],
    };

    /// <summary>The 9600 samples (2012 R2): only the ndis/fltmgr seeds, in their own folder.</summary>
    private static readonly string[] OldBuildScenarios = ["ndis-pending-nbls", "ndis-receive-buffers", "fltmgr-frame-order"];

    /// <summary>Every seed on Windows 10 19041 and on Windows 7 7601 (the seeds' own 2008 R2); the ndis/fltmgr seeds also on 9600.</summary>
    public static IEnumerable<TestCaseData> SeedScenarios =>
        Expected.Keys.Select(k => new TestCaseData(k, "19041"))
            .Concat(Expected.Keys.Where(k => !k.StartsWith("dpc-cumulative", StringComparison.Ordinal)) // the watchdog profile exists from 14393 on
                .Select(k => new TestCaseData(k, "7601")))
            .Concat(Expected.Keys.Where(k => OldBuildScenarios.Any(o => k.StartsWith(o))).Select(k => new TestCaseData(k, "9600")));

    [TestCaseSource(nameof(SeedScenarios))]
    public void SampleCommandsPrintTheSeedFactsInTheRealEngine(string scenario, string build)
    {
        var sample = LabSamples.Named($"{scenario}-{build}");
        string dump = sample.Dump, sym = sample.SymbolPath;
        string load = ".load " + ExtensionPackage.DllWinPath();
        var commands = new List<string> { load };
        commands.AddRange(sample.Commands);
        // Issue 21 item 3: the same commands with -json in the same engine process; the first also with -out.
        var outFile = Path.Combine(Path.GetDirectoryName(dump)!, $"{sample.Name}.first.json");
        File.Delete(outFile);
        commands.AddRange(sample.Commands.Select(c => c + " -json"));
        commands.Add(sample.Commands[0] + " -json -out " + RealEngine.WinPath(outFile));
        var run = RealEngine.Run(dump, commands, new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300 });
        TestContext.Out.WriteLine($"{sample.Name}: dump {sample.DumpBytes:N0} bytes, made in {sample.Seconds:F2} s, engine run {run.Wall.TotalSeconds:F1} s; notes: {string.Join("; ", sample.Notes)}");
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  (hr 0x{c.HResult:x8}, {c.Milliseconds:F0} ms)\n{c.Output}");

        Assert.That(run.Commands.Select(c => c.Command), Does.Contain(load), run.Transcript);
        var loaded = run[load];
        Assert.That(loaded.HResult, Is.EqualTo(0u), $".load failed:\n{loaded.Output}");
        foreach (var (prefix, baseFacts) in Expected[scenario])
        {
            var facts = baseFacts.Concat(ExpectedOnBuild.TryGetValue((scenario, build), out var extra) ? extra : []).ToArray();
            var cmd = sample.Commands.FirstOrDefault(c => c.StartsWith(prefix, StringComparison.Ordinal));
            Assert.That(cmd, Is.Not.Null, $"{sample.Name} has no command starting with '{prefix}' (has: {string.Join(", ", sample.Commands)})");
            var r = run[cmd!];
            foreach (var fact in facts)
                Assert.That(r.Output, Does.Contain(fact),
                    $"{cmd} in the real engine (DbgEngTarget over the forged symbols of {sample.Name}) did not print '{fact}'; hr 0x{r.HResult:x8}; output:\n{r.Output}");
        }

        // Every sample's -json output in the real engine: one document, valid against docs/schema, status ok;
        // a seed (not its clean variants) reports a finding of warning or above.
        var severities = new List<string>();
        foreach (var c in sample.Commands)
        {
            var r = run[c + " -json"];
            var name = c.TrimStart('!').Split(' ')[0];
            System.Text.Json.Nodes.JsonObject? doc = null;
            Assert.DoesNotThrow(() => doc = System.Text.Json.Nodes.JsonNode.Parse(r.Output)!.AsObject(), $"{c} -json is not one JSON document:\n{r.Output}");
            var errors = JsonSchemaValidator.Validate(doc, NtSleuth.Commands.Cli.JsonSchemas.For(name));
            Assert.That(errors, Is.Empty, $"{c} -json in the real engine does not match docs/schema:\n{string.Join("\n", errors)}");
            Assert.That(doc!["status"]!.GetValue<string>(), Is.EqualTo("ok"), r.Output);
            severities.Add(doc["severity"]!.GetValue<string>());
        }
        bool clean = scenario.EndsWith("-fixed", StringComparison.Ordinal) || scenario.EndsWith("-no-legacy", StringComparison.Ordinal);
        Assert.That(severities.Any(s => s is "warning" or "error" or "critical"), Is.EqualTo(!clean), string.Join(", ", severities));
        var outRun = run[sample.Commands[0] + " -json -out " + RealEngine.WinPath(outFile)];
        Assert.That(outRun.Output.Trim(), Is.Empty, "-json -out prints nothing");
        Assert.That(File.Exists(outFile), Is.True, $"-out did not write {outFile}");
        var fromFile = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(outFile))!.AsObject();
        Assert.That(fromFile["schema"]!.GetValue<string>(), Is.EqualTo("ntsleuth." + sample.Commands[0].TrimStart('!').Split(' ')[0]));
    }

    /// <summary>
    /// Runs the sample's commands twice in the real engine with NTSLEUTH_PROFILE=1, the lookup switch
    /// <paramref name="variable"/> set to "check" (the data model's answers, each also asked of the engine) and then to
    /// "engine" (the engine's questions only), and asserts that every command prints the same either way (profile lines
    /// aside). Returns both runs for the caller's own assertions on the profile.
    /// </summary>
    private static (EngineRun Check, EngineRun Engine) RunCheckedAgainstEngineOnly(CatalogSample sample, string variable, string what, Func<string, bool> logged)
    {
        var commands = new List<string> { ".load " + ExtensionPackage.DllWinPath() };
        commands.AddRange(sample.Commands);
        EngineRun Run(string mode) => RealEngine.Run(sample.Dump, commands, new EngineOptions
        {
            SymbolPath = sample.SymbolPath, Plain = true, TimeoutSeconds = 300,
            Environment = new Dictionary<string, string> { ["NTSLEUTH_PROFILE"] = "1", [variable] = mode },
        });
        static string Plain(string o) => SessionTests.Mask(string.Join("\n", o.Split('\n').Where(l => !l.StartsWith("[ntsleuth profile]", StringComparison.Ordinal))));
        var check = Run("check");
        var engine = Run("engine");
        foreach (var c in sample.Commands)
        {
            TestContext.Out.WriteLine($"> {c}\n  {string.Join("\n  ", check[c].Output.Split('\n').Where(logged))}");
            Assert.That(Plain(check[c].Output), Is.EqualTo(Plain(engine[c].Output)), $"{c}: the data model's {what} changed the output");
        }
        return (check, engine);
    }

    /// <summary>
    /// Issue 15: names go through the data model (HostSymbolLookup: IDebugHostModule::FindSymbolByName, the PDB's hashed
    /// name tables, ~0.05 ms) instead of GetOffsetByName (~36 ms: the engine compares every public). In
    /// NTSLEUTH_NAME_LOOKUP=check mode every data-model answer (found or a final miss) is also asked through
    /// GetOffsetByName: no difference may show, every command must print what it prints with the engine's lookups
    /// only (NTSLEUTH_NAME_LOOKUP=engine), and no name of a module with PDB symbols may be left to GetOffsetByName
    /// (no slow lookup, failing probes included, on the hot path).
    /// </summary>
    [TestCase("pool-leak", "19041")]
    [TestCase("dpc-cumulative", "19041")]
    [TestCase("ndis-receive-buffers", "19041")]
    [TestCase("fltmgr-frame-order", "19041")]
    [TestCase("logon-hang-alpc", "7601")]
    public void DataModelNameLookupsGiveTheEnginesAddresses(string scenario, string build)
    {
        var sample = LabSamples.Named($"{scenario}-{build}");
        var (check, engine) = RunCheckedAgainstEngineOnly(sample, "NTSLEUTH_NAME_LOOKUP", "names",
            l => l.Contains("profile] !") || l.Contains("symbol") || l.Contains("name-check"));
        static IEnumerable<string> Lines(EngineRun r, string kind) =>
            r.Commands.SelectMany(c => c.Output.Split('\n')).Where(l => l.StartsWith("[ntsleuth profile] " + kind, StringComparison.Ordinal));
        string all = string.Concat(check.Commands.Select(c => c.Output));
        Assert.That(all, Does.Not.Contain("MISMATCH"), "a data-model answer differs from GetOffsetByName's");
        Assert.That(Lines(check, "name-check").ToList(), Is.Not.Empty, "no name was checked");
        Assert.That(Lines(check, "dm-symbol").ToList(), Is.Not.Empty, "no name went through the data model");
        Assert.That(Lines(check, "symbol ").Where(l => l.Contains("(nt!")).ToList(), Is.Empty, "an nt name was left to GetOffsetByName");
        Assert.That(string.Concat(engine.Commands.Select(c => c.Output)), Does.Not.Contain("dm-symbol"), "NTSLEUTH_NAME_LOOKUP=engine still asked the data model");
    }

    /// <summary>
    /// Issue 15: type layouts come from the data model (Extension/HostTypes.cs: FindTypeByName + the type's children,
    /// ~0.1 ms a field) instead of GetFieldTypeAndOffset + the type-dump ioctl (1-5 ms a field on _KPRCB/_KTHREAD, ~25 ms
    /// for a bitfield of an unnamed nested type). NTSLEUTH_TYPE_LOOKUP=check resolves every field both ways: no
    /// difference may show (offset, kind, name, size, bits, element/pointee types), and every command must print what it
    /// prints with the engine's questions only (NTSLEUTH_TYPE_LOOKUP=engine, which also resolves dotted paths whole).
    /// </summary>
    [TestCase("logon-hang-alpc", "19041")]
    [TestCase("dpc-cumulative", "19041")]
    [TestCase("ndis-pending-nbls", "19041")]
    [TestCase("fltmgr-frame-order", "7601")]
    [TestCase("pool-leak", "7601")]
    public void DataModelTypeLayoutsGiveTheEnginesFields(string scenario, string build)
    {
        var sample = LabSamples.Named($"{scenario}-{build}");
        var (check, engine) = RunCheckedAgainstEngineOnly(sample, "NTSLEUTH_TYPE_LOOKUP", "layouts", l => l.Contains("profile] !") || l.Contains("type-check"));
        string all = string.Concat(check.Commands.Select(c => c.Output));
        Assert.That(all.Split('\n').Where(l => l.Contains("type-check MISMATCH")).ToList(), Is.Empty, "a data-model field differs from the engine's");
        Assert.That(all, Does.Contain("[ntsleuth profile] dm-field"), "no field went through the data model");
        Assert.That(string.Concat(engine.Commands.Select(c => c.Output)), Does.Not.Contain("dm-field"), "NTSLEUTH_TYPE_LOOKUP=engine still asked the data model");
    }

    /// <summary>
    /// Issue 15: NTSLEUTH_PROFILE=1 shows where `.load` goes: the native shim times each step of the .NET start and the
    /// provider registration and the first command after the start prints them once (a `.NET start` line and one line
    /// per step, each with its ms); a later command does not repeat them, and without NTSLEUTH_PROFILE none is printed.
    /// </summary>
    [Test]
    public void ProfilePrintsTheDotNetStartStepsOnceOnTheFirstCommand()
    {
        var sample = LabSamples.Named("fltmgr-frame-order-19041");
        var commands = new List<string> { ".load " + ExtensionPackage.DllWinPath(), "!help", "!help" };
        EngineRun Run(bool profile) => RealEngine.Run(sample.Dump, commands, new EngineOptions
        {
            SymbolPath = sample.SymbolPath, Plain = true, TimeoutSeconds = 300,
            Environment = profile ? new Dictionary<string, string> { ["NTSLEUTH_PROFILE"] = "1" } : new Dictionary<string, string>(),
        });
        string[] steps = ["load nethost.dll", "get_hostfxr_path", "load hostfxr.dll", "hostfxr_initialize_for_runtime_config",
            "get load_assembly_and_get_function_pointer", "load assembly + Entry.Invoke", "Entry.Notify(loaded)"];
        var on = Run(true);
        Assert.That(on.Commands.Count, Is.EqualTo(3));
        string first = on.Commands[1].Output, second = on.Commands[2].Output;
        Assert.That(System.Text.RegularExpressions.Regex.IsMatch(first, @"\[ntsleuth profile\] \.NET start \d+\.\d ms \(native shim\)"), first);
        foreach (var st in steps)
            Assert.That(System.Text.RegularExpressions.Regex.IsMatch(first, @"\[ntsleuth profile\]   " + System.Text.RegularExpressions.Regex.Escape(st) + @".* \d+\.\d ms"), $"step '{st}' missing:\n{first}");
        Assert.That(second, Does.Not.Contain(".NET start"), "the start steps were printed again");
        var off = Run(false);
        Assert.That(string.Concat(off.Commands.Select(c => c.Output)), Does.Not.Contain("[ntsleuth profile]"));
    }

    /// <summary>The forged kernel PDB answers hashed name lookups for every public, as Microsoft's do: lld-link 14 put
    /// strcpy_s, PfTStart and 109 other 8-character publics of the 19041 kernel into the wrong hash bucket, and
    /// <c>dx &amp;nt!strcpy_s</c> said "Unable to bind name" until the forge re-bucketed them (PdbSymbolHash).</summary>
    [Test]
    public void EveryKernelPublicBindsThroughTheNameHash()
    {
        var sample = LabSamples.Named("pool-leak-19041");
        string dump = sample.Dump, sym = sample.SymbolPath;
        string[] names = ["strcpy_s", "PfTStart", "XmSmswOp", "PoolTrackTable"];
        var run = RealEngine.Run(dump, names.Select(n => $"dx &nt!{n}").ToList(), new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300 });
        foreach (var n in names)
        {
            var o = run[$"dx &nt!{n}"].Output;
            Assert.That(o, Does.Not.Contain("Unable to bind"), $"dx &nt!{n}:\n{o}");
            Assert.That(o, Does.Match(@"&nt!" + n + @"\s*: 0xfffff8[0-9a-f]{10}"), $"dx &nt!{n}:\n{o}");
        }
    }

    /// <summary>The opt-in module symbol index (NTSLEUTH_SYMBOL_INDEX_AFTER=0: one enumeration of nt!* instead of a
    /// GetOffsetByName per name) gives every command the same output as the engine's own lookups, and is really used
    /// (NTSLEUTH_PROFILE=1 shows the enumeration, and no direct lookup of a name the index holds).</summary>
    [TestCase("pool-leak")]
    [TestCase("logon-hang-alpc")]
    [TestCase("dpc-watchdog")]
    public void SymbolIndexGivesTheSameOutputAsTheEnginesLookups(string scenario)
    {
        var sample = LabSamples.Named($"{scenario}-19041");
        string dump = sample.Dump, sym = sample.SymbolPath;
        var commands = new List<string> { ".load " + ExtensionPackage.DllWinPath() };
        commands.AddRange(sample.Commands);
        EngineRun Run(string? after)
        {
            var env = new Dictionary<string, string> { ["NTSLEUTH_PROFILE"] = "1" };
            if (after is not null) env["NTSLEUTH_SYMBOL_INDEX_AFTER"] = after;
            return RealEngine.Run(dump, commands, new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300, Environment = env });
        }
        static string Plain(string o) => SessionTests.Mask(string.Join("\n", o.Split('\n').Where(l => !l.StartsWith("[ntsleuth profile]", StringComparison.Ordinal))));
        var direct = Run(null);
        var indexed = Run("0");
        foreach (var c in sample.Commands)
        {
            TestContext.Out.WriteLine($"> {c}\n  direct:  {string.Join(" | ", direct[c].Output.Split('\n').Where(l => l.Contains("profile] !") || l.Contains("profile] sym")))}" +
                $"\n  indexed: {string.Join(" | ", indexed[c].Output.Split('\n').Where(l => l.Contains("profile] !") || l.Contains("profile] sym")))}");
            Assert.That(Plain(indexed[c].Output), Is.EqualTo(Plain(direct[c].Output)), $"{c}: the index changed the output");
        }
        string all = string.Concat(indexed.Commands.Select(c => c.Output));
        Assert.That(all, Does.Contain("sym-index").And.Contain("(nt)"), "the index was not built");
        Assert.That(string.Concat(direct.Commands.Select(c => c.Output)), Does.Not.Contain("sym-index"), "the index is off by default");
    }
}
