using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.DhcpTimer;

public sealed class DhcpTimerCommand : Command
{
    public override string Summary => "DHCP client lease timers and the 32-bit wait overflow";
    public override Type ReportType => typeof(DhcpTimerReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }
        .Value("lease", "seconds | d.hh:mm:ss", ValueKind.Text, "no target needed: T1 (50%), T2 (87.5%), the millisecond waits and 32-bit overflow")
        .Switch("v", "field offsets in the context and the main thread's frames")
        .Describe("On the svchost.exe hosting the DHCP client (dhcpcore.dll), dump or live: for each adapter context in",
                  "dhcpcore!DhcpGlobalNICList the lease obtained, T1, T2, expiry and RunTime (next action) as dates and",
                  "relative to now, a verdict (pending / renewal missed / expired), and the millisecond wait checked",
                  "against 32 bits (INFINITE = 0xFFFFFFFF); and whether the main thread waits in",
                  "ProcessDhcpRequestForever -> WaitForMultipleObjectsEx, with its timeout when recoverable.",
                  "The context layout is private: the lease block is found by its structure, not by offsets.");

    public override void Execute(CommandContext ctx)
    {
        if (ctx.Args.Get("lease") is { } lease)
        {
            var calc = LeaseMath.Calculate(LeaseMath.ParseLeaseSeconds(lease));
            if (ctx.IsJson) ctx.WriteJson(new DhcpTimerReport { Lease = calc });
            else ctx.Write(DhcpTimerRenderer.RenderLease(calc));
            return;
        }
        var report = new DhcpTimerAnalyzer(ctx).Analyze();
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(DhcpTimerRenderer.Render(report, ctx.Args.Verbose));
    }
}
