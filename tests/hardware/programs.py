"""Small programs for the mapping tests, built by hand: dense, sparse and conv layers of known shapes."""

from __future__ import annotations

import numpy as np

from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse


def population(name: str, shape, **fields) -> Population:
    return Population(name, tuple(shape), du=0, dv=0, vth=100, bias_mant=np.zeros((), dtype=np.int32), **fields)


def chain(layers, n_in: int, kind: str = "dense", weights=None, **synapse_fields) -> FixedPointProgram:
    """Input ``x`` of ``n_in`` -> populations of the sizes in ``layers``, dense (or ``kind``) synapses of ones
    (or ``weights(n_target, n_source)``)."""
    pops, syns, source, n_source = [], [], "x", n_in
    for i, size in enumerate(layers):
        w = weights(size, n_source) if weights else np.ones((size, n_source), dtype=np.int32)
        pops.append(population(f"l{i}", (size,)))
        syns.append(Synapse(f"w{i}", source, f"l{i}", kind, w, **synapse_fields))
        source, n_source = f"l{i}", size
    return FixedPointProgram([InputPort("x", (n_in,))], pops, syns, [source])


def conv(input_shape, channels: int, kernel: int, padding: int = 0, stride: int = 1, groups: int = 1, weight=1):
    """Input ``x`` -> one conv layer ``c`` of ``channels`` output channels (weights all ``weight``)."""
    c_in, h, w = input_shape
    out = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    geometry = ConvGeometry(tuple(input_shape), (channels, *out), (stride, stride), (padding, padding), (1, 1), groups)
    weights = np.full((channels, c_in // groups, kernel, kernel), weight, dtype=np.int32)
    syn = Synapse("k", "x", "c", "conv", weights, conv=geometry)
    return FixedPointProgram([InputPort("x", tuple(input_shape))], [population("c", (channels, *out))], [syn], ["c"])
