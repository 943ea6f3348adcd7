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

/// <summary>Declares the options a command accepts. Flags take no value; options take one.</summary>
public sealed class ArgSpec
{
    public HashSet<string> Flags { get; } = new(StringComparer.OrdinalIgnoreCase) { "json", "dml", "text", "?", "h", "help", "v", "stats" };
    public HashSet<string> Options { get; } = new(StringComparer.OrdinalIgnoreCase) { "out" };
    public int MaxPositionals { get; init; } = 1;

    public ArgSpec Flag(params string[] names) { foreach (var n in names) Flags.Add(n); return this; }
    public ArgSpec Option(params string[] names) { foreach (var n in names) Options.Add(n); return this; }
}

/// <summary>Parsed command line: flags, options with values, positionals (expressions kept verbatim).</summary>
public sealed class ParsedArgs
{
    public HashSet<string> Flags { get; } = new(StringComparer.OrdinalIgnoreCase);
    public Dictionary<string, string> Options { get; } = new(StringComparer.OrdinalIgnoreCase);
    public List<string> Positionals { get; } = new();

    public bool Has(string flag) => Flags.Contains(flag);
    public string? Get(string option) => Options.TryGetValue(option, out var v) ? v : null;
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
                    result.Options[name.ToLowerInvariant()] = tokens[++i];
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
