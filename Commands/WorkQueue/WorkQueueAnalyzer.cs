using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.WorkQueue;

/// <summary>!workqueue: every item of every system work queue (<see cref="SystemWorkQueues"/> without an item limit).</summary>
public sealed class WorkQueueAnalyzer(KernelReader reader)
{
    public WorkQueueReport Analyze(string? routine = null, ulong? routineAddress = null) =>
        new SystemWorkQueues(reader).Read(new WorkQueueReport(), routine, routineAddress);
}
