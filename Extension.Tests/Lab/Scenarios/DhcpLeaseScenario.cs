using System.Buffers.Binary;
using System.Text;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Commands.Target;
using NtSleuth.Lab.Dumps;
using NtSleuth.Lab.Forge;
using NtSleuth.Lab.Target;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 000: the svchost.exe hosting the DHCP client (dhcpcore.dll) on Windows Server 2008 R2 (7601), user mode.
/// Each adapter context on dhcpcore!DhcpGlobalNICList holds the lease times as 64-bit time_t in field order
/// (LeaseObtained, T1, T2, LeaseExpires) with RunTime after them, the IP address and subnet mask before them and a
/// UNICODE_STRING adapter name: the shape the NT DHCP client's context has. The layout is private (dhcpcore's public
/// symbols carry no types), so the scenario is what !dhcptimer's structural finder has to recognise, not a copy of
/// offsets the command knows.
/// The main thread waits in dhcpcore!ProcessDhcpRequestForever -> kernel32 -> KERNELBASE!WaitForMultipleObjectsEx
/// with dwMilliseconds = INFINITE in the r9 home slot (as the seed's disassembly showed).
/// </summary>
public sealed class DhcpLeaseScenario
{
    public const ulong DhcpCoreBase = 0x000007fe_fab40000;
    public const uint DhcpCoreSize = 0x60000;
    public const ulong Kernel32Base = 0x00000000_76ee0000;
    public const ulong KernelBaseBase = 0x000007fe_fcf20000;
    public const ulong NtdllBase = 0x00000000_770f0000;
    public const ulong HeapBase = 0x00000000_002f0000;
    public const ulong StackBase = 0x00000000_012a0000;
    public const uint MainThreadId = 0x1ea4;

    /// <summary>RVAs as the forged dhcpcore.dll publishes them (Lab/Forge ForgeModules.DhcpCore).</summary>
    public const ulong NicListRva = 0x40000, ProcessDhcpRequestForeverRva = 0x1000;

    public sealed record Adapter(string Name, string Ip, string Mask, DateTime Obtained, TimeSpan Lease);

    public required DateTime DumpTimeUtc { get; init; }
    public required IReadOnlyList<Adapter> Adapters { get; init; }
    public uint WaitTimeoutMs { get; init; } = 0xFFFFFFFF;

    /// <summary>Seed: a one-year lease obtained 364.5 days before the dump; T1 passed ~182 days ago, RunTime still T1.</summary>
    public static DhcpLeaseScenario Seed()
    {
        var dump = new DateTime(2018, 10, 29, 12, 43, 47, DateTimeKind.Utc);
        return new DhcpLeaseScenario
        {
            DumpTimeUtc = dump,
            Adapters = [new Adapter("{9C8A1B6E-2F3D-4E5A-8B7C-1D2E3F405162}", "10.20.30.41", "255.255.255.0",
                dump - TimeSpan.FromDays(364.5), TimeSpan.FromDays(365))],
        };
    }

    /// <summary>Healthy: an eight-day lease renewed an hour ago; RunTime is T1 in about four days; the wait fits 32 bits.</summary>
    public static DhcpLeaseScenario EightDays()
    {
        var dump = new DateTime(2018, 10, 29, 12, 43, 47, DateTimeKind.Utc);
        return new DhcpLeaseScenario
        {
            DumpTimeUtc = dump,
            WaitTimeoutMs = (uint)(TimeSpan.FromDays(4) - TimeSpan.FromHours(1)).TotalMilliseconds,
            Adapters = [new Adapter("{0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9}", "192.168.7.23", "255.255.252.0",
                dump - TimeSpan.FromHours(1), TimeSpan.FromDays(8))],
        };
    }

    public sealed record Built(SparseMemory Memory, IsfSymbolProvider Symbols, InMemoryTarget Target, IReadOnlyList<ulong> Contexts);

    public Built Build()
    {
        var mem = new SparseMemory();
        var syms = new IsfSymbolProvider();
        ulong head = DhcpCoreBase + NicListRva;
        syms.AddSymbol("dhcpcore!DhcpGlobalNICList", head);
        syms.AddSymbol("dhcpcore!ProcessDhcpRequestForever", DhcpCoreBase + ProcessDhcpRequestForeverRva);
        syms.AddSymbol("dhcpcore!ServiceMain", DhcpCoreBase + 0x9000);
        syms.AddSymbol("ntdll!NtWaitForMultipleObjects", NtdllBase + 0x52000);
        syms.AddSymbol("KERNELBASE!WaitForMultipleObjectsEx", KernelBaseBase + 0x11340);
        syms.AddSymbol("kernel32!WaitForMultipleObjectsExImplementation", Kernel32Base + 0x21630);
        syms.AddSymbol("svchost!ServiceStarter", 0x00000000_ffc10000 + 0x1130);
        mem.Map(DhcpCoreBase, 0x1000);
        mem.Map(head, 0x10);

        // Adapter contexts: LIST_ENTRY first, then a few fields, UNICODE_STRING name, IP/mask, lease DWORD, times.
        var contexts = new List<ulong>();
        ulong ctx = HeapBase + 0x1240;
        ulong prev = head;
        mem.WriteU64(head, head); mem.WriteU64(head + 8, head);
        foreach (var a in Adapters)
        {
            mem.Map(ctx, 0x400);
            ulong nameBuf = ctx + 0x300;
            var name = Encoding.Unicode.GetBytes(a.Name);
            mem.Write(nameBuf, name);
            mem.WriteU16(ctx + 0x20, (ushort)name.Length);
            mem.WriteU16(ctx + 0x22, (ushort)(name.Length + 2));
            mem.WriteU64(ctx + 0x28, nameBuf);
            mem.WriteU32(ctx + 0x30, 0x0000000b);           // interface index
            mem.Write(ctx + 0x40, Ip(a.Ip));
            mem.Write(ctx + 0x44, Ip(a.Mask));
            mem.Write(ctx + 0x48, Ip("10.20.30.1"));         // DHCP server
            long o = ToUnix(a.Obtained), l = (long)a.Lease.TotalSeconds;
            long t1 = o + l / 2, t2 = o + l * 7 / 8, e = o + l;
            mem.WriteU32(ctx + 0x5c, (uint)l);
            mem.WriteU64(ctx + 0x60, (ulong)o);
            mem.WriteU64(ctx + 0x68, (ulong)t1);
            mem.WriteU64(ctx + 0x70, (ulong)t2);
            mem.WriteU64(ctx + 0x78, (ulong)e);
            // RunTime: the next action. Stuck at T1 (seed) or, healthy, T1 still ahead. Both are T1; the verdict
            // comes from T1 being past or not, and from the 32-bit wait the service computed.
            mem.WriteU64(ctx + 0x80, (ulong)t1);
            // Insert at the tail of the NIC list.
            mem.WriteU64(ctx, head);
            mem.WriteU64(ctx + 8, prev);
            mem.WriteU64(prev, ctx);
            mem.WriteU64(head + 8, ctx);
            contexts.Add(ctx);
            prev = ctx;
            ctx += 0x1000;  // one context per page: unreadable memory is page-granular
        }

        // Main thread stack: innermost first, Child-SPs as in the seed's kL.
        ulong[] sp = [0x012af518, 0x012af520, 0x012af620, 0x012af6b0, 0x012af7a0, 0x012af840];
        mem.Map(StackBase, 0x10000);
        mem.WriteU32(sp[3] + 0x18, WaitTimeoutMs);         // r9 home slot of ProcessDhcpRequestForever's outgoing call
        var frames = new List<StackFrameInfo>
        {
            new(NtdllBase + 0x52000 + 0xa, KernelBaseBase + 0x11430, sp[0], 0),
            new(KernelBaseBase + 0x11340 + 0xe8, Kernel32Base + 0x216e3, sp[1], 0),
            new(Kernel32Base + 0x21630 + 0xb3, DhcpCoreBase + 0x1000 + 0x2d5, sp[2], 0),
            new(DhcpCoreBase + 0x1000 + 0x2d5, DhcpCoreBase + 0x9000 + 0x398, sp[3], 0),
            new(DhcpCoreBase + 0x9000 + 0x398, 0x00000000_ffc11318, sp[4], 0),
            new(0x00000000_ffc11318, 0, sp[5], 0),
        };
        // Return addresses where a real stack has them: the return into frame i+1 sits just below frame i+1's Child-SP.
        for (int i = 0; i + 1 < frames.Count; i++) mem.WriteU64(frames[i + 1].StackOffset - 8, frames[i].ReturnOffset);
        var modules = new List<ModuleInfo>
        {
            new("svchost", 0x00000000_ffc10000, 0xb000, @"C:\Windows\System32\svchost.exe"),
            new("ntdll", NtdllBase, 0x1a9000, @"C:\Windows\System32\ntdll.dll", Version: "6.1.7601.17514"),
            new("kernel32", Kernel32Base, 0x11f000, @"C:\Windows\System32\kernel32.dll", Version: "6.1.7601.17514"),
            new("KERNELBASE", KernelBaseBase, 0x6a000, @"C:\Windows\System32\KERNELBASE.dll", Version: "6.1.7601.17514"),
            new("dhcpcore", DhcpCoreBase, DhcpCoreSize, @"C:\Windows\System32\dhcpcore.dll", Version: "6.1.7601.17514"),
        };
        var info = new TargetInfo
        {
            Kind = TargetKind.User, IsDump = true, PointerSize = 8, BuildNumber = 7601, ProcessorCount = 2,
            SystemTimeUtc = DumpTimeUtc, Description = "User Mini Dump File (lab: svchost.exe -k LocalServiceNetworkRestricted)",
        };
        var target = new InMemoryTarget(mem, syms, info, modules, frames);
        target.ThreadStacks.Add(new ThreadStack(0x1d30, 0x000007ff_fffdc000, [frames[^1]]));
        target.ThreadStacks.Add(new ThreadStack(MainThreadId, 0x000007ff_fffd8000, frames));
        return new Built(mem, syms, target, contexts);
    }

    private static byte[] Ip(string dotted) => dotted.Split('.').Select(byte.Parse).ToArray();
    private static long ToUnix(DateTime t) => (long)(t - DateTime.UnixEpoch).TotalSeconds;

    /// <summary>
    /// Writes the scenario as a full-memory user minidump plus forged dhcpcore.dll / kernel32.dll / KERNELBASE.dll
    /// symbols (publics only, as Microsoft ships them; the dump's module list carries their identities) into
    /// <paramref name="dir"/>: returns the dump path and the symbol folder.
    /// </summary>
    public (string Dump, string SymbolPath, long Bytes) WriteSample(string dir, string name, SymbolForge forge)
    {
        Directory.CreateDirectory(dir);
        var sym = Path.Combine(dir, "symbols", name);
        var forged = forge.ForgeInto(sym,
        [
            ForgeModules.DhcpCore(),
            ForgeModules.Synthetic("kernel32.dll", ForgeModuleKind.UserDll, new Dictionary<string, ulong> { ["WaitForMultipleObjectsExImplementation"] = 0x21630 }, pdbName: "kernel32.pdb"),
            ForgeModules.Synthetic("KERNELBASE.dll", ForgeModuleKind.UserDll, new Dictionary<string, ulong> { ["WaitForMultipleObjectsEx"] = 0x11340 }, pdbName: "kernelbase.pdb"),
        ]);
        var byName = new Dictionary<string, ForgeResult>(StringComparer.OrdinalIgnoreCase) { ["dhcpcore"] = forged[0], ["kernel32"] = forged[1], ["KERNELBASE"] = forged[2] };
        var b = Build();
        var modules = b.Target.GetModules().Select(m =>
        {
            if (!byName.TryGetValue(m.Name, out var f)) return new MinidumpModule(m.ImagePath!, m.Base, m.Size, 0x4ce7b8a1);
            new PeImage(File.ReadAllBytes(f.ImagePath)).MapInto(b.Memory, m.Base);
            return new MinidumpModule(m.ImagePath!, m.Base, Math.Max(f.SizeOfImage, m.Size), f.TimeDateStamp, f.CheckSum, f.PdbGuid, f.Age, f.PdbName);
        }).ToList();
        var threads = b.Target.GetThreadStacks(64).Select(t => new MinidumpThread(t.ThreadId, t.ThreadAddress,
            t.Frames[0].InstructionOffset, t.Frames[0].StackOffset, 0, StackBase, StackBase + 0x10000)).ToList();
        Directory.CreateDirectory(Path.Combine(dir, "dumps"));
        string dump = Path.Combine(dir, "dumps", name + ".dmp");
        long bytes = MinidumpWriter.Write(dump, b.Memory, new MinidumpSpec { DumpTimeUtc = DumpTimeUtc, ProcessId = 0x3a4, Modules = modules, Threads = threads });
        return (dump, sym, bytes);
    }
}
