using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Lab.Dumps;

/// <summary>A module for the minidump's module list; Cv* give the CodeView (RSDS) record that names the PDB.</summary>
public sealed record MinidumpModule(string Path, ulong Base, uint Size, uint TimeDateStamp = 0, uint CheckSum = 0,
    Guid? CvGuid = null, int CvAge = 1, string? CvPdbName = null, Version? FileVersion = null);

/// <summary>A thread: id, TEB, the registers that matter for unwinding, and its stack range (must be mapped).</summary>
public sealed record MinidumpThread(uint ThreadId, ulong Teb, ulong Rip, ulong Rsp, ulong Rbp, ulong StackStart, ulong StackEnd);

public sealed record MinidumpSpec
{
    public int BuildNumber { get; init; } = 7601;
    public int MajorVersion { get; init; } = 6;
    public int MinorVersion { get; init; } = 1;
    public string CsdVersion { get; init; } = "Service Pack 1";
    public byte NumberOfProcessors { get; init; } = 2;
    /// <summary>1 workstation, 3 server.</summary>
    public byte ProductType { get; init; } = 3;
    public DateTime DumpTimeUtc { get; init; }
    public uint ProcessId { get; init; }
    public DateTime? ProcessCreateTimeUtc { get; init; }
    public IReadOnlyList<MinidumpModule> Modules { get; init; } = [];
    public IReadOnlyList<MinidumpThread> Threads { get; init; } = [];
}

/// <summary>
/// Writes a user-mode minidump (MDMP) with full memory: header, stream directory, SystemInfo (7), ModuleList (4, with
/// CodeView RSDS records), ThreadList (3, x64 CONTEXTs and stacks), Memory64List (9, every mapped page of the
/// <see cref="SparseMemory"/>) and MiscInfo (15). Layouts from the Windows SDK's minidumpapiset.h (MINIDUMP_HEADER
/// 32 bytes, MINIDUMP_DIRECTORY 12, MINIDUMP_SYSTEM_INFO 56, MINIDUMP_MODULE 108, MINIDUMP_THREAD 48,
/// MINIDUMP_MEMORY_DESCRIPTOR64 16, MINIDUMP_MISC_INFO 24) and winnt.h (x64 CONTEXT 0x4d0 bytes).
/// </summary>
public static class MinidumpWriter
{
    private const uint Signature = 0x504d444d;      // 'MDMP'
    private const uint Version = 0xa793;            // MINIDUMP_VERSION
    private const ulong FlagsFullMemory = 0x2;      // MiniDumpWithFullMemory
    private const int ContextSize = 0x4d0;

    public static long Write(string path, SparseMemory memory, MinidumpSpec spec)
    {
        var body = new MemoryStream();
        var dirs = new List<(uint Type, uint Size, uint Rva)>();
        const int headerSize = 32, streams = 5;
        int dirRva = headerSize;
        body.SetLength(headerSize + streams * 12);
        body.Position = body.Length;

        uint Append(ReadOnlySpan<byte> data, int align = 4)
        {
            while (body.Position % align != 0) body.WriteByte(0);
            uint rva = (uint)body.Position;
            body.Write(data);
            return rva;
        }
        uint AppendString(string s)
        {
            var b = Encoding.Unicode.GetBytes(s);
            var buf = new byte[4 + b.Length + 2];
            BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)b.Length);
            b.CopyTo(buf, 4);
            return Append(buf);
        }

        // SystemInfo (7)
        uint csd = AppendString(spec.CsdVersion);
        var si = new byte[56];
        BinaryPrimitives.WriteUInt16LittleEndian(si.AsSpan(0), 9);          // PROCESSOR_ARCHITECTURE_AMD64
        BinaryPrimitives.WriteUInt16LittleEndian(si.AsSpan(2), 6);          // ProcessorLevel
        si[6] = spec.NumberOfProcessors;
        si[7] = spec.ProductType;
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(8), (uint)spec.MajorVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(12), (uint)spec.MinorVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(16), (uint)spec.BuildNumber);
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(20), 2);         // VER_PLATFORM_WIN32_NT
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(24), csd);
        BinaryPrimitives.WriteUInt16LittleEndian(si.AsSpan(28), 0x0110);    // SuiteMask
        dirs.Add((7, 56, Append(si)));

        // ModuleList (4)
        var nameRvas = spec.Modules.Select(m => AppendString(m.Path)).ToList();
        var cvRvas = spec.Modules.Select(m =>
        {
            if (m.CvGuid is null || m.CvPdbName is null) return (Rva: 0u, Size: 0u);
            var name = Encoding.ASCII.GetBytes(m.CvPdbName);
            var cv = new byte[24 + name.Length + 1];
            BinaryPrimitives.WriteUInt32LittleEndian(cv, 0x53445352);        // 'RSDS'
            m.CvGuid.Value.TryWriteBytes(cv.AsSpan(4));
            BinaryPrimitives.WriteUInt32LittleEndian(cv.AsSpan(20), (uint)m.CvAge);
            name.CopyTo(cv, 24);
            return (Rva: Append(cv), Size: (uint)cv.Length);
        }).ToList();
        var ml = new byte[4 + 108 * spec.Modules.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(ml, (uint)spec.Modules.Count);
        for (int i = 0; i < spec.Modules.Count; i++)
        {
            var m = spec.Modules[i];
            var e = ml.AsSpan(4 + 108 * i, 108);
            BinaryPrimitives.WriteUInt64LittleEndian(e, m.Base);
            BinaryPrimitives.WriteUInt32LittleEndian(e[8..], m.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(e[12..], m.CheckSum);
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], m.TimeDateStamp);
            BinaryPrimitives.WriteUInt32LittleEndian(e[20..], nameRvas[i]);
            // VS_FIXEDFILEINFO at +24
            var v = m.FileVersion ?? new Version(6, 1, spec.BuildNumber, 17514);
            BinaryPrimitives.WriteUInt32LittleEndian(e[24..], 0xFEEF04BD);
            BinaryPrimitives.WriteUInt32LittleEndian(e[28..], 0x00010000);
            uint ms = (uint)(v.Major << 16 | v.Minor), ls = (uint)(Math.Max(v.Build, 0) << 16 | Math.Max(v.Revision, 0));
            BinaryPrimitives.WriteUInt32LittleEndian(e[32..], ms);
            BinaryPrimitives.WriteUInt32LittleEndian(e[36..], ls);
            BinaryPrimitives.WriteUInt32LittleEndian(e[40..], ms);
            BinaryPrimitives.WriteUInt32LittleEndian(e[44..], ls);
            BinaryPrimitives.WriteUInt32LittleEndian(e[48..], 0x3f);
            BinaryPrimitives.WriteUInt32LittleEndian(e[56..], 0x40004);     // VOS_NT_WINDOWS32
            BinaryPrimitives.WriteUInt32LittleEndian(e[60..], m.Path.EndsWith(".exe", StringComparison.OrdinalIgnoreCase) ? 1u : 2u);
            BinaryPrimitives.WriteUInt32LittleEndian(e[76..], cvRvas[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(e[80..], cvRvas[i].Rva);
        }
        dirs.Add((4, (uint)ml.Length, Append(ml)));

        // ThreadList (3): contexts and stacks.
        var tl = new byte[4 + 48 * spec.Threads.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(tl, (uint)spec.Threads.Count);
        for (int i = 0; i < spec.Threads.Count; i++)
        {
            var t = spec.Threads[i];
            var ctx = new byte[ContextSize];
            BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(0x30), 0x0010001F);  // CONTEXT_AMD64 | FULL | SEGMENTS | FLOATING_POINT
            BinaryPrimitives.WriteUInt16LittleEndian(ctx.AsSpan(0x38), 0x33);        // SegCs (user)
            BinaryPrimitives.WriteUInt16LittleEndian(ctx.AsSpan(0x42), 0x2b);        // SegSs
            BinaryPrimitives.WriteUInt32LittleEndian(ctx.AsSpan(0x44), 0x246);       // EFlags
            BinaryPrimitives.WriteUInt64LittleEndian(ctx.AsSpan(0x98), t.Rsp);
            BinaryPrimitives.WriteUInt64LittleEndian(ctx.AsSpan(0xa0), t.Rbp);
            BinaryPrimitives.WriteUInt64LittleEndian(ctx.AsSpan(0xf8), t.Rip);
            uint ctxRva = Append(ctx, 16);
            var stack = new byte[t.StackEnd - t.StackStart];
            memory.Read(t.StackStart, stack);
            uint stackRva = Append(stack, 16);
            var e = tl.AsSpan(4 + 48 * i, 48);
            BinaryPrimitives.WriteUInt32LittleEndian(e, t.ThreadId);
            BinaryPrimitives.WriteUInt32LittleEndian(e[8..], 0x20);                  // NORMAL_PRIORITY_CLASS
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], t.Teb);
            BinaryPrimitives.WriteUInt64LittleEndian(e[24..], t.StackStart);
            BinaryPrimitives.WriteUInt32LittleEndian(e[32..], (uint)stack.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[36..], stackRva);
            BinaryPrimitives.WriteUInt32LittleEndian(e[40..], ContextSize);
            BinaryPrimitives.WriteUInt32LittleEndian(e[44..], ctxRva);
        }
        dirs.Add((3, (uint)tl.Length, Append(tl)));

        // MiscInfo (15)
        var mi = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(mi, 24);
        BinaryPrimitives.WriteUInt32LittleEndian(mi.AsSpan(4), 0x3);                 // PROCESS_ID | PROCESS_TIMES
        BinaryPrimitives.WriteUInt32LittleEndian(mi.AsSpan(8), spec.ProcessId);
        var created = spec.ProcessCreateTimeUtc ?? spec.DumpTimeUtc.AddHours(-1);
        BinaryPrimitives.WriteUInt32LittleEndian(mi.AsSpan(12), (uint)(created - DateTime.UnixEpoch).TotalSeconds);
        dirs.Add((15, 24, Append(mi)));

        // Memory64List (9): ranges of contiguous pages, data at BaseRva in order (must be last: it is the bulk).
        var ranges = new List<(ulong Start, ulong Size)>();
        foreach (var (va, _) in memory.Pages)
        {
            if (ranges.Count > 0 && ranges[^1].Start + ranges[^1].Size == va) ranges[^1] = (ranges[^1].Start, ranges[^1].Size + SparseMemory.PageSize);
            else ranges.Add((va, SparseMemory.PageSize));
        }
        var m64 = new byte[16 + 16 * ranges.Count];
        BinaryPrimitives.WriteUInt64LittleEndian(m64, (ulong)ranges.Count);
        for (int i = 0; i < ranges.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(m64.AsSpan(16 + 16 * i), ranges[i].Start);
            BinaryPrimitives.WriteUInt64LittleEndian(m64.AsSpan(24 + 16 * i), ranges[i].Size);
        }
        uint m64Rva = Append(m64, 8);
        while (body.Position % 16 != 0) body.WriteByte(0);
        BinaryPrimitives.WriteUInt64LittleEndian(body.GetBuffer().AsSpan((int)m64Rva + 8), (ulong)body.Position);
        foreach (var (va, page) in memory.Pages) body.Write(page);
        dirs.Add((9, (uint)m64.Length, m64Rva));

        // Header and directory.
        var buf = body.GetBuffer();
        BinaryPrimitives.WriteUInt32LittleEndian(buf, Signature);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(4), Version);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(8), (uint)dirs.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(12), (uint)dirRva);
        BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(20), (uint)(spec.DumpTimeUtc - DateTime.UnixEpoch).TotalSeconds);
        BinaryPrimitives.WriteUInt64LittleEndian(buf.AsSpan(24), FlagsFullMemory);
        for (int i = 0; i < dirs.Count; i++)
        {
            var d = buf.AsSpan(dirRva + 12 * i, 12);
            BinaryPrimitives.WriteUInt32LittleEndian(d, dirs[i].Type);
            BinaryPrimitives.WriteUInt32LittleEndian(d[4..], dirs[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], dirs[i].Rva);
        }
        File.WriteAllBytes(path, body.ToArray());
        return body.Length;
    }
}
