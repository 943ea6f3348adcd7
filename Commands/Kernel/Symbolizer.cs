using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// Code addresses as the debugger shows them: the loaded module that contains an address (short name as
/// <see cref="KernelModules.ShortName"/> spells it) and <c>module!routine+0x..</c> from the engine's symbols (like
/// <c>ln</c>). The module list is read once per instance; one instance per command run.
/// </summary>
public sealed class Symbolizer(ITarget target)
{
    private IReadOnlyList<ModuleInfo>? _modules;

    /// <summary>The loaded modules (read once; empty when the engine cannot list them).</summary>
    public IReadOnlyList<ModuleInfo> Modules
    {
        get
        {
            if (_modules is null)
            {
                try { _modules = target.GetModules(); } catch (Exception ex) { _modules = []; ModulesError = ex.Message; }
            }
            return _modules;
        }
    }

    /// <summary>Why the engine could not list the modules (null when it could, or before <see cref="Modules"/> was read).</summary>
    public string? ModulesError { get; private set; }

    /// <summary>The loaded module containing <paramref name="address"/>, or null.</summary>
    public ModuleInfo? ModuleOf(ulong address)
    {
        foreach (var m in Modules) if (m.Contains(address)) return m;
        return null;
    }

    /// <summary>The engine's nearest symbol at or below <paramref name="address"/> and the displacement; null when none (never throws).</summary>
    public (string Name, ulong Displacement)? Nearest(ulong address)
    {
        try { return target.Symbols.GetNameByAddress(address, out var d) is { } n ? (n, d) : null; }
        catch (Exception) { return null; }
    }

    /// <summary><c>name</c> or <c>name+0x..</c>, as the debugger prints a symbol with a displacement.</summary>
    public static string Format(string name, ulong displacement) => displacement == 0 ? name : $"{name}+0x{displacement:x}";

    /// <summary>
    /// <c>module!routine+0x..</c> for an address inside a loaded module whose symbol belongs to that module and lies
    /// within it; null otherwise (no symbols: the caller shows <see cref="ModuleOffset"/>).
    /// </summary>
    public string? Routine(ulong address) => ModuleOf(address) is { } m ? Routine(address, m) : null;

    /// <summary><see cref="Routine(ulong)"/> when the containing module <paramref name="m"/> is already known.</summary>
    public string? Routine(ulong address, ModuleInfo m)
    {
        if (Nearest(address) is not { } hit) return null;
        var (n, d) = hit;
        return n.StartsWith(KernelModules.ShortName(m.Name) + "!", StringComparison.OrdinalIgnoreCase) && d < m.Size ? Format(n, d) : null;
    }

    /// <summary><c>module+0x..</c> of an address inside a loaded module; null outside every module.</summary>
    public string? ModuleOffset(ulong address) => ModuleOf(address) is { } m ? $"{KernelModules.ShortName(m.Name)}+0x{address - m.Base:x}" : null;

    /// <summary>The best name of a code address: <c>module!routine+0x..</c>, else <c>module+0x..</c>, else null.</summary>
    public string? Describe(ulong address) => Routine(address) ?? ModuleOffset(address);

    /// <summary>Farthest a symbol may lie below an address outside every loaded module for <see cref="DescribeAny"/> to use it.</summary>
    public const ulong MaxOutsideDisplacement = 0x100000;

    /// <summary>
    /// <see cref="Describe"/>, and for an address outside every loaded module (or when the engine lists none) the
    /// engine's nearest symbol within <see cref="MaxOutsideDisplacement"/> (<c>name+0x..</c>); null when neither.
    /// </summary>
    public string? DescribeAny(ulong address)
    {
        if (ModuleOf(address) is not null) return Describe(address);
        return Nearest(address) is { } hit && hit.Displacement <= MaxOutsideDisplacement ? Format(hit.Name, hit.Displacement) : null;
    }
}
