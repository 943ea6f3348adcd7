using NtSleuth.Commands.Output;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension;

/// <summary>The one engine call output needs: text written verbatim (the engine never interprets '%' in it).</summary>
internal interface IEngineOutput
{
    int Output(uint outputControl, uint mask, string text);
}

/// <summary>Writes through IDebugControl4::ControlledOutputWide(outctl, mask, L"%ws", text): '%' in text is safe.</summary>
internal sealed unsafe class DbgEngControlOutput(IDebugControl4 control) : IEngineOutput
{
    public int Output(uint outputControl, uint mask, string text)
    {
        fixed (char* fmt = "%ws")
        fixed (char* p = text)
            return control.ControlledOutputWide(outputControl, mask, fmt, p);
    }
}

/// <summary>
/// <see cref="IOutputSink"/> over the engine: DML through DEBUG_OUTCTL_AMBIENT_DML, text through AMBIENT_TEXT,
/// errors with DEBUG_OUTPUT_ERROR. Long text is split into chunks (the engine truncates very long single outputs).
/// Output failures are swallowed: output must never throw into a command's error path.
/// </summary>
internal sealed class DbgEngOutputSink(IEngineOutput engine, bool prefersDml) : IOutputSink
{
    /// <summary>Max chars per engine call; the engine's formatting buffer is 16K chars.</summary>
    public const int ChunkChars = 4096;

    public bool PrefersDml { get; } = prefersDml;

    public void Write(string text, bool isDml) =>
        Emit(isDml ? DbgEngConst.DEBUG_OUTCTL_AMBIENT_DML : DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT,
             DbgEngConst.DEBUG_OUTPUT_NORMAL, text, isDml);

    public void WriteError(string text) =>
        Emit(DbgEngConst.DEBUG_OUTCTL_AMBIENT_TEXT, DbgEngConst.DEBUG_OUTPUT_ERROR, text, false);

    private void Emit(uint outctl, uint mask, string text, bool dml)
    {
        if (string.IsNullOrEmpty(text)) return;
        foreach (var chunk in OutputChunker.Split(text, ChunkChars, dml))
        {
            try { engine.Output(outctl, mask, chunk); } catch { /* swallow */ }
        }
    }
}

/// <summary>
/// Splits output into engine-sized pieces: after a newline when possible; otherwise never inside a DML tag
/// (&lt;...&gt;) or entity (&amp;...;) and never between the halves of a surrogate pair.
/// </summary>
internal static class OutputChunker
{
    public static IEnumerable<string> Split(string text, int max, bool dml)
    {
        if (max < 16) throw new ArgumentOutOfRangeException(nameof(max));
        int pos = 0;
        while (pos < text.Length)
        {
            int remaining = text.Length - pos;
            if (remaining <= max) { yield return text.Substring(pos); yield break; }
            int end = pos + max; // exclusive candidate
            int nl = text.LastIndexOf('\n', end - 1, max);
            int cut;
            if (nl >= pos) cut = nl + 1;
            else
            {
                cut = end;
                if (dml)
                {
                    int lt = text.LastIndexOf('<', cut - 1, cut - pos);
                    int gt = text.LastIndexOf('>', cut - 1, cut - pos);
                    if (lt > gt && lt > pos) cut = lt;            // inside a tag: cut before it
                    int amp = text.LastIndexOf('&', cut - 1, cut - pos);
                    int semi = text.LastIndexOf(';', cut - 1, cut - pos);
                    if (amp > semi && amp > pos && cut - amp < 12) cut = amp; // inside an entity
                }
                if (char.IsHighSurrogate(text[cut - 1]) && cut - 1 > pos) cut--;
            }
            yield return text.Substring(pos, cut - pos);
            pos = cut;
        }
    }
}
