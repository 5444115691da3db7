"""`neurocompile inspect` and `neurocompile simulate` (float backend): reports, files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import h5py
import nir
import numpy as np
import pytest

from neurocompile import api
from neurocompile.cli import main
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.ir.report import QuantizationReport

PAPER_GRAPHS = [
    ("lif_norse.nir", []),
    ("lif_rockpool.nir", ["--lenient"]),
    ("two_lif_neurons.nir", []),
    ("cnn_sinabs.nir", []),
    ("braille_noDelay_bias_zero.nir", []),
    ("braille_noDelay_noBias_subtract.nir", []),
]


def run_cli(capsys, *argv):
    """Run the real entry point in-process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture()
def bad_files(tmp_path, nir_paper_dir):
    """Truncated, random, NaN-parameter and unknown-primitive .nir files."""
    data = (nir_paper_dir / "lif_norse.nir").read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.nir"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["random"] = tmp_path / "random.nir"
    files["random"].write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    graph = nir.read(str(nir_paper_dir / "lif_norse.nir"))
    graph.nodes["1"].tau = np.array([np.nan], dtype=np.float32)
    files["nan"] = tmp_path / "nan.nir"
    nir.write(str(files["nan"]), graph)
    files["unknown"] = tmp_path / "unknown.nir"
    files["unknown"].write_bytes(data)
    with h5py.File(files["unknown"], "r+") as fh:
        del fh["node/nodes/1/type"]
        fh["node/nodes/1/type"] = b"Hodgkin"
    return files


# --- inspect ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,extra", PAPER_GRAPHS)
def test_inspect_paper_graphs(capsys, nir_paper_dir, name, extra):
    code, out, _ = run_cli(capsys, "inspect", nir_paper_dir / name, *extra)
    assert code == 0 and "NIR graph" in out
    code, out, _ = run_cli(capsys, "inspect", nir_paper_dir / name, "--json", *extra)
    info = json.loads(out)
    assert code == 0 and info["kind"] == "nir-graph" and info["neurons"] > 0


def test_inspect_counts_braille(capsys, nir_paper_dir):
    code, out, _ = run_cli(capsys, "inspect", nir_paper_dir / "braille_noDelay_bias_zero.nir", "--json")
    info = json.loads(out)
    assert info["neurons"] == 38 + 7
    assert info["synapses"] == 38 * 12 + 38 * 38 + 7 * 38  # all weights nonzero
    assert info["recurrent_edges"] == [["lif1.w_rec", "lif1.lif"]]
    lif = next(n for n in info["nodes"] if n["name"] == "lif2")
    assert lif["type"] == "CubaLIF" and lif["parameters"]["tau_syn"]["min"] == pytest.approx(2e-4)


def test_inspect_cnn_synapses(capsys, nir_paper_dir):
    code, out, _ = run_cli(capsys, "inspect", nir_paper_dir / "cnn_sinabs.nir", "--json")
    nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
    assert nodes["0"]["output_shape"] == [16, 16, 16]
    assert (
        nodes["0"]["synapses"]
        == np.count_nonzero(nir.read(str(nir_paper_dir / "cnn_sinabs.nir")).nodes["0"].weight) * 16 * 16
    )
    assert nodes["8"]["output_shape"] == [128]


def test_inspect_rockpool_needs_lenient(capsys, nir_paper_dir):
    code, _, err = run_cli(capsys, "inspect", nir_paper_dir / "lif_rockpool.nir")
    assert_one_line_error(code, err, "output", "lenient")


@pytest.mark.parametrize("extra", [[], ["--lenient"]])
def test_inspect_subgraph_file_fails_in_one_line(capsys, nir_paper_dir, extra):
    code, _, err = run_cli(capsys, "inspect", nir_paper_dir / "braille_noDelay_bias_zero_subgraph.nir", *extra)
    assert_one_line_error(code, err, "'lif'", "lif1", "edges")


@pytest.mark.parametrize(
    "kind,words",
    [
        ("truncated", ["not a readable NIR"]),
        ("random", ["not a readable NIR"]),
        ("nan", ["'1'", "'tau'", "NaN"]),
        ("unknown", ["'1'", "'type'", "Hodgkin"]),
    ],
)
def test_bad_files_exit_2(capsys, bad_files, tmp_path, kind, words):
    code, _, err = run_cli(capsys, "inspect", bad_files[kind])
    assert_one_line_error(code, err, *words)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 1), dtype=np.float32))
    code, _, err = run_cli(capsys, "simulate", bad_files[kind], "--input", x)
    assert_one_line_error(code, err, *words)


def test_entry_point_exit_code(bad_files):
    proc = subprocess.run(
        [sys.executable, "-c", "from neurocompile.cli import main; main()", "inspect", str(bad_files["truncated"])],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_inspect_program(capsys, tmp_path):
    program = FixedPointProgram(
        inputs=[InputPort("in", (3,))],
        populations=[Population("hid", (2,), du=4095, dv=163, vth=25, bias_mant=np.array([0, -4]), bias_exp=1)],
        synapses=[
            Synapse(
                "in->hid",
                "in",
                "hid",
                "dense",
                np.array([[10, 0, -3], [1, 2, 3]]),
                weight_exp=2,
                num_weight_bits=6,
                delays=np.array([[0, 1, 2], [3, 0, 0]]),
            )
        ],
        outputs=["hid"],
        metadata={"quantization": QuantizationReport("maxabs", None, False, 1e-4, "neurocompile").to_dict()},
    )
    path = tmp_path / "p.ncp"
    program.save(path)
    code, out, _ = run_cli(capsys, "inspect", path, "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "fixed-point-program"
    pop = info["populations"][0]
    assert (pop["du"], pop["dv"], pop["vth"], pop["bias_mant"], pop["bias_exp"]) == (
        4095,
        163,
        25,
        {"min": -4, "max": 0},
        1,
    )
    syn = info["synapses"][0]
    assert (syn["weight_min"], syn["weight_max"], syn["weight_exp"], syn["num_weight_bits"], syn["delays"]) == (
        -3,
        10,
        2,
        6,
        {"min": 0, "max": 3},
    )
    assert info["quantization"]["method"] == "maxabs"
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "du" in out and "quantization report" in out and "method=maxabs, not calibrated" in out


def test_inspect_unknown_suffix(capsys, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    code, _, err = run_cli(capsys, "inspect", path)
    assert_one_line_error(code, err, ".onnx")


# --- simulate -----------------------------------------------------------------------------


@pytest.fixture()
def lif_input(nir_paper_dir, tmp_path):
    path = tmp_path / "lif_in.npy"
    np.save(path, np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)[None, :, None])
    return path


def test_simulate_paper_lif(capsys, nir_paper_dir, lif_input, tmp_path):
    record, plot = tmp_path / "rec.npz", tmp_path / "raster.png"
    code, out, _ = run_cli(
        capsys,
        "simulate",
        nir_paper_dir / "lif_norse.nir",
        "--input",
        lif_input,
        "--json",
        "--record",
        record,
        "--plot",
        plot,
    )
    report = json.loads(out)
    assert code == 0 and report["nodes"]["1"]["spikes"] == 4 and report["outputs"] == ["1"]
    assert report["synaptic_operations"] == 34  # 34 input spikes through one weight
    with np.load(record) as arrays:
        assert np.nonzero(arrays["1.spikes"][0, :, 0])[0].tolist() == [460, 510, 710, 760]
        assert arrays["1.v"].shape == (1, 1000, 1)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(capsys, "simulate", nir_paper_dir / "lif_norse.nir", "--input", lif_input)
    assert code == 0 and "synaptic operations" in out and "activation sparsity" in out


def test_simulate_steps_and_dt(capsys, nir_paper_dir, lif_input):
    code, out, _ = run_cli(
        capsys, "simulate", nir_paper_dir / "lif_norse.nir", "--input", lif_input, "--steps", 500, "--json"
    )
    report = json.loads(out)
    assert report["steps"] == 500 and report["nodes"]["1"]["spikes"] == 1  # only the spike at 460
    code, out, _ = run_cli(
        capsys, "simulate", nir_paper_dir / "lif_norse.nir", "--input", lif_input, "--dt", 2e-4, "--json"
    )
    assert json.loads(out)["dt"] == 2e-4


def test_simulate_cnn_with_sinabs_preset(capsys, nir_paper_dir, tmp_path):
    x = tmp_path / "cnn.npy"
    np.save(x, (np.random.default_rng(0).random((2, 3, 2, 34, 34)) < 0.2).astype(np.float32))
    code, out, _ = run_cli(
        capsys, "simulate", nir_paper_dir / "cnn_sinabs.nir", "--input", x, "--convention", "sinabs", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["convention"] == "sinabs" and len(report["predictions"]) == 2


def test_simulate_digits_reports_accuracy(capsys, tmp_path):
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(0, 30, (10, 64)), bias=np.zeros(10)),
        nir.LIF(
            tau=np.full(10, 1e-3), r=np.ones(10), v_leak=np.zeros(10), v_threshold=np.ones(10), v_reset=np.zeros(10)
        ),
    )
    path = tmp_path / "digits.nir"
    nir.write(str(path), graph)
    code, out, err = run_cli(capsys, "simulate", path, "--data", "digits", "--steps", 8, "--limit", 5, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 5 and report["steps"] == 8 and 0.0 <= report["accuracy"] <= 1.0


def test_simulate_errors(capsys, nir_paper_dir, lif_input, tmp_path):
    model = nir_paper_dir / "lif_norse.nir"
    code, _, err = run_cli(capsys, "simulate", model)
    assert_one_line_error(code, err, "--input")
    code, _, err = run_cli(capsys, "simulate", model, "--input", lif_input, "--convention", "brian")
    assert_one_line_error(code, err, "brian")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 5, 3), dtype=np.float32))
    code, _, err = run_cli(capsys, "simulate", model, "--input", wrong)
    assert_one_line_error(code, err, "input")
    code, _, err = run_cli(capsys, "simulate", model, "--input", tmp_path / "missing.npy")
    assert_one_line_error(code, err, "no such file")
    code, _, err = run_cli(capsys, "simulate", model, "--input", lif_input, "--dt", -1)
    assert_one_line_error(code, err, "--dt")
    code, _, err = run_cli(
        capsys, "simulate", nir_paper_dir / "braille_noDelay_bias_zero_subgraph.nir", "--input", lif_input
    )
    assert_one_line_error(code, err, "'lif'")
    ncp = tmp_path / "p.ncp"
    FixedPointProgram(
        [InputPort("in", (1,))], [Population("p", (1,), 0, 0, 1, np.zeros(1, dtype=np.int32))], [], ["p"]
    ).save(ncp)
    code, _, err = run_cli(capsys, "simulate", ncp, "--input", lif_input, "--backend", "float")
    assert_one_line_error(code, err, "cpu or lava")


def test_simulate_checkpoint_exports_first(capsys, tmp_path):
    from neurocompile.frontend.checkpoint import save_checkpoint
    from neurocompile.frontend.torch_export import export_checkpoint
    from neurocompile.models.architectures import MLP

    path = save_checkpoint(MLP(sizes=(64, 16, 10)), tmp_path / "mlp.pt")
    code, out, err = run_cli(capsys, "simulate", path, "--data", "digits", "--steps", 6, "--limit", 3, "--json")
    assert code == 0, err
    report = json.loads(out)
    # the same run on the exported graph, through the float reference directly
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.data import load_digits_spikes

    x, _ = load_digits_spikes(6, split="test")
    rec = FloatReference(export_checkpoint(path)).run(x[:3], record="all")
    assert report["samples"] == 3 and report["total_spikes"] == sum(rec.spike_counts().values())


def test_internal_error_is_one_line_asking_for_a_report(capsys, tmp_path, monkeypatch):

    def broken(*args, **kwargs):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(api, "export", broken)
    monkeypatch.delenv("NEUROCOMPILE_DEBUG", raising=False)
    code, _, err = run_cli(capsys, "export", tmp_path / "m.pt", "-o", tmp_path / "m.nir")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "RuntimeError: first line" in lines[0] and "report" in lines[0], err


@pytest.mark.parametrize(
    "raised, code, words",
    [
        (None, 0, ""),
        (ValueError("bad"), 1, "internal error: ValueError: bad"),
        (MemoryError(), 2, "out of memory"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_warnings_show_after_success_only_and_exit_codes_follow_the_contract(
    capsys, tmp_path, monkeypatch, recwarn, raised, code, words
):
    import warnings

    def export(*args, **kwargs):
        warnings.warn("on the way", UserWarning, stacklevel=2)
        if raised is not None:
            raise raised
        return nir.NIRGraph(nodes={}, edges=[], metadata={"dt": 1e-3})

    monkeypatch.setattr(api, "export", export)
    monkeypatch.delenv("NEUROCOMPILE_DEBUG", raising=False)
    got, _, err = run_cli(capsys, "export", tmp_path / "m.pt", "-o", tmp_path / "m.nir")
    assert got == code and words in err, err
    shown = [w for w in recwarn if "on the way" in str(w.message)]
    if raised is None:
        assert len(shown) == 1
    else:
        assert not shown and len(err.strip().splitlines()) == 1 and err.strip().startswith("error: "), err


def test_graded_inputs_need_the_flag_and_a_float_model(capsys, nir_paper_dir, tmp_path):
    x = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32)[None, :, None] * 0.5
    graded = tmp_path / "graded.npy"
    np.save(graded, x)
    model = nir_paper_dir / "lif_norse.nir"
    for backend in ("float", "cpu"):
        code, _, err = run_cli(capsys, "simulate", model, "--backend", backend, "--input", graded)
        assert_one_line_error(code, err, f"{backend} backend", "spikes must be 0 or 1", "--graded-inputs")
    code, out, err = run_cli(capsys, "simulate", model, "--input", graded, "--graded-inputs", "--json")
    assert code == 0 and json.loads(out)["nodes"]["1"]["spikes"] < 4, err  # half the drive: fewer than 4 spikes
    code, _, err = run_cli(capsys, "simulate", model, "--backend", "cpu", "--input", graded, "--graded-inputs")
    assert_one_line_error(code, err, "cpu backend", "spikes must be 0 or 1")
    code, _, err = run_cli(capsys, "compile", model, "--calibrate", graded, "-o", tmp_path / "m.ncp")
    assert_one_line_error(code, err, "calibration", "spikes must be 0 or 1")
    assert "--graded-inputs" not in err  # compile has no such flag


SWALLOWS_THE_INTERRUPT = """
import os, signal, sys, time
import neurocompile.cli as cli
from neurocompile import api

def export(*args, **kwargs):  # library code that catches the KeyboardInterrupt a SIGTERM raises
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        pass
    time.sleep(60)

api.export = export
cli.INTERRUPT_GRACE_S = 1
cli.main(["export", sys.argv[1], "-o", sys.argv[2]])
"""


def test_a_swallowed_interrupt_still_ends_the_run_after_the_grace_period(tmp_path):
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWS_THE_INTERRUPT, str(tmp_path / "m.pt"), str(tmp_path / "m.nir")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 130 and proc.stderr.strip().splitlines()[-1] == "error: interrupted", proc.stderr
    assert time.monotonic() - started < 30
