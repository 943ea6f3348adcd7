using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.DpcBlame;

public sealed class DpcBlameCommand : Command
{
    public override string Summary => "who is burning DPC time: bug check 0x133 triage and per-CPU DPC queues";
    public override Type ReportType => typeof(DpcBlameReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }
        .Value("cpu", "N", ValueKind.Index, "only processor N")
        .Switch("v", "also list the frames the culprit was chosen from (with stack addresses for a stack scan)")
        .Describe("Decodes DPC_WATCHDOG_VIOLATION (0x133), names the driver running in the DPC, shows every",
                  "processor's DPC queue and watchdog counters, and a blame table by module.");

    public override void Execute(CommandContext ctx)
    {
        var result = new DpcBlameAnalyzer(ctx.Reader).Analyze(ctx.Args.Index("cpu"));
        result.Stats = ReadFigures.From(ctx.Stats);
        if (ctx.IsJson) ctx.WriteJson(result);
        else ctx.Write(DpcBlameRenderer.Render(result, ctx.Args.Verbose));
    }
}
