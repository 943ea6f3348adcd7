using System.Buffers.Binary;
using NtSleuth.Commands.LeakTag;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Target;
using NtSleuth.Tests.EndToEnd;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

/// <summary>
/// !leaktag's module search skips an x64 image's exception directory (ImageScanPlan). These tests are the proof that it
/// loses nothing: a pool tag cannot start inside a valid exception directory (checked byte by byte on the real
/// Microsoft-built x64 images on the machine, where the check is not vacuous), an occurrence running into the
/// directory is still found, the planned search finds exactly what a search of the whole image finds, and the skip is
/// not applied where the proof does not hold.
/// </summary>
public class ImageScanPlanTests
{
    private const ulong Base = 0xfffff880_05000000;

    /// <summary>Microsoft-built x64 images present on this machine: the DbgEng package's and the .NET runtime's (read in place).</summary>
    private static List<string> RealImages()
    {
        var list = new List<string>();
        if (RealEngine.EngineDir is { } e)
            list.AddRange(new[] { "dbgcore.dll", "dbghelp.dll", "dbgmodel.dll", "msdia140.dll", "dbgeng.dll" }.Select(f => Path.Combine(e, f)).Where(File.Exists));
        var rt = Path.Combine(Path.GetDirectoryName(RealEngine.WinePrefix)!, "runtime");
        if (Directory.Exists(rt))
            foreach (var f in new[] { "coreclr.dll", "clrjit.dll", "hostpolicy.dll", "clrgc.dll" })
                if (Directory.EnumerateFiles(rt, f, SearchOption.AllDirectories).FirstOrDefault() is { } p) list.Add(p);
        if (list.Count == 0) Assert.Ignore("no Microsoft x64 image on this machine (the DbgEng package and the wine-side .NET runtime are restored by scripts/setup-linux.sh)");
        return list;
    }

    private static (byte[] Image, PeImage Pe) Load(string path)
    {
        var pe = new PeImage(File.ReadAllBytes(path));
        var mem = new SparseMemory();
        pe.MapInto(mem, Base);
        var image = new byte[pe.SizeOfImage];
        mem.Read(Base, image);
        return (image, pe);
    }

    [Test]
    public void NoTagCanStartInTheExceptionDirectoryOfARealImage()
    {
        var pattern = "Leak"u8.ToArray();
        foreach (var path in RealImages())
        {
            var (image, pe) = Load(path);
            var plan = ImageScanPlan.Make(image.AsSpan(0, KdnetModel.MaxPacketData), Base, pe.SizeOfImage, pattern);
            Assert.That(plan.Skipped, Is.Not.Null, $"{Path.GetFileName(path)}: an MSVC x64 image below 16 MB has an exception directory to skip");
            var (start, length) = plan.Skipped!.Value;
            int s = (int)(start - Base), end = s + (int)length;
            // Every 4-byte window that starts in the directory holds a zero byte: no pool tag (4 printable characters) starts there.
            int zeroFreeInside = 0;
            for (int i = s; i < end && i + 4 <= image.Length; i++)
                if (image.AsSpan(i, 4).IndexOf((byte)0) < 0) zeroFreeInside++;
            // Not vacuous: outside the directory the same image is full of zero-free windows (code and strings).
            int zeroFreeOutside = 0;
            for (int i = 0; i + 4 <= image.Length; i++)
                if ((i < s || i >= end) && image.AsSpan(i, 4).IndexOf((byte)0) < 0) zeroFreeOutside++;
            TestContext.Out.WriteLine($"{Path.GetFileName(path)}: SizeOfImage 0x{pe.SizeOfImage:x}, exception directory 0x{length:x} bytes ({100.0 * length / pe.SizeOfImage:0.0}%), zero-free 4-byte windows inside {zeroFreeInside}, outside {zeroFreeOutside:N0}");
            Assert.That(zeroFreeInside, Is.EqualTo(0), Path.GetFileName(path));
            Assert.That(zeroFreeOutside, Is.GreaterThan(10_000), Path.GetFileName(path));
        }
    }

    private static List<ulong> Whole(TargetMemory m, ulong size, byte[] pattern) => m.ScanFor(Base, size, pattern, int.MaxValue);

    private static List<ulong> Planned(TargetMemory m, ModuleInfo mod, byte[] pattern)
    {
        var hits = new List<ulong>();
        foreach (var (start, length) in ImageScanPlan.For(m, mod, pattern).Ranges) hits.AddRange(m.ScanFor(start, length, pattern, int.MaxValue));
        return hits;
    }

    private static InMemoryTarget Target(SparseMemory mem) =>
        new(mem, new IsfSymbolProvider(), new TargetInfo { Kind = TargetKind.Kernel, PointerSize = 8 }, []);

    [Test]
    public void ThePlannedSearchFindsWhatTheWholeImageSearchFinds()
    {
        // The smallest real images (a whole-image scan per tag): every printable tag found near the directory's ends,
        // and the most frequent printable tags of the image.
        foreach (var path in RealImages().OrderBy(p => new FileInfo(p).Length).Take(2))
        {
            var pe = new PeImage(File.ReadAllBytes(path));
            var mem = new SparseMemory();
            pe.MapInto(mem, Base);
            var image = new byte[pe.SizeOfImage];
            mem.Read(Base, image);
            var plan = ImageScanPlan.Make(image.AsSpan(0, KdnetModel.MaxPacketData), Base, pe.SizeOfImage, "Leak"u8);
            var (ds, dl) = plan.Skipped!.Value;
            int s = (int)(ds - Base), e = s + (int)dl;
            static bool Printable(ReadOnlySpan<byte> w) { foreach (var b in w) if (b is < 0x20 or > 0x7e) return false; return true; }
            var tags = new HashSet<string>();
            foreach (int c in new[] { s, e })
                for (int i = Math.Max(0, c - 256); i < Math.Min(image.Length - 4, c + 256); i++)
                    if (Printable(image.AsSpan(i, 4))) tags.Add(System.Text.Encoding.ASCII.GetString(image, i, 4));
            var counts = new Dictionary<string, int>();
            for (int i = 0; i + 4 <= image.Length; i += 1)
                if (Printable(image.AsSpan(i, 4))) { var t = System.Text.Encoding.ASCII.GetString(image, i, 4); counts[t] = counts.GetValueOrDefault(t) + 1; }
            foreach (var t in counts.OrderByDescending(kv => kv.Value).Take(12)) tags.Add(t.Key);
            tags.Add("Leak");
            var mod = new ModuleInfo(Path.GetFileName(path), Base, pe.SizeOfImage);
            foreach (var tag in tags)
            {
                var pattern = System.Text.Encoding.ASCII.GetBytes(tag);
                var expected = Whole(new TargetMemory(Target(mem)), pe.SizeOfImage, pattern);
                var got = Planned(new TargetMemory(Target(mem)), mod, pattern);
                Assert.That(got, Is.EqualTo(expected), $"{Path.GetFileName(path)} '{tag}'");
            }
            TestContext.Out.WriteLine($"{Path.GetFileName(path)}: {tags.Count} tags, identical hits");
        }
    }

    /// <summary>A small x64 image: header, exception directory at 0x8000 (valid entries), the rest random bytes.</summary>
    private static SparseMemory Synthetic(uint size, uint dirRva, uint dirSize, ushort machine = 0x8664, int seed = 1)
    {
        var mem = new SparseMemory();
        var rnd = new Random(seed);
        var junk = new byte[size];
        rnd.NextBytes(junk);
        for (int i = 0; i < junk.Length; i++) if (junk[i] == (byte)'L') junk[i] = 0x11; // only planted tags match
        mem.Map(Base, size);
        mem.Write(Base, junk);
        var h = new byte[0x200];
        h[0] = (byte)'M'; h[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x3c), 0x80);
        "PE\0\0"u8.CopyTo(h.AsSpan(0x80));
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x84), machine);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x94), 0xf0);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(0x98), 0x20b);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 56), size);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 108), 16);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 112 + 24), dirRva);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x98 + 112 + 28), dirSize);
        mem.Write(Base, h);
        var dir = new byte[dirSize];
        for (int j = 0; j + 4 <= dir.Length; j += 4) BinaryPrimitives.WriteUInt32LittleEndian(dir.AsSpan(j), (uint)rnd.Next(0x1000, (int)Math.Min(size, 0xffffff)));
        mem.Write(Base + dirRva, dir);
        return mem;
    }

    [Test]
    public void AnOccurrenceRunningIntoTheDirectoryIsFound()
    {
        const uint size = 0x40000, dirRva = 0x8000, dirSize = 0x6000;
        foreach (int into in new[] { 1, 2, 3 })
        {
            var mem = Synthetic(size, dirRva, dirSize);
            // The directory's first RVA is 0x00??6b61 etc.: its low bytes are the tag's tail ("ak", "eak", "k").
            var tag = "Leak"u8.ToArray();
            mem.Write(Base + dirRva - (ulong)(4 - into), tag.AsSpan(0, 4 - into));
            var first = new byte[4];
            tag.AsSpan(4 - into).CopyTo(first);
            first[3] = 0; // still an RVA below 16 MB
            first[2] = into == 3 ? first[2] : (byte)0x01;
            mem.Write(Base + dirRva, first);
            mem.Write(Base + 0x20000, tag); // and one after the directory
            var mod = new ModuleInfo("x.sys", Base, size);
            var plan = ImageScanPlan.For(new TargetMemory(Target(mem)), mod, tag);
            Assert.That(plan.Skipped, Is.EqualTo(((ulong, ulong)?)(Base + dirRva, dirSize)));
            var expected = Whole(new TargetMemory(Target(mem)), size, tag);
            Assert.That(expected, Is.EqualTo(new[] { Base + dirRva - (ulong)(4 - into), Base + 0x20000 }));
            Assert.That(Planned(new TargetMemory(Target(mem)), mod, tag), Is.EqualTo(expected), $"{into} byte(s) into the directory");
        }
    }

    [Test]
    public void ATagInsideTheDirectoryWouldBeAnRvaOf16MbOrMore()
    {
        // The proof's two facts, for every pool tag the command accepts: its 4 bytes are all non-zero, so read as a
        // little-endian dword at any of the 4 alignments it would put a non-zero byte where a valid RVA of an image
        // below 16 MB has its zero high byte.
        for (int c = 0x20; c <= 0x7e; c++)
        {
            var p = PoolTagPattern.Parse(((char)c).ToString());
            if (p.SearchBytes is not { } b) continue; // '*' and '?' are wildcards: no search
            Assert.That(b, Has.Length.EqualTo(4));
            Assert.That(ImageScanPlan.CanSkipDirectory(b), Is.True);
        }
        for (int j = 0; j < 4; j++)
        {
            // dwords 0x00ffffff (the largest RVA below 16 MB) back to back; a window at offset j holds a zero.
            var dwords = new byte[16];
            for (int k = 0; k < 4; k++) BinaryPrimitives.WriteUInt32LittleEndian(dwords.AsSpan(4 * k), 0x00ffffff);
            Assert.That(dwords.AsSpan(j, 4).IndexOf((byte)0), Is.GreaterThanOrEqualTo(0));
        }
        Assert.That(BinaryPrimitives.ReadUInt32LittleEndian("Leak"u8), Is.GreaterThanOrEqualTo(ImageScanPlan.MaxImageSize));
    }

    [TestCase("arm64")]
    [TestCase("16MB")]
    [TestCase("unaligned")]
    [TestCase("outside")]
    [TestCase("small")]
    [TestCase("no-header")]
    [TestCase("zero-in-pattern")]
    public void NotAppliedWhereTheProofDoesNotHold(string why)
    {
        uint size = why == "16MB" ? 0x1000000u : 0x40000u;
        var mem = Synthetic(size, why == "unaligned" ? 0x8002u : why == "outside" ? 0x3f000u : 0x8000u, why == "small" ? 0x18u : 0x6000u,
            machine: why == "arm64" ? (ushort)0xaa64 : (ushort)0x8664);
        if (why == "no-header") mem.Unmap(Base, 0x1000);
        var pattern = why == "zero-in-pattern" ? new byte[] { (byte)'L', 0, (byte)'a', (byte)'k' } : "Leak"u8.ToArray();
        var plan = ImageScanPlan.For(new TargetMemory(Target(mem)), new ModuleInfo("x.sys", Base, size), pattern);
        Assert.That(plan.Skipped, Is.Null);
        Assert.That(plan.Ranges, Is.EqualTo(new[] { (Base, (ulong)size) }));
    }
}
