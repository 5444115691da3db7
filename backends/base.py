"""The contract every backend implements, and the input check they share."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.recording import Recording


@runtime_checkable
class Backend(Protocol):
    """One model, run on batches of input spikes.

    ``run(inputs, record=None, progress=False, checkpoint_every=None)``: ``inputs`` is
    ``[batch, time, *input_shape]`` (or ``{input name: array}`` for several inputs), checked by
    :func:`check_inputs`; ``record`` is None (outputs only), "all", or node names / ``<node>.<variable>``
    keys. The returned recording's metadata names the execution path that ran.

    Learning (a backend whose registry entry says ``learning``): a plastic program runs batch entry b
    as learner b, one stream each. ``record`` may name ``<synapse>.weights`` (recorded after steps K,
    2K, ... with ``checkpoint_every=K``, listed in ``metadata["checkpoint_steps"]``) and the plastic
    synapses' traces; ``metadata["programs"]`` holds each learner's program with its learned weights.
    A backend that does not learn refuses ``checkpoint_every`` and plastic programs in one line.
    """

    name: str

    def run(self, inputs, record=None, progress: bool = False, checkpoint_every: int | None = None) -> Recording: ...


def check_inputs(
    ports: list[tuple[str, tuple[int, ...]]], inputs, *, binary: bool, backend: str, graded: frozenset = frozenset()
) -> tuple[dict[str, np.ndarray], int, int]:
    """Check a backend's inputs; returns ``({port: array [batch, time, *shape]}, batch, steps)``.

    ``ports``: ``(name, shape)`` per input port. ``inputs``: one array (one port) or
    ``{name: array}``, NumPy or torch; a shape of None accepts any per-step shape, and an array with the
    port's number of values per step in another layout takes the port's shape (as NIR files written with
    ``[1, 1, n]`` for ``[n]`` need). ``binary``: values must be 0 or 1 (spikes),
    except on the ports named in ``graded`` (target streams), which take integers. Arrays come
    back as NumPy (a bool array as uint8), unchanged otherwise. Every failure raises a one-line
    :class:`NeurocompileError` starting ``"<backend> backend: "``, one message per kind of failure.
    """

    def fail(message: str):
        raise NeurocompileError(f"{backend} backend: {message}")

    if not isinstance(inputs, dict):
        if len(ports) != 1:
            fail(f"the model has {len(ports)} inputs ({', '.join(n for n, _ in ports)}): pass a dict {{name: spikes}}")
        inputs = {ports[0][0]: inputs}
    unknown = sorted(set(map(str, inputs)) - {name for name, _ in ports})
    if unknown:
        fail(f"unknown input '{unknown[0]}' (inputs: {', '.join(n for n, _ in ports)})")
    arrays, batch_time = {}, None
    for name, shape in ports:
        if name not in inputs:
            fail(f"input '{name}': missing")
        arr = _declared_layout(_as_numpy(inputs[name]), shape)
        expected = f"[batch, time{''.join(f', {s}' for s in shape or ('...',))}]"
        if arr.ndim < 2 or shape is not None and (arr.ndim != 2 + len(shape) or tuple(arr.shape[2:]) != tuple(shape)):
            fail(f"input '{name}': shape {list(arr.shape)} is not {expected}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            fail(f"input '{name}': empty batch or time axis in shape {list(arr.shape)}")
        if batch_time is not None and arr.shape[:2] != batch_time:
            fail(f"input '{name}': [batch, time] {list(arr.shape[:2])} differs from {list(batch_time)} of the others")
        batch_time = arr.shape[:2]
        _check_values(name, arr, binary and name not in graded, fail)
        if name in graded and not (np.issubdtype(arr.dtype, np.integer) or (arr == np.round(arr)).all()):
            fail(f"input '{name}': targets must be integers")
        if name in graded and arr.size and np.abs(arr).max() >= 2**31:
            fail(f"input '{name}': targets must fit 32 bits")
        arrays[name] = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
    return arrays, int(batch_time[0]), int(batch_time[1])


def require_spikes(inputs, where: str, hint: str = "") -> None:
    """One-line error (``"<where>: ..."``, then ``hint``) unless every input value is 0 or 1: what a
    command feeds every backend alike, unless graded values are asked for (``simulate --graded-inputs``)."""

    def fail(message: str):
        raise NeurocompileError(f"{where}: {message}" + (f" ({hint})" if hint else ""))

    for name, arr in (inputs if isinstance(inputs, dict) else {"input": inputs}).items():
        arr = _as_numpy(arr)
        _check_values(str(name), arr, True, fail)


def _declared_layout(arr: np.ndarray, shape) -> np.ndarray:
    """``arr`` [batch, time, ...] reshaped to [batch, time, *shape] when it holds that many values per step."""
    if shape is None or arr.ndim < 2 or tuple(arr.shape[2:]) == tuple(shape):
        return arr
    if math.prod(arr.shape[2:]) == math.prod(shape):
        return arr.reshape(*arr.shape[:2], *shape)
    return arr


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_values(name: str, arr: np.ndarray, binary: bool, fail) -> None:
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        fail(f"input '{name}': values must be real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        fail(f"input '{name}': values must be finite (found NaN or inf)")
    if binary and arr.dtype != np.bool_ and not _zeros_and_ones(arr):
        fail(f"input '{name}': spikes must be 0 or 1")


def _zeros_and_ones(arr: np.ndarray) -> bool:
    """Whether every value is 0 or 1; integers by their range (no temporaries; unsigned: the maximum alone)."""
    if not np.issubdtype(arr.dtype, np.integer):
        return bool(((arr == 0) | (arr == 1)).all())
    unsigned = np.issubdtype(arr.dtype, np.unsignedinteger)
    return arr.size == 0 or bool(arr.max() <= 1 and (unsigned or arr.min() >= 0))
