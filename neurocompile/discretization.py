"""The discretization contract: how every NIR neuron primitive advances by one time step.

This module is the single source of truth for float dynamics. The PyTorch modules in
``neurocompile.models``, the float reference backend, the trainers and the tests all call
these pure step functions ``step(x, state, params, convention) -> (output, new_state)``.

Default contract (``Convention()``), forward Euler with time step ``dt``:

* a spike counts as 1 per step (no division by dt);
* synaptic current first, then voltage from the *new* current, then a strict ``v > v_th``
  threshold, then reset in the same step;
* feed-forward edges have no delay; recurrent back-edges delay one step (graph level).

Equations per step, for input ``x[t]`` (NIR parameters broadcast over the neuron shape)::

    LIF      v <- v + dt/tau * (v_leak - v + r*x)
    CubaLIF  i <- i + dt/tau_syn * (-i + w_in*x);   v <- v + dt/tau_mem * (v_leak - v + r*i)
    IF       v <- v + dt*r*x                        (``if_uses_dt=False``: v <- v + r*x)
    LI       v <- v + dt/tau * (v_leak - v + r*x)   (no spike)
    CubaLI   i as CubaLIF; v as CubaLIF             (no spike)
    I        v <- v + dt*r*x                        (``if_uses_dt=False``: v <- v + r*x)

    spiking neurons:  s = (v > v_threshold)  [or >= with ``threshold_inclusive``]
                      reset="zero":     v <- v_reset where s
                      reset="subtract": v <- v - v_threshold * s
    Threshold         s = (x > threshold)           (no state; v is the input)

Presets describe how peer libraries read the same NIR graph (see ``PRESETS``). Which NIR primitive
uses which step function is recorded once, in :mod:`neurocompile.primitives`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Convention:
    """Named options that NIR graphs do not record but every simulator must choose.

    dt: forward-Euler time step in seconds (NIR paper convention: 1e-4).
    reset: "zero" sets v to v_reset after a spike; "subtract" removes v_threshold.
    threshold_inclusive: spike on ``v >= v_th`` instead of the strict ``v > v_th``.
    if_uses_dt: IF and I integrate ``dt*r*x`` (True) or ``r*x`` (Sinabs/Norse style).
    current_first: CubaLIF/CubaLI update the current before the voltage (True), or update the
        voltage from the previous current first (Norse style).
    cuba_input_scaled: the CubaLIF current integrates ``dt/tau_syn * w_in * x`` (True, NIR's
        ODE) or jumps by ``w_in * x`` (Norse style).
    """

    name: str = "neurocompile"
    dt: float = 1e-4
    reset: Literal["zero", "subtract"] = "zero"
    threshold_inclusive: bool = False
    if_uses_dt: bool = True
    current_first: bool = True
    cuba_input_scaled: bool = True

    def with_options(self, **changes) -> Convention:
        return replace(self, **changes)


PRESETS: dict[str, Convention] = {
    "neurocompile": Convention(),
    # Norse's native LIFCell: IF without dt, voltage integrates the previous current, input jumps
    # the current. (Norse's from_nir instead reads CubaLIF like our default, with dt=1e-3.)
    "norse": Convention(name="norse", if_uses_dt=False, current_first=False, cuba_input_scaled=False),
    # snnTorch: IF as v <- v + x; reset by subtraction is snnTorch's native default (NIR cannot
    # record it) and what the NIR paper's braille run used; its NIR importer resets to zero.
    "snntorch": Convention(name="snntorch", reset="subtract", if_uses_dt=False),
    # Sinabs: IAF integrates r*x with no dt, spikes at v >= threshold, resets by subtraction.
    "sinabs": Convention(name="sinabs", if_uses_dt=False, threshold_inclusive=True, reset="subtract"),
    # Rockpool: forward Euler, strict threshold, reset by subtraction.
    "rockpool": Convention(name="rockpool", reset="subtract"),
    # SpikingJelly: hard reset, spike at v >= threshold.
    "spikingjelly": Convention(name="spikingjelly", threshold_inclusive=True),
}


def get_convention(name: str, **overrides) -> Convention:
    from .errors import NeurocompileError

    if name not in PRESETS:
        raise NeurocompileError(f"unknown convention '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].with_options(**{k: v for k, v in overrides.items() if v is not None})


# --- spike function with a surrogate gradient ---------------------------------------------


class _SurrogateSpike(torch.autograd.Function):
    """Forward: Heaviside of ``x`` (x > 0). Backward: fast-sigmoid surrogate with slope ``alpha``."""

    @staticmethod
    def forward(ctx, x, alpha: float, inclusive: bool):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype) if inclusive else (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (ctx.alpha * x.abs() + 1.0) ** 2, None, None


SURROGATE_ALPHA = 10.0  # slope of the fast-sigmoid surrogate: psi = 1 / (alpha |x| + 1)**2


def spike(x: Tensor, inclusive: bool = False, alpha: float = SURROGATE_ALPHA) -> Tensor:
    """Heaviside spike of ``x`` = v - v_threshold, differentiable through a surrogate."""
    if not x.requires_grad:
        return (x >= 0).to(x.dtype) if inclusive else (x > 0).to(x.dtype)
    return _SurrogateSpike.apply(x, alpha, inclusive)


def fire_and_reset(v: Tensor, v_threshold, v_reset, conv: Convention, detach_reset: bool = False):
    """Threshold ``v`` and apply the convention's reset. Returns (spikes, v_after_reset)."""
    s = spike(v - v_threshold, conv.threshold_inclusive)
    gate = s.detach() if detach_reset else s
    if conv.reset == "subtract":
        v = v - gate * v_threshold
    else:
        v = v * (1.0 - gate) + gate * v_reset
    return s, v


# --- parameters and states (broadcastable tensors) ----------------------------------------


class LIFParams(NamedTuple):
    tau: Tensor
    r: Tensor
    v_leak: Tensor
    v_threshold: Tensor
    v_reset: Tensor


class CubaLIFParams(NamedTuple):
    tau_syn: Tensor
    tau_mem: Tensor
    r: Tensor
    v_leak: Tensor
    v_threshold: Tensor
    v_reset: Tensor
    w_in: Tensor


class IFParams(NamedTuple):
    r: Tensor
    v_threshold: Tensor
    v_reset: Tensor


class LIParams(NamedTuple):
    tau: Tensor
    r: Tensor
    v_leak: Tensor


class CubaLIParams(NamedTuple):
    tau_syn: Tensor
    tau_mem: Tensor
    r: Tensor
    v_leak: Tensor
    w_in: Tensor


class IParams(NamedTuple):
    r: Tensor


class VState(NamedTuple):
    v: Tensor


class CubaState(NamedTuple):
    i: Tensor
    v: Tensor


# --- step functions -----------------------------------------------------------------------


def leaky_update(v: Tensor, drive: Tensor, tau, v_leak, r, dt: float) -> Tensor:
    """Forward-Euler step of ``tau dv/dt = (v_leak - v) + r*drive``."""
    return v + (dt / tau) * (v_leak - v + r * drive)


def integrate_update(v: Tensor, x: Tensor, r, conv: Convention) -> Tensor:
    """Forward-Euler step of ``dv/dt = r*x`` (or ``v + r*x`` without dt)."""
    return v + (conv.dt * r if conv.if_uses_dt else r) * x


def cuba_current_update(i: Tensor, x: Tensor, tau_syn, w_in, conv: Convention) -> Tensor:
    if conv.cuba_input_scaled:
        return i + (conv.dt / tau_syn) * (w_in * x - i)
    return i - (conv.dt / tau_syn) * i + w_in * x


def lif_step(x: Tensor, state: VState, p: LIFParams, conv: Convention, detach_reset: bool = False):
    v = leaky_update(state.v, x, p.tau, p.v_leak, p.r, conv.dt)
    s, v = fire_and_reset(v, p.v_threshold, p.v_reset, conv, detach_reset)
    return s, VState(v)


def cuba_lif_step(x: Tensor, state: CubaState, p: CubaLIFParams, conv: Convention, detach_reset: bool = False):
    i_new = cuba_current_update(state.i, x, p.tau_syn, p.w_in, conv)
    drive = i_new if conv.current_first else state.i
    v = leaky_update(state.v, drive, p.tau_mem, p.v_leak, p.r, conv.dt)
    s, v = fire_and_reset(v, p.v_threshold, p.v_reset, conv, detach_reset)
    return s, CubaState(i_new, v)


def if_step(x: Tensor, state: VState, p: IFParams, conv: Convention, detach_reset: bool = False):
    v = integrate_update(state.v, x, p.r, conv)
    s, v = fire_and_reset(v, p.v_threshold, p.v_reset, conv, detach_reset)
    return s, VState(v)


def li_step(x: Tensor, state: VState, p: LIParams, conv: Convention):
    v = leaky_update(state.v, x, p.tau, p.v_leak, p.r, conv.dt)
    return v, VState(v)


def cuba_li_step(x: Tensor, state: CubaState, p: CubaLIParams, conv: Convention):
    i_new = cuba_current_update(state.i, x, p.tau_syn, p.w_in, conv)
    drive = i_new if conv.current_first else state.i
    v = leaky_update(state.v, drive, p.tau_mem, p.v_leak, p.r, conv.dt)
    return v, CubaState(i_new, v)


def i_step(x: Tensor, state: VState, p: IParams, conv: Convention):
    v = integrate_update(state.v, x, p.r, conv)
    return v, VState(v)


class ThresholdParams(NamedTuple):
    threshold: Tensor


def threshold_step(x: Tensor, state: VState, p: ThresholdParams, conv: Convention):
    """NIR ``Threshold``: ``s = (x > threshold)``, no memory (``v`` is this step's input)."""
    return spike(x - p.threshold, conv.threshold_inclusive), VState(x)
