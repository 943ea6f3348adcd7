#!/usr/bin/env python3
"""Real-engine timing bench (called by scripts/bench-engine.sh; see there for usage).

For every command of every sample in OUTDIR/manifest.json: one fresh engine session (enginehost + Microsoft's
dbgeng.dll) that loads ntsleuth.dll, runs the command N times, then runs the built-in dbgeng commands that read the
same data N times. enginehost frames every command with "@@end <hr> <elapsed ms>"; we print
  first run (includes the .NET start and the engine's deferred symbol load), warm median (runs 2..N),
  the built-ins' warm median (sum of the group), and the ratio warm / built-ins.
Only dbgeng built-ins exist in the lab (no kdexts/ext.dll): the manual procedures are written with dt/dq/s/k and
C++ expressions (@@c++) that follow the same pointers the command follows.
"""
import json, os, re, statistics, subprocess, sys

WINE = []

def winpath(p):
    return "Z:" + os.path.abspath(p).replace("/", "\\")

def first_address(cmd):
    for tok in cmd.split()[1:]:
        if tok.startswith("-"):
            return None
        if re.fullmatch(r"(0x)?[0-9a-fA-F`]{8,}", tok):
            return tok.replace("`", "")
    return None

def builtins(cmd, modules, sample=""):
    """The built-in commands that read the same data as `cmd` (a list), or [] when the lab has no equivalent."""
    name = cmd.split()[0].lstrip("!")
    if name == "alpcchain":
        t = first_address(cmd)
        if not t:
            return []
        th = f"((nt!_ETHREAD*)0x{t})"
        msg = f"((nt!_KALPC_MESSAGE*){th}->AlpcMessage)"
        port = f"{msg}->PortQueue"
        info = f"{port}->CommunicationInfo"
        # One hop by hand: the waiting thread, its message, the port, the connection, the server port and process.
        return [f"dt nt!_ETHREAD 0x{t}", f"dt nt!_KTHREAD 0x{t}",
                f"dt nt!_KALPC_MESSAGE @@c++({th}->AlpcMessage)",
                f"dt nt!_ALPC_PORT @@c++({port})",
                f"dt nt!_ALPC_COMMUNICATION_INFO @@c++({info})",
                f"dt nt!_ALPC_PORT @@c++({info}->ServerCommunicationPort)",
                f"dt nt!_EPROCESS @@c++({port}->OwnerProcess)",
                f"dt nt!_ETHREAD @@c++({msg}->WaitingThread)"]
    if name == "leaktag":
        table = lambda t, size, entry: f"dq poi(nt!{t}) L?(poi(nt!{size})*@@c++(sizeof(nt!{entry}))/8)"
        group = [table("PoolTrackTable", "PoolTrackTableSize", "_POOL_TRACKER_TABLE"),
                 ".if (poi(nt!PoolTrackTableExpansionSize) != 0) { " + table("PoolTrackTableExpansion", "PoolTrackTableExpansionSize", "_POOL_TRACKER_TABLE") + " }",
                 table("PoolBigPageTable", "PoolBigPageTableSize", "_POOL_TRACKER_BIG_PAGES"),
                 "dd nt!PoolHitTag L1"]
        tag = [a for a in cmd.split()[1:] if not a.startswith("-") and not a.isdigit()]
        if tag:
            group += [f's -a 0x{b:x} L?0x{s:x} "{tag[0]}"' for b, s in modules]
        return group
    if name == "workqueue":
        # The same data with the engine's own data model (the package's engine has no kdexts: no !exqueue, !list or
        # !thread): the Delayed queue's items counted by routine, and its workers' wait reasons.
        if sample.endswith("7601"):
            q = "(&(*(nt!_EX_WORK_QUEUE(*)[3])&nt!ExWorkerQueue)[1])"
            items, threads = f"{q}->WorkerQueue.EntryListHead", f"{q}->WorkerQueue.ThreadListHead"
        elif re.search(r"-(1[89]\d{3}|2\d{4})$", sample):
            q = "((nt!_EX_PARTITION*)(*(nt!_EPARTITION**)&nt!PspSystemPartition)->ExPartition)->WorkQueues[0][0]"
            items, threads = f"{q}->WorkPriQueue.EntryListHead[12]", f"{q}->WorkPriQueue.ThreadListHead"
        else:
            return []
        walk = 'Debugger.Utility.Collections.FromListEntry({}, "nt!{}", "{}")'
        return [f"dx -r1 {walk.format(items, '_IO_WORKITEM', 'WorkItem.List')}.GroupBy(x => x.Routine).Select(g => g.Count())",
                f"dx -r1 {walk.format(threads, '_KTHREAD', 'QueueListEntry')}.Select(t => t.WaitReason)"]
    if name == "dpcblame":
        return ["k", "dt nt!_KPRCB poi(nt!KiProcessorBlock)", "dt nt!_KPRCB poi(nt!KiProcessorBlock+8)"]
    return []

def run_engine(host, engine, dump, sym, dll, cmds, timeout_s, env):
    args = WINE + [host, "-engine", winpath(engine), "-z", winpath(dump), "-y", winpath(sym),
            "-timeout", str(timeout_s * 1000), "-c", f".load {dll}"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args, capture_output=True, env=env, timeout=timeout_s + 30)
    out = p.stdout.decode("utf-8", "replace").replace("\r", "")
    runs, cur, text = [], None, []
    for line in out.split("\n"):
        if line.startswith("@@begin "):
            cur, text = line[8:], []
        elif line.startswith("@@end ") and cur is not None:
            parts = line.split()
            runs.append((cur, float(parts[2]), "\n".join(text)))
            cur = None
        elif cur is not None:
            text.append(line)
    return runs, out

def modules_of(host, engine, dump, sym, dll, env):
    runs, _ = run_engine(host, engine, dump, sym, dll, ["lm"], 120, env)
    mods = []
    for _, _, text in runs[1:]:
        for line in text.split("\n"):
            m = re.match(r"^([0-9a-f]{8}`?[0-9a-f]{8})\s+([0-9a-f]{8}`?[0-9a-f]{8})\s+\S+", line)
            if m:
                b, e = (int(x.replace("`", ""), 16) for x in m.groups())
                if e > b:
                    mods.append((b, e - b))
    return mods

ERR = re.compile(r"Couldn't resolve|Syntax error|Memory access error|Symbol .* not found|unable to|^\s*\^", re.I | re.M)

def main():
    root, out, host, engine, dll = sys.argv[1:6]
    n = int(sys.argv[6]); only = sys.argv[7]; timeout = int(sys.argv[8])
    if len(sys.argv) > 10 and sys.argv[9] == "--wine":
        WINE.append(sys.argv[10])
    env = dict(os.environ)
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    rows = []
    for s in manifest["samples"]:
        if only and only not in s["name"]:
            continue
        dump = os.path.join(out, s["dump"]); sym = os.path.join(out, s["symbolPath"])
        mods = None
        for cmd in s["commands"]:
            if cmd.startswith("!leaktag") and mods is None:
                mods = modules_of(host, engine, dump, sym, dll, env)
            manual = builtins(cmd, mods or [], s["name"])
            cmds = [cmd] * n + manual * n
            try:
                runs, raw = run_engine(host, engine, dump, sym, dll, cmds, timeout, env)
            except subprocess.TimeoutExpired:
                rows.append((s["name"], cmd, None, None, None, None, f"engine session timed out after {timeout} s"))
                continue
            ext = [ms for c, ms, _ in runs[1:1 + n]]
            man_runs = runs[1 + n:]
            if len(ext) < n or len(man_runs) < len(manual) * n:
                rows.append((s["name"], cmd, None, None, None, None, "engine session ended early (see the raw output)"))
                sys.stderr.write(raw[-3000:] + "\n")
                continue
            errors = sorted({c for c, _, t in man_runs[:len(manual)] if ERR.search(t)})
            if manual:
                sums = [sum(ms for _, ms, _ in man_runs[i * len(manual):(i + 1) * len(manual)]) for i in range(n)]
                man_first, man_warm = sums[0], statistics.median(sums[1:]) if n > 1 else sums[0]
            else:
                man_first = man_warm = None
            warm = statistics.median(ext[1:]) if n > 1 else ext[0]
            note = f"{len(manual)} built-in commands" if manual else "no built-in equivalent in the lab"
            if errors:
                note += f"; {len(errors)} built-in(s) printed an error: " + " | ".join(e[:60] for e in errors[:2])
            rows.append((s["name"], cmd, ext[0], warm, man_first, man_warm, note))
    fmt = lambda v: "-" if v is None else f"{v:,.1f}"
    print(f"| sample | command | first ms | warm ms (median of {n - 1}) | built-ins first ms | built-ins warm ms | warm / built-ins | note |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cmd, first, warm, mf, mw, note in rows:
        ratio = "-" if warm is None or not mw else f"{warm / mw:.2f}x"
        print(f"| {name} | `{cmd}` | {fmt(first)} | {fmt(warm)} | {fmt(mf)} | {fmt(mw)} | {ratio} | {note} |")

if __name__ == "__main__":
    main()
