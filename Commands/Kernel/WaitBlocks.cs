using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>One object a thread waits on: its address and dispatcher header type.</summary>
public sealed record WaitObject(ulong Address, int TypeCode, string Type);

/// <summary>The objects a waiting thread waits on, from its KWAIT_BLOCKs (as !thread lists them).</summary>
public static class WaitBlocks
{
    /// <summary>Bound on the wait blocks followed for one thread.</summary>
    public const int MaxWaitBlocks = 64;

    /// <summary>
    /// The wait objects of <paramref name="thread"/> (empty unless it is waiting). Windows 8+: WaitBlockList points at
    /// an array of WaitBlockCount blocks (read in one request); Windows 7: a ring through NextWaitBlock (bounded,
    /// cycle-safe). An unreadable object header gives type "(unreadable)". Throws <see cref="TargetReadException"/>
    /// when a wait block is unreadable.
    /// </summary>
    public static List<WaitObject> Objects(KernelReader r, KernelThread thread)
    {
        var result = new List<WaitObject>();
        ulong first = thread.WaitBlockList;
        if (!thread.IsWaiting || first == 0) return result;
        var wb = r.Types.Get("nt", "_KWAIT_BLOCK");
        var blocks = new List<ulong>();
        if (thread.WaitBlockCount is { } count)
        {
            int n = (int)Math.Clamp(count, 1, MaxWaitBlocks);
            r.Memory.Prefetch(first, (int)wb.Size * n);
            for (int i = 0; i < n; i++) blocks.Add(first + (ulong)i * wb.Size);
        }
        else
        {
            ulong cur = first;
            var seen = new HashSet<ulong>();
            while (cur != 0 && seen.Add(cur) && blocks.Count < MaxWaitBlocks)
            {
                blocks.Add(cur);
                cur = r.Read(wb, cur).Ptr("NextWaitBlock");
                if (cur == first) break;
            }
        }
        foreach (var b in blocks)
        {
            ulong obj = r.Read(wb, b).Ptr("Object");
            if (obj == 0) continue;
            var h = r.TryRead("nt", "_DISPATCHER_HEADER", obj);
            int code = h is null ? -1 : h.U8("Type");
            result.Add(new WaitObject(obj, code, h is null ? "(unreadable)" : KernelEnums.ObjectType(code)));
        }
        return result;
    }
}
