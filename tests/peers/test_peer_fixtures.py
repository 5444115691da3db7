"""Peer-library oracles as fixtures (tests/fixtures/peers, made by tools/peer_fixtures.py).

Each fixture is a network built, exported and run natively by its own library. The cases listed in
EXACT reproduce today: our float reference, under the library's versioned preset with the case's build
options (peer_table.convention_of), spikes exactly like the library in every layer, read as
``--from LIBRARY==VERSION`` reads it (the exporter's known defects repaired: neurocompile.frontend.peer_repairs). For
every other case the table tool (tools/peer_table.py) must find a divergence, so EXACT stays the true list;
the reasons are in docs/peer-compatibility.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurocompile.backends.float_ref import FloatReference
from neurocompile.frontend.graph import flatten_graph
from tools import peer_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "peers"
LIBRARIES = ["snntorch", "norse", "spikingjelly", "sinabs", "rockpool"]
EXACT = {
    ("snntorch", "leaky_mlp_zero"),
    ("snntorch", "leaky_mlp"),  # reset_timing="snntorch-immediate"
    ("snntorch", "leaky_mlp_defaults"),  # reset_timing="snntorch-delayed" (snntorch-1.0)
    ("snntorch", "synaptic_mlp"),  # snntorch-immediate
    ("snntorch", "rleaky_mlp"),  # snntorch-immediate; the recurrent Affine's bias enters at step 0 (float_ref)
    ("snntorch", "conv_net"),  # snntorch-immediate
    ("norse", "iaf_mlp"),
    ("norse", "lif_box_mlp"),  # tau repaired
    ("norse", "lif_mlp"),  # tau repaired; current_first, input not scaled (norse-1.1)
    ("rockpool", "lif_mlp"),  # r and w_in repaired; exponential decay, multi-spike (rockpool-3.1)
    ("rockpool", "lif_neuron_mlp"),  # r repaired
    ("sinabs", "iaf_mlp"),
    ("sinabs", "iaf_mlp_multispike"),  # spikes_per_step="multi" (sinabs-3.1)
    ("sinabs", "lif_mlp"),  # decay="exponential", dt=1 (sinabs-3.1)
    ("spikingjelly", "if_mlp"),
    ("spikingjelly", "lif_mlp"),
    ("spikingjelly", "cuba_lif_mlp"),
    ("spikingjelly", "conv_net"),
}
CASES = sorted(
    (lib.name, case.name) for lib in FIXTURES.iterdir() if lib.is_dir() for case in lib.iterdir() if case.is_dir()
)


def test_every_library_has_fixtures():
    assert sorted({lib for lib, _ in CASES}) == sorted(LIBRARIES)
    assert EXACT <= set(CASES)


@pytest.mark.parametrize("library,case", CASES)
def test_fixture_is_complete(library, case):
    graph, x, native, meta = peer_table.load_case(FIXTURES / library / case)
    assert meta["library"] == library and meta["library_version"] and meta["nir_version"] and meta["torch_version"]
    assert meta["built"] and (meta["dt"] > 0 if library != "sinabs" else meta["dt"] is None)  # Sinabs has no dt
    nodes, _ = flatten_graph(graph)
    assert "output" in native
    for node, spikes in native.items():
        assert node == "output" or node in nodes
        assert spikes.shape[:2] == x.shape[:2] and spikes.min() >= 0  # counts: Sinabs/Rockpool multi-spikes
    assert 0 < native["output"].sum() < native["output"].size, "the output should spike, but not always"


@pytest.mark.parametrize("library,case", sorted(EXACT))
def test_exact_cases_spike_like_their_library(library, case):
    graph, x, native, meta = peer_table.load_case(FIXTURES / library / case)
    recording = FloatReference(graph, peer_table.convention_of(graph, meta)).run(x, record="all")
    for node, spikes in native.items():
        key = f"{recording.outputs[0] if node == 'output' else node}.spikes"
        np.testing.assert_array_equal(recording.arrays[key].reshape(spikes.shape), spikes, err_msg=f"{case} {node}")


@pytest.fixture(scope="module")
def rows():
    return peer_table.collect(FIXTURES)


def test_table_lists_every_fixture_and_its_verdict(rows):
    failures = {
        (lib.name, case)
        for lib in FIXTURES.iterdir()
        if (lib / "failures.json").exists()
        for case in json.loads((lib / "failures.json").read_text())["failures"]
    }
    assert {(row.library, row.case) for row in rows} == set(CASES) | failures
    exact = {(row.library, row.case) for row in rows if row.float_exact}
    assert exact == EXACT
    for row in rows:
        assert row.float_exact or row.why, f"{row.library}/{row.case}: a divergence without a cause"


def test_table_renders_every_case(rows):
    text = peer_table.render(rows)
    for row in rows:
        assert f"| {row.library} | {row.version} | {row.case} |" in text
