"""snnTorch 1.0.0 fixtures: networks built in snnTorch, exported with snntorch.export_nir, run natively.

Usage (in a venv with snntorch, see tools/peer_fixtures.py): python tools/peers/snntorch_cases.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from fixture_io import record_per_step, run_cases, save_case, spike_input
from snntorch.export_nir import export_to_nir
from snntorch.utils import reset

STEPS = 40
DT = 1e-4  # what snntorch's exporter assumes (tau = dt / (1 - beta))


def per_neuron(value: float, *shape: int) -> torch.Tensor:
    """One value per neuron: the exporter needs arrays, and Lava needs one decay per population."""
    return torch.full(shape, value)


def leaky(n: int, **options) -> snn.Leaky:
    options.setdefault("beta", per_neuron(0.9, n))
    options.setdefault("threshold", per_neuron(1.0, n))  # the exporter fails on a scalar threshold
    return snn.Leaky(init_hidden=True, **options)


def run_native(net: torch.nn.Sequential, x: np.ndarray, neurons: dict[str, str]) -> dict:
    """Spikes of the neuron modules ``neurons`` ({module name: NIR node}) and the output, per step."""
    reset(net)
    with torch.no_grad():
        return record_per_step(net, neurons, x.shape[1], lambda t: net(torch.from_numpy(x[:, t])))


def export_and_run(out: Path, case: str, net, x: np.ndarray, neurons: dict, built: str, notes: str) -> None:
    """Export (no batch dim in the Input type), run natively, save; ``reset`` is what the neurons used."""
    graph = export_to_nir(net, torch.from_numpy(x[:1, 0]), ignore_dims=[0])
    reset(net)
    spikes = run_native(net, x, neurons)
    resets = {m.reset_mechanism for m in net.modules() if isinstance(m, snn.SpikingNeuron)}
    meta = {"built": built, "dt": DT, "reset": resets.pop() if len(resets) == 1 else sorted(resets), "notes": notes}
    save_case(out, case, "snntorch", graph, x, spikes, meta)


def seeded(seed: int) -> None:
    torch.manual_seed(seed)


def leaky_mlp(out: Path, case: str) -> None:
    seeded(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 24),
        leaky(24, reset_mechanism="subtract", reset_delay=False),
        torch.nn.Linear(24, 5),
        leaky(5, reset_mechanism="subtract", reset_delay=False),
    )
    _scale(net, 1.5)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = (
        "Sequential(Linear(16,24), Leaky(beta=per-neuron 0.9, reset_mechanism='subtract', reset_delay=False, "
        "init_hidden=True), Linear(24,5), Leaky(same, 5 neurons)); weights x1.5"
    )
    notes = "snnTorch's default reset (subtract), resetting in the spiking step; the exporter records no reset"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, notes)


def leaky_mlp_zero(out: Path, case: str) -> None:
    seeded(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 24),
        leaky(24, reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(24, 5),
        leaky(5, reset_mechanism="zero", reset_delay=False),
    )
    _scale(net, 1.5)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = "as leaky_mlp with reset_mechanism='zero'"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, "reset to zero in the spiking step")


def leaky_mlp_defaults(out: Path, case: str) -> None:
    seeded(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), leaky(24), torch.nn.Linear(24, 5), leaky(5, reset_delay=True))
    _scale(net, 2.0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = "as leaky_mlp with snnTorch's defaults: reset_mechanism='subtract', reset_delay=True"
    notes = "reset_delay=True subtracts the threshold in the step after the spike, after the decay"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, notes)


def leaky_mlp_scalar_beta(out: Path, case: str) -> None:
    seeded(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 24),
        leaky(24, beta=0.9, threshold=1.0, reset_delay=False),
        torch.nn.Linear(24, 5),
        leaky(5, beta=0.9, threshold=1.0, reset_delay=False),
    )
    _scale(net, 2.0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = "as leaky_mlp with scalar beta=0.9 and threshold=1.0 (the exporter then writes parameters of shape ())"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, "scalar neuron parameters")


def synaptic_mlp(out: Path, case: str) -> None:
    seeded(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 24),
        snn.Synaptic(
            alpha=per_neuron(0.7, 24),
            beta=per_neuron(0.9, 24),
            threshold=per_neuron(1.0, 24),
            init_hidden=True,
            reset_delay=False,
        ),
        torch.nn.Linear(24, 5),
        snn.Synaptic(
            alpha=per_neuron(0.7, 5),
            beta=per_neuron(0.9, 5),
            threshold=per_neuron(1.0, 5),
            init_hidden=True,
            reset_delay=False,
        ),
    )
    _scale(net, 1.0)
    x = spike_input(3, STEPS, (16,), 0.3)
    built = (
        "Sequential(Linear(16,24), Synaptic(alpha=per-neuron 0.7, beta=per-neuron 0.9, "
        "reset_delay=False, init_hidden=True), Linear(24,5), Synaptic(same, 5 neurons))"
    )
    export_and_run(
        out, case, net, x, {"1": "1", "3": "3"}, built, "exported as CubaLIF with w_in=tau_syn/dt, r=tau_mem/dt"
    )


def rleaky_mlp(out: Path, case: str) -> None:
    seeded(4)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 20),
        snn.RLeaky(
            beta=per_neuron(0.9, 20),
            threshold=per_neuron(1.0, 20),
            linear_features=20,
            init_hidden=True,
            reset_delay=False,
        ),
        torch.nn.Linear(20, 5),
        leaky(5, reset_delay=False),
    )
    _scale(net, 2.0)
    x = spike_input(5, STEPS, (16,), 0.3)
    built = (
        "Sequential(Linear(16,20), RLeaky(beta=per-neuron 0.9, all_to_all=True, linear_features=20, "
        "reset_delay=False, init_hidden=True), Linear(20,5), Leaky(per-neuron beta, reset_delay=False))"
    )
    notes = "the recurrent Linear has a bias; snnTorch applies recurrent(spk=0) (= its bias) in step 0"
    export_and_run(out, case, net, x, {"1": "1.lif", "3": "3"}, built, notes)


def conv_net(out: Path, case: str) -> None:
    seeded(6)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        leaky(4 * 8 * 8, beta=per_neuron(0.9, 4, 8, 8), threshold=per_neuron(1.0, 4, 8, 8), reset_delay=False),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        leaky(5, reset_delay=False),
    )
    _scale(net, 2.0)
    x = spike_input(7, STEPS, (2, 8, 8), 0.2)
    built = (
        "Sequential(Conv2d(2,4,3,padding=1), Leaky(beta per neuron [4,8,8], reset_delay=False), AvgPool2d(2), "
        "Flatten(), Linear(64,5), Leaky(per-neuron beta, reset_delay=False)); input [2,8,8]"
    )
    export_and_run(out, case, net, x, {"1": "1", "5": "5"}, built, "")


def _scale(net: torch.nn.Module, factor: float) -> None:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.mul_(factor)


CASES = {
    "leaky_mlp": leaky_mlp,
    "leaky_mlp_zero": leaky_mlp_zero,
    "leaky_mlp_defaults": leaky_mlp_defaults,
    "leaky_mlp_scalar_beta": leaky_mlp_scalar_beta,
    "synaptic_mlp": synaptic_mlp,
    "rleaky_mlp": rleaky_mlp,
    "conv_net": conv_net,
}

if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), "snntorch", CASES)
