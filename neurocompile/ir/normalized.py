"""The normalized graph: neuron populations joined by exactly one float synapse per source, the
form every compiler pass after :func:``~neurocompile.compiler.normalize.normalize`` reads."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class NormalizedSynapse:
    """One collapsed chain of linear nodes from ``source`` to ``target`` (float weights).

    ``kind``: "dense" or "sparse" (``weights`` is ``[n_target, n_source]`` over C-order
    flattened shapes) or "conv" (``weights`` ``[C_out, C_in/groups, kH, kW]``, ``conv``
    geometry, PyTorch semantics). The synapse delivers ``weights @ s`` to the target's input
    ``x``. ``delays``: per-weight extra delay in steps (dense/sparse shape), or None.
    ``recurrent``: a back-edge of the graph. ``nodes``: the NIR nodes collapsed into it.
    """

    name: str
    source: str
    target: str
    kind: str
    weights: np.ndarray
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
