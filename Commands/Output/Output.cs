using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NtSleuth.Commands.Output;

public enum OutputMode { Text, Dml, Json }

/// <summary>Where a command's rendered output goes (IDebugControl::Output / ControlledOutput, a test buffer, ...).</summary>
public interface IOutputSink
{
    /// <summary>Writes normal output. <paramref name="isDml"/> marks text that contains DML markup.</summary>
    void Write(string text, bool isDml);
    /// <summary>Writes an error / warning line (DEBUG_OUTPUT_ERROR / WARNING).</summary>
    void WriteError(string text);
    /// <summary>True when the engine prefers DML (DEBUG_ENGOPT_PREFER_DML).</summary>
    bool PrefersDml { get; }
}

/// <summary>Collects output in memory (tests, JSON capture).</summary>
public sealed class BufferSink(bool prefersDml = false) : IOutputSink
{
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();
    public bool PrefersDml { get; } = prefersDml;
    public void Write(string text, bool isDml) => _out.Append(text);
    public void WriteError(string text) => _err.Append(text);
    public string Text => _out.ToString();
    public string Errors => _err.ToString();
    public string All => _out.ToString() + _err.ToString();
}

/// <summary>
/// A document of text and links, rendered either as plain text or as DML. All text that may come from the
/// target goes through <see cref="Text"/> / <see cref="Link"/> and is escaped for DML, so a dump can never
/// inject markup or an &lt;exec&gt;.
/// </summary>
public sealed class Doc
{
    private readonly List<Seg> _segs = new();
    private readonly record struct Seg(string Text, string? Command, string? Style);

    public Doc Text(string? text) { if (!string.IsNullOrEmpty(text)) _segs.Add(new Seg(text, null, null)); return this; }
    public Doc Line(string? text = null) { Text(text); _segs.Add(new Seg("\n", null, null)); return this; }
    /// <summary>
    /// A clickable command link in DML; plain text otherwise. A command that could run more than one command (a ';',
    /// a line break or another control character, an unbalanced quote: see <see cref="DmlCommand.IsSingle"/>) is never
    /// made a link: the text is shown without one. Values read from the target go through
    /// <see cref="Link(string, string, string?)"/>.
    /// </summary>
    public Doc Link(string text, string command)
    {
        _segs.Add(new Seg(text, DmlCommand.IsSingle(command) ? command : null, null));
        return this;
    }
    /// <summary>
    /// A link whose command is <paramref name="command"/> followed by one argument taken from the target (a pool tag, a
    /// module name): the argument is quoted as the debugger's command line needs (<see cref="DmlCommand.Arg"/>); a value
    /// that cannot be one safe argument (a ';', a quote, a control character, markup) gives plain text, no link.
    /// </summary>
    public Doc Link(string text, string command, string? targetValue) =>
        DmlCommand.Arg(targetValue) is { } arg ? Link(text, command + arg) : Text(text);
    /// <summary>Bold/emphasis in DML (e.g. verdicts, warnings); plain text otherwise.</summary>
    public Doc Bold(string text) { _segs.Add(new Seg(text, null, "b")); return this; }
    /// <summary>Address link: shows the address as the debugger prints it (with the ` separator) and runs <paramref name="command"/>.</summary>
    public Doc Addr(ulong address, string command) => Link(Fmt.Addr(address), command);

    public string Render(OutputMode mode)
    {
        var sb = new StringBuilder();
        foreach (var s in _segs)
        {
            if (mode != OutputMode.Dml) { sb.Append(s.Text); continue; }
            if (s.Command is not null)
                sb.Append("<exec cmd=\"").Append(Dml.Escape(s.Command)).Append("\">").Append(Dml.Escape(s.Text)).Append("</exec>");
            else if (s.Style is not null)
                sb.Append('<').Append(s.Style).Append('>').Append(Dml.Escape(s.Text)).Append("</").Append(s.Style).Append('>');
            else sb.Append(Dml.Escape(s.Text));
        }
        return sb.ToString();
    }
}

/// <summary>
/// The one place that decides what may stand in a DML link's command: exactly one debugger command, whatever the
/// target's memory holds. The engine splits a command line at ';' (outside quotes for some commands, everywhere for
/// others), so a target value with a ';' could chain a second command (".shell ..."); a '"' could end our quoting.
/// </summary>
public static class DmlCommand
{
    /// <summary>True when <paramref name="command"/> is one command: no ';', no control character, balanced quotes, no
    /// '&lt;' or '&gt;' (never needed by our commands; keeps the attribute free of anything markup-like).</summary>
    public static bool IsSingle(string? command)
    {
        if (string.IsNullOrWhiteSpace(command)) return false;
        int quotes = 0;
        foreach (char c in command)
        {
            if (c is ';' or '<' or '>' || char.IsControl(c) || c > 0x7e) return false;
            if (c == '"') quotes++;
        }
        return quotes % 2 == 0;
    }

    /// <summary>
    /// <paramref name="value"/> as one argument of a debugger command: as is when it is made of letters, digits and
    /// <c>_ . - + ! @ $ ? * ` # :</c>; in double quotes when it also has spaces (a pool tag such as "Io  "); null when it
    /// holds anything else (';', '"', '&lt;', '&amp;', '|', control or non-ASCII characters), so the caller shows it
    /// without a link.
    /// </summary>
    public static string? Arg(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 260) return null;
        bool space = false;
        foreach (char c in value)
        {
            if (c == ' ') { space = true; continue; }
            if (char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-' or '+' or '!' or '@' or '$' or '?' or '*' or '`' or '#' or ':') continue;
            return null;
        }
        if (!space) return value;
        return value.Trim().Length == 0 ? null : "\"" + value + "\"";
    }
}

public static class Dml
{
    /// <summary>Escapes &amp; &lt; &gt; &quot; (and drops control characters other than tab/newline) for DML.</summary>
    public static string Escape(string s)
    {
        var sb = new StringBuilder(s.Length + 8);
        foreach (char c in s)
        {
            switch (c)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&quot;"); break;
                default:
                    if (c < 0x20 && c != '\n' && c != '\t') sb.Append('?');
                    else sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }
}

public static class Fmt
{
    /// <summary>64-bit address as the debugger prints it: fffffa80`73d3d770.</summary>
    public static string Addr(ulong a) => $"{a >> 32:x8}`{a & 0xffffffff:x8}";
    /// <summary>h:mm:ss (hours unbounded), as !thread prints wait times.</summary>
    public static string Duration(TimeSpan t)
    {
        if (t < TimeSpan.Zero) t = t.Negate();
        return $"{(long)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}";
    }
    /// <summary>Makes a target string safe for a single output line (control characters shown as '?').</summary>
    public static string Clean(string? s) => s is null ? "" : new string(s.Select(c => c < 0x20 ? '?' : c).ToArray());
}

public static class JsonOut
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        NumberHandling = JsonNumberHandling.Strict,
    };

    public static string Serialize<T>(T model) => JsonSerializer.Serialize(model, Options);
}

/// <summary>Writes a ulong as a "0x..." hex string (JSON numbers above 2^53 lose precision in most consumers).</summary>
public sealed class HexConverter : JsonConverter<ulong>
{
    public override ulong Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number) return reader.GetUInt64();
        var s = reader.GetString() ?? "0";
        return Convert.ToUInt64(s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? s[2..] : s, 16);
    }
    public override void Write(Utf8JsonWriter writer, ulong value, JsonSerializerOptions options) => writer.WriteStringValue("0x" + value.ToString("x"));
}

/// <summary>ulong? as "0x.." or null.</summary>
public sealed class NullableHexConverter : JsonConverter<ulong?>
{
    private static readonly HexConverter Inner = new();
    public override ulong? Read(ref System.Text.Json.Utf8JsonReader reader, Type t, System.Text.Json.JsonSerializerOptions o) =>
        reader.TokenType == System.Text.Json.JsonTokenType.Null ? null : Inner.Read(ref reader, typeof(ulong), o);
    public override void Write(System.Text.Json.Utf8JsonWriter writer, ulong? value, System.Text.Json.JsonSerializerOptions o)
    {
        if (value is null) writer.WriteNullValue(); else Inner.Write(writer, value.Value, o);
    }
}

/// <summary>A list of ulong as ["0x..", ...].</summary>
public sealed class HexListConverter : JsonConverter<List<ulong>>
{
    public override List<ulong> Read(ref System.Text.Json.Utf8JsonReader reader, Type t, System.Text.Json.JsonSerializerOptions o)
    {
        var list = new List<ulong>();
        var hc = new HexConverter();
        while (reader.Read() && reader.TokenType != System.Text.Json.JsonTokenType.EndArray)
            if (reader.TokenType != System.Text.Json.JsonTokenType.StartArray) list.Add(hc.Read(ref reader, typeof(ulong), o));
        return list;
    }
    public override void Write(System.Text.Json.Utf8JsonWriter writer, List<ulong> value, System.Text.Json.JsonSerializerOptions o)
    {
        writer.WriteStartArray();
        foreach (var v in value) writer.WriteStringValue("0x" + v.ToString("x"));
        writer.WriteEndArray();
    }
}
