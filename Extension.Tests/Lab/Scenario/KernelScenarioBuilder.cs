using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Target;

namespace NtSleuth.Lab.Scenario;

/// <summary>Memory regions the allocator hands out addresses from.</summary>
public enum PoolRegion { NonPaged, Paged, Session, User }

/// <summary>
/// Lays out kernel (and user-mode) objects at chosen virtual addresses in a <see cref="SparseMemory"/>, with every
/// offset taken from the build's symbol table (ISF) - never hand-written. Also owns the symbol provider (nt + extra
/// modules such as ndis/fltmgr + synthetic symbols like ECHO!EchoEvtTimerFunc), the module list, the clock
/// (KUSER_SHARED_DATA + tick globals), processors and the target facts (bugcheck, event CPU, current stack).
/// Build an <see cref="InMemoryTarget"/> with <see cref="CreateTarget"/>.
/// </summary>
public sealed partial class KernelScenarioBuilder : TypedMemory
{
    public const ulong SharedUserData = 0xfffff780_00000000;
    /// <summary>Windows clock tick: 15.625 ms = 156250 x 100 ns.</summary>
    public const uint DefaultTimeIncrement = 156250;

    private readonly Dictionary<PoolRegion, ulong> _next = new();
    private readonly List<(ulong Start, ulong End)> _reserved = new();
    private readonly List<ModuleInfo> _modules = new();
    private ulong _nextImage;

    public KernelScenarioBuilder(LabBuild build, TargetKind kind = TargetKind.Kernel)
        : base(new SparseMemory(), new IsfSymbolProvider().Add("nt", build.Isf, build.KernelBase), build.Label)
    {
        Build = build;
        Kind = kind;
        _next[PoolRegion.NonPaged] = build.PoolBase + 0x0100_0000;
        _next[PoolRegion.Paged] = build.BuildNumber < 9200 ? 0xfffff8a0_00100000 : build.PoolBase + 0x10_0000_0000;
        _next[PoolRegion.Session] = build.BuildNumber < 9200 ? 0xfffff900_c0100000 : 0xffffb000_00100000;
        _next[PoolRegion.User] = 0x000000d0_00100000;
        _nextImage = build.BuildNumber < 9200 ? 0xfffff880_01000000 : build.KernelBase + 0x0800_0000;
        // ntoskrnl image: size from the highest symbol RVA, rounded to 64 KB.
        ulong maxRva = build.Isf.Symbols.Values.DefaultIfEmpty(0x100000UL).Max();
        KernelSize = (uint)((maxRva + 0x20000) & ~0xffffUL);
        WritePeHeader(build.KernelBase, KernelSize, 0x5f000000u + (uint)build.BuildNumber);
        _modules.Add(new ModuleInfo("nt", build.KernelBase, KernelSize, @"\SystemRoot\system32\ntoskrnl.exe", 0x5f000000u + (uint)build.BuildNumber, build.Version));
    }

    public LabBuild Build { get; }
    public TargetKind Kind { get; }
    /// <summary>nt from the ISF at <see cref="LabBuild.KernelBase"/>; add more modules with <see cref="AddSymbolModule"/> / <see cref="AddSymbol"/>.</summary>
    public IsfSymbolProvider Symbols => (IsfSymbolProvider)SymbolProvider;
    public ulong KernelBase => Build.KernelBase;
    public uint KernelSize { get; }
    public IReadOnlyList<ModuleInfo> Modules => _modules;

    // ---- facts served by the target ----
    public int ProcessorCount { get; private set; } = 1;
    public int EventProcessor { get; set; } = -1;
    public BugCheckInfo? BugCheck { get; set; }
    public DateTime? SystemTimeUtc { get; private set; }
    public TimeSpan? UpTime { get; private set; }
    public bool IsDump { get; set; } = true;
    /// <summary>Frames of the current (event) thread, innermost first (for GetCurrentStack / !analyze-like use).</summary>
    public List<StackFrameInfo> CurrentStack { get; } = new();
    /// <summary>Value of @$thread / @$proc for TryEvaluate.</summary>
    public ulong CurrentThread { get; set; }
    public ulong CurrentProcess { get; set; }
    /// <summary>Named addresses and values the scenario exposes to tests ("hangThread" -> address).</summary>
    public Dictionary<string, ulong> Facts { get; } = new(StringComparer.OrdinalIgnoreCase);

    // =====================================================================================
    // Types and symbols
    // =====================================================================================

    /// <summary>Address of a symbol ("PsActiveProcessHead" = nt, or "ndis!ndisMiniportList"); error naming it when absent.</summary>
    public ulong Symbol(string name)
    {
        string q = name.Contains('!') ? name : "nt!" + name;
        return Symbols.GetSymbolAddress(q) ?? throw new ScenarioLayoutException($"symbol {q} is not in the symbol table of {Build.Label}");
    }

    public bool HasSymbol(string name) => Symbols.GetSymbolAddress(name.Contains('!') ? name : "nt!" + name) is not null;

    /// <summary>Adds a synthetic public symbol (e.g. "ECHO!EchoEvtTimerFunc" inside ECHO.sys).</summary>
    public ulong AddSymbol(string qualifiedName, ulong address)
    {
        Symbols.AddSymbol(qualifiedName, address);
        return address;
    }

    /// <summary>Adds another module's symbol table (e.g. ndis/fltmgr converted from the layout table) at its image base.</summary>
    public void AddSymbolModule(string module, IsfDocument doc, ulong imageBase) => Symbols.Add(module, doc, imageBase);

    // =====================================================================================
    // Allocation
    // =====================================================================================

    /// <summary>Allocates <paramref name="size"/> bytes in a region (pool-like: 16-byte aligned, a 16-byte pool-header gap between blocks), maps it zeroed.</summary>
    public ulong Alloc(ulong size, PoolRegion region = PoolRegion.NonPaged, ulong align = 16)
    {
        if (size == 0) size = 1;
        if (_scatter is not null && _arena.TryGetValue(region, out var arena)) return AllocScattered(size, region, arena, align);
        ulong a = Align(_next[region] + 0x10, align);
        while (true)
        {
            var hit = _reserved.FirstOrDefault(r => a < r.End && a + size > r.Start);
            if (hit == default) break;
            a = Align(hit.End + 0x10, align);
        }
        _next[region] = a + size;
        Reserve(a, size);
        return a;
    }

    /// <summary>Reserves and maps an explicit range (a seed's address, e.g. thread fffffa80`73d3d770).</summary>
    public ulong Place(ulong address, ulong size)
    {
        var clash = _reserved.FirstOrDefault(r => address < r.End && address + size > r.Start);
        if (clash != default && !(clash.Start == address && clash.End == address + size))
            throw new ScenarioLayoutException($"range {address:x16}+0x{size:x} overlaps an object already placed at {clash.Start:x16}..{clash.End:x16}");
        Reserve(address, size);
        return address;
    }

    private Random? _scatter;
    private readonly Dictionary<PoolRegion, ulong> _arena = new();
    /// <summary>Span of the arena scattered allocations are placed in (per pool region).</summary>
    public const ulong ScatterArenaBytes = 0x1000_0000;

    /// <summary>
    /// From now on every nonpaged/paged pool allocation (<see cref="Alloc"/>, so every object without a seed address)
    /// lands at a random offset of a random page of a 256 MB arena 32 GB past the region's back-to-back pool, as real
    /// pool places objects: other allocations (mapped, zero) between them, list order unrelated to address order.
    /// Deterministic for a given <paramref name="seed"/>.
    /// </summary>
    public void ScatterAllocations(int seed)
    {
        _scatter = new Random(seed);
        foreach (var r in new[] { PoolRegion.NonPaged, PoolRegion.Paged })
            _arena[r] = Align(_next[r] + 0x8_0000_0000, 0x1000);
    }

    private ulong AllocScattered(ulong size, PoolRegion region, ulong arena, ulong align)
    {
        ulong pages = (size + 0xfff) / 0x1000;
        for (int attempt = 0; attempt < 10_000; attempt++)
        {
            ulong page = arena + (ulong)_scatter!.NextInt64(0, (long)(ScatterArenaBytes / 0x1000 - pages - 1)) * 0x1000;
            ulong room = size >= 0x1000 ? 0 : 0x1000 - size - 0x10;
            ulong a = Align(page + 0x10 + (room == 0 ? 0 : (ulong)_scatter.NextInt64(0, (long)room)), align);
            if (a + size > page + pages * 0x1000 + 0x1000) continue;
            if (_reserved.Any(r => a < r.End + 0x10 && a + size + 0x10 > r.Start)) continue;
            Reserve(a, size);
            return a;
        }
        throw new ScenarioLayoutException($"no room for 0x{size:x} bytes in the scattered {region} arena");
    }

    private void Reserve(ulong a, ulong size)
    {
        _reserved.Add((a, a + size));
        Memory.Map(a, size);
    }

    private static ulong Align(ulong v, ulong a) => (v + a - 1) & ~(a - 1);

    /// <summary>A new zeroed instance of module!type in pool (or at <paramref name="at"/>).</summary>
    public StructWriter New(string type, ulong? at = null, string module = "nt", PoolRegion region = PoolRegion.NonPaged, ulong extraBytes = 0)
    {
        var l = Layout(type, module);
        ulong addr = at is { } x ? Place(x, l.Size + extraBytes) : Alloc(l.Size + extraBytes, region);
        return new StructWriter(this, l, addr);
    }

    /// <summary>A writer over an existing location (a global, an embedded struct, memory placed earlier); maps it if needed.</summary>
    public StructWriter At(string type, ulong address, string module = "nt")
    {
        var l = Layout(type, module);
        Memory.Map(address, l.Size);
        return new StructWriter(this, l, address);
    }

    /// <summary>A writer over the nt global <paramref name="symbol"/> viewed as <paramref name="type"/>.</summary>
    public StructWriter Global(string symbol, string type, string module = "nt") => At(type, Symbol(symbol.Contains('!') ? symbol : module + "!" + symbol), module);

    /// <summary>
    /// An object with its _OBJECT_HEADER in front of the body (PointerCount/HandleCount set); returns the body writer.
    /// <paramref name="typeIndex"/> is written raw (Windows 10 encodes it with ObHeaderCookie; scenarios that need !object decode set it themselves).
    /// </summary>
    public StructWriter NewObject(string type, ulong? bodyAt = null, byte typeIndex = 0, string module = "nt")
    {
        var hdr = Layout("_OBJECT_HEADER");
        ulong bodyOff = Resolve(hdr, "Body").Offset;
        var l = Layout(type, module);
        ulong body;
        if (bodyAt is { } b) { Place(b - bodyOff, bodyOff + l.Size); body = b; }
        else body = Alloc(bodyOff + l.Size) + bodyOff;
        var h = new StructWriter(this, hdr, body - bodyOff).Set("PointerCount", 1L).SetIfPresent("HandleCount", 1);
        if (typeIndex != 0) h.Set("TypeIndex", typeIndex);
        return new StructWriter(this, l, body);
    }

    // =====================================================================================
    // Raw memory helpers
    // =====================================================================================

    /// <summary>Writes a UTF-16 string (no terminator unless <paramref name="terminate"/>) into fresh pool; returns its address.</summary>
    public ulong NewUtf16(string text, bool terminate = true, PoolRegion region = PoolRegion.Paged)
    {
        var bytes = Encoding.Unicode.GetBytes(text + (terminate ? "\0" : ""));
        ulong a = Alloc((ulong)Math.Max(bytes.Length, 2), region);
        Memory.Write(a, bytes);
        return a;
    }

    /// <summary>Pool-like allocation (<see cref="Alloc"/>) in the non-paged region, mapped.</summary>
    public override ulong Allocate(ulong size, ulong align = 16) => Alloc(size, PoolRegion.NonPaged, align);

    /// <summary>A UNICODE_STRING's text: placed at <paramref name="bufferAt"/> (reserved) or in fresh paged pool.</summary>
    protected override ulong PlaceUtf16(string text, byte[] bytes, ulong? bufferAt)
    {
        if (bufferAt is not { } x) return NewUtf16(text);
        Place(x, (ulong)bytes.Length + 2);
        Memory.Write(x, bytes);
        return x;
    }

    // =====================================================================================
    // Module images
    // =====================================================================================

    /// <summary>
    /// Places a module image (minimal PE header: MZ/PE, SizeOfImage, TimeDateStamp) and records it for GetModules.
    /// Does not add a loader entry: <see cref="AddLoadedModule"/> does both.
    /// </summary>
    public ulong PlaceImage(string name, uint size, ulong? at = null, uint timeDateStamp = 0x5f3a1c2b)
    {
        size = (uint)Align(size, 0x1000);
        ulong b = at ?? Align(_nextImage, 0x10000);
        if (at is null) _nextImage = b + size + 0x10000;
        Place(b, 0x1000);
        WritePeHeader(b, size, timeDateStamp);
        string modName = Path.GetFileNameWithoutExtension(name);
        _modules.Add(new ModuleInfo(modName, b, size, name, timeDateStamp));
        return b;
    }

    private void WritePeHeader(ulong b, uint size, uint stamp)
    {
        var h = new byte[0x200];
        h[0] = (byte)'M'; h[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x3c), 0x80);
        "PE\0\0"u8.CopyTo(h.AsSpan(0x80));
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x84), 0x8664);  // Machine
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x88), stamp);   // TimeDateStamp
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x94), 0xf0);    // SizeOfOptionalHeader
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x96), 0x22);    // Characteristics
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x98), 0x20b);   // PE32+
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x98 + 24), b);  // ImageBase
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 32), 0x1000); // SectionAlignment
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 36), 0x200);  // FileAlignment
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 56), size);   // SizeOfImage
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 60), 0x400);  // SizeOfHeaders
        Memory.Write(b, h);
    }

    // =====================================================================================
    // Target
    // =====================================================================================

    public TargetInfo Info => new()
    {
        Kind = Kind,
        IsDump = IsDump,
        PointerSize = 8,
        BuildNumber = Build.BuildNumber,
        ProcessorCount = ProcessorCount,
        EventProcessor = EventProcessor,
        SystemTimeUtc = SystemTimeUtc,
        SystemUpTime = UpTime,
        BugCheck = BugCheck,
        Description = $"NtSleuth lab in-memory {(Kind == TargetKind.Kernel ? "kernel" : "user")} target, {Build.Label}",
    };

    /// <summary>The scenario served through <see cref="ITarget"/> (shares this builder's memory: later writes are visible).</summary>
    public InMemoryTarget CreateTarget()
    {
        var t = new InMemoryTarget(Memory, Symbols, Info, _modules.ToList(), CurrentStack.ToList(),
            new Dictionary<string, ulong>(StringComparer.OrdinalIgnoreCase) { ["$thread"] = CurrentThread, ["$proc"] = CurrentProcess });
        foreach (var (e, m) in _processSpaces) t.AddProcessSpace(e, m);
        return t;
    }

    private readonly List<(ulong EProcess, SparseMemory Memory)> _processSpaces = new();
    /// <summary>Other processes' user address spaces (EPROCESS, its user pages), e.g. the Registry process's: served by
    /// the targets' ReadProcessVirtual and written into kernel dumps with their own page tables.</summary>
    public IReadOnlyList<(ulong EProcess, SparseMemory Memory)> ProcessSpaces => _processSpaces;
    public void AddProcessSpace(ulong eprocess, SparseMemory memory)
    {
        _processSpaces.RemoveAll(p => p.EProcess == eprocess);
        _processSpaces.Add((eprocess, memory));
    }
}
