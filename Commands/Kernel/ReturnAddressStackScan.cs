using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>One pointer-sized stack slot whose value points into a loaded module (a return address candidate, as dps shows it).</summary>
public sealed record StackSlot(ulong SlotAddress, ulong Value);

/// <summary>
/// Scans a stack range for return addresses when the engine cannot unwind (no unwind data): every pointer-sized
/// slot whose value lies inside a loaded module, innermost first, like <c>dps</c>. The range is read in bulk; by
/// default an unreadable page is skipped (its slots yield nothing), with <c>stopAtUnreadable</c> the scan ends at the
/// first unreadable byte (one read for a stack that ends in a guard page). A caller that needs more certainty filters further (e.g.
/// "follows a call instruction").
/// </summary>
public static class ReturnAddressStackScan
{
    /// <summary>Candidates in [<paramref name="start"/>, start + <paramref name="length"/>), lowest address first; stops on Ctrl+Break.</summary>
    public static IEnumerable<StackSlot> Scan(KernelReader r, Symbolizer symbols, ulong start, int length, bool stopAtUnreadable = false)
    {
        byte[] data;
        int readable;
        if (stopAtUnreadable) { data = new byte[length]; readable = r.Memory.Read(start, data); }
        else { data = r.Memory.ReadBulk(start, length).Data; readable = length; }
        int ps = r.PointerSize;
        for (int off = 0; off + ps <= readable; off += ps)
        {
            if (r.Memory.IsInterruptRequested) yield break;
            ulong v = r.PointerAt(data, off);
            if (v < 0x10000 || symbols.ModuleOf(v) is null) continue;
            yield return new StackSlot(start + (ulong)off, v);
        }
    }
}
