using NtSleuth.Commands.DpcBlame;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// The x86-64 decoding behind the stack scans' call check (<see cref="KernelStackScan.FollowsCall(TargetMemory, ulong)"/>)
/// and <c>!dpcblame</c>'s stall-loop detection (<see cref="StallLoops"/>), on real instruction encodings: the forms the
/// former byte patterns (E8 at -5, FF 15 at -6, FF D0+r at -2, FF 50+r at -3) missed or took wrongly, and results that
/// only a working decoder produces (targets, lengths, registers).
/// </summary>
[TestFixture]
public class X64CodeTests
{
    private const ulong Code = 0xfffff880_01000000;

    /// <summary>A target with one page of int3 at <see cref="Code"/> and <paramref name="bytes"/> ending at Code + 0x100 (the return address).</summary>
    private static (TargetMemory Memory, ulong Ret) CodeEndingAtReturn(byte[] bytes)
    {
        var mem = new SparseMemory();
        mem.Map(Code, 0x1000);
        mem.Write(Code, Enumerable.Repeat((byte)0xcc, 0x1000).ToArray());
        ulong ret = Code + 0x100;
        mem.Write(ret - (ulong)bytes.Length, bytes);
        var t = new InMemoryTarget(mem, new IsfSymbolProvider(), new TargetInfo { Kind = TargetKind.Kernel }, [new ModuleInfo("drv", Code, 0x1000)]);
        return (new TargetMemory(t), ret);
    }

    // Calls the old byte patterns recognised too (they must stay recognised).
    [TestCase(new byte[] { 0xe8, 0x10, 0x20, 0x00, 0x00 }, "call rel32")]
    [TestCase(new byte[] { 0xff, 0x15, 0xf7, 0x0b, 0x00, 0x00 }, "call qword ptr [rip+0bf7h] (import slot)")]
    [TestCase(new byte[] { 0x48, 0xff, 0x15, 0x31, 0x2a, 0x00, 0x00 }, "REX.W call qword ptr [rip+x] (CFG-era import call)")]
    [TestCase(new byte[] { 0xff, 0xd0 }, "call rax")]
    [TestCase(new byte[] { 0x41, 0xff, 0xd3 }, "call r11 (REX.B)")]
    [TestCase(new byte[] { 0xff, 0x50, 0x08 }, "call qword ptr [rax+8]")]
    // Calls the byte patterns missed.
    [TestCase(new byte[] { 0xff, 0x10 }, "call qword ptr [rax]")]
    [TestCase(new byte[] { 0x41, 0xff, 0x13 }, "call qword ptr [r11] (REX.B)")]
    [TestCase(new byte[] { 0xff, 0x54, 0x24, 0x08 }, "call qword ptr [rsp+8] (ff /2, SIB, disp8)")]
    [TestCase(new byte[] { 0x41, 0xff, 0x54, 0x24, 0x20 }, "call qword ptr [r12+20h] (REX.B, SIB)")]
    [TestCase(new byte[] { 0xff, 0x94, 0x24, 0x80, 0x00, 0x00, 0x00 }, "call qword ptr [rsp+80h] (ff /2, SIB, disp32)")]
    [TestCase(new byte[] { 0xff, 0x14, 0xc5, 0x00, 0x10, 0x00, 0x00 }, "call qword ptr [rax*8+1000h] (SIB, no base)")]
    [TestCase(new byte[] { 0xff, 0x90, 0x38, 0x01, 0x00, 0x00 }, "call qword ptr [rax+138h] (disp32)")]
    [TestCase(new byte[] { 0x41, 0xff, 0x90, 0x38, 0x01, 0x00, 0x00 }, "call qword ptr [r8+138h] (REX.B, disp32)")]
    public void A_call_ending_at_the_return_address_is_recognised(byte[] call, string what)
    {
        var (m, ret) = CodeEndingAtReturn(call);
        Assert.That(KernelStackScan.FollowsCall(m, ret), Is.True, what);
        var window = m.ReadExact(ret - 16, 16)!;
        var found = X64Code.CallsEndingAt(window, 16, ret).ToList();
        Assert.That(found.Select(i => (int)i.Length), Does.Contain(call.Length), what);
        Assert.That(found.All(i => i.NextIP == ret), what);
    }

    // Not calls, or calls that do not end at the return address; "ff 54 24" matched the old FF 50+r pattern although the
    // instruction needs a displacement byte after it (it ends past the return address).
    [TestCase(new byte[] { 0xff, 0x54, 0x24 }, "ff 54 24 without its disp8")]
    [TestCase(new byte[] { 0xe9, 0x10, 0x20, 0x00, 0x00 }, "jmp rel32")]
    [TestCase(new byte[] { 0xff, 0xe0 }, "jmp rax")]
    [TestCase(new byte[] { 0xff, 0x25, 0x10, 0x00, 0x00, 0x00 }, "jmp qword ptr [rip+10h]")]
    [TestCase(new byte[] { 0xff, 0x1c, 0x24 }, "call far [rsp] (not a near call)")]
    [TestCase(new byte[] { 0x48, 0x8b, 0xc8 }, "mov rcx, rax")]
    public void Anything_else_is_not_a_call(byte[] code, string what)
    {
        var (m, ret) = CodeEndingAtReturn(code);
        Assert.That(KernelStackScan.FollowsCall(m, ret), Is.False, what);
    }

    [Test]
    public void Decoded_calls_carry_their_targets()
    {
        ulong ret = 0xfffff880_04be3409;
        // call rel32: target = return address + rel32; call [rip+disp32]: slot = return address + disp32.
        byte[] rel = [0xe8, 0xf0, 0xff, 0xff, 0xff];
        var c = X64Code.CallsEndingAt(rel, rel.Length, ret).Single();
        Assert.That((c.IsCallNear, c.NearBranch64, (int)c.Length, c.IP), Is.EqualTo((true, ret - 0x10, 5, ret - 5)));
        byte[] imp = [0xff, 0x15, 0xf7, 0x0b, 0x00, 0x00];
        var i = X64Code.CallsEndingAt(imp, imp.Length, ret).Single();
        Assert.That((i.IsCallNearIndirect, i.IsIPRelativeMemoryOperand, i.IPRelativeMemoryAddress), Is.EqualTo((true, true, ret + 0xbf7)));
        // mov reg, imm: the full register and the value; not for a memory destination.
        Assert.That(X64Code.TryDecode([0x41, 0xb9, 0x64, 0, 0, 0], 0, 6, 0x1000, out var r9), Is.True);
        Assert.That(X64Code.MovImmediate(r9), Is.EqualTo((Iced.Intel.Register.R9, 100u)));
        Assert.That(X64Code.TryDecode([0x48, 0xc7, 0xc3, 0xc0, 0xd4, 0x01, 0x00], 0, 7, 0x1000, out var rbx), Is.True);
        Assert.That(X64Code.MovImmediate(rbx), Is.EqualTo((Iced.Intel.Register.RBX, 0x1d4c0u)));
        Assert.That(X64Code.TryDecode([0xc7, 0x45, 0xe8, 0, 0, 0, 0], 0, 7, 0x1000, out var mem), Is.True);
        Assert.That(X64Code.MovImmediate(mem), Is.Null);
        Assert.That(X64Code.Writes(r9, Iced.Intel.Register.R9) && !X64Code.Writes(r9, Iced.Intel.Register.RCX));
        // dec ecx writes rcx; a truncated instruction does not decode.
        Assert.That(X64Code.TryDecode([0xff, 0xc9], 0, 2, 0x1000, out var dec) && X64Code.Writes(dec, Iced.Intel.Register.RCX));
        Assert.That(X64Code.TryDecode([0xe8, 0x00, 0x00], 0, 3, 0x1000, out _), Is.False);
        // Straight runs stop where the stream does not land: [from, to) must end on an instruction boundary.
        byte[] run = [0xb9, 0x0a, 0, 0, 0, 0x90, 0x90];
        Assert.That(X64Code.Between(run, 0, 5, 0x1000)!.Select(x => x.Mnemonic), Is.EqualTo(new[] { Iced.Intel.Mnemonic.Mov }));
        Assert.That(X64Code.Between(run, 0, 3, 0x1000), Is.Null);
    }

    // ---------- stall loops ----------

    private const ulong Stall = 0xfffff880_01008000;     // nt!KeStallExecutionProcessor, in reach of call rel32
    private const ulong Slot = 0xfffff880_01000800;      // drv!_imp_KeStallExecutionProcessor
    private const ulong Other = 0xfffff880_01009000;     // some other routine
    private const ulong Qpc = 0xfffff880_0100a000;       // nt!KeQueryPerformanceCounter (known by address only)

    /// <summary>Code at Code+0x100, the import slot filled, the stall routine known by address and name.</summary>
    private static StallLoopHint? Find(byte[] code, ulong ret)
    {
        var mem = new SparseMemory();
        mem.Map(Code, 0x10000);
        mem.Write(Code, Enumerable.Repeat((byte)0xcc, 0x10000).ToArray());
        mem.Write(Code + 0x100, code);
        mem.WriteU64(Slot, Stall);
        var t = new InMemoryTarget(mem, new IsfSymbolProvider(), new TargetInfo { Kind = TargetKind.Kernel }, [new ModuleInfo("drv", Code, 0x10000)]);
        string? Name(ulong a) => a == Stall ? "nt!KeStallExecutionProcessor" : a == Slot ? "drv!_imp_KeStallExecutionProcessor" : null;
        ulong? Symbol(string n) => n == "nt!KeStallExecutionProcessor" ? Stall : n == "nt!KeQueryPerformanceCounter" ? Qpc : null;
        return new StallLoops(new TargetMemory(t), Name, Symbol).Find(ret);
    }

    private static byte[] Rel32(ulong next, ulong target) => BitConverter.GetBytes((int)(long)(target - next));

    [Test]
    public void Import_call_with_REX_W_in_a_counted_loop_names_the_counter_not_the_nearest_mov()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0xbe, 0xe8, 0x03, 0x00, 0x00,             // at+0   mov esi, 1000      (the counter)
            0xbb, 0x05, 0x00, 0x00, 0x00,             // at+5   mov ebx, 5         (nearest mov: the old byte scan took it)
            0xb9, 0x32, 0x00, 0x00, 0x00,             // at+10  loop: mov ecx, 50
            0x48, 0xff, 0x15, 0, 0, 0, 0,             // at+15  call qword ptr [rip+x] -> ret at+22
            0xff, 0xce,                               // at+22  dec esi
            0x75, 0xf0,                               // at+24  jne at+10
        ];
        Rel32(at + 22, Slot).CopyTo(code, 18);
        var h = Find(code, at + 22)!;
        Assert.That(h, Is.Not.Null);
        Assert.That((h.CallSite, h.CallTarget, h.CallTargetName), Is.EqualTo((at + 15, Stall, "nt!KeStallExecutionProcessor")));
        Assert.That((h.JumpAt, h.JumpTarget), Is.EqualTo((at + 24, at + 10)));
        Assert.That((h.StallMicroseconds, h.Iterations), Is.EqualTo(((uint?)50, (uint?)1000)));
        Assert.That(h.Text, Does.Contain("50 us per call, up to 1,000 iterations (~0.05 s at DISPATCH_LEVEL)"));
    }

    [Test]
    public void The_stall_argument_is_the_last_write_of_ecx_not_a_B9_byte()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0x41, 0xb9, 0x64, 0x00, 0x00, 0x00,       // at+0   loop: mov r9d, 100 (its B9 byte read as "mov ecx, 100" before)
            0xb9, 0x0a, 0x00, 0x00, 0x00,             // at+6   mov ecx, 10
            0xe8, 0, 0, 0, 0,                         // at+11  call KeStallExecutionProcessor -> ret at+16
            0xeb, 0xee,                               // at+16  jmp at+0
        ];
        Rel32(at + 16, Stall).CopyTo(code, 12);
        var h = Find(code, at + 16)!;
        Assert.That(h, Is.Not.Null);
        Assert.That((h.CallSite, h.JumpAt, h.JumpTarget, h.StallMicroseconds, h.Iterations), Is.EqualTo((at + 11, at + 16, at, (uint?)10, (uint?)null)));
    }

    [Test]
    public void A_jump_byte_inside_an_immediate_is_no_loop()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0xb9, 0x0a, 0x00, 0x00, 0x00,                                   // at+0   mov ecx, 10
            0xe8, 0, 0, 0, 0,                                               // at+5   call stall -> ret at+10
            0x48, 0xb8, 0x90, 0x90, 0xeb, 0xf0, 0x00, 0x00, 0x00, 0x00,     // at+10  mov rax, 0F0EB9090h ("eb f0" = jmp at+0 to a byte scan)
            0xc3,                                                           // at+20  ret
        ];
        Rel32(at + 10, Stall).CopyTo(code, 6);
        Assert.That(Find(code, at + 10), Is.Null);
    }

    [Test]
    public void A_backward_jump_after_the_ret_belongs_to_the_next_routine()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0xb9, 0x0a, 0x00, 0x00, 0x00,             // at+0   mov ecx, 10
            0xe8, 0, 0, 0, 0,                         // at+5   call stall -> ret at+10
            0xc3, 0xcc,                               // at+10  ret; int3 padding
            0x75, 0xf2,                               // at+12  (next routine) jne at+0
        ];
        Rel32(at + 10, Stall).CopyTo(code, 6);
        Assert.That(Find(code, at + 10), Is.Null);
        code[10] = code[11] = 0x90; // nops instead of ret; int3: the same jump now closes a loop around the stall
        Assert.That(Find(code, at + 10)?.JumpTarget, Is.EqualTo(at));
    }

    [Test]
    public void A_jump_into_an_instruction_that_does_not_decode_on_to_the_call_is_no_loop()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0x48, 0xb8, 0xb9, 0x0a, 0x00, 0x00, 0x00, 0x80, 0x90, 0x90,     // at+0   mov rax, imm64
            0xe8, 0, 0, 0, 0,                                               // at+10  call stall -> ret at+15
            0xeb, 0xf0,                                                     // at+15  jmp at+1: mov eax, 0ab9h / add [rax+..], al runs past the call
        ];
        Rel32(at + 15, Stall).CopyTo(code, 11);
        Assert.That(Find(code, at + 15), Is.Null);
    }

    [Test]
    public void Calls_to_other_routines_or_through_registers_are_no_stall_loops()
    {
        ulong at = Code + 0x100;
        byte[] other = [0xb9, 0x0a, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xeb, 0xf4];
        Rel32(at + 10, Other).CopyTo(other, 6);
        Assert.That(Find(other, at + 10), Is.Null);
        byte[] viaRegister = [0xb9, 0x0a, 0, 0, 0, 0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xff, 0xd0, 0xeb, 0xf0];   // mov rax,[slot]; call rax
        Rel32(at + 12, Slot).CopyTo(viaRegister, 8);
        Assert.That(Find(viaRegister, at + 14), Is.Null);
    }

    [Test]
    public void A_loop_polling_the_performance_counter_is_a_busy_wait()
    {
        ulong at = Code + 0x100;
        byte[] code =
        [
            0xf3, 0x90,                               // at+0   loop: pause
            0x33, 0xc9,                               // at+2   xor ecx, ecx
            0xe8, 0, 0, 0, 0,                         // at+4   call nt!KeQueryPerformanceCounter -> ret at+9
            0x48, 0x2b, 0xc3,                         // at+9   sub rax, rbx
            0x48, 0x3b, 0xc6,                         // at+12  cmp rax, rsi
            0x72, 0xef,                               // at+15  jb at+0
        ];
        Rel32(at + 9, Qpc).CopyTo(code, 5);
        var h = Find(code, at + 9)!;
        Assert.That(h, Is.Not.Null);
        Assert.That((h.CallSite, h.CallTarget, h.CallTargetName, h.JumpAt, h.JumpTarget), Is.EqualTo((at + 4, Qpc, "nt!KeQueryPerformanceCounter", at + 15, at)));
        Assert.That((h.StallMicroseconds, h.Iterations), Is.EqualTo(((uint?)null, (uint?)null)), "xor ecx, ecx is no stall time; rax is set by the call");
        Assert.That(h.Text, Does.StartWith("the driver polls nt!KeQueryPerformanceCounter in a loop (a busy wait): call at ").And.Contains(", pause in the loop"));
    }
}
