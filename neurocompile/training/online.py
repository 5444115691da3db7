"""Shared engine of the online rules (OTTT, S-TLLR): one time step at a time, no graph over time.

At every step the layers run forward with the contract's step functions (states and the reset detached), and
that step's loss is propagated down through the layers within the same step (backprop, ``"bp"``, or direct
feedback alignment, ``"dfa"``); each rule turns the learning signal into weight gradients with its own traces
(:meth:`OnlineRule.weight_grad`). Memory does not grow with the number of steps. The equations:
``docs/training.md`` ("The online rules").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from neurocompile.errors import NeurocompileError
from neurocompile.semantics.discretization import SURROGATE_ALPHA, surrogate_slope
from neurocompile.training import FEEDBACKS
from neurocompile.training.common import (
    LayerView,
    layer_views,
    loss_window,
    silent_loss,
    step_loss,
)

Tensor = torch.Tensor


def weight_parameter(linear: nn.Linear) -> nn.Parameter:
    """The trained tensor behind ``linear.weight`` (the original under a parametrization)."""
    if parametrize.is_parametrized(linear, "weight"):
        return linear.parametrizations.weight.original
    return linear.weight


class OnlineRule:
    """Base class: forward and same-step error propagation; subclasses define the traces."""

    name = "online"

    def __init__(
        self,
        model: nn.Module,
        loss: str = "ce",
        loss_scale: float = 1.0,
        loss_steps: int | None = None,
        feedback: str = "bp",
        seed: int = 0,
        surrogate_alpha: float = SURROGATE_ALPHA,
    ):
        self.model = model
        self.layers: list[LayerView] = layer_views(model)
        self.loss, self.loss_scale, self.loss_steps = loss, float(loss_scale), loss_steps
        if feedback not in FEEDBACKS:
            raise NeurocompileError(f"feedback must be bp or dfa, got '{feedback}'")
        self.feedback = feedback
        self.surrogate_alpha = float(surrogate_alpha)
        self.feedback_matrices = None
        if feedback == "dfa":
            gen = torch.Generator().manual_seed(seed + 7919)
            n_out = self.layers[-1].linear.out_features
            ref = self.layers[-1].linear.weight
            self.feedback_matrices = [
                (torch.rand(n_out, lay.linear.out_features, generator=gen) * 2 - 1).to(ref) / n_out**0.5
                for lay in self.layers[:-1]
            ]

    # --- hooks for subclasses ----------------------------------------------------------------

    def init_traces(self, l: int, x_aug: Tensor, n_out: int) -> dict:
        raise NotImplementedError

    def update_pre(self, l: int, tr: dict, x_aug: Tensor) -> None:
        """Update presynaptic traces with this step's input (before the weight gradient)."""
        raise NotImplementedError

    def weight_grad(self, l: int, tr: dict, x_aug: Tensor, signal: Tensor, psi: Tensor, gain: Tensor) -> Tensor:
        """Gradient ``[out, in+1]`` of this step for layer ``l`` from learning signal ``signal``."""
        raise NotImplementedError

    def update_post(self, l: int, tr: dict, psi: Tensor) -> None:
        """Update postsynaptic traces at the end of the step."""

    def trace_decay(self, l: int, like: Tensor) -> Tensor:
        """The decay of layer ``l``'s input trace: its neurons' membrane decay, one value when they share it
        (else their mean, as the reference code keeps one per layer), on ``like``'s device and dtype."""
        decay = self.layers[l].decay().to(like).flatten()
        return decay[0] if bool((decay == decay[0]).all()) else decay.mean()

    # --- the step loop -----------------------------------------------------------------------

    def _effective(self):
        ws = [lay.linear.weight.detach() for lay in self.layers]
        bs = [lay.linear.bias.detach() if lay.linear.bias is not None else None for lay in self.layers]
        return ws, bs

    def _write_grads(self, grads: list[Tensor]) -> None:
        for lay, g in zip(self.layers, grads):
            w = weight_parameter(lay.linear)
            gw, gb = g[:, :-1], g[:, -1]
            w.grad = gw.clone() if w.grad is None else w.grad + gw
            if lay.linear.bias is not None:
                b = lay.linear.bias
                b.grad = gb.clone() if b.grad is None else b.grad + gb

    def _step_gradients(self, h, y, window: int, traces, saved, ws, gains):
        """This step's loss and per-layer weight gradients: the output error, sent back through
        the layers (``bp``) or by the fixed feedback matrices (``dfa``); ``y`` None: a silent target."""
        o = h.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = (
                step_loss(o, y, self.loss, self.loss_scale) if y is not None else silent_loss(o, self.loss)
            ) / window
            (err,) = torch.autograd.grad(loss, o)
        step_grads = [None] * len(self.layers)
        signal = err
        for l in reversed(range(len(self.layers))):
            x_aug, psi = saved[l]
            g_current = (signal * psi if psi is not None else signal) * gains[l]
            step_grads[l] = self.weight_grad(l, traces[l], x_aug, signal, psi, gains[l])
            if l > 0:
                signal = g_current @ ws[l] if self.feedback == "bp" else err @ self.feedback_matrices[l - 1]
        return float(loss.detach()), step_grads

    def run_batch(self, x: Tensor, y: Tensor, on_step=None, target_steps: int | None = None):
        """Forward a batch ``x`` ``[B, T, n_in]`` step by step and accumulate weight gradients.

        ``target_steps``: only the first that many steps have the label's target, the rest a silent one
        (a learning stream's silent steps, ``learning.onchip.StreamTiming``; the ``mse`` loss only).

        Without ``on_step`` the gradients of all steps are summed into ``.grad`` at the end
        (OTTT_A style). With ``on_step``, each step's gradient is written into ``.grad`` and
        ``on_step(t)`` is called at once (it may step an optimizer: OTTT_O style).
        Returns ``(loss value, outputs [B, T, n_out])``.
        """
        batch, steps = x.shape[0], x.shape[1]
        window = set(loss_window(steps, self.loss_steps))
        ws, bs = self._effective()
        ones = x.new_ones(batch, 1)
        vs = [lay.neuron.init_state(batch, x.device, x.dtype).v for lay in self.layers]
        traces: list[dict | None] = [None] * len(self.layers)
        grads = [
            torch.zeros(lay.linear.out_features, lay.linear.in_features + 1, dtype=x.dtype, device=x.device)
            for lay in self.layers
        ]
        gains = [lay.gain().to(x) for lay in self.layers]
        total, outputs = 0.0, []
        for t in range(steps):
            h = x[:, t]
            saved = []
            for l, lay in enumerate(self.layers):
                x_aug = torch.cat([h, ones], dim=1)
                current = h @ ws[l].T + (bs[l] if bs[l] is not None else 0.0)
                v_pre = lay.membrane(vs[l], current)
                if lay.spiking:
                    s, vs[l] = lay.fire(v_pre, detach_reset=True)
                    psi = surrogate_slope(v_pre - lay.params().v_threshold, self.surrogate_alpha)
                    out = s
                else:
                    vs[l], psi, out = v_pre, None, v_pre
                if traces[l] is None:
                    traces[l] = self.init_traces(l, x_aug, lay.linear.out_features)
                self.update_pre(l, traces[l], x_aug)
                saved.append((x_aug, psi))
                h = out
            outputs.append(h)
            if t in window:
                target = y if target_steps is None or t < target_steps else None
                loss, step_grads = self._step_gradients(h, target, len(window), traces, saved, ws, gains)
                total += loss
                if on_step is None:
                    for g, sg in zip(grads, step_grads):
                        g += sg
                else:
                    self._write_grads(step_grads)
                    on_step(t)
                    ws, bs = self._effective()
            for l in range(len(self.layers)):
                self.update_post(l, traces[l], saved[l][1])
        if on_step is None:
            self._write_grads(grads)
        return total, torch.stack(outputs, dim=1)
