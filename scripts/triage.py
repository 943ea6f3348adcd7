#!/usr/bin/env python3
"""NtSleuthExt lab runner (issue 19): triage a folder (or list) of dumps, one engine process per dump, in parallel.

    triage.py <folder|dump>... -o OUTDIR [-j N] [--timeout S] [--fail-on SEVERITY] [--sympath P]
              (--enginehost EXE --engine-dir DIR [--wine WINE] | --debugger cdb.exe|kd.exe) --extension ntsleuth.dll

Use it through scripts/triage (Linux: the real dbgeng.dll under wine) or scripts/triage.ps1 (Windows: cdb/kd).
Each dump runs scripts/ntsleuth-triage.txt, which picks the commands that apply from the target and writes each
command's JSON document (docs/json.md) to OUTDIR/dumps/<id>/<command>.json. Outputs:
  OUTDIR/triage.jsonl   one record per dump (identity, build, bug check, each command's JSON, findings, errors)
  OUTDIR/report.md, OUTDIR/report.html   dumps x findings (the HTML table sorts on a header click)
Resumable: a dump with an "ok" record in triage.jsonl is skipped; one with an error record is tried again.
Exit status: 0; 1 when a finding at or above --fail-on appears; 2 when a dump could not be triaged; 3 usage.
Python 3 standard library only.
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import html
import json
import os
import re
import signal
import subprocess
import sys
import time

SEVERITIES = ["info", "warning", "error", "critical"]
RANK = {s: i for i, s in enumerate(SEVERITIES)}
DUMP_SUFFIXES = (".dmp", ".mdmp", ".hdmp")
RECORD_SCHEMA = "ntsleuth.triage-record"
RECORD_VERSION = 1


def rank(sev):
    return RANK.get(sev, -1)


def max_severity(sevs):
    best = None
    for s in sevs:
        if rank(s) > rank(best):
            best = s
    return best or "none"


# ---------------------------------------------------------------------------------------------------------- inputs
def find_dumps(inputs, sympath):
    """[(id, dump path, symbol path or None)] from folders (manifest.json when present, else *.dmp) and files."""
    found, seen = [], set()

    def add(path, sym):
        path = os.path.abspath(path)
        if path in seen:
            return
        seen.add(path)
        found.append((path, sym))

    for inp in inputs:
        if os.path.isdir(inp):
            manifest = os.path.join(inp, "manifest.json")
            listed = set()
            if os.path.isfile(manifest):
                with open(manifest, encoding="utf-8") as f:
                    for s in json.load(f).get("samples", []):
                        dump = os.path.join(inp, s["dump"])
                        listed.add(os.path.abspath(dump))
                        add(dump, sympath or (os.path.join(inp, s["symbolPath"]) if s.get("symbolPath") else None))
            for root, dirs, files in os.walk(inp):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    p = os.path.abspath(os.path.join(root, name))
                    if name.lower().endswith(DUMP_SUFFIXES) and p not in listed:
                        add(p, sympath)
        elif os.path.isfile(inp):
            add(inp, sympath)
        else:
            raise SystemExit(f"triage: no such dump or folder: {inp}")
    out, ids = [], set()
    for path, sym in found:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(os.path.basename(path))[0]) or "dump"
        ident = base
        if ident in ids:
            ident = f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
        ids.add(ident)
        out.append((ident, path, sym or os.environ.get("_NT_SYMBOL_PATH")))
    return out


# ---------------------------------------------------------------------------------------------------------- engine
class Engine:
    def __init__(self, args):
        self.args = args
        self.windows = os.name == "nt"

    def path(self, p):
        """A path as the engine process sees it (Z:\\... under wine)."""
        p = os.path.abspath(p)
        if self.args.debugger or self.windows:
            return p
        return "Z:" + p.replace("/", "\\")

    def sympath(self, sym, scratch):
        if not sym:
            # Never let the engine search a big folder (it spins for minutes): an empty one of our own.
            os.makedirs(scratch, exist_ok=True)
            return self.path(scratch)
        parts = []
        for part in sym.split(";"):
            parts.append(self.path(part) if os.path.isdir(part) else part)
        return ";".join(parts)

    def command(self, dump, sym, outdir, scratch):
        script = self.path(self.args.script)
        ext = self.path(self.args.extension)
        cmds = [f".load {ext}", "vertarget", ".bugcheck", f"$$>a<{script} {self.path(outdir)}"]
        if self.args.debugger:
            cf = os.path.join(outdir, "commands.txt")
            with open(cf, "w", encoding="utf-8") as f:
                f.write("\n".join(cmds + ["q"]) + "\n")
            return [self.args.debugger, "-z", dump, "-y", self.sympath(sym, scratch), "-cf", cf]
        argv = ([self.args.wine] if self.args.wine else []) + [
            self.args.enginehost, "-engine", self.path(self.args.engine_dir), "-z", self.path(dump),
            "-y", self.sympath(sym, scratch), "-timeout", str(int(self.args.timeout * 1000))]
        for c in cmds:
            argv += ["-c", c]
        return argv

    def env(self):
        env = dict(os.environ)
        if not self.args.debugger:
            for k in ("DOTNET_ROOT", "_NT_SYMBOL_PATH"):
                env.pop(k, None)
        return env


def run_one(engine, ident, dump, sym, outroot, timeout):
    outdir = os.path.join(outroot, "dumps", ident)
    os.makedirs(outdir, exist_ok=True)
    for name in os.listdir(outdir):
        if name.endswith(".json"):
            os.remove(os.path.join(outdir, name))
    rec = {"schema": RECORD_SCHEMA, "version": RECORD_VERSION, "id": ident, "dump": dump, "symbolPath": sym,
           "status": "ok", "kind": None, "build": None, "buildLab": None, "bugCheck": None, "ran": [], "commands": {},
           "findings": [], "severity": "none", "errors": []}
    try:
        st = os.stat(dump)
        rec["bytes"], rec["modified"] = st.st_size, datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).isoformat()
    except OSError as e:
        rec.update(status="error", errors=[f"cannot read the dump: {e}"])
        return rec
    t0 = time.time()
    log_path = os.path.join(outdir, "engine.log")
    try:
        argv = engine.command(dump, sym, outdir, os.path.join(outroot, ".nosyms"))
        with open(log_path, "wb") as log:
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=engine.env(), start_new_session=(os.name != "nt"))
            try:
                rc = p.wait(timeout=timeout + 15)
            except subprocess.TimeoutExpired:
                kill(p)
                rc = None
    except OSError as e:
        rec.update(status="error", errors=[f"cannot start the engine: {e}"], seconds=round(time.time() - t0, 2))
        return rec
    rec["seconds"] = round(time.time() - t0, 2)
    rec["engineExit"] = rc
    with open(log_path, "rb") as f:
        text = f.read().decode("utf-8", "replace").replace("\r", "")
    parse_log(rec, text)
    if rc is None or "@@fatal timeout" in text:
        rec["errors"].append(f"timed out after {timeout} s")
    elif rc == 4 or "@@fatal OpenDumpFile" in text or "@@fatal WaitForEvent" in text or "Could not open dump file" in text:
        rec["errors"].append("the engine could not open the dump")
    elif rc not in (0, None) and not engine.args.debugger:
        rec["errors"].append(f"enginehost exit code {rc}")
    if "@@ntsleuth error" in text:
        rec["errors"] += [l.split("@@ntsleuth error", 1)[1].strip() for l in text.splitlines() if "@@ntsleuth error" in l]
    for name in rec["ran"]:
        path = os.path.join(outdir, name + ".json")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            rec["errors"].append(f"!{name}: no JSON document ({e.__class__.__name__}: {e})")
            continue
        rec["commands"][name] = doc
        if doc.get("status") not in ("ok", "notApplicable"):
            err = doc.get("error") or {}
            rec["errors"].append(f"!{name}: {doc.get('status')}: {err.get('message', '')}")
        for f in doc.get("findings", []):
            rec["findings"].append(dict(f, command=name))
    if "@@ntsleuth done" not in text:
        rec["errors"].append("the triage script did not finish (see engine.log)")
    # A dump is triaged when the script ran to its end; a command that failed on it is an error inside the record.
    rec["status"] = "ok" if "@@ntsleuth done" in text and not any(
        e.startswith(("timed out", "the engine could not")) for e in rec["errors"]) else "error"
    rec["severity"] = max_severity(f["severity"] for f in rec["findings"])
    rec["log"] = os.path.relpath(log_path, outroot)
    return rec


def kill(p):
    try:
        if os.name != "nt":
            os.killpg(p.pid, signal.SIGKILL)
        else:
            p.kill()
    except OSError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def parse_log(rec, text):
    m = re.search(r"@@ntsleuth kind (\w+)", text)
    rec["kind"] = m.group(1) if m else None
    m = re.search(r"Version (\d{4,5})\b", text)
    rec["build"] = m.group(1) if m else None
    m = re.search(r"Built by:\s*(\S+)|Edition build lab:\s*(\S+)", text)
    rec["buildLab"] = (m.group(1) or m.group(2)) if m else None
    m = re.search(r"@@ntsleuth bugcheck (0x[0-9a-fA-F]+)", text)
    if m and int(m.group(1), 16) != 0:
        args = re.search(r"Bugcheck code [0-9a-fA-F]+\s*\nArguments ([0-9a-fA-F` ]+)", text)
        rec["bugCheck"] = {"code": m.group(1).lower(),
                           "arguments": ["0x" + a.replace("`", "").lstrip("0").lower() if a.strip("0`") else "0x0"
                                         for a in args.group(1).split()] if args else []}
    rec["ran"] = re.findall(r"@@ntsleuth run (\w+)", text)


# ---------------------------------------------------------------------------------------------------------- records
def load_records(path):
    recs = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line cut by a killed run: that dump is simply done again
                recs[r["id"]] = r
    return recs


def write_records(path, recs, order):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for ident in order:
            if ident in recs:
                f.write(json.dumps(recs[ident], ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class Progress:
    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.errors, self.t0, self.stream = total, 0, 0, time.time(), stream
        self.tty = stream.isatty()

    def step(self, rec):
        self.done += 1
        self.errors += rec["status"] != "ok"
        el = time.time() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0
        width = 30
        fill = int(width * self.done / max(1, self.total))
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} dumps, {self.errors} error(s), "
                f"elapsed {fmt_s(el)}, ETA {fmt_s(eta)}  {rec['id']}: {rec['status']} {rec['severity']}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def fmt_s(s):
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------------------------------------- report
def command_columns(recs):
    cols = []
    for r in recs:
        for c in list(r.get("ran", [])) + list(r.get("commands", {}).keys()):
            if c not in cols:
                cols.append(c)
    return cols


def write_markdown(path, recs, fail_on):
    cols = command_columns(recs)
    lines = ["# NtSleuthExt triage report", "",
             f"{len(recs)} dump(s), {sum(r['status'] != 'ok' for r in recs)} not triaged, "
             f"{sum(len(r['findings']) for r in recs)} finding(s); gate: --fail-on {fail_on}.", "",
             "| dump | build | bug check | severity | " + " | ".join("!" + c for c in cols) + " | errors |",
             "|---|---|---|---|" + "---|" * len(cols) + "---|"]

    def cell(s):
        # Target strings (driver, process names) must not become markup in a Markdown renderer.
        return html.escape(str(s), quote=False).replace("|", "\\|").replace("\n", " ")

    for r in sorted(recs, key=lambda r: (-rank(r["severity"]), r["id"])):
        row = [cell(r["id"]), cell(r.get("build") or ""), cell((r.get("bugCheck") or {}).get("code", "")), r["severity"]]
        for c in cols:
            fs = [f for f in r["findings"] if f["command"] == c]
            if fs:
                row.append("<br>".join(cell(f"{f['severity']}: {f['title']}") for f in fs))
            elif c in r.get("commands", {}):
                row.append(cell(r["commands"][c].get("status", "")))
            else:
                row.append("")
        row.append(cell("; ".join(r["errors"])))
        lines.append("| " + " | ".join(row) + " |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>NtSleuthExt triage report</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}
th,td{border:1px solid #bbb;padding:4px 6px;vertical-align:top;font-size:13px}th{cursor:pointer;background:#eee}
.critical{background:#f4b6b6}.error{background:#fbd7a8}.warning{background:#fff1a8}.info{background:#e4f0fb}
.failed{background:#ddd}pre{background:#f6f6f6;padding:6px;max-height:30em;overflow:auto;font-size:12px}
a{color:#034}
</style></head><body>
"""

HTML_SCRIPT = """<script>
// Sort the table on a header click (numeric when the cells carry data-sort numbers); a second click reverses.
// report.html?sort=<column> (or #sort=<column>, e.g. ?sort=build or ?sort=!leaktag) opens it sorted by that column.
function ntsSort(th, col, dir) {
  var body = document.querySelector('#dumps tbody');
  var rows = Array.prototype.slice.call(body.rows);
  th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  rows.sort(function (a, b) {
    var x = a.cells[col].dataset.sort || a.cells[col].textContent, y = b.cells[col].dataset.sort || b.cells[col].textContent;
    var nx = parseFloat(x), ny = parseFloat(y);
    return dir * (!isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y));
  });
  rows.forEach(function (r) { body.appendChild(r); });
  document.body.dataset.sortedBy = th.textContent + ' ' + th.dataset.dir;
}
var ntsHeads = document.querySelectorAll('#dumps th');
ntsHeads.forEach(function (th, col) {
  th.addEventListener('click', function () { ntsSort(th, col, th.dataset.dir === 'asc' ? -1 : 1); });
});
var ntsWanted = /[?&#]sort=([^&#]+)/.exec(location.search + location.hash);
if (ntsWanted) {
  var name = decodeURIComponent(ntsWanted[1]).replace(/^!/, '');
  ntsHeads.forEach(function (th, col) { if (th.textContent.replace(/^!/, '') === name) ntsSort(th, col, 1); });
}
document.body.dataset.ready = '1';
</script>
"""


def write_html(path, recs, fail_on):
    e = html.escape
    cols = command_columns(recs)
    out = [HTML_HEAD, "<h1>NtSleuthExt triage report</h1>",
           f"<p>{len(recs)} dump(s), {sum(r['status'] != 'ok' for r in recs)} not triaged, "
           f"{sum(len(r['findings']) for r in recs)} finding(s); gate: <code>--fail-on {e(fail_on)}</code>. "
           f"Generated {e(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))}. "
           "Click a column header to sort (or open <code>report.html?sort=&lt;column&gt;</code>).</p>",
           '<table id="dumps"><thead><tr><th>dump</th><th>status</th><th>build</th><th>bug check</th><th>severity</th>'
           + "".join(f"<th>!{e(c)}</th>" for c in cols) + "<th>errors</th></tr></thead><tbody>"]
    ordered = sorted(recs, key=lambda r: (-rank(r["severity"]), r["id"]))
    for i, r in enumerate(ordered):
        rid = f"d{i}"
        sev = r["severity"]
        cells = [f'<td><a href="#{rid}">{e(r["id"])}</a></td>',
                 f'<td class="{"failed" if r["status"] != "ok" else ""}">{e(r["status"])}</td>',
                 f'<td>{e(str(r.get("build") or ""))}</td>',
                 f'<td>{e((r.get("bugCheck") or {}).get("code", ""))}</td>',
                 f'<td class="{e(sev)}" data-sort="{rank(sev) + 1}">{e(sev)}</td>']
        for c in cols:
            fs = [(j, f) for j, f in enumerate(r["findings"]) if f["command"] == c]
            if fs:
                top = max_severity(f["severity"] for _, f in fs)
                links = "<br>".join(f'<a href="#{rid}-f{j}">{e(f["severity"])}: {e(f["title"])}</a>' for j, f in fs)
                cells.append(f'<td class="{e(top)}" data-sort="{rank(top) + 1}">{links}</td>')
            elif c in r.get("commands", {}):
                cells.append(f'<td data-sort="0"><a href="#{rid}-{e(c)}">{e(r["commands"][c].get("status", ""))}</a></td>')
            else:
                cells.append('<td data-sort="-1"></td>')
        cells.append(f'<td>{"<br>".join(e(x) for x in r["errors"])}</td>')
        out.append(f'<tr class="row">{"".join(cells)}</tr>')
    out.append("</tbody></table><h2>Details</h2>")
    for i, r in enumerate(ordered):
        rid = f"d{i}"
        out.append(f'<section id="{rid}"><h3>{e(r["id"])}</h3><p>{e(r["dump"])} &middot; {e(r.get("kind") or "?")} '
                   f'&middot; build {e(str(r.get("build") or "?"))} {e(r.get("buildLab") or "")} &middot; '
                   f'bug check {e(json.dumps(r.get("bugCheck")))} &middot; {e(str(r.get("seconds", "")))} s &middot; '
                   f'log <code>{e(r.get("log") or "")}</code></p>')
        if r["errors"]:
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in r["errors"]) + "</ul>")
        if r["findings"]:
            out.append("<ol>")
            for j, f in enumerate(r["findings"]):
                out.append(f'<li id="{rid}-f{j}" class="{e(f["severity"])}"><b>{e(f["severity"])}</b> !{e(f["command"])}: '
                           f'{e(f["title"])} (<a href="#{rid}-{e(f["command"])}">{e(f["detail"])}</a> in the document)</li>')
            out.append("</ol>")
        for c, doc in r.get("commands", {}).items():
            out.append(f'<details id="{rid}-{e(c)}"><summary>!{e(c)} {e(doc.get("arguments", ""))}: '
                       f'{e(doc.get("status", ""))}, severity {e(doc.get("severity", ""))}</summary>'
                       f"<pre>{e(json.dumps(doc, indent=2, ensure_ascii=False))}</pre></details>")
        out.append("</section>")
    out.append(HTML_SCRIPT + "</body></html>\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="triage", description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="folders of dumps (a sample folder's manifest.json names symbol paths) or dump files")
    ap.add_argument("-o", "--outdir", required=True)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per dump (default 600)")
    ap.add_argument("--fail-on", default="none", choices=SEVERITIES + ["none"],
                    help="exit 1 when a finding at or above this severity appears (default: none)")
    ap.add_argument("--sympath", help="symbol path for every dump (default: the manifest's, else _NT_SYMBOL_PATH)")
    ap.add_argument("--extension", help="ntsleuth.dll")
    ap.add_argument("--script", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ntsleuth-triage.txt"))
    ap.add_argument("--enginehost", help="enginehost.exe (Linux: the real dbgeng.dll under wine)")
    ap.add_argument("--engine-dir", help="folder with dbgeng.dll for enginehost")
    ap.add_argument("--wine", help="wine64 to run enginehost with")
    ap.add_argument("--debugger", help="cdb.exe or kd.exe (Windows)")
    ap.add_argument("--report-only", action="store_true", help="rebuild the reports from OUTDIR/triage.jsonl")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error("-j must be at least 1")
    os.makedirs(a.outdir, exist_ok=True)
    jsonl = os.path.join(a.outdir, "triage.jsonl")
    dumps = find_dumps(a.inputs, a.sympath)
    recs = load_records(jsonl)
    order = [d[0] for d in dumps] + [k for k in recs if k not in {d[0] for d in dumps}]
    if not a.report_only:
        if not a.extension or not (a.debugger or (a.enginehost and a.engine_dir)):
            ap.error("needs --extension and either --debugger (cdb/kd) or --enginehost with --engine-dir")
        engine = Engine(a)
        todo = [d for d in dumps if recs.get(d[0], {}).get("status") != "ok"]
        skipped = len(dumps) - len(todo)
        sys.stderr.write(f"triage: {len(dumps)} dump(s), {skipped} already done, {len(todo)} to run with {a.jobs} worker(s)\n")
        progress = Progress(len(todo))
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futs = {pool.submit(run_one, engine, i, p, s, a.outdir, a.timeout): i for i, p, s in todo}
            for fut in concurrent.futures.as_completed(futs):
                ident = futs[fut]
                try:
                    rec = fut.result()
                except Exception as ex:  # a runner bug must not stop the other dumps
                    rec = {"schema": RECORD_SCHEMA, "version": RECORD_VERSION, "id": ident, "status": "error",
                           "errors": [f"runner: {ex.__class__.__name__}: {ex}"], "findings": [], "severity": "none",
                           "commands": {}, "ran": [], "dump": next(p for i, p, s in todo if i == ident)}
                rec["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                recs[ident] = rec
                with open(jsonl, "a", encoding="utf-8") as f:  # appended at once: a killed run keeps what is done
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                progress.step(rec)
        write_records(jsonl, recs, order)  # one record per dump (a retried dump's last record wins)
    # The report covers the inputs of this run (triage.jsonl keeps the records of earlier inputs too).
    selected = [recs[d[0]] for d in dumps if d[0] in recs]
    write_markdown(os.path.join(a.outdir, "report.md"), selected, a.fail_on)
    write_html(os.path.join(a.outdir, "report.html"), selected, a.fail_on)
    failed = [r["id"] for r in selected if r["status"] != "ok"]
    gated = [] if a.fail_on == "none" else [r["id"] for r in selected if rank(r["severity"]) >= rank(a.fail_on)]
    sys.stderr.write(f"triage: {len(selected)} dump(s): {len(failed)} not triaged, {len(gated)} with a finding at or above "
                     f"'{a.fail_on}'. Report: {os.path.abspath(os.path.join(a.outdir, 'report.html'))}\n")
    return 2 if failed else 1 if gated else 0


if __name__ == "__main__":
    sys.exit(main())
