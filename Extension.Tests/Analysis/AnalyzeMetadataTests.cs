using System.Text;
using NtSleuth.Commands.DpcBlame;
using NUnit.Framework;

namespace NtSleuth.Tests.Analysis;

/// <summary>
/// ntsleuth.alz, the metadata file !analyze reads to decide which plug-ins to load, checked against Microsoft's
/// "Metadata Files for Analysis Extension Plug-ins": same name as the DLL, ASCII key/value lines (keys are not case
/// sensitive; a line starting with # is a comment where a key is expected), the documented keys only, the last line
/// ends with a newline; and where the build puts it (beside ntsleuth.dll; the package: GalleryManifestTests).
/// </summary>
[TestFixture]
public class AnalyzeMetadataTests
{
    private static readonly string[] DocumentedKeys = ["PluginId", "DebuggeeClass", "BugCheckCode", "ExceptionCode", "ExecutableName", "ImageName", "MaxTagCount"];

    private static string AlzPath => Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.alz");

    private static string Module() => File.ReadAllLines(Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.def"))
        .First(l => l.TrimStart().StartsWith("LIBRARY", StringComparison.OrdinalIgnoreCase)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];

    /// <summary>The (key, value) pairs, read by the documented rules (values to the end of the line or in braces).</summary>
    internal static List<(string Key, string Value)> Read(string text)
    {
        var pairs = new List<(string, string)>();
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            if (i >= text.Length) break;
            if (text[i] == '#') { while (i < text.Length && text[i] != '\n') i++; continue; }
            int k = i;
            while (i < text.Length && !char.IsWhiteSpace(text[i])) i++;
            string key = text[k..i];
            while (i < text.Length && text[i] is ' ' or '\t') i++;
            string value;
            if (i < text.Length && text[i] == '{')
            {
                int end = text.IndexOf('}', i);
                if (end < 0) throw new FormatException($"key {key}: '{{' without '}}'");
                value = text[(i + 1)..end]; i = end + 1;
            }
            else
            {
                int nl = text.IndexOf('\n', i);
                if (nl < 0) throw new FormatException($"key {key}: the last line must end with a newline");
                value = text[i..nl].TrimEnd('\r', ' ', '\t'); i = nl + 1;
            }
            pairs.Add((key, value));
        }
        return pairs;
    }

    [Test]
    public void MetadataFileIsValidAndAsksFor0x133InKernelTargetsOnly()
    {
        Assert.That(File.Exists(AlzPath), Is.True);
        Assert.That(Path.GetFileNameWithoutExtension(AlzPath), Is.EqualTo(Module()), "the .alz is named like the DLL");
        var bytes = File.ReadAllBytes(AlzPath);
        Assert.That(bytes.All(b => b is (>= 0x20 and < 0x7f) or (byte)'\n' or (byte)'\r' or (byte)'\t'), Is.True, "ASCII text");
        Assert.That(bytes[^1], Is.EqualTo((byte)'\n'), "the last line ends with a newline");
        var pairs = Read(Encoding.ASCII.GetString(bytes));
        foreach (var (key, _) in pairs)
            Assert.That(DocumentedKeys.Any(d => d.Equals(key, StringComparison.OrdinalIgnoreCase)), Is.True, $"undocumented key '{key}'");
        string[] Values(string key) => pairs.Where(p => p.Key.Equals(key, StringComparison.OrdinalIgnoreCase)).Select(p => p.Value).ToArray();
        Assert.That(Values("PluginId"), Has.Length.EqualTo(1));
        Assert.That(Values("PluginId")[0], Does.Match(@"^\S+$"));
        Assert.That(Values("DebuggeeClass"), Is.EqualTo(new[] { "Kernel" }));
        var codes = Values("BugCheckCode").Select(v => v.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? Convert.ToUInt32(v[2..], 16) : uint.Parse(v)).ToArray();
        Assert.That(codes, Is.EqualTo(new[] { DpcBlameAnalyzer.DpcWatchdogViolation }), "only bug check 0x133");
        Assert.That(Values("ExceptionCode").Concat(Values("ExecutableName")).Concat(Values("ImageName")), Is.Empty,
            "no user-mode or image conditions (ImageName would limit it to failures !analyze already pins on that image)");
    }

    [Test]
    public void ReaderFollowsTheDocumentedRules()
    {
        var p = Read("# comment\nPluginId  A\nbugcheckcode 0xA\nImageName {two\nlines}\n");
        Assert.That(p, Is.EqualTo(new[] { ("PluginId", "A"), ("bugcheckcode", "0xA"), ("ImageName", "two\nlines") }));
        Assert.Throws<FormatException>(() => Read("PluginId A"), "no newline at the end");
    }

    [Test]
    public void BuildPutsTheMetadataBesideTheDllAndTheDefExportsTheEntry()
    {
        var dll = Path.Combine(TestPaths.ExtensionBin, "ntsleuth.dll");
        if (!File.Exists(dll)) TestPaths.Unavailable($"{dll} not built");
        var built = Path.Combine(TestPaths.ExtensionBin, "ntsleuth.alz");
        Assert.That(File.Exists(built), Is.True, $"{built} missing (Native/Native.targets copies it)");
        Assert.That(File.ReadAllBytes(built), Is.EqualTo(File.ReadAllBytes(AlzPath)));
        var exports = File.ReadAllLines(Path.Combine(TestPaths.RepoRoot, "Native", "ntsleuth.def")).Select(l => l.Trim());
        Assert.That(exports, Does.Contain("_EFN_Analyze"));
    }
}
