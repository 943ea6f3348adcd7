namespace NtSleuth.Extension;

/// <summary>Creates the DbgEng-backed target and output sink for a command and runs it behind the barrier.</summary>
internal static class Host
{
    public static int Run(IntPtr debugClient, string name, string? args)
    {
        // Filled in by the managed-host work (DbgEng interop, DbgEngTarget, output sink).
        return unchecked((int)0x80004001);
    }
}
