using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.LeakTag;

public enum PoolSort { Total, NonPaged, Paged }

public sealed class LeakTagOptions
{
    public PoolTagPattern? Tag { get; init; }
    public int TopN { get; init; } = 10;
    public PoolSort Sort { get; init; } = PoolSort.Total;
    public bool Live { get; init; }
    /// <summary>Most big-pool allocations listed (all are counted).</summary>
    public int MaxBigPoolListed { get; init; } = 50;
    /// <summary>Most hits recorded per module.</summary>
    public int MaxHitsPerModule { get; init; } = 64;
    public PoolTagDescriptions? Descriptions { get; init; }
}

/// <summary>
/// Reads the pool tracker tables (every table the build has) in bulk, sums the counters per tag and, for one tag,
/// finds the modules containing the tag bytes (target-side search, no image transfer), big-pool allocations,
/// the verifier state and PoolHitTag. All layouts come from the symbols by name.
/// </summary>
public sealed class LeakTagAnalyzer
{
    /// <summary>DRIVER_VERIFIER_TRACK_POOL_ALLOCATIONS in MmVerifierData.Level.</summary>
    public const uint VerifierTrackPool = 0x8;
    private const ulong MaxTableBytes = 256UL << 20;

    private readonly KernelReader _r;
    private readonly ITarget _t;
    private TargetMemory M => _r.Memory;

    private readonly Symbolizer _symbols;

    public LeakTagAnalyzer(KernelReader reader) { _r = reader; _t = reader.Target; _symbols = new Symbolizer(reader.Target); }

    public LeakTagReport Analyze(LeakTagOptions o)
    {
        var res = new LeakTagReport
        {
            Build = _t.Info.BuildNumber, IsLive = _t.Info.IsLive, TopN = o.TopN,
            Sort = o.Sort.ToString().ToLowerInvariant(),
        };
        if (_t.Info.Kind != TargetKind.Kernel)
            throw new Cli.CommandFailedException("!leaktag needs a kernel target (kernel dump or live kernel debugging)");

        var tags = ReadTrackerTables(res);
        foreach (var u in tags.Values)
        {
            res.Totals.NonPagedAllocs += u.NonPagedOutstanding; res.Totals.NonPagedBytes += u.NonPagedBytes;
            res.Totals.PagedAllocs += u.PagedOutstanding; res.Totals.PagedBytes += u.PagedBytes;
        }
        res.TagsInUse = tags.Count;
        if (res.Interrupted)
        {
            // Only the sums so far: a one-tag report stops before its other parts.
            if (o.Tag is not null) res.NotRead.AddRange([PartPoolHitTag, PartVerifier, PartBigPool, PartModules]);
        }
        else ReadPoolMaximums(res);

        if (o.Tag is null)
        {
            IOrderedEnumerable<PoolTagUsage> sorted = o.Sort switch
            {
                PoolSort.NonPaged => tags.Values.OrderByDescending(u => u.NonPagedBytes).ThenByDescending(u => u.NonPagedOutstanding),
                PoolSort.Paged => tags.Values.OrderByDescending(u => u.PagedBytes).ThenByDescending(u => u.PagedOutstanding),
                _ => tags.Values.OrderByDescending(u => u.TotalBytes),
            };
            foreach (var u in sorted.ThenBy(u => u.Tag, StringComparer.Ordinal).Take(Math.Max(1, o.TopN)))
            {
                u.Description = o.Descriptions?.Describe(u.Tag);
                res.Top.Add(u);
            }
            res.PoolTagFile = o.Descriptions?.Path;
            return res;
        }

        var tag = o.Tag;
        if (res.Interrupted)
        {
            res.Query = tag.Text; res.QueryPadded = tag.Padded; res.QueryKey = tag.KeyValue ?? 0; res.ModuleSearchSkipped = true;
            foreach (var u in tags.Values.Where(u => tag.Matches((uint)u.Key))) res.Matches.Add(u);
            return res;
        }
        res.Query = tag.Text; res.QueryPadded = tag.Padded; res.QueryKey = tag.KeyValue ?? 0;
        res.PoolTagFile = o.Descriptions?.Path;
        foreach (var u in tags.Values.Where(u => tag.Matches((uint)u.Key)).OrderByDescending(u => u.TotalBytes).ThenBy(u => u.Tag, StringComparer.Ordinal))
        {
            u.Description = o.Descriptions?.Describe(u.Tag);
            res.Matches.Add(u);
        }
        if (res.Matches.Count == 0)
            res.Notes.Add($"no tracker entry matches '{tag.Padded}' (the tag has no outstanding or past allocations, or pool tagging missed it)");

        if (Part(res, PartPoolHitTag, () => ReadPoolHitTag(res))
            && Part(res, PartVerifier, () => ReadVerifier(res))
            && Part(res, PartBigPool, () => ReadBigPool(res, tag, o))
            && Part(res, PartModules, () => SearchModules(res, tag, o), keepNotes: true)
            && o.Live) AddLiveSuggestions(res, tag);
        else if (o.Live is false && _t.Info.IsLive && tag.KeyValue is not null)
            res.Notes.Add("run with -live for PoolHitTag / unique-tag suggestions");
        return res;
    }

    // ---------- Ctrl+Break ----------

    public const string PartTrackerTables = "tracker tables", PartPoolHitTag = "PoolHitTag",
        PartVerifier = "Driver Verifier state", PartBigPool = "big-page table", PartModules = "module search";

    /// <summary>Entries of a table summed between two polls of the interrupt (a few ms of CPU at most).</summary>
    private const int PollEvery = 4096;

    /// <summary>
    /// Runs one part of the one-tag report unless Ctrl+Break was seen; false stops the report there. The engine fails
    /// symbol lookups and reads while an interrupt is pending, so the "missing" / "not readable" notes of a part the
    /// interrupt cut short are dropped (<paramref name="keepNotes"/>: the part reports its own interrupt, e.g. the
    /// module search's sites found so far) and the report says which parts were not read.
    /// </summary>
    private bool Part(LeakTagReport res, string name, Action read, bool keepNotes = false)
    {
        if (M.IsInterruptRequested) { Interrupted(res, name, started: false); return false; }
        int notes = res.Notes.Count;
        try { read(); }
        catch (OperationCanceledException) { res.Notes.RemoveRange(notes, res.Notes.Count - notes); Interrupted(res, name, started: true); return false; }
        if (!M.IsInterruptRequested) return true;
        if (!keepNotes) res.Notes.RemoveRange(notes, res.Notes.Count - notes);
        Interrupted(res, name, started: true, finished: keepNotes);
        return false;
    }

    private static void Interrupted(LeakTagReport res, string name, bool started, bool finished = false)
    {
        var rest = new[] { PartPoolHitTag, PartVerifier, PartBigPool, PartModules };
        int i = Array.IndexOf(rest, name);
        var skipped = rest.Skip(finished ? i + 1 : i).ToList();
        // The last part ran to its end (or said itself where it stopped: the module search's count).
        if (finished && skipped.Count == 0) { if (!res.ModuleSearchComplete) res.Interrupted = true; return; }
        res.Interrupted = true;
        res.NotRead.AddRange(skipped);
        if (!finished)
            res.Notes.Add($"interrupted by user (Ctrl+Break) {(started ? "while reading" : "before")} the {name}; not shown: {string.Join(", ", skipped)}");
        else if (skipped.Count > 0)
            res.Notes.Add($"interrupted by user (Ctrl+Break); not shown: {string.Join(", ", skipped)}");
    }

    // ---------- tracker tables ----------

    private Dictionary<uint, PoolTagUsage> ReadTrackerTables(LeakTagReport res)
    {
        var types = _r.Types;
        ulong trackSym = types.Symbol("nt!PoolTrackTable");
        var layout = types.Get("nt", "_POOL_TRACKER_TABLE");
        res.TrackerEntrySize = layout.Size;
        var f = new TrackerFields(layout);

        ulong? sizeSym = types.TrySymbol("nt!PoolTrackTableSize");
        ulong entries = 0;
        if (sizeSym is null || !M.TryReadPointer(sizeSym.Value, out entries))
            res.Notes.Add("nt!PoolTrackTableSize is not readable; the table size is unknown");

        var tables = new List<(string Source, ulong Address, ulong Entries)>();
        if (!M.TryReadPointer(trackSym, out var baseTable))
            throw new TargetReadException(trackSym, 8, Symbols.SymbolDiagnosis.UnreadableGlobal(_t, "nt!PoolTrackTable", trackSym));
        if (baseTable != 0 && entries != 0) tables.Add(("PoolTrackTable", baseTable, entries));

        // Per-processor tables (nt!ExPoolTagTables[cpu]) on builds that keep them; the global table is often slot 0.
        ulong? perCpu = types.TrySymbol("nt!ExPoolTagTables");
        if (perCpu is not null && entries != 0)
        {
            int n = Processors.Count(_r);
            var ptrs = new byte[n * _r.PointerSize];
            int got = M.Read(perCpu.Value, ptrs) / _r.PointerSize;
            if (got < n) res.Notes.Add($"nt!ExPoolTagTables is readable for {got} of {n} processors; tables of the others were not summed");
            var seen = new HashSet<ulong> { baseTable };
            for (int i = 0; i < got; i++)
            {
                ulong p = _r.PointerSize == 8 ? BitConverter.ToUInt64(ptrs, i * 8) : BitConverter.ToUInt32(ptrs, i * 4);
                if (p != 0 && seen.Add(p)) tables.Add(($"ExPoolTagTables[{i}]", p, entries));
            }
        }
        ulong? expSym = types.TrySymbol("nt!PoolTrackTableExpansion");
        ulong? expSizeSym = types.TrySymbol("nt!PoolTrackTableExpansionSize");
        if (expSym is not null && expSizeSym is not null && M.TryReadPointer(expSym.Value, out var exp) && exp != 0
            && M.TryReadPointer(expSizeSym.Value, out var expEntries) && expEntries != 0)
            tables.Add(("PoolTrackTableExpansion", exp, expEntries));

        if (tables.Count == 0)
            res.Notes.Add("no pool tracker table is allocated (nt!PoolTrackTable is NULL or its size is 0)");

        var tags = new Dictionary<uint, PoolTagUsage>();
        foreach (var (source, addr, count) in tables)
        {
            if (res.Interrupted) break;
            var info = new TrackerTableInfo { Source = source, Address = addr, Entries = count, EntrySize = layout.Size };
            res.Tables.Add(info);
            if (M.IsInterruptRequested) { TablesInterrupted(res, info, "before its entries were read"); break; }
            ulong bytes = count * layout.Size;
            if (count > (1UL << 24) || bytes > MaxTableBytes)
            {
                info.Partial = true; info.Note = $"implausible size ({count} entries); table skipped"; res.Partial = true;
                continue;
            }
            byte[] data; List<(int Offset, int Length)> holes;
            try { (data, holes) = M.ReadBulk(addr, (int)bytes); }
            catch (OperationCanceledException)
            {
                TablesInterrupted(res, info, "before its entries were read");
                break;
            }
            int es = (int)layout.Size;
            for (int i = 0; i < (int)count; i++)
            {
                if (i % PollEvery == PollEvery - 1 && M.IsInterruptRequested)
                {
                    TablesInterrupted(res, info, $"after {i:N0} of {count:N0} entries");
                    break;
                }
                int off = i * es;
                if (Overlaps(holes, off, es)) continue;
                var e = data.AsSpan(off, es);
                uint key = (uint)f.Key.Get(e);
                if (key == 0) continue;
                var u = new PoolTagUsage
                {
                    Key = key & ~PoolTagText.ProtectedBit, Tag = PoolTagText.FromKey(key), Protected = (key & PoolTagText.ProtectedBit) != 0,
                    NonPagedAllocs = f.NpAllocs.Get(e), NonPagedFrees = f.NpFrees.Get(e), NonPagedBytes = f.NpBytes.Get(e),
                    PagedAllocs = f.PAllocs.Get(e), PagedFrees = f.PFrees.Get(e), PagedBytes = f.PBytes.Get(e),
                };
                if (u.NonPagedAllocs == 0 && u.PagedAllocs == 0 && u.NonPagedBytes == 0 && u.PagedBytes == 0) continue;
                info.UsedEntries++;
                uint k = key & ~PoolTagText.ProtectedBit;
                if (!tags.TryGetValue(k, out var sum)) tags[k] = sum = new PoolTagUsage { Key = k, Tag = u.Tag };
                sum.Add(u);
            }
            if (holes.Count > 0)
            {
                info.Partial = true; res.Partial = true;
                ulong lost = (ulong)holes.Sum(h => (long)h.Length);
                info.Note = $"{holes.Count} unreadable page(s) in the table (first at {Output.Fmt.Addr(addr + (ulong)holes[0].Offset)}, 0x{lost:x} bytes): counts are partial";
            }
        }
        return tags;
    }

    /// <summary>Ctrl+Break in the tracker tables: the sums so far, the table marked, the rest of the report not read.</summary>
    private static void TablesInterrupted(LeakTagReport res, TrackerTableInfo info, string where)
    {
        res.Interrupted = true;
        info.Partial = true;
        info.Note = $"interrupted by user (Ctrl+Break) {where}: counts are partial";
        res.NotRead.Add(PartTrackerTables);
        res.Notes.Add($"interrupted by user (Ctrl+Break) in the {PartTrackerTables} ({info.Source}): tags and totals are partial; tables after it not summed");
    }

    private sealed class TrackerFields(TypeLayout l)
    {
        public readonly PackedField Key = PackedField.From(l, "Key");
        public readonly PackedField NpAllocs = PackedField.From(l, "NonPagedAllocs");
        public readonly PackedField NpFrees = PackedField.From(l, "NonPagedFrees");
        public readonly PackedField NpBytes = PackedField.From(l, "NonPagedBytes");
        public readonly PackedField PAllocs = PackedField.From(l, "PagedAllocs");
        public readonly PackedField PFrees = PackedField.From(l, "PagedFrees");
        public readonly PackedField PBytes = PackedField.From(l, "PagedBytes");
    }

    private static bool Overlaps(List<(int Offset, int Length)> holes, int off, int len)
    {
        foreach (var h in holes)
            if (off < h.Offset + h.Length && h.Offset < off + len) return true;
        return false;
    }

    private void ReadPoolMaximums(LeakTagReport res)
    {
        var np = _r.Types.TrySymbol("nt!MmMaximumNonPagedPoolInBytes");
        if (np is not null && M.TryReadPointer(np.Value, out var v1) && v1 != 0) res.Totals.NonPagedMaximum = v1;
        var pp = _r.Types.TrySymbol("nt!MmSizeOfPagedPoolInBytes");
        if (pp is not null && M.TryReadPointer(pp.Value, out var v2) && v2 != 0) res.Totals.PagedMaximum = v2;
        if (res.Totals.NonPagedMaximum is null)
            res.Notes.Add("this build has no nt!MmMaximumNonPagedPoolInBytes (dynamic nonpaged pool); compare with !vm 1 for the limit");
    }

    // ---------- one tag ----------

    private void ReadPoolHitTag(LeakTagReport res)
    {
        var a = _r.Types.TrySymbol("nt!PoolHitTag");
        if (a is null) { res.Notes.Add("nt!PoolHitTag is not in the symbols"); return; }
        res.PoolHitTagAddress = a.Value;
        if (M.TryReadU32(a.Value, out var v))
        {
            res.PoolHitTag = v;
            res.PoolHitTagText = v == 0xffffff0f ? "default (no tag armed)" : PoolTagText.FromKey(v);
        }
        else res.Notes.Add($"nt!PoolHitTag at {Output.Fmt.Addr(a.Value)} is not readable");
    }

    private void ReadVerifier(LeakTagReport res)
    {
        var a = _r.Types.TrySymbol("nt!MmVerifierData");
        var layout = _r.Types.TryGet("nt", "_MM_DRIVER_VERIFIER_DATA");
        if (a is null || layout is null || !layout.HasField("Level")) return;
        var v = _r.TryRead("nt", "_MM_DRIVER_VERIFIER_DATA", a.Value);
        var level = v?.TryUInt("Level");
        if (level is null) { res.Notes.Add("nt!MmVerifierData is not readable; Driver Verifier state unknown"); return; }
        res.VerifierLevel = level.Value;
        res.VerifierPoolTracking = (level.Value & VerifierTrackPool) != 0;
    }

    private void ReadBigPool(LeakTagReport res, PoolTagPattern tag, LeakTagOptions o)
    {
        var tSym = _r.Types.TrySymbol("nt!PoolBigPageTable");
        var sSym = _r.Types.TrySymbol("nt!PoolBigPageTableSize");
        var layout = _r.Types.TryGet("nt", "_POOL_TRACKER_BIG_PAGES");
        if (tSym is null || sSym is null || layout is null) { res.Notes.Add("big-page table symbols (nt!PoolBigPageTable, _POOL_TRACKER_BIG_PAGES) are missing; big-pool allocations not listed"); return; }
        if (!M.TryReadPointer(tSym.Value, out var table) || !M.TryReadPointer(sSym.Value, out var count) || table == 0)
        { res.Notes.Add("nt!PoolBigPageTable is not readable; big-pool allocations not listed"); res.BigPoolPartial = true; return; }
        res.BigPoolTableEntries = count;
        ulong bytes = count * layout.Size;
        if (count > (1UL << 26) || bytes > MaxTableBytes) { res.Notes.Add($"implausible PoolBigPageTableSize {count}; big-page table skipped"); res.BigPoolPartial = true; return; }
        var va = PackedField.From(layout, "Va");
        var key = PackedField.From(layout, "Key");
        var nb = PackedField.From(layout, "NumberOfBytes");
        var pt = PackedField.From(layout, "PoolType", required: false);
        var (data, holes) = M.ReadBulk(table, (int)bytes);
        if (holes.Count > 0) { res.BigPoolPartial = true; res.Notes.Add($"big-page table: {holes.Count} unreadable range(s); big-pool list is partial"); }
        int es = (int)layout.Size;
        for (int i = 0; i < (int)count; i++)
        {
            if (i % PollEvery == PollEvery - 1) M.ThrowIfInterrupted();
            int off = i * es;
            if (Overlaps(holes, off, es)) continue;
            var e = data.AsSpan(off, es);
            ulong v = va.Get(e);
            if (v == 0 || (v & 1) != 0) continue; // free entry
            uint k = (uint)key.Get(e);
            if (!tag.Matches(k)) continue;
            ulong size = nb.Get(e);
            res.BigPoolMatchCount++; res.BigPoolMatchBytes += size;
            if (res.BigPool.Count < o.MaxBigPoolListed)
                res.BigPool.Add(new BigPoolAllocation { Va = v, NumberOfBytes = size, Tag = PoolTagText.FromKey(k), NonPaged = pt.Present ? (pt.Get(e) & 1) == 0 : true });
        }
    }

    private void SearchModules(LeakTagReport res, PoolTagPattern tag, LeakTagOptions o)
    {
        var pattern = tag.SearchBytes;
        IReadOnlyList<ModuleInfo> mods;
        try { mods = _t.GetModules(); } catch (Exception ex) { res.Notes.Add($"module list not available ({ex.Message}); module search skipped"); res.ModuleSearchSkipped = true; return; }
        res.ModulesTotal = mods.Count;
        if (pattern is null)
        {
            res.ModuleSearchSkipped = true;
            res.Notes.Add("the module search needs an exact tag (no wildcards): run !leaktag <tag> with one of the matching tags");
            return;
        }
        res.ModuleSearchComplete = true;
        var store = _t.Info.IsLive ? null : _t.Session;
        KernelReader.TestPoint("leaktag.modules");
        foreach (var m in mods)
        {
            if (M.IsInterruptRequested)
            {
                res.ModuleSearchComplete = false;
                res.Notes.Add($"module search interrupted by user after {res.ModulesSearched} of {mods.Count} modules; sites found so far are listed");
                break;
            }
            res.ModulesSearched++;
            if (m.Size == 0) continue;
            // A dump does not change: a module searched for this tag by an earlier command of the session (same base,
            // size, timestamp) is not read again. The session store is dropped when modules load/unload, symbols
            // reload or the target changes (ITarget.Session); a live target's memory can change, so it keeps nothing.
            string? key = store is null ? null : $"leaktag.module|{m.Base:x}|{m.Size:x}|{m.TimeDateStamp:x}|{m.Name}|{Convert.ToHexString(pattern)}|{o.MaxHitsPerModule}";
            List<ulong> found;
            if (key is not null && store!.TryGet<RememberedModuleSearch>(key, out var remembered))
            {
                found = remembered.Hits;
                res.ModulesRemembered++;
            }
            else
            {
                // The image is read in packet-sized requests and searched here (TargetMemory.ScanFor): the same hits
                // as the engine's search, without paying for pages that cannot be read or were read already
                // (docs/bench.md). An x64 image's exception directory cannot hold a tag and is not read (ImageScanPlan).
                var plan = ImageScanPlan.For(M, m, pattern);
                found = new List<ulong>();
                foreach (var (start, length) in plan.Ranges)
                {
                    if (found.Count >= o.MaxHitsPerModule || M.IsInterruptRequested) break;
                    found.AddRange(M.ScanFor(start, length, pattern, o.MaxHitsPerModule - found.Count));
                }
                if (plan.Skipped is { } skipped) res.ExceptionDirectoryBytesSkipped += skipped.Length;
                // Only a search that ran to its end is remembered (Ctrl+Break also drops the whole store).
                if (key is not null && !M.IsInterruptRequested) store!.Put(key, new RememberedModuleSearch(found));
            }
            int hits = found.Count;
            foreach (var a in found) res.Sites.Add(MakeSite(m, a));
            if (M.IsInterruptRequested && hits < o.MaxHitsPerModule)
            {
                res.ModuleSearchComplete = false;
                res.Notes.Add($"module search interrupted by user in {KernelModules.ShortName(m.Name)} ({res.ModulesSearched} of {mods.Count} modules); sites found so far are listed");
                break;
            }
            if (hits >= o.MaxHitsPerModule) res.Notes.Add($"{m.Name}: more than {o.MaxHitsPerModule} occurrences; only the first are listed");
        }
    }

    /// <summary>A module's search result kept for the dump session: the hits (addresses, capped at MaxHitsPerModule).</summary>
    private sealed record RememberedModuleSearch(List<ulong> Hits);

    private TagSite MakeSite(ModuleInfo m, ulong addr)
    {
        string mod = KernelModules.ShortName(m.Name);
        // No symbols (or a symbol of another module): module+offset only.
        return new TagSite { Module = mod, Address = addr, ModuleBase = m.Base, Offset = addr - m.Base, Function = _symbols.Routine(addr, m) };
    }

    private void AddLiveSuggestions(LeakTagReport res, PoolTagPattern tag)
    {
        if (!_t.Info.IsLive)
        {
            res.Notes.Add("-live suggestions apply to a live kernel session; this target is a dump");
            return;
        }
        if (tag.KeyValue is not uint key) { res.Notes.Add("-live needs an exact tag (no wildcards)"); return; }
        res.Suggestions.Add(new LiveSuggestion { Text = $"break on every allocation/free of '{tag.Padded}': set PoolHitTag to {key:x8} (little-endian '{tag.Padded}')", Command = $"ed nt!PoolHitTag {key:x8}" });
        int i = 1;
        foreach (var s in res.Sites.Take(9))
        {
            char c = (char)('0' + i);
            string newTag = tag.Padded[..3] + c;
            res.Suggestions.Add(new LiveSuggestion { Text = $"make site {i} unique ({s.Function ?? s.Module + "+0x" + s.Offset.ToString("x")} -> '{newTag}')", Command = $"eb {Output.Fmt.Addr(s.Address)}+3 {(int)c:x2}" });
            i++;
        }
        if (res.Sites.Count > 0)
            res.Suggestions.Add(new LiveSuggestion { Text = "then let the leak run and repeat !leaktag to see which site's tag grows", Command = "!leaktag -nonpaged" });
    }
}
