using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Model;

/// <summary>Caches type layouts and symbol addresses for one command run; throws clear errors for missing ones.</summary>
public sealed class TypeCache
{
    private readonly ISymbolProvider _symbols;
    private readonly Dictionary<string, TypeLayout?> _types = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ulong?> _syms = new(StringComparer.OrdinalIgnoreCase);

    public TypeCache(ISymbolProvider symbols) => _symbols = symbols;

    public ISymbolProvider Symbols => _symbols;

    /// <summary>"nt!_KTHREAD" or ("nt", "_KTHREAD").</summary>
    public TypeLayout? TryGet(string module, string type)
    {
        string key = module + "!" + type;
        if (!_types.TryGetValue(key, out var t))
        {
            try { t = _symbols.GetTypeLayout(module, type); } catch (OperationCanceledException) { throw; } catch (Exception) { t = null; }
            _types[key] = t;
        }
        return t;
    }

    public TypeLayout Get(string module, string type) =>
        TryGet(module, type) ?? throw new MissingSymbolException($"type {module}!{type}", module);

    public ulong? TrySymbol(string qualifiedName)
    {
        if (!_syms.TryGetValue(qualifiedName, out var a))
        {
            try { a = _symbols.GetSymbolAddress(qualifiedName); } catch (Exception) { a = null; }
            _syms[qualifiedName] = a;
        }
        return a;
    }

    public ulong Symbol(string qualifiedName)
    {
        var a = TrySymbol(qualifiedName);
        if (a is null)
        {
            int bang = qualifiedName.IndexOf('!');
            throw new MissingSymbolException($"symbol {qualifiedName}", bang > 0 ? qualifiedName[..bang] : "nt");
        }
        return a.Value;
    }

    /// <summary>Resolves a dotted field path ("Tcb.WaitReason") to its absolute offset and type.</summary>
    public (ulong Offset, TypeRef Type)? TryResolvePath(TypeLayout layout, string path)
    {
        if (layout.ResolvesPaths && path.Contains('.'))
            return layout.TryGetPath(path) is { } pf ? (pf.Offset, pf.Type) : null;
        ulong off = 0;
        var cur = layout;
        TypeRef? type = null;
        var parts = path.Split('.');
        for (int i = 0; i < parts.Length; i++)
        {
            if (cur is null) return null;
            var f = cur.TryGetField(parts[i]);
            if (f is null) return null;
            off += f.Offset;
            type = f.Type;
            if (i < parts.Length - 1)
            {
                if (type.Kind is not (TypeKind.Struct or TypeKind.Union)) return null;
                cur = TryGet(layout.Module, type.Name);
            }
        }
        return type is null ? null : (off, type);
    }

    public (ulong Offset, TypeRef Type) ResolvePath(TypeLayout layout, string path) =>
        TryResolvePath(layout, path) ?? throw new MissingSymbolException($"field {layout.Module}!{layout.Name}.{path}", layout.Module);

    public ulong FieldOffset(string module, string type, string path) => ResolvePath(Get(module, type), path).Offset;
}
