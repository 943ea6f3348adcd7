namespace NtSleuth.Extension;

/// <summary>
/// How the engine translates virtual addresses before it reads them on a live kernel target (the
/// <c>.cache forcedecodeuser</c> / <c>forcedecodeptes</c> / <c>noforcedecodeptes</c> options of the engine's virtual
/// memory cache; see docs/live-targets.md).
/// </summary>
internal enum DecodeMode
{
    /// <summary><c>noforcedecodeptes</c> (the default): the target's debugger stub reads virtual addresses in the
    /// context the processor is in, through the engine's cache.</summary>
    None,
    /// <summary><c>forcedecodeuser</c>: user-mode addresses are translated to physical ones by the engine, through the
    /// implicit process's page tables, before access (cache off).</summary>
    User,
    /// <summary><c>forcedecodeptes</c>: every virtual address is translated before access (cache off).</summary>
    All,
}

/// <summary>
/// The engine controls a read in another process's context depends on. The real one is
/// <see cref="DbgEngAddressContext"/>; tests substitute a mock to check the save / set / restore sequence.
/// Every member answers instead of throwing.
/// </summary>
internal interface IAddressContextEngine
{
    /// <summary>IDebugControl::GetDebuggeeType; false when the engine did not answer.</summary>
    bool TryGetDebuggeeType(out uint debuggeeClass, out uint qualifier);
    /// <summary>IDebugSystemObjects2::GetImplicitProcessDataOffset.</summary>
    bool TryGetImplicitProcess(out ulong process);
    /// <summary>IDebugSystemObjects2::SetImplicitProcessDataOffset; true on S_OK.</summary>
    bool SetImplicitProcess(ulong process);
    /// <summary>The engine's current decode option, read from the output of <c>.cache</c>; null when unknown.</summary>
    DecodeMode? QueryDecodeMode();
    /// <summary>Runs <c>.cache forcedecodeuser</c> / <c>forcedecodeptes</c> / <c>noforcedecodeptes</c> (its output
    /// is not shown to the user); true when the engine accepted it.</summary>
    bool SetDecodeMode(DecodeMode mode);
    /// <summary>IDebugControl::GetInterrupt: true when a Ctrl+Break was pending (the call clears it).</summary>
    bool ConsumePendingInterrupt();
}

/// <summary>
/// Reads in another process's context for one command, correctly on dumps and on live kernel targets.
/// <list type="bullet">
/// <item>Every read saves the engine's implicit process, switches to the requested one, reads, and restores the saved
/// one in a <c>finally</c>.</item>
/// <item>On a live kernel target (GetDebuggeeType: kernel class, a qualifier below DEBUG_DUMP_SMALL) the engine's
/// documentation requires <c>.cache forcedecodeuser</c> (or <c>forcedecodeptes</c>) before a process-context switch,
/// otherwise user-mode pages are read in the context the target's processor happens to be in, or come from a stale
/// cache. Before the first such read the current option is read from <c>.cache</c>; when neither is on,
/// <c>forcedecodeuser</c> is set and verified, and <see cref="Restore"/> (called by the host in its <c>finally</c>,
/// after the command returned, threw or was interrupted) puts the saved option back and verifies it.</item>
/// <item>When the option cannot be read or set, user-mode reads in other processes are refused (0 bytes: the
/// command's own "unreadable" notes apply) instead of returning another process's pages, and the reason is reported.</item>
/// <item>On dumps and user-mode targets nothing but the implicit process is touched (and it is restored).</item>
/// </list>
/// A restore that fails while a Ctrl+Break is pending (the engine refuses work then) is retried once the interrupt is
/// consumed; the command has stopped by then, which is what the Ctrl+Break asked for.
/// </summary>
internal sealed class ProcessReadContext(IAddressContextEngine engine, bool treatDumpAsLive = false, Action? afterFirstRead = null)
{
    /// <summary>
    /// Test hook (E2E, real engine): "live" treats a kernel dump as a live target (the whole query / set / restore
    /// sequence then runs in the real engine, which accepts the .cache options on dumps too); "throw" throws out of the
    /// first read in another process (after the implicit process was restored), "interrupt" calls
    /// IDebugControl::SetInterrupt there (a Ctrl+Break in the middle of the command). Comma-separated.
    /// </summary>
    public const string TestHookVariable = "NTSLEUTH_TEST_PROCESS_READ";

    /// <summary>Highest kernel qualifier of a live target; dumps start at DEBUG_DUMP_SMALL (1024).</summary>
    private const uint FirstDumpQualifier = 1024;
    private const uint KernelClass = 1;
    private const int RestoreAttempts = 3;

    private enum State { Unknown, NotNeeded, Ready, Refused }
    private State _state;
    private DecodeMode _saved;
    private bool _changed;
    private readonly List<string> _messages = new();
    private bool _hookFired;

    /// <summary>What the user must know after the command (a refused or failed restore); empty normally.</summary>
    public IReadOnlyList<string> Messages => _messages;

    /// <summary>Every engine setting changed and restored, in order (printed when NTSLEUTH_TRACE is set).</summary>
    public IReadOnlyList<string> Trace => _trace;
    private readonly List<string> _trace = new();

    /// <summary>True when a restore consumed a pending Ctrl+Break: the command was interrupted (the engine fails
    /// symbol and type queries while an interrupt is pending, so what the command learnt must not be kept).</summary>
    public bool ConsumedInterrupt { get; private set; }

    /// <summary>True once this command changed the engine's decode option (and has not put it back yet).</summary>
    public bool DecodeModeChanged => _changed;

    /// <summary>
    /// Runs <paramref name="read"/> with <paramref name="process"/> as the engine's implicit process; 0 when the
    /// engine cannot switch, or (live kernel targets) when user-mode reads cannot be made correct.
    /// </summary>
    public int Read(ulong process, Func<int> read)
    {
        if (process == 0) return 0;
        if (!Prepare()) return 0;
        if (!engine.TryGetImplicitProcess(out ulong saved)) return 0;
        bool switched = false;
        try
        {
            if (saved != process)
            {
                if (!engine.SetImplicitProcess(process)) return 0;
                switched = true;
            }
            return read();
        }
        catch { return 0; }
        finally
        {
            if (switched) RestoreWithRetry(() => engine.SetImplicitProcess(saved), () => engine.TryGetImplicitProcess(out var now) && now == saved,
                $"the engine's implicit process could not be set back to 0x{saved:x}; run .process /p 0x{saved:x} (or .process /p 0 for the default)");
            if (afterFirstRead is not null && !_hookFired) { _hookFired = true; afterFirstRead(); }
        }
    }

    /// <summary>Decides once per command whether the target needs the decode option, and sets it if so.</summary>
    private bool Prepare()
    {
        switch (_state)
        {
            case State.NotNeeded: case State.Ready: return true;
            case State.Refused: return false;
        }
        if (!engine.TryGetDebuggeeType(out uint cls, out uint qual))
        {
            _state = State.Refused;
            _messages.Add("ntsleuth: reads in other processes were skipped: the engine did not say whether the target is live or a dump.");
            return false;
        }
        if (cls != KernelClass || (qual >= FirstDumpQualifier && !treatDumpAsLive)) { _state = State.NotNeeded; return true; }

        var current = engine.QueryDecodeMode();
        if (current is null)
        {
            _state = State.Refused;
            _messages.Add("ntsleuth: user-mode reads in other processes were skipped on this live kernel target: the engine's .cache options could not be read, "
                + "so forcedecodeuser could not be set safely. Run '.cache forcedecodeuser' and the command again.");
            return false;
        }
        if (current is DecodeMode.User or DecodeMode.All)
        {
            _trace.Add($".cache {CacheOption(current.Value)} already in effect: nothing changed");
            _state = State.Ready;
            return true;
        }
        _saved = current.Value;
        bool set = engine.SetDecodeMode(DecodeMode.User);
        _changed = true; // even a refused set may have changed something: Restore puts the saved option back
        if (!set || engine.QueryDecodeMode() is not (DecodeMode.User or DecodeMode.All))
        {
            _state = State.Refused;
            _messages.Add("ntsleuth: user-mode reads in other processes were skipped on this live kernel target: the engine refused '.cache forcedecodeuser'.");
            return false;
        }
        _trace.Add($".cache forcedecodeuser set and verified (was {CacheOption(_saved)}) for reads in another process (debuggee class {cls}, qualifier {qual})");
        _state = State.Ready;
        return true;
    }

    /// <summary>Puts back every engine setting this command changed (the decode option); never throws.</summary>
    public void Restore()
    {
        if (!_changed) return;
        var saved = _saved;
        bool ok = RestoreWithRetry(() => engine.SetDecodeMode(saved), () => engine.QueryDecodeMode() == saved,
            $"the engine's .cache option could not be set back; run '.cache {CacheOption(saved)}'");
        if (ok) { _changed = false; _trace.Add($".cache {CacheOption(saved)} restored and verified"); }
    }

    private bool RestoreWithRetry(Func<bool> set, Func<bool> verify, string failure)
    {
        for (int attempt = 0; attempt < RestoreAttempts; attempt++)
        {
            try { if (set() && verify()) return true; }
            catch { /* try again */ }
            // The engine refuses commands while a Ctrl+Break is pending: consume it and try again.
            try { if (engine.ConsumePendingInterrupt()) ConsumedInterrupt = true; } catch { }
        }
        _messages.Add("ntsleuth: WARNING: " + failure + ".");
        return false;
    }

    internal static string CacheOption(DecodeMode mode) => mode switch
    {
        DecodeMode.User => "forcedecodeuser",
        DecodeMode.All => "forcedecodeptes",
        _ => "noforcedecodeptes",
    };

    /// <summary>
    /// Reads the decode option from the output of <c>.cache</c> (dbgeng prints "** User virtual addresses are
    /// translated to physical addresses before access" for forcedecodeuser, "** Virtual addresses ..." for
    /// forcedecodeptes, neither line otherwise, always after "Max cache size is"). Null when the output is not the
    /// cache status at all (another engine version, a refused command).
    /// </summary>
    internal static DecodeMode? ParseCacheStatus(string? output)
    {
        if (string.IsNullOrEmpty(output)) return null;
        const string suffix = "addresses are translated to physical addresses before access";
        foreach (var raw in output.Split('\n'))
        {
            var line = raw.Trim();
            if (!line.StartsWith("**", StringComparison.Ordinal) || !line.EndsWith(suffix, StringComparison.Ordinal)) continue;
            var who = line[2..^suffix.Length].Trim();
            if (who.Equals("User virtual", StringComparison.Ordinal)) return DecodeMode.User;
            if (who.Equals("Virtual", StringComparison.Ordinal)) return DecodeMode.All;
            return null;
        }
        return output.Contains("Max cache size is", StringComparison.Ordinal) ? DecodeMode.None : null;
    }
}
