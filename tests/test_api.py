"""The library API (`import neurocompile`): the README example runs, the API and the CLI agree,
training defaults have one source, and importing the package stays light."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neurocompile
from neurocompile.cli import main
from neurocompile.errors import NeurocompileError, first_line
from tests.cli.test_cli_float import run_cli as cli_run

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "digits_mlp.pt"


def run_cli(capsys, *argv):
    """The CLI in-process (``tests.cli.test_cli_float.run_cli``); its stdout, after checking it succeeded."""
    code, out, err = cli_run(capsys, *argv)
    assert code == 0, err
    return out


def readme_block(section: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {section}\n.*?```python\n(.*?)```", text, re.S | re.M)
    assert match, f"README.md has no python block under '## {section}'"
    return match.group(1)


def test_readme_python_api_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(readme_block("Python API"), "README.md", "exec"), namespace)
    # models/README.md: 97.2% on the cpu backend over the 360 test digits; 100 of them here
    assert namespace["summary"]["samples"] == 100 and namespace["summary"]["accuracy"] >= 0.9
    assert namespace["program"].populations and namespace["report"].to_dict()
    assert 0.0 <= namespace["metrics"]["test_acc"] <= 1.0 and len(namespace["metrics"]["history"]) == 2
    assert "accuracy" in capsys.readouterr().out


# --- the API and the CLI give the same results ----------------------------------------------


@pytest.mark.parametrize("backend", ["float", "cpu"])
def test_simulate_api_summary_equals_cli_json(capsys, backend):
    cli = json.loads(
        run_cli(capsys, "simulate", SHIPPED, "--backend", backend, "--data", "digits", "--limit", 40, "--json")
    )
    x, labels = neurocompile.load_inputs(data="digits", limit=40)
    recording = neurocompile.simulate(str(SHIPPED), x, backend=backend)
    summary = neurocompile.summarize(recording, x, labels)
    assert {k: v for k, v in cli.items() if k not in ("model", "convention", "dt")} == summary
    assert neurocompile.format_summary(summary).splitlines()[0].startswith(f"backend {backend}: 40 samples")


def test_simulate_api_equals_the_backend_run_directly():
    """Oracle: the stages called one by one (export, compile_graph, create_backend, metrics)."""
    from neurocompile.analysis import metrics
    from neurocompile.backends import create_backend
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.frontend.torch_export import export_checkpoint

    x, labels = neurocompile.load_inputs(data="digits", steps=8, limit=30)
    program, _ = compile_graph(export_checkpoint(SHIPPED))
    silent = np.zeros((len(x), program.output_latency(), *x.shape[2:]), x.dtype)  # simulate drains the program
    direct = create_backend("cpu", program).run(np.concatenate([x, silent], axis=1), record="all")
    recording = neurocompile.simulate(neurocompile.export(str(SHIPPED)), x, backend="cpu")
    assert recording.arrays.keys() == direct.arrays.keys()
    for key in direct.arrays:
        np.testing.assert_array_equal(recording.arrays[key], direct.arrays[key])
    assert neurocompile.summarize(recording, x, labels)["accuracy"] == metrics.accuracy(direct, labels)
    assert recording.metadata["synops"] == metrics.program_synops(program, np.concatenate([x, silent], axis=1), direct)


def test_export_and_compile_api_equal_cli(capsys, tmp_path):
    from neurocompile.ir.program import FixedPointProgram

    nir_path, ncp_path = tmp_path / "m.nir", tmp_path / "m.ncp"
    run_cli(capsys, "export", SHIPPED, "-o", nir_path)
    cli_report = json.loads(
        run_cli(
            capsys, "compile", nir_path, "-o", ncp_path, "--calibrate", "digits", "--calibrate-samples", 32, "--json"
        )
    )["report"]
    graph = neurocompile.export(str(SHIPPED), output=tmp_path / "api.nir")
    assert graph.nodes.keys() == neurocompile.load_model(nir_path).nodes.keys()
    program, report = neurocompile.compile(nir_path, calibration="digits", samples=32)
    assert report.to_dict() == cli_report
    cli_program = FixedPointProgram.load(ncp_path)
    for ours, theirs in zip(program.synapses, cli_program.synapses, strict=True):
        np.testing.assert_array_equal(ours.weights, theirs.weights)
    assert program.metadata["source"] == cli_program.metadata["source"] == str(nir_path)


def test_train_api_equals_cli(capsys, tmp_path):
    import torch

    argv = ["--data", "digits", "--epochs", 1, "--hidden", "16", "--output-neuron", "LI", "--device", "cpu"]
    cli = json.loads(run_cli(capsys, "train", *argv, "--json", "-o", tmp_path / "cli.pt"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI's --threads 1
    try:
        _, api = neurocompile.train(epochs=1, hidden=(16,), output_neuron="LI", device="cpu", output=tmp_path / "a.pt")
    finally:
        torch.set_num_threads(threads)
    assert api["config"] == cli["config"]
    assert api["test_acc"] == cli["test_acc"] and api["history"][0]["loss"] == cli["history"][0]["loss"]
    assert Path(api["outputs"]["checkpoint"]).is_file() and Path(api["outputs"]["metrics"]).is_file()


# --- training defaults: one source ---------------------------------------------------------


def test_training_defaults_resolve_as_the_cli_documented():
    """The CLI's documented defaults (--steps: 16, an .npz file's own T; --loss-scale: 8 LIF, 1 LI)."""
    TrainConfig = neurocompile.TrainConfig
    assert TrainConfig().resolved().steps == 16 and TrainConfig().resolved().loss_scale == 8.0
    assert TrainConfig(data="digits-rows").resolved().steps == 16
    assert TrainConfig(data="my.npz").resolved().steps is None
    assert TrainConfig(output_neuron="LI").resolved().loss_scale == 1.0
    assert TrainConfig(output_neuron="LI", loss_scale=3.0, steps=8).resolved() == TrainConfig(
        output_neuron="LI", loss_scale=3.0, steps=8
    )


def test_train_on_an_npz_uses_its_own_steps(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(path, x=(rng.random((40, 5, 6)) < 0.3).astype(np.float32), y=np.arange(40) % 2)
    _, metrics = neurocompile.train(data=str(path), epochs=1, hidden=(8,), device="cpu")
    assert metrics["steps"] == 5 and metrics["config"]["steps"] is None


def test_shipped_model_command_in_models_readme_still_gives_its_config(monkeypatch, capsys):
    """models/README.md's `neurocompile train ...` line parses to the config in digits_mlp.json."""
    from neurocompile import api

    line = next(ln for ln in (REPO / "models" / "README.md").read_text().splitlines() if "neurocompile train" in ln)
    argv = line.split("neurocompile", 1)[1].split()
    seen = {}

    def fake_train(config, output=None, progress=False):
        seen["config"] = config.resolved()
        raise NeurocompileError("stop")

    monkeypatch.setattr(api, "train", fake_train)
    with pytest.raises(SystemExit):
        main(argv)
    capsys.readouterr()
    recorded = json.loads((REPO / "models" / "digits_mlp.json").read_text())["config"]
    ours = dataclasses.asdict(seen["config"])
    for key in ours.keys() & recorded.keys():
        assert (list(ours[key]) if isinstance(ours[key], tuple) else ours[key]) == recorded[key], key


# --- errors and imports --------------------------------------------------------------------


def test_api_errors_are_one_line_neurocompile_errors(tmp_path):
    program, _ = neurocompile.compile(str(SHIPPED))
    x = np.zeros((1, 4, 64), dtype=np.float32)
    cases = [
        (lambda: neurocompile.simulate(program, x, backend="float"), "cpu or lava"),
        (lambda: neurocompile.simulate(program, x, backend="gpu"), "unknown backend"),
        (lambda: neurocompile.train(epoch=3), "epoch"),
        (lambda: neurocompile.export(str(SHIPPED), input_shape=(32,)), "records input shape [64], not [32]"),
        (lambda: neurocompile.load_model(tmp_path / "m.onnx"), "no such file"),
        (lambda: neurocompile.load_inputs(), "no input"),
        (lambda: neurocompile.load_inputs(tmp_path / "x.npy", data="digits"), "not both"),
        (lambda: neurocompile.compile(program), "already"),
    ]
    for call, words in cases:
        with pytest.raises(NeurocompileError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)


def test_api_outputs_over_an_input_are_refused_before_any_work(tmp_path, monkeypatch):
    """The API checks its outputs as the CLI does, before exporting, compiling or learning."""
    model = tmp_path / "m.pt"
    model.write_bytes(SHIPPED.read_bytes())
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 4, 64), np.uint8), y=np.zeros(2, np.int64))
    (tmp_path / "link.ncp").symlink_to(data)
    monkeypatch.setattr(neurocompile.api, "compile_graph", lambda *a, **k: pytest.fail("compiled before refusing"))
    cases = [
        lambda: neurocompile.export(str(model), output=model),
        lambda: neurocompile.compile(str(model), str(data), output=tmp_path / "link.ncp"),
        lambda: neurocompile.learn(str(model), data=str(data), output=tmp_path / "p.ncp", plot=data),
        lambda: neurocompile.compile(str(model), output=tmp_path / "missing" / "p.ncp"),
    ]
    for call in cases:
        with pytest.raises(NeurocompileError, match="overwrite the input|no such directory"):
            call()
    assert data.stat().st_size > 0 and model.read_bytes() == SHIPPED.read_bytes()


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


HEAVY = ("torch", "lava", "nir", "nirtorch", "scipy", "sklearn", "matplotlib")


def test_import_neurocompile_is_light():
    loaded = _modules_after("import neurocompile; neurocompile.__version__; dir(neurocompile)")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert not [m for m in loaded if m.startswith("neurocompile.") and m != "neurocompile.errors"]
    # the CLI with all its commands registered starts without torch or Lava too
    cli = _modules_after(
        "import neurocompile.cli as c, importlib\nfor n in c.COMMAND_MODULES: importlib.import_module(c.__name__ + '.' + n)"
    )
    assert not [m for m in cli if m.split(".")[0] in HEAVY]


def test_readout_must_be_a_leaky_neuron_model(capsys, tmp_path):
    code, _, err = cli_run(capsys, "train", "--epochs", 1, "--output-neuron", "IF", "-o", tmp_path / "m.pt")
    assert code == 2
    assert not (tmp_path / "m.pt").exists()
    assert err.strip().splitlines() == ["error: output neuron 'IF' is not a leaky neuron model; choose one of LIF, LI"]


def test_one_line_errors_quote_the_first_line_of_a_library_exception():
    assert first_line(ValueError("bad shape\n  at line 3")) == "bad shape"
    assert first_line(OSError("\n  truncated file\n")) == "truncated file"
    assert first_line(KeyError()) == "KeyError"
