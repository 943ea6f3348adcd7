using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.LeakTag;

public sealed class LeakTagCommand : ICommand
{
    public string Name => "leaktag";
    public string Summary => "pool consumers by tag, and the drivers and code that use a tag";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 1 }.Flag("nonpaged", "paged", "live").Option("n");
    public string Usage => """
Usage: !leaktag [-n N] [-nonpaged | -paged] [-json]
       !leaktag <Tag> [-live] [-json]
  (no tag)     top pool consumers by bytes from the pool tracker table(s) (default top 10)
  <Tag>        one tag (up to 4 characters, ? and * wildcards): counters, pooltag.txt description,
               modules containing the tag bytes, big-pool allocations, verifier entries, PoolHitTag
  -live        on a live target, suggest PoolHitTag and unique-tag edits as links
""" + "\n";

    /// <summary>Test hook: descriptions to use instead of locating pooltag.txt.</summary>
    public static PoolTagDescriptions? DescriptionsOverride { get; set; }

    public void Execute(CommandContext ctx)
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
        int n = 10;
        if (a.Get("n") is { } ns)
        {
            bool hex = ns.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
            if (!int.TryParse(hex ? ns[2..] : ns, hex ? System.Globalization.NumberStyles.HexNumber : System.Globalization.NumberStyles.None, null, out n) || n < 1 || n > 100000)
                throw new UsageException($"-n needs a positive count, not '{ns}'");
        }
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
