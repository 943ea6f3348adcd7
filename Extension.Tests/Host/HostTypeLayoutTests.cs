using Moq;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>
/// Layouts answered by the debugger data model (<see cref="IHostTypes"/>, Extension/HostTypes.cs) and dotted paths
/// resolved by the layout's own resolver. The fake data model holds nested types as objects, as the real one does:
/// Microsoft's PDBs name every unnamed nested union/struct "&lt;anonymous-tag&gt;" (older ones "&lt;unnamed-tag&gt;"),
/// so a path through them must follow the field's type, never look the type up by its name.
/// </summary>
public class HostTypeLayoutTests
{
    private sealed class T(string name, ulong size, params (string Name, ulong Offset, object Type)[] fields)
    {
        public string Name { get; } = name;
        public ulong Size { get; } = size;
        public (string Name, ulong Offset, object Type)[] Fields { get; } = fields;
    }

    /// <summary>Data model over nested <see cref="T"/> objects; scalars are <see cref="TypeRef"/>s.</summary>
    private sealed class FakeHost : IHostTypes
    {
        public readonly Dictionary<string, T> Types = new(StringComparer.Ordinal);
        public readonly List<string> FoundTypes = [];
        public readonly List<string> Resolved = [];
        public bool Unavailable;

        public HostAnswer FindType(string module, string typeName, out ulong size)
        {
            FoundTypes.Add(typeName);
            size = 0;
            if (Unavailable) return HostAnswer.Unavailable;
            if (!Types.TryGetValue(typeName, out var t)) return HostAnswer.NotFound;
            size = t.Size;
            return HostAnswer.Found;
        }

        public HostAnswer ResolveField(string module, string typeName, string path, out ulong offset, out TypeRef? type)
        {
            Resolved.Add(path);
            offset = 0; type = null;
            if (Unavailable) return HostAnswer.Unavailable;
            object cur = Types[typeName];
            foreach (var part in path.Split('.'))
            {
                if (cur is not T t) return HostAnswer.NotFound;
                var f = t.Fields.FirstOrDefault(x => x.Name == part);
                if (f.Name is null) return HostAnswer.NotFound;
                offset += f.Offset;
                cur = f.Type;
            }
            type = cur is T nested ? new TypeRef { Kind = TypeKind.Struct, Name = nested.Name, Size = nested.Size } : (TypeRef)cur;
            return HostAnswer.Found;
        }

        public IReadOnlyList<FieldLayout>? Fields(string module, string typeName)
        {
            if (Unavailable) return null;
            return Types[typeName].Fields.Select(f => new FieldLayout(f.Name, f.Offset,
                f.Type is T n ? new TypeRef { Kind = TypeKind.Struct, Name = n.Name, Size = n.Size } : (TypeRef)f.Type)).ToList();
        }
    }

    private static readonly TypeRef UShort = new() { Kind = TypeKind.Base, Name = "unsigned short", Size = 2 };
    private static readonly TypeRef Short = new() { Kind = TypeKind.Base, Name = "short", Size = 2, IsSigned = true };
    private static readonly TypeRef ULong = new() { Kind = TypeKind.Base, Name = "unsigned long", Size = 4 };

    /// <summary>_PORT_MESSAGE as Microsoft's 19041 PDB has it: u1 and u2 are unions of type "&lt;anonymous-tag&gt;", each
    /// with a struct s1/s2 of type "&lt;anonymous-tag&gt;" too — four different types under one name.</summary>
    private static FakeHost PortMessage()
    {
        var h = new FakeHost();
        var s1 = new T("<anonymous-tag>", 4, ("DataLength", 0, Short), ("TotalLength", 2, Short));
        var u1 = new T("<anonymous-tag>", 4, ("s1", 0, s1), ("Length", 0, ULong));
        var s2 = new T("<anonymous-tag>", 4, ("Type", 0, Short), ("DataInfoOffset", 2, Short));
        var u2 = new T("<anonymous-tag>", 4, ("s2", 0, s2), ("ZeroInit", 0, ULong));
        h.Types["_PORT_MESSAGE"] = new T("_PORT_MESSAGE", 0x28, ("u1", 0, u1), ("u2", 4, u2), ("MessageId", 0x18, ULong));
        h.Types["_KALPC_MESSAGE"] = new T("_KALPC_MESSAGE", 0x118, ("Flags", 0x20, new TypeRef
            { Kind = TypeKind.Bitfield, Name = "unsigned long", Size = 4, Inner = ULong, BitPosition = 3, BitLength = 4 }),
            ("PortMessage", 0xe8, h.Types["_PORT_MESSAGE"]));
        return h;
    }

    private static (TypeCache Cache, Mock<ITypeQueries> Engine) Cache(FakeHost host)
    {
        var engine = new Mock<ITypeQueries>(MockBehavior.Loose);
        var builder = new TypeLayoutBuilder(engine.Object, () => host) { Mode = TypeLayoutBuilder.LookupMode.DataModel };
        var symbols = new Mock<ISymbolProvider>();
        symbols.Setup(s => s.GetTypeLayout(It.IsAny<string>(), It.IsAny<string>()))
               .Returns((string m, string t) => builder.BuildLazy(m, t));
        return (new TypeCache(symbols.Object), engine);
    }

    [Test]
    public void PathsThroughUnnamedNestedTypesFollowTheFieldsNotTheirName()
    {
        var host = PortMessage();
        var (types, engine) = Cache(host);
        var msg = types.Get("nt", "_KALPC_MESSAGE");
        Assert.That(types.ResolvePath(msg, "PortMessage.u2.s2.DataInfoOffset").Offset, Is.EqualTo(0xe8UL + 4 + 2));
        Assert.That(types.ResolvePath(msg, "PortMessage.u1.s1.TotalLength").Offset, Is.EqualTo(0xe8UL + 2));
        Assert.That(types.ResolvePath(msg, "PortMessage.u1.s1.TotalLength").Type, Is.EqualTo(Short));
        Assert.That(types.TryResolvePath(msg, "PortMessage.u1.s2.Type"), Is.Null, "s2 is in u2, not u1");
        // No type was looked up by name but the root: "<anonymous-tag>" would name any of four types.
        Assert.That(host.FoundTypes, Is.EqualTo(new[] { "_KALPC_MESSAGE" }));
        // Nothing went to the engine's own (slower) questions.
        engine.Verify(e => e.TryGetTypeId(It.IsAny<string>(), out It.Ref<ulong>.IsAny, out It.Ref<uint>.IsAny), Times.Never);
        engine.Verify(e => e.GetBitfields(It.IsAny<string>(), It.IsAny<IReadOnlyList<string>>()), Times.Never);
    }

    [Test]
    public void APathIsResolvedOnceAndItsPrefixesMustBeStructures()
    {
        var host = PortMessage();
        var (types, _) = Cache(host);
        var msg = types.Get("nt", "_KALPC_MESSAGE");
        types.ResolvePath(msg, "PortMessage.u1.s1.DataLength");
        types.ResolvePath(msg, "PortMessage.u1.s1.DataLength");
        types.ResolvePath(msg, "PortMessage.u1.s1.TotalLength");
        Assert.That(host.Resolved, Is.EqualTo(new[] { "PortMessage", "PortMessage.u1", "PortMessage.u1.s1", "PortMessage.u1.s1.DataLength", "PortMessage.u1.s1.TotalLength" }));
        // A scalar cannot be stepped through (as the step-by-step walk refuses it), and the bitfield keeps its bits.
        Assert.That(types.TryResolvePath(msg, "Flags.Anything"), Is.Null);
        var flags = types.ResolvePath(msg, "Flags");
        Assert.That((flags.Type.Kind, flags.Type.BitPosition, flags.Type.BitLength), Is.EqualTo((TypeKind.Bitfield, 3, 4)));
    }

    [Test]
    public void AnUnansweredFieldIsNotRememberedAsMissing()
    {
        var host = PortMessage();
        var (types, _) = Cache(host);
        var msg = types.Get("nt", "_KALPC_MESSAGE");
        host.Unavailable = true; // e.g. the data model refused while a Ctrl+Break was pending
        Assert.That(types.TryResolvePath(msg, "PortMessage.u1.s1.DataLength"), Is.Null);
        Assert.That(msg.TryGetField("PortMessage"), Is.Null);
        host.Unavailable = false;
        Assert.That(types.TryResolvePath(msg, "PortMessage.u1.s1.DataLength")?.Offset, Is.EqualTo(0xe8UL));
        Assert.That(msg.TryGetField("PortMessage")?.Offset, Is.EqualTo(0xe8UL));
    }

    [Test]
    public void ATypeTheDataModelDoesNotKnowGoesToTheEngine()
    {
        var host = PortMessage();
        var engine = new Mock<ITypeQueries>();
        ulong mb = 0xfffff800_00000000; uint id = 7;
        engine.Setup(e => e.TryGetTypeId("nt!_KPRCB", out mb, out id)).Returns(true);
        engine.Setup(e => e.GetTypeSize(mb, id)).Returns(0x8000UL);
        var builder = new TypeLayoutBuilder(engine.Object, () => host) { Mode = TypeLayoutBuilder.LookupMode.DataModel };
        var l = builder.BuildLazy("nt", "_KPRCB");
        Assert.That(l?.Size, Is.EqualTo(0x8000UL));
        Assert.That(host.FoundTypes, Is.EqualTo(new[] { "_KPRCB" }));
        // Engine mode never asks the data model.
        host.FoundTypes.Clear();
        var engineOnly = new TypeLayoutBuilder(engine.Object, () => host) { Mode = TypeLayoutBuilder.LookupMode.Engine };
        Assert.That(engineOnly.BuildLazy("nt", "_KPRCB")?.Size, Is.EqualTo(0x8000UL));
        Assert.That(host.FoundTypes, Is.Empty);
    }

    [Test]
    public void EnumeratingAllFieldsGivesTheKindAndEveryMember()
    {
        var host = PortMessage();
        var (types, _) = Cache(host);
        var pm = types.Get("nt", "_PORT_MESSAGE");
        Assert.That(pm.Fields.Select(f => (f.Name, f.Offset)), Is.EqualTo(new[] { ("u1", 0UL), ("u2", 4UL), ("MessageId", 0x18UL) }));
        Assert.That(pm.Kind, Is.EqualTo(TypeKind.Struct));
    }

    [TestCase("unsigned __int64", "unsigned int64")]
    [TestCase("__int64", "int64")]
    [TestCase("_KPROCESS *", "_KPROCESS*")]
    [TestCase("_EX_WORK_QUEUE * * *", "_EX_WORK_QUEUE***")]
    [TestCase("unsigned char [15]", "unsigned char[]")]
    [TestCase("_LIST_ENTRY [32]", "_LIST_ENTRY[]")]
    [TestCase("unsigned long", "unsigned long")]
    [TestCase("<anonymous-tag>", "<anonymous-tag>")]
    public void TypeNamesAreSpelledAsTheEngineSpellsThem(string dataModel, string engine) =>
        Assert.That(DataModelTypes.EngineStyle(dataModel), Is.EqualTo(engine));
}
