"""normalize(): chains of linear NIR nodes collapse into one synapse per source.

Oracle: the original chain computed with torch ops written out in each test (never the
normalizer's own op code).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurocompile.compiler.normalize import normalize, synapse_output
from neurocompile.errors import GraphError
from neurocompile.semantics.discretization import Convention

RNG = np.random.default_rng(0)


def lif(shape, vth=1.0):
    return nir.LIF(tau=np.full(shape, 2e-3), r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=np.full(shape, vth))


def if_(shape):
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape))


def chain_graph(*ops, in_shape, out_shape, first=None):
    """Input -> [first neuron ->] ops... -> LIF -> Output."""
    nodes = {"in": nir.Input(np.array(in_shape))}
    names = ["in"]
    if first is not None:
        nodes["src"] = first
        names.append("src")
    for i, op in enumerate(ops):
        nodes[f"op{i}"] = op
        names.append(f"op{i}")
    nodes["dst"] = lif(out_shape)
    nodes["out"] = nir.Output(np.array(out_shape))
    names += ["dst", "out"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))


def collapsed_output(norm, x):
    """Float input the target population receives for source values x, bias included."""
    (syn,) = norm.synapses_into("dst")
    pop = norm.population("dst")
    return synapse_output(syn, x[:, None])[:, 0] + pop.bias.reshape(1, -1), syn


def t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def test_affine_scale_linear_chain_collapses_to_one_dense_synapse():
    w1, b1 = RNG.normal(size=(6, 5)), RNG.normal(size=6)
    s = RNG.normal(size=6)
    w2 = RNG.normal(size=(4, 6))
    g = chain_graph(nir.Affine(w1, b1), nir.Scale(s), nir.Linear(w2), in_shape=[5], out_shape=[4])
    norm = normalize(g)
    x = RNG.random((3, 5))
    got, syn = collapsed_output(norm, x)
    expected = ((t(x) @ t(w1).T + t(b1)) * t(s)) @ t(w2).T
    assert syn.kind == "dense" and syn.nodes == ["op0", "op1", "op2"]
    assert len(norm.synapses) == 1
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)
    # the bias went into the population, pushed through Scale and Linear
    np.testing.assert_allclose(norm.population("dst").bias, ((t(b1) * t(s)) @ t(w2).T).numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "nodes, in_shape",
    [
        ([nir.Affine(RNG.normal(size=(7, 12)), RNG.normal(size=7))], (12,)),
        ([nir.Scale(RNG.normal(size=12)), nir.Linear(RNG.normal(size=(7, 12))), nir.Scale(RNG.normal(size=7))], (12,)),
        (
            [nir.Flatten(start_dim=0, input_type={"input": np.array([3, 2, 2])}), nir.Linear(RNG.normal(size=(5, 12)))],
            (3, 2, 2),
        ),
        (
            [
                nir.Scale(RNG.normal(size=(3, 2, 2))),
                nir.Flatten(start_dim=0, input_type={"input": np.array([3, 2, 2])}),
                nir.Affine(RNG.normal(size=(5, 12)), np.ones(5)),
            ],
            (3, 2, 2),
        ),
    ],
)
def test_an_affine_chain_matrix_equals_the_chain_applied_to_the_identity(nodes, in_shape):
    """One weight between elementwise ops is folded directly (no n_src x n_src identity): the same floats."""
    from neurocompile.compiler import normalize as N
    from neurocompile.semantics.primitives import make_op

    ops, shape = [], in_shape
    for k, node in enumerate(nodes):
        ops.append(make_op(f"op{k}", node, shape))
        shape = ops[-1].out_shape
    at = next(k for k, op in enumerate(ops) if not op.elementwise)
    direct = N._affine_chain_matrix(ops, at, in_shape)
    assert np.array_equal(direct, N._identity_image(ops, in_shape))  # bit for bit
    assert np.array_equal(N._sequence_matrix(ops, in_shape, direct.shape[0]), direct)


def test_conv_with_bias_and_channel_scale_stays_conv():
    w, b = RNG.normal(size=(4, 3, 3, 3)), RNG.normal(size=4)
    scale = np.broadcast_to(RNG.normal(size=(4, 1, 1)), (4, 8, 8)).copy()
    conv = nir.Conv2d(input_shape=(8, 8), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=b)
    g = chain_graph(conv, nir.Scale(scale), in_shape=[3, 8, 8], out_shape=[4, 8, 8])
    norm = normalize(g)
    x = RNG.random((2, 3, 8, 8))
    got, syn = collapsed_output(norm, x)
    expected = (F.conv2d(t(x), t(w), bias=t(b), padding=1) * t(scale)).reshape(2, -1)
    assert syn.kind == "conv"
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool_cls,factor", [(nir.SumPool2d, 4.0), (nir.AvgPool2d, 1.0)])
def test_pool_then_conv_fuses_into_one_conv(pool_cls, factor):
    w = RNG.normal(size=(5, 4, 3, 3))
    pool = pool_cls(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    conv = nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(5))
    g = chain_graph(pool, conv, in_shape=[4, 8, 8], out_shape=[5, 4, 4], first=if_((4, 8, 8)))
    norm = normalize(g)
    x = (RNG.random((3, 4, 8, 8)) < 0.5).astype(float)
    got, syn = collapsed_output(norm, x)
    expected = F.conv2d(F.avg_pool2d(t(x), 2) * factor, t(w), padding=1).reshape(3, -1)
    assert syn.kind == "conv"
    assert syn.weights.shape == (5, 4, 6, 6)
    assert syn.conv.stride == (2, 2) and syn.conv.padding == (2, 2)
    # SumPool2d(2) then conv 3x3 == conv 6x6 with w_eff[2k+a] = w[k]
    if factor == 4.0:
        np.testing.assert_array_equal(syn.weights[:, :, 4, 1], w[:, :, 2, 0])
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


def test_conv_then_sumpool_fuses():
    w = RNG.normal(size=(3, 2, 3, 3))
    conv = nir.Conv2d(input_shape=(8, 8), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    g = chain_graph(conv, pool, in_shape=[2, 8, 8], out_shape=[3, 4, 4], first=if_((2, 8, 8)))
    norm = normalize(g)
    x = RNG.random((2, 2, 8, 8))
    got, syn = collapsed_output(norm, x)
    expected = (F.avg_pool2d(F.conv2d(t(x), t(w), padding=1), 2) * 4).reshape(2, -1)
    assert syn.kind == "conv"
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


def test_unfusable_pool_conv_becomes_explicit_matrix():
    # odd input size: the pool drops the last row/column, no single conv reproduces it
    w = RNG.normal(size=(2, 2, 3, 3))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    conv = nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2))
    g = chain_graph(pool, conv, in_shape=[2, 9, 9], out_shape=[2, 4, 4], first=if_((2, 9, 9)))
    norm = normalize(g)
    x = RNG.random((2, 2, 9, 9))
    got, syn = collapsed_output(norm, x)
    expected = F.conv2d(F.avg_pool2d(t(x), 2) * 4, t(w), padding=1).reshape(2, -1)
    assert syn.kind in ("dense", "sparse")
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


def test_pool_flatten_affine_is_one_synapse():
    w = RNG.normal(size=(7, 2 * 2 * 2))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    flat = nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1)
    g = chain_graph(pool, flat, nir.Affine(w, np.zeros(7)), in_shape=[2, 4, 4], out_shape=[7], first=if_((2, 4, 4)))
    norm = normalize(g)
    x = RNG.random((2, 2, 4, 4))
    got, syn = collapsed_output(norm, x)
    expected = (F.avg_pool2d(t(x), 2) * 4).reshape(2, -1) @ t(w).T
    assert len(norm.synapses_into("dst")) == 1
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-10)


def test_two_paths_from_one_source_add_into_one_synapse():
    w1, w2 = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([4])),
            "a": nir.Linear(w1),
            "b": nir.Linear(w2),
            "dst": lif(3),
            "out": nir.Output(np.array([3])),
        },
        edges=[("in", "a"), ("in", "b"), ("a", "dst"), ("b", "dst"), ("dst", "out")],
    )
    norm = normalize(g)
    (syn,) = norm.synapses
    np.testing.assert_allclose(syn.weights, w1 + w2)


def test_delay_becomes_synapse_delay_in_steps():
    dt = 1e-4
    w = RNG.normal(size=(2, 3))
    g = chain_graph(nir.Delay(np.array([0.0, 2 * dt, 5 * dt])), nir.Linear(w), in_shape=[3], out_shape=[2])
    norm = normalize(g, Convention(dt=dt))
    (syn,) = norm.synapses
    np.testing.assert_array_equal(syn.delays, np.array([[0, 2, 5], [0, 2, 5]]))


def nested_recurrent_graph():
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([4])),
            "lif": lif(4),
            "w_rec": nir.Linear(RNG.normal(size=(4, 4))),
            "output": nir.Output(np.array([4])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([3])),
            "fc1": nir.Linear(RNG.normal(size=(4, 3))),
            "rec": inner,
            "fc2": nir.Linear(RNG.normal(size=(2, 4))),
            "o": lif(2),
            "out": nir.Output(np.array([2])),
        },
        edges=[("in", "fc1"), ("fc1", "rec"), ("rec", "fc2"), ("fc2", "o"), ("o", "out")],
    )


def test_nested_subgraph_is_flattened_and_recurrence_detected():
    norm = normalize(nested_recurrent_graph())
    assert [p.name for p in norm.populations] == ["rec.lif", "o"]
    by_pair = {(s.source, s.target): s for s in norm.synapses}
    assert set(by_pair) == {("in", "rec.lif"), ("rec.lif", "rec.lif"), ("rec.lif", "o")}
    assert by_pair[("rec.lif", "rec.lif")].recurrent
    assert not by_pair[("in", "rec.lif")].recurrent and not by_pair[("rec.lif", "o")].recurrent
    assert norm.outputs == ["o"]


def test_paper_braille_recurrent_layer(nir_paper_dir):
    norm = normalize(nir.read(nir_paper_dir / "braille_noDelay_bias_zero.nir"))
    rec = [(s.source, s.target) for s in norm.synapses if s.recurrent]
    assert rec == [("lif1.lif", "lif1.lif")]
    assert [p.type for p in norm.populations] == ["CubaLIF", "CubaLIF"]


def test_loop_between_two_populations_marks_the_back_edge():
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([2])),
            "w0": nir.Linear(np.eye(2)),
            "a": lif(2),
            "wab": nir.Linear(np.eye(2)),
            "b": lif(2),
            "wba": nir.Linear(np.eye(2)),
            "out": nir.Output(np.array([2])),
        },
        edges=[("in", "w0"), ("w0", "a"), ("a", "wab"), ("wab", "b"), ("b", "wba"), ("wba", "a"), ("b", "out")],
    )
    norm = normalize(g)
    assert [p.name for p in norm.populations] == ["a", "b"]
    assert {(s.source, s.target) for s in norm.synapses if s.recurrent} == {("b", "a")}


def test_paper_cnn_fuses_sumpool_into_conv(nir_paper_dir):
    norm = normalize(nir.read(nir_paper_dir / "cnn_sinabs.nir"))
    kinds = [(s.source, s.target, s.kind) for s in norm.synapses]
    assert kinds == [
        ("input", "1", "conv"),
        ("1", "3", "conv"),
        ("3", "6", "conv"),
        ("6", "10", "dense"),
        ("10", "12", "dense"),
    ]
    assert norm.synapses[2].weights.shape[2:] == (6, 6)


def test_threshold_node_becomes_a_spiking_population():
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([2])),
            "w": nir.Affine(np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([0.5, 0.0])),
            "thr": nir.Threshold(np.array([1.0, 2.0])),
            "out": nir.Output(np.array([2])),
        },
        edges=[("in", "w"), ("w", "thr"), ("thr", "out")],
    )
    n = normalize(g)
    (pop,) = n.populations
    assert (pop.name, pop.type, pop.spiking, pop.shape) == ("thr", "Threshold", True, (2,))
    assert pop.params["threshold"].tolist() == [1.0, 2.0]
    assert pop.bias.tolist() == [0.5, 0.0]
    assert np.asarray(n.synapses[0].weights).tolist() == [[1.0, 2.0], [0.0, -1.0]]


def test_output_fed_by_linear_node_is_rejected():
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([2])),
            "a": lif(2),
            "w": nir.Linear(np.eye(2)),
            "out": nir.Output(np.array([2])),
        },
        edges=[("in", "a"), ("a", "w"), ("w", "out")],
    )
    with pytest.raises(GraphError, match="node 'out'"):
        normalize(g)
