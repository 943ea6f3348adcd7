using System.Diagnostics;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>A headless Chromium (Debian's <c>chromium</c>, installed by scripts/setup-linux.sh; on Windows Edge or Chrome, or
/// <c>NTSLEUTH_BROWSER</c>): loads a page with its scripts run and returns the resulting DOM, or takes a screenshot.</summary>
internal static class HeadlessBrowser
{
    public static string? Find()
    {
        if (Environment.GetEnvironmentVariable("NTSLEUTH_BROWSER") is { Length: > 0 } env && File.Exists(env)) return env;
        string[] candidates = OperatingSystem.IsWindows()
            ?
            [
                @"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
                @"C:\Program Files\Microsoft\Edge\Application\msedge.exe",
                @"C:\Program Files\Google\Chrome\Application\chrome.exe",
            ]
            : ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
        return candidates.FirstOrDefault(File.Exists);
    }

    /// <summary>Why a browser test cannot run here, or null. On Linux the set-up installs Chromium, so its absence is a
    /// set-up error, not a reason to skip.</summary>
    public static string? Missing() => Find() is null
        ? "no headless browser: run scripts/setup-linux.sh (installs Debian's chromium) or set NTSLEUTH_BROWSER"
        : null;

    public static string DumpDom(string file, string query = "")
    {
        string url = new Uri(Path.GetFullPath(file)).AbsoluteUri + query;
        return Run(["--dump-dom", url]);
    }

    public static void Screenshot(string file, string png, int width = 1400, int height = 900)
    {
        string url = new Uri(Path.GetFullPath(file)).AbsoluteUri;
        Run([$"--screenshot={Path.GetFullPath(png)}", $"--window-size={width},{height}", "--hide-scrollbars", url]);
    }

    private static string Run(string[] args)
    {
        var psi = new ProcessStartInfo(Find() ?? throw new InvalidOperationException(Missing()))
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var a in (string[])["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", .. args]) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string o = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("headless browser did not finish in 120 s"); }
        if (p.ExitCode != 0) throw new InvalidOperationException($"headless browser exit {p.ExitCode}: {err.Result}");
        return o;
    }
}
