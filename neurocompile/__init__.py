"""neurocompile: spiking neural networks from PyTorch through NIR to Lava and a bit-accurate CPU simulator.

The pipeline's stages as functions (``neurocompile.export``, ``compile``, ``simulate``, ``train``,
``load_inputs``, ``summarize``, ...; see :mod:`neurocompile.api`), each imported on first use: ``import
neurocompile`` loads neither torch nor Lava. The stages and the data between them: ``docs/architecture.md``.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "export": "neurocompile.api",
    "compile": "neurocompile.api",
    "simulate": "neurocompile.api",
    "train": "neurocompile.api",
    "learn": "neurocompile.api",
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
