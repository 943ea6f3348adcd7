using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>The processors of the target.</summary>
public static class Processors
{
    /// <summary>Upper bound the commands accept for a processor count.</summary>
    public const int MaxProcessors = 2048;

    /// <summary>
    /// The number of processors: the larger of what the engine reports and nt!KeNumberProcessors (a dump's header
    /// may say 1), at least 1 and at most <see cref="MaxProcessors"/>.
    /// </summary>
    public static int Count(KernelReader r)
    {
        int n = Math.Max(1, r.Target.Info.ProcessorCount);
        var kn = r.Types.TrySymbol("nt!KeNumberProcessors");
        if (kn is not null && r.Memory.TryReadU32(kn.Value, out var v) && v is > 0 and <= MaxProcessors) n = Math.Max(n, (int)v);
        return Math.Min(n, MaxProcessors);
    }
}
