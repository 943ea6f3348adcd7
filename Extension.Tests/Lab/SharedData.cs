namespace NtSleuth.Lab;

/// <summary>
/// The one place that locates ../shared (seeds, docs, realdata): NTSLEUTH_SHARED when set (tools run outside the
/// repository), else the folder "shared" beside the repository root (the folder with NtSleuthExt.sln). Every lab piece
/// and every test asks here; none builds the path itself.
/// </summary>
public static class SharedData
{
    private static readonly Lazy<string?> _root = new(() => FindRepoRoot());
    private static readonly Lazy<string?> _dir = new(Find);

    /// <summary>The repository root (folder containing NtSleuthExt.sln) above <paramref name="start"/>, the program or the current directory; or null.</summary>
    public static string? FindRepoRoot(string? start = null)
    {
        foreach (var s in new[] { start, AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            if (s is null) continue;
            for (var d = new DirectoryInfo(s); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "NtSleuthExt.sln"))) return d.FullName;
        }
        return null;
    }

    /// <summary>Where ../shared is expected (NTSLEUTH_SHARED, or beside the repository root), present or not; null when neither is known.</summary>
    public static string? ExpectedDirectory
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("NTSLEUTH_SHARED");
            if (!string.IsNullOrEmpty(env)) return Path.GetFullPath(env);
            return _root.Value is { } root ? Path.GetFullPath(Path.Combine(root, "..", "shared")) : null;
        }
    }

    /// <summary>The shared data folder when it exists; null otherwise (tests then skip with <see cref="AbsentReason"/>).</summary>
    public static string? Directory => _dir.Value;

    public static string AbsentReason =>
        $"../shared ({ExpectedDirectory ?? "beside the repository root with NtSleuthExt.sln"}) is absent; set NTSLEUTH_SHARED or check out the shared data";

    /// <summary>A path under the shared folder (it may not exist); throws with <see cref="AbsentReason"/> when the folder is absent.</summary>
    public static string PathOf(params string[] parts) =>
        Path.Combine([Directory ?? throw new InvalidOperationException(AbsentReason), .. parts]);

    /// <summary>A path under the shared folder when that file or folder exists; null otherwise.</summary>
    public static string? TryPathOf(params string[] parts)
    {
        if (Directory is null) return null;
        var p = Path.Combine([Directory, .. parts]);
        return File.Exists(p) || System.IO.Directory.Exists(p) ? p : null;
    }

    /// <summary>The ndis/fltmgr layout table (realdata/layouts/ndis-fltmgr-layouts.json), or null when absent.</summary>
    public static string? LayoutsFile => TryPathOf("realdata", "layouts", "ndis-fltmgr-layouts.json");

    /// <summary>The folder of nt symbol tables (realdata/isf/ntkrnlmp.pdb), or null when absent.</summary>
    public static string? NtIsfDirectory => TryPathOf("realdata", "isf", "ntkrnlmp.pdb");

    private static string? Find()
    {
        var p = ExpectedDirectory;
        return p is not null && System.IO.Directory.Exists(p) ? p : null;
    }
}
