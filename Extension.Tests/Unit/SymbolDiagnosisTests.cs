using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Lab.Scenarios;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// "Symbols missing" and "memory unreadable or damaged" are different answers (issue 20, the corrupted-memory tier:
/// with a damaged module list the commands said "symbol nt!PoolTrackTable not found ... Run .symfix").
/// </summary>
[NonParallelizable]
public class SymbolDiagnosisTests
{
    private static PoolLeakScenario Scenario()
    {
        var nt = PoolDpcBuilds.TryLoadNt(PoolDpcBuilds.Win10);
        if (nt is null) Assert.Ignore("../shared/realdata/isf/ntkrnlmp.pdb (the shared real data) is absent");
        return new PoolLeakScenario(new LabKernel(nt!, PoolDpcBuilds.Win10), 4, 3, 4096);
    }

    private static string Errors(InMemoryTarget t)
    {
        var sink = new BufferSink();
        int hr = CommandDispatcher.Run("leaktag", "Leak", t, sink, null);
        Assert.That(hr, Is.EqualTo(CommandDispatcher.E_FAIL), sink.All);
        return sink.Errors;
    }

    [Test]
    public void NoKernelInTheModuleListBlamesTheModuleListNotTheSymbols()
    {
        var t = Scenario().Kernel.CreateTarget();
        t.HiddenModules.Add("nt");
        t.HiddenSymbols.Add("nt");
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        string e = Errors(t);
        Assert.That(e, Does.Contain("nt!PoolTrackTable"));
        Assert.That(e, Does.Contain("PsLoadedModuleList").And.Contain("damaged"));
        Assert.That(e, Does.Contain("memory is at fault, not the symbol path"));
        Assert.That(e, Does.Not.Contain(".symfix"));
    }

    [Test]
    public void AnEmptyModuleListSaysSo()
    {
        var t = Scenario().Kernel.CreateTarget();
        foreach (var m in t.GetModules()) t.HiddenModules.Add(m.Name);
        t.HiddenSymbols.Add("nt");
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        string e = Errors(t);
        Assert.That(e, Does.Contain("lists no modules at all"));
        Assert.That(e, Does.Not.Contain(".symfix"));
    }

    [Test]
    public void AnUnreadableImageHeaderIsMemoryNotSymbols()
    {
        var t = Scenario().Kernel.CreateTarget();
        var nt = t.GetModules().First(m => m.Name == "nt");
        t.MakeUnreadable(nt.Base, 0x1000);
        t.HiddenSymbols.Add("nt");
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        string e = Errors(t);
        Assert.That(e, Does.Contain($"nt has no symbols because its image header at {Fmt.Addr(nt.Base)} is not readable"));
        Assert.That(e, Does.Contain($".reload /f nt={Fmt.Addr(nt.Base)}"));
        Assert.That(e, Does.Not.Contain(".symfix"));
    }

    [Test]
    public void AZeroedImageHeaderIsMemoryNotSymbols()
    {
        var s = Scenario();
        var t = s.Kernel.CreateTarget();
        var nt = t.GetModules().First(m => m.Name == "nt");
        s.Kernel.Memory.Write(nt.Base, new byte[2]);
        t.HiddenSymbols.Add("nt");
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        string e = Errors(t);
        Assert.That(e, Does.Contain($"image header at {Fmt.Addr(nt.Base)} is damaged (no 'MZ': 0x0000)"));
        Assert.That(e, Does.Not.Contain(".symfix"));
    }

    [Test]
    public void LoadedSymbolsWithoutTheNameStillPointAtTheSymbols()
    {
        var t = Scenario().Kernel.CreateTarget();
        t.HiddenSymbols.Add("nt!PoolTrackTable");
        string e = Errors(t);
        Assert.That(e, Does.Contain("symbols for 'nt' are missing or wrong"));
        Assert.That(e, Does.Contain(".symfix"));
    }

    [Test]
    public void AnUnreadableGlobalWithNoImageAtTheModuleBaseBlamesTheModuleEntry()
    {
        var t = Scenario().Kernel.CreateTarget();
        var nt = t.GetModules().First(m => m.Name == "nt");
        ulong track = t.Symbols.GetSymbolAddress("nt!PoolTrackTable")!.Value;
        t.MakeUnreadable(track, 8);
        t.MakeUnreadable(nt.Base, 0x1000);
        string e = Errors(t);
        Assert.That(e, Does.Contain("nt!PoolTrackTable at " + Fmt.Addr(track) + " is not readable"));
        Assert.That(e, Does.Contain("module list's entry"));
        Assert.That(SymbolDiagnosis.UnreadableGlobal(t, "nt!PoolTrackTable", track), Does.Contain("no image is readable at nt's base"));
    }
}
