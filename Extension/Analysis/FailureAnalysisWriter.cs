using System.Text;
using NtSleuth.Extension.Interop;

namespace NtSleuth.Extension.Analysis;

/// <summary>Writes FA entries into !analyze's IDebugFailureAnalysis2 and says what it did with each.</summary>
public static class FailureAnalysisWriter
{
    public sealed record Outcome(FaEntry Entry, bool Written, string? Reason);

    /// <summary>
    /// An entry is written only when the analysis's tag table (IDebugFAEntryTags::GetType) gives the tag a type its
    /// value fits (a string into DEBUG_FA_ENTRY_ANSI_STRING; a 64-bit value into ULONG64, POINTER or
    /// INSTRUCTION_OFFSET), so nothing of the wrong shape lands in ext.dll's analysis. Without a tag table only the
    /// string entries are written (the tags used are the header's string tags).
    /// </summary>
    public static unsafe IReadOnlyList<Outcome> Apply(FailureAnalysis2 analysis, IReadOnlyList<FaEntry> entries)
    {
        var result = new List<Outcome>(entries.Count);
        var tags = analysis.GetTagControl();
        foreach (var e in entries)
        {
            if (tags is { } t)
            {
                uint type = t.GetType(e.Tag);
                bool fits = e.IsString
                    ? type == Extsfns.DEBUG_FA_ENTRY_ANSI_STRING
                    : type is Extsfns.DEBUG_FA_ENTRY_ULONG64 or Extsfns.DEBUG_FA_ENTRY_POINTER or Extsfns.DEBUG_FA_ENTRY_INSTRUCTION_OFFSET;
                if (!fits) { result.Add(new Outcome(e, false, $"the analysis types {Extsfns.TagName(e.Tag)} as FA_ENTRY_TYPE {type}")); continue; }
            }
            else if (!e.IsString) { result.Add(new Outcome(e, false, "no tag table to confirm the tag's type")); continue; }

            nint written;
            if (e.IsString)
            {
                // ANSI, NUL-terminated (the text is printable ASCII already: DpcBlameFailureAnalysis.Clean).
                byte[] bytes = Encoding.ASCII.GetBytes((e.Text ?? "") + "\0");
                fixed (byte* p = bytes) written = e.Replace ? analysis.SetString(e.Tag, p) : analysis.AddString(e.Tag, p);
            }
            else written = e.Replace ? analysis.SetUlong64(e.Tag, e.Value) : analysis.AddUlong64(e.Tag, e.Value);
            result.Add(new Outcome(e, written != 0, written != 0 ? null : "the analysis did not store it (no FA_ENTRY returned)"));
        }
        return result;
    }
}
