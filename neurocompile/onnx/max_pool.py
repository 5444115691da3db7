"""MaxPool as ReLU layers: the spiking max-pooling of Gaurav, Tripp and Narayan (2022, "Spiking Approximations
of the MaxPooling Operation in Deep SNNs", IJCNN; their AVAM method) with one neuron per pair.

Their identity ``max(a, b) = (a + b)/2 + |a - b|/2`` is, for any real ``a`` and ``b``,
``max(a, b) = b + relu(a - b)``: one ReLU (an IF neuron in the SNN) per pair, the rest linear. A window of
``n`` elements is a tree of pairwise maxima (``max(a, b, c, d) = max(max(a, b), max(c, d))``): level ``l``
holds the difference neurons ``relu(a - b)`` of its pairs, where ``a`` and ``b`` are an element of the window
plus difference neurons of earlier levels; the maximum is one element plus one neuron of each level. Every
linear map is a grouped (per-channel) convolution, so the rewrite is made of the converter's own ``Conv``,
``Relu`` and ``Add`` layers (:mod:`neurocompile.onnx.read`) and runs on every backend unchanged;
``docs/ann-to-snn.md`` describes the approximation and its cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

POOLED = ""  # the input of the rewrite, as a step names it


@dataclass(frozen=True)
class Step:
    """One layer of the rewrite: ``part`` names it, ``kind`` is ``"Conv"``, ``"Relu"`` or ``"Add"``, ``inputs``
    names the parts it reads (:data:`POOLED`: the tensor being pooled) and ``params`` are the layer's fields."""

    part: str
    kind: str
    inputs: tuple[str, ...]
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Value:
    """A value of the tree: window element ``element`` plus the difference neurons ``terms`` ((level, index))."""

    element: int
    terms: tuple[tuple[int, int], ...] = ()


def tree(n: int) -> tuple[list[list[tuple[Value, Value]]], Value]:
    """The pairs ``(a, b)`` whose ``relu(a - b)`` each level's neurons compute, and the maximum of the ``n``
    elements they add up to: ``max(a, b) = b + relu(a - b)``, elements paired in order, an odd one carried up."""
    values, levels = [Value(i) for i in range(n)], []
    while len(values) > 1:
        pairs = list(zip(values[0::2], values[1::2]))
        carried = values[-1:] if len(values) % 2 else []
        values = [Value(b.element, (*b.terms, (len(levels), j))) for j, (_a, b) in enumerate(pairs)] + carried
        levels.append(pairs)
    return levels, values[0]


def max_pool_steps(channels: int, kernel, stride, padding, dilation) -> list[Step]:
    """The layers computing ``MaxPool`` of ``channels`` channels with this geometry, in order; the last one
    holds the maximum. Padding counts as zeros: exact for inputs that are not negative."""
    levels, top = tree(math.prod(kernel))
    sizes = [len(pairs) for pairs in levels]
    geometry = dict(stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation))
    steps = []
    for level, pairs in enumerate(levels, start=1):
        rows = [[(1.0, a), (-1.0, b)] for a, b in pairs]
        steps += _sum(f"diff{level}", rows, sizes, channels, tuple(kernel), geometry)
        steps.append(Step(f"diff{level}", "Relu", (steps[-1].part,)))
    return steps + _sum("max", [[(1.0, top)]], sizes, channels, tuple(kernel), geometry)


def _sum(name: str, rows, sizes: list[int], channels: int, kernel: tuple, geometry: dict) -> list[Step]:
    """Steps whose last one is, per channel, each row's signed sum of tree values: a convolution of the
    pooled tensor's windows and a 1x1 convolution of each level of neurons the rows read, added."""
    elements, neurons = _weights(rows, math.prod(kernel), sizes)
    operands = [
        Step(f"{name}_window", "Conv", (POOLED,), _grouped(elements.reshape(-1, 1, *kernel), channels, **geometry))
    ]
    for level, weight in sorted(neurons.items()):
        source = f"diff{level + 1}"
        operands.append(Step(f"{name}_from_{source}", "Conv", (source,), _grouped(weight[:, :, None, None], channels)))
    if len(operands) == 1:
        return operands
    return [*operands, Step(f"{name}_sum", "Add", tuple(o.part for o in operands))]


def _weights(rows, n: int, sizes: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Per row, the weights of the window's ``n`` elements ``[rows, n]`` and, per level it reads, of that
    level's neurons ``[rows, size]``."""
    elements, neurons = np.zeros((len(rows), n)), {}
    for r, row in enumerate(rows):
        for sign, value in row:
            elements[r, value.element] += sign
            for level, index in value.terms:
                neurons.setdefault(level, np.zeros((len(rows), sizes[level])))[r, index] += sign
    return elements, neurons


def _grouped(weight: np.ndarray, channels: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> dict:
    """A ``Conv``'s fields applying ``weight`` ``[out, in, kH, kW]`` to each channel alone (``groups``)."""
    return dict(
        weight=np.tile(weight, (channels, 1, 1, 1)),
        bias=np.zeros(channels * weight.shape[0]),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=channels,
    )
