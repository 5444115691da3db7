"""What one synapse takes on the neuro cores of its target population, counted from shapes and nonzeros.

The mapper splits a population into contiguous ranges of neurons: ``edges[i]:edges[i + 1]`` (flat, C order)
on core ``i``. For one synapse into the population, :meth:`usage` gives per core the input axons (the
distinct sources that feed the core), the synaptic memory, the synapses held in memory and the connections
(the synaptic operations one spike of every source costs); :meth:`reach` gives per source neuron the
target cores it sends to (its output axons). Nothing here builds a matrix the size of the weights: dense
synapses are counted from shapes, sparse ones from their nonzeros one core's rows at a time, convolutions
from their geometry.

Memory model (an estimate: ``loihi2.SYNAPSES_PER_BLOCK`` to ``CONV_AXON_BITS``): an input axon holds its
synapses on the core in blocks of up to 64, each with a 10-bit header, rounded up to 64-bit words; a
synapse takes its weight bits, its delay bits (when the synapse has delays) and, when sparse, the index
of its target on the core. A dense synapse stores every weight; a sparse one its nonzeros; a convolution
stores its kernel once per core (the output channels on it) plus one word per input axon. Convolutions
count input rows as the span the kernel covers and all input columns unless the core holds part of a
single output row: an upper bound that is exact for a single neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocompile.hardware.loihi2 import (
    BLOCK_HEADER_BITS,
    CONV_AXON_BITS,
    MEMORY_WORD_BITS,
    MIN_INDEX_BITS,
    SYNAPSES_PER_BLOCK,
)
from neurocompile.ir.program import Synapse


@dataclass
class Usage:
    """Per core (one entry each): what synapses into a population take there."""

    in_axons: np.ndarray
    memory_bits: np.ndarray
    stored: np.ndarray
    connections: np.ndarray

    @classmethod
    def empty(cls, cores: int) -> Usage:
        return cls(*(np.zeros(cores, dtype=np.int64) for _ in range(4)))

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.in_axons + other.in_axons,
            self.memory_bits + other.memory_bits,
            self.stored + other.stored,
            self.connections + other.connections,
        )


def words(bits):
    """``bits`` rounded up to whole memory words, in bits."""
    word = MEMORY_WORD_BITS.value
    return -(-np.asarray(bits, dtype=np.int64) // word) * word


def axon_bits(n, bits_per_synapse) -> np.ndarray:
    """Memory of input axons that hold ``n`` synapses each: blocks of up to ``SYNAPSES_PER_BLOCK`` synapses
    of ``bits_per_synapse`` bits plus a header, each rounded up to whole words."""
    block, header = SYNAPSES_PER_BLOCK.value, BLOCK_HEADER_BITS.value
    full, rest = np.divmod(np.asarray(n, dtype=np.int64), block)
    per_synapse = np.asarray(bits_per_synapse, dtype=np.int64)
    return full * words(block * per_synapse + header) + np.where(rest > 0, words(rest * per_synapse + header), 0)


def index_bits(neurons) -> np.ndarray:
    """Bits that address a target among ``neurons`` on a core (at least ``MIN_INDEX_BITS``)."""
    needed = np.ceil(np.log2(np.maximum(np.asarray(neurons, dtype=np.float64), 1)))
    return np.maximum(needed.astype(np.int64), MIN_INDEX_BITS.value)


def synapse_bits(syn: Synapse) -> int:
    """Bits of one stored synapse besides its index: weight, and delay when the synapse has delays."""
    delay = int(syn.delays.max(initial=0)).bit_length() if syn.delays is not None else 0
    return int(syn.num_weight_bits) + delay


class Dense:
    """Every source feeds every target, and every weight is stored (zeros too)."""

    def __init__(self, syn: Synapse, n_source: int):
        self.n_source = n_source
        self.bits = synapse_bits(syn)

    def usage(self, edges: np.ndarray) -> Usage:
        sizes = np.diff(edges)
        axons = np.full(sizes.shape, self.n_source, dtype=np.int64)
        stored = sizes * self.n_source
        return Usage(axons, axons * axon_bits(sizes, self.bits), stored, stored)

    def alone(self, n_target: int) -> Usage:
        """:meth:`usage` with every neuron on a core of its own."""
        return self.usage(np.arange(n_target + 1))

    def reach(self, edges: np.ndarray) -> np.ndarray:
        return np.full(self.n_source, len(edges) - 1, dtype=np.int64)


class Sparse:
    """Only nonzero weights are stored, each with its target's index on the core."""

    def __init__(self, syn: Synapse, n_source: int):
        self.weights = np.asarray(syn.weights).reshape(-1, n_source)
        self.bits = synapse_bits(syn)

    def _blocks(self, edges: np.ndarray):
        """Per core: its row count and, per source, its nonzeros there."""
        for start, stop in zip(edges[:-1], edges[1:]):
            yield stop - start, np.count_nonzero(self.weights[start:stop], axis=0)

    def usage(self, edges: np.ndarray) -> Usage:
        cores = Usage.empty(len(edges) - 1)
        for i, (rows, counts) in enumerate(self._blocks(edges)):
            used = counts[counts > 0]
            cores.in_axons[i] = used.size
            cores.memory_bits[i] = axon_bits(used, self.bits + index_bits(rows)).sum()
            cores.stored[i] = cores.connections[i] = used.sum()
        return cores

    def alone(self, n_target: int) -> Usage:
        """:meth:`usage` with every neuron on a core of its own (each axon then holds one synapse)."""
        fan_in = np.count_nonzero(self.weights, axis=1).astype(np.int64)
        memory = fan_in * axon_bits(1, self.bits + index_bits(1))
        return Usage(fan_in, memory, fan_in, fan_in)

    def reach(self, edges: np.ndarray) -> np.ndarray:
        return sum((counts > 0).astype(np.int64) for _rows, counts in self._blocks(edges))


def _spans(n_out: int, kernel: int, stride: int, padding: int, dilation: int, n_in: int):
    """Per output row (or column): the first and last input row its kernel covers (clipped to the input) and
    how many of its kernel taps fall inside the input; and how many input rows some output row reads."""
    starts = np.arange(n_out) * stride - padding
    taps = starts[:, None] + np.arange(kernel)[None, :] * dilation
    lo = np.clip(starts, 0, n_in - 1)
    hi = np.clip(starts + (kernel - 1) * dilation, 0, n_in - 1)
    return lo, hi, ((taps >= 0) & (taps < n_in)).sum(axis=1), np.unique(taps[(taps >= 0) & (taps < n_in)]).size


class Conv:
    """A convolution: its kernel is shared by the neurons of a core, its input axons follow from the
    geometry (module doc: upper bounds, exact for one neuron); ``n_source`` is the geometry's input size."""

    def __init__(self, syn: Synapse, n_source: int):
        g = syn.conv
        self.c_in, self.h_in, self.w_in = g.input_shape
        self.c_out, self.h_out, self.w_out = g.output_shape
        kh, kw = syn.weights.shape[2:]
        self.in_per_group, self.out_per_group = self.c_in // g.groups, self.c_out // g.groups
        self.kernel = self.in_per_group * kh * kw  # weights per output channel
        self.bits = synapse_bits(syn)
        self.row_lo, self.row_hi, self.row_taps, _ = _spans(
            self.h_out, kh, g.stride[0], g.padding[0], g.dilation[0], self.h_in
        )
        self.col_lo, self.col_hi, self.col_taps, self.columns = _spans(
            self.w_out, kw, g.stride[1], g.padding[1], g.dilation[1], self.w_in
        )
        fan_in = self.in_per_group * self.row_taps[:, None] * self.col_taps[None, :]
        self.connections = np.concatenate([[0], np.cumsum(np.tile(fan_in.ravel(), self.c_out))])

    def _positions(self, flat: np.ndarray):
        """Output channel, row and column of flat output indices."""
        channel, rest = np.divmod(flat, self.h_out * self.w_out)
        return channel, *np.divmod(rest, self.w_out)

    def _input_rows(self, ca, ya, cb, yb) -> np.ndarray:
        """Input rows feeding the output range from channel ``ca``, row ``ya`` to channel ``cb``, row ``yb``, per core."""
        top = self.h_out - 1
        one_row = (ca == cb) & (ya == yb)
        same = np.where(one_row, self.row_taps[ya], self.row_hi[yb] - self.row_lo[ya] + 1)
        # two channels: the tail of one ([ya, top]) and the head of the next ([0, yb])
        tail = self.row_hi[top] - self.row_lo[ya] + 1
        head = self.row_hi[yb] - self.row_lo[0] + 1
        two = tail + head - np.maximum(self.row_hi[yb] - self.row_lo[ya] + 1, 0)
        whole = self.row_hi[top] - self.row_lo[0] + 1
        return np.where(ca == cb, same, np.where(cb == ca + 1, two, whole))

    def _input_columns(self, one_row, xa, xb) -> np.ndarray:
        single = np.where(xa == xb, self.col_taps[xa], self.col_hi[xb] - self.col_lo[xa] + 1)
        return np.where(one_row, single, self.columns)

    def usage(self, edges: np.ndarray) -> Usage:
        ca, ya, xa = self._positions(edges[:-1])
        cb, yb, xb = self._positions(edges[1:] - 1)
        groups = cb // self.out_per_group - ca // self.out_per_group + 1
        rows = self._input_rows(ca, ya, cb, yb)
        columns = self._input_columns((ca == cb) & (ya == yb), xa, xb)
        axons = (groups * self.in_per_group * rows * columns).astype(np.int64)
        stored = (cb - ca + 1) * self.kernel
        memory = stored * self.bits + axons * CONV_AXON_BITS.value
        return Usage(axons, memory, stored, self.connections[edges[1:]] - self.connections[edges[:-1]])

    def alone(self, n_target: int) -> Usage:
        """:meth:`usage` with every neuron on a core of its own."""
        return self.usage(np.arange(n_target + 1))

    def reach(self, edges: np.ndarray) -> np.ndarray:
        """Per source neuron, the target cores holding outputs its input row feeds (all columns of those
        output rows: an upper bound)."""
        rows = np.arange(self.h_in)
        first = np.searchsorted(self.row_hi, rows, side="left")  # output rows whose span reaches this row
        last = np.searchsorted(self.row_lo, rows, side="right") - 1
        plane = self.h_out * self.w_out
        channels = np.arange(self.c_out)[None, :] * plane
        start = channels + (first * self.w_out)[:, None]
        stop = channels + (last * self.w_out + self.w_out - 1)[:, None]
        first_core = np.searchsorted(edges, start, side="right") - 1
        last_core = np.searchsorted(edges, stop, side="right") - 1
        per_group = []
        for group in range(self.c_out // self.out_per_group):
            span = slice(group * self.out_per_group, (group + 1) * self.out_per_group)
            f, la = first_core[:, span], last_core[:, span]
            shared = (f[:, 1:] == la[:, :-1]).sum(axis=1)  # a core holding the end of one channel, start of the next
            per_group.append(np.where(first <= last, (la - f + 1).sum(axis=1) - shared, 0))
        by_row = np.repeat(np.stack(per_group), self.in_per_group, axis=0)  # [c_in, h_in]
        return np.repeat(by_row[:, :, None], self.w_in, axis=2).ravel().astype(np.int64)


KINDS = {"dense": Dense, "sparse": Sparse, "conv": Conv}


def connectivity(syn: Synapse, n_source: int) -> Dense | Sparse | Conv:
    """The counting object for a synapse of ``n_source`` sources."""
    return KINDS[syn.kind](syn, n_source)
