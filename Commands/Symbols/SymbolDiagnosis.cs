using NtSleuth.Commands.Output;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Symbols;

/// <summary>
/// Says why a symbol or type the command needs is missing: the symbols themselves (wrong or absent PDB), or the
/// target's memory (the loaded-module list or the module's image unreadable or damaged, so the debugger cannot match
/// any symbols to it). Telling a user with a damaged dump to run .symfix sends them the wrong way (issue 20: a corrupted
/// module list gave "symbol nt!PoolTrackTable not found ... Run .symfix").
/// </summary>
public static class SymbolDiagnosis
{
    /// <summary>The message for <paramref name="ex"/> on <paramref name="target"/>; never throws.</summary>
    public static string Explain(ITarget target, MissingSymbolException ex)
    {
        try { return MemoryCause(target, ex) ?? ex.Message; }
        catch { return ex.Message; }
    }

    /// <summary>
    /// Why a global of <paramref name="module"/> (e.g. nt!PoolTrackTable, in the image's data) is not readable at the
    /// address the symbols give: the image is not where the module list says (a damaged list entry moves every symbol),
    /// or the page is simply absent from the dump. Never throws.
    /// </summary>
    public static string UnreadableGlobal(ITarget target, string symbol, ulong address)
    {
        string plain = $"{symbol} at {Fmt.Addr(address)} is not readable: the page is not in the dump (paged out, or a dump type without it)";
        try
        {
            int bang = symbol.IndexOf('!');
            string module = bang > 0 ? symbol[..bang] : "nt";
            var m = target.GetModules().FirstOrDefault(x => Names(x.Name, module));
            if (m is null) return plain;
            Span<byte> mz = stackalloc byte[2];
            bool image = target.ReadVirtual(m.Base, mz) == 2 && mz[0] == (byte)'M' && mz[1] == (byte)'Z';
            if (image) return plain;
            return $"{symbol} at {Fmt.Addr(address)} is not readable, and no image is readable at {Fmt.Clean(m.Name)}'s base {Fmt.Addr(m.Base)} either: " +
                   "the module list's entry for the module (base, size) is damaged or its pages are missing, and every symbol address " +
                   "computed from it is wrong. The memory is at fault, not the symbol path (compare lm with the module's real base).";
        }
        catch { return plain; }
    }

    private static string? MemoryCause(ITarget target, MissingSymbolException ex)
    {
        string module = ex.Module;
        var modules = target.GetModules();
        var m = modules.FirstOrDefault(x => Names(x.Name, module));
        bool kernel = target.Info.Kind == TargetKind.Kernel;
        if (m is null)
        {
            if (target.Symbols.HasSymbols(module)) return null;
            string list = kernel ? "the kernel's loaded-module list (nt!PsLoadedModuleList)" : "the process's module list (PEB loader data)";
            if (modules.Count == 0)
                return $"{ex.What} cannot be resolved: the debugger lists no modules at all, so no symbols can be matched. " +
                       $"{Capital(list)} is unreadable or damaged in this {(target.Info.IsDump ? "dump" : "target")}: the memory is at fault, not the symbol path " +
                       "(check with lm and, for a kernel target, dq nt!PsLoadedModuleList L2; .reload alone will not help).";
            if (module == "nt" && kernel)
                return $"{ex.What} cannot be resolved: the debugger's module list has no kernel image (nt) among its {modules.Count} module(s) " +
                       $"({string.Join(", ", modules.Take(5).Select(x => Fmt.Clean(x.Name)))}{(modules.Count > 5 ? ", ..." : "")}). {Capital(list)} is unreadable or damaged in this " +
                       $"{(target.Info.IsDump ? "dump" : "target")}: the memory is at fault, not the symbol path (check with lm and dq nt!PsLoadedModuleList L2).";
            return $"{ex.What} cannot be resolved: '{Fmt.Clean(module)}' is not in the debugger's list of {modules.Count} loaded module(s): the module is not loaded, " +
                   $"or {list} is damaged (check with lm m {Fmt.Clean(module)}*). Symbols cannot help until the module is listed.";
        }
        if (target.Symbols.HasSymbols(module)) return null; // loaded symbols without the name: wrong/public-only symbols (the exception says so)
        // User-mode dumps carry each module's identity (timestamp, size, CodeView record) in their module list: the
        // symbols are the cause there, whatever the memory holds.
        if (!kernel) return null;
        // Listed without symbols. With the image header readable the symbols are the cause (the exception's advice).
        // Without it the debugger has nothing to identify the PDB by (kernel dumps: it reads the image's debug
        // record from memory), so the memory is the cause: say that first.
        Span<byte> mz = stackalloc byte[2];
        int n = target.ReadVirtual(m.Base, mz);
        string name = Fmt.Clean(m.Name), at = Fmt.Addr(m.Base);
        string remedy = $"The memory is at fault, not the symbol path: with the matching image file, set .exepath to its folder and .reload /f {name}={at} to load the symbols without it.";
        if (n < 2)
            return $"{ex.What} cannot be resolved: {name} has no symbols because its image header at {at} is not readable in the target " +
                   $"(paged out or not in the dump), and the debugger identifies the module's symbols from it. {remedy}";
        if (mz[0] != (byte)'M' || mz[1] != (byte)'Z')
            return $"{ex.What} cannot be resolved: {name} has no symbols because its image header at {at} is damaged (no 'MZ': 0x{mz[0]:x2}{mz[1]:x2}), " +
                   $"and the debugger identifies the module's symbols from it. {remedy}";
        return null;
    }

    /// <summary>The engine names the kernel nt (ntoskrnl, ntkrnlmp, ... images); other modules by their base name.</summary>
    private static bool Names(string listed, string wanted)
    {
        if (listed.Equals(wanted, StringComparison.OrdinalIgnoreCase)) return true;
        string baseName = Path.GetFileNameWithoutExtension(listed);
        if (baseName.Equals(wanted, StringComparison.OrdinalIgnoreCase)) return true;
        return wanted.Equals("nt", StringComparison.OrdinalIgnoreCase) && baseName.StartsWith("ntk", StringComparison.OrdinalIgnoreCase) | baseName.StartsWith("ntos", StringComparison.OrdinalIgnoreCase);
    }

    private static string Capital(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];
}
