#!/usr/bin/env python3
"""First and warm runs of every command in Microsoft's real engine (called by scripts/first-runs.sh; usage there).

For each command: SESSIONS fresh engine sessions (enginehost + dbgeng.dll under wine), each `.load ntsleuth.dll` then
the command RUNS times. enginehost frames every command with "@@end <hr> <elapsed ms>" (the time IDebugControl::Execute
took, the engine's own work around the command included). Prints per command the median over sessions of: the
`.load` (it starts .NET for the data-model provider), the first run, the median of the warm runs, and, with
NTSLEUTH_PROFILE=1 in the engine, the first run's engine-call lines (symbol, dm-symbol, ...).
"""
import os, re, statistics, subprocess, sys, tempfile

def winpath(p):
    return "Z:" + os.path.abspath(p).replace("/", "\\")

COMMANDS = [  # (sample, command) - the seven commands of issue 15 on the samples of scripts/make-samples.sh
    ("logon-hang-alpc-19041", "!alpcchain fffffa8073d3d770"),
    ("pool-leak-19041", "!leaktag Leak"),
    ("ndis-pending-nbls-19041", "!nblowners"),
    ("dpc-watchdog-19041", "!dpcblame"),
    ("fltmgr-frame-order-19041", "!frameorder"),
    ("dhcp-lease-7601", "!dhcptimer"),
    ("logon-hang-alpc-19041", "!workqueue"),
]

def session(wine, host, engine, out, sample, cmd, dll, runs, timeout_s, env):
    argv = wine + [host, "-engine", winpath(engine), "-y", winpath(os.path.join(out, "symbols", sample)),
                   "-z", winpath(os.path.join(out, "dumps", sample + ".dmp")), "-timeout", str(timeout_s * 1000),
                   "-c", f".load {dll}"] + sum((["-c", cmd] for _ in range(runs)), [])
    # Output goes to files, not pipes: when this is the first wine process, wine's own services inherit its handles
    # and keep a pipe open after it exits, so reading a pipe to its end can wait forever (docs/real-engine-lab.md).
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        rc = subprocess.run(argv, stdout=so, stderr=se, timeout=timeout_s + 30, env=env).returncode
        so.seek(0); se.seek(0)
        stdout = so.read().decode("utf-8", "replace"); stderr = se.read().decode("utf-8", "replace")
    times, bodies, cur = [], [], None
    for line in stdout.splitlines():
        if line.startswith("@@begin "):
            cur = []
        elif line.startswith("@@end "):
            times.append(float(line.split()[2]))
            bodies.append(cur or [])
            cur = None
        elif cur is not None:
            cur.append(line)
    if len(times) != runs + 1:
        raise RuntimeError(f"{sample} {cmd}: {len(times)} commands framed, exit {rc}\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return times, bodies

def main():
    root, out, host, engine, dll, sessions, runs, only = sys.argv[1:9]
    sessions, runs = int(sessions), int(runs)
    wine = sys.argv[sys.argv.index("--wine") + 1:sys.argv.index("--wine") + 2] if "--wine" in sys.argv else []
    env = dict(os.environ)
    profile = env.get("NTSLEUTH_PROFILE", "") not in ("", "0")
    rows = []
    for sample, cmd in COMMANDS:
        if only and only not in sample and only not in cmd:
            continue
        loads, firsts, warms, prof = [], [], [], []
        for _ in range(sessions):
            times, bodies = session(wine, host, engine, out, sample, cmd, dll, runs, 240, env)
            loads.append(times[0]); firsts.append(times[1])
            if runs > 1:
                warms.append(statistics.median(times[2:]))
            if profile:
                prof.append([l.strip() for l in bodies[1] if re.match(r"\[ntsleuth profile\] (!|jit:|  |\.NET start|symbol |dm-symbol|sym-index|symstate|name-check)", l.strip())])
        # The first use as a user pays it: .load (the .NET start) + the first run, summed in each session, then the median.
        both = sorted(l + f for l, f in zip(loads, firsts))
        rows.append((sample, cmd, statistics.median(loads), statistics.median(firsts), statistics.median(warms) if warms else None,
                     sorted(firsts), prof[len(prof) // 2] if prof else [], statistics.median(both), both))
        r = rows[-1]
        print(f"# {sample} {cmd}: load {r[2]:.0f} ms, first {r[3]:.0f} ms (all: {', '.join(f'{x:.0f}' for x in r[5])}), load+first {r[7]:.0f} ms (all: {', '.join(f'{x:.0f}' for x in r[8])}), warm {r[4] if r[4] is None else round(r[4], 1)} ms", file=sys.stderr, flush=True)
    print(f"| command (sample) | `.load` ms | first run ms (median of {sessions}) | `.load` + first run, same session (median) | warm run ms (median) | first runs, all sessions |")
    print("|---|---|---|---|---|---|")
    for sample, cmd, load, first, warm, allf, _, both, _all in rows:
        print(f"| `{cmd}` ({sample}) | {load:.0f} | {first:.0f} | {both:.0f} | {'-' if warm is None else f'{warm:.1f}'} | {', '.join(f'{x:.0f}' for x in allf)} |")
    if profile:
        for sample, cmd, *_rest, p, _both, _all in rows:
            print(f"\n{cmd} ({sample}), first run, engine calls (NTSLEUTH_PROFILE):")
            for l in p:
                print("    " + l)

if __name__ == "__main__":
    main()
