using System.Text;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Scenarios;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// A value read from the target and placed in a DML link's command (a pool tag in !leaktag &lt;tag&gt;, a module name in
/// lmvm &lt;module&gt;) must never chain a second command nor leave the attribute (issue 20, found by the corrupted-memory
/// tier: a tracker entry whose tag bytes read ";q;x" gave &lt;exec cmd="!leaktag ;q;x"&gt;).
/// </summary>
public class DmlLinkTests
{
    [TestCase("Leak", "Leak")]
    [TestCase("Io  ", "\"Io  \"")]
    [TestCase("myfault", "myfault")]
    [TestCase("ECHO.sys", "ECHO.sys")]
    [TestCase("Le*", "Le*")]
    [TestCase(";q;x", null)]
    [TestCase("a b;", null)]
    [TestCase("x\">y", null)]
    [TestCase("\"<&>", null)]
    [TestCase("<b>;", null)]
    [TestCase("a|b", null)]
    [TestCase("a\nb", null)]
    [TestCase("caf\u00e9", null)]
    [TestCase("    ", null)]
    [TestCase("", null)]
    public void ATargetValueIsOneSafeArgumentOrNone(string value, string? expected) =>
        Assert.That(DmlCommand.Arg(value), Is.EqualTo(expected));

    [TestCase("!leaktag Leak", true)]
    [TestCase("!leaktag \"Io  \"", true)]
    [TestCase("~~[1a4]kL", true)]
    [TestCase("lmvm a;.shell calc", false)]
    [TestCase("!leaktag \"x\";.shell calc;\"\"", false)]
    [TestCase("!leaktag \"a", false)]
    [TestCase("dt x\r\n.shell calc", false)]
    [TestCase("lmvm <b>", false)]
    [TestCase("", false)]
    public void OnlyOneCommandMayStandInALink(string command, bool single) =>
        Assert.That(DmlCommand.IsSingle(command), Is.EqualTo(single));

    [Test]
    public void AnUnsafeLinkIsShownAsEscapedTextWithoutAnExec()
    {
        var d = new Doc().Link("m;x", "lmvm ", "m;x").Text(" ").Link("<b>", "lmvm a;.shell calc").Text(" ").Link("Io  ", "!leaktag ", "Io  ");
        string dml = d.Render(OutputMode.Dml);
        Assert.That(dml, Is.EqualTo("m;x &lt;b&gt; <exec cmd=\"!leaktag &quot;Io  &quot;\">Io  </exec>"));
        Assert.That(d.Render(OutputMode.Text), Is.EqualTo("m;x <b> Io  "));
    }

    [TestCase(";q;x")]
    [TestCase("a b;")]
    [TestCase("x\">y")]
    [TestCase("<b>;")]
    public void APoolTagFromTheTargetNeverChainsACommand(string tag)
    {
        var nt = PoolDpcBuilds.TryLoadNt(PoolDpcBuilds.Win10);
        if (nt is null) Assert.Ignore("../shared/realdata/isf/ntkrnlmp.pdb (the shared real data) is absent");
        var s = new PoolLeakScenario(new LabKernel(nt!, PoolDpcBuilds.Win10), 4, 3, 4096);
        // Overwrite every "Leak" tag in the tracker tables (the top consumer) with the hostile bytes.
        var mem = s.Kernel.Memory;
        var bad = Encoding.ASCII.GetBytes(tag);
        int replaced = 0;
        foreach (var table in s.TrackerTables)
        {
            var buf = new byte[0x20000];
            for (int off = 0; off < buf.Length; off += 0x1000)
            {
                if (!mem.IsMapped(table + (ulong)off)) continue;
                var page = new byte[0x1000];
                mem.Read(table + (ulong)off, page);
                for (int i = 0; i + 4 <= page.Length; i += 4)
                    if (page.AsSpan(i, 4).SequenceEqual("Leak"u8)) { mem.Write(table + (ulong)(off + i), bad); replaced++; }
            }
        }
        Assert.That(replaced, Is.GreaterThan(0), "no 'Leak' tag found in the tracker tables");
        var sink = new BufferSink(true);
        int hr = CommandDispatcher.Run("leaktag", "-nonpaged -n 5", s.Kernel.CreateTarget(), sink, null);
        Assert.That(hr, Is.EqualTo(0), sink.All);
        Assert.That(sink.Text, Does.Contain(Dml.Escape(tag)), "the tag is still shown (escaped)");
        foreach (var line in sink.Text.Split('\n').Where(l => l.Contains("cmd=\"")))
        {
            int a = line.IndexOf("cmd=\"", StringComparison.Ordinal) + 5;
            string cmd = System.Net.WebUtility.HtmlDecode(line[a..line.IndexOf('"', a)]);
            Assert.That(cmd, Does.Not.Contain(";"), line);
            Assert.That(cmd, Does.Not.Contain(tag), line);
        }
    }
}
