using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Output;
using NtSleuth.Lab.Bench;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// !dhcptimer on the seed-000 DHCP client (one adapter) and with 10 / 100 adapters (one context per heap page), vs. the
/// seed's manual way, as real reads through the engine-cache model: dq dhcpcore!DhcpGlobalNICList, per adapter context
/// dq &lt;ctx&gt; l20 (the lease times) and du of its name, ~0s kL (one 0x100-byte stack read per frame), ub at the wait call
/// in ProcessDhcpRequestForever (0x40 bytes of code) and dd of the r9 home slot (the 32-bit dwMilliseconds).
/// </summary>
public sealed class DhcpTimerBenchSource : IBenchRowSource
{
    public string Command => "dhcptimer";

    public IEnumerable<BenchRow> Rows(string? buildKey, IReadOnlyList<int>? scales)
    {
        foreach (int scale in scales ?? [1, 10, 100])
        {
            var seed = DhcpLeaseScenario.Seed();
            var a0 = seed.Adapters[0];
            var adapters = Enumerable.Range(0, scale).Select(i => i == 0 ? a0 : a0 with { Name = $"{{9C8A1B6E-2F3D-4E5A-8B7C-{i:X12}}}", Ip = $"10.20.{30 + i / 200}.{41 + i % 200}" }).ToList();
            var sc = new DhcpLeaseScenario { DumpTimeUtc = seed.DumpTimeUtc, Adapters = adapters, WaitTimeoutMs = seed.WaitTimeoutMs };
            var b = sc.Build();
            var stats = new ReadStats();
            var sink = new BufferSink();
            int hr = CommandDispatcher.Run("dhcptimer", "", b.Target, sink, stats);
            var m = new ManualProcedureBuilder(sc.Build().Target);
            ulong head = DhcpLeaseScenario.DhcpCoreBase + DhcpLeaseScenario.NicListRva;
            m.Note("dq dhcpcore!DhcpGlobalNICList l2").Read(head, 16);
            m.Note("per adapter: dq <ctx> l20; du <name>");
            foreach (var ctx in b.Contexts)
            {
                var c = m.Read(ctx, 0x100);
                if (c is null) continue;
                ushort len = BitConverter.ToUInt16(c, 0x20);
                ulong buf = BitConverter.ToUInt64(c, 0x28);
                m.Read(buf, Math.Max((int)len, 2));
            }
            m.Note("~0s; kL");
            var frames = b.Target.GetCurrentStack(64);
            foreach (var f in frames) m.Read(f.StackOffset, 0x100);
            m.Step("ub dhcpcore!ProcessDhcpRequestForever+0x2d5", 1, 0x40);
            m.Note("dd <Child-SP>+0x18 l1 (r9 home slot)");
            if (frames.Count > 3) m.Read(frames[3].StackOffset + 0x18, 4);
            var manual = m.Build();
            yield return new BenchRow("dhcptimer", scale == 1 ? "seed-000 DHCP client, 1 adapter" : $"seed-000, {scale} adapters", "7601-user", scale,
                stats.Packets, stats.TransferBytes, stats.ModelledKdnetSeconds, manual.RoundTrips, manual.Bytes, manual.KdnetSeconds,
                hr, 0, hr == 0 ? "" : sink.Errors.Trim());
        }
    }
}
