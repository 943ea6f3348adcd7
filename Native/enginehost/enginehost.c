/*
 * enginehost.exe - drives Microsoft's real debugger engine (dbgeng.dll) for NtSleuthExt's end-to-end tests and
 * sample runs: loads dbgeng.dll from a folder, opens a dump, runs commands and prints everything the engine
 * outputs, each command framed by marker lines so callers can split the output:
 *
 *   @@begin <command>
 *   ...engine output...
 *   @@end <hresult-hex>
 *
 * usage: enginehost -engine <dir> -z <dump> [-y <sympath>] [-dml] [-plain] [-interrupt-after <ms>] [-timeout <s>] -c <cmd> [-c <cmd> ...]
 *   -dml    the engine prefers DML (DEBUG_ENGOPT_PREFER_DML), as WinDbg does
 *   -plain  receive output as plain text (DML rendered to text by the engine, as kd/cdb print it); otherwise DML
 *           output arrives raw (IDebugOutputCallbacks2) so tests can check links and escaping
 * Never point the symbol path at a huge folder such as /tmp: the engine then spins for minutes in WaitForEvent.
 * Exit code: 0 when the dump opened and every command ran (whatever its HRESULT), 2 for usage, 3 when the engine
 * could not be loaded or the dump not opened.
 */
#define COBJMACROS
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <dbgeng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const GUID kIID_IDebugClient = { 0x27fe5639, 0x8407, 0x4f47, { 0x83, 0x64, 0xee, 0x11, 0x8f, 0xb0, 0x8a, 0xc8 } };
static const GUID kIID_IDebugControl = { 0x5182e668, 0x105e, 0x416e, { 0xad, 0x92, 0x24, 0xef, 0x80, 0x04, 0x24, 0xba } };
static const GUID kIID_IDebugSymbols = { 0x8c31e98c, 0x983a, 0x48a5, { 0x90, 0x16, 0x6f, 0xe5, 0xd6, 0x67, 0xa9, 0x50 } };
static const GUID kIID_IDebugOutputCallbacks2 = { 0x67721fe9, 0x56d2, 0x4a44, { 0xa3, 0x25, 0x2b, 0x65, 0x51, 0x3c, 0xe6, 0xeb } };
static const GUID kIID_IDebugOutputCallbacks = { 0x4bf58045, 0xd654, 0x4c40, { 0xb0, 0xaf, 0x68, 0x30, 0x90, 0xf3, 0x56, 0xdc } };
static const GUID kIID_IUnknown = { 0x00000000, 0x0000, 0x0000, { 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46 } };

#define OUTCBI_TEXT 0x2 /* DEBUG_OUTCBI_TEXT */
#define OUTCBI_DML 0x4  /* DEBUG_OUTCBI_DML */
#define OUTCB_TEXT 0
#define OUTCB_DML 1
#define OUTCB_EXPLICIT_FLUSH 2
#define ENGOPT_PREFER_DML 0x00040000
#define OUTCTL_ALL_CLIENTS 1

/* IDebugOutputCallbacks2: IUnknown + Output (unused for 2) + GetInterestMask + Output2 (wide). */
typedef struct OutCb OutCb;
typedef struct {
    HRESULT (STDMETHODCALLTYPE *QueryInterface)(OutCb *, REFIID, void **);
    ULONG (STDMETHODCALLTYPE *AddRef)(OutCb *);
    ULONG (STDMETHODCALLTYPE *Release)(OutCb *);
    HRESULT (STDMETHODCALLTYPE *Output)(OutCb *, ULONG, PCSTR);
    HRESULT (STDMETHODCALLTYPE *GetInterestMask)(OutCb *, PULONG);
    HRESULT (STDMETHODCALLTYPE *Output2)(OutCb *, ULONG, ULONG, ULONG64, PCWSTR);
} OutCbVtbl;
struct OutCb { const OutCbVtbl *lpVtbl; };

static CRITICAL_SECTION g_out;
/* -plain: register as a classic IDebugOutputCallbacks, so the engine renders DML to text as kd/cdb show it. */
static int g_plain;

static void write_utf8(const wchar_t *text)
{
    int n = WideCharToMultiByte(CP_UTF8, 0, text, -1, NULL, 0, NULL, NULL);
    char stackbuf[4096];
    char *buf = n <= (int)sizeof stackbuf ? stackbuf : (char *)malloc(n);
    if (!buf) return;
    WideCharToMultiByte(CP_UTF8, 0, text, -1, buf, n, NULL, NULL);
    EnterCriticalSection(&g_out);
    fputs(buf, stdout);
    LeaveCriticalSection(&g_out);
    if (buf != stackbuf) free(buf);
}

static HRESULT STDMETHODCALLTYPE cb_qi(OutCb *self, REFIID iid, void **out)
{
    if (IsEqualGUID(iid, &kIID_IUnknown) ||
        (g_plain ? IsEqualGUID(iid, &kIID_IDebugOutputCallbacks) : IsEqualGUID(iid, &kIID_IDebugOutputCallbacks2))) { *out = self; return S_OK; }
    *out = NULL;
    return E_NOINTERFACE;
}
static ULONG STDMETHODCALLTYPE cb_addref(OutCb *self) { (void)self; return 2; }
static ULONG STDMETHODCALLTYPE cb_release(OutCb *self) { (void)self; return 1; }
static HRESULT STDMETHODCALLTYPE cb_output(OutCb *self, ULONG mask, PCSTR text)
{
    (void)self; (void)mask;
    if (text) { EnterCriticalSection(&g_out); fputs(text, stdout); LeaveCriticalSection(&g_out); }
    return S_OK;
}
static HRESULT STDMETHODCALLTYPE cb_mask(OutCb *self, PULONG mask) { (void)self; *mask = OUTCBI_TEXT | OUTCBI_DML; return S_OK; }
static HRESULT STDMETHODCALLTYPE cb_output2(OutCb *self, ULONG which, ULONG flags, ULONG64 arg, PCWSTR text)
{
    (void)self; (void)flags; (void)arg;
    if ((which == OUTCB_TEXT || which == OUTCB_DML) && text) write_utf8(text);
    return S_OK;
}
static const OutCbVtbl g_cbvtbl = { cb_qi, cb_addref, cb_release, cb_output, cb_mask, cb_output2 };
static OutCb g_cb = { &g_cbvtbl };

typedef HRESULT (STDAPICALLTYPE *DebugCreate_fn)(REFIID, PVOID *);

static PDEBUG_CONTROL g_ctrl;
static DWORD g_interrupt_ms;
static volatile LONG g_in_command;

static DWORD WINAPI interrupter(LPVOID p)
{
    (void)p;
    for (;;) {
        while (!g_in_command) Sleep(1);
        Sleep(g_interrupt_ms);
        if (g_in_command) g_ctrl->lpVtbl->SetInterrupt(g_ctrl, DEBUG_INTERRUPT_PASSIVE);
        while (g_in_command) Sleep(1);
    }
    return 0;
}

static DWORD WINAPI watchdog(LPVOID p)
{
    Sleep((DWORD)(ULONG_PTR)p * 1000);
    EnterCriticalSection(&g_out);
    printf("\n@@timeout\n");
    fflush(stdout);
    LeaveCriticalSection(&g_out);
    ExitProcess(4);
    return 0;
}

int main(int argc, char **argv)
{
    const char *engine = NULL, *dump = NULL, *sympath = NULL;
    const char *cmds[256];
    int ncmd = 0, dml = 0, timeout_s = 0, i;
    char path[MAX_PATH];
    HMODULE h;
    DebugCreate_fn create;
    PDEBUG_CLIENT client = NULL;
    PDEBUG_SYMBOLS syms = NULL;
    HRESULT hr;

    InitializeCriticalSection(&g_out);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-engine") && i + 1 < argc) engine = argv[++i];
        else if (!strcmp(argv[i], "-z") && i + 1 < argc) dump = argv[++i];
        else if (!strcmp(argv[i], "-y") && i + 1 < argc) sympath = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc && ncmd < 256) cmds[ncmd++] = argv[++i];
        else if (!strcmp(argv[i], "-dml")) dml = 1;
        else if (!strcmp(argv[i], "-plain")) g_plain = 1;
        else if (!strcmp(argv[i], "-interrupt-after") && i + 1 < argc) g_interrupt_ms = (DWORD)atoi(argv[++i]);
        else if (!strcmp(argv[i], "-timeout") && i + 1 < argc) timeout_s = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: enginehost -engine <dir> -z <dump> [-y <sympath>] [-dml] [-plain] [-interrupt-after <ms>] [-timeout <s>] -c <cmd> ...\n");
            return 2;
        }
    }
    if (!engine || !dump) { fprintf(stderr, "enginehost: -engine and -z are required\n"); return 2; }
    if (timeout_s > 0) CreateThread(NULL, 0, watchdog, (LPVOID)(ULONG_PTR)timeout_s, 0, NULL);

    /* dbghelp/dbgcore/msdia beside dbgeng must win over any system copy. */
    SetDllDirectoryA(engine);
    _snprintf(path, MAX_PATH, "%s\\dbgeng.dll", engine);
    path[MAX_PATH - 1] = 0;
    h = LoadLibraryExA(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!h) { fprintf(stderr, "enginehost: cannot load %s (error %lu)\n", path, GetLastError()); return 3; }
    create = (DebugCreate_fn)(void *)GetProcAddress(h, "DebugCreate");
    if (!create) { fprintf(stderr, "enginehost: %s has no DebugCreate\n", path); return 3; }
    hr = create(&kIID_IDebugClient, (void **)&client);
    if (FAILED(hr)) { fprintf(stderr, "enginehost: DebugCreate failed 0x%08lx\n", (unsigned long)hr); return 3; }
    client->lpVtbl->QueryInterface(client, &kIID_IDebugControl, (void **)&g_ctrl);
    client->lpVtbl->QueryInterface(client, &kIID_IDebugSymbols, (void **)&syms);
    if (!g_ctrl || !syms) { fprintf(stderr, "enginehost: engine interfaces missing (wine's stub dbgeng? set WINEDLLOVERRIDES)\n"); return 3; }
    hr = client->lpVtbl->SetOutputCallbacks(client, (PDEBUG_OUTPUT_CALLBACKS)(void *)&g_cb);
    if (FAILED(hr)) { fprintf(stderr, "enginehost: SetOutputCallbacks failed 0x%08lx\n", (unsigned long)hr); return 3; }
    if (dml) g_ctrl->lpVtbl->AddEngineOptions(g_ctrl, ENGOPT_PREFER_DML);
    if (sympath) syms->lpVtbl->SetSymbolPath(syms, sympath);
    hr = client->lpVtbl->OpenDumpFile(client, dump);

    if (SUCCEEDED(hr)) hr = g_ctrl->lpVtbl->WaitForEvent(g_ctrl, 0, INFINITE);

    if (FAILED(hr)) {
        fflush(stdout);
        fprintf(stderr, "enginehost: cannot open dump %s: 0x%08lx\n", dump, (unsigned long)hr);
        return 3;
    }
    if (g_interrupt_ms) CreateThread(NULL, 0, interrupter, NULL, 0, NULL);
    for (i = 0; i < ncmd; i++) {
        EnterCriticalSection(&g_out);
        printf("\n@@begin %s\n", cmds[i]);
        LeaveCriticalSection(&g_out);
        InterlockedExchange(&g_in_command, 1);
        hr = g_ctrl->lpVtbl->Execute(g_ctrl, OUTCTL_ALL_CLIENTS, cmds[i], DEBUG_EXECUTE_DEFAULT);
        InterlockedExchange(&g_in_command, 0);
        g_ctrl->lpVtbl->GetInterrupt(g_ctrl); /* clear a pending interrupt before the next command */
        EnterCriticalSection(&g_out);
        printf("\n@@end %08lx\n", (unsigned long)hr);
        fflush(stdout);
        LeaveCriticalSection(&g_out);
    }
    fflush(stdout);
    /* End the session quickly: detach instead of waiting for the engine's own shutdown. */
    client->lpVtbl->EndSession(client, DEBUG_END_ACTIVE_DETACH);
    fflush(stdout);
    ExitProcess(0);
    return 0;
}
