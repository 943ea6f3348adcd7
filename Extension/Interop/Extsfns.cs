using System.Runtime.InteropServices;

namespace NtSleuth.Extension.Interop;

/// <summary>
/// The parts of extsfns.h (the header of ext.dll's !analyze, not in the Microsoft.Debugging.Platform.DbgEng package)
/// that the !analyze plug-in uses: IIDs, vtable slot order, enum values. Written from these public sources and
/// checked against them by Extension.Tests/Interop/ExtsfnsContractTests (docs/analyze.md, "Sources"):
///   - Microsoft's docs: "Writing an Analysis Extension Plugin to Extend !analyze", EXT_ANALYSIS_PLUGIN (_EFN_Analyze),
///     IDebugFailureAnalysis2, IDebugFAEntryTags, FA_EXTENSION_PLUGIN_PHASE, FA_ENTRY_TYPE, DEBUG_FLR_PARAM_TYPE pages
///     (MicrosoftDocs/windows-driver-docs-ddi, wdk-ddi-src/content/extsfns/): names, signatures, phases.
///   - Two public copies of the header itself (the docs give no numbers and list methods alphabetically):
///     k0keoyo/SegmentHeapExt segmentheap/extsfns.h (commit e4294ec7, 2020) and geduer/ndx inc/extsfns.h
///     (commit cc6c198e, 2022). Every value below is the same in both; the 2022 copy adds one method after
///     GetAnalysisXml (AddStructuredAnalysisData), which is not used and not declared here.
/// </summary>
public static class Extsfns
{
    public static readonly Guid IID_IDebugFailureAnalysis2 = new("ea15c288-8226-4b70-acf6-0be6b189e3ad");

    // FA_EXTENSION_PLUGIN_PHASE (the CallPhase of _EFN_Analyze)
    public const uint FA_PLUGIN_INITILIZATION = 0x0001; // sic: the 2020 header's only spelling; the 2022 one adds FA_PLUGIN_INITIALIZATION and keeps this as an alias
    public const uint FA_PLUGIN_STACK_ANALYSIS = 0x0002;
    public const uint FA_PLUGIN_PRE_BUCKETING = 0x0004;
    public const uint FA_PLUGIN_POST_BUCKETING = 0x0008;

    // FA_ENTRY_TYPE (IDebugFAEntryTags::GetType)
    public const uint DEBUG_FA_ENTRY_NO_TYPE = 0;
    public const uint DEBUG_FA_ENTRY_ULONG = 1;
    public const uint DEBUG_FA_ENTRY_ULONG64 = 2;
    public const uint DEBUG_FA_ENTRY_INSTRUCTION_OFFSET = 3;
    public const uint DEBUG_FA_ENTRY_POINTER = 4;
    public const uint DEBUG_FA_ENTRY_ANSI_STRING = 5;
    public const uint DEBUG_FA_ENTRY_EXTENSION_CMD = 7;

    // DEBUG_FLR_PARAM_TYPE (FA_TAG): the tags written or read here.
    public const uint DEBUG_FLR_BUGCHECK_CODE = 0x0000100C;
    public const uint DEBUG_FLR_IMAGE_NAME = 0x00010001;
    public const uint DEBUG_FLR_SYMBOL_NAME = 0x00010002;
    public const uint DEBUG_FLR_MODULE_NAME = 0x00010006;
    public const uint DEBUG_FLR_ADDITIONAL_DEBUGTEXT = 0x0001000A;
    public const uint DEBUG_FLR_FAULTING_IP = 0x80000000;

    /// <summary>The tag names, as the header spells them (for messages and tests).</summary>
    public static string TagName(uint tag) => tag switch
    {
        DEBUG_FLR_BUGCHECK_CODE => "DEBUG_FLR_BUGCHECK_CODE",
        DEBUG_FLR_IMAGE_NAME => "DEBUG_FLR_IMAGE_NAME",
        DEBUG_FLR_SYMBOL_NAME => "DEBUG_FLR_SYMBOL_NAME",
        DEBUG_FLR_MODULE_NAME => "DEBUG_FLR_MODULE_NAME",
        DEBUG_FLR_ADDITIONAL_DEBUGTEXT => "DEBUG_FLR_ADDITIONAL_DEBUGTEXT",
        DEBUG_FLR_FAULTING_IP => "DEBUG_FLR_FAULTING_IP",
        _ => $"tag 0x{tag:x}",
    };
}

/// <summary>IDebugFailureAnalysis2's vtable, in the header's order (IUnknown first).</summary>
public enum FailureAnalysis2Slot
{
    QueryInterface, AddRef, Release,
    GetFailureClass, GetFailureType, GetFailureCode, Get, GetNext, GetString, GetBuffer, GetUlong, GetUlong64, NextEntry,
    SetString, SetExtensionCommand, SetUlong, SetUlong64, SetBuffer,
    AddString, AddExtensionCommand, AddUlong, AddUlong64, AddBuffer,
    GetDebugFATagControl, GetAnalysisXml,
}

/// <summary>IDebugFAEntryTags's vtable. It does not derive from IUnknown (DECLARE_INTERFACE without a base): no
/// QueryInterface, no reference counting.</summary>
public enum FAEntryTagsSlot { GetType, SetType, GetProperties, SetProperties, GetTagByName, IsValidTagToSet }

/// <summary>
/// An IDebugFailureAnalysis2 pointer borrowed for one call of _EFN_Analyze, called through its vtable directly
/// (as a C++ plug-in does): no QueryInterface (the analysis object is not required to answer one), no AddRef/Release.
/// The Set*/Add* methods return the new FA_ENTRY, or null when the entry could not be stored.
/// </summary>
public readonly unsafe struct FailureAnalysis2
{
    private readonly nint _p;
    public FailureAnalysis2(nint pointer) => _p = pointer;
    public nint Pointer => _p;

    private void* Slot(FailureAnalysis2Slot s) => (*(void***)_p)[(int)s];

    public uint GetFailureClass() => ((delegate* unmanaged[Stdcall]<nint, uint>)Slot(FailureAnalysis2Slot.GetFailureClass))(_p);
    public uint GetFailureType() => ((delegate* unmanaged[Stdcall]<nint, uint>)Slot(FailureAnalysis2Slot.GetFailureType))(_p);
    public uint GetFailureCode() => ((delegate* unmanaged[Stdcall]<nint, uint>)Slot(FailureAnalysis2Slot.GetFailureCode))(_p);

    public nint SetString(uint tag, byte* str) => ((delegate* unmanaged[Stdcall]<nint, uint, byte*, nint>)Slot(FailureAnalysis2Slot.SetString))(_p, tag, str);
    public nint AddString(uint tag, byte* str) => ((delegate* unmanaged[Stdcall]<nint, uint, byte*, nint>)Slot(FailureAnalysis2Slot.AddString))(_p, tag, str);
    public nint SetUlong64(uint tag, ulong value) => ((delegate* unmanaged[Stdcall]<nint, uint, ulong, nint>)Slot(FailureAnalysis2Slot.SetUlong64))(_p, tag, value);
    public nint AddUlong64(uint tag, ulong value) => ((delegate* unmanaged[Stdcall]<nint, uint, ulong, nint>)Slot(FailureAnalysis2Slot.AddUlong64))(_p, tag, value);

    /// <summary>The analysis's tag table (IDebugFAEntryTags), or null when the analysis does not give one.</summary>
    public FAEntryTags? GetTagControl()
    {
        nint tags = 0;
        int hr = ((delegate* unmanaged[Stdcall]<nint, nint*, int>)Slot(FailureAnalysis2Slot.GetDebugFATagControl))(_p, &tags);
        return hr >= 0 && tags != 0 ? new FAEntryTags(tags) : null;
    }
}

/// <summary>An IDebugFAEntryTags pointer (not reference counted; owned by the analysis).</summary>
public readonly unsafe struct FAEntryTags
{
    private readonly nint _p;
    public FAEntryTags(nint pointer) => _p = pointer;

    private void* Slot(FAEntryTagsSlot s) => (*(void***)_p)[(int)s];

    /// <summary>The FA_ENTRY_TYPE of a tag.</summary>
    public uint GetType(uint tag) => ((delegate* unmanaged[Stdcall]<nint, uint, uint>)Slot(FAEntryTagsSlot.GetType))(_p, tag);
}
