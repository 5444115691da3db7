"""Run Lava commands back to back, signal a third of them at a random moment, and count what is left.

    .venv/bin/python tools/soak.py --runs 200 --seed 0 --json soak.json

Runs alternate between ``simulate --backend lava`` and ``learn --backend lava`` on the shipped
digits model (``--limit`` samples), each in its own process group. A third of them (``--fraction``)
get SIGTERM, SIGHUP or SIGINT (half of the SIGINTs to the whole group, as a terminal's Ctrl-C) at a
random moment of Lava's life: a delay after its first process appears, drawn uniformly up to the
median time Lava's processes lived in the unsignalled runs of that command so far (start-up,
stepping and shutdown alike). For each run it records the exit code and, for a signalled run, how
long the command took to end after the signal. A run is bad when

    a signalled run does not exit with 130, within 2 s, with ``error: interrupted`` as its last
    stderr line (but for a late one: signalled after Lava's processes were gone, it may have printed
    its result and ignored the signal, exit 0); an unsignalled one does not exit with 0; a process
    of its group is still alive 2 s after it ended (then killed); or it left a shared-memory segment
    (one its main process mapped during the run is still in /dev/shm, or Python's resource tracker
    reported leaked ones).

Printed: runs, signals sent (by signal and target), late ones, the exit-code histogram, bad runs
(with their command, signal, delay and stderr tail), processes and segments left, and the machine's
MemAvailable before and after. Exit code 1 if any run was bad.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__:  # imported as tools.soak
    from .process_groups import AS_FROM_A_TERMINAL, group_members, lava_started, segments_mapped_by
else:  # run as a script: process_groups.py is a sibling in the script's folder
    from process_groups import AS_FROM_A_TERMINAL, group_members, lava_started, segments_mapped_by

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 2.0
RUN_TIMEOUT_S = 300.0
COMMANDS = ("simulate", "learn")
SIGNALS = {
    "SIGTERM": (signal.SIGTERM, "main"),
    "SIGHUP": (signal.SIGHUP, "main"),
    "SIGINT": (signal.SIGINT, "main"),
    "Ctrl-C": (signal.SIGINT, "group"),
}


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return -1


def command(name: str, limit: int, out: Path) -> list[str]:
    run = [sys.executable, "-c", AS_FROM_A_TERMINAL + "from neurocompile.cli import main; main()"]
    if name == "simulate":
        return run + [
            "simulate",
            "models/digits_mlp.pt",
            "--backend",
            "lava",
            "--data",
            "digits",
            "--limit",
            str(limit),
        ]
    return (
        run
        + ["learn", "models/digits_mlp.pt", "--rule", "ottt", "--backend", "lava", "--limit", str(limit)]
        + [
            "-o",
            str(out),
        ]
    )


def one_run(argv: list[str], sig: str | None, delay_s: float) -> dict:
    """Run ``argv``; ``delay_s`` after Lava's first process appears, send ``sig`` (if any)."""
    proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()

    def read() -> None:
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    started = time.monotonic()
    lava_at = lava_end = sent_at = None
    largest, polls, segments = 0, 0, set()
    while proc.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
        now = time.monotonic()
        polls += 1
        if polls % 4 == 0:  # the segments this run made (other runs on the machine make their own)
            segments |= segments_mapped_by(proc.pid)
        size = len(group_members(proc.pid))
        largest = max(largest, size)
        if lava_at is None and lava_started(proc.pid):
            lava_at = now
        elif lava_at is not None and lava_end is None and largest > 2 and size <= 2:
            lava_end = now  # Lava's workers are gone: the command and the resource tracker are left
        if sig and lava_at is not None and sent_at is None and now - lava_at >= delay_s:
            number, target = SIGNALS[sig]
            (os.killpg if target == "group" else os.kill)(proc.pid, number)
            sent_at = now
        time.sleep(0.005)
    hung = proc.poll() is None
    ended = time.monotonic()
    while group_members(proc.pid) and time.monotonic() - ended < DEADLINE_S:
        time.sleep(0.01)
    left = group_members(proc.pid)
    if left or hung:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    text = err.decode(errors="replace").strip()
    return {
        "code": "hang" if hung else proc.returncode,
        "signalled": sent_at is not None,
        "late": sent_at is not None and lava_end is not None and sent_at > lava_end,
        "took_s": None if sent_at is None else ended - sent_at,
        "lava_s": None if lava_at is None or lava_end is None else lava_end - lava_at,
        "last_line": text.splitlines()[-1] if text else "",
        "tail": text[-600:],
        "processes_left": len(left),
        "segments_made": len(segments),
        "segments_left": sorted(name for name in segments if os.path.exists(f"/dev/shm/{name}")),
        "tracker_warning": "leaked shared_memory" in text,
    }


def bad(result: dict) -> str:
    """Why a run is bad, or ''."""
    if result["processes_left"]:
        return f"{result['processes_left']} processes left"
    if result["segments_left"]:
        return f"{len(result['segments_left'])} segments left"
    if result["tracker_warning"]:
        return "Python's resource tracker unlinked leaked segments"
    if not result["signalled"]:
        return "" if result["code"] == 0 else f"exit {result['code']} unsignalled"
    if result["code"] == 0 and result["late"]:
        return ""  # the command had finished: the outcome was printed, the signal ignored
    if result["code"] != 130:
        return f"exit {result['code']}"
    if result["took_s"] > DEADLINE_S:
        return f"ended {result['took_s']:.2f} s after the signal"
    if result["last_line"] != "error: interrupted":
        return f"last line {result['last_line']!r}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=1 / 3, help="share of runs that get a signal")
    parser.add_argument("--limit", type=int, default=2, help="samples per run")
    parser.add_argument("--json", type=Path, help="also write every run's record here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    mem_before = mem_available_kib()
    lifetimes = collections.defaultdict(list)  # of unsignalled runs; each command's first run is one
    out = Path(f"/tmp/soak-{os.getpid()}.ncp")
    records, sent = [], collections.Counter()
    t0 = time.monotonic()
    for i in range(args.runs):
        name = COMMANDS[i % len(COMMANDS)]
        draw = rng.random() < args.fraction and bool(lifetimes[name])
        sig = rng.choice(["SIGTERM", "SIGHUP", "SIGINT"]) if draw else None
        if sig == "SIGINT" and rng.random() < 0.5:
            sig = "Ctrl-C"
        delay = rng.uniform(0.0, statistics.median(lifetimes[name])) if sig else 0.0
        result = one_run(command(name, args.limit, out), sig, delay)
        if not result["signalled"] and result["lava_s"]:
            lifetimes[name].append(result["lava_s"])
        result.update(run=i, command=name, signal=sig if result["signalled"] else None, delay_s=round(delay, 3))
        result["bad"] = bad(result)
        sent[result["signal"]] += result["signalled"]
        records.append(result)
        took = f", ended {result['took_s']:.2f} s after" if result["took_s"] is not None else ""
        moment = f"{result['signal']} +{delay:.2f} s" if result["signal"] else "-"
        print(f"run {i}: {name} {moment}: exit {result['code']}{took} {result['bad']}")
        sys.stdout.flush()
    out.unlink(missing_ok=True)
    mem_after = mem_available_kib()

    codes = collections.Counter(str(r["code"]) for r in records)
    took = sorted(r["took_s"] for r in records if r["took_s"] is not None)
    bad_runs = [r for r in records if r["bad"]]
    print(f"\nruns: {len(records)} in {time.monotonic() - t0:.0f} s")
    print(
        f"signals sent: {sum(sent.values())} ({', '.join(f'{k} {v}' for k, v in sorted(sent.items(), key=str) if k)})"
    )
    print(f"late signals (after Lava's processes were gone): {sum(r['late'] for r in records)}")
    print(f"exit codes: {dict(sorted(codes.items()))}")
    if took:
        print(f"signal to exit: median {took[len(took) // 2]:.2f} s, max {took[-1]:.2f} s")
    print(f"processes left: {sum(r['processes_left'] for r in records)}")
    made, left = sum(r["segments_made"] for r in records), sum(len(r["segments_left"]) for r in records)
    print(f"/dev/shm segments: {made} made (seen mapped), {left} left")
    print(f"MemAvailable: {mem_before / 1024:.0f} MiB before, {mem_after / 1024:.0f} MiB after")
    print(f"bad runs: {len(bad_runs)}")
    for r in bad_runs:
        print(f"  run {r['run']}: {r['command']} {r['signal']} +{r['delay_s']} s: {r['bad']}\n    {r['tail'][-300:]!r}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 1 if bad_runs else 0


if __name__ == "__main__":
    sys.exit(main())
