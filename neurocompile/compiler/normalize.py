"""Normalize a NIR graph: neuron populations joined by exactly one synapse per (source, target) pair.

A Lava synapse process cannot feed another, so every chain of linear NIR nodes between two neuron nodes collapses
into one :class:`~neurocompile.ir.normalized.NormalizedSynapse`, still in float (biases pushed to the target
population, scales folded, pools fused into convs where exact, delays in steps); back-edges are marked
``recurrent``. The graph is first put in its forward-Euler form (:func:`euler_form`). The rules, node by node:
``docs/quantization.md`` ("1. Normalization").
"""

from __future__ import annotations

import copy

import nir
import numpy as np
import torch

from neurocompile.errors import GraphError
from neurocompile.frontend.graph import flatten_graph, order_graph
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.normalized import (
    NormalizedGraph,
    NormalizedInput,
    NormalizedPopulation,
    NormalizedSynapse,
    ScaledMatrix,
)
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.primitives import PRIMITIVES, Op, conv2d, delay_steps, kind_of, make_op

SPARSE_DENSITY = 0.1  # explicit matrices at most this dense are stored as "sparse"


# --- the normalized graph (plain data) ------------------------------------------------------


def synapse_output(syn: NormalizedSynapse, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Float synaptic output of source values ``x [B, T, *source_shape]`` as ``[B, T, n_target]``, through
    ``weights`` (default: the synapse's own)."""
    w = syn.weights if weights is None else weights
    b, t = x.shape[:2]
    if syn.kind == "conv":
        xt = torch.as_tensor(np.asarray(x).reshape(b * t, *syn.conv.input_shape), dtype=torch.float64)
        return conv2d(xt, torch.as_tensor(w, dtype=torch.float64), syn.conv).reshape(b, t, -1).numpy()
    return np.asarray(x).reshape(b, t, -1) @ np.asarray(w).T


# --- pass 1: shapes ---------------------------------------------------------------------------


def _declared_shape(node, key: str, port: str) -> tuple[int, ...] | None:
    value = (getattr(node, key, None) or {}).get(port)
    if value is None or np.size(value) == 0:
        return None
    return tuple(int(v) for v in np.ravel(value))


def _neuron_shape(node) -> tuple[int, ...] | None:
    declared = _declared_shape(node, "input_type", "input") or _declared_shape(node, "output_type", "output")
    if declared is not None:
        return declared
    fields = PRIMITIVES[type(node).__name__].fields
    sizes = [np.shape(getattr(node, f)) for f in fields if getattr(node, f, None) is not None]
    sizes = [s for s in sizes if int(np.prod(s)) > 1]
    return tuple(sizes[0]) if sizes else None


class _Shapes:
    """Per-sample output shape of every node, inferred from the inputs along the edges; the
    linear nodes' ops (from the primitive registry) are built on the way."""

    def __init__(self, nodes: dict, preds: dict[str, list[str]]):
        self.nodes, self.preds = nodes, preds
        self.out: dict[str, tuple[int, ...]] = {}
        self.ops: dict[str, Op] = {}
        self.visiting: set[str] = set()
        for name, node in nodes.items():
            if type(node).__name__ != "Output":
                self.output(name)

    def output(self, name: str) -> tuple[int, ...]:
        if name not in self.out:
            node = self.nodes[name]
            kind = type(node).__name__
            if kind == "Input":
                shape = _declared_shape(node, "input_type", "input") or _declared_shape(node, "output_type", "output")
                if shape is None:
                    raise GraphError("Input node has no shape", node=name, field="input_type")
            elif kind_of(node) == "neuron":
                shape = _neuron_shape(node) or self.input(name)
            elif kind_of(node) == "linear":
                self.ops[name] = make_op(name, node, self.input(name))
                shape = self.ops[name].out_shape
            else:
                shape = self.input(name)
            self.out[name] = tuple(int(s) for s in shape)
        return self.out[name]

    def input(self, name: str) -> tuple[int, ...]:
        if name in self.visiting:
            raise GraphError("cannot infer shapes around a cycle (give the neuron parameters full shapes)", node=name)
        if not self.preds[name]:
            raise GraphError("node has no inputs", node=name)
        self.visiting.add(name)
        try:
            found = [self.output(p) for p in self.preds[name]]
        finally:
            self.visiting.discard(name)
        for p, shape in zip(self.preds[name], found):
            if int(np.prod(shape)) != int(np.prod(found[0])):
                raise GraphError(
                    f"inputs disagree in size: '{self.preds[name][0]}' gives {found[0]}, '{p}' gives {shape}", node=name
                )
        return found[0]


# --- pass 2: populations -----------------------------------------------------------------------


def _population(name: str, node, shapes: _Shapes) -> NormalizedPopulation:
    shape = shapes.out[name]
    if shapes.preds[name]:
        n_in = int(np.prod(shapes.input(name)))
        if n_in != int(np.prod(shape)):
            raise GraphError(f"input size {n_in} != neuron count {int(np.prod(shape))}", node=name)
    entry = PRIMITIVES[type(node).__name__]
    params = {}
    for field_name in entry.fields:
        value = getattr(node, field_name, None)
        if value is None:
            if field_name not in entry.optional:
                raise GraphError("parameter missing", node=name, field=field_name)
            value = 0.0
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        try:
            params[field_name] = np.broadcast_to(arr, shape).copy()
        except ValueError:
            raise GraphError(f"shape {arr.shape} does not broadcast to {shape}", node=name, field=field_name) from None
    return NormalizedPopulation(name, entry.name, shape, params, np.zeros(shape), spiking=entry.spiking)


# --- pass 3: chain collapse --------------------------------------------------------------------


class _Chains:
    """What reaches each node through linear ops: (source, [ops]) terms and a summed bias."""

    def __init__(self, nodes: dict, preds: dict[str, list[str]], ops: dict[str, Op]):
        self.nodes, self.preds, self.ops = nodes, preds, ops
        self.memo: dict[str, tuple[list, np.ndarray | None]] = {}
        self.active: set[str] = set()

    def terms(self, name: str):
        """Output of ``name`` as ([(source, [ops...])], bias in its output shape)."""
        if kind_of(self.nodes[name]) == "neuron" or type(self.nodes[name]).__name__ == "Input":
            return [(name, [])], None
        if name in self.memo:
            return self.memo[name]
        if name in self.active:
            raise GraphError("cycle of linear nodes without a neuron", node=name)
        self.active.add(name)
        op = self.ops[name]
        terms, bias = [], None
        for p in self.preds[name]:
            t, b = self.terms(p)
            terms.extend((src, seq + [op]) for src, seq in t)
            if b is not None:
                bias = b if bias is None else bias + b
        if bias is not None:  # push the incoming bias through this op
            bias = op.apply(torch.as_tensor(bias, dtype=torch.float64).reshape(1, *op.in_shape))[0].numpy()
        if op.bias is not None:
            bias = op.bias.reshape(op.out_shape) if bias is None else bias + op.bias.reshape(op.out_shape)
        self.active.discard(name)
        self.memo[name] = (terms, bias)
        return self.memo[name]

    def synapses_into(self, pop: NormalizedPopulation, shapes: _Shapes, convention) -> list[NormalizedSynapse]:
        """One synapse per source feeding ``pop``; biases on the way are added to ``pop.bias``."""
        grouped: dict[str, list[list[Op]]] = {}
        for p in self.preds[pop.name]:
            t, b = self.terms(p)
            if b is not None:
                pop.bias = pop.bias + b.reshape(pop.shape)
            for src, seq in t:
                grouped.setdefault(src, []).append(seq)
        return [_collapse(src, pop.name, shapes.out[src], pop.shape, seqs, convention) for src, seqs in grouped.items()]


# --- pass 4: outputs and order -----------------------------------------------------------------


def _outputs(nodes: dict, preds: dict[str, list[str]], graph) -> tuple[list[str], dict[str, str]]:
    outputs, output_names = [], {}
    for name, node in nodes.items():
        if type(node).__name__ != "Output":
            continue
        feeding = preds[name]
        if len(feeding) != 1 or kind_of(nodes[feeding[0]]) != "neuron":
            raise GraphError(
                "an Output must be fed directly by one neuron node (a fixed-point program outputs populations)",
                node=name,
            )
        output_names[name] = feeding[0]
        if feeding[0] not in outputs:
            outputs.append(feeding[0])
    if not outputs:
        raise GraphError("graph has no Output node fed by a neuron", node=getattr(graph, "name", "graph"))
    return outputs, output_names


def normalize(graph: nir.NIRGraph, convention: Convention | None = None) -> NormalizedGraph:
    """Flatten, infer shapes, make populations, collapse linear chains, order; see ``docs/quantization.md``.
    The graph and convention are first put in their same-step Euler form (:func:`euler_form`)."""
    graph, convention = euler_form(graph, convention or Convention())
    nodes, edges = flatten_graph(graph)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        preds[dst].append(src)
    shapes = _Shapes(nodes, preds)
    inputs = [NormalizedInput(n, shapes.out[n]) for n, v in nodes.items() if type(v).__name__ == "Input"]
    if not inputs:
        raise GraphError("graph has no Input node", node=getattr(graph, "name", "graph"))
    populations = {n: _population(n, v, shapes) for n, v in nodes.items() if kind_of(v) == "neuron"}
    chains = _Chains(nodes, preds, shapes.ops)
    synapses = [syn for pop in populations.values() for syn in chains.synapses_into(pop, shapes, convention)]
    outputs, output_names = _outputs(nodes, preds, graph)
    order, recurrent_pairs = _order_and_back_edges([i.name for i in inputs], list(populations), synapses)
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


# --- the same dynamics with fewer native options -------------------------------------------------


def euler_form(graph: nir.NIRGraph, convention: Convention) -> tuple[nir.NIRGraph, Convention]:
    """``graph`` and ``convention`` with the native options (``Convention.native_options``) that have an
    exact forward-Euler, same-step form replaced by it; the dynamics are the same:

    * ``decay="exponential"``: every time constant ``tau`` becomes ``dt/(1 - exp(-dt/tau))`` under
      ``decay="euler"`` (the Euler step's ``dt/tau`` is then the exact step's ``1 - a``, for the
      voltage and the current, scaled or not);
    * ``reset_timing="snntorch-immediate"`` with ``reset="zero"`` is the same-step reset when every
      ``v_reset`` is below threshold (the stored membrane never exceeds it);
    * an option that no neuron of the graph uses (no spiking neuron: timing and spike count).

    Other options are kept (the fixed-point compiler refuses them). ``graph`` is not modified."""
    neurons = [node for node in flatten_graph(graph)[0].values() if kind_of(node) == "neuron"]
    spiking = [node for node in neurons if PRIMITIVES[type(node).__name__].spiking]
    changes = {}
    if not spiking:
        changes.update(reset_timing="same-step", spikes_per_step="single")
    elif (
        convention.reset_timing == "snntorch-immediate"
        and convention.reset == "zero"
        and _reset_below(spiking, convention)
    ):
        changes["reset_timing"] = "same-step"
    if convention.decay == "exponential":
        changes["decay"] = "euler"
        graph = _with_euler_time_constants(graph, convention.dt)
    return graph, convention.with_options(**changes)


def _reset_below(neurons: list, convention: Convention) -> bool:
    """Every spiking neuron's ``v_reset`` below its threshold (at most, for a strict threshold)."""
    for node in neurons:
        v_reset = 0.0 if getattr(node, "v_reset", None) is None else node.v_reset
        gap = np.asarray(node.v_threshold, dtype=np.float64) - v_reset
        if not np.all(gap > 0 if convention.threshold_inclusive else gap >= 0):
            return False
    return True


def _with_euler_time_constants(graph: nir.NIRGraph, dt: float) -> nir.NIRGraph:
    """A copy of ``graph`` (nested graphs too) with every ``tau`` replaced by ``dt/(1 - exp(-dt/tau))``."""

    graph = copy.deepcopy(graph)
    pending = [graph]
    while pending:
        for node in pending.pop().nodes.values():
            if isinstance(node, nir.NIRGraph):
                pending.append(node)
            model = PRIMITIVES[type(node).__name__].neuron if kind_of(node) == "neuron" else None
            for name in model.time_constants if model is not None else ():
                tau = np.asarray(getattr(node, name), dtype=np.float64)
                setattr(node, name, dt / -np.expm1(-dt / tau))
    return graph


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
    n_dst = int(np.prod(target_shape))
    if len(seqs) == 1 and not any(op.delay is not None for op in seqs[0]):
        conv = _try_conv(seqs[0], source_shape, n_dst)
        if conv is not None:
            weights, geo = conv
            return NormalizedSynapse(name, src, dst, "conv", weights, conv=geo, nodes=nodes)
        matrix, delays = _sequence_matrix(seqs[0], source_shape, n_dst), None
    else:
        matrix, delays = _summed_matrix(seqs, source_shape, n_dst, dst, convention)
    density = sum(np.count_nonzero(block) for _, block in matrix.blocks()) / max(matrix.size, 1)
    kind = "sparse" if density <= SPARSE_DENSITY and matrix.size > 64 else "dense"
    return NormalizedSynapse(name, src, dst, kind, matrix, delays=delays, nodes=nodes)


def _summed_matrix(seqs, source_shape, n_dst, dst, convention) -> tuple[ScaledMatrix, np.ndarray | None]:
    """The matrix of several chains into one population, summed, and their delays from Delay ops (or None)."""
    matrix = np.zeros((n_dst, int(np.prod(source_shape))))
    delays = None
    for seq in seqs:
        m = np.asarray(_sequence_matrix(seq, source_shape, n_dst))
        d = _sequence_delays(seq, source_shape, n_dst, m, dst, convention)
        if d is not None:
            if delays is None:
                delays = np.zeros(matrix.shape, dtype=np.int64)
            overlap = (matrix != 0) & (m != 0) & (delays != d)
            if overlap.any():
                raise GraphError("two paths with different delays join the same neuron pair", node=dst)
            delays = np.where(m != 0, d, delays)
        matrix += m
    if delays is not None:
        delays = np.where(matrix != 0, delays, 0).astype(np.int64)
    return ScaledMatrix(matrix), delays


def _sequence_matrix(seq: list[Op], source_shape, n_dst) -> ScaledMatrix:
    """The ``n_dst x n_src`` matrix of one chain: its ops applied to the identity, or, for one affine
    weight between elementwise ops, that weight with the scales folded in, in the same order
    (the same floats, without an ``n_src x n_src`` identity)."""
    core = [i for i, op in enumerate(seq) if not op.elementwise]
    if len(core) == 1 and seq[core[0]].weight is not None and np.ndim(seq[core[0]].weight) == 2:
        out = _affine_chain_matrix(seq, core[0], source_shape)
    else:
        out = ScaledMatrix(_identity_image(seq, source_shape))
    if out.shape[0] != n_dst:
        raise GraphError(f"chain delivers {out.shape[0]} values to {n_dst} neurons", node=seq[-1].node if seq else "?")
    return out


def _identity_image(seq: list[Op], source_shape) -> np.ndarray:
    """The matrix of any linear chain: its ops applied to the ``n_src x n_src`` identity."""
    n_src = int(np.prod(source_shape))
    x = torch.eye(n_src, dtype=torch.float64).reshape(n_src, *source_shape)
    for op in seq:
        x = op.apply(x)
    return x.reshape(n_src, -1).T.numpy().copy()


def _affine_chain_matrix(seq: list[Op], at: int, source_shape) -> ScaledMatrix:
    """``seq[at]``'s weight ``W`` with the elementwise ops before it scaling its columns and those after it
    its rows: ``(W * before) * after``, the products the identity would go through, in their order (a scale
    of ones is left out: it changes no float)."""

    def diagonal(ops, shape) -> np.ndarray | None:
        x = torch.ones((1, *shape), dtype=torch.float64)
        for op in ops:
            x = op.apply(x)
        x = x.reshape(-1).numpy()
        return None if np.all(x == 1) else x

    affine = seq[at]
    weight = np.asarray(affine.weight)
    before = diagonal(seq[:at], source_shape)
    n_inputs = int(np.prod(source_shape)) if before is None else before.size
    if n_inputs != weight.shape[1]:
        raise GraphError(f"weight expects {weight.shape[1]} inputs, gets {n_inputs}", node=affine.node)
    after = diagonal(seq[at + 1 :], affine.out_shape)
    return ScaledMatrix(weight, before, () if after is None else (after,))


def _sequence_delays(seq, source_shape, n_dst, matrix, dst, convention):
    """Per-weight delays in steps of the Delay ops of one chain, or None."""
    delay_ops = [op for op in seq if op.delay is not None]
    if not delay_ops:
        return None
    total = np.zeros(matrix.shape)
    n_src = int(np.prod(source_shape))
    for op in delay_ops:
        steps = delay_steps(op.delay, convention.dt).reshape(-1)
        idx = seq.index(op)
        # the delay sits on the signal at op's position: map it onto (target, source) pairs
        before = seq[:idx]
        if steps.min() == steps.max():
            total += steps[0]
            continue
        if not before:  # per source neuron
            total += steps[None, :n_src]
        elif all(o.elementwise for o in seq[idx + 1 :]):  # per target neuron
            total += steps[:n_dst, None]
        else:
            raise GraphError(
                "a per-neuron Delay between two weighted layers has no per-synapse form", node=op.node, field="delay"
            )
    return total.astype(np.int64)


def _try_conv(seq: list[Op], source_shape, n_dst):
    """One Conv2d (with Scale, Flatten, Identity and one SumPool/AvgPool around it) as a
    single conv, verified on a random input; None when the chain is not of that form."""
    core = [op for op in seq if not op.reshapes_only]
    convs = [op for op in core if op.conv is not None]
    if len(convs) != 1:
        return None
    conv = convs[0]
    if len(source_shape) != 3 or int(np.prod(source_shape)) != int(np.prod(seq[0].in_shape)):
        return None
    geo = conv.conv
    i = core.index(conv)
    before, after = core[:i], core[i + 1 :]
    w = _fold_scales(conv.weight.copy(), before, after)
    if w is None:
        return None
    pools_before = [op for op in before if op.pool is not None]
    pools_after = [op for op in after if op.pool is not None]
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
    return (w_eff, geo_eff) if _same_output(seq, source_shape, w_eff, geo_eff) else None


def _fold_scales(w: np.ndarray, before: list[Op], after: list[Op]) -> np.ndarray | None:
    """Conv weights with the chain's Scale ops folded in (a scalar before the conv, per output
    channel after it); None when another op or a finer scale sits there (pools are skipped)."""
    for op in after:
        if op.pool is not None:
            continue
        if not op.scales:
            return None
        if op.weight.size == 1:
            w = w * float(op.weight.ravel()[0])
            continue
        per_channel = np.broadcast_to(op.weight, op.in_shape).reshape(op.in_shape[0], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            return None
        w = w * per_channel[:, 0].reshape(-1, 1, 1, 1)
    for op in before:
        if op.scales and op.weight.size == 1:
            w = w * float(op.weight.ravel()[0])
        elif op.pool is None:
            return None
    return w


def _same_output(seq: list[Op], source_shape, w_eff: np.ndarray, geo_eff: ConvGeometry) -> bool:
    """The fused conv against the original chain, on a random input."""
    x = torch.as_tensor(np.random.default_rng(0).random((2, *source_shape)), dtype=torch.float64)
    ref = x
    for op in seq:
        ref = op.apply(ref)
    got = conv2d(x, torch.as_tensor(w_eff, dtype=torch.float64), geo_eff)
    return tuple(got.shape[1:]) == tuple(geo_eff.output_shape) and torch.allclose(
        got.reshape(2, -1), ref.reshape(2, -1), atol=1e-9, rtol=1e-9
    )


def _fuse_pool_conv(pool: Op, w: np.ndarray, geo: ConvGeometry):
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


def _fuse_conv_pool(w: np.ndarray, geo: ConvGeometry, pool: Op):
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
