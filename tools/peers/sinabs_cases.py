"""Sinabs 3.1.3 fixtures: networks built in Sinabs (Squeeze layers, batch and time folded into one dim),
exported with sinabs.nir.to_nir, run natively. Sinabs has no dt: time constants count steps.

Usage (in a venv with sinabs, see tools/peer_fixtures.py): python tools/peers/sinabs_cases.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sinabs.layers as sl
import torch
from fixture_io import BATCH, run_cases, save_case, spike_input
from sinabs.activation import MultiSpike, SingleSpike
from sinabs.nir import to_nir

STEPS = 40


def run_native(net: torch.nn.Sequential, x: np.ndarray, neurons: list[str]) -> dict:
    """Spikes of the neuron layers ``neurons`` and the output [batch, time, ...]; input folded to [batch*time, ...]."""
    batch, steps = x.shape[:2]
    recorded = {}
    modules = dict(net.named_modules())
    hooks = [
        modules[name].register_forward_hook(
            lambda m, i, o, name=name: recorded.__setitem__(name, o.detach().numpy().copy())
        )
        for name in neurons
    ]
    for module in net.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()
    with torch.no_grad():
        out = net(torch.from_numpy(x.reshape(batch * steps, *x.shape[2:]))).numpy()
    for hook in hooks:
        hook.remove()
    result = {name: value.reshape(batch, steps, *value.shape[1:]) for name, value in recorded.items()}
    result["output"] = out.reshape(batch, steps, *out.shape[1:])
    return result


def export_and_run(out: Path, case: str, net, x: np.ndarray, neurons: list[str], built: str, notes: str) -> None:
    graph = to_nir(net, torch.from_numpy(x[:, 0]))  # [batch, ...]: one step per sample
    spikes = run_native(net, x, neurons)
    meta = {"built": built, "dt": None, "reset": "subtract", "notes": notes}
    save_case(out, case, "sinabs", graph, x, spikes, meta)


def iaf(spike_fn) -> sl.IAFSqueeze:
    return sl.IAFSqueeze(batch_size=BATCH, spike_threshold=torch.tensor(1.0), spike_fn=spike_fn)


def mlp(neuron, scale: float, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), neuron(), torch.nn.Linear(24, 5), neuron())
    _scale(net, scale)
    return net


def _scale(net: torch.nn.Module, factor: float) -> None:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.mul_(factor)


def iaf_mlp(out: Path, case: str) -> None:
    net = mlp(lambda: iaf(SingleSpike), 1.5, 0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = (
        "Sequential(Linear(16,24), IAFSqueeze(batch_size=4, spike_threshold=1, spike_fn=SingleSpike), "
        "Linear(24,5), IAFSqueeze(same)); weights x1.5"
    )
    notes = "IAF: v <- v + x; s = [v >= th]; v <- v - th*s (min_v_mem=None); exported as IF(r=1), no v_reset"
    export_and_run(out, case, net, x, ["1", "3"], built, notes)


def iaf_mlp_multispike(out: Path, case: str) -> None:
    net = mlp(lambda: iaf(MultiSpike), 1.5, 0)
    x = spike_input(1, STEPS, (16,), 0.3)
    built = "as iaf_mlp with Sinabs' default spike_fn=MultiSpike"
    notes = "MultiSpike: s = trunc(v/th) spikes per step (v > 0); v <- v - th*s; the spike counts are stored"
    export_and_run(out, case, net, x, ["1", "3"], built, notes)


def lif(n: int) -> sl.LIFSqueeze:
    return sl.LIFSqueeze(
        tau_mem=torch.full((n,), 5.0), spike_threshold=torch.ones(n), batch_size=BATCH, spike_fn=SingleSpike
    )


def lif_mlp(out: Path, case: str) -> None:
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), lif(24), torch.nn.Linear(24, 5), lif(5))
    _scale(net, 12.0)
    x = spike_input(3, STEPS, (16,), 0.3)
    built = (
        "Sequential(Linear(16,24), LIFSqueeze(tau_mem=5 and spike_threshold=1 per neuron, batch_size=4, spike_fn=SingleSpike), "
        "Linear(24,5), LIFSqueeze(same, 5 neurons)); norm_input=True; weights x12"
    )
    notes = "LIF: v <- a*v + (1-a)*x with a = exp(-1/tau_mem), tau_mem in steps; exported as LIF(tau=tau_mem, r=1)"
    export_and_run(out, case, net, x, ["1", "3"], built, notes)


def conv_net(out: Path, case: str) -> None:
    torch.manual_seed(6)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        iaf(SingleSpike),
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        iaf(SingleSpike),
    )
    _scale(net, 2.0)
    x = spike_input(7, STEPS, (2, 8, 8), 0.2)
    built = (
        "Sequential(Conv2d(2,4,3,padding=1), IAFSqueeze(SingleSpike), SumPool2d(2), Flatten(), Linear(64,5), "
        "IAFSqueeze(SingleSpike)); input [2,8,8]; weights x2"
    )
    export_and_run(out, case, net, x, ["1", "5"], built, "")


CASES = {"iaf_mlp": iaf_mlp, "iaf_mlp_multispike": iaf_mlp_multispike, "lif_mlp": lif_mlp, "conv_net": conv_net}

if __name__ == "__main__":
    run_cases(Path(sys.argv[1]), "sinabs", CASES)
