using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Scenario;

/// <summary>
/// The lab's one way of writing typed data: a <see cref="SparseMemory"/> plus the symbol provider whose layouts give
/// every offset, size and bit position (never hand-written). <see cref="View"/> / <see cref="StructWriter"/> write one
/// structure by field name; the helpers here write lists and UNICODE_STRINGs. <see cref="KernelScenarioBuilder"/> is
/// one (it adds allocation, modules, processors, the clock); the dump preparation and the ndis/fltmgr scenarios make
/// their own over the memory and symbols they lay into.
/// </summary>
public class TypedMemory
{
    private readonly TypeCache _types;

    private ulong? _heap;

    /// <param name="label">Names the symbol tables in error messages ("Windows 10 20H2 (19041)", "layouts:ndis:...").</param>
    /// <param name="heapStart">Where <see cref="Allocate"/> hands out addresses from (a bump allocator); null: no allocation.</param>
    public TypedMemory(SparseMemory memory, ISymbolProvider symbols, string label, ulong? heapStart = null)
    {
        Memory = memory; SymbolProvider = symbols; Label = label; _heap = heapStart;
        _types = new TypeCache(symbols);
    }

    /// <summary>
    /// <paramref name="size"/> bytes at the next <paramref name="align"/>ed address of the heap (not mapped: writes map the
    /// pages they touch). <see cref="KernelScenarioBuilder"/> allocates from its non-paged pool region instead.
    /// </summary>
    public virtual ulong Allocate(ulong size, ulong align = 16)
    {
        ulong next = _heap ?? throw new InvalidOperationException($"{Label}: this TypedMemory has no heap (give heapStart)");
        ulong a = (next + align - 1) & ~(align - 1);
        _heap = a + size;
        return a;
    }

    /// <summary>Over one symbol table as module "nt" (the dump preparation's kernel ISF).</summary>
    public TypedMemory(SparseMemory memory, IsfDocument nt) : this(memory, new IsfSymbolProvider().Add("nt", nt, 0), nt.Source) { }

    public SparseMemory Memory { get; }
    public ISymbolProvider SymbolProvider { get; }
    public string Label { get; }

    /// <summary>A writer over module!type at <paramref name="address"/> (maps nothing; writes map the pages they touch).</summary>
    public StructWriter View(string type, ulong address, string module = "nt") => new(this, Layout(type, module), address);

    /// <summary>A writer over a layout already in hand at <paramref name="address"/>.</summary>
    public StructWriter View(TypeLayout layout, ulong address) => new(this, layout, address);

    /// <summary>True when the type (and, if given, the dotted field path) exists on this build.</summary>
    public bool Has(string type, string? field = null, string module = "nt")
    {
        var l = _types.TryGet(module, type);
        return l is not null && (field is null || _types.TryResolvePath(l, field) is not null);
    }

    /// <summary>Layout of module!type; a <see cref="ScenarioLayoutException"/> naming the type and build when absent.</summary>
    public TypeLayout Layout(string type, string module = "nt") =>
        _types.TryGet(module, type) ?? throw new ScenarioLayoutException($"type {module}!{type} is not in the symbol table of {Label}");

    public ulong SizeOf(string type, string module = "nt") => Layout(type, module).Size;

    public ulong OffsetOf(string type, string path, string module = "nt") => Resolve(Layout(type, module), path).Offset;

    internal (ulong Offset, TypeRef Type)? TryResolve(TypeLayout layout, string path) => _types.TryResolvePath(layout, path);

    internal (ulong Offset, TypeRef Type) Resolve(TypeLayout layout, string path) =>
        _types.TryResolvePath(layout, path) ?? throw new ScenarioLayoutException(
            $"{layout.Module}!{layout.Name} has no field '{path}' on {Label}{Suggest(layout, path)}");

    private static string Suggest(TypeLayout layout, string path)
    {
        string last = path.Split('.')[0];
        var near = layout.Fields.Select(f => f.Name).Where(n => n.StartsWith(last[..Math.Min(5, last.Length)], StringComparison.OrdinalIgnoreCase)).Take(6).ToList();
        return near.Count == 0 ? "" : $" (fields with a similar name: {string.Join(", ", near)})";
    }

    /// <summary>Value of an enum constant by name. <paramref name="enumType"/> null = search all enums of the module (must be unique).</summary>
    public long EnumValue(string module, string? enumType, string constant)
    {
        if (SymbolProvider is not IsfSymbolProvider isf || !isf.Modules.TryGetValue(module, out var m)) throw new ScenarioLayoutException($"no symbols for module '{module}'");
        var doc = m.Doc;
        if (enumType is not null)
        {
            if (!doc.Enums.TryGetValue(enumType, out var e))
            {
                // A few kernel enums are absent from some public PDBs (Windows 7 has no _KTHREAD_STATE); their values are
                // documented and stable, so the lab falls back to them only when the table lacks the enum.
                if (module == "nt" && WellKnownEnums.TryGetValue(enumType, out var wk) && wk.TryGetValue(constant, out var wv)) return wv;
                throw new ScenarioLayoutException($"enum {module}!{enumType} is not in the symbol table of {Label}");
            }
            if (!e.Constants.TryGetValue(constant, out var v))
                throw new ScenarioLayoutException($"enum {module}!{enumType} has no constant '{constant}' on {Label} (has: {string.Join(", ", e.Constants.Keys.Take(12))}...)");
            return v;
        }
        var hits = doc.Enums.Values.Where(e => e.Constants.ContainsKey(constant)).Select(e => (e.Name, e.Constants[constant])).Distinct().ToList();
        if (hits.Select(h => h.Item2).Distinct().Count() == 1) return hits[0].Item2;
        if (hits.Count == 0) throw new ScenarioLayoutException($"no enum of {module} on {Label} has a constant '{constant}'");
        throw new ScenarioLayoutException($"enum constant '{constant}' is ambiguous on {Label} ({string.Join(", ", hits.Select(h => h.Name))}); name the enum");
    }

    private static readonly Dictionary<string, Dictionary<string, long>> WellKnownEnums = new()
    {
        ["_KTHREAD_STATE"] = new() { ["Initialized"] = 0, ["Ready"] = 1, ["Running"] = 2, ["Standby"] = 3, ["Terminated"] = 4, ["Waiting"] = 5, ["Transition"] = 6, ["DeferredReady"] = 7, ["GateWaitObsolete"] = 8 },
    };

    public long EnumValue(string enumType, string constant) => EnumValue("nt", enumType, constant);

    public ulong ReadLe(ulong addr, int size)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        Memory.Read(addr, b[..size]);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void WriteLe(ulong addr, int size, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Memory.Write(addr, b[..size]);
    }

    public ulong ReadPointer(ulong addr) => ReadLe(addr, 8);
    public void WritePointer(ulong addr, ulong value) => WriteLe(addr, 8, value);
    public void WriteU32(ulong addr, uint value) => WriteLe(addr, 4, value);

    /// <summary>Deterministic garbage (xorshift) over a range.</summary>
    public void Garbage(ulong address, int length, int seed = 1)
    {
        var b = new byte[length];
        ulong s = 0x9E3779B97F4A7C15UL ^ (ulong)seed;
        for (int i = 0; i < length; i++)
        {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            b[i] = (byte)s;
        }
        Memory.Write(address, b);
    }

    // =====================================================================================
    // Lists (on LIST_ENTRY / SINGLE_LIST_ENTRY addresses; field offsets from the caller's StructWriter)
    // =====================================================================================

    public void InitializeListHead(ulong head)
    {
        WritePointer(head, head);
        WritePointer(head + 8, head);
    }

    /// <summary>InsertTailList(head, entry). The head must be initialised (or zero: then it is initialised first).</summary>
    public void InsertTailList(ulong head, ulong entry)
    {
        if (ReadPointer(head) == 0) InitializeListHead(head);
        ulong blink = ReadPointer(head + 8);
        WritePointer(entry, head);
        WritePointer(entry + 8, blink);
        WritePointer(blink, entry);
        WritePointer(head + 8, entry);
    }

    public void InsertHeadList(ulong head, ulong entry)
    {
        if (ReadPointer(head) == 0) InitializeListHead(head);
        ulong flink = ReadPointer(head);
        WritePointer(entry, flink);
        WritePointer(entry + 8, head);
        WritePointer(flink + 8, entry);
        WritePointer(head, entry);
    }

    /// <summary>PushEntryList: entry.Next = head.Next; head.Next = entry.</summary>
    public void PushEntryList(ulong head, ulong entry)
    {
        WritePointer(entry, ReadPointer(head));
        WritePointer(head, entry);
    }

    /// <summary>The LIST_ENTRY addresses of a list, in order (for tests and fault injection).</summary>
    public List<ulong> ListEntries(ulong head, int max = 1_000_000)
    {
        var r = new List<ulong>();
        for (ulong e = ReadPointer(head); e != head && e != 0 && r.Count < max; e = ReadPointer(e)) r.Add(e);
        return r;
    }

    // ---- flat forms (one field at an address), all through StructWriter ----

    /// <summary>Sets a scalar/pointer/enum/bitfield field of module!type at <paramref name="address"/>.</summary>
    public void Set(ulong address, string type, string path, ulong value, string module = "nt") => View(type, address, module).Set(path, value);

    /// <summary>Writes raw bytes at a field (arrays of chars, GUIDs ...), at most the field's size.</summary>
    public void SetBytes(ulong address, string type, string path, ReadOnlySpan<byte> bytes, string module = "nt") => View(type, address, module).Bytes(path, bytes);

    /// <summary>Offset and type of a dotted field path; a <see cref="ScenarioLayoutException"/> naming both when absent.</summary>
    public (ulong Offset, TypeRef Type) Field(string type, string path, string module = "nt") => Resolve(Layout(type, module), path);

    /// <summary>Offset of a dotted field path, or null when this build's type does not have it.</summary>
    public ulong? TryOffset(string type, string path, string module = "nt") =>
        _types.TryGet(module, type) is { } l && TryResolve(l, path) is { } r ? r.Offset : null;

    /// <summary>Fills a _UNICODE_STRING field and its UTF-16 buffer at <paramref name="buffer"/>.</summary>
    public void SetUnicodeString(ulong address, string type, string path, string text, ulong buffer, string module = "nt") =>
        WriteUnicodeString(address + OffsetOf(type, path, module), text, buffer);

    /// <summary>Fills a _UNICODE_STRING at <paramref name="address"/> (Length, MaximumLength, Buffer) and its buffer.</summary>
    public void WriteUnicodeString(ulong address, string text, ulong? bufferAt = null)
    {
        var bytes = Encoding.Unicode.GetBytes(text);
        ulong buf = PlaceUtf16(text, bytes, bufferAt);
        WriteLe(address, 2, (ulong)bytes.Length);
        WriteLe(address + 2, 2, (ulong)bytes.Length + 2);
        WriteLe(address + 8, 8, buf);
    }

    /// <summary>Where a UNICODE_STRING's text goes: here at <paramref name="bufferAt"/> (required), NUL-terminated.</summary>
    protected virtual ulong PlaceUtf16(string text, byte[] bytes, ulong? bufferAt)
    {
        ulong buf = bufferAt ?? throw new InvalidOperationException($"no allocator: say where the text of \"{text}\" goes");
        Memory.Write(buf, bytes);
        WriteLe(buf + (ulong)bytes.Length, 2, 0);
        return buf;
    }

    /// <summary>A circular doubly linked list: head and each entry's LIST_ENTRY (addresses of the LIST_ENTRY fields).</summary>
    public void LinkList(ulong head, IReadOnlyList<ulong> entries)
    {
        InitializeListHead(head);
        foreach (var e in entries) InsertTailList(head, e);
    }
}
