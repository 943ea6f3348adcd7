using System.IO.Compression;
using System.Text.Json;

namespace NtSleuth.Commands.Symbols.Isf;

/// <summary>Bad or unsupported ISF input, with the file and the JSON path where it went wrong.</summary>
public sealed class IsfFormatException(string message) : Exception(message);

public sealed record IsfBaseType(string Name, int Size, bool Signed, string Kind, string Endian);

public sealed record IsfEnum(string Name, string Base, int Size, IReadOnlyDictionary<string, long> Constants)
{
}

/// <summary>A type reference in ISF (kind + name/subtype/count/bit position).</summary>
public sealed record IsfTypeRef(string Kind, string? Name, IsfTypeRef? Subtype, int Count, int BitPosition, int BitLength)
{
    public override string ToString() => Kind switch
    {
        "pointer" => $"{Subtype}*",
        "array" => $"{Subtype}[{Count}]",
        "bitfield" => $"{Subtype}:{BitLength}@{BitPosition}",
        "function" => "function",
        _ => Name ?? Kind,
    };
}

public sealed record IsfField(string Name, int Offset, IsfTypeRef Type);

public sealed record IsfUserType(string Name, string Kind, int Size, IReadOnlyList<IsfField> Fields);

/// <summary>
/// A Volatility-3 Intermediate Symbol Format (ISF) symbol table: base types, user types (structs/unions),
/// enums and symbols (RVAs). Reads plain or .xz/.gz-compressed JSON. Validates as it reads and reports
/// precise errors (type and field name) instead of failing later.
/// </summary>
public sealed class IsfDocument
{
    public string Source { get; private init; } = "";
    public string FormatVersion { get; private init; } = "";
    public string? PdbName { get; private init; }
    public string? PdbGuid { get; private init; }
    public int PdbAge { get; private init; }
    public int MachineType { get; private init; }
    public IReadOnlyDictionary<string, IsfBaseType> BaseTypes { get; private init; } = new Dictionary<string, IsfBaseType>();
    public IReadOnlyDictionary<string, IsfUserType> UserTypes { get; private init; } = new Dictionary<string, IsfUserType>();
    public IReadOnlyDictionary<string, IsfEnum> Enums { get; private init; } = new Dictionary<string, IsfEnum>();
    /// <summary>Symbol name -> RVA from the module base.</summary>
    public IReadOnlyDictionary<string, ulong> Symbols { get; private init; } = new Dictionary<string, ulong>();

    /// <summary>"GUIDAGE" as symbol stores spell it (e.g. 5278AFF86C341677D7D7835C85B7B8441).</summary>
    public string? PdbIdentity => PdbGuid is null ? null : PdbGuid + PdbAge.ToString("X");

    public static IsfDocument Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ISF symbol table not found: {path}", path);
        using var fs = File.OpenRead(path);
        Stream s = fs;
        if (path.EndsWith(".xz", StringComparison.OrdinalIgnoreCase))
            s = XzDecompress(path);
        else if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            s = new GZipStream(fs, CompressionMode.Decompress);
        using (s) return Parse(s, path);
    }

    /// <summary>.NET has no xz decoder; use the system's xz (Debian: xz-utils), which is on every machine the lab runs on.</summary>
    private static Stream XzDecompress(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("xz", ["-dc", path])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        System.Diagnostics.Process p;
        try { p = System.Diagnostics.Process.Start(psi)!; }
        catch (Exception ex) { throw new IsfFormatException($"{path}: cannot run 'xz' to decompress ({ex.Message}); install xz-utils"); }
        var ms = new MemoryStream();
        p.StandardOutput.BaseStream.CopyTo(ms);
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new IsfFormatException($"{path}: xz failed: {err.Trim()}");
        ms.Position = 0;
        return ms;
    }

    public static IsfDocument Parse(Stream json, string source = "<stream>")
    {
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        return FromJson(doc.RootElement, source);
    }

    public static IsfDocument FromJson(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new IsfFormatException($"{source}: not an ISF document (root is not an object)");
        foreach (var key in new[] { "metadata", "base_types", "user_types", "enums", "symbols" })
            if (!root.TryGetProperty(key, out _)) throw new IsfFormatException($"{source}: not an ISF document (no '{key}')");

        var meta = root.GetProperty("metadata");
        string format = meta.TryGetProperty("format", out var f) ? f.GetString() ?? "" : "";
        if (!format.StartsWith("6.", StringComparison.Ordinal) && !format.StartsWith("4.", StringComparison.Ordinal) && !format.StartsWith("5.", StringComparison.Ordinal))
            throw new IsfFormatException($"{source}: unsupported ISF format '{format}' (4.x-6.x supported)");
        string? pdbName = null, guid = null; int age = 0, machine = 0;
        if (meta.TryGetProperty("windows", out var win) && win.TryGetProperty("pdb", out var pdb))
        {
            pdbName = pdb.TryGetProperty("database", out var db) ? db.GetString() : null;
            guid = pdb.TryGetProperty("GUID", out var g) ? g.GetString()?.ToUpperInvariant() : null;
            age = pdb.TryGetProperty("age", out var a) ? a.GetInt32() : 0;
            machine = pdb.TryGetProperty("machine_type", out var m) ? m.GetInt32() : 0;
        }

        var baseTypes = new Dictionary<string, IsfBaseType>(StringComparer.Ordinal);
        foreach (var p in root.GetProperty("base_types").EnumerateObject())
        {
            var v = p.Value;
            baseTypes[p.Name] = new IsfBaseType(p.Name, Req(v, "size", source, "base_types." + p.Name).GetInt32(),
                v.TryGetProperty("signed", out var sg) && sg.GetBoolean(),
                v.TryGetProperty("kind", out var k) ? k.GetString() ?? "int" : "int",
                v.TryGetProperty("endian", out var e) ? e.GetString() ?? "little" : "little");
        }

        var enums = new Dictionary<string, IsfEnum>(StringComparer.Ordinal);
        foreach (var p in root.GetProperty("enums").EnumerateObject())
        {
            var v = p.Value;
            var consts = new Dictionary<string, long>(StringComparer.Ordinal);
            if (v.TryGetProperty("constants", out var c))
                foreach (var cp in c.EnumerateObject()) consts[cp.Name] = cp.Value.GetInt64();
            enums[p.Name] = new IsfEnum(p.Name, v.TryGetProperty("base", out var b) ? b.GetString() ?? "int" : "int",
                v.TryGetProperty("size", out var sz) ? sz.GetInt32() : 4, consts);
        }

        var userTypes = new Dictionary<string, IsfUserType>(StringComparer.Ordinal);
        foreach (var p in root.GetProperty("user_types").EnumerateObject())
        {
            var v = p.Value;
            string where = "user_types." + p.Name;
            string kind = Req(v, "kind", source, where).GetString() ?? "struct";
            int size = Req(v, "size", source, where).GetInt32();
            var fields = new List<IsfField>();
            if (v.TryGetProperty("fields", out var fs) && fs.ValueKind == JsonValueKind.Object)
                foreach (var fp in fs.EnumerateObject())
                {
                    string fw = where + ".fields." + fp.Name;
                    int off = Req(fp.Value, "offset", source, fw).GetInt32();
                    var t = ParseTypeRef(Req(fp.Value, "type", source, fw), source, fw + ".type");
                    fields.Add(new IsfField(fp.Name, off, t));
                }
            fields.Sort((x, y) => x.Offset != y.Offset ? x.Offset.CompareTo(y.Offset) : x.Type.BitPosition.CompareTo(y.Type.BitPosition));
            userTypes[p.Name] = new IsfUserType(p.Name, kind, size, fields);
        }

        var symbols = new Dictionary<string, ulong>(StringComparer.Ordinal);
        foreach (var p in root.GetProperty("symbols").EnumerateObject())
            if (p.Value.TryGetProperty("address", out var addr)) symbols[p.Name] = addr.GetUInt64();

        var docu = new IsfDocument
        {
            Source = source, FormatVersion = format, PdbName = pdbName, PdbGuid = guid, PdbAge = age, MachineType = machine,
            BaseTypes = baseTypes, UserTypes = userTypes, Enums = enums, Symbols = symbols,
        };
        docu.Validate();
        return docu;
    }

    private static JsonElement Req(JsonElement e, string name, string source, string where) =>
        e.TryGetProperty(name, out var v) ? v : throw new IsfFormatException($"{source}: {where} has no '{name}'");

    private static IsfTypeRef ParseTypeRef(JsonElement t, string source, string where)
    {
        string kind = Req(t, "kind", source, where).GetString() ?? "";
        string? name = t.TryGetProperty("name", out var n) ? n.GetString() : null;
        IsfTypeRef? sub = null;
        if (t.TryGetProperty("subtype", out var st)) sub = ParseTypeRef(st, source, where + ".subtype");
        else if (t.TryGetProperty("type", out var tt)) sub = ParseTypeRef(tt, source, where + ".type");
        int count = t.TryGetProperty("count", out var c) ? c.GetInt32() : 0;
        int bp = t.TryGetProperty("bit_position", out var b) ? b.GetInt32() : -1;
        int bl = t.TryGetProperty("bit_length", out var l) ? l.GetInt32() : -1;
        switch (kind)
        {
            case "base": case "struct": case "union": case "enum" when name is null:
                if (name is null) throw new IsfFormatException($"{source}: {where}: '{kind}' type without a name");
                break;
            case "pointer": case "array":
                if (sub is null) throw new IsfFormatException($"{source}: {where}: {kind} without a subtype");
                break;
            case "bitfield":
                if (sub is null || bp < 0 || bl <= 0) throw new IsfFormatException($"{source}: {where}: bitfield needs type, bit_position and bit_length");
                break;
            case "enum": case "function": case "class":
                break;
            default:
                throw new IsfFormatException($"{source}: {where}: unknown type kind '{kind}'");
        }
        return new IsfTypeRef(kind, name, sub, count, bp, bl);
    }

    private void Validate()
    {
        foreach (var ut in UserTypes.Values)
            foreach (var f in ut.Fields)
            {
                ulong size = SizeOf(f.Type);
                if (f.Type.Kind != "bitfield" && (ulong)f.Offset + size > (ulong)ut.Size && size != 0)
                    throw new IsfFormatException($"{Source}: {ut.Name}.{f.Name} at +0x{f.Offset:x} (0x{size:x} bytes) lies outside the type's 0x{ut.Size:x} bytes");
            }
    }

    /// <summary>Size in bytes of a type reference; 0 for functions and unknown forward references.</summary>
    public ulong SizeOf(IsfTypeRef t) => t.Kind switch
    {
        "base" => BaseTypes.TryGetValue(t.Name!, out var b) ? (ulong)b.Size : throw new IsfFormatException($"{Source}: unknown base type '{t.Name}'"),
        "pointer" => BaseTypes.TryGetValue("pointer", out var p) ? (ulong)p.Size : 8,
        "struct" or "union" or "class" => UserTypes.TryGetValue(t.Name!, out var u) ? (ulong)u.Size : 0,
        "enum" => t.Name is not null && Enums.TryGetValue(t.Name, out var e) ? (ulong)e.Size : 4,
        "array" => (ulong)t.Count * SizeOf(t.Subtype!),
        "bitfield" => SizeOf(t.Subtype!),
        _ => 0,
    };

    public IsfUserType GetUserType(string name) =>
        UserTypes.TryGetValue(name, out var t) ? t : throw new IsfFormatException($"{Source}: type '{name}' is not in this symbol table");

    public ulong GetSymbolRva(string name) =>
        Symbols.TryGetValue(name, out var a) ? a : throw new IsfFormatException($"{Source}: symbol '{name}' is not in this symbol table");

    /// <summary>Converts an ISF type reference to the product's <see cref="TypeRef"/>.</summary>
    public TypeRef ToTypeRef(IsfTypeRef t)
    {
        switch (t.Kind)
        {
            case "base":
                var b = BaseTypes[t.Name!];
                return new TypeRef { Kind = t.Name == "void" ? TypeKind.Base : TypeKind.Base, Name = t.Name!, Size = (ulong)b.Size, IsSigned = b.Signed };
            case "pointer":
                return new TypeRef { Kind = TypeKind.Pointer, Name = t.ToString(), Size = SizeOf(t), Inner = ToTypeRef(t.Subtype!) };
            case "struct": case "class":
                return new TypeRef { Kind = TypeKind.Struct, Name = t.Name!, Size = SizeOf(t) };
            case "union":
                return new TypeRef { Kind = TypeKind.Union, Name = t.Name!, Size = SizeOf(t) };
            case "enum":
                bool signed = t.Name is not null && Enums.TryGetValue(t.Name, out var e) && BaseTypes.TryGetValue(e.Base, out var eb) && eb.Signed;
                return new TypeRef { Kind = TypeKind.Enum, Name = t.Name ?? "enum", Size = SizeOf(t), IsSigned = signed };
            case "array":
                return new TypeRef { Kind = TypeKind.Array, Name = t.ToString(), Size = SizeOf(t), Inner = ToTypeRef(t.Subtype!), Count = (ulong)t.Count };
            case "bitfield":
                var inner = ToTypeRef(t.Subtype!);
                return new TypeRef { Kind = TypeKind.Bitfield, Name = t.ToString(), Size = inner.Size, Inner = inner, BitPosition = t.BitPosition, BitLength = t.BitLength };
            case "function":
                return new TypeRef { Kind = TypeKind.Function, Name = "function", Size = 0 };
            default:
                return new TypeRef { Kind = TypeKind.Unknown, Name = t.Kind };
        }
    }

    public TypeLayout? ToLayout(string module, string typeName)
    {
        if (!UserTypes.TryGetValue(typeName, out var ut)) return null;
        return new TypeLayout(module, ut.Name, (ulong)ut.Size, ut.Kind == "union" ? TypeKind.Union : TypeKind.Struct,
            ut.Fields.Select(f => new FieldLayout(f.Name, (ulong)f.Offset, ToTypeRef(f.Type))));
    }
}
