using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Dpc;

public sealed class DpcBlameCommand : ICommand
{
    public string Name => "dpcblame";
    public string Summary => "who is burning DPC time: bug check 0x133 triage and per-CPU DPC queues";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("cpu");
    public string Usage => """
Usage: !dpcblame [-cpu N] [-json]
  Decodes DPC_WATCHDOG_VIOLATION (0x133), names the driver running in the DPC, shows every
  processor's DPC queue and watchdog counters, and a blame table by module.
  -cpu N       only processor N
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        ctx.Sink.WriteError("!dpcblame: not implemented yet\n");
    }
}
