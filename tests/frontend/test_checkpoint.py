"""Checkpoints load as data only (weights_only); unsafe formats need an explicit opt-in; the CLI."""

import json
import os
import pickle

import nir
import numpy as np
import pytest
import torch

from neurocompile.cli import main
from neurocompile.errors import CheckpointError
from neurocompile.frontend.checkpoint import load_checkpoint, save_checkpoint
from neurocompile.frontend.torch_export import convention_from_metadata
from neurocompile.models.architectures import MLP, ConvNet, RecurrentNet
from neurocompile.semantics.discretization import get_convention


class Payload:
    """Unpickling this object creates ``marker``: evidence that code ran during loading."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def run_cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def checkpoint(tmp_path):
    model = RecurrentNet(n_in=8, n_hidden=6, n_out=3, neuron="CubaLIF", convention=get_convention("snntorch"))
    with torch.no_grad():
        model.lif2.v_threshold.copy_(torch.tensor([0.5, 1.0, 1.5]))  # per-neuron buffer survives
    return model, save_checkpoint(model, tmp_path / "model.pt", extra={"accuracy": 0.9})


def test_save_and_load_rebuilds_the_same_model(checkpoint):
    model, path = checkpoint
    payload = torch.load(path, weights_only=True)  # the file is plain data
    assert payload["architecture"] == "RecurrentNet" and payload["extra"] == {"accuracy": 0.9}
    loaded = load_checkpoint(path)
    assert isinstance(loaded, RecurrentNet) and loaded.convention == model.convention
    assert not loaded.training
    x = (torch.rand(2, 10, 8) < 0.5).float()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert torch.equal(loaded(x), model(x))


def test_every_reference_architecture_saves(tmp_path):
    for model in (MLP(), ConvNet(), RecurrentNet()):
        path = save_checkpoint(model, tmp_path / f"{type(model).__name__}.pt")
        assert type(load_checkpoint(path)) is type(model)
    with pytest.raises(CheckpointError, match="cannot checkpoint"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "linear.pt")


def test_pickled_module_needs_opt_in(tmp_path):
    model = MLP([4, 3])
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    with pytest.raises(CheckpointError, match="pickled module.*pass --allow-pickle to trust it"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, allow_unsafe=True)
    assert isinstance(loaded, MLP) and torch.equal(loaded.fc1.weight, model.fc1.weight)


def test_malicious_pickle_does_not_run_without_opt_in(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled module"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_needs_opt_in(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="TorchScript.*--allow-pickle"):
        load_checkpoint(path)
    assert isinstance(load_checkpoint(path, allow_unsafe=True), torch.jit.ScriptModule)


def bad_files(tmp_path, good):
    files = {
        "random.pt": os.urandom(2000),
        "empty.pt": b"",
        "truncated.pt": good.read_bytes()[: good.stat().st_size // 2],
        "text.pt": b"hello, not a checkpoint\n",
        "plain-pickle.pt": pickle.dumps({"a": 1}, protocol=4),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(MLP([4, 3]).state_dict(), tmp_path / "state-dict.pt")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop("fc1.weight")
    torch.save(payload, tmp_path / "missing-weight.pt")
    return [tmp_path / name for name in [*files, "state-dict.pt", "missing-weight.pt"]]


def test_bad_files_are_one_line_checkpoint_errors(tmp_path, checkpoint):
    for path in bad_files(tmp_path, checkpoint[1]):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and len(message) < 300, message


def test_cli_export_writes_a_readable_nir_file(tmp_path, capsys, checkpoint):
    model, path = checkpoint
    code, out, err = run_cli(capsys, "export", str(path))
    assert code == 0, err
    written = path.with_suffix(".nir")
    assert written.is_file() and "wrote" in out
    graph = nir.read(written)
    assert {"fc1", "cubalif1", "cubalif1_rec", "fc2", "lif2"} <= set(graph.nodes)
    np.testing.assert_array_equal(graph.nodes["lif2"].v_threshold, [0.5, 1.0, 1.5])
    assert convention_from_metadata(graph) == model.convention
    code, _, err = run_cli(capsys, "export", str(path), "-o", str(tmp_path / "other.nir"))
    assert code == 0 and (tmp_path / "other.nir").is_file()


def test_cli_rejects_bad_files_with_exit_code_2(tmp_path, capsys, checkpoint):
    for path in [*bad_files(tmp_path, checkpoint[1]), tmp_path / "missing.pt"]:
        code, out, err = run_cli(capsys, "export", str(path))
        assert code == 2, (path, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert not path.with_suffix(".nir").exists()


def test_cli_pickled_module_needs_allow_pickle(tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save(MLP([4, 3]), path)
    code, _, err = run_cli(capsys, "export", str(path))
    assert code == 2 and "pass --allow-pickle to trust it" in err
    code, _, err = run_cli(capsys, "export", str(path), "--allow-pickle")
    assert code == 0, err
    assert isinstance(nir.read(path.with_suffix(".nir")).nodes["fc1"], nir.Affine)


def test_a_pickled_sequential_without_a_shape_exports_and_simulates_from_the_cli(tmp_path, capsys):
    """A user's own nn.Sequential of the project's layers, pickled: --input-shape gives what it lacks,
    --allow-pickle trusts it, in export and simulate alike; each error names the option."""
    from neurocompile.frontend.nir_io import load_graph
    from neurocompile.models.layers import Linear
    from neurocompile.models.neurons import LIF

    torch.manual_seed(0)
    net = torch.nn.Sequential(Linear(6, 5), LIF((5,), tau=5e-3), Linear(5, 3), LIF((3,), tau=5e-3))
    path, x = tmp_path / "own.pt", tmp_path / "x.npy"
    torch.save(net, path)
    np.save(x, (np.random.default_rng(0).random((4, 10, 6)) < 0.5).astype(np.uint8))
    code, _, err = run_cli(capsys, "simulate", str(path), "--input", str(x))
    assert code == 2 and "--allow-pickle" in err
    code, _, err = run_cli(capsys, "export", str(path), "--allow-pickle")
    assert code == 2 and "--input-shape 1,28,28" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "export", str(path), "--allow-pickle", "--input-shape", "6")
    assert code == 0, err
    graph = load_graph(path.with_suffix(".nir"))
    np.testing.assert_array_equal(graph.nodes["_0"].weight, net[0].weight.detach().numpy())
    for backend in ("float", "cpu"):
        code, out, err = run_cli(capsys, "simulate", str(path), "--backend", backend, "--input", str(x), "--json",
                                 "--allow-pickle", "--input-shape", "6")  # fmt: skip
        assert code == 0, err
        code, out_nir, err = run_cli(capsys, "simulate", str(path.with_suffix(".nir")), "--backend", backend,
                                     "--input", str(x), "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["predictions"] == json.loads(out_nir)["predictions"]
    code, _, err = run_cli(capsys, "export", str(path), "--allow-pickle", "--input-shape", "0")
    assert code == 2 and "--input-shape" in err


@pytest.mark.parametrize("field, value", [("padding", True), ("channels", 2.0), ("bias", 1)])
def test_a_config_value_of_the_wrong_type_is_refused(tmp_path, field, value):
    """A bool where an int is meant built a ConvNet whose forward failed inside torch (fuzzing)."""
    path = save_checkpoint(ConvNet(input_shape=(1, 6, 6), channels=2), tmp_path / "c.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"][field] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"config '{field}' must be"):
        load_checkpoint(path)


@pytest.mark.parametrize("dt", [10**20, 10**400])
def test_an_integer_dt_is_read_as_a_float_or_refused(tmp_path, dt):
    """A convention dt of 10**20 (an int) overflowed in numpy; beyond float's range it is invalid (fuzzing)."""
    path = save_checkpoint(MLP([4, 3]), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["convention"]["dt"] = dt
    torch.save(payload, path)
    if dt > 1e308:
        with pytest.raises(CheckpointError, match="convention option dt=1000"):
            load_checkpoint(path)
    else:
        assert load_checkpoint(path).convention.dt == 1e20


class Round(torch.nn.Module):
    def forward(self, w):
        return torch.round(w * 8) / 8


def test_parametrized_weights_are_saved_as_computed(tmp_path):
    from torch.nn.utils import parametrize

    model = MLP([4, 3])
    parametrize.register_parametrization(model.fc1, "weight", Round())
    path = save_checkpoint(model, tmp_path / "quantized.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.fc1.weight, model.fc1.weight)
    assert parametrize.is_parametrized(model.fc1)  # the caller's model is untouched
    from neurocompile.frontend.torch_export import export

    np.testing.assert_array_equal(export(model).nodes["fc1"].weight, model.fc1.weight.detach().numpy())
