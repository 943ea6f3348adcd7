using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Fltmgr;

public sealed class FrameOrderCommand : ICommand
{
    public string Name => "frameorder";
    public string Summary => "file-system filter stack: fltmgr frames, legacy filters, altitude disorder";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("volume");
    public string Usage => """
Usage: !frameorder [-volume <name|addr>] [-json]
  Shows each volume's filter stack bottom to top (fltmgr frames with their minifilters and the
  legacy filters between frames), a fltmc-style table, and every altitude out of order with a fix.
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        ctx.Sink.WriteError("!frameorder: not implemented yet\n");
    }
}
