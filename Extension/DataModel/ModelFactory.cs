using System.Runtime.InteropServices;
using NtSleuth.Extension.Interop;
using NtSleuth.Extension.Interop.DbgModel;

namespace NtSleuth.Extension.DataModel;

/// <summary>
/// Creates data model objects through the engine's IDataModelManager. Every method returns one owned reference
/// (the caller releases it) or throws <see cref="ModelException"/>.
/// </summary>
internal sealed unsafe class ModelFactory(void* manager, void* host) : IDisposable
{
    public void* Manager { get; } = manager;
    public void* Host { get; } = host;
    // One wrapper for the provider's lifetime: a report object creates dozens of values (a wrapper per call would
    // be ~1 KB of garbage each). Released by Dispose (unregister).
    private Rcw<IDataModelManager> _m = ModelCom.Open<IDataModelManager>(manager);
    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _m.Dispose();
    }

    private IDataModelManager M => _disposed ? throw new ModelException(ModelCom.E_FAIL, "the data model provider was unloaded") : _m.I;

    public void* Synthetic()
    {
        void* r = null;
        ModelCom.Check(M.CreateSyntheticObject(null, &r), "CreateSyntheticObject");
        return r;
    }

    /// <summary>A data model (a synthetic object with IDataModelConcept): what AddParentModel accepts as a parent.</summary>
    public void* DataModel(IDataModelConcept concept)
    {
        void* c = ModelCom.Expose(concept);
        void* r = null;
        try
        {
            ModelCom.Check(M.CreateDataModelObject(c, &r), "CreateDataModelObject");
        }
        finally { ModelCom.Release(c); }
        return r;
    }

    public void* NoValue()
    {
        void* r = null;
        ModelCom.Check(M.CreateNoValue(&r), "CreateNoValue");
        return r;
    }

    /// <summary>An error object carrying <paramref name="message"/> (what dx prints for a failed call or property).</summary>
    public void* Error(int hr, string message)
    {
        void* r = null;
        fixed (char* msg = message)
        ModelCom.Check(M.CreateErrorObject(hr, msg, &r), "CreateErrorObject");
        return r;
    }

    private void* Intrinsic(ModelObjectKind kind, Variant v)
    {
        void* r = null;
        ModelCom.Check(M.CreateIntrinsicObject(kind, &v, &r), "CreateIntrinsicObject");
        return r;
    }

    public void* String(string s)
    {
        var v = new Variant { vt = Variant.VT_BSTR, ptr = Marshal.StringToBSTR(s) };
        try { return Intrinsic(ModelObjectKind.ObjectIntrinsic, v); }
        finally { Marshal.FreeBSTR(v.ptr); }
    }

    public void* UInt64(ulong value) => Intrinsic(ModelObjectKind.ObjectIntrinsic, new Variant { vt = Variant.VT_UI8, ullVal = value });
    public void* Int64(long value) => Intrinsic(ModelObjectKind.ObjectIntrinsic, new Variant { vt = Variant.VT_I8, llVal = value });
    public void* Double(double value) => Intrinsic(ModelObjectKind.ObjectIntrinsic, new Variant { vt = Variant.VT_R8, dblVal = value });
    public void* Bool(bool value) => Intrinsic(ModelObjectKind.ObjectIntrinsic, new Variant { vt = Variant.VT_BOOL, llVal = value ? 0xFFFF : 0 });

    /// <summary>A method object (IModelMethod boxed as ObjectMethod).</summary>
    public void* Method(IModelMethod method) => Boxed(ModelObjectKind.ObjectMethod, ModelCom.Expose(method));

    /// <summary>A property (IModelPropertyAccessor boxed as ObjectPropertyAccessor): computed when read.</summary>
    public void* Property(IModelPropertyAccessor accessor) => Boxed(ModelObjectKind.ObjectPropertyAccessor, ModelCom.Expose(accessor));

    private void* Boxed(ModelObjectKind kind, void* unk)
    {
        try { return Intrinsic(kind, new Variant { vt = Variant.VT_UNKNOWN, ptr = (IntPtr)unk }); }
        finally { ModelCom.Release(unk); }
    }

    public void SetKey(void* obj, string key, void* value)
    {
        using var o = ModelCom.Open<IModelObject>(obj);
        SetKey(o.I, key, value);
    }

    /// <summary>SetKey through a wrapper the caller keeps for several keys.</summary>
    public static void SetKey(IModelObject obj, string key, void* value)
    {
        fixed (char* k = key) ModelCom.Check(obj.SetKey(k, value, null), $"SetKey({key})");
    }

    /// <summary>Sets <paramref name="key"/> to an owned value and releases our reference.</summary>
    public void SetKeyOwned(void* obj, string key, void* value)
    {
        try { SetKey(obj, key, value); }
        finally { ModelCom.Release(value); }
    }

    public static void SetKeyOwned(IModelObject obj, string key, void* value)
    {
        try { SetKey(obj, key, value); }
        finally { ModelCom.Release(value); }
    }

    public void SetConcept(void* obj, Guid iid, void* concept)
    {
        using var o = ModelCom.Open<IModelObject>(obj);
        ModelCom.Check(o.I.SetConcept(&iid, concept, null), "SetConcept");
    }

    /// <summary>GetKeyValue; null when the key is absent or fails.</summary>
    public static void* KeyValue(void* obj, string key)
    {
        if (obj == null) return null;
        void* v = null, md = null;
        int hr;
        fixed (char* k = key)
        using (var o = ModelCom.Open<IModelObject>(obj)) hr = o.I.GetKeyValue(k, &v, &md);
        ModelCom.Release(md);
        if (hr < 0) { ModelCom.Release(v); return null; }
        return v;
    }

    /// <summary>The object's value as an unsigned number: an intrinsic or pointer value, else its location.</summary>
    public static ulong? Number(void* obj)
    {
        if (obj == null) return null;
        Variant v = default;
        ModelLocation loc = default;
        using var o = ModelCom.Open<IModelObject>(obj);
        if (o.I.GetIntrinsicValueAs(Variant.VT_UI8, &v) >= 0 && v.vt == Variant.VT_UI8) return v.ullVal;
        ClearVariant(ref v);
        ModelObjectKind k;
        if (o.I.GetKind(&k) >= 0 && k is ModelObjectKind.ObjectTargetObject or ModelObjectKind.ObjectTargetObjectReference
            && o.I.GetLocation(&loc) >= 0) return loc.Offset;
        return null;
    }

    /// <summary>The object's string value, or null when it is not a string.</summary>
    public static string? Text(void* obj)
    {
        if (obj == null) return null;
        Variant v = default;
        int hr;
        using (var o = ModelCom.Open<IModelObject>(obj)) hr = o.I.GetIntrinsicValue(&v);
        if (hr < 0) return null;
        if (v.vt != Variant.VT_BSTR) { ClearVariant(ref v); return null; }
        try { return Marshal.PtrToStringBSTR(v.ptr); }
        finally { ClearVariant(ref v); }
    }

    private static void ClearVariant(ref Variant v)
    {
        if (v.vt == Variant.VT_BSTR && v.ptr != IntPtr.Zero) Marshal.FreeBSTR(v.ptr);
        else if (v.vt == Variant.VT_UNKNOWN && v.ptr != IntPtr.Zero) Marshal.Release(v.ptr);
        v = default;
    }

    /// <summary>
    /// Evaluates a debugger expression (e.g. <c>(nt!_ETHREAD*)0xfffffa8073d3d770</c>) in the current context: a typed
    /// object the debugger can follow. Null when it does not evaluate (type not in the symbols, no evaluator).
    /// </summary>
    public void* Evaluate(string expression)
    {
        void* eval = ModelCom.Query(Host, typeof(IDebugHostEvaluator).GUID);
        if (eval == null) return null;
        void* ctx = null, result = null, md = null;
        try
        {
            using (var h = ModelCom.Open<IDebugHost>(Host)) if (h.I.GetCurrentContext(&ctx) < 0) ctx = null;
            int hr;
            fixed (char* e = expression)
            using (var x = ModelCom.Open<IDebugHostEvaluator>(eval)) hr = x.I.EvaluateExtendedExpression(ctx, e, null, &result, &md);
            ModelCom.Release(md);
            if (hr < 0) { ModelCom.Release(result); return null; }
            return result;
        }
        finally
        {
            ModelCom.Release(ctx);
            ModelCom.Release(eval);
        }
    }
}
