namespace NtSleuth.Commands.WorkQueue;

/// <summary>!workqueue's result: every system work queue of the build, its pending items and its workers
/// (<see cref="Kernel.WorkQueueScan"/>, read by <see cref="Kernel.SystemWorkQueues"/>).</summary>
public sealed class WorkQueueReport : Kernel.WorkQueueScan
{
}
