"""The memory a run needs, estimated from declared shapes before anything is allocated.

A run holds, per sample and step, every node's values (spikes, v and u when recorded, and the
backends' working copies): at most ``VALUES_PER_NODE`` float32 or int32 values per neuron. The
estimate is compared with the limit (``NEUROCOMPILE_MAX_MEMORY_GB``, else 80% of the least of the
available memory, the process's address-space limit and the container's memory limit), and a run
past it is refused in one line that gives both.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

try:
    import resource
except ImportError:  # not on every platform
    resource = None

from neurocompile.errors import NeurocompileError
from neurocompile.frontend.graph import flatten_graph
from neurocompile.frontend.nir_io import single_shape

LIMIT_VARIABLE = "NEUROCOMPILE_MAX_MEMORY_GB"
VALUES_PER_NODE = 4  # recorded spikes, v, u, and one working copy
BYTES_PER_VALUE = 4
TRAINING_COPIES = 4  # of every parameter while training: the weight, its gradient, the optimizer's two moments
FALLBACK_LIMIT = 8 << 30  # where the system does not report its available memory


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


def values_per_step(model) -> int:
    """Values one sample holds per step: every population and input port of a program, every
    node of a NIR graph (its declared output, else its largest parameter)."""
    if hasattr(model, "populations"):
        return sum(int(np.prod(p.shape)) for p in model.populations) + sum(int(np.prod(p.shape)) for p in model.inputs)

    nodes, _edges = flatten_graph(model)
    return sum(_node_values(node, single_shape) for node in nodes.values())


def _node_values(node, single_shape) -> int:
    shape = single_shape(getattr(node, "output_type", None))
    if shape is not None:
        return math.prod(shape)
    sizes = [np.size(v) for v in vars(node).values() if isinstance(v, np.ndarray)]
    return max(sizes, default=1)


def check_input_memory(model, inputs) -> None:
    """:func:`check_run_memory` for ``inputs`` ([batch, time, ...], or ``{port: array}``); inputs of
    another shape are left to the backend's checks."""
    first = next(iter(inputs.values()), None) if isinstance(inputs, dict) else inputs
    shape = np.shape(first)
    if len(shape) >= 2:
        check_run_memory(model, int(shape[0]), int(shape[1]))


def check_run_memory(model, batch: int, steps: int) -> None:
    """Refuse a run of ``batch`` samples x ``steps`` steps whose estimate exceeds :func:`memory_limit`."""
    values = values_per_step(model)
    need = batch * steps * values * VALUES_PER_NODE * BYTES_PER_VALUE
    limit = memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"this run needs about {need / 2**30:.3g} GiB ({batch} samples x {steps} steps x {values} values "
            f"per step) and the limit is {limit / 2**30:.3g} GiB: run fewer samples (--limit) or steps (--steps), "
            f"or raise the limit with {LIMIT_VARIABLE}"
        )


def check_training_memory(sizes, batch: int, steps: int, why: str = "") -> None:
    """Refuse training a network of layer ``sizes`` whose parameters (with their gradients and optimizer
    state) and one batch's activations exceed :func:`memory_limit`; ``why`` says where the sizes came from."""
    parameters = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    activations = batch * steps * sum(sizes) * VALUES_PER_NODE
    need = (parameters * TRAINING_COPIES + activations) * BYTES_PER_VALUE
    limit = memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"training the {'-'.join(map(str, sizes))} network needs about {need / 2**30:.3g} GiB ({parameters} "
            f"parameters) and the limit is {limit / 2**30:.3g} GiB{why}; raise the limit with {LIMIT_VARIABLE}"
        )
