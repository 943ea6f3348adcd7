using System.Text;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Dumps;

namespace NtSleuth.Lab.Samples;

/// <summary>Everything a kernel sample scenario needs to lay itself out for one build.</summary>
public sealed class KernelSampleContext
{
    public required IsfDocument Nt { get; init; }
    public required uint BuildNumber { get; init; }
    public required ulong KernelBase { get; init; }
    public required SparseMemory Memory { get; init; }
    public required IsfStructWriter Writer { get; init; }
    /// <summary>DirectoryTableBase the dump writer will use (for _KPROCESS.DirectoryTableBase).</summary>
    public required ulong DirectoryTableBase { get; init; }
    public ulong Sym(string name) => KernelBase + Nt.GetSymbolRva(name);
}

/// <summary>What a scenario contributes to the dump plan and the manifest.</summary>
public sealed record KernelSampleSetup
{
    public IReadOnlyList<string> Commands { get; init; } = [];
    public IReadOnlyList<ulong>? CurrentThreads { get; init; }
    public int ProcessorCount { get; init; } = 1;
    public uint BugCheckCode { get; init; }
    public ulong[] BugCheckParameters { get; init; } = new ulong[4];
    /// <summary>Other modules for PsLoadedModuleList (bases and sizes); images are forged by make-samples when a forge spec is given.</summary>
    public IReadOnlyList<(KernelModuleSpec Module, Forge.ForgeModuleSpec? Forge)> Drivers { get; init; } = [];
}

/// <summary>
/// A kernel sample scenario. The scenario catalogue of the lab (branch wt-lab) and the command helpers register their
/// scenarios here (<see cref="SampleCatalog.Kernel"/>); make-samples writes each one as a dump + forged symbols.
/// </summary>
public interface IKernelSampleScenario
{
    string Name { get; }
    /// <summary>Seed file name under ../shared/seeds the scenario reproduces (manifest "seed").</summary>
    string Seed { get; }
    /// <summary>True when the scenario's types exist in this build's table.</summary>
    bool Supports(IsfDocument nt);
    KernelSampleSetup Build(KernelSampleContext ctx);
}

/// <summary>The registered sample scenarios.</summary>
public static class SampleCatalog
{
    private static readonly List<IKernelSampleScenario> _kernel = [new BaselineKernelScenario()];
    public static IReadOnlyList<IKernelSampleScenario> Kernel => _kernel;
    public static void Register(IKernelSampleScenario s)
    {
        lock (_kernel) if (!_kernel.Any(k => k.Name == s.Name)) _kernel.Add(s);
    }
}

/// <summary>
/// The smallest kernel that proves the dump plumbing: the System process (PID 4, "System") on PsActiveProcessHead with
/// one system thread (Cid 4.8, waiting, WrQueue) as the current thread, its kernel stack, and nt!PoolTrackTable
/// pointing at a one-entry table. Every field through the ISF.
/// </summary>
public sealed class BaselineKernelScenario : IKernelSampleScenario
{
    public string Name => "baseline";
    public string Seed => "";
    public bool Supports(IsfDocument nt) => nt.UserTypes.ContainsKey("_EPROCESS") && nt.Symbols.ContainsKey("PoolTrackTable");

    public const ulong SystemProcess = 0xFFFF_C000_1000_0040;
    public const ulong SystemThread = 0xFFFF_C000_1001_0080;
    public const ulong TrackTable = 0xFFFF_C000_1100_0000;

    public KernelSampleSetup Build(KernelSampleContext ctx)
    {
        var w = ctx.Writer;
        var m = ctx.Memory;
        m.Map(SystemProcess, (ulong)w.SizeOf("_EPROCESS"));
        w.Set(SystemProcess, "_EPROCESS", "Pcb.Header.Type", 3);
        w.Set(SystemProcess, "_EPROCESS", "Pcb.DirectoryTableBase", ctx.DirectoryTableBase);
        w.Set(SystemProcess, "_EPROCESS", "UniqueProcessId", 4);
        w.SetBytes(SystemProcess, "_EPROCESS", "ImageFileName", Encoding.ASCII.GetBytes("System\0"));
        ulong links = SystemProcess + (ulong)w.Field("_EPROCESS", "ActiveProcessLinks").Offset;
        w.LinkList(ctx.Sym("PsActiveProcessHead"), [links]);

        m.Map(SystemThread, (ulong)w.SizeOf("_ETHREAD"));
        w.Set(SystemThread, "_ETHREAD", "Tcb.Header.Type", 6);
        w.Set(SystemThread, "_ETHREAD", "Tcb.ApcState.Process", SystemProcess);
        if (w.HasField("_KTHREAD", "Process")) w.Set(SystemThread, "_ETHREAD", "Tcb.Process", SystemProcess);
        w.Set(SystemThread, "_ETHREAD", "Tcb.State", 2);
        w.Set(SystemThread, "_ETHREAD", "Cid.UniqueProcess", 4);
        w.Set(SystemThread, "_ETHREAD", "Cid.UniqueThread", 8);
        ulong stack = SystemThread + 0x10_0000 - 0x80;
        m.Map(stack - 0x6000, 0x6000);
        w.Set(SystemThread, "_ETHREAD", "Tcb.InitialStack", stack);
        w.Set(SystemThread, "_ETHREAD", "Tcb.StackBase", stack);
        w.Set(SystemThread, "_ETHREAD", "Tcb.StackLimit", stack - 0x6000);
        w.Set(SystemThread, "_ETHREAD", "Tcb.KernelStack", stack - 0x1000);
        w.LinkList(SystemProcess + (ulong)w.Field("_EPROCESS", "ThreadListHead").Offset,
            [SystemThread + (ulong)w.Field("_ETHREAD", "ThreadListEntry").Offset]);
        w.LinkList(SystemProcess + (ulong)w.Field("_KPROCESS", "ThreadListHead").Offset,
            [SystemThread + (ulong)w.Field("_KTHREAD", "ThreadListEntry").Offset]);

        int entry = w.SizeOf("_POOL_TRACKER_TABLE");
        m.Map(TrackTable, (ulong)entry * 2);
        w.Set(TrackTable, "_POOL_TRACKER_TABLE", "Key", BitConverter.ToUInt32("Proc"u8));
        m.WriteU64(ctx.Sym("PoolTrackTable"), TrackTable);
        if (ctx.Nt.Symbols.ContainsKey("PoolTrackTableSize")) m.WriteU64(ctx.Sym("PoolTrackTableSize"), 2);

        return new KernelSampleSetup
        {
            CurrentThreads = [SystemThread],
            Commands =
            [
                "vertarget", "lm", "r", "x nt!PoolTrackTable", "dq nt!PoolTrackTable L1",
                $"dt nt!_EPROCESS {SystemProcess:x} ImageFileName UniqueProcessId",
                $"dx -r0 ((nt!_ETHREAD*)0x{SystemThread:x})->Cid",
            ],
        };
    }
}
