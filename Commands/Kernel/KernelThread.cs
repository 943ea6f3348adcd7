using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// An _ETHREAD as read in one request (<see cref="KernelThreads.Read"/>): identity, scheduling state, the wait
/// (reason, mode, start tick, wait block list) and the head of its pending-IRP list. <see cref="View"/> is the whole
/// structure, for the fields only one command needs (e.g. ETHREAD.AlpcMessage), without another read.
/// </summary>
public sealed class KernelThread
{
    public required ulong Address { get; init; }
    /// <summary>KTHREAD.Process (the _EPROCESS).</summary>
    public ulong Process { get; init; }
    public ulong Pid { get; init; }
    public ulong Tid { get; init; }
    /// <summary>KTHREAD.State code and its _KTHREAD_STATE name.</summary>
    public int StateCode { get; init; }
    public string State => KernelEnums.ThreadState(StateCode);
    public bool IsWaiting => StateCode == KernelEnums.Waiting;
    /// <summary>Wait fields: meaningful only when <see cref="IsWaiting"/>.</summary>
    public int WaitReasonCode { get; init; }
    public string WaitReason => KernelEnums.WaitReason(WaitReasonCode);
    public string WaitMode { get; init; } = "";
    /// <summary>KTHREAD.WaitTime: the tick count when the wait began (<see cref="KernelClock.TicksSince"/>).</summary>
    public uint WaitTick { get; init; }
    /// <summary>KTHREAD.WaitBlockList and WaitBlockCount (null before Windows 8, where the blocks form a ring).</summary>
    public ulong WaitBlockList { get; init; }
    public ulong? WaitBlockCount { get; init; }
    /// <summary>Address of ETHREAD.IrpList (the list head) and its Flink.</summary>
    public ulong IrpListHead { get; init; }
    public ulong IrpListFlink { get; init; }
    /// <summary>IrpList is not empty (known from the thread read: no round trip).</summary>
    public bool HasIrps => IrpListFlink != IrpListHead && IrpListFlink != 0;
    /// <summary>The whole _ETHREAD as read.</summary>
    public required StructView View { get; init; }
    /// <summary>Client id as !thread shows it: pid.tid in hex.</summary>
    public string Cid => $"{Pid:x}.{Tid:x}";
}

/// <summary>
/// Reads threads (nt!_ETHREAD) by field name, one request each, cached for the run; checks the dispatcher header
/// type so a wrong address gives a sentence, not garbage. One instance per command run.
/// </summary>
public sealed class KernelThreads(KernelReader reader)
{
    private readonly Dictionary<ulong, KernelThread> _threads = new();
    private ulong? _lastEnumerated;

    /// <summary>
    /// The thread at <paramref name="address"/>; null with the reason in <paramref name="notThread"/> when its
    /// dispatcher header is not a thread's. <paramref name="pageExtend"/> (for enumerations) reads on to the end of
    /// the page the thread ends in, so neighbouring threads come with it. Throws <see cref="TargetReadException"/>
    /// when unreadable.
    /// </summary>
    public KernelThread? Read(ulong address, out string? notThread, bool pageExtend = false)
    {
        notThread = null;
        if (_threads.TryGetValue(address, out var cached)) return cached;
        var layout = reader.Types.Get("nt", "_ETHREAD");
        if (pageExtend)
        {
            // Adaptive: extend only when the previous thread of the enumeration lay next to this one (threads allocated
            // back to back: the extension brings the following ones). On scattered pool (other allocations between the
            // threads) the extension would move bytes nobody uses: read just the thread.
            ulong size = layout.Size;
            bool neighbour = _lastEnumerated is { } last && (last > address ? last - address : address - last) <= 2 * size;
            _lastEnumerated = address;
            if (neighbour && !reader.Memory.IsCached(address, (int)size))
            {
                ulong end = address + size;
                ulong pageEnd = (end + 0xfff) & ~0xfffUL;
                reader.Memory.Prefetch(address, (int)Math.Min(pageEnd - address, 0x2000));
            }
        }
        var et = reader.Read(layout, address);
        int type = et.U8("Tcb.Header.Type");
        if (type != KernelEnums.ThreadObject)
        {
            notThread = $"{Fmt.Addr(address)} is not a thread: its dispatcher header type is {type} ({KernelEnums.ObjectType(type)}), a thread has {KernelEnums.ThreadObject} (ThreadObject). Give an _ETHREAD address.";
            return null;
        }
        int state = et.U8("Tcb.State");
        bool waiting = state == KernelEnums.Waiting;
        var t = new KernelThread
        {
            Address = address,
            View = et,
            Process = et.Ptr("Tcb.Process"),
            Pid = et.Ptr("Cid.UniqueProcess"),
            Tid = et.Ptr("Cid.UniqueThread"),
            StateCode = state,
            WaitReasonCode = waiting ? et.U8("Tcb.WaitReason") : 0,
            WaitMode = waiting ? KernelEnums.ProcessorMode(et.U8("Tcb.WaitMode")) : "",
            WaitTick = waiting ? et.U32("Tcb.WaitTime") : 0,
            WaitBlockList = et.Ptr("Tcb.WaitBlockList"),
            WaitBlockCount = et.TryUInt("Tcb.WaitBlockCount"),
            IrpListHead = et.AddressOf("IrpList"),
            IrpListFlink = et.Ptr("IrpList.Flink"),
        };
        _threads[address] = t;
        return t;
    }
}
