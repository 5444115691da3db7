"""neurocompile: spiking neural networks from PyTorch through NIR to Lava and a bit-accurate CPU simulator.

The pipeline is a chain of small stages with plain data between them::

    torch module --export--> NIR graph --normalize--> NormalizedGraph
        --quantize--> FixedPointProgram --lower--> backend executable --run--> Recording

and the package offers it as functions (see :mod:`neurocompile.api`)::

    import neurocompile

    graph = neurocompile.export("model.pt")
    program, report = neurocompile.compile(graph, calibration="digits")
    x, labels = neurocompile.load_inputs(data="digits", limit=100)
    recording = neurocompile.simulate(program, x, backend="cpu")
    print(neurocompile.summarize(recording, x, labels)["accuracy"])

Importing the package is light: the functions import torch and nir when called, and never
Lava unless the ``lava`` backend runs (``neurocompile.backends.lava.compat`` imports it on demand).
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "export": "neurocompile.api",
    "compile": "neurocompile.api",
    "simulate": "neurocompile.api",
    "train": "neurocompile.api",
    "load_model": "neurocompile.api",
    "load_inputs": "neurocompile.api",
    "load_calibration": "neurocompile.api",
    "summarize": "neurocompile.analysis.summary",
    "format_summary": "neurocompile.analysis.summary",
    "TrainConfig": "neurocompile.training.trainer",
    "NeurocompileError": "neurocompile.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neurocompile' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
