using NtSleuth.Commands.AlpcChain;
using NtSleuth.Commands.Kernel;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>One bench row: what the command cost and what the manual procedure it replaces costs on the same target.</summary>
public sealed record AlpcBenchRow(string Build, string Case, long RoundTrips, long Bytes, long ManualRoundTrips, long ManualBytes, int ManualCommands)
{
    public double Seconds => KdnetModel.Seconds(RoundTrips, Bytes);
    public double ManualSeconds => KdnetModel.Seconds(ManualRoundTrips, ManualBytes);
    public double Ratio => Seconds == 0 ? 0 : ManualSeconds / Seconds;
    public override string ToString() =>
        $"alpcchain  {Case,-22} {Build,-7} {RoundTrips,6} RT {Bytes,10:N0} B {Seconds,7:0.000} s | manual {ManualCommands,3} cmds {ManualRoundTrips,6} RT {ManualBytes,10:N0} B {ManualSeconds,7:0.000} s | x{Ratio:0.0}";
}

/// <summary>
/// Bench case for !alpcchain on the logon-hang-alpc scenario, with a model of the manual procedure of seed 003:
/// !thread on each waiter, !alpc /m on each message, !process &lt;server&gt; 2 where the server thread is idle (then
/// !thread + !alpc /m on every ALPC waiter of that process, as the seed's author did for lsm), !irp and dt _FILE_OBJECT on
/// the blocker. Each debugger command reads its structures itself (one request per structure); the engine's cache on a
/// stopped target serves what an earlier command read; both sides are counted in KD packets;
/// !thread also reads the kernel stack it unwinds (0x740 bytes, the seed's Stack Init - Current).
/// </summary>
public static class AlpcChainBench
{
    public const int StackBytes = 0x740;

    public static IEnumerable<AlpcBenchRow> Run(LabBuild build, int scale = 1, string? variant = null)
    {
        var s = new AlpcLogonHangScenario().Build(build, new ScenarioOptions { Scale = scale, Variant = variant });
        string label = (scale == 1 ? "seed-003 chain" : $"seed-003 chain x{scale}") + (variant is null ? "" : $" ({variant})");
        var cmd = Measure(s, r => r.AnalyzeThread(AlpcLogonHangScenario.WinlogonThread));
        var manual = ManualChain(s);
        yield return new AlpcBenchRow(build.Key, label, cmd.Packets, cmd.TransferBytes, manual.RoundTrips, manual.Bytes, manual.Commands);
        var all = Measure(s, r => r.AnalyzeAll());
        var manualAll = ManualAll(s);
        yield return new AlpcBenchRow(build.Key, (scale == 1 ? "-all" : $"-all x{scale}") + (variant is null ? "" : $" ({variant})"), all.Packets, all.TransferBytes, manualAll.RoundTrips, manualAll.Bytes, manualAll.Commands);
    }

    private static ReadStats Measure(ScenarioResult s, Func<AlpcChainAnalyzer, AlpcChainReport> f)
    {
        var stats = new ReadStats();
        f(new AlpcChainAnalyzer(new KernelReader(s.CreateTarget(), stats)));
        return stats;
    }

    private sealed class Manual(ScenarioResult s)
    {
        public long RoundTrips, Bytes; public int Commands;
        private readonly KernelScenarioBuilder _b = s.Builder;
        // One reader for the whole procedure: its cache stands for the engine's cache on a stopped target (a structure
        // read by one debugger command is not read again by the next); counted in KD packets like the command.
        private readonly ReadStats _stats = new();
        private KernelReader? _reader;
        private KernelReader _r => _reader ??= new KernelReader(s.CreateTarget(), _stats);
        private long _p0, _b0;
        private readonly HashSet<ulong> _stacks = new();

        private void Begin() { Commands++; _p0 = _stats.Packets; _b0 = _stats.TransferBytes; }
        private void End() { RoundTrips += _stats.Packets - _p0; Bytes += _stats.TransferBytes - _b0; }
        private StructView? Read(string type, ulong a) => _r.TryRead("nt", type, a);

        public void Thread(ulong t)
        {
            Begin();
            var th = Read("_ETHREAD", t);
            if (th is not null)
            {
                Read("_EPROCESS", th.Ptr("Tcb.Process"));
                ulong wb = th.Ptr("Tcb.WaitBlockList");
                var w = wb == 0 ? null : Read("_KWAIT_BLOCK", wb);
                if (w is not null) Read("_DISPATCHER_HEADER", w.Ptr("Object"));
                if (th.U8("Tcb.WaitReason") == KernelEnums.WrLpcReply && th.Ptr("AlpcMessage") is var m and not 0)
                {
                    var msg = Read("_KALPC_MESSAGE", m);
                    if (msg is not null) Read("_ALPC_PORT", msg.Ptr("PortQueue"));
                }
                if (_stacks.Add(t)) _stats.AddRead(StackBytes); // the kernel stack !thread unwinds (once: the engine caches it)
            }
            End();
        }

        public void AlpcM(ulong m)
        {
            Begin();
            var msg = Read("_KALPC_MESSAGE", m);
            if (msg is not null)
            {
                Read("_ALPC_PORT", msg.Ptr("OwnerPort"));
                var q = Read("_ALPC_PORT", msg.Ptr("PortQueue"));
                if (q is not null) Read("_EPROCESS", q.Ptr("OwnerProcess"));
                Read("_ETHREAD", msg.Ptr("WaitingThread"));
            }
            End();
        }

        /// <summary>!process P 2: the process and, per thread, the thread and its wait object.</summary>
        public List<ulong> Process2(ulong p)
        {
            Begin();
            var list = new List<ulong>();
            var pr = Read("_EPROCESS", p);
            if (pr is not null)
            {
                ulong off = _r.Types.FieldOffset("nt", "_ETHREAD", "ThreadListEntry");
                foreach (var link in _r.WalkList(pr.AddressOf("ThreadListHead"), new ListWalkResult(), 100_000))
                {
                    var th = Read("_ETHREAD", link - off);
                    if (th is null) continue;
                    list.Add(link - off);
                    ulong wb = th.Ptr("Tcb.WaitBlockList");
                    var w = wb == 0 ? null : Read("_KWAIT_BLOCK", wb);
                    if (w is not null) Read("_DISPATCHER_HEADER", w.Ptr("Object"));
                }
            }
            End();
            return list;
        }

        public void Irp(ulong irp)
        {
            Begin();
            var v = Read("_IRP", irp);
            if (v is not null)
            {
                int n = (sbyte)v.U8("StackCount");
                ulong first = irp + _r.Types.Get("nt", "_IRP").Size;
                ulong sz = _r.Types.Get("nt", "_IO_STACK_LOCATION").Size;
                _r.Memory.Prefetch(first, (int)sz * n);
                for (int i = 0; i < n; i++)
                {
                    var sl = Read("_IO_STACK_LOCATION", first + (ulong)i * sz);
                    if (sl is null || sl.Ptr("DeviceObject") == 0) continue;
                    var d = Read("_DEVICE_OBJECT", sl.Ptr("DeviceObject"));
                    if (d is not null && d.Ptr("DriverObject") is var drv and not 0)
                        _r.ReadUnicodeString(drv + _r.Types.FieldOffset("nt", "_DRIVER_OBJECT", "DriverName"));
                }
            }
            End();
        }

        public void FileName(ulong f)
        {
            Begin();
            _r.ReadUnicodeString(f + _r.Types.FieldOffset("nt", "_FILE_OBJECT", "FileName"));
            End();
        }

        /// <summary>
        /// The seed's second half, by hand: <c>dt nt!_KQUEUE</c> on each queue (8.1+: <c>dt nt!_EX_WORK_QUEUE</c>), the
        /// dynamic-thread and depth counters, then <c>!list "-t nt!_LIST_ENTRY.Flink -e -x \"dq poi(@$extret) L1; dps
        /// poi(@$extret)+0x20 L1\"" head</c> over every pending item (the link and the routine: two requests per item,
        /// the items being scattered), and <c>!thread</c> on each worker of the queue to see where it is blocked.
        /// </summary>
        public void WorkQueues(ScenarioResult sr)
        {
            if (!sr.Facts.TryGetValue("delayedQueue", out var queue) || !sr.Facts.TryGetValue("delayedHead", out var head)) return;
            var exwq = _r.Types.Get("nt", "_EX_WORK_QUEUE");
            bool kq = exwq.HasField("WorkerQueue");
            Begin();
            Read("_EX_WORK_QUEUE", queue);
            End();
            Begin(); _r.Memory.TryReadU32(queue + exwq.Size - 0x10, out _); End();   // dd +0x40 / +0x4c (the counters)
            ulong routineOff = _r.Types.FieldOffset("nt", "_IO_WORKITEM", "Routine");
            Begin();
            foreach (var item in _r.WalkList(head, new ListWalkResult(), 1_000_000))
                _r.Memory.TryReadPointer(item + routineOff, out _);
            End();
            string inner = kq ? "WorkerQueue" : "WorkPriQueue";
            ulong threadHead = queue + _r.Types.FieldOffset("nt", "_EX_WORK_QUEUE", inner + ".ThreadListHead");
            ulong qOff = _r.Types.FieldOffset("nt", "_KTHREAD", "QueueListEntry");
            foreach (var link in _r.WalkList(threadHead, new ListWalkResult(), 4096).ToList()) Thread(link - qOff);
        }

        public bool WaitsAlpc(ulong t, out ulong msg)
        {
            var th = _b.At("_ETHREAD", t);
            msg = _b.ReadPointer(th.AddressOf("AlpcMessage"));
            return _b.ReadLe(th.AddressOf("Tcb.WaitReason"), 1) == (ulong)KernelEnums.WrLpcReply && msg != 0;
        }
    }

    /// <summary>The seed's hand walk from winlogon's thread.</summary>
    private static Manual ManualChain(ScenarioResult s, bool workQueues = true)
    {
        var m = new Manual(s);
        m.Thread(AlpcLogonHangScenario.WinlogonThread);
        m.AlpcM(AlpcLogonHangScenario.Msg1);
        m.Thread(AlpcLogonHangScenario.LogonUiServerThread);
        m.Process2(AlpcLogonHangScenario.LogonUiProcess);
        m.Thread(AlpcLogonHangScenario.LogonUiWaiter);
        m.AlpcM(AlpcLogonHangScenario.Msg2);
        m.Thread(AlpcLogonHangScenario.LsmServerThread);
        // "I dumped out all the threads and their LPC message structure": every ALPC waiter of lsm and its server thread.
        foreach (var t in m.Process2(AlpcLogonHangScenario.LsmProcess))
            if (m.WaitsAlpc(t, out var msg)) { m.Thread(t); m.AlpcM(msg); }
        m.Thread(AlpcLogonHangScenario.BlockerThread);
        m.Irp(AlpcLogonHangScenario.Irp);
        m.FileName(AlpcLogonHangScenario.FileObject);
        // Past Mup: the starved work queue (where the lab build has one).
        if (workQueues) m.WorkQueues(s);
        return m;
    }

    /// <summary>!workqueue vs the same hand procedure (every item's link and routine, every worker's !thread).</summary>
    /// <summary>Layouts of the Delayed queue's items: the seed's (8 per page, random order), back to back in list order,
    /// one per page in random order (<see cref="SeedWorkQueues"/> variants).</summary>
    public static readonly (string Variant, string Case)[] WorkQueueLayouts =
    [
        ("", "seed-003 Delayed queue (8 per page, random order)"),
        ("wq-compact", "Delayed queue compact (list order = address order)"),
        ("wq-sparse", "Delayed queue sparse (1 per page, random order)"),
    ];

    public static AlpcBenchRow WorkQueueRow(LabBuild build, string variant = "", string? caseName = null)
    {
        var s = new AlpcLogonHangScenario().Build(build, variant.Length == 0 ? ScenarioOptions.Default : ScenarioOptions.Default with { Variant = variant });
        var stats = new ReadStats();
        new NtSleuth.Commands.WorkQueue.WorkQueueAnalyzer(new KernelReader(s.CreateTarget(), stats)).Analyze();
        var m = new Manual(s);
        m.WorkQueues(s);
        return new AlpcBenchRow(build.Key, caseName ?? "seed-003 Delayed queue", stats.Packets, stats.TransferBytes, m.RoundTrips, m.Bytes, m.Commands);
    }

    /// <summary>Without -all: !process 0 2 over the whole system, then the seed's walk once per waiting winlogon session.</summary>
    private static Manual ManualAll(ScenarioResult s)
    {
        var m = new Manual(s);
        var b = s.Builder;
        ulong off = b.OffsetOf("_EPROCESS", "ActiveProcessLinks");
        foreach (var link in b.ListEntries(b.ProcessListHead)) m.Process2(link - off);
        var one = ManualChain(s, workQueues: false);
        m.RoundTrips += one.RoundTrips * 7; m.Bytes += one.Bytes * 7; m.Commands += one.Commands * 7;
        // The work queue once: every session's chain ends in the same starved queue (the engine's cache serves the rest).
        m.WorkQueues(s);
        return m;
    }
}
