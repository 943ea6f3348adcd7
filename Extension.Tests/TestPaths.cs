using NUnit.Framework;

namespace NtSleuth.Tests;

/// <summary>Where the repository, ../shared and the build outputs are, seen from a test.</summary>
public static class TestPaths
{
    private static readonly Lazy<string> _root = new(() =>
    {
        var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "NtSleuthExt.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root (NtSleuthExt.sln) not found above " + TestContext.CurrentContext.TestDirectory);
    });

    public static string RepoRoot => _root.Value;

    /// <summary>../shared beside the repository (seeds, docs, realdata). May be absent.</summary>
    public static string SharedDir => NtSleuth.Lab.SharedData.ExpectedDirectory ?? throw new InvalidOperationException("repository root (NtSleuthExt.sln) not found: cannot place ../shared");

    /// <summary>Path under ../shared, or Assert.Ignore with a clear reason when it is absent.</summary>
    public static string SharedFile(params string[] parts)
    {
        var p = Path.Combine([SharedDir, .. parts]);
        if (!File.Exists(p) && !Directory.Exists(p))
            Assert.Ignore($"needs {p} (../shared beside the repository); it is not there");
        return p;
    }

    /// <summary>Debug or Release, as the test assembly was built.</summary>
    public static string Configuration =>
        TestContext.CurrentContext.TestDirectory.Replace('\\', '/').Contains("/Release/") ? "Release" : "Debug";

    /// <summary>Extension's output folder: ntsleuth.dll, enginehost.exe, nethost.dll and the managed files.</summary>
    public static string ExtensionBin => Path.Combine(RepoRoot, "Extension", "bin", Configuration, "net10.0");

    /// <summary>True when the test script demands the end-to-end tier (missing prerequisites fail instead of skip).</summary>
    public static bool RequireEndToEnd => Environment.GetEnvironmentVariable("NTSLEUTH_REQUIRE_E2E") == "1";

    /// <summary>Skips (or fails, when the end-to-end tier is required) with a reason.</summary>
    public static void Unavailable(string reason)
    {
        if (RequireEndToEnd) Assert.Fail(reason + " (NTSLEUTH_REQUIRE_E2E=1: the end-to-end tier must run; run scripts/setup-linux.sh)");
        Assert.Ignore(reason);
    }
}
