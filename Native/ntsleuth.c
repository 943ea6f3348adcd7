/*
 * ntsleuth.dll - the DbgEng extension DLL. A thin C shim: it exports the DbgEng extension entry points and the
 * commands, starts .NET on the first command (nethost + hostfxr) and forwards every command to the managed
 * entry point NtSleuth.Extension.Entry.Invoke:
 *     int Invoke(IDebugClient* client, const char* commandName, const char* args)   (returns an HRESULT)
 *
 * Runtime lookup order: an app-local runtime "<dir of ntsleuth.dll>\dotnet\" (laid out as a dotnet root),
 * then DOTNET_ROOT, then the global install (nethost's default search). When no runtime is found or hosting fails,
 * the command prints one actionable message through IDebugControl::Output(DEBUG_OUTPUT_ERROR) and returns an error
 * HRESULT. DebugExtensionInitialize never fails because of .NET, and .NET is never started under the loader lock.
 */
#define WIN32_LEAN_AND_MEAN
#define COBJMACROS
#define INITGUID
#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <wchar.h>
#include <dbgeng.h>
#include <nethost.h>
#include <hostfxr.h>
#include <coreclr_delegates.h>

#define MANAGED_ASSEMBLY L"NtSleuth.Extension.dll"
#define MANAGED_RUNTIMECONFIG L"NtSleuth.Extension.runtimeconfig.json"
#define MANAGED_TYPE L"NtSleuth.Extension.Entry, NtSleuth.Extension"
#define MANAGED_METHOD L"Invoke"
#define MANAGED_NOTIFY_METHOD L"Notify"
#define MANAGED_ANALYZE_METHOD L"Analyze"
#define NTSLEUTH_NOTIFY_UNLOADED 0xFFFFFFFFu /* Entry.Notify: the extension is being unloaded */
#define NTSLEUTH_NOTIFY_LOADED 0xFFFFFFFEu   /* Entry.Notify: the extension was loaded (register @$ntsleuth) */
#define APPLOCAL_RUNTIME_DIR L"dotnet"

/* hostfxr status codes we name in messages (from the .NET host's error_codes.h) */
#define HOSTFXR_CoreHostLibMissingFailure 0x80008083
#define HOSTFXR_FrameworkMissingFailure 0x80008096
#define E_NTSLEUTH_NO_RUNTIME ((HRESULT)0x80008083)
/* Ours (customer bit set): a CoreCLR that the .NET host did not start already runs in the debugger process. */
#define E_NTSLEUTH_FOREIGN_RUNTIME ((HRESULT)0xA0075201)
#define HOSTFXR_HostInvalidState 0x800080a3
#define MAX_CLR_MODULES 8

typedef int(CORECLR_DELEGATE_CALLTYPE *invoke_fn)(void *client, const char *commandName, const char *args);
typedef void(CORECLR_DELEGATE_CALLTYPE *notify_fn)(ULONG notify, ULONG64 argument);
typedef int(CORECLR_DELEGATE_CALLTYPE *analyze_fn)(void *client, ULONG phase, void *analysis);
typedef int(NETHOST_CALLTYPE *get_hostfxr_path_fn)(char_t *buffer, size_t *buffer_size,
                                                    const struct get_hostfxr_parameters *parameters);

static HMODULE g_self;
static SRWLOCK g_initLock = SRWLOCK_INIT;
static invoke_fn volatile g_invoke;
static notify_fn volatile g_notify; /* Entry.Notify: the session cache hears session changes (optional) */
static analyze_fn volatile g_analyze; /* Entry.Analyze: the !analyze plug-in (_EFN_Analyze), resolved with Invoke */
static double g_startMs; /* how long the last successful .NET start took */
/* NTSLEUTH_PROFILE: where the .NET start (and the managed load notification) went, step by step, in ms; printed once
 * by the first command after the start (DebugExtensionInitialize has no client to write to). */
enum { PS_NETHOST, PS_FXRPATH, PS_FXRLOAD, PS_CLRCHECK, PS_INIT, PS_DELEGATE, PS_ENTRY, PS_OPTIONAL, PS_NOTIFY, PS_COUNT };
static const char *const g_stepNames[PS_COUNT] = {
    "load nethost.dll", "get_hostfxr_path", "load hostfxr.dll", "foreign-CLR check", "hostfxr_initialize_for_runtime_config",
    "get load_assembly_and_get_function_pointer", "load assembly + Entry.Invoke (first managed call)",
    "Entry.Notify + Entry.Analyze pointers", "Entry.Notify(loaded) (managed init)" };
static double g_stepMs[PS_COUNT];
static volatile LONG g_stepsPending; /* 1: a start's steps are recorded and not printed yet */
#define STEP(i) do { double t_ = now_ms(); g_stepMs[i] = t_ - tStep; tStep = t_; } while (0)

/* ------------------------------------------------------------------------------------------------------------ */
/* Collected diagnostics for the "cannot start .NET" message.                                                    */
typedef struct Diag {
    wchar_t dllDir[MAX_PATH];
    wchar_t appLocal[MAX_PATH];
    int appLocalPresent;
    wchar_t dotnetRoot[MAX_PATH];
    int dotnetRootSet;
    int dotnetRootHasFxr;
    wchar_t hostfxrPath[MAX_PATH];
    wchar_t step[160];
    int32_t rc;
    wchar_t hostMsg[1024];
    wchar_t foreignClr[MAX_PATH]; /* E_NTSLEUTH_FOREIGN_RUNTIME: the CoreCLR found in the process */
} Diag;

static Diag *g_errDiag; /* target of the hostfxr error writer while we initialize (under g_initLock) */

static void HOSTFXR_CALLTYPE error_writer(const char_t *message) {
    if (!g_errDiag || !message) return;
    size_t used = wcslen(g_errDiag->hostMsg);
    size_t room = sizeof(g_errDiag->hostMsg) / sizeof(wchar_t) - used;
    if (room > 2) {
        _snwprintf(g_errDiag->hostMsg + used, room - 1, L"%ls%ls", used ? L" " : L"", message);
        g_errDiag->hostMsg[sizeof(g_errDiag->hostMsg) / sizeof(wchar_t) - 1] = 0;
    }
}

static int dir_exists(const wchar_t *p) {
    DWORD a = GetFileAttributesW(p);
    return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY);
}

static void path_join(wchar_t *out, size_t cap, const wchar_t *a, const wchar_t *b) {
    size_t n = wcslen(a);
    _snwprintf(out, cap - 1, L"%ls%ls%ls", a, (n && a[n - 1] == L'\\') ? L"" : L"\\", b);
    out[cap - 1] = 0;
}

static double now_ms(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart * 1000.0 / (double)f.QuadPart;
}

static int32_t start_dotnet_core(Diag *d);

/* ------------------------------------------------------------------------------------------------------------ */
/* Another CoreCLR in the debugger process (issue 20, item 6; docs/another-dotnet.md).                            */
/* .NET supports one CoreCLR per process. hostfxr tracks only the runtime it started itself ("direct usage of coreclr
 * is not supported", dotnet/runtime docs/design/features/native-hosting.md): when SOS (LoadLibrary + coreclr_initialize,
 * no hostfxr) already runs one, hostfxr would go on to load and initialize a runtime of its own. So the shim looks for
 * coreclr.dll modules before it starts .NET, and on every command afterwards.                                      */
typedef BOOL(WINAPI *enum_process_modules_fn)(HANDLE, HMODULE *, DWORD, LPDWORD);
typedef int32_t(HOSTFXR_CALLTYPE *get_runtime_property_fn)(const hostfxr_handle, const char_t *, const char_t **);

static HMODULE g_ownClr;                     /* the coreclr.dll our .NET runs on (NULL: not known) */
static HMODULE g_warnedClr[MAX_CLR_MODULES]; /* foreign runtimes already reported */
static int g_nwarnedClr;

/* The coreclr.dll modules loaded in this process (any folder), at most cap; returns how many. */
static int find_coreclr_modules(HMODULE *mods, wchar_t (*paths)[MAX_PATH], int cap) {
    int n = 0;
    enum_process_modules_fn enumMods =
        (enum_process_modules_fn)(void *)GetProcAddress(GetModuleHandleW(L"kernel32.dll"), "K32EnumProcessModules");
    DWORD needed = 0;
    HMODULE *all = (HMODULE *)HeapAlloc(GetProcessHeap(), 0, 4096 * sizeof(HMODULE));
    if (enumMods && all && enumMods(GetCurrentProcess(), all, 4096 * sizeof(HMODULE), &needed)) {
        DWORD count = needed / sizeof(HMODULE);
        if (count > 4096) count = 4096;
        for (DWORD i = 0; i < count && n < cap; i++) {
            wchar_t p[MAX_PATH];
            DWORD len = GetModuleFileNameW(all[i], p, MAX_PATH);
            if (len == 0 || len >= MAX_PATH) continue;
            const wchar_t *base = wcsrchr(p, L'\\');
            base = base ? base + 1 : p;
            if (_wcsicmp(base, L"coreclr.dll") != 0) continue;
            mods[n] = all[i];
            wcscpy(paths[n], p);
            n++;
        }
    } else {
        HMODULE m = GetModuleHandleW(L"coreclr.dll"); /* first one only */
        if (m && cap > 0 && GetModuleFileNameW(m, paths[0], MAX_PATH)) { mods[0] = m; n = 1; }
    }
    if (all) HeapFree(GetProcessHeap(), 0, all);
    return n;
}

/* The folder of the runtime that hostfxr started in this process (from System.Private.CoreLib.dll in the active
 * context's TRUSTED_PLATFORM_ASSEMBLIES); returns 0, or hostfxr's status (HostInvalidState: no active runtime). */
static int32_t hostfxr_runtime_dir(HMODULE fxr, wchar_t *dir, size_t cap) {
    dir[0] = 0;
    get_runtime_property_fn get = (get_runtime_property_fn)(void *)GetProcAddress(fxr, "hostfxr_get_runtime_property_value");
    if (!get) return (int32_t)0x80008084; /* CoreHostEntryPointFailure */
    const char_t *tpa = NULL;
    int32_t rc = get(NULL, L"TRUSTED_PLATFORM_ASSEMBLIES", &tpa);
    if (rc != 0 || !tpa) return rc != 0 ? rc : (int32_t)HOSTFXR_HostInvalidState;
    const wchar_t *name = L"\\System.Private.CoreLib.dll";
    size_t nl = wcslen(name);
    for (const wchar_t *p = tpa; *p; p++) {
        if (_wcsnicmp(p, name, nl) != 0 || (p[nl] != L';' && p[nl] != 0)) continue;
        const wchar_t *start = p;
        while (start > tpa && start[-1] != L';') start--;
        size_t len = (size_t)(p - start);
        if (len >= cap) return (int32_t)0x80008098; /* HostApiBufferTooSmall */
        wmemcpy(dir, start, len);
        dir[len] = 0;
        return 0;
    }
    return 0;
}

/* Called on every command once .NET runs: a CoreCLR that appeared since (SOS started after us) is reported once. */
static void warn_foreign_runtimes(PDEBUG_CLIENT client) {
    if (!g_ownClr || !client) return;
    HMODULE mods[MAX_CLR_MODULES];
    wchar_t paths[MAX_CLR_MODULES][MAX_PATH];
    int n = find_coreclr_modules(mods, paths, MAX_CLR_MODULES);
    wchar_t own[MAX_PATH];
    if (!GetModuleFileNameW(g_ownClr, own, MAX_PATH)) own[0] = 0;
    for (int i = 0; i < n; i++) {
        if (mods[i] == g_ownClr) continue;
        int seen = 0;
        for (int j = 0; j < g_nwarnedClr; j++) seen |= g_warnedClr[j] == mods[i];
        if (seen) continue;
        if (g_nwarnedClr < MAX_CLR_MODULES) g_warnedClr[g_nwarnedClr++] = mods[i];
        IDebugControl *ctl = NULL;
        if (FAILED(client->lpVtbl->QueryInterface(client, &IID_IDebugControl, (void **)&ctl)) || !ctl) return;
        char msg[2048];
        _snprintf(msg, sizeof msg - 1,
                  "ntsleuth: WARNING: a second .NET runtime was loaded into the debugger process after ntsleuth started:\n"
                  "  %ls\n"
                  "  ntsleuth runs on: %ls\n"
                  "  It was started without the .NET host, typically by SOS (!sos commands) or another extension that hosts\n"
                  "  .NET itself. .NET supports one runtime (CoreCLR) per process; two in one debugger may make it unstable.\n"
                  "  ntsleuth goes on; if the debugger misbehaves, use SOS and ntsleuth in separate debugger sessions\n"
                  "  (README, Troubleshooting).\n",
                  paths[i], own);
        msg[sizeof msg - 1] = 0;
        ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_WARNING, "%s", msg);
        ctl->lpVtbl->Release(ctl);
    }
}

/* Starts .NET with W^X off. With the runtime's default W^X (code pages double-mapped RW/RX), CoreCLR inside the
 * debugger process under wine dies with "Internal CLR error (0x80131506)" in DynamicResolver+DestroyScout.Finalize
 * after a few commands (issue 20; docs/real-engine-lab.md). The runtime reads DOTNET_EnableWriteXorExecute once, when
 * it starts, so it is set in this process only for the start and the previous value (or its absence) is restored
 * right after: the debugger's environment and anything it launches later are unchanged. */
#define WXORX_VAR L"DOTNET_EnableWriteXorExecute"
static int32_t start_dotnet(Diag *d) {
    wchar_t prev[64];
    DWORD pn = GetEnvironmentVariableW(WXORX_VAR, prev, 64);
    int hadPrev = pn > 0 && pn < 64;
    SetEnvironmentVariableW(WXORX_VAR, L"0");
    int32_t rc = start_dotnet_core(d);
    SetEnvironmentVariableW(WXORX_VAR, hadPrev ? prev : NULL);
    return rc;
}

/* Starts .NET and resolves the managed entry point. Called with g_initLock held exclusively. Returns 0 or the
 * failing status; fills diag. */
static int32_t start_dotnet_core(Diag *d) {
    double t0 = now_ms(), tStep = t0;
    for (int i = 0; i < PS_COUNT; i++) g_stepMs[i] = 0;
    wchar_t self[MAX_PATH];
    DWORD n = GetModuleFileNameW(g_self, self, MAX_PATH);
    if (n == 0 || n >= MAX_PATH) { wcscpy(d->step, L"GetModuleFileName"); return d->rc = (int32_t)HRESULT_FROM_WIN32(GetLastError()); }
    wcscpy(d->dllDir, self);
    wchar_t *slash = wcsrchr(d->dllDir, L'\\');
    if (slash) *slash = 0;

    path_join(d->appLocal, MAX_PATH, d->dllDir, APPLOCAL_RUNTIME_DIR);
    wchar_t fxrDir[MAX_PATH];
    path_join(fxrDir, MAX_PATH, d->appLocal, L"host\\fxr");
    d->appLocalPresent = dir_exists(fxrDir);
    DWORD rn = GetEnvironmentVariableW(L"DOTNET_ROOT", d->dotnetRoot, MAX_PATH);
    d->dotnetRootSet = rn > 0 && rn < MAX_PATH;
    if (!d->dotnetRootSet) d->dotnetRoot[0] = 0;
    else {
        wchar_t f[MAX_PATH];
        path_join(f, MAX_PATH, d->dotnetRoot, L"host\\fxr");
        d->dotnetRootHasFxr = dir_exists(f);
    }

    wchar_t assemblyPath[MAX_PATH], configPath[MAX_PATH], nethostPath[MAX_PATH];
    path_join(assemblyPath, MAX_PATH, d->dllDir, MANAGED_ASSEMBLY);
    path_join(configPath, MAX_PATH, d->dllDir, MANAGED_RUNTIMECONFIG);
    path_join(nethostPath, MAX_PATH, d->dllDir, L"nethost.dll");

    /* 1. nethost (shipped beside us; loaded by full path so no other copy is picked up). */
    HMODULE nethost = LoadLibraryExW(nethostPath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!nethost) {
        _snwprintf(d->step, 159, L"loading %ls (win32 error %lu; the ntsleuth package is incomplete)", nethostPath, GetLastError());
        return d->rc = (int32_t)HOSTFXR_CoreHostLibMissingFailure;
    }
    STEP(PS_NETHOST);
    get_hostfxr_path_fn get_path = (get_hostfxr_path_fn)(void *)GetProcAddress(nethost, "get_hostfxr_path");
    if (!get_path) { wcscpy(d->step, L"nethost.dll has no get_hostfxr_path"); return d->rc = (int32_t)HOSTFXR_CoreHostLibMissingFailure; }

    struct get_hostfxr_parameters gp = { sizeof(gp), assemblyPath, NULL };
    if (d->appLocalPresent) gp.dotnet_root = d->appLocal; /* app-local first */
    /* else: nethost searches DOTNET_ROOT, then the global install (registered location / %ProgramFiles%\dotnet). */
    size_t cap = MAX_PATH;
    int32_t rc = get_path(d->hostfxrPath, &cap, &gp);
    if (rc != 0) { wcscpy(d->step, L"locating hostfxr.dll (get_hostfxr_path)"); d->hostfxrPath[0] = 0; return d->rc = rc; }
    STEP(PS_FXRPATH);

    /* 2. hostfxr */
    HMODULE fxr = LoadLibraryExW(d->hostfxrPath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!fxr) {
        _snwprintf(d->step, 159, L"loading hostfxr.dll (win32 error %lu)", GetLastError());
        return d->rc = (int32_t)HOSTFXR_CoreHostLibMissingFailure;
    }
    STEP(PS_FXRLOAD);
    hostfxr_initialize_for_runtime_config_fn init =
        (hostfxr_initialize_for_runtime_config_fn)(void *)GetProcAddress(fxr, "hostfxr_initialize_for_runtime_config");
    hostfxr_get_runtime_delegate_fn get_delegate =
        (hostfxr_get_runtime_delegate_fn)(void *)GetProcAddress(fxr, "hostfxr_get_runtime_delegate");
    hostfxr_close_fn close_fn = (hostfxr_close_fn)(void *)GetProcAddress(fxr, "hostfxr_close");
    hostfxr_set_error_writer_fn set_writer = (hostfxr_set_error_writer_fn)(void *)GetProcAddress(fxr, "hostfxr_set_error_writer");
    if (!init || !get_delegate || !close_fn) { wcscpy(d->step, L"hostfxr.dll lacks the hosting exports (too old)"); return d->rc = (int32_t)HOSTFXR_CoreHostLibMissingFailure; }

    /* Another CoreCLR already here? If hostfxr has no active runtime, every coreclr.dll in the process was started
     * without it (SOS does LoadLibrary + coreclr_initialize): hostfxr cannot attach to it and would start a second
     * runtime (or fail inside coreclr_initialize), so .NET is not started. If hostfxr has one (ours before .unload/.load,
     * or another hostfxr-hosted component), hostfxr attaches to it or answers HostIncompatibleConfig. */
    {
        HMODULE mods[MAX_CLR_MODULES];
        wchar_t paths[MAX_CLR_MODULES][MAX_PATH];
        int n = find_coreclr_modules(mods, paths, MAX_CLR_MODULES);
        wchar_t rtDir[MAX_PATH];
        if (n > 0 && hostfxr_runtime_dir(fxr, rtDir, MAX_PATH) != 0) {
            wcscpy(d->foreignClr, paths[0]);
            wcscpy(d->step, L"checking for another .NET runtime in the debugger process");
            return d->rc = (int32_t)E_NTSLEUTH_FOREIGN_RUNTIME;
        }
    }

    STEP(PS_CLRCHECK);
    /* dotnet root = the folder three levels above host\fxr\<version>\hostfxr.dll */
    wchar_t root[MAX_PATH];
    wcscpy(root, d->hostfxrPath);
    for (int i = 0; i < 4; i++) { wchar_t *s = wcsrchr(root, L'\\'); if (s) *s = 0; }
    struct hostfxr_initialize_parameters ip = { sizeof(ip), NULL, root };

    g_errDiag = d;
    hostfxr_error_writer_fn prevWriter = set_writer ? set_writer(error_writer) : NULL;
    hostfxr_handle ctx = NULL;
    rc = init(configPath, &ip, &ctx);
    if (rc < 0 || !ctx) {
        wcscpy(d->step, L"hostfxr_initialize_for_runtime_config");
        if (ctx) close_fn(ctx);
        if (set_writer) set_writer(prevWriter);
        g_errDiag = NULL;
        return d->rc = rc < 0 ? rc : (int32_t)0x80004005;
    }
    STEP(PS_INIT);
    /* rc 1 (Success_HostAlreadyInitialized) / 2 (Success_DifferentRuntimeProperties): .NET already runs in this
     * process (e.g. after .unload/.load of this extension) - use it. */
    load_assembly_and_get_function_pointer_fn load = NULL;
    rc = get_delegate(ctx, hdt_load_assembly_and_get_function_pointer, (void **)&load);
    close_fn(ctx);
    if (rc < 0 || !load) {
        wcscpy(d->step, L"hostfxr_get_runtime_delegate");
        if (set_writer) set_writer(prevWriter);
        g_errDiag = NULL;
        return d->rc = rc < 0 ? rc : (int32_t)0x80004005;
    }
    STEP(PS_DELEGATE);
    void *fn = NULL, *nfn = NULL, *afn = NULL;
    rc = load(assemblyPath, MANAGED_TYPE, MANAGED_METHOD, UNMANAGEDCALLERSONLY_METHOD, NULL, &fn);
    STEP(PS_ENTRY);
    /* Optional: without it the managed side still validates its cache against the module list on every command. */
    if (rc >= 0 && fn && load(assemblyPath, MANAGED_TYPE, MANAGED_NOTIFY_METHOD, UNMANAGEDCALLERSONLY_METHOD, NULL, &nfn) < 0) nfn = NULL;
    /* Optional too: without it _EFN_Analyze says it cannot contribute; the commands still work. */
    if (rc >= 0 && fn && load(assemblyPath, MANAGED_TYPE, MANAGED_ANALYZE_METHOD, UNMANAGEDCALLERSONLY_METHOD, NULL, &afn) < 0) afn = NULL;
    STEP(PS_OPTIONAL);
    if (set_writer) set_writer(prevWriter);
    g_errDiag = NULL;
    if (rc < 0 || !fn) {
        _snwprintf(d->step, 159, L"loading %ls / %ls.%ls", assemblyPath, MANAGED_TYPE, MANAGED_METHOD);
        return d->rc = rc < 0 ? rc : (int32_t)0x80004005;
    }
    {
        wchar_t rtDir[MAX_PATH], clr[MAX_PATH];
        if (hostfxr_runtime_dir(fxr, rtDir, MAX_PATH) == 0 && rtDir[0]) {
            path_join(clr, MAX_PATH, rtDir, L"coreclr.dll");
            g_ownClr = GetModuleHandleW(clr);
        }
    }
    g_startMs = now_ms() - t0;
    InterlockedExchange(&g_stepsPending, 1);
    g_notify = (notify_fn)nfn;
    g_analyze = (analyze_fn)afn;
    g_invoke = (invoke_fn)fn;
    return 0;
}

/* The .NET host's status codes in words (dotnet/runtime docs/design/features/host-error-codes.md). */
static const char *host_status_words(int32_t rc) {
    switch ((uint32_t)rc) {
    case 0x80008081: return "InvalidArgFailure";
    case 0x80008082: return "CoreHostLibLoadFailure: a hosting component could not be loaded";
    case 0x80008083: return "CoreHostLibMissingFailure: hostfxr, hostpolicy or coreclr is missing";
    case 0x80008084: return "CoreHostEntryPointFailure: a hosting component lacks an entry point";
    case 0x80008087: return "CoreClrResolveFailure: coreclr.dll not found in the framework";
    case 0x80008088: return "CoreClrBindFailure: coreclr.dll could not be loaded";
    case 0x80008089: return "CoreClrInitFailure: coreclr_initialize failed (is another .NET runtime already running in the debugger?)";
    case 0x8000808b: return "ResolverInitFailure: a .deps.json is missing or invalid";
    case 0x8000808c: return "ResolverResolveFailure: a file listed in a .deps.json is missing";
    case 0x80008093: return "InvalidConfigFile: NtSleuth.Extension.runtimeconfig.json is invalid";
    case 0x80008096: return "FrameworkMissingFailure: no compatible Microsoft.NETCore.App (.NET 10 x64) found";
    case 0x800080a3: return "HostInvalidState";
    case 0x800080a5: return "HostIncompatibleConfig: the .NET already running in the debugger (started through the .NET host by another extension) is incompatible with ntsleuth's";
    case 0xA0075201: return "another .NET runtime, started without the .NET host, is already running in the debugger process";
    default: return "";
    }
}

static void report_failure(PDEBUG_CLIENT client, const char *command, const Diag *d) {
    IDebugControl *ctl = NULL;
    if (!client || FAILED(client->lpVtbl->QueryInterface(client, &IID_IDebugControl, (void **)&ctl)) || !ctl) return;
    char msg[4096];
    if ((uint32_t)d->rc == (uint32_t)E_NTSLEUTH_FOREIGN_RUNTIME) {
        _snprintf(msg, sizeof msg - 1,
                  "ntsleuth: cannot run !%s: another .NET runtime is already running in the debugger process:\n"
                  "  %ls\n"
                  "  It was started without the .NET host (hostfxr), typically by SOS (!sos commands) or another extension that\n"
                  "  hosts .NET itself. .NET supports one runtime (CoreCLR) per process and the .NET host cannot attach to a\n"
                  "  runtime it did not start, so ntsleuth does not start its own (that would load a second runtime into the\n"
                  "  debugger or fail inside it). Nothing was changed; the debugger and the other extension keep working.\n"
                  "  Fix: run ntsleuth in a debugger session of its own (or run an ntsleuth command before the first SOS command\n"
                  "       of the session). See README, Troubleshooting.\n",
                  command, d->foreignClr);
        msg[sizeof msg - 1] = 0;
        ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_ERROR, "%s", msg);
        ctl->lpVtbl->Release(ctl);
        return;
    }
    const char *words = host_status_words(d->rc);
    int noRuntime = (uint32_t)d->rc == HOSTFXR_CoreHostLibMissingFailure || (uint32_t)d->rc == HOSTFXR_FrameworkMissingFailure;
    _snprintf(msg, sizeof msg - 1,
              "ntsleuth: cannot run !%s: %s .NET (step: %ls, hostfxr error 0x%08x%s%s).\n"
              "  Searched, in order:\n"
              "    1. app-local runtime: %ls\\ (%s)\n"
              "    2. DOTNET_ROOT: %ls%s\n"
              "    3. global install: %%ProgramFiles%%\\dotnet (or the registered x64 install location)\n"
              "%s%ls%s"
              "  Fix: install the .NET 10 x64 runtime (https://dotnet.microsoft.com/download/dotnet/10.0 - \".NET Runtime\", x64),\n"
              "       or set DOTNET_ROOT to a folder containing host\\fxr and shared\\Microsoft.NETCore.App\\10.x and restart the debugger,\n"
              "       or use the ntsleuth package that bundles the runtime (a dotnet\\ folder beside ntsleuth.dll).\n",
              command, noRuntime ? "no usable" : "could not start", d->step, (unsigned)d->rc, words[0] ? ": " : "", words,
              d->appLocal, d->appLocalPresent ? "present" : "not present",
              d->dotnetRootSet ? d->dotnetRoot : L"not set", !d->dotnetRootSet ? "" : d->dotnetRootHasFxr ? " (has host\\fxr)" : " (no host\\fxr there)",
              d->hostMsg[0] ? "  hostfxr said: " : "", d->hostMsg, d->hostMsg[0] ? "\n" : "");
    msg[sizeof msg - 1] = 0;
    ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_ERROR, "%s", msg);
    ctl->lpVtbl->Release(ctl);
}

static void trace(PDEBUG_CLIENT client, const char *fmt, double v) {
    char buf[32];
    if (!GetEnvironmentVariableA("NTSLEUTH_TRACE", buf, sizeof buf)) return;
    IDebugControl *ctl = NULL;
    if (FAILED(client->lpVtbl->QueryInterface(client, &IID_IDebugControl, (void **)&ctl)) || !ctl) return;
    ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_NORMAL, fmt, v);
    ctl->lpVtbl->Release(ctl);
}

/* NTSLEUTH_PROFILE: the steps of the last .NET start, once (the first command after it). */
static void print_start_profile(PDEBUG_CLIENT client) {
    if (!InterlockedExchange(&g_stepsPending, 0)) return;
    char buf[8];
    if (!GetEnvironmentVariableA("NTSLEUTH_PROFILE", buf, sizeof buf)) return;
    IDebugControl *ctl = NULL;
    if (FAILED(client->lpVtbl->QueryInterface(client, &IID_IDebugControl, (void **)&ctl)) || !ctl) return;
    ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_NORMAL, "[ntsleuth profile] .NET start %.1f ms (native shim)\n", g_startMs);
    for (int i = 0; i < PS_COUNT; i++)
        ctl->lpVtbl->Output(ctl, DEBUG_OUTPUT_NORMAL, "[ntsleuth profile]   %-50s %7.1f ms\n", g_stepNames[i], g_stepMs[i]);
    ctl->lpVtbl->Release(ctl);
}

/* Starts .NET once (under g_initLock); on failure prints the actionable message for `command` and returns the error. */
static HRESULT ensure_dotnet(PDEBUG_CLIENT client, const char *command) {
    if (g_invoke) return S_OK;
    Diag *d = (Diag *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof(Diag));
    if (!d) return E_OUTOFMEMORY;
    AcquireSRWLockExclusive(&g_initLock);
    int32_t rc = 0;
    int started = 0;
    if (!g_invoke) { rc = start_dotnet(d); started = rc == 0; }
    int ok = g_invoke != NULL;
    ReleaseSRWLockExclusive(&g_initLock);
    if (!ok) {
        report_failure(client, command, d);
        HeapFree(GetProcessHeap(), 0, d);
        return rc < 0 ? (HRESULT)rc : E_NTSLEUTH_NO_RUNTIME;
    }
    HeapFree(GetProcessHeap(), 0, d);
    if (started) trace(client, "ntsleuth: .NET started in %.1f ms\n", g_startMs);
    return S_OK;
}

static HRESULT run(PDEBUG_CLIENT client, const char *command, PCSTR args) {
    HRESULT hr = ensure_dotnet(client, command);
    if (FAILED(hr)) return hr;
    invoke_fn fn = g_invoke;
    if (!fn) return E_NTSLEUTH_NO_RUNTIME; /* .unload raced with the command */
    warn_foreign_runtimes(client);
    print_start_profile(client);
    return (HRESULT)fn((void *)client, command, args);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Exports                                                                                                       */

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved) {
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        g_self = inst;
        DisableThreadLibraryCalls(inst);
    }
    return TRUE;
}

HRESULT CALLBACK DebugExtensionInitialize(PULONG version, PULONG flags) {
    if (version) *version = DEBUG_EXTENSION_VERSION(1, 0);
    if (flags) *flags = 0;
    /* The data model provider (@$ntsleuth, docs/dx.md) is registered when the extension loads, so .NET starts here
     * (dbgeng calls this after LoadLibrary returned: not under the loader lock). A failure never fails .load: the
     * first command reports it. NTSLEUTH_NO_DATAMODEL=1 keeps the old lazy start (no provider). */
    char off[8];
    DWORD n = GetEnvironmentVariableA("NTSLEUTH_NO_DATAMODEL", off, sizeof off);
    if (n == 1 && off[0] == '1') return S_OK;
    Diag *d = (Diag *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof(Diag));
    if (!d) return S_OK;
    AcquireSRWLockExclusive(&g_initLock);
    if (!g_invoke) start_dotnet(d);
    notify_fn fn = g_notify;
    ReleaseSRWLockExclusive(&g_initLock);
    HeapFree(GetProcessHeap(), 0, d);
    if (fn) {
        double t = now_ms();
        fn(NTSLEUTH_NOTIFY_LOADED, 0);
        g_stepMs[PS_NOTIFY] = now_ms() - t;
    }
    return S_OK;
}

void CALLBACK DebugExtensionUninitialize(void) {
    /* The CLR cannot be unloaded; the managed side keeps no state tied to this DLL instance. After .load again,
     * start_dotnet finds the runtime already initialized and re-obtains the entry point. */
    /* The managed session cache lives as long as the extension is loaded: .unload (and the engine's EndSession,
     * which unloads extensions before the next dump is opened) drops it, so nothing learnt on one dump is trusted on
     * the next. NTSLEUTH_NOTIFY_UNLOADED is ours, not a DEBUG_NOTIFY_* value. */
    notify_fn fn = g_notify;
    g_notify = NULL;
    g_invoke = NULL;
    g_analyze = NULL;
    if (fn) fn(NTSLEUTH_NOTIFY_UNLOADED, 0);
}

/* Session active/inactive/accessible/inaccessible: forwarded to the managed session cache once .NET runs (before
 * that nothing is cached). The managed side catches everything. */
void CALLBACK DebugExtensionNotify(ULONG notify, ULONG64 argument) {
    notify_fn fn = g_notify;
    if (fn) fn(notify, argument);
}

#define NTSLEUTH_COMMAND(name) \
    HRESULT CALLBACK name(PDEBUG_CLIENT client, PCSTR args) { return run(client, #name, args); }

NTSLEUTH_COMMAND(help)
/* The commands: generated from Commands/commands.txt (with ntsleuth.def) by Commands/CommandList.targets. */
#include "ntsleuth_commands.h"

/* ------------------------------------------------------------------------------------------------------------ */
/* !analyze plug-in (docs/analyze.md). ext.dll's !analyze finds ntsleuth.alz beside this DLL on the extension path
 * (BugCheckCode 0x133, DebuggeeClass Kernel) and calls _EFN_Analyze once per analysis phase with an IDebugClient4
 * and an IDebugFailureAnalysis2 (EXT_ANALYSIS_PLUGIN, extsfns.h). The contribution is made in the pre-bucketing
 * phase only, so the other phases return at once without starting .NET. Everything else (the failure code check,
 * reading the dump, writing FA entries) is managed: NtSleuth.Extension.Entry.Analyze, which catches everything. */
#define NTSLEUTH_FA_PLUGIN_PRE_BUCKETING 0x0004u /* FA_EXTENSION_PLUGIN_PHASE: FA_PLUGIN_PRE_BUCKETING */

HRESULT CALLBACK _EFN_Analyze(PDEBUG_CLIENT4 client, ULONG callPhase, void *analysis) {
    if (callPhase != NTSLEUTH_FA_PLUGIN_PRE_BUCKETING) return S_OK;
    if (!client || !analysis) return E_INVALIDARG;
    HRESULT hr = ensure_dotnet((PDEBUG_CLIENT)client, "_EFN_Analyze (the !analyze plug-in)");
    if (FAILED(hr)) return hr;
    warn_foreign_runtimes((PDEBUG_CLIENT)client);
    analyze_fn fn = g_analyze;
    if (!fn) return E_NOTIMPL; /* a managed assembly without Entry.Analyze: nothing to contribute */
    return (HRESULT)fn((void *)client, callPhase, analysis);
}
