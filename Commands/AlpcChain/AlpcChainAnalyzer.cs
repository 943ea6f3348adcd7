using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Symbols;

namespace NtSleuth.Commands.AlpcChain;

/// <summary>
/// Follows ALPC wait chains: waiting thread -> _KALPC_MESSAGE -> queue port (+ owner) -> server thread -> ...
/// Every structure is read by field name from the nt symbols (the field order of _KALPC_MESSAGE differs on
/// Windows 7, _ETHREAD/_KTHREAD/_EPROCESS move on every build), each structure in one request.
/// </summary>
public sealed class AlpcChainAnalyzer
{
    public const int MaxHops = 32;
    public const int MaxInferenceCandidates = 16;

    private const string Nt = "nt";
    private readonly KernelReader _r;
    private readonly KernelThreads _kthreads;
    private readonly KernelProcesses _procs;
    private readonly Irps _irps;
    /// <summary>The report's view of each thread read (filled in as the chain needs: IRPs, wait objects).</summary>
    private readonly Dictionary<ulong, (AlpcThread Report, KernelThread Kernel)> _threads = new();
    private readonly List<string> _notes = new();
    private KernelClock? _clock;

    /// <summary>Items examined from the head of a starved work queue's list when a chain goes into it (each a KD round trip;
    /// !workqueue counts every one).</summary>
    public const int DefaultWorkQueueItems = 1_000;

    public AlpcChainAnalyzer(KernelReader reader, int workQueueItems = DefaultWorkQueueItems)
    {
        _r = reader;
        _kthreads = new KernelThreads(reader);
        _procs = new KernelProcesses(reader, _notes);
        _irps = new Irps(reader, new DriverNames(reader));
        _workQueueItems = workQueueItems;
    }

    private readonly int _workQueueItems;

    private ReadStats Stats => _r.Memory.Stats;

    // ------------------------------------------------------------------ entry points

    public AlpcChainReport AnalyzeThread(ulong thread)
    {
        var report = NewReport("thread", thread);
        if (thread == 0) { report.Problem = "0 is not a thread address: give an _ETHREAD address (e.g. from !process 0 2 or !thread)."; return Finish(report); }
        AlpcThread start;
        Setup(report);
        long rtS = Stats.RoundTrips, bS = Stats.Bytes, pS = Stats.Packets;
        try
        {
            var t = ReadThread(thread, out string? notThread);
            if (t is null) { report.Problem = notThread; return Finish(report); }
            start = t;
        }
        catch (TargetReadException ex)
        {
            report.Problem = $"{Output.Fmt.Addr(thread)} is not a readable thread: {ex.Message}";
            return Finish(report);
        }
        report.StartThread = start;
        if (!start.WaitsForAlpcReply)
        {
            try { FillBlockerDetails(start); } catch (TargetReadException) { }
            report.Problem = $"thread {Output.Fmt.Addr(thread)} ({start.Image} {start.Cid}) is not waiting for an ALPC reply: {DescribeState(start)}";
            return Finish(report);
        }
        long rtStart = Stats.RoundTrips - rtS, bStart = Stats.Bytes - bS;
        var chain = Walk(start, new List<AlpcThread>(), allowInference: true);
        if (chain.Hops.Count > 0) { chain.Hops[0].RoundTrips += rtStart; chain.Hops[0].Bytes += bStart; }
        report.Chains.Add(chain);
        report.Reads = Figures(rtS, bS, chain, p0: pS);
        return Finish(report);
    }

    public AlpcChainReport AnalyzeProcess(ulong process)
    {
        var report = NewReport("process", process);
        Setup(report);
        var waiters = new List<AlpcThread>();
        try
        {
            var p = _procs.Read(process);
            if (p is null) { report.Problem = $"{Output.Fmt.Addr(process)} is not a process object (dispatcher header type is not ProcessObject)."; return Finish(report); }
            waiters.AddRange(ProcessThreads(process, report).Where(t => t.WaitsForAlpcReply));
        }
        catch (TargetReadException ex) { report.Problem = $"{Output.Fmt.Addr(process)}: {ex.Message}"; return Finish(report); }
        return Merge(report, waiters);
    }

    public AlpcChainReport AnalyzeAll()
    {
        var report = NewReport("all", 0);
        Setup(report);
        var waiters = new List<AlpcThread>();
        var walk = new ListWalkResult();
        foreach (var proc in _procs.All(walk))
        {
            if (_r.Memory.IsInterruptRequested) { report.Interrupted = true; break; }
            try
            {
                if (_procs.Read(proc) is null) { _notes.Add($"process list entry {Output.Fmt.Addr(proc + _r.Types.FieldOffset(Nt, "_EPROCESS", "ActiveProcessLinks"))} is not a process object; skipped"); continue; }
                waiters.AddRange(ProcessThreads(proc, report, pageExtend: true).Where(t => t.WaitsForAlpcReply));
            }
            catch (TargetReadException ex) { _notes.Add($"process {Output.Fmt.Addr(proc)}: {ex.Message}; its threads were not examined"); }
            if (report.Interrupted) break;
        }
        if (walk.StopReason == ListStop.Interrupted) report.Interrupted = true;
        if (!walk.IsComplete && walk.StopReason != ListStop.Interrupted) _notes.Add(walk.Describe("process list (PsActiveProcessHead)"));
        return Merge(report, waiters);
    }

    // ------------------------------------------------------------------ chain walk

    /// <summary>Follows the chain from <paramref name="start"/> (which waits for an ALPC reply).</summary>
    private AlpcWaitChain Walk(AlpcThread start, List<AlpcThread> before, bool allowInference)
    {
        var chain = new AlpcWaitChain { WaiterThreads = { start.Address } };
        var path = new List<AlpcThread>(before);
        var cur = start;
        while (true)
        {
            if (_r.Memory.IsInterruptRequested) { chain.End = ChainEnd.Interrupted; break; }
            if (chain.Hops.Count + before.Count >= MaxHops) { chain.End = ChainEnd.HopLimit; chain.Notes.Add($"stopped after {MaxHops} hops"); break; }
            path.Add(cur);
            long rt0 = Stats.RoundTrips, b0 = Stats.Bytes, p0 = Stats.Packets;
            var hop = new AlpcHop { Waiter = cur };
            chain.Hops.Add(hop);
            try
            {
                hop.Message = ReadMessage(cur.AlpcMessage);
                if (hop.Message.WaitingThread != cur.Address)
                    chain.Notes.Add($"message {Output.Fmt.Addr(cur.AlpcMessage)} names waiting thread {Output.Fmt.Addr(hop.Message.WaitingThread)}, not {Output.Fmt.Addr(cur.Address)} (reply in flight or stale pointer)");
                ulong portAddr = PortQueueOf(cur.AlpcMessage);
                hop.QueuePort = portAddr == 0 ? null : ReadPort(portAddr, chain);
                hop.ServerThread = ServerThreadOf(cur.AlpcMessage);
            }
            catch (TargetReadException ex)
            {
                chain.End = ChainEnd.Unreadable;
                chain.Notes.Add($"hop {chain.Hops.Count}: ALPC message {Output.Fmt.Addr(cur.AlpcMessage)} of thread {cur.Image} {cur.Cid}: {ex.Message}");
                Account(hop, rt0, b0);
                break;
            }
            if (hop.ServerThread == 0)
            {
                chain.End = ChainEnd.ServerNotReceiving;
                chain.IdlePort = hop.QueuePort;
                Account(hop, rt0, b0);
                break;
            }
            AlpcThread server;
            try
            {
                var s = ReadThread(hop.ServerThread, out string? notThread);
                if (s is null)
                {
                    chain.End = ChainEnd.Unreadable;
                    chain.Notes.Add($"hop {chain.Hops.Count}: server thread {Output.Fmt.Addr(hop.ServerThread)}: {notThread}");
                    Account(hop, rt0, b0);
                    break;
                }
                server = s;
            }
            catch (TargetReadException ex)
            {
                chain.End = ChainEnd.Unreadable;
                chain.Notes.Add($"hop {chain.Hops.Count}: server thread {Output.Fmt.Addr(hop.ServerThread)} of message {Output.Fmt.Addr(cur.AlpcMessage)}: {ex.Message}");
                Account(hop, rt0, b0);
                break;
            }
            int seen = path.FindIndex(t => t.Address == server.Address);
            if (seen >= 0)
            {
                chain.End = ChainEnd.Deadlock;
                chain.CycleMembers = path.Skip(seen).ToList();
                hop.Next = "direct";
                Account(hop, rt0, b0);
                break;
            }
            if (server.WaitsForAlpcReply)
            {
                hop.Next = "direct";
                Account(hop, rt0, b0);
                cur = server;
                continue;
            }
            // The server thread waits on something else.
            if (allowInference && IsIdleWait(server))
            {
                try { FillWaitObjects(server); } catch (TargetReadException) { }
                var (next, why, sub) = Infer(server, path, chain);
                if (next is not null && sub is not null)
                {
                    hop.Next = "inferred";
                    hop.ServerThreadState = server;
                    hop.Inference = why;
                    Account(hop, rt0, b0);
                    // The chosen candidate's hops carry their own reads; the hop keeps the cost of the inference itself.
                    hop.RoundTrips -= sub.Hops.Sum(x => x.RoundTrips);
                    hop.Bytes -= sub.Hops.Sum(x => x.Bytes);
                    // Splice the candidate's chain.
                    chain.Hops.AddRange(sub.Hops);
                    chain.End = sub.End;
                    chain.Blocker = sub.Blocker;
                    chain.IdlePort = sub.IdlePort;
                    chain.CycleMembers = sub.CycleMembers;
                    chain.Notes.AddRange(sub.Notes);
                    break;
                }
                if (why is not null) chain.Notes.Add(why);
            }
            chain.End = ChainEnd.Blocker;
            chain.Blocker = server;
            Account(hop, rt0, b0);
            break;
        }
        if (chain.Blocker is not null && before.Count == 0)
        {
            long rb = Stats.RoundTrips, bb = Stats.Bytes;
            try { FillBlockerDetails(chain.Blocker); }
            catch (TargetReadException ex) { chain.Notes.Add($"blocker {chain.Blocker.Image} {chain.Blocker.Cid}: {ex.Message}"); }
            chain.BlockerRoundTrips = Stats.RoundTrips - rb; chain.BlockerBytes = Stats.Bytes - bb;
            long rq = Stats.RoundTrips, bq = Stats.Bytes;
            try { chain.WorkQueue = IntoWorkQueues(chain.Blocker); }
            catch (TargetReadException ex) { chain.Notes.Add($"system work queues: {ex.Message}"); }
            catch (MissingSymbolException ex) { chain.Notes.Add($"system work queues not examined: {ex.Message} is not in the symbols"); }
            chain.WorkQueueRoundTrips = Stats.RoundTrips - rq; chain.WorkQueueBytes = Stats.Bytes - bq;
        }
        chain.Summary = AlpcChainRenderer.SummaryLine(chain);
        return chain;
    }

    /// <summary>A user-mode wait without pending I/O: the thread most likely waits for another thread of its process.</summary>
    private bool IsIdleWait(AlpcThread t) => t.State == "Waiting" && t.WaitMode == "UserMode" && !HasIrps(t);

    /// <summary>IrpList not empty (from the thread already read: no round trip).</summary>
    private bool HasIrps(AlpcThread t) => t.Irps.Count > 0 || (_threads.TryGetValue(t.Address, out var k) && k.Kernel.HasIrps);

    /// <summary>
    /// The server thread does not wait on ALPC and does nothing visible: look at the other threads of its process that
    /// wait for ALPC replies, follow each, and pick the one whose chain ends at a thread that really does something
    /// (pending IRPs or a kernel-mode wait), then the longest wait. This is an inference, and is reported as one.
    /// </summary>
    private (AlpcThread? Next, string? Why, AlpcWaitChain? Sub) Infer(AlpcThread server, List<AlpcThread> path, AlpcWaitChain chain)
    {
        List<AlpcThread> candidates;
        try
        {
            candidates = ProcessThreads(server.Process, null)
                .Where(t => t.WaitsForAlpcReply && t.Address != server.Address && path.All(p => p.Address != t.Address))
                .ToList();
        }
        catch (TargetReadException ex)
        {
            return (null, $"server thread {server.Image} {server.Cid} waits {server.WaitReason} ({server.WaitMode}); the threads of {server.Image} could not be examined: {ex.Message}", null);
        }
        if (candidates.Count == 0)
            return (null, $"server thread {server.Image} {server.Cid} waits {server.WaitReason} ({server.WaitMode}) and no other thread of {server.Image} waits for an ALPC reply: it is taken as the blocker", null);
        if (candidates.Count > MaxInferenceCandidates)
        {
            chain.Notes.Add($"{candidates.Count} threads of {server.Image} wait for ALPC replies; the {MaxInferenceCandidates} longest waits were followed");
            candidates = candidates.OrderByDescending(c => c.Ticks).Take(MaxInferenceCandidates).ToList();
        }
        var newPath = new List<AlpcThread>(path) { server };
        AlpcWaitChain? best = null; AlpcThread? bestT = null; int bestScore = -1;
        foreach (var c in candidates)
        {
            var sub = Walk(c, newPath, allowInference: true);
            int score = sub.End switch
            {
                ChainEnd.Blocker when sub.Blocker is not null && !IsIdleWait(sub.Blocker) => 5,
                ChainEnd.Deadlock => 4,
                ChainEnd.ServerNotReceiving => 3,
                // Unknown (unreadable) beats a known idle wait: that one does not explain the hang.
                ChainEnd.Unreadable => 2,
                ChainEnd.Blocker => 1,
                _ => 0,
            };
            if (score > bestScore || (score == bestScore && bestT is not null && c.Ticks > bestT.Ticks))
            { best = sub; bestT = c; bestScore = score; }
        }
        string others = candidates.Count == 1 ? $"the only other thread of {server.Image} waiting for an ALPC reply"
            : $"of the {candidates.Count} threads of {server.Image} waiting for ALPC replies, the one whose chain ends at an active blocker";
        string why = $"inference: server thread {server.Image} {server.Cid} waits {server.WaitReason} ({server.WaitMode}) on " +
                     $"{(server.WaitObjects.Count > 0 ? server.WaitObjects[0].Type : "an object")}, not on ALPC; followed {bestT!.Image} {bestT.Cid}, {others}";
        return (bestT, why, best);
    }

    private void Account(AlpcHop hop, long rt0, long b0)
    {
        hop.RoundTrips = Stats.RoundTrips - rt0;
        hop.Bytes = Stats.Bytes - b0;
    }

    // ------------------------------------------------------------------ -p / -all merging

    private AlpcChainReport Merge(AlpcChainReport report, List<AlpcThread> waiters)
    {
        long rt0 = Stats.RoundTrips, b0 = Stats.Bytes, p0 = Stats.Packets;
        var chains = new List<(AlpcThread Waiter, AlpcWaitChain Chain)>();
        int hops = 0;
        foreach (var w in waiters)
        {
            if (_r.Memory.IsInterruptRequested) { report.Interrupted = true; break; }
            var chain = Walk(w, new List<AlpcThread>(), allowInference: true);
            hops += chain.Hops.Count;
            chains.Add((w, chain));
        }
        // A waiter that is a later hop of another waiter's chain is part of that chain, not a start of its own.
        var inner = new HashSet<ulong>(chains.SelectMany(c => c.Chain.Hops.Skip(1).Select(h => h.Waiter.Address)));
        var groups = new Dictionary<string, AlpcWaitChain>();
        void Add(AlpcThread w, AlpcWaitChain chain)
        {
            string key = EndKey(chain);
            if (groups.TryGetValue(key, out var g))
            {
                if (g.WaiterThreads.Contains(w.Address)) return;
                g.Waiters++;
                g.WaiterThreads.Add(w.Address);
                if (chain.Hops.Count > g.Hops.Count)
                {
                    chain.Waiters = g.Waiters; chain.WaiterThreads = g.WaiterThreads;
                    groups[key] = chain;
                }
            }
            else groups[key] = chain;
        }
        foreach (var (w, c) in chains) if (!inner.Contains(w.Address)) Add(w, c);
        // Chains made only of inner waiters (a pure cycle) are still reported, once.
        foreach (var (w, c) in chains) if (inner.Contains(w.Address) && !groups.ContainsKey(EndKey(c))) Add(w, c);
        report.Chains = groups.Values.OrderByDescending(c => c.Waiters).ThenByDescending(c => c.Hops.Count).ToList();
        foreach (var c in report.Chains) c.Summary = AlpcChainRenderer.SummaryLine(c);
        if (waiters.Count == 0 && report.Problem is null)
            report.Problem = report.Interrupted
                ? $"interrupted by user (Ctrl+Break) after {report.ThreadsExamined} thread(s), before any thread waiting for an ALPC reply was found."
                : report.Mode == "all" ? "no thread in the system waits for an ALPC reply." : "no thread of this process waits for an ALPC reply.";
        report.Reads = Figures(rt0, b0, null, hops, p0);
        return Finish(report);
    }

    // ------------------------------------------------------------------ past the blocker: the system work queues

    private WorkQueueScan? _queues;

    /// <summary>
    /// The blocker waits in kernel mode with I/O pending, or is itself a system worker thread: the I/O (or the worker's
    /// next item) can only make progress when a system worker takes its work item. If a system work queue is starved
    /// (items pending, no worker free), the chain goes on into it: the backlog (the head of the list, bounded), the items
    /// of the drivers the blocker's IRPs are pending on, and where the queue's workers are blocked.
    /// </summary>
    private AlpcWorkQueueEnd? IntoWorkQueues(AlpcThread b)
    {
        if (b.State != "Waiting" || b.WaitMode != "KernelMode" || b.WaitsForAlpcReply) return null;
        // KTHREAD.Queue: the _KQUEUE/_KPRIQUEUE a system worker belongs to (from the thread already read).
        ulong ownQueue = _threads.TryGetValue(b.Address, out var kb) ? kb.Kernel.View.TryUInt("Tcb.Queue") ?? 0 : 0;
        if (b.Irps.Count == 0 && ownQueue == 0) return null;
        _queues ??= new SystemWorkQueues(_r, EnsureTick()).Read(new WorkQueueScan(), itemLimit: _workQueueItems);
        if (_queues.Interrupted) return null;
        // A worker thread: its own queue (the _KQUEUE/_KPRIQUEUE at the start of the _EX_WORK_QUEUE).
        var own = ownQueue == 0 ? null : _queues.Queues.FirstOrDefault(q => q.Address == ownQueue);
        var lists = _queues.Queues.SelectMany(q => q.Lists.Where(l => l.Pending > 0 || l.Limited).Select(l => (Queue: q, List: l)))
            .Where(x => x.Queue.Workers.Idle == 0 && x.Queue.Workers.Total > 0).OrderByDescending(x => x.Queue.Pending).ToList();
        (WorkQueueInfo Queue, WorkList List)? pick = null;
        string why;
        if (own is not null)
        {
            var l = own.Lists.OrderByDescending(x => x.Pending).FirstOrDefault();
            if (l is null) return null;
            pick = (own, l);
            why = $"the blocker is a worker thread of the system work queue {own.Name}";
        }
        else
        {
            if (lists.Count == 0) return null;
            pick = lists[0];
            var irp = b.Irps[0];
            why = $"the blocker waits on {b.Irps.Count} IRP(s) (the first pending in {Output.Fmt.Clean(irp.Driver ?? "an unnamed driver")}); " +
                  "drivers complete such I/O from system worker threads, and no worker is free";
        }
        var (q, list) = pick.Value;
        var w = q.Workers;
        var top = w.Groups.FirstOrDefault();
        string where = q.Node is null ? list.Name : $"{list.Name}, {q.Name}";
        var end = new AlpcWorkQueueEnd
        {
            Why = why, Queue = where, QueueAddress = q.Address, Starved = w.Idle == 0 && q.Pending > 0, Pending = q.Pending, Examined = list.Pending,
            Workers = w.Total, IdleWorkers = w.Idle, DynamicWorkers = w.Dynamic, StaticWorkers = w.Static, MaximumWorkers = w.Maximum, MaximumOf = w.MaximumOf,
            BlockedIn = top?.BlockedIn, CalledFrom = top?.CalledFrom, BlockedInCount = top?.Count ?? 0, WorkerState = top?.State,
        };
        if (top is not null) { end.WorkerFrames.AddRange(top.Frames); end.WorkerThreads.AddRange(top.Threads.Take(8).Select(t => t.Address)); }
        foreach (var g in list.Groups)
            end.Routines.Add(new AlpcQueuedWork { Routine = g.Routine, Driver = g.Driver, Count = g.Count, FirstPosition = g.FirstPosition, FirstItem = g.FirstItem });
        var drivers = new HashSet<string>(b.Irps.Select(i => i.Driver).OfType<string>(), StringComparer.OrdinalIgnoreCase);
        foreach (var g in end.Routines.Where(g => g.Driver is not null && drivers.Contains(g.Driver))) end.BlockerDriverItems.Add(g);
        if (list.WalkNote is not null) end.Notes.Add(list.WalkNote);
        end.Notes.AddRange(q.Notes);
        string dyn = w.Composition() is { Length: > 0 } comp ? $" ({comp})" : "";
        string blocked = top?.BlockedIn is { } bi
            ? $"{(top.Count == w.Busy ? $"all {w.Total}" : $"{top.Count} of {w.Total}")} workers{dyn} blocked in {bi}{(top.CalledFrom is { } cf ? $" (called from {cf})" : "")}"
            : $"{w.Busy} of {w.Total} workers busy";
        string mostly = end.Routines.Count > 0 ? $", mostly {end.Routines[0].Routine}" : "";
        end.Verdict = end.Starved
            ? $"{where} starved: {end.Pending:N0} items pending{mostly} -> {blocked}"
            : $"{where}: {end.Pending:N0} items pending{mostly}, {w.Idle} of {w.Total} workers idle";
        return end;
    }

    private static string EndKey(AlpcWaitChain c) => c.WorkQueue is { } q ? "Q" + q.QueueAddress.ToString("x") : c.End switch
    {
        ChainEnd.Blocker => "B" + c.Blocker?.Address.ToString("x"),
        ChainEnd.ServerNotReceiving => "S" + c.IdlePort?.Address.ToString("x"),
        ChainEnd.Deadlock => "D" + string.Join(",", c.CycleMembers.Select(m => m.Address).Order().Select(a => a.ToString("x"))),
        _ => c.End + ":" + c.Hops[^1].Waiter.Address.ToString("x"),
    };

    // ------------------------------------------------------------------ readers

    /// <summary>Reads an _ETHREAD in one request (<see cref="KernelThreads"/>); null (with the reason) when the address is not a thread object.</summary>
    private AlpcThread? ReadThread(ulong address, out string? notThread, bool pageExtend = false)
    {
        notThread = null;
        if (_threads.TryGetValue(address, out var cached)) return cached.Report;
        var k = _kthreads.Read(address, out notThread, pageExtend);
        if (k is null) return null;
        var t = new AlpcThread
        {
            Address = address,
            Process = k.Process,
            Pid = k.Pid,
            Tid = k.Tid,
            State = k.State,
        };
        if (k.IsWaiting)
        {
            t.WaitReasonCode = k.WaitReasonCode;
            t.WaitReason = k.WaitReason;
            t.WaitMode = k.WaitMode;
            t.WaitTick = k.WaitTick;
            var clock = EnsureTick();
            t.Ticks = clock.TicksSince(t.WaitTick);
            t.WaitSeconds = clock.SecondsSince(t.WaitTick);
            if (t.WaitSeconds is { } secs) t.WaitTime = Output.Fmt.Duration(TimeSpan.FromSeconds(secs));
            var et = k.View;
            t.AlpcMessage = et.Has("AlpcMessage") ? et.Ptr("AlpcMessage") : 0;
            t.AlpcMessageId = et.Has("AlpcMessageId") ? et.UInt("AlpcMessageId") : 0;
            if (t.WaitReasonCode != KernelEnums.WrLpcReply) t.AlpcMessage = 0;
        }
        var p = _procs.Name(t.Process);
        t.Image = p.Image;
        if (t.Pid == 0 && p.Pid != 0) t.Pid = p.Pid;
        _threads[address] = (t, k);
        return t;
    }

    private readonly Dictionary<ulong, StructView> _messages = new();

    private StructView MessageView(ulong msg)
    {
        if (!_messages.TryGetValue(msg, out var v)) _messages[msg] = v = _r.Read(Nt, "_KALPC_MESSAGE", msg);
        return v;
    }

    private AlpcMessageInfo ReadMessage(ulong msg)
    {
        var m = MessageView(msg);
        int type = (short)m.UInt("PortMessage.u2.s2.Type");
        return new AlpcMessageInfo
        {
            Address = msg,
            MessageId = m.U32("PortMessage.MessageId"),
            CallbackId = m.U32("PortMessage.CallbackId"),
            Sequence = (int)m.Int("SequenceNo"),
            TypeCode = type,
            Type = AlpcNames.MessageType(type),
            DataLength = (ushort)m.UInt("PortMessage.u1.s1.DataLength"),
            TotalLength = (ushort)m.UInt("PortMessage.u1.s1.TotalLength"),
            QueueType = AlpcNames.QueueType(m.UInt("u1.s1.QueueType")),
            WaitingThread = m.Ptr("WaitingThread"),
            OwnerPort = m.Ptr("OwnerPort"),
        };
    }

    private ulong PortQueueOf(ulong msg) => MessageView(msg).Ptr("PortQueue");
    private ulong ServerThreadOf(ulong msg) => MessageView(msg).Ptr("ServerThread");

    private AlpcPortInfo ReadPort(ulong port, AlpcWaitChain chain)
    {
        var info = new AlpcPortInfo { Address = port };
        try
        {
            var p = _r.Read(Nt, "_ALPC_PORT", port);
            info.OwnerProcess = p.Ptr("OwnerProcess");
            info.MainQueueLength = (uint?)p.TryUInt("MainQueueLength");
            info.PendingQueueLength = (uint?)p.TryUInt("PendingQueueLength");
            var owner = _procs.Name(info.OwnerProcess);
            info.OwnerImage = owner.Image; info.OwnerPid = owner.Pid;
        }
        catch (TargetReadException ex) { chain.Notes.Add($"port {Output.Fmt.Addr(port)}: {ex.Message}; owner unknown"); }
        return info;
    }

    /// <summary>The threads of a process (EPROCESS.ThreadListHead / ETHREAD.ThreadListEntry), bounded and cycle-safe.</summary>
    private List<AlpcThread> ProcessThreads(ulong process, AlpcChainReport? report, bool pageExtend = false)
    {
        var list = new List<AlpcThread>();
        var walk = new ListWalkResult();
        var threads = _procs.Threads(process, walk, out string image);
        foreach (var ta in threads)
        {
            try
            {
                var t = ReadThread(ta, out _, pageExtend);
                if (t is not null) list.Add(t);
                if (report is not null) report.ThreadsExamined++;
            }
            catch (TargetReadException ex) { _notes.Add($"thread {Output.Fmt.Addr(ta)} of {image}: {ex.Message}"); break; }
        }
        if (walk.StopReason == ListStop.Interrupted && report is not null) report.Interrupted = true;
        else if (!walk.IsComplete) _notes.Add(walk.Describe($"thread list of {image} ({Output.Fmt.Addr(process)})"));
        return list;
    }

    // ------------------------------------------------------------------ blocker details

    private void FillBlockerDetails(AlpcThread t)
    {
        FillIrps(t);
        FillWaitObjects(t);
    }

    private readonly HashSet<ulong> _irpsDone = new();

    private void FillIrps(AlpcThread t)
    {
        if (!_irpsDone.Add(t.Address) || !_threads.TryGetValue(t.Address, out var k)) return;
        var walk = new ListWalkResult();
        foreach (var irp in _irps.OfThread(k.Kernel, walk))
            t.Irps.Add(new AlpcIrp
            {
                Address = irp.Address, StackCount = irp.StackCount, CurrentLocation = irp.CurrentLocation,
                MajorFunction = irp.MajorFunction, MinorFunction = irp.MinorFunction, Device = irp.Device, Driver = irp.Driver,
                FileObject = irp.FileObject, FileName = irp.FileName, Note = irp.Note,
            });
        if (!walk.IsComplete)
        {
            t.IrpListPartial = true;
            _notes.Add(walk.Describe($"IRP list of thread {Output.Fmt.Addr(t.Address)}"));
        }
    }

    private readonly HashSet<ulong> _waitsDone = new();

    private void FillWaitObjects(AlpcThread t)
    {
        if (t.State != "Waiting" || !_waitsDone.Add(t.Address)) return;
        if (!_threads.TryGetValue(t.Address, out var k)) return;
        foreach (var o in WaitBlocks.Objects(_r, k.Kernel)) t.WaitObjects.Add(new AlpcWaitObject { Address = o.Address, Type = o.Type });
    }

    // ------------------------------------------------------------------ time

    /// <summary>The clock, read once per run (<see cref="KernelClock"/>).</summary>
    private KernelClock EnsureTick() => _clock ??= KernelClock.Read(_r, _notes);

    // ------------------------------------------------------------------ helpers

    private AlpcChainReport NewReport(string mode, ulong start) => new() { Mode = mode, Start = start, Build = _r.Target.Info.BuildNumber };

    /// <summary>Read figures since (rt0, b0, p0); the modelled KDNET time counts KD packets (<see cref="KdnetModel"/>).</summary>
    private AlpcReadFigures Figures(long rt0, long b0, AlpcWaitChain? chain, int hops = 0, long p0 = 0)
    {
        var f = new AlpcReadFigures
        {
            RoundTrips = Stats.RoundTrips - rt0,
            Bytes = Stats.Bytes - b0,
            SetupRoundTrips = _setupRt,
            SetupBytes = _setupBytes,
            ModelledKdnetSeconds = Math.Round(KdnetModel.Seconds(Stats.Packets - p0 + _setupPackets, Stats.Bytes - b0 + _setupBytes), 4),
        };
        if (chain is not null)
        {
            f.Hops = chain.Hops.Count;
            f.HopRoundTrips = chain.Hops.Sum(h => h.RoundTrips);
            f.HopBytes = chain.Hops.Sum(h => h.Bytes);
            f.BlockerRoundTrips = chain.BlockerRoundTrips;
            f.BlockerBytes = chain.BlockerBytes;
            f.WorkQueueRoundTrips = chain.WorkQueueRoundTrips;
            f.WorkQueueBytes = chain.WorkQueueBytes;
        }
        else { f.Hops = hops; f.HopRoundTrips = f.RoundTrips; f.HopBytes = f.Bytes; }
        return f;
    }

    private long _setupRt, _setupBytes, _setupPackets;

    /// <summary>One-time reads of a run: the clock (KeMaximumIncrement, KUSER_SHARED_DATA tick count).</summary>
    private void Setup(AlpcChainReport report)
    {
        long rt = Stats.RoundTrips, b = Stats.Bytes, p = Stats.Packets;
        EnsureTick();
        _setupRt = Stats.RoundTrips - rt; _setupBytes = Stats.Bytes - b; _setupPackets = Stats.Packets - p;
    }

    private AlpcChainReport Finish(AlpcChainReport r)
    {
        r.CurrentTick = _clock?.CurrentTick ?? 0;
        r.TickIncrement = _clock?.TickIncrement ?? 0;
        r.TickSource = _clock?.TickSource ?? "";
        foreach (var n in _notes.Distinct()) r.Notes.Add(n);
        return r;
    }

    public static string DescribeState(AlpcThread t)
    {
        if (t.State != "Waiting") return $"it is {t.State}";
        string objs = t.WaitObjects.Count == 0 ? "" : " on " + string.Join(", ", t.WaitObjects.Select(o => $"{o.Type} {Output.Fmt.Addr(o.Address)}"));
        string irps = t.Irps.Count == 0 ? "" : $", {t.Irps.Count} IRP(s) pending";
        return $"it waits {t.WaitReason} ({t.WaitMode}){objs}{(t.WaitTime is null ? "" : " for " + t.WaitTime)}{irps}";
    }
}
