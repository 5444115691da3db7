"""Normalize a NIR graph: neuron populations joined by exactly one synapse per source.

A fixed-point target (Lava, Loihi) has two kinds of objects: neuron populations and synapse
layers between them. A Lava synapse process cannot feed another synapse process, so every
chain of linear NIR nodes between two neuron nodes must become ONE synapse. This module
turns an arbitrary (nested) NIR graph into that form, still in float:

* nested ``NIRGraph`` nodes are flattened; inner nodes are named ``<outer>.<inner>``;
* ``Input`` nodes become :class:`NormalizedInput`, neuron nodes (LIF, CubaLIF, IF, LI,
  CubaLI, I) become :class:`NormalizedPopulation`;
* every chain of ``Affine``/``Linear``/``Conv2d``/``Conv1d``/``SumPool2d``/``AvgPool2d``/
  ``Flatten``/``Scale``/``Delay``/``Identity`` between a source (input or population) and a
  population collapses into one :class:`NormalizedSynapse`:

  - ``Scale`` folds into the weights, ``Flatten`` is implicit (C-order);
  - the bias of every ``Affine``/``Conv`` on the way is pushed through the ops after it and
    added to the target population's ``bias`` (a constant input ``x`` of the neuron, in the
    same units as the synaptic input: the quantizer applies ``dt*r/tau`` to it);
  - a single ``Conv2d`` stays a conv synapse; ``SumPool2d``/``AvgPool2d`` before or after a
    ``Conv2d`` fuse into one conv when the fusion is exact (checked on a random input, e.g.
    SumPool2d(2) then Conv3x3 padding 1 == Conv6x6 stride 2 padding 2 with
    ``w_eff[2k+a] = w[k]``); otherwise the chain becomes an explicit matrix, stored
    ``"sparse"`` when at most :data:`SPARSE_DENSITY` of it is non-zero, else ``"dense"``;
  - ``Delay`` (NIR: ``y(t) = x(t - delay)``, ``delay`` in seconds) becomes a per-synapse
    delay of ``round(delay / dt)`` steps;
  - several chains from one source into one population add up into one matrix; chains
    from different sources stay separate synapses (the population sums them);
* synapses that close a cycle (found by depth-first search from the inputs, populations in
  NIR edge order) are marked ``recurrent``; populations are listed feed-forward.

``Threshold`` nodes and any other node with no fixed-point mapping raise a
:class:`~neurocompile.errors.GraphError` naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F

from .discretization import NEURON_MODELS, Convention
from .errors import GraphError
from .graph import flatten_graph, order_graph
from .program import ConvGeometry

NEURON_TYPES = tuple(NEURON_MODELS)  # LIF, CubaLIF, IF, LI, CubaLI, I
LINEAR_TYPES = (
    "Affine",
    "Linear",
    "Conv1d",
    "Conv2d",
    "SumPool2d",
    "AvgPool2d",
    "Flatten",
    "Scale",
    "Delay",
    "Identity",
)
SPARSE_DENSITY = 0.1  # explicit matrices at most this dense are stored as "sparse"


# --- the normalized graph (plain data) ------------------------------------------------------


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

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Float synaptic output for a batch ``x`` of source values ``[B, *source_shape]``."""
        x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        if self.kind == "conv":
            out = _conv2d(
                x.reshape(x.shape[0], *self.conv.input_shape),
                torch.as_tensor(self.weights, dtype=torch.float64),
                self.conv,
            )
            return out.numpy()
        return (x.reshape(x.shape[0], -1) @ torch.as_tensor(self.weights, dtype=torch.float64).T).numpy()


@dataclass
class NormalizedGraph:
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

    def population(self, name: str) -> NormalizedPopulation:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise GraphError("no such population", node=name)

    def source_shape(self, name: str) -> tuple[int, ...]:
        for inp in self.inputs:
            if inp.name == name:
                return tuple(inp.shape)
        return tuple(self.population(name).shape)

    def synapses_into(self, target: str) -> list[NormalizedSynapse]:
        return [syn for syn in self.synapses if syn.target == target]


# --- linear ops -----------------------------------------------------------------------------


def _pair(value, name: str, node: str) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int).ravel()
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size == 2:
        return int(arr[0]), int(arr[1])
    raise GraphError(f"expected 1 or 2 values, got {arr.size}", node=node, field=name)


def _conv2d(x: torch.Tensor, w: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    return F.conv2d(x, w, stride=geo.stride, padding=geo.padding, dilation=geo.dilation, groups=geo.groups)


@dataclass
class _Op:
    """One linear NIR node with resolved shapes. ``apply`` excludes the bias."""

    node: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None  # in out_shape
    geo: ConvGeometry | None = None
    pool: tuple | None = None  # (kernel, stride, padding, average)
    delay: np.ndarray | None = None  # steps, broadcast to in_shape

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.type in ("Affine", "Linear"):
            w = torch.as_tensor(self.weight, dtype=x.dtype)
            return (x.reshape(b, -1) @ w.T).reshape(b, *self.out_shape)
        if self.type == "Conv2d":
            return _conv2d(x.reshape(b, *self.in_shape), torch.as_tensor(self.weight, dtype=x.dtype), self.geo)
        if self.type == "Conv1d":
            w = torch.as_tensor(self.weight, dtype=x.dtype)
            g = self.geo
            return F.conv1d(
                x.reshape(b, *self.in_shape),
                w,
                stride=g.stride[1],
                padding=g.padding[1],
                dilation=g.dilation[1],
                groups=g.groups,
            )
        if self.type in ("SumPool2d", "AvgPool2d"):
            k, s, p, avg = self.pool
            out = F.avg_pool2d(x.reshape(b, *self.in_shape), k, s, p, count_include_pad=True)
            return out if avg else out * (k[0] * k[1])
        if self.type == "Scale":
            return x.reshape(b, *self.in_shape) * torch.as_tensor(self.weight, dtype=x.dtype)
        return x.reshape(b, *self.out_shape)  # Flatten, Identity, Delay


def _make_op(name: str, node, in_shape: tuple[int, ...]) -> _Op:
    kind = type(node).__name__
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2:
            raise GraphError(f"weight must be 2-D, got shape {w.shape}", node=name, field="weight")
        if int(np.prod(in_shape)) != w.shape[1]:
            raise GraphError(f"weight expects {w.shape[1]} inputs, gets shape {in_shape}", node=name, field="weight")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(w.shape[0]) if kind == "Affine" else None
        return _Op(name, "Affine", in_shape, (w.shape[0],), weight=w, bias=bias)
    if kind == "Conv2d":
        w = np.asarray(node.weight, dtype=np.float64)
        if len(in_shape) != 3:
            raise GraphError(f"Conv2d input shape {in_shape} is not (C, H, W)", node=name, field="input_shape")
        stride, dil = _pair(node.stride, "stride", name), _pair(node.dilation, "dilation", name)
        groups = int(np.asarray(node.groups).ravel()[0]) if np.size(node.groups) else 1
        if isinstance(node.padding, str):
            if node.padding == "valid":
                pad = (0, 0)
            else:  # same (stride 1)
                pad = tuple(int(d * (k - 1) // 2) for d, k in zip(dil, w.shape[2:]))
        else:
            pad = _pair(node.padding, "padding", name)
        h = (in_shape[1] + 2 * pad[0] - dil[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
        wd = (in_shape[2] + 2 * pad[1] - dil[1] * (w.shape[3] - 1) - 1) // stride[1] + 1
        if w.shape[1] * groups != in_shape[0]:
            raise GraphError(f"weight {w.shape} does not match input channels {in_shape[0]}", node=name, field="weight")
        out = (w.shape[0], h, wd)
        geo = ConvGeometry(tuple(int(s) for s in in_shape), out, stride, pad, dil, groups)
        bias = None
        if node.bias is not None and np.size(node.bias):
            bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64).reshape(-1, 1, 1), out).copy()
        return _Op(name, "Conv2d", in_shape, out, weight=w, bias=bias, geo=geo)
    if kind == "Conv1d":
        w = np.asarray(node.weight, dtype=np.float64)
        stride = int(np.ravel(node.stride)[0])
        dil = int(np.ravel(node.dilation)[0])
        pad = (
            0
            if isinstance(node.padding, str) and node.padding == "valid"
            else (dil * (w.shape[2] - 1) // 2 if isinstance(node.padding, str) else int(np.ravel(node.padding)[0]))
        )
        groups = int(np.ravel(node.groups)[0]) if np.size(node.groups) else 1
        n = (in_shape[-1] + 2 * pad - dil * (w.shape[2] - 1) - 1) // stride + 1
        out = (w.shape[0], n)
        geo = ConvGeometry((in_shape[0], 1, in_shape[-1]), (w.shape[0], 1, n), (1, stride), (0, pad), (1, dil), groups)
        bias = None
        if node.bias is not None and np.size(node.bias):
            bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64).reshape(-1, 1), out).copy()
        return _Op(name, "Conv1d", in_shape, out, weight=w, bias=bias, geo=geo)
    if kind in ("SumPool2d", "AvgPool2d"):
        k = _pair(node.kernel_size, "kernel_size", name)
        s = _pair(node.stride, "stride", name)
        p = _pair(node.padding, "padding", name) if node.padding is not None else (0, 0)
        if len(in_shape) != 3:
            raise GraphError(f"pooling input shape {in_shape} is not (C, H, W)", node=name, field="input")
        h = (in_shape[1] + 2 * p[0] - k[0]) // s[0] + 1
        wd = (in_shape[2] + 2 * p[1] - k[1]) // s[1] + 1
        return _Op(name, kind, in_shape, (in_shape[0], h, wd), pool=(k, s, p, kind == "AvgPool2d"))
    if kind == "Flatten":
        n = int(np.prod(in_shape))
        start = int(np.ravel(node.start_dim)[0]) if np.size(node.start_dim) else 0
        end = int(np.ravel(node.end_dim)[0]) if np.size(node.end_dim) else -1
        dims = list(in_shape)
        # NIR writers disagree whether start_dim counts the batch; prefer the declared output.
        declared = node.output_type.get("output") if getattr(node, "output_type", None) else None
        if declared is not None and np.size(declared) and int(np.prod(declared)) == n:
            out = tuple(int(d) for d in np.ravel(declared))
        else:
            start = max(start - 1, 0) if start >= 1 and start >= len(dims) else start
            end = len(dims) + end if end < 0 else end
            out = tuple(dims[:start]) + (int(np.prod(dims[start : end + 1])),) + tuple(dims[end + 1 :])
        return _Op(name, "Flatten", in_shape, out)
    if kind == "Scale":
        s = np.asarray(node.scale, dtype=np.float64)
        try:
            np.broadcast_to(s, in_shape)
        except ValueError:
            raise GraphError(
                f"scale shape {s.shape} does not broadcast to {in_shape}", node=name, field="scale"
            ) from None
        return _Op(name, "Scale", in_shape, in_shape, weight=s)
    if kind == "Delay":
        d = np.asarray(node.delay, dtype=np.float64)
        return _Op(name, "Delay", in_shape, in_shape, delay=d)
    if kind in ("Identity", "InlinedBoundary"):
        return _Op(name, "Identity", in_shape, in_shape)
    raise GraphError(f"{kind} has no fixed-point mapping", node=name)


# --- normalization --------------------------------------------------------------------------


def _node_kind(node) -> str:
    kind = type(node).__name__
    if kind == "Threshold":
        return "threshold"
    if kind in NEURON_TYPES:
        return "neuron"
    if kind == "Input":
        return "input"
    if kind == "Output":
        return "output"
    if kind in LINEAR_TYPES or kind == "InlinedBoundary":
        return "linear"
    return "unknown"


def _declared_shape(node, key: str, kind: str) -> tuple[int, ...] | None:
    types = getattr(node, key, None) or {}
    value = types.get(kind)
    if value is None or np.size(value) == 0:
        return None
    return tuple(int(v) for v in np.ravel(value))


def normalize(graph: nir.NIRGraph, convention: Convention | None = None) -> NormalizedGraph:
    """Flatten, collapse linear chains and detect recurrence; see the module docstring."""
    convention = convention or Convention()
    nodes, edges = flatten_graph(graph)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        preds[d].append(s)
        succs[s].append(d)

    for name, node in nodes.items():
        kind = _node_kind(node)
        if kind == "threshold":
            raise GraphError(
                "Threshold nodes have no fixed-point mapping (Lava LIF thresholds its own voltage); "
                "replace the Threshold with an IF/LIF neuron",
                node=name,
            )
        if kind == "unknown":
            raise GraphError(f"{type(node).__name__} has no fixed-point mapping", node=name)

    # --- shapes ------------------------------------------------------------------------
    shapes: dict[str, tuple[int, ...]] = {}
    ops: dict[str, _Op] = {}
    visiting: set[str] = set()

    def out_shape(name: str) -> tuple[int, ...]:
        if name in shapes:
            return shapes[name]
        node = nodes[name]
        kind = _node_kind(node)
        if kind == "input":
            shape = _declared_shape(node, "input_type", "input") or _declared_shape(node, "output_type", "output")
            if shape is None:
                raise GraphError("Input node has no shape", node=name, field="input_type")
        elif kind == "neuron":
            shape = _neuron_shape(name, node)
            if shape is None:
                shape = in_shape(name)
        else:
            shape = None
            if kind == "linear":
                op = _make_op(name, node, in_shape(name))
                ops[name] = op
                shape = op.out_shape
            else:
                shape = in_shape(name)
        shapes[name] = tuple(int(s) for s in shape)
        return shapes[name]

    def in_shape(name: str) -> tuple[int, ...]:
        if name in visiting:
            raise GraphError("cannot infer shapes around a cycle (give the neuron parameters full shapes)", node=name)
        if not preds[name]:
            raise GraphError("node has no inputs", node=name)
        visiting.add(name)
        try:
            found = [out_shape(p) for p in preds[name]]
        finally:
            visiting.discard(name)
        first = found[0]
        for p, s in zip(preds[name], found):
            if int(np.prod(s)) != int(np.prod(first)):
                raise GraphError(
                    f"inputs disagree in size: '{preds[name][0]}' gives {first}, '{p}' gives {s}", node=name
                )
        return first

    for name in nodes:
        if _node_kind(nodes[name]) != "output":
            out_shape(name)

    # --- populations and inputs ---------------------------------------------------------
    inputs = [NormalizedInput(n, shapes[n]) for n, v in nodes.items() if _node_kind(v) == "input"]
    if not inputs:
        raise GraphError("graph has no Input node", node=getattr(graph, "name", "graph"))
    pop_nodes = [n for n, v in nodes.items() if _node_kind(v) == "neuron"]
    populations: dict[str, NormalizedPopulation] = {}
    for name in pop_nodes:
        node = nodes[name]
        shape = shapes[name]
        if preds[name]:
            s_in = in_shape(name)
            if int(np.prod(s_in)) != int(np.prod(shape)):
                raise GraphError(f"input size {int(np.prod(s_in))} != neuron count {int(np.prod(shape))}", node=name)
        params = {}
        field_names = NEURON_MODELS[type(node).__name__][1]._fields
        for f in field_names:
            value = getattr(node, f, None)
            if value is None:
                if f == "v_reset":
                    value = 0.0
                else:
                    raise GraphError("parameter missing", node=name, field=f)
            arr = np.asarray(value, dtype=np.float64)
            if arr.size == int(np.prod(shape)):
                arr = arr.reshape(shape)
            try:
                params[f] = np.broadcast_to(arr, shape).copy()
            except ValueError:
                raise GraphError(f"shape {arr.shape} does not broadcast to {shape}", node=name, field=f) from None
        populations[name] = NormalizedPopulation(
            name, type(node).__name__, shape, params, np.zeros(shape), spiking=NEURON_MODELS[type(node).__name__][3]
        )

    # --- collapse linear chains ---------------------------------------------------------
    memo: dict[str, tuple[list, np.ndarray | None]] = {}
    active: set[str] = set()

    def terms_of(name: str):
        """Output of ``name`` as ([(source, [ops...])], bias in its output shape)."""
        kind = _node_kind(nodes[name])
        if kind in ("input", "neuron"):
            return [(name, [])], None
        if name in memo:
            return memo[name]
        if name in active:
            raise GraphError("cycle of linear nodes without a neuron", node=name)
        active.add(name)
        op = ops[name]
        terms, bias = [], None
        for p in preds[name]:
            t, b = terms_of(p)
            terms.extend((src, seq + [op]) for src, seq in t)
            if b is not None:
                bias = b if bias is None else bias + b
        if bias is not None:  # push the incoming bias through this op
            bias = op.apply(torch.as_tensor(bias, dtype=torch.float64).reshape(1, *op.in_shape))[0].numpy()
        if op.bias is not None:
            bias = op.bias.reshape(op.out_shape) if bias is None else bias + op.bias.reshape(op.out_shape)
        active.discard(name)
        memo[name] = (terms, bias)
        return memo[name]

    synapses: list[NormalizedSynapse] = []
    for name in pop_nodes:
        pop = populations[name]
        grouped: dict[str, list[list[_Op]]] = {}
        for p in preds[name]:
            t, b = terms_of(p)
            if b is not None:
                pop.bias = pop.bias + b.reshape(pop.shape)
            for src, seq in t:
                grouped.setdefault(src, []).append(seq)
        for src, seqs in grouped.items():
            source_shape = shapes[src]
            synapses.append(_collapse(src, name, source_shape, pop.shape, seqs, convention))

    # --- outputs ------------------------------------------------------------------------
    outputs, output_names = [], {}
    for name, node in nodes.items():
        if _node_kind(node) != "output":
            continue
        feeding = preds[name]
        if len(feeding) != 1 or _node_kind(nodes[feeding[0]]) != "neuron":
            raise GraphError(
                "an Output must be fed directly by one neuron node (a fixed-point program outputs populations)",
                node=name,
            )
        output_names[name] = feeding[0]
        if feeding[0] not in outputs:
            outputs.append(feeding[0])
    if not outputs:
        raise GraphError("graph has no Output node fed by a neuron", node=getattr(graph, "name", "graph"))

    order, recurrent_pairs = _order_and_back_edges([i.name for i in inputs], pop_nodes, synapses)
    for syn in synapses:
        syn.recurrent = (syn.source, syn.target) in recurrent_pairs
    synapses.sort(key=lambda s: (order.index(s.target), s.recurrent))
    return NormalizedGraph(
        inputs=inputs,
        populations=[populations[n] for n in order],
        synapses=synapses,
        outputs=outputs,
        convention=convention,
        output_names=output_names,
        source=graph,
    )


def _neuron_shape(name: str, node) -> tuple[int, ...] | None:
    declared = _declared_shape(node, "input_type", "input") or _declared_shape(node, "output_type", "output")
    if declared is not None:
        return declared
    sizes = [
        np.shape(getattr(node, f))
        for f in NEURON_MODELS[type(node).__name__][1]._fields
        if getattr(node, f, None) is not None
    ]
    sizes = [s for s in sizes if int(np.prod(s)) > 1]
    return tuple(sizes[0]) if sizes else None


def _order_and_back_edges(inputs: list[str], pops: list[str], synapses: list[NormalizedSynapse]):
    """DFS from the inputs: back-edges are recurrent; returns (population order, back-edges)."""
    order, back = order_graph(inputs + pops, [(syn.source, syn.target) for syn in synapses], inputs)
    populations = set(pops)
    return [n for n in order if n in populations], back


# --- collapsing one source's chains ---------------------------------------------------------


def _chain_name(src: str, dst: str) -> str:
    return f"{src}->{dst}"


def _collapse(src, dst, source_shape, target_shape, seqs, convention) -> NormalizedSynapse:
    """One synapse for all op sequences from ``src`` into population ``dst``."""
    nodes = []
    for seq in seqs:
        nodes.extend(op.node for op in seq if op.node not in nodes)
    name = _chain_name(src, dst)
    n_src, n_dst = int(np.prod(source_shape)), int(np.prod(target_shape))
    if len(seqs) == 1 and not any(op.type == "Delay" for op in seqs[0]):
        conv = _try_conv(seqs[0], source_shape, n_dst)
        if conv is not None:
            weights, geo = conv
            return NormalizedSynapse(name, src, dst, "conv", weights, conv=geo, nodes=nodes)
    # explicit matrix: sum over sequences, with delays from Delay ops
    matrix = np.zeros((n_dst, n_src))
    delays = None
    for seq in seqs:
        m = _sequence_matrix(seq, source_shape, n_dst)
        d = _sequence_delays(seq, source_shape, n_dst, m, dst, convention)
        if d is not None:
            if delays is None:
                delays = np.zeros((n_dst, n_src), dtype=np.int64)
            overlap = (matrix != 0) & (m != 0) & (delays != d)
            if overlap.any():
                raise GraphError("two paths with different delays join the same neuron pair", node=dst)
            delays = np.where(m != 0, d, delays)
        matrix += m
    if delays is not None:
        delays = np.where(matrix != 0, delays, 0).astype(np.int64)
    density = np.count_nonzero(matrix) / max(matrix.size, 1)
    kind = "sparse" if density <= SPARSE_DENSITY and matrix.size > 64 else "dense"
    return NormalizedSynapse(name, src, dst, kind, matrix, delays=delays, nodes=nodes)


def _sequence_matrix(seq: list[_Op], source_shape, n_dst) -> np.ndarray:
    n_src = int(np.prod(source_shape))
    x = torch.eye(n_src, dtype=torch.float64).reshape(n_src, *source_shape)
    for op in seq:
        x = op.apply(x)
    out = x.reshape(n_src, -1)
    if out.shape[1] != n_dst:
        raise GraphError(f"chain delivers {out.shape[1]} values to {n_dst} neurons", node=seq[-1].node if seq else "?")
    return out.T.numpy().copy()


def _sequence_delays(seq, source_shape, n_dst, matrix, dst, convention):
    """Per-weight delays in steps of the Delay ops of one chain, or None."""
    delay_ops = [op for op in seq if op.type == "Delay"]
    if not delay_ops:
        return None
    total = np.zeros(matrix.shape)
    n_src = int(np.prod(source_shape))
    for op in delay_ops:
        steps = op.delay / convention.dt
        if np.any(np.abs(steps - np.round(steps)) > 1e-6) or np.any(steps < 0):
            raise GraphError(
                f"delay {op.delay.ravel()[:3]} s is not a whole number of steps of dt={convention.dt}",
                node=op.node,
                field="delay",
            )
        steps = np.broadcast_to(np.round(steps), op.in_shape).reshape(-1)
        idx = seq.index(op)
        # the delay sits on the signal at op's position: map it onto (target, source) pairs
        before = seq[:idx]
        if steps.min() == steps.max():
            total += steps[0]
            continue
        if not before:  # per source neuron
            total += steps[None, :n_src]
        elif all(o.type in ("Identity", "Flatten", "Delay", "Scale") for o in seq[idx + 1 :]):  # per target neuron
            total += steps[:n_dst, None]
        else:
            raise GraphError(
                "a per-neuron Delay between two weighted layers has no per-synapse form", node=op.node, field="delay"
            )
    return total.astype(np.int64)


def _try_conv(seq: list[_Op], source_shape, n_dst):
    """One Conv2d (with Scale, Flatten, Identity and one SumPool/AvgPool around it) as a
    single conv, verified on a random input; None when the chain is not of that form."""
    core = [op for op in seq if op.type not in ("Identity", "Flatten")]
    convs = [op for op in core if op.type == "Conv2d"]
    if len(convs) != 1:
        return None
    conv = convs[0]
    if len(source_shape) != 3 or int(np.prod(source_shape)) != int(np.prod(seq[0].in_shape)):
        return None
    w = conv.weight.copy()
    geo = conv.geo
    i = core.index(conv)
    before, after = core[:i], core[i + 1 :]
    # Scale after the conv: per output channel only
    for op in after:
        if op.type != "Scale":
            if op.type in ("SumPool2d", "AvgPool2d"):
                continue
            return None
        s = np.broadcast_to(op.weight, op.in_shape) if op.weight.size > 1 else None
        if s is None:
            w = w * float(op.weight.ravel()[0])
        else:
            per_channel = s.reshape(s.shape[0], -1)
            if not np.all(per_channel == per_channel[:, :1]):
                return None
            w = w * per_channel[:, 0].reshape(-1, 1, 1, 1)
    for op in before:
        if op.type == "Scale":
            if op.weight.size != 1:
                return None
            w = w * float(op.weight.ravel()[0])
        elif op.type not in ("SumPool2d", "AvgPool2d"):
            return None
    pools_before = [op for op in before if op.type in ("SumPool2d", "AvgPool2d")]
    pools_after = [op for op in after if op.type in ("SumPool2d", "AvgPool2d")]
    if len(pools_before) + len(pools_after) > 1:
        return None
    if pools_before:
        fused = _fuse_pool_conv(pools_before[0], w, geo)
    elif pools_after:
        fused = _fuse_conv_pool(w, geo, pools_after[0])
    else:
        fused = (w, geo)
    if fused is None:
        return None
    w_eff, geo_eff = fused
    if int(np.prod(geo_eff.output_shape)) != n_dst:
        return None
    # verify against the original chain on a random input
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((2, *source_shape)), dtype=torch.float64)
    ref = x
    for op in seq:
        ref = op.apply(ref)
    got = _conv2d(x, torch.as_tensor(w_eff, dtype=torch.float64), geo_eff)
    if tuple(got.shape[1:]) != tuple(geo_eff.output_shape) or not torch.allclose(
        got.reshape(2, -1), ref.reshape(2, -1), atol=1e-9, rtol=1e-9
    ):
        return None
    return w_eff, geo_eff


def _fuse_pool_conv(pool: _Op, w: np.ndarray, geo: ConvGeometry):
    """pool(k=s=p, no padding) then conv == conv with kernel k*p, stride s*p, padding P*p."""
    k, s, pad, avg = pool.pool
    if k != s or pad != (0, 0) or geo.dilation != (1, 1) or geo.groups != 1:
        return None
    c, h, wd = pool.in_shape
    if h % k[0] or wd % k[1]:
        return None
    w_eff = np.repeat(np.repeat(w, k[0], axis=2), k[1], axis=3)
    if avg:
        w_eff = w_eff / (k[0] * k[1])
    stride = (geo.stride[0] * k[0], geo.stride[1] * k[1])
    padding = (geo.padding[0] * k[0], geo.padding[1] * k[1])
    geo_eff = ConvGeometry(tuple(pool.in_shape), tuple(geo.output_shape), stride, padding, (1, 1), 1)
    return w_eff, geo_eff


def _fuse_conv_pool(w: np.ndarray, geo: ConvGeometry, pool: _Op):
    """conv then pool(k, stride k, no padding) == conv with kernel (k-1)*s + K, stride s*k."""
    k, s, pad, avg = pool.pool
    if k != s or pad != (0, 0) or geo.dilation != (1, 1):
        return None
    co, ci, kh, kw = w.shape
    sh, sw = geo.stride
    w_eff = np.zeros((co, ci, (k[0] - 1) * sh + kh, (k[1] - 1) * sw + kw))
    for a in range(k[0]):
        for b in range(k[1]):
            w_eff[:, :, a * sh : a * sh + kh, b * sw : b * sw + kw] += w
    if avg:
        w_eff = w_eff / (k[0] * k[1])
    geo_eff = ConvGeometry(
        tuple(geo.input_shape), tuple(pool.out_shape), (sh * k[0], sw * k[1]), geo.padding, (1, 1), geo.groups
    )
    return w_eff, geo_eff
