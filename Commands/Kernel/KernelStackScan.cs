using System.Buffers.Binary;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Target;

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
/// Reads a waiting thread's kernel stack the way an engineer does with <c>dps</c> when <c>k</c> cannot unwind (forged or
/// unwind-less modules): from the saved stack pointer (<c>_KTHREAD.KernelStack</c>) to the top of the stack
/// (<c>_KTHREAD.InitialStack</c>), every pointer-sized value that lies inside a loaded module and follows a call
/// instruction is a return address. One bulk read of the used stack (bounded by <see cref="MaxStackBytes"/>), one small
/// read per candidate return address (cached: identical stacks of many workers cost the code bytes once).
/// Names come from the symbols (<c>module!function+0xdisp</c>), else <c>module+0xoffset</c>.
/// </summary>
public sealed class KernelStackScan
{
    /// <summary>At most this many bytes of stack are read per thread (a kernel stack is 24-72 KB; the used part is small).</summary>
    public const int MaxStackBytes = 0x3000;
    public const int MaxFrames = 24;

    private readonly KernelReader _r;
    private readonly Dictionary<ulong, string> _names = new();
    private IReadOnlyList<ModuleInfo>? _modules;

    public KernelStackScan(KernelReader reader) => _r = reader;

    private IReadOnlyList<ModuleInfo> Modules
    {
        get
        {
            if (_modules is null)
            {
                try { _modules = _r.Target.GetModules(); } catch (Exception) { _modules = []; }
            }
            return _modules;
        }
    }

    public ModuleInfo? ModuleOf(ulong address)
    {
        foreach (var m in Modules) if (m.Contains(address)) return m;
        return null;
    }

    /// <summary>The symbol name of a code address ("mpio!MPIOPathVerify+0x14b"), else module+offset, else the address.</summary>
    public string NameOf(ulong address)
    {
        if (_names.TryGetValue(address, out var n)) return n;
        string? s = null;
        ulong disp = 0;
        try { s = _r.Target.Symbols.GetNameByAddress(address, out disp); } catch (Exception) { s = null; }
        var m = ModuleOf(address);
        // A nearest symbol from another module (a module without symbols lies above the last symbol of the one before) is no name.
        if (!string.IsNullOrEmpty(s) && m is not null && s.IndexOf('!') is int bang && bang > 0
            && !s[..bang].Equals(KernelModules.ShortName(m.Name), StringComparison.OrdinalIgnoreCase) && !(IsKernelModule(s[..bang]) && IsKernelModule(KernelModules.ShortName(m.Name))))
            s = null;
        if (!string.IsNullOrEmpty(s)) n = disp == 0 ? s : $"{s}+0x{disp:x}";
        else if (m is not null) n = $"{KernelModules.ShortName(m.Name)}+0x{address - m.Base:x}";
        else n = Output.Fmt.Addr(address);
        _names[address] = n;
        return n;
    }

    /// <summary>Scans the kernel stack of <paramref name="thread"/> (an _ETHREAD/_KTHREAD address) whose saved stack
    /// pointer and stack top are given (read by the caller with the rest of the thread).</summary>
    public ScannedStack Scan(ulong kernelStack, ulong initialStack)
    {
        var res = new ScannedStack();
        if (kernelStack == 0 || initialStack == 0 || initialStack <= kernelStack)
        {
            res.Note = $"no saved kernel stack pointer (KernelStack {Output.Fmt.Addr(kernelStack)}, InitialStack {Output.Fmt.Addr(initialStack)})";
            return res;
        }
        int ps = _r.PointerSize;
        ulong start = kernelStack & ~(ulong)(ps - 1);
        int length = (int)Math.Min(initialStack - start, MaxStackBytes);
        byte[] data;
        List<(int Offset, int Length)> holes;
        try { (data, holes) = _r.Memory.ReadBulk(start, length); }
        catch (OperationCanceledException) { res.Note = "interrupted by user while reading the stack"; return res; }
        if (holes.Count > 0 && holes[0].Offset == 0 && holes[0].Length >= length)
        {
            res.Note = $"kernel stack {Output.Fmt.Addr(start)}..{Output.Fmt.Addr(start + (ulong)length)} not readable (paged out or not in the dump)";
            return res;
        }
        if (holes.Count > 0)
            res.Note = $"kernel stack partly unreadable: {string.Join(", ", holes.Select(h => $"{Output.Fmt.Addr(start + (ulong)h.Offset)} ({h.Length} bytes)"))}";
        for (int off = 0; off + ps <= length && res.Frames.Count < MaxFrames; off += ps)
        {
            if (holes.Any(h => off >= h.Offset && off < h.Offset + h.Length)) continue;
            ulong v = ps == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(off)) : BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(off));
            if (v < 0x10000) continue;
            var m = ModuleOf(v);
            if (m is null || !FollowsCall(v)) continue;
            res.Frames.Add(new ScannedFrame(v, start + (ulong)off, NameOf(v), KernelModules.ShortName(m.Name)));
        }
        if (res.Frames.Count == 0 && res.Note is null) res.Note = "no return address found on the stack";
        return res;
    }

    /// <summary>True when the bytes before <paramref name="ret"/> end with a call instruction (E8 rel32, FF 15 disp32, FF /2 forms).</summary>
    public bool FollowsCall(ulong ret)
    {
        var b = _r.Memory.ReadExact(ret - 7, 7);
        if (b is null) return false;
        if (b[2] == 0xE8) return true;                              // call rel32
        if (b[1] == 0xFF && b[2] == 0x15) return true;              // call [rip+disp32]
        if (b[5] == 0xFF && (b[6] & 0xF8) == 0xD0) return true;     // call reg
        if (b[4] == 0xFF && (b[5] & 0xF8) == 0x50) return true;     // call [reg+disp8]
        if (b[4] == 0x41 && b[5] == 0xFF && (b[6] & 0xF8) == 0xD0) return true;
        return false;
    }

    /// <summary>True for the kernel's own modules (nt, ntoskrnl/ntkrnlmp, hal): where a blocked thread waits, not why.</summary>
    public static bool IsKernelModule(string m) =>
        m.Equals("nt", StringComparison.OrdinalIgnoreCase) || m.StartsWith("ntoskrnl", StringComparison.OrdinalIgnoreCase) ||
        m.StartsWith("ntkrnl", StringComparison.OrdinalIgnoreCase) || m.Equals("hal", StringComparison.OrdinalIgnoreCase);
}
