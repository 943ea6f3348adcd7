using System.Text;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.Model;

/// <summary>
/// A structure read in one piece from the target, with typed access to its fields by name (dotted paths allowed:
/// "Tcb.WaitReason"). Reading a field never goes back to the target.
/// </summary>
public sealed class StructView
{
    private readonly byte[] _data;
    private readonly TypeCache _types;

    public StructView(TypeLayout layout, ulong address, byte[] data, TypeCache types)
    {
        Layout = layout; Address = address; _data = data; _types = types;
    }

    public TypeLayout Layout { get; }
    public ulong Address { get; }
    public ReadOnlySpan<byte> Bytes => _data;
    /// <summary>Bytes actually read (a partial read leaves trailing fields unavailable).</summary>
    public int Length => _data.Length;
    public string TypeName => Layout.Module + "!" + Layout.Name;

    public bool Has(string path) => _types.TryResolvePath(Layout, path) is not null;

    public (ulong Offset, TypeRef Type) Resolve(string path) => _types.ResolvePath(Layout, path);

    /// <summary>Absolute address of a field.</summary>
    public ulong AddressOf(string path) => Address + Resolve(path).Offset;

    public ulong OffsetOf(string path) => Resolve(path).Offset;

    /// <summary>Reads an integer field (base, enum, pointer or bitfield) zero-extended; sign-extends signed types.</summary>
    public ulong UInt(string path)
    {
        var (off, type) = Resolve(path);
        return ReadScalar(off, type);
    }

    public ulong? TryUInt(string path)
    {
        var r = _types.TryResolvePath(Layout, path);
        if (r is null) return null;
        var (off, type) = r.Value;
        ulong size = type.Kind == TypeKind.Bitfield ? type.Inner?.Size ?? type.Size : type.Size;
        if (off + size > (ulong)_data.Length) return null;
        return ReadScalar(off, type);
    }

    public long Int(string path) => unchecked((long)UInt(path));
    public ulong Ptr(string path) => UInt(path);
    public uint U32(string path) => (uint)UInt(path);
    public ushort U16(string path) => (ushort)UInt(path);
    public byte U8(string path) => (byte)UInt(path);

    /// <summary>Raw bytes of a field (arrays, embedded structs).</summary>
    public ReadOnlySpan<byte> Raw(string path)
    {
        var (off, type) = Resolve(path);
        EnsureInRange(off, type.Size, path);
        return _data.AsSpan((int)off, (int)type.Size);
    }

    /// <summary>An embedded struct field as its own view (no new read).</summary>
    public StructView Sub(string path)
    {
        var (off, type) = Resolve(path);
        if (type.Kind is not (TypeKind.Struct or TypeKind.Union))
            throw new InvalidOperationException($"{TypeName}.{path} is not a structure");
        var layout = _types.Get(Layout.Module, type.Name);
        int len = (int)Math.Min(layout.Size, (ulong)Math.Max(0, _data.Length - (int)off));
        return new StructView(layout, Address + off, _data.AsSpan((int)off, len).ToArray(), _types);
    }

    /// <summary>Fixed-size char array as ASCII (e.g. EPROCESS.ImageFileName).</summary>
    public string Ascii(string path)
    {
        var raw = Raw(path);
        int n = raw.IndexOf((byte)0);
        if (n < 0) n = raw.Length;
        return Encoding.Latin1.GetString(raw[..n]);
    }

    private ulong ReadScalar(ulong off, TypeRef type)
    {
        if (type.Kind == TypeKind.Bitfield)
        {
            ulong storage = type.Inner?.Size ?? 0;
            if (storage == 0) storage = (ulong)((type.BitPosition + type.BitLength + 7) / 8);
            return FieldValue.Bits(ReadLe(off, storage), type.BitPosition, type.BitLength);
        }
        ulong size = type.Size;
        if (type.Kind == TypeKind.Pointer && size == 0) size = 8;
        if (size is 0 or > 8) throw new InvalidOperationException($"{TypeName}: field at +0x{off:x} of type {type} is not a scalar");
        ulong value = ReadLe(off, size);
        if (type.IsSigned) value = FieldValue.SignExtend(value, (int)size);
        return value;
    }

    private ulong ReadLe(ulong off, ulong size)
    {
        EnsureInRange(off, size, null);
        return FieldValue.LittleEndian(_data.AsSpan((int)off, (int)size));
    }

    private void EnsureInRange(ulong off, ulong size, string? path)
    {
        if (off + size > (ulong)_data.Length)
            throw new TargetReadException(Address + off, (int)size,
                $"{TypeName}{(path is null ? "" : "." + path)} at {Output.Fmt.Addr(Address + off)} was not readable (structure at {Output.Fmt.Addr(Address)} read only 0x{_data.Length:x} of 0x{Layout.Size:x} bytes)");
    }
}

/// <summary>Memory the analysis needed could not be read. Carries the address and size for a precise note.</summary>
public sealed class TargetReadException(ulong address, int size, string message) : Exception(message)
{
    public ulong Address { get; } = address;
    public int Size { get; } = size;
}
