using System.Reflection.PortableExecutable;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Pool;

/// <summary>
/// Searches a module's image file on the debugger host instead of target memory (no round trip at all) when the
/// file is available and provably the same build as the loaded module (PE TimeDateStamp and SizeOfImage match).
/// Hits are reported as module base + RVA. Headers and sections are read with System.Reflection.PortableExecutable.
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
        PEHeaders h;
        try { h = new PEHeaders(new MemoryStream(file, writable: false)); }
        catch (BadImageFormatException) { return null; }
        if (h.PEHeader is not { } opt) return null;
        if (m.TimeDateStamp != 0 && m.TimeDateStamp != unchecked((uint)h.CoffHeader.TimeDateStamp)) return null;
        if (m.Size != 0 && unchecked((uint)opt.SizeOfImage) != m.Size) return null;
        var hits = new List<ulong>();
        foreach (var sec in h.SectionHeaders)
        {
            long rawPtr = (uint)sec.PointerToRawData, rawSize = (uint)sec.SizeOfRawData, vsize = (uint)sec.VirtualSize;
            long len = Math.Min(rawSize, vsize == 0 ? rawSize : vsize);
            if (rawPtr >= file.Length || len <= 0) continue;
            len = Math.Min(len, file.Length - rawPtr);
            var span = file.AsSpan((int)rawPtr, (int)len);
            int from = 0;
            while (hits.Count < maxHits)
            {
                int idx = span[from..].IndexOf(pattern);
                if (idx < 0) break;
                hits.Add(m.Base + (uint)sec.VirtualAddress + (ulong)(from + idx));
                from += idx + 1;
            }
        }
        return hits;
    }
}
