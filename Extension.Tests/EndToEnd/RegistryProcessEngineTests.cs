using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The Registry process in Microsoft's real engine: the catalogue's fltmgr-frame-order sample on Windows 10 19041 and Windows 11 22000 keeps
/// the SYSTEM hive's bins only in the user address space of the "Registry" process (its own PML4 in the dump, its
/// _EPROCESS.Pcb.DirectoryTableBase pointing there). `!frameorder` can then only find the legacy group of
/// EncryptionLegacy through DbgEngTarget.ReadProcessVirtual (implicit-process switch).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class RegistryProcessEngineTests
{
    [TestCase("19041", KernelDumpKind.Complete)]
    [TestCase("19041", KernelDumpKind.BitmapFull)]
    [TestCase("22000", KernelDumpKind.BitmapFull)]
    public void FrameOrderReadsTheSystemHiveFromTheRegistryProcess(string buildKey, KernelDumpKind kind)
    {
        var build = LabSamples.Build(buildKey);
        var sample = LabSamples.TryGet(build, new FltmgrFrameOrderScenario().Name, out var log, kind: kind);
        Assert.That(sample, Is.Not.Null, log);
        ulong eprocess = sample!.Facts["registryProcess"], bins = sample.Facts["registryBins"];
        string dump = sample.Dump, sym = sample.SymbolPath;

        // The dump itself: the bins' VA is a user address, absent from the system address space, present through the
        // Registry process's DirectoryTableBase.
        var r = KernelDumpReader.Open(dump);
        var isf = build.Isf;
        ulong dtbOff = (ulong)new TypedMemory(new SparseMemory(), isf).Field("_EPROCESS", "Pcb.DirectoryTableBase").Offset;
        ulong dtb = r.ReadVirtualU64(eprocess + dtbOff);
        var sig = new byte[4];
        Assert.Multiple(() =>
        {
            Assert.That(bins, Is.LessThan(0x0000_8000_0000_0000UL), "the bins are at a user address");
            Assert.That(r.ReadVirtual(bins, sig), Is.EqualTo(0), "the bins are not readable in the kernel (system) address space");
            Assert.That(dtb, Is.Not.EqualTo(r.DirectoryTableBase));
            Assert.That(r.ReadVirtual(bins, sig, dtb), Is.EqualTo(4));
            Assert.That(sig, Is.EqualTo("hbin"u8.ToArray()));
            Assert.That(r.ReadVirtualU64(build.KernelBase + isf.GetSymbolRva("CmpRegistryProcess")), Is.EqualTo(eprocess));
        });

        string load = ".load " + ExtensionPackage.DllWinPath();
        string dqBefore = $"db {bins:x} L4", proc = $".process /p {eprocess:x}", dqAfter = $"db 0x{bins:x} L4";
        var run = RealEngine.Run(dump, [load, "!frameorder", dqBefore, proc, dqAfter],
            new EngineOptions { SymbolPath = sym, Plain = true, TimeoutSeconds = 300 });
        foreach (var c in run.Commands) TestContext.Out.WriteLine($"> {c.Command}  (hr 0x{c.HResult:x8}, {c.Milliseconds:F0} ms)\n{c.Output}");
        Assert.That(run.Commands.Select(c => c.Command), Does.Contain(load), run.Transcript);
        Assert.That(run[load].HResult, Is.EqualTo(0u), run[load].Output);
        var fo = run["!frameorder"].Output;
        Assert.Multiple(() =>
        {
            Assert.That(fo, Does.Contain("altitude 149998.99 (group \"FSFilter Encryption\" in fltmgr's legacy altitude table)"), fo);
            Assert.That(fo, Does.Contain("AVMiniFilter (328000, frame 0) is below EncryptionLegacy (149998.99): it sees encrypted I/O"), fo);
            // The engine's own view: not readable before the switch, "hbin" after .process /p.
            Assert.That(run[dqBefore].Output, Does.Contain("?? ?? ?? ??"), run[dqBefore].Output);
            Assert.That(run[dqAfter].Output, Does.Contain("hbin"), run.Transcript);
        });
    }
}
