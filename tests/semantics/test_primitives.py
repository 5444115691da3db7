"""The primitive registry against PyTorch's own ops and hand-computed cases.

Each primitive is defined once (``neurocompile.semantics.primitives``); the float backend, the normalizer
and the fixed-point path all read that definition. These tests pin it to independent oracles:
``F.conv2d(padding="same")`` and ``torch.flatten`` on the same tensors, numpy for Threshold, and
Lava's own fixed_pt models for the compiled Threshold.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurocompile.backends import create_backend
from neurocompile.compiler.normalize import normalize, synapse_output
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import GraphError
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.primitives import PRIMITIVES, make_op

IF_NO_DT = Convention(if_uses_dt=False)


def _spikes(shape, steps=6, batch=2, seed=0):
    return (np.random.default_rng(seed).random((batch, steps, *shape)) < 0.4).astype(np.float32)


def _conv_graph(kernel: int, padding, in_shape=(2, 5, 6), stride=1):
    rng = np.random.default_rng(kernel)
    w = rng.normal(size=(3, in_shape[0], kernel, kernel))
    conv = nir.Conv2d(in_shape[1:], w, stride, padding, 1, 1, np.zeros(3))
    x = torch.zeros(1, *in_shape)
    out = F.conv2d(x, torch.as_tensor(w, dtype=torch.float32), padding=padding, stride=stride).shape[1:]
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array(in_shape)),
            "conv": conv,
            "if": nir.IF(np.ones(out), np.full(out, 100.0), np.zeros(out)),
            "output": nir.Output(np.array(out)),
        },
        edges=[("input", "conv"), ("conv", "if"), ("if", "output")],
        type_check=False,
    )
    return graph, w, tuple(out)


@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_conv_same_padding_matches_pytorch_on_float_backend_and_normalizer(kernel):
    graph, w, out_shape = _conv_graph(kernel, "same")
    x = _spikes((2, 5, 6))
    want = F.conv2d(torch.as_tensor(x.reshape(-1, 2, 5, 6)), torch.as_tensor(w, dtype=torch.float32), padding="same")
    want = want.reshape(2, 6, *out_shape).numpy()

    rec = create_backend("float", graph, convention=IF_NO_DT).run(x, record="conv")
    np.testing.assert_allclose(rec["conv.out"], want, rtol=1e-5, atol=1e-5)

    (syn,) = normalize(graph, IF_NO_DT).synapses
    got = synapse_output(syn, x.reshape(-1, 1, 2, 5, 6)).reshape(2, 6, *out_shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert syn.kind == ("conv" if kernel % 2 else "dense")  # asymmetric padding has no conv geometry


@pytest.mark.parametrize("kernel", [2, 3])
def test_conv_same_padding_compiles_to_the_same_synaptic_input(kernel):
    """Fixed point: an IF neuron integrates the conv output; v / v_scale is its running sum a step late."""
    graph, w, out_shape = _conv_graph(kernel, "same")
    x = _spikes((2, 5, 6))
    conv_out = F.conv2d(
        torch.as_tensor(x.reshape(-1, 2, 5, 6)), torch.as_tensor(w, dtype=torch.float32), padding="same"
    )
    want = np.cumsum(conv_out.reshape(2, 6, *out_shape).numpy(), axis=1)
    program, _ = compile_graph(graph, IF_NO_DT)
    rec = create_backend("cpu", program).run(x, record="if")
    got = rec["if.v"] / program.metadata["v_scale"]["if"]
    np.testing.assert_allclose(got[:, 1:], want[:, :-1], atol=0.02 * np.abs(want).max())


def _flatten_graph(start_dim: int, end_dim: int, declared):
    in_shape = (2, 3, 4)
    flat = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start_dim, end_dim=end_dim)
    if declared is not None:
        flat.output_type = {"output": np.array(declared)}
    n = 24
    w = np.random.default_rng(1).normal(size=(5, n))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array(in_shape)),
            "flat": flat,
            "fc": nir.Linear(w),
            "li": nir.LI(np.full(5, 1e-3), np.ones(5), np.zeros(5)),
            "output": nir.Output(np.array([5])),
        },
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "li"), ("li", "output")],
        type_check=False,
    )
    return graph, w


@pytest.mark.parametrize(
    "start_dim, end_dim, declared, torch_dims",
    [
        (0, -1, None, (2, -1)),  # nir's convention: dims count without the batch
        (1, -1, None, (3, -1)),  # ... so start_dim=1 keeps the channels
        (1, -1, [24], (2, -1)),  # nirtorch writes start_dim=1 counting the batch; the declared output decides
        (1, 2, None, (3, 4)),
    ],
)
def test_both_flatten_forms_match_torch_flatten(start_dim, end_dim, declared, torch_dims):
    graph, w = _flatten_graph(start_dim, end_dim, declared)
    x = _spikes((2, 3, 4))
    want = torch.flatten(torch.as_tensor(x), *torch_dims).numpy()
    rec = create_backend("float", graph).run(x, record="flat")
    np.testing.assert_array_equal(rec["flat.out"], want)
    (syn,) = normalize(graph).synapses  # C-order either way: the collapsed synapse is the same
    np.testing.assert_allclose(synapse_output(syn, x.reshape(-1, 1, 2, 3, 4))[:, 0], x.reshape(-1, 24) @ w.T, rtol=1e-9)


@pytest.mark.parametrize("start_dim, declared", [(0, None), (1, [24])])
def test_flatten_compiles_to_the_float_readout_a_step_later(start_dim, declared):
    """Fixed point: the LI readout behind the Flatten follows the float reference's v (scaled)."""
    graph, _ = _flatten_graph(start_dim, -1, declared)
    x = _spikes((2, 3, 4), steps=12)
    want = create_backend("float", graph).run(x, record="li")["li.v"]
    program, _ = compile_graph(graph)
    got = create_backend("cpu", program).run(x, record="li")["li.v"] / program.metadata["v_scale"]["li"]
    np.testing.assert_allclose(got[:, 1:], want[:, :-1], atol=0.03 * np.abs(want).max())  # weight and decay rounding


def test_flatten_of_inner_dims_keeps_the_outer_one():
    node = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1, end_dim=2)
    op = make_op("flat", node, (2, 3, 4))
    x = torch.arange(48.0).reshape(2, 2, 3, 4)
    assert op.out_shape == (2, 12)
    assert torch.equal(op.apply(x), torch.flatten(x, start_dim=2))


def _threshold_graph():
    w = np.array([[1.0, -0.5, 0.25], [0.5, 0.75, 0.0]])
    b = np.array([0.1, -0.2])
    return (
        nir.NIRGraph(
            nodes={
                "input": nir.Input(np.array([3])),
                "fc": nir.Affine(w, b),
                "thr": nir.Threshold(np.array([0.5, 0.4])),  # every input pattern is >= 0.1 away
                "output": nir.Output(np.array([2])),
            },
            edges=[("input", "fc"), ("fc", "thr"), ("thr", "output")],
        ),
        w,
        b,
    )


def test_threshold_on_float_backend_is_a_memoryless_comparison():
    graph, w, b = _threshold_graph()
    x = _spikes((3,), steps=20, batch=3)
    want = (x @ w.T + b > np.array([0.5, 0.4])).astype(np.float32)
    rec = create_backend("float", graph).run(x, record="thr")
    np.testing.assert_array_equal(rec["thr.spikes"], want)
    np.testing.assert_allclose(rec["thr.v"], x @ w.T + b, rtol=1e-6)


def test_threshold_compiles_and_spikes_like_the_float_reference_a_step_later():
    graph, w, b = _threshold_graph()
    x = _spikes((3,), steps=40, batch=4, seed=3)
    want = (x @ w.T + b > np.array([0.5, 0.4])).astype(np.uint8)
    program, report = compile_graph(graph)
    assert any("1/4096" in note for note in report.layer("thr").notes)
    got = create_backend("cpu", program).run(x)["thr.spikes"]
    np.testing.assert_array_equal(got[:, 1:], want[:, :-1])


@pytest.mark.lava
def test_compiled_threshold_is_bit_exact_with_lava():
    graph, _, _ = _threshold_graph()
    program, _ = compile_graph(graph)
    x = _spikes((3,), steps=25, batch=2, seed=5)
    cpu = create_backend("cpu", program).run(x, record="all")
    lava = create_backend("lava", program).run(x, record="all")
    for key in lava.arrays:
        np.testing.assert_array_equal(lava[key].astype(np.int64), cpu[key].astype(np.int64), err_msg=key)


def test_every_primitive_has_a_complete_entry():
    """A new primitive must say how it is checked and run: the suite names what is missing."""
    for name, entry in PRIMITIVES.items():
        assert entry.name == name
        if entry.kind == "linear":
            assert entry.op is not None, f"{name}: linear primitive without an op"
        if entry.kind == "neuron":
            model = entry.neuron
            assert model is not None and model.linear_form is not None, f"{name}: neuron without step or linear form"
            assert set(entry.fields) == set(model.params._fields), f"{name}: fields differ from its parameter tuple"
            if model.spiking:
                assert model.threshold in entry.fields, f"{name}: spiking neuron without a threshold field"


def _nir_classes(cls) -> set[str]:
    return {c.__name__ for sub in cls.__subclasses__() for c in (sub,)} | {
        name for sub in cls.__subclasses__() for name in _nir_classes(sub)
    }


def test_registry_covers_every_nir_primitive():
    assert _nir_classes(nir.NIRNode) <= set(PRIMITIVES)


def test_unknown_primitive_is_one_line_naming_the_node():
    with pytest.raises(GraphError, match=r"node 'x', field 'type': unknown primitive 'Foo'"):
        from neurocompile.semantics.primitives import primitive

        primitive("Foo", "x")
