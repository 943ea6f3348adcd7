using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// One extension command: parse arguments -> analysis producing a result model -> renderer (DML, text, JSON).
/// Implementations are stateless; everything per run lives in <see cref="CommandContext"/>.
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

/// <summary>Everything a command run needs: the target, a fresh reader (cache, counters), output and parsed args.</summary>
public sealed class CommandContext
{
    public CommandContext(ITarget target, IOutputSink sink, ParsedArgs args, ReadStats? stats = null)
    {
        Target = target;
        Sink = sink;
        Args = args;
        Reader = new KernelReader(target, stats);
        Mode = args.Mode(sink.PrefersDml);
    }

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

    /// <summary>Renders a document in the run's mode (text or DML) and writes it.</summary>
    public void Write(Doc doc) => Sink.Write(doc.Render(Mode == OutputMode.Dml ? OutputMode.Dml : OutputMode.Text), Mode == OutputMode.Dml);

    public void WriteJson<T>(T model) => Sink.Write(JsonOut.Serialize(model) + "\n", false);

    public bool IsJson => Mode == OutputMode.Json;
}
