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
  -v           the offsets used (from ndis!ndisGlobalTriageBlock or the ndis types)
  Links: !ndiskd.nbl, !ndiskd.nblpool, !ndiskd.miniport, dt ndis!_NET_BUFFER_LIST.
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        ulong? owner = ctx.Args.Get("owner") is { } o ? ctx.EvaluateAddress(o) : null;
        ulong? pool = ctx.Args.Get("pool") is { } p ? ctx.EvaluateAddress(p) : null;
        NblOwnersReport report;
        try { report = new NblAnalyzer(ctx.Reader, owner, pool).Analyze(); }
        catch (NdisUnavailableException e) { throw new CommandNotApplicableException(e.Message); }
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(NblRenderer.Render(report, ctx.Args.Verbose));
    }
}
