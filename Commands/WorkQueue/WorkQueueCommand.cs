using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.WorkQueue;

public sealed class WorkQueueCommand : Command
{
    public override string Summary => "system work queues: pending items by routine and driver, workers and where they are blocked";
    public override Type ReportType => typeof(WorkQueueReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }
        .Value("routine", "sym", ValueKind.Text,
               "list the pending items that run <sym> (mpio!MPIOPathVerify, MPIOPathVerify, mpio! for a module,\n" +
               "or an address), with their position in the backlog (at most 200 listed; -json has the same)")
        .Switch("v", "every frame of every worker group, every routine group")
        .Describe("Counts every pending item of every system work queue (Windows 7: nt!ExWorkerQueue Critical/Delayed/HyperCritical;",
                  "8.1+: per NUMA node and pool, by priority; 1809+: through nt!PspSystemPartition), cross-checked with the queue's own",
                  "count; groups items by routine (IO_WORKITEMs by their real routine and driver); shows each queue's workers (static,",
                  "dynamic, maximum) folded by identical stacks, and says when a queue is starved.");

    public override void Execute(CommandContext ctx)
    {
        string? routine = ctx.Args.Get("routine");
        ulong? routineAddress = null;
        if (routine is not null)
        {
            if (routine.Length == 0) throw new UsageException("-routine needs a symbol or an address");
            // An address or a full symbol evaluates; a bare function name or "module!" is matched by name.
            if (!routine.EndsWith('!') && ctx.Target.TryEvaluate(routine, out var a, out _) && a != 0) routineAddress = a;
        }
        var report = new WorkQueueAnalyzer(ctx.Reader).Analyze(routine, routineAddress);
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(WorkQueueRenderer.Render(report, ctx.Args.Verbose));
    }
}
