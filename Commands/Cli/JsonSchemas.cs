using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// The JSON Schema (draft 2020-12) of each command's -json document: the envelope of <see cref="JsonReport"/> plus the
/// result model's fields, derived from the model types with the serializer's own options, so the schema cannot
/// drift from what is written. docs/schema/*.json are these schemas (regenerated with
/// <c>dotnet run --project Extension.Tests/Lab -- json-schemas docs/schema</c>; a test fails when they differ).
/// </summary>
public static class JsonSchemas
{
    /// <summary>
    /// Command name -> the result model it passes to WriteJson, from the commands themselves (<see cref="Command.ReportType"/>,
    /// names from Commands/commands.txt): a command renamed or added cannot lose or miss its schema, and no name string
    /// is written here.
    /// </summary>
    public static IReadOnlyDictionary<string, Type> ModelTypes { get; } =
        CommandRegistry.ExportedNames.Select(CommandRegistry.Find).OfType<Command>().ToDictionary(c => c.Name, c => c.ReportType);

    private static readonly string[] Severities = ["info", "warning", "error", "critical"];
    public static readonly string[] Statuses = ["ok", "notApplicable", "usageError", "error", "interrupted", "internalError", "help"];

    /// <summary>The schema of a command's -json document, by its listed name (an unknown name is an <see cref="ArgumentException"/>).</summary>
    public static JsonObject For(string command) =>
        For(CommandRegistry.Find(command) as Command ?? throw new ArgumentException($"no command '{command}' with a -json report", nameof(command)));

    /// <summary>The schema of <paramref name="command"/>'s -json document: the envelope plus its <see cref="Command.ReportType"/>.</summary>
    public static JsonObject For(Command command) => For(command.Name, command.ReportType);

    private static JsonObject For(string command, Type reportType)
    {
        var model = (JsonObject)JsonSchemaExporter.GetJsonSchemaAsNode(new JsonSerializerOptions(JsonOut.Options) { TypeInfoResolver = new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver() }, reportType, new JsonSchemaExporterOptions
        {
            TransformSchemaNode = (ctx, node) =>
            {
                // Addresses and other 64-bit values are written as "0x..." strings by the hex converters.
                var conv = ctx.PropertyInfo?.CustomConverter;
                if (conv is HexConverter) return new JsonObject { ["type"] = "string", ["pattern"] = "^0x[0-9a-f]+$" };
                if (conv is NullableHexConverter) return new JsonObject { ["type"] = new JsonArray("string", "null"), ["pattern"] = "^0x[0-9a-f]+$" };
                if (conv is HexListConverter) return new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string", ["pattern"] = "^0x[0-9a-f]+$" } };
                return node;
            },
        });
        var props = new JsonObject
        {
            ["schema"] = new JsonObject { ["const"] = JsonReport.SchemaName(command), ["description"] = "names the document kind: ntsleuth.<command>" },
            ["version"] = new JsonObject { ["const"] = JsonReport.Version, ["description"] = "schema version; bumped when a field changes meaning or is removed" },
            ["tool"] = new JsonObject { ["type"] = "string", ["description"] = "ntsleuth version that wrote the document" },
            ["command"] = new JsonObject { ["const"] = command },
            ["arguments"] = new JsonObject { ["type"] = "string", ["description"] = "the command line after the command name" },
            ["status"] = new JsonObject { ["enum"] = new JsonArray(Statuses.Select(s => (JsonNode)s!).ToArray()) },
            ["severity"] = new JsonObject { ["enum"] = new JsonArray(Severities.Prepend("none").Select(s => (JsonNode)s!).ToArray()), ["description"] = "the highest finding severity, or none" },
            ["findings"] = new JsonObject
            {
                ["type"] = "array",
                ["items"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["id"] = new JsonObject { ["type"] = "string" },
                        ["severity"] = new JsonObject { ["enum"] = new JsonArray(Severities.Select(s => (JsonNode)s!).ToArray()) },
                        ["title"] = new JsonObject { ["type"] = "string" },
                        ["detail"] = new JsonObject { ["type"] = "string", ["description"] = "JSON pointer (RFC 6901) into this document" },
                    },
                    ["required"] = new JsonArray("id", "severity", "title", "detail"),
                    ["additionalProperties"] = false,
                },
            },
            ["error"] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["kind"] = new JsonObject { ["enum"] = new JsonArray("usage", "unknownCommand", "help", "notApplicable", "failed", "missingSymbol", "targetRead", "interrupted", "internal", "noResult") },
                    ["message"] = new JsonObject { ["type"] = "string" },
                },
                ["required"] = new JsonArray("kind", "message"),
                ["additionalProperties"] = false,
            },
            ["usage"] = new JsonObject { ["type"] = "string" },
            ["messages"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" }, ["description"] = "text the command wrote besides the result" },
            ["warnings"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" }, ["description"] = "warning/error lines the command wrote" },
            ["readStats"] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["roundTrips"] = new JsonObject { ["type"] = "integer" }, ["bytes"] = new JsonObject { ["type"] = "integer" },
                    ["searches"] = new JsonObject { ["type"] = "integer" }, ["cacheHits"] = new JsonObject { ["type"] = "integer" },
                    ["modelledKdnetSeconds"] = new JsonObject { ["type"] = "number" },
                },
                ["additionalProperties"] = false,
            },
            ["outFileError"] = new JsonObject { ["type"] = "string" },
        };
        foreach (var (k, v) in ((JsonObject)model["properties"]!).ToList())
        {
            ((JsonObject)model["properties"]!).Remove(k);
            props[k] = v;
        }
        var schema = new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["$id"] = $"https://ntsleuth.local/schema/{JsonReport.SchemaName(command)}.v{JsonReport.Version}.json",
            ["title"] = $"!{command} -json (version {JsonReport.Version})",
            ["type"] = "object",
            ["properties"] = props,
            ["required"] = new JsonArray("schema", "version", "tool", "command", "arguments", "status", "severity", "findings"),
            ["additionalProperties"] = false,
        };
        return schema;
    }

    public static string Text(string command) =>
        For(command).ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JsonOut.Options.Encoder }) + "\n";
}
