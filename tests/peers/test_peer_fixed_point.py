"""The fixed-point path on peer dynamics: what has an exact forward-Euler, same-step form compiles in that
form (normalize.euler_form); what has none is refused in one line naming the option; the fixture cases that
compile agree with their library (latency-aligned) at least 95%, or the table says precisely why not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurocompile import api
from neurocompile.backends.float_ref import FloatReference
from neurocompile.compiler.normalize import euler_form, normalize
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.semantics.discretization import Convention, get_convention
from tests.peers.test_peer_presets import lif, small_graph
from tools import peer_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "peers"


def test_exponential_decay_compiles_in_its_euler_form():
    graph, conv = small_graph(lif(tau=2e-3)), Convention(dt=1e-3, decay="exponential")
    euler_graph, euler_conv = euler_form(graph, conv)
    assert euler_conv == conv.with_options(decay="euler") and graph.nodes["n"].tau[0] == 2e-3  # not modified
    np.testing.assert_allclose(euler_graph.nodes["n"].tau, 1e-3 / (1 - np.exp(-0.5)))
    x = 3.0 * (np.random.default_rng(0).random((2, 20, 6)) < 0.4)
    exact = FloatReference(graph, conv).run(x, record="all").arrays["n.v"]
    euler = FloatReference(euler_graph, euler_conv).run(x, record="all").arrays["n.v"]
    np.testing.assert_allclose(euler, exact, atol=1e-5)
    assert normalize(graph, conv).convention.decay == "euler"
    compile_graph(graph, conv)


def test_snntorch_timings_compile_to_timed_populations():
    """snnTorch's presets compile: the delayed subtractive reset as it is, the immediate reset to zero in its
    same-step form (the stored membrane never exceeds the threshold)."""
    delayed, _ = compile_graph(small_graph(lif()), get_convention("snntorch-1.0"))
    assert {(p.reset, p.reset_timing) for p in delayed.populations} == {("subtract", "snntorch-delayed")}
    conv = get_convention("snntorch-1.0", reset="zero", reset_timing="snntorch-immediate")
    assert normalize(small_graph(lif()), conv).convention.reset_timing == "same-step"
    high = lif()
    high.v_reset = np.full(4, 2.0)  # above threshold: Lava's LIF resets to 0, this one cannot run
    with pytest.raises(NeurocompileError, match="non-zero v_reset is not representable"):
        compile_graph(small_graph(high), conv)


def test_a_peer_file_read_with_from_runs_its_native_preset_on_every_backend(capsys):
    """--from sets the library's preset: the float backend runs Sinabs' MultiSpike exactly, the cpu backend in
    graded spikes (counts within 5% of Sinabs' own)."""
    path = FIXTURES / "sinabs" / "iaf_mlp_multispike"
    graph = load_graph(path / "model.nir", producer="sinabs==3.1")
    x = np.load(path / "input.npy")
    native = np.load(path / "spikes.npz")
    assert api.simulate(graph, x, "float").arrays["3.spikes"].sum() == native["3"].sum()
    fixed = api.simulate(graph, x, "cpu").arrays
    assert fixed["1.spikes"].max() == native["1"].max() == 2  # two spikes in one step: a graded spike of 2
    for node in ("1", "3"):
        assert int(fixed[f"{node}.spikes"].sum()) == pytest.approx(int(native[node].sum()), rel=0.05)


@pytest.fixture(scope="module")
def rows():
    return peer_table.collect(FIXTURES)


def test_every_case_the_float_backend_reproduces_compiles(rows):
    exact = [row for row in rows if row.float_exact]
    assert len(exact) >= 15
    assert [(row.library, row.case, row.refused) for row in exact if not row.agreement] == []


def test_each_layer_has_spike_f1_of_090_or_its_8_bit_weights_in_float_have_less(rows):
    """Where a compiled layer's spike F1 against the library is below 0.90, the float network run with the
    program's own (8-bit) weights is below 0.90 there too: the bound is the weights', not the integer LIF's."""
    for row in rows:
        for node, report in row.agreement.items():
            assert report["spike_f1"] >= 0.90 or row.bound[node] < 0.90, (row.library, row.case, node, row.bound)
