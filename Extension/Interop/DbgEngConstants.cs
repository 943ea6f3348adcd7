using System.Runtime.InteropServices;

namespace NtSleuth.Extension.Interop;

/// <summary>Constants and structures from dbgeng.h (values checked against the header by hand).</summary>
public static class DbgEngConst
{
    public const int S_OK = 0;
    public const int S_FALSE = 1;

    public const uint DEBUG_OUTPUT_NORMAL = 0x1;
    public const uint DEBUG_OUTPUT_ERROR = 0x2;
    public const uint DEBUG_OUTPUT_WARNING = 0x4;
    public const uint DEBUG_OUTCTL_AMBIENT_DML = 0xfffffffe;
    public const uint DEBUG_OUTCTL_AMBIENT_TEXT = 0xffffffff;

    public const uint DEBUG_ENGOPT_PREFER_DML = 0x00040000;
    public const uint DEBUG_INTERRUPT_PASSIVE = 1;

    public const uint DEBUG_CLASS_KERNEL = 1;
    public const uint DEBUG_CLASS_USER_WINDOWS = 2;
    public const uint DEBUG_DUMP_SMALL = 1024;
    public const uint DEBUG_DUMP_ACTIVE = 1030;

    public const uint DEBUG_VALUE_INT64 = 4;
    public const uint DEBUG_MODNAME_IMAGE = 0;
    public const uint DEBUG_MODNAME_MODULE = 1;
    public const uint DEBUG_ANY_ID = 0xffffffff;
}

/// <summary>DEBUG_VALUE (32 bytes): 24-byte union, TailOfRawBytes, Type.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct DEBUG_VALUE
{
    [FieldOffset(0)] public ulong I64;
    [FieldOffset(8)] public int Nat;
    [FieldOffset(24)] public uint TailOfRawBytes;
    [FieldOffset(28)] public uint Type;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct DEBUG_STACK_FRAME
{
    public ulong InstructionOffset;
    public ulong ReturnOffset;
    public ulong FrameOffset;
    public ulong StackOffset;
    public ulong FuncTableEntry;
    public fixed ulong Params[4];
    public fixed ulong Reserved[6];
    public int Virtual;
    public uint FrameNumber;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct DEBUG_MODULE_PARAMETERS
{
    public ulong Base;
    public uint Size;
    public uint TimeDateStamp;
    public uint Checksum;
    public uint Flags;
    public uint SymbolType;
    public uint ImageNameSize;
    public uint ModuleNameSize;
    public uint LoadedImageNameSize;
    public uint SymbolFileNameSize;
    public uint MappedImageNameSize;
    public fixed ulong Reserved[2];
}
