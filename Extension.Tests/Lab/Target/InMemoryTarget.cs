using System.Globalization;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Lab.Target;

/// <summary>
/// A scenario served through <see cref="ITarget"/>: reads from a <see cref="SparseMemory"/> with partial-read semantics,
/// raw transport counters (every ReadVirtual/SearchVirtual call = one round trip) and fault injection
/// (unreadable ranges at byte granularity, interrupt after N reads). List corruption and garbage are injected into the
/// memory itself (<see cref="Faults"/>).
/// </summary>
public sealed class InMemoryTarget : ITarget
{
    /// <summary>How often a command told this target not to keep its symbol answers (<see cref="ITarget.DistrustSymbolAnswers"/>).</summary>
    public int SymbolAnswersDistrusted { get; private set; }
    public void DistrustSymbolAnswers() => SymbolAnswersDistrusted++;

    private readonly SparseMemory _memory;
    private readonly IReadOnlyList<ModuleInfo> _modules;
    private readonly IReadOnlyList<StackFrameInfo> _stack;
    private readonly Dictionary<string, ulong> _pseudo;
    private readonly List<(ulong Start, ulong End)> _unreadable = new();

    public InMemoryTarget(SparseMemory memory, ISymbolProvider symbols, TargetInfo info, IReadOnlyList<ModuleInfo> modules,
        IReadOnlyList<StackFrameInfo>? stack = null, Dictionary<string, ulong>? pseudoRegisters = null)
    {
        _memory = memory; _symbols = symbols; Info = info; _modules = modules;
        _stack = stack ?? []; _pseudo = pseudoRegisters ?? new(StringComparer.OrdinalIgnoreCase);
        Faults = new FaultInjector(this, memory);
    }

    private readonly ISymbolProvider _symbols;

    public TargetInfo Info { get; set; }
    /// <summary>The scenario's symbols, less <see cref="HiddenSymbols"/>.</summary>
    public ISymbolProvider Symbols => HiddenSymbols.Count == 0 ? _symbols : new HidingSymbols(_symbols, HiddenSymbols);
    /// <summary>Fault injection: symbols ("nt!PoolTrackTable") or types ("nt!_KDPC") the provider pretends not to know; a bare
    /// module name ("nt") makes <see cref="ISymbolProvider.HasSymbols"/> false for it.</summary>
    public HashSet<string> HiddenSymbols { get; } = new(StringComparer.OrdinalIgnoreCase);
    public SparseMemory Memory => _memory;
    public FaultInjector Faults { get; }

    // ---- raw counters (transport level, below the command's cache) ----
    public long ReadCalls { get; private set; }
    public long BytesRequested { get; private set; }
    public long BytesReturned { get; private set; }
    public long SearchCalls { get; private set; }
    public void ResetCounters() { ReadCalls = BytesRequested = BytesReturned = SearchCalls = 0; }
    /// <summary>When set, every read request (address, length) is recorded.</summary>
    public List<(ulong Address, int Length)>? ReadLog { get; set; }
    /// <summary>The session store commands may keep results in (ITarget.Session); null: none, as by default.</summary>
    public NtSleuth.Commands.Target.SessionStore? Session { get; set; }

    /// <summary>When set, <see cref="IsInterruptRequested"/> turns true once this many reads have been served (Ctrl+Break mid-walk).</summary>
    public long? InterruptAfterReads { get; set; }
    /// <summary>Set to simulate Ctrl+Break right now.</summary>
    public bool InterruptNow { get; set; }

    /// <summary>When set, <see cref="IsInterruptRequested"/> turns true once this many searches have been made.</summary>
    public long? InterruptAfterSearches { get; set; }

    public bool IsInterruptRequested => InterruptNow || (InterruptAfterReads is { } n && ReadCalls >= n)
        || (InterruptAfterSearches is { } s && SearchCalls >= s);

    public void MakeUnreadable(ulong address, ulong length) => _unreadable.Add((address, address + length));
    public void ClearUnreadable() => _unreadable.Clear();

    private bool IsBlocked(ulong a, out ulong blockStart)
    {
        foreach (var (s, e) in _unreadable) if (a >= s && a < e) { blockStart = s; return true; }
        blockStart = 0; return false;
    }

    public int ReadVirtual(ulong address, Span<byte> buffer)
    {
        ReadCalls++;
        BytesRequested += buffer.Length;
        ReadLog?.Add((address, buffer.Length));
        int got = _memory.Read(address, buffer);
        // Clip at the first injected unreadable byte.
        foreach (var (s, e) in _unreadable)
        {
            if (s <= address && address < e) { got = 0; break; }
            if (s > address && s < address + (ulong)got) got = (int)(s - address);
        }
        if (got < buffer.Length) buffer[got..].Clear();
        BytesReturned += got;
        return got;
    }

    // ---- other processes' address spaces (ReadProcessVirtual) ----
    private readonly Dictionary<ulong, SparseMemory> _processSpaces = new();
    /// <summary>The registered process address spaces (EPROCESS -> user pages).</summary>
    public IReadOnlyDictionary<ulong, SparseMemory> ProcessSpaces => _processSpaces;

    /// <summary>Registers the user address space of the process whose EPROCESS is <paramref name="eprocess"/> (e.g. the Registry process).</summary>
    public void AddProcessSpace(ulong eprocess, SparseMemory memory) => _processSpaces[eprocess] = memory;
    public long ProcessReadCalls { get; private set; }

    /// <summary>
    /// Kernel addresses read as <see cref="ReadVirtual"/> (shared by every process); user addresses from the process's
    /// registered space; 0 for a process without one (like a target that cannot switch process context). One round trip.
    /// </summary>
    public int ReadProcessVirtual(ulong process, ulong address, Span<byte> buffer)
    {
        if (address >= 0xffff_8000_0000_0000) return ReadVirtual(address, buffer);
        ReadCalls++; ProcessReadCalls++;
        BytesRequested += buffer.Length;
        ReadLog?.Add((address, buffer.Length));
        if (!_processSpaces.TryGetValue(process, out var space)) { buffer.Clear(); return 0; }
        int got = space.Read(address, buffer);
        if (got < buffer.Length) buffer[got..].Clear();
        BytesReturned += got;
        return got;
    }

    public ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        SearchCalls++;
        if (pattern.Length == 0) return null;
        ulong end = start + length;
        // Search page by page over mapped, readable memory (pattern may span pages).
        var carry = new List<byte>();
        ulong carryStart = 0;
        foreach (var (page, data) in _memory.Pages)
        {
            if (page + SparseMemory.PageSize <= start) continue;
            if (page >= end) break;
            if (carry.Count > 0 && carryStart + (ulong)carry.Count != page) carry.Clear();
            if (carry.Count == 0) carryStart = page;
            carry.AddRange(data);
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(carry);
            int from = 0;
            while (true)
            {
                int i = span[from..].IndexOf(pattern);
                if (i < 0) break;
                ulong hit = carryStart + (ulong)(from + i);
                if (hit >= start && hit + (ulong)pattern.Length <= end && !IsBlocked(hit, out _)) return hit;
                from += i + 1;
            }
            // keep only the tail that could start a match across the page boundary
            int keep = Math.Min(pattern.Length - 1, carry.Count);
            carry.RemoveRange(0, carry.Count - keep);
            carryStart = page + SparseMemory.PageSize - (ulong)keep;
        }
        return null;
    }

    public IReadOnlyList<ModuleInfo> GetModules() => HiddenModules.Count == 0 ? _modules : [.. _modules.Where(m => !HiddenModules.Contains(m.Name))];
    /// <summary>Fault injection: modules (by listed name) left out of <see cref="GetModules"/>, as from a damaged module list.</summary>
    public HashSet<string> HiddenModules { get; } = new(StringComparer.OrdinalIgnoreCase);

    public IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames) => _stack.Take(maxFrames).ToList();

    /// <summary>Per-thread stacks a scenario provides (user-mode scenarios: every thread of the process).</summary>
    public List<ThreadStack> ThreadStacks { get; } = new();

    public IReadOnlyList<ThreadStack> GetThreadStacks(int maxFrames) =>
        ThreadStacks.Select(t => t with { Frames = t.Frames.Take(maxFrames).ToList() }).ToList();

    /// <summary>
    /// MASM-like expressions: hex numbers (fffffa80`73d3d770, 0x..., 0n decimal), symbols (nt!PsActiveProcessHead,
    /// module names = their base), pseudo-registers (@$thread, @$proc), + and - of terms, poi(expr).
    /// </summary>
    public bool TryEvaluate(string expression, out ulong value, out string? error)
    {
        value = 0; error = null;
        try
        {
            var p = new ExprParser(expression, this);
            value = p.ParseAll();
            return true;
        }
        catch (FormatException ex) { error = ex.Message; return false; }
    }

    private sealed class ExprParser(string text, InMemoryTarget t)
    {
        private int _i;

        public ulong ParseAll()
        {
            if (string.IsNullOrWhiteSpace(text)) throw new FormatException("empty expression");
            ulong v = ParseSum();
            Skip();
            if (_i < text.Length) throw new FormatException($"unexpected '{text[_i..]}'");
            return v;
        }

        private void Skip() { while (_i < text.Length && char.IsWhiteSpace(text[_i])) _i++; }

        private ulong ParseSum()
        {
            ulong v = ParseTerm();
            while (true)
            {
                Skip();
                if (_i >= text.Length) return v;
                char c = text[_i];
                if (c == '+') { _i++; v = unchecked(v + ParseTerm()); }
                else if (c == '-') { _i++; v = unchecked(v - ParseTerm()); }
                else return v;
            }
        }

        private ulong ParseTerm()
        {
            Skip();
            if (_i >= text.Length) throw new FormatException("expression ends early");
            if (text[_i] == '(') { _i++; ulong v = ParseSum(); Expect(')'); return v; }
            if (text.AsSpan(_i).StartsWith("poi(", StringComparison.OrdinalIgnoreCase))
            {
                _i += 4;
                ulong a = ParseSum();
                Expect(')');
                Span<byte> b = stackalloc byte[8];
                if (t.ReadVirtual(a, b) != 8) throw new FormatException($"Memory access error at '{a:x16}'");
                return BitConverter.ToUInt64(b);
            }
            int start = _i;
            while (_i < text.Length && (char.IsLetterOrDigit(text[_i]) || text[_i] is '_' or '!' or '`' or '@' or '$' or '.' or '?')) _i++;
            string tok = text[start.._i];
            if (tok.Length == 0) throw new FormatException($"syntax error at '{text[start..]}'");
            return Atom(tok);
        }

        private void Expect(char c)
        {
            Skip();
            if (_i >= text.Length || text[_i] != c) throw new FormatException($"expected '{c}'");
            _i++;
        }

        private ulong Atom(string tok)
        {
            if (tok.StartsWith('@'))
            {
                string name = tok.TrimStart('@');
                if (t._pseudo.TryGetValue(name, out var pv) && pv != 0) return pv;
                throw new FormatException($"unknown pseudo-register '{tok}'");
            }
            if (tok.StartsWith("0n", StringComparison.OrdinalIgnoreCase) && ulong.TryParse(tok[2..], out var dec)) return dec;
            string hex = tok.Replace("`", "");
            if (hex.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) hex = hex[2..];
            if (!tok.Contains('!') && hex.Length is > 0 and <= 16 && ulong.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var h)) return h;
            var sym = t.Symbols.GetSymbolAddress(tok);
            if (sym is { } s) return s;
            var mod = t._modules.FirstOrDefault(m => string.Equals(m.Name, tok, StringComparison.OrdinalIgnoreCase));
            if (mod is not null) return mod.Base;
            throw new FormatException($"Couldn't resolve error at '{tok}'");
        }
    }
}

internal sealed class HidingSymbols(ISymbolProvider inner, HashSet<string> hidden) : ISymbolProvider
{
    public ulong? GetSymbolAddress(string q) => hidden.Contains(q) ? null : inner.GetSymbolAddress(q);
    public string? GetNameByAddress(ulong a, out ulong d) => inner.GetNameByAddress(a, out d);
    public TypeLayout? GetTypeLayout(string m, string t) => hidden.Contains(m + "!" + t) ? null : inner.GetTypeLayout(m, t);
    public bool HasSymbols(string m) => !hidden.Contains(m) && inner.HasSymbols(m);
}
