using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using NtSleuth.Extension.Interop;
using NtSleuth.Extension.Interop.DbgModel;

namespace NtSleuth.Extension.DataModel;

/// <summary>
/// Reference handling for the data model's COM objects. Object pointers are raw (void*), each owned reference is
/// released exactly once by its owner; a call goes through a short-lived RCW (UniqueInstance, FinalRelease right
/// after), so no reference waits for a finalizer.
/// </summary>
internal static unsafe class ModelCom
{
    private static readonly StrategyBasedComWrappers Wrappers = new();

    public const int S_OK = 0;
    public const int E_FAIL = unchecked((int)0x80004005);
    public const int E_INVALIDARG = unchecked((int)0x80070057);
    public const int E_NOTIMPL = unchecked((int)0x80004001);
    public const int E_BOUNDS = unchecked((int)0x8000000B);
    public const int E_ABORT = unchecked((int)0x80004004);
    /// <summary>Returned by IModelIterator::GetNext at the end.</summary>
    public const int E_BOUNDS_END = unchecked((int)0x8000000B);

    /// <summary>An RCW of <paramref name="p"/> for a few calls; Dispose releases it (the caller's reference stays).</summary>
    public static Rcw<T> Open<T>(void* p) where T : class
    {
        if (p == null) throw new InvalidOperationException($"null {typeof(T).Name}");
        return new Rcw<T>(Wrappers.GetOrCreateObjectForComInstance((nint)p, CreateObjectFlags.UniqueInstance));
    }

    public static void Release(void* p)
    {
        if (p != null) Marshal.Release((nint)p);
    }

    public static void AddRef(void* p)
    {
        if (p != null) Marshal.AddRef((nint)p);
    }

    /// <summary>A COM pointer (one reference, the caller's) for a managed implementation of <typeparamref name="T"/>.</summary>
    public static void* Expose<T>(T managed) => ComInterfaceMarshaller<T>.ConvertToUnmanaged(managed);

    /// <summary>QueryInterface; null when the object does not offer <paramref name="iid"/>.</summary>
    public static void* Query(void* p, Guid iid)
    {
        if (p == null) return null;
        return Marshal.QueryInterface((nint)p, in iid, out var r) >= 0 ? (void*)r : null;
    }

    public static void Check(int hr, string what)
    {
        if (hr < 0) throw new ModelException(hr, $"{what} failed (0x{hr:x8})");
    }
}

internal readonly struct Rcw<T>(object o) : IDisposable where T : class
{
    public T I => (T)o;
    public void Dispose() => (o as ComObject)?.FinalRelease();
}

/// <summary>A data model call that failed, with its HRESULT.</summary>
internal sealed class ModelException(int hr, string message) : Exception(message)
{
    public int HResult2 { get; } = hr;
}
