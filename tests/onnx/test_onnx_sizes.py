"""`neurocompile convert` sizes its ANN passes and SNN runs before it allocates them (issue 27).

Layers of millions of values per sample passed the per-layer cap and the ANN pass over the
calibration set then tried to allocate 9-32 GB. Now the weights, the activations the normalization
keeps and one chunk of the ANN are sized against the memory limit before the ANN runs; the ANN and
the SNN evaluation run in chunks that fit, and what cannot fit is refused in one line naming the way out.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import neurocompile.onnx.convert as onnx_convert
from neurocompile.errors import NeurocompileError
from neurocompile.resources import (
    ANN_BYTES,
    ANN_COPIES,
    BYTES_PER_VALUE,
    LIMIT_VARIABLE,
    VALUES_PER_NODE,
    check_run_memory,
    conversion_weight_bytes,
    values_per_step,
)
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.onnx.test_onnx_convert import tiny_dense_model


def set_limit(monkeypatch, nbytes: int) -> None:
    monkeypatch.setenv(LIMIT_VARIABLE, repr((nbytes + 16) / 2**30))  # a few bytes over: float rounding


def tiny(tmp_path, hidden: int = 3, train: int = 50, test: int = 10):
    """input 2 -> Gemm(hidden) -> Relu -> Gemm(2), and an .npz of ``train`` and ``test`` samples."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(hidden, 2)), rng.normal(size=hidden) * 0.1
    w2, b2 = rng.normal(size=(2, hidden)), rng.normal(size=2) * 0.1
    x = rng.random((train + test, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    np.savez(tmp_path / "data.npz", x_train=x[:train], x_test=x[train:], y_test=y[train:])
    return tiny_dense_model(tmp_path / "tiny.onnx", w1, b1, w2, b2), str(tmp_path / "data.npz")


@pytest.fixture()
def batches(monkeypatch):
    """The batch sizes the ANN (``forward``) runs with."""
    seen = []
    forward = onnx_convert.forward

    def recording(network, x):
        seen.append(len(x))
        return forward(network, x)

    monkeypatch.setattr(onnx_convert, "forward", recording)
    return seen


def test_the_ann_runs_in_chunks_that_fit_and_normalizes_the_same(tmp_path, monkeypatch, batches):
    path, data = tiny(tmp_path)
    whole = onnx_convert.convert(path, data, percentile=90.0)
    assert batches == [50]
    # input 2 + fc1 3 + relu 3 + fc2 2 values per sample in a chunk; relu 3 + fc2 2 kept for all 50 samples
    weights = 3 * 2 + 3 + 2 * 3 + 2
    limit = conversion_weight_bytes(weights) + 50 * 5 * ANN_BYTES + 8 * 10 * ANN_BYTES * ANN_COPIES
    set_limit(monkeypatch, limit)
    batches.clear()
    chunked = onnx_convert.convert(path, data, percentile=90.0)
    assert batches == [8] * 6 + [2]  # was [50]: the whole calibration set at once, whatever its size
    assert chunked.scales == pytest.approx(whole.scales, rel=1e-12)


def test_a_calibration_set_too_large_is_refused_before_the_ann_runs(tmp_path, monkeypatch, capsys, batches):
    # a 4096-unit layer: 50 samples keep 50 x 4098 float64 activations (1.6 MB) for the percentiles
    path, data = tiny(tmp_path, hidden=4096)
    set_limit(monkeypatch, 1 << 20)
    code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "x.nir", "--calibrate", data, "--steps", "1")
    assert_one_line_error(
        code, err, "converting this model needs about", "50 calibration samples x 4098 values", "limit is 0.000977 GiB"
    )
    fitting = int(err.split("at most ")[1].split()[0])
    assert f"(--calibration-samples {fitting})" in err and 1 <= fitting < 50
    assert batches == [] and not (tmp_path / "x.nir").exists()  # was: the ANN ran on every sample
    conversion = onnx_convert.convert(path, data, calibration_samples=fitting)
    assert sum(batches) == fitting and conversion.data.x_train.shape == (fitting, 2)  # in chunks that fit


def test_the_snn_evaluation_runs_in_chunks_that_fit(tmp_path, monkeypatch):
    path, data = tiny(tmp_path, test=40)
    conversion = onnx_convert.convert(path, data, calibration_samples=4)
    whole = onnx_convert.evaluate(conversion, steps=(6,))
    per_sample = 6 * values_per_step(conversion.graph) * VALUES_PER_NODE * BYTES_PER_VALUE
    held = conversion_weight_bytes(onnx_convert.weight_count(conversion.network))
    set_limit(monkeypatch, held + 5 * per_sample)  # 5 samples at once: the fixed-point calibration's 4 fit
    with pytest.raises(NeurocompileError):
        check_run_memory(conversion.graph, 40, 6)  # what evaluate checked, and refused, before
    assert onnx_convert.evaluate(conversion, steps=(6,)) == whole


def test_steps_are_sized_before_the_ann_runs(tmp_path, monkeypatch, batches):
    path, data = tiny(tmp_path)
    with pytest.raises(NeurocompileError, match=r"fixed-point calibration .* \(50 samples x 100000000 steps"):
        onnx_convert.convert(path, data, steps=[4, 100_000_000])
    assert batches == []
    for bad in ([], [0], [-1], [2**31], [True], ["8"]):
        with pytest.raises(NeurocompileError, match="steps must be integers from 1 to 2147483647"):
            onnx_convert.convert(path, data, steps=bad)
    for bad in (0, -1, 2.5):
        with pytest.raises(NeurocompileError, match="calibration_samples must be a positive integer"):
            onnx_convert.convert(path, data, calibration_samples=bad)
    assert batches == []


@pytest.mark.parametrize(
    "option, value",
    [
        ("--steps", "99999999999999999999"),  # was: "this run needs about 1.53e+17 GiB", after calibrating
        ("--steps", str(2**31)),
        ("--steps", "0"),
        ("--steps", "-4"),
        ("--steps", "8,0"),
        ("--limit", "0"),
        ("--limit", "-1"),
        ("--calibration-samples", "0"),
        ("--calibration-samples", "-1"),
        ("--calibration-samples", "1.5"),
    ],
)
def test_bad_integer_options_are_usage_errors(tmp_path, capsys, batches, option, value):
    path, data = tiny(tmp_path)
    code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "x.nir", "--calibrate", data, option, value)
    assert_one_line_error(code, err, f"Invalid value for '{option}'")
    assert batches == []


def test_huge_sample_counts_mean_all_samples(tmp_path, capsys):
    path, data = tiny(tmp_path)
    huge = "99999999999999999999"
    code, out, err = run_cli(
        capsys, "convert", path, "-o", tmp_path / "x.nir", "--calibrate", data, "--steps", "4",
        "--limit", huge, "--calibration-samples", huge,
    )  # fmt: skip
    assert code == 0, err
    assert "(50 samples)" in out and "accuracy on 10 test samples" in out


def pooled_model(path, side: int):
    """input [N, 1, side, side] -> AveragePool 2x2 -> Flatten -> Gemm(2): one chain, built through an identity."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(2, (side // 2) ** 2)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    x = np.random.default_rng(1).random((20, 1, side, side)).astype(np.float32)
    np.savez(path.with_suffix(".npz"), x_train=x[:10], x_test=x[10:], y_test=np.zeros(10, np.int64))
    return path, str(path.with_suffix(".npz"))


def test_dense_synapse_matrices_are_sized_before_the_ann_runs(tmp_path, monkeypatch, capsys, batches):
    # the fixed-point compiler builds input -> readout (4096 -> 2, through a pool) from a 4096 x 4096 identity
    path, data = pooled_model(tmp_path / "pooled.onnx", 64)
    set_limit(monkeypatch, 64 << 20)  # the ANN (a few MB) fits, the 128 MiB identity does not
    code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "x.nir", "--calibrate", data, "--steps", "1")
    assert_one_line_error(
        code, err, "fixed-point compilation needs about", "is built as a dense 2 x 4096 matrix from a 4096 x 4096"
    )
    assert batches == [] and not (tmp_path / "x.nir").exists()  # was: the ANN ran, then the compiler allocated


def test_the_dense_synapses_are_those_the_compiler_builds_densely(tmp_path, monkeypatch):
    import torch

    from neurocompile.compiler import normalize as N
    from tests.onnx.test_onnx_convert import ManyOps, Residual, cnn, export, mlp

    identities = []  # the source size of every chain the compiler pushes an identity through
    image = N._identity_image
    monkeypatch.setattr(
        N, "_identity_image", lambda seq, shape: identities.append(int(np.prod(shape))) or image(seq, shape)
    )
    torch.manual_seed(0)
    for name, make in (("mlp", mlp), ("cnn", cnn), ("residual", Residual), ("ops", ManyOps)):
        conversion = onnx_convert.convert(export(make(), tmp_path / f"{name}.onnx"), calibration_samples=8)
        identities.clear()
        built = N.normalize(conversion.graph, onnx_convert.CONVENTION).synapses
        dense = {(s.name, int(s.weights.shape[1]), int(s.weights.shape[0])) for s in built if s.kind != "conv"}
        listed = onnx_convert.dense_synapses(conversion.network)
        assert {(n, n_src, n_dst) for n, _identity, _v, n_dst, n_src in listed} == dense, name
        assert {n_identity for _n, n_identity, _v, _d, _s in listed if n_identity} == set(identities), name


def test_weights_that_cannot_fit_are_refused_from_their_dims_before_decoding(tmp_path, monkeypatch, capsys):
    path, data = tiny(tmp_path, hidden=64)  # 2*64 + 64 + 64*2 + 2 = 322 weights
    set_limit(monkeypatch, 322 * 8 * 4 - 64)
    code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "x.nir", "--calibrate", data)
    assert_one_line_error(code, err, "converting its 322 weights needs about")
