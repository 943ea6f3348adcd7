using System.Runtime.InteropServices;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>Creates the DbgEng-backed target and output sink for a command and runs it behind the barrier.</summary>
internal static class Host
{
    /// <summary>Test hook (E2E): "throw" = managed exception inside the barrier; "av" = bad native pointer read.</summary>
    public const string FaultVariable = "NTSLEUTH_TEST_FAULT";

    /// <summary>
    /// Test hook (E2E, InterruptEngineTests): "name,N" = set the named Win32 event (enginehost -interrupt-on-event)
    /// when a list walk yields its N-th entry, once per command; "name,@point" = when the analysis reaches the named
    /// test point (<see cref="Commands.Model.KernelReader.TestPoint"/>).
    /// </summary>
    public const string WalkSignalVariable = "NTSLEUTH_TEST_WALK_SIGNAL";

    private static int s_walkSignalInstalled;

    private static void InstallWalkSignal()
    {
        if (Interlocked.Exchange(ref s_walkSignalInstalled, 1) != 0) return;
        var v = Environment.GetEnvironmentVariable(WalkSignalVariable);
        if (string.IsNullOrEmpty(v) || !OperatingSystem.IsWindows()) return;
        var parts = v.Split(',');
        if (parts.Length != 2) return;
        string eventName = parts[0], point;
        if (parts[1].StartsWith('@')) point = parts[1][1..];
        else if (int.TryParse(parts[1], out int n) && n > 0) { point = Commands.Model.KernelReader.WalkPoint; Commands.Model.KernelReader.WalkSignalAfter = n; }
        else return;
        Commands.Model.KernelReader.PointSignal = p =>
        {
            if (p == point && EventWaitHandle.TryOpenExisting(eventName, out var h)) using (h) h.Set();
        };
    }

    public static int Run(IntPtr debugClient, string name, string? args)
    {
        DbgEngSession? session = null;
        DbgEngTarget? target = null;
        IOutputSink? sink = null;
        try
        {
            session = new DbgEngSession(debugClient);
            if (session.Control is null) return CommandDispatcher.E_FAIL; // cannot even print: nothing else to do
            sink = new DbgEngOutputSink(new DbgEngControlOutput(session.Control), PrefersDml(session.Control));
            EngineProfile.BeginCommand();
            InstallWalkSignal();
            target = new DbgEngTarget(session);
            if (!string.Equals(name, "help", StringComparison.OrdinalIgnoreCase))
                InjectTestFault(Environment.GetEnvironmentVariable(FaultVariable));
            if (Diagnostics.WantsMemory(name, args)) return Diagnostics.RunMemory(args, sink);
            if (Diagnostics.Wants(name, args)) return Diagnostics.Run(target, sink);
            return CommandDispatcher.Run(name, args, target, sink);
        }
        catch (Exception ex)
        {
            try
            {
                if (sink is not null) return CommandDispatcher.ReportHostFailure(name, args, sink, ex);
            }
            catch { /* the barrier */ }
            return CommandDispatcher.E_FAIL;
        }
        finally
        {
            RestoreEngineState(session, target);
            try { target?.EndCommand(); } catch { /* never throw into the engine */ }
            try { if (EngineProfile.EndCommand(name) is { } profile) sink?.Write(profile, false); } catch { /* diagnostics only */ }
            session?.Dispose();
            GarbageBudget.AfterCommand();
        }
    }

    /// <summary>Puts back the engine settings the command changed and tells the user what could not be.</summary>
    private static void RestoreEngineState(DbgEngSession? session, DbgEngTarget? target)
    {
        try
        {
            var messages = target?.RestoreEngineState();
            if (messages is null || session?.Control is not { } ctl) return;
            var output = new DbgEngControlOutput(ctl);
            if (Environment.GetEnvironmentVariable("NTSLEUTH_TRACE") is { Length: > 0 })
                foreach (var t in target!.EngineStateTrace) output.Output(DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT, DbgEngConst.DEBUG_OUTPUT_NORMAL, "ntsleuth: " + t + "\n");
            foreach (var m in messages) output.Output(DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT, DbgEngConst.DEBUG_OUTPUT_WARNING, m + "\n");
        }
        catch { /* never throw into the engine */ }
    }

    internal static bool PrefersDml(IDebugControl4 control)
    {
        try
        {
            uint options = 0;
            unsafe { if (control.GetEngineOptions(&options) != DbgEngConst.S_OK) return false; }
            return (options & DbgEngConst.DEBUG_ENGOPT_PREFER_DML) != 0;
        }
        catch { return false; }
    }

    /// <summary>Raises the requested fault (only when the test variable is set).</summary>
    internal static void InjectTestFault(string? mode)
    {
        switch (mode?.Trim().ToLowerInvariant())
        {
            case "throw":
                throw new InvalidOperationException($"test fault injected by {FaultVariable}=throw");
            case "av":
                // A read of a tiny address: the runtime turns the access violation into a managed exception.
                long v = Marshal.ReadInt64((IntPtr)0x10);
                throw new InvalidOperationException($"test fault {FaultVariable}=av did not fault (read {v})");
        }
    }
}
