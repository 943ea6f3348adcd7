#!/usr/bin/env python3
"""README's sample output, produced from the samples so it cannot drift (issue 19, item 4).

README.md holds blocks like

    <!-- sample-output logon-hang-alpc-19041: !alpcchain fffffa8073d3d770 -->
    ...
    <!-- /sample-output -->

This script runs each block's command on that sample (scripts/make-samples.sh) in Microsoft's engine through
enginehost (under wine on Linux), exactly as a user types it after `.load`, and writes the output into the block;
with --check it changes nothing and exits 1 with a diff when README differs from what the samples print now.
--screenshot also runs scripts/triage on the sample folder and saves a headless-browser picture of its HTML report.
Use it through scripts/readme-output.sh, which finds the engine and builds the package.
"""
import argparse, difflib, json, os, re, shutil, subprocess, sys, tempfile

BLOCK = re.compile(r"(<!-- sample-output (?P<sample>[^:\s]+): (?P<cmd>[^\n]+?) -->\n)(?P<body>.*?)(<!-- /sample-output -->)", re.S)
END = re.compile(r"^@@end (?:0x)?([0-9a-fA-F]{8}) ([0-9.]+)\r?$", re.M)
# The engine's own asynchronous extension-gallery log lines are not the command's output (docs/real-engine-lab.md).
GALLERY_LOG = re.compile(r'(?:\r?\n)*<Log message="[^"\n]*" component="DbgEng" category="ExtensionGallery"[^\n]*?/>(?:\r?\n)*')


def strip_log(body):
    return GALLERY_LOG.sub(lambda m: "" if m.start() == 0 or m.end() == len(body) else "\n", body)


def parse(transcript):
    out, pos = {}, 0
    while True:
        b = transcript.find("@@begin ", pos)
        if b < 0:
            return out
        nl = transcript.find("\n", b)
        cmd = transcript[b + 8:nl].rstrip("\r")
        m = END.search(transcript, nl)
        if not m:
            raise RuntimeError(f"{cmd}: the engine did not finish it\n{transcript[-2000:]}")
        if int(m.group(1), 16) != 0:
            raise RuntimeError(f"{cmd}: engine returned 0x{m.group(1)}\n{transcript[nl + 1:m.start()]}")
        out[cmd] = strip_log(transcript[nl + 1:m.start()])
        pos = m.end()


# The engine's own symbol-loading chatter that lands inside a command's output (it depends on what was loaded before,
# not on the command): left out, with the blank lines around it squeezed.
ENGINE_NOISE = re.compile(r"^(?:Unable to load image |\*\*\* WARNING: Unable to verify |\s*</?(?:Activity|Log)\b)")


def normalise(text):
    lines = [l.rstrip() for l in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if not ENGINE_NOISE.match(l)]
    lines = [l for i, l in enumerate(lines) if l or i == 0 or lines[i - 1]]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def winpath(args, p):
    p = os.path.abspath(p)
    return p if os.name == "nt" else "Z:" + p.replace("/", "\\")


def run_sample(args, sample, commands):
    argv = ([args.wine] if args.wine else []) + [
        args.enginehost, "-engine", args.engine, "-z", winpath(args, os.path.join(args.samples, sample["dump"])),
        "-y", winpath(args, os.path.join(args.samples, sample["symbolPath"])), "-timeout", "300000",
        "-c", f".load {args.dll}"]
    for c in commands:
        argv += ["-c", c]
    env = dict(os.environ)
    for k in ("DOTNET_ROOT", "_NT_SYMBOL_PATH"):
        env.pop(k, None)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, timeout=600)
    text = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"{sample['name']}: enginehost exit {p.returncode}\n{text[-3000:]}")
    return parse(text)


def render(cmd, output):
    return f"```text\n> {cmd}\n{normalise(output)}\n```\n"


def screenshot(args):
    browser = next((b for b in [os.environ.get("NTSLEUTH_BROWSER"), shutil.which("chromium"), shutil.which("chromium-browser"),
                                shutil.which("google-chrome")] if b), None)
    if not browser:
        sys.exit("readme-output: no headless browser (scripts/setup-linux.sh installs chromium; or set NTSLEUTH_BROWSER)")
    with tempfile.TemporaryDirectory(prefix="ntsleuth-readme-triage-") as out:
        t = subprocess.run([os.path.join(args.root, "scripts", "triage"), args.samples, "-o", out, "--fail-on", "critical",
                            "--config", args.config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if t.returncode not in (0, 1):
            sys.exit(f"readme-output: triage failed (exit {t.returncode})\n{t.stdout.decode(errors='replace')[-3000:]}")
        png = os.path.join(args.root, "docs", "img", "triage-report.png")
        os.makedirs(os.path.dirname(png), exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                        f"--screenshot={png}", "--window-size=1500,820", "file://" + os.path.join(out, "report.html")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"readme-output: wrote {png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--enginehost", required=True)
    ap.add_argument("--engine", required=True, help="the engine folder, as the engine sees it")
    ap.add_argument("--dll", required=True, help="ntsleuth.dll, as the engine sees it")
    ap.add_argument("--wine", default="")
    ap.add_argument("--config", default="Release")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--screenshot", action="store_true")
    args = ap.parse_args()
    readme_path = os.path.join(args.root, "README.md")
    readme = open(readme_path, encoding="utf-8").read()
    blocks = list(BLOCK.finditer(readme))
    if not blocks:
        sys.exit("readme-output: README.md has no <!-- sample-output ... --> block")
    samples = {s["name"]: s for s in json.load(open(os.path.join(args.samples, "manifest.json"), encoding="utf-8"))["samples"]}
    wanted = {}
    for b in blocks:
        if b["sample"] not in samples:
            sys.exit(f"readme-output: README names sample {b['sample']}, which {args.samples}/manifest.json does not have")
        wanted.setdefault(b["sample"], []).append(b["cmd"])
    outputs = {}
    for name, cmds in wanted.items():
        got = run_sample(args, samples[name], list(dict.fromkeys(cmds)))
        for c in cmds:
            if c not in got:
                sys.exit(f"readme-output: {name}: no output for {c}")
            outputs[(name, c)] = got[c]
    new = BLOCK.sub(lambda b: b.group(1) + render(b["cmd"], outputs[(b["sample"], b["cmd"])]) + b.group(5), readme)
    if args.check:
        if new != readme:
            sys.stdout.writelines(difflib.unified_diff(readme.splitlines(True), new.splitlines(True), "README.md", "samples now"))
            print("\nreadme-output: README.md differs from what the samples print now; run scripts/readme-output.sh SAMPLES")
            return 1
        print(f"readme-output: {len(blocks)} block(s) match the samples")
    elif new != readme:
        with open(readme_path, "w", encoding="utf-8") as f:
            f.write(new)
        print(f"readme-output: updated {len(blocks)} block(s) in README.md")
    else:
        print(f"readme-output: {len(blocks)} block(s) already up to date")
    if args.screenshot:
        screenshot(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
