"""The compiler: its passes, in order, from a NIR graph to a program (``docs/quantization.md``)."""

from __future__ import annotations

import nir

from neurocompile.compiler.calibrate import calibrate, calibration_extent
from neurocompile.compiler.float_program import float_program
from neurocompile.compiler.normalize import normalize
from neurocompile.compiler.quantize import quantize
from neurocompile.ir.program import FixedPointProgram
from neurocompile.ir.report import QuantizationReport
from neurocompile.semantics.discretization import Convention


def compile_graph(
    graph: nir.NIRGraph,
    convention: Convention | None = None,
    calibration=None,
    *,
    method: str = "maxabs",
    percentile: float = 99.99,
    bias_onset: str = "latency",
    weight_exp: int | None = None,
    bias_exp: int | None = None,
    split_weights: bool = False,
    source: str | None = None,
) -> tuple[FixedPointProgram, QuantizationReport]:
    """A NIR graph as a fixed-point program for Lava's integer LIF, with its quantization report.

    ``calibration``: None, sample inputs, or a float recording (see :func:`calibrate`); ``method``,
    ``percentile``, ``bias_onset``, ``weight_exp``, ``bias_exp`` and ``split_weights``: see :func:`quantize`; ``source``: a label
    for the metadata."""
    normalized = normalize(graph, convention or Convention())  # Euler form; populations and collapsed synapses
    activity = calibrate(normalized, calibration)  # the float run's activity per node, or None
    options = dict(
        method=method,
        percentile=percentile,
        bias_onset=bias_onset,
        weight_exp=weight_exp,
        bias_exp=bias_exp,
        split_weights=split_weights,
    )
    program, report = quantize(normalized, activity, **options)
    report.calibration = calibration_extent(calibration)
    program.metadata["source"] = source
    return program, report


def lower_float(graph: nir.NIRGraph, convention: Convention | None = None) -> FixedPointProgram:
    """A NIR graph as a float program for Lava's ``floating_pt`` models (the same mapping, unrounded)."""
    return float_program(normalize(graph, convention or Convention()))
