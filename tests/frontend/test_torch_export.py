"""Export round trip: the PyTorch model and the float reference run on its NIR graph agree.

The oracle is ``backends/float_ref.py`` (an independent NIR simulator). Both sides run in
float64 so that a different summation order cannot move a voltage across the threshold; the
spikes must then be equal exactly and the states within 1e-5.
"""

import nir
import numpy as np
import pytest
import torch

from neurocompile.backends.float_ref import FloatReference
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.torch_export import convention_from_metadata, export, write_nir
from neurocompile.models import layers as L
from neurocompile.models import neurons as N
from neurocompile.models.architectures import MLP, SNN, ConvNet, RecurrentNet
from neurocompile.semantics.discretization import Convention, get_convention


def lively(model, gain=8.0, seed=0):
    """Scale the weights up (the default init barely spikes) and randomize neuron parameters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
        for module in model.modules():
            if isinstance(module, N.Neuron) and module.spiking:
                module.v_threshold.mul_(0.5 + torch.rand_like(module.v_threshold))
    return model.double().eval()


def round_trip(model, steps=25, batch=3, rate=0.3, convention=None, seed=1):
    torch.manual_seed(seed)
    x = (torch.rand(batch, steps, *model.input_shape) < rate).double()
    with torch.no_grad():
        out, trace = model(x, record=True)
    graph = export(model)
    recording = FloatReference(graph, convention or model.convention, dtype=torch.float64).run(x.numpy(), record="all")
    return x, out, trace, graph, recording


def assert_same(out, trace, recording):
    assert np.array_equal(
        recording.output_spikes()
        if recording.outputs[0] + ".spikes" in recording.arrays
        else recording[recording.outputs[0] + ".v"],
        out.numpy(),
    )
    for key, value in trace.items():
        if key.endswith(".spikes"):
            assert np.array_equal(recording[key], value.numpy()), key
        else:
            np.testing.assert_allclose(recording[key], value.numpy(), atol=1e-5, err_msg=key)


ARCHITECTURES = {
    "MLP": lambda conv: MLP([64, 32, 10], convention=conv),
    "ConvNet": lambda conv: ConvNet(convention=conv),
    "RecurrentNet-LIF": lambda conv: RecurrentNet(n_hidden=32, convention=conv),
    "RecurrentNet-CubaLIF": lambda conv: RecurrentNet(n_hidden=32, neuron="CubaLIF", bias=True, convention=conv),
}


@pytest.mark.parametrize("convention", ["neurocompile", "snntorch"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_round_trip_reference_architectures(arch, convention):
    torch.manual_seed(0)  # the model's initial weights, whatever ran before in this worker
    model = lively(ARCHITECTURES[arch](get_convention(convention)))
    x, out, trace, graph, recording = round_trip(model)
    assert_same(out, trace, recording)
    # The comparison is not vacuous: every spiking layer spikes, and not always.
    for key, value in trace.items():
        if key.endswith(".spikes"):
            assert 0 < value.mean() < 0.9, (key, float(value.mean()))


def test_recurrent_layer_is_a_cycle_with_a_back_edge():
    model = lively(RecurrentNet(n_hidden=16))
    graph = export(model)
    assert ("lif1", "lif1_rec") in graph.edges and ("lif1_rec", "lif1") in graph.edges
    assert isinstance(graph.nodes["lif1_rec"], nir.Linear)
    np.testing.assert_array_equal(graph.nodes["lif1_rec"].weight, model.lif1.rec.weight.detach().float().numpy())
    assert FloatReference(graph).recurrent_edges == [("lif1_rec", "lif1")]


def test_affine_keeps_bias_and_flatten_ignores_batch():
    model = ConvNet()
    graph = export(model)
    assert isinstance(graph.nodes["fc2"], nir.Affine)
    np.testing.assert_array_equal(graph.nodes["fc2"].bias, model.fc2.bias.detach().numpy())
    flat = graph.nodes["flatten"]
    assert flat.start_dim == 0 and list(flat.input_type["input"]) == [8, 4, 4]
    assert list(flat.output_type["output"]) == [128]
    assert isinstance(export(MLP([4, 3], bias=False)).nodes["fc1"], nir.Linear)
    assert list(graph.nodes["input"].output_type["output"]) == [1, 8, 8]
    assert list(graph.nodes["output"].input_type["input"]) == [10]


class StandardizedLinear(L.Linear):
    """Weight standardization: trains ``weight`` but computes with its standardized version."""

    def export_weight(self):
        w = self.weight
        return (w - w.mean(dim=1, keepdim=True)) / (w.std(dim=1, keepdim=True) + 1e-5)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.export_weight(), self.bias)


def test_export_weight_hook_folds_training_transforms():
    model = SNN({"fc": StandardizedLinear(6, 4), "lif": N.LIF(4, v_threshold=0.3)}, input_shape=(6,))
    model = model.double().eval()
    graph = export(model)
    np.testing.assert_allclose(graph.nodes["fc"].weight, model.fc.export_weight().detach().numpy(), rtol=1e-6)
    assert not np.allclose(graph.nodes["fc"].weight, model.fc.weight.detach().numpy())
    _, out, trace, _, recording = round_trip(model, rate=0.5)
    assert_same(out, trace, recording)
    assert trace["lif.spikes"].sum() > 0


def test_every_layer_kind_round_trips():
    conv = Convention()
    model = SNN(
        {
            "conv": L.Conv1d(2, 3, 3, padding=1),
            "if1": N.IF((3, 6), convention=conv),
            "flatten": L.Flatten(),
            "scale": L.Scale(torch.linspace(0.5, 2.0, 18)),
            "delay": L.Delay(2),
            "fc": L.Linear(18, 5),
            "cuba": N.CubaLI(5, convention=conv),
        },
        input_shape=(2, 6),
    )
    model = lively(model, gain=3.0)
    x, out, trace, graph, recording = round_trip(model, rate=0.5)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "input": "Input",
        "conv": "Conv1d",
        "if1": "IF",
        "flatten": "Flatten",
        "scale": "Scale",
        "delay": "Delay",
        "fc": "Affine",
        "cuba": "CubaLI",
        "output": "Output",
    }
    np.testing.assert_allclose(graph.nodes["delay"].delay, 2 * conv.dt)
    assert_same(out, trace, recording)
    assert trace["if1.spikes"].sum() > 0


def test_pools_and_non_spiking_output_round_trip():
    model = SNN(
        {
            "conv": L.Conv2d(1, 2, 3, padding=1),
            "lif1": N.LIF((2, 6, 6)),
            "pool": L.AvgPool2d(2),
            "flatten": L.Flatten(),
            "fc": L.Linear(18, 4),
            "li": N.LI(4),
        },
        input_shape=(1, 6, 6),
    )
    x, out, trace, graph, recording = round_trip(lively(model, gain=4.0), rate=0.5)
    assert isinstance(graph.nodes["pool"], nir.AvgPool2d)
    assert_same(out, trace, recording)


def test_metadata_and_file_round_trip(tmp_path):
    conv = get_convention("sinabs")
    model = lively(MLP([64, 32, 10], neuron="IF", output_neuron="LIF", convention=conv))
    x, out, trace, graph, _ = round_trip(model, convention=conv)
    assert graph.metadata["dt"] == conv.dt and graph.metadata["convention"] == "sinabs"
    path = write_nir(graph, tmp_path / "model.nir")
    again = nir.read(path)
    assert set(again.nodes) == set(graph.nodes) and sorted(again.edges) == sorted(graph.edges)
    np.testing.assert_array_equal(again.nodes["fc1"].weight, graph.nodes["fc1"].weight)
    assert convention_from_metadata(again) == conv
    recording = FloatReference(again, convention_from_metadata(again), dtype=torch.float64).run(x.numpy(), record="all")
    assert_same(out, trace, recording)


def test_unmappable_module_is_a_one_line_error():
    model = SNN({"fc": L.Linear(3, 3), "act": torch.nn.ReLU()}, input_shape=(3,))
    with pytest.raises(NeurocompileError) as info:
        export(model)
    assert "\n" not in str(info.value)
    with pytest.raises(NeurocompileError, match="input_shape"):
        export(torch.nn.Sequential(L.Linear(3, 3)))


class SkipNet(torch.nn.Module):
    """A non-Sequential model: the output neuron sums a hidden path and a skip connection."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = L.Linear(6, 5), N.LIF(5, v_threshold=0.3)
        self.fc2, self.skip, self.lif2 = L.Linear(5, 3), L.Linear(6, 3, bias=False), N.LIF(3, v_threshold=0.3)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))) + self.skip(x))


def test_traced_module_with_a_skip_connection():
    torch.manual_seed(3)
    model = SkipNet().double().eval()
    graph = export(model, input_shape=(6,))
    assert sorted(a for a, b in graph.edges if b == "lif2") == ["fc2", "skip"]
    x = (torch.rand(2, 20, 6) < 0.5).double()
    with torch.no_grad():
        out = model(x)
    recording = FloatReference(graph, Convention(), dtype=torch.float64).run(x.numpy())
    assert np.array_equal(recording.output_spikes(), out.numpy())
    assert out.sum() > 0
