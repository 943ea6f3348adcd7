using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Tests.Analysis;

/// <summary>
/// A native IDebugFailureAnalysis2 (and its IDebugFAEntryTags) laid out by the same slot enums the plug-in calls
/// through (<see cref="FailureAnalysis2Slot"/>, <see cref="FAEntryTagsSlot"/>): a block whose first field is the
/// vtable pointer and whose second holds a GCHandle to this object. Records every call, in order.
/// Slots the plug-in has no business calling record "unexpected".
/// </summary>
public sealed unsafe class FakeFailureAnalysis : IDisposable
{
    public uint FailureCode { get; set; } = 0x133;
    /// <summary>What GetType answers per tag; tags not in it answer DEBUG_FA_ENTRY_NO_TYPE.</summary>
    public Dictionary<uint, uint> TagTypes { get; } = new();
    /// <summary>False: GetDebugFATagControl fails (E_NOTIMPL) and gives no table.</summary>
    public bool HasTagTable { get; set; } = true;
    /// <summary>Tags whose Set*/Add* return NULL (the analysis could not store the entry).</summary>
    public HashSet<uint> RefuseTags { get; } = new();

    public List<string> Calls { get; } = new();
    public List<(string Method, uint Tag, string? Text, ulong Value)> Writes { get; } = new();

    public nint Pointer => (nint)_obj;

    private readonly nint* _obj, _tagsObj;
    private readonly nint* _vtbl, _tagsVtbl;
    private GCHandle _self;
    private nint _entry; // a non-null FA_ENTRY pointer to hand back

    public FakeFailureAnalysis()
    {
        _self = GCHandle.Alloc(this);
        int n = Enum.GetValues<FailureAnalysis2Slot>().Length, nt = Enum.GetValues<FAEntryTagsSlot>().Length;
        _vtbl = (nint*)NativeMemory.AllocZeroed((nuint)(n * sizeof(nint)));
        _tagsVtbl = (nint*)NativeMemory.AllocZeroed((nuint)(nt * sizeof(nint)));
        for (int i = 0; i < n; i++) _vtbl[i] = (nint)(delegate* unmanaged<nint, nint>)&Unexpected;
        _vtbl[(int)FailureAnalysis2Slot.QueryInterface] = (nint)(delegate* unmanaged<nint, Guid*, nint*, int>)&QueryInterface;
        _vtbl[(int)FailureAnalysis2Slot.AddRef] = (nint)(delegate* unmanaged<nint, uint>)&AddRef;
        _vtbl[(int)FailureAnalysis2Slot.Release] = (nint)(delegate* unmanaged<nint, uint>)&Release;
        _vtbl[(int)FailureAnalysis2Slot.GetFailureClass] = (nint)(delegate* unmanaged<nint, uint>)&GetFailureClass;
        _vtbl[(int)FailureAnalysis2Slot.GetFailureType] = (nint)(delegate* unmanaged<nint, uint>)&GetFailureType;
        _vtbl[(int)FailureAnalysis2Slot.GetFailureCode] = (nint)(delegate* unmanaged<nint, uint>)&GetFailureCode;
        _vtbl[(int)FailureAnalysis2Slot.SetString] = (nint)(delegate* unmanaged<nint, uint, byte*, nint>)&SetString;
        _vtbl[(int)FailureAnalysis2Slot.AddString] = (nint)(delegate* unmanaged<nint, uint, byte*, nint>)&AddString;
        _vtbl[(int)FailureAnalysis2Slot.SetUlong64] = (nint)(delegate* unmanaged<nint, uint, ulong, nint>)&SetUlong64;
        _vtbl[(int)FailureAnalysis2Slot.AddUlong64] = (nint)(delegate* unmanaged<nint, uint, ulong, nint>)&AddUlong64;
        _vtbl[(int)FailureAnalysis2Slot.GetDebugFATagControl] = (nint)(delegate* unmanaged<nint, nint*, int>)&GetDebugFATagControl;
        for (int i = 0; i < nt; i++) _tagsVtbl[i] = (nint)(delegate* unmanaged<nint, nint>)&Unexpected;
        _tagsVtbl[(int)FAEntryTagsSlot.GetType] = (nint)(delegate* unmanaged<nint, uint, uint>)&GetType;
        _obj = (nint*)NativeMemory.AllocZeroed((nuint)(2 * sizeof(nint)));
        _obj[0] = (nint)_vtbl; _obj[1] = GCHandle.ToIntPtr(_self);
        _tagsObj = (nint*)NativeMemory.AllocZeroed((nuint)(2 * sizeof(nint)));
        _tagsObj[0] = (nint)_tagsVtbl; _tagsObj[1] = GCHandle.ToIntPtr(_self);
        _entry = (nint)NativeMemory.AllocZeroed(16);
    }

    public void Dispose()
    {
        NativeMemory.Free(_obj); NativeMemory.Free(_tagsObj); NativeMemory.Free(_vtbl); NativeMemory.Free(_tagsVtbl); NativeMemory.Free((void*)_entry);
        if (_self.IsAllocated) _self.Free();
    }

    private static FakeFailureAnalysis Self(nint obj) => (FakeFailureAnalysis)GCHandle.FromIntPtr(((nint*)obj)[1]).Target!;

    private nint Write(string method, uint tag, string? text, ulong value)
    {
        Calls.Add(method);
        Writes.Add((method, tag, text, value));
        return RefuseTags.Contains(tag) ? 0 : _entry;
    }

    [UnmanagedCallersOnly] private static nint Unexpected(nint self) { Self(self).Calls.Add("unexpected"); return 0; }
    [UnmanagedCallersOnly] private static int QueryInterface(nint self, Guid* iid, nint* ppv) { Self(self).Calls.Add("QueryInterface"); *ppv = 0; return unchecked((int)0x80004002); }
    [UnmanagedCallersOnly] private static uint AddRef(nint self) { Self(self).Calls.Add("AddRef"); return 2; }
    [UnmanagedCallersOnly] private static uint Release(nint self) { Self(self).Calls.Add("Release"); return 1; }
    [UnmanagedCallersOnly] private static uint GetFailureClass(nint self) { Self(self).Calls.Add("GetFailureClass"); return 1; }
    [UnmanagedCallersOnly] private static uint GetFailureType(nint self) { Self(self).Calls.Add("GetFailureType"); return 1; }
    [UnmanagedCallersOnly] private static uint GetFailureCode(nint self) { var s = Self(self); s.Calls.Add("GetFailureCode"); return s.FailureCode; }
    [UnmanagedCallersOnly] private static nint SetString(nint self, uint tag, byte* str) => Self(self).Write("SetString", tag, Marshal.PtrToStringAnsi((nint)str), 0);
    [UnmanagedCallersOnly] private static nint AddString(nint self, uint tag, byte* str) => Self(self).Write("AddString", tag, Marshal.PtrToStringAnsi((nint)str), 0);
    [UnmanagedCallersOnly] private static nint SetUlong64(nint self, uint tag, ulong v) => Self(self).Write("SetUlong64", tag, null, v);
    [UnmanagedCallersOnly] private static nint AddUlong64(nint self, uint tag, ulong v) => Self(self).Write("AddUlong64", tag, null, v);
    [UnmanagedCallersOnly]
    private static int GetDebugFATagControl(nint self, nint* tags)
    {
        var s = Self(self);
        s.Calls.Add("GetDebugFATagControl");
        if (!s.HasTagTable) { *tags = 0; return unchecked((int)0x80004001); }
        *tags = (nint)s._tagsObj;
        return 0;
    }
    [UnmanagedCallersOnly]
    private static uint GetType(nint self, uint tag)
    {
        var s = Self(self);
        s.Calls.Add("GetType");
        return s.TagTypes.TryGetValue(tag, out var t) ? t : Extsfns.DEBUG_FA_ENTRY_NO_TYPE;
    }

    /// <summary>The tag types the tests assume ext.dll gives (its real table is not available here).</summary>
    public FakeFailureAnalysis WithStringAndAddressTypes()
    {
        foreach (var t in new[] { Extsfns.DEBUG_FLR_MODULE_NAME, Extsfns.DEBUG_FLR_IMAGE_NAME, Extsfns.DEBUG_FLR_SYMBOL_NAME, Extsfns.DEBUG_FLR_ADDITIONAL_DEBUGTEXT })
            TagTypes[t] = Extsfns.DEBUG_FA_ENTRY_ANSI_STRING;
        TagTypes[Extsfns.DEBUG_FLR_FAULTING_IP] = Extsfns.DEBUG_FA_ENTRY_INSTRUCTION_OFFSET;
        return this;
    }
}
