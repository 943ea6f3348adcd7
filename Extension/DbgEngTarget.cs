using System.Runtime.InteropServices;
using System.Text;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>
/// The DbgEng-backed <see cref="ITarget"/>: memory, symbols, types, modules and debuggee facts through the engine's
/// COM interfaces. Every engine call is guarded: failures become "unknown"/null/0, never exceptions into the engine.
/// </summary>
internal sealed unsafe class DbgEngTarget : ITarget, ISymbolProvider
{
    private readonly DbgEngSession _s;
    private TargetInfo? _info;
    private bool _interrupted;

    /// <summary>
    /// Binds the session cache (<see cref="EngineSessionCache"/>: layouts, symbol addresses, symbol states kept across
    /// commands and dropped when modules or symbols change) to this command; <see cref="Dispose"/> ends the command.
    /// </summary>
    public DbgEngTarget(DbgEngSession session)
    {
        _s = session;
        _outerQueries = EngineSessionCache.Begin(session, () => Info.PointerSize);
    }

    private readonly OuterQueries _outerQueries;

    /// <summary>End of the command: the session cache remembers the module list as the command leaves it.
    /// A command that saw Ctrl+Break leaves nothing in the cache: the engine fails the type and symbol queries it runs
    /// while an interrupt is pending, so layouts, fields and symbols learnt then may be wrong "not found" answers
    /// (seen in the real engine: every later command printed empty image names and bogus links).
    /// A command that failed on a "not found" type, field or symbol leaves nothing either: the engine swallows some
    /// Ctrl+Breaks and fails the lookup it was running (GetInterrupt never reports them), so such a failure may be a
    /// false one; the next command asks the engine again instead of repeating it until symbols change.</summary>
    public void EndCommand() => EngineSessionCache.End(_s, _outerQueries, discard: _interrupted || _distrusted);

    private bool _distrusted;
    public void DistrustSymbolAnswers() => _distrusted = true;

    /// <inheritdoc />
    public bool EngineHasItNow(string what)
    {
        try
        {
            // "type nt!_T", "symbol nt!X", "field nt!_T.F[.G]": the module!name part ("the type of field ..." stays a miss).
            var m = System.Text.RegularExpressions.Regex.Match(what, @"^(type|symbol|field) ([A-Za-z0-9_]+)!([A-Za-z0-9_<>:$@?]+)(?:\.([A-Za-z0-9_]+))?");
            if (!m.Success) return false;
            string kind = m.Groups[1].Value, qualified = m.Groups[2].Value + "!" + m.Groups[3].Value;
            if (kind == "symbol") return LookUpSymbol(qualified) is not null;
            // A module without symbols cannot have the type now, and asking the engine for a type there prints its
            // "full symbol information" banner into the command's output (seen on a dump whose nt image header was
            // damaged: the fuzz tier's WrongDiagnosis/BadJson runs). The module's state is asked afresh, not cached.
            if (!QuerySymbolState(m.Groups[2].Value)) return false;
            var q = new DbgEngTypeQueries(_s, () => Info.PointerSize);
            if (!q.TryGetTypeId(qualified, out ulong mb, out uint id)) return false;
            if (kind == "type") return true; // the engine names the type now: it was there all along
            // A field: the engine must name the type's first field of the path now (a field missing from a type the
            // engine has is a real miss: another build's layout).
            if (!m.Groups[4].Success || _s.Symbols is not { } sym) return false;
            uint off = 0;
            fixed (byte* f = Ansi(m.Groups[4].Value)) return sym.GetFieldOffset(mb, id, f, &off) == DbgEngConst.S_OK;
        }
        catch { return false; }
    }

    public ISymbolProvider Symbols => this;

    public TargetInfo Info => _info ??= QueryInfo();

    // ---------------- memory ----------------

    public int ReadVirtual(ulong address, Span<byte> buffer)
    {
        using var _ = EngineProfile.Time("read");
        var data = _s.Data;
        if (data is null || buffer.IsEmpty) return 0;
        fixed (byte* p = buffer)
        {
            byte* basePtr = p;
            return PartialRead.Read(address, buffer.Length, (addr, offset, len) =>
            {
                uint got = 0;
                int hr;
                try { hr = data.ReadVirtual(addr, basePtr + offset, (uint)len, &got); }
                catch { return -1; }
                return hr >= 0 ? (int)Math.Min(got, (uint)len) : -1;
            });
        }
    }

    /// <summary>
    /// Reads in the context of another process (kernel targets: <paramref name="process"/> = EPROCESS, whose KPROCESS is
    /// at offset 0) through <see cref="ProcessReadContext"/>: the implicit process is switched for the read and restored
    /// after it; on a live kernel target <c>.cache forcedecodeuser</c> is made effective for the command first (and
    /// <see cref="RestoreEngineState"/> puts the saved option back). 0 when the engine lacks IDebugSystemObjects2,
    /// refuses the switch, the read cannot be made correct on a live target, or the memory is not readable.
    /// </summary>
    public int ReadProcessVirtual(ulong process, ulong address, Span<byte> buffer)
    {
        using var _ = EngineProfile.Time("read-proc");
        if (_s.System2 is null || _s.Data is null || buffer.IsEmpty || process == 0) return 0;
        _processReads ??= CreateProcessReadContext();
        fixed (byte* p = buffer)
        {
            byte* ptr = p;
            int length = buffer.Length;
            return _processReads.Read(process, () => ReadVirtual(address, new Span<byte>(ptr, length)));
        }
    }

    private ProcessReadContext? _processReads;

    /// <summary>The engine settings this command changed and restored, in order.</summary>
    public IReadOnlyList<string> EngineStateTrace => _processReads?.Trace ?? (IReadOnlyList<string>)Array.Empty<string>();

    private static int s_faultHookFired;

    private ProcessReadContext CreateProcessReadContext()
    {
        var hooks = (Environment.GetEnvironmentVariable(ProcessReadContext.TestHookVariable) ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Action? after = null;
        // The fault hooks fire once per process (the first command that reads in another process), so the next
        // command shows whether the engine and the extension recovered.
        if (hooks.Contains("throw") && Interlocked.Exchange(ref s_faultHookFired, 1) == 0)
            after = () => throw new InvalidOperationException($"test fault injected by {ProcessReadContext.TestHookVariable}=throw");
        else if (hooks.Contains("interrupt") && Interlocked.Exchange(ref s_faultHookFired, 1) == 0)
            after = () => { try { _s.Control?.SetInterrupt(DbgEngConst.DEBUG_INTERRUPT_PASSIVE); } catch { } };
        return new ProcessReadContext(new DbgEngAddressContext(_s), treatDumpAsLive: hooks.Contains("live"), afterFirstRead: after);
    }

    /// <summary>
    /// End of the command (the host's finally, also after an exception or a Ctrl+Break): puts back every engine setting
    /// the command changed (the <c>.cache</c> decode option on live kernel targets) and returns what the user must be
    /// told (empty normally).
    /// </summary>
    public IReadOnlyList<string> RestoreEngineState()
    {
        var ctx = _processReads;
        if (ctx is null) return Array.Empty<string>();
        try { ctx.Restore(); } catch { }
        if (ctx.ConsumedInterrupt) _interrupted = true; // EndCommand then keeps nothing learnt during this command
        return ctx.Messages;
    }

    public ulong? SearchVirtual(ulong start, ulong length, ReadOnlySpan<byte> pattern)
    {
        using var _ = EngineProfile.Time("search", $"{length:N0} bytes at {start:x}");
        var data = _s.Data;
        if (data is null || pattern.IsEmpty || length == 0) return null;
        try
        {
            ulong match = 0;
            int hr;
            fixed (byte* p = pattern) hr = data.SearchVirtual(start, length, p, (uint)pattern.Length, 1, &match);
            return hr == DbgEngConst.S_OK ? match : null;
        }
        catch { return null; }
    }

    // ---------------- symbols ----------------

    public ulong? GetSymbolAddress(string qualifiedName)
    {
        if (EngineSessionCache.TryGetSymbol(qualifiedName, out var cached)) return cached;
        // While a Ctrl+Break is pending the engine fails every lookup (~40 ms each on big PDBs): not asked, not cached.
        if (IsInterruptRequested) return null;
        var a = LookUpSymbol(qualifiedName);
        if (_s.Symbols is not null) EngineSessionCache.PutSymbol(qualifiedName, a);
        return a;
    }

    /// <summary>A symbol's address: GetOffsetByName, or, when turned on (<see cref="SymbolIndexAfter"/>), the module's
    /// index: one enumeration of <c>module!*</c> per session, then every name of that module is a dictionary hit. A name
    /// the index does not hold is still asked the engine's way, so nothing the engine resolves is lost; an index that
    /// could not be completed (interrupt, cap) is not kept.</summary>
    private ulong? LookUpSymbol(string qualifiedName)
    {
        int bang = qualifiedName.IndexOf('!');
        if (bang > 0 && bang < qualifiedName.Length - 1 && qualifiedName.IndexOfAny(['*', '?', ' ', '+']) < 0)
        {
            string module = qualifiedName[..bang], name = qualifiedName[(bang + 1)..];
            var index = EngineSessionCache.SymbolIndex(module);
            if (index is null && EngineSessionCache.CountDirectLookup(module) > SymbolIndexAfter) index = BuildSymbolIndex(module);
            if (index is not null && index.TryGetValue(name, out var hit)) return hit;
            if (NameLookup != NameLookupMode.Engine && LookUpThroughDataModel(qualifiedName, module, name, out var answer))
            {
                if (NameLookup == NameLookupMode.Check) CheckAgainstEngine(qualifiedName, answer);
                return answer;
            }
        }
        return LookUpSymbolByName(qualifiedName);
    }

    internal enum NameLookupMode { DataModel, Engine, Check }

    /// <summary>NTSLEUTH_NAME_LOOKUP: unset = the data model first (<see cref="HostSymbolLookup"/>), the engine's
    /// GetOffsetByName only where the data model cannot answer for sure; <c>engine</c> = GetOffsetByName for every name
    /// (as before); <c>check</c> = the data model's answers, each also asked through GetOffsetByName, a difference
    /// reported in the profile (NTSLEUTH_PROFILE) as "name-check MISMATCH" (real-engine test).</summary>
    internal static readonly NameLookupMode NameLookup = Environment.GetEnvironmentVariable("NTSLEUTH_NAME_LOOKUP")?.Trim().ToLowerInvariant() switch
    {
        "engine" => NameLookupMode.Engine,
        "check" => NameLookupMode.Check,
        _ => NameLookupMode.DataModel,
    };

    /// <summary>
    /// The data model's answer when it is certain: an address it found, or a miss where a miss is final: a 64-bit target
    /// (no decorated C names), a plain C identifier, and a module whose symbols come from a PDB (its hashed name tables
    /// hold every public and global; FindSymbolByName is exact and case-sensitive, as the names the commands ask are).
    /// Anything else (no data model, export or COFF symbols, a 32-bit target's decorated names) goes to the engine.
    /// </summary>
    private bool LookUpThroughDataModel(string qualifiedName, string module, string name, out ulong? answer)
    {
        answer = null;
        if (!HasSymbols(module)) return false; // loads deferred symbols the engine's way; none: the engine's lookup decides
        HostSymbolLookup.Outcome outcome;
        ulong address;
        using (EngineProfile.Time("dm-symbol", qualifiedName))
            outcome = HostSymbolLookup.Find(_s.RawClient, module, name, out address);
        if (outcome == HostSymbolLookup.Outcome.Found) { answer = address; return true; }
        if (outcome == HostSymbolLookup.Outcome.NotFound && MissIsFinal(module, name)) return true;
        return false;
    }

    private bool MissIsFinal(string module, string name) =>
        Info.PointerSize == 8 && IsPlainIdentifier(name)
        && EngineSessionCache.TryGetSymbolType(module, out uint t) && t is DebugSymTypePdb or DebugSymTypeDia;

    private const uint DebugSymTypePdb = 3, DebugSymTypeDia = 7;

    internal static bool IsPlainIdentifier(string name)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] == '_')) return false;
        foreach (char c in name) if (!(char.IsAsciiLetterOrDigit(c) || c == '_')) return false;
        return true;
    }

    private void CheckAgainstEngine(string qualifiedName, ulong? dataModel)
    {
        var engine = LookUpSymbolByName(qualifiedName, "name-check");
        if (engine != dataModel)
            EngineProfile.Report($"name-check MISMATCH {qualifiedName}: data model {(dataModel is { } d ? $"{d:x}" : "none")}, GetOffsetByName {(engine is { } e ? $"{e:x}" : "none")}");
    }

    /// <summary>Direct lookups in a module (per session) before its index is built. Off by default: names go through the
    /// data model's hashed lookup (<see cref="HostSymbolLookup"/>, ~0.05 ms a name), which no enumeration beats (one of
    /// 40,000 publics costs ~290 ms). NTSLEUTH_SYMBOL_INDEX_AFTER=N still turns it on (0 = at once); it then answers
    /// before the data model (docs/bench.md, "First runs").</summary>
    internal static readonly int SymbolIndexAfter =
        int.TryParse(Environment.GetEnvironmentVariable("NTSLEUTH_SYMBOL_INDEX_AFTER"), out int n) && n >= 0 ? n : int.MaxValue;

    /// <summary>Upper bound of an index (a kernel PDB has ~40,000-60,000 publics; a big user-mode module more).</summary>
    internal const int SymbolIndexCap = 400_000;

    private Dictionary<string, ulong>? BuildSymbolIndex(string module)
    {
        var sym = _s.Symbols;
        if (sym is null || !HasSymbols(module)) return null;
        using var _ = EngineProfile.Time("sym-index", module);
        ulong handle = 0;
        var index = new Dictionary<string, ulong>(StringComparer.Ordinal);
        try
        {
            int hr;
            fixed (byte* pat = Ansi(module + "!*")) hr = sym.StartSymbolMatch(pat, &handle);
            if (hr != DbgEngConst.S_OK) return null;
            var buf = new byte[1024];
            int prefix = module.Length + 1;
            for (int n = 0; ; n++)
            {
                if (n >= SymbolIndexCap || ((n & 0xFFF) == 0xFFF && IsInterruptRequested)) return null;
                uint size = 0; ulong off = 0;
                fixed (byte* b = buf) hr = sym.GetNextSymbolMatch(handle, b, (uint)buf.Length, &size, &off);
                if (hr == DbgEngConst.S_FALSE) continue; // name longer than the buffer: never one we ask for
                if (hr != DbgEngConst.S_OK) break;       // E_NOINTERFACE: no more matches
                string name = FromAnsi(buf, size);
                int bang = name.IndexOf('!');
                string shortName = bang >= 0 ? name[(bang + 1)..] : name;
                if (bang >= 0 && bang != prefix - 1) continue;
                index.TryAdd(shortName, off);
            }
        }
        catch { return null; }
        finally
        {
            try { if (handle != 0) sym.EndSymbolMatch(handle); } catch { }
        }
        EngineSessionCache.PutSymbolIndex(module, index);
        return index;
    }

    private ulong? LookUpSymbolByName(string qualifiedName, string profileKind = "symbol")
    {
        using var _ = EngineProfile.Time(profileKind, qualifiedName);
        var sym = _s.Symbols;
        if (sym is null) return null;
        try
        {
            ulong off = 0;
            fixed (byte* n = Ansi(qualifiedName))
            {
                int hr = sym.GetOffsetByName(n, &off);
                return hr == DbgEngConst.S_OK || hr == DbgEngConst.S_FALSE ? off : null;
            }
        }
        catch { return null; }
    }

    public string? GetNameByAddress(ulong address, out ulong displacement)
    {
        using var _ = EngineProfile.Time("name", $"{address:x}");
        displacement = 0;
        var sym = _s.Symbols;
        if (sym is null) return null;
        try
        {
            var buf = new byte[1024];
            uint size = 0; ulong disp = 0;
            int hr;
            fixed (byte* b = buf) hr = sym.GetNameByOffset(address, b, (uint)buf.Length, &size, &disp);
            if (hr < 0) return null;
            displacement = disp;
            return FromAnsi(buf, size);
        }
        catch { return null; }
    }

    public TypeLayout? GetTypeLayout(string module, string typeName)
    {
        try
        {
            string qualified = $"{module}!{typeName}";
            if (EngineSessionCache.TryGetLayout(qualified, out var cached)) return cached;
            if (IsInterruptRequested) return null; // the engine would fail it (see GetSymbolAddress); not cached

            // Without type symbols, asking the engine for a type prints a large "full symbol information" banner:
            // check the module's symbol state first and answer "unknown type" quietly.
            if (!HasSymbols(module)) { EngineSessionCache.PutLayout(qualified, null); return null; }
            var layout = EngineSessionCache.Builder.BuildLazy(module, typeName, EngineSessionCache.ModuleBase(module));
            EngineSessionCache.PutLayout(qualified, layout);
            return layout;
        }
        catch { return null; }
    }

    public bool HasSymbols(string module)
    {
        if (EngineSessionCache.TryGetHasSymbols(module, out bool known)) return known;
        bool has = QuerySymbolState(module);
        if (_s.Symbols is not null) EngineSessionCache.PutHasSymbols(module, has);
        return has;
    }

    /// <summary>
    /// The module's symbol type (DEBUG_MODULE_PARAMETERS.SymbolType). A deferred module is loaded the engine's own
    /// way, by a lookup that succeeds: the name at the module's base address (like <c>ln</c>), then asked again.
    /// </summary>
    private bool QuerySymbolState(string module)
    {
        using var _ = EngineProfile.Time("symstate", module);
        var sym = _s.Symbols;
        if (sym is null) return false;
        try
        {
            for (int attempt = 0; attempt < 2; attempt++)
            {
                uint index = 0; ulong b = 0;
                int hr;
                fixed (byte* n = Ansi(module)) hr = sym.GetModuleByModuleName(n, 0, &index, &b);
                if (hr < 0) return false;
                DEBUG_MODULE_PARAMETERS mp = default;
                if (sym.GetModuleParameters(1, &b, 0, &mp) < 0) return false;
                EngineSessionCache.PutModuleBase(module, b);
                EngineSessionCache.PutSymbolType(module, mp.SymbolType);
                switch (mp.SymbolType)
                {
                    case 1: case 2: case 3: case 6: case 7: return true;
                    case 5 when attempt == 0: // deferred: an address lookup in the module makes the engine load its symbols
                        var name = new byte[256];
                        uint size = 0; ulong disp = 0;
                        fixed (byte* buf = name) sym.GetNameByOffset(b, buf, (uint)name.Length, &size, &disp);
                        continue;
                    default: return false;
                }
            }
            return false;
        }
        catch { return false; }
    }

    // ---------------- modules, evaluation, stack, interrupt ----------------

    /// <summary>Results kept for the session, dropped with the session cache (module/symbol/target changes, interrupts).</summary>
    public SessionStore? Session => EngineSessionCache.Store;

    public IReadOnlyList<ModuleInfo> GetModules()
    {
        using var _ = EngineProfile.Time("modules");
        var sym = _s.Symbols;
        var list = new List<ModuleInfo>();
        if (sym is null) return list;
        try
        {
            uint loaded = 0, unloaded = 0;
            if (sym.GetNumberModules(&loaded, &unloaded) < 0 || loaded == 0) return list;
            loaded = Math.Min(loaded, 100_000u);
            var ps = new DEBUG_MODULE_PARAMETERS[loaded];
            fixed (DEBUG_MODULE_PARAMETERS* pp = ps)
                if (sym.GetModuleParameters(loaded, null, 0, pp) < 0) return list;
            var img = new byte[1024]; var mod = new byte[256];
            for (uint i = 0; i < loaded; i++)
            {
                if (ps[i].Base == 0 && ps[i].Size == 0) continue;
                uint imgSize = 0, modSize = 0;
                int hr;
                fixed (byte* pi = img) fixed (byte* pm = mod)
                    hr = sym.GetModuleNames(i, 0, pi, (uint)img.Length, &imgSize, pm, (uint)mod.Length, &modSize, null, 0, null);
                string name = hr >= 0 ? FromAnsi(mod, modSize) : $"module_{ps[i].Base:x}";
                string? path = hr >= 0 ? FromAnsi(img, imgSize) : null;
                list.Add(new ModuleInfo(name, ps[i].Base, ps[i].Size, string.IsNullOrEmpty(path) ? null : path, ps[i].TimeDateStamp));
            }
        }
        catch { /* partial list */ }
        return list;
    }

    public bool TryEvaluate(string expression, out ulong value, out string? error)
    {
        using var _ = EngineProfile.Time("evaluate", expression);
        value = 0; error = null;
        var ctl = _s.Control;
        if (ctl is null) { error = "the engine's IDebugControl is not available"; return false; }
        try
        {
            DEBUG_VALUE v = default;
            uint rem = 0;
            int hr;
            byte[] expr = Ansi(expression);
            fixed (byte* e = expr) hr = ctl.Evaluate(e, DbgEngConst.DEBUG_VALUE_INT64, &v, &rem);
            if (hr < 0) { error = $"cannot evaluate '{expression}' (0x{hr:X8})"; return false; }
            if (rem < expr.Length - 1 && expression[(int)rem..].Trim().Length > 0)
            {
                error = $"cannot evaluate '{expression}': unexpected text at '{expression[(int)rem..].Trim()}'";
                return false;
            }
            value = v.I64;
            return true;
        }
        catch (Exception ex) { error = $"cannot evaluate '{expression}': {ex.Message}"; return false; }
    }

    public IReadOnlyList<StackFrameInfo> GetCurrentStack(int maxFrames)
    {
        using var _ = EngineProfile.Time("stack");
        var ctl = _s.Control;
        var list = new List<StackFrameInfo>();
        if (ctl is null || maxFrames <= 0) return list;
        try
        {
            var frames = new DEBUG_STACK_FRAME[Math.Min(maxFrames, 1024)];
            uint filled = 0;
            int hr;
            fixed (DEBUG_STACK_FRAME* f = frames) hr = ctl.GetStackTrace(0, 0, 0, f, (uint)frames.Length, &filled);
            if (hr < 0) return list;
            for (int i = 0; i < filled && i < frames.Length; i++)
                list.Add(new StackFrameInfo(frames[i].InstructionOffset, frames[i].ReturnOffset, frames[i].StackOffset, frames[i].FrameOffset));
        }
        catch { }
        return list;
    }

    /// <summary>
    /// Every thread's stack (user mode: the process's threads; kernel dumps: the engine's per-processor threads):
    /// switches the engine's current thread for each and restores it afterwards.
    /// </summary>
    public IReadOnlyList<ThreadStack> GetThreadStacks(int maxFrames)
    {
        var result = new List<ThreadStack>();
        var so = _s.System;
        if (so is null || maxFrames <= 0) return result;
        uint saved = 0, count = 0;
        try
        {
            if (so.GetCurrentThreadId(&saved) < 0 || so.GetNumberThreads(&count) < 0 || count == 0) return result;
            count = Math.Min(count, 4096u);
            var ids = new uint[count];
            var sys = new uint[count];
            fixed (uint* pi = ids) fixed (uint* ps = sys)
                if (so.GetThreadIdsByIndex(0, count, pi, ps) < 0) return result;
            for (int i = 0; i < count; i++)
            {
                if (IsInterruptRequested) break;
                if (so.SetCurrentThreadId(ids[i]) < 0) continue;
                ulong teb = 0;
                if (so.GetCurrentThreadTeb(&teb) < 0 || teb == 0) so.GetCurrentThreadDataOffset(&teb);
                result.Add(new ThreadStack(sys[i], teb, GetCurrentStack(maxFrames)));
            }
        }
        catch { }
        finally
        {
            try { so.SetCurrentThreadId(saved); } catch { }
        }
        return result;
    }

    /// <summary>GetInterrupt clears the engine's flag when it reports it, so the answer is sticky for this command.</summary>
    public bool IsInterruptRequested
    {
        get
        {
            if (_interrupted) return true;
            try { if (_s.Control?.GetInterrupt() == DbgEngConst.S_OK) _interrupted = true; } catch { }
            return _interrupted;
        }
    }

    // ---------------- debuggee facts ----------------

    private TargetInfo QueryInfo()
    {
        var ctl = _s.Control;
        if (ctl is null) return new TargetInfo();
        uint* u = stackalloc uint[10];
        new Span<uint>(u, 10).Clear();
        bool haveType = Ok(() => ctl.GetDebuggeeType(&u[0], &u[1]));
        int ptr = Ok(() => ctl.IsPointer64Bit()) ? 8 : 4;
        Ok(() => ctl.GetNumberProcessors(&u[2]));
        bool haveTime = Ok(() => ctl.GetCurrentTimeDate(&u[3])) && u[3] != 0;
        bool haveUp = Ok(() => ctl.GetCurrentSystemUpTime(&u[4]));
        Ok(() => ctl.GetSystemVersion(&u[5], &u[6], &u[7], null, 0, null, &u[8], null, 0, null));
        uint cls = u[0], qual = u[1], procs = u[2], time = u[3], up = u[4], minor = u[7];

        bool kernel = haveType && cls == DbgEngConst.DEBUG_CLASS_KERNEL;
        bool dump = haveType && qual >= DbgEngConst.DEBUG_DUMP_SMALL && qual <= DbgEngConst.DEBUG_DUMP_ACTIVE;

        BugCheckInfo? bug = null;
        if (kernel)
        {
            ulong* a = stackalloc ulong[5];
            new Span<ulong>(a, 5).Clear();
            if (Ok(() => ctl.ReadBugCheckData((uint*)&a[0], &a[1], &a[2], &a[3], &a[4])) && (uint)a[0] != 0)
                bug = new BugCheckInfo((uint)a[0], a[1], a[2], a[3], a[4]);
        }
        int eventProc = -1;
        if (kernel && _s.System is { } so)
        {
            uint* id = stackalloc uint[1];
            *id = 0;
            if (Ok(() => so.GetEventThread(id))) eventProc = (int)*id;
        }
        return new TargetInfo
        {
            Kind = kernel ? TargetKind.Kernel : TargetKind.User,
            IsDump = dump,
            PointerSize = ptr,
            BuildNumber = (int)minor,
            ProcessorCount = (int)Math.Max(1, procs),
            EventProcessor = eventProc,
            SystemTimeUtc = haveTime ? DateTime.UnixEpoch.AddSeconds(time) : null,
            SystemUpTime = haveUp && up != 0 ? TimeSpan.FromSeconds(up) : null,
            BugCheck = bug,
            Description = (kernel ? "kernel" : "user") + (dump ? DumpKind(qual) : " live") + $" (class {cls}, qualifier {qual})",
        };
    }

    private static string DumpKind(uint qual) => qual switch
    {
        1024 => " minidump",
        1025 => " dump",
        1026 => " full dump",
        1030 => " active dump",
        _ => " dump",
    };

    private delegate int EngineCall();
    /// <summary>Runs one engine call; true when it returned S_OK. Never throws.</summary>
    private static bool Ok(EngineCall call)
    {
        try { return call() == DbgEngConst.S_OK; } catch { return false; }
    }

    internal static byte[] Ansi(string s)
    {
        var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }

    /// <summary>Decodes an engine string; <paramref name="sizeWithNul"/> includes the terminator when reported.</summary>
    internal static string FromAnsi(byte[] buf, uint sizeWithNul)
    {
        int n = (int)Math.Min(sizeWithNul, (uint)buf.Length);
        int z = Array.IndexOf(buf, (byte)0, 0, n);
        if (z >= 0) n = z;
        return Encoding.UTF8.GetString(buf, 0, n);
    }
}

/// <summary>
/// Partial-read semantics over an engine read that may fail for a whole range when any page is unreadable:
/// one request for the whole range; when it fails or comes back short, the readable prefix is found page by page.
/// </summary>
internal static class PartialRead
{
    public const int PageSize = 0x1000;

    /// <summary>Reads [address, address+length). <paramref name="read"/>(addr, bufferOffset, len) returns bytes read or -1.</summary>
    public static int Read(ulong address, int length, Func<ulong, int, int, int> read)
    {
        if (length <= 0) return 0;
        int got = read(address, 0, length);
        if (got == length) return length;
        int done = Math.Max(0, got);
        // Short or failed: continue from the first unread byte, one page piece at a time.
        while (done < length)
        {
            ulong a = address + (ulong)done;
            int toPageEnd = PageSize - (int)(a & (PageSize - 1));
            int len = Math.Min(toPageEnd, length - done);
            int n = read(a, done, len);
            if (n <= 0) break;
            done += n;
            if (n < len) break;
        }
        return done;
    }
}
