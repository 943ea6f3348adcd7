using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel.Registry;

/// <summary>
/// Reads the registry from kernel memory: the loaded hives (nt!CmpHiveListHead -> _CMHIVE.HiveList), their cell maps
/// (_HHIVE.Storage[Stable|Volatile].Map -> _HMAP_DIRECTORY -> _HMAP_TABLE -> _HMAP_ENTRY -> block) and the cells
/// (key nodes, subkey index lists, value lists, values). Every structure is read by field name from the kernel's
/// symbols; walks are bounded and cycle-safe; what cannot be read gives null/partial results and a precise note in
/// <see cref="Notes"/>. On Windows 10 2004+ the bins live in the user address space of the "Registry" process
/// (nt!CmpRegistryProcess) and are read through <see cref="Target.ITarget.ReadProcessVirtual"/>.
/// One instance per command run: it shares the run's <see cref="KernelReader"/> (read cache and counters).
/// </summary>
public sealed class RegistryReader
{
    /// <summary>Most hives walked on nt!CmpHiveListHead (a real system has a few dozen).</summary>
    public const int MaxHives = 4096;
    public const string SystemHive = @"\REGISTRY\MACHINE\SYSTEM";

    private readonly HashSet<string> _noteSet = new(StringComparer.Ordinal);
    private bool _registryProcessResolved;
    private ulong? _registryProcess;

    public RegistryReader(KernelReader reader) => Kernel = reader;

    public KernelReader Kernel { get; }

    /// <summary>Precise notes: what could not be read (cell index, address) and why; no duplicates.</summary>
    public List<string> Notes { get; } = new();

    internal void Note(string text)
    {
        if (_noteSet.Add(text)) Notes.Add(text);
    }

    /// <summary>
    /// A type or symbol the registry needs was not answered (<paramref name="what"/>: "type nt!_T" or "symbol nt!X").
    /// While a Ctrl+Break is pending the engine fails every lookup, and it swallows some (GetInterrupt never reports
    /// them: then it answers the lookup when asked again): both propagate as the interrupt
    /// (<see cref="OperationCanceledException"/>), never as a missing type. Either way the command's symbol answers
    /// are not kept for the session (the next command asks again).
    /// </summary>
    internal void MissingSymbol(string what, string note)
    {
        try { Kernel.Target.DistrustSymbolAnswers(); } catch { }
        ThrowIfInterrupted(what);
        bool aborted;
        try { aborted = Kernel.Target.EngineHasItNow(what); } catch { aborted = false; }
        if (aborted) throw new OperationCanceledException($"interrupted by user (Ctrl+Break) while reading the registry: the engine aborted the lookup of {what}");
        Note(note);
    }

    /// <summary>Ctrl+Break: the registry read stops as an interrupt (its "not found" / "not readable" would be false).</summary>
    internal void ThrowIfInterrupted(string where)
    {
        if (Kernel.Memory.IsInterruptRequested)
            throw new OperationCanceledException($"interrupted by user (Ctrl+Break) while reading the registry ({where})");
    }

    // =====================================================================================
    // Hives
    // =====================================================================================

    /// <summary>Every hive on nt!CmpHiveListHead: its name (HiveRootPath, else the file name) and _CMHIVE address.</summary>
    public IReadOnlyList<(string Name, ulong CmHive)> ListHives()
    {
        var list = new List<(string, ulong)>();
        foreach (var h in EnumerateHives()) list.Add((h.DisplayName(), h.CmHive));
        return list;
    }

    /// <summary>
    /// The hive mounted at <paramref name="rootPath"/> (e.g. <c>\REGISTRY\MACHINE\SYSTEM</c>, case-insensitive). Hives
    /// whose HiveRootPath is empty are matched by their file (…\System32\Config\SYSTEM for \REGISTRY\MACHINE\SYSTEM);
    /// a file path (FileUserName / FileFullPath) is accepted too. Null, with a note, when not found.
    /// </summary>
    public HiveView? OpenHive(string rootPath)
    {
        string want = Normalize(rootPath);
        // One view per hive and command: its map, blocks and cells stay cached across lookups.
        if (_opened.TryGetValue(want, out var open)) return open;
        int n = 0;
        foreach (var h in EnumerateHives())
        {
            n++;
            if (h.Matches(want)) return _opened[want] = new HiveView(this, h.DisplayName(), h.CmHive);
        }
        Note($"hive {rootPath} not found among the {n} hive(s) on nt!CmpHiveListHead");
        return null;
    }

    private readonly Dictionary<string, HiveView> _opened = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// HKLM\SYSTEM\&lt;CurrentControlSet&gt;\Services\<paramref name="service"/>\<paramref name="valueName"/>; the control set
    /// is Select\Current. Null with <paramref name="whyNot"/> (the failing step and its notes) when any step fails.
    /// </summary>
    public RegValue? GetServiceValue(string service, string valueName, out string? whyNot)
    {
        whyNot = null;
        int mark = Notes.Count;
        string Why(string step)
        {
            // A step that failed under a pending Ctrl+Break failed because of it (refused reads and lookups).
            ThrowIfInterrupted(step);
            var added = Notes.Skip(mark).ToList();
            return added.Count == 0 ? step : step + ": " + string.Join("; ", added);
        }
        var hive = OpenHive(SystemHive);
        if (hive is null) { whyNot = Why("the SYSTEM hive is not loaded or not readable"); return null; }
        mark = Notes.Count;
        var ccs = hive.CurrentControlSetName();
        if (ccs is null) { whyNot = Why(@"the current control set (SYSTEM\Select\Current) could not be read"); return null; }
        mark = Notes.Count;
        string path = $@"{ccs}\Services\{service}";
        var key = hive.OpenKey(path);
        if (key is null) { whyNot = Why($@"key HKLM\SYSTEM\{path} not found"); return null; }
        mark = Notes.Count;
        var v = key.GetValue(valueName);
        if (v is null) { whyNot = Why($@"HKLM\SYSTEM\{path} has no value '{valueName}'"); return null; }
        return v;
    }

    internal static string Normalize(string path) => path.Trim().TrimEnd('\0').TrimEnd('\\');

    private sealed record HiveEntry(ulong CmHive, string? RootPath, Func<string?> UserName, Func<string?> FullPath)
    {
        public string DisplayName()
        {
            if (!string.IsNullOrEmpty(RootPath)) return RootPath;
            var u = UserName();
            if (!string.IsNullOrEmpty(u)) return u;
            var f = FullPath();
            return string.IsNullOrEmpty(f) ? $"(unnamed hive {Output.Fmt.Addr(CmHive)})" : f;
        }

        public bool Matches(string want)
        {
            if (!string.IsNullOrEmpty(RootPath)) return string.Equals(Normalize(RootPath), want, StringComparison.OrdinalIgnoreCase);
            foreach (var file in new[] { UserName(), FullPath() })
            {
                if (string.IsNullOrEmpty(file)) continue;
                string f = Normalize(file);
                if (string.Equals(f, want, StringComparison.OrdinalIgnoreCase)) return true;
                // \REGISTRY\MACHINE\<X> is loaded from ...\System32\Config\<X>.
                const string machine = @"\REGISTRY\MACHINE\";
                if (want.StartsWith(machine, StringComparison.OrdinalIgnoreCase))
                {
                    string leaf = want[machine.Length..];
                    int slash = f.LastIndexOf('\\');
                    if (slash > 0 && !leaf.Contains('\\') && string.Equals(f[(slash + 1)..], leaf, StringComparison.OrdinalIgnoreCase)
                        && f[..slash].EndsWith(@"\config", StringComparison.OrdinalIgnoreCase)) return true;
                }
            }
            return false;
        }
    }

    private IEnumerable<HiveEntry> EnumerateHives()
    {
        var types = Kernel.Types;
        var head = types.TrySymbol("nt!CmpHiveListHead");
        if (head is null) { MissingSymbol("symbol nt!CmpHiveListHead", "nt!CmpHiveListHead is not in the symbols: the loaded hives cannot be found (check nt symbols)"); yield break; }
        var cm = types.TryGet("nt", "_CMHIVE");
        if (cm is null) { MissingSymbol("type nt!_CMHIVE", "type nt!_CMHIVE is not in the symbols: the loaded hives cannot be read (check nt symbols)"); yield break; }
        var listField = types.TryResolvePath(cm, "HiveList");
        if (listField is null) { Note("nt!_CMHIVE has no field HiveList on this build: the loaded hives cannot be walked"); yield break; }
        ulong listOff = listField.Value.Offset;
        // Name fields, where this build has them ("has field" checks, never offsets).
        ulong? Off(string f) => types.TryResolvePath(cm, f)?.Offset;
        ulong? root = Off("HiveRootPath"), user = Off("FileUserName"), full = Off("FileFullPath");
        int us = (int)(types.TryGet("nt", "_UNICODE_STRING")?.Size ?? (ulong)(2 * Kernel.PointerSize));
        // One request per hive covers the list link and the name strings' headers.
        ulong lo = listOff, hi = listOff + (ulong)(2 * Kernel.PointerSize);
        foreach (var o in new[] { root, user, full })
            if (o is { } v) { lo = Math.Min(lo, v); hi = Math.Max(hi, v + (ulong)us); }
        if (hi - lo > 0x4000) hi = lo + 0x4000;

        var walk = new ListWalkResult();
        foreach (var cmhive in Kernel.WalkRecords(head.Value, "nt", "_CMHIVE", "HiveList", walk, MaxHives))
        {
            Kernel.Memory.Prefetch(cmhive + lo, (int)(hi - lo));
            string? ReadName(ulong? off, string field)
            {
                if (off is null) return null;
                var s = Kernel.ReadUnicodeString(cmhive + off.Value);
                if (s is null) Note($"hive _CMHIVE at {Output.Fmt.Addr(cmhive)}: {field} (at {Output.Fmt.Addr(cmhive + off.Value)}) is not readable");
                return s?.TrimEnd('\0');
            }
            string? rootPath = ReadName(root, "HiveRootPath");
            string? u = null, f = null;
            bool uRead = false, fRead = false;
            yield return new HiveEntry(cmhive, rootPath,
                () => { if (!uRead) { u = ReadName(user, "FileUserName"); uRead = true; } return u; },
                () => { if (!fRead) { f = ReadName(full, "FileFullPath"); fRead = true; } return f; });
        }
        if (!walk.IsComplete) Note(walk.Describe("nt!CmpHiveListHead (loaded hives)"));
    }

    // =====================================================================================
    // The Registry process (Windows 10 2004+: hive bins in its user address space)
    // =====================================================================================

    /// <summary>True for a user-mode address on a kernel target (must be read in the Registry process's context).</summary>
    internal bool IsUserAddress(ulong va) =>
        Kernel.Target.Info.Kind == Target.TargetKind.Kernel && va < (Kernel.PointerSize == 8 ? 0x0000_8000_0000_0000UL : 0x8000_0000UL);

    /// <summary>EPROCESS of the Registry process (nt!CmpRegistryProcess), or null with <paramref name="why"/>.</summary>
    internal ulong? RegistryProcess(out string? why)
    {
        why = null;
        if (!_registryProcessResolved)
        {
            _registryProcessResolved = true;
            var sym = Kernel.Types.TrySymbol("nt!CmpRegistryProcess");
            if (sym is null)
            {
                _registryProcessResolved = false; // MissingSymbol throws on an interrupt: asked again next time
                MissingSymbol("symbol nt!CmpRegistryProcess", "nt!CmpRegistryProcess is not in the symbols");
                _registryProcessResolved = true;
                _whyNoProcess = "nt!CmpRegistryProcess is not in the symbols"; return null;
            }
            var p = Kernel.TryReadPointer(sym.Value);
            if (p is null) _whyNoProcess = $"nt!CmpRegistryProcess at {Output.Fmt.Addr(sym.Value)} is not readable";
            else if (p == 0) _whyNoProcess = "nt!CmpRegistryProcess is NULL";
            else _registryProcess = p;
        }
        why = _whyNoProcess;
        return _registryProcess;
    }

    private string? _whyNoProcess;
}
