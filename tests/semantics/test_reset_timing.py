"""snnTorch 1.0's reset timings in the integer LIF (``Population.reset_timing``, ``fixedpoint.timed_fire``).

Oracles: hand arithmetic; snnTorch's own equations as the float discretization states them
(``discretization._fire``, tested against snnTorch in ``tests/peers``) on integer inputs, where the integer
LIF with ``du = 4095, dv = 0`` is exact; Lava's fixed_pt and floating_pt models of
``processes.LIFExtended`` (every spike, u and v); snnTorch itself (``tests/peers/test_peer_snntorch.py``).
The random programs of ``tests/helpers/program_strategies.py`` draw these timings too, so the C kernel tests and
``tests/backends/lava/test_lava_backend.py`` (``EXTENSIONS``) compare them with Lava.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocompile.analysis.inspection import describe_program, format_program
from neurocompile.backends.cpu import CpuBackend
from neurocompile.errors import NeurocompileError
from neurocompile.hardware.loihi2 import extensions
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import discretization as D
from neurocompile.semantics import fixedpoint as fxp
from tests.helpers.plastic_programs import plastic_program, stream

TIMINGS = ("snntorch-delayed", "snntorch-immediate")
TH = 6400  # vth = 100


def one_neuron(reset: str, timing: str, source_type: str = "LIF") -> FixedPointProgram:
    """x -> p, weight 150: du = 4095 keeps no u (u = a_in << 6 = 9600 while x spikes), dv = 0 keeps all of v,
    vth = 100 (spike when v > 6400)."""
    pop = Population(
        "p", (1,), du=4095, dv=0, vth=100, bias_mant=np.int32(0), reset=reset, reset_timing=timing,
        source_type=source_type,
    )  # fmt: skip
    syn = Synapse("s", "x", "p", "dense", np.array([[150]], np.int32))
    return FixedPointProgram([InputPort("x", (1,))], [pop], [syn], ["p"]).validate()


# x spikes at steps 0-2 (its input arrives at steps 1-3), then stays silent: u = 0, 9600, 9600, 9600, 0, ...
X = np.array([1, 1, 1, 0, 0, 0, 0], np.uint8).reshape(1, 7, 1)
HAND = {  # (reset, timing): (spikes, v) at steps 0..6
    # same step: 9600 -> spike -> 3200; 12800 -> 6400; 16000 -> 9600; 9600 -> 3200; 3200 ...
    ("subtract", "same-step"): ([0, 1, 1, 1, 1, 0, 0], [0, 3200, 6400, 9600, 3200, 3200, 3200]),
    # delayed: 9600 spikes and stays; 9600 + 9600 - 6400 = 12800; 16000; 16000 - 6400 = 9600 (spikes);
    # 9600 - 6400 = 3200; 3200
    ("subtract", "snntorch-delayed"): ([0, 1, 1, 1, 1, 0, 0], [0, 9600, 12800, 16000, 9600, 3200, 3200]),
    # immediate: as the same step until the stored v (9600) exceeds the threshold without input: then
    # 9600 - 6400 = 3200 does not spike, and v - th*(0 - 1) puts 9600 back: it never spikes again
    ("subtract", "snntorch-immediate"): ([0, 1, 1, 1, 0, 0, 0], [0, 3200, 6400, 9600, 9600, 9600, 9600]),
    # zero, delayed (Leaky): the stored spiking v is zeroed before the next step: 9600 (s), 0 + 9600 (s), ...
    ("zero", "snntorch-delayed"): ([0, 1, 1, 1, 0, 0, 0], [0, 9600, 9600, 9600, 0, 0, 0]),
}


@pytest.mark.parametrize("reset,timing", sorted(HAND))
def test_hand_computed_one_neuron(reset, timing):
    rec = CpuBackend(one_neuron(reset, timing)).run(X, record="all")
    spikes, v = HAND[reset, timing]
    assert rec["p.spikes"][0, :, 0].tolist() == spikes
    assert rec["p.v"][0, :, 0].tolist() == v


def test_zero_reset_of_a_synaptic_neuron_zeroes_the_stepped_membrane():
    """snnTorch's Synaptic zeroes the membrane after the update (CubaLIF populations): a neuron that spiked
    cannot spike in the next step; Leaky zeroes before it and can."""
    rec = CpuBackend(one_neuron("zero", "snntorch-delayed", "CubaLIF")).run(X, record="all")
    assert rec["p.spikes"][0, :, 0].tolist() == [0, 1, 0, 1, 0, 0, 0]
    assert rec["p.v"][0, :, 0].tolist() == [0, 9600, 0, 9600, 0, 0, 0]


def _integer_run(a_in, reset, timing, synaptic):
    u = v = np.zeros(a_in.shape[1], np.int64)
    spikes, volts = [], []
    for a in a_in:
        s, u, v = fxp.lif_fixed_step(a, u, v, 4095, 0, 100, 0, reset=reset, timing=timing, synaptic=synaptic)
        spikes.append(s), volts.append(v)
    return np.array(spikes), np.array(volts)


def _snntorch_run(a_in, reset, timing, synaptic):
    conv = D.Convention(reset=reset, reset_timing=timing)
    v = torch.zeros(a_in.shape[1], dtype=torch.float64)
    spikes, volts = [], []
    for a in torch.as_tensor(a_in * 64.0):
        s, v = D._fire(v, lambda v, a=a: v + a, TH, 0.0, conv, False, synaptic=synaptic)
        spikes.append(s.numpy()), volts.append(v.numpy())
    return np.array(spikes), np.array(volts)


@pytest.mark.parametrize("synaptic", [False, True])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("timing", TIMINGS)
def test_integer_timings_are_snntorchs_equations(timing, reset, synaptic):
    """Random integer inputs (negative too) over 60 steps: every spike and v of the integer LIF equal snnTorch's
    equations run in float64 (exact on these integers)."""
    a_in = np.random.default_rng(7).integers(-150, 300, size=(60, 200))
    spikes, v = _integer_run(a_in, reset, timing, synaptic)
    want_spikes, want_v = _snntorch_run(a_in, reset, timing, synaptic)
    assert spikes.sum() > 500
    np.testing.assert_array_equal(spikes, want_spikes != 0)
    np.testing.assert_array_equal(v, want_v)


def test_timed_populations_are_validated_saved_and_named(tmp_path):
    program = one_neuron("subtract", "snntorch-delayed")
    program.save(tmp_path / "p.ncp")
    loaded = FixedPointProgram.load(tmp_path / "p.ncp")
    assert loaded.population("p").reset_timing == "snntorch-delayed"
    assert "subtract, snntorch-delayed" in format_program(describe_program(loaded))
    assert extensions(program.population("p")) == ["resets by subtraction", "resets with snntorch delayed timing"]
    with pytest.raises(NeurocompileError, match="parameter 'reset_timing': must be one of") as info:
        one_neuron("zero", "later")
    assert "\n" not in str(info.value)
    readout = Population("r", (1,), du=0, dv=0, vth=1, bias_mant=np.int32(0), spiking=False, reset_timing=TIMINGS[0])
    with pytest.raises(NeurocompileError, match="a readout never resets"):
        readout.validate()
    learning = plastic_program()
    learning.population("out").reset_timing = "snntorch-delayed"
    with pytest.raises(NeurocompileError, match="a learning population resets in the same step"):
        learning.validate()


def test_a_plastic_program_with_a_timed_hidden_layer_runs_snntorchs_equations():
    program = plastic_program(n_hidden=4, vth=20)  # "hid" does not learn
    program.population("hid").reset_timing = "snntorch-delayed"
    program.population("hid").reset = "subtract"
    data = stream(program, 40, seed=1)
    rec = CpuBackend(program.validate()).run(data, record="all")
    assert rec.metadata["learning_kernel"] == "reference"
    a_in = np.zeros((40, 4), np.int64)  # what reaches "hid": its input synapse, one step late
    syn = next(s for s in program.synapses if s.target == "hid")
    a_in[1:] = fxp.dense_activation(data["x"][0, :-1], fxp.synapse_weights(syn), syn.weight_exp)
    u = v = np.zeros(4, np.int64)
    hid = program.population("hid")
    for t in range(40):
        s, u, v = fxp.lif_fixed_step(a_in[t], u, v, hid.du, hid.dv, hid.vth, 0, reset="subtract", **hid.firing())
        np.testing.assert_array_equal(rec["hid.spikes"][0, t], s)
        np.testing.assert_array_equal(rec["hid.v"][0, t], v)


# --- Lava -------------------------------------------------------------------------------------


@pytest.mark.lava
@pytest.mark.parametrize("reset,timing", sorted(HAND))
def test_lava_hand_computed_one_neuron_fixed_and_floating_pt(reset, timing):
    from neurocompile.backends.lava.backend import LavaBackend

    program = one_neuron(reset, timing)
    spikes, v = HAND[reset, timing]
    for tag in ("fixed_pt", "floating_pt"):  # the float values of these integers are the same numbers
        rec = LavaBackend(program, tag=tag).run(np.concatenate([X, X]), record="all")
        for b in range(2):
            assert rec["p.spikes"][b, :, 0].tolist() == spikes, tag
            assert np.asarray(rec["p.v"][b, :, 0]).tolist() == v, tag


@pytest.mark.lava
def test_lava_hardware_refuses_the_timing_in_one_line():
    from neurocompile.backends.lava.backend import LavaBackend

    program = one_neuron("zero", "snntorch-delayed")
    with pytest.raises(NeurocompileError, match="resets with snntorch delayed timing, which needs a Loihi 2") as info:
        LavaBackend(program, hardware=True).lower_population(program.population("p"), 9)
    assert "\n" not in str(info.value)
