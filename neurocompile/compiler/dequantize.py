"""A program's integer weights back in its source NIR graph, as floats: the float network with the chip's
weights (what on-chip learning produced; the bound that 8-bit weights set on fidelity)."""

from __future__ import annotations

import copy

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics import fixedpoint as fxp


def with_program_weights(graph, deployed: FixedPointProgram, weights: dict[str, np.ndarray]):
    """``graph`` (the model ``deployed`` was compiled from) with the weights of the program synapses named in
    ``weights`` (integers in the program's layout, before ``weight_exp``), dequantized.

    A program synapse ``a->b`` is the graph's ``Affine``, ``Linear`` or ``Conv2d`` node between neurons ``a`` and
    ``b``. Each row's (output channel's) integer-to-float factor is measured on the compiled weights: the
    least-squares ``f_i`` with ``deployed_i * 2**weight_exp ~= f_i * W_i`` (the quantizer's per-neuron scale), so
    ``W_i' = weights_i * 2**weight_exp / f_i``. A row the compiler mapped to zeros keeps its weights; biases are
    unchanged. ``graph`` is not modified."""
    result = copy.deepcopy(graph)
    for name, new in weights.items():
        syn = deployed.synapse(name)
        node_name = _weight_node_between(result, syn.source, syn.target)
        node = result.nodes[node_name]
        original = np.asarray(node.weight, dtype=np.float64)
        scale = 2.0**syn.weight_exp
        compiled = np.asarray(syn.weights, dtype=np.float64) * scale
        if original.shape != compiled.shape:
            raise NeurocompileError(
                f"dequantize: node '{node_name}' has weights {original.shape}, the program {compiled.shape}"
            )
        rows, flat = original.reshape(len(original), -1), compiled.reshape(len(compiled), -1)
        norm = (rows**2).sum(axis=1)
        factor = np.divide((flat * rows).sum(axis=1), norm, out=np.zeros_like(norm), where=norm > 0)
        new_rows = np.asarray(new, dtype=np.float64).reshape(flat.shape) * scale
        dequantized = np.where(factor[:, None] != 0, new_rows / np.where(factor == 0, 1, factor)[:, None], rows)
        node.weight = dequantized.reshape(original.shape)
    return result


def effective_weight_graph(graph, program: FixedPointProgram):
    """``graph`` with the weights the chip multiplies with (``fixedpoint.synapse_weights``: clipped and truncated
    as Lava does), dequantized: the float network that differs from the source only by 8-bit weights (with
    ``split_weights``, the sum of both parts). Synapses with no weight node of their own in ``graph`` (a bias's
    tonic source) are left out."""
    weights = {}
    for syn in program.synapses:  # a split synapse's fine part adds to its coarse part, the first between the pair
        if len(_weight_nodes_between(graph, syn.source, syn.target)) != 1:
            continue
        coarse = next(s for s in program.synapses if (s.source, s.target) == (syn.source, syn.target))
        part = fxp.synapse_weights(syn) * 2.0 ** (syn.weight_exp - coarse.weight_exp)
        weights[coarse.name] = weights.get(coarse.name, 0) + part
    return with_program_weights(graph, program, weights)


def _weight_node_between(graph, source: str, target: str) -> str:
    """The one Affine/Linear/Conv2d node with edges ``source -> node -> target``."""
    found = _weight_nodes_between(graph, source, target)
    if len(found) != 1:
        raise NeurocompileError(
            f"dequantize: no single Affine/Linear/Conv2d node between '{source}' and '{target}' in the source graph"
        )
    return found[0]


def _weight_nodes_between(graph, source: str, target: str) -> list[str]:
    import nir

    return [
        name
        for name, node in graph.nodes.items()
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d))
        and (source, name) in graph.edges
        and (name, target) in graph.edges
    ]
