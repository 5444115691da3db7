"""Online Training Through Time (OTTT; Xiao et al., NeurIPS 2022; reference code pkuxmq/OTTT-SNN).

On the engine of :mod:`neurocompile.training.online`: per layer a presynaptic trace
``a_hat[t] = lambda * a_hat[t-1] + x[t]`` (``lambda`` the membrane decay), and the weight gradient of step ``t`` is
``delta[t] a_hat[t]^T`` with ``delta[t] = d loss_t / d I[t]`` of the same step. ``mode="A"`` sums a sample's steps,
``mode="O"`` updates after every step. When it equals BPTT: ``docs/training.md``.
"""

from __future__ import annotations

import torch

from neurocompile.errors import NeurocompileError
from neurocompile.training import OTTT_MODES
from neurocompile.training.online import OnlineRule

Tensor = torch.Tensor


class OTTT(OnlineRule):
    name = "ottt"

    def __init__(self, model, mode: str = "A", **kwargs):
        super().__init__(model, **kwargs)
        if mode not in OTTT_MODES:
            raise NeurocompileError(f"OTTT mode must be A or O, got '{mode}'")
        self.mode = mode

    def init_traces(self, l, x_aug, n_out):
        # lambda_l is the decay of the neurons that this input drives (per postsynaptic neuron in general)
        return {"a_hat": torch.zeros_like(x_aug), "lam": self.trace_decay(l, x_aug)}

    def update_pre(self, l, tr, x_aug):
        tr["a_hat"] = tr["lam"] * tr["a_hat"] + x_aug

    def weight_grad(self, l, tr, x_aug, signal, psi, gain):
        delta = (signal * psi if psi is not None else signal) * gain
        return delta.T @ tr["a_hat"]
