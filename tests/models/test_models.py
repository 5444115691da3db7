"""Neuron modules and layers against hand-computed steps (dt = 1e-4, tau = 5e-4: dt/tau = 0.2)."""

import pytest
import torch

from neurocompile.errors import NeurocompileError
from neurocompile.models import layers as L
from neurocompile.models import neurons as N
from neurocompile.models.architectures import MLP, ConvNet, RecurrentNet, build
from neurocompile.semantics.discretization import Convention, get_convention


def seq(values, n=1):
    """[batch=1, time, n] input with the same value for every neuron."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1).expand(1, len(values), n).clone()


def test_lif_hand_computed_reset_to_zero():
    lif = N.LIF(2)
    spikes, states, _ = lif.run(seq([3.0, 3.0, 0.0, 3.0], n=2))
    # v: 0.2*3 = 0.6; 0.6 + 0.2*(3-0.6) = 1.08 > 1 -> spike, v = 0; 0; 0.6
    assert spikes[0, :, 0].tolist() == [0, 1, 0, 0]
    assert states["v"][0, :, 1].tolist() == pytest.approx([0.6, 0.0, 0.0, 0.6], abs=1e-6)


def test_lif_hand_computed_reset_by_subtraction():
    lif = N.LIF(1, convention=get_convention("snntorch"))
    spikes, states, _ = lif.run(seq([3.0, 3.0, 0.0, 3.0]))
    # 1.08 -> 0.08 after the spike; 0.08*0.8 = 0.064; 0.064 + 0.2*(3 - 0.064) = 0.6512
    assert spikes.flatten().tolist() == [0, 1, 0, 0]
    assert states["v"].flatten().tolist() == pytest.approx([0.6, 0.08, 0.064, 0.6512], abs=1e-6)


def test_lif_per_neuron_parameters_and_threshold_rule():
    # dt = 0.25, tau = 0.5: v = 0.5 * x exactly in binary floating point.
    for inclusive, expected in ((True, [1, 0]), (False, [0, 0])):
        conv = Convention(dt=0.25, threshold_inclusive=inclusive)
        lif = N.LIF(2, tau=0.5, v_threshold=[0.5, 0.75], convention=conv)
        assert lif(seq([1.0], n=2)).flatten().tolist() == expected


def test_cuba_lif_hand_computed():
    neuron = N.CubaLIF(1, v_threshold=0.3)
    spikes, states, _ = neuron.run(seq([5.0, 0.0, 0.0]))
    # i: 1.0, 0.8, 0.64; v: 0.2, 0.2 + 0.2*(0.8-0.2) = 0.32 > 0.3 -> spike, 0; 0.2*0.64 = 0.128
    assert states["i"].flatten().tolist() == pytest.approx([1.0, 0.8, 0.64], abs=1e-6)
    assert states["v"].flatten().tolist() == pytest.approx([0.2, 0.0, 0.128], abs=1e-6)
    assert spikes.flatten().tolist() == [0, 1, 0]


def test_if_default_gain_is_one_per_step_under_both_conventions():
    for conv in (Convention(), get_convention("norse")):
        neuron = N.IF(1, convention=conv)
        spikes, states, _ = neuron.run(seq([0.5, 0.6, 0.2]))
        assert spikes.flatten().tolist() == [0, 1, 0]
        assert states["v"].flatten().tolist() == pytest.approx([0.5, 0.0, 0.2], abs=1e-6)


def test_non_spiking_neurons_output_voltage():
    li = N.LI(1)
    assert li(seq([1.0, 1.0])).flatten().tolist() == pytest.approx([0.2, 0.36], abs=1e-6)
    integ = N.I(1)
    assert integ(seq([1.0, 2.0])).flatten().tolist() == pytest.approx([1.0, 3.0], abs=1e-6)
    cuba = N.CubaLI(1)
    assert cuba(seq([5.0, 0.0])).flatten().tolist() == pytest.approx([0.2, 0.32], abs=1e-6)


def test_step_matches_sequence_and_state_carries_over():
    lif = N.LIF(3, tau=[2e-4, 5e-4, 1e-3])
    x = torch.rand(2, 6, 3) * 4
    full = lif(x)
    first = lif(x[:, :3])
    _, _, state = lif.run(x[:, :3])
    rest = lif(x[:, 3:], state)
    assert torch.equal(full, torch.cat([first, rest], dim=1))
    out, _ = lif.step(x[:, 0])
    assert torch.equal(out, full[:, 0])


def test_surrogate_gradient_reaches_weights():
    model = MLP([4, 6, 3])
    x = torch.ones(2, 5, 4)
    model(x).sum().backward()
    assert model.fc1.weight.grad is not None and model.fc1.weight.grad.abs().sum() > 0


def test_trainable_parameters_and_bad_arguments():
    lif = N.LIF(3, trainable=["tau", "v_threshold"])
    assert {name for name, _ in lif.named_parameters()} == {"tau", "v_threshold"}
    assert "r" in dict(lif.named_buffers())
    with pytest.raises(NeurocompileError, match="trainable"):
        N.LIF(3, trainable=["beta"])
    with pytest.raises(NeurocompileError, match="v_threshold"):
        N.LIF(3, v_threshold=[1.0, 2.0])
    with pytest.raises(NeurocompileError, match="expected input"):
        N.LIF(3)(torch.zeros(1, 2, 4))
    assert N.tau_for_decay(0.8) == pytest.approx(5e-4)


def test_layers_on_sequences():
    x = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 3, 1, 4, 4)
    summed = L.SumPool2d(2)(x)
    assert summed.shape == (2, 3, 1, 2, 2)
    assert summed[0, 0, 0, 0, 0].item() == 0 + 1 + 4 + 5
    assert L.AvgPool2d(2)(x)[0, 0, 0, 0, 0].item() == 2.5
    assert L.Flatten()(x).shape == (2, 3, 16)
    conv = L.Conv2d(1, 2, 3, padding=1)
    # float32 convolutions of different batch sizes may sum in a different order
    torch.testing.assert_close(
        conv(x)[1, 2], torch.nn.functional.conv2d(x[1, 2], conv.weight, conv.bias, padding=1), rtol=1e-5, atol=1e-4
    )
    assert L.Scale([1.0, 2.0])(torch.ones(1, 2, 2)).tolist() == [[[1.0, 2.0], [1.0, 2.0]]]
    delayed = L.Delay(2)(seq([1.0, 2.0, 3.0, 4.0]))
    assert delayed.flatten().tolist() == [0.0, 0.0, 1.0, 2.0]
    assert L.Delay(9)(seq([1.0, 2.0])).flatten().tolist() == [0.0, 0.0]
    with pytest.raises(NeurocompileError):
        L.Delay(1.5)


def test_recurrent_back_edge_delays_one_step():
    rec = L.Recurrent(N.IF(2, v_threshold=0.5))
    with torch.no_grad():
        rec.rec.weight.copy_(torch.tensor([[0.0, 0.0], [0.4, 0.0]]))  # neuron 0 drives neuron 1
    x = torch.zeros(1, 4, 2)
    x[0, 0, 0] = 1.0  # neuron 0 spikes at step 0
    x[0, :, 1] = 0.2  # neuron 1: 0.2 per step, plus 0.4 one step after neuron 0 spiked
    spikes, states, _ = rec.run(x)
    assert spikes[0, :, 0].tolist() == [1, 0, 0, 0]
    assert states["v"][0, :, 1].tolist() == pytest.approx([0.2, 0.0, 0.2, 0.4], abs=1e-6)  # 0.8 at step 1 -> spike
    assert spikes[0, :, 1].tolist() == [0, 1, 0, 0]


def test_reference_architectures_shapes_and_record():
    for model in (MLP(), ConvNet(), RecurrentNet(neuron="CubaLIF")):
        x = (torch.rand(2, 4, *model.input_shape) < 0.5).float()
        out, trace = model(x, record=True)
        assert out.shape == (2, 4, 10)
        assert torch.equal(out, model(x))
        last = list(dict(model.named_children()))[-1]
        assert torch.equal(trace[f"{last}.spikes"], out)
        assert all(value.shape[:2] == (2, 4) for value in trace.values())
    assert "cubalif1.i" in trace
    assert isinstance(build("MLP", MLP(sizes=[3, 2]).config), MLP)
    with pytest.raises(NeurocompileError, match="unknown architecture"):
        build("ResNet", {})
