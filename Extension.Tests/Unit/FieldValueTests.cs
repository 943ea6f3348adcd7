using NtSleuth.Commands.Model;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>The one field decoder behind <see cref="StructView"/> and <see cref="PackedField"/>: little-endian integers of
/// every width, bit fields at either end of their storage unit, sign extension only where the type is signed.</summary>
[TestFixture]
public class FieldValueTests
{
    [Test]
    public void LittleEndianOfEveryWidth()
    {
        byte[] b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88];
        Assert.That(FieldValue.LittleEndian(b.AsSpan(0, 1)), Is.EqualTo(0x01UL));
        Assert.That(FieldValue.LittleEndian(b.AsSpan(0, 2)), Is.EqualTo(0x0201UL));
        Assert.That(FieldValue.LittleEndian(b.AsSpan(0, 3)), Is.EqualTo(0x030201UL));
        Assert.That(FieldValue.LittleEndian(b.AsSpan(0, 4)), Is.EqualTo(0x04030201UL));
        Assert.That(FieldValue.LittleEndian(b.AsSpan(0, 6)), Is.EqualTo(0x060504030201UL));
        Assert.That(FieldValue.LittleEndian(b), Is.EqualTo(0x8807060504030201UL));
    }

    [Test]
    public void BitsAndSignExtension()
    {
        Assert.That(FieldValue.Bits(0b1011_0100, 2, 4), Is.EqualTo(0b1101UL));
        Assert.That(FieldValue.Bits(0x8000_0000_0000_0000, 63, 1), Is.EqualTo(1UL));
        Assert.That(FieldValue.Bits(0xDEAD_BEEF_0000_0001, 0, 64), Is.EqualTo(0xDEAD_BEEF_0000_0001UL));
        Assert.That(FieldValue.SignExtend(0xFFFE, 2), Is.EqualTo(unchecked((ulong)-2L)));
        Assert.That(FieldValue.SignExtend(0x7FFE, 2), Is.EqualTo(0x7FFEUL));
        Assert.That(FieldValue.SignExtend(0x80, 1), Is.EqualTo(unchecked((ulong)-128L)));
        Assert.That(FieldValue.SignExtend(0xFFFF_FFFF_FFFF_FFFE, 8), Is.EqualTo(0xFFFF_FFFF_FFFF_FFFEUL));
    }

    [Test]
    public void PackedFieldDecodesThroughIt()
    {
        byte[] entry = [0xAA, 0xFE, 0xFF, 0b0110_0000, 0, 0, 0, 0];
        Assert.That(new PackedField(1, 2, signed: true).Get(entry), Is.EqualTo(unchecked((ulong)-2L)));
        Assert.That(new PackedField(1, 2, signed: false).Get(entry), Is.EqualTo(0xFFFEUL));
        Assert.That(new PackedField(0, 4, false, bitPos: 29, bitLen: 2).Get(entry), Is.EqualTo(0b11UL));
        Assert.That(new PackedField(6, 4, false).Get(entry), Is.EqualTo(0UL), "past the entry's end reads 0");
        Assert.That(new PackedField(0, 3, false).Get(entry), Is.EqualTo(0UL), "a 3-byte integer field is not a packed scalar");
    }
}
