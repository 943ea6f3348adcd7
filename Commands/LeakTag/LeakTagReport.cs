using System.Text.Json.Serialization;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Memory;

namespace NtSleuth.Commands.LeakTag;

/// <summary>Counters of one tag summed over every tracker table of the build.</summary>
public sealed class PoolTagUsage
{
    public string Tag { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Key { get; set; }
    public bool Protected { get; set; }
    public ulong NonPagedAllocs { get; set; }
    public ulong NonPagedFrees { get; set; }
    public ulong NonPagedBytes { get; set; }
    public ulong PagedAllocs { get; set; }
    public ulong PagedFrees { get; set; }
    public ulong PagedBytes { get; set; }
    /// <summary>Outstanding allocations (allocs - frees), what !poolused prints as "Allocs".</summary>
    public long NonPagedOutstanding => unchecked((long)(NonPagedAllocs - NonPagedFrees));
    public long PagedOutstanding => unchecked((long)(PagedAllocs - PagedFrees));
    public ulong TotalBytes => NonPagedBytes + PagedBytes;
    public string? Description { get; set; }
    /// <summary>How many tracker tables had an entry for this tag.</summary>
    public int Tables { get; set; }

    internal void Add(PoolTagUsage o)
    {
        NonPagedAllocs += o.NonPagedAllocs; NonPagedFrees += o.NonPagedFrees; NonPagedBytes += o.NonPagedBytes;
        PagedAllocs += o.PagedAllocs; PagedFrees += o.PagedFrees; PagedBytes += o.PagedBytes;
        Protected |= o.Protected; Tables++;
    }
}

public sealed class TrackerTableInfo
{
    public string Source { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    public ulong Entries { get; set; }
    public ulong EntrySize { get; set; }
    public int UsedEntries { get; set; }
    public bool Partial { get; set; }
    public string? Note { get; set; }
}

public sealed class PoolTotals
{
    public long NonPagedAllocs { get; set; }
    public ulong NonPagedBytes { get; set; }
    public long PagedAllocs { get; set; }
    public ulong PagedBytes { get; set; }
    /// <summary>Maximum nonpaged pool in bytes (nt!MmMaximumNonPagedPoolInBytes) when the build has it.</summary>
    public ulong? NonPagedMaximum { get; set; }
    /// <summary>Maximum paged pool in bytes (nt!MmSizeOfPagedPoolInBytes) when the build has it.</summary>
    public ulong? PagedMaximum { get; set; }
    public bool NonPagedExcessive => NonPagedMaximum is > 0 && NonPagedBytes * 10 >= NonPagedMaximum.Value * 8;
    public bool PagedExcessive => PagedMaximum is > 0 && PagedBytes * 10 >= PagedMaximum.Value * 8;
}

/// <summary>One place the tag bytes occur inside a loaded module image.</summary>
public sealed class TagSite
{
    public string Module { get; set; } = "";
    [JsonConverter(typeof(HexConverter))] public ulong Address { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong ModuleBase { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong Offset { get; set; }
    /// <summary>"myfault!AllocateLeak+0x2a" when symbols allow; null otherwise.</summary>
    public string? Function { get; set; }
}

public sealed class BigPoolAllocation
{
    [JsonConverter(typeof(HexConverter))] public ulong Va { get; set; }
    public ulong NumberOfBytes { get; set; }
    public string Tag { get; set; } = "";
    public bool NonPaged { get; set; }
}

public sealed class LiveSuggestion
{
    public string Text { get; set; } = "";
    public string Command { get; set; } = "";
}

public sealed class LeakTagReport
{
    public int Build { get; set; }
    public bool IsLive { get; set; }
    public string Sort { get; set; } = "total";
    public int TopN { get; set; }
    public ulong TrackerEntrySize { get; set; }
    public List<TrackerTableInfo> Tables { get; } = new();
    public bool Partial { get; set; }
    public PoolTotals Totals { get; set; } = new();
    public int TagsInUse { get; set; }
    public List<PoolTagUsage> Top { get; } = new();

    // One-tag mode
    public string? Query { get; set; }
    public string? QueryPadded { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong QueryKey { get; set; }
    public List<PoolTagUsage> Matches { get; } = new();
    public string? PoolTagFile { get; set; }
    public List<TagSite> Sites { get; } = new();
    public int ModulesSearched { get; set; }
    /// <summary>Modules whose search result an earlier command of this dump session found (not read again). Not printed:
    /// a dump does not change, so the report is the same either way (-stats shows the reads saved).</summary>
    [JsonIgnore] public int ModulesRemembered { get; set; }
    public int ModulesTotal { get; set; }
    /// <summary>Bytes of x64 exception directories the module search did not read (they cannot hold a tag: ImageScanPlan).</summary>
    [JsonIgnore] public ulong ExceptionDirectoryBytesSkipped { get; set; }
    public bool ModuleSearchComplete { get; set; }
    public bool ModuleSearchSkipped { get; set; }
    public List<BigPoolAllocation> BigPool { get; } = new();
    public ulong BigPoolTableEntries { get; set; }
    public ulong BigPoolMatchCount { get; set; }
    public ulong BigPoolMatchBytes { get; set; }
    public bool BigPoolPartial { get; set; }
    public bool? VerifierPoolTracking { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong VerifierLevel { get; set; }
    public uint? PoolHitTag { get; set; }
    public string? PoolHitTagText { get; set; }
    [JsonConverter(typeof(HexConverter))] public ulong PoolHitTagAddress { get; set; }
    public List<LiveSuggestion> Suggestions { get; } = new();

    /// <summary>Ctrl+Break stopped the command; <see cref="NotRead"/> names the parts it did not read or finish.</summary>
    public bool Interrupted { get; set; }
    /// <summary>With <see cref="Interrupted"/>: "tracker tables", "PoolHitTag", "Driver Verifier state", "big-page table", "module search".</summary>
    public List<string> NotRead { get; } = new();

    public List<string> Notes { get; } = new();
    public ReadFigures? Stats { get; set; }
}
