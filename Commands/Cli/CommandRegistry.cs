using System.Text;

namespace NtSleuth.Commands.Cli;

/// <summary>The commands ntsleuth.dll exports. The native shim has one export per entry (Native/ntsleuth.def).</summary>
public static class CommandRegistry
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

    /// <summary>The exported command names, in the order !help lists them.</summary>
    public static readonly string[] ExportedNames = ["alpcchain", "leaktag", "dpcblame", "nblowners", "frameorder", "dhcptimer", "workqueue"];

    public static IReadOnlyList<ICommand> All => _commands;

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
