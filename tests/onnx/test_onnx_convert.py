"""ANN-to-SNN conversion (`neurocompile.onnx.read`, `neurocompile.onnx.convert`, `neurocompile convert`).

The ONNX models are made here with ``torch.onnx.export`` (or ``onnx.helper``) into tmp paths; the
digits ANNs train for a few epochs only, so the tests compare the SNN with its own ANN.
"""

from __future__ import annotations

import json
import warnings

import nir
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from neurocompile.analysis import metrics
from neurocompile.backends import create_backend
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.frontend.torch_export import convention_from_metadata
from neurocompile.onnx.convert import (
    CONVENTION,
    analog_current,
    compile_fixed_point,
    convert,
    encode_spikes,
    forward,
    run_onnx,
)
from neurocompile.onnx.read import READOUT, Relu, parse_onnx, read_onnx
from tests.cli.test_cli_float import assert_one_line_error, run_cli


def export(model: nn.Module, path, shape=(1, 8, 8), **options):
    """``torch.onnx.export`` (TorchScript exporter), dynamic batch unless ``dynamic_axes`` is given."""
    options.setdefault("dynamic_axes", {"image": {0: "batch"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), torch.zeros(1, *shape), str(path), input_names=["image"], dynamo=False, **options
        )
    return path


def test_torch_default_exporter_files_convert_and_external_weights_are_refused(tmp_path, capsys):
    """torch.onnx.export's default (dynamo, onnxscript) in the project's environment: with the weights
    inside the file it converts; with torch's default external weights file it is refused, naming the flag."""
    model = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 3)).eval()  # large enough to go outside
    inside, outside = tmp_path / "inside.onnx", tmp_path / "outside.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 6),), str(inside), external_data=False)
        torch.onnx.export(model, (torch.zeros(1, 6),), str(outside))
    capsys.readouterr()  # torch's own progress lines
    assert (tmp_path / "outside.onnx.data").is_file() and not (tmp_path / "inside.onnx.data").exists()
    x = np.random.default_rng(0).random((4, 6)).astype(np.float32)
    network = parse_onnx(read_onnx(inside))
    got = forward(network, x)[network.output]
    np.testing.assert_allclose(got, model(torch.as_tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(NeurocompileError, match=r"external file; .*external_data=False"):
        read_onnx(outside)


def trained(make, epochs: int, seed: int = 0) -> nn.Module:
    """``make()`` trained briefly on the digits training split."""
    from neurocompile.data import load_digits_images

    torch.manual_seed(seed)
    model = make()
    x, y = load_digits_images("train")
    x, y = torch.as_tensor(x).unsqueeze(1), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn(pool=nn.AvgPool2d) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        pool(2),
        nn.Conv2d(6, 12, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "mlp": export(trained(mlp, epochs=4), folder / "mlp.onnx"),
        "cnn": export(trained(cnn, epochs=3, seed=1), folder / "cnn.onnx"),
    }


def float_accuracy(conversion, steps: int, n: int) -> float:
    x, y = conversion.data.x_test[:n], conversion.data.y_test[:n]
    backend = create_backend("float", conversion.graph, convention=CONVENTION)
    return metrics.accuracy(backend.run(analog_current(x, steps, conversion.scales["input"])), y)


def ann_accuracy(conversion, n: int) -> float:
    x, y = conversion.data.x_test[:n], conversion.data.y_test[:n]
    return float((run_onnx(conversion.model, x).argmax(axis=1) == y).mean())


# --- accuracy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_snn_accuracy_close_to_ann_at_64_steps(digits_models, name):
    conversion = convert(digits_models[name])
    ann = ann_accuracy(conversion, 150)
    assert ann > 0.85
    assert abs(float_accuracy(conversion, 64, 150) - ann) <= 0.03


def test_fixed_point_compile_keeps_subtractive_reset(digits_models):
    conversion = convert(digits_models["mlp"])
    program = compile_fixed_point(conversion, steps=32, samples=32)
    assert {pop.reset for pop in program.populations} == {"subtract"}
    x, y = conversion.data.x_test[:80], conversion.data.y_test[:80]
    cpu = metrics.accuracy(create_backend("cpu", program).run(encode_spikes(x, 32)), y)
    assert cpu >= ann_accuracy(conversion, 80) - 0.05


# --- parsing and normalization ------------------------------------------------------------------


def test_batch_norm_folding_equals_onnxruntime(tmp_path):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), nn.ReLU())
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    path = export(
        model,
        tmp_path / "bn.onnx",
        shape=(2, 6, 6),
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    onnx_model = read_onnx(path)
    assert "BatchNormalization" in [n.op_type for n in onnx_model.graph.node]
    network = parse_onnx(onnx_model)
    assert [type(layer).__name__ for layer in network.layers] == ["Conv", "Relu"]
    conv = network.layers[0]
    x = np.random.default_rng(0).normal(size=(5, 2, 6, 6)).astype(np.float32)
    folded = forward(network, x)[conv.name]
    session_model = onnx.load(path)
    session_model.graph.output[0].name = session_model.graph.node[-1].input[0]  # the BN output, before ReLU
    np.testing.assert_allclose(folded.reshape(5, -1), run_onnx(session_model, x), rtol=1e-4, atol=1e-5)


def tiny_dense_model(path, w1, b1, w2, b2):
    """input [N, inputs] -> Gemm -> Relu -> Gemm, built with onnx.helper (``w1`` [hidden, inputs], ``w2``
    [outputs, hidden]); the input and output widths of 2 stay declared for empty weights."""
    inits = [
        numpy_helper.from_array(a.astype(np.float32), name)
        for a, name in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", w1.shape[1] or 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", w2.shape[0] or 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_scales_are_the_percentiles_computed_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(3, 2)), rng.normal(size=3) * 0.1
    w2, b2 = np.abs(rng.normal(size=(2, 3))), rng.normal(size=2) * 0.1
    x = rng.random((50, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=x, x_test=x[:10], y_test=np.zeros(10, dtype=np.int64))
    path = tiny_dense_model(tmp_path / "tiny.onnx", w1, b1, w2, b2)
    conversion = convert(path, str(tmp_path / "data.npz"), percentile=90.0)

    h = np.maximum(x.astype(np.float64) @ w1.T + b1, 0)
    lam1 = np.percentile(h, 90.0)
    lam_out = np.percentile(h @ w2.T + b2, 90.0)
    lam_in = x.max()
    assert conversion.scales == pytest.approx({"input": lam_in, "relu1": lam1, READOUT: lam_out})
    fc1, fc2 = conversion.graph.nodes["fc1"], conversion.graph.nodes["fc2"]
    np.testing.assert_allclose(fc1.weight, w1 * lam_in / lam1, rtol=1e-5)
    np.testing.assert_allclose(fc1.bias, b1 / lam1, rtol=1e-5)
    np.testing.assert_allclose(fc2.weight, w2 * lam1 / lam_out, rtol=1e-5)
    np.testing.assert_allclose(fc2.bias, b2 / lam_out, rtol=1e-5)
    for name in ("relu1", READOUT):
        node = conversion.graph.nodes[name]
        assert isinstance(node, nir.IF)
        np.testing.assert_allclose(node.r * CONVENTION.dt, 1.0, rtol=1e-6)
        np.testing.assert_array_equal(node.v_threshold, 1.0)


class ManyOps(nn.Module):
    """Conv, GlobalAveragePool, Reshape, MatMul + Add, BatchNorm after it, Gemm, final Softmax."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(1, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1)
        self.w, self.b = nn.Parameter(torch.randn(8, 16)), nn.Parameter(torch.randn(16))
        self.bn, self.fc = nn.BatchNorm1d(16), nn.Linear(16, 10)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x))).reshape(-1, 8)
        return torch.softmax(self.fc(torch.relu(self.bn(h @ self.w + self.b))), dim=1)


def test_operators_fold_into_layers_that_match_onnxruntime(tmp_path):
    torch.manual_seed(0)
    path = export(ManyOps(), tmp_path / "ops.onnx")
    ops = [n.op_type for n in read_onnx(path).graph.node]
    assert {"GlobalAveragePool", "Reshape", "MatMul", "Add", "BatchNormalization", "Softmax"} <= set(ops)
    conversion = convert(path)  # checks the parsed layers against onnxruntime on the training split
    kinds = [type(layer).__name__ for layer in conversion.network.layers]
    assert kinds == ["Conv", "Relu", "AvgPool", "Flatten", "Dense", "Relu", "Dense"]
    assert conversion.network.head == "Softmax"


def test_encode_spikes_sends_round_p_times_steps():
    p = np.array([[0.0, 0.1, 0.5, 0.77, 1.0]])
    spikes = encode_spikes(p, 40)
    assert spikes.shape == (1, 40, 5) and set(np.unique(spikes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(spikes.sum(axis=1), np.floor(p * 40 + 0.5))
    with pytest.raises(NeurocompileError, match="non-negative"):
        encode_spikes(-p, 8)


# --- residual connections ----------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv3(torch.relu(self.conv2(h))) + h)
        return self.fc(nn.functional.avg_pool2d(h, 2).flatten(1))


def test_residual_add_becomes_edges_and_matches_the_ann(tmp_path):
    torch.manual_seed(0)
    conversion = convert(export(Residual(), tmp_path / "res.onnx"))
    graph, network = conversion.graph, conversion.network
    add = next(layer for layer in network.layers if type(layer).__name__ == "Add")
    after_add = next(layer for layer in network.layers if layer.inputs == [add.name])
    first_relu = next(name for name in add.inputs if isinstance(network.layer(name), Relu))
    skip = f"{first_relu}_to_{add.name}_scale"
    assert (first_relu, skip) in graph.edges and (skip, after_add.name) in graph.edges
    assert isinstance(graph.nodes[skip], nir.Scale)
    # rates of the IF population after the Add follow the ANN's ReLU output / lambda
    x = conversion.data.x_test[:20]
    rec = create_backend("float", graph, convention=CONVENTION).run(analog_current(x, 200), record="all")
    rates = rec[f"{after_add.name}.spikes"].mean(axis=1)
    expected = np.clip(forward(network, x)[after_add.name] / conversion.scales[after_add.name], 0, 1)
    assert np.abs(rates - expected).mean() < 0.02
    # the skip path is a synapse of its own in the fixed-point program
    program = compile_fixed_point(conversion, steps=8, samples=8)
    assert any(syn.source == first_relu and syn.target == after_add.name for syn in program.synapses)


class SelfAdd(nn.Module):
    def forward(self, x):
        h = torch.relu(x.flatten(1))
        return h + h


class BroadcastAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.a(x) + self.b(x)).flatten(1)


@pytest.mark.parametrize("module,words", [(SelfAdd, ["Add", "itself"]), (BroadcastAdd, ["Add", "shapes"])])
def test_unmappable_add_is_refused(tmp_path, module, words):
    path = export(module(), tmp_path / "add.onnx")
    with pytest.raises(NeurocompileError) as info:
        parse_onnx(read_onnx(path))
    assert all(word in str(info.value) for word in words) and "\n" not in str(info.value)


# --- the command line -------------------------------------------------------------------------


def test_cli_writes_a_graph_with_subtractive_reset(capsys, tmp_path, digits_models):
    out, plot = tmp_path / "mlp.nir", tmp_path / "acc.png"
    code, stdout, _ = run_cli(
        capsys, "convert", digits_models["mlp"], "-o", out, "--steps", "8,16", "--limit", "30", "--json", "--plot", plot
    )
    assert code == 0
    report = json.loads(stdout)
    assert [row["steps"] for row in report["accuracy"]["snn"]] == [8, 16]
    assert {"float", "float_spikes", "cpu"} <= set(report["accuracy"]["snn"][0])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    graph = load_graph(out)
    assert convention_from_metadata(graph).reset == "subtract"
    assert {type(node).__name__ for node in graph.nodes.values()} >= {"IF", "Affine", "Input", "Output"}
    code, stdout, _ = run_cli(
        capsys, "convert", digits_models["mlp"], "-o", tmp_path / "b.nir", "--steps", "8", "--limit", "20"
    )
    assert code == 0 and "reset by subtraction" in stdout and "cpu (fixed)" in stdout


class MaxPoolNet(nn.Module):
    def forward(self, x):  # zero padding is exact only for inputs that are not negative (a Relu's output)
        return nn.functional.max_pool2d(x, 3, 2, padding=1).flatten(1)


class TwoInputs(nn.Module):
    def forward(self, a, b):
        return torch.relu(a + b)


def bad_models(folder, valid) -> dict:
    """Models and files every conversion must refuse, with words their one-line error contains."""
    data = valid.read_bytes()
    files = {}
    files["maxpool"] = (export(MaxPoolNet(), folder / "maxpool.onnx"), ["MaxPool", "pads [1, 1, 1, 1]"])
    sigmoid = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Sigmoid())
    files["sigmoid"] = (export(sigmoid, folder / "sigmoid.onnx"), ["/2/Sigmoid", "Sigmoid"])
    dynamic = export(mlp(), folder / "dynamic.onnx", dynamic_axes={"image": {0: "batch", 2: "height"}})
    files["dynamic"] = (dynamic, ["dynamic dimension", "height"])
    old = onnx.load(str(valid))
    old.opset_import[0].version = 6
    onnx.save(old, str(folder / "old.onnx"))
    files["old opset"] = (folder / "old.onnx", ["opset 6"])
    (folder / "garbage.onnx").write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    files["garbage"] = (folder / "garbage.onnx", ["not an ONNX model"])
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])
    files["truncated"] = (folder / "truncated.onnx", ["truncated.onnx"])
    (folder / "empty.onnx").write_bytes(b"")
    files["empty"] = (folder / "empty.onnx", ["empty file"])
    unchecked = onnx.load(str(valid))
    unchecked.graph.node[-1].input[0] = "nowhere"
    onnx.save(unchecked, str(folder / "unchecked.onnx"))
    files["fails the checker"] = (folder / "unchecked.onnx", ["invalid ONNX model", "nowhere"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoInputs(), (torch.zeros(1, 4), torch.zeros(1, 4)), str(folder / "two.onnx"), dynamo=False)
    files["two inputs"] = (folder / "two.onnx", ["2 inputs"])
    return files


def test_cli_refusals_are_one_line(capsys, tmp_path, digits_models):
    for name, (path, words) in bad_models(tmp_path, digits_models["mlp"]).items():
        code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "out.nir")
        assert_one_line_error(code, err, *words)
        assert not (tmp_path / "out.nir").exists(), name


def test_cli_refuses_to_overwrite_its_input_and_bad_steps(capsys, digits_models):
    model = digits_models["mlp"]
    assert_one_line_error(*run_cli(capsys, "convert", model, "-o", model)[::2], "overwrite")
    assert_one_line_error(*run_cli(capsys, "convert", model, "-o", "x.nir", "--steps", "16,zero")[::2], "--steps")


def test_cli_sizes_the_runs_before_allocating_them(capsys, tmp_path, digits_models, monkeypatch):
    # was: "internal error" after a failed allocation (issue 27), then a refusal after the ANN had run
    # on the whole calibration set; now refused before the ANN runs
    import neurocompile.onnx.convert as onnx_convert

    def no_ann(*args, **kwargs):
        raise AssertionError("the ANN ran before the runs were sized")

    monkeypatch.setattr(onnx_convert, "forward", no_ann)
    code, _, err = run_cli(capsys, "convert", digits_models["mlp"], "-o", tmp_path / "x.nir", "--steps", "100000")
    assert_one_line_error(
        code,
        err,
        "the fixed-point calibration (its samples run at once) needs about",
        "(256 samples x 100000 steps x",
        "run fewer steps (--steps), or calibrate on at most",
    )
    assert not (tmp_path / "x.nir").exists()
    code, _, err = run_cli(
        capsys, "convert", digits_models["mlp"], "-o", tmp_path / "x.nir", "--steps", "99999999999999999999"
    )  # was: a memory refusal of 1.53e+17 GiB after the ANN ran; a usage error now
    assert_one_line_error(code, err, "Invalid value for '--steps'", "from 1 to 2147483647")


def test_data_file_forms_and_refusals(tmp_path):
    """An .npz with x and y is split as datasets are (80/20, stratified); pickled or malformed
    archives are one-line errors."""
    from neurocompile.data import TEST_FRACTION
    from neurocompile.onnx.convert import load_data

    rng = np.random.default_rng(0)
    x, y = rng.random((40, 2)).astype(np.float32), np.arange(40) % 4
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    data = load_data(str(tmp_path / "xy.npz"), (2,))
    assert len(data.x_test) == int(np.ceil(TEST_FRACTION * 40)) and len(data.x_train) == 40 - len(data.x_test)
    assert sorted(np.bincount(data.y_test)) == [2, 2, 2, 2]  # stratified
    np.savez(tmp_path / "objects.npz", x=np.array([object()] * 4, dtype=object), y=np.arange(4))
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip")
    for name, words in (("objects.npz", "pickled"), ("garbage.npz", "not a readable"), ("none.npz", "no such file")):
        with pytest.raises(NeurocompileError, match=words):
            load_data(str(tmp_path / name), (2,))


@pytest.mark.parametrize("parameter", ["scale", "B", "mean", "var"])
def test_batch_norm_parameters_of_another_size_are_a_one_line_error(tmp_path, parameter):
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    options = dict(shape=(2, 6, 6), do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    onnx_model = read_onnx(export(model, tmp_path / "bn.onnx", **options))
    bn = next(n for n in onnx_model.graph.node if n.op_type == "BatchNormalization")
    onnx_model.graph.initializer.append(numpy_helper.from_array(np.ones(2, np.float32), "two_values"))
    bn.input[["X", "scale", "B", "mean", "var"].index(parameter)] = "two_values"
    with pytest.raises(NeurocompileError, match=f"{parameter} of shape \\[2\\] is not one value per channel \\(4\\)"):
        parse_onnx(onnx_model)


def tiny_conv_model(path, op: str, **attributes):
    """input [N, 1, 6, 6] -> ``op`` (a 2x2 Conv with bias, or an AveragePool) with ``attributes``, by onnx.helper."""
    inits = [numpy_helper.from_array(np.ones((2, 1, 2, 2), np.float32), "w")] if op == "Conv" else []
    inputs = ["x", "w"] if op == "Conv" else ["x"]
    if op == "AveragePool":
        attributes.setdefault("kernel_shape", [2, 2])
    node = helper.make_node(op, inputs, ["y"], name="layer", **{k: v for k, v in attributes.items() if v != []})
    for name in (k for k, v in attributes.items() if v == []):  # an empty list has no type to infer
        node.attribute.append(helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS))
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "c", "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


BAD_GEOMETRY = [
    (dict(strides=[0, 1]), "strides [0, 1] is not 2 integer(s) of at least 1"),  # was ZeroDivisionError
    (dict(strides=[1, 1, 1]), "strides [1, 1, 1] is not 2 integer(s) of at least 1"),  # was RuntimeError
    (dict(pads=[]), "pads [] is not 4 integer(s) of at least 0"),  # was IndexError
    (dict(pads=[1, -1, 1, -1]), "pads [1, -1, 1, -1] is not 4 integer(s) of at least 0"),
]


@pytest.mark.parametrize(
    "op, attributes, words",
    [("Conv", *case) for case in BAD_GEOMETRY]
    + [("AveragePool", *case) for case in BAD_GEOMETRY]
    + [("Conv", dict(dilations=[0, 0]), "dilations [0, 0] is not 2 integer(s) of at least 1")],
)
def test_bad_geometry_attributes_are_one_line_refusals(tmp_path, op, attributes, words):
    # issue 27: hostile ONNX files ended in "internal error" instead of a refusal
    path = tiny_conv_model(tmp_path / "m.onnx", op, **attributes)
    with pytest.raises(NeurocompileError) as info:
        parse_onnx(read_onnx(path))
    assert words in str(info.value) and "\n" not in str(info.value)


def tiny_reshape_model(path, shape: np.ndarray):
    """input [N, 2] -> Reshape to the constant ``shape``, by onnx.helper."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(shape, "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "build, words",
    [
        # issue 27: each ended in "internal error" (IndexError, TypeError, ValueError) instead of a refusal
        (lambda p: tiny_dense_model(p, np.ones((0, 2)), np.ones(0), np.ones((2, 0)), np.ones(2)), "not 1 to"),
        (lambda p: tiny_reshape_model(p, np.array([], np.int64)), "target shape [] is not"),
        (lambda p: tiny_reshape_model(p, np.array(2, np.int64)), "target shape 2.0 is not"),
    ],
)
def test_empty_layers_and_shapes_are_one_line_refusals(tmp_path, build, words):
    with pytest.raises(NeurocompileError) as info:
        parse_onnx(read_onnx(build(tmp_path / "m.onnx")))
    assert words in str(info.value) and "\n" not in str(info.value)
