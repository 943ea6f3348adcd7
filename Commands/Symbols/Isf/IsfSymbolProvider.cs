namespace NtSleuth.Commands.Symbols.Isf;

/// <summary>
/// Serves symbols and type layouts from ISF symbol tables, one per module ("nt", "ndis", ...) at a load address.
/// Used by the lab's in-memory kernels and usable offline.
/// </summary>
public sealed class IsfSymbolProvider : ISymbolProvider
{
    private readonly Dictionary<string, (IsfDocument Doc, ulong Base)> _modules = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, TypeLayout?> _layouts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ulong> _extraSymbols = new(StringComparer.OrdinalIgnoreCase);
    private List<(ulong Address, string Name)>? _sorted;

    public IsfSymbolProvider Add(string module, IsfDocument doc, ulong imageBase)
    {
        _modules[module] = (doc, imageBase);
        _sorted = null;
        return this;
    }

    /// <summary>Adds a symbol not in the table (e.g. functions of a synthetic driver): "ECHO!EchoEvtTimerFunc".</summary>
    public IsfSymbolProvider AddSymbol(string qualifiedName, ulong address)
    {
        _extraSymbols[qualifiedName] = address;
        _sorted = null;
        return this;
    }

    public IReadOnlyDictionary<string, (IsfDocument Doc, ulong Base)> Modules => _modules;

    /// <summary>The symbols added with <see cref="AddSymbol"/> ("module!name" -> address).</summary>
    public IReadOnlyDictionary<string, ulong> ExtraSymbols => _extraSymbols;

    public ulong? GetSymbolAddress(string qualifiedName)
    {
        if (_extraSymbols.TryGetValue(qualifiedName, out var x)) return x;
        var (mod, name) = Split(qualifiedName);
        if (mod is null)
        {
            foreach (var (m, (d, b)) in _modules)
                if (d.Symbols.TryGetValue(name, out var rva0)) return b + rva0;
            return null;
        }
        if (!_modules.TryGetValue(mod, out var e)) return null;
        return e.Doc.Symbols.TryGetValue(name, out var rva) ? e.Base + rva : null;
    }

    public string? GetNameByAddress(ulong address, out ulong displacement)
    {
        displacement = 0;
        _sorted ??= BuildSorted();
        int lo = 0, hi = _sorted.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_sorted[mid].Address <= address) { found = mid; lo = mid + 1; } else hi = mid - 1;
        }
        if (found < 0) return null;
        displacement = address - _sorted[found].Address;
        return _sorted[found].Name;
    }

    public TypeLayout? GetTypeLayout(string module, string typeName)
    {
        string key = module + "!" + typeName;
        if (_layouts.TryGetValue(key, out var l)) return l;
        l = _modules.TryGetValue(module, out var e) ? e.Doc.ToLayout(module, typeName) : null;
        _layouts[key] = l;
        return l;
    }

    public bool HasSymbols(string module) => _modules.ContainsKey(module);

    private List<(ulong, string)> BuildSorted()
    {
        var list = new List<(ulong, string)>();
        foreach (var (m, (d, b)) in _modules)
            foreach (var (n, rva) in d.Symbols)
                if (!n.StartsWith("$$", StringComparison.Ordinal)) list.Add((b + rva, m + "!" + n));
        foreach (var (n, a) in _extraSymbols) list.Add((a, n));
        list.Sort((p, q) => p.Item1.CompareTo(q.Item1));
        return list;
    }

    private static (string? Module, string Name) Split(string q)
    {
        int i = q.IndexOf('!');
        return i < 0 ? (null, q) : (q[..i], q[(i + 1)..]);
    }
}
