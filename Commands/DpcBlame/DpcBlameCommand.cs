using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.DpcBlame;

public sealed class DpcBlameCommand : ICommand
{
    public string Name => "dpcblame";
    public string Summary => "who is burning DPC time: bug check 0x133 triage and per-CPU DPC queues";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("cpu");
    public string Usage => """
Usage: !dpcblame [-cpu N] [-v] [-json]
  Decodes DPC_WATCHDOG_VIOLATION (0x133), names the driver running in the DPC, shows every
  processor's DPC queue and watchdog counters, and a blame table by module.
  -cpu N       only processor N
  -v           also list the frames the culprit was chosen from (with stack addresses for a stack scan)
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        int? cpu = null;
        if (ctx.Args.Get("cpu") is { } cs)
        {
            bool hex = cs.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
            if (!int.TryParse(hex ? cs[2..] : cs, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None, null, out var c))
                throw new UsageException($"-cpu needs a processor number, not '{cs}'");
            cpu = c;
        }
        var result = new DpcBlameAnalyzer(ctx.Reader).Analyze(cpu);
        result.Stats = ReadFigures.From(ctx.Stats);
        if (ctx.IsJson) ctx.WriteJson(result);
        else ctx.Write(DpcBlameRenderer.Render(result, ctx.Args.Verbose));
    }
}
