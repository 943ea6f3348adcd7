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

/// <summary>Layout of a struct/union: size and fields by name (anonymous unions flattened, as the PDB presents them).</summary>
public sealed class TypeLayout
{
    private readonly Dictionary<string, FieldLayout> _fields;

    public TypeLayout(string module, string name, ulong size, TypeKind kind, IEnumerable<FieldLayout> fields)
    {
        Module = module;
        Name = name;
        Size = size;
        Kind = kind;
        _fields = new Dictionary<string, FieldLayout>(StringComparer.Ordinal);
        foreach (var f in fields) _fields.TryAdd(f.Name, f);
        Fields = _fields.Values.OrderBy(f => f.Offset).ThenBy(f => f.Type.BitPosition).ToList();
    }

    public string Module { get; }
    public string Name { get; }
    public ulong Size { get; }
    public TypeKind Kind { get; }
    /// <summary>Fields ordered by offset.</summary>
    public IReadOnlyList<FieldLayout> Fields { get; }

    public FieldLayout? TryGetField(string name) => _fields.TryGetValue(name, out var f) ? f : null;
    public bool HasField(string name) => _fields.ContainsKey(name);

    public FieldLayout GetField(string name) =>
        TryGetField(name) ?? throw new MissingSymbolException($"field {Module}!{Name}.{name}", Module);

    public override string ToString() => $"{Module}!{Name} (0x{Size:x} bytes, {Fields.Count} fields)";
}

/// <summary>Thrown when a required type or symbol is missing; the message names it and says what to run.</summary>
public sealed class MissingSymbolException(string what, string module)
    : Exception($"{what} not found: symbols for '{module}' are missing or wrong. Run .symfix; .reload /f {module} (or check .sympath), then try again.")
{
    public string What { get; } = what;
    public string Module { get; } = module;
}
