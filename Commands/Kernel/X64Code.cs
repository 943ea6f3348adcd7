using Iced.Intel;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// x86-64 code read from the target, decoded with Iced (instructions, not byte patterns): the call instruction that
/// ends at a return address (<see cref="CallsEndingAt"/>, behind <see cref="KernelStackScan.FollowsCall(Memory.TargetMemory, ulong)"/>
/// and <c>!dpcblame</c>'s stall-loop detection), straight-line runs (<see cref="Run"/>), and what an instruction
/// writes (<see cref="Writes"/>, <see cref="MovImmediate"/>). Every method works on bytes already read; none reads.
/// </summary>
public static class X64Code
{
    /// <summary>The longest x86 instruction.</summary>
    public const int MaxInstructionLength = 15;

    /// <summary>
    /// Decodes the one instruction at <paramref name="code"/>[<paramref name="offset"/>..] that must end by
    /// <paramref name="limit"/>; <paramref name="ip"/> is the address of code[offset]. False for bytes that do not
    /// decode or need bytes past the limit.
    /// </summary>
    public static bool TryDecode(byte[] code, int offset, int limit, ulong ip, out Instruction instruction)
    {
        instruction = default;
        if (offset < 0 || limit > code.Length || offset >= limit) return false;
        var d = Decoder.Create(64, new ByteArrayCodeReader(code, offset, limit - offset), ip);
        d.Decode(out instruction);
        return d.LastError == DecoderError.None && !instruction.IsInvalid;
    }

    /// <summary>A near call (direct <c>call rel32</c>, or indirect through a register or memory: <c>ff /2</c>, any prefixes).</summary>
    public static bool IsNearCall(in Instruction i) => i.IsCallNear || i.IsCallNearIndirect;

    /// <summary>
    /// The near calls that end exactly at <paramref name="code"/>[<paramref name="end"/>] (a return address at
    /// <paramref name="endIp"/>), at most <paramref name="maxLength"/> bytes long, longest first. Backward decoding is
    /// ambiguous (the bytes of one instruction may also read as a shorter one), so every start that decodes to a call
    /// of exactly the right length is a candidate.
    /// </summary>
    public static IEnumerable<Instruction> CallsEndingAt(byte[] code, int end, ulong endIp, int maxLength = MaxInstructionLength)
    {
        for (int len = Math.Min(Math.Min(maxLength, MaxInstructionLength), end); len >= 2; len--)
            if (TryDecode(code, end - len, end, endIp - (ulong)len, out var i) && i.Length == len && IsNearCall(i))
                yield return i;
    }

    /// <summary>
    /// Decodes straight on from <paramref name="code"/>[<paramref name="offset"/>] (at <paramref name="ip"/>) until
    /// <paramref name="limit"/>; stops before an instruction that does not decode or does not fit.
    /// </summary>
    public static IEnumerable<Instruction> Run(byte[] code, int offset, int limit, ulong ip)
    {
        if (offset < 0 || limit > code.Length || offset >= limit) yield break;
        var d = Decoder.Create(64, new ByteArrayCodeReader(code, offset, limit - offset), ip);
        ulong end = ip + (ulong)(limit - offset);
        while (d.IP < end)
        {
            d.Decode(out var i);
            if (d.LastError != DecoderError.None || i.IsInvalid) yield break;
            yield return i;
        }
    }

    /// <summary>
    /// The instructions from <paramref name="from"/> to exactly <paramref name="to"/> (offsets into
    /// <paramref name="code"/>, which starts at <paramref name="codeIp"/>); null when decoding from there does not land
    /// on <paramref name="to"/> (one of the two is not an instruction boundary of the same stream).
    /// </summary>
    public static List<Instruction>? Between(byte[] code, int from, int to, ulong codeIp)
    {
        var list = new List<Instruction>();
        if (from == to) return list;
        foreach (var i in Run(code, from, to, codeIp + (ulong)from))
        {
            list.Add(i);
            if (i.NextIP == codeIp + (ulong)to) return list;
        }
        return null;
    }

    private static readonly InstructionInfoFactory InfoFactory = new();

    /// <summary>Whether the instruction writes (or may write) any part of the general register <paramref name="fullRegister"/> (e.g. RCX for ecx/cx/cl).</summary>
    public static bool Writes(in Instruction i, Register fullRegister)
    {
        lock (InfoFactory)
        {
            foreach (var u in InfoFactory.GetInfo(i).GetUsedRegisters())
                if (u.Register.GetFullRegister() == fullRegister &&
                    u.Access is OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)
                    return true;
        }
        return false;
    }

    /// <summary>
    /// <c>mov reg, imm</c> (<c>b8+r</c>, <c>c7 /0</c> with a register operand, <c>mov r64, imm64</c>) that fits in 32 bits:
    /// the full register written (RBX for ebx) and the value; null for anything else.
    /// </summary>
    public static (Register FullRegister, uint Value)? MovImmediate(in Instruction i)
    {
        if (i.Mnemonic != Mnemonic.Mov || i.OpCount != 2 || i.Op0Kind != OpKind.Register) return null;
        ulong v;
        switch (i.Op1Kind)
        {
            case OpKind.Immediate32: v = i.Immediate32; break;
            case OpKind.Immediate32to64: v = (ulong)i.Immediate32to64; break;
            case OpKind.Immediate64: v = i.Immediate64; break;
            default: return null;
        }
        if (v > uint.MaxValue) return null;
        return (i.Op0Register.GetFullRegister(), (uint)v);
    }
}
