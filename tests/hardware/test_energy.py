"""Energy and latency estimates: event counts checked by hand on tiny programs, energy as counts times the
constants, the messages and hops of spikes between cores and chips, and `simulate --report-energy`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.hardware import energy as e
from neurocompile.hardware.energy import Estimate, estimate_energy
from neurocompile.hardware.loihi2 import LOIHI2
from neurocompile.ir.program import Synapse
from neurocompile.ir.recording import Recording
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.hardware.programs import chain, conv

DIGITS_MLP = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"
PJ, NS = 1e-12, 1e-9


def recording(program, batch: int, steps: int, spikes: dict | None = None, state: dict | None = None) -> Recording:
    """Every population's spikes (zeros unless given) and u, v (zeros unless ``state`` gives u)."""
    arrays = {}
    for pop in program.populations:
        shape = (batch, steps, *pop.shape)
        arrays[f"{pop.name}.spikes"] = (spikes or {}).get(pop.name, np.zeros(shape, dtype=np.uint8))
        arrays[f"{pop.name}.u"] = (state or {}).get(pop.name, np.zeros(shape, dtype=np.int32))
        arrays[f"{pop.name}.v"] = np.zeros(shape, dtype=np.int32)
    return Recording(arrays, list(program.outputs), "cpu")


def layer(report, name):
    return next(x for x in report.layers if x.name == name)


def same(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-9, atol=0))


def close(estimate: Estimate, value: float, low: float, high: float) -> bool:
    return np.allclose([estimate.value, estimate.low, estimate.high], [value, low, high], rtol=1e-9, atol=0)


def test_dense_layer_counts_and_energy_by_hand():
    program = chain([3], n_in=4)  # input x (4) -> l0 (3), dense, one core
    x = np.zeros((1, 2, 4), dtype=np.uint8)
    x[0, 0, [0, 2]] = 1
    x[0, 1, 3] = 1  # 3 input spikes
    report = estimate_energy(program, recording(program, 1, 2), x)
    l0, port = layer(report, "l0"), layer(report, "x")
    assert (l0.synops, l0.inactive_updates, l0.active_updates, port.messages) == (9, 6, 0, 3)  # 3 spikes x 3 targets
    assert close(
        report.dynamic,
        9 * 23.6 * PJ + 6 * 52 * PJ + 3 * 1.7 * PJ,
        (9 * 23.6 + 6 * 51.2 + 3 * 1.7) * PJ,
        (9 * 35.5 + 6 * 52 + 3 * 111) * PJ,
    )
    # per step: the one core's synops and inactive updates, then the barrier of one tile (113 ns)
    steps = [(6 * 3.5 + 3 * 5.3) * NS, (3 * 3.5 + 3 * 5.3) * NS]
    assert same(report.step_time.value, np.mean(steps) + 113 * NS)
    static = 0.282 * report.step_time.value * 2
    assert same(report.static.value, static) and same(report.total.value, report.dynamic.value + static)


def test_active_updates_are_neurons_with_state_or_spikes():
    program = chain([3], n_in=1)
    u = np.zeros((1, 2, 3), dtype=np.int32)
    u[0, 0, 1] = 5
    spikes = np.zeros((1, 2, 3), dtype=np.uint8)
    spikes[0, 1, 2] = 1
    report = estimate_energy(program, recording(program, 1, 2, {"l0": spikes}, {"l0": u}), np.zeros((1, 2, 1)))
    l0 = layer(report, "l0")
    assert (l0.active_updates, l0.inactive_updates, l0.spikes) == (2, 4, 1)
    assert same(l0.energy.value, (2 * 81 + 4 * 52) * PJ)  # its spike reaches no synapse: no message


def test_conv_counts_its_kernel_footprint():
    program = conv((1, 3, 3), channels=2, kernel=3, padding=1)  # 3x3 kernel, same size output, 2 channels
    x = np.zeros((1, 1, 1, 3, 3), dtype=np.uint8)
    x[0, 0, 0, 1, 1] = 1  # the centre feeds all 9 outputs of each channel
    x[0, 0, 0, 0, 0] = 1  # a corner feeds 4
    report = estimate_energy(program, recording(program, 1, 1), x)
    assert layer(report, "c").synops == 2 * (9 + 4)
    weights = program.synapses[0].weights.copy()
    weights[:, :, 0, 0] = 0  # zero taps are stored in the shared kernel: still operations
    program.synapses[0].weights = weights
    assert layer(estimate_energy(program, recording(program, 1, 1), x), "c").synops == 2 * (9 + 4)


def test_sparse_counts_nonzeros_per_source():
    w = np.array([[1, 0, 0], [1, 2, 0], [0, 3, 0], [4, 0, 0]], dtype=np.int32)  # [target, source]
    program = chain([4], n_in=3, kind="sparse", weights=lambda n_out, n_in: w)
    x = np.ones((1, 1, 3), dtype=np.uint8)
    report = estimate_energy(program, recording(program, 1, 1), x)
    assert layer(report, "l0").synops == 3 + 2 + 0
    assert layer(report, "x").messages == 2  # the third source reaches no core


def test_spikes_between_cores_and_tiles():
    limits = dataclasses.replace(LOIHI2, neurons_per_core=1)
    program = chain([5, 1], n_in=1)  # l0 on cores 0-4 (tiles 0 and 1), l1 on core 5 (tile 1)
    spikes = np.zeros((1, 1, 5), dtype=np.uint8)
    spikes[0, 0, [0, 4]] = 1  # from tile 0 (one east-west hop to l1) and from tile 1 (none)
    report = estimate_energy(program, recording(program, 1, 1, {"l0": spikes}), np.ones((1, 1, 1)), limits=limits)
    l0, port = layer(report, "l0"), layer(report, "x")
    assert (report.cores, l0.cores, port.messages) == (6, 5, 5)  # one input spike reaches l0's 5 cores
    assert (l0.messages, l0.ew_hops, l0.ns_hops, layer(report, "l1").synops) == (2, 1, 0, 2)
    # 5 synops (the input spike), 2 active updates (the spiking neurons) and 3 inactive, 2 messages, 1 hop
    assert same(l0.energy.value, (5 * 23.6 + 2 * 81 + 3 * 52 + 2 * 1.7 + 1 * 3.0) * PJ)
    # the slowest core: l0's first, with a synop, an active update (it spikes) and a message (l1's: 2 synops
    # and an inactive update); then the barrier of the 2 tiles cores 0-5 span, of the chip's 32
    barrier = 113 + (465 - 113) * 1 / 31
    assert same(report.step_time.value, (3.5 + 8.4 + 2.1 + barrier) * NS)
    assert report.notes == []


def test_a_partition_other_than_the_maps_ranges():
    limits = dataclasses.replace(LOIHI2, neurons_per_core=2)
    program = chain([4, 1], n_in=1)  # l0 on 2 cores, l1 on 1
    spikes = np.zeros((1, 1, 4), dtype=np.uint8)
    spikes[0, 0, [0, 2]] = 1
    rec, x = recording(program, 1, 1, {"l0": spikes}), np.ones((1, 1, 1))
    ranges = estimate_energy(program, rec, x, limits=limits)
    interleaved = {"l0": np.array([0, 1, 0, 1]), "l1": np.array([0])}
    report = estimate_energy(program, rec, x, limits=limits, partition=interleaved)
    assert same(report.dynamic.value, ranges.dynamic.value)  # the same events, on other cores
    # core 0 now holds both spiking neurons: 2 synops, 2 active updates and 2 messages
    assert same(report.step_time.value, (2 * 3.5 + 2 * 8.4 + 2 * 2.1 + 113) * NS)
    assert same(ranges.step_time.value, (2 * 3.5 + 8.4 + 5.3 + 2.1 + 113) * NS)


def test_spikes_between_chips_are_a_note():
    limits = dataclasses.replace(LOIHI2, neurons_per_core=1, cores_per_chip=2)
    program = chain([2, 1], n_in=1)  # l0 on chip 0, l1 on chip 1
    spikes = np.ones((1, 1, 2), dtype=np.uint8)
    report = estimate_energy(program, recording(program, 1, 1, {"l0": spikes}), np.zeros((1, 1, 1)), limits=limits)
    assert report.chips == 2 and "2 messages per inference cross chips" in report.notes[0]
    assert same(report.static.value, 2 * 0.282 * report.step_time.value)


def test_energy_per_inference_divides_by_the_samples():
    program = chain([3], n_in=4)
    x = np.ones((2, 1, 4), dtype=np.uint8)
    one = estimate_energy(program, recording(program, 1, 1), x[:1])
    two = estimate_energy(program, recording(program, 2, 1), x)
    assert same(one.dynamic.value, two.dynamic.value) and two.samples == 2


def test_unknown_target_and_missing_spikes_are_one_line_errors():
    program = chain([3], n_in=4)
    x = np.zeros((1, 1, 4))
    with pytest.raises(NeurocompileError, match=r"^unknown energy target 'truenorth' \(known: loihi2\)$"):
        estimate_energy(program, recording(program, 1, 1), x, target="truenorth")
    rec = recording(program, 1, 1)
    del rec.arrays["l0.spikes"]
    with pytest.raises(NeurocompileError, match="recording has no 'l0.spikes'"):
        estimate_energy(program, rec, x)


def test_every_constant_has_a_source_and_a_range():
    for constant in e.CONSTANTS:
        assert constant.low <= constant.value <= constant.high and constant.source and constant.unit in e.UNIT_SCALE
        assert constant.chip in ("Loihi 1", "Loihi 2")


def test_docs_constants_table_is_the_constants():
    """docs/loihi2.md's energy constants are what tools/energy_report.py writes from energy.CONSTANTS."""
    from tools.bench_map import DOC, between
    from tools.energy_report import MARKS, constants_table

    assert between(DOC.read_text(), "loihi2-energy-constants", MARKS) == constants_table()


def test_fan_out_of_a_synapse_matches_the_mapping_connections():
    program = conv((2, 5, 5), channels=3, kernel=3, padding=1, stride=2)
    syn: Synapse = program.synapses[0]
    edges = np.array([0, 4, 9, 27])
    fan = e._fan_out(syn, 50, np.repeat(np.arange(3), np.diff(edges)))
    from neurocompile.hardware.connectivity import connectivity

    assert np.array_equal(fan.sum(axis=0), connectivity(syn, 50).usage(edges).connections)


def test_simulate_report_energy(capsys):
    args = ("simulate", DIGITS_MLP, "--backend", "cpu", "--data", "digits", "--limit", "3")
    code, out, _ = run_cli(capsys, *args, "--report-energy", "loihi2", "--json")
    data = json.loads(out)["energy"]
    assert code == 0 and data["target"] == "loihi2" and data["samples"] == 3 and data["chips"] == 1
    assert [x["name"] for x in data["layers"]] == ["input", "lif1", "lif2", "lif3"]
    assert 0 < data["dynamic"]["low"] <= data["dynamic"]["value"] <= data["dynamic"]["high"]
    code, out, _ = run_cli(capsys, *args, "--report-energy", "loihi2")
    assert code == 0 and "energy and latency on loihi2" in out and "time per step" in out
    code, _, err = run_cli(capsys, *args, "--report-energy", "loihi1")
    assert_one_line_error(code, err, "unknown energy target 'loihi1' (known: loihi2)")
    code, _, err = run_cli(capsys, "simulate", DIGITS_MLP, "--data", "digits", "--report-energy", "loihi2")
    assert_one_line_error(code, err, "the float backend runs no compiled program")


def test_simulate_refuses_what_cannot_be_mapped_before_the_run(capsys, tmp_path):
    program, x = chain([1], n_in=4097), tmp_path / "x.npy"  # a fan-in beyond a core's input axons
    program.save(tmp_path / "p.ncp")
    np.save(x, np.zeros((1, 2, 4097), dtype=np.float32))
    code, _, err = run_cli(
        capsys, "simulate", tmp_path / "p.ncp", "--backend", "cpu", "--input", x, "--report-energy", "loihi2"
    )
    assert_one_line_error(code, err, "fan-in", "4097")
