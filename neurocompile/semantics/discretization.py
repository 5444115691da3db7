"""The discretization contract: how every NIR neuron primitive advances by one time step.

Pure step functions ``step(x, state, params, convention) -> (output, new_state)``, the single source of truth
for float dynamics (models, float reference, trainers, tests). The default ``Convention()``, forward Euler::

    LIF      v <- v + dt/tau * (v_leak - v + r*x)
    CubaLIF  i <- i + dt/tau_syn * (w_in*x - i);  v <- v + dt/tau_mem * (v_leak - v + r*i)   (the new i)
    IF, I    v <- v + dt*r*x                      (LI, CubaLI: LIF, CubaLIF without spikes)
    spiking  s = v > v_threshold; same step: v <- v_reset where s (or v - v_threshold*s: reset="subtract")

The options (native peer dynamics), graph timing and presets (``PRESETS``): ``docs/conventions.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, get_args, get_origin, get_type_hints

import numpy as np
import torch

from neurocompile.errors import NeurocompileError

Tensor = torch.Tensor


RESET_TIMINGS = ("same-step", "snntorch-immediate", "snntorch-delayed")
DECAYS = ("euler", "exponential")
SPIKES_PER_STEP = ("single", "multi")


@dataclass(frozen=True)
class Convention:
    """Named options that NIR graphs do not record but every simulator must choose.

    dt: time step in seconds (NIR paper convention: 1e-4); in steps (``dt=1``) for Sinabs, whose
        time constants count steps.
    reset: "zero" sets v to v_reset after a spike; "subtract" removes v_threshold.
    threshold_inclusive: spike on ``v >= v_th`` instead of the strict ``v > v_th``.
    if_uses_dt: IF and I integrate ``dt*r*x`` (True) or ``r*x`` (Sinabs/Norse style).
    current_first: CubaLIF/CubaLI update the current before the voltage (True), or update the
        voltage from the previous current first.
    cuba_input_scaled: the CubaLIF current integrates ``dt/tau_syn * w_in * x`` (True, NIR's
        ODE) or jumps by ``w_in * x`` (Norse style).
    reset_timing: "same-step" (threshold, then reset in the same step), or snnTorch 1.0's
        "snntorch-immediate" (``reset_delay=False``) or "snntorch-delayed" (``reset_delay=True``);
        equations in ``docs/conventions.md``.
    decay: "euler" (``v += dt/tau*(v_leak - v + r*x)``) or "exponential" (``a = exp(-dt/tau)``,
        ``v = v_leak + a*(v - v_leak) + (1 - a)*r*x``; the current likewise).
    spikes_per_step: "single" (0 or 1 spike per step) or "multi" (``max(floor(v/th), 0)`` spikes,
        Sinabs' MultiSpike and Rockpool's StepPWL).

    The last three describe native peer dynamics; Lava's LIF runs none of them, so the
    fixed-point compiler refuses them unless they have an exact Euler same-step form
    (:func:`neurocompile.compiler.normalize.euler_form`: exponential decay always does).
    """

    name: str = "neurocompile"
    dt: float = 1e-4
    reset: Literal["zero", "subtract"] = "zero"
    threshold_inclusive: bool = False
    if_uses_dt: bool = True
    current_first: bool = True
    cuba_input_scaled: bool = True
    reset_timing: Literal["same-step", "snntorch-immediate", "snntorch-delayed"] = "same-step"
    decay: Literal["euler", "exponential"] = "euler"
    spikes_per_step: Literal["single", "multi"] = "single"

    def __post_init__(self):
        for option, choices in (
            ("reset_timing", RESET_TIMINGS),
            ("decay", DECAYS),
            ("spikes_per_step", SPIKES_PER_STEP),
        ):
            if getattr(self, option) not in choices:
                raise NeurocompileError(
                    f"convention option {option}={getattr(self, option)!r}; choose one of {', '.join(choices)}"
                )
        if self.reset_timing != "same-step" and self.spikes_per_step != "single":
            raise NeurocompileError(f"reset_timing={self.reset_timing!r} is single-spike (snnTorch)")
        if self.reset not in ("zero", "subtract"):
            raise NeurocompileError(f"convention option reset={self.reset!r}; choose zero or subtract")
        try:
            dt_ok = not isinstance(self.dt, bool) and math.isfinite(self.dt) and self.dt > 0
        except (TypeError, OverflowError):  # not a number, or an integer beyond float64
            dt_ok = False
        if not dt_ok:
            raise NeurocompileError(f"convention option dt={self.dt!r}; a positive number of seconds")
        for option in ("threshold_inclusive", "if_uses_dt", "current_first", "cuba_input_scaled"):
            if not isinstance(getattr(self, option), (bool, np.bool_)):
                raise NeurocompileError(f"convention option {option}={getattr(self, option)!r}; true or false")

    def with_options(self, **changes) -> Convention:
        return replace(self, **changes)

    def spec(self) -> str:
        """This convention as ``--convention`` takes it: its preset's name and the options that differ from
        that preset (``"sinabs-3.1,spikes_per_step=single"``; :func:`get_convention` reads it back)."""
        base = PRESETS.get(self.name, Convention())
        changed = [(k, v) for k, v in vars(self).items() if k != "name" and getattr(base, k) != v]
        return ",".join([self.name, *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in changed)])

    def native_options(self) -> dict:
        """The options of this convention that differ from forward Euler, same-step reset, single spikes."""
        return {
            option: getattr(self, option)
            for option, default in (("reset_timing", "same-step"), ("decay", "euler"), ("spikes_per_step", "single"))
            if getattr(self, option) != default
        }


_NORSE_1_1 = Convention(name="norse-1.1", if_uses_dt=False, current_first=True, cuba_input_scaled=False)

PRESETS: dict[str, Convention] = {
    "neurocompile": Convention(),
    # Norse 1.1's native LIFCell: i1 = i + x; v += dt/tau_mem*(v_leak - v + i1); i = (1 - dt/tau_syn)*i1:
    # the input jumps the current and v integrates the jumped current (current first, input not
    # scaled; the stored current is i1 after its decay, ours before it: the same spikes). IAFCell:
    # v += x. (Norse's from_nir instead reads CubaLIF like our default, with dt=1e-3.)
    "norse-1.1": _NORSE_1_1,
    "norse": replace(_NORSE_1_1, name="norse"),  # alias of norse-1.1
    # snnTorch 1.0's native Leaky/Synaptic defaults: reset by subtraction with reset_delay=True.
    "snntorch-1.0": Convention(
        name="snntorch-1.0", reset="subtract", if_uses_dt=False, reset_timing="snntorch-delayed"
    ),
    # snnTorch as NIR graphs are compiled: IF as v <- v + x; reset by subtraction (snnTorch's native
    # default; the NIR paper's braille run), in the same step (Lava can run it). Its NIR importer
    # resets to zero; snntorch-1.0 has the native reset timing.
    "snntorch": Convention(name="snntorch", reset="subtract", if_uses_dt=False),
    # Sinabs 3.1 native: tau in steps (dt=1), LIF v = a*v + (1-a)*x (norm_input=False, v = a*v + x: r
    # repaired by --from sinabs==3.1), IAF v += x, MultiSpike (its default spike_fn), spike at v >= th,
    # reset by subtraction.
    "sinabs-3.1": Convention(
        name="sinabs-3.1",
        dt=1.0,
        if_uses_dt=False,
        threshold_inclusive=True,
        reset="subtract",
        decay="exponential",
        spikes_per_step="multi",
    ),
    # Sinabs as NIR graphs are compiled: IAF integrates r*x with no dt, spikes at v >= threshold
    # (SingleSpike), resets by subtraction.
    "sinabs": Convention(name="sinabs", if_uses_dt=False, threshold_inclusive=True, reset="subtract"),
    # Rockpool 3.1 native (LIFTorch, LIFNeuronTorch): dt=1e-3, exponential decays, StepPWL multi-spikes
    # (v >= th), reset by subtraction. Its exported r and (missing) w_in are repaired by --from rockpool==3.1.
    "rockpool-3.1": Convention(
        name="rockpool-3.1",
        dt=1e-3,
        threshold_inclusive=True,
        reset="subtract",
        decay="exponential",
        spikes_per_step="multi",
    ),
    # Rockpool as NIR graphs are compiled: forward Euler, strict threshold, reset by subtraction.
    "rockpool": Convention(name="rockpool", reset="subtract"),
    # SpikingJelly: hard reset, spike at v >= threshold.
    "spikingjelly": Convention(name="spikingjelly", threshold_inclusive=True),
}


def get_convention(name: str, **overrides) -> Convention:
    """A preset by name, optionally followed by options (``"sinabs-3.1,spikes_per_step=single"``, as
    ``--convention`` takes it), then ``overrides`` (None: not given)."""
    name, *options = str(name).split(",")
    if name not in PRESETS:
        raise NeurocompileError(f"unknown convention '{name}'; choose one of {', '.join(PRESETS)}")
    named = dict(_option(text) for text in options)
    return PRESETS[name].with_options(**named, **{k: v for k, v in overrides.items() if v is not None})


def _option(text: str) -> tuple[str, object]:
    """``"OPTION=VALUE"`` as a Convention field and its value: true/false, a positive number (dt) or a choice."""
    key, _, value = (part.strip() for part in text.partition("="))
    kinds = {k: v for k, v in get_type_hints(Convention).items() if k != "name"}
    if key not in kinds or not value:
        raise NeurocompileError(
            f"convention option '{text}': expected OPTION=VALUE with OPTION one of {', '.join(kinds)}"
        )
    if kinds[key] is bool and value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    if kinds[key] is float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if number > 0 and math.isfinite(number):
            return key, number
    if get_origin(kinds[key]) is Literal and value in get_args(kinds[key]):
        return key, value
    expected = {bool: "true or false", float: "a positive number"}.get(kinds[key]) or ", ".join(get_args(kinds[key]))
    raise NeurocompileError(f"convention option {key}: expected {expected}, got '{value}'")


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
        return grad / _surrogate_denominator(x, ctx.alpha), None, None


def _surrogate_denominator(x: Tensor, alpha: float) -> Tensor:
    return (alpha * x.abs() + 1.0) ** 2


def surrogate_slope(x: Tensor, alpha: float) -> Tensor:
    """The surrogate derivative of :func:`spike` at ``x`` = v - v_threshold (the fast sigmoid's
    ``1 / (alpha |x| + 1)**2``), without autograd: what its backward multiplies the incoming gradient by."""
    return 1.0 / _surrogate_denominator(x, alpha)


SURROGATE_ALPHA = 10.0  # slope of the fast-sigmoid surrogate: psi = 1 / (alpha |x| + 1)**2


def spike(x: Tensor, inclusive: bool = False, alpha: float = SURROGATE_ALPHA) -> Tensor:
    """Heaviside spike of ``x`` = v - v_threshold, differentiable through a surrogate."""
    if not x.requires_grad:
        return (x >= 0).to(x.dtype) if inclusive else (x > 0).to(x.dtype)
    return _SurrogateSpike.apply(x, alpha, inclusive)


def spike_count(v: Tensor, v_threshold, conv: Convention) -> Tensor:
    """Spikes this step: ``spike(v - v_threshold)`` (single), or ``max(floor(v/v_threshold), 0)`` (multi).

    The multi-spike count has no gradient of its own; with autograd it passes the single spike's
    surrogate gradient (forward: the count, backward: ``d spike(v - v_th)``), as Sinabs does."""
    if conv.spikes_per_step == "single":
        return spike(v - v_threshold, conv.threshold_inclusive)
    count = torch.relu(torch.floor(v / v_threshold))
    if getattr(v, "requires_grad", False) or getattr(v_threshold, "requires_grad", False):
        surrogate = spike(v - v_threshold, True)
        return count.detach() + (surrogate - surrogate.detach())
    return count


def _apply_reset(v: Tensor, s: Tensor, v_threshold, v_reset, conv: Convention, detach_reset: bool) -> Tensor:
    gate = s.detach() if detach_reset else s
    if conv.reset == "subtract":
        return v - gate * v_threshold
    if conv.spikes_per_step == "multi":  # reset to v_reset where s > 0 (the indicator keeps a gradient)
        gate = spike(v - v_threshold, True)
        gate = gate.detach() if detach_reset else gate
    return v * (1.0 - gate) + gate * v_reset


def fire_and_reset(v: Tensor, v_threshold, v_reset, conv: Convention, detach_reset: bool = False):
    """Threshold ``v`` (already updated by forward Euler: ``leaky_update``/``integrate_update``) and
    apply the convention's reset in the same step. Returns (spikes, v_after_reset).

    This is the split of a step that the online training rules use; conventions whose step it
    cannot express (``reset_timing`` needs the previous membrane, ``decay="exponential"`` another
    update than the caller's) raise a NeurocompileError: use the step functions."""
    if conv.reset_timing != "same-step" or conv.decay != "euler":
        option = "reset_timing" if conv.reset_timing != "same-step" else "decay"
        raise NeurocompileError(
            f"convention option {option}={getattr(conv, option)!r} needs the whole neuron step "
            "(discretization.lif_step and co.), not fire_and_reset after an Euler update"
        )
    s = spike_count(v, v_threshold, conv)
    return s, _apply_reset(v, s, v_threshold, v_reset, conv, detach_reset)


def _detached(x):
    return x.detach() if getattr(x, "requires_grad", False) else x


def _fire(v_prev: Tensor, update, v_threshold, v_reset, conv: Convention, detach_reset: bool, synaptic: bool = False):
    """Update, threshold and reset a spiking membrane under the convention's reset timing.

    ``update(v)`` is the membrane update before thresholding; ``v_prev`` the stored membrane.
    ``synaptic``: snnTorch's Synaptic zeroes the updated membrane (``u(m)*(1-r)``), Leaky the
    previous one (``u(m*(1-r))``). Returns (spikes, stored membrane)."""
    if conv.reset_timing == "same-step":
        v = update(v_prev)
        s = spike_count(v, v_threshold, conv)
        return s, _apply_reset(v, s, v_threshold, v_reset, conv, detach_reset)
    r = _detached(spike(v_prev - v_threshold, conv.threshold_inclusive))  # snnTorch's mem_reset: no gradient
    if conv.reset == "subtract":
        u = update(v_prev) - v_threshold * r
    elif synaptic:
        u = update(v_prev) * (1.0 - r) + r * v_reset
    else:
        u = update(v_prev * (1.0 - r) + r * v_reset)
    s = spike(u - v_threshold, conv.threshold_inclusive)
    if conv.reset_timing == "snntorch-delayed":
        return s, u
    gate = s.detach() if detach_reset else s
    if conv.reset == "subtract":
        return s, u - v_threshold * (gate - r)
    return s, u - (gate - r) * (u - v_reset)


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


def euler_rate(tau, dt: float):
    """``dt/tau``: the fraction of its distance to equilibrium that a forward-Euler step covers."""
    return dt / tau


def leaky_update(v: Tensor, drive: Tensor, tau, v_leak, r, dt: float) -> Tensor:
    """Forward-Euler step of ``tau dv/dt = (v_leak - v) + r*drive``."""
    return v + euler_rate(tau, dt) * (v_leak - v + r * drive)


def decay_factor(tau, dt: float) -> Tensor:
    """``exp(-dt/tau)``: the exact decay of one step (``decay="exponential"``)."""
    return torch.exp(-dt / torch.as_tensor(tau))


def membrane_update(v: Tensor, drive: Tensor, tau, v_leak, r, conv: Convention) -> Tensor:
    """One step of ``tau dv/dt = (v_leak - v) + r*drive`` under ``conv.decay``: forward Euler
    (``leaky_update``) or ``v_leak + a*(v - v_leak) + (1 - a)*r*drive`` with ``a = exp(-dt/tau)``."""
    if conv.decay == "exponential":
        a = decay_factor(tau, conv.dt)
        return v_leak + a * (v - v_leak) + (1.0 - a) * r * drive
    return leaky_update(v, drive, tau, v_leak, r, conv.dt)


def integrate_gain(r, conv: Convention):
    """What one unit of input adds to an integrator's ``v``: ``dt*r``, or ``r`` without dt."""
    return conv.dt * r if conv.if_uses_dt else r


def integrate_update(v: Tensor, x: Tensor, r, conv: Convention) -> Tensor:
    """Forward-Euler step of ``dv/dt = r*x`` (or ``v + r*x`` without dt)."""
    return v + integrate_gain(r, conv) * x


def cuba_current_update(i: Tensor, x: Tensor, tau_syn, w_in, conv: Convention) -> Tensor:
    if conv.decay == "exponential":
        a = decay_factor(tau_syn, conv.dt)
        return a * i + ((1.0 - a) * (w_in * x) if conv.cuba_input_scaled else w_in * x)
    if conv.cuba_input_scaled:
        return i + euler_rate(tau_syn, conv.dt) * (w_in * x - i)
    return i - euler_rate(tau_syn, conv.dt) * i + w_in * x


def lif_step(x: Tensor, state: VState, p: LIFParams, conv: Convention, detach_reset: bool = False):
    def update(v):
        return membrane_update(v, x, p.tau, p.v_leak, p.r, conv)

    s, v = _fire(state.v, update, p.v_threshold, p.v_reset, conv, detach_reset)
    return s, VState(v)


def cuba_lif_step(x: Tensor, state: CubaState, p: CubaLIFParams, conv: Convention, detach_reset: bool = False):
    i_new = cuba_current_update(state.i, x, p.tau_syn, p.w_in, conv)
    drive = i_new if conv.current_first else state.i

    def update(v):
        return membrane_update(v, drive, p.tau_mem, p.v_leak, p.r, conv)

    s, v = _fire(state.v, update, p.v_threshold, p.v_reset, conv, detach_reset, synaptic=True)
    return s, CubaState(i_new, v)


def if_step(x: Tensor, state: VState, p: IFParams, conv: Convention, detach_reset: bool = False):
    def update(v):
        return integrate_update(v, x, p.r, conv)

    s, v = _fire(state.v, update, p.v_threshold, p.v_reset, conv, detach_reset)
    return s, VState(v)


def li_step(x: Tensor, state: VState, p: LIParams, conv: Convention):
    v = membrane_update(state.v, x, p.tau, p.v_leak, p.r, conv)
    return v, VState(v)


def cuba_li_step(x: Tensor, state: CubaState, p: CubaLIParams, conv: Convention):
    i_new = cuba_current_update(state.i, x, p.tau_syn, p.w_in, conv)
    drive = i_new if conv.current_first else state.i
    v = membrane_update(state.v, drive, p.tau_mem, p.v_leak, p.r, conv)
    return v, CubaState(i_new, v)


def i_step(x: Tensor, state: VState, p: IParams, conv: Convention):
    v = integrate_update(state.v, x, p.r, conv)
    return v, VState(v)


class ThresholdParams(NamedTuple):
    threshold: Tensor


def threshold_step(x: Tensor, state: VState, p: ThresholdParams, conv: Convention):
    """NIR ``Threshold``: ``s = (x > threshold)``, no memory (``v`` is this step's input)."""
    return spike(x - p.threshold, conv.threshold_inclusive), VState(x)
