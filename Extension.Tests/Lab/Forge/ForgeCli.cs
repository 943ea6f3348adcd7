using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary><c>NtSleuth.Lab forge ISF.json[.xz] OUTDIR [--store]</c>: forges ntoskrnl.exe + its PDB for a kernel ISF.</summary>
public static class ForgeCli
{
    public static int Run(string[] args)
    {
        if (args.Length < 2) { Console.Error.WriteLine("usage: NtSleuth.Lab forge <isf.json[.xz]> <outdir> [--store] [--verify] [--guid G --age N --timestamp HEX --sizeofimage HEX --checksum HEX]"); return 2; }
        var tools = ForgeToolchain.Find(out var why);
        if (tools is null) { Console.Error.WriteLine(why); return 1; }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var isf = IsfDocument.Load(args[0]);
        var load = sw.Elapsed;
        var spec = ForgeModuleSpec.ForKernel(isf);
        string? Opt(string name) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
        static uint Hex(string s) => Convert.ToUInt32(s.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? s[2..] : s, 16);
        var id = spec.Identity;
        if (Opt("--guid") is { } g) id = id with { PdbGuid = ForgeIdentity.ParseStoreGuid(g) };
        if (Opt("--age") is { } a) id = id with { Age = int.Parse(a, System.Globalization.CultureInfo.InvariantCulture) };
        if (Opt("--timestamp") is { } t) id = id with { TimeDateStamp = Hex(t) };
        if (Opt("--sizeofimage") is { } z) id = id with { SizeOfImage = Hex(z) };
        if (Opt("--checksum") is { } c) id = id with { CheckSum = Hex(c) };
        spec = spec with { Identity = id };
        var r = new SymbolForge(tools).Forge(spec);
        if (args.Contains("--store")) r.CopyToSymbolStore(args[1]); else r.CopyToFlat(args[1]);
        Console.WriteLine($"{r.ImageName} + {r.PdbName} {r.PdbIdentity}: {r.TypeCount} types, {r.PublicCount} publics, " +
            $"pdb {new FileInfo(r.PdbPath).Length:N0} bytes, image {new FileInfo(r.ImagePath).Length:N0} bytes, isf load {load.TotalSeconds:F2} s, " +
            $"forge {r.Elapsed.TotalSeconds:F2} s{(r.FromCache ? " (cache)" : "")} -> {args[1]}");
        if (args.Contains("--verify"))
        {
            if (tools.PdbUtil is null) { Console.Error.WriteLine("llvm-pdbutil-14 not found"); return 1; }
            var vsw = System.Diagnostics.Stopwatch.StartNew();
            var v = PdbVerifier.Verify(tools.PdbUtil, r, spec);
            Console.WriteLine($"verify ({vsw.Elapsed.TotalSeconds:F2} s): {v}");
            foreach (var m in v.Mismatches.Take(40)) Console.WriteLine("  " + m);
            return v.Mismatches.Count == 0 ? 0 : 1;
        }
        return 0;
    }
}
