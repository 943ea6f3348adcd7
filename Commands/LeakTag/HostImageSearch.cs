using System.Buffers.Binary;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.LeakTag;

/// <summary>
/// Searches a module's image file on the debugger host instead of target memory (no round trip at all) when the
/// file is available and provably the same build as the loaded module (PE TimeDateStamp and SizeOfImage match).
/// Hits are reported as module base + RVA.
/// </summary>
public static class HostImageSearch
{
    /// <summary>Optional host hook: maps a loaded module to a local image file (e.g. from the engine's image path).</summary>
    public static Func<ModuleInfo, string?>? HostPathResolver { get; set; }

    private const long MaxFileBytes = 512L << 20;

    /// <summary>Addresses of <paramref name="pattern"/> in the module's sections; null when no matching host file was found.</summary>
    public static List<ulong>? TrySearch(ModuleInfo m, byte[] pattern, int maxHits, out string? path)
    {
        path = null;
        try
        {
            string? p = null;
            try { p = HostPathResolver?.Invoke(m); } catch (Exception) { }
            if (string.IsNullOrEmpty(p) && !string.IsNullOrEmpty(m.ImagePath) && Path.IsPathFullyQualified(m.ImagePath) && File.Exists(m.ImagePath)) p = m.ImagePath;
            if (string.IsNullOrEmpty(p) || !File.Exists(p)) return null;
            var fi = new FileInfo(p);
            if (fi.Length is < 0x200 or > MaxFileBytes) return null;
            var file = File.ReadAllBytes(p);
            var hits = SearchPe(file, m, pattern, maxHits);
            if (hits is not null) path = p;
            return hits;
        }
        catch (Exception) { return null; }
    }

    /// <summary>Searches the sections of a PE file image; null when it is not a PE or does not match the module.</summary>
    public static List<ulong>? SearchPe(byte[] file, ModuleInfo m, byte[] pattern, int maxHits)
    {
        if (file.Length < 0x40 || file[0] != 'M' || file[1] != 'Z') return null;
        int pe = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(0x3c));
        if (pe <= 0 || pe + 24 > file.Length || BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pe)) != 0x00004550) return null;
        int nsec = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(pe + 6));
        uint stamp = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pe + 8));
        int optSize = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(pe + 20));
        int opt = pe + 24;
        if (opt + 60 > file.Length) return null;
        uint sizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(opt + 56));
        if (m.TimeDateStamp != 0 && m.TimeDateStamp != stamp) return null;
        if (m.Size != 0 && sizeOfImage != m.Size) return null;
        int sec = opt + optSize;
        var hits = new List<ulong>();
        for (int i = 0; i < nsec && sec + 40 * (i + 1) <= file.Length; i++)
        {
            int h = sec + 40 * i;
            uint vsize = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(h + 8));
            uint va = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(h + 12));
            uint rawSize = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(h + 16));
            uint rawPtr = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(h + 20));
            long len = Math.Min(rawSize, vsize == 0 ? rawSize : vsize);
            if (rawPtr >= file.Length || len <= 0) continue;
            len = Math.Min(len, file.Length - rawPtr);
            var span = file.AsSpan((int)rawPtr, (int)len);
            int from = 0;
            while (hits.Count < maxHits)
            {
                int idx = span[from..].IndexOf(pattern);
                if (idx < 0) break;
                hits.Add(m.Base + va + (ulong)(from + idx));
                from += idx + 1;
            }
        }
        return hits;
    }
}
