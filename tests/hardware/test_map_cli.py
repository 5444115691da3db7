"""`neurocompile map` and `compile --target loihi2`: reports, notes, and one-line refusals with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest

from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.hardware.programs import chain, conv
from tests.helpers.plastic_programs import OTTT_RULE, plastic_program

DIGITS_MLP = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"


def saved(program, tmp_path, name="p.ncp") -> Path:
    path = tmp_path / name
    program.save(path)
    return path


def mlp_nir(tmp_path, n_in: int) -> Path:
    """Input of ``n_in`` -> 2 LIF neurons: fan-in ``n_in``."""
    ones = np.ones(2, dtype=np.float32)
    nodes = {
        "input": nir.Input(np.array([n_in])),
        "fc": nir.Affine(weight=np.full((2, n_in), 0.01, dtype=np.float32), bias=np.zeros(2, dtype=np.float32)),
        "lif": nir.LIF(tau=1e-3 * ones, r=10 * ones, v_leak=0 * ones, v_threshold=ones),
        "output": nir.Output(np.array([2])),
    }
    path = tmp_path / f"fan_in_{n_in}.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")]))
    return path


@pytest.mark.parametrize(
    "model,extra",
    [
        (DIGITS_MLP, []),
        ("cnn_sinabs.nir", ["--convention", "sinabs"]),
        ("braille_noDelay_bias_zero.nir", []),
    ],
)
def test_map_shipped_and_paper_networks(capsys, nir_paper_dir, model, extra):
    path = model if isinstance(model, Path) else nir_paper_dir / model
    code, out, _ = run_cli(capsys, "map", path, "--target", "loihi2", *extra)
    assert code == 0 and "neuro cores on 1 chip" in out
    code, out, _ = run_cli(capsys, "map", path, "--json", *extra)
    data = json.loads(out)
    assert data["chips"] == 1 and data["cores"] == len(data["core_map"]) == sum(x["cores"] for x in data["layers"])
    assert all(0 < core["utilization"] <= 1 for core in data["core_map"])


def test_cnn_reset_by_subtraction_is_one_note_per_layer(capsys, nir_paper_dir):
    code, out, _ = run_cli(capsys, "map", nir_paper_dir / "cnn_sinabs.nir", "--convention", "sinabs")
    notes = [line for line in out.splitlines() if "custom microcode" in line]
    assert code == 0 and len(notes) == 5 and all("resets by subtraction" in line for line in notes)


def test_learning_and_graded_inputs_are_information(capsys, tmp_path):
    path = saved(plastic_program(n_hidden=4, hidden_rule=OTTT_RULE), tmp_path)
    code, out, err = run_cli(capsys, "map", path)
    assert code == 0 and not err
    notes = [line for line in out.splitlines() if line.endswith("needs custom microcode")]
    assert len(notes) == 4  # the target input, two learning neurons, the feedback synapse


def test_plot(capsys, tmp_path):
    png = tmp_path / "map.png"
    code, out, _ = run_cli(capsys, "map", DIGITS_MLP, "--plot", png)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(capsys, "map", DIGITS_MLP, "--plot", DIGITS_MLP)
    assert_one_line_error(code, err, "would overwrite the input")


def test_unknown_target(capsys):
    code, _, err = run_cli(capsys, "map", DIGITS_MLP, "--target", "loihi3")
    assert_one_line_error(code, err, "--target", "loihi3")


@pytest.mark.parametrize(
    "program,words",
    [
        (chain([2], 4097), ["node 'l0'", "fan-in", "4097 inputs per neuron", "4096 input axons"]),
        (conv((1, 4, 4), 1, 3, weight=256), ["node 'k'", "weights", "weight 256", "-256..255"]),
    ],
)
def test_what_cannot_be_partitioned_is_one_line(capsys, tmp_path, program, words):
    code, _, err = run_cli(capsys, "map", saved(program, tmp_path))
    assert_one_line_error(code, err, *words)


def test_chips_of_the_system(capsys, tmp_path):
    path = saved(chain([128 * 8192 + 1], 1), tmp_path)
    code, out, _ = run_cli(capsys, "map", path)
    assert code == 0 and "129 neuro cores on 2 chips" in out
    code, _, err = run_cli(capsys, "map", path, "--chips", "1")
    assert_one_line_error(code, err, "node 'l0'", "chips", "needs 2 Loihi 2 chips", "has 1")


def test_a_float_program_is_refused(capsys, tmp_path):
    program = chain([2], 3)
    program.number_format = "float"
    code, _, err = run_cli(capsys, "map", saved(program.validate(), tmp_path))
    assert_one_line_error(code, err, "number_format 'float'", "fixed-point")


def test_compile_target_checks_before_writing(capsys, tmp_path):
    out = tmp_path / "ok.ncp"
    code, text, _ = run_cli(capsys, "compile", mlp_nir(tmp_path, 4096), "-o", out, "--target", "loihi2")
    assert code == 0 and out.is_file() and "loihi2: 1 neuro core on 1 chip" in text
    out = tmp_path / "over.ncp"
    code, _, err = run_cli(capsys, "compile", mlp_nir(tmp_path, 4097), "-o", out, "--target", "loihi2")
    assert_one_line_error(code, err, "node 'lif'", "fan-in", "4097", "4096")
    assert not out.exists()
