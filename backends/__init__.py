"""Backends: implementations that execute one model, selected by name.

``float``: float reference of a NIR graph (defines what the graph means in discrete time).
``cpu``: bit-accurate fixed-point simulator of a compiled program (Lava/Loihi integer semantics).
``lava``: the compiled program lowered to Lava processes (needs lava-nc).

Every backend follows :class:`~neurocompile.backends.base.Backend`: built from one model (a NIR
graph or a program, as :data:`BACKENDS` says), it runs ``[batch, time, *input_shape]`` inputs and
returns a :class:`~neurocompile.ir.recording.Recording`. Callers pick a backend by name through
:func:`create_backend`; no module outside this package names a backend class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from neurocompile.errors import BackendUnavailableError, NeurocompileError


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what it runs: ``model`` is "graph" (a NIR graph) or "program"."""

    module: str
    cls: str
    model: str
    summary: str


BACKENDS: dict[str, BackendEntry] = {
    "float": BackendEntry("float_ref", "FloatReference", "graph", "float reference of the NIR graph"),
    "cpu": BackendEntry("cpu", "CpuBackend", "program", "bit-accurate fixed-point simulator (C kernel or torch)"),
    "lava": BackendEntry("lava.backend", "LavaBackend", "program", "Lava process graph (fixed_pt or floating_pt)"),
}


def backend_class(name: str) -> type:
    """The backend class registered as ``name``, imported on demand (one-line error if it cannot be)."""
    if name not in BACKENDS:
        raise NeurocompileError(f"unknown backend '{name}'; choose one of {', '.join(sorted(BACKENDS))}")
    entry = BACKENDS[name]
    try:
        module = importlib.import_module(f"{__name__}.{entry.module}")
        return getattr(module, entry.cls)
    except NeurocompileError:
        raise
    except (ImportError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendUnavailableError(f"backend '{name}' is not available: {reason}") from None


def create_backend(name: str, model, **options):
    """Build backend ``name`` for ``model`` (a NIR graph or a program, see :data:`BACKENDS`)."""
    return backend_class(name)(model, **options)
