using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Lab.Forge;

/// <summary>One loaded-driver record of a kernel triage dump.</summary>
public sealed record TriageDriver(string Name, ulong DllBase, uint SizeOfImage, uint CheckSum, uint TimeDateStamp)
{
    /// <summary>File name without the path ("ntoskrnl.exe").</summary>
    public string FileName => Name[(Name.LastIndexOf('\\') + 1)..];
}

/// <summary>
/// Reads what the forge needs from an x64 kernel triage (mini) dump: the header facts and the driver list
/// (name, DllBase, SizeOfImage, CheckSum, TimeDateStamp) — the values a forged module image must carry so the engine
/// accepts it for that dump. Layout (x64): DUMP_HEADER64 is 0x2000 bytes ('PAGE' 'DU64'; MinorVersion = build at 0xC,
/// BugCheckCode 0x38, NumberProcessors 0x34, DumpType 0xF98); TRIAGE_DUMP64 follows at 0x2000 (DriverListOffset +0x30,
/// DriverCount +0x34, StringPoolOffset +0x38); each DUMP_DRIVER_ENTRY64 is 0x90 bytes: DriverNameOffset (into the
/// string pool: ULONG length in WCHARs + UTF-16) then at +8 a KLDR_DATA_TABLE_ENTRY64 (DllBase +0x30, SizeOfImage +0x40,
/// CheckSum +0x78, TimeDateStamp +0x80).
/// </summary>
public sealed class TriageDumpDrivers
{
    public int BuildNumber { get; private init; }
    public int Processors { get; private init; }
    public uint BugCheckCode { get; private init; }
    public int DumpType { get; private init; }
    public IReadOnlyList<TriageDriver> Drivers { get; private init; } = [];

    private const int HeaderSize = 0x2000, TriageDriverListOffset = 0x30, TriageDriverCount = 0x34, EntrySize = 0x90, LdrAt = 8;

    public static TriageDumpDrivers Read(string path)
    {
        var d = File.ReadAllBytes(path);
        if (d.Length < HeaderSize + 0x40 || Encoding.ASCII.GetString(d, 0, 8) != "PAGEDU64")
            throw new ForgeException($"{path}: not an x64 kernel dump (no PAGEDU64 signature)");
        int type = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(0xF98));
        if (type != 4) throw new ForgeException($"{path}: DumpType {type}, not a triage dump (4)");
        int listOff = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(HeaderSize + TriageDriverListOffset));
        int count = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(HeaderSize + TriageDriverCount));
        if (listOff <= 0 || count < 0 || (long)listOff + (long)count * EntrySize > d.Length)
            throw new ForgeException($"{path}: driver list 0x{listOff:x} x {count} lies outside the {d.Length}-byte file");
        var list = new List<TriageDriver>(count);
        for (int i = 0; i < count; i++)
        {
            int e = listOff + i * EntrySize, l = e + LdrAt;
            int nameOff = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(e));
            string name = "";
            if (nameOff > 0 && nameOff + 4 <= d.Length)
            {
                int chars = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(nameOff));
                if (chars >= 0 && nameOff + 4 + 2L * chars <= d.Length) name = Encoding.Unicode.GetString(d, nameOff + 4, 2 * chars);
            }
            list.Add(new TriageDriver(name,
                BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(l + 0x30)),
                BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(l + 0x40)),
                BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(l + 0x78)),
                BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(l + 0x80))));
        }
        return new TriageDumpDrivers
        {
            BuildNumber = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(0xC)),
            Processors = BinaryPrimitives.ReadInt32LittleEndian(d.AsSpan(0x34)),
            BugCheckCode = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(0x38)),
            DumpType = type,
            Drivers = list,
        };
    }

    public TriageDriver Find(string fileName) =>
        Drivers.FirstOrDefault(x => x.FileName.Equals(fileName, StringComparison.OrdinalIgnoreCase))
        ?? throw new ForgeException($"no driver '{fileName}' in the dump's driver list");

    /// <summary>
    /// The identity a forged module image must carry for a driver of this dump: TimeDateStamp, SizeOfImage and CheckSum
    /// from the driver list, and the given PDB GUID/age (any GUID works as long as the image's RSDS and the PDB agree;
    /// the triage dump holds no CodeView record for it).
    /// </summary>
    public ForgeIdentity DriverIdentity(string fileName, Guid pdbGuid, int age = 1)
    {
        var d = Find(fileName);
        return new ForgeIdentity { PdbGuid = pdbGuid, Age = age, TimeDateStamp = d.TimeDateStamp, SizeOfImage = d.SizeOfImage, CheckSum = d.CheckSum };
    }

    /// <summary>
    /// The forge identity for the dump's kernel: the given PDB GUID/age (a triage dump does not hold ntoskrnl's
    /// CodeView record; it comes from the matching symbol table) with the driver list's TimeDateStamp, SizeOfImage, CheckSum.
    /// </summary>
    public ForgeIdentity KernelIdentity(Guid pdbGuid, int age)
    {
        var nt = Find("ntoskrnl.exe");
        return new ForgeIdentity { PdbGuid = pdbGuid, Age = age, TimeDateStamp = nt.TimeDateStamp, SizeOfImage = nt.SizeOfImage, CheckSum = nt.CheckSum };
    }
}
