using System.Text.RegularExpressions;
using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Interop;

/// <summary>
/// The data-model symbol lookup (Extension/HostSymbolLookup.cs) calls dbgmodel interfaces by raw vtable slot. Its slots
/// must be those of the C++ layout the engine implements: a derived interface begins with every slot of its base.
/// dbgmodel.h lists IDebugHostSymbol's CompareAgainst only in IDebugHostSymbol, not again in IDebugHostModule /
/// IDebugHostPublic / IDebugHostData, so counting a derived interface's listed methods (the C reading) puts
/// FindSymbolByName one slot too early (14 instead of 15). The slots are computed here from the real header with
/// inheritance, and the IIDs compared with the header's.
/// </summary>
public class DbgModelSymbolSlotsTests
{
    private static string? _text;

    private static string Text()
    {
        if (_text is not null) return _text;
        var path = DbgEngHeader.Locate("dbgmodel.h");
        if (path is null)
            Assert.Ignore($"dbgmodel.h of NuGet Microsoft.Debugging.Platform.DbgEng {DbgEngHeader.PackageVersion} not in the package cache (restore the test project)");
        return _text = Regex.Replace(File.ReadAllText(path!), @"//[^\n]*|/\*.*?\*/", " ", RegexOptions.Singleline);
    }

    /// <summary>Vtable of <paramref name="iface"/> as C++ lays it out: the base's slots, then the methods it adds.</summary>
    internal static List<string> CppSlots(string text, string iface)
    {
        if (iface == "IUnknown") return ["QueryInterface", "AddRef", "Release"];
        var m = Regex.Match(text, @"DECLARE_INTERFACE_\(\s*" + iface + @"\s*,\s*(\w+)\s*\)\s*\{");
        Assert.That(m.Success, $"DECLARE_INTERFACE_({iface}, ...) not in dbgmodel.h");
        var slots = CppSlots(text, m.Groups[1].Value);
        int i = m.Index + m.Length, depth = 1;
        while (depth > 0) { if (text[i] == '{') depth++; else if (text[i] == '}') depth--; i++; }
        string body = text.Substring(m.Index + m.Length, i - 1 - (m.Index + m.Length));
        foreach (Match mm in Regex.Matches(body, @"STDMETHODV?(?:_\(\s*\w+\s*,\s*(\w+)\s*\)|\(\s*(\w+)\s*\))\s*\("))
        {
            string name = mm.Groups[1].Success ? mm.Groups[1].Value : mm.Groups[2].Value;
            if (!slots.Contains(name)) slots.Add(name); // a listed base method overrides its slot, it adds none
        }
        return slots;
    }

    [TestCase("IHostDataModelAccess", "GetDataModel", HostSymbolLookup.Slots.HostDataModelAccess_GetDataModel)]
    [TestCase("IDebugHost", "GetCurrentContext", HostSymbolLookup.Slots.DebugHost_GetCurrentContext)]
    [TestCase("IDebugHostSymbols", "FindModuleByName", HostSymbolLookup.Slots.DebugHostSymbols_FindModuleByName)]
    [TestCase("IDebugHostSymbol", "GetSymbolKind", HostSymbolLookup.Slots.DebugHostSymbol_GetSymbolKind)]
    [TestCase("IDebugHostModule", "FindSymbolByName", HostSymbolLookup.Slots.DebugHostModule_FindSymbolByName)]
    [TestCase("IDebugHostPublic", "GetLocation", HostSymbolLookup.Slots.DebugHostPublic_GetLocation)]
    [TestCase("IDebugHostData", "GetLocationKind", HostSymbolLookup.Slots.DebugHostData_GetLocationKind)]
    [TestCase("IDebugHostData", "GetLocation", HostSymbolLookup.Slots.DebugHostData_GetLocation)]
    // The data-model type layouts (Extension/HostTypes.cs).
    [TestCase("IDebugHostSymbol", "EnumerateChildren", DataModelTypes.Slots.Symbol_EnumerateChildren)]
    [TestCase("IDebugHostSymbol", "GetName", DataModelTypes.Slots.Symbol_GetName)]
    [TestCase("IDebugHostSymbol", "GetType", DataModelTypes.Slots.Symbol_GetType)]
    [TestCase("IDebugHostField", "GetName", DataModelTypes.Slots.Symbol_GetName)]
    [TestCase("IDebugHostField", "GetType", DataModelTypes.Slots.Symbol_GetType)]
    [TestCase("IDebugHostType", "GetName", DataModelTypes.Slots.Symbol_GetName)]
    [TestCase("IDebugHostType", "EnumerateChildren", DataModelTypes.Slots.Symbol_EnumerateChildren)]
    [TestCase("IDebugHostModule", "FindTypeByName", DataModelTypes.Slots.Module_FindTypeByName)]
    [TestCase("IDebugHostType", "GetTypeKind", DataModelTypes.Slots.Type_GetTypeKind)]
    [TestCase("IDebugHostType", "GetSize", DataModelTypes.Slots.Type_GetSize)]
    [TestCase("IDebugHostType", "GetBaseType", DataModelTypes.Slots.Type_GetBaseType)]
    [TestCase("IDebugHostType", "GetIntrinsicType", DataModelTypes.Slots.Type_GetIntrinsicType)]
    [TestCase("IDebugHostType", "GetBitField", DataModelTypes.Slots.Type_GetBitField)]
    [TestCase("IDebugHostType", "GetArrayDimensionality", DataModelTypes.Slots.Type_GetArrayDimensionality)]
    [TestCase("IDebugHostType", "GetArrayDimensions", DataModelTypes.Slots.Type_GetArrayDimensions)]
    [TestCase("IDebugHostField", "GetLocationKind", DataModelTypes.Slots.Field_GetLocationKind)]
    [TestCase("IDebugHostField", "GetOffset", DataModelTypes.Slots.Field_GetOffset)]
    [TestCase("IDebugHostSymbolEnumerator", "GetNext", DataModelTypes.Slots.Enumerator_GetNext)]
    public void SlotIsTheHeadersCppSlot(string iface, string method, int slot)
    {
        var slots = CppSlots(Text(), iface);
        Assert.That(slots.IndexOf(method), Is.EqualTo(slot), $"{iface}::{method}; C++ vtable: {string.Join(", ", slots.Select((n, i) => $"{i} {n}"))}");
    }

    [Test]
    public void TheCReadingWouldBeWrong()
    {
        // The trap the comment describes is real in this header (if a later header lists CompareAgainst again, the
        // C and C++ readings agree and this test can go).
        var t = Text();
        var m = Regex.Match(t, @"DECLARE_INTERFACE_\(\s*IDebugHostModule\s*,\s*IDebugHostSymbol\s*\)\s*\{(.*?)\n\};", RegexOptions.Singleline);
        Assert.That(m.Success);
        Assert.That(m.Groups[1].Value, Does.Not.Contain("CompareAgainst"));
        Assert.That(CppSlots(t, "IDebugHostSymbol"), Does.Contain("CompareAgainst"));
    }

    [Test]
    public void IidsMatchTheHeader()
    {
        var h = DbgEngHeader.Parse(File.ReadAllText(DbgEngHeader.Locate("dbgmodel.h") ?? "/nonexistent"));
        Assert.That(HostSymbolLookup.IID_IHostDataModelAccess, Is.EqualTo(h.Iids["IHostDataModelAccess"]));
        Assert.That(HostSymbolLookup.IID_IDebugHostSymbols, Is.EqualTo(h.Iids["IDebugHostSymbols"]));
        Assert.That(HostSymbolLookup.IID_IDebugHostPublic, Is.EqualTo(h.Iids["IDebugHostPublic"]));
        Assert.That(HostSymbolLookup.IID_IDebugHostData, Is.EqualTo(h.Iids["IDebugHostData"]));
    }

    [TestCase("PoolTrackTable", true)]
    [TestCase("_KiProcessorBlock", true)]
    [TestCase("Ke2", true)]
    [TestCase("2Ke", false)]
    [TestCase("?Foo@@YAXXZ", false)]
    [TestCase("_KeBugCheckEx@20", false)]
    [TestCase("Foo::Bar", false)]
    [TestCase("", false)]
    public void OnlyPlainIdentifiersHaveFinalMisses(string name, bool plain) =>
        Assert.That(DbgEngTarget.IsPlainIdentifier(name), Is.EqualTo(plain));
}
