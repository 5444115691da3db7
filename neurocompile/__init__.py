"""neurocompile: spiking neural networks from PyTorch through NIR to Lava and a bit-accurate CPU simulator.

The pipeline is a chain of small stages with plain data between them::

    torch module --export--> NIR graph --normalize--> NormalizedGraph
        --quantize--> FixedPointProgram --lower--> backend executable --run--> Recording

and the package offers it as functions (see :mod:`neurocompile.pipeline`)::

    import neurocompile

    graph = neurocompile.export("model.pt")
    program, report = neurocompile.compile(graph, calibration="digits")
    x, labels = neurocompile.load_inputs(data="digits", limit=100)
    recording = neurocompile.simulate(program, x, backend="cpu")
    print(neurocompile.summarize(recording, x, labels)["accuracy"])

Importing the package is light: the functions import torch and nir when called, and never
Lava unless the ``lava`` backend runs (``neurocompile.lava_compat`` imports it on demand).
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "export": "neurocompile.pipeline",
    "compile": "neurocompile.pipeline",
    "simulate": "neurocompile.pipeline",
    "train": "neurocompile.pipeline",
    "load_model": "neurocompile.pipeline",
    "load_inputs": "neurocompile.pipeline",
    "load_calibration": "neurocompile.pipeline",
    "summarize": "neurocompile.summary",
    "format_summary": "neurocompile.summary",
    "TrainConfig": "neurocompile.training.trainer",
    "NeurocompileError": "neurocompile.errors",
}

__all__ = ["__version__", *_LAZY]


class _CallableModule(types.ModuleType):
    """The submodule ``neurocompile.export``, callable as the pipeline's :func:`~neurocompile.pipeline.export`.

    Importing a submodule binds it on its package under its name, which would replace the
    function ``neurocompile.export``; this keeps ``neurocompile.export(...)`` working and
    ``neurocompile.export.export_checkpoint`` (and every import of the module) unchanged."""

    def __call__(self, *args, **kwargs):
        return importlib.import_module("neurocompile.pipeline").export(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name == "export" and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name):
    if name == "export":  # the submodule, made callable as it is bound here
        return importlib.import_module("neurocompile.export")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neurocompile' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
