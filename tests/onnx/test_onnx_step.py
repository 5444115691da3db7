"""One time step as ONNX (`neurocompile export --to onnx`): driven over time in onnxruntime, the step
graph gives the float backend's spikes exactly and its voltages and currents within 1e-5."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import nir
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from neurocompile.backends.float_ref import FloatReference
from neurocompile.errors import GraphError
from neurocompile.frontend.checkpoint import save_checkpoint
from neurocompile.frontend.nir_io import load_graph
from neurocompile.frontend.torch_export import export, write_nir
from neurocompile.models.architectures import MLP, ConvNet, RecurrentNet
from neurocompile.onnx.step import NEXT, initial_states, state_names, step_graph, write_step_onnx
from neurocompile.semantics.discretization import Convention, get_convention
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.frontend.test_torch_export import lively as export_lively

DOC = Path(__file__).resolve().parents[2] / "docs" / "onnx-step.md"


def run_steps(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of ``model`` over time [batch, time, ...], states named without ``.next``."""
    session = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    batch, steps = next(iter(inputs.values())).shape[:2]
    states = initial_states(model, batch)
    traces = {name.removesuffix(NEXT): [] for name in names}
    for t in range(steps):
        results = dict(zip(names, session.run(names, {**{k: x[:, t] for k, x in inputs.items()}, **states})))
        for name, value in results.items():
            traces[name.removesuffix(NEXT)].append(value)
        states = {name.removesuffix(NEXT): value for name, value in results.items() if name.endswith(NEXT)}
    return {name: np.stack(values, axis=1) for name, values in traces.items()}


def reference_key(recording, name: str) -> str | None:
    """The float recording's key for an ONNX output (None for a Delay FIFO, which it does not record)."""
    if name in recording.arrays:
        return name
    node = name.removesuffix(".out")
    return next((f"{node}.{var}" for var in ("out", "spikes", "v") if f"{node}.{var}" in recording.arrays), None)


def assert_matches_float(graph, conv: Convention, x: np.ndarray):
    """Run ``x`` [batch, time, ...] (the only Input) through the float backend and the step graph: every
    spike equal, every other value within 1e-5 (times its largest magnitude when that exceeds 1: float32
    sums in another order). Returns (recording, largest absolute voltage or current difference)."""
    recording = FloatReference(graph, conv).run(x, record="all")
    (input_name,) = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    traces = run_steps(step_graph(graph, conv, all_spikes=True), {input_name: x.astype(np.float32)})
    compared, worst = set(), 0.0
    for name, value in traces.items():
        key = reference_key(recording, name)
        if key is None:
            continue
        expected = recording[key]
        if key.endswith(".spikes"):
            np.testing.assert_array_equal(value, expected, err_msg=name)
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()), err_msg=name)
        if key.endswith((".v", ".i")):
            worst = max(worst, float(np.abs(value - expected).max()))
        compared.add(key)
    assert {k for k in recording.arrays if k.endswith(".spikes")} <= compared
    return recording, worst


def spikes_in(shape, steps=20, batch=3, rate=0.3, seed=1) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, steps, *shape)) < rate).astype(np.float32)


def chain(*pairs, shape, out_shape=None) -> nir.NIRGraph:
    """input -> named nodes in order -> output."""
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)}), **dict(pairs)}
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape or shape)})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), type_check=False)


# --- (1) the reference architectures ---------------------------------------------------------------


def lively(model, gain=8.0):
    """test_torch_export's lively network, in float32 (the step graph's dtype)."""
    return export_lively(model, gain).float()


# name -> (model for a convention, weight gain). The ConvNet's IF layer has no leak: a lower gain keeps its
# voltages small enough that float32 sums in another order stay far below 1e-5.
ARCHITECTURES = {
    "MLP": (lambda conv: MLP([32, 16, 8], convention=conv), 8.0),
    "ConvNet": (lambda conv: ConvNet(input_shape=(2, 8, 8), channels=4, convention=conv), 3.0),
    "RecurrentNet": (lambda conv: RecurrentNet(n_in=16, n_hidden=16, n_out=6, convention=conv), 8.0),
    "RecurrentNet-CubaLIF": (
        lambda conv: RecurrentNet(n_in=16, n_hidden=16, n_out=6, neuron="CubaLIF", convention=conv),
        8.0,
    ),
}


@pytest.mark.parametrize("convention", ["neurocompile", "snntorch"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_reference_architectures_match_the_float_backend(arch, convention):
    torch.manual_seed(0)
    make, gain = ARCHITECTURES[arch]
    model = lively(make(get_convention(convention)), gain)
    recording, worst = assert_matches_float(export(model), model.convention, spikes_in(model.input_shape))
    assert worst <= 1e-5
    for key, value in recording.arrays.items():  # not vacuous: every layer spikes, and not always
        if key.endswith(".spikes"):
            assert 0 < value.mean() < 0.9, (key, float(value.mean()))


def test_recurrent_edge_and_neuron_states_are_named_inputs_and_outputs():
    model = step_graph(export(RecurrentNet(n_in=4, n_hidden=3, n_out=2)))
    assert [i.name for i in model.graph.input] == ["input", "lif1_rec.out", "lif1.v", "lif2.v"]
    assert [o.name for o in model.graph.output] == ["output", "lif1_rec.out.next", "lif1.v.next", "lif2.v.next"]
    assert state_names(model) == ["lif1_rec.out", "lif1.v", "lif2.v"]
    assert {k: v.shape for k, v in initial_states(model, 5).items()} == {
        "lif1_rec.out": (5, 3),
        "lif1.v": (5, 3),
        "lif2.v": (5, 2),
    }
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["neurocompile.states"]) == ["lif1_rec.out", "lif1.v", "lif2.v"]
    assert json.loads(props["neurocompile.convention"])["dt"] == 1e-4


# --- (2) every neuron primitive under every convention option -----------------------------------------


CONVENTIONS = {
    "default": Convention(),
    "subtract": Convention(reset="subtract"),
    "inclusive": Convention(threshold_inclusive=True),
    "if-without-dt": Convention(if_uses_dt=False),
    "voltage-first": Convention(current_first=False),
    "cuba-unscaled": Convention(cuba_input_scaled=False),
    "sinabs": get_convention("sinabs", dt=2e-4),
}


def neuron(kind: str, n: int, conv: Convention, rng) -> nir.NIRNode:
    """A ``kind`` neuron that reaches its threshold within a few steps under ``conv``."""

    def u(low, high):
        return rng.uniform(low, high, n)

    gain = 1 / conv.dt if conv.if_uses_dt else 1.0  # IF and I: dt*r or r per unit input
    leak = dict(r=u(0.5, 2.0), v_leak=u(-0.1, 0.1))
    fire = dict(v_threshold=u(0.5, 1.5), v_reset=u(-0.2, 0.2))
    cuba = dict(tau_syn=u(2e-4, 1e-3), tau_mem=u(3e-4, 1e-3), w_in=u(0.5, 2.0), **leak)
    params = {
        "LIF": dict(tau=u(2e-4, 1e-3), **leak, **fire),
        "CubaLIF": dict(**cuba, **fire),
        "IF": dict(r=gain * u(0.5, 2.0), **fire),
        "LI": dict(tau=u(2e-4, 1e-3), **leak),
        "CubaLI": cuba,
        "I": dict(r=gain * u(0.5, 2.0)),
        "Threshold": dict(threshold=u(-0.5, 0.5)),
    }[kind]
    node = getattr(nir, kind)(**params)
    if kind == "LIF":
        node.tau = np.array(5e-4)  # a scalar parameter broadcasts over the neurons (nir's constructor refuses it)
    return node


@pytest.mark.parametrize("convention", list(CONVENTIONS))
@pytest.mark.parametrize("kind", ["LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold"])
def test_every_neuron_under_every_convention_option(kind, convention):
    conv, rng = CONVENTIONS[convention], np.random.default_rng(3)
    # Weights in eighths: any summation order gives the same current, so only the neuron can differ.
    fc = nir.Affine(weight=np.round(rng.normal(0, 12, (5, 4))) / 8, bias=np.round(rng.normal(0, 1.6, 5)) / 8)
    graph = chain(("fc", fc), ("neuron", neuron(kind, 5, conv, rng)), shape=[4], out_shape=[5])
    recording, worst = assert_matches_float(graph, conv, spikes_in([4], steps=30, batch=4, rate=0.4))
    assert worst == 0.0  # exact currents in, so the same operations in the same order: the same bits out
    if "neuron.spikes" in recording.arrays:
        assert 0 < recording["neuron.spikes"].mean() < 1


# --- (3) Delay, convolutions, pooling, reshapes, nested graphs --------------------------------------


def test_delay_is_a_fifo_state():
    conv = Convention()
    delay = nir.Delay(delay=np.array([0.0, 2e-4, 5e-4]))
    lif = nir.LIF(tau=np.full(3, 5e-4), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.3))
    graph = chain(("d", delay), ("lif", lif), shape=[3])
    model = step_graph(graph, conv)
    assert state_names(model) == ["d.fifo", "lif.v"]
    assert initial_states(model, 2)["d.fifo"].shape == (2, 5, 3)  # the last 5 inputs
    assert_matches_float(graph, conv, spikes_in([3], steps=30, rate=0.5))
    assert_matches_float(chain(("d", delay), shape=[3]), get_convention("neurocompile", dt=2e-4), spikes_in([3]))


def test_a_delay_after_an_affine_exports(tmp_path, capsys):
    """The fuzzer's seed graph (an Affine, then a Delay): the back-edge start values were computed with the
    Delay's buffer left from the shape pass of another batch size (an internal error)."""
    rng = np.random.default_rng(0)
    fc = nir.Affine(weight=rng.normal(size=(3, 4)), bias=np.zeros(3))
    delay = nir.Delay(delay=np.full(3, 2e-4))
    lif = nir.LIF(tau=np.full(3, 5e-4), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.3))
    graph = chain(("fc", fc), ("d", delay), ("lif", lif), shape=[4], out_shape=[3])
    assert_matches_float(graph, Convention(), spikes_in([4], steps=20, rate=0.5))
    nir.write(tmp_path / "g.nir", graph)
    code, _, err = run_cli(capsys, "export", tmp_path / "g.nir", "--to", "onnx", "-o", tmp_path / "g.onnx")
    assert code == 0, err


@pytest.mark.filterwarnings("error")  # no overflow casting to float32
def test_a_constant_beyond_float32_is_a_one_line_error(tmp_path, capsys):
    """``--dt 1e300`` is a float64 time step, but the step's dt constant has no float32 value (the
    fuzzer's case printed numpy's overflow warning and wrote inf into the ONNX graph)."""
    lif = nir.LIF(tau=np.full(3, 5e-4), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.3))
    nir.write(tmp_path / "g.nir", chain(("lif", lif), shape=[3]))
    argv = ("export", tmp_path / "g.nir", "--to", "onnx", "--dt", "1e300", "-o", tmp_path / "g.onnx")
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "node 'lif'", "float32")
    assert not (tmp_path / "g.onnx").exists()


def test_delay_of_zero_steps_is_an_identity():
    graph = chain(("d", nir.Delay(delay=np.zeros(3))), shape=[3])
    assert state_names(step_graph(graph)) == []
    assert_matches_float(graph, Convention(), spikes_in([3]))


@pytest.mark.filterwarnings("error")  # no overflow converting seconds to steps
@pytest.mark.parametrize("seconds", [1e9, 1e300])
def test_a_delay_too_long_for_a_fifo_state_is_a_one_line_error(seconds):
    graph = chain(("d", nir.Delay(delay=np.array([0.0, seconds]))), shape=[2])
    with pytest.raises(GraphError, match=r"^node 'd', field 'delay': a delay of .* at most 65536$") as info:
        step_graph(graph)
    assert "\n" not in str(info.value)


def test_conv2d_same_padding_sum_and_average_pooling_flatten():
    rng = np.random.default_rng(0)
    conv = nir.Conv2d(  # "same" with an even kernel: one pad before, two after
        input_shape=(9, 9), weight=rng.normal(0, 0.8, (3, 2, 4, 4)), stride=1, padding="same", dilation=1, groups=1,
        bias=rng.normal(0, 0.1, 3),
    )  # fmt: skip
    if_ = nir.IF(r=np.full((3, 9, 9), 1e4), v_threshold=rng.uniform(0.5, 1.5, (3, 9, 9)), v_reset=np.zeros((3, 9, 9)))
    sum_pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    avg_pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([1, 1]))
    flat = nir.Flatten(input_type={"input": np.array([3, 6, 6])}, start_dim=0)
    fc = nir.Affine(weight=rng.normal(0, 0.5, (7, 108)), bias=np.zeros(7))
    lif = nir.LIF(tau=np.full(7, 5e-4), r=np.ones(7), v_leak=np.zeros(7), v_threshold=np.full(7, 0.5))
    graph = chain(
        ("conv", conv), ("if", if_), ("sum", sum_pool), ("avg", avg_pool), ("flat", flat), ("fc", fc), ("lif", lif),
        shape=[2, 9, 9], out_shape=[7],
    )  # fmt: skip
    recording, _ = assert_matches_float(graph, Convention(), spikes_in([2, 9, 9]))
    assert 0 < recording["if.spikes"].mean() < 0.9 and recording["lif.spikes"].any()


def test_conv1d_grouped_batched_affine_scale():
    rng = np.random.default_rng(1)
    conv = nir.Conv1d(
        input_shape=10, weight=rng.normal(0, 1, (4, 1, 3)), stride=2, padding=1, dilation=1, groups=2,
        bias=rng.normal(0, 0.1, 4),
    )  # fmt: skip
    conv.input_type = {"input": np.array([2, 10])}  # nir's own ignores the groups
    affine = nir.Affine(weight=rng.normal(0, 1, (4, 3, 5)), bias=rng.normal(0, 0.1, (4, 3)))  # one matrix per channel
    scale = nir.Scale(scale=rng.uniform(0.5, 2, (4, 3)))
    li = nir.LI(tau=np.full((4, 3), 4e-4), r=np.ones((4, 3)), v_leak=np.zeros((4, 3)))
    graph = chain(("conv", conv), ("affine", affine), ("scale", scale), ("li", li), shape=[2, 10], out_shape=[4, 3])
    assert_matches_float(graph, Convention(), spikes_in([2, 10]))


def test_nested_graph_with_a_recurrent_edge():
    rng = np.random.default_rng(2)
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([4])}),
            "lif": nir.LIF(tau=np.full(4, 5e-4), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.full(4, 0.4)),
            "rec": nir.Linear(weight=rng.normal(0, 0.8, (4, 4))),
            "output": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
        type_check=False,
    )
    fc = nir.Affine(weight=rng.normal(0, 1.5, (4, 3)), bias=np.zeros(4))
    graph = chain(("fc", fc), ("sub", inner), shape=[3], out_shape=[4])
    assert "sub.rec.out" in state_names(step_graph(graph))
    recording, _ = assert_matches_float(graph, Convention(), spikes_in([3], steps=30, rate=0.5))
    assert recording["sub.lif.spikes"].any()


PAPER_GRAPHS = [
    ("braille_noDelay_bias_zero.nir", "neurocompile"),
    ("braille_noDelay_noBias_subtract.nir", "rockpool"),
    ("cnn_sinabs.nir", "sinabs"),
]


@pytest.mark.parametrize("name,convention", PAPER_GRAPHS)
def test_nir_paper_graphs(nir_paper_dir, name, convention):
    graph = load_graph(nir_paper_dir / name)
    (input_name,) = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    shape = FloatReference(graph).ops[input_name].in_shape
    assert_matches_float(graph, get_convention(convention), spikes_in(shape, steps=12, batch=2))


def test_nir_paper_single_lif_spikes_at_the_papers_steps(nir_paper_dir):
    model = step_graph(load_graph(nir_paper_dir / "lif_norse.nir"), Convention(dt=1e-4))
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)[None, :, None]
    output = run_steps(model, {"input": spikes})["output"]
    assert np.nonzero(output[0, :, 0])[0].tolist() == [460, 510, 710, 760]


def test_unsupported_node_is_a_one_line_error_naming_it():
    @dataclass(eq=False)
    class Hodgkin(nir.NIRNode):
        g_na: np.ndarray

    graph = chain(("hh", Hodgkin(g_na=np.ones(2))), shape=[2])
    with pytest.raises(GraphError, match=r"^node 'hh': Hodgkin has no ONNX step form") as info:
        step_graph(graph)
    assert "\n" not in str(info.value)


# --- (4) the command line --------------------------------------------------------------------------------


@pytest.fixture()
def nir_file(tmp_path) -> Path:
    return write_nir(export(lively(MLP([6, 5, 3]))), tmp_path / "mlp.nir")


def test_cli_writes_a_checked_onnx_step(capsys, nir_file, tmp_path):
    code, out, _ = run_cli(capsys, "export", nir_file, "--to", "onnx", "-o", tmp_path / "step.onnx")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'step.onnx'} (one time step:") and "2 states" in out
    model = onnx.load(tmp_path / "step.onnx")
    onnx.checker.check_model(model, full_check=True)
    x = spikes_in([6])
    recording = FloatReference(load_graph(nir_file)).run(x)
    np.testing.assert_array_equal(run_steps(model, {"input": x})["output"], recording.output_spikes())


def onnx_convention(path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["neurocompile.convention"])


def test_cli_convention_recorded_or_chosen_and_default_names(capsys, tmp_path):
    sinabs = write_nir(export(MLP([6, 3], convention=get_convention("sinabs"))), tmp_path / "sinabs.nir")
    code, out, _ = run_cli(capsys, "export", sinabs, "--to", "onnx")  # the convention the file records
    assert code == 0 and "convention sinabs" in out and onnx_convention(tmp_path / "sinabs.onnx")["reset"] == "subtract"
    code, _, _ = run_cli(capsys, "export", sinabs, "--to", "onnx", "--convention", "norse", "--dt", "1e-3")
    assert code == 0 and onnx_convention(tmp_path / "sinabs.onnx") == dict(
        name="norse", dt=1e-3, reset="zero", threshold_inclusive=False, if_uses_dt=False, current_first=True,
        cuba_input_scaled=False, reset_timing="same-step", decay="euler", spikes_per_step="single",
    )  # fmt: skip
    checkpoint = save_checkpoint(MLP([6, 5, 3], convention=get_convention("snntorch")), tmp_path / "m.pt")
    code, out, _ = run_cli(capsys, "export", checkpoint, "--to", "onnx")
    assert code == 0 and "convention snntorch" in out and onnx_convention(tmp_path / "m.onnx")["name"] == "snntorch"


def test_cli_unknown_primitive_names_the_node(capsys, nir_file):
    with h5py.File(nir_file, "r+") as fh:
        del fh["node/nodes/lif1/type"]
        fh["node/nodes/lif1/type"] = b"Hodgkin"
    code, _, err = run_cli(capsys, "export", nir_file, "--to", "onnx")
    assert_one_line_error(code, err, "lif1", "Hodgkin")


def test_cli_refuses_bad_options(capsys, nir_file):
    assert_one_line_error(*run_cli(capsys, "export", nir_file, "--to", "onnx", "-o", nir_file)[::2], "overwrite")
    assert_one_line_error(*run_cli(capsys, "export", nir_file, "--to", "onnx", "--dt", "-1")[::2], "--dt")
    assert_one_line_error(*run_cli(capsys, "export", nir_file, "--dt", "1e-3")[::2], "--to onnx")


def test_write_step_onnx_returns_the_model_it_writes(tmp_path):
    graph = export(MLP([4, 3]))
    model = write_step_onnx(tmp_path / "step.onnx", graph, Convention())
    assert onnx.load(tmp_path / "step.onnx") == model


# --- (5) the documentation's example ---------------------------------------------------------------------


def test_docs_example_runs_and_matches_the_float_backend(tmp_path, monkeypatch):
    (example,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    torch.manual_seed(0)  # the weights and the example's global-RNG spikes, whatever ran before in this worker
    np.random.seed(0)
    graph = export(lively(MLP([8, 6, 4])))
    write_step_onnx(tmp_path / "step.onnx", graph, Convention())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, str(DOC), "exec"), namespace)
    recording = FloatReference(graph).run(namespace["spikes"])
    np.testing.assert_array_equal(np.stack(namespace["outputs"], axis=1), recording.output_spikes())
    assert recording.output_spikes().any()
