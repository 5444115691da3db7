"""Hostile ONNX files: tensors whose data live in another file are refused before anything reads them.

An ONNX tensor anywhere in a model (an initializer, a sparse initializer, a node attribute such as a
Constant's ``value``/``sparse_value``, a tensor inside a subgraph) may keep its data in an external
file named by a relative path; onnx and onnxruntime resolve it against the current directory or the
model's folder. A crafted model could so read any file's bytes into the converted graph or an error
message. Issue 27: a Constant's external value was read from the current directory.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from neurocompile.errors import NeurocompileError
from neurocompile.onnx.convert import run_onnx
from neurocompile.onnx.read import parse_onnx, read_onnx
from tests.cli.test_cli_float import assert_one_line_error, run_cli

SECRET = b"TOPSECRETBYTES!!" * 4  # finite as float32 and as int64: a leak would go unnoticed


def external(name: str, dims=(2,), data_type=TensorProto.FLOAT) -> TensorProto:
    """A tensor whose data are the first bytes of ``secret.bin``, a relative location."""
    tensor = TensorProto(name=name, data_type=data_type, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    length = int(np.prod(dims)) * (8 if data_type == TensorProto.INT64 else 4)
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def sparse_external(name: str) -> onnx.SparseTensorProto:
    indices = numpy_helper.from_array(np.array([0, 1], np.int64), f"{name}_indices")
    return helper.make_sparse_tensor(external(name), indices, [2])


def model(nodes, initializers=(), sparse=(), output_dims=("batch", 2)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_dims))],
        list(initializers),
        sparse_initializer=list(sparse),
    )
    result = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result.ir_version = 8
    return result


def identity_matmul():
    return numpy_helper.from_array(np.eye(2, dtype=np.float32), "w"), helper.make_node("MatMul", ["x", "w"], ["h"])


def constant_value():
    """x @ I + Constant(value): the constant becomes the layer's bias, so the secret would end up in the graph."""
    w, matmul = identity_matmul()
    constant = helper.make_node("Constant", [], ["c"], name="bias", value=external("secret_bias"))
    return model([constant, matmul, helper.make_node("Add", ["h", "c"], ["y"])], [w]), "secret_bias"


def constant_sparse_value():
    w, matmul = identity_matmul()
    constant = helper.make_node("Constant", [], ["c"], name="bias", sparse_value=sparse_external("secret_sparse"))
    return model([constant, matmul, helper.make_node("Add", ["h", "c"], ["y"])], [w]), "secret_sparse"


def sparse_initializer():
    matmul = helper.make_node("MatMul", ["x", "secret_weights"], ["y"])
    values = external("secret_weights", dims=(2,))
    indices = numpy_helper.from_array(np.array([0, 3], np.int64), "idx")
    sparse = helper.make_sparse_tensor(values, indices, [2, 2])
    return model([matmul], sparse=[sparse]), "secret_weights"


def subgraph_tensor():
    """An If whose branches hold a Constant with an external value (a tensor inside a nested graph)."""
    outputs = [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])]
    then_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["b"], value=external("secret_branch"))], "then", [], outputs
    )
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros(2, np.float32)))],
        "else",
        [],
        outputs,
    )
    cond = numpy_helper.from_array(np.array(True), "cond")
    branch = helper.make_node("If", ["cond"], ["b"], name="choose", then_branch=then_branch, else_branch=else_branch)
    w, matmul = identity_matmul()
    return model([branch, matmul, helper.make_node("Add", ["h", "b"], ["y"])], [cond, w]), "secret_branch"


def attribute_tensors():
    """A list of tensors in an attribute (``tensors``) of a node of another domain."""
    node = helper.make_node("Holder", ["x"], ["y"], domain="example", kept=[external("secret_listed")])
    result = model([node])
    result.opset_import.append(helper.make_opsetid("example", 1))
    return result, "secret_listed"


def reshape_shape():
    """A Reshape whose target shape is an external int64 tensor: its error message quoted the secret's bytes."""
    constant = helper.make_node("Constant", [], ["s"], value=external("secret_shape", data_type=TensorProto.INT64))
    return model([constant, helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")]), "secret_shape"


CASES = {
    "Constant value": constant_value,
    "Constant sparse_value": constant_sparse_value,
    "sparse initializer": sparse_initializer,
    "tensor in a subgraph": subgraph_tensor,
    "attribute tensors": attribute_tensors,
    "Reshape shape": reshape_shape,
}


def secret_forms() -> list[str]:
    """The secret as text, and as the numbers a reader would make of its bytes."""
    forms = [SECRET.decode()[:9]]
    for dtype in (np.float32, np.int64):
        values = np.frombuffer(SECRET, dtype=dtype)[:2]
        forms += [str(v) for v in values.tolist()] + [f"{v:.4g}" for v in values.tolist()]
    return forms


@pytest.fixture()
def planted(tmp_path, monkeypatch):
    """``secret.bin`` in the current directory and beside the models (in ``models/``); data for 2 inputs."""
    (tmp_path / "models").mkdir()
    for folder in (tmp_path, tmp_path / "models"):
        (folder / "secret.bin").write_bytes(SECRET)
    rng = np.random.default_rng(0)
    x = rng.random((40, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=x, x_test=x[:8], y_test=np.arange(8) % 2)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def written_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file() and p.name not in ("secret.bin", "data.npz")]


@pytest.mark.parametrize("case", CASES)
def test_external_tensor_data_anywhere_is_refused_unread(capsys, planted, case):
    onnx_model, tensor = CASES[case]()
    path = planted / "models" / "m.onnx"
    onnx.save(onnx_model, str(path))
    assert SECRET[:8] not in path.read_bytes()
    out = planted / "out.nir"
    code, stdout, err = run_cli(
        capsys, "convert", path, "-o", out, "--calibrate", "data.npz", "--steps", "2", "--limit", "4"
    )
    assert_one_line_error(code, err, f"'{tensor}'", "keeps its data in an external file")
    assert not out.exists()
    for text in (stdout, err):
        for form in secret_forms():
            assert form not in text, (form, text)
    for written in written_files(planted):
        assert SECRET[:8] not in written.read_bytes(), written


@pytest.mark.parametrize("case", CASES)
def test_every_reader_refuses_external_data(planted, case):
    """parse_onnx and run_onnx, given a model that did not come through read_onnx, refuse it too."""
    onnx_model, tensor = CASES[case]()
    for call in (lambda: parse_onnx(onnx_model), lambda: run_onnx(onnx_model, np.zeros((1, 2), np.float32))):
        with pytest.raises(NeurocompileError, match=f"'{tensor}' keeps its data in an external file") as info:
            call()
        assert all(form not in str(info.value) for form in secret_forms())


def test_external_data_entries_without_the_external_flag_are_refused(planted):
    """``external_data`` entries on a tensor marked DEFAULT: onnx.load would still follow them."""
    w = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "secret.bin"
    path = planted / "models" / "m.onnx"
    onnx.save(model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]), str(path))
    with pytest.raises(NeurocompileError, match="initializer 'w' keeps its data in an external file"):
        read_onnx(path)


def test_tensor_values_refuses_external_data(planted):
    from neurocompile.onnx.read import tensor_values

    with pytest.raises(NeurocompileError, match="its data are in an external file; refused") as info:
        tensor_values(external("secret_bias"), "initializer 'secret_bias'")
    assert all(form not in str(info.value) for form in secret_forms())
