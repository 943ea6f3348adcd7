using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// The kernel's interrupt-time tick clock, to turn a KTHREAD.WaitTime (the tick count when the wait began) into a
/// duration: the current tick count from KUSER_SHARED_DATA (TickCountQuad / TickCount / TickCountLow, whichever the
/// build has) and the tick length from nt!KeMaximumIncrement (100 ns units), else from TickCountMultiplier.
/// Read once per run (<see cref="Read"/>); a missing piece leaves <see cref="IsKnown"/> false with a note.
/// </summary>
public sealed class KernelClock
{
    /// <summary>Low 32 bits of the current tick count (0 when unknown).</summary>
    public uint CurrentTick { get; private set; }
    /// <summary>Length of one tick in 100 ns units (0 when unknown).</summary>
    public uint TickIncrement { get; private set; }
    /// <summary>Where <see cref="TickIncrement"/> came from ("nt!KeMaximumIncrement" or "KUSER_SHARED_DATA.TickCountMultiplier").</summary>
    public string TickSource { get; private set; } = "";
    /// <summary>Both the current tick and the tick length are known: durations can be computed.</summary>
    public bool IsKnown => TickIncrement != 0 && CurrentTick != 0;

    /// <summary>KUSER_SHARED_DATA's fixed kernel address for the target's pointer size.</summary>
    public static ulong SharedDataAddress(int pointerSize) => pointerSize == 8 ? 0xfffff78000000000UL : 0xffdf0000UL;

    /// <summary>Reads the clock (two small requests); what is missing goes to <paramref name="notes"/>.</summary>
    public static KernelClock Read(KernelReader r, ICollection<string> notes)
    {
        var c = new KernelClock();
        var inc = r.Types.TrySymbol("nt!KeMaximumIncrement");
        if (inc is not null && r.Memory.TryReadU32(inc.Value, out var v) && v != 0) { c.TickIncrement = v; c.TickSource = "nt!KeMaximumIncrement"; }
        var usd = r.Types.TryGet("nt", "_KUSER_SHARED_DATA");
        if (usd is null) { notes.Add("nt!_KUSER_SHARED_DATA is not in the symbols: wait times cannot be computed"); return c; }
        try
        {
            string f = usd.HasField("TickCountQuad") ? "TickCountQuad" : usd.HasField("TickCount") ? "TickCount.LowPart" : "TickCountLow";
            var sv = r.ReadFields("nt", "_KUSER_SHARED_DATA", SharedDataAddress(r.PointerSize), f, "TickCountMultiplier");
            c.CurrentTick = (uint)sv.UInt(f);
            if (c.TickIncrement == 0)
            {
                uint mult = sv.U32("TickCountMultiplier");
                c.TickIncrement = (uint)(((ulong)mult * 10000) >> 24);
                c.TickSource = "KUSER_SHARED_DATA.TickCountMultiplier";
            }
        }
        catch (TargetReadException ex) { notes.Add($"KUSER_SHARED_DATA not readable ({ex.Message}): wait times cannot be computed"); }
        catch (MissingSymbolException ex) { notes.Add($"{ex.Message}: wait times cannot be computed"); }
        return c;
    }

    /// <summary>Ticks elapsed since <paramref name="tick"/> (wraps like the kernel's 32-bit tick count).</summary>
    public uint TicksSince(uint tick) => unchecked(CurrentTick - tick);

    /// <summary>Seconds elapsed since <paramref name="tick"/>, rounded to ms; null when the clock is unknown.</summary>
    public double? SecondsSince(uint tick) => IsKnown ? Math.Round(TicksSince(tick) * (double)TickIncrement / 1e7, 3) : null;
}
