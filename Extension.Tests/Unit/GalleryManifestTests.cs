using System.Diagnostics;
using System.Reflection.PortableExecutable;
using System.Xml;
using System.Xml.Linq;
using NtSleuth.Commands.Cli;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// The WinDbg extension-gallery package made by scripts/package.sh: GalleryManifest.xml at the root and the module in
/// amd64\. Checks what the engine needs from the manifest: well-formed XML, a BinaryComponent named like the module,
/// every exported command listed (against the DLL's .def and the command registry), every listed file present,
/// architecture amd64, the load triggers, and the version from Directory.Build.props.
/// </summary>
[TestFixture]
[Category("Unit")]
public class GalleryManifestTests
{
    private string _pkg = "";

    [OneTimeSetUp]
    public void MakePackage()
    {
        _pkg = GalleryPackage.Make(Path.Combine(Path.GetTempPath(), $"ntsleuth-gallery-unit-{Environment.ProcessId}", "NtSleuth"));
    }

    [OneTimeTearDown]
    public void Clean()
    {
        try { if (_pkg != "") Directory.Delete(Path.GetDirectoryName(_pkg)!, true); } catch (IOException) { }
    }

    private XElement Manifest() => XDocument.Load(Path.Combine(_pkg, "GalleryManifest.xml"), LoadOptions.None).Root!;

    private static string[] DefCommands()
    {
        var lines = File.ReadAllLines(Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.def"));
        return lines.SkipWhile(l => !l.Trim().Equals("EXPORTS", StringComparison.OrdinalIgnoreCase)).Skip(1)
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith(';') && !l.StartsWith("DebugExtension", StringComparison.Ordinal)
                && !l.StartsWith("_EFN_", StringComparison.Ordinal))
            .Select(l => l.Split(' ', '\t', '=')[0]).ToArray();
    }

    [Test]
    public void AnalyzePluginMetadataSitsBesideTheDll()
    {
        // !analyze finds the _EFN_Analyze plug-in by ntsleuth.alz in the DLL's folder (docs/analyze.md).
        var alz = Path.Combine(_pkg, "amd64", "ntsleuth.alz");
        Assert.That(File.Exists(alz), Is.True, "amd64\\ntsleuth.alz missing");
        Assert.That(File.ReadAllBytes(alz), Is.EqualTo(File.ReadAllBytes(Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.alz"))));
    }

    [Test]
    public void ManifestIsWellFormedAndNamesTheModule()
    {
        XElement root;
        try { root = Manifest(); }
        catch (XmlException e) { Assert.Fail("GalleryManifest.xml is not well-formed XML: " + e.Message); return; }
        Assert.That(root.Name.LocalName, Is.EqualTo("ExtensionPackage"));
        Assert.That(root.Element("Name")?.Value, Is.EqualTo("NtSleuth"));
        Assert.That(root.Element("Description")?.Value, Is.Not.Empty);
        var comps = root.Element("Components")!.Elements("BinaryComponent").ToList();
        Assert.That(comps, Has.Count.EqualTo(1));
        Assert.That(comps[0].Attribute("Name")?.Value, Is.EqualTo("ntsleuth"), "the engine loads the component by module name");
        Assert.That(comps[0].Attribute("Type")?.Value, Is.EqualTo("Engine"));
        var module = File.ReadAllLines(Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.def"))
            .First(l => l.TrimStart().StartsWith("LIBRARY", StringComparison.OrdinalIgnoreCase)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        Assert.That(comps[0].Attribute("Name")!.Value, Is.EqualTo(module), "BinaryComponent Name must match the LIBRARY in ntsleuth.def");
    }

    [Test]
    public void VersionComesFromTheProject()
    {
        var props = XDocument.Load(Path.Combine(TestPaths.RepoRoot, "Directory.Build.props"));
        var v = props.Descendants("Version").Select(e => e.Value).FirstOrDefault();
        Assert.That(v, Is.Not.Null.And.Not.Empty, "Directory.Build.props has no <Version>");
        Assert.That(Manifest().Element("Version")?.Value, Is.EqualTo(v));
        Assert.That(Version.TryParse(v, out _), Is.True, $"'{v}' is not a dotted version (the gallery folder is named after it)");
    }

    [Test]
    public void EveryExportedCommandIsListed()
    {
        var listed = Manifest().Descendants("EngineCommand").Select(e => e.Attribute("Name")?.Value).ToList();
        Assert.That(listed, Is.Unique);
        var def = DefCommands();
        Assert.That(def, Does.Contain("help"));
        Assert.That(listed, Is.EquivalentTo(def), "EngineCommands must be exactly the commands ntsleuth.def exports");
        Assert.That(listed, Is.EquivalentTo(new[] { "help" }.Concat(CommandRegistry.ExportedNames)), "and exactly the command registry's");
        foreach (var c in Manifest().Descendants("EngineCommand"))
            Assert.That(c.Descendants("Syntax").Single().Value, Does.StartWith("!" + c.Attribute("Name")!.Value));
    }

    [Test]
    public void EveryListedFileExistsAndIsAmd64()
    {
        var files = Manifest().Descendants("Files").Single().Elements("File").ToList();
        Assert.That(files, Is.Not.Empty);
        foreach (var f in files)
        {
            Assert.That(f.Attribute("Architecture")?.Value, Is.EqualTo("amd64"), f.ToString());
            var rel = f.Attribute("Module")!.Value;
            Assert.That(File.Exists(Path.Combine(_pkg, rel.Replace('\\', Path.DirectorySeparatorChar))), $"{rel} is listed but not in the package");
        }
        var mods = files.Select(f => f.Attribute("Module")!.Value).ToList();
        Assert.That(mods[0], Is.EqualTo(@"amd64\ntsleuth.dll"), "the module comes first");
        // Everything ntsleuth.dll needs beside it to host .NET: nethost, the managed assemblies and their json.
        foreach (var need in new[] { "nethost.dll", "ntsleuth.alz", "NtSleuth.Extension.dll", "NtSleuth.Commands.dll", "Iced.dll", "NtSleuth.Extension.runtimeconfig.json", "NtSleuth.Extension.deps.json" })
            Assert.That(mods, Does.Contain(@"amd64\" + need));
        // and nothing in amd64\ the module needs is left out of the manifest
        foreach (var f in Directory.GetFiles(Path.Combine(_pkg, "amd64")).Where(f => f.EndsWith(".dll") || f.EndsWith(".json") || f.EndsWith(".alz")))
            Assert.That(mods, Does.Contain(@"amd64\" + Path.GetFileName(f)));
    }

    [Test]
    public void LoadTriggersCoverKernelTargetsAndDhcpcore()
    {
        var sets = Manifest().Descendants("LoadTriggers").Single().Elements("TriggerSet").ToList();
        Assert.That(sets.SelectMany(s => s.Elements("TargetTrigger")).Select(t => t.Attribute("Type")?.Value), Does.Contain("Kernel"));
        Assert.That(sets.SelectMany(s => s.Elements("ModuleTrigger")).Select(t => t.Attribute("Name")?.Value), Does.Contain("dhcpcore.dll"));
        // Each trigger sits in its own set: a set fires when all its triggers match, and no target is both.
        Assert.That(sets.All(s => s.Elements().Count() == 1), Is.True);
    }

    /// <summary>The image's ReadyToRun header: CorFlags ILLibrary, a ManagedNativeHeader whose signature is "RTR".</summary>
    internal static (bool ilLibrary, uint signature, Machine machine) ReadyToRunHeader(string file)
    {
        using var pe = new PEReader(File.OpenRead(file));
        var cor = pe.PEHeaders.CorHeader!;
        var dir = cor.ManagedNativeHeaderDirectory;
        uint sig = dir.Size >= 4 ? pe.GetSectionData(dir.RelativeVirtualAddress).GetReader().ReadUInt32() : 0;
        return ((cor.Flags & CorFlags.ILLibrary) != 0, sig, pe.PEHeaders.CoffHeader.Machine);
    }

    [Test]
    public void ManagedAssembliesAreReadyToRunImagesForWinX64()
    {
        const uint Rtr = 0x00525452; // READYTORUN_SIGNATURE, "RTR"
        var amd64 = Path.Combine(_pkg, "amd64");
        var managed = Directory.GetFiles(amd64, "*.dll").Select(Path.GetFileName)
            .Where(n => n!.StartsWith("NtSleuth.", StringComparison.Ordinal) || n == "Iced.dll").ToArray();
        Assert.That(managed, Is.SupersetOf(new[] { "NtSleuth.Extension.dll", "NtSleuth.Commands.dll", "Iced.dll" }));
        foreach (var n in managed)
        {
            var (il, sig, machine) = ReadyToRunHeader(Path.Combine(amd64, n!));
            Assert.That(il, Is.True, $"{n}: CorFlags ILLibrary not set (not a ReadyToRun image)");
            Assert.That(sig, Is.EqualTo(Rtr), $"{n}: no ReadyToRun header");
            Assert.That(machine, Is.EqualTo(Machine.Amd64), $"{n}: precompiled for {machine}, not x64");
        }
        // The same check on the plain build's IL-only assembly says no: it tells the two apart.
        var plain = ReadyToRunHeader(Path.Combine(TestPaths.ExtensionBin, "NtSleuth.Commands.dll"));
        Assert.That(plain.ilLibrary || plain.signature == Rtr, Is.False, "the plain build's NtSleuth.Commands.dll is IL only");
    }
}

/// <summary>Runs scripts/package.sh (--no-build, the test's configuration) into a folder.</summary>
public static class GalleryPackage
{
    public static string Make(string dir)
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("scripts/package.sh needs bash; on Windows build.ps1 makes the same package");
        if (!File.Exists(Path.Combine(TestPaths.ExtensionBin, "ntsleuth.dll"))) TestPaths.Unavailable($"ntsleuth.dll not built in {TestPaths.ExtensionBin}");
        var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(TestPaths.RepoRoot, "scripts", "package.sh"), dir, "--no-build", "--no-zip", "--config", TestPaths.Configuration })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync(); var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { try { p.Kill(true); } catch { } Assert.Fail("package.sh did not finish in 120 s"); }
        Assert.That(p.ExitCode, Is.EqualTo(0), $"package.sh failed:\n{o.Result}\n{e.Result}");
        return dir;
    }
}
