"""What the C kernels of the backends share: building a C source into a cached shared library, and
the thread pool that runs a kernel over slices of the batch."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

# Batch rows run a chunk at a time where a node's float values would otherwise not fit the caches
# (bounded memory too): about this many bytes a chunk; measured in docs/benchmarks.md.
CHUNK_BYTES = 8 * 2**20
_pool = None  # the threads of run_sliced (a forked child starts without them: see _forget_pool)


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, so make a new pool on first use."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def build_library(source_path: Path, extra_flags: tuple[str, ...] = (), libs: tuple[str, ...] = ()):
    """The C source ``source_path`` compiled to a shared library and loaded with ctypes (cached in
    ``$XDG_CACHE_HOME/neurocompile`` by a hash of source, flags and CPU), or None if it cannot be
    (no compiler, ``NEUROCOMPILE_NO_KERNEL`` set, or the build fails)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if os.environ.get("NEUROCOMPILE_NO_KERNEL") or cc is None:
        return None
    try:
        source = _with_headers(source_path)
    except OSError:
        return None
    try:  # the flags -march=native compiles for are part of the cache key
        with open("/proc/cpuinfo") as info:
            cpu = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        cpu = ""
    flags = ["-O3", "-march=native", "-fno-trapping-math", *extra_flags]
    key = source + " ".join(flags) + (" " + " ".join(libs) if libs else "") + platform.machine() + cpu
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurocompile"
    lib = cache / f"{source_path.stem}_{tag}.so"
    fallback = ["-O3", *extra_flags]  # -march=native may be refused
    if not lib.exists() and not _compile(cc, [flags, fallback], list(libs), source, cache, lib):
        return None
    try:
        return ctypes.CDLL(str(lib))
    except OSError:
        return None


def _with_headers(source_path: Path) -> str:
    """The C source with each ``#include "name.h"`` replaced by that header from the same folder
    (the build compiles a copy elsewhere, and the cache key must cover the headers)."""

    def header(match: re.Match) -> str:
        return (source_path.parent / match.group(1)).read_text()

    return re.sub(r'^#include "([A-Za-z0-9_]+\.h)"$', header, source_path.read_text(), flags=re.M)


def _compile(cc: str, attempts: list[list[str]], libs: list[str], source: str, cache: Path, lib: Path) -> bool:
    """Compile ``source`` to ``lib`` with the first set of flags that works (atomically published:
    parallel builders each write a whole file)."""

    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # same filesystem: os.replace is atomic
            src, out = Path(tmp) / "kernel.c", Path(tmp) / "kernel.so"
            src.write_text(source)
            for opts in attempts:
                command = [cc, *opts, "-shared", "-fPIC", str(src), "-o", str(out), *libs]
                if subprocess.run(command, capture_output=True).returncode == 0:
                    os.replace(out, lib)
                    return True
    except OSError:
        pass
    return False


def run_sliced(kernel, args, batch: int, work_per_sample: int) -> None:
    """Run ``kernel(*args, b0, b1)`` over batch slices on up to torch.get_num_threads() threads."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), batch, batch * work_per_sample // 20000 or 1))
    if threads == 1:
        kernel(*args, 0, batch)
        return
    if _pool is None or _pool._max_workers < threads:
        _pool = ThreadPoolExecutor(max_workers=threads)
    cuts = [batch * k // threads for k in range(threads + 1)]
    list(_pool.map(lambda k: kernel(*args, cuts[k], cuts[k + 1]), range(threads)))


def data_address(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()
