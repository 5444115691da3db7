"""Make lava-nc 0.10.0 importable on Python 3.11.

An import hook compiles ``lava/magma/compiler/var_model.py`` with ``ByteEncoder`` declared
``@dataclass(unsafe_hash=True)`` (3.11 rejects its unhashable field default), and :func:`import_lava` lets Lava set
its multiprocessing start method. Call :func:`import_lava` (or :func:`install`) before importing anything from
``lava``. Why and how: ``docs/lava-backend.md`` ("Lava on Python 3.11").
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import multiprocessing
import sys

from neurocompile.errors import BackendUnavailableError

PATCHED_MODULE = "lava.magma.compiler.var_model"
LAVA_MULTIPROCESSING = "lava.magma.runtime.message_infrastructure.multiprocessing"
ORIGINAL = b"@dataclass\nclass ByteEncoder:"
PATCHED = b"@dataclass(unsafe_hash=True)\nclass ByteEncoder:"


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the module from its patched source, bypassing the bytecode cache."""

    def get_code(self, fullname):
        source = self.get_data(self.path)
        if ORIGINAL not in source:
            raise ImportError(f"{PATCHED_MODULE}: unexpected source; the compatibility step supports lava-nc 0.10.0")
        return compile(source.replace(ORIGINAL, PATCHED), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _PatchedSourceLoader(fullname, spec.origin)
        return spec


def needs_patch() -> bool:
    return sys.version_info >= (3, 11)


def install() -> None:
    """Register the import hook (idempotent). Must run before ``lava`` is imported."""
    if not needs_patch() or any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        return
    if PATCHED_MODULE in sys.modules:
        return  # already imported (successfully, or we would not be here)
    sys.meta_path.insert(0, _VarModelFinder())


def import_lava():
    """Install the compatibility hook and import lava, or raise a one-line error."""
    install()
    if LAVA_MULTIPROCESSING not in sys.modules and multiprocessing.get_start_method(allow_none=True) is not None:
        multiprocessing.set_start_method(None, force=True)  # let Lava's own set_start_method('fork') succeed
    try:
        import lava
        import lava.magma.core.process.process  # noqa: F401  (imports var_model)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"lava-nc 0.10.0 is not importable ({exc}); run `make setup` to install it"
        ) from exc
    return lava
