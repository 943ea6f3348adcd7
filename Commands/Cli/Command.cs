using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// One extension command: parse arguments -> analysis producing a result model -> renderer (DML, text, JSON).
/// Implementations are stateless; everything per run lives in <see cref="CommandContext"/>. New commands derive from
/// <see cref="Command"/> (name from Commands/commands.txt, usage from the <see cref="ArgSpec"/>).
/// </summary>
public interface ICommand
{
    /// <summary>Export name, e.g. "alpcchain".</summary>
    string Name { get; }
    /// <summary>One line for !help.</summary>
    string Summary { get; }
    /// <summary>Full usage text printed by -? (and after a usage error).</summary>
    string Usage { get; }
    ArgSpec Spec { get; }
    void Execute(CommandContext ctx);
}

/// <summary>
/// A command declared once: its name is the one Commands/commands.txt lists for its class (<c>AlpcChainCommand</c> ->
/// <c>alpcchain</c>), its options and help are its <see cref="Spec"/>, and <see cref="Usage"/> is generated from that.
/// </summary>
public abstract class Command : ICommand
{
    /// <summary>The listed name of this class (<see cref="CommandRegistry.NameOf"/>).</summary>
    public string Name => CommandRegistry.NameOf(GetType());
    /// <summary>One line for !help.</summary>
    public abstract string Summary { get; }
    /// <summary>Options (typed), positionals and description.</summary>
    public abstract ArgSpec Spec { get; }
    /// <summary>The result model the command passes to <see cref="CommandContext.WriteJson{T}"/>: its -json schema
    /// (<see cref="JsonSchemas"/>) is derived from it, keyed by this command rather than by a name string.</summary>
    public abstract Type ReportType { get; }
    /// <summary>Generated from <see cref="Spec"/>.</summary>
    public string Usage => Spec.Usage(Name);
    public abstract void Execute(CommandContext ctx);
}

/// <summary>Everything a command run needs: the target, a fresh reader (cache, counters), output and parsed args.</summary>
public sealed class CommandContext
{
    public CommandContext(ITarget target, IOutputSink sink, ParsedArgs args, ReadStats? stats = null)
    {
        Target = target;
        Args = args;
        Reader = new KernelReader(target, stats);
        Mode = args.Mode(sink.PrefersDml);
        // -out without -json writes plain text to the file (no DML markup in a file).
        if (Mode == OutputMode.Dml && args.Get("out") is not null) Mode = OutputMode.Text;
        // In -json mode everything the command writes is captured: the dispatcher emits exactly one document
        // (text a command writes becomes its "messages", errors its "warnings"). With -out the text goes to the file.
        Sink = Mode == OutputMode.Json || args.Get("out") is not null ? Capture = new BufferSink(sink.PrefersDml) : sink;
    }

    /// <summary>Set in -json mode and with -out: what the command wrote, for the dispatcher.</summary>
    internal BufferSink? Capture { get; }
    /// <summary>The result model a command passed to <see cref="WriteJson{T}"/> in -json mode.</summary>
    internal object? JsonModel { get; private set; }

    public ITarget Target { get; }
    public IOutputSink Sink { get; }
    public ParsedArgs Args { get; }
    public KernelReader Reader { get; }
    public OutputMode Mode { get; }
    public ReadStats Stats => Reader.Memory.Stats;

    /// <summary>Evaluates an address expression with the debugger's syntax; a usage error when it does not evaluate.</summary>
    public ulong EvaluateAddress(string expression)
    {
        if (Target.TryEvaluate(expression, out var v, out var err)) return v;
        throw new UsageException($"cannot evaluate '{expression}'{(string.IsNullOrEmpty(err) ? "" : ": " + err)}");
    }

    /// <summary>The value of a <see cref="ValueKind.Address"/> option, evaluated like <see cref="EvaluateAddress"/>; null when not given.</summary>
    public ulong? Address(string option) => Args.Get(option) is { } v ? EvaluateAddress(v) : null;

    /// <summary>Renders a document in the run's mode (text or DML) and writes it.</summary>
    public void Write(Doc doc) => Sink.Write(doc.Render(Mode == OutputMode.Dml ? OutputMode.Dml : OutputMode.Text), Mode == OutputMode.Dml);

    /// <summary>Hands the result model to the dispatcher, which writes it as the one JSON document of the run
    /// (schema, version, status and findings added; see docs/json.md).</summary>
    public void WriteJson<T>(T model) where T : notnull => JsonModel = model;

    public bool IsJson => Mode == OutputMode.Json;
}
