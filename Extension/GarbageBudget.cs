namespace NtSleuth.Extension;

/// <summary>
/// Keeps the extension's garbage small in the debugger's process (issue 20, session tier). A command allocates
/// 1-5 MB that is garbage when it returns (layouts and the session cache stay: ~2 MB live on the samples); left to
/// itself the GC lets the heap grow to its gen0 budget (up to ~50 MB here, measured with <c>!help -mem</c>) before it
/// collects, and the debugger process carries that memory. After a command that left more than
/// <see cref="BudgetBytes"/> beyond what was live after the last collection, one blocking compacting collection
/// gives the memory back; the engine process then stays flat (measured under wine on the ndis sample, 10 rounds of
/// text/DML/-json: +42% private bytes over 7 rounds without it, 1.4% with it). A collection costs ~12 ms under wine
/// (a gen0-only one costs the same: it is the thread suspension, not the heap), once per 1-2 commands that allocate
/// megabytes, none for small ones.
/// </summary>
internal static class GarbageBudget
{
    public const long BudgetBytes = 2L << 20;
    private static long _liveAfterCollect;

    /// <summary>Collections this extension asked for (<c>!help -mem</c> shows it).</summary>
    public static int Collections { get; private set; }

    /// <summary>Time those collections took, in all (<c>!help -mem</c>).</summary>
    public static double CollectMilliseconds { get; private set; }

    /// <summary>End of a command (the engine's command thread): collect when the garbage exceeds the budget.</summary>
    public static void AfterCommand()
    {
        try
        {
            if (GC.GetTotalMemory(false) <= _liveAfterCollect + BudgetBytes) return;
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            Collections++;
            CollectMilliseconds += System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            _liveAfterCollect = GC.GetTotalMemory(false);
        }
        catch { /* never throw into the engine */ }
    }
}
