using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using System.Text;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>
/// <see cref="IAddressContextEngine"/> over the engine's COM interfaces. <c>.cache</c> runs on a client of its own
/// (IDebugClient::CreateClient) whose output callbacks collect the text, with DEBUG_OUTCTL_THIS_CLIENT |
/// DEBUG_OUTCTL_NOT_LOGGED: nothing reaches the user's window or log, and the host's own callbacks are never swapped.
/// </summary>
internal sealed unsafe class DbgEngAddressContext(DbgEngSession session) : IAddressContextEngine
{
    private const uint DEBUG_OUTCTL_THIS_CLIENT = 0, DEBUG_OUTCTL_NOT_LOGGED = 0x8;
    private const uint DEBUG_EXECUTE_NOT_LOGGED = 0x2, DEBUG_EXECUTE_NO_REPEAT = 0x4;
    private const uint OutputMask = 0x1 | 0x2 | 0x4; // normal, error, warning
    private static readonly StrategyBasedComWrappers Wrappers = new();

    public bool TryGetDebuggeeType(out uint debuggeeClass, out uint qualifier)
    {
        debuggeeClass = qualifier = 0;
        var ctl = session.Control;
        if (ctl is null) return false;
        try
        {
            uint c = 0, q = 0;
            if (ctl.GetDebuggeeType(&c, &q) != DbgEngConst.S_OK) return false;
            debuggeeClass = c; qualifier = q;
            return true;
        }
        catch { return false; }
    }

    public bool TryGetImplicitProcess(out ulong process)
    {
        process = 0;
        var so = session.System2;
        if (so is null) return false;
        try
        {
            ulong p = 0;
            if (so.GetImplicitProcessDataOffset(&p) < 0) return false;
            process = p;
            return true;
        }
        catch { return false; }
    }

    public bool SetImplicitProcess(ulong process)
    {
        try { return session.System2 is { } so && so.SetImplicitProcessDataOffset(process) >= 0; }
        catch { return false; }
    }

    public DecodeMode? QueryDecodeMode() =>
        Run(".cache", out string text) ? ProcessReadContext.ParseCacheStatus(text) : null;

    public bool SetDecodeMode(DecodeMode mode) => Run(".cache " + ProcessReadContext.CacheOption(mode), out _);

    public bool ConsumePendingInterrupt()
    {
        try { return session.Control?.GetInterrupt() == DbgEngConst.S_OK; }
        catch { return false; }
    }

    /// <summary>Runs an engine command on a private client and returns its output; false when it failed.</summary>
    internal bool Run(string command, out string output)
    {
        using var _ = EngineProfile.Time("engine-command", command);
        output = "";
        var client = session.Client;
        if (client is null) return false;
        IntPtr raw = IntPtr.Zero, callbacks = IntPtr.Zero;
        object? own = null;
        IDebugClient? ownClient = null;
        var capture = new OutputCapture();
        try
        {
            if (client.CreateClient(&raw) < 0 || raw == IntPtr.Zero) return false;
            own = Wrappers.GetOrCreateObjectForComInstance(raw, CreateObjectFlags.UniqueInstance);
            ownClient = own as IDebugClient;
            var ownControl = own as IDebugControl4;
            if (ownClient is null || ownControl is null) return false;
            IntPtr unknown = Wrappers.GetOrCreateComInterfaceForObject(capture, CreateComInterfaceFlags.None);
            try
            {
                var iid = typeof(IDebugOutputCallbacks).GUID;
                if (Marshal.QueryInterface(unknown, in iid, out callbacks) < 0) return false;
            }
            finally { Marshal.Release(unknown); }
            if (ownClient.SetOutputCallbacks((void*)callbacks) < 0) return false;
            ownClient.SetOutputMask(OutputMask);
            int hr;
            fixed (byte* c = DbgEngTarget.Ansi(command))
                hr = ownControl.Execute(DEBUG_OUTCTL_THIS_CLIENT | DEBUG_OUTCTL_NOT_LOGGED, c, DEBUG_EXECUTE_NOT_LOGGED | DEBUG_EXECUTE_NO_REPEAT);
            output = capture.Text;
            return hr >= 0;
        }
        catch { return false; }
        finally
        {
            try { ownClient?.SetOutputCallbacks(null); } catch { }
            if (callbacks != IntPtr.Zero) Marshal.Release(callbacks);
            try { (own as ComObject)?.FinalRelease(); } catch { }
            if (raw != IntPtr.Zero) Marshal.Release(raw);
        }
    }
}

/// <summary>IDebugOutputCallbacks that keeps the text (only IUnknown and this interface are answered).</summary>
[GeneratedComClass]
internal sealed unsafe partial class OutputCapture : IDebugOutputCallbacks
{
    private readonly StringBuilder _text = new();
    private const int MaxChars = 64 * 1024;

    public string Text => _text.ToString();

    public int Output(uint mask, byte* text)
    {
        try
        {
            if (text != null && _text.Length < MaxChars) _text.Append(Marshal.PtrToStringUTF8((IntPtr)text));
        }
        catch { /* never throw into the engine */ }
        return 0;
    }
}
