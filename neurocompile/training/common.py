"""What the three training rules share: layer views of a model, per-step losses, readout, and
the hardware-aware options.

Online rules work on a list of :class:`LayerView` taken from a feed-forward ``MLP`` (``nn.Linear`` -> neuron per
layer); BPTT runs the model's own ``forward``. All rules minimise the mean per-step loss over the last ``loss_steps`` steps
(``docs/training.md``, "The loss").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import DECAY_BITS
from neurocompile.models.neurons import NEURONS as MODEL_CLASSES
from neurocompile.semantics import discretization as D
from neurocompile.semantics import primitives
from neurocompile.semantics.discretization import Convention
from neurocompile.training import LOSSES

Tensor = torch.Tensor


def _voltage_only(model_name) -> bool:
    """Online rules trace one state per neuron: models whose only state is v (no synaptic current)."""
    contract = primitives.NEURONS.get(model_name)
    return contract is not None and contract.state._fields == ("v",)


@dataclass
class LayerView:
    """One feed-forward layer: synapse ``linear`` then neuron population ``neuron`` (a models.Neuron)."""

    name: str
    linear: nn.Linear
    neuron: nn.Module

    @property
    def model(self) -> str:
        return self.neuron.model

    @property
    def spiking(self) -> bool:
        return bool(self.neuron.spiking)

    @property
    def conv(self) -> Convention:
        return self.neuron.convention

    def params(self) -> NamedTuple:
        return self.neuron.params()

    def _form(self):
        return primitives.NEURONS[self.model].linear_form(self.params()._asdict(), 0.0, self.conv)

    def decay(self) -> Tensor:
        """``d v[t] / d v[t-1]`` without reset: ``1 - dt/tau`` (LIF, LI) or 1 (IF, I)."""
        return 1.0 - self._form().a_v

    def gain(self) -> Tensor:
        """``d v[t] / d I[t]`` for the synaptic input ``I = W x + b``: ``dt r / tau`` or ``dt r``."""
        return self._form().gain

    def membrane(self, v: Tensor, current: Tensor) -> Tensor:
        """Voltage update of the contract before thresholding (``leaky_update``/``integrate_update``)."""
        p = self.params()
        if hasattr(p, "tau"):
            return D.leaky_update(v, current, p.tau, p.v_leak, p.r, self.conv.dt)
        return D.integrate_update(v, current, p.r, self.conv)

    def fire(self, v_pre: Tensor, detach_reset: bool = True):
        """Threshold and reset (``fire_and_reset``) -> (spikes, v after reset)."""
        p = self.params()
        return D.fire_and_reset(v_pre, p.v_threshold, p.v_reset, self.conv, detach_reset)


def layer_views(model: nn.Module) -> list[LayerView]:
    """Split a feed-forward SNN (children ``Linear, neuron, Linear, neuron, ...``) into layers."""
    children = list(model.named_children())
    if not children or len(children) % 2:
        raise NeurocompileError("online rules: the model must alternate Linear and neuron layers (an MLP)")
    views = []
    for (lin_name, lin), (neu_name, neu) in zip(children[::2], children[1::2]):
        if not isinstance(lin, nn.Linear):
            raise NeurocompileError(
                f"online rules: layer '{lin_name}' is {type(lin).__name__}, expected Linear (use --rule bptt)"
            )
        model_name = getattr(neu, "model", None)
        if not _voltage_only(model_name):
            supported = ", ".join(name for name in MODEL_CLASSES if _voltage_only(name))
            raise NeurocompileError(
                f"online rules: layer '{neu_name}' is {model_name or type(neu).__name__}; supported: {supported}"
            )
        views.append(LayerView(neu_name, lin, neu))
    return views


# --- surrogate derivative, from the contract's own spike function --------------------------


# --- losses and readout --------------------------------------------------------------------


def step_loss(out: Tensor, y: Tensor, kind: str = "ce", scale: float = 1.0) -> Tensor:
    """Loss of one time step, mean over the batch.

    ``ce``: cross-entropy of ``scale * out``; ``mse``: squared error to the one-hot target
    (spiking outputs: the right class should fire at every step, the others never).
    """
    if kind == "ce":
        return F.cross_entropy(scale * out, y)
    if kind == "mse":
        target = F.one_hot(y, out.shape[-1]).to(out.dtype)
        return ((out - target) ** 2).sum(-1).mean()
    raise NeurocompileError(f"unknown loss '{kind}'; choose one of {', '.join(LOSSES)}")


def silent_loss(out: Tensor, kind: str = "mse") -> Tensor:
    """Loss of a step whose target is silence (no class): the squared output, mean over the batch."""
    if kind != "mse":
        raise NeurocompileError(f"a silent target needs the mse loss, got '{kind}'")
    return (out**2).sum(-1).mean()


def loss_window(steps: int, loss_steps: int | None) -> range:
    """Steps that carry a loss: the last ``loss_steps`` (all when None or 0)."""
    if loss_steps is not None and loss_steps < 0:
        raise NeurocompileError(f"loss_steps must be positive, got {loss_steps}")
    k = steps if not loss_steps else min(int(loss_steps), steps)
    return range(steps - k, steps)


def sequence_loss(out: Tensor, y: Tensor, kind: str, scale: float, loss_steps: int | None) -> Tensor:
    """Mean of :func:`step_loss` over the loss window of ``out`` ``[batch, time, classes]``."""
    window = loss_window(out.shape[1], loss_steps)
    return sum(step_loss(out[:, t], y, kind, scale) for t in window) / len(window)


def predict(out: Tensor) -> Tensor:
    """Class = argmax over time-summed output (spike count, or voltage for non-spiking outputs)."""
    return out.sum(1).argmax(-1)


@torch.no_grad()
def count_correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> int:
    """How many spike trains of ``x`` ``[N, T, ...]`` ``model`` classifies as ``y`` (time-summed readout)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size])
        correct += int((predict(out) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Accuracy of ``model`` on spike trains ``x`` ``[N, T, ...]`` with the time-summed readout."""
    return count_correct(model, x, y, batch_size) / max(len(x), 1)


# --- hardware-aware options ----------------------------------------------------------------


def quantized_tau(tau: float, dt: float, bits: int = DECAY_BITS) -> float:
    """Nearest ``tau`` whose per-step decay ``dt/tau`` is ``k / 2**bits`` with integer ``k >= 1``."""
    full = 2**bits
    k = min(max(round(full * dt / tau), 1), full)
    return dt * full / k


class FakeQuant(nn.Module):
    """Weight fake-quantization with a straight-through estimator.

    Per layer, ``scale = max|W| / (2**(bits-1) - 1)`` and ``W_q = round(W / scale) * scale``: the
    signed ``bits``-bit mantissa of a shared per-layer exponent/scale. The gradient passes
    through unchanged (STE). Used as a ``torch.nn.utils.parametrize`` parametrization on
    ``Linear.weight``; :func:`fold_fake_quant` replaces it by the plain quantized weight.
    """

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = int(bits)

    def forward(self, w: Tensor) -> Tensor:
        qmax = 2 ** (self.bits - 1) - 1
        scale = w.detach().abs().max().clamp_min(1e-12) / qmax
        w_q = torch.round(w.detach() / scale).clamp(-qmax - 1, qmax) * scale
        return w + (w_q - w).detach()


def add_fake_quant(model: nn.Module, bits: int = 8) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", FakeQuant(bits))


def fold_fake_quant(model: nn.Module) -> None:
    """Remove the training-only parametrization; ``Linear.weight`` keeps the quantized values."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def hardware_aware_neuron_params(decay: float, dt: float) -> dict:
    """LIF parameters whose decay ``dt/tau`` is a multiple of 1/4096, with unit input gain."""
    tau = quantized_tau(dt / (1.0 - decay), dt)
    return dict(tau=tau, r=tau / dt)
