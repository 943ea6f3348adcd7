using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Extension;

/// <summary>The symbol-engine questions a type layout needs (IDebugSymbols3 + the type-dump ioctl); faked in tests.</summary>
internal interface ITypeQueries
{
    int PointerSize { get; }
    /// <summary>Resolves "module!type" to (module base, type id).</summary>
    bool TryGetTypeId(string qualifiedName, out ulong moduleBase, out uint typeId);
    /// <summary>Type id of a type name inside a known module (GetTypeId).</summary>
    bool TryGetTypeIdInModule(ulong moduleBase, string typeName, out uint typeId);
    ulong GetTypeSize(ulong moduleBase, uint typeId);
    string? GetTypeName(ulong moduleBase, uint typeId);
    /// <summary>Name of field #index (GetFieldName); null past the last field.</summary>
    string? GetFieldName(ulong moduleBase, uint typeId, uint index);
    bool TryGetFieldTypeAndOffset(ulong moduleBase, uint containerTypeId, string field, out uint fieldTypeId, out uint offset);
    /// <summary>Bit position/length of the bitfield members among <paramref name="fields"/> of "module!type" (one engine call).</summary>
    IReadOnlyDictionary<string, (int Position, int Length)> GetBitfields(string qualifiedType, IReadOnlyList<string> fields);
}

/// <summary>
/// Assembles a <see cref="TypeLayout"/> from symbol-engine answers: enumerate fields by index (GetFieldName),
/// offset + field type id (GetFieldTypeAndOffset), type name / size, bitfields from the type-dump ioctl.
/// The field type kind is derived from the engine's type name ("T *", "T [n]", base names) and structure probing.
/// </summary>
internal sealed class TypeLayoutBuilder(ITypeQueries q, Func<IHostTypes?>? host = null)
{
    /// <summary>NTSLEUTH_TYPE_LOOKUP: unset = the data model first (<see cref="IHostTypes"/>: one in-process walk per
    /// field, ~0.01-0.1 ms), the engine's IDebugSymbols3 + type-dump ioctl questions for what it cannot answer;
    /// "engine" = the engine's questions only (as before); "check" = both, every difference reported in the profile
    /// (NTSLEUTH_PROFILE) as "type-check MISMATCH", the data model's answer used.</summary>
    internal enum LookupMode { DataModel, Engine, Check }

    internal static readonly LookupMode DefaultMode = Environment.GetEnvironmentVariable("NTSLEUTH_TYPE_LOOKUP")?.Trim().ToLowerInvariant() switch
    {
        "engine" => LookupMode.Engine,
        "check" => LookupMode.Check,
        _ => LookupMode.DataModel,
    };

    internal LookupMode Mode { get; init; } = DefaultMode;

    public const int MaxFields = 4096;

    internal static readonly Dictionary<string, (ulong Size, bool Signed)> BaseTypes = new(StringComparer.Ordinal)
    {
        ["char"] = (1, true), ["signed char"] = (1, true), ["unsigned char"] = (1, false), ["bool"] = (1, false),
        ["wchar_t"] = (2, false), ["short"] = (2, true), ["unsigned short"] = (2, false), ["char16_t"] = (2, false),
        ["int"] = (4, true), ["unsigned int"] = (4, false), ["long"] = (4, true), ["unsigned long"] = (4, false),
        ["char32_t"] = (4, false), ["float"] = (4, true), ["double"] = (8, true),
        ["int64"] = (8, true), ["unsigned int64"] = (8, false), ["__int64"] = (8, true), ["unsigned __int64"] = (8, false),
        ["long long"] = (8, true), ["unsigned long long"] = (8, false), ["void"] = (0, false), ["HRESULT"] = (4, true),
        ["int8"] = (1, true), ["unsigned int8"] = (1, false), ["int16"] = (2, true), ["unsigned int16"] = (2, false),
        ["int32"] = (4, true), ["unsigned int32"] = (4, false),
    };

    // "wchar_t [260]", "unsigned long [2][3]"; the engine also names some arrays without a count ("_DUAL[]", "_DUAL []"):
    // the count is then the field's size over the element's.
    private static readonly Regex ArrayName = new(@"^(?<elem>.*?)\s*\[(?<n>\d*)\](?<rest>(\[\d+\])*)$", RegexOptions.CultureInvariant);

    /// <summary>Field type descriptions already asked of the engine, by (module base, type id): many fields share a type.</summary>
    private readonly Dictionary<(ulong, uint), TypeRef> _described = new();

    /// <summary>
    /// A lazy layout: one engine call for the type id and one for the size now; each field the command reads is
    /// resolved on first use (GetFieldTypeAndOffset, the type's name/size once per distinct type, the bitfield ioctl
    /// only for integral fields); the whole field list only when a caller enumerates it.
    /// </summary>
    public TypeLayout? BuildLazy(string module, string typeName, ulong knownModuleBase = 0)
    {
        if (Mode != LookupMode.Engine && host?.Invoke() is { } h && h.FindType(module, typeName, out ulong hostSize) == HostAnswer.Found)
            return new TypeLayout(module, typeName, hostSize,
                name => HostField(module, typeName, name),
                () => HostFields(module, typeName),
                resolvesPaths: true);
        return BuildLazyFromEngine(module, typeName, knownModuleBase);
    }

    private IHostTypes CurrentHost() => host?.Invoke() ?? throw new InvalidOperationException("no debugger command is running");

    private FieldLayout? HostField(string module, string typeName, string path)
    {
        var a = CurrentHost().ResolveField(module, typeName, path, out ulong offset, out TypeRef? type);
        // Not answered now (an interrupt, a failed call): unknown, asked again later, never remembered as missing.
        if (a == HostAnswer.Unavailable || a == HostAnswer.Found && type is null)
            throw new MissingSymbolException($"field {module}!{typeName}.{path}", module);
        var f = a == HostAnswer.Found ? new FieldLayout(path, offset, type!) : null;
        if (Mode == LookupMode.Check) CheckField(module, typeName, path, f);
        return f;
    }

    private (TypeKind Kind, IReadOnlyList<FieldLayout> Fields)? HostFields(string module, string typeName)
    {
        var fields = CurrentHost().Fields(module, typeName);
        if (fields is null) return null;
        TypeKind kind = fields.Count == 0 ? TypeKind.Unknown
            : fields.Count > 1 && fields.All(f => f.Offset == 0) ? TypeKind.Union : TypeKind.Struct;
        if (Mode == LookupMode.Check && BuildLazyFromEngine(module, typeName) is { } e)
        {
            var ef = e.Fields;
            if (e.Kind != kind || ef.Count != fields.Count || !ef.OrderBy(f => f.Offset).ThenBy(f => f.Name, StringComparer.Ordinal)
                    .SequenceEqual(fields.OrderBy(f => f.Offset).ThenBy(f => f.Name, StringComparer.Ordinal)))
                EngineProfile.Report($"type-check MISMATCH {module}!{typeName} fields: data model {kind} {fields.Count}, engine {e.Kind} {ef.Count}" +
                                     $" (first difference: {FirstDifference(fields, ef)})");
        }
        return (kind, fields);
    }

    private static string FirstDifference(IReadOnlyList<FieldLayout> a, IReadOnlyList<FieldLayout> b)
    {
        var bn = b.ToDictionary(f => f.Name, StringComparer.Ordinal);
        foreach (var f in a)
            if (!bn.TryGetValue(f.Name, out var g)) return $"{f.Name} only in the data model";
            else if (f != g) return $"{f.Name}: {Show(f)} vs {Show(g)}";
        return b.FirstOrDefault(f => a.All(x => x.Name != f.Name)) is { } only ? $"{only.Name} only in the engine" : "order";
    }

    private static string Show(FieldLayout? f) => f is null ? "none" : $"+0x{f.Offset:x} {Deep(f.Type)}";

    private static string Deep(TypeRef? t) => t is null ? "-" :
        $"{{{t.Kind} '{t.Name}' size {t.Size}{(t.Count != 0 ? $" count {t.Count}" : "")}{(t.BitLength >= 0 ? $" bits {t.BitPosition}:{t.BitLength}" : "")}{(t.IsSigned ? " signed" : "")}{(t.Inner is null ? "" : " of " + Deep(t.Inner))}}}";

    private void CheckField(string module, string typeName, string path, FieldLayout? dm)
    {
        FieldLayout? engine = null;
        string qualified = $"{module}!{typeName}";
        try
        {
            if (q.TryGetTypeId(qualified, out ulong mb, out uint id)) engine = ResolveField(qualified, mb, id, path);
        }
        catch (Exception) { }
        if (dm != engine) // records: name, offset and the whole type (kind, name, size, bits, element/pointee) compared
            EngineProfile.Report($"type-check MISMATCH {qualified}.{path}: data model {Show(dm)}, engine {Show(engine)}");
    }

    private TypeLayout? BuildLazyFromEngine(string module, string typeName, ulong knownModuleBase = 0)
    {
        string qualified = $"{module}!{typeName}";
        ulong modBase = knownModuleBase;
        uint typeId = 0;
        if (modBase == 0 || !TryKnownTypeId(modBase, typeName, out typeId))
            if (!q.TryGetTypeId(qualified, out modBase, out typeId)) return null;
        ulong size = q.GetTypeSize(modBase, typeId);
        // A type without fields (an enum, a forward declaration) answers as a complete one would: no field, kind
        // Unknown once enumerated; no engine call is spent on finding that out up front.
        // Dotted paths go to the engine whole: GetFieldTypeAndOffset takes "a.b.c" (dbgeng.h documents dot-separated
        // subfields) and the type-dump ioctl takes the same path under the root type's name.
        return new TypeLayout(module, typeName, size,
            name => ResolveField(qualified, modBase, typeId, name),
            () => BuildFields(qualified, modBase, typeId),
            resolvesPaths: true);
    }

    private FieldLayout? ResolveField(string qualified, ulong modBase, uint typeId, string name)
    {
        if (!q.TryGetFieldTypeAndOffset(modBase, typeId, name, out uint ftype, out uint offset)) return null;
        TypeRef tr = DescribeCached(modBase, ftype);
        // The engine knows the field but did not name its type (it fails queries it aborts, e.g. on a Ctrl+Break it
        // swallows): "unknown now", never remembered as a field of no type (seen on corrupted dumps: "field at +0x0 of
        // type  is not a scalar" in every later command).
        if (tr.Kind == TypeKind.Unknown && tr.Name.Length == 0)
            throw new MissingSymbolException($"the type of field {qualified}.{name}", qualified[..qualified.IndexOf('!')]);
        // Bitfields are integral: only base and enum fields can be one, so only they cost the ioctl.
        if (tr.Kind is TypeKind.Base or TypeKind.Enum && tr.Size is >= 1 and <= 8)
        {
            var bits = q.GetBitfields(qualified, [name]);
            if (bits.TryGetValue(name, out var b) && b.Length > 0)
                tr = new TypeRef { Kind = TypeKind.Bitfield, Name = tr.Name, Size = tr.Size, Inner = tr,
                                   BitPosition = b.Position, BitLength = b.Length, IsSigned = tr.IsSigned };
        }
        return new FieldLayout(name, offset, tr);
    }

    private TypeRef DescribeCached(ulong modBase, uint typeId)
    {
        if (_described.TryGetValue((modBase, typeId), out var tr)) return tr;
        tr = Describe(modBase, typeId, depth: 0);
        if (tr.Kind != TypeKind.Unknown || tr.Name.Length > 0) _described[(modBase, typeId)] = tr; // a failed answer is asked again
        return tr;
    }

    public TypeLayout? Build(string module, string typeName)
    {
        string qualified = $"{module}!{typeName}";
        if (!q.TryGetTypeId(qualified, out ulong modBase, out uint typeId)) return null;
        ulong size = q.GetTypeSize(modBase, typeId);
        var all = BuildFields(qualified, modBase, typeId);
        return new TypeLayout(module, typeName, size, all.Kind, all.Fields);
    }

    private (TypeKind Kind, IReadOnlyList<FieldLayout> Fields) BuildFields(string qualified, ulong modBase, uint typeId)
    {

        var names = new List<string>();
        for (uint i = 0; i < MaxFields; i++)
        {
            string? f = q.GetFieldName(modBase, typeId, i);
            if (f is null) break;
            names.Add(f);
        }
        var bits = names.Count > 0 ? q.GetBitfields(qualified, names) : new Dictionary<string, (int, int)>();

        var fields = new List<FieldLayout>(names.Count);
        foreach (var name in names)
        {
            if (!q.TryGetFieldTypeAndOffset(modBase, typeId, name, out uint ftype, out uint offset)) continue;
            TypeRef tr = DescribeCached(modBase, ftype);
            if (bits.TryGetValue(name, out var b) && b.Length > 0)
                tr = new TypeRef { Kind = TypeKind.Bitfield, Name = tr.Name, Size = tr.Size, Inner = tr,
                                   BitPosition = b.Position, BitLength = b.Length, IsSigned = tr.IsSigned };
            fields.Add(new FieldLayout(name, offset, tr));
        }
        TypeKind kind = names.Count == 0 ? TypeKind.Unknown
            : fields.Count > 1 && fields.All(f => f.Offset == 0) ? TypeKind.Union : TypeKind.Struct;
        return (kind, fields);
    }

    /// <summary>Describes a field's type from its id (kind from the engine's type name, size from GetTypeSize).</summary>
    public TypeRef Describe(ulong modBase, uint typeId, int depth)
    {
        string name = (q.GetTypeName(modBase, typeId) ?? "").Trim();
        ulong size = q.GetTypeSize(modBase, typeId);
        return DescribeName(modBase, name, size, depth, typeId);
    }

    /// <summary>Type ids of named types seen so far, by (module base, name): the engine's name lookup is slow
    /// (5-20 ms for "__unnamed_1309" in a large PDB), a field's type id is already known.</summary>
    private readonly Dictionary<(ulong, string), uint?> _idByName = new();

    private bool TryIdByName(ulong modBase, string name, out uint id)
    {
        if (!_idByName.TryGetValue((modBase, name), out var known))
            _idByName[(modBase, name)] = known = q.TryGetTypeIdInModule(modBase, name, out uint found) ? found : null;
        id = known ?? 0;
        return known is not null;
    }

    /// <summary>The type id of a named struct/union this builder has already met as a field type (0 = not met).</summary>
    public bool TryKnownTypeId(ulong modBase, string name, out uint id)
    {
        id = 0;
        return _idByName.TryGetValue((modBase, name), out var known) && known is uint k && (id = k) != 0;
    }

    private TypeRef DescribeName(ulong modBase, string name, ulong size, int depth, uint knownId = 0)
    {
        if (name.Contains("(*") || name.Contains("(__") && name.EndsWith(')'))
            return new TypeRef { Kind = TypeKind.Pointer, Name = name, Size = (ulong)q.PointerSize,
                                 Inner = new TypeRef { Kind = TypeKind.Function, Name = name } };
        if (name.EndsWith('*'))
        {
            string inner = name[..^1].TrimEnd();
            return new TypeRef { Kind = TypeKind.Pointer, Name = name, Size = size != 0 ? size : (ulong)q.PointerSize,
                                 Inner = depth < 2 ? ByName(modBase, inner, depth + 1) : new TypeRef { Kind = TypeKind.Unknown, Name = inner } };
        }
        var m = ArrayName.Match(name);
        if (m.Success)
        {
            string elemName = (m.Groups["elem"].Value + " " + m.Groups["rest"].Value).Trim();
            if (m.Groups["rest"].Value.Length > 0) elemName = m.Groups["elem"].Value.Trim() + m.Groups["rest"].Value;
            if (m.Groups["n"].Value.Length == 0)
            {
                var e = m.Groups["rest"].Value.Length > 0 ? DescribeName(modBase, elemName, 0, depth + 1) : ByName(modBase, elemName, depth + 1);
                return new TypeRef { Kind = TypeKind.Array, Name = name, Size = size, Count = e.Size != 0 ? size / e.Size : 0, Inner = e };
            }
            ulong count = ulong.Parse(m.Groups["n"].Value);
            ulong elemSize = count != 0 ? size / count : 0;
            var elem = m.Groups["rest"].Value.Length > 0
                ? DescribeName(modBase, elemName, elemSize, depth + 1)
                : ByName(modBase, elemName, depth + 1, elemSize);
            return new TypeRef { Kind = TypeKind.Array, Name = name, Size = size, Count = count, Inner = elem };
        }
        if (BaseTypes.TryGetValue(name, out var bt))
            return new TypeRef { Kind = TypeKind.Base, Name = name, Size = size != 0 ? size : bt.Size, IsSigned = bt.Signed };
        if (name.Length == 0)
            return new TypeRef { Kind = TypeKind.Unknown, Name = "", Size = size };
        // The engine's placeholder for a function type (a function pointer field is "<function> *"): no type has that
        // name, and asking GetTypeId for it fails only after the engine searched every type (73-97 ms, on the first
        // run of !alpcchain, !dpcblame and !workqueue; issue 15: no failing probe on the hot path). Same answer, unasked.
        if (name == FunctionPlaceholder)
            return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
        // A named type: struct/union if it has fields, otherwise an enum (engine type names of enums have no marker).
        if (knownId != 0 && !name.EndsWith('*') && !ArrayName.IsMatch(name)) _idByName.TryAdd((modBase, name), knownId);
        if (TryIdByName(modBase, name, out uint id))
        {
            if (q.GetFieldName(modBase, id, 0) is not null)
                return new TypeRef { Kind = TypeKind.Struct, Name = name, Size = size != 0 ? size : q.GetTypeSize(modBase, id) };
            ulong s = size != 0 ? size : q.GetTypeSize(modBase, id);
            if (s is 1 or 2 or 4 or 8)
                return new TypeRef { Kind = TypeKind.Enum, Name = name, Size = s, Inner = new TypeRef { Kind = TypeKind.Base, Name = "int", Size = s, IsSigned = true } };
            return new TypeRef { Kind = TypeKind.Struct, Name = name, Size = s };
        }
        return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
    }

    internal const string FunctionPlaceholder = "<function>";

    private TypeRef ByName(ulong modBase, string name, int depth, ulong knownSize = 0)
    {
        if (BaseTypes.TryGetValue(name, out var bt))
            return new TypeRef { Kind = TypeKind.Base, Name = name, Size = knownSize != 0 ? knownSize : bt.Size, IsSigned = bt.Signed };
        if (name.EndsWith('*'))
            return DescribeName(modBase, name, (ulong)q.PointerSize, depth);
        return DescribeName(modBase, name, knownSize, depth);
    }
}
