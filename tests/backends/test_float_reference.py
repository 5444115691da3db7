"""Float reference: the NIR paper's experiment, every paper graph, and hand-computed primitives.

Expected values are written out by hand (or with plain Python arithmetic on the equations of
docs/conventions.md), never by calling the discretization step functions.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends.float_ref import FloatReference
from neurocompile.errors import BackendUnavailableError, GraphError, NeurocompileError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.semantics.discretization import Convention, get_convention


def chain(*pairs, shape, out_shape=None, type_check=False):
    """input -> named nodes in order -> output."""
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    names = ["input"]
    for name, node in pairs:
        nodes[name] = node
        names.append(name)
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape or shape)})
    names.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=type_check)


def run_all(graph, x, conv=Convention(), **kw):
    return FloatReference(graph, convention=conv, dtype=torch.float64).run(
        np.asarray(x, dtype=np.float64), record="all", **kw
    )


# --- (a) the NIR paper's single-LIF experiment -----------------------------------------------


def test_paper_single_lif_spike_times(nir_paper_dir):
    graph = load_graph(nir_paper_dir / "lif_norse.nir")
    spikes_in = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)
    rec = FloatReference(graph, Convention(dt=1e-4)).run(spikes_in[None, :, None], record="all")
    assert rec.outputs == ["1"]
    assert np.nonzero(rec.output_spikes()[0, :, 0])[0].tolist() == [460, 510, 710, 760]
    # Indexing: input index t acts at step t (feed-forward edges have no delay). The first input
    # spike (index 60) raises v at index 60 by dt/tau * r * w = 1e-4/2.5e-3 = 0.04.
    v = rec["1.v"][0, :, 0]
    assert v[59] == 0.0 and v[60] == pytest.approx(0.04)


def test_paper_single_lif_rockpool_lenient(nir_paper_dir):
    graph = load_graph(nir_paper_dir / "lif_rockpool.nir", lenient=True)
    spikes_in = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)
    rec = FloatReference(graph).run(spikes_in[None, :, None])
    # Rockpool's export is not the same neuron: its input gain is w*r = 0.04*24.019737 = 0.9608,
    # not 1. A plain forward-Euler loop with that gain gives the expected spike times.
    gain = float(np.float32(0.04)) * float(np.float32(24.019737))
    v, expected = 0.0, []
    for t, x in enumerate(spikes_in):
        v = v + (1e-4 / 2.5e-3) * (gain * x - v)
        if v > 0.1:
            expected.append(t)
            v = 0.0
    assert expected == [460, 520, 720, 780]
    assert np.nonzero(rec.output_spikes()[0, :, 0])[0].tolist() == expected


# --- (b) every paper graph runs ------------------------------------------------------------


@pytest.mark.parametrize(
    "name,lenient,preset,steps",
    [
        ("lif_norse.nir", False, "norse", 30),
        ("lif_rockpool.nir", True, "rockpool", 30),
        ("two_lif_neurons.nir", False, "neurocompile", 30),
        ("cnn_sinabs.nir", False, "sinabs", 4),
        ("braille_noDelay_bias_zero.nir", False, "snntorch", 30),
        ("braille_noDelay_noBias_subtract.nir", False, "snntorch", 30),
    ],
)
def test_paper_graphs_simulate(nir_paper_dir, name, lenient, preset, steps):
    graph = load_graph(nir_paper_dir / name, lenient=lenient)
    ref = FloatReference(graph, convention=get_convention(preset))
    shape = ref.ops[ref.inputs[0]].in_shape
    x = (np.random.default_rng(0).random((2, steps, *shape)) < 0.3).astype(np.float32)
    rec = ref.run(x, record="all")
    out = rec[f"{rec.outputs[0]}.spikes"]
    assert out.shape[:2] == (2, steps) and set(np.unique(out)) <= {0.0, 1.0}
    for key, arr in rec.arrays.items():
        assert arr.shape[:2] == (2, steps) and np.all(np.isfinite(arr)), key
    if name == "cnn_sinabs.nir":
        assert out.shape == (2, steps, 10) and rec["8.out"].shape == (2, steps, 128)
    if name.startswith("braille"):
        assert ref.recurrent_edges == [("lif1.w_rec", "lif1.lif")]


# --- (c) hand-computed primitives ----------------------------------------------------------


def test_affine_linear_scale():
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = chain(
        ("a", nir.Affine(weight=w, bias=np.array([0.5, -1.0]))),
        ("l", nir.Linear(weight=w)),
        ("s", nir.Scale(scale=np.array([2.0, -1.0]))),
        shape=[2],
    )
    rec = run_all(g, [[[1.0, 1.0]], [[0.0, 2.0]]])
    np.testing.assert_allclose(rec["a.out"][:, 0], [[3.5, 6.0], [4.5, 7.0]])
    # l = W @ a: [3.5+12, 10.5+24] and [4.5+14, 13.5+28]
    np.testing.assert_allclose(rec["l.out"][:, 0], [[15.5, 34.5], [18.5, 41.5]])
    np.testing.assert_allclose(rec["s.out"][:, 0], [[31.0, -34.5], [37.0, -41.5]])
    np.testing.assert_allclose(rec["output.out"], rec["s.out"])


def test_conv1d_conv2d():
    conv1 = nir.Conv1d(
        input_shape=4,
        weight=np.array([[[1.0, 0.0, -1.0]]]),
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=np.array([0.5]),
    )
    rec = run_all(
        chain(("c", conv1), shape=[1, 4], out_shape=[1, 4]), np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    )
    # y[i] = x[i-1] - x[i+1] (zero padded) + 0.5
    np.testing.assert_allclose(rec["c.out"][0, 0, 0], [-1.5, -1.5, -1.5, 3.5])
    conv2 = nir.Conv2d(
        input_shape=(3, 3), weight=np.ones((1, 1, 2, 2)), stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(1)
    )
    x = np.arange(1.0, 10.0).reshape(1, 1, 1, 3, 3)
    rec = run_all(chain(("c", conv2), shape=[1, 3, 3], out_shape=[1, 2, 2]), x)
    np.testing.assert_allclose(rec["c.out"][0, 0, 0], [[12.0, 16.0], [24.0, 28.0]])
    # synops: each nonzero input times its fan-out: corners 1, edges 2, centre 4 -> 1*4 + 2*4 + 4 = 16
    assert rec.metadata["synops"]["c"] == 16


def test_affine_synops_sum_over_batch_and_time():
    """Every nonzero input element, in every sample and step, times its number of nonzero weights."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 7)) * (rng.random((5, 7)) < 0.6)
    x = (rng.random((3, 11, 7)) < 0.4) * rng.integers(1, 3, size=(3, 11, 7))  # graded: 0, 1 or 2
    rec = run_all(chain(("a", nir.Affine(weight, np.zeros(5))), shape=[7], out_shape=[5]), x)
    assert rec.metadata["synops"]["a"] == int(((x != 0) * (weight != 0).sum(0)).sum())


@pytest.mark.parametrize("spikes_per_step", ["single", "multi"])
def test_synops_behind_a_neuron_count_active_neurons_not_spikes(spikes_per_step):
    """A weight node fed by a neuron counts each active neuron once per step, whether it emitted one spike
    (0/1 output, counted by a GEMV on the spikes themselves) or several (multi-spike counts)."""
    rng = np.random.default_rng(1)
    n = 6
    lif = nir.IF(r=np.ones(n), v_threshold=np.full(n, 0.5))
    weight = rng.normal(size=(4, n)) * (rng.random((4, n)) < 0.7)
    graph = chain(("w", nir.Linear(np.eye(n) * 1.7)), ("lif", lif), ("a", nir.Linear(weight)), shape=[n], out_shape=[4])
    conv = Convention(dt=1.0, reset="subtract", spikes_per_step=spikes_per_step)
    rec = run_all(graph, rng.random((3, 9, n)) < 0.6, conv)
    spikes = rec["lif.spikes"]
    assert (spikes.max() > 1) == (spikes_per_step == "multi")
    assert rec.metadata["synops"]["a"] == int(((spikes != 0) * (weight != 0).sum(0)).sum())


def test_pooling_and_flatten_keep_batch():
    x = np.arange(32.0).reshape(2, 1, 1, 4, 4)  # batch 2, one step, C=1, 4x4
    sum_pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    avg_pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    rec = run_all(chain(("p", sum_pool), shape=[1, 4, 4], out_shape=[1, 2, 2]), x)
    np.testing.assert_allclose(
        rec["p.out"][0, 0, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]
    )
    np.testing.assert_allclose(rec["p.out"][1, 0, 0], [[16 * 4 + 10, 16 * 4 + 18], [16 * 4 + 42, 16 * 4 + 50]])
    rec = run_all(chain(("p", avg_pool), shape=[1, 4, 4], out_shape=[1, 2, 2]), x)
    np.testing.assert_allclose(rec["p.out"][0, 0, 0], [[2.5, 4.5], [10.5, 12.5]])
    flat = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=0, end_dim=-1)
    x = np.arange(48.0).reshape(2, 1, 2, 3, 4)
    rec = run_all(chain(("f", flat), shape=[2, 3, 4], out_shape=[24]), x)
    np.testing.assert_allclose(rec["f.out"][:, 0], [np.arange(24.0), np.arange(24.0, 48.0)])
    # start_dim=1 (dims exclude batch): [2, 3, 4] -> [2, 12]
    flat = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=1, end_dim=-1)
    rec = run_all(chain(("f", flat), shape=[2, 3, 4], out_shape=[2, 12]), x)
    assert rec["f.out"].shape == (2, 1, 2, 12)
    np.testing.assert_allclose(rec["f.out"][1, 0, 1], np.arange(36.0, 48.0))


def test_threshold_strict_and_inclusive():
    g = chain(("th", nir.Threshold(threshold=np.ones(3))), shape=[3])
    x = [[[0.5, 1.0, 1.5]]]
    np.testing.assert_array_equal(run_all(g, x)["th.spikes"][0, 0], [0, 0, 1])
    np.testing.assert_array_equal(run_all(g, x, Convention(threshold_inclusive=True))["th.spikes"][0, 0], [0, 1, 1])


def test_delay_rounds_seconds_to_steps():
    g = chain(("d", nir.Delay(delay=np.array([0.0, 2e-4, 3e-4]))), shape=[3])
    x = np.zeros((1, 6, 3))
    x[0, 0] = [1.0, 2.0, 3.0]
    x[0, 1] = [4.0, 5.0, 6.0]
    out = run_all(g, x, Convention(dt=1e-4))["d.out"][0]
    expected = np.zeros((6, 3))
    expected[0, 0], expected[1, 0] = 1.0, 4.0  # no delay
    expected[2, 1], expected[3, 1] = 2.0, 5.0  # 2 steps
    expected[3, 2], expected[4, 2] = 3.0, 6.0  # 3 steps
    np.testing.assert_allclose(out, expected)
    # the same delays at dt = 1e-3 round to 0 steps
    np.testing.assert_allclose(run_all(g, x, Convention(dt=1e-3))["d.out"][0], x[0])


def lif(tau=1e-3, r=2.0, v_leak=0.0, vth=1.0, n=1):
    full = lambda v: np.full(n, v)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(v_leak), v_threshold=full(vth), v_reset=full(0.0))


def test_lif_constant_input_hand_computed():
    rec = run_all(chain(("n", lif()), shape=[1]), np.ones((1, 9, 1)))
    v, expected_v, expected_s = 0.0, [], []
    for _ in range(9):  # v <- v + 0.1*(0 - v + 2*1); spike on v > 1, reset to 0
        v = v + 0.1 * (2.0 - v)
        s = v > 1.0
        expected_s.append(float(s))
        v = 0.0 if s else v
        expected_v.append(v)
    assert expected_s == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    np.testing.assert_allclose(rec["n.v"][0, :, 0], expected_v)
    np.testing.assert_allclose(rec["n.v"][0, :3, 0], [0.2, 0.38, 0.542])
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], expected_s)
    sub = run_all(chain(("n", lif()), shape=[1]), np.ones((1, 9, 1)), Convention(reset="subtract"))
    assert sub["n.v"][0, 6, 0] == pytest.approx(1.0434062 - 1.0)


def test_lif_leaks_towards_v_leak():
    rec = run_all(chain(("n", lif(v_leak=0.5, vth=10.0)), shape=[1]), np.zeros((1, 3, 1)))
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.05, 0.095, 0.1355])


def cuba(spiking=True, vth=100.0):
    kw = dict(
        tau_syn=np.array([2e-4]),
        tau_mem=np.array([1e-3]),
        r=np.array([1.0]),
        v_leak=np.array([0.0]),
        w_in=np.array([1.0]),
    )
    return nir.CubaLIF(v_threshold=np.array([vth]), v_reset=np.array([0.0]), **kw) if spiking else nir.CubaLI(**kw)


@pytest.mark.parametrize("spiking", [True, False])
def test_cuba_hand_computed(spiking):
    x = np.zeros((1, 3, 1))
    x[0, 0] = 1.0
    g = chain(("n", cuba(spiking)), shape=[1])
    rec = run_all(g, x)
    # dt/tau_syn = 0.5, dt/tau_mem = 0.1, current first:
    # i: 0.5, 0.25, 0.125;  v: 0.05, 0.05 + 0.1*(0.25 - 0.05) = 0.07, 0.07 + 0.1*(0.125 - 0.07) = 0.0755
    np.testing.assert_allclose(rec["n.i"][0, :, 0], [0.5, 0.25, 0.125])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.05, 0.07, 0.0755])
    assert ("n.spikes" in rec.arrays) == spiking
    # voltage first (current_first=False), input jumps the current:
    # i: 1, 0.5, 0.25;  v: 0, 0.1*1 = 0.1, 0.1 + 0.1*(0.5 - 0.1) = 0.14
    rec = run_all(g, x, Convention(if_uses_dt=False, current_first=False, cuba_input_scaled=False))
    np.testing.assert_allclose(rec["n.i"][0, :, 0], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.0, 0.1, 0.14])


def test_cuba_lif_spikes_and_resets():
    x = np.zeros((1, 3, 1))
    x[0, 0] = 1.0
    rec = run_all(chain(("n", cuba(vth=0.06)), shape=[1]), x)
    # v 0.05 (no spike), then 0.07 > 0.06: spike and reset to 0, then 0 + 0.1*0.125
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], [0, 1, 0])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.05, 0.0, 0.0125])


def test_if_and_i_with_and_without_dt():
    g_if = chain(("n", nir.IF(r=np.array([1.0]), v_threshold=np.array([1.0]), v_reset=np.array([0.0]))), shape=[1])
    g_i = chain(("n", nir.I(r=np.array([2.0]))), shape=[1])
    x = np.full((1, 4, 1), 0.5)
    # neurocompile: v <- v + dt*r*x = 5e-5 per step, never reaches 1
    rec = run_all(g_if, x)
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [5e-5, 1e-4, 1.5e-4, 2e-4])
    np.testing.assert_allclose(run_all(g_i, x)["n.v"][0, :, 0], [1e-4, 2e-4, 3e-4, 4e-4])
    # (e) Sinabs: v <- v + x, spike at v >= 1, subtract: 0.5, 1.0 -> spike -> 0, 0.5, 1.0 -> spike -> 0
    rec = run_all(g_if, x, get_convention("sinabs"))
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], [0, 1, 0, 1])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.5, 0.0, 0.5, 0.0])
    # (e) Norse: v <- v + x, strict v > 1, reset to zero: 0.5, 1.0, 1.5 -> spike -> 0, 0.5
    rec = run_all(g_if, x, get_convention("norse"))
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], [0, 0, 1, 0])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.5, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(run_all(g_i, x, get_convention("norse"))["n.v"][0, :, 0], [1.0, 2.0, 3.0, 4.0])


def test_li_hand_computed():
    g = chain(("n", nir.LI(tau=np.array([1e-3]), r=np.array([1.0]), v_leak=np.array([0.0]))), shape=[1])
    rec = run_all(g, np.ones((1, 3, 1)))
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.1, 0.19, 0.271])
    assert "n.spikes" not in rec.arrays
    assert FloatReference(g).run(np.ones((1, 3, 1))).arrays.keys() == {"n.v"}


def sinabs_if(vth=0.5):
    return nir.IF(r=np.array([1.0]), v_threshold=np.array([vth]), v_reset=np.array([0.0]))


def test_recurrent_back_edge_delivers_previous_step():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1])}),
        "n": sinabs_if(),
        "rec": nir.Linear(weight=np.array([[0.3]])),
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "n"), ("n", "rec"), ("rec", "n"), ("n", "output")], type_check=False)
    x = np.zeros((1, 4, 1))
    x[0, 0] = 1.0
    ref = FloatReference(g, get_convention("norse"), dtype=torch.float64)
    assert ref.recurrent_edges == [("rec", "n")]
    rec = ref.run(x, record="all")
    # step 0: v = 1 > 0.5 spike, reset; step 1: v = 0.3 (the step-0 spike through w=0.3); then 0.3 stays
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], [1, 0, 0, 0])
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [0.0, 0.3, 0.3, 0.3])
    np.testing.assert_allclose(rec["rec.out"][0, :, 0], [0.3, 0.0, 0.0, 0.0])


def test_multiple_incoming_edges_are_summed():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1])}),
        "a": nir.Linear(weight=np.array([[1.0]])),
        "b": nir.Linear(weight=np.array([[2.0]])),
        "n": nir.I(r=np.array([1.0])),
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "n"), ("b", "n"), ("n", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    rec = run_all(g, np.ones((1, 2, 1)), get_convention("norse"))
    np.testing.assert_allclose(rec["n.v"][0, :, 0], [3.0, 6.0])


def test_nested_subgraph_is_inlined():
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "w": nir.Linear(weight=np.array([[1.0, 1.0]])),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "w"), ("w", "output")],
        type_check=False,
    )
    outer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "sub": inner,
            "n": sinabs_if(vth=1.5),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "sub"), ("sub", "n"), ("n", "output")],
        type_check=False,
    )
    rec = run_all(outer, [[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]], get_convention("sinabs"))
    # v: 2 >= 1.5 spike -> 0.5, then 0.5 + 1 = 1.5 spike -> 0, then 0
    np.testing.assert_array_equal(rec["n.spikes"][0, :, 0], [1, 1, 0])
    np.testing.assert_allclose(rec["sub.w.out"][0, :, 0], [2.0, 1.0, 0.0])
    assert rec.outputs == ["n"]


def test_record_options_and_input_errors():
    g = chain(("n", lif()), shape=[1])
    ref = FloatReference(g)
    x = np.ones((2, 3, 1), dtype=np.float32)
    assert set(ref.run(x).arrays) == {"n.spikes"}
    assert set(ref.run(x, record=["n"]).arrays) == {"n.spikes", "n.v"}
    assert set(ref.run(x, record=["n.v"]).arrays) == {"n.v"}
    with pytest.raises(NeurocompileError):
        ref.run(x, record=["nope"])
    with pytest.raises(NeurocompileError):
        ref.run(np.ones((2, 3, 5)))
    with pytest.raises(NeurocompileError):
        ref.run(np.ones(3))


def test_device_cuda_runs_or_reports_unavailable(nir_paper_dir):
    graph = load_graph(nir_paper_dir / "lif_norse.nir")
    spikes_in = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)[None, :, None]
    if torch.cuda.is_available():
        rec = FloatReference(graph, device="cuda").run(spikes_in)
        assert np.nonzero(rec.output_spikes()[0, :, 0])[0].tolist() == [460, 510, 710, 760]
    else:
        with pytest.raises(BackendUnavailableError):
            FloatReference(graph, device="cuda")


# --- (d) bad graphs: a result or a one-line error (issue 12) ------------------------------------------


def test_neuron_without_an_input_edge_runs_on_zero_input():
    """An unfed neuron gets zeros of its shape: here v_leak = 5 drives it to spike on its own."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fed": lif(n=3),
        "alone": lif(v_leak=5.0, n=3),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fed"), ("alone", "output")], type_check=False)
    rec = run_all(g, np.zeros((2, 4, 3)))
    # v <- v + 0.1*(5 - v): 0.5, 0.95, 1.355 > 1 (spike, reset to 0), 0.5
    np.testing.assert_allclose(rec["alone.v"], np.broadcast_to(np.array([0.5, 0.95, 0.0, 0.5])[:, None], (2, 4, 3)))
    np.testing.assert_array_equal(rec["alone.spikes"][0, :, 0], [0, 0, 1, 0])


def one_line_graph_error(graph, x, *fragments):
    with pytest.raises(GraphError) as info:
        run_all(graph, x)
    message = str(info.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_inputs_of_different_sizes_are_a_one_line_error_naming_the_node():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": nir.Linear(weight=np.ones((2, 3))),
        "b": nir.Linear(weight=np.ones((4, 3))),
        "n": lif(n=4),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "n"), ("b", "n"), ("n", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    one_line_graph_error(g, np.ones((2, 3, 3)), "node 'n'", "[2]", "[4]")
    # one input of a size that does not fit the neuron's parameters
    g = chain(("a", nir.Linear(weight=np.ones((2, 3)))), ("n", lif(n=4)), shape=[3], out_shape=[4])
    one_line_graph_error(g, np.ones((2, 3, 3)), "node 'n'", "[2]", "[4]")


@pytest.mark.filterwarnings("error")  # no overflow in the conversion of seconds to steps
def test_delay_longer_than_the_run_outputs_zeros_without_a_long_buffer():
    g = chain(("d", nir.Delay(delay=np.array([0.0, 2e-4, 1e9, 1e300]))), shape=[4])
    x = np.arange(1.0, 1.0 + 4 * 5).reshape(1, 5, 4)
    ref = FloatReference(g, dtype=torch.float64)
    out = ref.run(x, record="all")["d.out"][0]
    np.testing.assert_allclose(out[:, 0], x[0, :, 0])
    np.testing.assert_allclose(out[:, 1], [0, 0, *x[0, :3, 1]])
    np.testing.assert_array_equal(out[:, 2:], 0.0)
    assert ref.ops["d"].buffer.shape[0] <= 5 + 1  # the run's length, not 1e13 steps


def test_a_recurrent_graph_steps_only_its_cycles_with_the_spikes_of_stepping_everything(nir_paper_dir, monkeypatch):
    """Braille with a second cycle (``lif2 -> lif2``, the fuzzer's nir:3601, seed 2030): the Affine between the two
    cycles runs in the step loop, the rest over the whole run; every spike equals stepping every node."""
    graph = load_graph(nir_paper_dir / "braille_noDelay_bias_zero.nir")
    graph.edges.append(("lif2", "lif2"))
    x = (np.random.default_rng(3).random((2, 40, 12)) < 0.3).astype(np.float32)
    reference = FloatReference(graph)
    assert reference._cycle_nodes() == {"lif1.lif", "lif1.w_rec", "lif2"}
    hybrid = reference.run(x, record="all")
    monkeypatch.setattr(FloatReference, "_cycle_nodes", lambda self: set(self.order))
    stepped = FloatReference(graph).run(x, record="all")
    assert hybrid["lif2.spikes"].sum() > 0
    for key in (k for k in stepped.arrays if k.endswith(".spikes")):
        np.testing.assert_array_equal(hybrid[key], stepped[key], err_msg=key)
