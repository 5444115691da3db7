"""Backpropagation through time: the model's own forward over the whole sequence, one graph.

Memory grows linearly with the number of steps (autograd keeps every step's tensors); it is
the oracle the online rules are tested against. Works for any architecture of
:mod:`neurocompile.models`, including convolutional and recurrent ones.
"""

from __future__ import annotations

import torch
from torch import nn

from neurocompile.training.common import sequence_loss

Tensor = torch.Tensor


class BPTT:
    name = "bptt"

    def __init__(self, model: nn.Module, loss: str = "ce", loss_scale: float = 1.0, loss_steps: int | None = None, **_):
        self.model = model
        self.loss, self.loss_scale, self.loss_steps = loss, float(loss_scale), loss_steps

    def run_batch(self, x: Tensor, y: Tensor, on_step=None):
        """Forward ``x`` ``[B, T, ...]``, back-propagate the per-step loss into ``.grad``."""
        out = self.model(x)
        loss = sequence_loss(out, y, self.loss, self.loss_scale, self.loss_steps)
        loss.backward()
        return float(loss.detach()), out.detach()
