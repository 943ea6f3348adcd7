using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// The ndis/fltmgr layout table (../shared/realdata/layouts/ndis-fltmgr-layouts.json, PDB-derived via selene) turned into
/// per-build symbol tables (ISF documents) for the modules "ndis" and "fltmgr": types with their per-build field offsets,
/// globals at their per-build RVAs. Used by the ndis/fltmgr scenarios until the general lab reader lands.
/// Build labels map to nt ISF builds: "Windows 10 v1607" -> 14393 (Server 2016 ISF 14393.6343),
/// "Windows 10 v20H2" -> 19041 (ISF 19041.804, whose nt offsets the table's 20H2 column matches exactly).
/// </summary>
public static class NdisFltmgrLayouts
{
    public const string V1607 = "Windows 10 v1607";
    public const string V20H2 = "Windows 10 v20H2";
    public const string V2004 = "Windows 10 v2004";
    public const string Win11 = "Windows 11";

    public static int BuildNumberOf(string label) => label switch
    {
        V1607 => 14393, V2004 => 19041, V20H2 => 19042, Win11 => 22621, _ => 0,
    };

    private static readonly Dictionary<string, JsonNode> Cache = new();


    private static JsonNode Load(string path)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(path, out var n)) Cache[path] = n = JsonNode.Parse(File.ReadAllText(path))!;
            return n;
        }
    }

    private static readonly Dictionary<string, (string Name, int Size, bool Signed)> Prims = new()
    {
        ["uint8_t"] = ("unsigned char", 1, false), ["int8_t"] = ("char", 1, true), ["bool"] = ("unsigned char", 1, false),
        ["uint16_t"] = ("unsigned short", 2, false), ["int16_t"] = ("short", 2, true), ["wchar_t"] = ("wchar", 2, false),
        ["uint32_t"] = ("unsigned long", 4, false), ["int32_t"] = ("long", 4, true), ["volatile int32_t"] = ("long", 4, true),
        ["volatile uint32_t"] = ("unsigned long", 4, false),
        ["uint64_t"] = ("unsigned long long", 8, false), ["int64_t"] = ("long long", 8, true),
    };

    /// <summary>Builds an ISF document for <paramref name="module"/> ("ndis" or "fltmgr") and build <paramref name="label"/>.</summary>
    public static IsfDocument BuildIsf(string layoutsPath, string module, string label)
    {
        var root = Load(layoutsPath);
        var mod = root["modules"]![module]!;
        var baseTypes = new JsonObject
        {
            ["void"] = new JsonObject { ["size"] = 0, ["signed"] = false, ["kind"] = "void", ["endian"] = "little" },
            ["pointer"] = new JsonObject { ["size"] = 8, ["signed"] = false, ["kind"] = "int", ["endian"] = "little" },
        };
        foreach (var (_, (name, size, signed)) in Prims)
            baseTypes[name] = new JsonObject { ["size"] = size, ["signed"] = signed, ["kind"] = name == "wchar" ? "char" : "int", ["endian"] = "little" };

        var userTypes = new JsonObject();
        var types = mod["types"]!.AsObject();
        foreach (var (tname, tnode) in types)
        {
            var builds = tnode!["builds"]?.AsArray().Select(b => b!.GetValue<string>()).ToList() ?? new();
            if (!builds.Contains(label)) continue;
            var fields = new JsonObject();
            int end = 0;
            foreach (var (fname, f) in tnode["fields"]!.AsObject())
            {
                var offs = f!["offset"]!.AsObject();
                if (!offs.TryGetPropertyValue(label, out var o) || o is null) continue;
                int off = o.GetValue<int>();
                var (tref, size) = TypeRefOf(f, label, types);
                if (tref is null) continue;
                if (f["bit_position"] is JsonObject bp && bp.TryGetPropertyValue(label, out var pos) && pos is not null)
                {
                    int len = f["bit_length"]?.GetValue<int>() ?? f["bit_length_Windows_10_v20H2"]?.GetValue<int>() ?? 1;
                    tref = new JsonObject { ["kind"] = "bitfield", ["bit_position"] = pos.GetValue<int>(), ["bit_length"] = len, ["type"] = tref };
                }
                fields[fname] = new JsonObject { ["offset"] = off, ["type"] = tref };
                end = Math.Max(end, off + size);
            }
            int tsize = tnode["size"] is JsonObject sz && sz.TryGetPropertyValue(label, out var s) && s is not null ? s.GetValue<int>() : (end + 15) & ~15;
            if (tsize < end) tsize = (end + 15) & ~15;
            userTypes[tname] = new JsonObject { ["kind"] = tnode["kind"]?.GetValue<string>() == "union" ? "union" : "struct", ["size"] = tsize, ["fields"] = fields };
        }
        if (!userTypes.ContainsKey("_LIST_ENTRY"))
            userTypes["_LIST_ENTRY"] = new JsonObject
            {
                ["kind"] = "struct", ["size"] = 16,
                ["fields"] = new JsonObject { ["Flink"] = Field(0, Ptr()), ["Blink"] = Field(8, Ptr()) },
            };
        if (!userTypes.ContainsKey("_UNICODE_STRING"))
            userTypes["_UNICODE_STRING"] = new JsonObject
            {
                ["kind"] = "struct", ["size"] = 16,
                ["fields"] = new JsonObject { ["Length"] = Field(0, Base("unsigned short")), ["MaximumLength"] = Field(2, Base("unsigned short")), ["Buffer"] = Field(8, Ptr()) },
            };

        var symbols = new JsonObject();
        foreach (var key in new[] { "globals", "other_symbols" })
        {
            if (mod[key] is not JsonObject g) continue;
            foreach (var (sname, snode) in g)
                if (snode?["rva"] is JsonObject rva && rva.TryGetPropertyValue(label, out var a) && a is not null)
                    symbols[sname] = new JsonObject { ["address"] = a.GetValue<ulong>() };
        }
        var isf = new JsonObject
        {
            ["metadata"] = new JsonObject { ["format"] = "6.1.0", ["producer"] = new JsonObject { ["name"] = "ntsleuth-lab-layouts" } },
            ["base_types"] = baseTypes, ["user_types"] = userTypes, ["enums"] = new JsonObject(), ["symbols"] = symbols,
        };
        using var doc = JsonDocument.Parse(isf.ToJsonString());
        return IsfDocument.FromJson(doc.RootElement, $"layouts:{module}:{label}");
    }

    private static JsonObject Field(int off, JsonNode t) => new() { ["offset"] = off, ["type"] = t };
    private static JsonObject Ptr() => new() { ["kind"] = "pointer", ["subtype"] = new JsonObject { ["kind"] = "base", ["name"] = "void" } };
    private static JsonObject Base(string n) => new() { ["kind"] = "base", ["name"] = n };

    private static readonly Regex ArrayRe = new(@"^sdk::array<(.+),\s*(\d+)>$");

    private static (JsonNode? Ref, int Size) TypeRefOf(JsonNode f, string label, JsonObject types)
    {
        string type = f["type"]!.GetValue<string>().Trim();
        string? pdb = f["pdb_type"]?.GetValue<string>();
        return Resolve(type, pdb, f, label, types);
    }

    private static (JsonNode? Ref, int Size) Resolve(string type, string? pdb, JsonNode? f, string label, JsonObject types)
    {
        if (type.EndsWith('*')) return (Ptr(), 8);
        if (Prims.TryGetValue(type, out var p)) return (Base(p.Name), p.Size);
        if (type.StartsWith("enum ")) return (Base("long"), 4);
        if (type.StartsWith("varuint_t") || type.StartsWith("varint_t"))
        {
            int bits = f?["int_width_bits_Windows_10_v20H2"]?.GetValue<int>() ?? 32;
            var name = bits switch { 8 => "unsigned char", 16 => "unsigned short", 64 => "unsigned long long", _ => "unsigned long" };
            return (Base(name), bits / 8);
        }
        if (type.StartsWith("sdk::variant")) return (Base("unsigned long long"), 8);
        if (type == "nt::unicode_view") return (new JsonObject { ["kind"] = "struct", ["name"] = "_UNICODE_STRING" }, 16);
        if (type == "nt::list_entry_t") return (new JsonObject { ["kind"] = "struct", ["name"] = "_LIST_ENTRY" }, 16);
        var m = ArrayRe.Match(type);
        if (m.Success)
        {
            int count = int.Parse(m.Groups[2].Value);
            string? elemPdb = pdb is not null && pdb.EndsWith(']') ? pdb[..pdb.LastIndexOf('[')] : null;
            var (elem, esize) = Resolve(m.Groups[1].Value.Trim(), elemPdb, null, label, types);
            if (elem is null) return (null, 0);
            return (new JsonObject { ["kind"] = "array", ["count"] = count, ["subtype"] = elem }, esize * count);
        }
        if ((type.StartsWith("struct ") || type.StartsWith("union ")) && pdb is not null && !pdb.StartsWith('?'))
        {
            int size = 0;
            if (types[pdb] is JsonObject t && t["size"] is JsonObject sz)
                size = sz.TryGetPropertyValue(label, out var s) && s is not null ? s.GetValue<int>() : sz.First().Value!.GetValue<int>();
            if (size == 0) return (null, 0);
            return (new JsonObject { ["kind"] = type.StartsWith("union ") ? "union" : "struct", ["name"] = pdb }, size);
        }
        return (null, 0);
    }
}

/// <summary>A bump allocator for scenario objects in a kernel address range.</summary>
public sealed class LabHeap(ulong start)
{
    private ulong _next = start;
    public ulong Alloc(ulong size, ulong align = 16)
    {
        _next = (_next + align - 1) & ~(align - 1);
        ulong a = _next; _next += size; return a;
    }
}
