using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using NtSleuth.Extension.Interop;
using NtSleuth.Extension.Interop.DbgModel;

namespace NtSleuth.Extension.DataModel;

/// <summary>
/// Turns <see cref="DxValue"/>s into data model objects. Scalars become intrinsic values; objects, lists and addresses
/// become properties computed when dx reads them, so a large report costs only what is displayed.
/// </summary>
internal sealed unsafe class ModelBuilder(ModelFactory f)
{
    public ModelFactory Factory => f;

    /// <summary>One owned reference to the model object for <paramref name="v"/>.</summary>
    public void* Build(DxValue v)
    {
        switch (v)
        {
            case DxString s: return f.String(s.Value);
            case DxInteger i: return f.Int64(i.Value);
            case DxUnsigned u: return f.UInt64(u.Value);
            case DxDouble d: return f.Double(d.Value);
            case DxBool b: return f.Bool(b.Value);
            case DxAddress a: return Address(a);
            case DxObject o: return Object(o);
            case DxArray a: return Array(a);
            default: return f.NoValue();
        }
    }

    private void* Address(DxAddress a)
    {
        if (a.Type is { } t && a.Value != 0)
        {
            void* typed = f.Evaluate($"({t}*)0x{a.Value:x}");
            if (typed != null) return typed;
        }
        return f.UInt64(a.Value);
    }

    private void* Object(DxObject o)
    {
        void* obj = f.Synthetic();
        try
        {
            using var w = ModelCom.Open<IModelObject>(obj);
            foreach (var (name, jsonKey) in o.Members)
            {
                var member = o.Member(jsonKey);
                void* value = member is DxObject or DxArray or DxAddress { Type: not null }
                    ? f.Property(new LazyProperty(this, member))
                    : Build(member);
                ModelFactory.SetKeyOwned(w.I, name, value);
            }
            return obj;
        }
        catch
        {
            ModelCom.Release(obj);
            throw;
        }
    }

    private void* Array(DxArray a)
    {
        void* obj = f.Synthetic();
        try
        {
            var concept = new ListConcept(this, a);
            void* iterable = ModelCom.Expose<IIterableConcept>(concept);
            try { f.SetConcept(obj, typeof(IIterableConcept).GUID, iterable); }
            finally { ModelCom.Release(iterable); }
            void* indexable = ModelCom.Expose<IIndexableConcept>(concept);
            try { f.SetConcept(obj, typeof(IIndexableConcept).GUID, indexable); }
            finally { ModelCom.Release(indexable); }
            return obj;
        }
        catch
        {
            ModelCom.Release(obj);
            throw;
        }
    }

    /// <summary>The barrier of every data model callback: an error object and a failing HRESULT, never an exception.</summary>
    public int Fail(Exception ex, void** result)
    {
        int hr = ex is ModelException me ? me.HResult2 : ex is OperationCanceledException ? ModelCom.E_ABORT : ModelCom.E_FAIL;
        try { if (result != null) *result = f.Error(hr, "ntsleuth: " + ex.Message); }
        catch { if (result != null) *result = null; }
        return hr;
    }
}

/// <summary>A property of a report object whose value is built when read (objects, lists, typed addresses).</summary>
[GeneratedComClass]
internal sealed unsafe partial class LazyProperty(ModelBuilder builder, DxValue value) : IModelPropertyAccessor
{
    public int GetValue(char* key, void* contextObject, void** result)
    {
        try
        {
            *result = builder.Build(value);
            return ModelCom.S_OK;
        }
        catch (Exception ex) { return builder.Fail(ex, result); }
    }

    public int SetValue(char* key, void* contextObject, void* value) => ModelCom.E_NOTIMPL;
}

/// <summary>A report list: iterable (LINQ, dx -g) and indexable ([n]).</summary>
[GeneratedComClass]
internal sealed unsafe partial class ListConcept(ModelBuilder builder, DxArray list) : IIterableConcept, IIndexableConcept
{
    public int GetDefaultIndexDimensionality(void* contextObject, ulong* dimensionality)
    {
        *dimensionality = 1;
        return ModelCom.S_OK;
    }

    public int GetIterator(void* contextObject, void** iterator)
    {
        try
        {
            *iterator = ModelCom.Expose<IModelIterator>(new ListIterator(builder, list));
            return ModelCom.S_OK;
        }
        catch { *iterator = null; return ModelCom.E_FAIL; }
    }

    public int GetDimensionality(void* contextObject, ulong* dimensionality)
    {
        *dimensionality = 1;
        return ModelCom.S_OK;
    }

    public int GetAt(void* contextObject, ulong indexerCount, void** indexers, void** obj, void** metadata)
    {
        if (metadata != null) *metadata = null;
        try
        {
            if (indexerCount != 1) throw new ModelException(ModelCom.E_INVALIDARG, "a list takes one index");
            ulong? i = ModelFactory.Number(indexers[0]);
            if (i is null || i.Value >= (ulong)list.Count)
                throw new ModelException(ModelCom.E_BOUNDS, $"index out of range (the list has {list.Count} entries)");
            *obj = builder.Build(list.Item((int)i.Value));
            return ModelCom.S_OK;
        }
        catch (Exception ex) { return builder.Fail(ex, obj); }
    }

    public int SetAt(void* contextObject, ulong indexerCount, void** indexers, void* value) => ModelCom.E_NOTIMPL;
}

[GeneratedComClass]
internal sealed unsafe partial class ListIterator(ModelBuilder builder, DxArray list) : IModelIterator
{
    private int _next;

    public int Reset()
    {
        _next = 0;
        return ModelCom.S_OK;
    }

    public int GetNext(void** obj, ulong dimensions, void** indexers, void** metadata)
    {
        if (metadata != null) *metadata = null;
        *obj = null;
        try
        {
            if (_next >= list.Count) return ModelCom.E_BOUNDS_END;
            int i = _next++;
            void* item = builder.Build(list.Item(i));
            if (dimensions >= 1 && indexers != null)
            {
                try { indexers[0] = builder.Factory.UInt64((ulong)i); }
                catch { ModelCom.Release(item); throw; }
            }
            *obj = item;
            return ModelCom.S_OK;
        }
        catch (Exception ex) { return builder.Fail(ex, obj); }
    }
}
