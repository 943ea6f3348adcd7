using System.Text.Json.Nodes;
using NtSleuth.Commands.Cli;

namespace NtSleuth.Extension.DataModel;

/// <summary>A value of a command's report as the data model shows it (built lazily from the -json document).</summary>
public abstract record DxValue;
public sealed record DxString(string Value) : DxValue;
public sealed record DxInteger(long Value) : DxValue;
public sealed record DxUnsigned(ulong Value) : DxValue;
public sealed record DxDouble(double Value) : DxValue;
public sealed record DxBool(bool Value) : DxValue;
public sealed record DxNull : DxValue;
/// <summary>A target address. <see cref="Type"/> (e.g. <c>nt!_ETHREAD</c>) makes it a typed pointer the debugger can
/// follow when the symbols have the type; without one (or when the type does not resolve) it is a number.</summary>
public sealed record DxAddress(ulong Value, string? Type) : DxValue;

/// <summary>A report object: members in document order, each with its data-model name (PascalCase) and JSON key.</summary>
public sealed record DxObject(JsonObject Json, string Key, DxShape Shape) : DxValue
{
    public IEnumerable<(string Name, string JsonKey)> Members => Json.Select(kv => (DxMapping.ModelName(kv.Key), kv.Key));
    public DxValue Member(string jsonKey) => DxMapping.Map(Json[jsonKey], Key, jsonKey, Shape);
    public DxValue? this[string modelName] =>
        Json.FirstOrDefault(kv => DxMapping.ModelName(kv.Key) == modelName) is { Key: not null } kv ? Member(kv.Key) : null;
}

/// <summary>A report list (indexable, iterable: LINQ and <c>dx -g</c> work on it).</summary>
public sealed record DxArray(JsonArray Json, string Parent, string Key, DxShape Shape) : DxValue
{
    public int Count => Json.Count;
    public DxValue Item(int i) => DxMapping.Map(Json[i], Parent, Key, Shape);
}

/// <summary>
/// What the mapping needs to know about one command's document: which fields are 64-bit values written as "0x..."
/// (from the command's JSON schema, i.e. from the report model's own hex converters) and which of them are pointers
/// to a kernel type. Fields are named by (enclosing property, property); array elements take the array's name.
/// </summary>
public sealed class DxShape
{
    public string Command { get; }
    public IReadOnlySet<(string Parent, string Key)> HexFields { get; }
    private readonly Dictionary<(string, string), string> _types;

    private DxShape(string command, HashSet<(string, string)> hex, Dictionary<(string, string), string> types)
    {
        Command = command;
        HexFields = hex;
        _types = types;
    }

    public bool IsHex(string parent, string key) => HexFields.Contains((parent, key)) || HexFields.Contains(("*", key));

    public string? PointerType(string parent, string key) =>
        _types.TryGetValue((parent, key), out var t) ? t : _types.TryGetValue(("*", key), out t) ? t : null;

    private static readonly Dictionary<string, DxShape> Cache = new(StringComparer.Ordinal);

    public static DxShape For(string command)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(command, out var s)) return s;
            var hex = new HashSet<(string, string)>();
            if (JsonSchemas.ModelTypes.ContainsKey(command)) Walk(JsonSchemas.For(command), "", "", hex, 0);
            var types = new Dictionary<(string, string), string>();
            if (DxPointerTypes.ByCommand.TryGetValue(command, out var list))
                foreach (var (parents, key, type) in list)
                    foreach (var p in parents.Split('|'))
                        types[(p, key)] = type;
            return Cache[command] = new DxShape(command, hex, types);
        }
    }

    private static void Walk(JsonNode? n, string parent, string key, HashSet<(string, string)> hex, int depth)
    {
        if (n is not JsonObject o || depth > 64) return;
        if (o["pattern"]?.GetValue<string>() == "^0x[0-9a-f]+$") hex.Add((parent, key));
        if (o["properties"] is JsonObject props)
            foreach (var (k, v) in props) Walk(v, key, k, hex, depth + 1);
        if (o["items"] is JsonNode items) Walk(items, parent, key, hex, depth + 1);
        foreach (var alt in new[] { "anyOf", "oneOf", "allOf" })
            if (o[alt] is JsonArray a)
                foreach (var x in a) Walk(x, parent, key, hex, depth + 1);
    }
}

/// <summary>Kernel types of the address fields, per command: (enclosing properties '|'-separated or '*', field, type).
/// Types are resolved by name in the target's symbols when the property is read.</summary>
public static class DxPointerTypes
{
    public static readonly IReadOnlyDictionary<string, (string Parents, string Key, string Type)[]> ByCommand =
        new Dictionary<string, (string, string, string)[]>
        {
            ["alpcchain"] =
            [
                ("waiter|serverThreadState|startThread|blocker|cycleMembers", "address", "nt!_ETHREAD"),
                ("*", "process", "nt!_EPROCESS"), ("*", "ownerProcess", "nt!_EPROCESS"),
                ("*", "serverThread", "nt!_ETHREAD"), ("message", "waitingThread", "nt!_ETHREAD"), ("chains", "waiterThreads", "nt!_ETHREAD"),
                ("*", "alpcMessage", "nt!_KALPC_MESSAGE"), ("message", "address", "nt!_KALPC_MESSAGE"),
                ("queuePort|idlePort", "address", "nt!_ALPC_PORT"), ("message", "ownerPort", "nt!_ALPC_PORT"),
                ("irps", "address", "nt!_IRP"), ("irps", "device", "nt!_DEVICE_OBJECT"), ("irps", "fileObject", "nt!_FILE_OBJECT"),
            ],
            ["nblowners"] = [("miniports", "handle", "ndis!_NDIS_MINIPORT_BLOCK"), ("samples", "nbl", "ndis!_NET_BUFFER_LIST")],
            ["dpcblame"] = [("processors", "prcb", "nt!_KPRCB"), ("queued", "kdpc", "nt!_KDPC")],
            ["frameorder"] =
            [
                ("filters", "address", "fltmgr!_FLT_FILTER"), ("instances", "address", "fltmgr!_FLT_INSTANCE"),
                ("frames", "address", "fltmgr!_FLTP_FRAME"), ("instances", "volume", "fltmgr!_FLT_VOLUME"),
                ("filters", "driverObject", "nt!_DRIVER_OBJECT"), ("stack", "driver", "nt!_DRIVER_OBJECT"), ("stack", "device", "nt!_DEVICE_OBJECT"),
            ],
            ["dhcptimer"] = [("mainThread", "thread", "nt!_ETHREAD")],
            ["workqueue"] =
            [
                ("threads", "address", "nt!_ETHREAD"), ("matchingItems", "address", "nt!_WORK_QUEUE_ITEM"),
                ("matchingItems", "irp", "nt!_IRP"),
            ],
        };
}

/// <summary>The one mapping from a command's -json document to data-model values (no second analysis).</summary>
public static class DxMapping
{
    /// <summary>camelCase JSON name -> PascalCase model name (<c>modules</c> -> <c>Modules</c>).</summary>
    public static string ModelName(string jsonKey) =>
        jsonKey.Length == 0 ? jsonKey : char.ToUpperInvariant(jsonKey[0]) + jsonKey[1..];

    public static DxObject Root(JsonObject document, string command) => new(document, "", DxShape.For(command));

    public static DxValue Map(JsonNode? node, string parent, string key, DxShape shape)
    {
        switch (node)
        {
            case null: return new DxNull();
            case JsonObject o: return new DxObject(o, key, shape);
            case JsonArray a: return new DxArray(a, parent, key, shape);
            case JsonValue v:
                if (v.TryGetValue<string>(out var s))
                {
                    if (shape.IsHex(parent, key) && TryHex(s, out var u)) return new DxAddress(u, shape.PointerType(parent, key));
                    return new DxString(s);
                }
                if (v.TryGetValue<bool>(out var b)) return new DxBool(b);
                if (v.TryGetValue<long>(out var l)) return new DxInteger(l);
                if (v.TryGetValue<ulong>(out var ul)) return new DxUnsigned(ul);
                if (v.TryGetValue<double>(out var d)) return new DxDouble(d);
                // Numbers parsed from text come back as JsonElement.
                if (v.TryGetValue<System.Text.Json.JsonElement>(out var e))
                {
                    switch (e.ValueKind)
                    {
                        case System.Text.Json.JsonValueKind.True: return new DxBool(true);
                        case System.Text.Json.JsonValueKind.False: return new DxBool(false);
                        case System.Text.Json.JsonValueKind.Number:
                            if (e.TryGetInt64(out l)) return new DxInteger(l);
                            if (e.TryGetUInt64(out ul)) return new DxUnsigned(ul);
                            return new DxDouble(e.GetDouble());
                        case System.Text.Json.JsonValueKind.String:
                            s = e.GetString() ?? "";
                            if (shape.IsHex(parent, key) && TryHex(s, out var u2)) return new DxAddress(u2, shape.PointerType(parent, key));
                            return new DxString(s);
                    }
                }
                return new DxString(v.ToJsonString());
            default: return new DxNull();
        }
    }

    private static bool TryHex(string s, out ulong value)
    {
        value = 0;
        return s.StartsWith("0x", StringComparison.Ordinal) && s.Length is > 2 and <= 18
            && ulong.TryParse(s.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }
}
