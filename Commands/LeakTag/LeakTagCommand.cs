using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.LeakTag;

public sealed class LeakTagCommand : Command
{
    public override string Summary => "pool consumers by tag, and the drivers and code that use a tag";
    public override Type ReportType => typeof(LeakTagReport);
    public override ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 1 }
        .Positional("Tag", "one tag (up to 4 characters, ? and * wildcards): counters, pooltag.txt description,\n" +
                           "modules containing the tag bytes, big-pool allocations, verifier entries, PoolHitTag")
        .Value("n", "N", ValueKind.Count, "without a tag: the top N pool consumers by bytes from the pool tracker table(s) (default 10)")
        .Switch("nonpaged", "without a tag: sort by nonpaged bytes")
        .Switch("paged", "without a tag: sort by paged bytes")
        .Switch("live", "with a tag, on a live target: suggest PoolHitTag and unique-tag edits as links");

    /// <summary>Test hook: descriptions to use instead of locating pooltag.txt.</summary>
    public static PoolTagDescriptions? DescriptionsOverride { get; set; }

    public override void Execute(CommandContext ctx)
    {
        var o = ParseOptions(ctx.Args);
        var result = new LeakTagAnalyzer(ctx.Reader).Analyze(o);
        result.Stats = ReadFigures.From(ctx.Stats);
        if (ctx.IsJson) ctx.WriteJson(result);
        else ctx.Write(LeakTagRenderer.Render(result));
    }

    public static LeakTagOptions ParseOptions(ParsedArgs a)
    {
        if (a.Has("nonpaged") && a.Has("paged")) throw new UsageException("-nonpaged and -paged exclude each other");
        if (a.Get("n") is { } ns && ParsedArgs.ParseCount(ns) is null) throw new UsageException($"-n needs a positive count, not '{ns}'");
        int n = a.Count("n") ?? 10;
        PoolTagPattern? tag = a.Positionals.Count > 0 ? PoolTagPattern.Parse(a.Positionals[0]) : null;
        if (tag is null && a.Has("live")) throw new UsageException("-live needs a tag");
        return new LeakTagOptions
        {
            Tag = tag, TopN = n, Live = a.Has("live"),
            Sort = a.Has("nonpaged") ? PoolSort.NonPaged : a.Has("paged") ? PoolSort.Paged : PoolSort.Total,
            Descriptions = DescriptionsOverride ?? PoolTagDescriptions.Locate(),
        };
    }
}
