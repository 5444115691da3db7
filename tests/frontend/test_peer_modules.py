"""``neurocompile.export(module)`` for a network built with a peer library (neurocompile.frontend.peer_modules):
the library's own exporter, then the repairs and preset of ``--from LIB==VERSION``; where it cannot, a one-line
error naming the exporter to call."""

from __future__ import annotations

import sys

import nir
import numpy as np
import pytest
import torch

import neurocompile
from neurocompile import api
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.frontend.peer_modules import EXPORTERS, library_of

snn = pytest.importorskip("snntorch")


def leaky_mlp(beta=None, threshold=None, **options) -> torch.nn.Sequential:
    """16 -> 24 -> 5 Leaky layers; ``beta``/``threshold`` None: one value per neuron (what snnTorch's exporter needs)."""
    torch.manual_seed(0)

    def leaky(n, **more):
        b = torch.full((n,), 0.9) if beta is None else beta
        th = torch.ones(n) if threshold is None else threshold
        return snn.Leaky(beta=b, threshold=th, init_hidden=True, **options, **more)

    net = torch.nn.Sequential(torch.nn.Linear(16, 24), leaky(24), torch.nn.Linear(24, 5), leaky(5, output=True))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # the default initialization barely spikes
    return net


def read_with_from(net, tmp_path, convention=None):
    """What a user does by hand: snnTorch's exporter, the file, ``--from snntorch==<installed>`` (and ``--convention``)."""
    from snntorch.export_nir import export_to_nir

    nir.write(str(tmp_path / "model.nir"), export_to_nir(net, torch.zeros(1, 16), ignore_dims=[0]))
    graph = load_graph(tmp_path / "model.nir", producer=f"snntorch=={snn.__version__}")
    return graph, api.resolve_convention(convention, graph=graph)


def assert_same_graph(a, b):
    assert sorted(a.edges) == sorted(b.edges) and a.nodes.keys() == b.nodes.keys()
    for name, node in a.nodes.items():
        assert type(node) is type(b.nodes[name])
        for field, value in vars(node).items():
            other = vars(b.nodes[name])[field]
            if isinstance(value, dict):
                assert value.keys() == other.keys()
                value, other = list(value.values()), list(other.values())
            np.testing.assert_array_equal(value, other, err_msg=f"{name}.{field}")


def float_spikes(graph, convention=None):
    x = (np.random.default_rng(0).random((8, 30, 16)) < 0.3).astype(np.float32)
    return api.simulate(graph, x, "float", convention=convention).arrays


def test_snntorch_module_is_exported_as_its_file_is_read_with_from(tmp_path, capsys):
    net = leaky_mlp()
    graph = neurocompile.export(net, input_shape=(16,))
    said = capsys.readouterr().err
    reference, conv = read_with_from(net, tmp_path)
    assert said == capsys.readouterr().err  # the same announcements
    assert_same_graph(graph, reference)
    assert graph.metadata == reference.metadata and graph.metadata["convention"] == "snntorch-1.0"
    assert api.resolve_convention(None, graph=graph) == conv
    ours, theirs = float_spikes(graph), float_spikes(reference, conv)
    assert ours.keys() == theirs.keys() and sum(v.sum() for k, v in ours.items() if k.endswith(".spikes")) > 0
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_snntorch_defaults_export_and_the_network_is_left_as_it_was():
    """A scalar beta and threshold (snnTorch's defaults, on which its exporter fails) give the graph of one
    value per neuron; the caller's network keeps its scalars and its state."""
    net = leaky_mlp(beta=0.9, threshold=1.0)
    with torch.no_grad():
        net(torch.ones(1, 16))
    mem = net[1].mem.clone()
    graph = neurocompile.export(net, input_shape=(16,))
    assert_same_graph(graph, neurocompile.export(leaky_mlp(), input_shape=(16,)))
    assert net[1].beta.dim() == 0 and torch.equal(net[1].mem, mem)


def test_the_networks_own_reset_options_become_its_convention(tmp_path, capsys):
    """``reset_delay=False``, ``reset_mechanism="zero"``: not in the file, but in the network: recorded and named
    as the ``--convention`` that reads the file the same way."""
    net = leaky_mlp(reset_mechanism="zero", reset_delay=False)
    graph = neurocompile.export(net, input_shape=(16,))
    spec = "snntorch-1.0,reset=zero,reset_timing=snntorch-immediate"
    line = f"convention (snntorch 1.0): the network sets reset=zero, reset_timing=snntorch-immediate; recorded as --convention {spec}"
    assert capsys.readouterr().err.splitlines()[-1] == line and graph.metadata["repairs"].endswith(line)
    reference, conv = read_with_from(net, tmp_path, convention=spec)
    assert api.resolve_convention(None, graph=graph) == conv
    ours, theirs = float_spikes(graph), float_spikes(reference, conv)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    net[3].reset_delay = True
    with pytest.raises(NeurocompileError, match=r"^Sequential: its neurons differ in \(reset_mechanism, reset_delay\)"):
        neurocompile.export(net, input_shape=(16,))
    given = neurocompile.export(net, input_shape=(16,), convention="snntorch")  # the user's convention decides
    assert given.metadata["convention"] == "snntorch"


def fake_network(library: str) -> torch.nn.Module:
    """A module whose neuron class comes from a package named like ``library``."""
    neuron = type("LIF", (torch.nn.Module,), {"__module__": f"{library}.neurons", "forward": lambda self, x: x})
    return torch.nn.Sequential(torch.nn.Linear(4, 4), neuron())


@pytest.mark.parametrize("library", sorted(EXPORTERS))
def test_without_the_library_the_error_names_its_exporter(library, monkeypatch):
    for name in [library, *(n for n in sys.modules if n.startswith(f"{library}."))]:
        monkeypatch.setitem(sys.modules, name, None)  # not importable, even where it is installed
    net = fake_network(library)
    assert library_of(net) == library
    with pytest.raises(NeurocompileError) as info:
        neurocompile.export(net, input_shape=(4,))
    message = str(info.value)
    exporter = EXPORTERS[library]
    assert "\n" not in message and message.startswith(f"Sequential is built with {library} classes")
    assert f"export it with {exporter.name()}(net, torch.zeros(1, " in message and f"--from {library}==" in message
    if library == "snntorch":
        assert "export_to_nir(net, torch.zeros(1, *input_shape), ignore_dims=[0]) and read" in message
    if library == "norse":
        assert "to_nir(net, torch.zeros(1, *input_shape), dt=0.001) and read the file with --from norse==1.1" in message


def test_other_modules_are_not_peers():
    assert library_of(torch.nn.Sequential(torch.nn.Linear(2, 2))) is None
    mixed = torch.nn.Sequential(fake_network("norse"), fake_network("sinabs"))
    with pytest.raises(NeurocompileError, match="mixes classes of norse and sinabs"):
        library_of(mixed)
