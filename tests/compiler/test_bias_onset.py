"""A population's bias waits for its synaptic input (``Population.bias_onset``), and a bias that NIR puts
into a neuron's current enters it through a tonic source: hand-computed traces on every backend, and
the compiled float program against the float reference of the NIR graph, delayed by the latency."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from neurocompile.backends.cpu import CpuBackend
from neurocompile.backends.float_ref import FloatReference
from neurocompile.compiler.float_program import float_program
from neurocompile.compiler.lif_mapping import tonic_source
from neurocompile.compiler.normalize import normalize
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.float_form import float_program_of

STEPS = 10


def onset_program(recurrent: bool) -> FixedPointProgram:
    """Two neurons that only integrate their bias (10 and -14 per step, no decay) from step 3 on; their
    input weights are zero. ``recurrent``: a zero-weight self-connection (the step-by-step schedule)."""
    pop = Population("p", (2,), du=4095, dv=0, vth=2**17 - 1, bias_mant=np.array([5, -7], np.int32), bias_exp=1)
    pop.bias_onset = 3
    synapses = [Synapse("in", "x", "p", "dense", np.zeros((2, 1), np.int32))]
    if recurrent:
        synapses.append(Synapse("self", "p", "p", "dense", np.zeros((2, 2), np.int32), recurrent=True))
    return FixedPointProgram([InputPort("x", (1,))], [pop], synapses, ["p"]).validate()


def expected_v() -> np.ndarray:
    """v by hand: 0 up to step 2, then one bias more every step."""
    steps_on = np.maximum(np.arange(STEPS) - 2, 0)
    return steps_on[:, None] * np.array([10, -14])


@pytest.mark.parametrize("recurrent", [False, True], ids=["layerwise", "stepwise"])
@pytest.mark.parametrize("neurons", ["c", "torch"])
def test_cpu_backend_holds_the_bias_until_its_onset(recurrent, neurons, monkeypatch):
    if neurons == "torch":
        monkeypatch.setattr("neurocompile.backends.cpu._kernel", False)  # no C kernel: the torch path
    rec = CpuBackend(onset_program(recurrent)).run(np.ones((1, STEPS, 1), np.uint8), record="all")
    assert rec.metadata["neuron_kernel"]["p"] == neurons
    np.testing.assert_array_equal(rec["p.v"][0], expected_v())
    np.testing.assert_array_equal(rec["p.u"][0], 0)


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_lava_holds_the_bias_until_its_onset_in_every_sample(tag):
    from neurocompile.backends.lava.backend import LavaBackend

    program = onset_program(False)
    if tag == "floating_pt":
        program = float_program_of(program)
    rec = LavaBackend(program, tag=tag).run(np.ones((2, STEPS, 1), np.uint8), record="all")
    for sample in range(2):  # the second sample starts over: the onset counts from each sample's start
        np.testing.assert_array_equal(rec["p.v"][sample], expected_v())


def cuba_graph(bias: np.ndarray) -> nir.NIRGraph:
    """Input -> zero weights + bias -> LIF (hidden, spikes on its bias alone) -> weights + ``bias`` -> CubaLI
    readout: the readout's bias rises through its current."""
    n_in, n_hid, n_out = 2, 3, len(bias)
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=np.zeros((n_hid, n_in)), bias=np.array([0.3, 0.45, 0.7])),
        "lif": nir.LIF(
            tau=np.full(n_hid, 4e-3), r=np.full(n_hid, 4.0), v_leak=np.zeros(n_hid), v_threshold=np.ones(n_hid)
        ),
        "fc2": nir.Affine(weight=np.full((n_out, n_hid), 0.2), bias=bias),
        "out": nir.CubaLI(
            tau_syn=np.full(n_out, 5e-3),
            tau_mem=np.full(n_out, 10e-3),
            r=np.ones(n_out),
            v_leak=np.zeros(n_out),
            w_in=np.ones(n_out),
        ),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_compiled_float_program_is_the_float_reference_delayed_by_its_latency():
    """Without rounding (the float program), every layer equals the NIR graph's float run shifted by its
    latency: the hidden LIF's bias starts at step 1, the readout's bias rises through its current from
    step 2 (a tonic source, its synapse one step late), as NIR's CubaLIF has it."""
    conv = Convention(dt=1e-3)
    graph = cuba_graph(np.array([0.5, -0.6]))
    x = np.zeros((1, 40, 2), np.float32)
    program = float_program(normalize(graph, conv))
    assert program.latency() == {"lif": 1, tonic_source("out"): 0, "out": 2}
    assert [p.bias_onset for p in program.populations] == [1, 0, 0]  # the readout's bias is in its current
    tonic = program.synapse("out.bias")
    assert tonic.source == tonic_source("out") and np.all(tonic.delays == 1)
    ours = CpuBackend(program).run(x, record="all")
    ref = FloatReference(graph, conv).run(x, record="all")
    assert ref["lif.spikes"].sum() > 0 and np.abs(ref["out.v"][0, -1]).min() > 0.1
    np.testing.assert_array_equal(ours["lif.spikes"][:, 1:], ref["lif.spikes"][:, :-1])
    np.testing.assert_allclose(ours["out.v"][:, 2:], ref["out.v"][:, :-2], rtol=1e-5, atol=1e-6)  # ref: float32


def test_compiled_fixed_point_program_holds_biases_back_and_feeds_the_current():
    graph = cuba_graph(np.array([0.5, -0.6]))
    program, report = compile_graph(graph, Convention(dt=1e-3))
    onsets = {p.name: p.bias_onset for p in program.populations}
    assert onsets == {"lif": 1, tonic_source("out"): 0, "out": 0}
    assert not np.any(program.population("out").bias_mant)
    assert any("tonic source" in note for layer in report.layers for note in layer.notes)
    rec = CpuBackend(program).run(np.zeros((1, 12, 2), np.uint8), record="all")
    assert rec[f"{tonic_source('out')}.spikes"].all()  # spikes every step
    u = rec["out.u"][0, :, 0]
    assert np.all(u[:2] == 0) and np.all(np.diff(u[2:]) > 0)  # the current rises from step 2 on


def test_bias_onset_start_is_lavas_stock_lif_and_the_hardware_path_refuses_a_held_bias():
    from neurocompile.backends.lava.backend import LavaBackend

    graph, conv = cuba_graph(np.array([0.5, -0.6])), Convention(dt=1e-3)
    program, _ = compile_graph(graph, conv, bias_onset="start")
    assert [p.bias_onset for p in program.populations] == [0, 0, 0]
    assert program.synapse("out.bias").delays is None  # the tonic input arrives at step 1
    held, _ = compile_graph(graph, conv)
    with pytest.raises(NeurocompileError, match="'lif' adds its bias from step 1, .*--bias-onset start"):
        LavaBackend(held, hardware=True).run(np.zeros((1, 4, 2), np.uint8))
    with pytest.raises(NeurocompileError, match="unknown bias onset 'never'"):
        compile_graph(graph, conv, bias_onset="never")


def test_simulate_drains_by_default_as_many_silent_steps_more_as_the_outputs_lag(tmp_path, capsys):
    from neurocompile import api
    from neurocompile.cli import main

    program, _ = compile_graph(cuba_graph(np.array([0.5, -0.6])), Convention(dt=1e-3))
    assert program.output_latency() == 2  # input -> lif -> out: one step per synapse
    x = (np.random.default_rng(0).random((2, 12, 2)) < 0.5).astype(np.uint8)
    drained = api.simulate(program, x, "cpu")
    plain = api.simulate(program, x, "cpu", drain=False)
    assert drained["out.v"].shape[1] == 14 and plain["out.v"].shape[1] == 12
    np.testing.assert_array_equal(drained["out.v"][:, :12], plain["out.v"])  # the first 12 steps are the run
    program.save(tmp_path / "p.ncp")
    np.save(tmp_path / "x.npy", x)
    args = ["simulate", str(tmp_path / "p.ncp"), "--backend", "cpu", "--input", str(tmp_path / "x.npy")]
    for flag, steps_run in (([], 14), (["--no-drain"], 12)):
        capsys.readouterr()
        assert main([*args, *flag, "--json", "--record", str(tmp_path / "rec.npz")]) in (0, None)
        report = json.loads(capsys.readouterr().out)
        assert (report["steps"], report["steps_run"]) == (12, steps_run)
        assert np.load(tmp_path / "rec.npz")["out.v"].shape[1] == steps_run
    assert main(args) in (0, None)
    assert "2 samples x 12 steps (+2 silent: the program's output latency)" in capsys.readouterr().out
