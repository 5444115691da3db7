"""The normalized graph: neuron populations joined by exactly one float synapse per source, the
form every compiler pass after :func:``~neurocompile.compiler.normalize.normalize`` reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import nir
import numpy as np

from neurocompile.ir.network import ConvGeometry, Network
from neurocompile.semantics.discretization import Convention


@dataclass
class NormalizedInput:
    """A graph input; ``shape`` excludes batch and time."""

    name: str
    shape: tuple[int, ...]


@dataclass
class NormalizedPopulation:
    """One NIR neuron node, parameters in float as in the NIR file.

    ``type``: the NIR class name (LIF, CubaLIF, IF, LI, CubaLI, I).
    ``params``: NIR parameter name -> float array broadcast to ``shape``
    (``v_reset`` defaults to 0 where the node type has one).
    ``bias``: constant input added to the neuron input ``x`` every step (biases of the
    collapsed Affine/Conv nodes, pushed through the linear ops after them), shape ``shape``.
    ``spiking``: False for the readouts LI, CubaLI and I.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    params: dict[str, np.ndarray]
    bias: np.ndarray
    spiking: bool = True

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


BLOCK_VALUES = 1 << 20  # values of a matrix formed at once (8 MB of float64)


@dataclass(frozen=True)
class ScaledMatrix:
    """The float64 matrix ``((weight * columns) * rows[0]) * rows[1] ...`` kept as its factors: ``weight`` as
    read (a float32 NIR weight stays float32 and is not copied), ``columns`` scaling its columns (or None) and each
    of ``rows`` its rows (one value per row, or one for all), in order. :meth:`blocks` forms it a block of rows
    at a time, the same floats as forming it whole (``np.asarray`` does that)."""

    weight: np.ndarray
    columns: np.ndarray | None = None
    rows: tuple[np.ndarray, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape)

    @property
    def size(self) -> int:
        return int(self.weight.size)

    def scale_rows(self, scale) -> ScaledMatrix:
        """This matrix with each row multiplied by ``scale`` (one value per row, or one for all)."""
        return replace(self, rows=(*self.rows, np.asarray(scale, dtype=np.float64).reshape(-1)))

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new float64 array."""
        out = self.weight[start:stop].astype(np.float64)
        if self.columns is not None:
            out *= self.columns
        for scale in self.rows:
            out *= scale[start:stop, None] if scale.size > 1 else scale[0]
        return out

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, rows)`` over the whole matrix, about ``BLOCK_VALUES`` values at a time."""
        n_rows, n_cols = self.shape
        step = max(1, BLOCK_VALUES // max(n_cols, 1))
        for start in range(0, n_rows, step):
            yield start, self.block(start, min(start + step, n_rows))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.block(0, self.shape[0])
        return out if dtype is None else out.astype(dtype)


def row_blocks(weights) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` of a synapse's float weights: a :class:`ScaledMatrix` by blocks, an array (conv) whole."""
    if isinstance(weights, ScaledMatrix):
        yield from weights.blocks()
    else:
        yield 0, np.asarray(weights)


@dataclass
class NormalizedSynapse:
    """One collapsed chain of linear nodes from ``source`` to ``target`` (float weights).

    ``kind``: "dense" or "sparse" (``weights`` is a ``[n_target, n_source]`` :class:`ScaledMatrix` over C-order
    flattened shapes) or "conv" (``weights`` ``[C_out, C_in/groups, kH, kW]``, ``conv``
    geometry, PyTorch semantics). The synapse delivers ``weights @ s`` to the target's input
    ``x``. ``delays``: per-weight extra delay in steps (dense/sparse shape), or None.
    ``recurrent``: a back-edge of the graph. ``nodes``: the NIR nodes collapsed into it.
    """

    name: str
    source: str
    target: str
    kind: str
    weights: ScaledMatrix | np.ndarray
    conv: ConvGeometry | None = None
    delays: np.ndarray | None = None
    recurrent: bool = False
    nodes: list[str] = field(default_factory=list)


@dataclass
class NormalizedGraph(Network):
    """Inputs, populations (feed-forward order), synapses and output populations.

    ``outputs`` names populations (the graph's Output nodes are dropped; ``output_names``
    maps each Output node to the population feeding it). ``source`` keeps the original NIR
    graph (for calibration with the float reference), ``convention`` the float semantics.
    """

    inputs: list[NormalizedInput]
    populations: list[NormalizedPopulation]
    synapses: list[NormalizedSynapse]
    outputs: list[str]
    convention: Convention = field(default_factory=Convention)
    output_names: dict[str, str] = field(default_factory=dict)
    source: nir.NIRGraph | None = None

    KIND = "normalized graph"
