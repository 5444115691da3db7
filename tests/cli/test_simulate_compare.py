"""`neurocompile simulate --compare REF.npz`: per-layer spike fidelity to a reference run in the report and
its JSON (step agreement, spike F1 with its counts, count correlation), and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurocompile.analysis.metrics import layer_agreement
from neurocompile.cli import main
from neurocompile.ir.recording import Recording
from tests.cli.test_cli_float import run_cli

MODEL = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"
DATA = ("--data", "digits", "--limit", "6")
FIELDS = {
    "count_ratio",
    "step_agreement",
    "spike_f1",
    "true_positives",
    "reference_spikes",
    "compared_spikes",
    "rate_correlation",
}


def strict_json(text: str) -> dict:
    """JSON without NaN or Infinity (undefined scores are null)."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


@pytest.fixture(scope="module")
def float_record(tmp_path_factory):
    path = tmp_path_factory.mktemp("compare") / "float.npz"
    main(["simulate", str(MODEL), *DATA, "--record", str(path)])
    return path


def test_cpu_run_against_the_float_recording(capsys, float_record, tmp_path):
    cpu_record = tmp_path / "cpu.npz"
    argv = ("simulate", MODEL, "--backend", "cpu", *DATA, "--record", cpu_record, "--compare", float_record)
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    comparison = strict_json(out)["comparison"]
    assert comparison["reference"] == str(float_record) and comparison["timing"] == "float"
    assert comparison["shift"] == {"lif1": 1, "lif2": 2, "lif3": 3}  # each layer its synapse latency later
    with np.load(float_record) as ref, np.load(cpu_record) as cpu:
        expected = layer_agreement(
            Recording(dict(ref), [], "float"), Recording(dict(cpu), [], "cpu"), comparison["shift"]
        )
    assert comparison["layers"].keys() == expected.keys()
    for layer, stats in comparison["layers"].items():
        assert stats == pytest.approx(expected[layer])
        assert set(stats) == FIELDS
        assert stats["spike_f1"] == 2 * stats["true_positives"] / (stats["reference_spikes"] + stats["compared_spikes"])
        assert stats["spike_f1"] > 0.8 and stats["step_agreement"] > stats["spike_f1"]  # silent entries flatter
    code, out, _ = run_cli(capsys, *argv[:-4], "--compare", float_record)  # the text report
    assert code == 0 and "spike fidelity against" in out and "spike F1" in out


def test_a_run_against_itself_agrees_in_every_spike(capsys, float_record):
    code, out, err = run_cli(capsys, "simulate", MODEL, *DATA, "--compare", float_record, "--json")
    assert code == 0, err
    comparison = strict_json(out)["comparison"]
    assert set(comparison["shift"].values()) == {0}
    for stats in comparison["layers"].values():
        assert stats["spike_f1"] == stats["step_agreement"] == stats["rate_correlation"] == 1.0
        assert stats["true_positives"] == stats["reference_spikes"] == stats["compared_spikes"]


def test_compare_errors_are_one_line(capsys, float_record, tmp_path):
    not_npz, pickled = tmp_path / "x.npy", tmp_path / "p.npz"
    np.save(not_npz, np.zeros(3))
    np.savez(pickled, **{"lif1.spikes": np.array([{"a": 1}], dtype=object)})  # never unpickled
    fewer = ("--data", "digits", "--limit", "4")
    for argv, words in (
        ((*DATA, "--compare", not_npz), ("--compare", "not a recording")),
        ((*DATA, "--compare", tmp_path / "missing.npz"), ("--compare", "no such file")),
        ((*DATA, "--compare", pickled), ("--compare", "pickle")),
        ((*fewer, "--compare", float_record), ("differ in samples or neurons",)),
    ):
        code, _, err = run_cli(capsys, "simulate", MODEL, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert all(word in lines[0] for word in words), err
