using System.Runtime.InteropServices;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Extension;

/// <summary>What the data model said about a type or field.</summary>
internal enum HostAnswer
{
    /// <summary>Answered.</summary>
    Found,
    /// <summary>The data model knows the container and says it has no such member / the module has no such type.</summary>
    NotFound,
    /// <summary>No data model, a failed call (an interrupt, a broken symbol file...): unknown now, ask again later.</summary>
    Unavailable,
}

/// <summary>
/// Type questions answered by the debugger data model (<c>IDebugHostModule::FindTypeByName</c>, then the type's
/// children): offsets, field types, bitfields and array bounds in one walk of in-process objects. Faked in tests.
/// Field paths may be dotted ("u1.s1.DataLength"): each step follows the field's own type object, never a type
/// name, so unnamed nested types ("&lt;anonymous-tag&gt;" in Microsoft's PDBs, one name for many types) resolve right.
/// </summary>
internal interface IHostTypes
{
    HostAnswer FindType(string module, string typeName, out ulong size);
    HostAnswer ResolveField(string module, string typeName, string path, out ulong offset, out TypeRef? type);
    /// <summary>Every data member of the type in declaration order (anonymous unions flattened, as the PDB lists
    /// them); null when the data model cannot answer now.</summary>
    IReadOnlyList<FieldLayout>? Fields(string module, string typeName);
}

/// <summary>
/// <see cref="IHostTypes"/> over dbgmodel.h, by raw vtable slot like <see cref="HostSymbolLookup"/> (slots checked
/// against the header by Extension.Tests/Interop/DbgModelSymbolSlotsTests). One instance per debugger command: it
/// keeps the module and type objects it found for that command and releases every reference in <see cref="Dispose"/>
/// (the command's end). Engine thread only. Never throws.
/// </summary>
internal sealed unsafe partial class DataModelTypes(IntPtr client, Func<int> pointerSize) : IHostTypes, IDisposable
{
    internal static class Slots
    {
        // IDebugHostSymbol (IUnknown 0-2)
        public const int Symbol_EnumerateChildren = 4;
        public const int Symbol_GetName = 6;
        public const int Symbol_GetType = 7;
        // IDebugHostModule : IDebugHostSymbol
        public const int Module_FindTypeByName = 13;
        // IDebugHostType : IDebugHostSymbol
        public const int Type_GetTypeKind = 10;
        public const int Type_GetSize = 11;
        public const int Type_GetBaseType = 12;
        public const int Type_GetIntrinsicType = 14;
        public const int Type_GetBitField = 15;
        public const int Type_GetArrayDimensionality = 19;
        public const int Type_GetArrayDimensions = 20;
        // IDebugHostField : IDebugHostSymbol
        public const int Field_GetLocationKind = 10;
        public const int Field_GetOffset = 11;
        // IDebugHostSymbolEnumerator
        public const int Enumerator_GetNext = 4;
    }


    // dbgmodel.h enums: SymbolKind SymbolField 3; TypeKind; LocationKind LocationMember 0.
    private const int SymbolField = 3, LocationMember = 0;
    private const int TypeUDT = 0, TypePointer = 1, TypeMemberPointer = 2, TypeArray = 3, TypeFunction = 4, TypeTypedef = 5,
                      TypeEnum = 6, TypeIntrinsic = 7;
    private const int E_BOUNDS = unchecked((int)0x8000000B), E_NOT_FOUND = unchecked((int)0x80070490);
    // VARTYPE carriers of intrinsic types (oaidl.h): the signed ones.
    private const ushort VT_I2 = 2, VT_I4 = 3, VT_R4 = 4, VT_R8 = 5, VT_I1 = 16, VT_I8 = 20, VT_INT = 22;

    [StructLayout(LayoutKind.Sequential)]
    private struct ArrayDimension { public long LowerBound; public ulong Length; public ulong Stride; }

    private void* _symbols, _context;
    private bool _started, _broken;
    private readonly Dictionary<string, nint> _modules = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, nint> _types = new(StringComparer.Ordinal);

    private static void** Vt(void* p) => *(void***)p;
    private static void Release(void* p) { if (p != null) Marshal.Release((nint)p); }
    private static void* Query(void* p, Guid iid) =>
        p != null && Marshal.QueryInterface((nint)p, in iid, out var r) >= 0 ? (void*)r : null;

    private bool Start()
    {
        if (_started) return !_broken;
        _started = true;
        void* access = null, manager = null, host = null;
        try
        {
            access = Query((void*)client, HostSymbolLookup.IID_IHostDataModelAccess);
            if (access == null) return !(_broken = true);
            int hr = ((delegate* unmanaged[Stdcall]<void*, void**, void**, int>)Vt(access)[HostSymbolLookup.Slots.HostDataModelAccess_GetDataModel])(access, &manager, &host);
            if (hr < 0 || host == null) return !(_broken = true);
            _symbols = Query(host, HostSymbolLookup.IID_IDebugHostSymbols);
            void* ctx = null;
            hr = ((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(host)[HostSymbolLookup.Slots.DebugHost_GetCurrentContext])(host, &ctx);
            _context = ctx;
            if (_symbols == null || hr < 0 || _context == null) return !(_broken = true);
            return true;
        }
        catch { return !(_broken = true); }
        finally { Release(host); Release(manager); Release(access); }
    }

    private void* Module(string module)
    {
        if (_modules.TryGetValue(module, out var m)) return (void*)m;
        void* mod = null;
        fixed (char* n = module)
            if (((delegate* unmanaged[Stdcall]<void*, void*, char*, void**, int>)Vt(_symbols)[HostSymbolLookup.Slots.DebugHostSymbols_FindModuleByName])(_symbols, _context, n, &mod) < 0)
                mod = null;
        _modules[module] = (nint)mod; // a miss is remembered for this command only
        return mod;
    }

    /// <summary>The named type (a reference this instance holds until Dispose), or null with the answer why.</summary>
    private void* Type(string module, string typeName, out HostAnswer why)
    {
        why = HostAnswer.Unavailable;
        if (!Start()) return null;
        string key = module + "!" + typeName;
        if (_types.TryGetValue(key, out var t)) { why = t == 0 ? HostAnswer.NotFound : HostAnswer.Found; return (void*)t; }
        void* mod = Module(module);
        if (mod == null) return null;
        void* type = null;
        int hr;
        fixed (char* n = typeName)
            hr = ((delegate* unmanaged[Stdcall]<void*, char*, void**, int>)Vt(mod)[Slots.Module_FindTypeByName])(mod, n, &type);
        if (hr is E_BOUNDS or E_NOT_FOUND || hr >= 0 && type == null) { _types[key] = 0; why = HostAnswer.NotFound; return null; }
        if (hr < 0) return null;
        _types[key] = (nint)type;
        why = HostAnswer.Found;
        return type;
    }

    public HostAnswer FindType(string module, string typeName, out ulong size)
    {
        size = 0;
        using var _ = EngineProfile.Time("dm-type", module + "!" + typeName);
        try
        {
            void* t = Type(module, typeName, out var why);
            if (t == null) return why;
            if (Kind(t) != TypeUDT) return HostAnswer.NotFound; // enums, typedefs...: the engine's own path answers those
            ulong s = 0;
            if (((delegate* unmanaged[Stdcall]<void*, ulong*, int>)Vt(t)[Slots.Type_GetSize])(t, &s) < 0) return HostAnswer.Unavailable;
            size = s;
            return HostAnswer.Found;
        }
        catch { return HostAnswer.Unavailable; }
    }

    public HostAnswer ResolveField(string module, string typeName, string path, out ulong offset, out TypeRef? type)
    {
        offset = 0; type = null;
        using var _ = EngineProfile.Time("dm-field", path);
        void* cur = null, field = null;
        try
        {
            void* root = Type(module, typeName, out var why);
            if (root == null) return why;
            Marshal.AddRef((nint)root);
            cur = root;
            var parts = path.Split('.');
            for (int i = 0; i < parts.Length; i++)
            {
                if (parts[i].Length == 0) return HostAnswer.NotFound;
                var a = FindField(cur, parts[i], out field);
                if (a != HostAnswer.Found) return a;
                a = Member(field, out ulong off, out void* ft);
                if (a != HostAnswer.Found) return a;
                offset += off;
                Release(field); field = null;
                Release(cur); cur = ft;
                if (i < parts.Length - 1 && Kind(cur) != TypeUDT) return HostAnswer.NotFound; // paths only through embedded structures
            }
            type = DescribeField(cur);
            return type is null ? HostAnswer.Unavailable : HostAnswer.Found;
        }
        catch { return HostAnswer.Unavailable; }
        finally { Release(field); Release(cur); }
    }

    public IReadOnlyList<FieldLayout>? Fields(string module, string typeName)
    {
        using var _ = EngineProfile.Time("dm-fields", module + "!" + typeName);
        void* en = null, sym = null, ft = null;
        try
        {
            void* t = Type(module, typeName, out HostAnswer _);
            if (t == null) return null;
            if (((delegate* unmanaged[Stdcall]<void*, int, char*, void**, int>)Vt(t)[Slots.Symbol_EnumerateChildren])(t, SymbolField, null, &en) < 0 || en == null)
                return null;
            var list = new List<FieldLayout>();
            for (int guard = 0; guard < TypeLayoutBuilder.MaxFields; guard++)
            {
                int hr = ((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(en)[Slots.Enumerator_GetNext])(en, &sym);
                if (hr == E_BOUNDS || hr >= 0 && sym == null) break;
                if (hr < 0) return null;
                string? name = Name(sym);
                var a = Member(sym, out ulong off, out ft);
                if (a == HostAnswer.Unavailable) return null;
                if (a == HostAnswer.Found && !string.IsNullOrEmpty(name))
                {
                    var tr = DescribeField(ft);
                    if (tr is null) return null;
                    list.Add(new FieldLayout(name, off, tr));
                }
                Release(ft); ft = null;
                Release(sym); sym = null;
            }
            return list;
        }
        catch { return null; }
        finally { Release(ft); Release(sym); Release(en); }
    }

    /// <summary>A field's offset in an instance and its type (a reference the caller releases): NotFound for a static
    /// member (no offset in an instance), Unavailable when a call fails.</summary>
    private static HostAnswer Member(void* field, out ulong offset, out void* type)
    {
        offset = 0; type = null;
        int lk = -1;
        if (((delegate* unmanaged[Stdcall]<void*, int*, int>)Vt(field)[Slots.Field_GetLocationKind])(field, &lk) < 0) return HostAnswer.Unavailable;
        if (lk != LocationMember) return HostAnswer.NotFound;
        ulong off = 0;
        if (((delegate* unmanaged[Stdcall]<void*, ulong*, int>)Vt(field)[Slots.Field_GetOffset])(field, &off) < 0) return HostAnswer.Unavailable;
        void* t = null;
        if (((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(field)[Slots.Symbol_GetType])(field, &t) < 0 || t == null) return HostAnswer.Unavailable;
        offset = off; type = t;
        return HostAnswer.Found;
    }

    /// <summary>The data member <paramref name="name"/> of type <paramref name="t"/> (a reference the caller releases).</summary>
    private static HostAnswer FindField(void* t, string name, out void* field)
    {
        field = null;
        void* en = null, sym = null;
        try
        {
            int hr;
            fixed (char* n = name)
                hr = ((delegate* unmanaged[Stdcall]<void*, int, char*, void**, int>)Vt(t)[Slots.Symbol_EnumerateChildren])(t, SymbolField, n, &en);
            if (hr is E_BOUNDS or E_NOT_FOUND) return HostAnswer.NotFound;
            if (hr < 0 || en == null) return HostAnswer.Unavailable;
            hr = ((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(en)[Slots.Enumerator_GetNext])(en, &sym);
            if (hr == E_BOUNDS || hr >= 0 && sym == null) return HostAnswer.NotFound;
            if (hr < 0) return HostAnswer.Unavailable;
            field = sym; sym = null;
            return HostAnswer.Found;
        }
        finally { Release(sym); Release(en); }
    }

    private static int Kind(void* t)
    {
        int k = -1;
        return ((delegate* unmanaged[Stdcall]<void*, int*, int>)Vt(t)[Slots.Type_GetTypeKind])(t, &k) < 0 ? -1 : k;
    }

    private static ulong Size(void* t)
    {
        ulong s = 0;
        return ((delegate* unmanaged[Stdcall]<void*, ulong*, int>)Vt(t)[Slots.Type_GetSize])(t, &s) < 0 ? 0 : s;
    }

    private static string? Name(void* sym)
    {
        nint bstr = 0;
        if (((delegate* unmanaged[Stdcall]<void*, nint*, int>)Vt(sym)[Slots.Symbol_GetName])(sym, &bstr) < 0) return null;
        try { return bstr == 0 ? "" : Marshal.PtrToStringBSTR(bstr); }
        finally { if (bstr != 0) Marshal.FreeBSTR(bstr); }
    }

    /// <summary>A field's type: a bitfield when the data model says so (integral and enum types only).</summary>
    private TypeRef? DescribeField(void* t)
    {
        var tr = Describe(t, 0);
        if (tr is null) return null;
        if (tr.Kind is TypeKind.Base or TypeKind.Enum)
        {
            uint lsb = 0, len = 0;
            if (((delegate* unmanaged[Stdcall]<void*, uint*, uint*, int>)Vt(t)[Slots.Type_GetBitField])(t, &lsb, &len) >= 0 && len > 0)
                tr = new TypeRef { Kind = TypeKind.Bitfield, Name = tr.Name, Size = tr.Size, Inner = tr,
                                   BitPosition = (int)lsb, BitLength = (int)len, IsSigned = tr.IsSigned };
        }
        return tr;
    }

    /// <summary>
    /// A type as <see cref="TypeRef"/>, the same shapes the engine path builds (<see cref="TypeLayoutBuilder"/>):
    /// structures and unions are <see cref="TypeKind.Struct"/> by name and size; pointees and array elements are
    /// described two levels deep; an enum's underlying type is a signed int of its size.
    /// </summary>
    private TypeRef? Describe(void* t, int depth)
    {
        int kind = Kind(t);
        if (kind < 0) return null;
        string name = EngineStyle(Name(t) ?? "");
        ulong size = Size(t);
        switch (kind)
        {
            case TypeUDT:
                return new TypeRef { Kind = TypeKind.Struct, Name = name, Size = size };
            case TypeEnum:
                return new TypeRef { Kind = TypeKind.Enum, Name = name, Size = size,
                                     Inner = new TypeRef { Kind = TypeKind.Base, Name = "int", Size = size, IsSigned = true } };
            case TypeIntrinsic:
            {
                int ik = -1; ushort vt = 0;
                ((delegate* unmanaged[Stdcall]<void*, int*, ushort*, int>)Vt(t)[Slots.Type_GetIntrinsicType])(t, &ik, &vt);
                // Signedness as the engine path decides it (by the engine's type name: wchar_t is unsigned although
                // its VARIANT carrier is VT_I2 here); the carrier for a name that table does not know.
                bool signed = TypeLayoutBuilder.BaseTypes.TryGetValue(name, out var bt0) ? bt0.Signed
                    : vt is VT_I1 or VT_I2 or VT_I4 or VT_I8 or VT_INT or VT_R4 or VT_R8;
                return new TypeRef { Kind = TypeKind.Base, Name = name, Size = size, IsSigned = signed };
            }
            case TypeFunction:
                return new TypeRef { Kind = TypeKind.Function, Name = name, Size = size };
            case TypePointer:
            case TypeArray:
            case TypeTypedef:
            {
                void* bt = null;
                try
                {
                    if (((delegate* unmanaged[Stdcall]<void*, void**, int>)Vt(t)[Slots.Type_GetBaseType])(t, &bt) < 0 || bt == null)
                        return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
                    if (kind == TypeTypedef) return Describe(bt, depth);
                    if (kind == TypePointer)
                    {
                        if (size == 0) size = (ulong)pointerSize();
                        if (Kind(bt) == TypeFunction) // named as the engine names it: "<function>*" (no signature)
                            return new TypeRef { Kind = TypeKind.Pointer, Name = TypeLayoutBuilder.FunctionPlaceholder + "*", Size = size,
                                                 Inner = new TypeRef { Kind = TypeKind.Unknown, Name = TypeLayoutBuilder.FunctionPlaceholder } };
                        var inner = depth < 2 ? Describe(bt, depth + 1) : new TypeRef { Kind = TypeKind.Unknown, Name = EngineStyle(Name(bt) ?? "") };
                        return inner is null ? null : new TypeRef { Kind = TypeKind.Pointer, Name = name, Size = size, Inner = inner };
                    }
                    ulong dims = 0;
                    if (((delegate* unmanaged[Stdcall]<void*, ulong*, int>)Vt(t)[Slots.Type_GetArrayDimensionality])(t, &dims) < 0 || dims is 0 or > 8)
                        return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
                    var d = stackalloc ArrayDimension[(int)dims];
                    if (((delegate* unmanaged[Stdcall]<void*, ulong, ArrayDimension*, int>)Vt(t)[Slots.Type_GetArrayDimensions])(t, dims, d) < 0)
                        return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
                    var elem = Describe(bt, depth + 1);
                    if (elem is null) return null;
                    // [a][b] of T: an array of a arrays of b T (the engine path's nesting).
                    for (int i = (int)dims - 1; i >= 1; i--)
                        elem = new TypeRef { Kind = TypeKind.Array, Name = elem.Name, Size = elem.Size * d[i].Length, Count = d[i].Length, Inner = elem };
                    return new TypeRef { Kind = TypeKind.Array, Name = name, Size = size, Count = d[0].Length, Inner = elem };
                }
                finally { Release(bt); }
            }
            case TypeMemberPointer:
            default:
                return new TypeRef { Kind = TypeKind.Unknown, Name = name, Size = size };
        }
    }

    /// <summary>
    /// A type name as IDebugSymbols::GetTypeName spells it, so a layout reads the same whichever path built it (and
    /// the layouts kept from either compare equal): "unsigned __int64" is "unsigned int64", "_KPROCESS *" is
    /// "_KPROCESS*", "unsigned char [15]" is "unsigned char[]" (the count is in the TypeRef). Checked field by field
    /// against the engine's answers with NTSLEUTH_TYPE_LOOKUP=check on every sample (docs/bench.md).
    /// </summary>
    internal static string EngineStyle(string name)
    {
        if (name.Contains("__int64", StringComparison.Ordinal)) name = name.Replace("__int64", "int64", StringComparison.Ordinal);
        if (name.Contains('[')) name = ArrayBounds().Replace(name, "[]");
        if (name.Contains(" *", StringComparison.Ordinal)) name = SpaceStar().Replace(name, "*");
        return name;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\s*\[\d*\]")]
    private static partial System.Text.RegularExpressions.Regex ArrayBounds();

    [System.Text.RegularExpressions.GeneratedRegex(@"\s+\*")]
    private static partial System.Text.RegularExpressions.Regex SpaceStar();

    public void Dispose()
    {
        foreach (var p in _types.Values) Release((void*)p);
        foreach (var p in _modules.Values) Release((void*)p);
        _types.Clear(); _modules.Clear();
        Release(_context); Release(_symbols);
        _context = null; _symbols = null;
        _started = false; _broken = false;
    }
}
