using System.Reflection.PortableExecutable;
using NtSleuth.Commands.Pool;
using NtSleuth.Commands.Target;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>!leaktag's host-file search over a real PE image (the runtime's own System.Private.CoreLib.dll).</summary>
public class HostImageSearchTests
{
    private static (byte[] File, uint Stamp, uint Size, SectionHeader Text) Image()
    {
        var file = File.ReadAllBytes(typeof(object).Assembly.Location);
        var h = new PEHeaders(new MemoryStream(file));
        var text = h.SectionHeaders.First(s => s.SizeOfRawData > 0x2000);
        return (file, (uint)h.CoffHeader.TimeDateStamp, (uint)h.PEHeader!.SizeOfImage, text);
    }

    [Test]
    public void FindsAPatternAtModuleBasePlusRva()
    {
        var (file, stamp, size, text) = Image();
        // 16 bytes from the middle of the section: found at base + VirtualAddress + offset (and maybe elsewhere too).
        int off = text.SizeOfRawData / 2;
        var pattern = file.AsSpan(text.PointerToRawData + off, 16).ToArray();
        var m = new ModuleInfo("corelib", 0x7ff8_0000_0000, size, null, stamp);
        var hits = HostImageSearch.SearchPe(file, m, pattern, 64);
        Assert.That(hits, Is.Not.Null);
        Assert.That(hits!, Does.Contain(m.Base + (ulong)text.VirtualAddress + (ulong)off));
        Assert.That(hits!.All(a => a >= m.Base && a < m.Base + size), Is.True);
    }

    [Test]
    public void RefusesAnotherBuildOrANonImage()
    {
        var (file, stamp, size, text) = Image();
        var pattern = file.AsSpan(text.PointerToRawData + 0x100, 16).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(HostImageSearch.SearchPe(file, new ModuleInfo("x", 0x1000_0000, size, null, stamp + 1), pattern, 8), Is.Null, "other TimeDateStamp");
            Assert.That(HostImageSearch.SearchPe(file, new ModuleInfo("x", 0x1000_0000, size + 0x1000, null, stamp), pattern, 8), Is.Null, "other SizeOfImage");
            Assert.That(HostImageSearch.SearchPe(new byte[0x400], new ModuleInfo("x", 0x1000_0000, 0, null, 0), pattern, 8), Is.Null, "not a PE");
            var noPe = (byte[])file.Clone();
            noPe[BitConverter.ToInt32(file, 0x3c)] = (byte)'X';
            Assert.That(HostImageSearch.SearchPe(noPe, new ModuleInfo("x", 0x1000_0000, 0, null, 0), pattern, 8), Is.Null, "no PE signature");
            Assert.That(HostImageSearch.SearchPe(file, new ModuleInfo("x", 0x1000_0000, 0, null, 0), pattern, 1), Has.Count.EqualTo(1), "maxHits bounds the list");
        });
    }
}
