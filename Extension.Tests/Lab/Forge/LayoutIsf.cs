using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary>
/// Turns one build column of <c>realdata/layouts/ndis-fltmgr-layouts.json</c> (ndis or fltmgr) into an ISF document the
/// forge compiles, so ndis.pdb / fltMgr.pdb carry the module's structs, unions and enums at the table's offsets.
///
/// The table is not a full PDB, so the conversion makes choices, each recorded in <see cref="Result.Approximations"/>:
/// <list type="bullet">
/// <item>Field types come from <c>pdb_type</c> (PDB spelling) or else selene's primitive spelling (uint32_t -> unsigned long, ...).</item>
/// <item>Types the table does not define but the build's nt ISF does (_LIST_ENTRY, _UNICODE_STRING, _KEVENT, ...) are
///   copied from the nt table with everything they hold by value.</item>
/// <item>A by-value member whose type is defined nowhere becomes an unsigned char array up to the next member
///   (the bytes are right, the type name is lost); pointers to such types keep their name (forward declaration).</item>
/// <item>Where selene records no size for this build (size varies; only v20H2 is recorded), the size is the end of the
///   last member rounded up to 8.</item>
/// <item>sdk::variant members (which alternative a build uses is not recorded) are left out.</item>
/// <item>Bitfields get the smallest storage unit (1/2/4/8 bytes) that holds their bits; selene does not record the unit type.</item>
/// <item>Enumerator names are selene's snake_case spellings (the table has no PDB spelling).</item>
/// </list>
/// </summary>
public static class LayoutIsf
{
    public sealed record Result(IsfDocument Document, IReadOnlyList<string> Approximations, int ModuleTypes, int CopiedNtTypes);

    public static Result Build(string layoutsJson, string module, string buildLabel, IsfDocument? nt)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(layoutsJson));
        if (!doc.RootElement.GetProperty("modules").TryGetProperty(module, out var m)) throw new ForgeException($"{layoutsJson}: no module '{module}'");
        var conv = new Converter(m, buildLabel, nt);
        conv.Run();
        string json = conv.ToJson(m.GetProperty("pdb").GetString()!);
        var isf = IsfDocument.Parse(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json)), $"{Path.GetFileName(layoutsJson)}:{module}:{buildLabel}");
        return new Result(isf, conv.Notes, conv.ModuleTypeCount, conv.CopiedNt.Count);
    }

    private sealed class Converter(JsonElement module, string label, IsfDocument? nt)
    {
        public readonly List<string> Notes = [];
        public readonly HashSet<string> CopiedNt = new(StringComparer.Ordinal);
        public int ModuleTypeCount;
        private readonly Dictionary<string, (JsonElement Def, string Kind)> _defs = new(StringComparer.Ordinal);
        private readonly Dictionary<string, (string Base, int Size, Dictionary<string, long> Values)> _enums = new(StringComparer.Ordinal);
        private readonly JsonObject _userTypes = new();
        private readonly JsonObject _enumsOut = new();

        private static readonly Dictionary<string, (string Name, int Size)> Primitives = new(StringComparer.Ordinal)
        {
            ["uint8_t"] = ("unsigned char", 1), ["int8_t"] = ("char", 1), ["char"] = ("char", 1), ["bool"] = ("unsigned char", 1),
            ["uint16_t"] = ("unsigned short", 2), ["int16_t"] = ("short", 2), ["wchar_t"] = ("wchar", 2),
            ["uint32_t"] = ("unsigned long", 4), ["int32_t"] = ("long", 4),
            ["uint64_t"] = ("unsigned long long", 8), ["int64_t"] = ("long long", 8), ["void"] = ("void", 0),
        };

        public void Run()
        {
            foreach (var t in module.GetProperty("types").EnumerateObject())
            {
                if (!Exists(t.Value)) continue;
                _defs[t.Name] = (t.Value, t.Value.GetProperty("kind").GetString()!);
                if (t.Value.TryGetProperty("nested_types", out var nested))
                    foreach (var n in nested.EnumerateObject()) _defs[n.Name] = (n.Value, n.Value.GetProperty("kind").GetString()!);
            }
            if (module.TryGetProperty("enums", out var enums))
                foreach (var e in enums.EnumerateObject())
                {
                    if (!Exists(e.Value)) continue;
                    var vals = new Dictionary<string, long>(StringComparer.Ordinal);
                    foreach (var v in e.Value.GetProperty("values").EnumerateObject())
                        if (v.Value.TryGetProperty(label, out var x)) vals[v.Name == "<empty>" ? "_empty" : v.Name] = x.GetInt64();
                    string under = e.Value.TryGetProperty("underlying", out var u) ? u.GetString() ?? "int32_t" : "int32_t";
                    var (b, sz) = Primitives.TryGetValue(under, out var p) ? p : ("long", 4);
                    _enums[e.Name] = (b, sz, vals);
                }
            foreach (var name in _defs.Keys.ToList()) Ensure(name);
            ModuleTypeCount = _defs.Keys.Count(_userTypes.ContainsKey);
            foreach (var (name, (b, sz, vals)) in _enums)
            {
                var c = new JsonObject();
                foreach (var (k, v) in vals) c[k] = v;
                _enumsOut[name] = new JsonObject { ["base"] = b, ["size"] = sz, ["constants"] = c };
            }
        }

        private bool Exists(JsonElement def) =>
            !def.TryGetProperty("builds", out var b) || b.EnumerateArray().Any(x => x.GetString() == label);

        private readonly Dictionary<string, int> _sizes = new(StringComparer.Ordinal);
        private readonly HashSet<string> _converting = new(StringComparer.Ordinal);

        /// <summary>Converts a module type once (by-value members first, so their sizes are known); returns its size.</summary>
        private int Ensure(string name)
        {
            if (_sizes.TryGetValue(name, out var sz)) return sz;
            if (!_converting.Add(name)) throw new ForgeException($"layout type {name} contains itself by value");
            var (def, kind) = _defs[name];
            Convert(name, def, kind);
            _converting.Remove(name);
            return _sizes[name];
        }

        private void Convert(string name, JsonElement def, string kind)
        {
            var fields = new List<(string Name, int Offset, JsonElement F)>();
            foreach (var f in def.GetProperty("fields").EnumerateObject())
                if (f.Value.GetProperty("offset").TryGetProperty(label, out var o)) fields.Add((f.Name, o.GetInt32(), f.Value));
            fields.Sort((a, b) => a.Offset.CompareTo(b.Offset));
            int? size = def.TryGetProperty("size", out var s) && s.TryGetProperty(label, out var sv) ? sv.GetInt32() : null;
            var outFields = new JsonObject();
            int end = 0;
            for (int i = 0; i < fields.Count; i++)
            {
                var (fname, off, f) = fields[i];
                int nextOff = fields.Skip(i + 1).Select(x => x.Offset).Where(x => x > off).DefaultIfEmpty(size ?? -1).First();
                JsonObject? t;
                int fsize;
                if (f.TryGetProperty("bit_position", out var bp) && bp.TryGetProperty(label, out var bpos))
                {
                    int len = f.TryGetProperty("bit_length", out var bl) && bl.ValueKind == JsonValueKind.Number ? bl.GetInt32()
                        : f.TryGetProperty("bit_length_Windows_10_v20H2", out var bl2) && bl2.ValueKind == JsonValueKind.Number ? bl2.GetInt32() : -1;
                    if (len <= 0) { Notes.Add($"{name}.{fname}: bit length unknown for {label}; left out"); continue; }
                    int pos = bpos.GetInt32();
                    int unit = pos + len <= 8 ? 1 : pos + len <= 16 ? 2 : pos + len <= 32 ? 4 : 8;
                    string bt = unit switch { 1 => "unsigned char", 2 => "unsigned short", 4 => "unsigned long", _ => "unsigned long long" };
                    t = new JsonObject { ["kind"] = "bitfield", ["bit_position"] = pos, ["bit_length"] = len, ["type"] = new JsonObject { ["kind"] = "base", ["name"] = bt } };
                    fsize = unit;
                }
                else
                {
                    string spelled = f.TryGetProperty("pdb_type", out var pt) ? pt.GetString()! : f.GetProperty("type").GetString()!;
                    if (spelled.Contains('<') && !spelled.StartsWith("sdk::array", StringComparison.Ordinal))
                    {
                        Notes.Add($"{name}.{fname}: '{spelled}' (variant/template) left out");
                        continue;
                    }
                    (t, fsize) = Parse(spelled, $"{name}.{fname}");
                    if (t is null)
                    {
                        int bytes = nextOff > off ? nextOff - off : 0;
                        if (bytes == 0) { Notes.Add($"{name}.{fname}: by-value '{spelled}' of unknown size at the end; left out"); continue; }
                        Notes.Add($"{name}.{fname}: by-value '{spelled}' not defined anywhere; unsigned char[{bytes}]");
                        t = Array(new JsonObject { ["kind"] = "base", ["name"] = "unsigned char" }, bytes);
                        fsize = bytes;
                    }
                }
                outFields[fname] = new JsonObject { ["offset"] = off, ["type"] = t };
                end = Math.Max(end, off + fsize);
            }
            if (size is null || size < end)
            {
                if (size is not null) Notes.Add($"{name}: recorded size {size} is smaller than its members (end {end}); using {end}");
                size = (end + 7) & ~7;
                if (def.TryGetProperty("size", out _)) Notes.Add($"{name}: no size recorded for {label}; {size} from its last member");
            }
            _sizes[name] = size.Value;
            if (size == 0)
            {
                // No members for this build and no size: C++ cannot express a 0-byte type; pointers to it stay forward declarations.
                Notes.Add($"{name}: no members and no size for {label}; only forward-declared");
                return;
            }
            _userTypes[name] = new JsonObject { ["kind"] = kind == "union" ? "union" : "struct", ["size"] = size, ["fields"] = outFields };
        }

        private static JsonObject Array(JsonObject sub, int count) => new() { ["kind"] = "array", ["count"] = count, ["subtype"] = sub };

        /// <summary>ISF type ref + size for a PDB/selene type spelling; (null, 0) for a by-value type defined nowhere.</summary>
        private (JsonObject?, int) Parse(string spelled, string where, bool byValue = true)
        {
            string s = Regex.Replace(spelled, @"\b(volatile|const)\b", "").Trim();
            s = Regex.Replace(s, @"^(struct|union|enum)\s+", "");
            if (s == "function*" || s.StartsWith("sdk::function", StringComparison.Ordinal))
                return (new JsonObject { ["kind"] = "pointer", ["subtype"] = new JsonObject { ["kind"] = "function" } }, 8);
            var arr = Regex.Match(s, @"^sdk::array<(.*),\s*(\d+)>(\**)$");
            if (arr.Success) s = arr.Groups[1].Value.Trim() + "[" + arr.Groups[2].Value + "]" + arr.Groups[3].Value;
            if (s.EndsWith('*'))
            {
                var (inner, _) = Parse(s[..^1], where, byValue: false);
                inner ??= Named(s[..^1].Trim());
                return (new JsonObject { ["kind"] = "pointer", ["subtype"] = inner }, 8);
            }
            var am = Regex.Match(s, @"^(.*)\[(\d*)\]$");
            if (am.Success)
            {
                int n = am.Groups[2].Value.Length == 0 ? 0 : int.Parse(am.Groups[2].Value, CultureInfo.InvariantCulture);
                var (inner, isz) = Parse(am.Groups[1].Value, where, byValue);
                if (inner is null) return (null, 0);
                return (Array(inner, n), isz * n);
            }
            if (Primitives.TryGetValue(s, out var p)) return (new JsonObject { ["kind"] = "base", ["name"] = p.Name }, p.Size);
            if (s.StartsWith("nt::", StringComparison.Ordinal) || s.Contains("::")) return (null, 0);
            if (_defs.TryGetValue(s, out var d))
            {
                int sz = byValue ? Ensure(s) : 0;
                if (byValue && sz == 0) return (null, 0);
                return (new JsonObject { ["kind"] = d.Kind == "union" ? "union" : "struct", ["name"] = s }, sz);
            }
            if (_enums.TryGetValue(s, out var e)) return (new JsonObject { ["kind"] = "enum", ["name"] = s }, e.Size);
            if (nt is not null && nt.UserTypes.TryGetValue(s, out var ut)) { if (byValue) CopyNt(s); return (new JsonObject { ["kind"] = ut.Kind == "union" ? "union" : "struct", ["name"] = s }, ut.Size); }
            if (nt is not null && nt.Enums.TryGetValue(s, out var ne)) { CopyNtEnum(s); return (new JsonObject { ["kind"] = "enum", ["name"] = s }, ne.Size); }
            return (null, 0);
        }

        /// <summary>A named struct reference for a pointee (forward declaration when defined nowhere).</summary>
        private JsonObject Named(string s)
        {
            s = Regex.Replace(s, @"^(struct|union|enum)\s+", "").Trim();
            if (_defs.TryGetValue(s, out var d)) return new JsonObject { ["kind"] = d.Kind == "union" ? "union" : "struct", ["name"] = s };
            if (nt is not null && nt.UserTypes.TryGetValue(s, out var ut)) return new JsonObject { ["kind"] = ut.Kind == "union" ? "union" : "struct", ["name"] = s };
            if (Regex.IsMatch(s, @"^[A-Za-z_][A-Za-z0-9_]*$")) return new JsonObject { ["kind"] = "struct", ["name"] = s };
            return new JsonObject { ["kind"] = "base", ["name"] = "void" };
        }

        private void CopyNtEnum(string name)
        {
            if (_enumsOut.ContainsKey(name) || _enums.ContainsKey(name)) return;
            var e = nt!.Enums[name];
            var c = new JsonObject();
            foreach (var (k, v) in e.Constants) c[k] = v;
            _enumsOut[name] = new JsonObject { ["base"] = e.Base, ["size"] = e.Size, ["constants"] = c };
        }

        /// <summary>Copies an nt type and everything it references (by value or by pointer to a defined type) from the nt ISF.</summary>
        private void CopyNt(string name)
        {
            if (!CopiedNt.Add(name) || _defs.ContainsKey(name)) return;
            var ut = nt!.UserTypes[name];
            var fields = new JsonObject();
            foreach (var f in ut.Fields) fields[f.Name] = new JsonObject { ["offset"] = f.Offset, ["type"] = NtRef(f.Type, byValue: true) };
            _userTypes[name] = new JsonObject { ["kind"] = ut.Kind, ["size"] = ut.Size, ["fields"] = fields };
        }

        /// <summary>Copies a type reference; nt types held by value come along, pointees stay forward declarations.</summary>
        private JsonObject NtRef(IsfTypeRef t, bool byValue)
        {
            var o = new JsonObject { ["kind"] = t.Kind };
            if (t.Name is not null) o["name"] = t.Name;
            switch (t.Kind)
            {
                case "pointer": o["subtype"] = NtRef(t.Subtype!, byValue: false); break;
                case "array": o["subtype"] = NtRef(t.Subtype!, byValue); break;
                case "bitfield": o["type"] = NtRef(t.Subtype!, byValue); o["bit_position"] = t.BitPosition; o["bit_length"] = t.BitLength; break;
            }
            if (t.Kind == "array") o["count"] = t.Count;
            if (byValue && t.Kind is "struct" or "union" && t.Name is not null && nt!.UserTypes.ContainsKey(t.Name) && !_defs.ContainsKey(t.Name)) CopyNt(t.Name);
            if (t.Kind == "enum" && t.Name is not null && nt!.Enums.ContainsKey(t.Name)) CopyNtEnum(t.Name);
            return o;
        }

        public string ToJson(string pdbName)
        {
            var bt = new JsonObject();
            void B(string n, int size, bool signed, string kind) => bt[n] = new JsonObject { ["size"] = size, ["signed"] = signed, ["kind"] = kind, ["endian"] = "little" };
            B("char", 1, true, "char"); B("unsigned char", 1, false, "char"); B("short", 2, true, "int"); B("unsigned short", 2, false, "int");
            B("wchar", 2, true, "int"); B("long", 4, true, "int"); B("unsigned long", 4, false, "int"); B("int", 4, true, "int");
            B("unsigned int", 4, false, "int"); B("long long", 8, true, "int"); B("unsigned long long", 8, false, "int");
            B("void", 0, true, "void"); B("pointer", 8, false, "int"); B("double", 8, true, "float"); B("f32", 4, true, "float");
            if (nt is not null) foreach (var (n, b) in nt.BaseTypes) if (!bt.ContainsKey(n)) B(n, b.Size, b.Signed, b.Kind);
            var root = new JsonObject
            {
                ["metadata"] = new JsonObject { ["format"] = "6.1.0", ["windows"] = new JsonObject { ["pdb"] = new JsonObject { ["database"] = pdbName, ["age"] = 1 } } },
                ["base_types"] = bt, ["user_types"] = _userTypes, ["enums"] = _enumsOut, ["symbols"] = new JsonObject(),
            };
            return root.ToJsonString();
        }
    }
}
