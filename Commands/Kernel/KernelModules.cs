using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Kernel;

/// <summary>Names of loaded modules as the commands show them.</summary>
public static class KernelModules
{
    /// <summary>A module's short name as the debugger spells it: file name without directory and .sys/.dll/.exe.</summary>
    public static string ShortName(string name)
    {
        string n = name;
        int slash = n.LastIndexOfAny(['\\', '/']);
        if (slash >= 0) n = n[(slash + 1)..];
        foreach (var ext in new[] { ".sys", ".dll", ".exe" })
            if (n.EndsWith(ext, StringComparison.OrdinalIgnoreCase)) return n[..^ext.Length];
        return n;
    }

    /// <summary>The loaded module whose <see cref="ShortName"/> is <paramref name="shortName"/> (e.g. "ndis"), or null.</summary>
    public static ModuleInfo? Find(IEnumerable<ModuleInfo> modules, string shortName) =>
        modules.FirstOrDefault(m => ShortName(m.Name).Equals(shortName, StringComparison.OrdinalIgnoreCase));

    /// <summary>True for the kernel's own modules by short name (nt, ntoskrnl/ntkrnlmp/ntkrnlpa, hal): where a thread waits or a DPC is dispatched, not why.</summary>
    public static bool IsKernel(string shortName) =>
        shortName.Equals("nt", StringComparison.OrdinalIgnoreCase) || shortName.StartsWith("ntoskrnl", StringComparison.OrdinalIgnoreCase) ||
        shortName.StartsWith("ntkrnl", StringComparison.OrdinalIgnoreCase) || shortName.Equals("hal", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a module named <paramref name="shortName"/> is loaded; false when the engine cannot list modules (never throws).</summary>
    public static bool IsLoaded(ITarget target, string shortName)
    {
        try { return Find(target.GetModules(), shortName) is not null; }
        catch (Exception) { return false; }
    }
}

/// <summary>
/// The module a command is about is not loaded on the target (no ndis.sys, no fltmgr.sys, no dhcpcore.dll): the
/// command does not apply. Every command reports it the same way: the message on the error channel, JSON status
/// "notApplicable", HRESULT S_OK (the debugger session is fine; there is nothing to analyse).
/// </summary>
public sealed class ModuleNotLoadedException(string message) : Exception(message);
