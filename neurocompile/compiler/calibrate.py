"""Calibration: the float activity of every node on sample inputs, from which quantization picks
each population's scale."""

from __future__ import annotations

import numpy as np

from neurocompile.backends import create_backend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.normalized import NormalizedGraph
from neurocompile.ir.recording import Recording
from neurocompile.resources import check_input_memory

MAX_CALIBRATION_STEPS = 4096  # a longer input is calibrated on its first steps; the report says so


def calibrate(normalized: NormalizedGraph, calibration) -> dict[str, np.ndarray] | None:
    """Float source activity and states keyed ``<node>.spikes``/``.v``/``.i``/``.out``, or None.

    ``calibration``: None; inputs ``[batch, time, *input_shape]`` (or a dict per input), run through
    the float reference; or a float :class:`~neurocompile.ir.recording.Recording` recorded with
    ``record="all"`` (plus ``<input>.out`` arrays for the inputs)."""
    if calibration is None:
        return None
    if isinstance(calibration, Recording):
        return dict(calibration.arrays)
    if _is_recorded(calibration):
        return {str(k): np.asarray(v) for k, v in calibration.items()}
    inputs = first_steps(calibration, MAX_CALIBRATION_STEPS)
    if normalized.source is None:
        raise NeurocompileError("calibration inputs need the source NIR graph (normalize() keeps it)")
    check_input_memory(normalized.source, inputs)
    rec = create_backend("float", normalized.source, convention=normalized.convention).run(inputs, record="all")
    arrays = dict(rec.arrays)
    if not isinstance(inputs, dict):
        inputs = {normalized.inputs[0].name: inputs}
    for name, x in inputs.items():
        arrays[f"{name}.out"] = np.asarray(x, dtype=np.float64)
    return arrays


def _is_recorded(calibration) -> bool:
    """Whether a dict holds recorded arrays (``<node>.<variable>`` keys) rather than inputs per input node."""
    return isinstance(calibration, dict) and any("." in str(k) for k in calibration)


def first_steps(inputs, steps: int):
    """Inputs ``[batch, time, ...]`` (or a dict of them) cut to their first ``steps`` time steps."""
    if isinstance(inputs, dict):
        return {name: first_steps(x, steps) for name, x in inputs.items()}
    x = np.asarray(inputs)
    return x[:, :steps] if x.ndim >= 2 else x


def calibration_extent(calibration) -> str:
    """What the compiler calibrated on, for the report: "" (nothing), "a float recording", or
    "N samples x T steps", naming the steps left out of a longer input."""
    if calibration is None:
        return ""
    if isinstance(calibration, Recording) or _is_recorded(calibration):
        return "a float recording"
    x = np.asarray(next(iter(calibration.values())) if isinstance(calibration, dict) else calibration)
    if x.ndim < 2:
        return ""
    samples, steps = x.shape[:2]
    used = min(steps, MAX_CALIBRATION_STEPS)
    cut = f" (the first {used} of {steps})" if used < steps else ""
    return f"{samples} sample{'s' * (samples != 1)} x {used} steps{cut}"


def source_activity(arrays: dict, name: str, shape) -> np.ndarray | None:
    for key in (f"{name}.spikes", f"{name}.out"):
        if key in arrays:
            x = np.asarray(arrays[key], dtype=np.float64)
            return x.reshape(x.shape[0], x.shape[1], *shape)
    return None


def statistic(values: np.ndarray, method: str, percentile: float) -> float:
    """The largest ``|value|`` (``"maxabs"``, no copy) or that ``percentile`` of them; 0 for none."""
    values = np.asarray(values)
    if values.size == 0:
        return 0.0
    if method == "percentile":
        return float(np.percentile(np.abs(values).ravel(), percentile))
    return float(max(values.max(), -values.min()))
