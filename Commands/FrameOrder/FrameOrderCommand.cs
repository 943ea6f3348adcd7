using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.FrameOrder;

public sealed class FrameOrderCommand : Command
{
    public override string Summary => "file-system filter stack: fltmgr frames, legacy filters, altitude disorder";
    public override Type ReportType => typeof(FrameOrderReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }
        .Value("volume", "name|addr", ValueKind.Text, "one volume: its device name (\\Device\\HarddiskVolume2 or HarddiskVolume2) or a\n_FLT_VOLUME / device object address")
        .Value("legacy", "Name=altitude[,...]", ValueKind.Text,
            "legacy filter altitudes as fltmc shows them on the machine (overrides what the dump gives).\n" +
            "Without it, a legacy filter's altitude is computed as fltmgr does: its service's load-order\n" +
            "group (Group value in the SYSTEM hive in memory) looked up in fltmgr's legacy altitude table;\n" +
            "else the fltmgr frame boundaries; else the group's documented altitude range")
        .Describe("Shows each volume's filter stack bottom to top (fltmgr frames with their minifilters and the",
                  "legacy filters between frames), a fltmc-style table, and every altitude out of order with a fix.",
                  "Links: !fltkd.frame, !fltkd.filter, !devobj, !drvobj, dt fltmgr!_FLTP_FRAME.");

    public override void Execute(CommandContext ctx)
    {
        var legacy = FrameOrderAnalyzer.ParseLegacy(ctx.Args.Get("legacy"));
        FrameOrderReport report;
        report = new FrameOrderAnalyzer(ctx.Reader, ctx.Args.Get("volume"), legacy, new RegistryGroupSource(ctx.Reader)).Analyze();
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(FrameOrderRenderer.Render(report));
    }
}
