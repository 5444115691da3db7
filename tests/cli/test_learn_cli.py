"""`neurocompile learn`: on-chip learning from the command line (in-process, like test_cli_float.py).

Oracles: the held-out accuracy the command reports equals what the CPU backend gives on the
written ``.ncp`` (argmax of output spike counts, computed here) and what ``simulate`` reports;
a zeroed readout classifies everything as class 0 (the share of 0s in the test split); Lava
``fixed_pt`` learns the same weights as the CPU backend on the same stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurocompile import api
from neurocompile.backends import create_backend
from neurocompile.data import load_digits_spikes
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from tests.cli.test_cli_float import assert_one_line_error, run_cli

T = 16
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The shipped digits model compiled once (calibrated as `learn` calibrates a .pt)."""
    path = tmp_path_factory.mktemp("learn") / "digits_mlp.ncp"
    api.compile(SHIPPED, "digits", steps=T, output=path)
    return path


@pytest.fixture(scope="module")
def test_split():
    x, y = load_digits_spikes(T, split="test")
    return x, y


def _oracle_accuracy(path, x, y) -> float:
    """The program run directly with its output latency's silent steps after each sample, as simulate runs it."""
    program = FixedPointProgram.load(path)
    silent = np.zeros((len(x), program.output_latency(), *x.shape[2:]), x.dtype)
    counts = create_backend("cpu", program).run(np.concatenate([x, silent], axis=1)).output_spikes().sum(axis=1)
    return float((counts.argmax(axis=-1) == y).mean())


@pytest.mark.parametrize("rule", ["ottt", "stllr"])
def test_learn_readout_on_a_prefix(capsys, tmp_path, deployed, test_split, rule):
    out = tmp_path / "learned.ncp"
    code, stdout, err = run_cli(
        capsys, "learn", deployed, "--rule", rule, "--limit", 300, "--reinit-readout", "zero", "--json", "-o", out
    )
    assert code == 0, err
    result = json.loads(stdout)
    x, y = test_split
    assert (result["train_samples"], result["test_samples"], result["steps"]) == (300, len(y), T)
    assert result["accuracy_before"] == pytest.approx(float((y == 0).mean()))  # silent readout: class 0
    assert result["accuracy_after"] > 0.85
    assert result["accuracy_after"] == pytest.approx(_oracle_accuracy(out, x, y), abs=0)
    heldout = result["curves"]["heldout"]
    assert heldout["samples"] == list(range(0, 301, 30)) and heldout["accuracy"][-1] == result["accuracy_after"]
    training = result["curves"]["training"]
    assert training["samples"][-1] == 300 and 0.0 <= min(training["accuracy"]) <= max(training["accuracy"]) <= 1.0
    assert result["report"]["rule"] == rule and result["plastic_synapses"] == ["lif2->lif3"]
    assert result["weights_changed"] > 100 and result["output"] == str(out)
    learned = FixedPointProgram.load(out)
    assert not learned.plastic and [p.name for p in learned.inputs] == ["input"]
    code, stdout, err = run_cli(capsys, "simulate", out, "--backend", "cpu", "--data", "digits", "--json")
    assert code == 0, err
    assert json.loads(stdout)["accuracy"] == result["accuracy_after"]
    code, stdout, _ = run_cli(capsys, "inspect", out)
    assert code == 0 and "Fixed-point program" in stdout


def test_learn_from_a_checkpoint_with_plot_and_text(capsys, tmp_path, test_split):
    out, png = tmp_path / "learned.ncp", tmp_path / "curves.png"
    code, stdout, err = run_cli(
        capsys,
        "learn",
        SHIPPED,
        "--rule",
        "ottt",
        "--limit",
        100,
        "--epochs",
        2,
        "--reinit-readout",
        "random",
        "--plot",
        png,
        "-o",
        out,
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "on-chip OTTT (readout)" in stdout and "before ->" in stdout and f"wrote {out}, {png}" in stdout
    assert len(stdout.splitlines()) < 25  # one screen
    x, y = test_split
    after = float(stdout.split("before -> ")[1].split("%")[0]) / 100
    assert after == pytest.approx(_oracle_accuracy(out, x, y), abs=0.00005)


def test_learn_writes_nothing_on_bad_input(capsys, tmp_path, deployed):
    """Every bad request: one line on stderr, exit 2, no file written."""
    rng = np.random.default_rng(0)
    no_labels = tmp_path / "no_labels.npz"
    np.savez(no_labels, x=(rng.random((20, T, 64)) < 0.2).astype(np.float32))
    bad_labels = tmp_path / "bad_labels.npz"
    np.savez(bad_labels, x=(rng.random((20, T, 64)) < 0.2).astype(np.float32), y=np.arange(20) % 12)
    no_layer = tmp_path / "no_layer.ncp"  # the one synapse into the output has delays: nothing learns
    FixedPointProgram(
        [InputPort("input", (64,))],
        [Population("out", (10,), du=4095, dv=819, vth=100, bias_mant=np.zeros(10, np.int32))],
        [Synapse("w", "input", "out", "dense", np.ones((10, 64), np.int32), delays=np.ones((10, 64), np.int32))],
        ["out"],
    ).save(no_layer)
    readout_only = tmp_path / "readout_only.ncp"  # learnable, but no hidden layer to draw anew
    FixedPointProgram(
        [InputPort("input", (64,))],
        [Population("out", (10,), du=4095, dv=819, vth=100, bias_mant=np.zeros(10, np.int32))],
        [Synapse("w", "input", "out", "dense", np.ones((10, 64), np.int32))],
        ["out"],
    ).save(readout_only)
    cases = [
        (["--rule", "hebb"], ["--rule", "hebb"]),
        (["--rule", "ottt", "--backend", "float"], ["--backend", "float"]),
        (["--rule", "ottt", "--lr", "1e6"], ["outside Lava's range", "--lr"]),
        (["--rule", "ottt", "--lr", "-1"], ["--lr must be a positive number"]),
        (["--rule", "ottt", "--surrogate-slope", "0"], ["surrogate slope must be a positive number"]),
        (["--rule", "stllr", "--data", no_labels], ["needs keys x and y"]),
        (["--rule", "ottt", "--data", bad_labels], ["labels must lie in [0, 9]"]),
        (["--rule", "ottt", "--data", "mnist"], ["unknown dataset 'mnist'"]),
        (["--rule", "ottt", "--limit", "0"], ["--limit"]),
        (["--rule", "ottt", "--hidden-lr", "-1"], ["--hidden-lr must be a positive number"]),
        (["--rule", "ottt", "--layers", "all", "--hidden-lr", "1e-9"], ["layer 'input->lif1'", "takes at least"]),
        (["--rule", "ottt", "--init", "random"], ["init 'random'", "layers 'all'"]),
        (["--rule", "ottt", "--replay", "5"], ["needs both its size (--replay) and its data (--replay-data)"]),
        (["--rule", "ottt", "--replay", "21", "--replay-data", bad_labels], ["replay buffer of 21 samples", "has 16"]),
        (["--rule", "ottt", "--replay", "5", "--replay-data", "digits-rows"], ["samples of shape [8]", "are [64]"]),
    ]
    before = sorted(tmp_path.iterdir())
    for args, words in cases:
        code, _, err = run_cli(capsys, "learn", deployed, *args, "-o", tmp_path / "x.ncp", "--plot", tmp_path / "x.png")
        assert_one_line_error(code, err, *words)
    code, _, err = run_cli(capsys, "learn", no_layer, "--rule", "ottt", "-o", tmp_path / "x.ncp")
    assert_one_line_error(code, err, "has no learnable layer")
    argv = ["--rule", "ottt", "--layers", "all", "--init", "random", "--lr", "0.1", "--limit", "20"]
    code, _, err = run_cli(capsys, "learn", readout_only, *argv, "-o", tmp_path / "x.ncp")
    assert_one_line_error(code, err, "needs hidden layers that learn", "readout 'w'")
    code, _, err = run_cli(capsys, "learn", tmp_path / "missing.pt", "--rule", "ottt", "-o", tmp_path / "x.ncp")
    assert_one_line_error(code, err, "no such file")
    code, _, err = run_cli(capsys, "learn", deployed, "--rule", "ottt", "-o", tmp_path / "no" / "dir" / "x.ncp")
    assert_one_line_error(code, err, "no such directory")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.lava
def test_lava_learns_the_weights_the_cpu_learns(capsys, tmp_path, deployed):
    results = {}
    for backend in ("lava", "cpu"):
        out = tmp_path / f"{backend}.ncp"
        args = ["--rule", "ottt", "--backend", backend, "--limit", 24, "--reinit-readout", "zero", "--json", "-o", out]
        code, stdout, err = run_cli(capsys, "learn", deployed, *args)
        assert code == 0, err
        results[backend] = json.loads(stdout)
    lava, cpu = FixedPointProgram.load(tmp_path / "lava.ncp"), FixedPointProgram.load(tmp_path / "cpu.ncp")
    for a, b in zip(lava.synapses, cpu.synapses, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
    assert results["lava"]["weights_changed"] == results["cpu"]["weights_changed"] > 0
    assert results["lava"]["curves"] == results["cpu"]["curves"]  # checkpoints and output spikes too
    for timing in (results[backend]["timing"] for backend in ("lava", "cpu")):  # stepping apart from set-up
        assert 0 < timing["step_s"] < timing["learn_s"]
        assert timing["setup_s"] == pytest.approx(timing["learn_s"] - timing["step_s"])
    assert results["lava"]["timing"]["setup_s"] > 10 * results["cpu"]["timing"]["setup_s"]  # Lava's start-up


def test_learned_network_exports_to_nir_with_dequantized_weights(capsys, tmp_path, test_split):
    """The learned readout goes back into the source graph: its float weights are proportional, row by
    row, to the learned integers, and the float reference of that graph classifies about as well as the
    learned fixed-point program."""
    out, graph_path = tmp_path / "learned.ncp", tmp_path / "learned.nir"
    code, stdout, err = run_cli(
        capsys,
        "learn",
        SHIPPED,
        "--rule",
        "stllr",
        "--limit",
        600,
        "--reinit-readout",
        "zero",
        "--json",
        "--nir",
        graph_path,
        "-o",
        out,
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert oct(graph_path.stat().st_mode & 0o777) == oct(out.stat().st_mode & 0o777)  # the usual file mode
    graph = api.load_model(graph_path)
    learned = FixedPointProgram.load(out).synapse("lif2->lif3").weights.astype(float)
    floats = np.asarray(graph.nodes["fc3"].weight)
    for row_f, row_i in zip(floats, learned, strict=True):
        if np.any(row_i):
            assert np.corrcoef(row_f, row_i)[0, 1] > 0.9999
    x, y = test_split
    counts = create_backend("float", graph).run(x.astype(np.float32)).output_spikes().sum(1)
    assert abs(float((counts.argmax(-1) == y).mean()) - result["accuracy_after"]) < 0.03
    code, _, err = run_cli(
        capsys, "learn", out, "--rule", "ottt", "--limit", 10, "--nir", tmp_path / "x.nir", "-o", tmp_path / "y.ncp"
    )
    assert_one_line_error(code, err, "--nir needs the model's NIR graph")
    assert not (tmp_path / "x.nir").exists() and not (tmp_path / "y.ncp").exists()


@pytest.mark.lava
def test_lava_learns_from_scratch_the_weights_the_cpu_learns(capsys, tmp_path, deployed):
    """Every layer from random weights (S-TLLR, feedback alignment, the timed stream) with a replay buffer mixed
    in: Lava ``fixed_pt`` and the CPU mirror end the 200 samples with identical weights."""
    x, y = load_digits_spikes(steps=T, split="all")
    known = tmp_path / "known.npz"
    np.savez(known, x=x[:300].astype(np.uint8), y=y[:300])
    programs = {}
    for backend in ("lava", "cpu"):
        out = tmp_path / f"{backend}.ncp"
        args = ["--rule", "stllr", "--layers", "all", "--init", "random", "--hidden-lr", "0.0015", "--limit", 150]
        replay = ["--replay", 50, "--replay-data", known]  # 200 samples in all, 50 of them replayed
        code, _, err = run_cli(capsys, "learn", deployed, *args, *replay, "--backend", backend, "-o", out)
        assert code == 0, err
        programs[backend] = FixedPointProgram.load(out)
    for a, b in zip(programs["lava"].synapses, programs["cpu"].synapses, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
    start = FixedPointProgram.load(deployed)
    assert all(
        np.count_nonzero(a.weights != b.weights) > 1000 for a, b in zip(start.synapses, programs["cpu"].synapses)
    )
