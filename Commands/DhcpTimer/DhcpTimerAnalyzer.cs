using NtSleuth.Commands.Kernel;
using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.DhcpTimer;

/// <summary>Reads the DHCP client's adapter contexts from dhcpcore!DhcpGlobalNICList and judges their lease timers.</summary>
public sealed class DhcpTimerAnalyzer
{
    /// <summary>Bytes of each adapter context scanned for the lease block (one read per context).</summary>
    public const int ContextWindow = 0x400;
    public const int MaxAdapters = 256;

    private readonly CommandContext _ctx;
    private KernelReader R => _ctx.Reader;

    private Symbolizer? _symbols;
    /// <summary>Code addresses -> names (the module list read once per run).</summary>
    private Symbolizer Symbols => _symbols ??= new Symbolizer(_ctx.Target);

    public DhcpTimerAnalyzer(CommandContext ctx) => _ctx = ctx;

    public DhcpTimerReport Analyze()
    {
        var info = _ctx.Target.Info;
        if (info.Kind != TargetKind.User)
            throw new CommandFailedException("!dhcptimer needs a user-mode target: a dump of (or attach to) the svchost.exe that hosts the DHCP client service (dhcpcore.dll). This is a kernel target; use -lease for the arithmetic alone.");

        var module = KernelModules.Find(_ctx.Target.GetModules(), "dhcpcore");
        if (module is null)
            throw new ModuleNotLoadedException("dhcpcore.dll is not loaded in this process. The DHCP client runs in the svchost.exe hosting the 'Dhcp' service (tasklist /svc /fi \"services eq dhcp\"); take a dump of that process.");

        var head = R.Types.TrySymbol("dhcpcore!DhcpGlobalNICList")
                   ?? throw new MissingSymbolException("symbol dhcpcore!DhcpGlobalNICList", "dhcpcore");

        var notes = new List<string>();
        DateTime? now = info.SystemTimeUtc;
        if (now is null) notes.Add("The target's current time is unknown: relative times and the wait from now are not shown.");

        var adapters = new List<AdapterTimers>();
        var walk = new ListWalkResult();
        foreach (var entry in R.WalkList(head, walk, MaxAdapters))
            adapters.Add(AnalyzeContext(entry, now, module));
        if (!walk.IsComplete) notes.Add(walk.Describe("DhcpGlobalNICList"));
        if (walk.Count == 0 && walk.IsComplete) notes.Add("DhcpGlobalNICList is empty: the DHCP client has no adapter contexts.");

        return new DhcpTimerReport
        {
            Module = module.Name,
            ModuleBase = module.Base,
            ModuleVersion = module.Version,
            NicListHead = head,
            NowUtc = now,
            NowSource = now is null ? null : (info.IsDump ? "dump time" : "target's current time"),
            Adapters = adapters,
            MainThread = FindMainThread(),
            Notes = notes,
        };
    }

    private AdapterTimers AnalyzeContext(ulong context, DateTime? now, ModuleInfo module)
    {
        var window = new byte[ContextWindow];
        int got = R.Memory.Read(context, window);
        if (got < 0x40)
            return new AdapterTimers
            {
                Context = context, Verdict = DhcpVerdict.Unreadable,
                VerdictText = $"adapter context at {Output.Fmt.Addr(context)} is not readable (not in the dump)",
            };
        var data = window.AsSpan(0, got);
        var notes = new List<string>();
        if (got < ContextWindow) notes.Add($"only 0x{got:x} of 0x{ContextWindow:x} bytes of the context were readable");

        var block = LeaseBlockFinder.Find(data);
        string? name = FindAdapterName(context, data);
        var (ip, mask) = FindAddress(data, block?.ObtainedOffset ?? data.Length);
        if (block is null)
        {
            return new AdapterTimers
            {
                Context = context, Name = name, IpAddress = ip, SubnetMask = mask,
                Verdict = DhcpVerdict.NotRecognised,
                VerdictText = $"layout of dhcpcore {module.Version ?? "(unknown version)"} not recognised: no lease-time block (obtained <= T1 <= T2 <= expiry, T1 ~ 1/2 and T2 ~ 7/8 of the lease) in the first 0x{got:x} bytes of the context",
                Notes = notes,
            };
        }
        if (!block.DefaultTimers) notes.Add("T1/T2 are not the RFC 2131 defaults (1/2 and 7/8 of the lease): the server probably sent options 58/59.");
        if (block.RunTime is null) notes.Add("RunTime (the next scheduled action) was not found next to the lease block.");

        string? Rel(DateTime t) => now is null ? null : LeaseMath.Relative(t, now.Value);
        var timers = new List<TimerValue>
        {
            new("Obtained", block.Obtained, Rel(block.Obtained), block.ObtainedOffset),
            new("T1", block.T1, Rel(block.T1), block.T1Offset),
            new("T2", block.T2, Rel(block.T2), block.T2Offset),
            new("Expires", block.Expires, Rel(block.Expires), block.ExpiresOffset),
        };
        if (block.RunTime is { } rt) timers.Add(new TimerValue("RunTime", rt, Rel(rt), block.RunTimeOffset!.Value));

        WaitCheck? fromNow = null, scheduled = null;
        if (block.RunTime is { } run)
        {
            scheduled = LeaseMath.CheckWait("RunTime - Obtained", (long)Math.Round((run - block.Obtained).TotalSeconds));
            if (now is not null) fromNow = LeaseMath.CheckWait("RunTime - now", (long)Math.Round((run - now.Value).TotalSeconds));
        }
        var (verdict, text) = Judge(block, now, scheduled);
        return new AdapterTimers
        {
            Context = context, Name = name, IpAddress = ip, SubnetMask = mask,
            TimeUnit = block.Unit, LeaseSeconds = block.LeaseSeconds, DefaultTimers = block.DefaultTimers,
            Timers = timers, Verdict = verdict, VerdictText = text,
            WaitFromNow = fromNow, WaitWhenScheduled = scheduled, Notes = notes,
        };
    }

    internal static (DhcpVerdict, string) Judge(LeaseBlock b, DateTime? now, WaitCheck? scheduled)
    {
        string overflow = scheduled is { Overflows32: true }
            ? $"; the wait to it ({scheduled.Seconds:N0} s = {scheduled.Milliseconds:N0} ms) does not fit a 32-bit millisecond wait"
            : "";
        if (now is null)
            return b.RunTime == b.T1 && scheduled is { Overflows32: true }
                ? (DhcpVerdict.RenewalMissed, "RunTime == T1 and the wait to T1 overflows 32 bits: renewal at T1 will not be scheduled (current time unknown)")
                : (DhcpVerdict.RenewalPending, "current time unknown: cannot judge the timers against now" + overflow);
        var n = now.Value;
        if (n >= b.Expires)
            return (DhcpVerdict.Expired, $"lease expired {LeaseMath.Relative(b.Expires, n)}: the address has been released (APIPA 169.254.x.x follows)" + overflow);
        if (b.RunTime is null)
            return (DhcpVerdict.RenewalPending, "RunTime not found: only the lease times are shown");
        var run = b.RunTime.Value;
        if (run == b.T1 && n > b.T1)
            return (DhcpVerdict.RenewalMissed, $"renewal missed: RunTime == T1 and T1 passed {LeaseMath.Relative(b.T1, n)}; the lease expires {LeaseMath.Relative(b.Expires, n)}" + overflow);
        if (run <= n)
            return (DhcpVerdict.Overdue, $"next action overdue: RunTime passed {LeaseMath.Relative(run, n)} and was not processed" + overflow);
        string which = run == b.T1 ? "T1 renewal" : run == b.T2 ? "T2 rebind" : run == b.Expires ? "expiry" : "next action";
        return (DhcpVerdict.RenewalPending, $"renewal pending normally: {which} {LeaseMath.Relative(run, n)}" + overflow);
    }

    /// <summary>An embedded UNICODE_STRING, else a pointer to a NUL-terminated UTF-16 string (a GUID or a name).</summary>
    private string? FindAdapterName(ulong context, ReadOnlySpan<byte> data)
    {
        int ps = _ctx.Target.Info.PointerSize;
        var candidates = new List<(ulong Ptr, int Len)>();
        for (int off = 0; off + 16 <= data.Length && ps == 8; off += 8)
        {
            ushort len = BinaryPrimitives.ReadUInt16LittleEndian(data[off..]);
            ushort max = BinaryPrimitives.ReadUInt16LittleEndian(data[(off + 2)..]);
            uint pad = BinaryPrimitives.ReadUInt32LittleEndian(data[(off + 4)..]);
            ulong buf = BinaryPrimitives.ReadUInt64LittleEndian(data[(off + 8)..]);
            if (len >= 6 && len % 2 == 0 && len <= max && max <= 1024 && pad == 0 && LooksLikeUserPointer(buf))
                candidates.Add((buf, len));
        }
        foreach (var (p, len) in candidates.Take(4))
        {
            var s = R.ReadUtf16(p, len);
            if (IsName(s)) return s;
        }
        int tried = 0;
        for (int off = 0; off + 8 <= data.Length && tried < 6 && ps == 8; off += 8)
        {
            ulong p = BinaryPrimitives.ReadUInt64LittleEndian(data[off..]);
            if (!LooksLikeUserPointer(p) || (p >= context && p < context + (ulong)data.Length)) continue;
            tried++;
            var b = new byte[160];
            int got = R.Memory.Read(p, b);
            if (got < 8) continue;
            var text = Encoding.Unicode.GetString(b, 0, got & ~1);
            int z = text.IndexOf('\0');
            if (z < 3) continue;
            text = text[..z];
            if (IsName(text)) return text;
        }
        return null;
    }

    private static bool LooksLikeUserPointer(ulong p) => p >= 0x10000 && p < 0x0000_8000_0000_0000 && p % 2 == 0;

    private static bool IsName(string? s) =>
        !string.IsNullOrEmpty(s) && s.Length >= 3 && s.All(c => c >= 0x20 && c < 0x7f);

    /// <summary>An IPv4 address followed by a contiguous subnet mask (both in network byte order), before the lease block.</summary>
    internal static (string?, string?) FindAddress(ReadOnlySpan<byte> data, int limit)
    {
        for (int off = 0; off + 8 <= Math.Min(limit, data.Length); off += 4)
        {
            var ip = data.Slice(off, 4);
            var mask = data.Slice(off + 4, 4);
            uint m = BinaryPrimitives.ReadUInt32BigEndian(mask);
            if (m == 0 || m == 0xFFFFFFFF) continue;
            uint inv = ~m;
            if ((inv & (inv + 1)) != 0 || m < 0xFF000000) continue;
            if (ip[0] == 0 || ip[0] == 127 || ip[0] >= 224) continue;
            uint host = BinaryPrimitives.ReadUInt32BigEndian(ip) & inv;
            if (host == 0 || host == inv) continue;
            return ($"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}", $"{mask[0]}.{mask[1]}.{mask[2]}.{mask[3]}");
        }
        return (null, null);
    }

    /// <summary>Bytes of a thread's stack scanned for return addresses when the engine cannot unwind it.</summary>
    public const int StackScanBytes = 0x2000;

    /// <summary>
    /// When the engine cannot unwind (no unwind data for a module), scans the thread's stack from its stack pointer for
    /// return addresses into dhcpcore!ProcessDhcpRequestForever and into a WaitForMultipleObjectsEx, as `dps` would.
    /// The return into ProcessDhcpRequestForever sits just below its frame's Child-SP, so the r9 home slot of its
    /// outgoing call is at that slot + 8 + 0x18.
    /// </summary>
    private MainThreadWait? ScanStack(ThreadStack t)
    {
        if (t.Frames.Count == 0) return null;
        ulong sp = t.Frames[0].StackOffset;
        var symbols = Symbols;
        ulong pdrfSlot = 0;
        bool inWait = false;
        var names = new List<string>();
        foreach (var slot0 in ReturnAddressStackScan.Scan(R, symbols, sp, StackScanBytes, stopAtUnreadable: true))
        {
            if (symbols.Nearest(slot0.Value) is not { } hit) continue;
            var (n, d) = hit;
            names.Add($"{slot0.SlotAddress:x16} {Symbolizer.Format(n, d)}");
            if (!inWait && n.Contains("WaitForMultipleObjectsEx", StringComparison.OrdinalIgnoreCase)) inWait = true;
            if (n.Equals("dhcpcore!ProcessDhcpRequestForever", StringComparison.OrdinalIgnoreCase) && d > 0) { pdrfSlot = slot0.SlotAddress; break; }
        }
        if (pdrfSlot == 0) return null;
        ulong slot = pdrfSlot + 8 + 0x18;
        uint? timeout = null;
        string note;
        if (inWait && R.Memory.TryReadU32(slot, out var v32))
        {
            timeout = v32;
            note = (v32 == LeaseMath.Infinite
                ? "dwMilliseconds = 0xFFFFFFFF (INFINITE) in ProcessDhcpRequestForever's r9 home slot: the service waits with no timeout, so no timer wakes it for T1/T2"
                : $"dwMilliseconds = 0x{v32:x} ({v32:N0} ms) in ProcessDhcpRequestForever's r9 home slot")
                + " (found by a stack scan: the engine could not unwind this thread; the home slot holds the argument only if the callee spilled r9 there)";
        }
        else note = "found by a stack scan (the engine could not unwind this thread)" + (inWait ? "; the r9 home slot is not readable" : "; no WaitForMultipleObjectsEx return address below it");
        return new MainThreadWait
        {
            ThreadId = t.ThreadId, Thread = t.ThreadAddress, InProcessDhcpRequestForever = true, InWaitForMultipleObjectsEx = inWait,
            Frames = names, TimeoutFromHomeSlot = timeout, TimeoutSlotAddress = slot, TimeoutNote = note,
        };
    }

    private MainThreadWait? FindMainThread()
    {
        IReadOnlyList<ThreadStack> stacks;
        try { stacks = _ctx.Target.GetThreadStacks(64); } catch { return null; }
        var symbols = Symbols;
        foreach (var t in stacks)
        {
            var names = t.Frames.Select(f => symbols.Nearest(f.InstructionOffset) is { } hit ? Symbolizer.Format(hit.Name, hit.Displacement) : $"{f.InstructionOffset:x}").ToList();
            int pdrf = names.FindIndex(n => n.StartsWith("dhcpcore!ProcessDhcpRequestForever", StringComparison.OrdinalIgnoreCase));
            if (pdrf < 0)
            {
                if (ScanStack(t) is { } scanned) return scanned;
                continue;
            }
            bool inWait = names.Take(pdrf).Any(n => n.Contains("WaitForMultipleObjectsEx", StringComparison.OrdinalIgnoreCase));
            uint? timeout = null;
            ulong slot = 0;
            string? note = null;
            if (inWait)
            {
                // x64: dwMilliseconds (4th argument) travels in r9; its home slot is the caller's Child-SP + 0x18.
                slot = t.Frames[pdrf].StackOffset + 0x18;
                if (R.Memory.TryReadU32(slot, out var v))
                {
                    timeout = v;
                    note = v == LeaseMath.Infinite
                        ? "dwMilliseconds = 0xFFFFFFFF (INFINITE) in ProcessDhcpRequestForever's r9 home slot: the service waits with no timeout, so no timer wakes it for T1/T2"
                        : $"dwMilliseconds = 0x{v:x} ({v:N0} ms) in ProcessDhcpRequestForever's r9 home slot";
                    note += " (the home slot holds the argument only if the callee spilled r9 there)";
                }
                else note = $"the r9 home slot at {Output.Fmt.Addr(slot)} is not readable: the timeout cannot be recovered";
            }
            return new MainThreadWait
            {
                ThreadId = t.ThreadId, Thread = t.ThreadAddress,
                InProcessDhcpRequestForever = true, InWaitForMultipleObjectsEx = inWait,
                Frames = names, TimeoutFromHomeSlot = timeout, TimeoutSlotAddress = slot, TimeoutNote = note,
            };
        }
        return null;
    }
}
