"""Graded spikes (``Population.payload_bits``): a population sends the count of thresholds its ``v`` exceeds, and
the synapses out of it multiply their weights by it (Sinabs' MultiSpike, Rockpool's StepPWL; Loihi 2's graded
spikes, Lava's ``num_message_bits``).

Oracles: hand arithmetic; the multi-spike rule as Sinabs states it (``spikes = floor(v / th)``, reset
``v -= spikes * th``) with the integer LIF's strict threshold (``v > k * th``); Lava's fixed_pt and
floating_pt models of ``processes.LIFExtended`` feeding Lava's own ``Dense`` with ``num_message_bits``; the
peer libraries' own spikes (``tools/peer_table.py``). The random programs of
``tests/helpers/program_strategies.py`` draw graded populations too, which
``tests/backends/lava/test_lava_backend.py`` (``EXTENSIONS``) compares with Lava.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurocompile.analysis.inspection import describe_program, format_program
from neurocompile.backends.cpu import CpuBackend
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import NeurocompileError
from neurocompile.hardware.loihi2 import extensions
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics.discretization import get_convention
from tests.peers.test_peer_presets import lif, small_graph


def chain(reset: str, payload_bits: int) -> FixedPointProgram:
    """x -> p -> q: x's spike puts u = 150 << 6 = 9600 into p (du = 4095, dv = 0, vth = 10: threshold 640); p's
    graded spikes reach q with weight 2 (q never spikes: vth 2**17 - 1)."""
    p = Population("p", (1,), du=4095, dv=0, vth=10, bias_mant=np.int32(0), reset=reset, payload_bits=payload_bits)
    q = Population("q", (1,), du=4095, dv=0, vth=2**17 - 1, bias_mant=np.int32(0))
    syns = [Synapse("a", "x", "p", "dense", np.array([[150]], np.int32))]
    syns.append(Synapse("b", "p", "q", "dense", np.array([[2]], np.int32)))
    return FixedPointProgram([InputPort("x", (1,))], [p, q], syns, ["q"]).validate()


X = np.array([1, 0, 0, 1, 0], np.uint8).reshape(1, 5, 1)
HAND = {  # (reset, payload_bits): p's counts and v, q's v, at steps 0..4
    # 9600 = 15 * 640: 14 thresholds exceeded (v > 14 * 640, not > 15 * 640); 9600 - 14 * 640 = 640 stays;
    # 640 + 9600 = 16 * 640: 15
    ("subtract", 8): ([0, 14, 0, 0, 15], [0, 640, 640, 640, 640], [0, 0, 1792, 1792, 1792]),
    # 3 bits carry at most 7: 9600 - 7 * 640 = 5120 remains, and spikes 7 again
    ("subtract", 3): ([0, 7, 7, 0, 7], [0, 5120, 640, 640, 5760], [0, 0, 896, 1792, 1792]),
    ("zero", 8): ([0, 14, 0, 0, 14], [0, 0, 0, 0, 0], [0, 0, 1792, 1792, 1792]),
}


@pytest.mark.parametrize("reset,bits", sorted(HAND))
def test_hand_computed_graded_chain(reset, bits):
    rec = CpuBackend(chain(reset, bits)).run(X, record="all")
    counts, v, q_v = HAND[reset, bits]
    assert rec["p.spikes"][0, :, 0].tolist() == counts
    assert rec["p.v"][0, :, 0].tolist() == v
    assert rec["q.v"][0, :, 0].tolist() == q_v  # 2 * 14 = 28, << 6 = 1792


def _sinabs_multispike(a_in: np.ndarray, th: int, reset: str, most: int):
    """Sinabs' MultiSpike on v (strict: ``floor((v - 1) / th)`` thresholds exceeded by an integer v), capped."""
    v = np.zeros(a_in.shape[1])
    counts, volts = [], []
    for a in a_in * 64.0:
        v = v + a
        n = np.minimum(np.maximum(np.floor((v - 1) / th), 0), most)
        v = v - n * th if reset == "subtract" else np.where(n > 0, 0.0, v)
        counts.append(n), volts.append(v)
    return np.array(counts), np.array(volts)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_integer_counts_are_the_multispike_rule(reset, bits):
    a_in = np.random.default_rng(3).integers(-100, 600, size=(50, 300))
    u = v = np.zeros(300, np.int64)
    counts, volts = [], []
    for a in a_in:
        s, u, v = fxp.lif_fixed_step(a, u, v, 4095, 0, 2, 0, reset=reset, payload_bits=bits)
        counts.append(s), volts.append(v)
    want_counts, want_v = _sinabs_multispike(a_in, 2 * 64, reset, 2**bits - 1)
    assert np.max(want_counts) == 2**bits - 1 and np.sum(want_counts) > 1000
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(volts, want_v)


def test_graded_populations_are_validated_and_named():
    program = chain("subtract", 3)
    assert extensions(program.population("p")) == ["resets by subtraction", "sends graded spikes (3-bit spike counts)"]
    assert "3-bit counts" in format_program(describe_program(program))
    for bits, match in ((9, "not an integer in 0..8"), (2.0, "not an integer"), (True, "not an integer")):
        with pytest.raises(NeurocompileError, match=match) as info:
            Population("p", (1,), du=0, dv=0, vth=1, bias_mant=np.int32(0), payload_bits=bits).validate()
        assert "\n" not in str(info.value)
    readout = Population("r", (1,), du=0, dv=0, vth=1, bias_mant=np.int32(0), spiking=False, payload_bits=2)
    with pytest.raises(NeurocompileError, match="graded spikes are for spiking populations"):
        readout.validate()


def test_multispike_presets_compile_to_graded_populations():
    """Sinabs' and Rockpool's presets: every spiking population sends graded spikes, with the payload that the
    calibration's largest count needs."""
    graph = small_graph(lif())
    x = 4.0 * (np.random.default_rng(0).random((4, 30, 6)) < 0.5)
    program, report = compile_graph(graph, get_convention("sinabs-3.1"), calibration=x)
    (pop,) = [p for p in program.populations if p.spiking]
    assert 1 <= pop.payload_bits <= 8
    rec = CpuBackend(program).run((x > 0).astype(np.uint8), record="all")
    assert rec["n.spikes"].max() > 1  # counts, not 0/1


# --- Lava -------------------------------------------------------------------------------------


@pytest.mark.lava
@pytest.mark.parametrize("reset,bits", sorted(HAND))
def test_lava_hand_computed_graded_chain_fixed_and_floating_pt(reset, bits):
    from neurocompile.backends.lava.backend import LavaBackend

    counts, v, q_v = HAND[reset, bits]
    for tag in ("fixed_pt", "floating_pt"):
        rec = LavaBackend(chain(reset, bits), tag=tag).run(np.concatenate([X, X]), record="all")
        for b in range(2):
            assert np.asarray(rec["p.spikes"][b, :, 0]).tolist() == counts, tag
            assert np.asarray(rec["p.v"][b, :, 0]).tolist() == v, tag
            assert np.asarray(rec["q.v"][b, :, 0]).tolist() == q_v, tag
