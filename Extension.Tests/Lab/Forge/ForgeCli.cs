using NtSleuth.Commands.Symbols.Isf;

namespace NtSleuth.Lab.Forge;

/// <summary><c>NtSleuth.Lab forge ISF.json[.xz] OUTDIR [--store]</c>: forges ntoskrnl.exe + its PDB for a kernel ISF.</summary>
public static class ForgeCli
{
    public static int Run(string[] args)
    {
        if (args.Length < 2) { Console.Error.WriteLine("usage: NtSleuth.Lab forge <isf.json[.xz]> <outdir> [--store] [--verify]"); return 2; }
        var tools = ForgeToolchain.Find(out var why);
        if (tools is null) { Console.Error.WriteLine(why); return 1; }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var isf = IsfDocument.Load(args[0]);
        var load = sw.Elapsed;
        var r = new SymbolForge(tools).Forge(ForgeModuleSpec.ForKernel(isf));
        if (args.Contains("--store")) r.CopyToSymbolStore(args[1]); else r.CopyToFlat(args[1]);
        Console.WriteLine($"{r.ImageName} + {r.PdbName} {r.PdbIdentity}: {r.TypeCount} types, {r.PublicCount} publics, " +
            $"pdb {new FileInfo(r.PdbPath).Length:N0} bytes, image {new FileInfo(r.ImagePath).Length:N0} bytes, isf load {load.TotalSeconds:F2} s, " +
            $"forge {r.Elapsed.TotalSeconds:F2} s{(r.FromCache ? " (cache)" : "")} -> {args[1]}");
        if (args.Contains("--verify"))
        {
            if (tools.PdbUtil is null) { Console.Error.WriteLine("llvm-pdbutil-14 not found"); return 1; }
            var vsw = System.Diagnostics.Stopwatch.StartNew();
            var v = PdbVerifier.Verify(tools.PdbUtil, r, ForgeModuleSpec.ForKernel(isf));
            Console.WriteLine($"verify ({vsw.Elapsed.TotalSeconds:F2} s): {v}");
            foreach (var m in v.Mismatches.Take(40)) Console.WriteLine("  " + m);
            return v.Mismatches.Count == 0 ? 0 : 1;
        }
        return 0;
    }
}
