using NtSleuth.Commands.Symbols;
using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>
/// Layout assembly from engine-style answers (type names as dbgeng prints them: "_KTHREAD *", "wchar_t [260]").
/// The fake mirrors what IDebugSymbols3 returns for a type; field enumeration stops when GetFieldName fails.
/// </summary>
public class TypeLayoutBuilderTests
{
    private sealed class FakeTypes : ITypeQueries
    {
        private const ulong Nt = 0xfffff800_00000000;
        private readonly Dictionary<string, uint> _ids = new();
        private readonly Dictionary<uint, (string Name, ulong Size, List<(string F, uint Off, uint Type)> Fields)> _types = new();
        public Dictionary<string, (int, int)> Bits { get; } = new();
        public int BitfieldCalls;
        public int FieldNameCalls;

        public uint Add(string name, ulong size, params (string, uint, uint)[] fields)
        {
            uint id = (uint)_types.Count + 1;
            _types[id] = (name, size, fields.ToList());
            _ids[name] = id;
            return id;
        }

        public int PointerSize => 8;
        public bool TryGetTypeId(string q, out ulong mb, out uint id)
        {
            mb = Nt; id = 0;
            return q.StartsWith("nt!") && _ids.TryGetValue(q[3..], out id);
        }
        public List<string> AskedByName { get; } = [];
        public bool TryGetTypeIdInModule(ulong mb, string n, out uint id) { AskedByName.Add(n); return _ids.TryGetValue(n, out id); }
        public ulong GetTypeSize(ulong mb, uint id) => _types.TryGetValue(id, out var t) ? t.Size : 0;
        /// <summary>Type names the engine fails to give (as it does for a lookup it aborts on a swallowed Ctrl+Break).</summary>
        public HashSet<uint> FailTypeNames { get; } = new();
        public string? GetTypeName(ulong mb, uint id) => !FailTypeNames.Contains(id) && _types.TryGetValue(id, out var t) ? t.Name : null;
        public string? GetFieldName(ulong mb, uint id, uint i)
        {
            FieldNameCalls++;
            return _types.TryGetValue(id, out var t) && i < t.Fields.Count ? t.Fields[(int)i].F : null;
        }
        public bool TryGetFieldTypeAndOffset(ulong mb, uint c, string f, out uint ft, out uint off)
        {
            ft = 0; off = 0;
            var x = _types[c].Fields.FirstOrDefault(y => y.F == f);
            if (x.F is null) return false;
            ft = x.Type; off = x.Off;
            return true;
        }
        public IReadOnlyDictionary<string, (int Position, int Length)> GetBitfields(string q, IReadOnlyList<string> fields)
        {
            BitfieldCalls++;
            return fields.Where(Bits.ContainsKey).ToDictionary(f => f, f => Bits[f]);
        }
    }

    private static FakeTypes Kalpc(out uint msg)
    {
        var t = new FakeTypes();
        uint ulong_ = t.Add("unsigned long", 4);
        uint uint64 = t.Add("unsigned int64", 8);
        uint le = t.Add("_LIST_ENTRY", 16);
        uint lep = t.Add("_LIST_ENTRY *", 8);
        t.Add("_LIST_ENTRY", 16, ("Flink", 0, lep), ("Blink", 8, lep));
        le = t.Add("_LIST_ENTRY", 16, ("Flink", 0, lep), ("Blink", 8, lep));
        uint ethread = t.Add("_ETHREAD", 0x800, ("Tcb", 0, uint64));
        uint ethreadp = t.Add("_ETHREAD *", 8);
        uint state = t.Add("_KALPC_MESSAGE_STATE", 4); // enum: no fields
        uint statep = t.Add("_KALPC_MESSAGE_STATE", 4);
        uint wname = t.Add("wchar_t [16]", 32);
        uint voidp = t.Add("void *", 8);
        uint fn = t.Add("long  (*)(void *, unsigned long)", 8);
        uint arr2 = t.Add("unsigned long [2][3]", 24);
        t.Add("_DUAL", 0x278, ("Length", 0, ulong_));
        uint duals = t.Add("_DUAL[]", 0x4f0);
        msg = t.Add("_KALPC_MESSAGE", 0x600,
            ("Entry", 0x0, le), ("WaitingThread", 0x10, ethreadp), ("u1", 0x18, ulong_),
            ("Released", 0x1c, ulong_), ("Canceled", 0x1c, ulong_), ("State", 0x20, statep),
            ("Name", 0x28, wname), ("Context", 0x48, voidp), ("Callback", 0x50, fn), ("Grid", 0x58, arr2), ("Storage", 0x70, duals));
        t.Bits["Released"] = (0, 1);
        t.Bits["Canceled"] = (1, 3);
        _ = state; _ = ethread; _ = uint64;
        return t;
    }

    [Test]
    public void AFunctionPointerFieldDoesNotAskTheEngineForTheFunctionPlaceholder()
    {
        // dbgeng names a function-pointer field's type "<function> *"; GetTypeId("<function>") always fails, slowly.
        var t = new FakeTypes();
        uint fnp = t.Add("<function> *", 8);
        uint ulong_ = t.Add("unsigned long", 4);
        t.Add("_KDPC", 0x40, ("Number", 0, ulong_), ("DeferredRoutine", 0x18, fnp));
        var l = new TypeLayoutBuilder(t).Build("nt", "_KDPC")!;
        var f = l.GetField("DeferredRoutine");
        Assert.That((f.Offset, f.Type.Kind, f.Type.Size), Is.EqualTo((0x18UL, TypeKind.Pointer, 8UL)));
        Assert.That((f.Type.Inner!.Kind, f.Type.Inner.Name), Is.EqualTo((TypeKind.Unknown, "<function>")));
        Assert.That(t.AskedByName, Does.Not.Contain("<function>"));
    }

    [Test]
    public void BuildsFieldsOffsetsKindsAndBitfields()
    {
        var t = Kalpc(out _);
        var l = new TypeLayoutBuilder(t).Build("nt", "_KALPC_MESSAGE")!;
        Assert.That(l.Size, Is.EqualTo(0x600UL));
        Assert.That(l.Kind, Is.EqualTo(TypeKind.Struct));
        Assert.That(l.Fields.Select(f => f.Name), Is.EqualTo(new[] { "Entry", "WaitingThread", "u1", "Released", "Canceled", "State", "Name", "Context", "Callback", "Grid", "Storage" }));

        var entry = l.GetField("Entry");
        Assert.That((entry.Offset, entry.Type.Kind, entry.Type.Name, entry.Size), Is.EqualTo((0UL, TypeKind.Struct, "_LIST_ENTRY", 16UL)));

        var wt = l.GetField("WaitingThread").Type;
        Assert.That(wt.Kind, Is.EqualTo(TypeKind.Pointer));
        Assert.That(wt.Size, Is.EqualTo(8UL));
        Assert.That(wt.Inner!.Kind, Is.EqualTo(TypeKind.Struct));
        Assert.That(wt.Inner.Name, Is.EqualTo("_ETHREAD"));
        Assert.That(wt.Inner.Size, Is.EqualTo(0x800UL));

        var u1 = l.GetField("u1").Type;
        Assert.That((u1.Kind, u1.Size, u1.IsSigned), Is.EqualTo((TypeKind.Base, 4UL, false)));

        var rel = l.GetField("Released");
        Assert.That((rel.Offset, rel.Type.Kind, rel.Type.BitPosition, rel.Type.BitLength), Is.EqualTo((0x1cUL, TypeKind.Bitfield, 0, 1)));
        Assert.That(rel.Type.Inner!.Name, Is.EqualTo("unsigned long"));
        var can = l.GetField("Canceled").Type;
        Assert.That((can.BitPosition, can.BitLength), Is.EqualTo((1, 3)));

        Assert.That(l.GetField("State").Type.Kind, Is.EqualTo(TypeKind.Enum));

        var name = l.GetField("Name").Type;
        Assert.That((name.Kind, name.Count, name.Size, name.Inner!.Kind, name.Inner.Name, name.Inner.Size),
            Is.EqualTo((TypeKind.Array, 16UL, 32UL, TypeKind.Base, "wchar_t", 2UL)));

        var ctx = l.GetField("Context").Type;
        Assert.That((ctx.Kind, ctx.Inner!.Kind, ctx.Inner.Name), Is.EqualTo((TypeKind.Pointer, TypeKind.Base, "void")));

        var cb = l.GetField("Callback").Type;
        Assert.That((cb.Kind, cb.Inner!.Kind), Is.EqualTo((TypeKind.Pointer, TypeKind.Function)));

        var grid = l.GetField("Grid").Type;
        Assert.That((grid.Kind, grid.Count, grid.Inner!.Kind, grid.Inner.Count, grid.Inner.Size, grid.Inner.Inner!.Size),
            Is.EqualTo((TypeKind.Array, 2UL, TypeKind.Array, 3UL, 12UL, 4UL)));

        // An array the engine names without a count: the count from the sizes.
        var st = l.GetField("Storage").Type;
        Assert.That((st.Kind, st.Count, st.Size, st.Inner!.Kind, st.Inner.Name, st.Inner.Size),
            Is.EqualTo((TypeKind.Array, 2UL, 0x4f0UL, TypeKind.Struct, "_DUAL", 0x278UL)));

        Assert.That(t.BitfieldCalls, Is.EqualTo(1), "bitfields for all fields in one engine call");
    }

    [Test]
    public void UnknownTypeIsNull() =>
        Assert.That(new TypeLayoutBuilder(Kalpc(out _)).Build("nt", "_NO_SUCH_TYPE"), Is.Null);

    [Test]
    public void UnionIsRecognisedWhenAllFieldsOverlap()
    {
        var t = new FakeTypes();
        uint u32 = t.Add("unsigned long", 4);
        uint u64 = t.Add("unsigned int64", 8);
        t.Add("_LARGE_INTEGER", 8, ("LowPart", 0, u32), ("QuadPart", 0, u64));
        Assert.That(new TypeLayoutBuilder(t).Build("nt", "_LARGE_INTEGER")!.Kind, Is.EqualTo(TypeKind.Union));
    }

    [Test]
    public void LazyLayoutAnswersLikeTheFullOneAndAsksOnlyForTheFieldsRead()
    {
        var full = new TypeLayoutBuilder(Kalpc(out _)).Build("nt", "_KALPC_MESSAGE")!;
        var t = Kalpc(out _);
        var lazy = new TypeLayoutBuilder(t).BuildLazy("nt", "_KALPC_MESSAGE")!;
        Assert.That((lazy.Size, lazy.IsComplete), Is.EqualTo((full.Size, false)));
        int namesBefore = t.FieldNameCalls;
        Assert.That(lazy.GetField("WaitingThread"), Is.EqualTo(full.GetField("WaitingThread")));
        Assert.That(lazy.GetField("Canceled"), Is.EqualTo(full.GetField("Canceled")));
        Assert.That(lazy.GetField("Name"), Is.EqualTo(full.GetField("Name")));
        Assert.That(lazy.TryGetField("NoSuchField"), Is.Null);
        Assert.That(lazy.TryGetField("Entry.Flink"), Is.Null, "paths are split by the caller, as with a full layout");
        Assert.That(t.BitfieldCalls, Is.EqualTo(1), "the bitfield ioctl only for the integral field read (Canceled)");
        Assert.That(t.FieldNameCalls - namesBefore, Is.LessThanOrEqualTo(2), "no enumeration of the type's fields (only struct/enum probes)");
        // Enumerating gives the same fields and kind as the full build.
        Assert.That(lazy.Fields, Is.EqualTo(full.Fields));
        Assert.That((lazy.Kind, lazy.IsComplete), Is.EqualTo((full.Kind, true)));
    }

    [Test]
    public void AFieldWhoseTypeTheEngineDidNotNameIsAskedAgainNotRemembered()
    {
        var t = Kalpc(out _);
        var full = new TypeLayoutBuilder(Kalpc(out _)).Build("nt", "_KALPC_MESSAGE")!;
        var lazy = new TypeLayoutBuilder(t).BuildLazy("nt", "_KALPC_MESSAGE")!;
        var failing = full.GetField("WaitingThread").Type;
        uint id = 0;
        Assert.That(t.TryGetTypeIdInModule(0, failing.Name, out id) || failing.Kind == TypeKind.Pointer, Is.True);
        // Fail every type name once: the field is "unknown now" (a missing-symbol error for this command only)...
        for (uint i = 1; i < 64; i++) t.FailTypeNames.Add(i);
        var ex = Assert.Throws<MissingSymbolException>(() => lazy.GetField("WaitingThread"));
        Assert.That(ex!.Message, Does.Contain("_KALPC_MESSAGE.WaitingThread"));
        // ...and once the engine answers again, the same layout object resolves it like the full build.
        t.FailTypeNames.Clear();
        Assert.That(lazy.GetField("WaitingThread"), Is.EqualTo(full.GetField("WaitingThread")));
    }
}
