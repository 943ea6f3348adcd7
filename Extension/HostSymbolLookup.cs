using System.Runtime.InteropServices;

namespace NtSleuth.Extension;

/// <summary>
/// A symbol's address through the debugger data model: <c>IDebugHostSymbols::FindModuleByName</c>, then
/// <c>IDebugHostModule::FindSymbolByName</c> (what <c>dx &amp;nt!PoolTrackTable</c> does). It answers from the PDB's
/// hashed name tables (the publics' and globals' GSI hash): 0.01-0.06 ms a name, found or not, where
/// <c>IDebugSymbols::GetOffsetByName</c> costs ~36 ms on a 40,000-public kernel PDB whether the name exists or not
/// (msdia140 compares every public case-insensitively and undecorates every decorated one, on every call;
/// docs/bench.md "First runs"). Exact and case-sensitive: a name the data model does not find is a miss only where
/// that is certain (<see cref="DbgEngTarget"/> decides; otherwise the engine's own lookup is asked).
/// Raw vtable calls on the slots of dbgmodel.h's C++ layout (<see cref="Slots"/>, checked against the header by
/// Extension.Tests/Interop/DbgModelSymbolSlotsTests); every reference taken is released before returning.
/// </summary>
internal static unsafe class HostSymbolLookup
{
    public enum Outcome
    {
        /// <summary>The data model named the symbol and its virtual address.</summary>
        Found,
        /// <summary>The module is known and the data model says it has no symbol of that name (E_BOUNDS / not found).</summary>
        NotFound,
        /// <summary>No data model, module unknown to it, a symbol kind without a plain address, or a failure.</summary>
        Unavailable,
    }

    /// <summary>
    /// Vtable slots (IUnknown = 0-2) in the C++ layout the data model implements: a derived interface starts with all of
    /// its base's slots, IDebugHostSymbol's CompareAgainst (slot 9) included, although dbgmodel.h does not list that
    /// method again in IDebugHostModule/IDebugHostPublic/IDebugHostData. Read as C declarations the header would put
    /// FindSymbolByName at 14; the engine answers it at 15.
    /// </summary>
    internal static class Slots
    {
        public const int HostDataModelAccess_GetDataModel = 3;
        public const int DebugHost_GetCurrentContext = 4;
        public const int DebugHostSymbols_FindModuleByName = 7;
        public const int DebugHostSymbol_GetSymbolKind = 5;
        public const int DebugHostModule_FindSymbolByName = 15;
        public const int DebugHostPublic_GetLocation = 11;
        public const int DebugHostData_GetLocationKind = 10;
        public const int DebugHostData_GetLocation = 11;
    }

    internal static readonly Guid IID_IHostDataModelAccess = new("f2bce54e-4835-4f8a-836e-7981e29904d1");
    internal static readonly Guid IID_IDebugHostSymbols = new("854fd751-c2e1-4eb2-b525-6619cb97a588");
    internal static readonly Guid IID_IDebugHostPublic = new("6c597ac9-fb4d-4f6d-9f39-22488539f8f4");
    internal static readonly Guid IID_IDebugHostData = new("a3d64993-826c-44fa-897d-926f2fe7ad0b");

    // SymbolKind (dbgmodel.h): SymbolData 5, SymbolPublic 7. LocationKind: LocationStatic 1.
    private const int SymbolData = 5, SymbolPublic = 7, LocationStatic = 1;
    private const int E_BOUNDS = unchecked((int)0x8000000B), E_NOT_FOUND = unchecked((int)0x80070490);

    [StructLayout(LayoutKind.Sequential)]
    private struct Location
    {
        public ulong HostDefined;
        public ulong Offset;
    }

    private static void** Vt(void* p) => *(void***)p;

    private static void Release(void* p)
    {
        if (p != null) Marshal.Release((nint)p);
    }

    private static void* Query(void* p, Guid iid) =>
        p != null && Marshal.QueryInterface((nint)p, in iid, out var r) >= 0 ? (void*)r : null;

    /// <summary>Looks <paramref name="name"/> up in <paramref name="module"/> (a module name as the engine knows it,
    /// "nt" included). Never throws.</summary>
    public static Outcome Find(IntPtr client, string module, string name, out ulong address)
    {
        address = 0;
        if (client == IntPtr.Zero || module.Length == 0 || name.Length == 0) return Outcome.Unavailable;
        void* access = null, manager = null, host = null, symbols = null, context = null, mod = null, sym = null, typed = null;
        try
        {
            access = Query((void*)client, IID_IHostDataModelAccess);
            if (access == null) return Outcome.Unavailable;
            int hr = ((delegate* unmanaged[Stdcall]<void*, void**, void**, int>)Vt(access)[Slots.HostDataModelAccess_GetDataModel])(access, &manager, &host);
            if (hr < 0 || host == null) return Outcome.Unavailable;
            symbols = Query(host, IID_IDebugHostSymbols);
            if (symbols == null) return Outcome.Unavailable;
            hr = ((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(host)[Slots.DebugHost_GetCurrentContext])(host, &context);
            if (hr < 0 || context == null) return Outcome.Unavailable;
            fixed (char* m = module)
                hr = ((delegate* unmanaged[Stdcall]<void*, void*, char*, void**, int>)Vt(symbols)[Slots.DebugHostSymbols_FindModuleByName])(symbols, context, m, &mod);
            if (hr < 0 || mod == null) return Outcome.Unavailable;
            fixed (char* n = name)
                hr = ((delegate* unmanaged[Stdcall]<void*, char*, void**, int>)Vt(mod)[Slots.DebugHostModule_FindSymbolByName])(mod, n, &sym);
            if (hr is E_BOUNDS or E_NOT_FOUND) return Outcome.NotFound;
            if (hr < 0 || sym == null) return Outcome.Unavailable;
            int kind = -1;
            if (((delegate* unmanaged[Stdcall]<void*, int*, int>)Vt(sym)[Slots.DebugHostSymbol_GetSymbolKind])(sym, &kind) < 0) return Outcome.Unavailable;
            Location loc = default;
            if (kind == SymbolPublic)
            {
                typed = Query(sym, IID_IDebugHostPublic);
                if (typed == null) return Outcome.Unavailable;
                hr = ((delegate* unmanaged[Stdcall]<void*, Location*, int>)Vt(typed)[Slots.DebugHostPublic_GetLocation])(typed, &loc);
            }
            else if (kind == SymbolData)
            {
                typed = Query(sym, IID_IDebugHostData);
                if (typed == null) return Outcome.Unavailable;
                int lk = -1;
                hr = ((delegate* unmanaged[Stdcall]<void*, int*, int>)Vt(typed)[Slots.DebugHostData_GetLocationKind])(typed, &lk);
                if (hr < 0 || lk != LocationStatic) return Outcome.Unavailable;
                hr = ((delegate* unmanaged[Stdcall]<void*, Location*, int>)Vt(typed)[Slots.DebugHostData_GetLocation])(typed, &loc);
            }
            else return Outcome.Unavailable; // a function, constant, type...: the engine's own lookup answers those
            if (hr < 0 || loc.HostDefined != 0 || loc.Offset == 0) return Outcome.Unavailable;
            address = loc.Offset;
            return Outcome.Found;
        }
        catch { return Outcome.Unavailable; }
        finally
        {
            Release(typed); Release(sym); Release(mod); Release(context); Release(symbols); Release(host); Release(manager); Release(access);
        }
    }
}
