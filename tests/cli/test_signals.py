"""Signals at every moment of a Lava run (issues 23 and 27): SIGTERM, SIGHUP and SIGINT (to the main
process; SIGINT also to the whole process group, as a terminal's Ctrl-C) at start-up, while stepping
and at shutdown, for `simulate --backend lava` and `learn --backend lava`.

Each run must end within ``DEADLINE_S`` of the signal with exit code 130 and ``error: interrupted``
as its last stderr line, leaving no process in its group and no shared-memory segment.

The moments, seen from outside (the command has no test hook):

* start-up: Lava's first process exists (the resource tracker its shared-memory server starts):
  Lava is forking its processes and building its channels;
* stepping: the progress bar shows a count between 1 and its total less one;
* shutdown: the group shrinks for the first time after Lava's processes existed (the run is over
  and the session stops them).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools.process_groups import AS_FROM_A_TERMINAL, group_members, lava_started, segments_mapped_by

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 2.0
PROGRESS = re.compile(r"\|\s*(\d+)/(\d+) \[")


def command(name: str, tmp_path: Path, ignoring: str = "") -> list[str]:
    """The command line of a small Lava run; ``ignoring`` names a signal it starts with ignored."""
    ignore = f"signal.signal(signal.{ignoring}, signal.SIG_IGN); " if ignoring else ""
    run = [sys.executable, "-c", AS_FROM_A_TERMINAL + ignore + "from neurocompile.cli import main; main()"]
    if name == "simulate":
        return run + ["simulate", "models/digits_mlp.pt", "--backend", "lava", "--data", "digits", "--limit", "3"]
    out = str(tmp_path / "learned.ncp")
    return run + ["learn", "models/digits_mlp.pt", "--rule", "ottt", "--backend", "lava", "--limit", "2", "-o", out]


class Run:
    """The command in its own process group (session), its stderr read as it comes, and the shared-memory
    segments its main process maps (watched: other runs on this machine make and unlink their own)."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(
            argv, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.err = b""
        self.segments: set[str] = set()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.reader.start()
        self.watcher.start()

    def _read(self) -> None:
        while chunk := self.proc.stderr.read1(4096):
            self.err += chunk

    def _watch(self) -> None:
        while self.proc.poll() is None:
            self.segments |= segments_mapped_by(self.proc.pid)
            time.sleep(0.02)

    def segments_left(self) -> set[str]:
        self.watcher.join(timeout=5)
        return {name for name in self.segments if os.path.exists(f"/dev/shm/{name}")}

    def wait_for(self, condition, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.proc.poll() is None, f"the command ended first:\n{self.err.decode()[-2000:]}"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.005)

    def stepping(self) -> bool:
        counts = PROGRESS.findall(self.err.decode(errors="replace"))
        return any(0 < int(done) < int(total) for done, total in counts)

    def kill(self) -> None:
        if group_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):  # the group may end meanwhile
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def wait_for_moment(run: Run, moment: str) -> None:
    pid = run.proc.pid
    if moment == "start-up":
        run.wait_for(lambda: lava_started(pid))
    elif moment == "stepping":
        run.wait_for(run.stepping)
    else:  # shutdown
        largest = [0]

        def shrunk() -> bool:
            size = len(group_members(pid))
            largest[0] = max(largest[0], size)
            return largest[0] >= 3 and size < largest[0]

        run.wait_for(shrunk)


SIGNALS = {
    "SIGTERM": lambda pid: os.kill(pid, signal.SIGTERM),
    "SIGHUP": lambda pid: os.kill(pid, signal.SIGHUP),
    "Ctrl-C": lambda pid: os.killpg(pid, signal.SIGINT),  # SIGINT to the whole group
    "SIGINT": lambda pid: os.kill(pid, signal.SIGINT),  # to the main process only
}
MATRIX = [
    (name, sig, moment)
    for name in ("simulate", "learn")
    for sig in ("SIGTERM", "SIGHUP", "Ctrl-C")
    for moment in ("start-up", "stepping", "shutdown")
]
# SIGINT to the main process alone differs from Ctrl-C only in that Lava's processes do not get it
MATRIX += [("simulate", "SIGINT", "start-up"), ("learn", "SIGINT", "stepping")]


def signalled_run(name: str, sig: str, moment: str, tmp_path: Path) -> tuple[Run, int, float, list] | None:
    """The command signalled at ``moment``: ``(run, exit code, seconds from signal to exit, processes left)``,
    or None when it ended before the signal could be sent (a loaded machine saw the moment late)."""
    run = Run(command(name, tmp_path))
    try:
        wait_for_moment(run, moment)
        sent = time.monotonic()
        try:
            SIGNALS[sig](run.proc.pid)
        except ProcessLookupError:
            return None
        code = run.proc.wait(timeout=60)
        took = time.monotonic() - sent
        while group_members(run.proc.pid) and time.monotonic() - sent < DEADLINE_S:
            time.sleep(0.01)
        left = group_members(run.proc.pid)
        run.reader.join(timeout=5)
    finally:
        run.kill()
    return run, code, took, left


@pytest.mark.parametrize("name, sig, moment", MATRIX, ids=["-".join(cell) for cell in MATRIX])
def test_a_signal_ends_a_lava_run_at_once_and_leaves_nothing(name, sig, moment, tmp_path):
    for _attempt in range(3):
        signalled = signalled_run(name, sig, moment, tmp_path)
        if signalled is not None:
            break
    assert signalled is not None, f"the run ended before the signal, 3 times: the {moment} moment came too late"
    run, code, took, left = signalled
    err = run.err.decode(errors="replace")
    print(f"{name} {sig} at {moment}: exit {code} {took:.2f} s after the signal")
    assert code == 130, err[-2000:]
    assert took < DEADLINE_S, f"exit {took:.2f} s after the signal"
    assert err.strip().splitlines()[-1] == "error: interrupted", err[-2000:]
    assert left == [], "processes left in the group"
    assert run.segments_left() == set()
    assert run.segments or moment == "start-up", "no segment seen: the watch is broken"


@pytest.mark.parametrize(
    "sig, moment, ignoring",
    [("Ctrl-C", "start-up", "SIGINT"), ("SIGHUP", "stepping", "SIGHUP")],
    ids=["background-job-Ctrl-C", "nohup-SIGHUP"],
)
def test_a_signal_the_command_was_started_ignoring_stays_ignored(sig, moment, ignoring, tmp_path):
    """A background job of a non-interactive shell ignores SIGINT, nohup ignores SIGHUP: the run then
    goes on to the end, Lava's processes included."""
    run = Run(command("simulate", tmp_path, ignoring=ignoring))
    try:
        wait_for_moment(run, moment)
        SIGNALS[sig](run.proc.pid)
        code = run.proc.wait(timeout=120)
        run.reader.join(timeout=5)
    finally:
        run.kill()
    assert code == 0, run.err.decode(errors="replace")[-2000:]
    assert run.segments_left() == set() and run.segments
