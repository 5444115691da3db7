"""SpikingJelly 2.0.0 training-throughput peer: one OTTT epoch of a spiking MLP on rate-coded digits.

OTTT (online training through time) with SpikingJelly's own machinery: ``layer.OTTTSequential`` of Linear layers
and ``neuron.OTTTLIFNode`` (membrane detached between steps, presynaptic traces kept by the neurons, the Linear
weight gradient taken on the trace through ``GradwithTrace``). Training follows
``learning.online_learning.ottt_online_training(online=False)``: per step a forward, the step's loss / T backward
and ``functional.detach_net``; the gradients add up over the steps, one Adam step per batch. The input spikes get
the same trace (``OTTTLIFNode.track_trace``) and enter as ``[spike, trace]``, as neurocompile's OTTT traces every
layer's input (``neurocompile/training/ottt.py``). Prints one JSON line (timing, loss, test accuracy, peak RSS up to the end of training).

Usage (in a venv with spikingjelly, see tools/peer_fixtures.py):
python tools/peers/train_spikingjelly.py DATA.npz CONFIG.json
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
import train_common  # the shared driver, beside this script
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

N_IN, N_OUT = 64, 10
NOTES = (
    "surrogate SoftSign(alpha=10): 5/(10|v-th|+1)**2, the fast sigmoid's shape times 5 (a constant per-layer "
    "gradient factor that Adam cancels up to eps); spike when v >= threshold (SpikingJelly's heaviside), not v > "
    "threshold; decay as tau = 1/(1-decay) with decay_input=False (v <- v - v/tau + I, equal up to float rounding); "
    "reset detached (as in neurocompile's OTTT, unlike its BPTT); bias gradient from the step's error alone "
    "(neurocompile's OTTT also traces the bias input)"
)


def build(config: dict) -> layer.OTTTSequential:
    """Linear -> OTTTLIFNode for every layer, the output layer too; PyTorch's default Linear init."""
    tau = 1.0 / (1.0 - config["decay"])  # v <- (1 - 1/tau) v + I with decay_input=False
    sizes = [N_IN, *config["hidden"], N_OUT]
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out))
        layers.append(
            neuron.OTTTLIFNode(
                tau=tau,
                decay_input=False,
                v_threshold=config["threshold"],
                v_reset=0.0,  # hard reset to zero
                surrogate_function=surrogate.SoftSign(alpha=10.0),  # no fast sigmoid in SpikingJelly
            )
        )
    return layer.OTTTSequential(*layers)


def train_batch(net: layer.OTTTSequential, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, config: dict):
    """OTTT on one batch ``x`` ``[B, T, 64]``: per-step backward, gradients summed over steps, one update."""
    tau, scale, steps = 1.0 / (1.0 - config["decay"]), config["loss_scale"], x.shape[1]
    functional.reset_net(net)
    opt.zero_grad()
    trace = torch.zeros_like(x[:, 0])
    total = torch.zeros(())
    for t in range(steps):
        trace = neuron.OTTTLIFNode.track_trace(x[:, t], trace, tau)
        out = net([x[:, t], trace])[0]  # training mode: the output node returns [spike, trace]
        loss = F.cross_entropy(scale * out, y) / steps
        loss.backward()
        functional.detach_net(net)
        total += loss.detach()
    opt.step()
    return float(total)


def train_epoch(net: layer.OTTTSequential, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, config: dict):
    """One epoch in the given order: (seconds, sample-weighted mean loss)."""
    batch = config["batch"]
    net.train()
    total = 0.0
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        total += train_batch(net, opt, x[i : i + batch], y[i : i + batch], config) * len(y[i : i + batch])
    return time.perf_counter() - start, total / len(x)


@torch.no_grad()
def accuracy(net: layer.OTTTSequential, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Class = argmax of the time-summed output spike counts (eval mode: plain spikes, no traces)."""
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        functional.reset_net(net)
        xb = x[i : i + batch]
        counts = sum(net(xb[:, t]) for t in range(xb.shape[1]))
        correct += int((counts.argmax(-1) == y[i : i + batch]).sum())
    return correct / max(len(x), 1)


if __name__ == "__main__":
    train_common.run("spikingjelly", "ottt", build, train_epoch, accuracy, NOTES, sys.argv[1:])
