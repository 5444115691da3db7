"""Runs are sized before they allocate: an estimate past the limit is a one-line error naming the fix."""

from __future__ import annotations

import subprocess
import sys

import nir
import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.resources import LIMIT_VARIABLE, check_run_memory, memory_limit, values_per_step
from tests.cli.test_cli_float import assert_one_line_error, run_cli


def _graph(n_in: int = 10, n: int = 1000) -> nir.NIRGraph:
    lif = nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))
    return nir.NIRGraph.from_list(nir.Affine(np.ones((n, n_in)), np.zeros(n)), lif)


def test_a_graph_holds_every_node_of_one_step():
    # input 10, affine 1000, lif 1000, output 1000 (hand-counted from the declared types)
    assert values_per_step(_graph()) == 10 + 3 * 1000


def test_the_limit_comes_from_the_variable_in_gib(monkeypatch):
    monkeypatch.setenv(LIMIT_VARIABLE, "0.5")
    assert memory_limit() == 2**29
    for bad in ("0", "-1", "nan", "lots"):
        monkeypatch.setenv(LIMIT_VARIABLE, bad)
        with pytest.raises(NeurocompileError, match=LIMIT_VARIABLE):
            memory_limit()


def test_the_address_space_limit_caps_the_default():
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)); "
        "from neurocompile.resources import memory_limit; print(memory_limit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) <= int(0.8 * (3 << 30))


def test_a_run_past_the_limit_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setenv(LIMIT_VARIABLE, "1")
    # 8 samples x 10,000 steps x 3,010 values x 4 values of 4 bytes = 3.59 GiB
    with pytest.raises(NeurocompileError, match=r"about 3\.59 GiB .* limit is 1 GiB") as caught:
        check_run_memory(_graph(), 8, 10_000)
    assert "--limit" in str(caught.value) and LIMIT_VARIABLE in str(caught.value)
    check_run_memory(_graph(), 8, 1000)  # 0.36 GiB fits


def test_simulate_refuses_before_allocating(monkeypatch, tmp_path, capsys):
    nir.write(tmp_path / "g.nir", _graph())
    np.save(tmp_path / "x.npy", np.zeros((8, 10_000, 10), np.float32))
    monkeypatch.setenv(LIMIT_VARIABLE, "1")
    for backend in ("float", "cpu"):
        code, _, err = run_cli(
            capsys, "simulate", tmp_path / "g.nir", "--backend", backend, "--input", tmp_path / "x.npy"
        )
        assert_one_line_error(code, err, f"raise the limit with {LIMIT_VARIABLE}")


def test_a_model_that_training_would_build_is_sized_first(tmp_path, capsys, monkeypatch):
    # was: a label near 2**31 built a readout of that many classes and died allocating 64 GB (issue 27)
    monkeypatch.setenv(LIMIT_VARIABLE, "1")
    y = np.arange(20) % 2
    y[3] = 2**31 - 1
    np.savez(tmp_path / "d.npz", x=(np.random.default_rng(0).random((20, 4, 8)) < 0.3).astype(np.float32), y=y)
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "d.npz", "--json", "-o", tmp_path / "m.pt")
    assert_one_line_error(
        code, err, "training the 8-128-128-2147483648 network needs about", "largest label is 2147483647"
    )
    assert not (tmp_path / "m.pt").exists()


def test_training_memory_counts_parameters_gradients_optimizer_and_a_batch(monkeypatch):
    from neurocompile.resources import check_training_memory

    # 10-20-5: 10*20+20 + 20*5+5 = 325 parameters, 4 copies; a batch of 2 x 3 steps x 35 values x 4 copies
    need = (325 * 4 + 2 * 3 * 35 * 4) * 4  # bytes
    monkeypatch.setenv(LIMIT_VARIABLE, str(need / 2**30))
    check_training_memory((10, 20, 5), 2, 3)
    monkeypatch.setenv(LIMIT_VARIABLE, str((need - 1) / 2**30))
    with pytest.raises(NeurocompileError, match="325 parameters"):
        check_training_memory((10, 20, 5), 2, 3)


def _limit(monkeypatch, nbytes: int) -> None:
    monkeypatch.setenv(LIMIT_VARIABLE, repr((nbytes + 16) / 2**30))  # a few bytes over: float rounding


def test_the_ann_pass_of_a_conversion_is_chunked_to_fit(monkeypatch):
    from neurocompile.resources import ann_chunk

    # 100 weights (4 float64 copies), 1000 samples keeping 10 values each, 50 values per sample in a chunk (x2)
    held, kept, per_sample = 100 * 8 * 4, 1000 * 10 * 8, 50 * 8 * 2
    _limit(monkeypatch, held + kept + 1000 * per_sample)
    assert ann_chunk(weights=100, values=50, kept=10, samples=1000) == 1000  # all at once when it fits
    _limit(monkeypatch, held + kept + 64 * per_sample)
    assert ann_chunk(weights=100, values=50, kept=10, samples=1000) == 64
    assert ann_chunk(weights=100, values=50, kept=10, samples=1000, fixed_batch=32) == 64  # onnxruntime runs 2 x 32
    with pytest.raises(NeurocompileError, match="a dynamic batch dimension instead of its fixed batch of 200"):
        ann_chunk(weights=100, values=50, kept=10, samples=1000, fixed_batch=200)
    _limit(monkeypatch, held + 500 * 10 * 8 + per_sample)
    with pytest.raises(NeurocompileError) as caught:
        ann_chunk(weights=100, values=50, kept=10, samples=1000)
    message = str(caught.value)
    assert "1000 calibration samples x 10 values" in message and "(--calibration-samples 500)" in message
    assert LIMIT_VARIABLE in message and "\n" not in message
    _limit(monkeypatch, held // 2)
    with pytest.raises(NeurocompileError, match="100 weights: .* convert a smaller model"):
        ann_chunk(weights=100, values=50, kept=10, samples=1, fixed_batch=None)


def test_snn_runs_are_chunked_to_fit(monkeypatch):
    from neurocompile.resources import run_chunk

    per_sample = 20 * 30 * 4 * 4  # 20 steps x 30 values, counted as check_run_memory counts them
    _limit(monkeypatch, 1000 + 7 * per_sample)
    assert run_chunk(30, 5, 20, held=1000) == 5
    assert run_chunk(30, 100, 20, held=1000) == 7
    assert run_chunk(30, 100, 20, held=1000, together=7) == 7
    with pytest.raises(NeurocompileError) as caught:
        run_chunk(30, 100, 20, held=1000, together=8, what="the calibration", fewer="use {n} samples (--n {n})")
    message = str(caught.value)
    assert message.startswith("the calibration needs about") and "(8 samples x 20 steps x 30 values per step" in message
    assert "run fewer steps (--steps), or use 7 samples (--n 7), or raise the limit" in message
    with pytest.raises(NeurocompileError, match=r"one sample needs about .* run fewer steps \(--steps\), or raise"):
        run_chunk(30, 100, 20 * 8, held=1000)


def test_a_learning_session_is_sized_before_it_streams(monkeypatch, tmp_path, capsys):
    """By hand: 64 inputs, 10 outputs, populations 8 + 10, weights 8x64 + 10x8; 30 training and 12
    held-out samples of 5 steps, 10 checkpoints."""
    from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
    from neurocompile.resources import check_learning_memory

    pops = [Population(n, (k,), du=0, dv=0, vth=10, bias_mant=np.zeros(k, np.int32)) for n, k in (("h", 8), ("o", 10))]
    syns = [
        Synapse("a", "x", "h", "dense", np.zeros((8, 64), np.int32)),
        Synapse("b", "h", "o", "dense", np.zeros((10, 8), np.int32)),
    ]
    program = FixedPointProgram([InputPort("x", (64,))], pops, syns, ["o"]).validate()
    stream = 30 * 5 * (2 * 64 + 3 * 10)
    held_out = 12 * 5 * (64 + 8 + 10) * 4
    need = (stream + held_out + 12 * (8 * 64 + 10 * 8)) * 4
    monkeypatch.setenv(LIMIT_VARIABLE, repr((need + 16) / 2**30))
    check_learning_memory(program, 30, 12, 5, 10)
    monkeypatch.setenv(LIMIT_VARIABLE, repr((need - 16) / 2**30))
    with pytest.raises(NeurocompileError, match=r"on-chip learning needs about .*\(--limit\)"):
        check_learning_memory(program, 30, 12, 5, 10)
    program.save(tmp_path / "p.ncp")
    code, _, err = run_cli(capsys, "learn", tmp_path / "p.ncp", "--rule", "ottt", "-o", tmp_path / "l.ncp")
    assert_one_line_error(code, err, "on-chip learning needs about")
    assert not (tmp_path / "l.ncp").exists()
