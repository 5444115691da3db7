"""Importer repairs of known exporter defects (neurocompile.frontend.peer_repairs), applied only when the producer is
known (``--from LIBRARY==VERSION`` or the file's metadata), each announced in one line."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from neurocompile import api
from neurocompile.errors import GraphError, NeurocompileError
from neurocompile.frontend import peer_repairs
from neurocompile.frontend.nir_io import load_graph
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics.discretization import get_convention
from tests.cli.test_cli_float import run_cli
from tests.peers.test_peer_fixtures import FIXTURES

NORSE = FIXTURES / "norse" / "lif_mlp"
ROCKPOOL = FIXTURES / "rockpool" / "lif_mlp"


def test_reading_stays_strict_and_names_the_option():
    with pytest.raises(
        GraphError, match=r"gives \[1, 16\].*--from LIBRARY==VERSION \(snntorch==1.0, norse==1.1"
    ) as info:
        load_graph(NORSE / "model.nir")
    assert "\n" not in str(info.value)
    graph = load_graph(NORSE / "model.nir", lenient=True)  # lenient: read as written, nothing repaired
    assert "producer" not in graph.metadata and float(graph.nodes["1"].tau_mem[0]) == pytest.approx(1e-5)


def test_norse_repairs_are_announced_and_its_preset_recorded(capsys):
    graph = load_graph(NORSE / "model.nir", producer="norse==1.1.0")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "repair (norse 1.1): Input 'input' type [1, 16] keeps the batch dimension; read as [16]",
        "repair (norse 1.1): Output 'output' type [1, 5] keeps the batch dimension; read as [5]",
        "repair (norse 1.1): CubaLIF '1' tau_syn, tau_mem written as dt/tau_inv (dt*tau, dt = 0.001), read as "
        "written/dt",
        "repair (norse 1.1): CubaLIF '3' tau_syn, tau_mem written as dt/tau_inv (dt*tau, dt = 0.001), read as "
        "written/dt",
        "assume (norse 1.1): to_nir's default dt=1e-3 (the tau repair uses it), not recorded; for to_nir(..., dt=DT): "
        "--from norse==1.1,dt=DT",
        "assume (norse 1.1): v_reset=0 (nir's default), not recorded; for another v_reset: no option selects it (edit "
        "the file)",
    ]
    assert graph.metadata["repairs"].splitlines() == err
    np.testing.assert_allclose(graph.nodes["1"].tau_mem, 1 / 100.0, rtol=1e-6)  # 1/tau_mem_inv
    np.testing.assert_allclose(graph.nodes["1"].tau_syn, 1 / 200.0, rtol=1e-6)
    conv = api.resolve_convention(None, graph=graph)
    assert (conv.name, conv.dt, conv.current_first, conv.cuba_input_scaled) == ("norse-1.1", 1e-3, True, False)


def test_rockpool_parameters_are_checked_before_they_are_replaced(tmp_path):
    graph = load_graph(ROCKPOOL / "model.nir", producer="rockpool==3.1")
    node, dt = graph.nodes["1_LIFTorch"], 1e-3
    a_syn, a_mem = np.exp(-dt / node.tau_syn), np.exp(-dt / node.tau_mem)
    np.testing.assert_allclose(node.w_in, a_syn / (1 - a_syn), rtol=1e-5)
    np.testing.assert_allclose(node.r, 1 / (1 - a_mem), rtol=1e-5)
    odd = load_graph(ROCKPOOL / "model.nir", lenient=True)
    odd.nodes["1_LIFTorch"].r = odd.nodes["1_LIFTorch"].r * 2  # not what Rockpool 3.1 writes for dt = 1e-3
    nir.write(tmp_path / "odd.nir", odd)
    with pytest.raises(GraphError, match=r"node '1_LIFTorch', field 'r': r is not Rockpool 3.1's"):
        load_graph(tmp_path / "odd.nir", producer="rockpool==3.1")


def test_the_producer_in_the_metadata_is_enough_and_must_agree(tmp_path, capsys):
    graph = load_graph(NORSE / "model.nir", lenient=True)
    graph.metadata = {"producer": "norse 1.1.0"}
    nir.write(tmp_path / "norse.nir", graph)
    repaired = load_graph(tmp_path / "norse.nir")
    assert "repair (norse 1.1)" in capsys.readouterr().err
    assert repaired.metadata["convention"] == "norse-1.1"
    with pytest.raises(NeurocompileError, match="--from rockpool==3.1, but the file's metadata says .* norse 1.1"):
        load_graph(tmp_path / "norse.nir", producer="rockpool==3.1")


def test_a_repaired_graph_written_and_read_again_is_not_repaired_twice(tmp_path, capsys):
    graph = api.load_model(NORSE / "model.nir", producer="norse==1.1")
    nir.write(tmp_path / "repaired.nir", graph)
    capsys.readouterr()
    for producer in (None, "norse==1.1"):
        again = load_graph(tmp_path / "repaired.nir", producer=producer)
        np.testing.assert_array_equal(again.nodes["1"].tau_mem, graph.nodes["1"].tau_mem)
        assert api.resolve_convention(None, graph=again) == api.resolve_convention(None, graph=graph)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "spec,message",
    [("norse", "expected LIBRARY==VERSION"), ("norse==1.2", "no repairs are known for norse 1.2"),
     ("torch==2.0", "no repairs are known for torch 2.0")],
)  # fmt: skip
def test_unknown_producers_are_refused_in_one_line(spec, message):
    with pytest.raises(NeurocompileError, match=message):
        load_graph(NORSE / "model.nir", producer=spec)


def scalar_graph(tmp_path):
    """snnTorch's leaky_mlp with the hidden LIF's parameters written as shape () (as its exporter writes scalars)."""
    graph = load_graph(FIXTURES / "snntorch" / "leaky_mlp" / "model.nir")
    node = graph.nodes["1"]
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        setattr(node, field, np.asarray(getattr(node, field)[0]))
    nir.write(tmp_path / "scalar.nir", graph, compression=None)  # h5py stores no compressed scalars
    return tmp_path / "scalar.nir"


def test_a_batch_dimension_next_to_scalar_parameters_is_repaired_after_the_broadcast(tmp_path, capsys):
    """Norse's to_nir with its default (scalar) parameters: the output LIF has no shape until its parameters are
    broadcast, then the Output's batch dimension is repaired; the spikes are the per-neuron file's."""
    folder = FIXTURES / "norse" / "lif_box_mlp"
    graph = load_graph(folder / "model.nir", lenient=True)  # as written: tau = dt*tau, Output [1, 5]
    node = graph.nodes["3"]
    graph.nodes["3"] = nir.LIF(**{f: np.asarray(getattr(node, f)[0]) for f in ("tau", "r", "v_leak", "v_threshold")})
    nir.write(tmp_path / "scalar.nir", graph, compression=None)
    scalar = load_graph(tmp_path / "scalar.nir", producer="norse==1.1.0")
    lines = capsys.readouterr().err.splitlines()
    assert "repair (norse 1.1): Output 'output' type [1, 5] keeps the batch dimension; read as [5]" in lines
    x = np.load(folder / "input.npy")
    want = api.simulate(load_graph(folder / "model.nir", producer="norse==1.1.0"), x, "float").arrays["3.spikes"]
    np.testing.assert_array_equal(api.simulate(scalar, x, "float").arrays["3.spikes"], want)


def test_scalar_parameters_are_broadcast_for_a_known_producer(tmp_path, capsys):
    path = scalar_graph(tmp_path)
    with pytest.raises(GraphError, match="--from LIBRARY==VERSION"):
        load_graph(path)
    graph = load_graph(path, producer="snntorch==1.0")
    assert capsys.readouterr().err.splitlines() == [
        "repair (snntorch 1.0): LIF '1' parameters tau, r, v_leak, v_threshold, v_reset (shape ()) broadcast to [24]",
        'assume (snntorch 1.0): snnTorch\'s default reset_mechanism="subtract", not recorded; for '
        'reset_mechanism="zero": --convention snntorch-1.0,reset=zero',
        "assume (snntorch 1.0): snnTorch's default reset_delay=True, not recorded; for reset_delay=False: "
        "--convention snntorch-1.0,reset_timing=snntorch-immediate",
    ]
    assert np.shape(graph.nodes["1"].tau) == (24,)
    x = np.load(FIXTURES / "snntorch" / "leaky_mlp" / "input.npy")
    conv = get_convention("snntorch", reset="zero")
    for backend in ("float", "cpu"):
        recording = api.simulate(graph, x, backend, convention=conv, drain=False)
        assert recording.arrays["1.spikes"].shape == (4, 40, 24)


def test_cli_from_option_repairs_and_runs(capsys):
    code, out, err = run_cli(capsys, "simulate", NORSE / "model.nir", "--input", NORSE / "input.npy", "--json")
    assert code == 2 and "--from LIBRARY==VERSION" in err and len(err.strip().splitlines()) == 1
    argv = ("simulate", NORSE / "model.nir", "--input", NORSE / "input.npy", "--json", "--from", "norse==1.1")
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and err.count("repair (norse 1.1)") == 4
    report = json.loads(out)
    assert (report["convention"], report["dt"]) == ("norse-1.1", 1e-3)
    native = np.load(NORSE / "spikes.npz")
    assert [report["nodes"][n]["spikes"] for n in ("1", "3")] == [int(native["1"].sum()), int(native["3"].sum())]
    code, _, err = run_cli(capsys, *argv[:-1], "norse==9.9")
    assert code == 2 and "no repairs are known for norse 9.9" in err


def test_cli_compile_announces_each_repair_once(capsys, tmp_path):
    out = tmp_path / "n.ncp"
    code, _, err = run_cli(capsys, "compile", NORSE / "model.nir", "-o", out, "--from", "norse==1.1")
    assert code == 0 and err.count("repair (norse 1.1)") == 4 and out.exists()


def test_peer_repairs_known_list_matches_the_presets():
    from neurocompile.semantics.discretization import PRESETS

    assert all(producer.preset in PRESETS for producer in peer_repairs.PRODUCERS.values())


def test_cli_convention_options_select_the_native_variant(capsys, tmp_path):
    """Sinabs' SingleSpike LIF: --from picks sinabs-3.1 (MultiSpike: graded spikes); the build's option on
    --convention gives binary spikes (its exponential decay in Euler form either way)."""
    model = FIXTURES / "sinabs" / "lif_mlp" / "model.nir"
    payloads = {}
    for option in ((), ("--convention", "sinabs-3.1,spikes_per_step=single")):
        code, _, err = run_cli(capsys, "compile", model, "-o", tmp_path / "s.ncp", "--from", "sinabs==3.1", *option)
        assert code == 0, err
        payloads[option] = {p.payload_bits for p in FixedPointProgram.load(tmp_path / "s.ncp").populations}
    assert payloads == {(): {8}, ("--convention", "sinabs-3.1,spikes_per_step=single"): {0}}


def test_a_broken_file_that_names_a_producer_is_a_graph_error(tmp_path):
    """The repairs read only graphs whose structure and values passed the lenient checks."""
    graph = load_graph(ROCKPOOL / "model.nir", lenient=True)
    graph.metadata = {"producer": "rockpool 3.1.0"}
    graph.edges.append(("3_LIFTorch", "missing"))
    nir.write(tmp_path / "broken.nir", graph)
    with pytest.raises(GraphError, match="names node 'missing', which does not exist"):
        load_graph(tmp_path / "broken.nir")


@pytest.mark.parametrize("lenient", [False, True])
def test_no_hint_for_a_file_that_even_a_lenient_read_refuses(tmp_path, lenient):
    graph = load_graph(NORSE / "model.nir", lenient=True)
    graph.nodes["input"].input_type = {"input": np.array([1.0, np.nan])}
    nir.write(tmp_path / "nan.nir", graph)
    with pytest.raises(GraphError, match="must be positive integers") as info:
        load_graph(tmp_path / "nan.nir", lenient=lenient)
    assert "--from" not in str(info.value)
