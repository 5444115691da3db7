"""The float backend's C neuron kernel against its oracle, the step functions of
neurocompile.semantics.discretization stepped in torch: every model and convention option the kernel takes, in
float32 and float64, bit for bit (spikes, v and i), including inputs that put v exactly on its
threshold. And the float backend's choice between the kernel and the step functions."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends import float_kernel, float_ref
from neurocompile.backends.float_ref import FloatReference
from neurocompile.semantics.discretization import Convention, get_convention
from neurocompile.semantics.primitives import PRIMITIVES, initial_state, neuron_params

OPTIONS = [
    {},
    {"reset": "subtract"},
    {"threshold_inclusive": True},
    {"threshold_inclusive": True, "reset": "subtract"},
    {"current_first": False},
    {"cuba_input_scaled": False},
    {"if_uses_dt": False},
]


@pytest.fixture(autouse=True)
def kernel():
    if float_kernel.load_kernel() is None:
        pytest.fail("the float neuron kernel could not be built (gcc/cc missing?)")


def neuron(primitive: str, n: int, rng, r_scale: float, quarters: bool) -> nir.NIRNode:
    """A node with per-neuron parameters. ``quarters``: thresholds and time constants are binary
    fractions, so that inputs in quarters reach a threshold exactly (IF and I without dt; others land
    near it); else they are random (products and sums round). ``r_scale`` multiplies r (1/dt makes an
    integrator's dt*r about r)."""

    def pick(choices, low, high):
        return rng.choice(choices, n) if quarters else rng.uniform(low, high, n)

    p = {
        "tau": pick([2e-4, 4e-4, 8e-4], 1.5e-4, 1e-3),
        "tau_mem": pick([2e-4, 4e-4, 8e-4], 1.5e-4, 1e-3),
        "tau_syn": pick([2e-4, 4e-4], 1.5e-4, 5e-4),
        "r": pick([1.0, 2.0, 0.5], 0.3, 3.0) * r_scale,
        "v_leak": pick([0.0, 0.25, -0.25], -0.3, 0.3),
        "v_threshold": pick([0.5, 1.0, 1.5], 0.4, 1.6),
        "v_reset": pick([0.0, -0.5], -0.6, 0.1),
        "w_in": pick([1.0, 2.0], 0.5, 2.5),
    }
    cls = getattr(nir, primitive)
    return cls(**{name: p[name] for name in PRIMITIVES[primitive].neuron.params._fields})


def stepped(model, params, conv, x: torch.Tensor, batch: int, steps: int) -> dict[str, torch.Tensor]:
    """The oracle: ``model.step`` once per step on x [batch*steps, n], as [batch*steps, n] per variable."""
    xs = x.reshape(batch, steps, -1)
    state = initial_state(model, xs[:, 0].shape, dtype=x.dtype)
    trace = {"out": [], "v": [], "i": []}
    for t in range(steps):
        out, state = model.step(xs[:, t], state, params, conv)
        trace["out"].append(out)
        trace["v"].append(state.v)
        trace["i"].append(getattr(state, "i", state.v))
    return {var: torch.stack(values, 1).reshape(x.shape) for var, values in trace.items()}


@pytest.mark.parametrize("values", ["quarters", "random"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("primitive", ["LIF", "IF", "CubaLIF", "LI", "CubaLI", "I"])
def test_kernel_is_the_step_functions_bit_for_bit(primitive, options, dtype, values):
    rng = np.random.default_rng(7)
    n, batch, steps = 300, 3, 40  # 300 neurons: more than one CHUNK of the kernel's inner loops
    model = PRIMITIVES[primitive].neuron
    conv = Convention(**options)
    r_scale = 1 / conv.dt if primitive in ("IF", "I") and conv.if_uses_dt else 1.0
    quarters = values == "quarters"
    params = neuron_params(neuron(primitive, n, rng, r_scale, quarters), dtype=dtype)
    if quarters:
        x = rng.choice([0.0, 0.25, 0.5, 1.0, -0.25], (batch * steps, n))
    else:
        x = rng.normal(0.3, 0.5, (batch * steps, n))
    x = torch.as_tensor(x, dtype=dtype)
    form = float_kernel.kernel_form(model.step, params, conv)
    got = float_kernel.run_population(form, x, batch, steps, record_v=True, record_i=True)
    want = stepped(model, params, conv, x, batch, steps)
    for var in ("out", "v", "i") if primitive.startswith("Cuba") else ("out", "v"):
        assert torch.equal(got[var], want[var]), var
    if model.spiking:
        assert 0 < float(got["out"].mean()) < 1  # some spikes, not all


def test_threshold_ties_follow_the_convention():
    """IF with v <- v + x and inputs in quarters: v lands on its threshold 1.0; only inclusive fires there."""
    x = torch.full((8, 1), 0.25)
    node = nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.zeros(1))
    params = neuron_params(node)
    spikes = {}
    for inclusive in (False, True):
        conv = Convention(if_uses_dt=False, threshold_inclusive=inclusive)
        form = float_kernel.kernel_form(PRIMITIVES["IF"].neuron.step, params, conv)
        spikes[inclusive] = float_kernel.run_population(form, x, 1, 8, False, False)["out"][:, 0].tolist()
    assert spikes[True] == [0, 0, 0, 1, 0, 0, 0, 1]  # 0.25, 0.5, 0.75, 1.0 -> spike, reset to 0
    assert spikes[False] == [0, 0, 0, 0, 1, 0, 0, 0]  # 1.25 > 1 at the fifth step


@pytest.mark.parametrize(
    "conv", [get_convention("snntorch-1.0"), get_convention("sinabs-3.1"), Convention(decay="exponential")]
)
def test_native_peer_dynamics_stay_on_the_step_functions(conv):
    params = neuron_params(neuron("LIF", 4, np.random.default_rng(0), 1.0, quarters=False))
    assert float_kernel.kernel_form(PRIMITIVES["LIF"].neuron.step, params, conv) is None


def conv_graph():
    """input [1,4,4] -> conv -> LIF with per-channel parameters [2,1,1] -> output: the kernel runs
    the neuron shape [2,4,4] with its parameters broadcast."""
    rng = np.random.default_rng(3)
    conv = nir.Conv2d(
        input_shape=(4, 4), weight=rng.normal(0, 1.5, (2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
        bias=np.zeros(2),
    )  # fmt: skip
    lif = nir.LIF(
        tau=np.array([4e-4, 8e-4]).reshape(2, 1, 1),
        r=np.full((2, 1, 1), 4.0),
        v_leak=np.zeros((2, 1, 1)),
        v_threshold=np.array([0.5, 1.0]).reshape(2, 1, 1),
        v_reset=np.zeros((2, 1, 1)),
    )
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": conv,
        "lif": lif,
        "output": nir.Output(output_type={"output": np.array([2, 4, 4])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], type_check=False)


def test_float_backend_runs_the_kernel_and_matches_its_torch_path(monkeypatch):
    x = (np.random.default_rng(1).random((5, 12, 1, 4, 4)) < 0.4).astype(np.float32)
    rec = FloatReference(conv_graph()).run(x, record="all")
    assert rec.metadata["neuron_kernels"] == {"lif": "c"}
    monkeypatch.setattr(float_ref, "load_kernel", lambda: None)
    torch_rec = FloatReference(conv_graph()).run(x, record="all")
    assert torch_rec.metadata["neuron_kernels"] == {"lif": "torch"}
    assert rec.arrays.keys() == torch_rec.arrays.keys()
    for key in rec.arrays:
        np.testing.assert_array_equal(rec[key], torch_rec[key], err_msg=key)
    assert rec["lif.spikes"].any()


def test_float_backend_chooses_the_step_functions_where_the_kernel_does_not_apply():
    """Native peer dynamics, and graphs with back-edges (step-major: every node once per step)."""
    x = (np.random.default_rng(1).random((2, 6, 1, 4, 4)) < 0.4).astype(np.float32)
    native = FloatReference(conv_graph(), get_convention("snntorch-1.0")).run(x)
    assert native.metadata["neuron_kernels"] == {"lif": "torch"}
    graph = conv_graph()
    graph.nodes["rec"] = nir.Linear(weight=np.eye(32).reshape(32, 32))
    graph.edges += [("lif", "rec"), ("rec", "lif")]
    recurrent = FloatReference(graph).run(x)
    assert recurrent.metadata["neuron_kernels"] == {"lif": "torch"} and recurrent.metadata["recurrent_edges"]
