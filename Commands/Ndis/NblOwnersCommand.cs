using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Ndis;

public sealed class NblOwnersCommand : ICommand
{
    public string Name => "nblowners";
    public string Summary => "which driver is holding the network's packets (NBL owners)";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("owner", "pool");
    public string Usage => """
Usage: !nblowners [-owner <handle>] [-pool <pool>] [-json]
  Walks every NBL pool, counts allocated / freed / pending NBLs and groups the pending ones by
  current owner (miniport, filter, protocol) with a verdict. Needs TrackNblOwner for owners.
  -owner <h>   list the NBLs held by that owner handle
  -pool <p>    only that NBL pool
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        ctx.Sink.WriteError("!nblowners: not implemented yet\n");
    }
}
