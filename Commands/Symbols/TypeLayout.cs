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
    /// <param name="resolvesPaths">The resolver also answers a dotted path ("u1.s1.DataLength") relative to this type,
    /// following each field's own type (a debugger engine does: no lookup of the nested types by name, which is slow
    /// and, for unnamed nested types that share one name in real PDBs, ambiguous). See <see cref="TryGetPath"/>.</param>
    public TypeLayout(string module, string name, ulong size, Func<string, FieldLayout?> resolveField,
                      Func<(TypeKind Kind, IReadOnlyList<FieldLayout> Fields)?> resolveAll, bool resolvesPaths = false)
    {
        Module = module;
        Name = name;
        Size = size;
        _fields = new Dictionary<string, FieldLayout>(StringComparer.Ordinal);
        _missing = new HashSet<string>(StringComparer.Ordinal);
        _resolveField = resolveField;
        _resolveAll = resolveAll;
        if (resolvesPaths)
        {
            _resolvePath = resolveField;
            _paths = new Dictionary<string, FieldLayout?>(StringComparer.Ordinal);
        }
    }

    private readonly Func<string, FieldLayout?>? _resolvePath;
    private readonly Dictionary<string, FieldLayout?>? _paths;

    /// <summary>True when <see cref="TryGetPath"/> answers dotted paths itself (an engine-backed layout).</summary>
    public bool ResolvesPaths => _resolvePath is not null;

    /// <summary>
    /// A dotted path ("PortMessage.u1.s1.DataLength") resolved by this layout's resolver: the field's type and its offset
    /// from the start of this type. Every step before the last must be an embedded structure or union (as
    /// TypeCache.TryResolvePath requires when it walks step by step); each prefix is resolved (and kept) first.
    /// Null when the path does not exist, or when this layout does not resolve paths (<see cref="ResolvesPaths"/>).
    /// </summary>
    public FieldLayout? TryGetPath(string path)
    {
        if (_resolvePath is null) return null;
        int dot = path.LastIndexOf('.');
        if (dot < 0) return TryGetField(path);
        lock (_lock)
        {
            if (_paths!.TryGetValue(path, out var known)) return known;
            string prefix = path[..dot];
            var pre = TryGetPath(prefix);
            if (pre is null || pre.Type.Kind is not (TypeKind.Struct or TypeKind.Union) || dot == path.Length - 1)
            {
                if (pre is not null) _paths[path] = null; // the prefix is known and cannot hold the rest
                return null;
            }
            FieldLayout? r;
            try { r = _resolvePath(path); }
            catch (Exception) { return null; } // unknown now: asked again next time
            _paths[path] = r;
            return r;
        }
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
        TryGetField(name) ?? throw new MissingSymbolException($"field {Module}!{Name}.{name}", Module);

    public override string ToString() => IsComplete
        ? $"{Module}!{Name} (0x{Size:x} bytes, {Fields.Count} fields)"
        : $"{Module}!{Name} (0x{Size:x} bytes, fields resolved on use)";
}

/// <summary>Thrown when a required type or symbol is missing; the message names it and says what to run.</summary>
public sealed class MissingSymbolException(string what, string module)
    : Exception($"{what} not found: symbols for '{module}' are missing or wrong. Run .symfix; .reload /f {module} (or check .sympath), then try again.")
{
    public string What { get; } = what;
    public string Module { get; } = module;
}
