using System.Runtime.InteropServices;

namespace NtSleuth.Extension;

/// <summary>
/// Entry points called by the native shim (ntsleuth.dll) through hostfxr's load_assembly_and_get_function_pointer
/// with UNMANAGEDCALLERSONLY_METHOD. Contract (must match Native/ntsleuth.c):
///   int Invoke(IDebugClient* client, const char* commandName /*ANSI*/, const char* args /*ANSI, may be NULL*/)
/// returns an HRESULT. Nothing may escape: every exception is caught and reported.
/// </summary>
public static class Entry
{
    [UnmanagedCallersOnly]
    public static int Invoke(IntPtr debugClient, IntPtr commandName, IntPtr args)
    {
        try
        {
            string name = Marshal.PtrToStringAnsi(commandName) ?? "";
            string? a = args == IntPtr.Zero ? null : Marshal.PtrToStringAnsi(args);
            return Host.Run(debugClient, name, a);
        }
        catch
        {
            return unchecked((int)0x80004005);
        }
    }

    /// <summary>
    /// The !analyze plug-in, called by the shim's _EFN_Analyze export (EXT_ANALYSIS_PLUGIN in extsfns.h):
    /// <c>int Analyze(IDebugClient4* client, FA_EXTENSION_PLUGIN_PHASE phase, IDebugFailureAnalysis2* analysis)</c>,
    /// returns an HRESULT. docs/analyze.md.
    /// </summary>
    [UnmanagedCallersOnly]
    public static int Analyze(IntPtr debugClient, uint phase, IntPtr analysis)
    {
        try { return Analysis.AnalyzePlugin.Run(debugClient, phase, analysis); }
        catch { return unchecked((int)0x80004005); }
    }

    /// <summary>
    /// DebugExtensionNotify, forwarded by the shim once .NET runs: <c>void Notify(uint notify, ulong argument)</c>.
    /// A debugger session that starts or ends drops the session cache (layouts, symbol addresses); the shim's load
    /// (0xFFFFFFFE) and unload (0xFFFFFFFF) register and remove the data model provider (@$ntsleuth).
    /// </summary>
    [UnmanagedCallersOnly]
    public static void Notify(uint notify, ulong argument)
    {
        try { EngineSessionCache.OnNotify(notify); }
        catch { /* nothing may escape into the engine */ }
        try { DataModel.DataModelProvider.OnNotify(notify); }
        catch { /* nothing may escape into the engine */ }
    }
}
