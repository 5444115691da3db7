"""Backends: implementations that execute one model, selected by name.

``float``: float reference of a NIR graph (defines what the graph means in discrete time).
``cpu``: bit-accurate fixed-point simulator of a compiled program (Lava/Loihi integer semantics).
``lava``: the compiled program lowered to Lava processes (needs lava-nc).

Every backend follows :class:`~neurocompile.backends.base.Backend`. What sets them apart (the model
they run, their options, devices, learning, unquantized lowering) is their :data:`BACKENDS` entry; callers
pick a backend by name through :func:`create_backend` and read its entry, never its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from neurocompile.errors import BackendUnavailableError, NeurocompileError, first_line


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what it takes.

    ``model``: "graph" (a NIR graph) or "program" (a compiled program; a graph is compiled for it).
    ``options``: the run options its constructor takes, by the API's names (``convention``,
    ``device``, ``tag``, ``hardware``). ``learning``: it runs plastic programs (``learn``). ``unquantized``: the option value with which a
    graph is lowered to a float program instead of compiled (Lava's ``floating_pt``)."""

    module: str
    cls: str
    model: str
    summary: str
    options: tuple[str, ...]
    learning: bool = False
    unquantized: tuple[str, str] | None = None

    @property
    def device(self) -> bool:
        """Whether it runs on a torch device of the user's choice (``--device``)."""
        return "device" in self.options

    def runs_unquantized(self, options: dict) -> bool:
        """Whether ``options`` make it run a graph's float program (not a compiled one)."""
        return self.unquantized is not None and options.get(self.unquantized[0]) == self.unquantized[1]


BACKENDS: dict[str, BackendEntry] = {
    "float": BackendEntry(
        "float_ref",
        "FloatReference",
        "graph",
        "float reference of the NIR graph",
        options=("convention", "device"),
    ),
    "cpu": BackendEntry(
        "cpu",
        "CpuBackend",
        "program",
        "bit-accurate fixed-point simulator (C kernel or torch)",
        options=("device",),
        learning=True,
    ),
    "lava": BackendEntry(
        "lava.backend",
        "LavaBackend",
        "program",
        "Lava process graph (fixed_pt or floating_pt)",
        options=("tag", "hardware"),
        learning=True,
        unquantized=("tag", "floating_pt"),
    ),
}


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of backend ``name`` (a one-line error for an unknown name)."""
    if name not in BACKENDS:
        raise NeurocompileError(f"unknown backend '{name}'; choose one of {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def learning_backends() -> tuple[str, ...]:
    """The backends that run plastic programs."""
    return tuple(name for name, entry in BACKENDS.items() if entry.learning)


def backend_class(name: str) -> type:
    """The backend class registered as ``name``, imported on demand (one-line error if it cannot be)."""
    entry = backend_entry(name)
    try:
        module = importlib.import_module(f"{__name__}.{entry.module}")
        return getattr(module, entry.cls)
    except NeurocompileError:
        raise
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(f"backend '{name}' is not available: {first_line(exc)}") from None


def create_backend(name: str, model, **options):
    """Build backend ``name`` for ``model`` (a NIR graph or a program, see :data:`BACKENDS`)."""
    return backend_class(name)(model, **options)
