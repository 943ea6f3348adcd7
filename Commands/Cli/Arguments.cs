using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Cli;

/// <summary>Bad arguments: the message is printed with the command's usage.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The command cannot run on this target (wrong kind of target, module not loaded, ...): one clear line, no usage.</summary>
public sealed class CommandFailedException(string message) : Exception(message);

/// <summary>
/// The command does not apply to this target (its module is not loaded: no NDIS, no filter manager): not an error,
/// nothing to report. Text: one line; JSON: status "notApplicable".
/// </summary>
public sealed class CommandNotApplicableException(string message) : Exception(message);

/// <summary>What an option's value is: the parser checks it, the usage names it.</summary>
public enum ValueKind
{
    /// <summary>Free text (a name, a list).</summary>
    Text,
    /// <summary>An address in the debugger's expression syntax (evaluated by the engine: <see cref="CommandContext.Address"/>).</summary>
    Address,
    /// <summary>A positive count, decimal or 0x hex, at most 100000 (<see cref="ParsedArgs.Count"/>).</summary>
    Count,
    /// <summary>A number from 0 (a processor, an index), decimal or 0x hex (<see cref="ParsedArgs.Index"/>).</summary>
    Index,
}

/// <summary>One documented option: <c>-name</c> (a switch when <see cref="ValueName"/> is null) or <c>-name &lt;value&gt;</c>.</summary>
public sealed record OptionSpec(string Name, string? ValueName, ValueKind Kind, string Help)
{
    public bool IsSwitch => ValueName is null;
    /// <summary>How the usage spells it: <c>-all</c>, <c>-p &lt;proc&gt;</c>.</summary>
    public string Syntax => IsSwitch ? "-" + Name : $"-{Name} <{ValueName}>";
}

/// <summary>
/// Declares what a command accepts, and documents it: switches, options with typed values, positionals and a
/// description. The usage text (<see cref="Usage"/>) is generated from this declaration. Common options
/// (-json, -out, -dml, -text, -v, -stats, -?) are accepted by every command.
/// </summary>
public sealed class ArgSpec
{
    public HashSet<string> Flags { get; } = new(StringComparer.OrdinalIgnoreCase) { "json", "dml", "text", "?", "h", "help", "v", "stats" };
    public HashSet<string> Options { get; } = new(StringComparer.OrdinalIgnoreCase) { "out" };
    public int MaxPositionals { get; init; } = 1;

    /// <summary>The documented options, in the order the usage lists them.</summary>
    public List<OptionSpec> Documented { get; } = new();
    /// <summary>The documented positionals: (name as &lt;name&gt;, help).</summary>
    public List<(string Name, string Help)> PositionalHelp { get; } = new();
    /// <summary>Free text after the option list (what the command does, links it prints).</summary>
    public List<string> Description { get; } = new();

    /// <summary>Undocumented switches (prefer <see cref="Switch"/>).</summary>
    public ArgSpec Flag(params string[] names) { foreach (var n in names) Flags.Add(n); return this; }
    /// <summary>Undocumented text options (prefer <see cref="Value"/>).</summary>
    public ArgSpec Option(params string[] names) { foreach (var n in names) Options.Add(n); return this; }

    /// <summary>A documented switch <c>-name</c>.</summary>
    public ArgSpec Switch(string name, string help)
    {
        Flags.Add(name);
        Documented.Add(new OptionSpec(name, null, ValueKind.Text, help));
        return this;
    }

    /// <summary>A documented option <c>-name &lt;valueName&gt;</c> whose value the parser checks as <paramref name="kind"/>.</summary>
    public ArgSpec Value(string name, string valueName, ValueKind kind, string help)
    {
        Options.Add(name);
        Documented.Add(new OptionSpec(name, valueName, kind, help));
        return this;
    }

    /// <summary>A documented positional argument &lt;name&gt; (optional unless the command says otherwise).</summary>
    public ArgSpec Positional(string name, string help) { PositionalHelp.Add((name, help)); return this; }

    /// <summary>Lines of description printed after the options.</summary>
    public ArgSpec Describe(params string[] lines) { Description.AddRange(lines); return this; }

    /// <summary>The kind of option <paramref name="name"/>'s value (Text when undocumented).</summary>
    public ValueKind KindOf(string name) => Documented.FirstOrDefault(o => o.Name.Equals(name, StringComparison.OrdinalIgnoreCase))?.Kind ?? ValueKind.Text;

    /// <summary>
    /// The usage text: a synopsis line built from the declaration, one line per positional and option (help wrapped
    /// under its column), the common options, then the description.
    /// </summary>
    public string Usage(string command)
    {
        const int Col = 15;
        var sb = new System.Text.StringBuilder();
        sb.Append("Usage: !").Append(command);
        foreach (var (name, _) in PositionalHelp) sb.Append(" [<").Append(name).Append(">]");
        foreach (var o in Documented.Where(o => o.Name != "v")) sb.Append(" [").Append(o.Syntax).Append(']');
        sb.Append(" [-json] [-v]\n");
        void Row(string left, string help)
        {
            string pad = new(' ', Col);
            var lines = help.Split('\n');
            string head = "  " + left;
            sb.Append(head.Length < Col ? head.PadRight(Col) : head + "\n" + pad).Append(lines[0]).Append('\n');
            foreach (var l in lines.Skip(1)) sb.Append(pad).Append(l).Append('\n');
        }
        foreach (var (name, help) in PositionalHelp) Row($"<{name}>", help);
        foreach (var o in Documented) Row(o.Syntax, o.Help);
        sb.Append("  common: -json one JSON document, -out <file>, -dml | -text, -v verbose, -stats reads, -? this text\n");
        foreach (var l in Description) sb.Append("  ").Append(l).Append('\n');
        sb.Append('\n');
        return sb.ToString();
    }
}

/// <summary>Parsed command line: flags, options with values, positionals (expressions kept verbatim).</summary>
public sealed class ParsedArgs
{
    public HashSet<string> Flags { get; } = new(StringComparer.OrdinalIgnoreCase);
    public Dictionary<string, string> Options { get; } = new(StringComparer.OrdinalIgnoreCase);
    public List<string> Positionals { get; } = new();

    public bool Has(string flag) => Flags.Contains(flag);
    /// <summary>The value of a text option, or null when not given.</summary>
    public string? Get(string option) => Options.TryGetValue(option, out var v) ? v : null;
    /// <summary>The value of a <see cref="ValueKind.Count"/> option (checked by the parser), or null when not given.</summary>
    public int? Count(string option) => Get(option) is { } v ? ParseCount(v) : null;

    /// <summary>A positive count, decimal or 0x hex, at most 100000; null otherwise.</summary>
    public static int? ParseCount(string s)
    {
        bool hex = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return int.TryParse(hex ? s[2..] : s, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None, null, out int n)
               && n is >= 1 and <= 100000 ? n : null;
    }
    /// <summary>The value of a <see cref="ValueKind.Index"/> option (checked by the parser), or null when not given.</summary>
    public int? Index(string option) => Get(option) is { } v ? ParseIndex(v) : null;

    /// <summary>A number from 0 to int.MaxValue, decimal or 0x hex (no sign, no spaces); null otherwise.</summary>
    public static int? ParseIndex(string s)
    {
        bool hex = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return int.TryParse(hex ? s[2..] : s, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None, null, out int n) ? n : null;
    }

    public bool WantsHelp => Has("?") || Has("h") || Has("help");
    public bool Verbose => Has("v");

    public OutputMode Mode(bool enginePrefersDml) =>
        Has("json") ? OutputMode.Json : Has("dml") ? OutputMode.Dml : Has("text") ? OutputMode.Text : enginePrefersDml ? OutputMode.Dml : OutputMode.Text;

    /// <summary>
    /// Splits like the debugger: whitespace separates, double quotes group, "-x" or "/x" is an option.
    /// A token such as "-1" or "/x" that is not a declared name but looks numeric stays positional.
    /// </summary>
    public static ParsedArgs Parse(string? commandLine, ArgSpec spec)
    {
        var result = new ParsedArgs();
        var tokens = Tokenize(commandLine ?? "");
        for (int i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (t.Length > 1 && (t[0] == '-' || t[0] == '/') && !t.StartsWith("--", StringComparison.Ordinal))
            {
                var name = t[1..];
                if (spec.Flags.Contains(name)) { result.Flags.Add(name.ToLowerInvariant()); continue; }
                if (spec.Options.Contains(name))
                {
                    if (i + 1 >= tokens.Count) throw new UsageException($"option {t} needs a value");
                    string value = tokens[++i];
                    if (spec.KindOf(name) == ValueKind.Count && ParseCount(value) is null)
                        throw new UsageException($"-{name.ToLowerInvariant()} needs a positive count, not '{value}'");
                    if (spec.KindOf(name) == ValueKind.Index && ParseIndex(value) is null)
                        throw new UsageException($"-{name.ToLowerInvariant()} needs a number from 0 (decimal or 0x hex), not '{value}'");
                    result.Options[name.ToLowerInvariant()] = value;
                    continue;
                }
                if (t[0] == '-' && !char.IsAsciiDigit(name[0]))
                    throw new UsageException($"unknown option '{t}'");
                if (t[0] == '/' ) throw new UsageException($"unknown option '{t}'");
            }
            result.Positionals.Add(t);
        }
        if (result.Positionals.Count > spec.MaxPositionals && !result.WantsHelp)
            throw new UsageException(spec.MaxPositionals == 0
                ? $"unexpected argument '{result.Positionals[0]}'"
                : $"too many arguments: '{string.Join(' ', result.Positionals)}'");
        return result;
    }

    /// <summary>
    /// What a command line asks for output before it is parsed (a line that does not parse still gets its error as a
    /// JSON document when it says -json, written to the -out file when it names one). Never throws.
    /// </summary>
    public static (bool Json, string? Out) PeekOutput(string? commandLine)
    {
        List<string> tokens;
        try { tokens = Tokenize(commandLine ?? ""); }
        catch (UsageException) { tokens = (commandLine ?? "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToList(); }
        bool json = false; string? outFile = null;
        for (int i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            if (t.Length < 2 || (t[0] != '-' && t[0] != '/')) continue;
            var name = t[1..];
            if (name.Equals("json", StringComparison.OrdinalIgnoreCase)) json = true;
            else if (name.Equals("out", StringComparison.OrdinalIgnoreCase) && i + 1 < tokens.Count) outFile = tokens[++i];
        }
        return (json, outFile);
    }

    internal static List<string> Tokenize(string s)
    {
        var list = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) break;
            var sb = new System.Text.StringBuilder();
            bool quoted = false;
            while (i < s.Length && (quoted || !char.IsWhiteSpace(s[i])))
            {
                if (s[i] == '"') { quoted = !quoted; i++; continue; }
                sb.Append(s[i++]);
            }
            if (quoted) throw new UsageException("unterminated quote");
            list.Add(sb.ToString());
        }
        return list;
    }
}
