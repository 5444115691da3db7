"""End to end: checkpoint -> NIR -> fixed-point program -> backends, each against an independent reference.

* reference architectures: Lava fixed_pt (Lava's own process models) equals the CPU backend at
  every step, for every spike, u and v;
* the shipped digits model: fixed-point accuracy within 0.5 points of the float reference;
* a model trained with `neurocompile train`: the float backend on its exported NIR graph has the
  accuracy that PyTorch computes with the model itself.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocompile.analysis.metrics import accuracy, layer_agreement
from neurocompile.backends.cpu import CpuBackend
from neurocompile.backends.float_ref import FloatReference
from neurocompile.cli import main
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.data import load_digits_spikes
from neurocompile.frontend.checkpoint import load_checkpoint
from neurocompile.frontend.torch_export import convention_from_metadata, export, export_checkpoint
from neurocompile.models.architectures import MLP, ConvNet, RecurrentNet

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"


def spiking_model(model, gain=8.0, seed=0):
    """Default initialization barely spikes: scale weights so every layer is active."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    return model.eval()


ARCHITECTURES = {
    "MLP": lambda: MLP([64, 32, 10]),
    "ConvNet": lambda: ConvNet(),
    "RecurrentNet": lambda: RecurrentNet(n_hidden=24),
}


@pytest.mark.lava
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_reference_architectures_run_identically_on_lava_and_cpu(name):
    from neurocompile.backends.lava.backend import LavaBackend

    model = spiking_model(ARCHITECTURES[name]())
    rng = np.random.default_rng(1)
    calibration = (rng.random((8, 12, *model.input_shape)) < 0.3).astype(np.float32)
    program, _ = compile_graph(export(model), model.convention, calibration=calibration)
    inputs = (rng.random((2, 12, *model.input_shape)) < 0.3).astype(np.float32)
    cpu = CpuBackend(program).run(inputs, record="all")
    lava = LavaBackend(program).run(inputs, record="all")
    assert sorted(cpu.arrays) == sorted(lava.arrays)
    assert sum(cpu.spike_counts().values()) > 0
    for key in cpu.arrays:
        np.testing.assert_array_equal(lava[key], cpu[key], err_msg=key)


def test_shipped_digits_model_loses_at_most_half_a_point_in_fixed_point():
    graph = export_checkpoint(SHIPPED_MODEL)
    convention = convention_from_metadata(graph)
    calibration, _ = load_digits_spikes(steps=16, split="train")
    program, _ = compile_graph(graph, convention, calibration=calibration[:256])
    inputs, labels = load_digits_spikes(steps=16, split="test")
    reference = FloatReference(graph, convention).run(inputs, record="all")
    fixed = CpuBackend(program).run(inputs, record="all")
    # the output lags its latency: L silent steps more let the last inputs reach it, as in a deployment
    lag = max(program.latency()[name] for name in program.outputs)
    drained = np.concatenate([inputs, np.zeros((len(inputs), lag, *inputs.shape[2:]), inputs.dtype)], axis=1)
    float_accuracy, fixed_accuracy = accuracy(reference, labels), accuracy(CpuBackend(program).run(drained), labels)
    assert float_accuracy > 0.95
    assert abs(fixed_accuracy - float_accuracy) <= 0.005
    agreement = layer_agreement(reference, fixed, program.latency())
    assert sorted(agreement) == ["lif1", "lif2", "lif3"]
    for layer, stats in agreement.items():
        assert 0.8 < stats["count_ratio"] < 1.2, (layer, stats)
        assert stats["rate_correlation"] > 0.95, (layer, stats)


def test_trained_model_has_the_same_accuracy_on_the_float_backend(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    rates = np.full((3, 24), 0.05)
    for c in range(3):
        rates[c, 8 * c : 8 * c + 8] = 0.8  # each class drives its own block of inputs
    x = (rng.random((90, 8, 24)) < rates[labels][:, None, :]).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=labels)
    model_path = tmp_path / "model.pt"
    torch.set_num_threads(1)
    main(
        [
            "train",
            "--data",
            str(data),
            "--rule",
            "stllr",
            "--hidden",
            "16",
            "--epochs",
            "10",
            "--json",
            "-o",
            str(model_path),
        ]
    )
    main(["export", str(model_path), "-o", str(tmp_path / "model.nir")])
    capsys.readouterr()
    main(["simulate", str(tmp_path / "model.nir"), "--backend", "float", "--input", str(data), "--json"])
    simulated = json.loads(capsys.readouterr().out)

    model = load_checkpoint(model_path).eval()
    with torch.no_grad():
        counts = model(torch.from_numpy(x)).sum(dim=1)
    pytorch_accuracy = float((counts.argmax(dim=1).numpy() == labels).mean())
    assert pytorch_accuracy > 0.5
    assert simulated["accuracy"] == pytest.approx(pytorch_accuracy, abs=1e-12)


@pytest.mark.lava
@pytest.mark.parametrize("name", ["lif_norse.nir", "two_lif_neurons.nir", "MLP"])
def test_float_graphs_on_lava_floating_pt_equal_the_float_reference_with_lava_timing(name, nir_paper_dir):
    """Lava's floating_pt run of the float program is the float reference of the graph with every population
    delayed by its latency (one step per synapse; biases and leaks start with the first input)."""
    from neurocompile.backends.lava.backend import LavaBackend
    from neurocompile.compiler.float_program import float_program
    from neurocompile.compiler.normalize import normalize
    from neurocompile.frontend.nir_io import load_graph

    graph = export(spiking_model(MLP([64, 32, 10]))) if name == "MLP" else load_graph(nir_paper_dir / name)
    program = float_program(normalize(graph))
    rng = np.random.default_rng(2)
    steps = 400  # two_lif_neurons' first neuron reaches threshold through its leak after ~180 steps
    inputs = (rng.random((2, steps, *program.inputs[0].shape)) < 0.4).astype(np.float32)
    reference = FloatReference(graph, dtype=torch.float64).run(inputs, record="all")
    lava = LavaBackend(program, tag="floating_pt").run(inputs, record="all")
    assert reference[f"{program.populations[0].name}.spikes"].sum() > 0
    for pop in program.populations:
        lag = program.latency()[pop.name]
        for var in ("spikes", "v"):
            key = f"{pop.name}.{var}"
            assert not np.any(lava[key][:, :lag])
            want = np.asarray(reference[key], dtype=np.float64)[:, : steps - lag]
            np.testing.assert_allclose(lava[key][:, lag:], want, rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.lava
def test_simulate_runs_a_nir_graph_unquantized_on_lava_floating_pt(nir_paper_dir, tmp_path, capsys):
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").astype(np.float32).reshape(1, -1, 1)
    np.save(tmp_path / "input.npy", spikes)
    main(
        [
            "simulate",
            str(nir_paper_dir / "lif_norse.nir"),
            "--backend",
            "lava",
            "--lava-tag",
            "floating_pt",
            "--input",
            str(tmp_path / "input.npy"),
            "--record",
            str(tmp_path / "rec.npz"),
            "--json",
        ]
    )
    assert json.loads(capsys.readouterr().out)["total_spikes"] == 4
    # the paper's float spike times (460, 510, 710, 760), one synapse later
    assert np.nonzero(np.load(tmp_path / "rec.npz")["1.spikes"].ravel())[0].tolist() == [461, 511, 711, 761]
