"""The checks a program's fields pass: integer ranges, real values, weight shapes, conv geometry and a
stored quantization report; each failure is a one-line error naming the node and the field."""

from __future__ import annotations

import math

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.report import QuantizationReport


def check_report(report) -> None:
    """A stored quantization report that ``inspect`` can render and on-chip learning can read its scales from."""
    if report is None:
        return

    try:
        parsed = QuantizationReport.from_dict(report)
        parsed.table()
        scales = [float(layer.scale) for layer in parsed.layers]
    except Exception as exc:  # any malformed part of the report: missing, extra or mistyped fields
        raise NeurocompileError(
            f"metadata 'quantization': not a valid quantization report ({type(exc).__name__})"
        ) from None
    if not all(np.isfinite(scale) and scale > 0 for scale in scales):
        raise NeurocompileError("metadata 'quantization': layer scales must be positive numbers")


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_weight_shape(syn, source: tuple, target: tuple) -> None:
    """Dense/sparse weights are [target size, source size]; a conv synapse's geometry maps source to target."""
    shape = tuple(np.shape(syn.weights))
    if syn.kind == "conv":
        check_conv(syn.name, syn.conv, shape, source, target)
    elif shape != (math.prod(target), math.prod(source)):
        raise NeurocompileError(
            f"node '{syn.name}', parameter 'weights': shape {list(shape)} is not "
            f"[{math.prod(target)}, {math.prod(source)}] (target x source)"
        )


def check_conv(name: str, g: ConvGeometry, weights: tuple, source: tuple, target: tuple) -> None:
    """PyTorch conv2d geometry: ``weights`` [C_out, C_in/groups, kH, kW] take ``source`` (C, H, W) to ``target``."""

    def fail(message: str):
        raise NeurocompileError(f"node '{name}', parameter 'conv': {message}")

    if not isinstance(g, ConvGeometry):
        fail("missing or not a geometry")
    for field_name, low in (("stride", 1), ("padding", 0), ("dilation", 1)):
        value = getattr(g, field_name)
        if not (isinstance(value, tuple) and len(value) == 2 and all(is_int(v) and v >= low for v in value)):
            fail(f"{field_name} {value!r} is not two integers >= {low}")
    if not is_int(g.groups) or g.groups < 1:
        fail(f"groups {g.groups!r} is not an integer >= 1")
    given = tuple(tuple(s) if isinstance(s, (list, tuple)) else s for s in (g.input_shape, g.output_shape))
    if given != (source, target) or len(source) != 3:
        fail(f"input/output shapes {g.input_shape}/{g.output_shape} are not the source/target shapes {source}/{target}")
    if len(weights) != 4 or weights[0] != target[0] or weights[1] * g.groups != source[0] or target[0] % g.groups:
        fail(f"weights {list(weights)} do not take {source[0]} to {target[0]} channels in {g.groups} groups")
    for size, out, kernel, stride, pad, dil in zip(
        source[1:], target[1:], weights[2:], g.stride, g.padding, g.dilation
    ):
        if (size + 2 * pad - dil * (kernel - 1) - 1) // stride + 1 != out:
            fail(f"a {kernel}-wide kernel (stride {stride}, padding {pad}, dilation {dil}) maps {size} to no {out}")


def check_range(node: str, name: str, value, low: int, high: int) -> None:
    """Raise a one-line error naming node and parameter when ``value`` leaves [low, high]."""
    arr = np.asarray(value)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise NeurocompileError(f"node '{node}', parameter '{name}': must be integer, got {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < low or hi > high:
        raise NeurocompileError(
            f"node '{node}', parameter '{name}': range [{lo}, {hi}] exceeds hardware range [{low}, {high}]"
        )


def check_real(node: str, name: str, value, low: float = -np.inf, high: float = np.inf, finite: bool = True) -> None:
    """Raise a one-line error when ``value`` is not real, not finite (``finite``), NaN, or leaves [low, high]."""
    arr = np.asarray(value)
    if arr.size == 0:
        return
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise NeurocompileError(f"node '{node}', parameter '{name}': must be real, got {arr.dtype}")
    lo, hi = float(arr.min()), float(arr.max())  # NaN wins both: no float copy or mask of a large array
    if np.isnan(lo) or np.isnan(hi) or (finite and not (np.isfinite(lo) and np.isfinite(hi))):
        raise NeurocompileError(f"node '{node}', parameter '{name}': must be {'finite' if finite else 'a number'}")
    if lo < low or hi > high:
        raise NeurocompileError(f"node '{node}', parameter '{name}': range [{lo}, {hi}] leaves [{low}, {high}]")
