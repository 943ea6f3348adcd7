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

    /// <summary>"!help -mem" (hidden; the session tier's memory figures): one line with the extension's own memory.
    /// "-gc" first runs a full blocking collection and the finalizers, to tell live objects from garbage not yet collected.</summary>
    public static bool WantsMemory(string name, string? args) =>
        string.Equals(name, "help", StringComparison.OrdinalIgnoreCase) &&
        (args ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(a => a is "-mem" or "/mem");

    public static int RunMemory(string? args, IOutputSink sink)
    {
        if ((args ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(a => a is "-gc" or "/gc"))
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        }
        sink.Write(MemoryLine() + "\n", false);
        return 0;
    }

    /// <summary>The managed side's memory: GC heap (live + not yet collected), committed by the GC, collections per
    /// generation, pinned objects at the last GC, the session cache's entries, and the process's private bytes as
    /// the runtime sees them (wine reports 0 for PrivateUsage; then the working set is the figure to read).</summary>
    public static string MemoryLine()
    {
        var gi = GC.GetGCMemoryInfo(GCKind.Any);
        var c = EngineSessionCache.Counts;
        long priv = 0, ws = 0;
        try { using var p = Process.GetCurrentProcess(); priv = p.PrivateMemorySize64; ws = p.WorkingSet64; } catch { /* diagnostic only */ }
        return $"ntsleuth memory: managed heap {GC.GetTotalMemory(false)} bytes, gc heap size {gi.HeapSizeBytes}, gc committed {gi.TotalCommittedBytes}, " +
               $"allocated so far {GC.GetTotalAllocatedBytes(false)}, collections {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}, " +
               $"budget collections {GarbageBudget.Collections} in {GarbageBudget.CollectMilliseconds:F1} ms, pinned {gi.PinnedObjectsCount}, finalization pending {gi.FinalizationPendingCount}, " +
               $"session cache {c.Layouts} layouts {c.Symbols} symbols {c.SymbolStates} symbol states {c.ModuleBases} module bases (generation {EngineSessionCache.Generation}), " +
               $"process private {priv} working set {ws}";
    }

    public static int Run(ITarget target, IOutputSink sink)
    {
        var sb = new StringBuilder();
        var sw = Stopwatch.StartNew();
        var info = target.Info;
        sb.Append("ntsleuth diagnostics\n");
        sb.Append($"  debuggee     : {info.Description}, pointer size {info.PointerSize}, build {info.BuildNumber}, {info.ProcessorCount} processor(s), event processor {info.EventProcessor}\n");
        sb.Append($"  time         : {(info.SystemTimeUtc is { } t ? t.ToString("yyyy-MM-dd HH:mm:ss") + "Z" : "unknown")}, uptime {(info.SystemUpTime is { } u ? Fmt.Duration(u) : "unknown")}");
        sb.Append(info.BugCheck is { } bc ? $", bugcheck {bc}\n" : "\n");

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
        sb.Append($"  memory       : {MemoryLine()["ntsleuth memory: ".Length..]}\n");
        sb.Append($"  elapsed      : {sw.Elapsed.TotalMilliseconds:F1} ms\n");
        sink.Write(sb.ToString(), false);
        return 0;
    }
}
