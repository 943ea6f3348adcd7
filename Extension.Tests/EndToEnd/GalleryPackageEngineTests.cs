using NtSleuth.Commands.Cli;
using NtSleuth.Tests.Unit;
using NUnit.Framework;

namespace NtSleuth.Tests.EndToEnd;

/// <summary>
/// The gallery package (scripts/package.sh) in Microsoft's real engine: its amd64\ folder added to the extension
/// path, the extension loaded by module name alone, then its commands run. What this cannot show: WinDbg's UI reading
/// GalleryManifest.xml and firing the LoadTriggers (enginehost drives dbgeng.dll directly, without the gallery).
/// </summary>
[TestFixture]
[Category("EndToEnd")]
[NonParallelizable]
public class GalleryPackageEngineTests
{
    [Test]
    public void LoadsByNameFromThePackageExtensionPath()
    {
        RealEngine.Require();
        var dump = TestPaths.SharedFile("realdata", "dumps", "user", "win7sp1-x64-calc.dmp");
        var root = Path.Combine(Path.GetTempPath(), $"ntsleuth-gallery-e2e-{Environment.ProcessId}");
        var pkg = GalleryPackage.Make(Path.Combine(root, "NtSleuth", "1.0"));
        try
        {
            // The app-local runtime beside ntsleuth.dll, as package.sh --with-runtime lays it out (linked, not copied).
            var rt = ExtensionPackage.RuntimeLayout();
            var dotnet = Path.Combine(pkg, "amd64", "dotnet");
            if (RealEngine.IsWindows) Assert.Ignore("on Windows the global .NET 10 install serves; see SpineTests for the app-local runtime");
            File.CreateSymbolicLink(dotnet, rt);
            var arch = RealEngine.WinPath(Path.Combine(pkg, "amd64"));
            var run = RealEngine.Run(dump, [".extpath+ " + arch, ".load ntsleuth", "!help", "!ntsleuth.alpcchain -?", ".chain"]);
            Assert.That(run[1].Output, Does.Not.Contain("Unable to").And.Not.Contain("failed"), run.Transcript);
            foreach (var n in CommandRegistry.ExportedNames)
                Assert.That(run["!help"].Output, Does.Contain("!" + n), run.Transcript);
            Assert.That(run["!ntsleuth.alpcchain -?"].Output, Does.Contain("Usage: !alpcchain"), run.Transcript);
            Assert.That(run[".chain"].Output, Does.Contain(arch + @"\ntsleuth").IgnoreCase, "loaded from the package's amd64 folder:\n" + run.Transcript);
        }
        finally
        {
            // Remove the link itself first (never the shared runtime it points to), then the package.
            var link = new DirectoryInfo(Path.Combine(pkg, "amd64", "dotnet"));
            try { if (link.LinkTarget is not null) link.Delete(); Directory.Delete(root, true); } catch (IOException) { }
        }
    }
}
