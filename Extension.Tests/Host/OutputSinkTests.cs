using Moq;
using NtSleuth.Extension;
using NtSleuth.Extension.Interop;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

public class OutputSinkTests
{
    [Test]
    public void TextGoesVerbatimWithAmbientText()
    {
        var engine = new Mock<IEngineOutput>();
        var sink = new DbgEngOutputSink(engine.Object, prefersDml: false);
        sink.Write("100% of %s %p\n", false);
        engine.Verify(e => e.Output(DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT, DbgEngConst.DEBUG_OUTPUT_NORMAL, "100% of %s %p\n"), Times.Once);
        Assert.That(sink.PrefersDml, Is.False);
    }

    [Test]
    public void DmlUsesAmbientDmlAndErrorsUseErrorMask()
    {
        var engine = new Mock<IEngineOutput>();
        var sink = new DbgEngOutputSink(engine.Object, prefersDml: true);
        sink.Write("<link cmd=\"dt nt!_KTHREAD 1\">1</link>\n", true);
        sink.WriteError("bad\n");
        engine.Verify(e => e.Output(DbgEngConst.DEBUG_OUTCTL_AMBIENT_DML, DbgEngConst.DEBUG_OUTPUT_NORMAL, It.IsAny<string>()), Times.Once);
        engine.Verify(e => e.Output(DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT, DbgEngConst.DEBUG_OUTPUT_ERROR, "bad\n"), Times.Once);
        Assert.That(sink.PrefersDml, Is.True);
    }

    [Test]
    public void EngineFailureDoesNotThrow()
    {
        var engine = new Mock<IEngineOutput>();
        engine.Setup(e => e.Output(It.IsAny<uint>(), It.IsAny<uint>(), It.IsAny<string>())).Throws(new InvalidOperationException("x"));
        var sink = new DbgEngOutputSink(engine.Object, false);
        Assert.DoesNotThrow(() => sink.Write("a", false));
        Assert.DoesNotThrow(() => sink.WriteError("a"));
    }

    [Test]
    public void LongOutputIsChunkedAtLineBoundaries()
    {
        var lines = Enumerable.Range(0, 2000).Select(i => $"line {i:D5} {new string('x', 20)}\n");
        string text = string.Concat(lines);
        var chunks = new List<string>();
        var engine = new Mock<IEngineOutput>();
        engine.Setup(e => e.Output(It.IsAny<uint>(), It.IsAny<uint>(), It.IsAny<string>()))
              .Callback<uint, uint, string>((_, _, t) => chunks.Add(t));
        new DbgEngOutputSink(engine.Object, false).Write(text, false);
        Assert.That(chunks.Count, Is.GreaterThan(1));
        Assert.That(string.Concat(chunks), Is.EqualTo(text));
        Assert.That(chunks, Has.All.Length.LessThanOrEqualTo(DbgEngOutputSink.ChunkChars));
        Assert.That(chunks.Take(chunks.Count - 1), Has.All.EndsWith("\n"));
    }

    [Test]
    public void LongLineWithoutNewlineIsNotSplitInsideATagOrEntity()
    {
        string unit = "<link cmd=\"dt nt!_EPROCESS ffff\">a&amp;b</link> ";
        string text = string.Concat(Enumerable.Repeat(unit, 300));
        var chunks = OutputChunker.Split(text, 1000, dml: true).ToList();
        Assert.That(string.Concat(chunks), Is.EqualTo(text));
        foreach (var c in chunks)
        {
            Assert.That(c.Length, Is.LessThanOrEqualTo(1000));
            Assert.That(c.LastIndexOf('<'), Is.LessThan(Math.Max(0, c.LastIndexOf('>')) + 1), "no open tag at chunk end: " + c[^20..]);
            int amp = c.LastIndexOf('&');
            Assert.That(amp < 0 || c.IndexOf(';', amp) > amp, Is.True, "no open entity at chunk end");
        }
    }

    [Test]
    public void SurrogatePairsAreNotSplit()
    {
        string text = new string('a', 15) + "\U0001F600" + new string('b', 30);
        var chunks = OutputChunker.Split(text, 16, dml: false).ToList();
        Assert.That(string.Concat(chunks), Is.EqualTo(text));
        Assert.That(chunks.All(c => !char.IsHighSurrogate(c[^1])), Is.True);
    }
}
