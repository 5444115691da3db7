"""SpikingJelly 2.0.0 fixtures: networks built in SpikingJelly (single-step mode), exported with
spikingjelly.activation_based.nir_exchange.export_to_nir (dt=1e-4), run natively.

Usage (in a venv with spikingjelly, see tools/peer_fixtures.py): python tools/peers/spikingjelly_cases.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from fixture_io import record_per_step, run_cases, save_case, spike_input
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.nir_exchange import export_to_nir

STEPS = 40
DT = 1e-4


def run_native(net: torch.nn.Sequential, x: np.ndarray, neurons: list[str]) -> dict:
    """Spikes of the neuron modules ``neurons`` and the output, per step (state reset first)."""
    functional.reset_net(net)
    with torch.no_grad():
        return record_per_step(
            net, {name: name for name in neurons}, x.shape[1], lambda t: net(torch.from_numpy(x[:, t]))
        )


def fx_node_name(module: str, graph) -> str:
    """nirtorch's torch.fx export names Sequential child "1" as node "_1"."""
    if module == "output":
        return module
    name = "_" + module.replace(".", "_")
    if name not in graph.nodes:
        raise KeyError(f"neuron module {module} is no NIR node ({list(graph.nodes)})")
    return name


def export_and_run(out: Path, case: str, net, x: np.ndarray, neurons: list[str], built: str, notes: str) -> None:
    graph = export_to_nir(net, torch.from_numpy(x[:1, 0]), dt=DT)
    spikes = run_native(net, x, neurons)
    spikes = {fx_node_name(name, graph): value for name, value in spikes.items()}
    save_case(out, case, "spikingjelly", graph, x, spikes, {"built": built, "dt": DT, "reset": "zero", "notes": notes})


def mlp(cell, scale: float, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), cell(), torch.nn.Linear(24, 5), cell())
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    return net


def if_mlp(out: Path, case: str) -> None:
    net = mlp(neuron.IFNode, 1.5, 0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = "Sequential(Linear(16,24), IFNode(), Linear(24,5), IFNode()); v_threshold=1, v_reset=0; weights x1.5"
    export_and_run(out, case, net, x, ["1", "3"], built, "IFNode: v <- v + x; exported with r = 1/dt")


def lif_mlp(out: Path, case: str) -> None:
    net = mlp(lambda: neuron.LIFNode(tau=2.0), 5.0, 2)
    x = spike_input(3, STEPS, (16,), 0.3)
    built = "Sequential(Linear(16,24), LIFNode(tau=2.0), Linear(24,5), LIFNode(tau=2.0)); decay_input=True; weights x5"
    notes = "LIFNode: v <- v + (x - (v - v_reset))/tau; exported with tau*dt, r=1, v_leak=v_reset"
    export_and_run(out, case, net, x, ["1", "3"], built, notes)


def cuba_lif_mlp(out: Path, case: str) -> None:
    net = mlp(lambda: neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75, v_threshold=0.5), 1.0, 4)
    x = spike_input(5, STEPS, (16,), 0.3)
    built = "Sequential(Linear(16,24), CUBALIFNode(c_decay=0.5, v_decay=0.75, v_threshold=0.5), Linear(24,5), same)"
    notes = "exported as CubaLIF with tau = dt/(1-decay), r = tau_mem/dt, w_in = tau_syn/dt"
    export_and_run(out, case, net, x, ["1", "3"], built, notes)


def conv_net(out: Path, case: str) -> None:
    torch.manual_seed(6)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        neuron.LIFNode(tau=2.0),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        neuron.LIFNode(tau=2.0),
    )
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.mul_(6.0)
    x = spike_input(7, STEPS, (2, 8, 8), 0.2)
    built = (
        "Sequential(Conv2d(2,4,3,padding=1), LIFNode(tau=2), AvgPool2d(2), Flatten(), Linear(64,5), LIFNode(tau=2));"
        " input [2,8,8]; weights x6"
    )
    export_and_run(out, case, net, x, ["1", "5"], built, "")


CASES = {"if_mlp": if_mlp, "lif_mlp": lif_mlp, "cuba_lif_mlp": cuba_lif_mlp, "conv_net": conv_net}

if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), "spikingjelly", CASES)
