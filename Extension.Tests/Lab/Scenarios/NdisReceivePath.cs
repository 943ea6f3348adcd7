using System.Text;
using NtSleuth.Commands.Symbols.Isf;
using NtSleuth.Lab.Scenario;

namespace NtSleuth.Lab.Scenarios;

/// <summary>
/// Seed 001's receive path on 2008 R2: the paravirtual NIC driver's adapter context (netkvm's PARANDIS_ADAPTER, fields as
/// the seed names them: NetReceiveBuffers, NetNofReceiveBuffers, NetReceiveBuffersWaiting) and tcpip's per-CPU send rundown
/// (tcpip!Provider_Rundown_Protection, an EX_RUNDOWN_REF_CACHE_AWARE). These are the lab's own symbol tables: the field names
/// come from the seed, the offsets and the type layout are chosen here (no public PDB of netkvm/tcpip for these builds is used).
/// </summary>
public sealed record NetkvmReceiveSpec(int FreeBuffers, int WaitingBuffers);

public static class NdisReceivePath
{
    public const string AdapterType = "_tagPARANDIS_ADAPTER";
    public const ulong NetkvmBase = 0xfffff880_04200000;
    public const ulong TcpipBase = 0xfffff880_01600000;
    public const ulong ProviderRundownRva = 0x1a2b0;

    /// <summary>netkvm's symbols in the lab: the adapter context type and the receive descriptor.</summary>
    public static IsfDocument NetkvmIsf() => Doc("netkvm.pdb", """
        "_tagPARANDIS_ADAPTER":{"kind":"struct","size":2048,"fields":{
          "MiniportHandle":{"offset":0,"type":{"kind":"pointer","subtype":{"kind":"base","name":"void"}}},
          "NetReceiveBuffers":{"offset":1280,"type":{"kind":"struct","name":"_LIST_ENTRY"}},
          "NetNofReceiveBuffers":{"offset":1296,"type":{"kind":"base","name":"unsigned long"}},
          "NetReceiveBuffersWaiting":{"offset":1304,"type":{"kind":"struct","name":"_LIST_ENTRY"}},
          "NetMaxReceiveBuffers":{"offset":1320,"type":{"kind":"base","name":"unsigned long"}}}},
        "IONetDescriptor":{"kind":"struct","size":96,"fields":{
          "listEntry":{"offset":0,"type":{"kind":"struct","name":"_LIST_ENTRY"}},
          "pHolder":{"offset":64,"type":{"kind":"pointer","subtype":{"kind":"base","name":"void"}}}}}
        """, "{}");

    /// <summary>tcpip's symbols in the lab: Provider_Rundown_Protection (a pointer to the cache-aware rundown) and the type.</summary>
    public static IsfDocument TcpipIsf() => Doc("tcpip.pdb", """
        "_EX_RUNDOWN_REF_CACHE_AWARE":{"kind":"struct","size":24,"fields":{
          "RunRefs":{"offset":0,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_EX_RUNDOWN_REF"}}},
          "PoolToFree":{"offset":8,"type":{"kind":"pointer","subtype":{"kind":"base","name":"void"}}},
          "RunRefSize":{"offset":16,"type":{"kind":"base","name":"unsigned long"}},
          "Number":{"offset":20,"type":{"kind":"base","name":"unsigned long"}}}}
        """, "{\"Provider_Rundown_Protection\":{\"address\":" + ProviderRundownRva + "} }");

    private static IsfDocument Doc(string pdb, string userTypes, string symbols)
    {
        string json = $$$$$"""
        {"metadata":{"format":"6.1.0","windows":{"pdb":{"GUID":"{{{{{Convert.ToHexString(System.Security.Cryptography.MD5.HashData(Encoding.UTF8.GetBytes("ntsleuth-lab|" + pdb)))}}}}}","age":1,"database":"{{{{{pdb}}}}}","machine_type":34404}}},
         "base_types":{"unsigned long":{"size":4,"signed":false,"kind":"int","endian":"little"},
                       "unsigned char":{"size":1,"signed":false,"kind":"char","endian":"little"},
                       "unsigned long long":{"size":8,"signed":false,"kind":"int","endian":"little"},
                       "void":{"size":0,"signed":true,"kind":"void","endian":"little"},
                       "pointer":{"size":8,"signed":false,"kind":"int","endian":"little"}},
         "user_types":{ {{{{{userTypes}}}}},
           "_LIST_ENTRY":{"kind":"struct","size":16,"fields":{"Flink":{"offset":0,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_LIST_ENTRY"}}},"Blink":{"offset":8,"type":{"kind":"pointer","subtype":{"kind":"struct","name":"_LIST_ENTRY"}}} } },
           "_EX_RUNDOWN_REF":{"kind":"struct","size":8,"fields":{"Count":{"offset":0,"type":{"kind":"base","name":"unsigned long long"}}}} },
         "enums":{}, "symbols":{{{{{symbols}}}}} }
        """;
        return IsfDocument.Parse(new MemoryStream(Encoding.UTF8.GetBytes(json)), "lab:" + pdb);
    }

    /// <summary>Lays netkvm's adapter context for <paramref name="miniport"/> (MiniportAdapterContext) with the receive lists.</summary>
    public static ulong LayAdapter(TypedMemory w, ulong miniport, NetkvmReceiveSpec spec)
    {
        var m = w.Memory;
        ulong ctx = w.Allocate(0x800, 0x40);
        m.Map(ctx, 0x800);
        w.Set(miniport, "_NDIS_MINIPORT_BLOCK", "MiniportAdapterContext", ctx, "ndis");
        m.WriteU64(ctx, miniport);
        void List(ulong head, int n)
        {
            m.WriteU64(head, head); m.WriteU64(head + 8, head);
            for (int i = 0; i < n; i++)
            {
                ulong d = w.Allocate(0x60, 0x10);
                m.Map(d, 0x60);
                ulong last = m.ReadU64(head + 8);
                m.WriteU64(d, head); m.WriteU64(d + 8, last); m.WriteU64(last, d); m.WriteU64(head + 8, d);
            }
        }
        List(ctx + 1280, spec.FreeBuffers);
        m.WriteU32(ctx + 1296, (uint)spec.FreeBuffers);
        List(ctx + 1304, spec.WaitingBuffers);
        m.WriteU32(ctx + 1320, (uint)(spec.FreeBuffers + spec.WaitingBuffers));
        return ctx;
    }

    /// <summary>tcpip!Provider_Rundown_Protection: a pointer to a cache-aware rundown with one _EX_RUNDOWN_REF per CPU (count in bits 1.., bit 0 = active).</summary>
    public static void LayRundown(TypedMemory w, int[] perCpu)
    {
        var m = w.Memory;
        ulong sym = TcpipBase + ProviderRundownRva;
        m.Map(sym, 8);
        ulong ca = w.Allocate(0x18, 0x10); m.Map(ca, 0x18);
        const uint stride = 0x40; // one cache line per CPU
        ulong refs = w.Allocate((ulong)perCpu.Length * stride, 0x40); m.Map(refs, (ulong)perCpu.Length * stride);
        m.WriteU64(sym, ca);
        m.WriteU64(ca, refs); m.WriteU64(ca + 8, refs);
        m.WriteU32(ca + 16, stride); m.WriteU32(ca + 20, (uint)perCpu.Length);
        for (int i = 0; i < perCpu.Length; i++) m.WriteU64(refs + (ulong)i * stride, (ulong)perCpu[i] << 1);
    }
}
