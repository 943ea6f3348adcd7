using NtSleuth.Commands.Output;

namespace NtSleuth.Commands.FrameOrder;

/// <summary>Renders <see cref="FrameOrderReport"/>: per-volume stacks bottom to top, the fltmc table, disorders and fixes.</summary>
public static class FrameOrderRenderer
{
    public static Doc Render(FrameOrderReport r)
    {
        var d = new Doc();
        d.Line($"fltmgr frames: {r.Frames.Count}");
        foreach (var f in r.Frames)
        {
            d.Text("  ").Link($"Frame {f.Id}", $"!fltkd.frame {f.Address:x}").Text(" ").Link(Fmt.Addr(f.Address), $"dt fltmgr!_FLTP_FRAME {f.Address:x}")
             .Text("  altitudes ").Text(Fmt.Clean(f.Low)).Text(" - ").Text(Fmt.Clean(f.High))
             .Text($"  {f.FilterCount} filter(s), {f.VolumeCount} volume(s)").Line();
        }
        foreach (var v in r.Volumes)
        {
            d.Line();
            d.Text("Volume ").Text(Fmt.Clean(v.Name)).Line("  (device stack, bottom to top)");
            if (v.Problem is not null) d.Text("  ").Bold("! " + Fmt.Clean(v.Problem)).Line();
            for (int i = 0; i < v.Stack.Count; i++)
            {
                var s = v.Stack[i];
                d.Text($"  [{i}] ");
                switch (s.Kind)
                {
                    case StackItemKind.FileSystem:
                        d.Text("file system ").Link(Fmt.Clean(s.DriverName), $"!drvobj {s.Driver:x}").Text("  device ").Link(Fmt.Addr(s.Device), $"!devobj {s.Device:x}").Line();
                        break;
                    case StackItemKind.Frame:
                        var fr = r.Frames.FirstOrDefault(f => f.Id == s.FrameId);
                        d.Text("FltMgr ").Link($"frame {s.FrameId}", $"!fltkd.frame {fr?.Address ?? 0:x}").Text(" (").Text(Fmt.Clean(s.Altitude)).Text(")  device ")
                         .Link(Fmt.Addr(s.Device), $"!devobj {s.Device:x}").Line();
                        foreach (var m in s.Minifilters)
                        {
                            d.Text("        ").Link(Fmt.Clean(m.Name), $"!fltkd.filter {m.Filter:x}").Text("  ").Text(Fmt.Clean(m.Altitude))
                             .Text("  instance ").Link(Fmt.Addr(m.Instance), $"!fltkd.instance {m.Instance:x}");
                            if (m.InstanceName != "") d.Text(" '").Text(Fmt.Clean(m.InstanceName)).Text("'");
                            d.Line();
                        }
                        if (s.Minifilters.Count == 0) d.Line("        (no minifilter instances on this volume)");
                        break;
                    case StackItemKind.Legacy:
                        d.Text("legacy filter ").Text(Fmt.Clean(s.Name)).Text("  ").Link(Fmt.Clean(s.DriverName), $"!drvobj {s.Driver:x}")
                         .Text("  device ").Link(Fmt.Addr(s.Device), $"!devobj {s.Device:x}")
                         .Text("  altitude ").Text(s.Altitude is null ? "unknown" : Fmt.Clean(s.Altitude) + " (" + Fmt.Clean(s.AltitudeSource) + ")");
                        if (s.Service is not null && !s.Service.Equals(s.Name, StringComparison.OrdinalIgnoreCase)) d.Text("  service ").Text(Fmt.Clean(s.Service));
                        if (s.LoadOrderGroup is not null && s.AltitudeSource?.StartsWith("group") != true) d.Text("  group \"").Text(Fmt.Clean(s.LoadOrderGroup)).Text("\"");
                        d.Line();
                        break;
                    default:
                        d.Text("FltMgr device not on any frame's volume list ").Link(Fmt.Addr(s.Device), $"!devobj {s.Device:x}").Line();
                        break;
                }
            }
        }
        d.Line();
        d.Line("Filter Name                     Num Instances    Altitude    Frame");
        d.Line("------------------------------  -------------  ------------  -----");
        foreach (var row in r.Fltmc)
            d.Text(Fmt.Clean(row.Name).PadRight(30)).Text("  ").Text((row.Instances?.ToString() ?? "").PadLeft(13)).Text("  ")
             .Text(Fmt.Clean(row.Altitude).PadLeft(12)).Text("  ").Text(row.Frame.PadLeft(5)).Line();
        d.Line();
        if (r.Disorders.Count == 0)
            d.Line(r.Volumes.Count == 0 ? "No volumes to check." : "Altitude order: clean (no filter sits below a legacy filter of lower altitude).");
        foreach (var x in r.Disorders)
        {
            d.Text("Disorder on ").Text(Fmt.Clean(x.Volume)).Text(": ").Bold(Fmt.Clean(x.Message)).Line();
            if (x.Fix is not null) d.Text("  Fix: ").Text(Fmt.Clean(x.Fix)).Line();
        }
        if (r.Notes.Count > 0)
        {
            d.Line();
            d.Line("Notes:");
            foreach (var n in r.Notes) d.Line("  " + Fmt.Clean(n));
        }
        return d;
    }
}
