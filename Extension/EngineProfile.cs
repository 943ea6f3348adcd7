using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace NtSleuth.Extension;

/// <summary>
/// Where a command's time goes inside the engine (issue 15: first runs): with <c>NTSLEUTH_PROFILE=1</c> in the
/// debugger's environment, every engine call of a command is timed by kind (memory read, search, symbol lookup, name
/// lookup, symbol state, type and field queries, modules, evaluation, stacks) and one line per kind is printed after the
/// command: calls, total ms, the slowest call and what it asked. Off by default (one flag test per call).
/// </summary>
internal static class EngineProfile
{
    public const string Variable = "NTSLEUTH_PROFILE";
    public static readonly bool Enabled = Environment.GetEnvironmentVariable(Variable) is "1" or "2";

    /// <summary><c>NTSLEUTH_PROFILE=2</c>: also every call of a kind slower than 1 ms, in order.</summary>
    public static readonly bool Detail = Environment.GetEnvironmentVariable(Variable) == "2";

    private static readonly List<string> Calls = [];

    private sealed class Kind
    {
        public int Calls;
        public long Ticks, MaxTicks;
        public string? MaxArg;
    }

    private static readonly Dictionary<string, Kind> Kinds = new(StringComparer.Ordinal);
    private static long _commandStart, _jitMethods;
    private static TimeSpan _jitTime;

    public readonly struct Scope(string kind, string? arg, long start) : IDisposable
    {
        public void Dispose()
        {
            if (start == 0) return;
            long t = Stopwatch.GetTimestamp() - start;
            if (!Kinds.TryGetValue(kind, out var k)) Kinds[kind] = k = new Kind();
            k.Calls++;
            k.Ticks += t;
            if (t > k.MaxTicks) { k.MaxTicks = t; k.MaxArg = arg; }
            if (Detail && t * 1000 > Stopwatch.Frequency)
                Calls.Add(string.Create(CultureInfo.InvariantCulture, $"[ntsleuth profile]   {kind} {t * 1000.0 / Stopwatch.Frequency:F1} ms {arg}"));
        }
    }

    /// <summary><c>using var _ = EngineProfile.Time("symbol", name);</c> around an engine call.</summary>
    public static Scope Time(string kind, string? arg = null) => new(kind, arg, Enabled ? Stopwatch.GetTimestamp() : 0);

    /// <summary>A line printed with the command's profile, in order (nothing when profiling is off).</summary>
    public static void Report(string line)
    {
        if (Enabled && _commandStart != 0) Calls.Add("[ntsleuth profile]   " + line);
    }

    public static void BeginCommand()
    {
        if (!Enabled) return;
        Kinds.Clear();
        Calls.Clear();
        _jitMethods = System.Runtime.JitInfo.GetCompiledMethodCount();
        _jitTime = System.Runtime.JitInfo.GetCompilationTime();
        _commandStart = Stopwatch.GetTimestamp();
    }

    /// <summary>The report for the command that just ended (null when profiling is off), and a fresh start.</summary>
    public static string? EndCommand(string command)
    {
        if (!Enabled || _commandStart == 0) return null;
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        var sb = new StringBuilder();
        double total = Ms(Stopwatch.GetTimestamp() - _commandStart), inEngine = 0;
        foreach (var (name, k) in Kinds.OrderByDescending(kv => kv.Value.Ticks))
        {
            inEngine += Ms(k.Ticks);
            sb.Append(CultureInfo.InvariantCulture, $"[ntsleuth profile] {name,-10} {k.Calls,6} call(s) {Ms(k.Ticks),9:F1} ms  slowest {Ms(k.MaxTicks):F1} ms");
            if (k.MaxArg is { Length: > 0 } a) sb.Append(" (").Append(a.Length > 80 ? a[..80] + "..." : a).Append(')');
            sb.Append('\n');
        }
        // Methods the JIT compiled during the command (all threads) and its time: what ReadyToRun code saves on a first
        // run; near 0 when the assemblies' precompiled code is used (docs/bench.md "First runs").
        sb.Insert(0, string.Create(CultureInfo.InvariantCulture,
            $"[ntsleuth profile] jit: {System.Runtime.JitInfo.GetCompiledMethodCount() - _jitMethods} method(s) compiled, {(System.Runtime.JitInfo.GetCompilationTime() - _jitTime).TotalMilliseconds:F1} ms\n"));
        sb.Insert(0, string.Create(CultureInfo.InvariantCulture,
            $"[ntsleuth profile] !{command}: {total:F1} ms in the extension, {inEngine:F1} ms of it in engine calls\n"));
        foreach (var c in Calls) sb.Append(c).Append('\n');
        Kinds.Clear();
        Calls.Clear();
        _commandStart = 0;
        return sb.ToString();
    }
}
