using System.Buffers.Binary;
using System.Text;

namespace NtSleuth.Lab.Forge;

/// <summary>
/// The name hash tables of a PDB's public (PSI) and global (GSI) symbol streams, as the MSF 7.00 format keeps them:
/// a GSI hash header (signature 0xFFFFFFFF, version 0xF12F091A, size of the hash records, size of the buckets), one
/// 8-byte record per symbol (offset + 1 into the symbol record stream, reference count), a bitmap of the 4,096 + 1
/// buckets that hold records, and per such bucket the index of its first record times 12 (the size of a hash record
/// in memory in the 32-bit reference implementation). A symbol belongs in bucket hashStringV1(name) % 4096.
///
/// Why the forge needs it: lld-link 14 hashes a public's name past its end when the name is not followed by a NUL in
/// the linker's buffer (fixed in LLVM by llvm/llvm-project#190133, April 2026) and puts such publics in the wrong
/// bucket: 111 of the 39,833 publics of the forged 19041 ntkrnlmp.pdb (all 8-character names such as strcpy_s,
/// PfTStart), 3 of ndis.pdb's 318. Hashed lookups (the data model's FindSymbolByName, <c>dx &amp;nt!strcpy_s</c>) then
/// miss them ("Unable to bind name"), which Microsoft's PDBs never do. <see cref="Rehash"/> puts every record into its
/// bucket (records within a bucket ordered as LLVM orders them for the reference reader: shorter names first, then
/// case-insensitive ASCII order) and resizes the stream in place (its free tail, or a block appended to the file).
/// </summary>
public static class PdbSymbolHash
{
    public const int Buckets = 4096;
    private const uint HashSignature = 0xFFFFFFFF, HashVersion = 0xF12F091A;
    private const int PublicsHeaderSize = 28;

    /// <summary>The hash of the reference implementation (LHashPbCb, "hashStringV1"): XOR of little-endian dwords, then
    /// of the trailing word and byte, case-folded by OR 0x20202020, then mixed.</summary>
    public static uint HashV1(ReadOnlySpan<byte> name)
    {
        uint r = 0;
        int n = name.Length, i = 0;
        for (; i + 4 <= n; i += 4) r ^= BinaryPrimitives.ReadUInt32LittleEndian(name[i..]);
        if (n - i >= 2) { r ^= BinaryPrimitives.ReadUInt16LittleEndian(name[i..]); i += 2; }
        if (n - i == 1) r ^= name[i];
        r |= 0x20202020;
        r ^= r >> 11;
        return r ^ (r >> 16);
    }

    public sealed record Table(string Stream, int Records, int NonEmptyBuckets, int Misplaced, IReadOnlyList<string> MisplacedNames);

    /// <summary>Reads both tables: records, buckets in use, records in a bucket their name does not hash to.</summary>
    public static IReadOnlyList<Table> Check(byte[] pdb)
    {
        var msf = new Msf(pdb);
        var (gsi, psi, symrec) = msf.SymbolStreams();
        var sym = msf.Read(symrec);
        var r = new List<Table>();
        foreach (var (name, stream, at) in new[] { ("publics", psi, PublicsHeaderSize), ("globals", gsi, 0) })
        {
            if (stream < 0) continue;
            var h = ParseHash(msf.Read(stream), at);
            var bad = new List<string>();
            foreach (var (bucket, recs) in h.ByBucket)
                foreach (var (off, _) in recs)
                {
                    var nm = SymbolName(sym, off - 1);
                    if (HashV1(nm) % Buckets != bucket) bad.Add(Encoding.UTF8.GetString(nm));
                }
            r.Add(new Table(name, h.Records.Count, h.ByBucket.Count, bad.Count, bad));
        }
        return r;
    }

    /// <summary>Puts every public and global record into the bucket its name hashes to; returns the fixed file (the
    /// same array when nothing was misplaced) and how many records moved.</summary>
    public static byte[] Rehash(byte[] pdb, out int moved)
    {
        moved = 0;
        var msf = new Msf(pdb);
        var (gsi, psi, symrec) = msf.SymbolStreams();
        var sym = msf.Read(symrec);
        foreach (var (stream, at) in new[] { (psi, PublicsHeaderSize), (gsi, 0) })
        {
            if (stream < 0) continue;
            var data = msf.Read(stream);
            var h = ParseHash(data, at);
            int misplaced = 0;
            try
            {
                foreach (var (bucket, recs) in h.ByBucket)
                    foreach (var (off, _) in recs)
                        if (HashV1(SymbolName(sym, off - 1)) % Buckets != bucket) misplaced++;
            }
            catch (UnknownRecordException) { continue; } // left as linked; Check reports it
            if (misplaced == 0) continue;
            moved += misplaced;
            var rebuilt = BuildHash(h.Records, sym);
            var output = new MemoryStream();
            if (at == PublicsHeaderSize)
            {
                var header = data.AsSpan(0, PublicsHeaderSize).ToArray();
                BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)rebuilt.Length); // cbSymHash
                output.Write(header);
            }
            output.Write(rebuilt);
            output.Write(data, h.End, data.Length - h.End); // publics: address map, thunk map, section map
            msf.Replace(stream, output.ToArray());
        }
        return moved == 0 ? pdb : msf.File();
    }

    private sealed record Hash(List<(int Off, int CRef)> Records, List<(int Bucket, List<(int Off, int CRef)> Recs)> ByBucket, int End);

    private static Hash ParseHash(byte[] s, int at)
    {
        if (s.Length < at + 16) throw new ForgeException("symbol hash stream too short");
        uint sig = BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(at)), ver = BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(at + 4));
        int hrSize = BinaryPrimitives.ReadInt32LittleEndian(s.AsSpan(at + 8)), bucketSize = BinaryPrimitives.ReadInt32LittleEndian(s.AsSpan(at + 12));
        if (sig != HashSignature || ver != HashVersion) throw new ForgeException($"unknown GSI hash header {sig:x8}/{ver:x8}");
        int p = at + 16;
        var records = new List<(int, int)>(hrSize / 8);
        for (int i = 0; i < hrSize / 8; i++)
            records.Add((BinaryPrimitives.ReadInt32LittleEndian(s.AsSpan(p + 8 * i)), BinaryPrimitives.ReadInt32LittleEndian(s.AsSpan(p + 8 * i + 4))));
        p += hrSize;
        int words = (Buckets + 1 + 31) / 32;
        var starts = new List<(int Bucket, int First)>();
        int q = p + 4 * words;
        for (int b = 0; b <= Buckets; b++)
        {
            uint w = BinaryPrimitives.ReadUInt32LittleEndian(s.AsSpan(p + 4 * (b / 32)));
            if (((w >> (b % 32)) & 1) == 0) continue;
            starts.Add((b, BinaryPrimitives.ReadInt32LittleEndian(s.AsSpan(q)) / 12));
            q += 4;
        }
        if (q != at + 16 + hrSize + bucketSize) throw new ForgeException("GSI hash bucket size does not match its bitmap");
        var byBucket = new List<(int, List<(int, int)>)>();
        for (int j = 0; j < starts.Count; j++)
        {
            int end = j + 1 < starts.Count ? starts[j + 1].First : records.Count;
            byBucket.Add((starts[j].Bucket, records.GetRange(starts[j].First, end - starts[j].First)));
        }
        return new Hash(records, byBucket, q);
    }

    private static byte[] BuildHash(List<(int Off, int CRef)> records, byte[] sym)
    {
        var buckets = new List<(int Off, int CRef, byte[] Name)>[Buckets];
        foreach (var (off, cref) in records)
        {
            var nm = SymbolName(sym, off - 1).ToArray();
            int b = (int)(HashV1(nm) % Buckets);
            (buckets[b] ??= []).Add((off, cref, nm));
        }
        var ordered = new List<(int Off, int CRef)>(records.Count);
        var bitmap = new uint[(Buckets + 1 + 31) / 32];
        var offsets = new List<int>();
        for (int b = 0; b < Buckets; b++)
        {
            if (buckets[b] is not { } list) continue;
            list.Sort((x, y) => NameOrder(x.Name, y.Name));
            bitmap[b / 32] |= 1u << (b % 32);
            offsets.Add(ordered.Count * 12);
            ordered.AddRange(list.Select(x => (x.Off, x.CRef)));
        }
        var o = new byte[16 + 8 * ordered.Count + 4 * bitmap.Length + 4 * offsets.Count];
        BinaryPrimitives.WriteUInt32LittleEndian(o, HashSignature);
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(4), HashVersion);
        BinaryPrimitives.WriteInt32LittleEndian(o.AsSpan(8), 8 * ordered.Count);
        BinaryPrimitives.WriteInt32LittleEndian(o.AsSpan(12), 4 * bitmap.Length + 4 * offsets.Count);
        int p = 16;
        foreach (var (off, cref) in ordered) { BinaryPrimitives.WriteInt32LittleEndian(o.AsSpan(p), off); BinaryPrimitives.WriteInt32LittleEndian(o.AsSpan(p + 4), cref); p += 8; }
        foreach (var w in bitmap) { BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(p), w); p += 4; }
        foreach (var x in offsets) { BinaryPrimitives.WriteInt32LittleEndian(o.AsSpan(p), x); p += 4; }
        return o;
    }

    /// <summary>Shorter names first; same length: case-insensitive for ASCII names, byte order otherwise.</summary>
    private static int NameOrder(byte[] a, byte[] b)
    {
        if (a.Length != b.Length) return a.Length.CompareTo(b.Length);
        bool ascii = a.All(c => c < 0x80) && b.All(c => c < 0x80);
        for (int i = 0; i < a.Length; i++)
        {
            int x = a[i], y = b[i];
            if (ascii) { if (x is >= 'A' and <= 'Z') x += 32; if (y is >= 'A' and <= 'Z') y += 32; }
            if (x != y) return x.CompareTo(y);
        }
        return 0;
    }

    /// <summary>The name of the symbol record at <paramref name="at"/> (S_PUB32, S_UDT, S_GDATA32/S_LDATA32, S_CONSTANT,
    /// S_PROCREF/S_LPROCREF/S_DATAREF...).</summary>
    internal static ReadOnlySpan<byte> SymbolName(byte[] sym, int at)
    {
        if (at < 0 || at + 4 > sym.Length) throw new ForgeException($"symbol record offset {at} outside the record stream");
        int len = BinaryPrimitives.ReadUInt16LittleEndian(sym.AsSpan(at)), kind = BinaryPrimitives.ReadUInt16LittleEndian(sym.AsSpan(at + 2));
        int nameAt = kind switch
        {
            0x110E => 14,                  // S_PUB32: flags, offset, segment
            0x1108 => 8,                   // S_UDT: type index
            0x110C or 0x110D => 14,        // S_LDATA32 / S_GDATA32: type, offset, segment
            0x1125 or 0x1127 or 0x1126 => 14, // S_PROCREF / S_LPROCREF / S_DATAREF: sum name, offset, module
            0x1107 => ConstantNameOffset(sym, at), // S_CONSTANT: type, numeric leaf
            _ => -1,
        };
        if (nameAt < 0) throw new UnknownRecordException(kind);
        var rec = sym.AsSpan(at + 2, len);
        var rest = rec[Math.Min(nameAt - 2, rec.Length)..];
        int nul = rest.IndexOf((byte)0);
        return nul >= 0 ? rest[..nul] : rest;
    }

    /// <summary>A record kind whose name position we do not know: that table is reported, not rewritten.</summary>
    internal sealed class UnknownRecordException(int kind) : ForgeException($"symbol record kind 0x{kind:x4} in a hash table: name position unknown");

    private static int ConstantNameOffset(byte[] sym, int at)
    {
        ushort leaf = BinaryPrimitives.ReadUInt16LittleEndian(sym.AsSpan(at + 8));
        int size = leaf < 0x8000 ? 0 : leaf switch
        {
            0x8000 or 0x8001 => 1, 0x8002 or 0x8003 => 2, 0x8004 or 0x8005 => 4, 0x8009 or 0x800A => 8,
            _ => throw new ForgeException($"S_CONSTANT numeric leaf 0x{leaf:x4}"),
        };
        return 10 + size;
    }

    /// <summary>MSF 7.00 streams, with in-place replacement of one stream (its blocks reused, more appended as needed).</summary>
    private sealed class Msf
    {
        private byte[] _f;
        private readonly int _bs;
        private readonly List<List<uint>> _blocks = [];
        private readonly List<uint> _sizes = [];

        public Msf(byte[] f)
        {
            _f = f;
            if (f.Length < 56 || !Encoding.ASCII.GetString(f, 0, 24).StartsWith("Microsoft C/C++ MSF 7.00", StringComparison.Ordinal))
                throw new ForgeException("not an MSF 7.00 PDB");
            _bs = BinaryPrimitives.ReadInt32LittleEndian(f.AsSpan(32));
            var dir = DirectoryBytes();
            int n = BinaryPrimitives.ReadInt32LittleEndian(dir);
            int p = 4 + 4 * n;
            for (int i = 0; i < n; i++)
            {
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(dir.AsSpan(4 + 4 * i));
                int count = size == uint.MaxValue ? 0 : (int)((size + _bs - 1) / _bs);
                var list = new List<uint>(count);
                for (int k = 0; k < count; k++) { list.Add(BinaryPrimitives.ReadUInt32LittleEndian(dir.AsSpan(p))); p += 4; }
                _sizes.Add(size);
                _blocks.Add(list);
            }
        }

        private int DirBytes => BinaryPrimitives.ReadInt32LittleEndian(_f.AsSpan(44));
        private int BlockMapAddr => BinaryPrimitives.ReadInt32LittleEndian(_f.AsSpan(52));
        private int DirBlockCount(int bytes) => (bytes + _bs - 1) / _bs;

        private byte[] DirectoryBytes()
        {
            int count = DirBlockCount(DirBytes);
            var dir = new byte[count * _bs];
            for (int i = 0; i < count; i++)
                Array.Copy(_f, (long)BinaryPrimitives.ReadUInt32LittleEndian(_f.AsSpan(BlockMapAddr * _bs + 4 * i)) * _bs, dir, i * _bs, _bs);
            return dir;
        }

        public (int Gsi, int Psi, int SymRec) SymbolStreams()
        {
            var dbi = Read(3);
            if (dbi.Length < 22) throw new ForgeException("PDB without a DBI stream");
            static int Idx(ushort v) => v == 0xFFFF ? -1 : v;
            return (Idx(BinaryPrimitives.ReadUInt16LittleEndian(dbi.AsSpan(12))), Idx(BinaryPrimitives.ReadUInt16LittleEndian(dbi.AsSpan(16))),
                Idx(BinaryPrimitives.ReadUInt16LittleEndian(dbi.AsSpan(20))));
        }

        public byte[] Read(int stream)
        {
            if (stream < 0 || stream >= _sizes.Count || _sizes[stream] == uint.MaxValue) return [];
            var r = new byte[_sizes[stream]];
            for (int i = 0; i < _blocks[stream].Count; i++)
            {
                int n = Math.Min(_bs, r.Length - i * _bs);
                Array.Copy(_f, (long)_blocks[stream][i] * _bs, r, i * _bs, n);
            }
            return r;
        }

        public byte[] File() => _f;

        /// <summary>A block index past the end of the file that is not a free-page-map block (1 and 2 of every interval).</summary>
        private uint AppendBlock()
        {
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(_f.AsSpan(40));
            while (n % (uint)_bs is 1 or 2) n++;
            Array.Resize(ref _f, (int)((n + 1) * (long)_bs));
            BinaryPrimitives.WriteUInt32LittleEndian(_f.AsSpan(40), n + 1);
            // Mark it used in the active free page map (bit set = free). FPM block k of the map sits at k * bs + fpm.
            uint fpm = BinaryPrimitives.ReadUInt32LittleEndian(_f.AsSpan(36));
            long bit = n, fpmBlock = bit / (8L * _bs);
            long at = (fpmBlock * _bs + fpm) * _bs + bit % (8L * _bs) / 8;
            if (at < _f.Length) _f[at] &= (byte)~(1 << (int)(bit % 8));
            return n;
        }

        public void Replace(int stream, byte[] data)
        {
            var list = _blocks[stream];
            int need = (data.Length + _bs - 1) / _bs;
            while (list.Count < need) list.Add(AppendBlock());
            // Blocks no longer needed stay allocated (a few bytes shorter at most): no free-page-map bookkeeping.
            while (list.Count > need) list.RemoveAt(list.Count - 1);
            for (int i = 0; i < need; i++)
            {
                int n = Math.Min(_bs, data.Length - i * _bs);
                Array.Clear(_f, (int)(list[i] * (long)_bs), _bs);
                Array.Copy(data, i * _bs, _f, list[i] * (long)_bs, n);
            }
            _sizes[stream] = (uint)data.Length;
            WriteDirectory();
        }

        private void WriteDirectory()
        {
            var d = new MemoryStream();
            var w = new byte[4];
            void U32(uint v) { BinaryPrimitives.WriteUInt32LittleEndian(w, v); d.Write(w); }
            U32((uint)_sizes.Count);
            foreach (var s in _sizes) U32(s);
            foreach (var l in _blocks) foreach (var b in l) U32(b);
            var dir = d.ToArray();
            int have = DirBlockCount(DirBytes), need = DirBlockCount(dir.Length);
            var dirBlocks = new List<uint>();
            for (int i = 0; i < have; i++) dirBlocks.Add(BinaryPrimitives.ReadUInt32LittleEndian(_f.AsSpan(BlockMapAddr * _bs + 4 * i)));
            while (dirBlocks.Count < need) dirBlocks.Add(AppendBlock());
            if (4 * dirBlocks.Count > _bs) throw new ForgeException("PDB directory would outgrow its block map");
            for (int i = 0; i < dirBlocks.Count; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(_f.AsSpan(BlockMapAddr * _bs + 4 * i), dirBlocks[i]);
                int n = Math.Max(0, Math.Min(_bs, dir.Length - i * _bs));
                Array.Clear(_f, (int)(dirBlocks[i] * (long)_bs), _bs);
                if (n > 0) Array.Copy(dir, i * _bs, _f, dirBlocks[i] * (long)_bs, n);
            }
            BinaryPrimitives.WriteInt32LittleEndian(_f.AsSpan(44), dir.Length);
        }
    }
}
