using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Fltmgr;

public sealed class FrameOrderCommand : ICommand
{
    public string Name => "frameorder";
    public string Summary => "file-system filter stack: fltmgr frames, legacy filters, altitude disorder";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("volume", "legacy");
    public string Usage => """
Usage: !frameorder [-volume <name|addr>] [-legacy Name=altitude[,...]] [-json]
  Shows each volume's filter stack bottom to top (fltmgr frames with their minifilters and the
  legacy filters between frames), a fltmc-style table, and every altitude out of order with a fix.
  -volume <v>  one volume: its device name (\Device\HarddiskVolume2 or HarddiskVolume2) or a _FLT_VOLUME /
               device object address
  -legacy      legacy filter altitudes as fltmc shows them on the machine (overrides what the dump gives).
               Without it, a legacy filter's altitude is computed as fltmgr does: its service's load-order
               group (Group value in the SYSTEM hive in memory) looked up in fltmgr's legacy altitude table;
               else the fltmgr frame boundaries; else the group's documented altitude range
  Links: !fltkd.frame, !fltkd.filter, !devobj, !drvobj, dt fltmgr!_FLTP_FRAME.
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        var legacy = FrameAnalyzer.ParseLegacy(ctx.Args.Get("legacy"));
        FrameOrderReport report;
        try { report = new FrameAnalyzer(ctx.Reader, ctx.Args.Get("volume"), legacy, new RegistryGroupSource(ctx.Reader)).Analyze(); }
        catch (FltmgrUnavailableException e) { throw new CommandNotApplicableException(e.Message); }
        if (ctx.IsJson) ctx.WriteJson(report);
        else ctx.Write(FrameRenderer.Render(report));
    }
}
