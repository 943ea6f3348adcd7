using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary>Counts and mismatches of one PDB-against-ISF comparison.</summary>
public sealed record PdbVerification
{
    public int Types { get; init; }
    public int Enums { get; init; }
    public int Fields { get; init; }
    public int Bitfields { get; init; }
    public int StructPointers { get; init; }
    public int Publics { get; init; }
    public IReadOnlyList<string> Mismatches { get; init; } = [];
    public override string ToString() =>
        $"{Types} types, {Enums} enums, {Fields} fields ({Bitfields} bitfields, {StructPointers} struct pointers), {Publics} publics: {Mismatches.Count} mismatches";
}

/// <summary>
/// Checks a forged PDB against the ISF it came from, reading the PDB back with <c>llvm-pdbutil dump -types -publics</c>
/// (an independent reader: LLVM's, not ours): every type's size, every field's offset, every bitfield's position and
/// length, every pointer's target type (struct/union/enum/function/simple), array sizes, enum constants, and every
/// public's RVA (section:offset translated through the image's section table).
/// </summary>
public static class PdbVerifier
{
    private sealed class Rec
    {
        public string Kind = "";
        public string? Name;
        public uint FieldList;
        public bool Forward;
        public long Size = -1;
        public uint Referent;
        public uint BitType;
        public int BitOffset = -1, BitCount = -1;
        public long ArraySize = -1;
        public uint Element;
        public readonly List<(string Name, uint Type, long Offset)> Members = [];
        public readonly List<(string Name, long Value)> Enumerators = [];
        public readonly List<uint> Continuations = [];
    }

    private static readonly Regex Header = new(@"^\s+0x([0-9A-F]+) \| (LF_\w+) \[size = \d+\](?: `(.*)`)?\s*$", RegexOptions.Compiled);
    private static readonly Regex FieldListRx = new(@"field list: (?:0x([0-9A-F]+)|<no type>)", RegexOptions.Compiled);
    private static readonly Regex OptionsRx = new(@"options: (.*), sizeof (\d+)", RegexOptions.Compiled);
    private static readonly Regex ReferentRx = new(@"referent = 0x([0-9A-F]+)", RegexOptions.Compiled);
    private static readonly Regex BitRx = new(@"type = 0x([0-9A-F]+).*, bit offset = (\d+), # bits = (\d+)", RegexOptions.Compiled);
    private static readonly Regex ArrayRx = new(@"size: (\d+), index type: .*, element type: 0x([0-9A-F]+)", RegexOptions.Compiled);
    private static readonly Regex MemberRx = new(@"- LF_MEMBER \[name = `(.*)`, Type = 0x([0-9A-F]+)(?: \(.*\))?, offset = (\d+), attrs", RegexOptions.Compiled);
    private static readonly Regex EnumerateRx = new(@"- LF_ENUMERATE \[(.*) = (-?\d+)\]", RegexOptions.Compiled);
    private static readonly Regex IndexRx = new(@"- LF_INDEX \[continuation = 0x([0-9A-F]+)\]", RegexOptions.Compiled);
    private static readonly Regex PubRx = new(@"S_PUB32 \[size = \d+\] `(.*)`\s*$", RegexOptions.Compiled);
    private static readonly Regex AddrRx = new(@"addr = (\d+):(\d+)", RegexOptions.Compiled);

    /// <summary>Runs llvm-pdbutil on the forged PDB and compares it with the spec's ISF types and publics.</summary>
    public static PdbVerification Verify(string pdbUtil, ForgeResult forged, ForgeModuleSpec spec)
    {
        var psi = new ProcessStartInfo(pdbUtil) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "dump", "-types", "-publics", forged.PdbPath }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new ForgeException($"cannot start {pdbUtil}");
        var errTask = p.StandardError.ReadToEndAsync();
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new ForgeException($"llvm-pdbutil failed (exit {p.ExitCode}): {errTask.Result.Trim()}");
        var sections = PeImagePatcher.Read(File.ReadAllBytes(forged.ImagePath)).Sections;
        return Compare(text, sections.Select(s => s.Rva).ToList(), spec);
    }

    /// <summary>Compares a pdbutil text dump with the spec (separate so it can be tested on a canned dump).</summary>
    public static PdbVerification Compare(string dump, IReadOnlyList<uint> sectionRvas, ForgeModuleSpec spec)
    {
        var recs = new Dictionary<uint, Rec>();
        var pubs = new Dictionary<string, ulong>(StringComparer.Ordinal);
        Rec? cur = null;
        string? pendingPub = null;
        foreach (var line in dump.Split('\n'))
        {
            Match m;
            if ((m = Header.Match(line)).Success)
            {
                cur = new Rec { Kind = m.Groups[2].Value, Name = m.Groups[3].Success ? m.Groups[3].Value : null };
                recs[uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber)] = cur;
                continue;
            }
            if ((m = PubRx.Match(line)).Success) { pendingPub = m.Groups[1].Value; cur = null; continue; }
            if (pendingPub is not null && (m = AddrRx.Match(line)).Success)
            {
                int sec = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                ulong off = ulong.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
                pubs[pendingPub] = sec >= 1 && sec <= sectionRvas.Count ? sectionRvas[sec - 1] + off : ulong.MaxValue;
                pendingPub = null;
                continue;
            }
            if (cur is null) continue;
            if ((m = MemberRx.Match(line)).Success)
                cur.Members.Add((m.Groups[1].Value, uint.Parse(m.Groups[2].Value, NumberStyles.HexNumber), long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)));
            else if ((m = EnumerateRx.Match(line)).Success)
                cur.Enumerators.Add((m.Groups[1].Value, long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)));
            else if ((m = IndexRx.Match(line)).Success)
                cur.Continuations.Add(uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber));
            else if ((m = FieldListRx.Match(line)).Success)
                cur.FieldList = m.Groups[1].Success ? uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber) : 0;
            if ((m = OptionsRx.Match(line)).Success)
            {
                cur.Forward = m.Groups[1].Value.Contains("forward ref", StringComparison.Ordinal);
                cur.Size = long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            }
            else if ((m = ReferentRx.Match(line)).Success) cur.Referent = uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber);
            else if ((m = BitRx.Match(line)).Success)
            {
                cur.BitType = uint.Parse(m.Groups[1].Value, NumberStyles.HexNumber);
                cur.BitOffset = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
                cur.BitCount = int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            }
            else if ((m = ArrayRx.Match(line)).Success)
            {
                cur.ArraySize = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                cur.Element = uint.Parse(m.Groups[2].Value, NumberStyles.HexNumber);
            }
        }
        return new Comparer(recs, pubs, spec).Run();
    }

    private sealed class Comparer(Dictionary<uint, Rec> recs, Dictionary<string, ulong> pubs, ForgeModuleSpec spec)
    {
        private readonly List<string> _bad = [];
        private int _fields, _bits, _ptrs;

        private void Bad(string s) { if (_bad.Count < 500) _bad.Add(s); }

        public PdbVerification Run()
        {
            var byName = new Dictionary<string, Rec>(StringComparer.Ordinal);
            foreach (var r in recs.Values)
                if (r.Name is not null && !r.Forward && r.Kind is "LF_STRUCTURE" or "LF_UNION" or "LF_CLASS" or "LF_ENUM") byName.TryAdd(r.Kind[3..] + ":" + r.Name, r);
            int types = 0, enums = 0;
            var isf = spec.Types;
            if (isf is not null)
            {
                foreach (var t in isf.UserTypes.Values)
                {
                    if (CppTypeEmitter.IsDeclarationOnly(t)) continue; // the forge declares it only (a PDB forward reference)
                    types++;
                    string kind = t.Kind == "union" ? "UNION" : "STRUCTURE";
                    string name = CppTypeEmitter.CppIdentifier(t.Name);
                    if (!byName.TryGetValue(kind + ":" + name, out var r)) { Bad($"{t.Name}: no {kind} definition in the PDB"); continue; }
                    if (r.Size != t.Size) Bad($"{t.Name}: size {r.Size} in the PDB, {t.Size} in the ISF");
                    var members = new Dictionary<string, (uint Type, long Offset)>(StringComparer.Ordinal);
                    foreach (var mm in FieldMembers(r.FieldList)) members.TryAdd(mm.Name, (mm.Type, mm.Offset));
                    foreach (var f in t.Fields)
                    {
                        _fields++;
                        if (!members.TryGetValue(f.Name, out var pm)) { Bad($"{t.Name}.{f.Name}: missing in the PDB"); continue; }
                        if (pm.Offset != f.Offset) Bad($"{t.Name}.{f.Name}: offset 0x{pm.Offset:x} in the PDB, 0x{f.Offset:x} in the ISF");
                        MatchType(isf, $"{t.Name}.{f.Name}", f.Type, pm.Type);
                    }
                    if (members.Count != t.Fields.Count)
                        Bad($"{t.Name}: {members.Count} members in the PDB, {t.Fields.Count} in the ISF (extra: {string.Join(", ", members.Keys.Except(t.Fields.Select(x => x.Name)).Take(5))})");
                }
                foreach (var e in isf.Enums.Values)
                {
                    enums++;
                    if (!byName.TryGetValue("ENUM:" + CppTypeEmitter.CppIdentifier(e.Name), out var r)) { Bad($"enum {e.Name}: not in the PDB"); continue; }
                    var vals = FieldEnumerators(r.FieldList).ToDictionary(x => x.Name, x => x.Value, StringComparer.Ordinal);
                    foreach (var (cn, cv) in e.Constants)
                        if (!vals.TryGetValue(cn, out var pv)) Bad($"enum {e.Name}.{cn}: missing in the PDB");
                        else if (Norm(pv, e.Size) != Norm(cv, e.Size)) Bad($"enum {e.Name}.{cn}: {pv} in the PDB, {cv} in the ISF");
                }
            }
            int publics = 0;
            foreach (var (n, rva) in spec.Publics)
            {
                if (rva < 0x1000) continue;
                publics++;
                if (!pubs.TryGetValue(n, out var prva)) Bad($"public {n}: not in the PDB");
                else if (prva != rva) Bad($"public {n}: RVA 0x{prva:x} in the PDB, 0x{rva:x} in the spec");
            }
            return new PdbVerification { Types = types, Enums = enums, Fields = _fields, Bitfields = _bits, StructPointers = _ptrs, Publics = publics, Mismatches = _bad };
        }

        private static long Norm(long v, int size) => size switch { 1 => (sbyte)v, 2 => (short)v, 4 => (int)v, _ => v };

        private IEnumerable<(string Name, uint Type, long Offset)> FieldMembers(uint fl)
        {
            var seen = new HashSet<uint>();
            while (fl != 0 && seen.Add(fl) && recs.TryGetValue(fl, out var r))
            {
                foreach (var m in r.Members) yield return m;
                fl = r.Continuations.Count > 0 ? r.Continuations[0] : 0;
            }
        }

        private IEnumerable<(string Name, long Value)> FieldEnumerators(uint fl)
        {
            var seen = new HashSet<uint>();
            while (fl != 0 && seen.Add(fl) && recs.TryGetValue(fl, out var r))
            {
                foreach (var m in r.Enumerators) yield return m;
                fl = r.Continuations.Count > 0 ? r.Continuations[0] : 0;
            }
        }

        /// <summary>Size in bytes of a CodeView simple type (no pointer mode), or -1.</summary>
        private static int SimpleSize(uint ti) => (ti & 0xff) switch
        {
            0x03 => 0,
            0x10 or 0x20 or 0x68 or 0x69 or 0x70 or 0x30 => 1,
            0x11 or 0x21 or 0x71 or 0x72 or 0x73 or 0x7a => 2,
            0x12 or 0x22 or 0x74 or 0x75 or 0x40 or 0x7b => 4,
            0x13 or 0x23 or 0x76 or 0x77 or 0x41 => 8,
            _ => -1,
        };

        private void MatchType(IsfDocument isf, string where, IsfTypeRef t, uint ti)
        {
            recs.TryGetValue(ti, out var r);
            switch (t.Kind)
            {
                case "bitfield":
                    _bits++;
                    if (r?.Kind != "LF_BITFIELD") { Bad($"{where}: not a bitfield in the PDB"); return; }
                    if (r.BitOffset != t.BitPosition || r.BitCount != t.BitLength)
                        Bad($"{where}: bits {r.BitOffset}:{r.BitCount} in the PDB, {t.BitPosition}:{t.BitLength} in the ISF");
                    MatchType(isf, where + " (bitfield type)", t.Subtype!, r.BitType);
                    return;
                case "pointer":
                    if (ti < 0x1000)
                    {
                        if ((ti & 0x0700) == 0 || t.Subtype!.Kind != "base") { Bad($"{where}: pointer expected, simple type 0x{ti:x4} in the PDB"); return; }
                        MatchType(isf, where + "*", t.Subtype, ti & 0xff);
                        return;
                    }
                    if (r?.Kind != "LF_POINTER") { Bad($"{where}: pointer expected, {r?.Kind ?? "nothing"} in the PDB"); return; }
                    if (t.Subtype!.Kind is "struct" or "union" or "class") _ptrs++;
                    MatchType(isf, where + "*", t.Subtype!, r.Referent);
                    return;
                case "array":
                    if (r?.Kind != "LF_ARRAY") { Bad($"{where}: array expected, {r?.Kind ?? "simple"} in the PDB"); return; }
                    if ((ulong)r.ArraySize != isf.SizeOf(t)) Bad($"{where}: array of {r.ArraySize} bytes in the PDB, {isf.SizeOf(t)} in the ISF");
                    MatchType(isf, where + "[]", t.Subtype!, r.Element);
                    return;
                case "struct": case "class": case "union":
                    {
                        string want = t.Kind == "union" ? "LF_UNION" : "LF_STRUCTURE";
                        string name = CppTypeEmitter.CppIdentifier(t.Name!);
                        if (r is null || (r.Kind != want && !(t.Kind == "class" && r.Kind == "LF_CLASS")) || r.Name != name)
                            Bad($"{where}: {t.Kind} {t.Name} expected, {r?.Kind ?? "simple"} {r?.Name} in the PDB");
                        return;
                    }
                case "enum":
                    if (t.Name is null || !isf.Enums.ContainsKey(t.Name)) return;
                    if (r?.Kind != "LF_ENUM" || r.Name != CppTypeEmitter.CppIdentifier(t.Name)) Bad($"{where}: enum {t.Name} expected, {r?.Kind ?? "simple"} {r?.Name} in the PDB");
                    return;
                case "function":
                    if (r?.Kind != "LF_PROCEDURE") Bad($"{where}: function expected, {r?.Kind ?? "simple"} in the PDB");
                    return;
                case "base":
                    {
                        int want = (int)isf.SizeOf(t);
                        if (ti >= 0x1000) { Bad($"{where}: base type {t.Name} expected, {r?.Kind} in the PDB"); return; }
                        if ((ti & 0x0700) != 0) { Bad($"{where}: base type {t.Name} expected, a pointer in the PDB"); return; }
                        int got = SimpleSize(ti);
                        if (got != want) Bad($"{where}: base type {t.Name} ({want} bytes) expected, simple type 0x{ti:x4} ({got} bytes) in the PDB");
                        return;
                    }
            }
        }
    }
}
