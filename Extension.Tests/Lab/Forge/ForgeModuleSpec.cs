using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary>What kind of PE image the forge links. The kind decides the linker subsystem and the header flags.</summary>
public enum ForgeModuleKind
{
    /// <summary>ntoskrnl.exe: a native-subsystem executable image (what the engine expects for nt).</summary>
    KernelImage,
    /// <summary>A kernel driver (.sys): native subsystem, linked with /driver.</summary>
    Driver,
    /// <summary>A user-mode DLL (e.g. dhcpcore.dll): Windows GUI subsystem, /dll.</summary>
    UserDll,
}

/// <summary>
/// Identity of a PDB and its image: the CodeView (RSDS) record the engine matches the PDB against, and the
/// image header values it compares with the loaded-module list of a dump.
/// </summary>
public sealed record ForgeIdentity
{
    public required Guid PdbGuid { get; init; }
    public int Age { get; init; } = 1;
    public uint TimeDateStamp { get; init; }
    /// <summary>PE SizeOfImage to write into the header; 0 = keep what the linker produced.</summary>
    public uint SizeOfImage { get; init; }
    /// <summary>PE CheckSum to write; null = compute the real PE checksum of the forged file.</summary>
    public uint? CheckSum { get; init; }

    /// <summary>Parses the symbol-store spelling "GUID" (32 hex digits, as in ISF metadata / dbghelp) into a Guid.</summary>
    public static Guid ParseStoreGuid(string hex32)
    {
        if (hex32.Length != 32) throw new ArgumentException($"PDB GUID must be 32 hex digits: '{hex32}'");
        // The store spelling is Data1 (8) Data2 (4) Data3 (4) then the 8 bytes of Data4 in order.
        return Guid.ParseExact($"{hex32[..8]}-{hex32[8..12]}-{hex32[12..16]}-{hex32[16..20]}-{hex32[20..]}", "D");
    }

    public static string StoreGuid(Guid g) => g.ToString("N").ToUpperInvariant();
}

/// <summary>
/// A module to forge: image name + PDB name + kind, optional types (an ISF document), public symbols
/// (name -> RVA, each at or above 0x1000), SizeOfImage and identity.
/// </summary>
public sealed record ForgeModuleSpec
{
    /// <summary>Image file name, e.g. "ntoskrnl.exe", "ndis.sys", "dhcpcore.dll".</summary>
    public required string ImageName { get; init; }
    /// <summary>PDB file name recorded in the image's CodeView record, e.g. "ntkrnlmp.pdb".</summary>
    public required string PdbName { get; init; }
    public ForgeModuleKind Kind { get; init; } = ForgeModuleKind.Driver;
    /// <summary>Types to put into the PDB (all user types and enums of the document); null = publics only.</summary>
    public IsfDocument? Types { get; init; }
    /// <summary>Public symbols (name -> RVA). Symbols below 0x1000 (inside the headers) cannot be placed and are reported.</summary>
    public IReadOnlyDictionary<string, ulong> Publics { get; init; } = new Dictionary<string, ulong>();
    public required ForgeIdentity Identity { get; init; }

    /// <summary>The ntoskrnl spec for an ISF kernel table: all types and publics, the table's own GUID/age.</summary>
    public static ForgeModuleSpec ForKernel(IsfDocument isf, ForgeIdentity? identity = null, IReadOnlyDictionary<string, ulong>? extraPublics = null)
    {
        var pubs = new Dictionary<string, ulong>(isf.Symbols, StringComparer.Ordinal);
        if (extraPublics is not null) foreach (var kv in extraPublics) pubs[kv.Key] = kv.Value;
        return new ForgeModuleSpec
        {
            ImageName = "ntoskrnl.exe",
            PdbName = isf.PdbName ?? "ntkrnlmp.pdb",
            Kind = ForgeModuleKind.KernelImage,
            Types = isf,
            Publics = pubs,
            Identity = identity ?? new ForgeIdentity
            {
                PdbGuid = isf.PdbGuid is null ? Guid.Empty : ForgeIdentity.ParseStoreGuid(isf.PdbGuid),
                Age = isf.PdbAge == 0 ? 1 : isf.PdbAge,
            },
        };
    }
}

/// <summary>The forged files and what went into them.</summary>
public sealed record ForgeResult
{
    public required string Directory { get; init; }
    public required string ImagePath { get; init; }
    public required string PdbPath { get; init; }
    public required string ImageName { get; init; }
    public required string PdbName { get; init; }
    public required Guid PdbGuid { get; init; }
    public required int Age { get; init; }
    public required uint TimeDateStamp { get; init; }
    public required uint SizeOfImage { get; init; }
    public required uint CheckSum { get; init; }
    public int TypeCount { get; init; }
    public int PublicCount { get; init; }
    /// <summary>Publics that could not be placed (RVA below 0x1000, in the image header).</summary>
    public IReadOnlyList<string> SkippedPublics { get; init; } = [];
    /// <summary>ISF type names that are not C++ identifiers and were renamed (ISF name -> PDB name).</summary>
    public IReadOnlyDictionary<string, string> RenamedTypes { get; init; } = new Dictionary<string, string>();
    /// <summary>True when the files came from the cache.</summary>
    public bool FromCache { get; init; }
    public TimeSpan Elapsed { get; init; }
    public string CacheKey { get; init; } = "";

    /// <summary>"GUIDAGE" as symbol stores spell it.</summary>
    public string PdbIdentity => ForgeIdentity.StoreGuid(PdbGuid) + Age.ToString("X");

    /// <summary>
    /// Copies the two files into a symbol-store layout under <paramref name="root"/>:
    /// <c>pdb\GUIDAGE\pdb</c> and <c>image\TIMESTAMPSIZEOFIMAGE\image</c> (both work as a plain engine symbol path).
    /// </summary>
    public void CopyToSymbolStore(string root)
    {
        string pdbDir = Path.Combine(root, PdbName, PdbIdentity);
        string imgDir = Path.Combine(root, ImageName, $"{TimeDateStamp:X8}{SizeOfImage:x}");
        System.IO.Directory.CreateDirectory(pdbDir);
        System.IO.Directory.CreateDirectory(imgDir);
        File.Copy(PdbPath, Path.Combine(pdbDir, PdbName), overwrite: true);
        File.Copy(ImagePath, Path.Combine(imgDir, ImageName), overwrite: true);
    }

    /// <summary>Copies the two files into a flat folder (image and PDB side by side).</summary>
    public void CopyToFlat(string dir)
    {
        System.IO.Directory.CreateDirectory(dir);
        File.Copy(PdbPath, Path.Combine(dir, PdbName), overwrite: true);
        File.Copy(ImagePath, Path.Combine(dir, ImageName), overwrite: true);
    }
}
