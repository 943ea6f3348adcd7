using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;
using System.Text.Json.Nodes;
using NtSleuth.Commands.Cli;
using NtSleuth.Commands.Output;
using NtSleuth.Extension.Interop;
using NtSleuth.Extension.Interop.DbgModel;

namespace NtSleuth.Extension.DataModel;

/// <summary>One method of <c>@$ntsleuth</c>: its data-model name and the command it runs.</summary>
public sealed record DxCommand(string Method, string Command, string Help);

/// <summary>
/// The debugger data-model provider: <c>@$ntsleuth</c> with one method per command (docs/dx.md), and
/// <c>NtSleuth</c> on every thread (<c>Debugger.Models.Thread</c>). Registered when the extension loads (the shim
/// starts .NET in DebugExtensionInitialize and sends <see cref="Loaded"/>), removed on unload. A method runs the
/// command in -json mode and maps that document (<see cref="DxMapping"/>): the data is exactly what -json writes.
/// Documents are kept until the target runs or the session changes (<see cref="OnNotify"/>).
/// </summary>
public static unsafe class DataModelProvider
{
    /// <summary>The methods of @$ntsleuth. Adding a command to the data model is one line here.</summary>
    public static readonly DxCommand[] Commands =
    [
        new("AlpcChain", "alpcchain", "AlpcChain(thread) follows the ALPC wait chain of an _ETHREAD; AlpcChain() = !alpcchain -all"),
        new("LeakTag", "leaktag", "LeakTag() top pool consumers; LeakTag(\"Tag\") one tag: counters, modules, code sites"),
        new("NblOwners", "nblowners", "NblOwners() who holds the NET_BUFFER_LISTs; extra arguments as on the command line"),
        new("DpcBlame", "dpcblame", "DpcBlame() which DPC/ISR ran too long (0x133) and whose code it is"),
        new("FrameOrder", "frameorder", "FrameOrder() filter manager frames and legacy filters vs altitudes"),
        new("DhcpTimer", "dhcptimer", "DhcpTimer() dhcpcore lease timers; DhcpTimer(\"-lease 365.00:00:00\")"),
        new("WorkQueues", "workqueue", "WorkQueues() every system work queue: pending items by routine, workers and where they block; WorkQueues(\"-routine mpio!MPIOPathVerify\")"),
    ];

    public const uint Loaded = 0xFFFFFFFE;
    public const uint Unloaded = 0xFFFFFFFF;
    public const string RootName = "ntsleuth";
    public const string ThreadModelName = "Debugger.Models.Thread";
    /// <summary>Set to 1 to keep the data model untouched (the shim then also skips starting .NET at load).</summary>
    public const string DisableVariable = "NTSLEUTH_NO_DATAMODEL";

    private static readonly object Gate = new();
    private static State? _state;
    private static readonly Dictionary<string, JsonObject> Documents = new(StringComparer.Ordinal);
    private static int _documentsGeneration = -1;

    /// <summary>What is registered: everything released by <see cref="Unregister"/>.</summary>
    private sealed class State
    {
        public void* Client, Manager, Host, Root, Alias, ThreadModel, ThreadExtension;
        public bool AliasCreated;
        public ModelFactory Factory = null!;
        public ModelBuilder Builder = null!;
    }

    static DataModelProvider() => RootMethod.RootOf = st => (nint)((State)st).Root;

    public static bool IsRegistered { get { lock (Gate) return _state is not null; } }
    public static string? LastError { get; private set; }
    /// <summary>Documents computed by the engine (tests: a second read in the same stop computes nothing).</summary>
    public static int Computations { get; private set; }

    /// <summary>DebugExtensionNotify and the shim's load/unload (every exception is caught by the caller).</summary>
    public static void OnNotify(uint notify)
    {
        switch (notify)
        {
            case Loaded: Register(); break;
            case Unloaded: Unregister(); break;
            // SESSION_ACTIVE 0, INACTIVE 1, ACCESSIBLE 2 (the target stopped), INACCESSIBLE 3 (it runs).
            case 0 or 1 or 2 or 3: lock (Gate) Documents.Clear(); break;
        }
    }

    [DllImport("dbgeng.dll", ExactSpelling = true)]
    private static extern int DebugCreate(Guid* iid, void** client);

    public static void Register()
    {
        lock (Gate)
        {
            if (_state is not null) return;
            if (Environment.GetEnvironmentVariable(DisableVariable) is "1") return;
            var s = new State();
            try
            {
                Guid iid = typeof(IDebugClient).GUID;
                void* client;
                ModelCom.Check(DebugCreate(&iid, &client), "DebugCreate");
                s.Client = client;
                void* access = ModelCom.Query(client, typeof(IHostDataModelAccess).GUID);
                if (access == null) throw new ModelException(ModelCom.E_FAIL, "the engine offers no IHostDataModelAccess (no data model)");
                try
                {
                    void* m = null, h = null;
                    using (var a = ModelCom.Open<IHostDataModelAccess>(access)) ModelCom.Check(a.I.GetDataModel(&m, &h), "GetDataModel");
                    s.Manager = m;
                    s.Host = h;
                }
                finally { ModelCom.Release(access); }
                s.Factory = new ModelFactory(s.Manager, s.Host);
                s.Builder = new ModelBuilder(s.Factory);
                var f = s.Factory;

                // The root object: a synthetic object with one method per command.
                s.Root = f.Synthetic();
                foreach (var c in Commands)
                    f.SetKeyOwned(s.Root, c.Method, f.Method(new CommandMethod(s.Builder, c)));

                // @$ntsleuth: a function alias (IDebugHostExtensibility::CreateFunctionAlias: "@$name(...)" in the
                // evaluator) whose method object also carries the command methods as keys, so both
                // @$ntsleuth.AlpcChain(...) and @$ntsleuth().AlpcChain(...) work. Destroyed on unload.
                s.Alias = f.Method(new RootMethod(s));
                foreach (var c in Commands)
                    f.SetKeyOwned(s.Alias, c.Method, f.Method(new CommandMethod(s.Builder, c)));
                void* ext = ModelCom.Query(s.Host, typeof(IDebugHostExtensibility).GUID);
                if (ext == null) throw new ModelException(ModelCom.E_FAIL, "the host offers no IDebugHostExtensibility (no function aliases)");
                try
                {
                    fixed (char* n = RootName)
                    using (var x = ModelCom.Open<IDebugHostExtensibility>(ext)) ModelCom.Check(x.I.CreateFunctionAlias(n, s.Alias), "CreateFunctionAlias(ntsleuth)");
                    s.AliasCreated = true;
                }
                finally { ModelCom.Release(ext); }

                // Debugger.Models.Thread: every thread object gets NtSleuth.AlpcChain.
                void* tm = null;
                int thr;
                fixed (char* n = ThreadModelName)
                using (var x = ModelCom.Open<IDataModelManager>(s.Manager)) thr = x.I.AcquireNamedModel(n, &tm);
                if (thr >= 0) s.ThreadModel = tm;
                if (s.ThreadModel != null)
                {
                    s.ThreadExtension = f.DataModel(new NamedDataModel("NtSleuth.Thread"));
                    f.SetKeyOwned(s.ThreadExtension, "NtSleuth", f.Property(new ThreadProperty(s.Builder)));
                    using var t = ModelCom.Open<IModelObject>(s.ThreadModel);
                    ModelCom.Check(t.I.AddParentModel(s.ThreadExtension, null, 0), "AddParentModel(Debugger.Models.Thread)");
                }
                _state = s;
                LastError = null;
            }
            catch (Exception ex)
            {
                LastError = ex.Message;
                Release(s);
            }
        }
    }

    public static void Unregister()
    {
        lock (Gate)
        {
            var s = _state;
            _state = null;
            Documents.Clear();
            if (s is not null) Release(s);
        }
    }

    private static void Release(State s)
    {
        try
        {
            if (s.AliasCreated)
            {
                void* ext = ModelCom.Query(s.Host, typeof(IDebugHostExtensibility).GUID);
                if (ext != null)
                {
                    fixed (char* n = RootName)
                    using (var x = ModelCom.Open<IDebugHostExtensibility>(ext)) x.I.DestroyFunctionAlias(n);
                    ModelCom.Release(ext);
                }
            }
            if (s.ThreadModel != null && s.ThreadExtension != null)
                using (var t = ModelCom.Open<IModelObject>(s.ThreadModel)) t.I.RemoveParentModel(s.ThreadExtension);
        }
        catch { /* never throw into the engine */ }
        try { s.Factory?.Dispose(); } catch { /* ditto */ }
        foreach (var p in new[] { s.ThreadExtension, s.ThreadModel, s.Alias, s.Root, s.Host, s.Manager, s.Client })
            try { ModelCom.Release(p); } catch { /* ditto */ }
    }

    /// <summary>
    /// The command's -json document for these arguments, computed once per stop: kept until the target runs, the
    /// session changes or the session cache is dropped (module list changed, unload).
    /// </summary>
    internal static JsonObject Document(string command, string arguments)
    {
        string key = command + " " + arguments;
        lock (Gate)
        {
            int gen = EngineSessionCache.Generation;
            if (gen != _documentsGeneration) { Documents.Clear(); _documentsGeneration = gen; }
            if (Documents.TryGetValue(key, out var d)) return d;
        }
        var s = _state ?? throw new ModelException(ModelCom.E_FAIL, "the data model provider is not registered");
        var sink = new BufferSink(false);
        DbgEngSession? session = null;
        DbgEngTarget? target = null;
        try
        {
            session = new DbgEngSession((IntPtr)s.Client);
            target = new DbgEngTarget(session);
            CommandDispatcher.Run(command, (arguments + " -json").Trim(), target, sink);
        }
        finally
        {
            try { target?.EndCommand(); } catch { /* never throw into the engine */ }
            session?.Dispose();
        }
        var doc = JsonNode.Parse(sink.Text) as JsonObject
                  ?? throw new ModelException(ModelCom.E_FAIL, $"!{command} wrote no JSON document");
        Computations++;
        string status = doc["status"]?.GetValue<string>() ?? "";
        lock (Gate)
        {
            // The module check in DbgEngTarget may have dropped the session cache: tie the document to the new generation.
            if (EngineSessionCache.Generation != _documentsGeneration) { Documents.Clear(); _documentsGeneration = EngineSessionCache.Generation; }
            if (status is "ok" or "notApplicable") Documents[key] = doc;
        }
        return doc;
    }

    /// <summary>The arguments of a method call as the command's argument line (numbers as 0x..., strings as they are).</summary>
    internal static string Arguments(string command, IReadOnlyList<object> args)
    {
        var parts = new List<string>();
        foreach (var a in args)
        {
            string p = a switch
            {
                ulong u => "0x" + u.ToString("x"),
                string t => t,
                _ => throw new ModelException(ModelCom.E_INVALIDARG, $"{command}: arguments are addresses, numbers or strings"),
            };
            foreach (var tok in p.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                string t = tok.TrimStart('-', '/').ToLowerInvariant();
                if ((tok.StartsWith('-') || tok.StartsWith('/')) && t is "json" or "out" or "dml" or "text" or "stats")
                    throw new ModelException(ModelCom.E_INVALIDARG, $"{command}: '{tok}' controls command output and has no meaning in dx");
            }
            parts.Add(p);
        }
        return string.Join(' ', parts);
    }

    /// <summary>The model object for a command's document: its fields, or an error object when it did not succeed.</summary>
    internal static void* Result(ModelBuilder b, string command, string arguments, out int hr)
    {
        var doc = Document(command, arguments);
        string status = doc["status"]?.GetValue<string>() ?? "";
        if (status != "ok")
        {
            string msg = doc["error"]?["message"]?.GetValue<string>() ?? status;
            hr = status == "interrupted" ? ModelCom.E_ABORT : status == "usageError" ? ModelCom.E_INVALIDARG : ModelCom.E_FAIL;
            return b.Factory.Error(hr, msg);
        }
        hr = ModelCom.S_OK;
        return b.Build(DxMapping.Root(doc, command));
    }

    /// <summary>Argument values of a call: numbers (an address, a pointer, an integer) or strings.</summary>
    internal static List<object> ReadArguments(ulong count, void** args)
    {
        var list = new List<object>();
        for (ulong i = 0; i < count && i < 16; i++)
        {
            void* a = args[i];
            if (ModelFactory.Text(a) is { } s) list.Add(s);
            else if (ModelFactory.Number(a) is { } n) list.Add(n);
            else throw new ModelException(ModelCom.E_INVALIDARG, $"argument {i + 1} is neither a number, an address nor a string");
        }
        return list;
    }
}

/// <summary>The IDataModelConcept of our parent models (they need no per-object initialization).</summary>
[GeneratedComClass]
internal sealed unsafe partial class NamedDataModel(string name) : IDataModelConcept
{
    public int InitializeObject(void* modelObject, void* matchingTypeSignature, void* wildcardMatches) => ModelCom.S_OK;

    public int GetName(IntPtr* modelName)
    {
        try { *modelName = Marshal.StringToBSTR(name); return ModelCom.S_OK; }
        catch { *modelName = IntPtr.Zero; return ModelCom.E_FAIL; }
    }
}

/// <summary>@$ntsleuth(): the root object (the same methods as keys).</summary>
[GeneratedComClass]
internal sealed unsafe partial class RootMethod(object state) : IModelMethod
{
    internal static Func<object, nint>? RootOf;

    public int Call(void* contextObject, ulong argCount, void** arguments, void** result, void** metadata)
    {
        if (metadata != null) *metadata = null;
        void* root = (void*)(RootOf?.Invoke(state) ?? 0);
        if (root == null) { *result = null; return ModelCom.E_FAIL; }
        ModelCom.AddRef(root);
        *result = root;
        return ModelCom.S_OK;
    }
}

/// <summary>@$ntsleuth.&lt;Method&gt;(args...): runs the command, returns its report as a model object.</summary>
[GeneratedComClass]
internal sealed unsafe partial class CommandMethod(ModelBuilder builder, DxCommand command) : IModelMethod
{
    public int Call(void* contextObject, ulong argCount, void** arguments, void** result, void** metadata)
    {
        if (metadata != null) *metadata = null;
        try
        {
            var args = DataModelProvider.Arguments(command.Method, DataModelProvider.ReadArguments(argCount, arguments));
            // AlpcChain() with no thread is the whole system (-all), as dx users expect from a collection query.
            if (command.Command == "alpcchain" && args.Length == 0) args = "-all";
            *result = DataModelProvider.Result(builder, command.Command, args, out int hr);
            return hr;
        }
        catch (Exception ex) { return builder.Fail(ex, result); }
    }
}

/// <summary><c>&lt;thread&gt;.NtSleuth</c>: the thread's findings (AlpcChain), computed when read.</summary>
[GeneratedComClass]
internal sealed unsafe partial class ThreadProperty(ModelBuilder builder) : IModelPropertyAccessor
{
    public int GetValue(char* key, void* contextObject, void** value)
    {
        try
        {
            // Kernel targets: the thread object's KernelObject is its _ETHREAD.
            void* ko = ModelFactory.KeyValue(contextObject, "KernelObject");
            ulong? ethread;
            try { ethread = ModelFactory.Number(ko); }
            finally { ModelCom.Release(ko); }
            if (ethread is not { } t || t == 0) throw new ModelException(ModelCom.E_FAIL, "this thread has no KernelObject (_ETHREAD): a kernel target is needed");
            var f = builder.Factory;
            void* obj = f.Synthetic();
            try
            {
                f.SetKeyOwned(obj, "AlpcChain", f.Property(new ThreadCommandProperty(builder, "alpcchain", $"0x{t:x}")));
                *value = obj;
                return ModelCom.S_OK;
            }
            catch { ModelCom.Release(obj); throw; }
        }
        catch (Exception ex) { return builder.Fail(ex, value); }
    }

    public int SetValue(char* key, void* contextObject, void* value) => ModelCom.E_NOTIMPL;
}

[GeneratedComClass]
internal sealed unsafe partial class ThreadCommandProperty(ModelBuilder builder, string command, string arguments) : IModelPropertyAccessor
{
    public int GetValue(char* key, void* contextObject, void** value)
    {
        try
        {
            *value = DataModelProvider.Result(builder, command, arguments, out int hr);
            return hr;
        }
        catch (Exception ex) { return builder.Fail(ex, value); }
    }

    public int SetValue(char* key, void* contextObject, void* value) => ModelCom.E_NOTIMPL;
}
