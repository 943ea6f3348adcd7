using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Kernel;

/// <summary>An _EPROCESS as the commands name it: image file name and process id.</summary>
public sealed record KernelProcess(ulong Address, string Image, ulong Pid);

/// <summary>
/// Reads processes (nt!_EPROCESS) by field name: one small request per process (only the fields used), cached for the
/// run. The process list (nt!PsActiveProcessHead) and a process's thread list are walked bounded, cycle-safe and
/// interruptible (<see cref="KernelReader.WalkRecords"/>). One instance per command run.
/// </summary>
public sealed class KernelProcesses
{
    /// <summary>Default bound of the process list walk.</summary>
    public const int MaxProcesses = 20_000;
    /// <summary>Default bound of a thread list walk.</summary>
    public const int MaxThreadsPerProcess = 20_000;

    private readonly KernelReader _r;
    private readonly ICollection<string> _notes;
    private readonly Dictionary<ulong, KernelProcess> _procs = new();

    /// <param name="reader">the run's reader.</param>
    /// <param name="notes">where "not readable" notes go (the command's report notes).</param>
    public KernelProcesses(KernelReader reader, ICollection<string> notes) { _r = reader; _notes = notes; }

    /// <summary>
    /// Reads the process at <paramref name="address"/> (one request covering its header type, id, image name and
    /// both list heads); null when the dispatcher header says it is not a process object. Throws
    /// <see cref="TargetReadException"/> when unreadable.
    /// </summary>
    public KernelProcess? Read(ulong address)
    {
        var v = _r.ReadFields("nt", "_EPROCESS", address, "Pcb.Header.Type", "UniqueProcessId", "ImageFileName", "ThreadListHead", "ActiveProcessLinks");
        if (v.U8("Pcb.Header.Type") != KernelEnums.ProcessObject) return null;
        var p = new KernelProcess(address, v.Ascii("ImageFileName"), v.Ptr("UniqueProcessId"));
        _procs[address] = p;
        return p;
    }

    /// <summary>
    /// Image name and pid of <paramref name="process"/> (cached; never throws): <c>("?", 0)</c> for NULL, and
    /// <c>&lt;process ... unreadable&gt;</c> with a note when it cannot be read.
    /// </summary>
    public KernelProcess Name(ulong process)
    {
        if (process == 0) return new KernelProcess(0, "?", 0);
        if (_procs.TryGetValue(process, out var p)) return p;
        try
        {
            var v = _r.ReadFields("nt", "_EPROCESS", process, "UniqueProcessId", "ImageFileName");
            p = new KernelProcess(process, v.Ascii("ImageFileName"), v.Ptr("UniqueProcessId"));
        }
        catch (TargetReadException)
        {
            _notes.Add($"process {Fmt.Addr(process)} is not readable: image name unknown");
            p = new KernelProcess(process, $"<process {Fmt.Addr(process)} unreadable>", 0);
        }
        _procs[process] = p;
        return p;
    }

    /// <summary>The _EPROCESS addresses on nt!PsActiveProcessHead (bounded, cycle-safe, interruptible; see <paramref name="walk"/>).</summary>
    public IEnumerable<ulong> All(ListWalkResult walk, int max = MaxProcesses) =>
        _r.WalkRecords(_r.Types.Symbol("nt!PsActiveProcessHead"), "nt", "_EPROCESS", "ActiveProcessLinks", walk, max);

    /// <summary>
    /// The _ETHREAD addresses of <paramref name="process"/> (EPROCESS.ThreadListHead / ETHREAD.ThreadListEntry; bounded,
    /// cycle-safe, interruptible). Reads the process's list head and image name first (one request; throws
    /// <see cref="TargetReadException"/> when unreadable) and returns the image name for notes.
    /// </summary>
    public IEnumerable<ulong> Threads(ulong process, ListWalkResult walk, out string image, int max = MaxThreadsPerProcess)
    {
        var pv = _r.ReadFields("nt", "_EPROCESS", process, "ThreadListHead", "ImageFileName", "UniqueProcessId");
        image = pv.Ascii("ImageFileName");
        return _r.WalkRecords(pv.AddressOf("ThreadListHead"), "nt", "_ETHREAD", "ThreadListEntry", walk, max);
    }
}
