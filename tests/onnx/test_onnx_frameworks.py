"""ONNX from outside PyTorch: scikit-learn's classifier as skl2onnx writes it, and the nodes that fold away
(a Cast between floats, inference-mode Dropout, a final Softmax, a ZipMap) or choose an output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from neurocompile.errors import NeurocompileError
from neurocompile.onnx.read import parse_onnx, select_output
from tests.cli.test_cli_float import assert_one_line_error, run_cli

SKLEARN = Path(__file__).resolve().parents[1] / "fixtures" / "onnx" / "skl2onnx" / "mlp_classifier"


def test_a_scikit_learn_classifier_converts_as_skl2onnx_wrote_it(tmp_path, capsys):
    """Oracles: scikit-learn's own test accuracy (the ANN, run by onnxruntime on the same split) and the
    ANN itself (the fixed-point SNN within 2 points of it at T=64)."""
    code, out, err = run_cli(
        capsys, "convert", SKLEARN / "model.onnx", "-o", tmp_path / "m.nir", "--steps", "64", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    meta = json.loads((SKLEARN / "meta.json").read_text())
    ann = report["accuracy"]["ann"]
    assert ann == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert abs(report["accuracy"]["snn"][0]["cpu"] - ann) <= 0.02
    assert report["folded"] == [
        "output 'output_probability' chosen of output_label, output_probability (the class scores; --model-output NAME)",
        "ZipMap 'ZipMap' at the output folded away (the same scores)",
        "Cast 'Cast' folded away (between float types)",
        "Softmax 'Relu1' folded away (monotonic at the output: the same class)",
    ]


def _model(nodes, outputs, inits=()):
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info(name, kind, ["batch", 2]) for name, kind in outputs],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


W = ("w", np.ones((3, 2), np.float32))


def test_two_score_outputs_need_a_choice_and_a_named_one_is_kept():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="fc"), helper.make_node("Relu", ["a"], ["b"])]
    model = _model(nodes, [("a", TensorProto.FLOAT), ("b", TensorProto.FLOAT)], [W])
    with pytest.raises(NeurocompileError, match=r"2 outputs \(a, b\); choose one with --model-output NAME"):
        select_output(model, None, "m.onnx")
    with pytest.raises(NeurocompileError, match=r"no output 'c'; the model's outputs are a, b"):
        select_output(model, "c", "m.onnx")
    pruned, notes = select_output(model, "a", "m.onnx")
    assert [n.name for n in pruned.graph.node] == ["fc"] and [o.name for o in pruned.graph.output] == ["a"]
    assert notes == [] and parse_onnx(pruned).output == "fc"


@pytest.mark.parametrize(
    "node, inits, message",
    [
        (helper.make_node("Dropout", ["a", "", "t"], ["b"], name="d"), [("t", np.array(True))], "training_mode is on"),
        (helper.make_node("Cast", ["a"], ["b"], name="c", to=TensorProto.INT64), [], "a cast to INT64 has no spiking"),
    ],
)
def test_nodes_that_change_values_do_not_fold(node, inits, message):
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["a"], name="fc"), node], [("b", TensorProto.FLOAT)], [W, *inits]
    )
    with pytest.raises(NeurocompileError, match=message):
        parse_onnx(select_output(model, None, "m.onnx")[0])


def test_inference_dropout_and_float_casts_fold_away_and_are_announced():
    nodes = [
        helper.make_node("Cast", ["x"], ["x64"], name="c", to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["x64"], ["x32"], name="c2", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x32", "w"], ["a"], name="fc"),
        helper.make_node("Dropout", ["a"], ["b"], name="d"),
    ]
    network = parse_onnx(_model(nodes, [("b", TensorProto.FLOAT)], [W]))
    assert [layer.name for layer in network.layers] == ["fc"] and network.output == "fc"
    assert network.folded == [
        "Cast 'c' folded away (between float types)",
        "Cast 'c2' folded away (between float types)",
        "Dropout 'd' folded away (inference mode: the identity)",
    ]


def test_the_cli_names_the_outputs_to_choose_from(tmp_path, capsys):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="fc"), helper.make_node("Relu", ["a"], ["b"])]
    path = tmp_path / "two.onnx"
    onnx.save(_model(nodes, [("a", TensorProto.FLOAT), ("b", TensorProto.FLOAT)], [W]), path)
    code, _, err = run_cli(capsys, "convert", path, "-o", tmp_path / "m.nir")
    assert_one_line_error(code, err, "2 outputs (a, b)", "--model-output NAME")
