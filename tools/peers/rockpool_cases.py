"""Rockpool 3.1.0 fixtures: networks built in Rockpool's torch backend, exported with
rockpool.nn.modules.to_nir, run natively (dt = 1e-3, Rockpool's default).

Usage (in a venv with rockpool, see tools/peer_fixtures.py): python tools/peers/rockpool_cases.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from fixture_io import run_cases, save_case, spike_input
from rockpool.nn.combinators import Sequential
from rockpool.nn.modules import LIFNeuronTorch, LIFTorch, LinearTorch, to_nir

STEPS = 40
DT = 1e-3


def run_native(net, x: np.ndarray, neurons: dict[str, str]) -> dict:
    """Spikes of the neuron submodules ``neurons`` ({submodule: NIR node}) and the output [batch, time, n]."""
    with torch.no_grad():
        out, _, record = net(torch.from_numpy(x), record=True)
    result = {node: record[name]["spikes"].numpy().copy() for name, node in neurons.items()}
    result["output"] = out.numpy().copy()
    return result


def export_and_run(out: Path, case: str, net, x: np.ndarray, neurons: dict, built: str, notes: str) -> None:
    graph = to_nir(net, torch.from_numpy(x[:1, :1]))
    net.reset_state()  # to_nir's trace ran one step: the native run starts from rest, as ours does
    spikes = run_native(net, x, neurons)
    save_case(out, case, "rockpool", graph, x, spikes, {"built": built, "dt": DT, "reset": "subtract", "notes": notes})


def mlp(neuron, scale: float, seed: int):
    torch.manual_seed(seed)
    net = Sequential(LinearTorch((16, 24)), neuron(24), LinearTorch((24, 5)), neuron(5))
    with torch.no_grad():
        for module in torch.nn.Module.modules(net):  # Rockpool's own modules() returns a dict
            if isinstance(module, LinearTorch):
                module.weight.mul_(scale)
    return net


def lif_mlp(out: Path, case: str) -> None:
    net = mlp(lambda n: LIFTorch(n, tau_mem=0.02, tau_syn=0.01, dt=DT), 0.15, 0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = (
        "Sequential(LinearTorch((16,24)), LIFTorch(24, tau_mem=0.02, tau_syn=0.01, dt=1e-3), LinearTorch((24,5)), "
        "LIFTorch(5, same)); threshold=1, max_spikes_per_dt=2**16 (defaults); weights x0.15"
    )
    notes = "LIFTorch: i += x; v *= exp(-dt/tau_mem); i *= exp(-dt/tau_syn); v += i; s = floor(v/th); v -= th*s"
    export_and_run(out, case, net, x, {"1_LIFTorch": "1_LIFTorch", "3_LIFTorch": "3_LIFTorch"}, built, notes)


def lif_neuron_mlp(out: Path, case: str) -> None:
    net = mlp(lambda n: LIFNeuronTorch(n, tau_mem=0.02, dt=DT), 1.0, 2)
    x = spike_input(3, STEPS, (16,), 0.3)
    built = (
        "Sequential(LinearTorch((16,24)), LIFNeuronTorch(24, tau_mem=0.02, dt=1e-3), LinearTorch((24,5)), "
        "LIFNeuronTorch(5, same)); threshold=1 (default)"
    )
    notes = "exported as LIF(tau=tau_mem, r=tau*exp(-dt/tau)/dt)"
    neurons = {"1_LIFNeuronTorch": "1_LIFNeuronTorch", "3_LIFNeuronTorch": "3_LIFNeuronTorch"}
    export_and_run(out, case, net, x, neurons, built, notes)


def recurrent_lif_mlp(out: Path, case: str) -> None:
    """LIFTorch(has_rec=True): Rockpool has no conv export, so its recurrent layer is the third kind."""
    torch.manual_seed(4)
    lif = LIFTorch(24, tau_mem=0.02, tau_syn=0.01, dt=DT, has_rec=True)
    net = Sequential(LinearTorch((16, 24)), lif, LinearTorch((24, 5)), LIFTorch(5, tau_mem=0.02, tau_syn=0.01, dt=DT))
    graph = to_nir(net, torch.zeros(1, 1, 16))
    if {src for src, dst in graph.edges if dst == "1_LIFTorch"} == {"0_LinearTorch"}:  # no recurrent edge
        raise ValueError(
            f"to_nir exports LIFTorch(has_rec=True) without its recurrent weights (w_rec of shape "
            f"{tuple(lif.w_rec.shape)} dropped; edges {sorted(graph.edges)}): the file is not the network"
        )
    x = spike_input(4, STEPS, (16,), 0.3)
    built = "Sequential(LinearTorch((16,24)), LIFTorch(24, has_rec=True, ...), LinearTorch((24,5)), LIFTorch(5))"
    export_and_run(out, case, net, x, {"1_LIFTorch": "1_LIFTorch", "3_LIFTorch": "3_LIFTorch"}, built, "")


CASES = {"lif_mlp": lif_mlp, "lif_neuron_mlp": lif_neuron_mlp, "recurrent_lif_mlp": recurrent_lif_mlp}

if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), "rockpool", CASES)
