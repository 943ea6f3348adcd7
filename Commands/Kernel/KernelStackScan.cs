using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Kernel;

/// <summary>One frame found on a waiting thread's kernel stack: a return address inside a loaded module.</summary>
public sealed record ScannedFrame(ulong ReturnAddress, ulong StackAddress, string Name, string Module);

/// <summary>The frames of one thread's kernel stack (innermost first), or why there are none.</summary>
public sealed class ScannedStack
{
    public List<ScannedFrame> Frames { get; } = new();
    /// <summary>Why the scan found nothing or stopped early (unreadable stack page, no saved stack pointer, ...).</summary>
    public string? Note { get; set; }

    /// <summary>The frames as one key (names with displacement, innermost first): identical stacks have equal keys.</summary>
    public string Key => string.Join("|", Frames.Select(f => f.Name));
}

/// <summary>
/// A waiting thread's kernel stack the way an engineer reads it with <c>dps</c> when <c>k</c> cannot unwind (forged or
/// unwind-less modules): <see cref="ReturnAddressStackScan"/> from the saved stack pointer (<c>_KTHREAD.KernelStack</c>)
/// to the top of the stack (<c>_KTHREAD.InitialStack</c>, at most <see cref="MaxStackBytes"/>, one bulk read), keeping
/// the values that follow a call instruction (one small read per candidate, cached: identical stacks of many workers
/// cost the code bytes once). Names from <see cref="Symbolizer"/>: <c>module!routine+0x..</c>, else <c>module+0x..</c>.
/// </summary>
public sealed class KernelStackScan(KernelReader reader, Symbolizer symbols)
{
    /// <summary>At most this many bytes of stack are read per thread (a kernel stack is 24-72 KB; the used part is small).</summary>
    public const int MaxStackBytes = 0x3000;
    public const int MaxFrames = 24;

    private readonly Dictionary<ulong, string> _names = new();

    public Symbolizer Symbols => symbols;

    /// <summary>The best name of a code address, cached: <c>module!routine+0x..</c>, <c>module+0x..</c>, or the address.</summary>
    public string NameOf(ulong address)
    {
        if (!_names.TryGetValue(address, out var n)) _names[address] = n = symbols.Describe(address) ?? Fmt.Addr(address);
        return n;
    }

    /// <summary>Scans the stack between a thread's saved stack pointer and its initial stack (both read with the thread).</summary>
    public ScannedStack Scan(ulong kernelStack, ulong initialStack)
    {
        var res = new ScannedStack();
        if (kernelStack == 0 || initialStack == 0 || initialStack <= kernelStack)
        {
            res.Note = $"no saved kernel stack pointer (KernelStack {Fmt.Addr(kernelStack)}, InitialStack {Fmt.Addr(initialStack)})";
            return res;
        }
        int ps = reader.PointerSize;
        ulong start = kernelStack & ~(ulong)(ps - 1);
        int length = (int)Math.Min(initialStack - start, MaxStackBytes);
        int slots = 0;
        try
        {
            foreach (var slot in ReturnAddressStackScan.Scan(reader, symbols, start, length))
            {
                slots++;
                if (!FollowsCall(slot.Value)) continue;
                var m = symbols.ModuleOf(slot.Value)!;
                res.Frames.Add(new ScannedFrame(slot.Value, slot.SlotAddress, NameOf(slot.Value), KernelModules.ShortName(m.Name)));
                if (res.Frames.Count >= MaxFrames) break;
            }
        }
        catch (OperationCanceledException) { res.Note = "interrupted by user while reading the stack"; return res; }
        if (reader.Memory.IsInterruptRequested) res.Note = "interrupted by user while reading the stack";
        else if (res.Frames.Count == 0)
            res.Note = reader.Memory.ReadExact(start, ps) is null
                ? $"kernel stack {Fmt.Addr(start)}..{Fmt.Addr(start + (ulong)length)} not readable (paged out or not in the dump)"
                : $"no return address found on the stack ({slots} value(s) inside modules, none after a call instruction)";
        return res;
    }

    /// <summary>How many bytes before a return address are decoded: the longest near call the check needs
    /// (<c>REX.W FF 15 disp32</c>, <c>FF 94 24 disp32</c>, <c>41 FF 90 disp32</c>); one small read per candidate.</summary>
    public const int CallWindow = 7;

    /// <summary>True when an instruction decoded from the bytes before <paramref name="ret"/> is a near call that ends there.</summary>
    public bool FollowsCall(ulong ret) => FollowsCall(reader.Memory, ret);

    /// <summary>
    /// The same check on any command's memory (also <c>!dpcblame</c>'s stack scan): the <see cref="CallWindow"/> bytes
    /// before <paramref name="ret"/> are decoded (<see cref="X64Code.CallsEndingAt"/>): <c>call rel32</c>,
    /// <c>call [rip+disp32]</c> with or without REX.W, <c>call reg</c>, <c>call [reg(+disp)]</c>, SIB forms.
    /// </summary>
    public static bool FollowsCall(TargetMemory memory, ulong ret)
    {
        if (ret < CallWindow) return false;
        var b = memory.ReadExact(ret - CallWindow, CallWindow);
        return b is not null && X64Code.CallsEndingAt(b, CallWindow, ret, CallWindow).Any();
    }
}
