using System.Reflection;
using System.Text.RegularExpressions;
using NtSleuth.Extension.Interop;
using NUnit.Framework;

namespace NtSleuth.Tests.Interop;

/// <summary>
/// The !analyze plug-in's interop (Extension/Interop/Extsfns.cs) against extsfns.h, which the DbgEng NuGet package
/// does not ship. Two tiers:
///  - <see cref="InteropMatchesTheFactsReadFromThePublicHeaders"/> (always): the slot order, IIDs and values as read
///    from the two public copies named in docs/analyze.md (k0keoyo/SegmentHeapExt segmentheap/extsfns.h @ e4294ec7,
///    geduer/ndx inc/extsfns.h @ cc6c198e), pinned here; an edit of the interop that drifts from them fails.
///  - <see cref="InteropMatchesARealHeader"/> (when a header is at hand: NTSLEUTH_EXTSFNS_H, or the Debugging Tools'
///    Debuggers\inc\extsfns.h on Windows): parses the header's interface declarations, DEFINE_GUIDs and enums and
///    compares every declared slot, IID and constant.
/// </summary>
[TestFixture]
public class ExtsfnsContractTests
{
    // IDebugFailureAnalysis2 in the headers' order (IUnknown, then the IDebugFailureAnalysis part, then the "2" part).
    private static readonly string[] FailureAnalysis2Methods =
    [
        "QueryInterface", "AddRef", "Release",
        "GetFailureClass", "GetFailureType", "GetFailureCode", "Get", "GetNext", "GetString", "GetBuffer", "GetUlong", "GetUlong64", "NextEntry",
        "SetString", "SetExtensionCommand", "SetUlong", "SetUlong64", "SetBuffer",
        "AddString", "AddExtensionCommand", "AddUlong", "AddUlong64", "AddBuffer",
        "GetDebugFATagControl", "GetAnalysisXml",
    ];
    private static readonly string[] FAEntryTagsMethods = ["GetType", "SetType", "GetProperties", "SetProperties", "GetTagByName", "IsValidTagToSet"];

    private static readonly Dictionary<string, uint> Values = new()
    {
        ["FA_PLUGIN_INITILIZATION"] = 0x1, ["FA_PLUGIN_STACK_ANALYSIS"] = 0x2, ["FA_PLUGIN_PRE_BUCKETING"] = 0x4, ["FA_PLUGIN_POST_BUCKETING"] = 0x8,
        ["DEBUG_FA_ENTRY_NO_TYPE"] = 0, ["DEBUG_FA_ENTRY_ULONG"] = 1, ["DEBUG_FA_ENTRY_ULONG64"] = 2, ["DEBUG_FA_ENTRY_INSTRUCTION_OFFSET"] = 3,
        ["DEBUG_FA_ENTRY_POINTER"] = 4, ["DEBUG_FA_ENTRY_ANSI_STRING"] = 5, ["DEBUG_FA_ENTRY_EXTENSION_CMD"] = 7,
        ["DEBUG_FLR_BUGCHECK_CODE"] = 0x100C, ["DEBUG_FLR_IMAGE_NAME"] = 0x10001, ["DEBUG_FLR_SYMBOL_NAME"] = 0x10002,
        ["DEBUG_FLR_MODULE_NAME"] = 0x10006, ["DEBUG_FLR_ADDITIONAL_DEBUGTEXT"] = 0x1000A, ["DEBUG_FLR_FAULTING_IP"] = 0x80000000,
    };

    /// <summary>Every uint constant of <see cref="Extsfns"/> by name.</summary>
    private static Dictionary<string, uint> InteropConstants() =>
        typeof(Extsfns).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.FieldType == typeof(uint)).ToDictionary(f => f.Name, f => (uint)f.GetRawConstantValue()!);

    [Test]
    public void InteropMatchesTheFactsReadFromThePublicHeaders()
    {
        Assert.That(Enum.GetNames<FailureAnalysis2Slot>(), Is.EqualTo(FailureAnalysis2Methods));
        Assert.That(Enum.GetNames<FAEntryTagsSlot>(), Is.EqualTo(FAEntryTagsMethods));
        Assert.That(Extsfns.IID_IDebugFailureAnalysis2, Is.EqualTo(new Guid("ea15c288-8226-4b70-acf6-0be6b189e3ad")));
        Assert.That(InteropConstants(), Is.EquivalentTo(Values));
    }

    private static string? FindHeader()
    {
        var env = Environment.GetEnvironmentVariable("NTSLEUTH_EXTSFNS_H");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : throw new FileNotFoundException($"NTSLEUTH_EXTSFNS_H={env} does not exist");
        foreach (var pf in new[] { Environment.GetEnvironmentVariable("ProgramFiles(x86)"), Environment.GetEnvironmentVariable("ProgramFiles") })
            if (!string.IsNullOrEmpty(pf) && Path.Combine(pf, "Windows Kits", "10", "Debuggers", "inc", "extsfns.h") is var p && File.Exists(p)) return p;
        return null;
    }

    [Test]
    public void InteropMatchesARealHeader()
    {
        var path = FindHeader();
        if (path is null)
        {
            Assert.Ignore("no extsfns.h here (not in the DbgEng NuGet package): set NTSLEUTH_EXTSFNS_H to a copy (Windows SDK Debugging Tools, " +
                "Debuggers\\inc\\extsfns.h, or a public copy named in docs/analyze.md) to check the interop against it");
            return;
        }
        var h = ExtsfnsHeader.Parse(File.ReadAllText(path));
        var fa2 = h.Methods("IDebugFailureAnalysis2", out var fa2Base);
        Assert.That(fa2Base, Is.EqualTo("IUnknown"));
        Assert.That(fa2.Take(Enum.GetNames<FailureAnalysis2Slot>().Length), Is.EqualTo(Enum.GetNames<FailureAnalysis2Slot>()),
            $"{path}: IDebugFailureAnalysis2 vtable (the interop declares a prefix of it)");
        var tags = h.Methods("IDebugFAEntryTags", out var tagsBase);
        Assert.That(tagsBase, Is.Null, "IDebugFAEntryTags has no base interface (no IUnknown slots)");
        Assert.That(tags, Is.EqualTo(Enum.GetNames<FAEntryTagsSlot>()), $"{path}: IDebugFAEntryTags vtable");
        Assert.That(h.Guid("IID_IDebugFailureAnalysis2"), Is.EqualTo(Extsfns.IID_IDebugFailureAnalysis2));
        foreach (var (name, value) in InteropConstants())
        {
            Assert.That(h.EnumValues.TryGetValue(name, out var hv), Is.True, $"{name} is not an enumerator in {path}");
            Assert.That(hv, Is.EqualTo(value), $"{name} in {path}");
        }
        TestContext.Out.WriteLine($"checked against {path}: {fa2.Count} IDebugFailureAnalysis2 methods, {h.EnumValues.Count} enumerators");
    }

    [Test]
    public void HeaderParserComputesImplicitEnumValues()
    {
        var h = ExtsfnsHeader.Parse("""
            typedef enum _X {
                A = 0x10,   // comment, with a comma
                B,
            #ifdef SOMETHING
                C, /* block, comment */
            #endif
                D = 0x80000000,
                E,
                F = A,
            } X;
            #define G_OLD_NAME E     // an alias
            #undef INTERFACE
            #define INTERFACE IFoo
            DECLARE_INTERFACE_(IFoo, IUnknown)
            {
                STDMETHOD(QueryInterface)(THIS_ IN REFIID InterfaceId, OUT PVOID* Interface) PURE;
                STDMETHOD_(ULONG, AddRef)(THIS) PURE;
                STDMETHOD_(PFA_ENTRY, Bar)(THIS_ FA_TAG Tag) PURE;
            };
            DEFINE_GUID(IID_IFoo, 0xea15c288, 0x8226, 0x4b70, 0xac, 0xf6, 0x0b, 0xe6, 0xb1, 0x89, 0xe3, 0xad);
            """);
        Assert.That(h.EnumValues, Is.EquivalentTo(new Dictionary<string, uint> { ["A"] = 0x10, ["B"] = 0x11, ["C"] = 0x12, ["D"] = 0x80000000, ["E"] = 0x80000001, ["F"] = 0x10, ["G_OLD_NAME"] = 0x80000001 }));
        Assert.That(h.Methods("IFoo", out var b), Is.EqualTo(new[] { "QueryInterface", "AddRef", "Bar" }));
        Assert.That(b, Is.EqualTo("IUnknown"));
        Assert.That(h.Guid("IID_IFoo"), Is.EqualTo(new Guid("ea15c288-8226-4b70-acf6-0be6b189e3ad")));
    }
}

/// <summary>Just enough of a C header reader for extsfns.h's interfaces, GUIDs and enums (facts, never code).</summary>
internal sealed class ExtsfnsHeader
{
    private readonly string _text;
    public Dictionary<string, uint> EnumValues { get; } = new();

    private ExtsfnsHeader(string text) => _text = text;

    public static ExtsfnsHeader Parse(string text)
    {
        var h = new ExtsfnsHeader(StripComments(text));
        foreach (Match m in Regex.Matches(h._text, @"typedef\s+enum\s+\w*\s*\{(?<body>[^}]*)\}"))
            h.ReadEnum(m.Groups["body"].Value);
        // Aliases: newer headers spell FA_PLUGIN_INITIALIZATION and keep "#define FA_PLUGIN_INITILIZATION FA_PLUGIN_INITIALIZATION".
        foreach (Match m in Regex.Matches(h._text, @"^\s*#define\s+(?<alias>\w+)\s+(?<name>\w+)\s*$", RegexOptions.Multiline))
            if (!h.EnumValues.ContainsKey(m.Groups["alias"].Value) && h.EnumValues.TryGetValue(m.Groups["name"].Value, out var v))
                h.EnumValues[m.Groups["alias"].Value] = v;
        return h;
    }

    private static string StripComments(string s) => Regex.Replace(Regex.Replace(s, @"/\*.*?\*/", " ", RegexOptions.Singleline), @"//[^\n]*", "");

    private void ReadEnum(string body)
    {
        // Preprocessor lines inside the enum (#ifdef AUTOBUG_PROCESSING_SUPPORT ...) are taken as enabled.
        var lines = body.Split('\n').Where(l => !l.TrimStart().StartsWith('#'));
        ulong next = 0;
        foreach (var raw in string.Join("\n", lines).Split(','))
        {
            var item = raw.Trim();
            if (item.Length == 0) continue;
            var parts = item.Split('=', 2);
            string name = parts[0].Trim();
            if (parts.Length == 2)
            {
                var expr = parts[1].Trim();
                next = expr.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? Convert.ToUInt64(expr[2..], 16)
                    : ulong.TryParse(expr, out var d) ? d
                    : EnumValues.TryGetValue(expr, out var prev) ? prev
                    : throw new FormatException($"enumerator {name} = {expr}: not understood");
            }
            EnumValues[name] = unchecked((uint)next);
            next++;
        }
    }

    /// <summary>The STDMETHOD names of an interface declaration, in order; <paramref name="baseInterface"/> null for DECLARE_INTERFACE(x).</summary>
    public List<string> Methods(string iface, out string? baseInterface)
    {
        var m = Regex.Match(_text, @"DECLARE_INTERFACE(?:_\(\s*" + iface + @"\s*,\s*(?<base>\w+)\s*\)|\(\s*" + iface + @"\s*\))\s*\{(?<body>.*?)\n\s*\};", RegexOptions.Singleline);
        if (!m.Success) throw new InvalidDataException($"no DECLARE_INTERFACE for {iface}");
        baseInterface = m.Groups["base"].Success ? m.Groups["base"].Value : null;
        return Regex.Matches(m.Groups["body"].Value, @"STDMETHOD(?:_\(\s*[^,]+,\s*(?<n>\w+)\s*\)|\(\s*(?<n>\w+)\s*\))").Select(x => x.Groups["n"].Value).ToList();
    }

    public Guid Guid(string name)
    {
        var m = Regex.Match(_text, @"DEFINE_GUID\(\s*" + name + @"\s*,((?:\s*0x[0-9A-Fa-f]+\s*,?){11})\)");
        if (!m.Success) throw new InvalidDataException($"no DEFINE_GUID for {name}");
        var n = Regex.Matches(m.Groups[1].Value, @"0x([0-9A-Fa-f]+)").Select(x => Convert.ToUInt64(x.Groups[1].Value, 16)).ToArray();
        return new Guid((uint)n[0], (ushort)n[1], (ushort)n[2], (byte)n[3], (byte)n[4], (byte)n[5], (byte)n[6], (byte)n[7], (byte)n[8], (byte)n[9], (byte)n[10]);
    }
}
