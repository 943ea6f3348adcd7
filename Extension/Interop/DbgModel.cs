// The debugger data model interfaces (dbgmodel.h of Microsoft.Debugging.Platform.DbgEng 20260109.1235.0) that the
// data-model provider (Extension/DataModel) uses. Written by hand in the header's vtable order, each interface up to
// the last method we call; Extension.Tests/Interop/DbgModelHeaderContractTests checks IIDs, slot order, parameter
// counts and the enum values against the real header. Object pointers stay void* so every reference is released
// explicitly (DataModel/ModelRef), never left to a finalizer.
#pragma warning disable CS1591, IDE1006
using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;

namespace NtSleuth.Extension.Interop.DbgModel;

/// <summary>ModelObjectKind (dbgmodel.h).</summary>
public enum ModelObjectKind
{
    ObjectPropertyAccessor = 0,
    ObjectContext = 1,
    ObjectTargetObject = 2,
    ObjectTargetObjectReference = 3,
    ObjectSynthetic = 4,
    ObjectNoValue = 5,
    ObjectError = 6,
    ObjectIntrinsic = 7,
    ObjectMethod = 8,
    ObjectKeyReference = 9,
}

/// <summary>Location (dbgmodel.h): HostDefined + Offset.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ModelLocation
{
    public ulong HostDefined;
    public ulong Offset;
}

/// <summary>The x64 VARIANT (24 bytes): vt, three reserved words, a 16-byte union (we use its first 8 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
public struct Variant
{
    public const ushort VT_EMPTY = 0, VT_I4 = 3, VT_R8 = 5, VT_BSTR = 8, VT_BOOL = 11, VT_UNKNOWN = 13,
        VT_I1 = 16, VT_UI1 = 17, VT_UI2 = 18, VT_UI4 = 19, VT_I8 = 20, VT_UI8 = 21, VT_I2 = 2, VT_INT = 22, VT_UINT = 23;
    [FieldOffset(0)] public ushort vt;
    [FieldOffset(8)] public long llVal;
    [FieldOffset(8)] public ulong ullVal;
    [FieldOffset(8)] public double dblVal;
    [FieldOffset(8)] public IntPtr ptr;
}

[GeneratedComInterface]
[Guid("f2bce54e-4835-4f8a-836e-7981e29904d1")]
public unsafe partial interface IHostDataModelAccess
{
    [PreserveSig] int GetDataModel(void** manager, void** host);
}

[GeneratedComInterface]
[Guid("73fe19f4-a110-4500-8ed9-3c28896f508c")]
public unsafe partial interface IDataModelManager
{
    [PreserveSig] int Close();
    [PreserveSig] int CreateNoValue(void** obj);
    [PreserveSig] int CreateErrorObject(int hrError, char* message, void** obj);
    [PreserveSig] int CreateTypedObject(void* context, ModelLocation objectLocation, void* objectType, void** obj);
    [PreserveSig] int CreateTypedObjectReference(void* context, ModelLocation objectLocation, void* objectType, void** obj);
    [PreserveSig] int CreateSyntheticObject(void* context, void** obj);
    [PreserveSig] int CreateDataModelObject(void* dataModel, void** obj);
    [PreserveSig] int CreateIntrinsicObject(ModelObjectKind objectKind, Variant* intrinsicData, void** obj);
    [PreserveSig] int CreateTypedIntrinsicObject(Variant* intrinsicData, void* type, void** obj);
    [PreserveSig] int GetModelForTypeSignature(void* typeSignature, void** dataModel);
    [PreserveSig] int GetModelForType(void* type, void** dataModel, void** typeSignature, void** wildcardMatches);
    [PreserveSig] int RegisterModelForTypeSignature(void* typeSignature, void* dataModel);
    [PreserveSig] int UnregisterModelForTypeSignature(void* dataModel, void* typeSignature);
    [PreserveSig] int RegisterExtensionForTypeSignature(void* typeSignature, void* dataModel);
    [PreserveSig] int UnregisterExtensionForTypeSignature(void* dataModel, void* typeSignature);
    [PreserveSig] int CreateMetadataStore(void* parentStore, void** metadataStore);
    [PreserveSig] int GetRootNamespace(void** rootNamespace);
    [PreserveSig] int RegisterNamedModel(char* modelName, void* modelObject);
    [PreserveSig] int UnregisterNamedModel(char* modelName);
    [PreserveSig] int AcquireNamedModel(char* modelName, void** modelObject);
}

[GeneratedComInterface]
[Guid("e28c7893-3f4b-4b96-baca-293cdc55f45d")]
public unsafe partial interface IModelObject
{
    [PreserveSig] int GetContext(void** context);
    [PreserveSig] int GetKind(ModelObjectKind* kind);
    [PreserveSig] int GetIntrinsicValue(Variant* intrinsicData);
    [PreserveSig] int GetIntrinsicValueAs(ushort vt, Variant* intrinsicData);
    [PreserveSig] int GetKeyValue(char* key, void** obj, void** metadata);
    [PreserveSig] int SetKeyValue(char* key, void* obj);
    [PreserveSig] int EnumerateKeyValues(void** enumerator);
    [PreserveSig] int GetRawValue(int kind, char* name, uint searchFlags, void** obj);
    [PreserveSig] int EnumerateRawValues(int kind, uint searchFlags, void** enumerator);
    [PreserveSig] int Dereference(void** obj);
    [PreserveSig] int TryCastToRuntimeType(void** runtimeTypedObject);
    [PreserveSig] int GetConcept(Guid* conceptId, void** conceptInterface, void** conceptMetadata);
    [PreserveSig] int GetLocation(ModelLocation* location);
    [PreserveSig] int GetTypeInfo(void** type);
    [PreserveSig] int GetTargetInfo(ModelLocation* location, void** type);
    [PreserveSig] int GetNumberOfParentModels(ulong* numModels);
    [PreserveSig] int GetParentModel(ulong i, void** model, void** contextObject);
    [PreserveSig] int AddParentModel(void* model, void* contextObject, byte @override);
    [PreserveSig] int RemoveParentModel(void* model);
    [PreserveSig] int GetKey(char* key, void** obj, void** metadata);
    [PreserveSig] int GetKeyReference(char* key, void** objectReference, void** metadata);
    [PreserveSig] int SetKey(char* key, void* obj, void* metadata);
    [PreserveSig] int ClearKeys();
    [PreserveSig] int EnumerateKeys(void** enumerator);
    [PreserveSig] int EnumerateKeyReferences(void** enumerator);
    [PreserveSig] int SetConcept(Guid* conceptId, void* conceptInterface, void* conceptMetadata);
}

[GeneratedComInterface]
[Guid("b8c74943-6b2c-4eeb-b5c5-35d378a6d99d")]
public unsafe partial interface IDebugHost
{
    [PreserveSig] int GetHostDefinedInterface(void** hostUnk);
    [PreserveSig] int GetCurrentContext(void** context);
    [PreserveSig] int GetDefaultMetadata(void** defaultMetadataStore);
}

[GeneratedComInterface]
[Guid("0fef9a21-577e-4997-ac7b-1c4883241d99")]
public unsafe partial interface IDebugHostEvaluator
{
    [PreserveSig] int EvaluateExpression(void* context, char* expression, void* bindingContext, void** result, void** metadata);
    [PreserveSig] int EvaluateExtendedExpression(void* context, char* expression, void* bindingContext, void** result, void** metadata);
}

// ---- implemented by us (the data model calls them) ----

[GeneratedComInterface]
[Guid("80600c1f-b90b-4896-82ad-1c00207909e8")]
public unsafe partial interface IModelMethod
{
    [PreserveSig] int Call(void* contextObject, ulong argCount, void** arguments, void** result, void** metadata);
}

[GeneratedComInterface]
[Guid("5a0c63d9-0526-42b8-960c-9516a3254c85")]
public unsafe partial interface IModelPropertyAccessor
{
    [PreserveSig] int GetValue(char* key, void* contextObject, void** value);
    [PreserveSig] int SetValue(char* key, void* contextObject, void* value);
}

[GeneratedComInterface]
[Guid("e4622136-927d-4490-874f-581f3e4e3688")]
public unsafe partial interface IModelIterator
{
    [PreserveSig] int Reset();
    [PreserveSig] int GetNext(void** obj, ulong dimensions, void** indexers, void** metadata);
}

[GeneratedComInterface]
[Guid("f5d49d0c-0b02-4301-9c9b-b3a6037628f3")]
public unsafe partial interface IIterableConcept
{
    [PreserveSig] int GetDefaultIndexDimensionality(void* contextObject, ulong* dimensionality);
    [PreserveSig] int GetIterator(void* contextObject, void** iterator);
}

[GeneratedComInterface]
[Guid("d1fad99f-3f53-4457-850c-8051df2d3fb5")]
public unsafe partial interface IIndexableConcept
{
    [PreserveSig] int GetDimensionality(void* contextObject, ulong* dimensionality);
    [PreserveSig] int GetAt(void* contextObject, ulong indexerCount, void** indexers, void** obj, void** metadata);
    [PreserveSig] int SetAt(void* contextObject, ulong indexerCount, void** indexers, void* value);
}

[GeneratedComInterface]
[Guid("d28e8d70-6c00-4205-940d-501016601ea3")]
public unsafe partial interface IStringDisplayableConcept
{
    [PreserveSig] int ToDisplayString(void* contextObject, void* metadata, IntPtr* displayString);
}

[GeneratedComInterface]
[Guid("3c2b24e1-11d0-4f86-8ae5-4df166f73253")]
public unsafe partial interface IDebugHostExtensibility
{
    [PreserveSig] int CreateFunctionAlias(char* aliasName, void* functionObject);
    [PreserveSig] int DestroyFunctionAlias(char* aliasName);
}

[GeneratedComInterface]
[Guid("fcb98d1d-1114-4fbf-b24c-effcb5def0d3")]
public unsafe partial interface IDataModelConcept
{
    [PreserveSig] int InitializeObject(void* modelObject, void* matchingTypeSignature, void* wildcardMatches);
    [PreserveSig] int GetName(IntPtr* modelName);
}
