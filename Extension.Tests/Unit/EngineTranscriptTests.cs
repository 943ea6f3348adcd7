using NtSleuth.Tests.EndToEnd;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>The harness's reading of an enginehost transcript: the engine's asynchronous extension-gallery log lines are
/// not part of a command's output, wherever the engine writes them and with whatever line breaks around them.</summary>
[TestFixture]
public class EngineTranscriptTests
{
    private const string Log = "<Log message=\"DownloadUpdates completed\" component=\"DbgEng\" category=\"ExtensionGallery\" time=\"x\"/>";

    private static string Body(string inner) =>
        RealEngine.Parse("@@begin !cmd\n" + inner + "\n@@end 00000000 1.5\n")[0].Output;

    [Test]
    public void NoLogLeavesOutputAlone() => Assert.That(Body("a\r\n\r\nb"), Is.EqualTo("a\r\n\r\nb"));

    [TestCase(Log + "\r\nwinlogon")]
    [TestCase("\r\n" + Log + "\r\nwinlogon")]
    [TestCase(Log + "\r\n\r\nwinlogon")]
    public void LogAtTheStartLeavesNoBlankLine(string inner) => Assert.That(Body(inner), Is.EqualTo("winlogon"));

    [Test]
    public void LogBetweenTwoLinesKeepsOneBreak() => Assert.That(Body("a\r\n" + Log + "\r\nb"), Is.EqualTo("a\nb"));

    [Test]
    public void LogAtTheEndGoes() => Assert.That(Body("a\r\n" + Log), Is.EqualTo("a"));
}
