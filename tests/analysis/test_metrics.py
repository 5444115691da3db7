"""Hand-computed cases for the readout and agreement statistics, and for program latency."""

import numpy as np
import pytest

from neurocompile.analysis.metrics import accuracy, layer_agreement, predictions
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.ir.recording import Recording


def test_predictions_count_spikes_and_readouts_sum_voltage():
    spikes = np.zeros((2, 3, 4))
    spikes[0, :, 2] = 1  # sample 0: class 2 spikes three times
    spikes[1, 0, 1] = spikes[1, 1, 3] = spikes[1, 2, 3] = 1  # sample 1: class 3 twice
    rec = Recording({"out.spikes": spikes}, ["out"], "test")
    assert predictions(rec).tolist() == [2, 3]
    assert accuracy(rec, np.array([2, 1])) == 0.5
    v = np.zeros((1, 2, 3))
    v[0, :, 1] = [1.0, 1.0]
    v[0, :, 0] = [3.0, -2.0]  # sums: 1, 2, 0
    assert predictions(Recording({"out.v": v}, ["out"], "test")).tolist() == [1]


def test_layer_agreement_compares_each_layer_its_latency_later():
    ref = np.zeros((1, 5, 2))
    ref[0, 0, 0] = ref[0, 2, 1] = 1
    fixed = np.zeros((1, 5, 2))
    fixed[0, 1, 0] = 1  # the same spike one step later
    fixed[0, 4, 1] = 1  # should be at step 3: a miss there and an extra spike at step 4
    stats = layer_agreement(
        Recording({"h.spikes": ref}, ["h"], "float"), Recording({"h.spikes": fixed}, ["h"], "cpu"), {"h": 1}
    )["h"]
    # window: ref steps 0..3 against fixed steps 1..4, 8 entries; neuron 1 differs at ref steps 2 and 3
    assert stats["step_agreement"] == pytest.approx(6 / 8)
    assert stats["count_ratio"] == pytest.approx(2 / 2)


def test_program_latency_is_synapse_hops_plus_delays():
    def pop(name):
        return Population(name, (1,), du=0, dv=0, vth=1, bias_mant=np.zeros(1, dtype=np.int32))

    def syn(name, src, tgt, delay=None, recurrent=False):
        delays = None if delay is None else np.array([[delay]], dtype=np.int32)
        return Synapse(name, src, tgt, "dense", np.ones((1, 1), dtype=np.int32), delays=delays, recurrent=recurrent)

    program = FixedPointProgram(
        [InputPort("x", (1,))],
        [pop("a"), pop("b"), pop("c")],
        [
            syn("xa", "x", "a"),
            syn("ab", "a", "b", delay=3),
            syn("bb", "b", "b", recurrent=True),
            syn("ac", "a", "c"),
            syn("bc", "b", "c"),
        ],
        ["c"],
    )
    assert program.latency() == {"a": 1, "b": 5, "c": 2}
