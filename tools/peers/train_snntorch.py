"""snnTorch 1.0.0 training-throughput peer: one BPTT epoch of a spiking MLP on rate-coded digits.

The network and loss follow neurocompile's own trainer (``neurocompile/training/bptt.py``): Linear layers with bias,
each followed by ``snntorch.Leaky`` (v <- beta v + I, spike if v > threshold, reset to zero in the same step,
fast-sigmoid surrogate of slope 10), cross-entropy of ``loss_scale * spikes`` averaged over the steps, one
backward and one Adam step per batch. Prints one JSON line (timing, loss, test accuracy, peak RSS up to the end of training).

Usage (in a venv with snntorch, see tools/peer_fixtures.py): python tools/peers/train_snntorch.py DATA.npz CONFIG.json
"""

from __future__ import annotations

import sys
import time

import snntorch as snn
import torch
import torch.nn.functional as F
import train_common  # the shared driver, beside this script
from snntorch import surrogate
from torch import nn

N_IN, N_OUT = 64, 10


def build(config: dict) -> nn.Sequential:
    """Linear -> Leaky for every layer, the output layer too; PyTorch's default Linear init."""
    sizes = [N_IN, *config["hidden"], N_OUT]
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out))
        layers.append(
            snn.Leaky(
                beta=config["decay"],
                threshold=config["threshold"],
                spike_grad=surrogate.fast_sigmoid(slope=10),
                reset_mechanism="zero",
                reset_delay=False,  # reset in the spiking step, not the next one
            )
        )
    return nn.Sequential(*layers)


def forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Output spikes ``[B, T, 10]`` of spike trains ``x`` ``[B, T, 64]``; membranes start at zero."""
    fcs, lifs = list(net[0::2]), list(net[1::2])
    mems = [lif.init_leaky() for lif in lifs]
    out = []
    for t in range(x.shape[1]):
        h = x[:, t]
        for i, (fc, lif) in enumerate(zip(fcs, lifs)):
            h, mems[i] = lif(fc(h), mems[i])
        out.append(h)
    return torch.stack(out, dim=1)


def train_epoch(net: nn.Sequential, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, config: dict):
    """One epoch in the given order: (seconds, sample-weighted mean loss)."""
    scale, batch = config["loss_scale"], config["batch"]
    net.train()
    total = 0.0
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        out = forward(net, xb)
        loss = sum(F.cross_entropy(scale * out[:, t], yb) for t in range(out.shape[1])) / out.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(yb)
    return time.perf_counter() - start, total / len(x)


@torch.no_grad()
def accuracy(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Class = argmax of the time-summed output spike counts."""
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        counts = forward(net, x[i : i + batch]).sum(1)
        correct += int((counts.argmax(-1) == y[i : i + batch]).sum())
    return correct / max(len(x), 1)


NOTES = "none: snn.Leaky(reset_mechanism='zero', reset_delay=False) is the spec's LIF (reset not detached)"

if __name__ == "__main__":
    train_common.run("snntorch", "bptt", build, train_epoch, accuracy, NOTES, sys.argv[1:])
