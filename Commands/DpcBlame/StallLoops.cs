using Iced.Intel;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.DpcBlame;

/// <summary>
/// Finds a driver spinning at DISPATCH_LEVEL around a return address, by decoding the code there with Iced
/// (<see cref="X64Code"/>): the call that ends at the return address must reach *StallExecutionProcessor, or a counter
/// it polls (KeQueryPerformanceCounter, KeQueryInterruptTimePrecise: a busy wait), either directly (<c>call rel32</c>) or
/// through an import slot (<c>call [rip+disp32]</c> with or without REX.W, <c>call [abs32]</c>); and a <c>jmp</c>/<c>jcc</c>
/// decoded straight on from the return address (up to a <c>ret</c>) must jump back to at or before the call, to an
/// instruction from which the code decodes straight on to the call: a loop around the call. In the loop body the last
/// write of ecx before a stall call, when it is <c>mov ecx, imm</c>, is the stall time in microseconds; a
/// <c>mov reg, imm</c> that sets the loop's counter (the register the back edge tests) just before the loop is the
/// iteration count. The code is read once (0x40 bytes before, 0x30 after the return address).
/// </summary>
/// <param name="memory">The command's memory.</param>
/// <param name="name">An address's name (<c>module!routine+0x..</c>), or null.</param>
/// <param name="trySymbol">A global's address by name (<c>nt!KeStallExecutionProcessor</c>), or null.</param>
public sealed class StallLoops(TargetMemory memory, Func<ulong, string?> name, Func<string, ulong?> trySymbol)
{
    public const int Before = 0x40, After = 0x30;
    /// <summary>Most bytes between the counter's <c>mov reg, imm</c> and the loop start.</summary>
    public const int MaxCounterGap = 7;

    /// <summary>A routine a driver waits with: found by address (nt! on 8+, hal! on 7) or by a name containing
    /// <paramref name="Token"/> (an import slot, an alias the linker folded, hal's own stall routines).</summary>
    private sealed record WaitRoutine(string Routine, string Token, bool Stall);

    private static readonly WaitRoutine[] WaitRoutines =
    [
        new("KeStallExecutionProcessor", "StallExecutionProcessor", Stall: true),
        new("KeQueryPerformanceCounter", "KeQueryPerformanceCounter", Stall: false),
        new("KeQueryInterruptTimePrecise", "KeQueryInterruptTimePrecise", Stall: false),
    ];

    public StallLoopHint? Find(ulong ret)
    {
        if (ret < Before) return null;
        var code = memory.ReadExact(ret - Before, Before + After);
        if (code is null) return null;
        ulong codeIp = ret - Before;
        foreach (var call in X64Code.CallsEndingAt(code, Before, ret))
        {
            ulong target;
            (WaitRoutine W, string Name)? hit = null;
            if (call.IsCallNear)
            {
                target = call.NearBranch64;
                string? tName = name(target);
                foreach (var w in WaitRoutines)
                    if (Match(w, target, tName) is string n) { hit = (w, n); break; }
            }
            else if (call.Op0Kind == OpKind.Memory && call.MemoryIndex == Register.None && call.MemoryBase is Register.RIP or Register.None)
            {
                // Through the import slot: the slot's name (ECHO!_imp_KeStallExecutionProcessor) or its value's.
                ulong slot = call.IsIPRelativeMemoryOperand ? call.IPRelativeMemoryAddress : call.MemoryDisplacement64;
                if (!memory.TryReadPointer(slot, out target)) continue;
                string? slotName = name(slot);
                string? tName = name(target) ?? slotName;
                foreach (var w in WaitRoutines)
                    if (Match(w, target, tName) is not null || Match(w, 0, slotName) is not null) { hit = (w, Match(w, target, tName) ?? tName ?? Fmt.Addr(target)); break; }
            }
            else continue; // call through a register: the target is not in the code
            if (hit is { } h && Loop(code, codeIp, call, target, h.Name, h.W.Stall) is { } loop) return loop;
        }
        return null;
    }

    /// <summary>The routine's name when <paramref name="target"/> is <paramref name="w"/> by name or by address; null otherwise.</summary>
    private string? Match(WaitRoutine w, ulong target, string? targetName)
    {
        if (targetName is not null && targetName.Contains(w.Token, StringComparison.OrdinalIgnoreCase)) return targetName;
        if (target == 0) return null;
        foreach (var module in new[] { "nt", "hal" })
            if (target == trySymbol($"{module}!{w.Routine}")) return $"{module}!{w.Routine}";
        return null;
    }

    private static StallLoopHint? Loop(byte[] code, ulong codeIp, Instruction call, ulong target, string targetName, bool stall)
    {
        int callIdx = (int)(call.IP - codeIp), r = (int)(call.NextIP - codeIp);
        var tail = new List<Instruction>();
        foreach (var jump in X64Code.Run(code, r, code.Length, call.NextIP))
        {
            if (jump.FlowControl is FlowControl.Return or FlowControl.Interrupt or FlowControl.Exception or FlowControl.IndirectBranch) break;
            if (!(jump.IsJmpShortOrNear || jump.IsJccShortOrNear)) { tail.Add(jump); continue; }
            ulong dest = jump.NearBranch64;
            if (dest > call.IP || dest < codeIp) { tail.Add(jump); continue; }   // must jump back to (or before) the call
            int destIdx = (int)(dest - codeIp);
            var body = X64Code.Between(code, destIdx, callIdx, codeIp);
            if (body is null) { tail.Add(jump); continue; }                     // lands inside an instruction: not this stream
            var h = new StallLoopHint { CallSite = call.IP, CallTarget = target, CallTargetName = targetName, JumpAt = jump.IP, JumpTarget = dest };
            for (int k = body.Count - 1; stall && k >= 0; k--)
            {
                if (!X64Code.Writes(body[k], Register.RCX)) continue;
                if (X64Code.MovImmediate(body[k]) is { FullRegister: Register.RCX } us) h.StallMicroseconds = us.Value;
                break;
            }
            // The counter: the register the instruction before a conditional back edge computes its flags from (sub rbx,1 / dec ebx / cmp esi,...).
            Register? counter = jump.IsJccShortOrNear && tail.Count > 0 && tail[^1].Op0Kind == OpKind.Register ? tail[^1].Op0Register.GetFullRegister() : null;
            h.Iterations = Iterations(code, codeIp, destIdx, counter);
            bool pause = body.Concat(tail).Any(i => i.Mnemonic == Mnemonic.Pause);
            h.Text = (stall ? $"the driver calls {targetName} in a loop" : $"the driver polls {targetName} in a loop (a busy wait)")
                     + $": call at {Fmt.Addr(call.IP)}, backward jump at {Fmt.Addr(h.JumpAt)} to {Fmt.Addr(h.JumpTarget)}"
                     + (pause ? ", pause in the loop" : "")
                     + (h.StallMicroseconds is uint us1 ? $", {us1} us per call" : "")
                     + (h.Iterations is uint it ? $", up to {it:N0} iterations" : "")
                     + (h.StallMicroseconds is uint us2 && h.Iterations is uint it2 ? $" (~{us2 * (double)it2 / 1e6:0.##} s at DISPATCH_LEVEL)" : "");
            return h;
        }
        return null;
    }

    /// <summary>
    /// <c>mov reg, imm</c> (not ecx, the stall argument; the counter when known) ending at most <see cref="MaxCounterGap"/>
    /// bytes before the loop start, with the instructions in between decoding straight on to the loop and not writing reg.
    /// </summary>
    private static uint? Iterations(byte[] code, ulong codeIp, int loopStart, Register? counter)
    {
        for (int gap = 0; gap <= MaxCounterGap; gap++)
        {
            int end = loopStart - gap;
            for (int len = 10; len >= 5; len--)
            {
                int start = end - len;
                if (start < 0 || !X64Code.TryDecode(code, start, end, codeIp + (ulong)start, out var mov) || mov.Length != len) continue;
                if (X64Code.MovImmediate(mov) is not { } m || m.FullRegister == Register.RCX) continue;
                if (counter is Register c && m.FullRegister != c) continue;
                var between = X64Code.Between(code, end, loopStart, codeIp);
                if (between is null || between.Any(i => X64Code.Writes(i, m.FullRegister))) continue;
                return m.Value;
            }
        }
        return null;
    }
}
