"""MaxPool as difference neurons (`neurocompile.onnx.max_pool`): in the ANN, the rewrite against onnxruntime's
MaxPool (an independent oracle) and a 2x2 window computed by hand; the geometry it refuses; and a digits CNN
with max pooling converted end to end, the fixed-point SNN against its own ANN."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from neurocompile.backends import create_backend
from neurocompile.compiler import normalize as N
from neurocompile.errors import NeurocompileError
from neurocompile.onnx.convert import (
    CONVENTION,
    compile_fixed_point,
    convert,
    dense_synapses,
    encode_spikes,
    evaluate,
    forward,
    run_onnx,
)
from neurocompile.onnx.max_pool import tree
from neurocompile.onnx.read import parse_onnx
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.onnx.test_onnx_convert import cnn, export, trained


def pool_model(op: str = "MaxPool", shape=(3, 7, 7), relu: bool = False, indices: bool = False, **attributes):
    """input [N, *shape] -> (Relu ->) ``op`` named 'pool' with ``attributes``, by onnx.helper."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")] if relu else []
    outputs = ["y", "i"] if indices else ["y"]
    nodes.append(helper.make_node(op, ["r" if relu else "x"], outputs, name="pool", **attributes))
    dims = ["N", *(f"d{axis}" for axis in range(len(shape)))]
    values = [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)]
    values += [helper.make_tensor_value_info("i", TensorProto.INT64, dims)] if indices else []
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])], values
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- the rewrite in the ANN -------------------------------------------------------------------------

EXACT = [  # (attributes, relu before the pool: padding counts as zeros, exact for inputs that are not negative)
    (dict(kernel_shape=[2, 2], strides=[2, 2]), False),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), True),
    (dict(kernel_shape=[3, 3]), False),
    (dict(kernel_shape=[2, 3], strides=[1, 2]), False),
    (dict(kernel_shape=[2, 2], dilations=[2, 3]), False),
    (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), False),  # 7 = 3 + 2 * 2: the same shape
    (dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID"), False),
    (dict(kernel_shape=[2, 2], storage_order=1), False),  # storage_order only orders the Indices output
    (dict(kernel_shape=[1, 1], strides=[2, 2]), False),  # no pair: a strided selection
]


@pytest.mark.parametrize("attributes, relu", EXACT)
def test_the_rewrite_equals_onnxruntimes_maxpool(attributes, relu):
    model = pool_model(relu=relu, **attributes)
    network = parse_onnx(model)
    x = np.random.default_rng(0).normal(size=(16, 3, 7, 7)).astype(np.float32)  # negative values too
    ours = forward(network, x)[network.output].reshape(len(x), -1)
    np.testing.assert_allclose(ours, run_onnx(model, x), rtol=1e-12, atol=1e-12)


def test_global_max_pool_is_the_window_of_the_whole_map():
    model = pool_model("GlobalMaxPool", shape=(2, 5, 3))
    network = parse_onnx(model)
    x = np.random.default_rng(1).normal(size=(8, 2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(forward(network, x)[network.output].reshape(8, -1), run_onnx(model, x), atol=1e-12)
    assert "became 4 layer(s) of difference neurons, 14 per pooled value" in network.folded[0]


def test_a_2x2_window_by_hand():
    """Channel 0 [[1, 5], [3, 2]]: level 1 relu(1 - 5) = 0, relu(3 - 2) = 1 (maxima 5 + 0 and 2 + 1), level 2
    relu(5 - 3) = 2, the max 3 + 2 = 5. Channel 1 [[4, 0], [0, 7]]: 4, 0; relu(4 - 7) = 0; 7 + 0 = 7."""
    network = parse_onnx(pool_model(shape=(2, 2, 2), kernel_shape=[2, 2]))
    values = forward(network, np.array([[[[1, 5], [3, 2]], [[4, 0], [0, 7]]]], np.float32))
    assert values["pool_diff1"].reshape(2, 2).tolist() == [[0, 1], [4, 0]]
    assert values["pool_diff2"].reshape(2).tolist() == [2, 0]
    assert values[network.output].reshape(2).tolist() == [5, 7]
    window = network.layer("pool_diff1_window")
    assert window.groups == 2 and window.weight[:2, 0].tolist() == [[[1, -1], [0, 0]], [[0, 0], [1, -1]]]
    assert [layer.name for layer in network.layers] == [
        "pool_diff1_window",
        "pool_diff1",
        "pool_diff2_window",
        "pool_diff2_from_diff1",
        "pool_diff2_sum",
        "pool_diff2",
        "pool_max_window",
        "pool_max_from_diff1",
        "pool_max_from_diff2",
        "pool_max_sum",
    ]


@pytest.mark.parametrize("n, levels, top", [(1, 0, (0, ())), (2, 1, (1, ((0, 0),))), (5, 3, (4, ((2, 0),)))])
def test_the_tree_pairs_in_order_and_carries_an_odd_element(n, levels, top):
    pairs, value = tree(n)
    assert len(pairs) == levels and (value.element, value.terms) == top
    assert sum(len(level) for level in pairs) == n - 1  # one difference neuron per pair


# --- refusals -----------------------------------------------------------------------------------------

REFUSED = [
    (dict(indices=True, kernel_shape=[2, 2]), "its Indices output has no spiking equivalent"),
    (dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), "pads [1, 1, 1, 1] on an input that may be negative"),
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), "ceil_mode=1 changes the output shape here"),
    (dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"), "auto_pad=SAME_UPPER is not supported"),
    (dict(kernel_shape=[3, 3], pads=[0, 0, 1, 1], relu=True), "asymmetric pads [0, 0, 1, 1]"),
    (dict(kernel_shape=[2, 2], strides=[0, 2]), "strides [0, 2] is not 2 integer(s) of at least 1"),
    (dict(kernel_shape=[9, 9]), "cannot apply to input shape [3, 7, 7]"),
    (dict(shape=(3, 7), kernel_shape=[2]), "only 2-D pooling"),  # 1-D: the converter's layers are 2-D
    (dict(op="GlobalMaxPool", shape=(1, 70, 70)), "a window of 4900 values over 1 channel(s) needs about"),
]


@pytest.mark.parametrize("options, words", REFUSED)
def test_what_the_rewrite_cannot_express_is_a_one_line_refusal(options, words):
    with pytest.raises(NeurocompileError) as info:
        parse_onnx(pool_model(**options))
    message = str(info.value)
    assert message.startswith(f"ONNX node 'pool' ({options.get('op', 'MaxPool')}): ") and "\n" not in message
    assert words in message


def test_the_cli_refuses_the_indices_output_in_one_line(tmp_path, capsys):
    onnx.save(pool_model(indices=True, kernel_shape=[2, 2]), str(tmp_path / "m.onnx"))
    code, _, err = run_cli(capsys, "convert", tmp_path / "m.onnx", "-o", tmp_path / "m.nir")
    assert_one_line_error(code, err, "'pool' (MaxPool)", "Indices output")
    assert not (tmp_path / "m.nir").exists()


# --- end to end: digits CNNs with max pooling -------------------------------------------------------


def cnn_max_pool() -> nn.Module:
    """test_onnx_convert's CNN with a 2x2 max pool (feeding a Conv: the pooled values' direct path)."""
    return cnn(nn.MaxPool2d)


def padded_max_pool() -> nn.Module:
    """PyTorch's 3x3 stride 2 max pool with padding 1 after a Relu (four levels), untrained."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(64, 10)
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maxpool")
    torch.manual_seed(0)
    return {
        "trained": export(trained(cnn_max_pool, epochs=4), folder / "cnn.onnx"),
        "padded": export(padded_max_pool(), folder / "padded.onnx"),
    }


def test_a_torch_cnn_with_max_pooling_converts_within_two_points_at_64_steps(models):
    """Oracle: the ANN itself (onnxruntime, on the 360 test digits); the fixed-point SNN within 2 points."""
    conversion = convert(models["trained"])
    report = evaluate(conversion, steps=(64,))
    ann, snn = report["accuracy"]["ann"], report["accuracy"]["snn"][0]
    assert ann > 0.9 and abs(snn["cpu"] - ann) <= 0.02 and abs(snn["float_spikes"] - ann) <= 0.02
    assert "'/3/MaxPool' became 2 layer(s) of difference neurons, 3 per pooled value" in report["folded"][-1]


@pytest.mark.parametrize("name", ["trained", "padded"])
def test_the_dense_synapses_of_the_rewrite_are_those_the_compiler_builds(models, name):
    conversion = convert(models[name], calibration_samples=16)
    built = N.normalize(conversion.graph, CONVENTION).synapses
    dense = {(s.name, int(s.weights.shape[1]), int(s.weights.shape[0])) for s in built if s.kind != "conv"}
    listed = dense_synapses(conversion.network)
    assert {(name, n_src, n_dst) for name, _identity, _values, n_dst, n_src in listed} == dense
    assert {s.kind for s in built if s.target.endswith("_diff1")} == {"conv"}  # the window: one grouped conv


@pytest.mark.lava
def test_lava_runs_the_rewrite_as_the_cpu_backend_does(models):
    conversion = convert(models["padded"], calibration_samples=32)
    program = compile_fixed_point(conversion, 16, samples=32)
    spikes = encode_spikes(conversion.data.x_test[:3], 16, conversion.scales["input"])
    cpu = create_backend("cpu", program).run(spikes).output_spikes()
    assert cpu.sum() > 0
    np.testing.assert_array_equal(create_backend("lava", program).run(spikes).output_spikes(), cpu)
