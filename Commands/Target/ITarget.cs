using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Target;

/// <summary>
/// The small target abstraction every command is written against. Implemented over DbgEng (Extension/),
/// over in-memory scenario kernels (Extension.Tests/Lab) and by mocks. No DbgEng types appear here.
/// Implementations report raw transport behaviour: one call to <see cref="ReadVirtual"/> is one round trip;
/// caching and counting are done above, in <see cref="Memory.TargetMemory"/>.
/// </summary>
public interface ITarget
{
    /// <summary>Facts about the debuggee (kernel/user, dump/live, build, processors, time, bugcheck).</summary>
    TargetInfo Info { get; }

    /// <summary>
    /// The command failed because a type, field or symbol was "not found": a target that keeps symbol answers across
    /// commands must not keep this command's answers (the engine also answers "not found" when it aborts a lookup for
    /// a Ctrl+Break it then swallows). The next command asks again. Default: nothing is kept, nothing to do.
    /// </summary>
    void DistrustSymbolAnswers() { }

    /// <summary>
    /// A type or symbol the engine said it did not have (<paramref name="what"/> as <see cref="Symbols.MissingSymbolException.What"/>
    /// names it: "type nt!_EPROCESS", "symbol nt!X", "field nt!_T.F"), asked again past every cache: true when the engine
    /// has it now, i.e. its first answer was an aborted lookup (the engine aborts a symbol load for a Ctrl+Break and
    /// swallows the interrupt, so <see cref="IsInterruptRequested"/> never sees it). Default: false (a real miss).
    /// </summary>
    bool EngineHasItNow(string what) => false;

    /// <summary>
    /// Reads virtual memory with partial-read semantics: fills <paramref name="buffer"/> from
    /// <paramref name="address"/> as far as memory is readable and returns the number of bytes read
    /// (0 when the first byte is unreadable). Never throws for unreadable memory.
    /// </summary>
    int ReadVirtual(ulong address, Span<byte> buffer);

    /// <summary>
    /// Searches target memory for <paramref name="pattern"/> in [start, start+length) without transferring
    /// the range (the engine's / KD protocol's search). Returns the address of the first match, or null.
    /// One call is one round trip.
    /// </summary>
    ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern);

    /// <summary>Symbols and type layouts.</summary>
    ISymbolProvider Symbols { get; }

    /// <summary>Loaded modules (kernel: PsLoadedModuleList; user: the process's modules).</summary>
    IReadOnlyList<ModuleInfo> GetModules();

    /// <summary>Evaluates a debugger expression (MASM syntax: <c>fffffa80`73d3d770</c>, <c>nt!PoolHitTag</c>, <c>@$thread</c>).</summary>
    bool TryEvaluate(string expression, out ulong value, out string? error);

    /// <summary>Stack of the current (event) thread, innermost first; empty when the target cannot unwind.</summary>
    IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames);

    /// <summary>True when the user asked to stop (Ctrl+Break). Polled by every walk.</summary>
    bool IsInterruptRequested { get; }

    /// <summary>
    /// Stacks of the threads the target knows (user mode: every thread of the process; kernel dumps: the
    /// processors' current threads where the engine can unwind). Innermost frame first. Empty when unsupported.
    /// </summary>
    IReadOnlyList<ThreadStack> GetThreadStacks(int maxFrames) => Array.Empty<ThreadStack>();

    /// <summary>
    /// Reads virtual memory in the context of another process (kernel targets: <paramref name="process"/> is the
    /// EPROCESS address; used for user-mode addresses such as the registry bins of the "Registry" process on Windows 10
    /// 2004+). Same partial-read semantics as <see cref="ReadVirtual"/>: returns the bytes read contiguously from
    /// <paramref name="address"/>; 0 = unreadable, or the target cannot read in another process's context (the default).
    /// One call is one round trip.
    /// </summary>
    int ReadProcessVirtual(ulong process, ulong address, Span<byte> buffer) => 0;

    /// <summary>
    /// Where a command may keep results for the rest of the debugger session (dropped by the target when modules,
    /// symbols or the target change); null when the target keeps nothing across commands (the default).
    /// </summary>
    SessionStore? Session => null;
}

public enum TargetKind { Kernel, User }

public sealed record TargetInfo
{
    public TargetKind Kind { get; init; } = TargetKind.Kernel;
    public bool IsDump { get; init; } = true;
    public bool IsLive => !IsDump;
    public int PointerSize { get; init; } = 8;
    /// <summary>OS build number (7601, 9600, 14393, 19041, 22000, ...); 0 when unknown.</summary>
    public int BuildNumber { get; init; }
    public int ProcessorCount { get; init; } = 1;
    /// <summary>Processor that hit the event/bugcheck (0-based), or -1.</summary>
    public int EventProcessor { get; init; } = -1;
    /// <summary>Target system time (dump time or now on a live target), UTC; null when unknown.</summary>
    public DateTime? SystemTimeUtc { get; init; }
    /// <summary>Uptime of the target (kernel: from the dump header / shared user data); null when unknown.</summary>
    public TimeSpan? SystemUpTime { get; init; }
    public BugCheckInfo? BugCheck { get; init; }
    /// <summary>Free text for notes, e.g. "Kernel Complete Dump File".</summary>
    public string Description { get; init; } = "";
}

public sealed record BugCheckInfo(uint Code, ulong P1, ulong P2, ulong P3, ulong P4)
{
    public override string ToString() => $"0x{Code:X} ({P1:x}, {P2:x}, {P3:x}, {P4:x})";
}

public sealed record ModuleInfo(string Name, ulong Base, uint Size, string? ImagePath = null, uint TimeDateStamp = 0, string? Version = null)
{
    public ulong End => Base + Size;
    public bool Contains(ulong address) => address >= Base && address < Base + Size;
}

/// <summary>A thread's id (TID; for kernel targets the processor's current thread), its object/TEB address and frames.</summary>
public sealed record ThreadStack(uint ThreadId, ulong ThreadAddress, IReadOnlyList<StackFrameInfo> Frames);

/// <summary>One frame: InstructionOffset = where the frame executes, ReturnOffset, StackOffset = Child-SP, FrameOffset.</summary>
public sealed record StackFrameInfo(ulong InstructionOffset, ulong ReturnOffset, ulong StackOffset, ulong FrameOffset);
