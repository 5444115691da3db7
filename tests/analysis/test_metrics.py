"""Hand-computed cases for the readout and agreement statistics (step agreement, spike F1, count
correlation), and for program latency."""

import numpy as np
import pytest

from neurocompile.analysis.metrics import accuracy, count_correlation, layer_agreement, predictions, spike_f1
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
    # spike events in the window: ref (0, n0), (2, n1); fixed (0, n0), (3, n1) after the shift: one in both
    assert (stats["true_positives"], stats["reference_spikes"], stats["compared_spikes"]) == (1, 2, 2)
    assert stats["spike_f1"] == pytest.approx(2 * 1 / (2 + 2))
    # counts per neuron: ref [1, 1], fixed [1, 1]: both constant and equal
    assert stats["rate_correlation"] == 1.0


def _layer(ref, fixed, shift=0):
    ref, fixed = (np.asarray(a, dtype=float)[None] for a in (ref, fixed))  # [1, time, neurons]
    rec = [Recording({"h.spikes": a}, ["h"], name) for a, name in ((ref, "float"), (fixed, "cpu"))]
    return layer_agreement(*rec, {"h": shift})["h"]


def test_spike_f1_counts_events_not_silent_entries():
    ref = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    fixed = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    stats = _layer(ref, fixed)
    # TP: (0, 0) and (3, 0); ref 4 spikes, fixed 3: precision 2/3, recall 2/4
    assert (stats["true_positives"], stats["reference_spikes"], stats["compared_spikes"]) == (2, 4, 3)
    assert stats["spike_f1"] == pytest.approx(2 * 2 / (4 + 3))
    assert stats["step_agreement"] == pytest.approx(13 / 16)  # 3 entries differ
    # per-neuron counts ref [2, 1, 0, 1], fixed [2, 0, 1, 0]: deviations [1, 0, -1, 0] and [1.25, -0.75, 0.25, -0.75]
    assert stats["rate_correlation"] == pytest.approx(1.0 / np.sqrt(2 * 2.75))


def test_silent_layers():
    both = _layer(np.zeros((3, 2)), np.zeros((3, 2)))
    assert (both["spike_f1"], both["count_ratio"], both["rate_correlation"], both["step_agreement"]) == (1, 1, 1, 1)
    only_ref = _layer([[1, 0], [0, 0], [1, 0]], np.zeros((3, 2)))  # the compared run stays silent
    assert (only_ref["spike_f1"], only_ref["true_positives"], only_ref["compared_spikes"]) == (0, 0, 0)
    assert only_ref["rate_correlation"] is None and only_ref["count_ratio"] == 0
    only_fixed = _layer(np.zeros((3, 2)), [[0, 1], [0, 0], [0, 0]])
    assert only_fixed["spike_f1"] == 0 and only_fixed["count_ratio"] is None


def test_spike_f1_of_graded_counts_takes_the_smaller_count():
    ref = np.array([[2, 0], [1, 3]])
    fixed = np.array([[1, 1], [1, 3]])
    # TP per entry: min(2, 1) + min(0, 1) + min(1, 1) + min(3, 3) = 5 of 6 and 6 spikes
    assert spike_f1(ref, fixed) == {
        "spike_f1": 10 / 12,
        "true_positives": 5,
        "reference_spikes": 6,
        "compared_spikes": 6,
    }
    assert _layer(ref, fixed)["spike_f1"] == pytest.approx(10 / 12)


def test_a_drained_run_is_compared_over_every_reference_step():
    ref = [[1], [0], [1]]
    fixed = [[0], [1], [0], [1]]  # one step longer (drained), every spike one step later
    stats = _layer(ref, fixed, shift=1)
    assert (stats["spike_f1"], stats["reference_spikes"], stats["step_agreement"]) == (1.0, 2, 1.0)


def test_count_correlation_and_its_degenerate_cases():
    assert count_correlation(np.array([0, 1, 2]), np.array([0, 2, 1])) == pytest.approx(0.5)
    assert count_correlation(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert count_correlation(np.array([2, 2]), np.array([2, 2])) == 1.0  # both constant and equal
    assert count_correlation(np.array([2, 2]), np.array([3, 3])) is None  # constant, different: undefined
    assert count_correlation(np.array([0, 0, 0]), np.array([0, 1, 0])) is None


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
