using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// Validates a JSON document against the subset of JSON Schema 2020-12 that docs/schema uses (type, const, enum,
/// properties, required, additionalProperties, items, pattern, format date-time, local $ref). An unknown keyword is
/// an error, so the validator cannot silently accept a schema it does not understand.
/// </summary>
public static class JsonSchemaValidator
{
    private static readonly HashSet<string> Known = ["$schema", "$id", "title", "description", "type", "const", "enum", "properties",
        "required", "additionalProperties", "items", "pattern", "format", "$ref"];

    public static List<string> Validate(JsonNode? doc, JsonObject schema)
    {
        var errors = new List<string>();
        Check(doc, schema, schema, "", errors);
        return errors;
    }

    private static void Check(JsonNode? v, JsonNode? s, JsonObject root, string at, List<string> errors)
    {
        if (s is JsonValue b && b.TryGetValue<bool>(out var allow)) { if (!allow) errors.Add($"{at}: not allowed"); return; }
        if (s is not JsonObject so) { errors.Add($"{at}: bad schema node"); return; }
        foreach (var k in so.Select(p => p.Key))
            if (!Known.Contains(k)) errors.Add($"{at}: schema keyword '{k}' not supported by the validator");
        if (so["$ref"] is JsonNode r)
        {
            var target = Resolve(root, r.GetValue<string>());
            if (target is null) { errors.Add($"{at}: unresolved $ref {r}"); return; }
            Check(v, target, root, at, errors);
        }
        if (so["type"] is JsonNode t)
        {
            var types = t is JsonArray a ? a.Select(x => x!.GetValue<string>()).ToList() : [t.GetValue<string>()];
            if (!types.Any(ty => IsType(v, ty))) { errors.Add($"{at}: {Kind(v)} is not {string.Join("|", types)}"); return; }
        }
        if (so.ContainsKey("const") && !JsonNode.DeepEquals(v, so["const"])) errors.Add($"{at}: {v?.ToJsonString()} != const {so["const"]?.ToJsonString()}");
        if (so["enum"] is JsonArray en && !en.Any(e => JsonNode.DeepEquals(v, e))) errors.Add($"{at}: {v?.ToJsonString()} not in enum");
        if (v is JsonValue sv && sv.TryGetValue<string>(out var str))
        {
            if (so["pattern"] is JsonNode pat && !Regex.IsMatch(str, pat.GetValue<string>())) errors.Add($"{at}: '{str}' does not match {pat}");
            if (so["format"]?.GetValue<string>() == "date-time" && !DateTimeOffset.TryParse(str, CultureInfo.InvariantCulture, DateTimeStyles.None, out _))
                errors.Add($"{at}: '{str}' is not a date-time");
        }
        if (v is JsonObject o)
        {
            var props = so["properties"] as JsonObject;
            if (so["required"] is JsonArray req)
                foreach (var q in req) if (!o.ContainsKey(q!.GetValue<string>())) errors.Add($"{at}: missing required '{q}'");
            foreach (var (k, val) in o)
            {
                if (props?[k] is JsonNode ps) Check(val, ps, root, $"{at}/{k}", errors);
                else if (so["additionalProperties"] is JsonNode ap) Check(val, ap, root, $"{at}/{k}", errors);
            }
        }
        if (v is JsonArray arr && so["items"] is JsonNode items)
            for (int i = 0; i < arr.Count; i++) Check(arr[i], items, root, $"{at}/{i}", errors);
    }

    private static JsonNode? Resolve(JsonObject root, string pointer)
    {
        if (!pointer.StartsWith("#", StringComparison.Ordinal)) return null;
        JsonNode? n = root;
        foreach (var part in pointer[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var key = part.Replace("~1", "/").Replace("~0", "~");
            n = n switch { JsonObject o => o[key], JsonArray a when int.TryParse(key, out var i) && i < a.Count => a[i], _ => null };
            if (n is null) return null;
        }
        return n;
    }

    private static string Kind(JsonNode? v) => v is null ? "null" : v.GetValueKind().ToString();

    private static bool IsType(JsonNode? v, string type) => type switch
    {
        "null" => v is null,
        "object" => v is JsonObject,
        "array" => v is JsonArray,
        "string" => v is JsonValue s && s.GetValueKind() == System.Text.Json.JsonValueKind.String,
        "boolean" => v is JsonValue b && b.GetValueKind() is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False,
        "number" => v is JsonValue n && n.GetValueKind() == System.Text.Json.JsonValueKind.Number,
        "integer" => v is JsonValue i && i.GetValueKind() == System.Text.Json.JsonValueKind.Number && decimal.TryParse(i.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d == decimal.Truncate(d),
        _ => false,
    };
}
