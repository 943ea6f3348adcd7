using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using System.Text.RegularExpressions;
using NtSleuth.Extension.Interop.DbgModel;
using NUnit.Framework;

namespace NtSleuth.Tests.Interop;

/// <summary>
/// Interop contract of the data-model provider: every dbgmodel interface we declare (Extension/Interop/DbgModel.cs,
/// the ones we call and the ones we implement) has the IID of the real dbgmodel.h and its methods in the header's
/// vtable order (name and parameter count); the enum and struct we pass have the header's values and size.
/// </summary>
public class DbgModelHeaderContractTests
{
    private static DbgEngHeader? _header;
    private static string? _text;

    private static DbgEngHeader Header()
    {
        if (_header is not null) return _header;
        var path = DbgEngHeader.Locate("dbgmodel.h");
        if (path is null)
            Assert.Ignore($"dbgmodel.h of NuGet Microsoft.Debugging.Platform.DbgEng {DbgEngHeader.PackageVersion} not in the package cache (restore the test project: it has a PackageDownload for it)");
        _text = File.ReadAllText(path!);
        return _header = DbgEngHeader.Parse(_text);
    }

    public static IEnumerable<Type> DeclaredInterfaces() =>
        typeof(IModelObject).Assembly.GetTypes()
            .Where(t => t.IsInterface && t.GetCustomAttribute<GeneratedComInterfaceAttribute>() is not null
                        && t.Namespace == typeof(IModelObject).Namespace)
            .OrderBy(t => t.Name);

    [Test]
    public void WeDeclareTheInterfacesTheProviderUses()
    {
        Assert.That(DeclaredInterfaces().Select(t => t.Name), Is.SupersetOf(new[]
        {
            "IHostDataModelAccess", "IDataModelManager", "IModelObject", "IDebugHost", "IDebugHostEvaluator", "IDebugHostExtensibility",
            "IModelMethod", "IModelPropertyAccessor", "IModelIterator", "IIterableConcept", "IIndexableConcept", "IDataModelConcept",
        }));
    }

    [TestCaseSource(nameof(DeclaredInterfaces))]
    public void IidMatchesHeader(Type iface)
    {
        var h = Header();
        Assert.That(h.Iids.ContainsKey(iface.Name), Is.True, $"IID_{iface.Name} not in dbgmodel.h");
        Assert.That(iface.GUID, Is.EqualTo(h.Iids[iface.Name]), iface.Name);
    }

    [TestCaseSource(nameof(DeclaredInterfaces))]
    public void MethodsAreInHeaderVtableOrder(Type iface)
    {
        var h = Header();
        Assert.That(h.Interfaces.ContainsKey(iface.Name), Is.True, $"DECLARE_INTERFACE_({iface.Name}) not in dbgmodel.h");
        var ours = DbgEngHeaderContractTests.OurMethods(iface);
        Assert.That(ours, Is.Not.Empty);
        var problems = VtableComparer.Compare(iface.Name, h.Interfaces[iface.Name], ours);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }

    [Test]
    public void InterfacesWeImplementAreComplete()
    {
        // The data model calls every slot of an interface we implement: ours must declare all of them.
        var h = Header();
        foreach (var t in new[] { typeof(IModelMethod), typeof(IModelPropertyAccessor), typeof(IModelIterator), typeof(IIterableConcept), typeof(IIndexableConcept), typeof(IDataModelConcept) })
            Assert.That(DbgEngHeaderContractTests.OurMethods(t).Count + 3, Is.EqualTo(h.Interfaces[t.Name].Count), t.Name);
    }

    [Test]
    public void ModelObjectKindHasTheHeaderValues()
    {
        Header();
        var m = Regex.Match(Regex.Replace(_text!, @"//[^\n]*|/\*.*?\*/", " ", RegexOptions.Singleline), @"enum\s+ModelObjectKind\s*\{(.*?)\}", RegexOptions.Singleline);
        Assert.That(m.Success, "enum ModelObjectKind not in dbgmodel.h");
        int next = 0;
        var header = new Dictionary<string, int>();
        foreach (var raw in m.Groups[1].Value.Split(','))
        {
            var e = raw.Trim();
            if (e.Length == 0) continue;
            var parts = e.Split('=', 2);
            int v = parts.Length == 2 ? Convert.ToInt32(parts[1].Trim(), parts[1].Trim().StartsWith("0x") ? 16 : 10) : next;
            header[parts[0].Trim()] = v;
            next = v + 1;
        }
        foreach (var name in Enum.GetNames<ModelObjectKind>())
        {
            Assert.That(header.ContainsKey(name), $"{name} not in the header's ModelObjectKind");
            Assert.That((int)Enum.Parse<ModelObjectKind>(name), Is.EqualTo(header[name]), name);
        }
    }

    [Test]
    public void StructsHaveTheNativeSize()
    {
        Assert.That(Marshal.SizeOf<Variant>(), Is.EqualTo(24), "VARIANT on x64");
        Assert.That(Marshal.SizeOf<ModelLocation>(), Is.EqualTo(16), "Location: HostDefined + Offset");
        Header();
        Assert.That(Regex.IsMatch(_text!, @"struct\s+Location\b"), "struct Location not in dbgmodel.h");
    }
}
