using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.NblOwners;

public sealed class NblOwnersCommand : Command
{
    public override string Summary => "which driver is holding the network's packets (NBL owners)";
    public override Type ReportType => typeof(NblOwnersReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }
        .Value("owner", "handle", ValueKind.Address, "list the NBLs held by that owner handle")
        .Value("pool", "pool", ValueKind.Address, "only that NBL pool")
        .Switch("v", "the offsets used (from ndis!ndisGlobalTriageBlock or the ndis types)")
        .Describe("Walks every NBL pool, counts allocated / freed / pending NBLs and groups the pending ones by",
                  "current owner (miniport, filter, protocol) with a verdict. Needs TrackNblOwner for owners.",
                  "Links: !ndiskd.nbl, !ndiskd.nblpool, !ndiskd.miniport, dt ndis!_NET_BUFFER_LIST.");

    public override void Execute(CommandContext ctx)
    {
        ulong? owner = ctx.Address("owner");
        ulong? pool = ctx.Address("pool");
        NblOwnersReport report;
        report = new NblOwnersAnalyzer(ctx.Reader, owner, pool).Analyze();
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(NblOwnersRenderer.Render(report, ctx.Args.Verbose));
    }
}
