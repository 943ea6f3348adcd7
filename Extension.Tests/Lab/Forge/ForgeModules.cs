using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary>
/// Ready-made module specs: the kernel from an ISF table, ndis.sys / fltMgr.sys publics from the per-build layout
/// table, and synthetic modules (drivers and user-mode DLLs with function publics only). Every spec is a plain
/// <see cref="ForgeModuleSpec"/>; callers may change any part (identity, extra publics) with <c>with</c>.
/// </summary>
public static class ForgeModules
{
    /// <summary>A stable GUID derived from a module name and a salt, so synthetic PDB identities do not change between runs.</summary>
    public static Guid StableGuid(string name, string salt = "")
    {
        var h = SHA256.HashData(Encoding.UTF8.GetBytes("ntsleuth-forge:" + name + ":" + salt));
        return new Guid(h.AsSpan(0, 16));
    }

    /// <summary>ntoskrnl.exe + ntkrnlmp.pdb with all ISF types and publics (identity = the table's GUID/age unless given).</summary>
    public static ForgeModuleSpec Kernel(IsfDocument isf, ForgeIdentity? identity = null, IReadOnlyDictionary<string, ulong>? extraPublics = null) =>
        ForgeModuleSpec.ForKernel(isf, identity, extraPublics);

    /// <summary>
    /// ndis.sys or fltMgr.sys for one build column of <c>realdata/layouts/ndis-fltmgr-layouts.json</c>: every global
    /// and listed code/rdata symbol that exists in that build, at its RVA. <paramref name="types"/> (optional) adds the
    /// module's types once they are available as an ISF-shaped document.
    /// </summary>
    public static ForgeModuleSpec FromLayouts(string layoutsJson, string module, string buildLabel, ForgeIdentity? identity = null,
        IsfDocument? types = null, uint sizeOfImage = 0)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(layoutsJson));
        if (!doc.RootElement.TryGetProperty("modules", out var mods) || !mods.TryGetProperty(module, out var m))
            throw new ForgeException($"{layoutsJson}: no module '{module}' (expected ndis or fltmgr)");
        string image = m.GetProperty("image").GetString()!;
        string pdb = m.GetProperty("pdb").GetString()!;
        var pubs = new Dictionary<string, ulong>(StringComparer.Ordinal);
        foreach (var group in new[] { "globals", "other_symbols" })
        {
            if (!m.TryGetProperty(group, out var g)) continue;
            foreach (var sym in g.EnumerateObject())
                if (sym.Value.TryGetProperty("rva", out var rva) && rva.TryGetProperty(buildLabel, out var v))
                    pubs[sym.Name] = v.GetUInt64();
        }
        if (pubs.Count == 0) throw new ForgeException($"{layoutsJson}: module '{module}' has no symbols for build '{buildLabel}'");
        return new ForgeModuleSpec
        {
            ImageName = image, PdbName = pdb, Kind = ForgeModuleKind.Driver, Types = types, Publics = pubs,
            Identity = identity ?? new ForgeIdentity
            {
                PdbGuid = StableGuid(pdb, buildLabel), Age = 1, TimeDateStamp = 0,
                SizeOfImage = sizeOfImage, // 0 = what the linker laid out (publics + the small .rdata/.data after them)
            },
        };
    }

    /// <summary>
    /// ndis.sys / fltMgr.sys with publics AND the module's types from the layout table for <paramref name="buildLabel"/>,
    /// by-value nt types taken from <paramref name="nt"/> (the ISF of the same Windows build). See <see cref="Layouts.LayoutTable.ToIsf(string, string, IsfDocument?, out IReadOnlyList{string})"/>
    /// for what is approximated; the approximations come back in <paramref name="notes"/>.
    /// </summary>
    public static ForgeModuleSpec FromLayoutsWithTypes(string layoutsJson, string module, string buildLabel, IsfDocument? nt,
        out IReadOnlyList<string> notes, ForgeIdentity? identity = null, uint sizeOfImage = 0)
    {
        var doc = Layouts.LayoutTable.Open(layoutsJson).ToIsf(module, buildLabel, nt, out notes);
        return FromLayouts(layoutsJson, module, buildLabel, identity, doc, sizeOfImage);
    }

    /// <summary>
    /// A synthetic module with function publics only. RVAs: the given ones, or (for names given without an RVA)
    /// 0x1000 apart from 0x1000 in the order given.
    /// </summary>
    public static ForgeModuleSpec Synthetic(string imageName, ForgeModuleKind kind, IEnumerable<string> publicNames, uint sizeOfImage = 0,
        ForgeIdentity? identity = null, string? pdbName = null)
    {
        var pubs = new Dictionary<string, ulong>(StringComparer.Ordinal);
        ulong rva = 0x1000;
        foreach (var n in publicNames) { pubs[n] = rva; rva += 0x1000; }
        return Synthetic(imageName, kind, pubs, sizeOfImage, identity, pdbName);
    }

    public static ForgeModuleSpec Synthetic(string imageName, ForgeModuleKind kind, IReadOnlyDictionary<string, ulong> publics, uint sizeOfImage = 0,
        ForgeIdentity? identity = null, string? pdbName = null)
    {
        pdbName ??= Path.GetFileNameWithoutExtension(imageName) + ".pdb";
        return new ForgeModuleSpec
        {
            ImageName = imageName, PdbName = pdbName, Kind = kind, Publics = publics,
            Identity = identity ?? new ForgeIdentity
            {
                PdbGuid = StableGuid(pdbName), Age = 1, TimeDateStamp = 0x5f000000,
                SizeOfImage = sizeOfImage,
            },
        };
    }

    /// <summary>KMDF sample driver of the DPC-watchdog seed: the timer callback that stalls in a DPC.</summary>
    public static ForgeModuleSpec Echo(ForgeIdentity? identity = null) =>
        Synthetic("ECHO.sys", ForgeModuleKind.Driver, ["DriverEntry", "EchoEvtDeviceAdd", "EchoEvtTimerFunc", "EchoEvtIoRead", "EchoEvtIoWrite", "EchoEvtIoQueueContextDestroy"],
            identity: identity, pdbName: "echo.pdb");

    /// <summary>
    /// KMDF runtime: FxTimer::TimerHandler is the KDPC routine that calls a driver's EvtTimerFunc. Public names are
    /// MSVC-decorated like in Microsoft's PDB (the engine undecorates them: <c>Wdf01000!FxTimer::TimerHandler</c>).
    /// </summary>
    public static ForgeModuleSpec Wdf01000(ForgeIdentity? identity = null) =>
        Synthetic("Wdf01000.sys", ForgeModuleKind.Driver, new Dictionary<string, ulong>
        {
            ["?TimerHandler@FxTimer@@CAXPEAU_KDPC@@PEAX11@Z"] = 0x1000,           // static void FxTimer::TimerHandler(KDPC*, void*, void*, void*)
            ["?TimerHandler@FxTimer@@QEAAXXZ"] = 0x1400,                           // void FxTimer::TimerHandler()
            ["?_FxTimerDpcThunk@FxTimer@@CAXPEAU_KDPC@@PEAX11@Z"] = 0x1800,
            ["imp_WdfTimerCreate"] = 0x2000,
            ["imp_WdfTimerStart"] = 0x2400,
            ["FxDriverEntry"] = 0x3000,
        }, identity: identity, pdbName: "Wdf01000.pdb");

    /// <summary>Sysinternals NotMyFault's driver; the pool-leak seed has the "Leak" tag bytes twice in its image.</summary>
    public static ForgeModuleSpec MyFault(ForgeIdentity? identity = null) =>
        Synthetic("myfault.sys", ForgeModuleKind.Driver, ["DriverEntry", "MyfaultDispatch", "MyfaultDeviceControl", "MyfaultUnload", "LeakPool", "ForceHang"],
            identity: identity, pdbName: "myfault.pdb");

    /// <summary>The DHCP client core (svchost, user mode): globals and the request loop the !dhcptimer seed names.</summary>
    public static ForgeModuleSpec DhcpCore(ForgeIdentity? identity = null) =>
        Synthetic("dhcpcore.dll", ForgeModuleKind.UserDll, new Dictionary<string, ulong>
        {
            ["ProcessDhcpRequestForever"] = 0x1000,
            ["DhcpRenewalTimer"] = 0x1800,
            ["ScheduleWakeUp"] = 0x2000,
            ["DhcpGlobalNICList"] = 0x40000,
            ["DhcpGlobalRenewList"] = 0x40010,
            ["DhcpGlobalRecomputeTimerEvent"] = 0x40020,
            ["DhcpGlobalTerminateEvent"] = 0x40028,
            ["DhcpGlobalServiceStatus"] = 0x40040,
        }, identity: identity, pdbName: "dhcpcore.pdb");
}
