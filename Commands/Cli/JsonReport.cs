using System.Text.Json;
using System.Text.Json.Nodes;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// The one JSON document a command writes in -json mode, whatever the outcome (docs/json.md): an envelope
/// (<c>schema</c>, <c>version</c>, <c>tool</c>, <c>command</c>, <c>arguments</c>, <c>status</c>, <c>severity</c>,
/// <c>findings</c>, <c>error</c>) followed by the command's result model's fields (ok) and what the command wrote
/// besides (<c>messages</c>, <c>warnings</c>) and <c>readStats</c> (-stats).
/// </summary>
public static class JsonReport
{
    /// <summary>Bumped when a field changes meaning or is removed (adding fields keeps the version).</summary>
    public const int Version = 1;

    /// <summary>Envelope fields; a result model must not use these names (JsonReportTests checks every model).</summary>
    public static readonly string[] EnvelopeFields =
        ["schema", "version", "tool", "command", "arguments", "status", "severity", "findings", "error", "usage", "messages", "warnings", "readStats", "outFileError"];

    public static string SchemaName(string command) => "ntsleuth." + command.ToLowerInvariant();

    public static string Tool => typeof(JsonReport).Assembly.GetName().Version?.ToString() ?? "0";

    private static JsonObject Envelope(string command, string? arguments, string status)
    {
        var o = new JsonObject
        {
            ["schema"] = SchemaName(command),
            ["version"] = Version,
            ["tool"] = Tool,
            ["command"] = command.ToLowerInvariant(),
            ["arguments"] = (arguments ?? "").Trim(),
            ["status"] = status,
        };
        return o;
    }

    /// <summary>A command's result: envelope, findings and severity, then the model's own fields.</summary>
    public static JsonObject Ok(string command, string? arguments, object model, BufferSink? captured, ReadStats? stats)
    {
        var o = Envelope(command, arguments, "ok");
        var findings = Findings.Of(command, model);
        o["severity"] = findings.Count == 0 ? "none" : Findings.Name(findings.Max(f => f.Severity));
        var arr = new JsonArray();
        foreach (var f in findings)
            arr.Add(new JsonObject { ["id"] = f.Id, ["severity"] = Findings.Name(f.Severity), ["title"] = f.Title, ["detail"] = f.Detail });
        o["findings"] = arr;
        var body = JsonSerializer.SerializeToNode(model, model.GetType(), JsonOut.Options) as JsonObject
                   ?? throw new InvalidOperationException($"the {command} result is not a JSON object");
        foreach (var (k, v) in body.ToList())
        {
            if (o.ContainsKey(k)) throw new InvalidOperationException($"the {command} result has a field named like an envelope field: '{k}'");
            body.Remove(k);
            o[k] = v;
        }
        Extras(o, captured, stats);
        return o;
    }

    /// <summary>An outcome without a result: usage error, not applicable, failure, interruption, internal error.</summary>
    public static JsonObject Failure(string command, string? arguments, string status, string kind, string message,
                                     string? usage = null, BufferSink? captured = null, ReadStats? stats = null)
    {
        var o = Envelope(command, arguments, status);
        o["severity"] = "none";
        o["findings"] = new JsonArray();
        o["error"] = new JsonObject { ["kind"] = kind, ["message"] = message.TrimEnd() };
        if (usage is not null) o["usage"] = usage;
        Extras(o, captured, stats);
        return o;
    }

    private static void Extras(JsonObject o, BufferSink? captured, ReadStats? stats)
    {
        if (captured is not null)
        {
            if (Lines(captured.Text) is { Count: > 0 } m) o["messages"] = m;
            if (Lines(captured.Errors) is { Count: > 0 } w) o["warnings"] = w;
        }
        if (stats is not null)
            o["readStats"] = new JsonObject
            {
                ["roundTrips"] = stats.RoundTrips, ["bytes"] = stats.Bytes, ["searches"] = stats.Searches,
                ["cacheHits"] = stats.CacheHits, ["modelledKdnetSeconds"] = Math.Round(stats.ModelledKdnetSeconds, 6),
            };
    }

    private static JsonArray Lines(string text)
    {
        var a = new JsonArray();
        foreach (var l in text.Replace("\r", "").Split('\n'))
            if (l.Trim().Length > 0) a.Add(l.TrimEnd());
        return a;
    }

    public static string Serialize(JsonObject o) => o.ToJsonString(JsonOut.Options) + "\n";
}
