using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.Kernel;

/// <summary>An I/O request packet as !irp summarises it: the current stack location's function, device, driver and file.</summary>
public sealed class Irp
{
    public ulong Address { get; init; }
    public int StackCount { get; set; }
    public int CurrentLocation { get; set; }
    public int MajorFunction { get; set; }
    public int MinorFunction { get; set; }
    public ulong Device { get; set; }
    /// <summary>DRIVER_OBJECT.DriverName of the current location's device.</summary>
    public string? Driver { get; set; }
    public ulong FileObject { get; set; }
    /// <summary>FILE_OBJECT.FileName.</summary>
    public string? FileName { get; set; }
    /// <summary>Why something is missing (unreadable, no current location).</summary>
    public string? Note { get; set; }
}

/// <summary>Reads IRPs (nt!_IRP, _IO_STACK_LOCATION) and a thread's pending-IRP list (ETHREAD.IrpList).</summary>
public sealed class Irps(KernelReader reader, DriverNames drivers)
{
    /// <summary>Bound on the IRPs listed for one thread.</summary>
    public const int MaxIrps = 64;

    /// <summary>
    /// The IRPs pending on <paramref name="thread"/> (IRP.ThreadListEntry on ETHREAD.IrpList; bounded, cycle-safe,
    /// interruptible: how the walk ended is in <paramref name="walk"/>). An unreadable IRP is listed with its note.
    /// </summary>
    public List<Irp> OfThread(KernelThread thread, ListWalkResult walk, int max = MaxIrps)
    {
        var list = new List<Irp>();
        foreach (var a in reader.WalkRecords(thread.IrpListHead, "nt", "_IRP", "ThreadListEntry", walk, max)) list.Add(Read(a));
        return list;
    }

    /// <summary>Reads one IRP and its current stack location; never throws (what is unreadable is in <see cref="Irp.Note"/>).</summary>
    public Irp Read(ulong address)
    {
        var irp = new Irp { Address = address };
        try
        {
            var v = reader.Read("nt", "_IRP", address);
            irp.StackCount = (sbyte)v.U8("StackCount");
            irp.CurrentLocation = (sbyte)v.U8("CurrentLocation");
            ulong sl = v.Ptr("Tail.Overlay.CurrentStackLocation");
            if (sl == 0 || irp.CurrentLocation > irp.StackCount) { irp.Note = "no current stack location (completed or not yet sent)"; return irp; }
            var s = reader.Read("nt", "_IO_STACK_LOCATION", sl);
            irp.MajorFunction = s.U8("MajorFunction");
            irp.MinorFunction = s.U8("MinorFunction");
            irp.Device = s.Ptr("DeviceObject");
            irp.FileObject = s.Ptr("FileObject");
            if (irp.Device != 0)
            {
                ulong drv = drivers.DriverOf(irp.Device);
                if (drv != 0) irp.Driver = drivers.Name(drv);
                if (irp.Driver is null) irp.Note = $"driver name of device {Fmt.Addr(irp.Device)} not readable";
            }
            if (irp.FileObject != 0)
            {
                irp.FileName = reader.ReadUnicodeString(irp.FileObject + reader.Types.FieldOffset("nt", "_FILE_OBJECT", "FileName"));
                if (irp.FileName is null) irp.Note = (irp.Note is null ? "" : irp.Note + "; ") + $"file name of {Fmt.Addr(irp.FileObject)} not readable";
            }
        }
        catch (TargetReadException ex) { irp.Note = ex.Message; }
        return irp;
    }
}
