using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>
/// The DbgEng interfaces of one command invocation, obtained from the engine's IDebugClient by QueryInterface
/// (the generated COM wrappers QI on cast). Interfaces the engine does not offer stay null; callers check.
/// Dispose releases every reference (FinalRelease), so nothing outlives the command.
/// </summary>
internal sealed class DbgEngSession : IDisposable
{
    private static readonly StrategyBasedComWrappers Wrappers = new();
    private readonly object _client;

    public IDebugControl4? Control { get; }
    public IDebugDataSpaces4? Data { get; }
    public IDebugSymbols3? Symbols { get; }
    public IDebugSystemObjects? System { get; }
    /// <summary>For the implicit process (reads in another process's context); null on engines without it.</summary>
    public IDebugSystemObjects2? System2 { get; }
    public IDebugAdvanced2? Advanced { get; }
    /// <summary>The client itself (CreateClient: a private client whose output the extension reads).</summary>
    public IDebugClient? Client { get; }
    /// <summary>The engine's client pointer this session was made from (valid while the command runs): for the data
    /// model's interfaces, reached by QueryInterface (<see cref="HostSymbolLookup"/>).</summary>
    public IntPtr RawClient { get; }

    public DbgEngSession(IntPtr debugClient)
    {
        if (debugClient == IntPtr.Zero) throw new ArgumentNullException(nameof(debugClient));
        RawClient = debugClient;
        _client = Wrappers.GetOrCreateObjectForComInstance(debugClient, CreateObjectFlags.UniqueInstance);
        Control = As<IDebugControl4>();
        Data = As<IDebugDataSpaces4>();
        Symbols = As<IDebugSymbols3>();
        System = As<IDebugSystemObjects>();
        System2 = As<IDebugSystemObjects2>();
        Advanced = As<IDebugAdvanced2>();
        Client = As<IDebugClient>();
    }

    private T? As<T>() where T : class
    {
        try { return _client as T; } catch { return null; }
    }

    public void Dispose()
    {
        try { (_client as ComObject)?.FinalRelease(); } catch { /* never throw into the engine */ }
    }
}
