using NtSleuth.Commands.Symbols;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>
/// Type layouts, symbol addresses and module symbol states kept for the debugger session (across commands), so a
/// command pays for a type or symbol once, not on every run. Dropped when what they were derived from changes:
/// <list type="bullet">
/// <item>the shim forwards DebugExtensionNotify: a session that becomes active or inactive drops everything;</item>
/// <item>every command starts by comparing the engine's module list (one GetNumberModules + one GetModuleParameters:
///   bases, sizes, timestamps, checksums, symbol types) with the list seen when the last command ended: a module
///   loaded, unloaded or replaced, or a module whose symbols were unloaded (.reload makes them deferred again) drops
///   everything; a module whose symbols got loaded since (e.g. by <c>k</c>) drops only the remembered misses.</item>
/// </list>
/// Engine questions for lazily resolved fields go to the interfaces of the command that asks (<see cref="Queries"/>).
/// All access is on the engine's command thread; the lock only guards against an engine calling Notify elsewhere.
/// </summary>
internal static unsafe class EngineSessionCache
{
    private static readonly object Lock = new();
    private static ModuleState[]? _modules;
    private static int _generation;

    public static readonly SessionTypeQueries Queries = new();
    private static TypeLayoutBuilder _builder = new(Queries, () => Queries.Host);
    private static readonly Dictionary<string, TypeLayout?> Layouts = new(StringComparer.Ordinal);
    private static readonly Dictionary<string, ulong?> SymbolAddresses = new(StringComparer.Ordinal);
    private static readonly Dictionary<string, bool> HasSymbolsByModule = new(StringComparer.OrdinalIgnoreCase);
    private static readonly Dictionary<string, ulong> ModuleBases = new(StringComparer.OrdinalIgnoreCase);
    private static readonly Dictionary<string, uint> SymbolTypes = new(StringComparer.OrdinalIgnoreCase);
    private static readonly Dictionary<string, Dictionary<string, ulong>> SymbolIndexes = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Results commands keep for the session (ITarget.Session: !leaktag's module searches on a dump), dropped
    /// with everything else.</summary>
    public static readonly NtSleuth.Commands.Target.SessionStore Store = new();

    /// <summary>Bumped every time the cache is dropped (tests and !help -diag show it).</summary>
    public static int Generation { get { lock (Lock) return _generation; } }

    public static TypeLayoutBuilder Builder { get { lock (Lock) return _builder; } }

    private readonly record struct ModuleState(ulong Base, uint Size, uint TimeDateStamp, uint Checksum, uint SymbolType);

    // DEBUG_SYMTYPE_*: NONE 0, COFF 1, CODEVIEW 2, PDB 3, EXPORT 4, DEFERRED 5, SYM 6, DIA 7.
    private static bool Loaded(uint symbolType) => symbolType is 1 or 2 or 3 or 6 or 7;

    /// <summary>DebugExtensionNotify (forwarded by the shim): DEBUG_NOTIFY_SESSION_ACTIVE 0 / INACTIVE 1 drop everything.</summary>
    public static void OnNotify(uint notify)
    {
        if (notify is 0 or 1 or ExtensionUnloaded) Clear();
    }

    /// <summary>Sent by the shim's DebugExtensionUninitialize (.unload, or the engine's EndSession before another
    /// dump is opened in the same process): the cache lives only while the extension is loaded.</summary>
    public const uint ExtensionUnloaded = 0xFFFFFFFF;

    public static void Clear()
    {
        lock (Lock)
        {
            ClearUnlocked(); // the type layout builder too (its per-type descriptions)
            _modules = null;
        }
    }

    /// <summary>Start of a command: bind the engine questions to this command's interfaces, validate against the modules.</summary>
    /// <returns>The questions of the command this one runs inside (an engine command that calls back into the
    /// extension), given back to <see cref="End"/>.</returns>
    public static OuterQueries Begin(DbgEngSession session, Func<int> pointerSize)
    {
        var outer = new OuterQueries(Queries.Inner, Queries.Host);
        Queries.Inner = new DbgEngTypeQueries(session, pointerSize);
        Queries.Host = new DataModelTypes(session.RawClient, pointerSize);
        var now = Snapshot(session);
        lock (Lock)
        {
            var before = _modules;
            if (now is null) { ClearUnlocked(); return outer; }
            if (before is null) { if (Layouts.Count + SymbolAddresses.Count + HasSymbolsByModule.Count + Store.Count > 0) ClearUnlocked(); return outer; }
            if (before.Length != now.Length) { ClearUnlocked(); return outer; }
            bool newlyLoaded = false;
            for (int i = 0; i < now.Length; i++)
            {
                var (a, b) = (before[i], now[i]);
                if (a.Base != b.Base || a.Size != b.Size || a.TimeDateStamp != b.TimeDateStamp || a.Checksum != b.Checksum)
                { ClearUnlocked(); return outer; }
                if (Loaded(a.SymbolType) && !Loaded(b.SymbolType)) { ClearUnlocked(); return outer; } // symbols unloaded/reloaded
                if (!Loaded(a.SymbolType) && Loaded(b.SymbolType)) newlyLoaded = true;
            }
            if (newlyLoaded) DropMisses();
        }
        return outer;
    }

    /// <summary>End of a command: remember the module list as this command leaves it (its own symbol loads included).</summary>
    /// <param name="discard">true when the command was interrupted: everything cached may hold answers the engine
    /// refused because of the pending interrupt, so the cache starts over.</param>
    public static void End(DbgEngSession session, OuterQueries outer, bool discard = false)
    {
        var now = Snapshot(session);
        lock (Lock)
        {
            _modules = now;
            if (discard) ClearUnlocked();
        }
        (Queries.Host as IDisposable)?.Dispose(); // the data model references this command took
        Queries.Inner = outer.Queries;
        Queries.Host = outer.Host;
    }

    private static void ClearUnlocked()
    {
        Layouts.Clear();
        SymbolAddresses.Clear();
        HasSymbolsByModule.Clear();
        ModuleBases.Clear();
        SymbolTypes.Clear();
        SymbolIndexes.Clear();
        DirectLookups.Clear();
        Store.Clear();
        _builder = new TypeLayoutBuilder(Queries, () => Queries.Host);
        _generation++;
    }

    private static void DropMisses()
    {
        foreach (var k in Layouts.Where(kv => kv.Value is null).Select(kv => kv.Key).ToList()) Layouts.Remove(k);
        foreach (var k in SymbolAddresses.Where(kv => kv.Value is null).Select(kv => kv.Key).ToList()) SymbolAddresses.Remove(k);
        foreach (var k in HasSymbolsByModule.Where(kv => !kv.Value).Select(kv => kv.Key).ToList()) { HasSymbolsByModule.Remove(k); SymbolTypes.Remove(k); }
        SymbolIndexes.Clear(); // built while some module had no symbols: may be short
    }

    private static ModuleState[]? Snapshot(DbgEngSession session)
    {
        var sym = session.Symbols;
        if (sym is null) return null;
        try
        {
            uint loaded = 0, unloaded = 0;
            if (sym.GetNumberModules(&loaded, &unloaded) < 0) return null;
            loaded = Math.Min(loaded, 100_000u);
            if (loaded == 0) return [];
            var ps = new DEBUG_MODULE_PARAMETERS[loaded];
            fixed (DEBUG_MODULE_PARAMETERS* pp = ps)
                if (sym.GetModuleParameters(loaded, null, 0, pp) < 0) return null;
            var r = new ModuleState[loaded];
            for (int i = 0; i < loaded; i++)
                r[i] = new ModuleState(ps[i].Base, ps[i].Size, ps[i].TimeDateStamp, ps[i].Checksum, ps[i].SymbolType);
            return r;
        }
        catch { return null; }
    }

    public static bool TryGetLayout(string key, out TypeLayout? layout) { lock (Lock) return Layouts.TryGetValue(key, out layout); }
    public static void PutLayout(string key, TypeLayout? layout) { lock (Lock) Layouts[key] = layout; }
    public static bool TryGetSymbol(string name, out ulong? address) { lock (Lock) return SymbolAddresses.TryGetValue(name, out address); }
    public static void PutSymbol(string name, ulong? address) { lock (Lock) SymbolAddresses[name] = address; }
    public static bool TryGetHasSymbols(string module, out bool has) { lock (Lock) return HasSymbolsByModule.TryGetValue(module, out has); }
    public static void PutHasSymbols(string module, bool has) { lock (Lock) HasSymbolsByModule[module] = has; }
    /// <summary>Entries held (for <c>!help -mem</c>): layouts, symbol addresses, module symbol states, module bases.</summary>
    public static (int Layouts, int Symbols, int SymbolStates, int ModuleBases) Counts
    {
        get { lock (Lock) return (Layouts.Count, SymbolAddresses.Count, HasSymbolsByModule.Count, ModuleBases.Count); }
    }

    /// <summary>A module's symbol index (name -> address, every symbol the engine enumerates for <c>module!*</c>), built
    /// once per session by <see cref="DbgEngTarget"/>; null when not built yet.</summary>
    public static Dictionary<string, ulong>? SymbolIndex(string module) { lock (Lock) return SymbolIndexes.TryGetValue(module, out var d) ? d : null; }
    public static void PutSymbolIndex(string module, Dictionary<string, ulong> index) { lock (Lock) SymbolIndexes[module] = index; }

    private static readonly Dictionary<string, int> DirectLookups = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Counts a lookup of a module's symbol that is not in the session cache; returns the count so far this session.</summary>
    public static int CountDirectLookup(string module)
    {
        lock (Lock) return DirectLookups[module] = (DirectLookups.TryGetValue(module, out int n) ? n : 0) + 1;
    }
    /// <summary>The module's DEBUG_SYMTYPE_* as the last symbol-state query saw it (after loading deferred symbols).</summary>
    public static bool TryGetSymbolType(string module, out uint type) { lock (Lock) return SymbolTypes.TryGetValue(module, out type); }
    public static void PutSymbolType(string module, uint type) { lock (Lock) SymbolTypes[module] = type; }
    public static ulong ModuleBase(string module) { lock (Lock) return ModuleBases.TryGetValue(module, out var b) ? b : 0; }
    public static void PutModuleBase(string module, ulong b) { lock (Lock) ModuleBases[module] = b; }
}

/// <summary>
/// The type questions of whichever command is running (layouts outlive a command; their lazy fields are resolved by
/// a later one). Outside a command every question fails, and a lazy layout then remembers nothing.
/// </summary>
internal sealed class SessionTypeQueries : ITypeQueries
{
    public ITypeQueries? Inner { get; set; }
    /// <summary>The running command's data-model type questions (null outside a command).</summary>
    public IHostTypes? Host { get; set; }

    private ITypeQueries Q => Inner ?? throw new InvalidOperationException("no debugger command is running");

    public int PointerSize => Q.PointerSize;
    public bool TryGetTypeId(string qualifiedName, out ulong moduleBase, out uint typeId) => Q.TryGetTypeId(qualifiedName, out moduleBase, out typeId);
    public bool TryGetTypeIdInModule(ulong moduleBase, string typeName, out uint typeId) => Q.TryGetTypeIdInModule(moduleBase, typeName, out typeId);
    public ulong GetTypeSize(ulong moduleBase, uint typeId) => Q.GetTypeSize(moduleBase, typeId);
    public string? GetTypeName(ulong moduleBase, uint typeId) => Q.GetTypeName(moduleBase, typeId);
    public string? GetFieldName(ulong moduleBase, uint typeId, uint index) => Q.GetFieldName(moduleBase, typeId, index);
    public bool TryGetFieldTypeAndOffset(ulong moduleBase, uint containerTypeId, string field, out uint fieldTypeId, out uint offset) =>
        Q.TryGetFieldTypeAndOffset(moduleBase, containerTypeId, field, out fieldTypeId, out offset);
    public IReadOnlyDictionary<string, (int Position, int Length)> GetBitfields(string qualifiedType, IReadOnlyList<string> fields) =>
        Q.GetBitfields(qualifiedType, fields);
}

/// <summary>The questions of the command that was running when a nested one began (handed back at its end).</summary>
internal readonly record struct OuterQueries(ITypeQueries? Queries, IHostTypes? Host);
