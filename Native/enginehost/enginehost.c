/*
 * enginehost.exe - a tiny console host for Microsoft's real debugger engine (dbgeng.dll), used by the
 * end-to-end tests (under wine on Linux, natively on Windows).
 *
 *   enginehost -engine <dir> [-y <sympath>] -z <dump> [-dml] [-rawdml] [-v] [-timeout <ms>]
 *              [-interrupt-after <ms> [-interrupt-cmd <n>]] [-interrupt-on-event <name>] [-cmdtimeout <ms>] [-mem] [-ext <extension dll>] -c <command> [-c <command> ...]
 *              [-z <dump> -c <command> ...]...
 *
 * Several dumps: each -z after the first starts a new group; the commands after it run on that dump, which is opened
 * after EndSession of the previous one (each group prints "@@dump <n> <path>" first; a dump that does not open prints
 * "@@dumpfail <hr>" and its commands are skipped). With one -z every command runs on it, wherever it stands. A -y after
 * the second or a later -z is that dump's symbol path (set before it opens); otherwise the one -y applies to all.
 * "-c @call <name> [args]" runs the extension export <name> through IDebugControl::CallExtension on the handle that
 * IDebugControl::AddExtension gives for the -ext DLL (added again after each dump opens); @@end carries the HRESULT the
 * extension returned (Execute passes S_OK on for any "!" command).
 * "-c @analyze" calls the -ext DLL's _EFN_Analyze for the four !analyze phases with a fake IDebugFailureAnalysis2 and
 * prints every call the plug-in makes on it ("@@fa ..."; see run_analyze_plugin); @@end carries the last failing HRESULT.
 * -cmdtimeout: a command running longer prints "@@fatal hang <ms>" and the host exits with 6.
 * -coreclr <coreclr.dll> [-coreclr-at <n>]: starts a CoreCLR the way SOS does (LoadLibrary + coreclr_initialize, no
 * hostfxr; TPA = System.Private.CoreLib.dll beside it) before the n-th command (1-based; 0 or absent = before the
 * dump opens) and prints "@@host coreclr <path> module <HMODULE> initialize 0x<hr>" (issue 20 item 6: another .NET in
 * the debugger).
 *
 * Output protocol (stdout, UTF-8): engine output captured through output callbacks; every command is framed:
 *   @@begin <command>
 *   ...output...
 *   @@end <hr as 0x%08x> <elapsed ms>
 * With -mem, every "@@end" line is followed by "@@mem <PrivateUsage> <PagefileUsage> <WorkingSetSize>" of this process
 * (wine 8 reports PrivateUsage as 0; the tests then use PagefileUsage, else the working set).
 * With -interrupt-after, a thread calls IDebugControl::SetInterrupt once a command (every command, or only the n-th,
 * 1-based, with -interrupt-cmd) has run that long, and the host measures how long the command took to return after it:
 *   @@host interrupt requested at <ms since the command began> hr=<hr>      (printed by the interrupt thread)
 *   @@host interrupt latency <ms from SetInterrupt to Execute's return>   (printed before @@end)
 * With -interrupt-on-event <name> the thread waits, once the command began, for the named event (the extension sets it
 * when NTSLEUTH_TEST_WALK_SIGNAL=<name>,<n> and a list walk reaches its n-th entry, or =<name>,@<point> at a named
 * test point of the analysis; "@@host walk signal at <ms>"), then
 * -interrupt-after ms more (0 by default) before SetInterrupt.
 * Setup lines start with "@@host " ; a fatal setup failure prints "@@fatal <what> <hr>" and exits non-zero.
 * Exit codes: 0 ok (commands may still have failed: see @@end), 2 usage, 3 engine load/setup, 4 dump open, 5 timeout,
 * 6 one command exceeded -cmdtimeout.
 */
#define WIN32_LEAN_AND_MEAN
#define COBJMACROS
#define INITGUID
#define PSAPI_VERSION 2 /* GetProcessMemoryInfo = K32GetProcessMemoryInfo in kernel32: no psapi import library */
#include <windows.h>
#include <psapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dbgeng.h>

#ifndef DEBUG_ENGOPT_PREFER_DML
#define DEBUG_ENGOPT_PREFER_DML 0x00040000
#endif
#define OUTCBI_TEXT 0x2
#define OUTCBI_DML 0x4
#define OUTCB_DML 1

DEFINE_GUID(IID_OutputCallbacks2_local, 0x67721fe9, 0x56d2, 0x4a44, 0xa3, 0x25, 0x2b, 0x65, 0x51, 0x3c, 0xe6, 0xeb);
DEFINE_GUID(IID_OutputCallbacks_local, 0x4bf58045, 0xd654, 0x4c40, 0xb0, 0xaf, 0x68, 0x30, 0x90, 0xf3, 0x56, 0xdc);
DEFINE_GUID(IID_IUnknown_local, 0x00000000, 0x0000, 0x0000, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46);
DEFINE_GUID(IID_IDebugClient_local, 0x27fe5639, 0x8407, 0x4f47, 0x83, 0x64, 0xee, 0x11, 0x8f, 0xb0, 0x8a, 0xc8);
DEFINE_GUID(IID_IDebugControl_local, 0x5182e668, 0x105e, 0x416e, 0xad, 0x92, 0x24, 0xef, 0x80, 0x04, 0x24, 0xba);

typedef HRESULT(STDAPICALLTYPE *DebugCreateFn)(REFIID, PVOID *);

/* ---------------- output callbacks (IDebugOutputCallbacks, or IDebugOutputCallbacks2 with -rawdml) --------------- */
typedef struct OutCb OutCb;
typedef struct OutCbVtbl {
    HRESULT(STDMETHODCALLTYPE *QueryInterface)(OutCb *, REFIID, void **);
    ULONG(STDMETHODCALLTYPE *AddRef)(OutCb *);
    ULONG(STDMETHODCALLTYPE *Release)(OutCb *);
    HRESULT(STDMETHODCALLTYPE *Output)(OutCb *, ULONG, PCSTR);
    /* IDebugOutputCallbacks2 only: */
    HRESULT(STDMETHODCALLTYPE *GetInterestMask)(OutCb *, PULONG);
    HRESULT(STDMETHODCALLTYPE *Output2)(OutCb *, ULONG, ULONG, ULONG64, PCWSTR);
} OutCbVtbl;
struct OutCb { const OutCbVtbl *lpVtbl; int v2; };

static CRITICAL_SECTION g_outLock;
static int g_tagErrors = 0;

static void emit(const char *s, size_t n) {
    EnterCriticalSection(&g_outLock);
    fwrite(s, 1, n, stdout);
    LeaveCriticalSection(&g_outLock);
}
static void emitz(const char *s) { emit(s, strlen(s)); }
static void emitf(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= (int)sizeof buf) n = sizeof buf - 1;
    emit(buf, (size_t)n);
    EnterCriticalSection(&g_outLock);
    fflush(stdout);
    LeaveCriticalSection(&g_outLock);
}

static HRESULT STDMETHODCALLTYPE cb_qi(OutCb *self, REFIID iid, void **out) {
    if (IsEqualIID(iid, &IID_IUnknown_local) || IsEqualIID(iid, &IID_OutputCallbacks_local) ||
        (self->v2 && IsEqualIID(iid, &IID_OutputCallbacks2_local))) {
        *out = self;
        return S_OK;
    }
    *out = NULL;
    return E_NOINTERFACE;
}
static ULONG STDMETHODCALLTYPE cb_addref(OutCb *self) { (void)self; return 1; }
static ULONG STDMETHODCALLTYPE cb_release(OutCb *self) { (void)self; return 0; }
static void emit_masked(ULONG mask, const char *text) {
    if (g_tagErrors && (mask & DEBUG_OUTPUT_ERROR)) {
        emitz("@@err ");
    }
    emitz(text);
}
static HRESULT STDMETHODCALLTYPE cb_output(OutCb *self, ULONG mask, PCSTR text) {
    (void)self;
    if (text) emit_masked(mask, text);
    return S_OK;
}
static HRESULT STDMETHODCALLTYPE cb_interest(OutCb *self, PULONG mask) {
    (void)self;
    *mask = OUTCBI_TEXT | OUTCBI_DML;
    return S_OK;
}
static HRESULT STDMETHODCALLTYPE cb_output2(OutCb *self, ULONG which, ULONG flags, ULONG64 arg, PCWSTR text) {
    (void)self; (void)flags;
    if (!text || (which != 0 && which != OUTCB_DML)) return S_OK;
    int n = WideCharToMultiByte(CP_UTF8, 0, text, -1, NULL, 0, NULL, NULL);
    if (n <= 0) return S_OK;
    char *buf = (char *)malloc((size_t)n);
    if (!buf) return S_OK;
    WideCharToMultiByte(CP_UTF8, 0, text, -1, buf, n, NULL, NULL);
    emit_masked((ULONG)arg, buf);
    free(buf);
    return S_OK;
}
static const OutCbVtbl g_cbVtbl = { cb_qi, cb_addref, cb_release, cb_output, cb_interest, cb_output2 };

/* ---------------- interrupt + watchdog threads ------------------------------------------------------------------ */
static IDebugControl *g_control;
static volatile LONG g_commandSeq = 0;
static DWORD g_interruptAfter = 0;
static int g_reportMem = 0;
static int g_interruptCmd = 0;               /* 0 = every command, else the 1-based index of the one to interrupt */
static volatile double g_cmdStart = 0;       /* now_ms() when the current command began */
static volatile double g_interruptAt = 0;    /* now_ms() just before SetInterrupt, 0 = not requested */
static double now_ms(void);
static DWORD g_timeout = 120000;
static HANDLE g_cmdStarted;
static HANDLE g_signalEvent;                 /* -interrupt-on-event: the extension sets it (NTSLEUTH_TEST_WALK_SIGNAL) */

static DWORD WINAPI interrupt_thread(LPVOID p) {
    (void)p;
    for (;;) {
        WaitForSingleObject(g_cmdStarted, INFINITE);
        LONG seq = g_commandSeq;
        if (g_signalEvent) {
            /* Interrupt once the extension says its walk runs (then -interrupt-after ms more), never on a timer alone. */
            if (WaitForSingleObject(g_signalEvent, g_timeout) != WAIT_OBJECT_0) continue;
            if (seq != g_commandSeq) continue;
            emitf("@@host walk signal at %.2f ms\n", now_ms() - g_cmdStart);
        }
        Sleep(g_interruptAfter);
        if (seq == g_commandSeq) {
            double before = now_ms();
            HRESULT hr = g_control->lpVtbl->SetInterrupt(g_control, DEBUG_INTERRUPT_ACTIVE);
            g_interruptAt = before;
            emitf("@@host interrupt requested at %.2f ms hr=0x%08lx\n", before - g_cmdStart, (unsigned long)hr);
        }
    }
    return 0;
}
/* Per-command watchdog (-cmdtimeout): the start time of the running command, or 0 between commands. */
static DWORD g_cmdTimeout = 0;
static volatile LONGLONG g_cmdStartTick = 0;
static DWORD WINAPI cmd_watchdog_thread(LPVOID p) {
    (void)p;
    for (;;) {
        Sleep(20);
        LONGLONG st = g_cmdStartTick;
        if (st != 0 && (LONGLONG)GetTickCount64() - st > (LONGLONG)g_cmdTimeout) {
            emitf("\n@@fatal hang %lu ms\n", (unsigned long)g_cmdTimeout);
            fflush(stdout);
            TerminateProcess(GetCurrentProcess(), 6);
        }
    }
    return 0;
}
static DWORD WINAPI watchdog_thread(LPVOID p) {
    (void)p;
    Sleep(g_timeout);
    emitf("\n@@fatal timeout %lu ms\n", (unsigned long)g_timeout);
    fflush(stdout);
    TerminateProcess(GetCurrentProcess(), 5);
    return 0;
}

static double now_ms(void) {
    static LARGE_INTEGER f; /* first call is on the main thread, before any other thread starts */
    LARGE_INTEGER c;
    if (!f.QuadPart) QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart * 1000.0 / (double)f.QuadPart;
}

/* ---------------- "@analyze": calls the -ext DLL's _EFN_Analyze (the !analyze plug-in entry, EXT_ANALYSIS_PLUGIN) -----
 * with a fake IDebugFailureAnalysis2, the way ext.dll's !analyze would (ext.dll is not in the engine package, so
 * !analyze itself cannot run here). The fake's vtable follows the slot order of extsfns.h's IDebugFailureAnalysis2
 * (public copies named in docs/analyze.md); GetFailureCode answers the dump's own bug check code
 * (IDebugControl::ReadBugCheckData); the tag table (IDebugFAEntryTags) types the string tags 0x10000-0x1ffff as
 * DEBUG_FA_ENTRY_ANSI_STRING (5) and 0x80000000 (FAULTING_IP) as DEBUG_FA_ENTRY_INSTRUCTION_OFFSET (3): that typing is
 * this fake's assumption, ext.dll's real table is not available. Every call the plug-in makes is printed:
 *   @@fa <Method> 0x<tag> <value>          (Set/Add String/Ulong64)
 *   @@fa phase <n> hr 0x<hr>               (after each of the four phases: 1, 2, 4, 8)
 *   @@fa unexpected                        (a slot the plug-in has no business calling) */
#define FA_SLOTS 25
typedef struct FakeFa { void **vtbl; ULONG code; } FakeFa;
typedef struct FakeTags { void **vtbl; } FakeTags;
static FakeTags g_fakeTags;
static void *g_fakeEntry[2]; /* a non-NULL FA_ENTRY* to return */
static void *STDMETHODCALLTYPE fa_unexpected(void *self) { (void)self; emitz("@@fa unexpected\n"); return NULL; }
static HRESULT STDMETHODCALLTYPE fa_qi(void *self, REFIID iid, void **out) { (void)self; (void)iid; emitz("@@fa QueryInterface\n"); if (out) *out = NULL; return E_NOINTERFACE; }
static ULONG STDMETHODCALLTYPE fa_addref(void *self) { (void)self; return 1; }
static ULONG STDMETHODCALLTYPE fa_release(void *self) { (void)self; return 1; }
static ULONG STDMETHODCALLTYPE fa_class(void *self) { (void)self; emitz("@@fa GetFailureClass\n"); return DEBUG_CLASS_KERNEL; }
static ULONG STDMETHODCALLTYPE fa_type(void *self) { (void)self; emitz("@@fa GetFailureType\n"); return 1; /* DEBUG_FLR_KERNEL */ }
static ULONG STDMETHODCALLTYPE fa_code(FakeFa *self) { emitf("@@fa GetFailureCode -> 0x%lx\n", (unsigned long)self->code); return self->code; }
static void *STDMETHODCALLTYPE fa_setstring(void *self, ULONG tag, const char *s) { (void)self; emitf("@@fa SetString 0x%08lx %s\n", (unsigned long)tag, s ? s : "(null)"); return g_fakeEntry; }
static void *STDMETHODCALLTYPE fa_addstring(void *self, ULONG tag, const char *s) { (void)self; emitf("@@fa AddString 0x%08lx %s\n", (unsigned long)tag, s ? s : "(null)"); return g_fakeEntry; }
static void *STDMETHODCALLTYPE fa_setu64(void *self, ULONG tag, ULONG64 v) { (void)self; emitf("@@fa SetUlong64 0x%08lx 0x%llx\n", (unsigned long)tag, (unsigned long long)v); return g_fakeEntry; }
static void *STDMETHODCALLTYPE fa_addu64(void *self, ULONG tag, ULONG64 v) { (void)self; emitf("@@fa AddUlong64 0x%08lx 0x%llx\n", (unsigned long)tag, (unsigned long long)v); return g_fakeEntry; }
static HRESULT STDMETHODCALLTYPE fa_tagctl(void *self, void **tags) { (void)self; *tags = &g_fakeTags; return S_OK; }
static ULONG STDMETHODCALLTYPE tags_gettype(void *self, ULONG tag) {
    (void)self;
    return tag >= 0x10000 && tag <= 0x1ffff ? 5 : tag == 0x80000000u ? 3 : 0;
}
static void *g_faVtbl[FA_SLOTS];
static void *g_tagsVtbl[6];
typedef HRESULT(CALLBACK *efn_analyze_fn)(IDebugClient4 *client, ULONG phase, void *analysis);

static HRESULT run_analyze_plugin(IDebugClient *client, const char *extDll) {
    if (!extDll) return E_INVALIDARG;
    HMODULE m = LoadLibraryA(extDll);
    if (!m) { emitf("@@host LoadLibrary %s %lu\n", extDll, GetLastError()); return HRESULT_FROM_WIN32(GetLastError()); }
    efn_analyze_fn fn = (efn_analyze_fn)(void *)GetProcAddress(m, "_EFN_Analyze");
    if (!fn) { emitz("@@host no _EFN_Analyze export\n"); return E_NOINTERFACE; }
    for (int i = 0; i < FA_SLOTS; i++) g_faVtbl[i] = (void *)fa_unexpected;
    g_faVtbl[0] = (void *)fa_qi; g_faVtbl[1] = (void *)fa_addref; g_faVtbl[2] = (void *)fa_release;
    g_faVtbl[3] = (void *)fa_class; g_faVtbl[4] = (void *)fa_type; g_faVtbl[5] = (void *)fa_code;
    g_faVtbl[13] = (void *)fa_setstring; g_faVtbl[16] = (void *)fa_setu64; g_faVtbl[18] = (void *)fa_addstring; g_faVtbl[21] = (void *)fa_addu64;
    g_faVtbl[23] = (void *)fa_tagctl;
    for (int i = 0; i < 6; i++) g_tagsVtbl[i] = (void *)fa_unexpected;
    g_tagsVtbl[0] = (void *)tags_gettype;
    g_fakeTags.vtbl = g_tagsVtbl;
    FakeFa fa = { g_faVtbl, 0 };
    ULONG code = 0; ULONG64 a1, a2, a3, a4;
    HRESULT hr = g_control->lpVtbl->ReadBugCheckData(g_control, &code, &a1, &a2, &a3, &a4);
    if (FAILED(hr)) emitf("@@host ReadBugCheckData 0x%08lx\n", (unsigned long)hr);
    fa.code = code;
    IDebugClient4 *c4 = NULL;
    hr = client->lpVtbl->QueryInterface(client, &IID_IDebugClient4, (void **)&c4);
    if (FAILED(hr) || !c4) { emitf("@@host IDebugClient4 0x%08lx\n", (unsigned long)hr); return hr; }
    static const ULONG phases[] = { 1, 2, 4, 8 }; /* FA_EXTENSION_PLUGIN_PHASE, in the order !analyze runs them */
    HRESULT last = S_OK;
    for (int i = 0; i < 4; i++) {
        HRESULT phr = fn(c4, phases[i], &fa);
        client->lpVtbl->FlushCallbacks(client);
        emitf("\n@@fa phase %lu hr 0x%08lx\n", (unsigned long)phases[i], (unsigned long)phr);
        if (FAILED(phr)) last = phr;
    }
    c4->lpVtbl->Release(c4);
    return last;
}

/* ---------------- another CoreCLR in the process, started as SOS does (no hostfxr) ---------------- */
typedef int (*coreclr_initialize_fn)(const char *exePath, const char *appDomainFriendlyName, int propertyCount,
                                     const char **propertyKeys, const char **propertyValues, void **hostHandle,
                                     unsigned int *domainId);
static void start_foreign_coreclr(const char *path) {
    HMODULE m = LoadLibraryExA(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!m) { emitf("@@host coreclr %s LoadLibrary error %lu\n", path, (unsigned long)GetLastError()); return; }
    coreclr_initialize_fn init = (coreclr_initialize_fn)(void *)GetProcAddress(m, "coreclr_initialize");
    if (!init) { emitf("@@host coreclr %s has no coreclr_initialize\n", path); return; }
    char tpa[MAX_PATH * 2], exe[MAX_PATH];
    snprintf(tpa, sizeof tpa, "%s", path);
    char *slash = strrchr(tpa, '\\');
    if (slash) snprintf(slash + 1, sizeof tpa - (size_t)(slash + 1 - tpa), "System.Private.CoreLib.dll");
    GetModuleFileNameA(NULL, exe, sizeof exe);
    const char *keys[] = { "TRUSTED_PLATFORM_ASSEMBLIES" };
    const char *values[] = { tpa };
    void *handle = NULL;
    unsigned int domain = 0;
    int rc = init(exe, "enginehost-foreign", 1, keys, values, &handle, &domain);
    emitf("@@host coreclr %s module %p initialize 0x%08x\n", path, (void *)m, (unsigned)rc);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: enginehost -engine <dir with dbgeng.dll> [-y <sympath>] [-z <dump>] [-dml] [-rawdml] [-v]\n"
            "                  [-tagerr] [-timeout <ms>] [-interrupt-after <ms> [-interrupt-cmd <n>]] [-interrupt-on-event <name>] [-cmdtimeout <ms>] [-mem] [-ext <dll>]\n"
            "                  [-coreclr <coreclr.dll> [-coreclr-at <n>]]\n"
            "                  -c <command> [-c <command> ...] [-z <dump> -c <command> ...]...\n"
            "       -c \"@call <export> [args]\" calls the -ext DLL's export through IDebugControl::CallExtension\n"
            "       -c @analyze calls the -ext DLL's _EFN_Analyze (4 phases) with a fake IDebugFailureAnalysis2\n");
}

int main(int argc, char **argv) {
    const char *engineDir = NULL, *symPath = NULL, *extDll = NULL, *foreignClr = NULL, *signalName = NULL;
    int foreignClrAt = 0;
    const char **cmds = (const char **)calloc((size_t)argc + 1, sizeof(char *));
    int *cmdDump = (int *)calloc((size_t)argc + 1, sizeof(int));
    const char **dumps = (const char **)calloc((size_t)argc + 1, sizeof(char *));
    const char **dumpSym = (const char **)calloc((size_t)argc + 1, sizeof(char *));
    int ncmds = 0, ndumps = 0, dml = 0, rawdml = 0, verbose = 0;
    InitializeCriticalSection(&g_outLock);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-engine") && more) engineDir = argv[++i];
        else if (!strcmp(a, "-y") && more) { if (ndumps > 1) dumpSym[ndumps - 1] = argv[i + 1]; else symPath = argv[i + 1]; i++; }
        else if (!strcmp(a, "-z") && more) dumps[ndumps++] = argv[++i];
        else if (!strcmp(a, "-c") && more) { cmdDump[ncmds] = ndumps > 0 ? ndumps - 1 : 0; cmds[ncmds++] = argv[++i]; }
        else if (!strcmp(a, "-cmdtimeout") && more) g_cmdTimeout = (DWORD)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(a, "-ext") && more) extDll = argv[++i];
        else if (!strcmp(a, "-timeout") && more) g_timeout = (DWORD)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(a, "-interrupt-after") && more) g_interruptAfter = (DWORD)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(a, "-mem")) g_reportMem = 1;
        else if (!strcmp(a, "-interrupt-cmd") && more) g_interruptCmd = atoi(argv[++i]);
        else if (!strcmp(a, "-interrupt-on-event") && more) signalName = argv[++i];
        else if (!strcmp(a, "-dml")) dml = 1;
        else if (!strcmp(a, "-rawdml")) rawdml = 1;
        else if (!strcmp(a, "-tagerr")) g_tagErrors = 1;
        else if (!strcmp(a, "-v")) verbose = 1;
        else if (!strcmp(a, "-coreclr") && more) foreignClr = argv[++i];
        else if (!strcmp(a, "-coreclr-at") && more) foreignClrAt = atoi(argv[++i]);
        else { usage(); return 2; }
    }
    if (!engineDir) { usage(); return 2; }
    /* One dump: every command runs on it, wherever -c stands (the historical usage). */
    if (ndumps <= 1) for (int i = 0; i < ncmds; i++) cmdDump[i] = 0;

    CreateThread(NULL, 0, watchdog_thread, NULL, 0, NULL);
    if (g_cmdTimeout) CreateThread(NULL, 0, cmd_watchdog_thread, NULL, 0, NULL);

    /* Load dbgeng.dll by full path; its dependencies (dbghelp, dbgcore, dbgmodel, msdia140) resolve beside it. */
    char path[MAX_PATH * 2];
    snprintf(path, sizeof path, "%s\\dbgeng.dll", engineDir);
    SetDllDirectoryA(engineDir);
    HMODULE eng = LoadLibraryExA(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (!eng) {
        emitf("@@fatal LoadLibrary %s error %lu\n", path, (unsigned long)GetLastError());
        return 3;
    }
    DebugCreateFn create = (DebugCreateFn)(void *)GetProcAddress(eng, "DebugCreate");
    if (!create) { emitf("@@fatal no DebugCreate export in %s\n", path); return 3; }

    IDebugClient *client = NULL;
    HRESULT hr = create(&IID_IDebugClient_local, (void **)&client);
    if (FAILED(hr)) { emitf("@@fatal DebugCreate 0x%08lx\n", (unsigned long)hr); return 3; }
    hr = client->lpVtbl->QueryInterface(client, &IID_IDebugControl_local, (void **)&g_control);
    if (FAILED(hr)) { emitf("@@fatal QueryInterface(IDebugControl) 0x%08lx\n", (unsigned long)hr); return 3; }

    static OutCb cb = { &g_cbVtbl, 0 };
    cb.v2 = rawdml;
    hr = client->lpVtbl->SetOutputCallbacks(client, (PDEBUG_OUTPUT_CALLBACKS)&cb);
    if (FAILED(hr)) { emitf("@@fatal SetOutputCallbacks 0x%08lx\n", (unsigned long)hr); return 3; }
    /* The documented output classes (NORMAL..XML, 0x1-0x800). The high "internal" bits would add the engine's own
       tracing, e.g. DEBUG_IOUTPUT_ADDR_TRANSLATE (0x08000000) prints "Amd64VtoP: ..." for every translation. */
    ULONG mask = 0x00000FFFu;
    if (!verbose) mask &= ~(ULONG)DEBUG_OUTPUT_VERBOSE;
    client->lpVtbl->SetOutputMask(client, mask);
    if (dml) {
        hr = g_control->lpVtbl->AddEngineOptions(g_control, DEBUG_ENGOPT_PREFER_DML);
        if (FAILED(hr)) emitf("@@host AddEngineOptions(PREFER_DML) 0x%08lx\n", (unsigned long)hr);
    }
    if (symPath) {
        IDebugSymbols *sym = NULL;
        hr = client->lpVtbl->QueryInterface(client, &IID_IDebugSymbols, (void **)&sym);
        if (SUCCEEDED(hr)) {
            hr = sym->lpVtbl->SetSymbolPath(sym, symPath);
            sym->lpVtbl->Release(sym);
        }
        if (FAILED(hr)) { emitf("@@fatal SetSymbolPath 0x%08lx\n", (unsigned long)hr); return 3; }
    }
    if (signalName) {
        g_signalEvent = CreateEventA(NULL, FALSE, FALSE, signalName);
        if (!g_signalEvent) { emitf("@@fatal CreateEvent %s %lu\n", signalName, (unsigned long)GetLastError()); return 3; }
    }
    if (g_interruptAfter || g_signalEvent) {
        g_cmdStarted = CreateEventA(NULL, FALSE, FALSE, NULL);
        CreateThread(NULL, 0, interrupt_thread, NULL, 0, NULL);
    }
    if (foreignClr && foreignClrAt <= 0) start_foreign_coreclr(foreignClr);
    int ngroups = ndumps > 0 ? ndumps : 1;
    for (int g = 0; g < ngroups; g++) {
        const char *dump = ndumps > 0 ? dumps[g] : NULL;
        ULONG64 extHandle = 0;
        int skip = 0;
        if (dump) {
            if (ndumps > 1) {
                if (g > 0) {
                    hr = client->lpVtbl->EndSession(client, DEBUG_END_ACTIVE_DETACH);
                    if (FAILED(hr)) emitf("@@host EndSession 0x%08lx\n", (unsigned long)hr);
                }
                emitf("@@dump %d %s\n", g, dump);
                if (g > 0) {
                    const char *sp = dumpSym[g] ? dumpSym[g] : symPath;
                    IDebugSymbols *sym = NULL;
                    if (sp && SUCCEEDED(client->lpVtbl->QueryInterface(client, &IID_IDebugSymbols, (void **)&sym))) {
                        hr = sym->lpVtbl->SetSymbolPath(sym, sp);
                        if (FAILED(hr)) emitf("@@host SetSymbolPath 0x%08lx\n", (unsigned long)hr);
                        sym->lpVtbl->Release(sym);
                    }
                }
            }
            double t0 = now_ms();
            hr = client->lpVtbl->OpenDumpFile(client, dump);
            if (SUCCEEDED(hr)) {
                hr = g_control->lpVtbl->WaitForEvent(g_control, DEBUG_WAIT_DEFAULT, INFINITE);
                if (FAILED(hr) && ndumps <= 1) { emitf("@@fatal WaitForEvent 0x%08lx\n", (unsigned long)hr); fflush(stdout); return 4; }
            } else if (ndumps <= 1) {
                emitf("@@fatal OpenDumpFile %s 0x%08lx\n", dump, (unsigned long)hr); fflush(stdout); return 4;
            }
            client->lpVtbl->FlushCallbacks(client);
            if (FAILED(hr)) { emitf("\n@@dumpfail 0x%08lx\n", (unsigned long)hr); skip = 1; }
            else emitf("\n@@host dump opened in %.1f ms\n", now_ms() - t0);
        }
        for (int i = 0; i < ncmds && !skip; i++) {
            if (cmdDump[i] != g) continue;
            const char *c = cmds[i];
            if (foreignClr && foreignClrAt == i + 1) start_foreign_coreclr(foreignClr);
            emitf("@@begin %s\n", c);
            InterlockedIncrement(&g_commandSeq);
            g_interruptAt = 0;
            double t = now_ms();
            g_cmdStart = t;
            if (g_cmdStarted && (g_interruptCmd == 0 || g_interruptCmd == i + 1)) {
                if (g_signalEvent) ResetEvent(g_signalEvent); /* a signal of an earlier command does not count */
                SetEvent(g_cmdStarted);
            }
            g_cmdStartTick = (LONGLONG)GetTickCount64();
            if (!strcmp(c, "@analyze")) {
                hr = run_analyze_plugin(client, extDll);
            } else if (!strncmp(c, "@call ", 6)) {
                /* IDebugControl::CallExtension: the extension's own HRESULT comes back. */
                if (!extDll) hr = E_INVALIDARG;
                else if (!extHandle) hr = g_control->lpVtbl->AddExtension(g_control, extDll, 0, &extHandle);
                else hr = S_OK;
                if (SUCCEEDED(hr)) {
                    char name[256];
                    const char *p = c + 6, *sp = strchr(p, ' ');
                    size_t n = sp ? (size_t)(sp - p) : strlen(p);
                    if (n >= sizeof name) n = sizeof name - 1;
                    memcpy(name, p, n);
                    name[n] = 0;
                    hr = g_control->lpVtbl->CallExtension(g_control, extHandle, name, sp ? sp + 1 : "");
                } else emitf("@@host AddExtension 0x%08lx\n", (unsigned long)hr);
            } else {
                hr = g_control->lpVtbl->Execute(g_control, DEBUG_OUTCTL_ALL_CLIENTS, c, DEBUG_EXECUTE_NOT_LOGGED | DEBUG_EXECUTE_NO_REPEAT);
            }
            g_cmdStartTick = 0;
            double done = now_ms();
            double el = done - t;
            InterlockedIncrement(&g_commandSeq);
            client->lpVtbl->FlushCallbacks(client);
            /* The interrupt thread sets g_interruptAt only while this command's sequence number is current. */
            if (g_interruptAt != 0) {
                emitf("\n@@host interrupt latency %.2f ms\n", done - g_interruptAt);
                /* Clear a request the command never polled, so it cannot leak into the next command. */
                g_control->lpVtbl->GetInterrupt(g_control);
            }
            emitf("\n@@end 0x%08lx %.2f\n", (unsigned long)hr, el);
            if (g_reportMem) {
                PROCESS_MEMORY_COUNTERS_EX pmc;
                ZeroMemory(&pmc, sizeof pmc);
                pmc.cb = sizeof pmc;
                if (GetProcessMemoryInfo(GetCurrentProcess(), (PROCESS_MEMORY_COUNTERS *)&pmc, sizeof pmc))
                    emitf("@@mem %llu %llu %llu\n", (unsigned long long)pmc.PrivateUsage, (unsigned long long)pmc.PagefileUsage,
                          (unsigned long long)pmc.WorkingSetSize);
            }
        }
    }
    client->lpVtbl->SetOutputCallbacks(client, NULL);
    client->lpVtbl->EndSession(client, DEBUG_END_ACTIVE_DETACH);
    emitf("@@host done\n");
    fflush(stdout);
    /* Skip engine teardown in DLL detach: it is slow under wine and irrelevant to a test host. */
    TerminateProcess(GetCurrentProcess(), 0);
    return 0;
}
