"""Process groups, Lava's processes and their shared memory, as /proc shows them: what the signal tests
(tests/cli/test_signals.py, tests/backends/lava/test_lava_backend.py) and the soak (tools/soak.py) watch."""

from __future__ import annotations

import os
import re
from pathlib import Path

# The signal dispositions of a command started from a terminal, whatever this process inherited (a
# background job of a non-interactive shell ignores SIGINT; nohup ignores SIGHUP).
AS_FROM_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
AS_FROM_A_TERMINAL += "signal.signal(signal.SIGHUP, signal.SIG_DFL); "


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def lava_started(pid: int) -> bool:
    """Whether Lava's first process is in ``pid``'s group: the resource tracker its shared-memory server
    starts (a fork of the command would not do: any subprocess, e.g. lscpu, is one until it execs)."""
    return any(b"resource_tracker" in _cmdline(member) for member in group_members(pid) if member != pid)


def segments_mapped_by(pid: int) -> set[str]:
    """The /dev/shm segments process ``pid`` maps now (Lava's main process maps every channel's)."""
    try:
        return set(re.findall(r"/dev/shm/(\S+)", Path(f"/proc/{pid}/maps").read_text()))
    except OSError:
        return set()
