/*
 * ntsleuth.dll - the DbgEng extension shim of NtSleuthExt.
 *
 * Exports the DbgEng extension entry points and one export per command. On the first command it starts .NET
 * (nethost -> hostfxr -> load_assembly_and_get_function_pointer) and forwards (IDebugClient*, command, args) to the
 * managed entry point NtSleuth.Extension.Entry.Invoke ([UnmanagedCallersOnly]). It never crashes the debugger:
 * when no runtime can be found or hosting fails, it prints one actionable message and returns an error HRESULT.
 * DebugExtensionInitialize never fails because of .NET: .NET starts lazily.
 *
 * Runtime lookup order: an app-local runtime folder "dotnet\" beside this DLL, then DOTNET_ROOT, then the global
 * install (as nethost finds it). The hostfxr/nethost ABI used here is the documented one (nethost.h, hostfxr.h,
 * coreclr_delegates.h of the Microsoft.NETCore.App.Host packs); the few declarations are written out below so the
 * shim builds with any C compiler without those headers.
 */
#define COBJMACROS
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <dbgeng.h>
#include <stdio.h>
#include <wchar.h>

/* ---- hostfxr / nethost ABI (documented; char_t is wchar_t on Windows) ---- */
typedef void *hostfxr_handle;
struct hostfxr_initialize_parameters { size_t size; const wchar_t *host_path; const wchar_t *dotnet_root; };
struct get_hostfxr_parameters { size_t size; const wchar_t *assembly_path; const wchar_t *dotnet_root; };
enum hostfxr_delegate_type { hdt_com_activation, hdt_load_in_memory_assembly, hdt_winrt_activation, hdt_com_register,
                             hdt_com_unregister, hdt_load_assembly_and_get_function_pointer, hdt_get_function_pointer };
typedef int (__cdecl *get_hostfxr_path_fn)(wchar_t *buffer, size_t *buffer_size, const struct get_hostfxr_parameters *parameters);
typedef int (__cdecl *hostfxr_initialize_for_runtime_config_fn)(const wchar_t *runtime_config_path,
                const struct hostfxr_initialize_parameters *parameters, hostfxr_handle *host_context_handle);
typedef int (__cdecl *hostfxr_get_runtime_delegate_fn)(const hostfxr_handle host_context_handle,
                enum hostfxr_delegate_type type, void **delegate);
typedef int (__cdecl *hostfxr_close_fn)(const hostfxr_handle host_context_handle);
typedef int (__stdcall *load_assembly_and_get_function_pointer_fn)(const wchar_t *assembly_path,
                const wchar_t *type_name, const wchar_t *method_name, const wchar_t *delegate_type_name,
                void *reserved, void **delegate);
#define UNMANAGEDCALLERSONLY_METHOD ((const wchar_t *)-1)

/* Managed entry: int Invoke(IDebugClient* client, const char* command, const char* args) */
typedef int (__stdcall *managed_invoke_fn)(void *client, const char *command, const char *args);

#define NTSLEUTH_E_NORUNTIME ((HRESULT)0x80008083L) /* hostfxr's "CoreHostLibMissingFailure" family */

static HMODULE g_self;
static CRITICAL_SECTION g_lock;
static managed_invoke_fn g_invoke;
static wchar_t g_dir[MAX_PATH];

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        g_self = inst;
        DisableThreadLibraryCalls(inst);
        InitializeCriticalSection(&g_lock);
    } else if (reason == DLL_PROCESS_DETACH && reserved == NULL) {
        DeleteCriticalSection(&g_lock);
    }
    return TRUE;
}

/* ---- output through the engine ---- */
/* IID_IDebugControl {5182e668-105e-416e-ad92-24ef800424ba} (dbgeng.h) */
static const GUID kIID_IDebugControl = { 0x5182e668, 0x105e, 0x416e, { 0xad, 0x92, 0x24, 0xef, 0x80, 0x04, 0x24, 0xba } };

static void out_error(PDEBUG_CLIENT client, const char *text)
{
    PDEBUG_CONTROL ctrl = NULL;
    if (client && SUCCEEDED(client->lpVtbl->QueryInterface(client, &kIID_IDebugControl, (void **)&ctrl)) && ctrl) {
        ctrl->lpVtbl->Output(ctrl, DEBUG_OUTPUT_ERROR, "%s", text);
        ctrl->lpVtbl->Release(ctrl);
    } else {
        OutputDebugStringA(text);
    }
}

static int file_exists(const wchar_t *path)
{
    DWORD a = GetFileAttributesW(path);
    return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
}

static int dir_exists(const wchar_t *path)
{
    DWORD a = GetFileAttributesW(path);
    return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY);
}

/* Compares dotted versions ("10.0.12" vs "9.0.3"); numeric per component. */
static int version_cmp(const wchar_t *a, const wchar_t *b)
{
    while (*a || *b) {
        long x = wcstol(a, (wchar_t **)&a, 10), y = wcstol(b, (wchar_t **)&b, 10);
        if (x != y) return x < y ? -1 : 1;
        if (*a == L'.') a++;
        if (*b == L'.') b++;
        if (!*a && !*b) break;
        if (*a && !iswdigit(*a) && *a != L'.') a++; /* skip prerelease markers crudely */
        if (*b && !iswdigit(*b) && *b != L'.') b++;
    }
    return 0;
}

/* Finds <root>\host\fxr\<highest>\hostfxr.dll without nethost. */
static int find_fxr_in_root(const wchar_t *root, wchar_t *out, size_t cch)
{
    wchar_t pattern[MAX_PATH], best[MAX_PATH] = L"";
    WIN32_FIND_DATAW fd;
    HANDLE h;
    _snwprintf(pattern, MAX_PATH, L"%ls\\host\\fxr\\*", root);
    pattern[MAX_PATH - 1] = 0;
    h = FindFirstFileW(pattern, &fd);
    if (h == INVALID_HANDLE_VALUE) return 0;
    do {
        if ((fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) && fd.cFileName[0] != L'.' &&
            (!best[0] || version_cmp(fd.cFileName, best) > 0)) {
            wchar_t candidate[MAX_PATH];
            _snwprintf(candidate, MAX_PATH, L"%ls\\host\\fxr\\%ls\\hostfxr.dll", root, fd.cFileName);
            candidate[MAX_PATH - 1] = 0;
            if (file_exists(candidate)) wcsncpy(best, fd.cFileName, MAX_PATH - 1);
        }
    } while (FindNextFileW(h, &fd));
    FindClose(h);
    if (!best[0]) return 0;
    _snwprintf(out, cch, L"%ls\\host\\fxr\\%ls\\hostfxr.dll", root, best);
    out[cch - 1] = 0;
    return 1;
}

/* Asks nethost.dll (shipped beside this DLL) for hostfxr; root may be NULL for the global install. */
static int nethost_find(const wchar_t *root, wchar_t *out, size_t cch, int *rc_out)
{
    static HMODULE nethost;
    static get_hostfxr_path_fn get_path;
    struct get_hostfxr_parameters p;
    size_t size = cch;
    int rc;
    if (!get_path) {
        wchar_t path[MAX_PATH];
        _snwprintf(path, MAX_PATH, L"%ls\\nethost.dll", g_dir);
        path[MAX_PATH - 1] = 0;
        if (!nethost) nethost = LoadLibraryExW(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
        if (!nethost) { *rc_out = -1; return 0; }
        get_path = (get_hostfxr_path_fn)(void *)GetProcAddress(nethost, "get_hostfxr_path");
        if (!get_path) { *rc_out = -2; return 0; }
    }
    p.size = sizeof p;
    p.assembly_path = NULL;
    p.dotnet_root = root;
    rc = get_path(out, &size, root ? &p : NULL);
    *rc_out = rc;
    return rc == 0;
}

/* Appends to the diagnostic text (ANSI; paths converted lossily for the message only). */
static void diag(char *buf, size_t cap, const char *fmt, const wchar_t *w, const char *tail)
{
    char a[MAX_PATH * 2] = "";
    size_t len = strlen(buf);
    if (w) WideCharToMultiByte(CP_ACP, 0, w, -1, a, sizeof a, NULL, NULL);
    _snprintf(buf + len, cap - len, fmt, a, tail ? tail : "");
    buf[cap - 1] = 0;
}

/* Starts .NET and resolves the managed entry point. Returns S_OK or an error HRESULT with a message in msg. */
static HRESULT start_managed(char *msg, size_t cap)
{
    wchar_t roots[3][MAX_PATH];
    const char *labels[3] = { "app-local runtime", "DOTNET_ROOT", "global install" };
    wchar_t fxr[MAX_PATH], config[MAX_PATH], assembly[MAX_PATH];
    DWORD n;
    int i, rc = 0, found = -1;
    HMODULE hfxr;
    hostfxr_initialize_for_runtime_config_fn init;
    hostfxr_get_runtime_delegate_fn get_delegate;
    hostfxr_close_fn close_fn;
    hostfxr_handle ctx = NULL;
    load_assembly_and_get_function_pointer_fn load = NULL;
    struct hostfxr_initialize_parameters ip;
    void *fn = NULL;

    msg[0] = 0;
    _snwprintf(roots[0], MAX_PATH, L"%ls\\dotnet", g_dir);
    roots[0][MAX_PATH - 1] = 0;
    n = GetEnvironmentVariableW(L"DOTNET_ROOT", roots[1], MAX_PATH);
    if (n == 0 || n >= MAX_PATH) roots[1][0] = 0;
    roots[2][0] = 0;

    for (i = 0; i < 3 && found < 0; i++) {
        if (i < 2 && !roots[i][0]) { diag(msg, cap, "    %-20s", NULL, ""); diag(msg, cap, "%s(not set)\n", NULL, ""); continue; }
        if (i < 2) {
            if (!dir_exists(roots[i])) {
                diag(msg, cap, "    %s: ", NULL, labels[i]); diag(msg, cap, "%s (folder not found)\n", roots[i], NULL);
                continue;
            }
            if (nethost_find(roots[i], fxr, MAX_PATH, &rc) || find_fxr_in_root(roots[i], fxr, MAX_PATH)) { found = i; break; }
            diag(msg, cap, "    %s: ", NULL, labels[i]); diag(msg, cap, "%s (no host\\fxr\\<version>\\hostfxr.dll)\n", roots[i], NULL);
        } else {
            wchar_t pf[MAX_PATH];
            if (nethost_find(NULL, fxr, MAX_PATH, &rc)) { found = i; break; }
            n = GetEnvironmentVariableW(L"ProgramFiles", pf, MAX_PATH);
            if (n > 0 && n < MAX_PATH - 8) {
                wcscat(pf, L"\\dotnet");
                if (find_fxr_in_root(pf, fxr, MAX_PATH)) { found = i; break; }
                diag(msg, cap, "    global install: %s (no runtime", pf, NULL);
            } else diag(msg, cap, "    global install: %s(no runtime", NULL, NULL);
            _snprintf(msg + strlen(msg), cap - strlen(msg), "; nethost %s 0x%08x)\n",
                      rc == -1 ? "missing beside ntsleuth.dll," : "returned", (unsigned)rc);
            msg[cap - 1] = 0;
        }
    }
    if (found < 0) return NTSLEUTH_E_NORUNTIME;

    hfxr = LoadLibraryExW(fxr, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!hfxr) {
        diag(msg, cap, "    cannot load %s", fxr, NULL);
        _snprintf(msg + strlen(msg), cap - strlen(msg), " (error %lu)\n", GetLastError());
        return NTSLEUTH_E_NORUNTIME;
    }
    init = (hostfxr_initialize_for_runtime_config_fn)(void *)GetProcAddress(hfxr, "hostfxr_initialize_for_runtime_config");
    get_delegate = (hostfxr_get_runtime_delegate_fn)(void *)GetProcAddress(hfxr, "hostfxr_get_runtime_delegate");
    close_fn = (hostfxr_close_fn)(void *)GetProcAddress(hfxr, "hostfxr_close");
    if (!init || !get_delegate || !close_fn) {
        diag(msg, cap, "    %s is too old (no hostfxr_initialize_for_runtime_config)\n", fxr, NULL);
        return NTSLEUTH_E_NORUNTIME;
    }
    _snwprintf(config, MAX_PATH, L"%ls\\NtSleuth.Extension.runtimeconfig.json", g_dir);
    _snwprintf(assembly, MAX_PATH, L"%ls\\NtSleuth.Extension.dll", g_dir);
    config[MAX_PATH - 1] = assembly[MAX_PATH - 1] = 0;
    if (!file_exists(config) || !file_exists(assembly)) {
        diag(msg, cap, "    managed files missing beside ntsleuth.dll (%s\\NtSleuth.Extension.dll / .runtimeconfig.json)\n", g_dir, NULL);
        return E_FAIL;
    }
    ip.size = sizeof ip;
    ip.host_path = NULL;
    ip.dotnet_root = found < 2 ? roots[found] : NULL;
    rc = init(config, &ip, &ctx);
    if (rc < 0 || !ctx) {
        diag(msg, cap, "    hostfxr %s", fxr, NULL);
        _snprintf(msg + strlen(msg), cap - strlen(msg),
                  " could not start .NET for NtSleuth.Extension.runtimeconfig.json: 0x%08x (0x80008096 = framework not found: the runtime there is older than .NET 10)\n",
                  (unsigned)rc);
        if (ctx) close_fn(ctx);
        return (HRESULT)rc;
    }
    rc = get_delegate(ctx, hdt_load_assembly_and_get_function_pointer, (void **)&load);
    close_fn(ctx);
    if (rc < 0 || !load) {
        _snprintf(msg + strlen(msg), cap - strlen(msg), "    hostfxr_get_runtime_delegate failed: 0x%08x\n", (unsigned)rc);
        return (HRESULT)rc;
    }
    rc = load(assembly, L"NtSleuth.Extension.Entry, NtSleuth.Extension", L"Invoke", UNMANAGEDCALLERSONLY_METHOD, NULL, &fn);
    if (rc < 0 || !fn) {
        _snprintf(msg + strlen(msg), cap - strlen(msg),
                  "    loading NtSleuth.Extension.Entry.Invoke failed: 0x%08x (files beside ntsleuth.dll incomplete or from another version?)\n", (unsigned)rc);
        return (HRESULT)rc;
    }
    g_invoke = (managed_invoke_fn)fn;
    return S_OK;
}

static HRESULT run(PDEBUG_CLIENT client, const char *command, PCSTR args)
{
    static char msg[4096];
    HRESULT hr = S_OK;
    managed_invoke_fn fn;
    EnterCriticalSection(&g_lock);
    if (!g_invoke) {
        if (!g_dir[0]) {
            DWORD n = GetModuleFileNameW(g_self, g_dir, MAX_PATH);
            wchar_t *slash;
            if (n == 0 || n >= MAX_PATH) g_dir[0] = 0;
            slash = wcsrchr(g_dir, L'\\');
            if (slash) *slash = 0;
        }
        hr = start_managed(msg, sizeof msg);
    }
    fn = g_invoke;
    LeaveCriticalSection(&g_lock);
    if (!fn) {
        char full[5120];
        _snprintf(full, sizeof full,
                  "ntsleuth: cannot run !%s: .NET could not be started (0x%08lx).\n"
                  "  Searched, in order:\n%s"
                  "  Fix: install the .NET 10 (or newer) x64 runtime, or set DOTNET_ROOT to a folder that contains host\\fxr\\<version>\\hostfxr.dll\n"
                  "       and shared\\Microsoft.NETCore.App\\<version>\\, or use the package with the app-local runtime (a 'dotnet' folder beside ntsleuth.dll),\n"
                  "       then run the command again (no restart of the debugger is needed).\n",
                  command, (unsigned long)hr, msg);
        full[sizeof full - 1] = 0;
        out_error(client, full);
        return FAILED(hr) ? hr : E_FAIL;
    }
    return (HRESULT)fn(client, command, args);
}

/* ---- DbgEng extension entry points ---- */
HRESULT CALLBACK DebugExtensionInitialize(PULONG version, PULONG flags)
{
    if (version) *version = DEBUG_EXTENSION_VERSION(1, 0);
    if (flags) *flags = 0;
    return S_OK;
}

void CALLBACK DebugExtensionUninitialize(void) {}

void CALLBACK DebugExtensionNotify(ULONG notify, ULONG64 argument)
{
    (void)notify;
    (void)argument;
}

#define NTSLEUTH_COMMAND(name) \
    HRESULT CALLBACK name(PDEBUG_CLIENT client, PCSTR args) { return run(client, #name, args); }

NTSLEUTH_COMMAND(help)
NTSLEUTH_COMMAND(alpcchain)
NTSLEUTH_COMMAND(leaktag)
NTSLEUTH_COMMAND(dpcblame)
NTSLEUTH_COMMAND(nblowners)
NTSLEUTH_COMMAND(frameorder)
NTSLEUTH_COMMAND(dhcptimer)
