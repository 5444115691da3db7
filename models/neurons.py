"""Neuron populations as thin ``nn.Module`` wrappers over the step functions of the contract.

Each class wraps exactly one pure step function of :mod:`neurocompile.semantics.discretization` (``LIF`` ->
``lif_step`` and so on) and holds that model's NIR parameters as per-neuron tensors (buffers, or parameters named
in ``trainable``); it loops over time on ``[batch, time, *shape]`` (``step``: one step). See ``docs/training.md``
("Models").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from neurocompile.errors import NeurocompileError
from neurocompile.semantics import primitives
from neurocompile.semantics.discretization import Convention

Tensor = torch.Tensor

DEFAULT_TAU = 5e-4  # with the default dt = 1e-4: dt/tau = 0.2 per step (decay 0.8)


def tau_for_decay(decay: float, dt: float = Convention().dt) -> float:
    """Time constant whose per-step decay ``1 - dt/tau`` equals ``decay`` (snnTorch's beta)."""
    if not 0.0 <= decay < 1.0:
        raise NeurocompileError(f"decay must be in [0, 1), got {decay}")
    return dt / (1.0 - decay)


class Neuron(nn.Module):
    """A population of one NIR neuron model; subclasses set ``model`` (the NIR class name)."""

    model: str = ""

    def __init__(
        self,
        shape: int | Iterable[int],
        convention: Convention = Convention(),
        trainable: Iterable[str] = (),
        detach_reset: bool = False,
        **params,
    ):
        super().__init__()
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
        self.convention = convention
        self.detach_reset = detach_reset
        self.contract = primitives.NEURONS[self.model]
        self.step_fn, self.params_cls, self.spiking = self.contract.step, self.contract.params, self.contract.spiking
        trainable = set(trainable)
        unknown = trainable - set(self.params_cls._fields)
        if unknown:
            raise NeurocompileError(f"{self.model}: unknown trainable parameter(s) {sorted(unknown)}")
        for name in self.params_cls._fields:
            value = torch.as_tensor(params[name], dtype=torch.float32)
            try:
                value = value.expand(self.shape).clone()
            except RuntimeError:
                raise NeurocompileError(
                    f"{self.model}: parameter '{name}' of shape {tuple(value.shape)} does not fit neuron shape {self.shape}"
                ) from None
            if name in trainable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    # --- contract glue ------------------------------------------------------------------

    def params(self) -> NamedTuple:
        """The parameter tuple that the step function takes."""
        return self.params_cls(*(getattr(self, name) for name in self.params_cls._fields))

    def init_state(self, batch: int, device=None, dtype=None) -> NamedTuple:
        ref = getattr(self, self.params_cls._fields[0])
        shape = (batch, *self.shape)
        return primitives.initial_state(self.contract, shape, dtype=dtype or ref.dtype, device=device or ref.device)

    def step(self, x: Tensor, state: NamedTuple | None = None) -> tuple[Tensor, NamedTuple]:
        """One time step on ``[batch, *shape]``: returns (spikes or v, new state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        if self.spiking:
            return self.step_fn(x, state, self.params(), self.convention, self.detach_reset)
        return self.step_fn(x, state, self.params(), self.convention)

    # --- sequences ----------------------------------------------------------------------

    def run(self, x: Tensor, state: NamedTuple | None = None):
        """Run a sequence ``[batch, time, *shape]``.

        Returns ``(outputs, states, final_state)`` where ``states`` maps each state variable
        (``v``, and ``i`` for the current-based models) to its value after every step.
        """
        self._check_input(x)
        outputs, trace = [], {name: [] for name in self.contract.state._fields}
        for t in range(x.shape[1]):
            out, state = self.step(x[:, t], state)
            outputs.append(out)
            for name in trace:
                trace[name].append(getattr(state, name))
        states = {name: torch.stack(values, dim=1) for name, values in trace.items()}
        return torch.stack(outputs, dim=1), states, state

    def forward(self, x: Tensor, state: NamedTuple | None = None) -> Tensor:
        return self.run(x, state)[0]

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 + len(self.shape) or tuple(x.shape[2:]) != self.shape:
            raise NeurocompileError(
                f"{self.model}: expected input [batch, time, {', '.join(map(str, self.shape))}], got {list(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"shape={self.shape}, convention={self.convention.name}"


class LIF(Neuron):
    """Leaky integrate-and-fire: ``v <- v + dt/tau (v_leak - v + r x)``, spike on ``v > v_threshold``."""

    model = "LIF"

    def __init__(self, shape, tau=DEFAULT_TAU, r=1.0, v_leak=0.0, v_threshold=1.0, v_reset=0.0, **kwargs):
        super().__init__(shape, tau=tau, r=r, v_leak=v_leak, v_threshold=v_threshold, v_reset=v_reset, **kwargs)


class CubaLIF(Neuron):
    """Current-based LIF: the input filters through a synaptic current ``i`` before reaching ``v``."""

    model = "CubaLIF"

    def __init__(
        self,
        shape,
        tau_syn=DEFAULT_TAU,
        tau_mem=DEFAULT_TAU,
        r=1.0,
        v_leak=0.0,
        v_threshold=1.0,
        v_reset=0.0,
        w_in=1.0,
        **kwargs,
    ):
        super().__init__(
            shape,
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=r,
            v_leak=v_leak,
            v_threshold=v_threshold,
            v_reset=v_reset,
            w_in=w_in,
            **kwargs,
        )


def _unit_gain(r, convention: Convention):
    """Default IF/I resistance: one unit of voltage per unit of input per step."""
    if r is not None:
        return r
    return 1.0 / convention.dt if convention.if_uses_dt else 1.0


class IF(Neuron):
    """Integrate-and-fire: ``v <- v + dt r x``. ``r=None`` picks ``1/dt`` (a gain of 1 per step)."""

    model = "IF"

    def __init__(self, shape, r=None, v_threshold=1.0, v_reset=0.0, convention: Convention = Convention(), **kwargs):
        r = _unit_gain(r, convention)
        super().__init__(shape, r=r, v_threshold=v_threshold, v_reset=v_reset, convention=convention, **kwargs)


class LI(Neuron):
    """Leaky integrator (no spikes); outputs its voltage."""

    model = "LI"

    def __init__(self, shape, tau=DEFAULT_TAU, r=1.0, v_leak=0.0, **kwargs):
        super().__init__(shape, tau=tau, r=r, v_leak=v_leak, **kwargs)


class CubaLI(Neuron):
    """Current-based leaky integrator (no spikes); outputs its voltage."""

    model = "CubaLI"

    def __init__(self, shape, tau_syn=DEFAULT_TAU, tau_mem=DEFAULT_TAU, r=1.0, v_leak=0.0, w_in=1.0, **kwargs):
        super().__init__(shape, tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, w_in=w_in, **kwargs)


class I(Neuron):  # noqa: E742 (the NIR name)
    """Integrator (no spikes): ``v <- v + dt r x``. ``r=None`` picks ``1/dt``."""

    model = "I"

    def __init__(self, shape, r=None, convention: Convention = Convention(), **kwargs):
        super().__init__(shape, r=_unit_gain(r, convention), convention=convention, **kwargs)


NEURONS: dict[str, type[Neuron]] = {cls.model: cls for cls in (LIF, CubaLIF, IF, LI, CubaLI, I)}


def make_neuron(model: str, shape, convention: Convention = Convention(), **params) -> Neuron:
    """Build a neuron population from its NIR class name (``"LIF"``, ``"CubaLIF"``, ...)."""
    if model not in NEURONS:
        raise NeurocompileError(f"unknown neuron model '{model}'; choose one of {', '.join(NEURONS)}")
    return NEURONS[model](shape, convention=convention, **params)
