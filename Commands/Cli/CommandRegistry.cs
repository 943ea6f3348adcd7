using System.Text;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// The commands ntsleuth.dll exports. Their names come from Commands/commands.txt (<see cref="ExportedNames"/> is
/// generated from it, as are the shim's exports); each command is a class <c>&lt;Name&gt;Command</c> found here by reflection.
/// </summary>
public static partial class CommandRegistry
{
    private static readonly List<ICommand> _commands = new();

    static CommandRegistry()
    {
        foreach (var t in typeof(CommandRegistry).Assembly.GetTypes())
        {
            if (t.IsClass && !t.IsAbstract && typeof(ICommand).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
                _commands.Add((ICommand)Activator.CreateInstance(t)!);
        }
        _commands.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
    }

    public static IReadOnlyList<ICommand> All => _commands;

    /// <summary>
    /// The listed name of a command class: its type name without "Command", as Commands/commands.txt spells it
    /// (compared ignoring case); the lowercased type name when not listed (<see cref="Problems"/> reports it).
    /// </summary>
    public static string NameOf(Type commandType)
    {
        string n = commandType.Name.EndsWith("Command", StringComparison.Ordinal) ? commandType.Name[..^"Command".Length] : commandType.Name;
        return ExportedNames.FirstOrDefault(e => e.Equals(n, StringComparison.OrdinalIgnoreCase)) ?? n.ToLowerInvariant();
    }

    /// <summary>
    /// Where the list and the classes disagree: a listed name with no command class, a command class whose name is not
    /// listed, two classes with one name. Empty when the command surface is consistent (checked by a unit test).
    /// </summary>
    public static IReadOnlyList<string> Problems()
    {
        var p = new List<string>();
        foreach (var n in ExportedNames)
            if (Find(n) is null) p.Add($"'{n}' is listed in Commands/commands.txt but no ICommand class has that name");
        foreach (var c in _commands)
            if (!ExportedNames.Contains(c.Name, StringComparer.Ordinal)) p.Add($"{c.GetType().FullName} ('{c.Name}') is not listed in Commands/commands.txt");
        foreach (var g in _commands.GroupBy(c => c.Name, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
            p.Add($"'{g.Key}' is the name of {g.Count()} classes: {string.Join(", ", g.Select(c => c.GetType().Name))}");
        return p;
    }

    public static ICommand? Find(string name) =>
        _commands.FirstOrDefault(c => string.Equals(c.Name, name, StringComparison.OrdinalIgnoreCase));

    public static string HelpText()
    {
        var sb = new StringBuilder();
        sb.Append("NtSleuthExt - kernel triage commands (").Append(typeof(CommandRegistry).Assembly.GetName().Version).Append(")\n\n");
        foreach (var n in ExportedNames)
        {
            var c = Find(n);
            if (c is null) continue;
            sb.Append("  !").Append(c.Name.PadRight(12)).Append(c.Summary).Append('\n');
        }
        sb.Append("  !help        this list\n\n");
        sb.Append("Common options: -? usage, -json one JSON document (docs/json.md), -out <file> write the output to a file, -dml / -text force the output mode, -v verbose, -stats round trips, KD packets and bytes read.\n");
        return sb.ToString();
    }
}
