using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Layouts;

/// <summary>Bad or unusable layout-table input; the message names the file, module, type/field and build label.</summary>
public sealed class LayoutTableException(string message) : Exception(message);

/// <summary>
/// Typed reader of ../shared/realdata/layouts/ndis-fltmgr-layouts.json (schema "ndis-fltmgr-layouts/1", facts from
/// PDB-derived headers of ndis.sys / fltMgr.sys / a few ntoskrnl types per build label). Converts one module and one
/// build label to an <see cref="IsfDocument"/> (types with per-build offsets, enums, globals as symbol RVAs), so the same
/// ISF path serves the in-memory target (<see cref="IsfSymbolProvider"/> module "ndis"/"fltmgr" beside "nt") and the
/// symbol forge (PDB from ISF).
/// </summary>
public sealed class LayoutTable
{
    public const string Schema = "ndis-fltmgr-layouts/1";
    private readonly JsonDocument _doc;
    private readonly Dictionary<string, (IsfDocument Doc, IReadOnlyList<string> Notes)> _isfCache = new();

    private LayoutTable(JsonDocument doc, string source)
    {
        _doc = doc; Source = source;
        var root = doc.RootElement;
        string schema = root.TryGetProperty("schema", out var s) ? s.GetString() ?? "" : "";
        if (schema != Schema) throw new LayoutTableException($"{source}: schema '{schema}' is not '{Schema}'");
        if (!root.TryGetProperty("builds", out var b) || b.ValueKind != JsonValueKind.Array) throw new LayoutTableException($"{source}: no 'builds' array");
        Labels = b.EnumerateArray().Select(x => x.GetString()!).ToList();
        if (!root.TryGetProperty("modules", out var m) || m.ValueKind != JsonValueKind.Object) throw new LayoutTableException($"{source}: no 'modules' object");
        Modules = m.EnumerateObject().Select(p => p.Name).ToList();
        foreach (var mod in Modules)
            foreach (var key in new[] { "image", "types" })
                if (!m.GetProperty(mod).TryGetProperty(key, out _)) throw new LayoutTableException($"{source}: modules.{mod} has no '{key}'");
    }

    public string Source { get; }
    /// <summary>Build labels of the table ("Windows 10 v1607", "Windows 10 v2004", "Windows 11", "Windows 10 v20H2").</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>"fltmgr", "ndis", "nt".</summary>
    public IReadOnlyList<string> Modules { get; }

    public static LayoutTable Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"layout table not found: {path}", path);
        using var fs = File.OpenRead(path);
        try { return new LayoutTable(JsonDocument.Parse(fs, new JsonDocumentOptions { MaxDepth = 256 }), path); }
        catch (JsonException ex) { throw new LayoutTableException($"{path}: not valid JSON ({ex.Message})"); }
    }

    private static readonly Dictionary<string, LayoutTable> _opened = new(StringComparer.Ordinal);

    /// <summary>The table at <paramref name="path"/>, loaded once per process (its ISF conversions are cached with it).</summary>
    public static LayoutTable Open(string path)
    {
        string full = Path.GetFullPath(path);
        lock (_opened)
        {
            if (!_opened.TryGetValue(full, out var t)) _opened[full] = t = Load(full);
            return t;
        }
    }

    private static readonly Lazy<LayoutTable?> _shared = new(() =>
    {
        var p = SharedData.LayoutsFile;
        return p is not null ? Open(p) : null;
    });

    /// <summary>The table in ../shared (cached per process), or null when absent.</summary>
    public static LayoutTable? Shared => _shared.Value;

    private JsonElement Module(string module) =>
        _doc.RootElement.GetProperty("modules").TryGetProperty(module, out var m) ? m
            : throw new LayoutTableException($"{Source}: no module '{module}' (has: {string.Join(", ", Modules)})");

    private void CheckLabel(string label)
    {
        if (!Labels.Contains(label)) throw new LayoutTableException($"{Source}: unknown build label '{label}' (has: {string.Join(", ", Labels)})");
    }

    public string ImageName(string module) => Module(module).GetProperty("image").GetString()!;
    public string PdbName(string module) => Module(module).TryGetProperty("pdb", out var p) ? p.GetString()! : module + ".pdb";

    /// <summary>Type names of a module that exist in the build.</summary>
    public IEnumerable<string> TypeNames(string module, string label)
    {
        CheckLabel(label);
        foreach (var t in Module(module).GetProperty("types").EnumerateObject())
            if (HasLabel(t.Value, "builds", label)) yield return t.Name;
    }

    /// <summary>Globals (and other_symbols) of a module with their RVA in the build.</summary>
    public IReadOnlyDictionary<string, ulong> Globals(string module, string label, bool includeOtherSymbols = true)
    {
        CheckLabel(label);
        var r = new Dictionary<string, ulong>(StringComparer.Ordinal);
        var m = Module(module);
        foreach (var key in includeOtherSymbols ? new[] { "globals", "other_symbols" } : new[] { "globals" })
            if (m.TryGetProperty(key, out var g))
                foreach (var s in g.EnumerateObject())
                    if (s.Value.TryGetProperty("rva", out var rva) && rva.TryGetProperty(label, out var v)) r[s.Name] = v.GetUInt64();
        return r;
    }

    /// <summary>The module in one build as an ISF symbol table; referenced nt types (LIST_ENTRY, KEVENT, ...) are copied from <paramref name="nt"/>.</summary>
    public IsfDocument ToIsf(string module, string label, IsfDocument? nt = null) => ToIsf(module, label, nt, out _);

    /// <summary>
    /// The same, with the conversion's approximations, one note per choice the table leaves open (a member left out, a
    /// type kept as opaque bytes, a variant's alternative, a size inferred from the members), "Type.Member: ..." or "Type: ...".
    /// The scenarios (in-memory symbols) and the forge (PDB types) both use this one conversion.
    /// </summary>
    public IsfDocument ToIsf(string module, string label, IsfDocument? nt, out IReadOnlyList<string> notes)
    {
        string key = module + "|" + label + "|" + (nt?.PdbIdentity ?? "");
        lock (_isfCache)
        {
            if (_isfCache.TryGetValue(key, out var c)) { notes = c.Notes; return c.Doc; }
            var list = new List<string>();
            var json = ToIsfJson(module, label, nt, list);
            using var ms = new MemoryStream(json);
            IsfDocument d;
            try { d = IsfDocument.Parse(ms, $"{Source} [{module}, {label}]"); }
            catch (IsfFormatException ex) { throw new LayoutTableException($"layout table {module} on '{label}' is inconsistent: {ex.Message}"); }
            notes = list.Distinct().ToList();
            _isfCache[key] = (d, notes);
            return d;
        }
    }

    /// <summary>Layouts of the module in one build as <see cref="TypeLayout"/>s (via the ISF conversion).</summary>
    public TypeLayout? GetLayout(string module, string label, string type, IsfDocument? nt = null) => ToIsf(module, label, nt).ToLayout(module, type);

    private static bool HasLabel(JsonElement e, string prop, string label) =>
        e.TryGetProperty(prop, out var b) && b.EnumerateArray().Any(x => x.GetString() == label);

    // ============================================================ conversion to ISF JSON

    private sealed record TNode(string Kind, string? Name = null, TNode? Sub = null, int Count = 0, TNode[]? Alts = null);

    private static readonly Dictionary<string, string> BaseNames = new()
    {
        ["uint8_t"] = "unsigned char", ["int8_t"] = "char", ["char"] = "char", ["bool"] = "unsigned char",
        ["uint16_t"] = "unsigned short", ["int16_t"] = "short", ["wchar_t"] = "wchar", ["char16_t"] = "wchar",
        ["uint32_t"] = "unsigned long", ["int32_t"] = "long", ["uint64_t"] = "unsigned long long", ["int64_t"] = "long long",
        ["float"] = "f32", ["double"] = "double", ["void"] = "void",
    };

    private static readonly (string Name, int Size, bool Signed, string Kind)[] BaseTypes =
    [
        ("char", 1, true, "char"), ("unsigned char", 1, false, "char"), ("short", 2, true, "int"), ("unsigned short", 2, false, "int"),
        ("wchar", 2, false, "char"), ("long", 4, true, "int"), ("unsigned long", 4, false, "int"), ("int", 4, true, "int"),
        ("unsigned int", 4, false, "int"), ("long long", 8, true, "int"), ("unsigned long long", 8, false, "int"),
        ("f32", 4, true, "float"), ("double", 8, true, "float"), ("pointer", 8, false, "int"), ("void", 0, false, "void"),
    ];

    private static int BaseSize(string n) => BaseTypes.First(b => b.Name == n).Size;

    private static readonly Dictionary<string, string> SeleneNt = new()
    {
        ["nt::list_entry_t"] = "_LIST_ENTRY", ["nt::unicode_view"] = "_UNICODE_STRING", ["nt::unicode_string_t"] = "_UNICODE_STRING",
    };

    private static TNode ParseType(string t)
    {
        t = t.Trim();
        foreach (var p in new[] { "const ", "volatile ", "struct ", "union ", "enum ", "class " })
            if (t.StartsWith(p, StringComparison.Ordinal)) return ParseType(t[p.Length..]);
        if (t.StartsWith("variant<", StringComparison.Ordinal) || t.StartsWith("sdk::variant<", StringComparison.Ordinal))
        {
            // selene merged different per-build types without saying which build has which; the alternative that fits
            // the field's room in this build is chosen later (Fix).
            string inner = t[(t.IndexOf('<') + 1)..^1];
            var alts = SplitTop(inner, inner.Contains(" | ") ? '|' : ',').Select(ParseType).ToArray();
            return new TNode("variant", Alts: alts);
        }
        var arr = Regex.Match(t, @"^sdk::array<(.+),\s*(\d+)>$");
        if (arr.Success) return new TNode("array", Sub: ParseType(arr.Groups[1].Value), Count: int.Parse(arr.Groups[2].Value));
        var flex = Regex.Match(t, @"^sdk::array<([^,]+)>$|^(.+)\[\]$");
        if (flex.Success) return new TNode("array", Sub: ParseType(flex.Groups[1].Success && flex.Groups[1].Value != "" ? flex.Groups[1].Value : flex.Groups[2].Value), Count: 0);
        var parr = Regex.Match(t, @"^(.+)\[(\d+)\]$");
        if (parr.Success) return new TNode("array", Sub: ParseType(parr.Groups[1].Value), Count: int.Parse(parr.Groups[2].Value));
        if (t.EndsWith('*'))
        {
            string inner = t[..^1].Trim();
            if (inner == "function" || inner.StartsWith("sdk::function<", StringComparison.Ordinal)) return new TNode("pointer", Sub: new TNode("function"));
            return new TNode("pointer", Sub: ParseType(inner));
        }
        if (BaseNames.TryGetValue(t, out var bn)) return new TNode("base", bn);
        var un = Regex.Match(t, @"^(u?)int(\d+)_t$");
        if (un.Success)
        {
            int bits = int.Parse(un.Groups[2].Value);
            int bytes = bits <= 8 ? 1 : bits <= 16 ? 2 : bits <= 32 ? 4 : 8;
            bool signed = un.Groups[1].Value == "";
            return new TNode("base", (signed, bytes) switch
            {
                (false, 1) => "unsigned char", (true, 1) => "char", (false, 2) => "unsigned short", (true, 2) => "short",
                (false, 4) => "unsigned long", (true, 4) => "long", (false, _) => "unsigned long long", (true, _) => "long long",
            });
        }
        if (SeleneNt.TryGetValue(t, out var ntName)) return new TNode("struct", ntName);
        if (t.StartsWith('?') || t.Contains("::")) return new TNode("unresolved", t);
        return new TNode("struct", t); // a PDB tag name (_FLT_FILTER, NDIS_NBL_TRACKER_HANDLE__); kind fixed up later
    }

    private static List<string> SplitTop(string s, char sep)
    {
        var r = new List<string>(); int depth = 0, start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '<' || s[i] == '(') depth++;
            else if (s[i] == '>' || s[i] == ')') depth--;
            else if (s[i] == sep && depth == 0) { r.Add(s[start..i].Trim()); start = i + 1; }
        }
        r.Add(s[start..].Trim());
        return r;
    }

    private sealed class PendingType
    {
        public required string Name;
        public required string Kind;
        public int? Size;
        public List<(string Name, int Offset, TNode Type, int BitPos, int BitLen, int NextOffset)> Fields = new();
    }

    private byte[] ToIsfJson(string module, string label, IsfDocument? nt, List<string> notes)
    {
        CheckLabel(label);
        var m = Module(module);
        var types = new Dictionary<string, PendingType>(StringComparer.Ordinal);
        var enums = new Dictionary<string, (int Size, Dictionary<string, long> Values)>(StringComparer.Ordinal);

        if (m.TryGetProperty("enums", out var en))
            foreach (var e in en.EnumerateObject())
            {
                if (!HasLabel(e.Value, "builds", label)) continue;
                string under = e.Value.TryGetProperty("underlying", out var u) ? u.GetString() ?? "int32_t" : "int32_t";
                var bt = ParseType(under);
                var vals = new Dictionary<string, long>();
                foreach (var v in e.Value.GetProperty("values").EnumerateObject())
                    if (v.Value.TryGetProperty(label, out var x)) vals[v.Name] = x.GetInt64();
                enums[e.Name] = (bt.Kind == "base" ? BaseSize(bt.Name!) : 4, vals);
            }

        void AddType(string name, JsonElement t, string where)
        {
            string kind = t.TryGetProperty("kind", out var k) ? k.GetString() ?? "struct" : "struct";
            var pt = new PendingType { Name = name, Kind = kind == "union" ? "union" : "struct" };
            if (t.TryGetProperty("size", out var sz) && sz.TryGetProperty(label, out var sv)) pt.Size = sv.GetInt32();
            var fields = new List<(string, int, TNode, int, int)>();
            foreach (var f in t.GetProperty("fields").EnumerateObject())
            {
                var fv = f.Value;
                if (!fv.GetProperty("offset").TryGetProperty(label, out var ov)) continue; // field absent in this build
                TNode node;
                if (fv.TryGetProperty("nested_type", out var nt2)) node = new TNode("struct", NestedName(nt2.GetString()!));
                else
                {
                    string ts = fv.TryGetProperty("pdb_type", out var pdbt) && !pdbt.GetString()!.StartsWith('?') ? pdbt.GetString()! : fv.GetProperty("type").GetString()!;
                    node = ParseType(ts);
                    if (fv.TryGetProperty("type_varies", out var tv) && tv.GetBoolean() && fv.TryGetProperty("int_widths_bits", out var widths))
                        node = VarWidth(fv, label, widths);
                }
                int bp = -1, bl = -1;
                if (fv.TryGetProperty("bit_position", out var bpe) && bpe.TryGetProperty(label, out var bpv))
                {
                    bp = bpv.GetInt32();
                    if (fv.TryGetProperty("bit_length", out var ble) && ble.ValueKind == JsonValueKind.Number) bl = ble.GetInt32();
                    else if (fv.TryGetProperty("bit_length_Windows_10_v20H2", out var bl2) && bl2.ValueKind == JsonValueKind.Number) bl = bl2.GetInt32();
                    if (bl <= 0) { notes.Add($"{name}.{f.Name}: bit length unknown for {label}; left out"); continue; } // rather than guess
                }
                fields.Add((f.Name, ov.GetInt32(), node, bp, bl));
            }
            var offsets = fields.Select(x => x.Item2).Distinct().OrderBy(x => x).ToList();
            foreach (var (fn, off, node, bp, bl) in fields)
            {
                int next = offsets.FirstOrDefault(o => o > off, -1);
                pt.Fields.Add((fn, off, node, bp, bl, next));
            }
            types[name] = pt;
            if (t.TryGetProperty("nested_types", out var nts))
                foreach (var n in nts.EnumerateObject()) AddType(NestedName(n.Name), n.Value, where + "." + n.Name);
        }

        foreach (var t in m.GetProperty("types").EnumerateObject())
            if (HasLabel(t.Value, "builds", label)) AddType(t.Name, t.Value, $"modules.{module}.types.{t.Name}");

        // Copy referenced nt types (closure) from the nt table; unresolved references become byte arrays.
        var copied = new Dictionary<string, IsfUserType>(StringComparer.Ordinal);
        var ntEnums = new Dictionary<string, IsfEnum>(StringComparer.Ordinal);
        void CopyNt(string name)
        {
            if (nt is null || types.ContainsKey(name) || copied.ContainsKey(name) || !nt.UserTypes.TryGetValue(name, out var ut)) return;
            copied[name] = ut;
            foreach (var f in ut.Fields) WalkRef(f.Type);
        }
        void WalkRef(IsfTypeRef r)
        {
            if (r.Kind is "struct" or "union" or "class" && r.Name is not null) CopyNt(r.Name);
            else if (r.Kind == "enum" && r.Name is not null && nt!.Enums.TryGetValue(r.Name, out var e) && !enums.ContainsKey(r.Name)) ntEnums[r.Name] = e;
            if (r.Subtype is not null) WalkRef(r.Subtype);
        }
        string Classify(TNode n)
        {
            if (n.Kind != "struct" || n.Name is null) return n.Kind;
            if (types.ContainsKey(n.Name)) return types[n.Name].Kind;
            if (enums.ContainsKey(n.Name)) return "enum";
            if (nt is not null && nt.Enums.ContainsKey(n.Name)) { ntEnums[n.Name] = nt.Enums[n.Name]; return "enum"; }
            if (nt is not null && nt.UserTypes.TryGetValue(n.Name, out var ut)) { CopyNt(n.Name); return ut.Kind; }
            return "unresolved";
        }

        int SizeOfNode(TNode n) => n.Kind switch
        {
            "base" => BaseSize(n.Name!),
            "pointer" => 8,
            "array" => n.Count * SizeOfNode(n.Sub!),
            "enum" => enums.TryGetValue(n.Name!, out var e) ? e.Size : ntEnums.TryGetValue(n.Name!, out var ne) ? ne.Size : 4,
            "struct" or "union" => types.TryGetValue(n.Name!, out var pt) ? (pt.Size ?? 0) : copied.TryGetValue(n.Name!, out var ct) ? ct.Size : 0,
            _ => 0,
        };

        TNode Fix(TNode n, int gap)
        {
            switch (n.Kind)
            {
                case "pointer":
                    var sub = n.Sub!;
                    if (sub.Kind == "struct") { var k = Classify(sub); sub = k == "unresolved" ? new TNode("base", "void") : sub with { Kind = k }; }
                    else if (sub.Kind == "unresolved") sub = new TNode("base", "void");
                    else if (sub.Kind is "array" or "pointer") sub = Fix(sub, 0);
                    return n with { Sub = sub };
                case "array":
                    var el = Fix(n.Sub!, 0);
                    if (el.Kind == "unresolved") return Opaque(gap);
                    return n with { Sub = el };
                case "struct":
                    var kind = Classify(n);
                    return kind == "unresolved" ? Opaque(gap) : n with { Kind = kind };
                case "unresolved":
                    return Opaque(gap);
                case "variant":
                    var cands = n.Alts!.Select(a => Fix(a, gap)).ToList();
                    return cands.FirstOrDefault(c => SizeOfNode(c) <= gap && SizeOfNode(c) > 0) ?? cands.OrderBy(SizeOfNode).First();
                default:
                    return n;
            }
        }
        void NoteChoice(string type, string field, TNode spelled, TNode chosen)
        {
            bool opaque = chosen.Kind == "array" && chosen.Sub is { Kind: "base", Name: "unsigned char" } && spelled.Kind != "array";
            if (spelled.Kind == "variant") notes.Add($"{type}.{field}: variant (alternative not recorded); {Describe(chosen)} fits before the next member");
            else if (opaque || spelled.Kind == "array" && spelled.Sub?.Kind == "unresolved")
                notes.Add($"{type}.{field}: '{spelled.Name ?? spelled.Sub?.Name}' defined nowhere; kept as {chosen.Count} opaque bytes");
        }
        static string Describe(TNode n) => n.Kind switch
        {
            "base" or "struct" or "union" or "enum" => n.Name ?? n.Kind,
            "pointer" => "a pointer",
            "array" => $"{n.Count} x {Describe(n.Sub!)}",
            _ => n.Kind,
        };
        static TNode Opaque(int gap) => new("array", Sub: new TNode("base", "unsigned char"), Count: Math.Max(gap, 1));

        // Resolve kinds and opaque sizes (types may depend on each other's sizes: iterate to a fixed point).
        var resolved = new Dictionary<string, List<(string Name, int Offset, TNode Type, int BitPos, int BitLen)>>();
        for (int pass = 0; pass < 3; pass++)
        {
            foreach (var pt in types.Values)
            {
                var list = new List<(string, int, TNode, int, int)>();
                foreach (var (fn, off, node, bp, bl, next) in pt.Fields)
                {
                    int gap = next > 0 ? next - off : (pt.Size ?? off + 8) - off;
                    var fixedNode = Fix(node, gap);
                    if (pass == 0) NoteChoice(pt.Name, fn, node, fixedNode);
                    // array_counts: selene keeps the earliest build's element count; clip to the type's known size.
                    if (fixedNode.Kind == "array" && pt.Size is { } known && off + SizeOfNode(fixedNode) > known && SizeOfNode(fixedNode.Sub!) > 0)
                        fixedNode = fixedNode with { Count = (known - off) / SizeOfNode(fixedNode.Sub!) };
                    if (bp >= 0)
                    {
                        // storage: the smallest integer covering the bits (selene aligns offsets down to the storage unit)
                        int need = bp + bl; int bytes = need <= 8 ? 1 : need <= 16 ? 2 : need <= 32 ? 4 : 8;
                        if (fixedNode.Kind == "base" && BaseSize(fixedNode.Name!) >= bytes) bytes = BaseSize(fixedNode.Name!);
                        bool signed = fixedNode.Kind == "base" && BaseTypes.First(b => b.Name == fixedNode.Name).Signed;
                        fixedNode = new TNode("base", (signed, bytes) switch
                        {
                            (false, 1) => "unsigned char", (true, 1) => "char", (false, 2) => "unsigned short", (true, 2) => "short",
                            (false, 4) => "unsigned long", (true, 4) => "long", (false, _) => "unsigned long long", (true, _) => "long long",
                        });
                    }
                    list.Add((fn, off, fixedNode, bp, bl));
                }
                resolved[pt.Name] = list;
                if (pt.Size is null || pass > 0 && pt.Size.Value == InferSize(list, SizeOfNode))
                {
                    if (pt.Size is null) notes.Add($"{pt.Name}: size not recorded for {label}; the members' end, aligned");
                    pt.Size = InferSize(list, SizeOfNode);
                }
            }
        }

        // Write ISF JSON.
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteString("format", "6.1.0");
            w.WriteStartObject("producer"); w.WriteString("name", "NtSleuth.Lab LayoutTable"); w.WriteString("version", "1"); w.WriteString("source", Source); w.WriteString("build_label", label); w.WriteEndObject();
            w.WriteStartObject("windows"); w.WriteStartObject("pdb");
            w.WriteString("database", PdbName(module));
            w.WriteString("GUID", SyntheticGuid(module, label));
            w.WriteNumber("age", 1);
            w.WriteNumber("machine_type", 34404);
            w.WriteEndObject(); w.WriteEndObject();
            w.WriteEndObject();

            w.WriteStartObject("base_types");
            foreach (var b in BaseTypes)
            {
                w.WriteStartObject(b.Name); w.WriteNumber("size", b.Size); w.WriteBoolean("signed", b.Signed); w.WriteString("kind", b.Kind); w.WriteString("endian", "little"); w.WriteEndObject();
            }
            w.WriteEndObject();

            w.WriteStartObject("user_types");
            foreach (var pt in types.Values)
            {
                w.WriteStartObject(pt.Name);
                w.WriteString("kind", pt.Kind);
                w.WriteNumber("size", pt.Size ?? 0);
                w.WriteStartObject("fields");
                foreach (var (fn, off, node, bp, bl) in resolved[pt.Name])
                {
                    w.WriteStartObject(fn);
                    w.WriteNumber("offset", off);
                    w.WritePropertyName("type");
                    if (bp >= 0)
                    {
                        w.WriteStartObject(); w.WriteString("kind", "bitfield"); w.WriteNumber("bit_position", bp); w.WriteNumber("bit_length", bl);
                        w.WritePropertyName("type"); WriteNode(w, node); w.WriteEndObject();
                    }
                    else WriteNode(w, node);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
                w.WriteEndObject();
            }
            foreach (var ut in copied.Values)
            {
                w.WriteStartObject(ut.Name);
                w.WriteString("kind", ut.Kind);
                w.WriteNumber("size", ut.Size);
                w.WriteStartObject("fields");
                foreach (var f in ut.Fields)
                {
                    w.WriteStartObject(f.Name); w.WriteNumber("offset", f.Offset); w.WritePropertyName("type"); WriteIsfRef(w, f.Type); w.WriteEndObject();
                }
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndObject();

            w.WriteStartObject("enums");
            foreach (var (name, (size, vals)) in enums)
            {
                w.WriteStartObject(name); w.WriteNumber("size", size); w.WriteString("base", size switch { 1 => "unsigned char", 2 => "unsigned short", 8 => "long long", _ => "long" });
                w.WriteStartObject("constants"); foreach (var (k, v) in vals) w.WriteNumber(k, v); w.WriteEndObject();
                w.WriteEndObject();
            }
            foreach (var e in ntEnums.Values)
            {
                if (enums.ContainsKey(e.Name)) continue;
                w.WriteStartObject(e.Name); w.WriteNumber("size", e.Size); w.WriteString("base", e.Base);
                w.WriteStartObject("constants"); foreach (var (k, v) in e.Constants) w.WriteNumber(k, v); w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndObject();

            w.WriteStartObject("symbols");
            foreach (var (n, rva) in Globals(module, label))
            {
                w.WriteStartObject(n); w.WriteNumber("address", rva); w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    private static int InferSize(List<(string Name, int Offset, TNode Type, int BitPos, int BitLen)> fields, Func<TNode, int> size)
    {
        int end = 0, align = 1;
        foreach (var f in fields)
        {
            int s = size(f.Type);
            end = Math.Max(end, f.Offset + s);
            if (f.Type.Kind == "pointer" || (f.Type.Kind == "base" && s == 8)) align = 8;
            else if (s >= 4 && align < 4 && f.Type.Kind == "base") align = 4;
        }
        return (end + align - 1) / align * align;
    }

    private static TNode VarWidth(JsonElement fv, string label, JsonElement widths)
    {
        int bits = label == "Windows 10 v20H2" && fv.TryGetProperty("int_width_bits_Windows_10_v20H2", out var wv) ? wv.GetInt32()
            : widths.EnumerateArray().Select(x => x.GetInt32()).DefaultIfEmpty(32).Max();
        bool signed = fv.GetProperty("type").GetString()!.Contains("varint");
        return ParseType($"{(signed ? "" : "u")}int{bits}_t");
    }

    private static string NestedName(string owner_dot_field) => owner_dot_field.Replace(".", "__");

    /// <summary>A stable GUID per module+label so forged PDBs are reproducible (not Microsoft's real GUID).</summary>
    public static string SyntheticGuid(string module, string label)
    {
        var h = System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes("ntsleuth-layouts|" + module + "|" + label));
        return Convert.ToHexString(h, 0, 16);
    }

    private static void WriteNode(Utf8JsonWriter w, TNode n)
    {
        w.WriteStartObject();
        w.WriteString("kind", n.Kind);
        switch (n.Kind)
        {
            case "base": case "struct": case "union": case "enum": w.WriteString("name", n.Name); break;
            case "pointer": w.WritePropertyName("subtype"); WriteNode(w, n.Sub!); break;
            case "array": w.WriteNumber("count", n.Count); w.WritePropertyName("subtype"); WriteNode(w, n.Sub!); break;
        }
        w.WriteEndObject();
    }

    private static void WriteIsfRef(Utf8JsonWriter w, IsfTypeRef r)
    {
        w.WriteStartObject();
        w.WriteString("kind", r.Kind);
        if (r.Name is not null) w.WriteString("name", r.Name);
        if (r.Kind == "array") w.WriteNumber("count", r.Count);
        if (r.Kind == "bitfield") { w.WriteNumber("bit_position", r.BitPosition); w.WriteNumber("bit_length", r.BitLength); }
        if (r.Subtype is not null) { w.WritePropertyName(r.Kind == "bitfield" ? "type" : "subtype"); WriteIsfRef(w, r.Subtype); }
        w.WriteEndObject();
    }
}
