using Moq;
using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>
/// The save / set / restore sequence of reads in another process's context (ProcessReadContext) over a mocked engine:
/// what is changed on a live kernel target, that nothing but the implicit process is touched on dumps, and that every
/// setting is put back after exceptions and while a Ctrl+Break is pending. Each engine call is logged in order.
/// </summary>
public class ProcessReadContextTests
{
    private const uint Kernel = 1, User = 2;
    private const uint LiveKd = 0, KernelDump = 1025, UserDump = 1024;
    private const ulong Saved = 0xffffe000_00001000, Other = 0xffffe000_00002000;

    /// <summary>A mocked engine with the given debuggee type and decode option that logs every call.</summary>
    private sealed class Engine
    {
        public readonly Mock<IAddressContextEngine> Mock = new(MockBehavior.Strict);
        public readonly List<string> Log = new();
        public DecodeMode? Decode;
        public ulong Implicit = Saved;
        /// <summary>Calls to refuse (by name and argument) while an interrupt is pending; ConsumePendingInterrupt clears it.</summary>
        public bool InterruptPending;
        public bool RefuseWhileInterrupted;
        public bool RefuseDecodeSet;
        public bool QueryFails;

        public Engine(uint cls, uint qual, DecodeMode? decode = DecodeMode.None)
        {
            Decode = decode;
            uint c = cls, q = qual;
            Mock.Setup(e => e.TryGetDebuggeeType(out c, out q)).Returns(true).Callback(() => Log.Add("type"));
            Mock.Setup(e => e.QueryDecodeMode()).Returns(() =>
            {
                Log.Add("query");
                return QueryFails ? null : Decode;
            });
            Mock.Setup(e => e.SetDecodeMode(It.IsAny<DecodeMode>())).Returns((DecodeMode m) =>
            {
                Log.Add("cache " + ProcessReadContext.CacheOption(m));
                if (RefuseWhileInterrupted && InterruptPending) return false;
                if (RefuseDecodeSet && m != DecodeMode.None) return false;
                Decode = m;
                return true;
            });
            ulong dummy;
            Mock.Setup(e => e.TryGetImplicitProcess(out dummy)).Returns(new TryGet((out ulong p) =>
            {
                Log.Add("get process");
                p = Implicit;
                return true;
            }));
            Mock.Setup(e => e.SetImplicitProcess(It.IsAny<ulong>())).Returns((ulong p) =>
            {
                Log.Add($"set process {p:x}");
                if (RefuseWhileInterrupted && InterruptPending) return false;
                Implicit = p;
                return true;
            });
            Mock.Setup(e => e.ConsumePendingInterrupt()).Returns(() =>
            {
                Log.Add("consume interrupt");
                bool was = InterruptPending;
                InterruptPending = false;
                return was;
            });
        }

        public IAddressContextEngine Object => Mock.Object;
    }

    private delegate bool TryGet(out ulong process);

    private static int ReadFour(List<string> log, Engine e)
    {
        log.Add($"read in {e.Implicit:x}");
        return 4;
    }

    [Test]
    public void KernelDumpChangesOnlyTheImplicitProcessAndRestoresIt()
    {
        var e = new Engine(Kernel, KernelDump);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        ctx.Restore();
        Assert.That(e.Log, Is.EqualTo(new[]
        {
            "type",
            "get process", $"set process {Other:x}", $"read in {Other:x}", $"set process {Saved:x}", "get process",
            "get process", $"set process {Other:x}", $"read in {Other:x}", $"set process {Saved:x}", "get process",
        }));
        e.Mock.Verify(m => m.QueryDecodeMode(), Times.Never, "a dump's .cache is never even asked");
        e.Mock.Verify(m => m.SetDecodeMode(It.IsAny<DecodeMode>()), Times.Never);
        Assert.That(e.Implicit, Is.EqualTo(Saved));
        Assert.That(ctx.Messages, Is.Empty);
    }

    [TestCase(User, UserDump)]
    [TestCase(User, 0u)] // a live user-mode process: .cache is a kernel-only command
    public void UserModeTargetsNeverTouchTheCache(uint cls, uint qual)
    {
        var e = new Engine(cls, qual);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        ctx.Restore();
        e.Mock.Verify(m => m.QueryDecodeMode(), Times.Never);
        e.Mock.Verify(m => m.SetDecodeMode(It.IsAny<DecodeMode>()), Times.Never);
        Assert.That(e.Implicit, Is.EqualTo(Saved));
    }

    [Test]
    public void LiveKernelSetsForceDecodeUserOnceBeforeTheSwitchAndRestoresItAtTheEnd()
    {
        var e = new Engine(Kernel, LiveKd, DecodeMode.None);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        Assert.That(e.Decode, Is.EqualTo(DecodeMode.User), "in effect for the rest of the command");
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        Assert.That(ctx.DecodeModeChanged, Is.True);
        ctx.Restore();
        Assert.That(e.Log, Is.EqualTo(new[]
        {
            "type", "query", "cache forcedecodeuser", "query",
            "get process", $"set process {Other:x}", $"read in {Other:x}", $"set process {Saved:x}", "get process",
            "get process", $"set process {Other:x}", $"read in {Other:x}", $"set process {Saved:x}", "get process",
            "cache noforcedecodeptes", "query",
        }));
        Assert.That(e.Decode, Is.EqualTo(DecodeMode.None));
        Assert.That(e.Implicit, Is.EqualTo(Saved));
        Assert.That(ctx.DecodeModeChanged, Is.False);
        Assert.That(ctx.Messages, Is.Empty);
        ctx.Restore(); // a second restore (nothing left to do) changes nothing
        Assert.That(e.Log[^1], Is.EqualTo("query"));
    }

    [TestCase("User")]
    [TestCase("All")]
    public void LiveKernelWithTheOptionAlreadyOnChangesNothing(string option)
    {
        var already = Enum.Parse<DecodeMode>(option);
        var e = new Engine(Kernel, LiveKd, already);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => ReadFour(e.Log, e)), Is.EqualTo(4));
        ctx.Restore();
        e.Mock.Verify(m => m.SetDecodeMode(It.IsAny<DecodeMode>()), Times.Never);
        Assert.That(e.Decode, Is.EqualTo(already));
    }

    [Test]
    public void LiveKernelWhoseCacheStateIsUnknownRefusesTheReadAndChangesNothing()
    {
        var e = new Engine(Kernel, LiveKd) { QueryFails = true };
        var ctx = new ProcessReadContext(e.Object);
        bool called = false;
        Assert.That(ctx.Read(Other, () => { called = true; return 4; }), Is.EqualTo(0));
        Assert.That(ctx.Read(Other, () => { called = true; return 4; }), Is.EqualTo(0));
        ctx.Restore();
        Assert.That(called, Is.False, "no read that could come from the wrong process");
        e.Mock.Verify(m => m.SetDecodeMode(It.IsAny<DecodeMode>()), Times.Never);
        e.Mock.Verify(m => m.SetImplicitProcess(It.IsAny<ulong>()), Times.Never);
        e.Mock.Verify(m => m.QueryDecodeMode(), Times.Once, "decided once per command");
        Assert.That(ctx.Messages.Single(), Does.Contain(".cache forcedecodeuser"));
    }

    [Test]
    public void LiveKernelThatRefusesTheOptionRefusesTheReadAndStillRestores()
    {
        var e = new Engine(Kernel, LiveKd) { RefuseDecodeSet = true };
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => 4), Is.EqualTo(0));
        ctx.Restore();
        Assert.That(e.Log, Is.EqualTo(new[] { "type", "query", "cache forcedecodeuser", "cache noforcedecodeptes", "query" }));
        Assert.That(ctx.Messages.Single(), Does.Contain("refused '.cache forcedecodeuser'"));
    }

    [Test]
    public void AnExceptionInTheReadRestoresTheImplicitProcessAndTheCommandEndRestoresTheCache()
    {
        var e = new Engine(Kernel, LiveKd);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => throw new AccessViolationException("boom")), Is.EqualTo(0));
        Assert.That(e.Implicit, Is.EqualTo(Saved));
        ctx.Restore();
        Assert.That(e.Decode, Is.EqualTo(DecodeMode.None));
    }

    [Test]
    public void AnExceptionThatEndsTheCommandStillRestoresEverything()
    {
        // As the host does it: the command throws after a read; the host's finally calls Restore.
        var e = new Engine(Kernel, LiveKd);
        var ctx = new ProcessReadContext(e.Object, afterFirstRead: () => throw new InvalidOperationException("command failed"));
        Assert.Throws<InvalidOperationException>(() =>
        {
            try { ctx.Read(Other, () => 4); }
            finally { ctx.Restore(); }
        });
        Assert.That(e.Implicit, Is.EqualTo(Saved));
        Assert.That(e.Decode, Is.EqualTo(DecodeMode.None));
        Assert.That(ctx.Messages, Is.Empty);
    }

    [Test]
    public void RestoresWhileACtrlBreakIsPendingByConsumingIt()
    {
        // The engine refuses work while an interrupt is pending (as the real one fails queries then): a Ctrl+Break
        // during the read, and another one before the command ends; each restore consumes it and tries again.
        var e = new Engine(Kernel, LiveKd) { RefuseWhileInterrupted = true };
        var ctx = new ProcessReadContext(e.Object, afterFirstRead: () => { e.Log.Add("ctrl+break"); e.InterruptPending = true; });
        Assert.That(ctx.Read(Other, () => { e.Log.Add("read, ctrl+break"); e.InterruptPending = true; return 4; }), Is.EqualTo(4));
        Assert.That(e.Implicit, Is.EqualTo(Saved), "implicit process restored after the interrupt was consumed");
        ctx.Restore();
        Assert.That(e.Log, Is.EqualTo(new[]
        {
            "type", "query", "cache forcedecodeuser", "query",
            "get process", $"set process {Other:x}", "read, ctrl+break",
            $"set process {Saved:x}", "consume interrupt", $"set process {Saved:x}", "get process",
            "ctrl+break",
            "cache noforcedecodeptes", "consume interrupt", "cache noforcedecodeptes", "query",
        }));
        Assert.That(e.Decode, Is.EqualTo(DecodeMode.None));
        Assert.That(ctx.Messages, Is.Empty);
    }

    [Test]
    public void ARestoreThatKeepsFailingTellsTheUserTheExactCommand()
    {
        var e = new Engine(Kernel, LiveKd);
        var ctx = new ProcessReadContext(e.Object);
        Assert.That(ctx.Read(Other, () => 4), Is.EqualTo(4));
        e.Mock.Setup(m => m.SetDecodeMode(DecodeMode.None)).Returns(() => { e.Log.Add("cache noforcedecodeptes"); return false; });
        ctx.Restore();
        Assert.That(e.Log.Count(l => l == "cache noforcedecodeptes"), Is.EqualTo(3), "bounded retries");
        Assert.That(ctx.Messages.Single(), Does.Contain("run '.cache noforcedecodeptes'"));
        Assert.That(ctx.DecodeModeChanged, Is.True);
    }

    [Test]
    public void NoProcessNoRead()
    {
        var e = new Engine(Kernel, LiveKd);
        Assert.That(new ProcessReadContext(e.Object).Read(0, () => 4), Is.EqualTo(0));
        Assert.That(e.Log, Is.Empty);
    }

    [Test]
    public void TreatDumpAsLiveRunsTheLiveSequence()
    {
        var e = new Engine(Kernel, KernelDump);
        var ctx = new ProcessReadContext(e.Object, treatDumpAsLive: true);
        ctx.Read(Other, () => 4);
        ctx.Restore();
        Assert.That(e.Log.Where(l => l.StartsWith("cache")), Is.EqualTo(new[] { "cache forcedecodeuser", "cache noforcedecodeptes" }));
    }

    // The real engine's .cache output (dbgeng 10.0.29507.1001, captured in the lab on a kernel dump).
    private const string CacheStatus = "\nMax cache size is       : 1048576 bytes (0x400 KB) \nTotal memory in cache   : 0 bytes (0 KB) \n" +
        "Number of regions cached: 0\n0 full reads broken into 0 partial reads\n    counts: 0 cached/0 uncached, 0.00% cached\n" +
        "    bytes : 0 cached/0 uncached, 0.00% cached\n** Transition PTEs are implicitly decoded\n{0}** Prototype PTEs are implicitly decoded\n";

    [TestCase("", "None")]
    [TestCase("** User virtual addresses are translated to physical addresses before access\n", "User")]
    [TestCase("** Virtual addresses are translated to physical addresses before access\r\n", "All")]
    public void ParsesTheEnginesCacheStatus(string line, string expected) =>
        Assert.That(ProcessReadContext.ParseCacheStatus(string.Format(CacheStatus, line)), Is.EqualTo(Enum.Parse<DecodeMode>(expected)));

    [TestCase(null)]
    [TestCase("")]
    [TestCase("Unknown command '.cache'\n")]
    [TestCase("** Kernel addresses are translated to physical addresses before access\nMax cache size is : 1\n")]
    public void UnknownCacheOutputIsUnknown(string? output) =>
        Assert.That(ProcessReadContext.ParseCacheStatus(output), Is.Null);
}
