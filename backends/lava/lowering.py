"""How program elements become Lava processes: Lava's layout of 3-D nodes, connection processes,
and the taps that stream recordings to the host (``docs/lava-backend.md``)."""

from __future__ import annotations

import numpy as np

from neurocompile.ir.program import Synapse
from neurocompile.semantics import fixedpoint as fxp


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava shape of a node: (C, H, W) becomes (W, H, C); anything else is flat (n,)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape[::-1]
    return (int(np.prod(shape)),)


def to_lava(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``[..., *shape]`` in program layout -> ``[..., *lava_shape(shape)]``."""
    lead = arr.shape[: arr.ndim - len(shape)]
    if len(shape) == 3:
        k = len(lead)
        return np.transpose(arr, tuple(range(k)) + (k + 2, k + 1, k))
    return arr.reshape(lead + lava_shape(shape))


def from_lava(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``[..., *lava_shape(shape)]`` -> ``[..., *shape]`` in program layout."""
    lshape = lava_shape(shape)
    lead = arr.shape[: arr.ndim - len(lshape)]
    if len(shape) == 3:
        k = len(lead)
        return np.transpose(arr, tuple(range(k)) + (k + 2, k + 1, k))
    return arr.reshape(lead + tuple(shape))


def lava_order(shape: tuple[int, ...]) -> np.ndarray:
    """For each position of the Lava-flattened node, its index in program (C-order) flattening."""
    n = int(np.prod(shape))
    return to_lava(np.arange(n).reshape(shape), tuple(shape)).ravel()


def conv_as_matrix(syn: Synapse):
    """The conv synapse as a scipy CSR [n_target, n_source] matrix in *program* flattening."""
    from scipy.sparse import coo_matrix

    rows, cols, vals = fxp.conv_connections(syn.weights, syn.conv)
    shape = (int(np.prod(syn.conv.output_shape)), int(np.prod(syn.conv.input_shape)))
    return coo_matrix((vals, (rows, cols)), shape=shape).tocsr()


def connect(src, conn, dst, src_shape, dst_shape) -> None:
    """``src -> conn -> dst`` through Lava's flatten()/reshape() virtual ports where a node is 3-D."""
    (src.flatten() if len(lava_shape(src_shape)) > 1 else src).connect(conn.s_in)
    out = conn.a_out.reshape(lava_shape(dst_shape)) if len(lava_shape(dst_shape)) > 1 else conn.a_out
    out.connect(dst)


def lower_taps(pops: dict, record: dict[str, set[str]], run_steps: int) -> dict:
    """Recording -> ``SpikeTap`` on ``s_out`` and ``StateTap`` on ``u``/``v``: ``{(name, var): tap}``."""
    from neurocompile.backends.lava.processes import SpikeTap, StateTap

    taps = {}
    buffer = max(2, min(run_steps, 64))
    for name, variables in record.items():
        lif = pops[name]
        if "spikes" in variables:
            tap = SpikeTap(shape=lif.s_out.shape, buffer_size=buffer)
            lif.s_out.connect(tap.in_port)
            taps[(name, "spikes")] = tap
        for var in ("u", "v"):
            if var in variables:
                taps[(name, var)] = StateTap(getattr(lif, var), buffer_size=buffer)
    return taps


def connection_process(syn: Synapse, matrix, delays, sparse: bool, kw: dict):
    """The Lava process of a dense/sparse synapse: Dense, Sparse, DelayDense or DelaySparse."""
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix

    if sparse:
        matrix = csr_matrix(matrix)
        matrix.sort_indices()
    if delays is None:
        return (Sparse if sparse else Dense)(weights=matrix, name=syn.name, **kw)
    # Lava checks `delays.dtype == int`; max_delay 0 would make Lava use max(delays).
    max_delay = max(int(np.max(delays)) if delays.size else 0, 1)
    if sparse:
        rows, cols = matrix.nonzero()
        dmat = csr_matrix((np.asarray(delays)[rows, cols].astype(int), (rows, cols)), shape=matrix.shape)
        return DelaySparse(weights=matrix, delays=dmat, max_delay=max_delay, name=syn.name, **kw)
    return DelayDense(weights=matrix, delays=np.asarray(delays).astype(int), max_delay=max_delay, name=syn.name, **kw)
