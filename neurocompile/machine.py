"""What this machine lets a run use: the memory limit that every size guard (:mod:`neurocompile.resources`, the
NIR reader) compares with."""

from __future__ import annotations

import math
import os
from pathlib import Path

try:
    import resource
except ImportError:  # not on every platform
    resource = None

from neurocompile.errors import NeurocompileError

FALLBACK_LIMIT = 8 << 30  # where the system does not report its available memory
LIMIT_VARIABLE = "NEUROCOMPILE_MAX_MEMORY_GB"


def memory_limit() -> int:
    """Bytes a run may use: ``$NEUROCOMPILE_MAX_MEMORY_GB`` GiB, else 80% of the least of the available
    memory, ``ulimit -v`` and the cgroup limit."""
    text = os.environ.get(LIMIT_VARIABLE)
    if text is not None:
        try:
            gib = float(text)
        except ValueError:
            gib = math.nan
        if not (math.isfinite(gib) and gib > 0):
            raise NeurocompileError(f"{LIMIT_VARIABLE} must be a positive number of GiB, got '{text}'")
        return int(gib * 2**30)
    known = [b for b in (_available_bytes(), _address_space_limit(), _cgroup_limit()) if b is not None]
    return int(0.8 * min(known)) if known else FALLBACK_LIMIT


def _available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_limit() -> int | None:
    """The process's soft ``RLIMIT_AS`` (``ulimit -v``), when set."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _cgroup_limit() -> int | None:
    """The container's memory limit (cgroup v2 ``memory.max``), when set."""
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
