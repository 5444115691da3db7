"""Norse 1.1.0 fixtures: networks built in Norse, exported with norse.torch.utils.export_nir.to_nir, run natively.

Usage (in a venv with norse, see tools/peer_fixtures.py): python tools/peers/norse_cases.py OUT_DIR
Native runs use Norse's default dt = 1e-3 (the cells' and to_nir's default).
"""

from __future__ import annotations

import sys
from pathlib import Path

import norse.torch as norse
import numpy as np
import torch
from fixture_io import record_per_step, run_cases, save_case, spike_input
from norse.torch.utils.export_nir import to_nir

STEPS = 40
DT = 1e-3


def full(value: float, n: int) -> torch.Tensor:
    """One value per neuron (Norse's exporter writes what it is given; scalars give shape ())."""
    return torch.full((n,), value)


def run_native(net: norse.SequentialState, x: np.ndarray, neurons: dict[str, str]) -> dict:
    """Spikes of the cells ``neurons`` ({module name: NIR node}) and the output, per step."""
    state = [None]  # the network's state, carried from step to step

    def step(t: int):
        out, state[0] = net(torch.from_numpy(x[:, t]), state[0])
        return out

    with torch.no_grad():
        return record_per_step(net, neurons, x.shape[1], step)


def export_and_run(out: Path, case: str, net, x: np.ndarray, neurons: dict, built: str, notes: str) -> None:
    graph = to_nir(net, torch.from_numpy(x[:1, 0]), dt=DT)
    spikes = run_native(net, x, neurons)
    save_case(out, case, "norse", graph, x, spikes, {"built": built, "dt": DT, "reset": "zero", "notes": notes})


def mlp(cell, hidden_params, out_params, scale: float, seed: int) -> norse.SequentialState:
    torch.manual_seed(seed)
    net = norse.SequentialState(torch.nn.Linear(16, 24), cell(hidden_params), torch.nn.Linear(24, 5), cell(out_params))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    return net


def lif_box_mlp(out: Path, case: str) -> None:
    def params(n):
        return norse.LIFBoxParameters(tau_mem_inv=full(100.0, n), v_leak=full(0.0, n), v_th=full(0.1, n))

    net = mlp(norse.LIFBoxCell, params(24), params(5), 1.0, 0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = (
        "SequentialState(Linear(16,24), LIFBoxCell(LIFBoxParameters(tau_mem_inv=100, v_leak=0, v_th=0.1, per "
        "neuron)), Linear(24,5), LIFBoxCell(same, 5 neurons)); dt=1e-3"
    )
    notes = "LIFBoxCell: v <- v + dt*tau_mem_inv*(v_leak - v + x); the exporter writes tau = dt/tau_mem_inv"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, notes)


def lif_mlp(out: Path, case: str) -> None:
    def params(n):
        return norse.LIFParameters(
            tau_syn_inv=full(200.0, n),
            tau_mem_inv=full(100.0, n),
            v_leak=full(0.0, n),
            v_th=full(0.3, n),
            v_reset=full(0.0, n),
        )

    net = mlp(norse.LIFCell, params(24), params(5), 1.0, 2)
    x = spike_input(3, STEPS, (16,), 0.3)
    built = (
        "SequentialState(Linear(16,24), LIFCell(LIFParameters(tau_syn_inv=200, tau_mem_inv=100, v_leak=0, "
        "v_th=0.3, v_reset=0, per neuron)), Linear(24,5), LIFCell(same, 5 neurons)); dt=1e-3"
    )
    notes = "LIFCell (current-based): exported as CubaLIF with tau = dt/tau_inv, r=1, no w_in, no v_reset"
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, notes)


def iaf_mlp(out: Path, case: str) -> None:
    def params(n):
        return norse.IAFParameters(v_th=full(1.0, n), v_reset=full(0.0, n))

    net = mlp(norse.IAFCell, params(24), params(5), 1.0, 4)
    x = spike_input(5, STEPS, (16,), 0.3)
    built = (
        "SequentialState(Linear(16,24), IAFCell(IAFParameters(v_th=1, v_reset=0, per neuron)), Linear(24,5), "
        "IAFCell(same, 5 neurons))"
    )
    export_and_run(out, case, net, x, {"1": "1", "3": "3"}, built, "IAFCell: v <- v + x (no dt)")


def conv_net(out: Path, case: str) -> None:
    torch.manual_seed(6)
    shape = (4, 8, 8)
    params = norse.LIFBoxParameters(
        tau_mem_inv=torch.full(shape, 100.0), v_leak=torch.zeros(shape), v_th=torch.full(shape, 0.1)
    )
    net = norse.SequentialState(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        norse.LIFBoxCell(params),
        torch.nn.Flatten(),
        torch.nn.Linear(256, 5),
        norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=full(100.0, 5), v_leak=full(0.0, 5), v_th=full(0.1, 5))),
    )
    x = spike_input(7, STEPS, (2, 8, 8), 0.2)
    built = "SequentialState(Conv2d(2,4,3,padding=1), LIFBoxCell, Flatten(), Linear(256,5), LIFBoxCell); dt=1e-3"
    export_and_run(out, case, net, x, {"1": "1", "4": "4"}, built, "")


CASES = {"lif_box_mlp": lif_box_mlp, "lif_mlp": lif_mlp, "iaf_mlp": iaf_mlp, "conv_net": conv_net}

if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), "norse", CASES)
