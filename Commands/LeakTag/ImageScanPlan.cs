using System.Buffers.Binary;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.LeakTag;

/// <summary>
/// Which bytes of a loaded image the module search of <c>!leaktag</c> reads. Everything, except an x64 image's
/// exception directory (the RUNTIME_FUNCTION array, <c>.pdata</c>: 1-4% of an MSVC-built x64 image, docs/bench.md),
/// which provably cannot hold a tag:
/// <list type="bullet">
/// <item>every RUNTIME_FUNCTION is three 32-bit RVAs (BeginAddress, EndAddress, UnwindData) inside the image, so in an
///   image smaller than 16 MB (SizeOfImage &lt; 2^24; EndAddress may equal SizeOfImage) every 4-byte-aligned dword of the array has a zero high byte;</item>
/// <item>any 4 consecutive bytes of such an array contain the high byte of one dword, whatever their alignment: a
///   window starting at offset 4k+j (j = 0..3) covers byte 4k+3 (j = 0..3) — so every 4-byte window that starts inside
///   the array contains a zero byte;</item>
/// <item>a pool tag is 4 printable ASCII characters (<see cref="PoolTagPattern.Parse"/>: 0x20-0x7e, short tags
///   space-padded), so it has no zero byte and cannot start inside the array. An occurrence starting in the 3 bytes
///   before the array and running into it is still found: the range before the array is scanned up to 3 bytes into
///   it.</item>
/// </list>
/// So the search finds exactly what <c>s -a</c> over the whole image finds (ImageScanPlanTests checks this on the
/// Microsoft x64 images on the machine, and that no zero-free 4-byte window starts in their exception directories).
/// The header it needs is the image's first KD packet, which the scan reads anyway (no extra request). Not applied
/// when the header is not readable, is not a PE32+ AMD64 header (ARM64's packed unwind data is not an RVA), the image
/// is larger than 16 MB, the directory is not 4-byte aligned or lies outside the image, or the skip saves no packet.
/// </summary>
public static class ImageScanPlan
{
    private const ushort MachineAmd64 = 0x8664;
    private const ushort Pe32Plus = 0x20b;
    private const int RuntimeFunctionSize = 12;
    /// <summary>Images below this size have a zero high byte in every RVA (EndAddress may equal SizeOfImage).</summary>
    public const ulong MaxImageSize = 1UL << 24;

    /// <summary>A range the search reads, and the exception directory it skips (null: the whole image is read).</summary>
    public sealed record Plan(List<(ulong Start, ulong Length)> Ranges, (ulong Start, ulong Length)? Skipped);

    /// <summary>Reads the image's first packet through <paramref name="memory"/> (cached: the scan takes it from there) and plans the search.</summary>
    public static Plan For(TargetMemory memory, ModuleInfo m, ReadOnlySpan<byte> pattern)
    {
        ulong size = m.End - m.Base;
        if (size == 0 || !CanSkipDirectory(pattern)) return Whole(m.Base, size);
        var head = new byte[(int)Math.Min(size, (ulong)KdnetModel.MaxPacketData)];
        int got = memory.Read(m.Base, head);
        return Make(head.AsSpan(0, got), m.Base, size, pattern);
    }

    /// <summary>The plan for an image at <paramref name="imageBase"/> of <paramref name="size"/> bytes whose first bytes are <paramref name="head"/>.</summary>
    public static Plan Make(ReadOnlySpan<byte> head, ulong imageBase, ulong size, ReadOnlySpan<byte> pattern)
    {
        if (!CanSkipDirectory(pattern) || ExceptionDirectory(head, size) is not { } dir) return Whole(imageBase, size);
        ulong dirStart = imageBase + dir.Rva, dirEnd = dirStart + dir.Size;
        // Occurrences that start before the directory and run into it: scan pattern.Length - 1 bytes into it.
        ulong firstEnd = Math.Min(dirStart + (ulong)(pattern.Length - 1), dirEnd);
        ulong before = firstEnd - imageBase, after = imageBase + size - dirEnd;
        if (Packets(before) + Packets(after) >= Packets(size)) return Whole(imageBase, size);
        var ranges = new List<(ulong, ulong)> { (imageBase, before) };
        if (after > 0) ranges.Add((dirEnd, after));
        return new Plan(ranges, (dirStart, dir.Size));
    }

    /// <summary>Patterns the proof covers: at least 4 bytes, none of them zero (every pool tag).</summary>
    public static bool CanSkipDirectory(ReadOnlySpan<byte> pattern) => pattern.Length >= 4 && !pattern.Contains((byte)0);

    /// <summary>
    /// The exception directory of a PE32+ AMD64 image of at most 16 MB, as RVA and a length that is a whole number of
    /// RUNTIME_FUNCTIONs; null when the header does not say so within <paramref name="head"/> or any check fails.
    /// </summary>
    public static (ulong Rva, ulong Size)? ExceptionDirectory(ReadOnlySpan<byte> head, ulong moduleSize)
    {
        if (head.Length < 0x40 || head[0] != (byte)'M' || head[1] != (byte)'Z') return null;
        uint lfanew = BinaryPrimitives.ReadUInt32LittleEndian(head[0x3c..]);
        const int fileHeader = 4, optional = 4 + 20;
        const int dataDirectories = 112, exceptionEntry = dataDirectories + 3 * 8;
        if (lfanew < 0x40 || lfanew > (uint)head.Length || head.Length - lfanew < optional + exceptionEntry + 8) return null;
        var nt = head[(int)lfanew..];
        if (BinaryPrimitives.ReadUInt32LittleEndian(nt) != 0x00004550) return null; // "PE\0\0"
        if (BinaryPrimitives.ReadUInt16LittleEndian(nt[fileHeader..]) != MachineAmd64) return null;
        ushort optSize = BinaryPrimitives.ReadUInt16LittleEndian(nt[(fileHeader + 16)..]);
        if (optSize < exceptionEntry + 8) return null;
        var opt = nt[optional..];
        if (BinaryPrimitives.ReadUInt16LittleEndian(opt) != Pe32Plus) return null;
        uint sizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(opt[56..]);
        uint directories = BinaryPrimitives.ReadUInt32LittleEndian(opt[108..]);
        if (sizeOfImage == 0 || sizeOfImage >= MaxImageSize || sizeOfImage > moduleSize || directories <= 3) return null;
        uint rva = BinaryPrimitives.ReadUInt32LittleEndian(opt[exceptionEntry..]);
        uint bytes = BinaryPrimitives.ReadUInt32LittleEndian(opt[(exceptionEntry + 4)..]);
        ulong whole = bytes / RuntimeFunctionSize * (ulong)RuntimeFunctionSize;
        if (rva == 0 || whole == 0 || (rva & 3) != 0 || (ulong)rva + whole > sizeOfImage) return null;
        return (rva, whole);
    }

    private static long Packets(ulong bytes) => bytes == 0 ? 0 : KdnetModel.Packets((long)bytes);

    private static Plan Whole(ulong imageBase, ulong size) => new([(imageBase, size)], null);
}
