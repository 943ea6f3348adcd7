using System.Runtime.InteropServices;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>
/// <see cref="ITypeQueries"/> over IDebugSymbols3, plus bitfield position/length from the WdbgExts type-dump ioctl
/// (IG_DUMP_SYMBOL_INFO with FIELD_INFO, obtained through IDebugControl::GetWindbgExtensionApis64): IDebugSymbols3
/// has no bitfield query, the ioctl is the engine's documented way ("dt" uses the same information).
/// </summary>
internal sealed unsafe class DbgEngTypeQueries(DbgEngSession s, Func<int> pointerSize) : ITypeQueries
{
    public int PointerSize => pointerSize();

    public bool TryGetTypeId(string qualifiedName, out ulong moduleBase, out uint typeId)
    {
        using var _ = EngineProfile.Time("type-id", qualifiedName);
        moduleBase = 0; typeId = 0;
        var sym = s.Symbols;
        if (sym is null) return false;
        try
        {
            ulong mb = 0; uint id = 0;
            int hr;
            fixed (byte* n = DbgEngTarget.Ansi(qualifiedName)) hr = sym.GetSymbolTypeId(n, &id, &mb);
            if (hr != DbgEngConst.S_OK) return false;
            moduleBase = mb; typeId = id;
            return true;
        }
        catch { return false; }
    }

    public bool TryGetTypeIdInModule(ulong moduleBase, string typeName, out uint typeId)
    {
        using var _ = EngineProfile.Time("type-id", typeName);
        typeId = 0;
        var sym = s.Symbols;
        if (sym is null) return false;
        try
        {
            uint id = 0;
            int hr;
            fixed (byte* n = DbgEngTarget.Ansi(typeName)) hr = sym.GetTypeId(moduleBase, n, &id);
            typeId = id;
            return hr == DbgEngConst.S_OK;
        }
        catch { return false; }
    }

    public ulong GetTypeSize(ulong moduleBase, uint typeId)
    {
        using var _ = EngineProfile.Time("type-size");
        try
        {
            uint size = 0;
            return s.Symbols?.GetTypeSize(moduleBase, typeId, &size) == DbgEngConst.S_OK ? size : 0;
        }
        catch { return 0; }
    }

    public string? GetTypeName(ulong moduleBase, uint typeId)
    {
        using var _ = EngineProfile.Time("type-name");
        var sym = s.Symbols;
        if (sym is null) return null;
        try
        {
            var buf = new byte[512];
            uint size = 0;
            int hr;
            fixed (byte* b = buf) hr = sym.GetTypeName(moduleBase, typeId, b, (uint)buf.Length, &size);
            return hr >= 0 ? DbgEngTarget.FromAnsi(buf, size) : null;
        }
        catch { return null; }
    }

    public string? GetFieldName(ulong moduleBase, uint typeId, uint index)
    {
        using var _ = EngineProfile.Time("field-name");
        var sym = s.Symbols;
        if (sym is null) return null;
        try
        {
            var buf = new byte[512];
            uint size = 0;
            int hr;
            fixed (byte* b = buf) hr = sym.GetFieldName(moduleBase, typeId, index, b, (uint)buf.Length, &size);
            if (hr != DbgEngConst.S_OK) return null;
            string name = DbgEngTarget.FromAnsi(buf, size);
            return name.Length == 0 ? null : name;
        }
        catch { return null; }
    }

    public bool TryGetFieldTypeAndOffset(ulong moduleBase, uint containerTypeId, string field, out uint fieldTypeId, out uint offset)
    {
        using var _ = EngineProfile.Time("field", field);
        fieldTypeId = 0; offset = 0;
        var sym = s.Symbols;
        if (sym is null) return false;
        try
        {
            uint t = 0, o = 0;
            int hr;
            fixed (byte* n = DbgEngTarget.Ansi(field)) hr = sym.GetFieldTypeAndOffset(moduleBase, containerTypeId, n, &t, &o);
            fieldTypeId = t; offset = o;
            return hr == DbgEngConst.S_OK;
        }
        catch { return false; }
    }

    public IReadOnlyDictionary<string, (int Position, int Length)> GetBitfields(string qualifiedType, IReadOnlyList<string> fields)
    {
        using var _ = EngineProfile.Time("bitfields", qualifiedType);
        var result = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
        var ctl = s.Control;
        if (ctl is null || fields.Count == 0) return result;
        var ioctl = GetIoctl(ctl);
        if (ioctl == null) return result;

        var handles = new List<GCHandle>();
        try
        {
            var infos = new WdbgExts.FIELD_INFO[fields.Count];
            var names = new byte[fields.Count][];
            for (int i = 0; i < fields.Count; i++)
            {
                names[i] = DbgEngTarget.Ansi(fields[i]);
                var h = GCHandle.Alloc(names[i], GCHandleType.Pinned);
                handles.Add(h);
                infos[i].fName = (byte*)h.AddrOfPinnedObject();
                infos[i].fOptions = WdbgExts.DBG_DUMP_FIELD_FULL_NAME | WdbgExts.DBG_DUMP_FIELD_NO_PRINT | WdbgExts.DBG_DUMP_FIELD_RETURN_ADDRESS;
            }
            var typeName = DbgEngTarget.Ansi(qualifiedType);
            uint rc;
            fixed (WdbgExts.FIELD_INFO* pf = infos)
            fixed (byte* tn = typeName)
            {
                var p = new WdbgExts.SYM_DUMP_PARAM
                {
                    size = (uint)sizeof(WdbgExts.SYM_DUMP_PARAM),
                    sName = tn,
                    Options = WdbgExts.DBG_DUMP_NO_PRINT,
                    nFields = (uint)infos.Length,
                    Fields = pf,
                };
                rc = ioctl(WdbgExts.IG_DUMP_SYMBOL_INFO, &p, p.size);
            }
            if (rc != 0) return result;
            for (int i = 0; i < infos.Length; i++)
                if (infos[i].BitFieldSize > 0)
                    result[fields[i]] = (infos[i].BitFieldPosition, infos[i].BitFieldSize);
        }
        catch { /* no bitfield information: fields stay plain */ }
        finally
        {
            foreach (var h in handles) h.Free();
        }
        return result;
    }

    private static delegate* unmanaged[Stdcall]<ushort, void*, uint, uint> GetIoctl(IDebugControl4 ctl)
    {
        try
        {
            WdbgExts.WINDBG_EXTENSION_APIS64 apis = default;
            apis.nSize = (uint)sizeof(WdbgExts.WINDBG_EXTENSION_APIS64);
            if (ctl.GetWindbgExtensionApis64(&apis) != DbgEngConst.S_OK) return null;
            return (delegate* unmanaged[Stdcall]<ushort, void*, uint, uint>)apis.lpIoctlRoutine;
        }
        catch { return null; }
    }
}

/// <summary>The WdbgExts structures we use (from the documented wdbgexts.h layouts; x64).</summary>
internal static unsafe class WdbgExts
{
    public const ushort IG_DUMP_SYMBOL_INFO = 22;
    public const uint DBG_DUMP_NO_PRINT = 0x40;
    public const uint DBG_DUMP_FIELD_FULL_NAME = 0x8;
    public const uint DBG_DUMP_FIELD_RETURN_ADDRESS = 0x1000;
    public const uint DBG_DUMP_FIELD_NO_PRINT = 0x4000;

    [StructLayout(LayoutKind.Sequential)]
    public struct WINDBG_EXTENSION_APIS64
    {
        public uint nSize;
        public void* lpOutputRoutine;
        public void* lpGetExpressionRoutine;
        public void* lpGetSymbolRoutine;
        public void* lpDisasmRoutine;
        public void* lpCheckControlCRoutine;
        public void* lpReadProcessMemoryRoutine;
        public void* lpWriteProcessMemoryRoutine;
        public void* lpGetThreadContextRoutine;
        public void* lpSetThreadContextRoutine;
        public void* lpIoctlRoutine;
        public void* lpStackTraceRoutine;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct FIELD_INFO
    {
        public byte* fName;
        public byte* printName;
        public uint size;
        public uint fOptions;
        public ulong address;
        public void* fieldCallBack;
        public uint TypeId;
        public uint FieldOffset;
        public uint BufferSize;
        public ushort BitFieldPosition;
        public ushort BitFieldSize;
        public uint Flags; // fPointer:2 fArray:1 fStruct:1 fConstant:1 fStatic:1
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct SYM_DUMP_PARAM
    {
        public uint size;
        public byte* sName;
        public uint Options;
        public ulong addr;
        public FIELD_INFO* listLink;
        public void* Context;
        public void* CallbackRoutine;
        public uint nFields;
        public FIELD_INFO* Fields;
        public ulong ModBase;
        public uint TypeId;
        public uint TypeSize;
        public uint BufferSize;
        public uint Flags;
    }
}
