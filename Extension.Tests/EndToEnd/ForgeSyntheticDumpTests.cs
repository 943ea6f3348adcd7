using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Tests.LabTests;
using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// Forged symbols on a synthetic kernel dump (wt-dump's writer) in the real engine: nt and a synthetic driver load as
/// private symbols; `lm`, `x nt!PoolTrackTable`, `dt nt!_KALPC_MESSAGE addr` and `dx` on a scenario object read the
/// values the scenario wrote, at the ISF's offsets — on Windows 7 and Windows 10 19041.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class ForgeSyntheticDumpTests
{
    [OneTimeTearDown]
    public void Cleanup() => ForgeTestEnv.Cleanup();

    private static string Fmt(ulong v) => $"{v >> 32:x8}`{v & 0xffffffff:x8}";

    [TestCase("DBBC830E3E9A48FDA25A2144C146930E-1", 14393u)] // wt-dump's preparation needs _KLDR_DATA_TABLE_ENTRY, absent from the Windows 7 table
    [TestCase("5278AFF86C341677D7D7835C85B7B844-1", 19041u)]
    public void EngineLoadsForgedSymbolsAndReadsAScenarioObject(string guidAge, uint build)
    {
        RealEngine.Require();
        var tools = ForgeTestEnv.Tools();
        var isf = ForgeTestEnv.Isf(guidAge);
        var forge = new SymbolForge(tools);
        string sym = ForgeTestEnv.TempCache("synthetic-sym");
        var mods = forge.ForgeInto(sym, [ForgeModules.Kernel(isf), ForgeModules.Echo()]);
        var nt = mods[0];
        var echo = mods[1];

        const ulong ntBase = 0xFFFFF800_12000000, echoBase = 0xFFFFF800_1F000000;
        const ulong message = 0xFFFFFA80_73D3D770, thread = 0xFFFFFA80_7400A080; // the ALPC seed's message address
        var mem = new SparseMemory();
        var w = new TypedMemory(mem, isf);
        mem.Map(message, (ulong)w.SizeOf("_KALPC_MESSAGE"));
        mem.Map(thread, (ulong)w.SizeOf("_ETHREAD"));
        w.Set(message, "_KALPC_MESSAGE", "ServerThread", thread);
        w.Set(message, "_KALPC_MESSAGE", "WaitingThread", thread);
        w.Set(thread, "_ETHREAD", "Cid.UniqueProcess", 0x2a4);
        w.Set(thread, "_ETHREAD", "Cid.UniqueThread", 0x3f8);

        var plan = new KernelDumpPlan
        {
            Nt = isf, BuildNumber = build,
            Modules =
            [
                new KernelModuleSpec { Name = "ntoskrnl.exe", Base = ntBase, Image = File.ReadAllBytes(nt.ImagePath) },
                new KernelModuleSpec { Name = "ECHO.sys", Base = echoBase, Image = File.ReadAllBytes(echo.ImagePath) },
            ],
            BugCheckCode = 0x133, BugCheckParameters = [0, 0x283, 0x282, 0],
        };
        string dump = Path.Combine(ForgeTestEnv.TempCache("synthetic-dump"), $"forge-{build}.dmp");
        KernelDumpPreparation.WriteDump(dump, mem, plan, KernelDumpKind.Complete);

        string hex = $"0x{message:x}";
        var cmds = new[]
        {
            "lm", "x nt!PoolTrackTable", $"dt nt!_KALPC_MESSAGE {hex} ServerThread WaitingThread",
            $"dx -r0 ((nt!_KALPC_MESSAGE*){hex})->ServerThread->Cid.UniqueThread", "ld ECHO", "x ECHO!EchoEvtTimerFunc", ".bugcheck",
        };
        var (o, all) = RealEngine.Run(dump, sym, cmds);
        string Out(string c) => o.TryGetValue(c, out var s) ? s : throw new AssertionException($"no output for '{c}':\n{all[..Math.Min(all.Length, 5000)]}");

        // No flag letter between name and symbol state (a "T" would mean a missing/invalid image TimeDateStamp).
        Assert.That(Out("lm"), Does.Match($@"{Fmt(ntBase)}\s+\S+\s+nt\s+\(private pdb symbols\)"), all);
        Assert.That(Out("x nt!PoolTrackTable"), Does.Contain(Fmt(ntBase + isf.GetSymbolRva("PoolTrackTable")) + " nt!PoolTrackTable"), all);
        string dt = Out($"dt nt!_KALPC_MESSAGE {hex} ServerThread WaitingThread");
        var msg = isf.GetUserType("_KALPC_MESSAGE");
        foreach (var f in new[] { "ServerThread", "WaitingThread" })
            Assert.That(dt, Does.Match($@"\+0x{msg.Fields.First(x => x.Name == f).Offset:x3} {f}\s+: 0x{Fmt(thread)}"), dt);
        Assert.That(Out($"dx -r0 ((nt!_KALPC_MESSAGE*){hex})->ServerThread->Cid.UniqueThread"), Does.Match(@": 0x3f8\b"), all);
        Assert.That(Out("x ECHO!EchoEvtTimerFunc"), Does.Contain(Fmt(echoBase + ForgeModules.Echo().Publics["EchoEvtTimerFunc"]) + " ECHO!EchoEvtTimerFunc"), all);
        Assert.That(Out(".bugcheck"), Does.Contain("Bugcheck code 00000133"));
        TestContext.Out.WriteLine($"{build}: dump {new FileInfo(dump).Length:N0} bytes; nt pdb {new FileInfo(nt.PdbPath).Length:N0} bytes");
    }
}
