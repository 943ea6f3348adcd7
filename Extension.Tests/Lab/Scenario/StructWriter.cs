using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Lab.Scenario;

/// <summary>A scenario asked for a type, field, enum constant or symbol the build's symbol table does not have.</summary>
public sealed class ScenarioLayoutException(string message) : Exception(message);

/// <summary>
/// Writes one structure instance in the scenario's memory, field by field, by name (offsets come from the symbol table).
/// Paths may be dotted ("Tcb.Header.Type", "Cid.UniqueThread"); bitfields, enums (by constant name), pointers,
/// embedded lists, UNICODE_STRINGs and char arrays are handled. Every method returns this for chaining.
/// </summary>
public sealed class StructWriter
{
    private readonly TypedMemory _b;

    internal StructWriter(TypedMemory builder, TypeLayout layout, ulong address)
    {
        _b = builder; Layout = layout; Address = address;
    }

    public TypeLayout Layout { get; }
    public ulong Address { get; }
    public string TypeName => Layout.Module + "!" + Layout.Name;
    public ulong Size => Layout.Size;

    public static implicit operator ulong(StructWriter w) => w.Address;

    public bool Has(string path) => _b.TryResolve(Layout, path) is not null;
    public ulong OffsetOf(string path) => _b.Resolve(Layout, path).Offset;
    public ulong AddressOf(string path) => Address + OffsetOf(path);
    public TypeRef TypeOf(string path) => _b.Resolve(Layout, path).Type;

    /// <summary>Sets an integer, pointer, enum or bitfield field.</summary>
    public StructWriter Set(string path, ulong value)
    {
        var (off, t) = _b.Resolve(Layout, path);
        WriteScalar(Address + off, t, value, path);
        return this;
    }

    public StructWriter Set(string path, long value) => Set(path, unchecked((ulong)value));
    public StructWriter Set(string path, int value) => Set(path, unchecked((ulong)(long)value));
    public StructWriter Set(string path, uint value) => Set(path, (ulong)value);
    public StructWriter Set(string path, bool value) => Set(path, value ? 1UL : 0UL);

    /// <summary>Sets the field only when this build has it (for fields that come and go between builds).</summary>
    public StructWriter SetIfPresent(string path, ulong value) => Has(path) ? Set(path, value) : this;

    /// <summary>Sets an enum-valued field by constant name ("WrLpcReply", "Waiting"). The enum is the field's own enum
    /// type, or <paramref name="enumType"/> when the field is a plain integer (e.g. _KTHREAD.WaitReason is UCHAR: "_KWAIT_REASON").</summary>
    public StructWriter SetEnum(string path, string constant, string? enumType = null)
    {
        var (_, t) = _b.Resolve(Layout, path);
        string? et = enumType;
        if (et is null)
        {
            var e = t.Kind == TypeKind.Bitfield ? t.Inner : t;
            if (e?.Kind == TypeKind.Enum) et = e.Name;
        }
        return Set(path, unchecked((ulong)_b.EnumValue(Layout.Module, et, constant)));
    }

    /// <summary>Sets a pointer field to the address of another object (or 0).</summary>
    public StructWriter Ptr(string path, ulong target) => Set(path, target);

    /// <summary>Writes raw bytes at a field (at most the field's size unless <paramref name="allowOverflow"/>).</summary>
    public StructWriter Bytes(string path, ReadOnlySpan<byte> data, bool allowOverflow = false)
    {
        var (off, t) = _b.Resolve(Layout, path);
        if (!allowOverflow && (ulong)data.Length > t.Size && t.Size != 0)
            throw new ScenarioLayoutException($"{TypeName}.{path} is 0x{t.Size:x} bytes; cannot write 0x{data.Length:x}");
        _b.Memory.Write(Address + off, data);
        return this;
    }

    /// <summary>ASCII into a char array (EPROCESS.ImageFileName): truncated to the array, NUL-terminated when room.</summary>
    public StructWriter Ascii(string path, string text)
    {
        var (off, t) = _b.Resolve(Layout, path);
        int cap = (int)t.Size;
        var buf = new byte[cap];
        var src = Encoding.Latin1.GetBytes(text);
        Array.Copy(src, buf, Math.Min(cap, src.Length));
        _b.Memory.Write(Address + off, buf);
        return this;
    }

    /// <summary>Fills an embedded UNICODE_STRING field: allocates the UTF-16 buffer in pool and sets Length/MaximumLength/Buffer.</summary>
    public StructWriter Unicode(string path, string text, ulong? bufferAt = null)
    {
        _b.WriteUnicodeString(AddressOf(path), text, bufferAt);
        return this;
    }

    /// <summary>InitializeListHead on an embedded LIST_ENTRY field (Flink = Blink = itself).</summary>
    public StructWriter ListHead(string path)
    {
        _b.InitializeListHead(AddressOf(path));
        return this;
    }

    /// <summary>InsertTailList(&amp;this.headPath, &amp;entry.entryPath).</summary>
    public StructWriter InsertTail(string headPath, StructWriter entry, string entryPath)
    {
        _b.InsertTailList(AddressOf(headPath), entry.AddressOf(entryPath));
        return this;
    }

    /// <summary>Pushes <paramref name="entry"/> onto a SINGLE_LIST_ENTRY (or plain Next pointer) head field of this struct.</summary>
    public StructWriter PushEntry(string headPath, StructWriter entry, string entryPath)
    {
        _b.PushEntryList(AddressOf(headPath), entry.AddressOf(entryPath));
        return this;
    }

    /// <summary>Fills a field (or the whole struct with path null) with deterministic garbage.</summary>
    public StructWriter Garbage(string? path = null, int seed = 1)
    {
        ulong off = 0, size = Size;
        if (path is not null) { var r = _b.Resolve(Layout, path); off = r.Offset; size = r.Type.Size; }
        _b.Garbage(Address + off, (int)size, seed);
        return this;
    }

    /// <summary>An embedded struct field as its own writer (e.g. w.Sub("Tcb").Set("State", 5)).</summary>
    public StructWriter Sub(string path)
    {
        var (off, t) = _b.Resolve(Layout, path);
        if (t.Kind is not (TypeKind.Struct or TypeKind.Union))
            throw new ScenarioLayoutException($"{TypeName}.{path} is not a structure ({t})");
        return new StructWriter(_b, _b.Layout(t.Name, Layout.Module), Address + off);
    }

    /// <summary>Element <paramref name="index"/> of an embedded array of structs (e.g. _KPRCB.DpcData[0]).</summary>
    public StructWriter Element(string path, int index)
    {
        var (off, t) = _b.Resolve(Layout, path);
        if (t.Kind != TypeKind.Array || t.Inner is null) throw new ScenarioLayoutException($"{TypeName}.{path} is not an array ({t})");
        if ((ulong)index >= t.Count) throw new ScenarioLayoutException($"{TypeName}.{path} has {t.Count} elements; index {index} is out of range");
        var inner = t.Inner;
        if (inner.Kind is TypeKind.Struct or TypeKind.Union)
            return new StructWriter(_b, _b.Layout(inner.Name, Layout.Module), Address + off + (ulong)index * inner.Size);
        throw new ScenarioLayoutException($"{TypeName}.{path} is an array of {inner}, not of structures; use SetElement");
    }

    /// <summary>Sets element <paramref name="index"/> of a scalar array field.</summary>
    public StructWriter SetElement(string path, int index, ulong value)
    {
        var (off, t) = _b.Resolve(Layout, path);
        if (t.Kind != TypeKind.Array || t.Inner is null) throw new ScenarioLayoutException($"{TypeName}.{path} is not an array ({t})");
        if ((ulong)index >= t.Count) throw new ScenarioLayoutException($"{TypeName}.{path} has {t.Count} elements; index {index} is out of range");
        WriteScalar(Address + off + (ulong)index * t.Inner.Size, t.Inner, value, path + $"[{index}]");
        return this;
    }

    private void WriteScalar(ulong addr, TypeRef t, ulong value, string path)
    {
        if (t.Kind == TypeKind.Bitfield)
        {
            ulong storage = t.Inner?.Size ?? 0;
            if (storage == 0) storage = (ulong)((t.BitPosition + t.BitLength + 7) / 8);
            ulong mask = t.BitLength >= 64 ? ulong.MaxValue : (1UL << t.BitLength) - 1;
            if ((value & ~mask) != 0 && unchecked((long)value) >= 0)
                throw new ScenarioLayoutException($"{TypeName}.{path}: value 0x{value:x} does not fit in {t.BitLength} bits");
            ulong raw = _b.ReadLe(addr, (int)storage);
            raw = (raw & ~(mask << t.BitPosition)) | ((value & mask) << t.BitPosition);
            _b.WriteLe(addr, (int)storage, raw);
            return;
        }
        ulong size = t.Size;
        if (t.Kind == TypeKind.Pointer && size == 0) size = 8;
        if (t.Kind is TypeKind.Struct or TypeKind.Union && size == 8) { _b.WriteLe(addr, 8, value); return; } // _LARGE_INTEGER and friends
        if (t.Kind is not (TypeKind.Base or TypeKind.Enum or TypeKind.Pointer) || size is 0 or > 8)
            throw new ScenarioLayoutException($"{TypeName}.{path} is not a scalar ({t}, 0x{t.Size:x} bytes); use Sub(), Bytes() or a list helper");
        if (size < 8)
        {
            ulong max = (1UL << (int)(size * 8)) - 1;
            long sv = unchecked((long)value);
            bool fitsSigned = sv >= -(1L << (int)(size * 8 - 1)) && sv < 0;
            if (value > max && !fitsSigned)
                throw new ScenarioLayoutException($"{TypeName}.{path}: value 0x{value:x} does not fit in {size} bytes");
            value &= max;
        }
        _b.WriteLe(addr, (int)size, value);
    }
}
