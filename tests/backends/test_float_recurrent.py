"""A recurrent back-edge at step 0 (issue 13): before step 0 every input and state is zero, so the
back-edge delivers its source's value on zeros: a recurrent Affine's bias, zero spikes from a neuron.
snnTorch's RLeaky (``recurrent(spk=0)`` is its bias), the fixed-point program (biases folded into a
constant neuron input), the ONNX step and the PyTorch ``Recurrent`` layer all agree with the float
backend on it."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends.cpu import CpuBackend
from neurocompile.backends.float_ref import FloatReference
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.frontend.nir_io import load_graph
from neurocompile.models.architectures import RecurrentNet
from neurocompile.onnx.step import initial_states, step_graph
from neurocompile.semantics.discretization import Convention, get_convention
from tests.frontend.test_torch_export import assert_same, lively, round_trip
from tests.onnx.test_onnx_step import assert_matches_float

RLEAKY = Path(__file__).resolve().parents[1] / "fixtures" / "peers" / "snntorch" / "rleaky_mlp"


def rleaky():
    """The fixture's graph, input [batch, time, 16], native spikes per node, and its convention: snnTorch 1.0
    (reset by subtraction) with ``reset_delay=False`` (tools/peer_table.py: CASE_OPTIONS)."""
    meta = json.loads((RLEAKY / "meta.json").read_text())
    assert meta["reset"] == "subtract" and "reset_delay=False" in meta["built"]
    conv = get_convention("snntorch-1.0", reset_timing="snntorch-immediate")
    native = dict(np.load(RLEAKY / "spikes.npz"))
    return load_graph(RLEAKY / "model.nir"), np.load(RLEAKY / "input.npy").astype(np.float32), native, conv


def test_snntorch_rleaky_fixture_spikes_exactly():
    """RLeaky with a recurrent bias, reset_delay=False: every native spike, every layer."""
    graph, x, native, conv = rleaky()
    recording = FloatReference(graph, conv).run(x, record="all")
    assert recording.metadata["recurrent_edges"] == [["1.w_rec", "1.lif"]]
    for node, spikes in native.items():
        key = f"{recording.outputs[0] if node == 'output' else node}.spikes"
        np.testing.assert_array_equal(recording[key].reshape(spikes.shape), spikes, err_msg=node)


def bias_driven():
    """input -> fc (zero weights) -> lif <-> rec: the neurons are driven by the recurrent bias alone."""
    n = 2
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n])}),
        "fc": nir.Linear(weight=np.zeros((n, n))),
        "lif": nir.LIF(
            tau=np.full(n, 8e-4), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)
        ),
        "rec": nir.Affine(weight=np.array([[-2.0, 0.0], [0.0, 0.0]]), bias=np.array([5.0, 3.0])),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def hand_computed(steps: int):
    """v <- v + dt/tau*(b + W s_prev - v), dt/tau = 1/8 (exact in fixed point too); spike on v > 1, reset to 0."""
    bias, weight = [5.0, 3.0], [-2.0, 0.0]
    v, s = [0.0, 0.0], [0.0, 0.0]
    spikes, voltages = [], []
    for _ in range(steps):
        v = [v[k] + (bias[k] + weight[k] * s[k] - v[k]) / 8 for k in range(2)]
        s = [float(v[k] > 1.0) for k in range(2)]
        v = [0.0 if s[k] else v[k] for k in range(2)]
        spikes.append(s)
        voltages.append(v)
    return np.array(spikes), np.array(voltages)


def test_back_edge_delivers_the_recurrent_bias_at_step_0():
    x = np.zeros((1, 12, 2))
    recording = FloatReference(bias_driven(), dtype=torch.float64).run(x, record="all")
    spikes, voltages = hand_computed(12)
    assert voltages[0].tolist() == [0.625, 0.375]  # the bias already acts at step 0
    np.testing.assert_array_equal(recording["lif.spikes"][0], spikes)
    np.testing.assert_allclose(recording["lif.v"][0], voltages)
    np.testing.assert_allclose(recording["rec.out"][0, 0], [5.0, 3.0])  # step 0's output, read at step 1
    assert spikes[:, 0].nonzero()[0].tolist() == [1, 4, 7, 10] and spikes[:, 1].nonzero()[0].tolist() == [3, 7, 11]


def test_fixed_point_is_the_float_run_delayed_by_its_latency_with_a_recurrent_bias():
    """No input: the recurrent Affine's bias starts when the population's input would arrive (its latency,
    one step), so the spikes are the float run's one step later."""
    x = np.zeros((1, 12, 2), np.float32)
    program, _ = compile_graph(bias_driven(), Convention())
    assert program.latency()["lif"] == 1
    fixed = CpuBackend(program).run(x, record="all")
    floating = FloatReference(bias_driven()).run(x, record="all")
    assert not fixed["lif.spikes"][0, 0].any()
    np.testing.assert_array_equal(fixed["lif.spikes"][0, 1:], hand_computed(11)[0])
    np.testing.assert_array_equal(fixed["lif.spikes"][:, 1:], floating["lif.spikes"][:, :-1])


def test_onnx_step_starts_the_back_edge_state_at_the_bias():
    model = step_graph(bias_driven())
    np.testing.assert_array_equal(initial_states(model, 3)["rec.out"], np.tile([5.0, 3.0], (3, 1)))
    assert not initial_states(model, 3)["lif.v"].any()
    assert_matches_float(bias_driven(), Convention(), np.zeros((2, 12, 2), np.float32))
    graph, x, _, conv = rleaky()
    assert_matches_float(graph, conv, x)


@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_pytorch_recurrent_layer_adds_its_bias_at_step_0_like_the_export(neuron):
    torch.manual_seed(0)
    model = RecurrentNet(n_in=8, n_hidden=6, n_out=3, neuron=neuron)
    layer = getattr(model, f"{neuron.lower()}1")
    layer.rec = torch.nn.Linear(6, 6, bias=True)
    model = lively(model)
    _, out, trace, graph, recording = round_trip(model)
    assert isinstance(graph.nodes[f"{neuron.lower()}1_rec"], nir.Affine)
    assert_same(out, trace, recording)
