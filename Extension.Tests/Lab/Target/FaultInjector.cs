namespace NtSleuth.Lab.Target;

/// <summary>The kinds of fault the lab can inject (for tests that iterate over all of them).</summary>
public enum FaultKind { PagedOut, Truncated, ListCycle, ListWildPointer, ListSelfLoop, ListNull, Garbage, Interrupt }

/// <summary>
/// Fault injection for an <see cref="InMemoryTarget"/>: unreadable (paged-out) ranges, truncated structures, corrupted
/// list links (cycle, wild pointer, self-loop, NULL), garbage in any field and Ctrl+Break after N reads.
/// Link corruption writes the scenario memory; unreadable ranges are a target property (the bytes stay in memory).
/// </summary>
public sealed class FaultInjector(InMemoryTarget target, SparseMemory memory)
{
    /// <summary>A default wild pointer: canonical kernel address that is never mapped by the lab.</summary>
    public const ulong WildAddress = 0xffffdead_beef0000;

    /// <summary>Makes the pages covering [address, address+length) unreadable, as if paged out / absent from the dump.</summary>
    public FaultInjector PageOut(ulong address, ulong length = 1)
    {
        ulong start = SparseMemory.PageOf(address);
        ulong end = SparseMemory.PageOf(address + Math.Max(length, 1) - 1) + SparseMemory.PageSize;
        target.MakeUnreadable(start, end - start);
        return this;
    }

    /// <summary>Truncated memory: only the first <paramref name="keepBytes"/> of the object at <paramref name="address"/> are readable
    /// (the rest of <paramref name="length"/>) - a partial read, like a dump that ends mid-structure.</summary>
    public FaultInjector Truncate(ulong address, ulong keepBytes, ulong length)
    {
        if (keepBytes < length) target.MakeUnreadable(address + keepBytes, length - keepBytes);
        return this;
    }

    /// <summary>Points entry.Flink (a LIST_ENTRY address) at an earlier entry, creating a cycle that does not return to the head.</summary>
    public FaultInjector ListCycle(ulong entry, ulong backTo) { memory.WriteU64(entry, backTo); return this; }

    /// <summary>entry.Flink = an unmapped address.</summary>
    public FaultInjector ListWildPointer(ulong entry, ulong wild = WildAddress) { memory.WriteU64(entry, wild); return this; }

    /// <summary>entry.Flink = entry.</summary>
    public FaultInjector ListSelfLoop(ulong entry) { memory.WriteU64(entry, entry); return this; }

    /// <summary>entry.Flink = NULL.</summary>
    public FaultInjector ListNull(ulong entry) { memory.WriteU64(entry, 0); return this; }

    /// <summary>Deterministic garbage over [address, address+length).</summary>
    public FaultInjector Garbage(ulong address, int length, int seed = 7)
    {
        var b = new byte[length];
        var r = new Random(seed);
        r.NextBytes(b);
        memory.Write(address, b);
        return this;
    }

    /// <summary>Ctrl+Break after <paramref name="reads"/> more ReadVirtual calls.</summary>
    public FaultInjector InterruptAfter(long reads)
    {
        target.InterruptAfterReads = target.ReadCalls + reads;
        return this;
    }
}
