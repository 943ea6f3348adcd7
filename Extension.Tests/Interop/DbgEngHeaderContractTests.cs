using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using NtSleuth.Extension.Interop;
using NUnit.Framework;

namespace NtSleuth.Tests.Interop;

/// <summary>
/// Interop contract: every COM interface we declare has the IID of the real dbgeng.h and lists its methods in the
/// header's vtable order (name and parameter count, slot by slot). A wrong slot is a silent wrong call at run time.
/// </summary>
public class DbgEngHeaderContractTests
{
    private static DbgEngHeader? _header;

    private static DbgEngHeader Header()
    {
        if (_header is not null) return _header;
        var path = DbgEngHeader.Locate();
        if (path is null)
            Assert.Ignore($"dbgeng.h of NuGet Microsoft.Debugging.Platform.DbgEng {DbgEngHeader.PackageVersion} not in the package cache (restore the test project: it has a PackageDownload for it)");
        return _header = DbgEngHeader.Parse(File.ReadAllText(path!));
    }

    public static IEnumerable<Type> DeclaredInterfaces() =>
        typeof(IDebugControl4).Assembly.GetTypes()
            .Where(t => t.IsInterface && t.GetCustomAttribute<GeneratedComInterfaceAttribute>() is not null
                        && t.Namespace == typeof(IDebugControl4).Namespace) // dbgmodel.h's: DbgModelHeaderContractTests
            .OrderBy(t => t.Name);

    /// <summary>Our methods in declaration (= vtable) order: metadata order of the interface's own methods.</summary>
    public static List<HeaderMethod> OurMethods(Type t) =>
        t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .OrderBy(m => m.MetadataToken)
            .Select(m => new HeaderMethod(m.Name, m.GetParameters().Length))
            .ToList();

    [Test]
    public void WeDeclareTheInterfacesTheHostUses()
    {
        var names = DeclaredInterfaces().Select(t => t.Name).ToList();
        Assert.That(names, Is.SupersetOf(new[] { "IDebugControl4", "IDebugDataSpaces4", "IDebugSymbols3", "IDebugSystemObjects" }));
    }

    [TestCaseSource(nameof(DeclaredInterfaces))]
    public void IidMatchesHeader(Type iface)
    {
        var h = Header();
        Assert.That(h.Iids.ContainsKey(iface.Name), Is.True, $"IID_{iface.Name} not in dbgeng.h");
        Assert.That(iface.GUID, Is.EqualTo(h.Iids[iface.Name]), $"{iface.Name} IID");
    }

    [TestCaseSource(nameof(DeclaredInterfaces))]
    public void MethodsAreInHeaderVtableOrder(Type iface)
    {
        var h = Header();
        Assert.That(h.Interfaces.ContainsKey(iface.Name), Is.True, $"DECLARE_INTERFACE_({iface.Name}) not in dbgeng.h");
        var ours = OurMethods(iface);
        Assert.That(ours, Is.Not.Empty);
        var problems = VtableComparer.Compare(iface.Name, h.Interfaces[iface.Name], ours);
        Assert.That(problems, Is.Empty, string.Join("\n", problems));
    }

    [Test]
    public void MethodsWeCallAreDeclared()
    {
        // The host calls these; each must exist in our declaration (and so be checked above).
        var required = new Dictionary<Type, string[]>
        {
            [typeof(IDebugControl4)] = ["GetInterrupt", "GetEngineOptions", "ControlledOutputWide", "Evaluate", "GetStackTrace",
                "GetDebuggeeType", "ReadBugCheckData", "GetNumberProcessors", "GetSystemVersion", "GetCurrentTimeDate",
                "GetCurrentSystemUpTime", "IsPointer64Bit", "GetWindbgExtensionApis64"],
            [typeof(IDebugDataSpaces4)] = ["ReadVirtual", "SearchVirtual"],
            [typeof(IDebugSymbols3)] = ["GetOffsetByName", "GetNameByOffset", "GetSymbolTypeId", "GetTypeId", "GetTypeSize",
                "GetTypeName", "GetFieldName", "GetFieldTypeAndOffset", "GetNumberModules", "GetModuleParameters",
                "GetModuleNames", "GetModuleByModuleName"],
            [typeof(IDebugSystemObjects)] = ["GetEventThread"],
            [typeof(IDebugSystemObjects2)] = ["GetImplicitProcessDataOffset", "SetImplicitProcessDataOffset"],
        };
        foreach (var (t, names) in required)
            Assert.That(OurMethods(t).Select(m => m.Name), Is.SupersetOf(names), t.Name);
    }

    [Test]
    public void SystemObjects2IsGeneratedWithTheImplicitProcessSlots()
    {
        // ReadProcessVirtual switches the implicit process through these two slots; IDebugSystemObjects2 repeats
        // IDebugSystemObjects' methods first (it derives from IUnknown in dbgeng.h), so a wrong count shifts them.
        var h = Header();
        Assert.That(typeof(IDebugSystemObjects2).GUID, Is.EqualTo(new Guid("0ae9f5ff-1852-4679-b055-494bee6407ee")));
        var header = h.Interfaces["IDebugSystemObjects2"];
        var ours = OurMethods(typeof(IDebugSystemObjects2));
        int Slot(List<HeaderMethod> list, string name) => list.FindIndex(m => m.Name == name);
        Assert.That(Slot(header, "GetImplicitProcessDataOffset"), Is.GreaterThan(0));
        // Header lists include IUnknown's three methods; ours do not.
        Assert.That(Slot(ours, "GetImplicitProcessDataOffset") + 3, Is.EqualTo(Slot(header, "GetImplicitProcessDataOffset")));
        Assert.That(Slot(ours, "SetImplicitProcessDataOffset") + 3, Is.EqualTo(Slot(header, "SetImplicitProcessDataOffset")));
        Assert.That(ours.Count + 3, Is.EqualTo(header.Count));
        Assert.That(OurMethods(typeof(IDebugSystemObjects)).Count, Is.LessThan(ours.Count), "the 2 interface extends the 1 interface");
    }

    [Test]
    public void GeneratedInteropIsUpToDateWithTheGenerator()
    {
        // The checked-in DbgEng.g.cs is what scripts/gen-dbgeng-interop.py emits from the pinned dbgeng.h.
        var path = DbgEngHeader.Locate();
        if (path is null) Assert.Ignore("dbgeng.h not in the package cache");
        var root = RepoRoot();
        var psi = new System.Diagnostics.ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(root, "scripts", "gen-dbgeng-interop.py"));
        psi.ArgumentList.Add(path!);
        System.Diagnostics.Process? p;
        try { p = System.Diagnostics.Process.Start(psi); }
        catch (System.ComponentModel.Win32Exception) { Assert.Ignore("python3 is not installed"); return; }
        string generated = p!.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), p.StandardError.ReadToEnd());
        string checkedIn = File.ReadAllText(Path.Combine(root, "Extension", "Interop", "DbgEng.g.cs"));
        Assert.That(generated.ReplaceLineEndings("\n"), Is.EqualTo(checkedIn.ReplaceLineEndings("\n")), "regenerate Extension/Interop/DbgEng.g.cs");
    }

    [Test]
    public void ComparerDetectsASwappedMethod()
    {
        var h = Header();
        var header = h.Interfaces["IDebugDataSpaces4"];
        var ours = OurMethods(typeof(IDebugDataSpaces4));
        Assert.That(VtableComparer.Compare("IDebugDataSpaces4", header, ours), Is.Empty);
        // Swap ReadVirtual and WriteVirtual (slots 3 and 4): must be reported.
        var swapped = ours.ToList();
        (swapped[0], swapped[1]) = (swapped[1], swapped[0]);
        var problems = VtableComparer.Compare("IDebugDataSpaces4", header, swapped);
        Assert.That(problems, Has.Count.EqualTo(2));
        Assert.That(problems[0], Does.Contain("slot 3").And.Contain("WriteVirtual").And.Contain("ReadVirtual"));
        // A dropped method shifts every later slot.
        var dropped = ours.Where((_, i) => i != 5).ToList();
        Assert.That(VtableComparer.Compare("IDebugDataSpaces4", header, dropped), Is.Not.Empty);
        // A wrong parameter count is reported.
        var wrongArity = ours.ToList();
        wrongArity[0] = wrongArity[0] with { ParameterCount = wrongArity[0].ParameterCount + 1 };
        Assert.That(VtableComparer.Compare("IDebugDataSpaces4", header, wrongArity).Single(), Does.Contain("parameters"));
    }

    [Test]
    public void HeaderParserReadsKnownFacts()
    {
        var h = Header();
        Assert.That(h.Iids["IDebugControl4"], Is.EqualTo(new Guid("94e60ce9-9b41-4b19-9fc0-6d9eb35272b3")));
        var ds = h.Interfaces["IDebugDataSpaces"];
        Assert.That(ds[3], Is.EqualTo(new HeaderMethod("ReadVirtual", 4)));
        var ctl = h.Interfaces["IDebugControl"];
        Assert.That(ctl.Single(m => m.Name == "Output").ParameterCount, Is.EqualTo(3), "Mask, Format, ...");
        Assert.That(ctl[3].Name, Is.EqualTo("GetInterrupt"));
    }

    internal static string RepoRoot()
    {
        var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "NtSleuthExt.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repo root not found");
    }
}
