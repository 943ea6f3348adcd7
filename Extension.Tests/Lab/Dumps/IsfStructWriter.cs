using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Dumps;

/// <summary>
/// Writes fields of symbol-table types into a <see cref="SparseMemory"/> by name: offsets, sizes and bit positions all
/// come from the ISF document (dotted paths "ProcessorState.SpecialRegisters.Cr3" walk nested structs).
/// Used by the dump preparation until the wt-lab scenario builder's struct writer is merged; it only needs what the
/// dump plumbing writes (integers, pointers, bitfields, UNICODE_STRINGs, LIST_ENTRYs).
/// </summary>
public sealed class IsfStructWriter(IsfDocument isf, SparseMemory memory)
{
    public IsfDocument Isf { get; } = isf;
    public SparseMemory Memory { get; } = memory;

    public int SizeOf(string type) => Isf.GetUserType(type).Size;

    /// <summary>Resolves a dotted field path; throws naming the type and field when the table does not have it.</summary>
    public (int Offset, IsfTypeRef Type) Field(string type, string path)
    {
        int off = 0;
        string cur = type;
        IsfTypeRef? t = null;
        foreach (var part in path.Split('.'))
        {
            if (t is not null)
            {
                if (t.Kind is not ("struct" or "union")) throw new IsfFormatException($"{Isf.Source}: {type}.{path}: '{part}' follows a non-struct member");
                cur = t.Name!;
            }
            var ut = Isf.GetUserType(cur);
            var f = ut.Fields.FirstOrDefault(x => x.Name == part)
                ?? throw new IsfFormatException($"{Isf.Source}: type '{cur}' has no field '{part}' (path {type}.{path})");
            off += f.Offset;
            t = f.Type;
        }
        return (off, t!);
    }

    /// <summary>The offset of a field, or null when this build's type does not have it (layouts drift between builds).</summary>
    public int? TryOffset(string type, string path)
    {
        if (!Isf.UserTypes.ContainsKey(type)) return null;
        try { return Field(type, path).Offset; }
        catch (IsfFormatException) { return null; }
    }

    public bool HasField(string type, string path) => TryOffset(type, path) is not null;

    /// <summary>Writes an integer/pointer/enum/bitfield field (size taken from the table).</summary>
    public void Set(ulong address, string type, string path, ulong value)
    {
        var (off, t) = Field(type, path);
        ulong at = address + (ulong)off;
        if (t.Kind == "bitfield")
        {
            int size = (int)Isf.SizeOf(t.Subtype!);
            ulong old = ReadUInt(at, size);
            ulong mask = (t.BitLength >= 64 ? ulong.MaxValue : (1UL << t.BitLength) - 1) << t.BitPosition;
            WriteUInt(at, size, (old & ~mask) | ((value << t.BitPosition) & mask));
            return;
        }
        int n = (int)Isf.SizeOf(t);
        if (n is not (1 or 2 or 4 or 8)) throw new IsfFormatException($"{Isf.Source}: {type}.{path} is {t} ({n} bytes), not a scalar");
        WriteUInt(at, n, value);
    }

    /// <summary>Writes raw bytes at a field (arrays of chars, GUIDs ...), bounded by the field's size.</summary>
    public void SetBytes(ulong address, string type, string path, ReadOnlySpan<byte> bytes)
    {
        var (off, t) = Field(type, path);
        ulong size = Isf.SizeOf(t);
        if ((ulong)bytes.Length > size) throw new ArgumentException($"{type}.{path} holds 0x{size:x} bytes, got 0x{bytes.Length:x}");
        Memory.Write(address + (ulong)off, bytes);
    }

    /// <summary>Sets a _UNICODE_STRING field to point at <paramref name="buffer"/> holding <paramref name="text"/> (written there, UTF-16, NUL-terminated).</summary>
    public void SetUnicodeString(ulong address, string type, string path, string text, ulong buffer)
    {
        var (off, _) = Field(type, path);
        WriteUnicodeString(address + (ulong)off, text, buffer);
    }

    public void WriteUnicodeString(ulong usAddress, string text, ulong buffer)
    {
        var bytes = System.Text.Encoding.Unicode.GetBytes(text + "\0");
        Memory.Write(buffer, bytes);
        Set(usAddress, "_UNICODE_STRING", "Length", (ulong)(bytes.Length - 2));
        Set(usAddress, "_UNICODE_STRING", "MaximumLength", (ulong)bytes.Length);
        Set(usAddress, "_UNICODE_STRING", "Buffer", buffer);
    }

    /// <summary>Builds a circular doubly linked list: head and each entry's LIST_ENTRY (addresses of the LIST_ENTRY fields).</summary>
    public void LinkList(ulong head, IReadOnlyList<ulong> entries)
    {
        var all = new List<ulong> { head };
        all.AddRange(entries);
        for (int i = 0; i < all.Count; i++)
        {
            ulong next = all[(i + 1) % all.Count], prev = all[(i - 1 + all.Count) % all.Count];
            Set(all[i], "_LIST_ENTRY", "Flink", next);
            Set(all[i], "_LIST_ENTRY", "Blink", prev);
        }
    }

    private ulong ReadUInt(ulong at, int size)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        Memory.Read(at, b[..size]);
        return BitConverter.ToUInt64(b);
    }

    private void WriteUInt(ulong at, int size, ulong v) => Memory.Write(at, BitConverter.GetBytes(v).AsSpan(0, size));
}
