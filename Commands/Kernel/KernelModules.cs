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
}
