"""``--from LIBRARY==VERSION`` says what it assumes and how to change it (issue 25): each "assume" line names the
``--convention`` (or ``--from``) string that selects the library's other choice, that string reproduces a
network built with the other choice spike for spike (the peer fixtures, tests/fixtures/peers), and no line
is printed for what the user's ``--convention``, ``--dt`` or ``--reset`` decides.

Sinabs' ``norm_input`` (issue 25, item 3): its exporter writes ``LIF(tau, r=1)`` with or without it;
``--from sinabs==3.1,norm_input=false`` reads the file as Sinabs' ``v = a*v + x`` (checked against Sinabs 3.1.3
itself when this was written: a norm_input=False MLP's 432 and 128 spikes, exact; read with the default,
11 and 0).
"""

from __future__ import annotations

import json
import re
import shutil

import h5py
import nir
import numpy as np
import pytest

from neurocompile.backends.float_ref import FloatReference
from neurocompile.frontend.nir_io import load_graph
from neurocompile.semantics.discretization import get_convention
from tests.cli.test_cli_float import run_cli
from tests.peers.test_peer_fixtures import FIXTURES

ASSUME = re.compile(
    r"assume \((?P<producer>[^)]+)\): .+, not recorded; for (?P<other>.+): (?P<flag>--\w+) (?P<spec>\S+)"
)


def assumed(err: str) -> dict:
    """The assume lines of ``err``: the other choice -> (the flag, the string that selects it)."""
    found = (ASSUME.fullmatch(line) for line in err.splitlines() if line.startswith("assume"))
    return {m["other"]: (m["flag"], m["spec"]) for m in found if m}


def simulate(capsys, tmp_path, model, x, *options):
    """``neurocompile simulate MODEL --input X --record`` with ``options``: (stderr, the recording)."""
    record = tmp_path / "run.npz"
    code, _, err = run_cli(capsys, "simulate", model, "--input", x, "--json", "--record", record, *options)
    assert code == 0, err
    return err, dict(np.load(record))


def same_spikes(recording: dict, native) -> bool:
    """Every layer's spikes (counts) equal the library's own."""
    keys = {node: "output.out" if node == "output" else f"{node}.spikes" for node in native.files}
    return all(np.array_equal(recording[keys[node]], native[node]) for node in native.files)


# (library, case, the spec --from reads it with, the build's non-default choice as the notice says it, its string)
NON_DEFAULT = [
    ("snntorch", "leaky_mlp", "snntorch==1.0", "reset_delay=False", "snntorch-1.0,reset_timing=snntorch-immediate"),
    ("snntorch", "synaptic_mlp", "snntorch==1.0", "reset_delay=False", "snntorch-1.0,reset_timing=snntorch-immediate"),
    ("sinabs", "iaf_mlp", "sinabs==3.1", "SingleSpike", "sinabs-3.1,spikes_per_step=single"),
    ("sinabs", "lif_mlp", "sinabs==3.1", "SingleSpike", "sinabs-3.1,spikes_per_step=single"),
]


@pytest.mark.parametrize("library,case,spec,other,convention", NON_DEFAULT)
def test_the_notice_names_the_convention_that_reproduces_the_library(
    capsys, tmp_path, library, case, spec, other, convention
):
    folder = FIXTURES / library / case
    built = json.loads((folder / "meta.json").read_text())["built"]
    assert other in built  # the case was built that way
    native = np.load(folder / "spikes.npz")
    err, recording = simulate(capsys, tmp_path, folder / "model.nir", folder / "input.npy", "--from", spec)
    assert assumed(err)[other] == ("--convention", convention)
    assert not same_spikes(recording, native)  # the library's default, assumed, is not what the net used
    err, recording = simulate(
        capsys, tmp_path, folder / "model.nir", folder / "input.npy", "--from", spec, "--convention", convention
    )
    assert same_spikes(recording, native)
    assert other not in assumed(err)  # decided by --convention: not announced


def test_following_the_notices_one_at_a_time_reaches_the_build(capsys, tmp_path):
    """snnTorch's leaky_mlp_zero: reset_mechanism="zero" and reset_delay=False, both not the default; each
    line's string keeps what the user's --convention already decided."""
    folder = FIXTURES / "snntorch" / "leaky_mlp_zero"
    model, x = folder / "model.nir", folder / "input.npy"
    err, _ = simulate(capsys, tmp_path, model, x, "--from", "snntorch==1.0")
    assert assumed(err) == {
        'reset_mechanism="zero"': ("--convention", "snntorch-1.0,reset=zero"),
        "reset_delay=False": ("--convention", "snntorch-1.0,reset_timing=snntorch-immediate"),
    }
    err, _ = simulate(capsys, tmp_path, model, x, "--from", "snntorch==1.0", "--convention", "snntorch-1.0,reset=zero")
    convention = "snntorch-1.0,reset=zero,reset_timing=snntorch-immediate"
    assert assumed(err) == {"reset_delay=False": ("--convention", convention)}
    err, recording = simulate(capsys, tmp_path, model, x, "--from", "snntorch==1.0", "--convention", convention)
    assert "assume" not in err and same_spikes(recording, np.load(folder / "spikes.npz"))


@pytest.mark.parametrize(
    "options,left",
    [
        (("--reset", "zero"), {"reset_delay=False"}),  # --reset decides the reset
        (("--convention", "snntorch-1.0,reset_timing=snntorch-immediate"), {'reset_mechanism="zero"'}),
        (("--convention", "snntorch"), set()),  # another preset decides everything: nothing is assumed
    ],
)
def test_no_notice_for_what_the_user_decides(capsys, tmp_path, options, left):
    folder = FIXTURES / "snntorch" / "leaky_mlp"
    err, _ = simulate(capsys, tmp_path, folder / "model.nir", folder / "input.npy", "--from", "snntorch==1.0", *options)
    assert set(assumed(err)) == left
    assert err.count("assume") == len(left)


def test_norse_dt_is_a_from_option_and_v_reset_is_named(capsys, tmp_path):
    folder = FIXTURES / "norse" / "lif_mlp"
    err, _ = simulate(capsys, tmp_path, folder / "model.nir", folder / "input.npy", "--from", "norse==1.1")
    assert assumed(err) == {"to_nir(..., dt=DT)": ("--from", "norse==1.1,dt=DT")}
    assert "assume (norse 1.1): v_reset=0 (nir's default), not recorded; for another v_reset: no option" in err
    err, _ = simulate(capsys, tmp_path, folder / "model.nir", folder / "input.npy", "--from", "norse==1.1,dt=1e-3")
    assert not assumed(err) and "dt = 0.001" in err


@pytest.mark.parametrize(
    "spec,message",
    [
        ("sinabs==3.1,norm_input=maybe", "option norm_input: expected true or false, got 'maybe'"),
        ("norse==1.1,dt=-1", "option dt: expected a positive number, got '-1'"),
        ("snntorch==1.0,dt=1e-4", "unknown option 'dt=1e-4' (options: none)"),
    ],
)
def test_from_options_are_checked_in_one_line(capsys, spec, message):
    folder = FIXTURES / "norse" / "lif_mlp"
    code, _, err = run_cli(capsys, "simulate", folder / "model.nir", "--input", folder / "input.npy", "--from", spec)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


# --- Sinabs' norm_input ------------------------------------------------------------------------------


def unnormalized_export(tmp_path):
    """Sinabs' export of the fixture's lif_mlp built with norm_input=False and each LIF's input weights and
    biases times (1 - a): Sinabs then computes ``v = a*v + (1-a)*W x``, the fixture's norm_input=True net,
    so the fixture's spikes are its spikes. Its exporter writes LIF(tau, r=1) either way: only the Affine
    nodes differ."""
    path = tmp_path / "lif_mlp_unnormalized.nir"
    shutil.copy(FIXTURES / "sinabs" / "lif_mlp" / "model.nir", path)
    with h5py.File(path, "r+") as file:
        nodes = file["node"]["nodes"]
        for affine, lif in (("0", "1"), ("2", "3")):
            gain = 1.0 - np.exp(-1.0 / nodes[lif]["tau"][()])
            nodes[affine]["weight"][()] = nodes[affine]["weight"][()] * gain[:, None]
            nodes[affine]["bias"][()] = nodes[affine]["bias"][()] * gain
    return path


def test_sinabs_norm_input_false_reproduces_sinabs(capsys, tmp_path):
    folder = FIXTURES / "sinabs" / "lif_mlp"
    model, x, native = unnormalized_export(tmp_path), folder / "input.npy", np.load(folder / "spikes.npz")
    single = ("--convention", "sinabs-3.1,spikes_per_step=single")  # the fixture's SingleSpike
    err, recording = simulate(capsys, tmp_path, model, x, "--from", "sinabs==3.1", *single)
    assert assumed(err) == {"norm_input=False in every layer": ("--from", "sinabs==3.1,norm_input=false")}
    assert recording["3.spikes"].sum() < native["3"].sum() / 4  # read as norm_input=True: far fewer spikes
    err, recording = simulate(capsys, tmp_path, model, x, "--from", "sinabs==3.1,norm_input=false", *single)
    assert same_spikes(recording, native) and "assume" not in err
    assert "repair (sinabs 3.1): LIF '1' read as norm_input=False (v = a*v + x): r = r/(1 - a)" in err


@pytest.mark.parametrize(
    "norm_input,r", [(None, 1 / (1 - np.exp(-0.25))), ("true", 1.0), ("false", 1 / (1 - np.exp(-0.25)))]
)
def test_sinabs_exp_leak_reads_its_default_norm_input_false(tmp_path, capsys, norm_input, r):
    """ExpLeak (exported as LI) defaults to norm_input=False: v = a*v + x, unless --from says otherwise."""
    graph = nir.NIRGraph.from_list(nir.LI(tau=np.array([4.0]), r=np.array([1.0]), v_leak=np.array([0.0])))
    nir.write(tmp_path / "li.nir", graph)
    spec = "sinabs==3.1" + (f",norm_input={norm_input}" if norm_input else "")
    loaded = load_graph(tmp_path / "li.nir", producer=spec)
    np.testing.assert_allclose(loaded.nodes["li"].r, [r], rtol=1e-6)
    v = FloatReference(loaded, get_convention("sinabs-3.1")).run(np.ones((1, 3, 1)), record="all").arrays["li.v"]
    a = np.exp(-0.25)
    gain = 1.0 if norm_input != "true" else 1 - a
    np.testing.assert_allclose(v.ravel(), gain * np.array([1, 1 + a, 1 + a + a * a]), rtol=1e-5)
    assert ("assume (sinabs 3.1): Sinabs' default norm_input" in capsys.readouterr().err) == (norm_input is None)
