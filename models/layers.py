"""Synapse and shape layers that act on whole sequences ``[batch, time, *shape]``.

Each layer maps to one NIR node in :mod:`neurocompile.frontend.torch_export` (``Recurrent`` to two: its
neuron and the recurrent weight, joined by a back edge). Convolutions and pools apply per time
step by folding time into the batch. A module whose trained weight differs from the weight it
computes with (weight standardization, a constant scale) defines ``export_weight()`` (and
optionally ``export_bias()``) returning the effective tensors; export folds those into NIR.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from neurocompile.errors import NeurocompileError
from neurocompile.models.neurons import Neuron
from neurocompile.semantics.primitives import pool2d

Tensor = torch.Tensor

# A fully connected synapse: y = W x (+ b), on the last dimension of [batch, time, features].
Linear = nn.Linear


def _per_step(fn, x: Tensor, per_sample_dims: int) -> Tensor:
    """Apply ``fn`` to ``[batch*time, ...]`` and restore ``[batch, time, ...]``."""
    if x.dim() != 2 + per_sample_dims:
        raise NeurocompileError(
            f"expected input [batch, time, ...] with {per_sample_dims} per-sample dims, got {list(x.shape)}"
        )
    b, t = x.shape[:2]
    y = fn(x.reshape(b * t, *x.shape[2:]))
    return y.reshape(b, t, *y.shape[1:])


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` applied at every time step of ``[batch, time, channels, length]``."""

    def forward(self, x: Tensor) -> Tensor:
        return _per_step(super().forward, x, 2)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` applied at every time step of ``[batch, time, channels, height, width]``."""

    def forward(self, x: Tensor) -> Tensor:
        return _per_step(super().forward, x, 3)


class SumPool2d(nn.Module):
    """Sum over ``kernel_size`` windows (zero padding), per time step."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = nn.modules.utils._pair(kernel_size)
        self.stride = nn.modules.utils._pair(stride if stride is not None else kernel_size)
        self.padding = nn.modules.utils._pair(padding)

    average = False

    def forward(self, x: Tensor) -> Tensor:
        return _per_step(lambda y: pool2d(y, self.kernel_size, self.stride, self.padding, self.average), x, 3)


class AvgPool2d(SumPool2d):
    """Mean over ``kernel_size`` windows; padded zeros count in the mean (``count_include_pad``)."""

    average = True


class Flatten(nn.Module):
    """Flatten all per-sample dimensions: ``[batch, time, *shape] -> [batch, time, prod(shape)]``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


class Scale(nn.Module):
    """Element-wise constant gain ``y = scale * x`` (a scalar or one value per element)."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Delay(nn.Module):
    """Delay by a whole number of time steps: ``y[t] = x[t - steps]`` (zeros before)."""

    def __init__(self, steps: int):
        super().__init__()
        if int(steps) != steps or steps < 0:
            raise NeurocompileError(f"Delay: steps must be a non-negative integer, got {steps}")
        self.steps = int(steps)

    def forward(self, x: Tensor) -> Tensor:
        if self.steps == 0:
            return x
        pad = torch.zeros_like(x[:, : self.steps])
        return torch.cat([pad, x], dim=1)[:, : x.shape[1]]

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class RecurrentState(NamedTuple):
    neuron: NamedTuple
    out: Tensor  # the population's output of the previous step


class Recurrent(nn.Module):
    """A neuron population with a recurrent linear synapse on its own output.

    The input of step t is ``x[t] + W_rec out[t-1] (+ b_rec)``, with ``out[-1] = 0``: at step 0 the
    back edge delivers ``b_rec`` (the contract: the state before step 0 is zero; snnTorch's RLeaky
    likewise). The feed-forward weight ``W_in`` is the layer before.
    """

    def __init__(self, neuron: Neuron, bias: bool = False):
        super().__init__()
        if len(neuron.shape) != 1:
            raise NeurocompileError(f"Recurrent: the neuron must be one-dimensional, got shape {neuron.shape}")
        self.neuron = neuron
        n = neuron.shape[0]
        self.rec = nn.Linear(n, n, bias=bias)

    @property
    def shape(self):
        return self.neuron.shape

    def step(self, x: Tensor, state: RecurrentState | None = None):
        previous, neuron_state = (torch.zeros_like(x), None) if state is None else (state.out, state.neuron)
        out, neuron_state = self.neuron.step(x + self.rec(previous), neuron_state)
        return out, RecurrentState(neuron_state, out)

    def run(self, x: Tensor, state: RecurrentState | None = None):
        """Same contract as :meth:`Neuron.run`: ``(outputs, states, final_state)``."""
        self.neuron._check_input(x)
        outputs, trace = [], {}
        for t in range(x.shape[1]):
            out, state = self.step(x[:, t], state)
            outputs.append(out)
            for name, value in state.neuron._asdict().items():
                trace.setdefault(name, []).append(value)
        states = {name: torch.stack(values, dim=1) for name, values in trace.items()}
        return torch.stack(outputs, dim=1), states, state

    def forward(self, x: Tensor, state: RecurrentState | None = None) -> Tensor:
        return self.run(x, state)[0]
