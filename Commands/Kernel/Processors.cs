using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>nt!KiProcessorBlock as read: one PRCB address per processor (0 where the table is not readable).</summary>
/// <param name="Prcbs">PRCB address of processor i (0 when its entry is NULL or beyond <paramref name="Readable"/>).</param>
/// <param name="Readable">How many leading entries of the table were readable.</param>
public sealed record ProcessorBlock(IReadOnlyList<ulong> Prcbs, int Readable)
{
    public int Count => Prcbs.Count;
    /// <summary>Why entries are missing, or null when the whole table was read.</summary>
    public string? Note => Readable < Count ? $"nt!KiProcessorBlock is readable for {Readable} of {Count} processors" : null;
}

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

    /// <summary>
    /// Every processor's PRCB from nt!KiProcessorBlock (<see cref="Count"/> entries, one read). A missing
    /// KiProcessorBlock symbol is a <see cref="Symbols.MissingSymbolException"/>; an unreadable table gives zeros and a note.
    /// </summary>
    public static ProcessorBlock Block(KernelReader r)
    {
        ulong kpb = r.Types.Symbol("nt!KiProcessorBlock");
        int n = Count(r);
        int ps = r.PointerSize;
        var buf = new byte[n * ps];
        int got = r.Memory.Read(kpb, buf) / ps;
        var prcbs = new ulong[n];
        for (int i = 0; i < got; i++) prcbs[i] = r.PointerAt(buf, i * ps);
        return new ProcessorBlock(prcbs, got);
    }
}
