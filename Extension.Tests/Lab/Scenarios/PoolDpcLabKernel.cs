using System.Buffers.Binary;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>The five kernel symbol tables by GUID-age, loaded through the lab's build catalogue (one decode per process).</summary>
public static class PoolDpcBuilds
{
    public const string Win7 = "339E74133576439CBCDF7E0229DA3773-1";
    public const string Win2012R2 = "169C65213E3E42DDBEB4E3AC66312B82-1";
    public const string Win2016 = "DBBC830E3E9A48FDA25A2144C146930E-1";
    public const string Win10 = "5278AFF86C341677D7D7835C85B7B844-1";
    public const string Win11 = "0CE4A95C0CD782A7596B034D8648E585-1";

    public static int BuildNumber(string id) => id switch
    {
        Win7 => 7601, Win2012R2 => 9600, Win2016 => 14393, Win10 => 19041, Win11 => 22000, _ => 0,
    };

    /// <summary>Loads an nt symbol table; null when ../shared is absent (tests then skip).</summary>
    public static IsfDocument? TryLoadNt(string id) => NtSleuth.Lab.Scenario.LabBuilds.TryGet(id)?.Isf;
}

/// <summary>
/// A small scenario kernel for the pool and DPC scenarios: sparse memory, nt symbols from an ISF table at a base,
/// a module list, and typed writers that place fields by name (never by hand-written offsets).
/// (Stand-in until the shared lab builder lands; it only uses SparseMemory and the ISF reader.)
/// </summary>
public sealed class LabKernel
{
    public LabKernel(IsfDocument nt, string buildId, ulong ntBase = 0xfffff800_01400000)
    {
        Nt = nt; BuildId = buildId; NtBase = ntBase;
        Memory = new SparseMemory();
        Symbols = new IsfSymbolProvider().Add("nt", nt, ntBase);
        Modules.Add(new ModuleInfo("nt", ntBase, 0x800000, @"\SystemRoot\system32\ntoskrnl.exe"));
        SyntheticCodeBase = ntBase + 0xE00000;
    }

    /// <summary>
    /// A view over the lab's shared scenario builder: same memory and symbols; allocations come from the builder's
    /// pool regions; modules are registered with the builder (PsLoadedModuleList) by the IScenario adapters.
    /// </summary>
    public LabKernel(NtSleuth.Lab.Scenario.KernelScenarioBuilder b)
    {
        Nt = b.Build.Isf; BuildId = b.Build.GuidAge; NtBase = b.KernelBase;
        Memory = b.Memory; Symbols = b.Symbols; Builder = b;
        Modules.Add(new ModuleInfo("nt", b.KernelBase, b.KernelSize, @"\SystemRoot\system32\ntoskrnl.exe"));
        SyntheticCodeBase = b.KernelBase + b.KernelSize - 0x10000; // above every public of the table
        ProcessorCount = b.ProcessorCount;
    }

    /// <summary>The shared builder when this kernel is a view over one; null for the standalone kernel.</summary>
    public NtSleuth.Lab.Scenario.KernelScenarioBuilder? Builder { get; }
    /// <summary>Where scenarios place nt functions the symbol table lacks (inside the nt image, above its publics).</summary>
    public ulong SyntheticCodeBase { get; }

    public IsfDocument Nt { get; }
    public string BuildId { get; }
    public int BuildNumber => PoolDpcBuilds.BuildNumber(BuildId);
    public ulong NtBase { get; }
    public SparseMemory Memory { get; }
    public IsfSymbolProvider Symbols { get; }
    public List<ModuleInfo> Modules { get; } = new();
    public List<StackFrameInfo> Stack { get; } = new();
    public int ProcessorCount { get; set; } = 1;
    public int EventProcessor { get; set; } = -1;
    public BugCheckInfo? BugCheck { get; set; }
    public bool IsLive { get; set; }

    private ulong _heap = 0xffffe000_10000000;

    /// <summary>Bump allocator in a nonpaged-pool-like region; returns a zeroed, mapped block.</summary>
    public ulong Alloc(ulong size, ulong align = 16)
    {
        if (Builder is not null) return Builder.Alloc(Math.Max(size, 1), NtSleuth.Lab.Scenario.PoolRegion.NonPaged, Math.Max(align, 16));
        _heap = (_heap + align - 1) & ~(align - 1);
        ulong a = _heap;
        _heap += Math.Max(size, 1);
        Memory.Map(a, Math.Max(size, 1));
        return a;
    }

    public ulong Sym(string name) => NtBase + Nt.GetSymbolRva(name);
    public bool HasSym(string name) => Nt.Symbols.ContainsKey(name);
    public TypeLayout Layout(string type) => Nt.ToLayout("nt", type) ?? throw new InvalidOperationException($"type {type} not in {BuildId}");
    public bool HasType(string type) => Nt.UserTypes.ContainsKey(type);
    public ulong SizeOf(string type) => Layout(type).Size;

    public ulong Offset(string type, string path)
    {
        ulong off = 0;
        var layout = Layout(type);
        var parts = path.Split('.');
        for (int i = 0; i < parts.Length; i++)
        {
            var f = layout.GetField(parts[i]);
            off += f.Offset;
            if (i < parts.Length - 1) layout = Layout(f.Type.Name);
        }
        return off;
    }

    /// <summary>Writes an integer field (sized by the layout; bitfields merged) of <paramref name="type"/> at <paramref name="addr"/>.</summary>
    public void Set(string type, ulong addr, string path, ulong value)
    {
        var layout = Layout(type);
        var parts = path.Split('.');
        ulong off = 0;
        FieldLayout f = null!;
        for (int i = 0; i < parts.Length; i++)
        {
            f = layout.GetField(parts[i]);
            off += f.Offset;
            if (i < parts.Length - 1) layout = Layout(f.Type.Name);
        }
        var t = f.Type;
        if (t.Kind == TypeKind.Bitfield)
        {
            int size = (int)(t.Inner?.Size ?? 4);
            ulong cur = ReadLe(addr + off, size);
            ulong mask = (t.BitLength >= 64 ? ulong.MaxValue : (1UL << t.BitLength) - 1) << t.BitPosition;
            cur = (cur & ~mask) | ((value << t.BitPosition) & mask);
            WriteLe(addr + off, size, cur);
            return;
        }
        int sz = (int)(t.Kind == TypeKind.Pointer && t.Size == 0 ? 8 : t.Size);
        if (sz is 0 or > 8) throw new InvalidOperationException($"{type}.{path} is not a scalar");
        WriteLe(addr + off, sz, value);
    }

    public ulong ReadLe(ulong addr, int size)
    {
        var b = new byte[8];
        Memory.Read(addr, b.AsSpan(0, size));
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void WriteLe(ulong addr, int size, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Memory.Write(addr, b.AsSpan(0, size));
    }

    public void WritePtr(ulong addr, ulong value) => Memory.WriteU64(addr, value);

    /// <summary>Adds a driver module (image mapped for <paramref name="mappedBytes"/>, default the whole image).</summary>
    public ModuleInfo AddModule(string fileName, ulong @base, uint size, ulong? mappedBytes = null)
    {
        var m = new ModuleInfo(fileName, @base, size, @"\SystemRoot\system32\drivers\" + fileName);
        Modules.Add(m);
        Memory.Map(@base, mappedBytes ?? size);
        return m;
    }

    public LabTarget CreateTarget() => new(this);

    /// <summary>The same kernel served by the lab's shared in-memory target (NtSleuth.Lab.Target.InMemoryTarget).</summary>
    public NtSleuth.Lab.Target.InMemoryTarget CreateSharedTarget() => new(Memory, Symbols, new TargetInfo
    {
        Kind = TargetKind.Kernel, IsDump = !IsLive, PointerSize = 8, BuildNumber = BuildNumber, ProcessorCount = ProcessorCount,
        EventProcessor = EventProcessor, BugCheck = BugCheck, Description = "lab kernel " + BuildId,
    }, Modules, Stack);
}

/// <summary>The lab kernel served through ITarget, with counters and fault injection (interrupt after N searches).</summary>
public sealed class LabTarget : ITarget
{
    private readonly LabKernel _k;
    public LabTarget(LabKernel k)
    {
        _k = k;
        Info = new TargetInfo
        {
            Kind = TargetKind.Kernel, IsDump = !k.IsLive, PointerSize = 8, BuildNumber = k.BuildNumber,
            ProcessorCount = k.ProcessorCount, EventProcessor = k.EventProcessor, BugCheck = k.BugCheck,
            Description = "lab kernel " + k.BuildId,
        };
    }

    public TargetInfo Info { get; }
    public ISymbolProvider Symbols => HiddenSymbols.Count == 0 ? _k.Symbols : new HidingSymbols(_k.Symbols, HiddenSymbols);
    /// <summary>Fault injection: symbols ("nt!PoolTrackTable") or types ("nt!_KDPC") the provider pretends not to know.</summary>
    public HashSet<string> HiddenSymbols { get; } = new(StringComparer.OrdinalIgnoreCase);
    public long Reads { get; private set; }
    /// <summary>When set, every read request (address, length) is recorded.</summary>
    public List<(ulong Address, int Length)>? ReadLog { get; set; }
    public long BytesRequested { get; private set; }
    public long Searches { get; private set; }
    /// <summary>Ctrl+Break is "pressed" once this many searches have been made (fault injection).</summary>
    public int? InterruptAfterSearches { get; set; }
    public bool Interrupt { get; set; }

    public int ReadVirtual(ulong address, Span<byte> buffer)
    {
        Reads++; BytesRequested += buffer.Length;
        ReadLog?.Add((address, buffer.Length));
        return _k.Memory.Read(address, buffer);
    }

    public ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        Searches++;
        if (pattern.Length == 0) return null;
        ulong end = start + length;
        // Scan mapped pages only (what the engine's search does over a dump); matches may span pages.
        var buf = new byte[SparseMemory.PageSize + pattern.Length];
        for (ulong page = SparseMemory.PageOf(start); page < end; page += SparseMemory.PageSize)
        {
            if (!_k.Memory.IsMapped(page)) continue;
            int n = _k.Memory.Read(page, buf);
            for (int i = 0; i + pattern.Length <= n; i++)
            {
                ulong a = page + (ulong)i;
                if (a < start || a + (ulong)pattern.Length > end) continue;
                if (i >= SparseMemory.PageSize) break;
                if (buf.AsSpan(i, pattern.Length).SequenceEqual(pattern)) return a;
            }
        }
        return null;
    }

    public IReadOnlyList<ModuleInfo> GetModules() => _k.Modules;

    public bool TryEvaluate(string expression, out ulong value, out string? error)
    {
        error = null;
        var e = expression.Trim().Replace("`", "");
        if (e.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) e = e[2..];
        if (ulong.TryParse(e, System.Globalization.NumberStyles.HexNumber, null, out value)) return true;
        var s = _k.Symbols.GetSymbolAddress(expression.Trim());
        if (s is not null) { value = s.Value; return true; }
        error = "Couldn't resolve error at '" + expression + "'";
        return false;
    }

    public IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames) => _k.Stack.Take(maxFrames).ToList();

    public bool IsInterruptRequested => Interrupt || (InterruptAfterSearches is int n && Searches >= n);
}

internal sealed class HidingSymbols(ISymbolProvider inner, HashSet<string> hidden) : ISymbolProvider
{
    public ulong? GetSymbolAddress(string q) => hidden.Contains(q) ? null : inner.GetSymbolAddress(q);
    public string? GetNameByAddress(ulong a, out ulong d) => inner.GetNameByAddress(a, out d);
    public TypeLayout? GetTypeLayout(string m, string t) => hidden.Contains(m + "!" + t) ? null : inner.GetTypeLayout(m, t);
    public bool HasSymbols(string m) => inner.HasSymbols(m);
}
