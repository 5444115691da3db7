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


def test_snntorch_immediate_zero_reset_compiles_only_below_threshold():
    conv = get_convention("snntorch-1.0", reset="zero", reset_timing="snntorch-immediate")
    assert normalize(small_graph(lif()), conv).convention.reset_timing == "same-step"
    high = lif()
    high.v_reset = np.full(4, 2.0)  # above threshold: the immediate reset differs from the same-step one
    with pytest.raises(NeurocompileError, match="reset_timing='snntorch-immediate'"):
        compile_graph(small_graph(high), conv)


@pytest.mark.parametrize(
    "library,case,option",
    [("sinabs", "iaf_mlp_multispike", "spikes_per_step='multi'"), ("rockpool", "lif_mlp", "spikes_per_step='multi'"),
     ("snntorch", "leaky_mlp_defaults", "reset_timing='snntorch-delayed'"),
     ("snntorch", "leaky_mlp", "reset_timing='snntorch-immediate'")],
)  # fmt: skip
def test_peer_files_the_fixed_point_cannot_run_are_refused_in_one_line(library, case, option):
    graph, _, _, meta = peer_table.load_case(FIXTURES / library / case)
    conv = peer_table.convention_of(graph, meta)
    with pytest.raises(NeurocompileError, match=option) as info:
        compile_graph(graph, conv)
    assert "\n" not in str(info.value)


def test_a_peer_file_read_with_from_runs_its_native_preset_on_every_backend(capsys):
    """--from sets the library's preset: the float backend runs it, the cpu backend refuses it (no default
    preset runs it silently with other dynamics)."""
    path = FIXTURES / "sinabs" / "iaf_mlp_multispike"
    graph = load_graph(path / "model.nir", producer="sinabs==3.1")
    x = np.load(path / "input.npy")
    native = np.load(path / "spikes.npz")
    assert api.simulate(graph, x, "float").arrays["3.spikes"].sum() == native["3"].sum()
    with pytest.raises(NeurocompileError, match="spikes_per_step='multi'"):
        api.simulate(graph, x, "cpu")


@pytest.fixture(scope="module")
def rows():
    return [row for row in peer_table.collect(FIXTURES) if row.fixed]


def test_compiled_cases_agree_at_least_95_percent_or_the_table_says_why(rows):
    for row in rows:
        below = min(row.fixed.values()) < 0.95
        assert below == ((row.library, row.case) in peer_table.FIXED_BELOW), (row.library, row.case, row.fixed)
