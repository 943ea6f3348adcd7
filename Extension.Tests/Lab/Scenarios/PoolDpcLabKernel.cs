using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Scenario;
using NtSleuth.Lab.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>The five kernel symbol tables by GUID-age (test case ids), loaded through the lab's build catalogue (one decode per process).</summary>
public static class PoolDpcBuilds
{
    public const string Win7 = "339E74133576439CBCDF7E0229DA3773-1";
    public const string Win2012R2 = "169C65213E3E42DDBEB4E3AC66312B82-1";
    public const string Win2016 = "DBBC830E3E9A48FDA25A2144C146930E-1";
    public const string Win10 = "5278AFF86C341677D7D7835C85B7B844-1";
    public const string Win11 = "0CE4A95C0CD782A7596B034D8648E585-1";

    /// <summary>Loads an nt symbol table; null when ../shared is absent (tests then skip).</summary>
    public static IsfDocument? TryLoadNt(string id) => LabBuilds.TryGet(id)?.Isf;
}

/// <summary>
/// The pool and DPC scenarios' view of a <see cref="KernelScenarioBuilder"/>: the builder's memory, symbols, pool
/// allocator and field writer, plus the scenario-level facts these scenarios set themselves (their own module list,
/// stack, bug check, processor count), served by the lab's <see cref="InMemoryTarget"/>.
/// </summary>
public sealed class LabKernel
{
    /// <summary>
    /// A kernel of its own (tests, bench): a builder for <paramref name="buildId"/> with nt at <paramref name="ntBase"/>;
    /// the module list names nt with an 8 MB image and the scenarios lay out their own processors.
    /// </summary>
    public LabKernel(IsfDocument nt, string buildId, ulong ntBase = 0xfffff800_01400000)
        : this(new KernelScenarioBuilder(LabBuilds.Get(buildId).WithKernelBase(ntBase)), 0x800000, ntBase + 0xE00000)
    {
        if (!ReferenceEquals(nt, Builder.Build.Isf)) throw new ArgumentException($"the symbol table is not the lab's table of {buildId}", nameof(nt));
        Standalone = true;
    }

    /// <summary>
    /// A view over a catalogue scenario's builder: its processors; modules are registered with the builder
    /// (PsLoadedModuleList) by the IScenario adapters.
    /// </summary>
    public LabKernel(KernelScenarioBuilder b)
        : this(b, b.KernelSize, b.KernelBase + b.KernelSize - 0x10000) // synthetic code above every public of the table
    {
        ProcessorCount = b.ProcessorCount;
    }

    private LabKernel(KernelScenarioBuilder b, uint ntSize, ulong syntheticCodeBase)
    {
        Builder = b;
        Modules.Add(new ModuleInfo("nt", b.KernelBase, ntSize, @"\SystemRoot\system32\ntoskrnl.exe"));
        SyntheticCodeBase = syntheticCodeBase;
    }

    public KernelScenarioBuilder Builder { get; }
    /// <summary>True for a kernel of its own (the scenario lays out processors itself); false for a view over a catalogue builder.</summary>
    public bool Standalone { get; }
    /// <summary>Where scenarios place nt functions the symbol table lacks (inside the nt image, above its publics).</summary>
    public ulong SyntheticCodeBase { get; }

    public IsfDocument Nt => Builder.Build.Isf;
    public string BuildId => Builder.Build.GuidAge;
    public int BuildNumber => Builder.Build.BuildNumber;
    public ulong NtBase => Builder.KernelBase;
    public SparseMemory Memory => Builder.Memory;
    public IsfSymbolProvider Symbols => Builder.Symbols;
    public List<ModuleInfo> Modules { get; } = new();
    public List<StackFrameInfo> Stack { get; } = new();
    public int ProcessorCount { get; set; } = 1;
    public int EventProcessor { get; set; } = -1;
    public BugCheckInfo? BugCheck { get; set; }
    public bool IsLive { get; set; }

    private ulong _packed = 0xffffe000_10000000;

    /// <summary>
    /// A zeroed, mapped block: from the builder's nonpaged pool for a view; placed back to back (no pool-header gap)
    /// through the builder for a kernel of its own, whose addresses the bench figures depend on (the KDPC arrays'
    /// placement decides how !dpcblame's reads split).
    /// </summary>
    public ulong Alloc(ulong size, ulong align = 16)
    {
        size = Math.Max(size, 1);
        if (!Standalone) return Builder.Alloc(size, PoolRegion.NonPaged, Math.Max(align, 16));
        _packed = (_packed + align - 1) & ~(align - 1);
        ulong a = Builder.Place(_packed, size);
        _packed += size;
        return a;
    }

    public ulong Sym(string name) => Builder.Symbol(name);
    /// <summary>True when the nt symbol table has <paramref name="name"/> (synthetic symbols do not count).</summary>
    public bool HasSym(string name) => Nt.Symbols.ContainsKey(name);
    public TypeLayout Layout(string type) => Builder.Layout(type);
    public bool HasType(string type) => Builder.Has(type);
    public ulong SizeOf(string type) => Builder.SizeOf(type);
    public ulong Offset(string type, string path) => Builder.OffsetOf(type, path);

    /// <summary>Writes an integer field (sized by the layout; bitfields merged) of <paramref name="type"/> at <paramref name="addr"/>.</summary>
    public void Set(string type, ulong addr, string path, ulong value) => new StructWriter(Builder, Layout(type), addr).Set(path, value);

    public ulong ReadLe(ulong addr, int size) => Builder.ReadLe(addr, size);
    public void WriteLe(ulong addr, int size, ulong value) => Builder.WriteLe(addr, size, value);
    public void WritePtr(ulong addr, ulong value) => Builder.WritePointer(addr, value);

    /// <summary>Adds a driver module (image mapped for <paramref name="mappedBytes"/>, default the whole image).</summary>
    public ModuleInfo AddModule(string fileName, ulong @base, uint size, ulong? mappedBytes = null)
    {
        var m = new ModuleInfo(fileName, @base, size, @"\SystemRoot\system32\drivers\" + fileName);
        Modules.Add(m);
        Memory.Map(@base, mappedBytes ?? size);
        return m;
    }

    /// <summary>The kernel served by the lab's in-memory target (counters, fault injection, hidden symbols).</summary>
    public InMemoryTarget CreateTarget() => new(Memory, Symbols, Info, Modules, Stack);

    private TargetInfo Info => new()
    {
        Kind = TargetKind.Kernel, IsDump = !IsLive, PointerSize = 8, BuildNumber = BuildNumber, ProcessorCount = ProcessorCount,
        EventProcessor = EventProcessor, BugCheck = BugCheck, Description = "lab kernel " + BuildId,
    };
}
