using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.AlpcChain;

public sealed class AlpcChainCommand : Command
{
    public override string Summary => "follow an ALPC wait chain across processes to the thread that really blocks it";
    public override Type ReportType => typeof(AlpcChainReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 1 }
        .Positional("thread", "_ETHREAD address (debugger expression syntax, e.g. fffffa80`73d3d770)")
        .Value("p", "proc", ValueKind.Address, "every thread of that _EPROCESS that waits for an ALPC reply")
        .Switch("all", "every ALPC-waiting thread in the system, merged into chains")
        .Value("wqitems", "n", ValueKind.Text, "items examined at the head of a starved work queue (default 1000; 0 = the queue's own count only)")
        .Switch("v", "all fields")
        .Describe("Give one of <thread>, -p or -all. Follows waiter -> ALPC message -> port owner -> server thread",
                  "hop by hop to the blocker, and prints the blocker's wait objects and IRPs. When the blocker waits in",
                  "kernel mode on I/O (or is a system worker) and a system work queue is starved, the chain goes on into it:",
                  "the backlog, the items of the blocker's drivers, and where the queue's workers are blocked.");

    public override void Execute(CommandContext ctx)
    {
        int wq = AlpcChainAnalyzer.DefaultWorkQueueItems;
        if (ctx.Args.Get("wqitems") is { } wqs && (!int.TryParse(wqs, out wq) || wq < 0 || wq > 1_000_000))
            throw new UsageException($"-wqitems takes a number of items from 0 to 1000000, not '{wqs}'");
        var analyzer = new AlpcChainAnalyzer(ctx.Reader, wq);
        AlpcChainReport report;
        if (ctx.Args.Has("all"))
        {
            if (ctx.Args.Positionals.Count > 0 || ctx.Args.Get("p") is not null) throw new UsageException("-all takes no thread or process");
            report = analyzer.AnalyzeAll();
        }
        else if (ctx.Args.Get("p") is not null)
        {
            if (ctx.Args.Positionals.Count > 0) throw new UsageException("give either -p <process> or a thread, not both");
            report = analyzer.AnalyzeProcess(ctx.Address("p")!.Value);
        }
        else
        {
            if (ctx.Args.Positionals.Count == 0) throw new UsageException("give a thread address, -p <process> or -all");
            report = analyzer.AnalyzeThread(ctx.EvaluateAddress(ctx.Args.Positionals[0]));
        }
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(AlpcChainRenderer.Render(report, ctx.Args.Verbose));
    }
}
