using System.Diagnostics;
using System.Text;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Extension;

/// <summary>
/// "!help -diag": what the extension sees through the engine — debuggee class, build, symbols of the main module,
/// a type layout resolved by name (with a bitfield), a memory read/search and an expression — with round trips and
/// timings. For users whose command output looks wrong (symbols not loaded, wrong bitness, unreadable memory).
/// </summary>
internal static class Diagnostics
{
    public static bool Wants(string name, string? args) =>
        string.Equals(name, "help", StringComparison.OrdinalIgnoreCase) &&
        (args ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(a => a is "-diag" or "/diag");

    public static int Run(ITarget target, IOutputSink sink)
    {
        var sb = new StringBuilder();
        var sw = Stopwatch.StartNew();
        var info = target.Info;
        sb.Append("ntsleuth diagnostics\n");
        sb.Append($"  debuggee     : {info.Description}, pointer size {info.PointerSize}, build {info.BuildNumber}, {info.ProcessorCount} processor(s), event processor {info.EventProcessor}\n");
        sb.Append($"  time         : {(info.SystemTimeUtc is { } t ? t.ToString("yyyy-MM-dd HH:mm:ss") + "Z" : "unknown")}, uptime {(info.SystemUpTime is { } u ? Fmt.Duration(u) : "unknown")}");
        sb.Append(info.BugCheck is { } bc ? $", bugcheck {bc}\n" : "\n");
        sb.Append($"  data model   : {(DataModel.DataModelProvider.IsRegistered ? "@$ntsleuth registered" : "not registered")}{(DataModel.DataModelProvider.LastError is { } dmErr ? " (" + dmErr + ")" : "")}\n");

        var modules = target.GetModules();
        sb.Append($"  modules      : {modules.Count} loaded\n");
        bool kernel = info.Kind == TargetKind.Kernel;
        string main = kernel ? "nt" : "ntdll";
        var mainMod = modules.FirstOrDefault(m => string.Equals(m.Name, main, StringComparison.OrdinalIgnoreCase))
                      ?? modules.FirstOrDefault();
        if (mainMod is not null)
            sb.Append($"  {mainMod.Name,-12} : {Fmt.Addr(mainMod.Base)} size 0x{mainMod.Size:x}, symbols {(target.Symbols.HasSymbols(mainMod.Name) ? "loaded" : "NOT loaded (run .symfix; .reload)")}\n");

        // A type layout by name, with a bitfield when the type has one.
        string typeName = kernel ? "_KTHREAD" : "_PEB";
        var tsw = Stopwatch.StartNew();
        TypeLayout? layout = target.Symbols.GetTypeLayout(main, typeName);
        _ = layout?.Fields; // a lazy layout enumerates the whole type here: time what a full layout costs
        double layoutMs = tsw.Elapsed.TotalMilliseconds;
        if (layout is null)
            sb.Append($"  type         : {main}!{typeName} not found (symbols missing?)\n");
        else
        {
            sb.Append($"  type         : {layout} in {layoutMs:F1} ms\n");
            foreach (var f in layout.Fields.Where(f => f.Type.IsBitfield).Take(2).Concat(layout.Fields.Where(f => !f.Type.IsBitfield).Take(2)))
                sb.Append($"                 +0x{f.Offset:x3} {f.Name} : {f.Type}\n");
        }

        // Memory: read the main module's header, search its first page for "PE".
        if (mainMod is not null)
        {
            var mem = new TargetMemory(target);
            var buf = new byte[0x1000];
            int n = mem.Read(mainMod.Base, buf);
            string sig = n >= 2 ? Encoding.ASCII.GetString(buf, 0, 2) : "";
            sb.Append($"  read         : {n} bytes at {Fmt.Addr(mainMod.Base)} ({(sig == "MZ" ? "MZ header" : "no MZ header: image not in the dump")})\n");
            var pe = target.SearchVirtual(mainMod.Base, 0x1000, "PE\0\0"u8);
            sb.Append($"  search       : \"PE\\0\\0\" {(pe is { } p ? "at +0x" + (p - mainMod.Base).ToString("x") : "not found")}\n");
            sb.Append($"  reads        : {mem.Stats}\n");
        }

        string expr = kernel ? "nt!PsLoadedModuleList" : "@$peb";
        sb.Append(target.TryEvaluate(expr, out ulong v, out string? err)
            ? $"  evaluate     : {expr} = {Fmt.Addr(v)}\n"
            : $"  evaluate     : {expr}: {err}\n");
        var stack = target.GetCurrentStack(64);
        sb.Append($"  stack        : {stack.Count} frame(s) for the current thread\n");
        if (stack.Count > 0)
        {
            // The current thread's stack is in every dump: a read across it shows partial-read behaviour.
            var mem = new TargetMemory(target);
            ulong sp = stack[0].StackOffset;
            var buf = new byte[0x4000];
            int n = mem.Read(sp, buf);
            sb.Append($"  stack read   : {n} of {buf.Length} bytes at {Fmt.Addr(sp)} ({mem.Stats})\n");
        }
        sb.Append($"  interrupt    : {(target.IsInterruptRequested ? "requested" : "not requested")}\n");
        sb.Append($"  elapsed      : {sw.Elapsed.TotalMilliseconds:F1} ms\n");
        sink.Write(sb.ToString(), false);
        return 0;
    }
}
