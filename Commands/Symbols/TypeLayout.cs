namespace NtSleuth.Commands.Symbols;

public enum TypeKind { Base, Pointer, Struct, Union, Enum, Array, Bitfield, Function, Unknown }

/// <summary>
/// A reference to a type as a field sees it: kind, name (struct/union/enum/base name), size in bytes,
/// pointee/element type, array count, bit position/length for bitfields.
/// </summary>
public sealed record TypeRef
{
    public TypeKind Kind { get; init; }
    /// <summary>Struct/union/enum/base type name ("_LIST_ENTRY", "unsigned char"); for pointers/arrays the composed name.</summary>
    public string Name { get; init; } = "";
    public ulong Size { get; init; }
    /// <summary>Pointee (pointer) or element (array) or underlying (bitfield, enum) type.</summary>
    public TypeRef? Inner { get; init; }
    public ulong Count { get; init; }
    public int BitPosition { get; init; } = -1;
    public int BitLength { get; init; } = -1;
    public bool IsSigned { get; init; }

    public bool IsBitfield => Kind == TypeKind.Bitfield;
    public override string ToString() => Kind switch
    {
        TypeKind.Pointer => (Inner?.ToString() ?? "void") + "*",
        TypeKind.Array => $"{Inner}[{Count}]",
        TypeKind.Bitfield => $"{Inner} :{BitLength} @{BitPosition}",
        _ => Name,
    };
}

public sealed record FieldLayout(string Name, ulong Offset, TypeRef Type)
{
    public ulong Size => Type.Size;
}

/// <summary>
/// Layout of a struct/union: size and fields by name (anonymous unions flattened, as the PDB presents them).
/// A layout is either complete (all fields given) or lazy: fields are resolved one by one on first use through a
/// resolver (a debugger engine answers per field), and the whole field list only when <see cref="Fields"/> or
/// <see cref="Kind"/> is asked for. Both forms answer every question the same way.
/// </summary>
public sealed class TypeLayout
{
    private readonly object _lock = new();
    private Dictionary<string, FieldLayout> _fields;
    private readonly HashSet<string>? _missing;
    private Func<string, FieldLayout?>? _resolveField;
    private Func<(TypeKind Kind, IReadOnlyList<FieldLayout> Fields)?>? _resolveAll;
    private IReadOnlyList<FieldLayout>? _ordered;
    private TypeKind _kind;

    public TypeLayout(string module, string name, ulong size, TypeKind kind, IEnumerable<FieldLayout> fields)
    {
        Module = module;
        Name = name;
        Size = size;
        _kind = kind;
        _fields = new Dictionary<string, FieldLayout>(StringComparer.Ordinal);
        foreach (var f in fields) _fields.TryAdd(f.Name, f);
        _ordered = Order(_fields);
    }

    /// <summary>
    /// A lazy layout: <paramref name="resolveField"/> answers one field by name (null when the type has no such field;
    /// an exception = "unknown now", not remembered); <paramref name="resolveAll"/> gives the kind and every field
    /// (null = cannot enumerate now: the layout stays lazy and <see cref="Fields"/> shows what is resolved so far).
    /// </summary>
    public TypeLayout(string module, string name, ulong size, Func<string, FieldLayout?> resolveField,
                      Func<(TypeKind Kind, IReadOnlyList<FieldLayout> Fields)?> resolveAll)
    {
        Module = module;
        Name = name;
        Size = size;
        _fields = new Dictionary<string, FieldLayout>(StringComparer.Ordinal);
        _missing = new HashSet<string>(StringComparer.Ordinal);
        _resolveField = resolveField;
        _resolveAll = resolveAll;
    }

    private static List<FieldLayout> Order(Dictionary<string, FieldLayout> d) =>
        d.Values.OrderBy(f => f.Offset).ThenBy(f => f.Type.BitPosition).ToList();

    public string Module { get; }
    public string Name { get; }
    public ulong Size { get; }

    public TypeKind Kind
    {
        get { lock (_lock) { EnsureComplete(); return _kind; } }
    }

    /// <summary>Fields ordered by offset (a lazy layout enumerates the whole type once, here).</summary>
    public IReadOnlyList<FieldLayout> Fields
    {
        get { lock (_lock) { EnsureComplete(); return _ordered ?? Order(_fields); } }
    }

    /// <summary>True when every field is known (a complete layout, or a lazy one that has enumerated its type).</summary>
    public bool IsComplete { get { lock (_lock) return _resolveAll is null; } }

    private void EnsureComplete()
    {
        if (_resolveAll is null) return;
        (TypeKind Kind, IReadOnlyList<FieldLayout> Fields)? all;
        try { all = _resolveAll(); } catch (Exception) { all = null; }
        if (all is null) { _kind = _fields.Count == 0 ? TypeKind.Unknown : TypeKind.Struct; return; }
        var d = new Dictionary<string, FieldLayout>(StringComparer.Ordinal);
        foreach (var f in all.Value.Fields) d.TryAdd(f.Name, f);
        _fields = d;
        _kind = all.Value.Kind;
        _ordered = Order(d);
        _resolveAll = null;
        _resolveField = null;
    }

    public FieldLayout? TryGetField(string name)
    {
        lock (_lock)
        {
            if (_fields.TryGetValue(name, out var f)) return f;
            if (_resolveField is null || _missing!.Contains(name)) return null;
            // Field names never contain '.': paths are split by the caller (TypeCache.TryResolvePath).
            if (name.Length == 0 || name.Contains('.')) return null;
            FieldLayout? r;
            try { r = _resolveField(name); }
            catch (Exception) { return null; }
            if (r is null) _missing.Add(name);
            else _fields[name] = r;
            return r;
        }
    }

    public bool HasField(string name) => TryGetField(name) is not null;

    public FieldLayout GetField(string name) =>
        TryGetField(name) ?? throw new MissingFieldException($"{Module}!{Name} has no field '{name}'");

    public override string ToString() => IsComplete
        ? $"{Module}!{Name} (0x{Size:x} bytes, {Fields.Count} fields)"
        : $"{Module}!{Name} (0x{Size:x} bytes, fields resolved on use)";
}

/// <summary>Thrown when a type or field that the analysis needs is not in the symbols.</summary>
public sealed class MissingFieldException(string message) : Exception(message);

/// <summary>Thrown when a required type or symbol is missing; the message names it and says what to run.</summary>
public sealed class MissingSymbolException(string what, string module)
    : Exception($"{what} not found: symbols for '{module}' are missing or wrong. Run .symfix; .reload /f {ModuleFile(module)} (or check .sympath), then try again.")
{
    public string What { get; } = what;
    public string Module { get; } = module;
    private static string ModuleFile(string m) => m switch { "nt" => "nt", _ => m };
}
