"""The float backend's C neuron kernel (``kernels/float_neuron.c``): a neuron population over a whole run in one call.

The step functions' operations in the same order and rounding, bit-identical to them, for the forward-Euler,
same-step-reset, single-spike populations in float32 or float64 on the CPU; everything else steps through
:mod:`neurocompile.semantics.discretization` in torch (``docs/backends.md``).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurocompile.backends.native import build_library, run_sliced
from neurocompile.semantics import discretization as D

KERNEL_SOURCE = Path(__file__).parent / "kernels" / "float_neuron.c"
KERNEL_FLAGS = ("-ffp-contract=off",)  # every product and sum rounds on its own, as torch's elementwise ops
LEAKY, INTEGRATE, CUBA = 0, 1, 2  # the kernel's update kinds
SPIKING, SUBTRACT, INCLUSIVE, CURRENT_FIRST, INPUT_SCALED = 1, 2, 4, 8, 16  # its flags
KINDS = {  # step function -> (update kind, spiking)
    D.lif_step: (LEAKY, True),
    D.li_step: (LEAKY, False),
    D.if_step: (INTEGRATE, True),
    D.i_step: (INTEGRATE, False),
    D.cuba_lif_step: (CUBA, True),
    D.cuba_li_step: (CUBA, False),
}
COEFFICIENTS = ("k", "r", "v_leak", "k_syn", "w_in", "v_threshold", "v_reset")  # the kernel's order
_kernel = None  # None: not tried yet; False: unavailable; else {dtype: ctypes function}


def load_kernel() -> dict | None:
    """The kernel per dtype (compiled once, cached), or None if it cannot be built."""
    global _kernel
    if _kernel is None:
        dll = build_library(KERNEL_SOURCE, KERNEL_FLAGS)
        _kernel = False if dll is None else {torch.float32: dll.neuron_run_f32, torch.float64: dll.neuron_run_f64}
        for fn in (_kernel or {}).values():
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            fn.argtypes = [i64] * 5 + [ptr] * 8 + [ptr] * 5 + [i64, i64]
            fn.restype = None
    return _kernel or None


@dataclass
class KernelForm:
    """A population as the kernel runs it: its update kind, flags and per-neuron coefficients."""

    kind: int
    flags: int
    coefficients: dict[str, torch.Tensor]

    @property
    def spiking(self) -> bool:
        return bool(self.flags & SPIKING)


def kernel_form(step, params, conv: D.Convention) -> KernelForm | None:
    """How the kernel runs neurons of step function ``step`` with ``params`` under ``conv``, or None if
    it cannot (another model or convention option)."""
    if step not in KINDS or conv.native_options():
        return None
    kind, spiking = KINDS[step]
    p = params._asdict()
    if kind == INTEGRATE:
        coefficients = {"r": D.integrate_gain(p["r"], conv)}
    else:
        tau = p["tau_mem"] if kind == CUBA else p["tau"]
        coefficients = {"k": D.euler_rate(tau, conv.dt), "r": p["r"], "v_leak": p["v_leak"]}
    if kind == CUBA:
        coefficients.update(k_syn=D.euler_rate(p["tau_syn"], conv.dt), w_in=p["w_in"])
    if spiking:
        coefficients.update(v_threshold=p["v_threshold"], v_reset=p["v_reset"])
    flags = (
        SPIKING * spiking
        | SUBTRACT * (conv.reset == "subtract")
        | INCLUSIVE * conv.threshold_inclusive
        | CURRENT_FIRST * conv.current_first
        | INPUT_SCALED * conv.cuba_input_scaled
    )
    return KernelForm(kind, flags, coefficients)


def run_population(
    form: KernelForm, x: torch.Tensor, batch: int, steps: int, record_v: bool, record_i: bool
) -> dict[str, torch.Tensor]:
    """Run a population over ``x`` [batch*steps, *shape] (sample-major: its input for every step; float32
    or float64 on the CPU, the dtype of the coefficients) -> {"out": spikes or v, "v", "i" if recorded},
    each [batch*steps, *shape]."""
    kernel = load_kernel()[x.dtype]
    x = x.contiguous()
    shape = x.shape[1:]
    n = int(np.prod(shape))
    unused = torch.zeros((), dtype=x.dtype)
    values = {
        name: torch.broadcast_to(form.coefficients.get(name, unused), shape).contiguous() for name in COEFFICIENTS
    }
    results = {"out": torch.empty_like(x)}
    if record_v and form.spiking:  # a readout's v is its output
        results["v"] = torch.empty_like(x)
    if record_i and form.kind == CUBA:
        results["i"] = torch.empty_like(x)
    state = torch.empty((2, batch, *shape), dtype=x.dtype)
    pointers = [values[name].data_ptr() for name in COEFFICIENTS]
    recorded = [results[var].data_ptr() if var in results else None for var in ("out", "v", "i")]
    args = [steps, batch, n, form.kind, form.flags, x.data_ptr(), *pointers, *recorded]
    run_sliced(kernel, [*args, state[0].data_ptr(), state[1].data_ptr()], batch, steps * n)
    if not form.spiking and record_v:
        results["v"] = results["out"]
    return results
