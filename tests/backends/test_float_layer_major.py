"""The float backend's two schedules (issue 14): layer-major for graphs without back-edges (stateless
nodes over all steps at once, neurons through time in the C kernel or a block of samples at a time), step-major
with back-edges. Same contract: same spikes, values within float32 rounding of the summation order,
the same synaptic operation counts, and float64 as the oracle. Nothing here is timed."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends import float_ref
from neurocompile.backends.float_ref import FloatReference
from neurocompile.semantics.discretization import get_convention


def lif(n, rng, threshold=(0.5, 1.5)):
    return nir.LIF(
        tau=rng.uniform(5e-4, 2e-3, n),
        r=np.full(n, 10.0),
        v_leak=np.zeros(n),
        v_threshold=rng.uniform(*threshold, n),
        v_reset=np.zeros(n),
    )


def mlp(sizes, seed=0, eighths=False, silent_recurrence=False):
    """input -> (fc_k -> lif_k)... -> output; ``silent_recurrence`` adds a zero recurrent Linear on the
    first layer: a back-edge that changes no value but makes the graph run step-major."""
    rng = np.random.default_rng(seed)
    nodes, edges, src = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}, [], "input"
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 1.2 / np.sqrt(n_in * 0.3), (n_out, n_in))
        w = np.round(w * 8) / 8 if eighths else w
        nodes[f"fc{k}"] = nir.Affine(weight=w, bias=np.round(rng.normal(0, 0.1, n_out) * 8) / 8)
        nodes[f"lif{k}"] = lif(n_out, rng)
        edges += [(src, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        src = f"lif{k}"
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((src, "output"))
    if silent_recurrence:
        nodes["rec"] = nir.Linear(weight=np.zeros((sizes[1], sizes[1])))
        edges += [("lif0", "rec"), ("rec", "lif0")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def spikes_in(shape, steps=20, batch=5, rate=0.3, seed=1):
    return (np.random.default_rng(seed).random((batch, steps, *shape)) < rate).astype(np.float32)


def assert_same_run(a, b, exact: bool):
    assert a.arrays.keys() <= b.arrays.keys()
    for key, value in a.arrays.items():
        if key.endswith(".spikes") or exact:
            np.testing.assert_array_equal(value, b[key], err_msg=key)
        else:
            np.testing.assert_allclose(value, b[key], rtol=0, atol=1e-5 * max(1.0, np.abs(value).max()), err_msg=key)


@pytest.mark.parametrize("eighths", [True, False])
def test_layer_major_equals_step_major(eighths):
    x = spikes_in([12])
    layer = FloatReference(mlp([12, 16, 8, 4], eighths=eighths)).run(x, record="all")
    step_ref = FloatReference(mlp([12, 16, 8, 4], eighths=eighths, silent_recurrence=True))
    assert step_ref.recurrent_edges == [("rec", "lif0")] and FloatReference(mlp([12, 16, 8, 4])).back_edges == set()
    step = step_ref.run(x, record="all")
    assert_same_run(layer, step, exact=eighths)  # eighths: exact sums in any order, the same bits
    synops = step.metadata["synops"]
    assert layer.metadata["synops"] == {k: v for k, v in synops.items() if k != "rec"}
    assert all(layer[f"lif{k}.spikes"].any() for k in range(3))


def test_blocks_of_samples_give_the_whole_batch(monkeypatch):
    """Without the C kernel a neuron steps through time a block at a time: blocks of 2 samples (the last
    one short) change nothing."""
    monkeypatch.setattr(float_ref, "load_kernel", lambda: None)
    graph, x = mlp([6, 10, 3]), spikes_in([6], batch=7)
    whole = FloatReference(graph).run(x, record="all")
    monkeypatch.setattr(float_ref, "BLOCK_VALUES", 20)  # 2 samples of 10 neurons
    assert_same_run(whole, FloatReference(graph).run(x, record="all"), exact=True)


def test_chunks_of_rows_give_the_whole_run(monkeypatch):
    """Stateless nodes map their rows a chunk at a time: chunks of 4 rows, then of 1 (sized by the first
    chunk's output), change nothing (weights in eighths: exact sums in any order)."""
    graph, x = mlp([6, 10, 3], eighths=True), spikes_in([6], batch=7)
    whole = FloatReference(graph).run(x, record="all")
    monkeypatch.setattr(float_ref, "CHUNK_BYTES", 100)  # 6 float32 inputs per row: 4 rows, then 1
    chunked = FloatReference(graph).run(x, record="all")
    assert_same_run(whole, chunked, exact=True)
    assert chunked.metadata["synops"] == whole.metadata["synops"]


def test_float32_is_within_summation_rounding_of_float64():
    graph, x = mlp([64, 48, 10], seed=3), spikes_in([64], steps=30, batch=8)
    single = FloatReference(graph).run(x, record="all")
    double = FloatReference(graph, dtype=torch.float64).run(x.astype(np.float64), record="all")
    assert_same_run(single, double, exact=False)
    assert single["lif0.v"].dtype == np.float32 and double["lif0.v"].dtype == np.float64


def test_layer_major_delay_conv_and_a_node_without_input():
    """Stateful nodes other than neurons (Delay), convolutions over steps*batch, a 0-d 'no input'."""
    rng = np.random.default_rng(0)
    conv = nir.Conv2d(
        input_shape=(5, 5), weight=rng.normal(0, 1, (2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
        bias=np.zeros(2),
    )  # fmt: skip
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 5, 5])}),
        "conv": conv,
        "delay": nir.Delay(delay=np.full((2, 5, 5), 2e-4)),
        "if": nir.IF(r=np.full((2, 5, 5), 1.0), v_threshold=np.ones((2, 5, 5)), v_reset=np.zeros((2, 5, 5))),
        "idle": nir.Delay(delay=np.array([1e-4])),
        "output": nir.Output(output_type={"output": np.array([2, 5, 5])}),
    }
    edges = [("input", "conv"), ("conv", "delay"), ("delay", "if"), ("if", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    x = spikes_in([1, 5, 5], steps=6, batch=3)
    rec = FloatReference(graph, get_convention("sinabs"), dtype=torch.float64).run(x, record="all")
    np.testing.assert_array_equal(rec["delay.out"][:, 2:], rec["conv.out"][:, :-2])
    assert not rec["delay.out"][:, :2].any() and rec["if.spikes"].any()
    assert rec["idle.out"].shape[:2] == (3, 6) and not rec["idle.out"].any()
    assert rec.metadata["synops"]["conv"] > 0


def test_outputs_only_by_default():
    rec = FloatReference(mlp([5, 4])).run(spikes_in([5]), record=None)
    assert set(rec.arrays) == {"lif0.spikes"} and rec["lif0.spikes"].shape == (5, 20, 4)
