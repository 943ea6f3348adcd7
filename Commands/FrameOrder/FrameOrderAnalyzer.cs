using NtSleuth.Commands.Kernel;
using System.Globalization;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.FrameOrder;

/// <summary>
/// !frameorder analysis: fltmgr!FltGlobals.FrameList -> each _FLTP_FRAME (id, altitude interval, RegisteredFilters ->
/// _FLT_FILTER -> InstanceList -> _FLT_INSTANCE, AttachedVolumes -> _FLT_VOLUME), then for every volume the device stack
/// from the file system's volume device up (nt _DEVOBJ_EXTENSION.AttachedTo down, _DEVICE_OBJECT.AttachedDevice up),
/// classifying each device as file system, fltmgr frame or legacy filter; then the disorder check.
/// </summary>
public sealed class FrameOrderAnalyzer
{
    public const string F = "fltmgr";
    /// <summary>Bytes read past an instance/volume in the same request (strings stored right after the object).</summary>
    public const int Slack = 0x100;
    public const int MaxFrames = 64, MaxFilters = 1024, MaxInstances = 4096, MaxVolumes = 1024, MaxStack = 64;

    private readonly KernelReader _r;
    private readonly string? _volume;
    private readonly Dictionary<string, string> _legacyAltitudes;
    private readonly DriverNames _drivers;
    private readonly ILoadOrderGroupSource? _groups;

    public FrameOrderAnalyzer(KernelReader reader, string? volume = null, IReadOnlyDictionary<string, string>? legacyAltitudes = null,
        ILoadOrderGroupSource? groups = null)
    {
        _r = reader; _volume = volume; _groups = groups; _drivers = new DriverNames(reader);
        _legacyAltitudes = new Dictionary<string, string>(legacyAltitudes ?? new Dictionary<string, string>(), StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Parses "-legacy Name=149998.99,Other=329998.99".</summary>
    public static Dictionary<string, string> ParseLegacy(string? s)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (string.IsNullOrWhiteSpace(s)) return d;
        foreach (var part in s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0 || !LoadOrderGroups.TryParse(part[(eq + 1)..], out _))
                throw new Cli.UsageException($"-legacy expects Name=altitude[,Name=altitude] (e.g. EncryptionLegacy=149998.99), got '{part}'");
            d[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        return d;
    }

    public FrameOrderReport Analyze()
    {
        var rep = new FrameOrderReport { VolumeFilter = _volume };
        var T = _r.Types;
        bool loaded = KernelModules.IsLoaded(_r.Target, "fltmgr");
        if (!loaded && !T.Symbols.HasSymbols(F))
            throw new ModuleNotLoadedException("fltmgr.sys is not loaded on the target (no filter manager: nothing to report).");
        ulong globals = T.Symbol("fltmgr!FltGlobals");
        ulong head = globals + T.FieldOffset(F, "_GLOBALS", "FrameList") + T.FieldOffset(F, "_FLT_RESOURCE_LIST_HEAD", "rList");
        ulong rList = T.FieldOffset(F, "_FLT_RESOURCE_LIST_HEAD", "rList");
        ulong regFilters = T.FieldOffset(F, "_FLTP_FRAME", "RegisteredFilters") + rList;
        ulong attVolumes = T.FieldOffset(F, "_FLTP_FRAME", "AttachedVolumes") + rList;
        ulong instList = T.FieldOffset(F, "_FLT_FILTER", "InstanceList") + rList;

        var volumes = new List<(ulong Vol, StructView View, FrameInfo Frame)>();
        var walk = new ListWalkResult();
        foreach (var fa in _r.WalkRecords(head, F, "_FLTP_FRAME", "Links", walk, MaxFrames))
        {
            StructView fv;
            try { fv = _r.Read(F, "_FLTP_FRAME", fa); }
            catch (TargetReadException e) { rep.Notes.Add($"frame {Output.Fmt.Addr(fa)}: {e.Message}"); break; }
            var frame = new FrameInfo
            {
                Address = fa, Id = fv.U32("FrameID"),
                Low = _r.ReadUnicodeString(fv.AddressOf("AltitudeIntervalLow")) ?? "?",
                High = _r.ReadUnicodeString(fv.AddressOf("AltitudeIntervalHigh")) ?? "?",
            };
            rep.Frames.Add(frame);
            var fw = new ListWalkResult();
            foreach (var filterAddr in _r.WalkRecords(fa + regFilters, F, "_FLT_FILTER", "Base.PrimaryLink", fw, MaxFilters))
            {
                var filt = ReadFilter(filterAddr, frame, instList, rep);
                if (filt is not null) { rep.Filters.Add(filt); frame.FilterCount++; }
            }
            if (!fw.IsComplete) rep.Notes.Add(fw.Describe($"frame {frame.Id} registered filters"));
            var vw = new ListWalkResult();
            foreach (var va in _r.WalkRecords(fa + attVolumes, F, "_FLT_VOLUME", "Base.PrimaryLink", vw, MaxVolumes))
            {
                _r.Memory.Prefetch(va, (int)_r.Types.Get(F, "_FLT_VOLUME").Size + Slack);
                try { volumes.Add((va, _r.Read(F, "_FLT_VOLUME", va), frame)); frame.VolumeCount++; }
                catch (TargetReadException e) { rep.Notes.Add($"volume {Output.Fmt.Addr(va)} in frame {frame.Id}: {e.Message}"); }
            }
            if (!vw.IsComplete) rep.Notes.Add(vw.Describe($"frame {frame.Id} attached volumes"));
        }
        if (!walk.IsComplete) rep.Notes.Add(walk.Describe("fltmgr!FltGlobals.FrameList"));

        // Group the per-frame volume objects into volumes (FrameZeroVolume identifies the volume).
        var byDevice = new Dictionary<ulong, (ulong Vol, FrameInfo Frame)>();
        var groups = new Dictionary<ulong, List<(ulong Vol, StructView View, FrameInfo Frame)>>();
        foreach (var v in volumes)
        {
            ulong key = v.View.TryUInt("FrameZeroVolume") is { } z && z != 0 ? z : v.Vol;
            if (!groups.TryGetValue(key, out var l)) groups[key] = l = new();
            l.Add(v);
            if (v.View.TryUInt("DeviceObject") is { } d && d != 0) byDevice[d] = (v.Vol, v.Frame);
        }
        var instancesByVolume = rep.Filters.SelectMany(f => f.Instances.Select(i => (f, i))).ToLookup(x => x.i.Volume);

        foreach (var (key, members) in groups.OrderBy(g => g.Key))
        {
            if (_r.Memory.IsInterruptRequested) { rep.Interrupted = true; rep.Notes.Add("interrupted by user (Ctrl+Break): remaining volumes not shown"); break; }
            var zero = members.FirstOrDefault(m => m.Vol == key);
            if (zero.View is null) zero = members.OrderBy(m => m.Frame.Id).First();
            string name = _r.ReadUnicodeString(zero.View.AddressOf("DeviceName")) ?? $"volume {Output.Fmt.Addr(key)}";
            if (_volume is not null && !MatchesVolume(name, members)) continue;
            var vs = new VolumeStack { Name = name, FrameZeroVolume = key };
            rep.Volumes.Add(vs);
            BuildStack(vs, zero.View, byDevice, members, instancesByVolume);
        }
        if (_volume is not null && rep.Volumes.Count == 0)
            rep.Notes.Add($"no volume matches '{_volume}' ({groups.Count} volume(s) attached to fltmgr frames)");

        ResolveLegacyAltitudes(rep);
        BuildFltmc(rep);
        CheckDisorder(rep);
        return rep;
    }

    private bool MatchesVolume(string name, List<(ulong Vol, StructView View, FrameInfo Frame)> members)
    {
        var v = _volume!.Trim();
        if (name.Equals(v, StringComparison.OrdinalIgnoreCase) || name.EndsWith("\\" + v.TrimStart('\\'), StringComparison.OrdinalIgnoreCase)) return true;
        var hex = v.Replace("`", "");
        if (hex.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) hex = hex[2..];
        if (ulong.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var a))
            return members.Any(m => m.Vol == a || m.View.TryUInt("DeviceObject") == a);
        return false;
    }

    private FilterInfo? ReadFilter(ulong fa, FrameInfo frame, ulong instList, FrameOrderReport rep)
    {
        StructView v;
        try { v = _r.Read(F, "_FLT_FILTER", fa); }
        catch (TargetReadException e) { rep.Notes.Add($"filter {Output.Fmt.Addr(fa)} in frame {frame.Id}: {e.Message}"); return null; }
        var fi = new FilterInfo
        {
            Address = fa, FrameId = frame.Id, Frame = frame.Address,
            Name = _r.ReadUnicodeString(v.AddressOf("Name")) ?? $"filter {Output.Fmt.Addr(fa)}",
            Altitude = _r.ReadUnicodeString(v.AddressOf("DefaultAltitude")) ?? "?",
            DriverObject = v.TryUInt("DriverObject") ?? 0,
        };
        var iw = new ListWalkResult();
        foreach (var ia in _r.WalkRecords(fa + instList, F, "_FLT_INSTANCE", "FilterLink", iw, MaxInstances))
        {
            StructView iv;
            // fltmgr keeps an instance's altitude and name strings next to it: one request covers the instance and them.
            _r.Memory.Prefetch(ia, (int)_r.Types.Get(F, "_FLT_INSTANCE").Size + Slack);
            try { iv = _r.Read(F, "_FLT_INSTANCE", ia); }
            catch (TargetReadException e) { rep.Notes.Add($"instance {Output.Fmt.Addr(ia)} of {fi.Name}: {e.Message}"); break; }
            fi.Instances.Add(new InstanceInfo
            {
                Address = ia, Volume = iv.TryUInt("Volume") ?? 0,
                Altitude = _r.ReadUnicodeString(iv.AddressOf("Altitude")) ?? fi.Altitude,
                Name = _r.ReadUnicodeString(iv.AddressOf("Name")) ?? "",
            });
        }
        if (!iw.IsComplete) rep.Notes.Add(iw.Describe($"{fi.Name} instance list"));
        return fi;
    }

    private void BuildStack(VolumeStack vs, StructView zero, Dictionary<ulong, (ulong Vol, FrameInfo Frame)> byDevice,
        List<(ulong Vol, StructView View, FrameInfo Frame)> members, ILookup<ulong, (FilterInfo f, InstanceInfo i)> inst)
    {
        ulong start = zero.TryUInt("DeviceObject") ?? 0;
        if (start == 0) { vs.Problem = "the volume's frame-0 device object is NULL"; return; }
        ulong attachedTo = _r.Types.FieldOffset("nt", "_DEVOBJ_EXTENSION", "AttachedTo");
        // Down to the bottom of the file-system stack (the file system's volume device).
        ulong bottom = start;
        var seen = new HashSet<ulong> { start };
        for (int i = 0; i < MaxStack; i++)
        {
            var dv = _r.TryRead("nt", "_DEVICE_OBJECT", bottom);
            if (dv is null) { vs.Problem = $"device object {Output.Fmt.Addr(bottom)} is not readable; the stack below it is unknown"; break; }
            ulong ext = dv.TryUInt("DeviceObjectExtension") ?? 0;
            var lower = ext == 0 ? null : _r.TryReadPointer(ext + attachedTo);
            if (lower is null) { vs.Problem ??= $"device extension of {Output.Fmt.Addr(bottom)} is not readable; the stack below it is unknown"; break; }
            if (lower.Value == 0) break;
            if (!seen.Add(lower.Value)) { vs.Problem = $"cycle in AttachedTo links at {Output.Fmt.Addr(lower.Value)}"; break; }
            bottom = lower.Value;
        }
        // Up from the bottom through AttachedDevice.
        seen.Clear();
        ulong cur = bottom;
        for (int i = 0; i < MaxStack && cur != 0; i++)
        {
            if (!seen.Add(cur)) { vs.Problem = $"cycle in AttachedDevice links at {Output.Fmt.Addr(cur)}"; break; }
            var dv = _r.TryRead("nt", "_DEVICE_OBJECT", cur);
            if (dv is null) { vs.Problem = $"device object {Output.Fmt.Addr(cur)} is not readable; the stack above it is unknown"; break; }
            ulong drv = dv.TryUInt("DriverObject") ?? 0;
            var item = new StackItem { Device = cur, Driver = drv, DriverName = DriverName(drv) };
            if (byDevice.TryGetValue(cur, out var fv) && members.Any(m => m.Vol == fv.Vol))
            {
                item.Kind = StackItemKind.Frame; item.FrameId = fv.Frame.Id; item.FltVolume = fv.Vol;
                item.Altitude = $"{fv.Frame.Low}-{fv.Frame.High}";
                item.Minifilters = inst[fv.Vol]
                    .Select(x => new StackMinifilter { Name = x.f.Name, Altitude = x.i.Altitude, Filter = x.f.Address, Instance = x.i.Address, InstanceName = x.i.Name })
                    .OrderBy(m => LoadOrderGroups.TryParse(m.Altitude, out var a) ? a : 0).ToList();
            }
            else if (vs.Stack.Count == 0) item.Kind = StackItemKind.FileSystem;
            else if (item.DriverName.EndsWith("\\FltMgr", StringComparison.OrdinalIgnoreCase)) item.Kind = StackItemKind.Unknown;
            else { item.Kind = StackItemKind.Legacy; item.Name = DriverNames.ShortName(item.DriverName); item.Service = _drivers.ServiceKey(drv) ?? item.Name; }
            vs.Stack.Add(item);
            cur = dv.TryUInt("AttachedDevice") ?? 0;
        }
    }

    /// <summary>DRIVER_OBJECT.DriverName as the stack shows it ("" for NULL, "driver ..." when unreadable).</summary>
    private string DriverName(ulong drv) => drv == 0 ? "" : _drivers.Name(drv) ?? $"driver {Output.Fmt.Addr(drv)}";

    /// <summary>
    /// Legacy filter altitudes, as fltmc shows them. In order of trust:
    /// 1. -legacy Name=altitude (fltmc's value from the live machine);
    /// 2. what fltmgr itself computes: the service's load-order group (registry Group value) looked up in
    ///    fltmgr!LegacyFilterAltitdudeMap as read from the target;
    /// 3. the frame boundaries fltmgr derived from it (a frame created directly above a legacy filter starts at its
    ///    altitude; a frame's interval is extended up to the highest legacy filter attached above it);
    /// 4. the group's documented altitude range (fltmgr gives a legacy filter the top of its group's range less 0.01,
    ///    e.g. FSFilter Encryption 140000-149999 -> 149998.99), when fltmgr's table is not readable.
    /// </summary>
    private void ResolveLegacyAltitudes(FrameOrderReport rep)
    {
        var legacyItems = rep.Volumes.SelectMany(v => v.Stack).Where(s => s.Kind == StackItemKind.Legacy).ToList();
        if (legacyItems.Count == 0) return;
        LegacyAltitudeMap? map = null;
        var groupNotes = new List<string>();
        var groupCache = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        bool anyUnknown = false, mapNoted = false;

        bool registryInterrupted = false;
        string? GroupOf(StackItem it)
        {
            if (_groups is null || it.Service is null || registryInterrupted) return null;
            if (groupCache.TryGetValue(it.Service, out var g)) return g;
            string? why;
            try { g = _groups.GroupOf(it.Service, out why); }
            catch (OperationCanceledException oce)
            {
                // Ctrl+Break in the registry: said as such (never as a missing type or key), no more registry reads.
                registryInterrupted = true; rep.Interrupted = true;
                rep.Notes.Add($"{oce.Message}: the legacy filters' load-order groups were not read; their altitudes come from the frame boundaries or -legacy only");
                return null;
            }
            if (g is null && why is not null && !groupNotes.Contains(why)) groupNotes.Add(why);
            groupCache[it.Service] = g;
            return g;
        }

        foreach (var vs in rep.Volumes)
        {
            var st = vs.Stack;
            for (int i = 0; i < st.Count; i++)
            {
                var it = st[i];
                if (it.Kind != StackItemKind.Legacy) continue;
                it.LoadOrderGroup = GroupOf(it);
                if (_legacyAltitudes.TryGetValue(it.Name!, out var given) || (it.Service is not null && _legacyAltitudes.TryGetValue(it.Service, out given)))
                { it.Altitude = given; it.AltitudeSource = "-legacy"; continue; }
                var ff = FromFrames(rep, st, i);
                if (it.LoadOrderGroup is not null)
                {
                    map ??= ReadMap(rep);
                    if (map.Entries.TryGetValue(it.LoadOrderGroup, out var ma))
                    {
                        it.Altitude = ma; it.AltitudeSource = $"group \"{it.LoadOrderGroup}\" in fltmgr's legacy altitude table";
                        // Cross-check: fltmgr's table against the frame boundaries it derived.
                        if (ff is { } f && LoadOrderGroups.TryParse(f.Altitude, out var fa) && LoadOrderGroups.TryParse(ma, out var ia) && fa != ia)
                        {
                            string n = $"{vs.Name}: {it.Name} altitude {ma} ({it.AltitudeSource}) but the {f.Source} is {f.Altitude}: the group was changed after boot, or fltmgr adjusted the frame for another filter";
                            if (!rep.Notes.Contains(n)) rep.Notes.Add(n);
                        }
                        continue;
                    }
                }
                if (ff is { } fr) { it.Altitude = fr.Altitude; it.AltitudeSource = fr.Source; continue; }
                if (it.LoadOrderGroup is not null && LoadOrderGroups.All.FirstOrDefault(g => g.Name.Equals(it.LoadOrderGroup, StringComparison.OrdinalIgnoreCase)) is { } dg)
                {
                    it.Altitude = (dg.High - 0.01m).ToString("0.00", CultureInfo.InvariantCulture);
                    it.AltitudeSource = $"group \"{dg.Name}\" ({dg.Low}-{dg.High}), documented range";
                    if (!mapNoted && map?.Problem is { } mp)
                    {
                        rep.Notes.Add($"{mp}: legacy altitudes from the documented load-order group ranges (top of range - 0.01), which fltmc matches on the builds we know");
                        mapNoted = true;
                    }
                    continue;
                }
                if (it.LoadOrderGroup is not null)
                    rep.Notes.Add($"{it.Name}: load-order group \"{it.LoadOrderGroup}\" is neither in fltmgr's legacy altitude table nor a documented file-system filter group; its altitude is unknown");
                anyUnknown = true;
            }
        }
        if (anyUnknown)
        {
            foreach (var n in groupNotes) rep.Notes.Add(n);
            rep.Notes.Add("some legacy filter altitudes are unknown: fltmc computes them from the service's load-order group (registry Group value), which could not be read here, and the frame boundaries do not give them; pass them with -legacy Name=altitude as fltmc shows them");
        }
    }

    private LegacyAltitudeMap ReadMap(FrameOrderReport rep)
    {
        var map = LegacyAltitudeMap.Read(_r);
        rep.LegacyAltitudeMap = map.Address;
        foreach (var (g, a) in map.Entries) rep.LegacyAltitudes[g] = a;
        return map;
    }

    /// <summary>A legacy filter's altitude from the frame boundaries around it, when they give it.</summary>
    private static (string Altitude, string Source)? FromFrames(FrameOrderReport rep, List<StackItem> st, int i)
    {
        if (i + 1 < st.Count && st[i + 1].Kind == StackItemKind.Frame)
        {
            var fr = rep.Frames.First(f => f.Id == st[i + 1].FrameId);
            if (fr.Low != "0" && LoadOrderGroups.TryParse(fr.Low, out _)) return (fr.Low, $"low end of frame {fr.Id}");
        }
        // Topmost legacy filter between the frame below it and the next frame (or the top of the stack).
        int below = st.FindLastIndex(i, x => x.Kind == StackItemKind.Frame);
        int nextFrame = st.FindIndex(i, x => x.Kind == StackItemKind.Frame);
        int topLegacy = nextFrame < 0 ? st.FindLastIndex(x => x.Kind == StackItemKind.Legacy)
                                      : st.FindLastIndex(nextFrame, x => x.Kind == StackItemKind.Legacy);
        if (below >= 0 && topLegacy == i)
        {
            var fr = rep.Frames.First(f => f.Id == st[below].FrameId);
            if (LoadOrderGroups.TryParse(fr.High, out _)) return (fr.High, $"high end of frame {fr.Id}");
        }
        return null;
    }

    private static void BuildFltmc(FrameOrderReport rep)
    {
        var legacy = rep.Volumes.SelectMany(v => v.Stack).Where(s => s.Kind == StackItemKind.Legacy)
            .GroupBy(s => s.Name!, StringComparer.OrdinalIgnoreCase)
            .Select(g => new FltmcRow { Name = g.Key, Altitude = g.Select(x => x.Altitude).FirstOrDefault(a => a is not null) ?? "?", Frame = "<Legacy>" })
            .OrderByDescending(r => LoadOrderGroups.TryParse(r.Altitude, out var a) ? a : -1);
        var mini = rep.Filters
            .OrderByDescending(f => f.FrameId).ThenByDescending(f => LoadOrderGroups.TryParse(f.Altitude, out var a) ? a : -1)
            .Select(f => new FltmcRow { Name = f.Name, Instances = f.Instances.Count, Altitude = f.Altitude, Frame = f.FrameId.ToString(CultureInfo.InvariantCulture) });
        rep.Fltmc.AddRange(legacy);
        rep.Fltmc.AddRange(mini);
    }

    private static void CheckDisorder(FrameOrderReport rep)
    {
        // Legacy filters' load-order groups as the registry gives them (else the documented group of their altitude).
        var groups = rep.Volumes.SelectMany(v => v.Stack).Where(s => s.Kind == StackItemKind.Legacy && s.LoadOrderGroup is not null)
            .GroupBy(s => s.Name!, StringComparer.OrdinalIgnoreCase).ToDictionary(g => g.Key, g => g.First().LoadOrderGroup!, StringComparer.OrdinalIgnoreCase);
        foreach (var vs in rep.Volumes)
        {
            // Flatten bottom to top: minifilter instances inside frames, legacy filters between them.
            var flat = new List<(string Name, string Alt, uint? Frame, bool Legacy, int Pos)>();
            for (int i = 0; i < vs.Stack.Count; i++)
            {
                var it = vs.Stack[i];
                if (it.Kind == StackItemKind.Frame)
                    foreach (var m in it.Minifilters) flat.Add((m.Name, m.Altitude, it.FrameId, false, i));
                else if (it.Kind == StackItemKind.Legacy) flat.Add((it.Name!, it.Altitude ?? "", null, true, i));
            }
            for (int lo = 0; lo < flat.Count; lo++)
            {
                for (int up = lo + 1; up < flat.Count; up++)
                {
                    var a = flat[lo]; var b = flat[up];
                    if (!b.Legacy || a.Pos == b.Pos) continue;
                    if (!LoadOrderGroups.TryParse(a.Alt, out var aa)) continue;
                    string lowerDesc = a.Legacy ? $"{a.Name} ({a.Alt})" : $"{a.Name} ({a.Alt}, frame {a.Frame})";
                    if (!LoadOrderGroups.TryParse(b.Alt, out var ba))
                    {
                        if (!rep.Notes.Any(n => n.StartsWith($"{vs.Name}: {b.Name}")))
                            rep.Notes.Add($"{vs.Name}: {b.Name} is a legacy filter of unknown altitude above {a.Name}; order cannot be checked (use -legacy {b.Name}=<altitude>)");
                        continue;
                    }
                    if (aa <= ba) continue;
                    var d = new Disorder
                    {
                        Volume = vs.Name, Lower = a.Name, LowerAltitude = a.Alt, LowerFrame = a.Frame?.ToString(CultureInfo.InvariantCulture),
                        Upper = b.Name, UpperAltitude = b.Alt,
                        Message = $"{lowerDesc} is below {b.Name} ({b.Alt}): {LoadOrderGroups.Effect(ba, b.Name)}",
                        Fix = SuggestFix(flat, up, aa, ba, b.Name, a, groups),
                    };
                    rep.Disorders.Add(d);
                }
            }
        }
    }

    private static string? SuggestFix(List<(string Name, string Alt, uint? Frame, bool Legacy, int Pos)> flat, int upperIdx, decimal lowerAlt, decimal legacyAlt,
        string legacyName, (string Name, string Alt, uint? Frame, bool Legacy, int Pos) lower, IReadOnlyDictionary<string, string> groups)
    {
        if (lower.Legacy)
            return $"{lower.Name} and {legacyName} are both legacy filters: they attach in load order; make {lower.Name} load after {legacyName} (its load-order group) or replace it with a minifilter";
        // The next legacy filter above the lower one (it bounds the new frame from above).
        var nextLegacy = flat.Skip(upperIdx + 1).FirstOrDefault(x => x.Legacy);
        decimal? upperBound = nextLegacy.Name is not null && LoadOrderGroups.TryParse(nextLegacy.Alt, out var nb) ? nb : null;
        var lgGroup = LoadOrderGroups.Containing(legacyAlt);
        var candidate = LoadOrderGroups.All.FirstOrDefault(g => g.Low > legacyAlt && g.High < lowerAlt && (upperBound is null || g.High < upperBound)
                                                                && (lgGroup is null || g.Low > lgGroup.High));
        if (candidate is null)
            return $"no documented load-order group lies between {legacyName} ({legacyAlt}) and {lower.Name} ({lowerAlt}); a new fltmgr frame cannot be forced between them with a dummy minifilter";
        string after = groups.GetValueOrDefault(legacyName) ?? lgGroup?.Name ?? legacyName;
        string before = upperBound is null ? "" : $" and before {nextLegacy.Name} ({groups.GetValueOrDefault(nextLegacy.Name!) ?? LoadOrderGroups.Containing(upperBound.Value)?.Name ?? nextLegacy.Alt})";
        return $"install a dummy minifilter (e.g. a NullFilter) in load-order group \"{candidate.Name}\" ({candidate.Low}-{candidate.High}), SERVICE_BOOT_START, " +
               $"altitude e.g. {candidate.Low + 30}: it loads after {legacyName} ({after}){before}, so fltmgr creates a new frame above {legacyName} " +
               $"and {lower.Name} ({lowerAlt}) then attaches in that frame, above {legacyName}";
    }
}

