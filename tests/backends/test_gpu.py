"""The CUDA paths against the CPU: the fixed-point backend bit for bit, the float backend's spikes exactly.

Without a CUDA device these tests skip; ``tools/gpu_check.py`` runs them on a GPU machine, with timings.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends import create_backend
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.semantics.discretization import Convention

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here: tools/gpu_check.py runs these on a GPU machine"
)


def lif_mlp(sizes, seed: int = 0) -> nir.NIRGraph:
    """A LIF MLP (dt 0.1 ms, tau 1 ms, r*dt/tau = 1) that spikes at a few percent on 10% input spikes."""
    rng = np.random.default_rng(seed)
    nodes, edges, src = {"input": nir.Input(np.array([sizes[0]]))}, [], "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        ones = np.ones(n_out, dtype=np.float32)
        w = rng.normal(0.2 / n_in, 2.0 / np.sqrt(n_in), size=(n_out, n_in)).astype(np.float32)
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=0 * ones)
        nodes[f"lif{i}"] = nir.LIF(tau=1e-3 * ones, r=10 * ones, v_leak=0 * ones, v_threshold=ones)
        edges += [(src, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        src = f"lif{i}"
    nodes["output"] = nir.Output(np.array([sizes[-1]]))
    return nir.NIRGraph(nodes=nodes, edges=[*edges, (src, "output")])


@pytest.fixture(scope="module", params=[(64, 128, 10), (784, 512, 512, 10)], ids=["small", "medium"])
def network(request):
    graph = lif_mlp(request.param)
    x = (np.random.default_rng(1).random((32, 24, request.param[0])) < 0.1).astype(np.float32)
    program, _ = compile_graph(graph, Convention(), calibration=x[:16])
    return graph, program, x


def test_fixed_point_on_cuda_is_bit_identical_to_the_cpu(network):
    _graph, program, x = network
    on_cpu = create_backend("cpu", program).run(x, record="all")
    on_gpu = create_backend("cpu", program, device="cuda").run(x, record="all")
    assert sorted(on_cpu.arrays) == sorted(on_gpu.arrays)
    assert sum(int(a.sum()) for k, a in on_cpu.arrays.items() if k.endswith(".spikes")) > 0
    for key, expected in on_cpu.arrays.items():
        np.testing.assert_array_equal(on_gpu.arrays[key], expected, err_msg=key)


def test_float_backend_on_cuda_spikes_as_on_the_cpu(network):
    graph, _program, x = network
    on_cpu = create_backend("float", graph, convention=Convention()).run(x, record="all")
    on_gpu = create_backend("float", graph, convention=Convention(), device="cuda").run(x, record="all")
    for key, expected in on_cpu.arrays.items():
        if key.endswith(".spikes"):
            np.testing.assert_array_equal(on_gpu.arrays[key], expected, err_msg=key)
        else:  # float32 sums in another order: the last bits differ
            np.testing.assert_allclose(on_gpu.arrays[key], expected, rtol=1e-5, atol=1e-5, err_msg=key)
