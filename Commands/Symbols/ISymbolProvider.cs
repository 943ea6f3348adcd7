namespace NtSleuth.Commands.Symbols;

/// <summary>Symbols and type layouts, resolved by name at run time.</summary>
public interface ISymbolProvider
{
    /// <summary>Address of a symbol, e.g. <c>nt!PoolTrackTable</c>; null when not found.</summary>
    ulong? GetSymbolAddress(string qualifiedName);

    /// <summary>Nearest symbol at or below <paramref name="address"/> (like <c>ln</c>): "ECHO!EchoEvtTimerFunc", displacement.</summary>
    string? GetNameByAddress(ulong address, out ulong displacement);

    /// <summary>Layout of <c>module!type</c> (e.g. module "nt", type "_KALPC_MESSAGE"); null when the type is unknown.</summary>
    TypeLayout? GetTypeLayout(string module, string typeName);

    /// <summary>True when the module has symbols loaded (types or publics). Used for "run .reload" messages.</summary>
    bool HasSymbols(string module);
}
