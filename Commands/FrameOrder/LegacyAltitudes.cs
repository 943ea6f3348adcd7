using System.Buffers.Binary;
using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.FrameOrder;

/// <summary>
/// fltmgr's table from a load-order group to the altitude it gives legacy filters of that group
/// (<c>fltmgr!LegacyFilterAltitdudeMap</c>, spelled so in fltmgr's PDB; FltpCalculateLegacyFilterAltitude returns a
/// pointer to one of its UNICODE_STRINGs, which is what fltmc shows for a legacy filter).
/// The symbol has no public type, so the table is read as what it demonstrably holds: a run of UNICODE_STRINGs in which a
/// group name ("FSFilter Encryption") is followed by its altitude ("149998.99"). The run ends at the first slot that is not
/// a plausible UNICODE_STRING. Any other shape is reported, never guessed at.
/// </summary>
public sealed class LegacyAltitudeMap
{
    public const string Symbol = "fltmgr!LegacyFilterAltitdudeMap";
    /// <summary>Bytes read at the symbol (the table is 0x230 bytes on the Windows 10/11 builds we have layouts for).</summary>
    public const int MaxBytes = 0x800;
    public const int MaxStringBytes = 512;

    public ulong Address { get; private init; }
    public Dictionary<string, string> Entries { get; } = new(StringComparer.OrdinalIgnoreCase);
    /// <summary>Why the table gives nothing (symbol missing, unreadable, unrecognised shape); null when it was read.</summary>
    public string? Problem { get; private set; }

    public static LegacyAltitudeMap Read(KernelReader r)
    {
        ulong? addr = r.Types.TrySymbol(Symbol);
        if (addr is null)
            return new LegacyAltitudeMap { Problem = $"{Symbol} is not in fltmgr's symbols (older fltmgr, or .reload fltmgr.sys)" };
        var map = new LegacyAltitudeMap { Address = addr.Value };
        int ptr = r.PointerSize;
        int slot = ptr == 8 ? 16 : 8;
        var buf = new byte[MaxBytes];
        int got = r.Memory.Read(addr.Value, buf);
        if (got < slot * 2) { map.Problem = $"{Symbol} at {Output.Fmt.Addr(addr.Value)} is not readable"; return map; }

        var strings = new List<(ushort Len, ulong Buffer)>();
        for (int o = 0; o + slot <= got; o += slot)
        {
            var s = buf.AsSpan(o, slot);
            ushort len = BinaryPrimitives.ReadUInt16LittleEndian(s);
            ushort max = BinaryPrimitives.ReadUInt16LittleEndian(s[2..]);
            ulong b = ptr == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(s[8..]) : BinaryPrimitives.ReadUInt32LittleEndian(s[4..]);
            bool kernelPtr = ptr == 8 ? b >= 0xffff8000_00000000 : b >= 0x80000000;
            if (len == 0 || (len & 1) != 0 || len > max || max > MaxStringBytes || !kernelPtr) break;
            strings.Add((len, b));
        }
        if (strings.Count < 2)
        {
            map.Problem = $"{Symbol} at {Output.Fmt.Addr(addr.Value)} does not hold UNICODE_STRING (group, altitude) pairs on this build";
            return map;
        }
        // The strings sit together in fltmgr's .rdata: one request when they are close.
        ulong lo = strings.Min(x => x.Buffer), hi = strings.Max(x => x.Buffer + x.Len);
        if (hi - lo <= 0x4000) r.Memory.Prefetch(lo, (int)(hi - lo));
        var text = strings.Select(x => r.ReadUtf16(x.Buffer, x.Len)).ToList();
        for (int i = 0; i + 1 < text.Count; i++)
        {
            if (text[i] is { } g && text[i + 1] is { } a && !LoadOrderGroups.TryParse(g, out _) && LoadOrderGroups.TryParse(a, out _))
            {
                map.Entries.TryAdd(g.Trim(), a.Trim());
                i++;
            }
        }
        if (map.Entries.Count == 0)
            map.Problem = $"{Symbol} at {Output.Fmt.Addr(addr.Value)}: {strings.Count} strings, none in (group, altitude) pairs";
        return map;
    }
}

/// <summary>Where a legacy filter's load-order group comes from (the service key's Group value).</summary>
public interface ILoadOrderGroupSource
{
    /// <summary>The Group value of <paramref name="service"/>; null with <paramref name="whyNot"/> when it cannot be read.</summary>
    string? GroupOf(string service, out string? whyNot);
}

/// <summary>
/// Load-order groups from the in-memory SYSTEM hive, as fltmgr reads them (FltpGetLoadOrderGroupRegistryValue):
/// HKLM\SYSTEM\&lt;current control set&gt;\Services\&lt;service&gt;\Group.
/// </summary>
public sealed class RegistryGroupSource(Kernel.Registry.RegistryReader registry) : ILoadOrderGroupSource
{
    public RegistryGroupSource(KernelReader reader) : this(new Kernel.Registry.RegistryReader(reader)) { }

    public string? GroupOf(string service, out string? whyNot)
    {
        var v = registry.GetServiceValue(service, "Group", out whyNot);
        if (v is null) return null;
        var s = v.AsString();
        if (string.IsNullOrWhiteSpace(s)) { whyNot = $@"service {service}: its Group value is not a non-empty string (type {v.Type})"; return null; }
        return s.Trim();
    }
}
