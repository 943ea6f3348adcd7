using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Pool;

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

    public void Execute(CommandContext ctx)
    {
        ctx.Sink.WriteError("!leaktag: not implemented yet\n");
    }
}
