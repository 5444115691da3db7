"""CPU (or CUDA) simulator of a program, vectorized over the batch.

A fixed-point program runs bit-accurately with :mod:`neurocompile.semantics.fixedpoint` (every spike, ``u`` and
``v`` equal to Lava ``fixed_pt``'s), a float program in float64 as Lava's ``floating_pt``. Feed-forward programs
run layerwise, recurrent ones stepwise; synaptic sums use an exact kernel chosen per synapse (``gather``,
``int8-gemm``, float GEMM or conv), neurons the C kernel ``kernels/lif.c``; plastic programs run in
:mod:`.cpu_learning`. Schedules, kernels and metadata: ``docs/backends.md``; timings: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import ctypes
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from neurocompile.backends.base import check_inputs
from neurocompile.backends.cpu_learning import PlasticRunner
from neurocompile.backends.learners import learner_programs
from neurocompile.backends.native import CHUNK_BYTES, build_library, data_address, run_sliced
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, Population, Synapse
from neurocompile.ir.recording import Recording
from neurocompile.semantics import fixedpoint as fxp

FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53
INT32_EXACT = 2**31
CONV_UNWRAPPED = 2 ** (fxp.CONV_ACC_BITS - 1)  # conv sums below this in magnitude are their own 24-bit wrap
# Below this input density (fraction of active inputs per step) a dense synapse with at least
# GATHER_MIN_WEIGHTS weights gathers the weight rows of its active inputs in C instead of
# multiplying (int8 GEMM); measured in docs/benchmarks.md.
GATHER_CROSSOVER = 0.05
GATHER_MIN_WEIGHTS = 2**16
# A feed-forward population runs in chunks of batch rows: conv frames of about native.CHUNK_BYTES, the int32
# sums of a dense synapse at most SUMS_BYTES, in a buffer per thread kept between runs (docs/backends.md).
SUMS_BYTES = 64 * 2**20
INT32_SUMS = ("int8-gemm", "gather")  # the kernels whose sums are int32 (written into the buffer)
KEPT_BYTES = 2**30  # recording buffers a backend keeps for its next runs (_Recycler)
KERNEL_SOURCE = Path(__file__).parent / "kernels" / "lif.c"
OPERAND_DTYPE = {  # the weights' dtype of each kernel but int8-gemm
    "gather": torch.int16,
    "fp32-gemm": torch.float32,
    "fp64-gemm": torch.float64,
    "conv2d-fp32": torch.float32,
    "conv2d-fp64": torch.float64,
}
_kernel = None  # None: not tried yet; False: unavailable; else {name: ctypes function}
_thread_sums = threading.local()  # .buffer: this thread's int32 sums buffer (see SUMS_BYTES)


def _load_kernel():
    """The C kernels (compiled once, cached by source hash), or None if they cannot be built."""
    global _kernel
    if _kernel is None:
        _kernel = _build_kernel() or False
    return _kernel or None


def _build_kernel():
    dll = build_library(KERNEL_SOURCE)
    if dll is None:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    # T, n, a_in, shift, wexp, fu, fv, vth, bias, spiking, reset_interval, reset, bias_onset, 6 buffers, b0, b1
    lif_args = [i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, i64, i64] + [ptr] * 6 + [i64, i64]
    signatures = {
        "lif_run_f32": lif_args,
        "lif_run_i32": lif_args,
        "lif_run_i64": lif_args,
        "gather_sum": [i64, i64, ptr, ptr, ptr, i64, i64],  # K, N, spikes, weights, out, r0, r1
        "net_run": [ptr, ptr, i64, i64],  # net, scratch, b0, b1
        "net_scratch": [ptr],
    }
    fns = {}
    for name, argtypes in signatures.items():
        fn = getattr(dll, name)
        fn.argtypes, fn.restype = argtypes, (i64 if name == "net_scratch" else None)
        fns[name] = fn
    fns["lif"] = {torch.float32: fns["lif_run_f32"], torch.int32: fns["lif_run_i32"], torch.int64: fns["lif_run_i64"]}
    return fns


def matmul_dtype(bound: int) -> torch.dtype:
    """The float dtype in which integer sums bounded by ``bound`` (in magnitude) are exact."""
    if bound < FLOAT32_EXACT:
        return torch.float32
    if bound < FLOAT64_EXACT:
        return torch.float64
    raise NeurocompileError(f"synaptic sums up to {bound} exceed exact float64 range")


def row_abs_bound(weights_eff: np.ndarray) -> int:
    """Largest possible |sum| of one target's weights over binary spikes (max row sum of |w|)."""
    w = np.abs(np.asarray(weights_eff, dtype=np.int64))
    if w.size == 0:
        return 0
    return int(w.reshape(w.shape[0], -1).sum(axis=1).max())


def int8_operand(mantissas: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense weight mantissas as int8 ``q`` and an offset ``c`` with ``mantissas == q + c``: ``c = 0`` when
    they fit int8, else ``min + 128`` (they span at most 256 values: ``program.WEIGHT_RANGE`` after Lava's
    truncation, unsigned 0..255 or -255..0 included)."""
    lo, hi = (int(mantissas.min()), int(mantissas.max())) if mantissas.size else (0, 0)
    offset = 0 if -128 <= lo and hi <= 127 else lo + 128
    return (mantissas - offset).astype(np.int8), offset


class _Recycler:
    """Recording buffers kept from one run for the next: a fresh buffer takes a page fault per 4 kB page on its
    first write, which costs a large MLP at batch 256 about two thirds of the time of its int8 GEMMs. A kept buffer is reused only
    once nothing holds the array the run handed out on it (a weak reference), so no run writes into a recording
    still in use; at most ``limit`` bytes are kept."""

    def __init__(self, limit: int = KEPT_BYTES):
        self.limit, self.kept = limit, []  # [(tensor, weak reference to the array handed out on it, or None)]

    def take(self, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        for i, (tensor, handed) in enumerate(self.kept):
            free = handed is None or handed() is None
            if free and tuple(tensor.shape) == tuple(shape) and tensor.dtype == dtype and tensor.device == device:
                return self.kept.pop(i)[0]
        return torch.empty(shape, dtype=dtype, device=device)

    def keep(self, tensor: torch.Tensor, handed: np.ndarray | None) -> None:
        """Keep ``tensor`` for a later run; ``handed``: the array given out on its memory (None: none was)."""
        if sum(t.nbytes for t, _ in self.kept) + tensor.nbytes <= self.limit:
            self.kept.append((tensor, None if handed is None else weakref.ref(handed)))


@dataclass
class _Syn:
    spec: Synapse
    delays: list[int]  # sorted unique delays (conv: [0])
    # dense: mantissas [n_src, len(delays) * n_tgt] (delay-major), int64 (float64 in a float program);
    # conv: the effective weights [Co, Ci/G, kH, kW]
    weights: np.ndarray
    wexp: int  # the sums of ``weights`` scale by 2**wexp: weight_exp plus the mantissas' shift (conv: 0)
    bound: int  # largest |sum| of ``weights`` over binary inputs, per delay
    operands: dict = field(default_factory=dict)  # kernel name -> its weights on the device, made on first use

    @property
    def dense(self) -> bool:
        return self.spec.kind != "conv"


def gather_exact(sy: _Syn) -> bool:
    """Whether the C gather's uint32 sums of ``sy`` are exact: modulo 2**32 is all that a left shift keeps."""
    return sy.wexp >= 0 or sy.bound < INT32_EXACT


class CpuBackend:
    """Execute a program (fixed-point: Lava's integer semantics; float: Lava's float models)."""

    name = "cpu"

    def __init__(self, program: FixedPointProgram | list[FixedPointProgram], device: str = "cpu"):
        self.plastic = None  # the runner of a plastic program (cpu_learning.PlasticRunner)
        if isinstance(program, (list, tuple)) or program.plastic:
            shared = not isinstance(program, (list, tuple))
            programs = learner_programs([program] if shared else program)
            if not programs[0].plastic:
                raise NeurocompileError("cpu backend: a list of programs (one per learner) needs a plastic program")
            self.program = programs[0]
            self.plastic = PlasticRunner(programs, shared=shared)
            return
        self.program = program.validate()
        self.fixed = program.number_format == "fixed"
        self.state_dtype = torch.int64 if self.fixed else torch.float64  # u, v and a_in in the torch path
        self.spike_dtype = torch.uint8 if self.fixed else torch.float64
        self.device = torch.device(device)
        self.shapes = {p.name: tuple(p.shape) for p in program.inputs}
        self.shapes.update({p.name: tuple(p.shape) for p in program.populations})
        self.syns = {s.name: self._prepare(s) for s in program.synapses}
        self.bias = {p.name: self._bias(p) for p in program.populations}
        self.order = self._topological_order()  # None when the program has a cycle
        self._net_syns = None  # the C step-by-step kernel's synapses, made on first use
        self.recycler = _Recycler()

    # --- preparation ------------------------------------------------------------------

    def _prepare(self, syn: Synapse) -> _Syn:
        w = fxp.synapse_weights(syn, self.program.number_format)
        if syn.kind == "conv":
            g = syn.conv
            if tuple(g.input_shape) != self.shapes[syn.source] or tuple(g.output_shape) != self.shapes[syn.target]:
                raise NeurocompileError(f"synapse '{syn.name}': conv geometry does not match source/target shapes")
            if syn.delays is not None and np.any(syn.delays):
                raise NeurocompileError(f"synapse '{syn.name}': conv synapses cannot have delays")
            return _Syn(syn, [0], w, 0, row_abs_bound(w) * self._payload_max(syn.source) if self.fixed else 0)
        n_src, n_tgt = int(np.prod(self.shapes[syn.source])), int(np.prod(self.shapes[syn.target]))
        if w.shape != (n_tgt, n_src):
            raise NeurocompileError(f"synapse '{syn.name}': weights shape {w.shape} != ({n_tgt}, {n_src})")
        delays = np.zeros(w.shape, dtype=np.int64) if syn.delays is None else np.asarray(syn.delays, dtype=np.int64)
        uniq = sorted(int(d) for d in np.unique(delays))
        per_delay = [np.where(delays == d, w, 0) for d in uniq]
        shift = fxp.truncated_bits(syn.num_weight_bits, syn.sign_mode) if self.fixed else 0
        if shift:  # Lava's truncation leaves multiples of 2**shift: keep the mantissas, shift their sums
            per_delay = [wd >> shift for wd in per_delay]
        stacked = np.ascontiguousarray(np.concatenate([wd.T for wd in per_delay], axis=1))
        bound = max(row_abs_bound(wd) for wd in per_delay) * self._payload_max(syn.source) if self.fixed else 0
        return _Syn(syn, uniq, stacked, syn.weight_exp + shift, bound)

    def _payload_max(self, node: str) -> int:
        """The largest value one spike of ``node`` carries: 1, or a graded population's largest count."""
        return max(2 ** self.program.payload_bits(node) - 1, 1)

    def _topological_order(self) -> list[str] | None:
        pops = [p.name for p in self.program.populations]
        deps = {p: {s.source for s in self.program.synapses_into(p) if s.source in pops} for p in pops}
        order, done = [], set()
        while len(order) < len(pops):
            ready = [p for p in pops if p not in done and deps[p] <= done]
            if not ready:
                return None
            order += ready
            done.update(ready)
        return order

    # --- synapses ----------------------------------------------------------------------

    def _c_kernel(self):
        """The C kernels where they apply (a fixed-point program on the CPU), else None."""
        return _load_kernel() if self.fixed and self.device.type == "cpu" else None

    def _gemm_kernel(self, sy: _Syn) -> str:
        """The float kernel in which ``sy``'s sums are exact: float32 below 2**24, float64 below 2**53."""
        dtype = str(matmul_dtype(sy.bound) if self.fixed else torch.float64).replace("torch.float", "fp")
        return f"{dtype}-gemm" if sy.dense else f"conv2d-{dtype}"

    def _kernel_for(self, sy: _Syn, density: float) -> str:
        """The kernel of ``sy`` for inputs of this density. A dense synapse of a fixed-point program on the
        CPU: "gather" (C) below ``GATHER_CROSSOVER`` if large and exact there, else "int8-gemm"; otherwise
        the exact float GEMM or conv2d."""
        if not (self.fixed and sy.dense and self.device.type == "cpu") or self._payload_max(sy.spec.source) > 1:
            return self._gemm_kernel(sy)
        large = sy.weights.size >= GATHER_MIN_WEIGHTS
        if density < GATHER_CROSSOVER and large and gather_exact(sy) and self._c_kernel() is not None:
            return "gather"
        return "int8-gemm"

    def _operand(self, sy: _Syn, kernel: str):
        """``sy``'s weights as ``kernel`` takes them (cached)."""
        if kernel not in sy.operands:
            if kernel == "int8-gemm":
                q, offset = int8_operand(sy.weights)
                sy.operands[kernel] = (torch.as_tensor(q, device=self.device), offset)
            else:
                weights = torch.as_tensor(sy.weights, device=self.device)
                sy.operands[kernel] = weights.to(OPERAND_DTYPE[kernel]).contiguous()
        return sy.operands[kernel]

    def _sums(self, sy: _Syn, kernel: str, spikes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Exact sums of ``sy``'s mantissas (conv: weights) over the inputs of each row of ``spikes``
        [M, n_src]: [M, len(delays) * n_tgt], float holding integers, int64, or int32 (gather: modulo
        2**32); conv sums before their 24-bit wrap. The kernels in ``INT32_SUMS`` write their int32 sums
        into ``out`` if given (int32 [M, len(delays) * n_tgt]); the others allocate theirs."""
        op = self._operand(sy, kernel)
        if not sy.dense:
            return self._conv(sy, op, spikes)
        if kernel == "gather":
            spikes = spikes.to(torch.uint8).contiguous()
            out = torch.empty(spikes.shape[0], op.shape[1], dtype=torch.int32) if out is None else out
            args = (op.shape[0], op.shape[1], spikes.data_ptr(), op.data_ptr(), out.data_ptr())
            run_sliced(self._c_kernel()["gather_sum"], args, spikes.shape[0], op.numel())
            return out
        if kernel == "int8-gemm":
            q, offset = op
            spikes = spikes.to(torch.uint8).contiguous()
            sums = torch._int_mm(spikes.view(torch.int8), q, out=out)
            if offset:  # unsigned weights: q + offset, the offset once per active input
                return sums.to(torch.int64) + offset * spikes.sum(1, keepdim=True, dtype=torch.int64)
            return sums
        return spikes.to(op.dtype) @ op

    def _activation(self, sy: _Syn, kernel: str, spikes: torch.Tensor) -> torch.Tensor:
        """Activations sent for spikes [N, n_src] (any N): [N, D, n_tgt] (one per delay),
        int64 for a fixed-point program (``fixedpoint.scale_activation``, conv: 24-bit wrap), else float64."""
        n = spikes.shape[0]
        sums = self._sums(sy, kernel, spikes).reshape(n, len(sy.delays), -1)
        if not self.fixed:
            return sums
        if sy.dense:
            return fxp.scale_activation(sums.to(torch.int64), sy.wexp)
        return fxp.wrap_bits(sums.to(torch.int64), fxp.CONV_ACC_BITS)

    @staticmethod
    def _conv(sy: _Syn, weight: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """Conv sums for spikes [M, n_src]: [M, n_tgt] in ``weight``'s dtype, exact: every partial sum is an
        integer below the dtype's exact range (``matmul_dtype``)."""
        g = sy.spec.conv
        x = spikes.to(weight.dtype).reshape(spikes.shape[0], *g.input_shape)
        acc = F.conv2d(
            x,
            weight,
            stride=tuple(g.stride),
            padding=tuple(g.padding),
            dilation=tuple(g.dilation),
            groups=g.groups,
        )
        return acc.reshape(spikes.shape[0], -1)

    def _input_sum(self, name: str, spikes: dict, chosen: dict) -> tuple[torch.Tensor, int, int]:
        """Synaptic input of population ``name`` for all steps of the batch rows in ``spikes`` ({node: [B, T, n]}):
        (a_in [B, T, n], shift, weight_exp), each synapse with its kernel in ``chosen``.

        A single delay-free synapse of a fixed-point program whose sums need no wrap before the neuron's
        (dense, or conv below ``CONV_UNWRAPPED``, where the 24-bit wrap changes nothing) hands over its raw sums
        (shift 1: the one-step delay and the exponent are still to apply, see :func:`_aligned`);
        otherwise the sum of arrivals at each step (shift 0).
        """
        into = [self.syns[spec.name] for spec in self.program.synapses_into(name)]
        batch, steps = next(iter(spikes.values())).shape[:2]
        n = self.program.population(name).size
        if (
            len(into) == 1
            and self.fixed
            and into[0].delays == [0]
            and (into[0].dense or into[0].bound < CONV_UNWRAPPED)
        ):
            sy, kernel = into[0], chosen[into[0].spec.name]
            out = _sums_buffer(batch * steps, n) if kernel in INT32_SUMS else None
            raw = self._sums(sy, kernel, spikes[sy.spec.source].reshape(batch * steps, -1), out)
            return raw.reshape(batch, steps, n), 1, sy.wexp
        a_in = torch.zeros(batch, steps, n, dtype=self.state_dtype, device=self.device)
        for sy in into if steps > 1 else []:
            src = spikes[sy.spec.source][:, : steps - 1].reshape(batch * (steps - 1), -1)
            act = self._activation(sy, chosen[sy.spec.name], src).reshape(batch, steps - 1, len(sy.delays), n)
            for i, d in enumerate(sy.delays):
                if 1 + d < steps:
                    a_in[:, 1 + d :] += act[:, : steps - 1 - d, i]
        return a_in, 0, 0

    # --- neurons -----------------------------------------------------------------------

    def _bias(self, pop: Population) -> torch.Tensor:
        bias = fxp.effective_bias(pop.bias_mant, pop.bias_exp) if self.fixed else np.asarray(pop.bias_mant, float)
        flat = np.broadcast_to(bias, pop.shape).reshape(-1).copy()
        dtype = torch.int32 if self.fixed else torch.float64  # int32: the C kernels' type, exact
        return torch.as_tensor(flat, device=self.device).to(dtype)

    def _neuron_args(self, pop: Population) -> tuple[int, ...]:
        """``pop``'s parameters as the C kernels take them: fu, fv, vth, bias, spiking, reset_interval, reset flags,
        bias_onset."""
        fu, fv = fxp.decay_multiplier(pop.du, fxp.U_DECAY_OFFSET), fxp.decay_multiplier(pop.dv, fxp.V_DECAY_OFFSET)
        vth, bias = fxp.effective_vth(pop.vth), self.bias[pop.name].data_ptr()
        return fu, fv, vth, bias, int(pop.spiking), int(pop.reset_interval), _reset_flags(pop), int(pop.bias_onset)

    def _step(self, pop: Population, t: int, a_in, u, v):
        """Step ``t`` of ``pop`` on [B, n] tensors: ``(spikes, u, v)``."""
        bias = self.bias[pop.name]
        if not fxp.bias_active(t, pop.bias_onset):
            bias = torch.zeros_like(bias)
        if self.fixed:
            return fxp.lif_fixed_step(
                a_in, u, v, pop.du, pop.dv, pop.vth, bias, spiking=pop.spiking, reset=pop.reset, **pop.firing()
            )
        vth = float(pop.vth) if pop.spiking else float("inf")
        return fxp.lif_float_step(a_in, u, v, float(pop.du), float(pop.dv), vth, bias, reset=pop.reset, **pop.firing())

    def _advance(self, pop: Population, t: int, a_in, state, out: dict):
        """Step ``t`` of ``pop`` from ``state = (u, v)``; writes ``out[var][:, t]``; returns (spikes, state)."""
        u, v = state
        if fxp.reset_due(t, pop.reset_interval):
            u, v = torch.zeros_like(u), torch.zeros_like(v)
        s, u, v = self._step(pop, t, a_in, u, v)
        for var, value in (("spikes", s), ("u", u), ("v", v)):
            if var in out:
                out[var][:, t] = value
        return s, (u, v)

    def _buffers(self, pop: Population, batch: int, steps: int, want: set[str]) -> dict[str, torch.Tensor]:
        """Per-step outputs of ``pop``: spikes always, u/v if recorded (every step gets written)."""
        state = torch.int32 if self.fixed else torch.float64
        dtypes = {"spikes": self.spike_dtype, "u": state, "v": state}
        shape = (batch, steps, pop.size)
        return {var: self.recycler.take(shape, dt, self.device) for var, dt in dtypes.items() if var in want}

    def _torch_run(self, pop: Population, a_in: torch.Tensor, out: dict) -> None:
        """The neuron recurrence of ``pop`` over all steps of ``a_in`` [B, T, n] in torch."""
        batch, steps, n = a_in.shape
        state = (torch.zeros(batch, n, dtype=self.state_dtype, device=self.device),) * 2
        for t in range(steps):
            _, state = self._advance(pop, t, a_in[:, t], state, out)

    def _kernel_run(self, kernel, pop: Population, a_in, shift: int, wexp: int, out: dict) -> None:
        """The neuron recurrence of ``pop`` in the C kernel (``lif_run_*``)."""
        batch, steps, n = a_in.shape
        a_in = (a_in if a_in.dtype in kernel["lif"] else a_in.to(torch.int64)).contiguous()
        u, v, scratch = (torch.empty(batch, n, dtype=torch.int32) for _ in range(3))
        args = (steps, n, a_in.data_ptr(), shift, wexp, *self._neuron_args(pop))
        args += (out["spikes"].data_ptr(), data_address(out.get("u")), data_address(out.get("v")))
        args += (u.data_ptr(), v.data_ptr(), scratch.data_ptr())
        run_sliced(kernel["lif"][a_in.dtype], args, batch, steps * n)

    # --- running -----------------------------------------------------------------------

    def _inputs(self, inputs) -> tuple[dict[str, torch.Tensor], int, int]:
        """Checked inputs as [B, T, n] tensors on the device (spike dtype)."""
        ports = [(p.name, tuple(p.shape)) for p in self.program.inputs]
        arrays, batch, steps = check_inputs(ports, inputs, binary=self.fixed, backend="cpu")
        x = {
            name: torch.as_tensor(np.ascontiguousarray(arr)).to(self.device, self.spike_dtype).reshape(batch, steps, -1)
            for name, arr in arrays.items()
        }
        return x, batch, steps

    @torch.no_grad()
    def run(self, inputs, record=None, progress: bool = False, checkpoint_every: int | None = None) -> Recording:
        """Run a batch: ``inputs`` [batch, time, *input_shape] (or {port: array}); see module doc.

        ``checkpoint_every`` (plastic programs): record ``<syn>.weights`` after steps K, 2K, ...
        """
        if self.plastic is not None:
            return self.plastic.run(inputs, record, checkpoint_every)
        if checkpoint_every is not None:
            raise NeurocompileError("cpu backend: checkpoint_every needs a plastic program (this one does not learn)")
        start = time.perf_counter()
        x, batch, steps = self._inputs(inputs)
        rec = self.program.recorded_variables(record)
        outs = {name: {"spikes": t} for name, t in x.items()}
        pops = self.program.populations
        for pop in pops:
            outs[pop.name] = self._buffers(pop, batch, steps, rec.get(pop.name, set()) | {"spikes"})
        density = {name: _rate(t) for name, t in x.items()}
        neurons, chosen = self._execute(x, outs, density, progress)
        for pop in pops:  # the stepwise schedules leave them to count here
            if pop.name not in density:
                density[pop.name] = _rate(outs[pop.name]["spikes"])
        arrays = {}
        for node, variables in rec.items():
            for var in sorted(variables):
                arr = outs[node][var].reshape(batch, steps, *self.shapes[node]).cpu().numpy()
                spikes = var == "spikes" and arr.dtype != np.uint8  # float programs' graded inputs
                counts = spikes and self._payload_max(node) > 1  # graded spikes keep their counts
                arrays[f"{node}.{var}"] = (
                    arr.astype(np.uint8) if counts else (arr != 0).astype(np.uint8) if spikes else arr
                )
        for pop in pops:
            for var, tensor in outs[pop.name].items():
                handed = arrays.get(f"{pop.name}.{var}")
                aliased = handed is not None and handed.__array_interface__["data"][0] == tensor.data_ptr()
                self.recycler.keep(tensor, handed if aliased else None)
        meta = {
            "schedule": "layerwise" if self.order is not None else "stepwise",
            "number_format": self.program.number_format,
            "neuron_kernel": {p.name: "torch" if p.payload_bits else neurons for p in pops},
            "synapse_kernel": chosen,
            "batch": batch,
            "steps": steps,
            "spike_rate": {p.name: density[p.name] for p in pops},
            "input_rate": {name: density[name] for name in x},
            "wall_s": time.perf_counter() - start,
        }
        return Recording(arrays, list(self.program.outputs), "cpu", meta)

    def _execute(self, x: dict, outs: dict, density: dict, progress: bool) -> tuple[str, dict[str, str]]:
        """Run the schedule that fits into ``outs``; returns (neuron kernel, {synapse: kernel})."""
        kernel, chosen = self._c_kernel(), {}
        if self.order is not None:
            self._run_layerwise(x, outs, density, chosen)
            return ("torch" if kernel is None else "c"), chosen
        graded = any(p.payload_bits for p in self.program.populations)  # the C neurons send binary spikes
        if kernel is not None and not graded and self._net_synapses() is not None:
            self._net_run(kernel, outs, *next(iter(x.values())).shape[:2])
            return "c", {name: "gather" for name in self.syns}
        self._run_stepwise(x, outs, progress, chosen)
        return "torch", chosen

    def _run_layerwise(self, x: dict, outs: dict, density: dict, chosen: dict) -> None:
        """Population after population into ``outs`` ({node: {var: [B, T, n]}}); each population's
        spike rate goes to ``density`` before the synapses it feeds choose their kernels. With the C
        kernel a population runs in chunks of batch rows (:meth:`_chunk_rows`), sums then neurons, so that
        the sums in flight stay bounded (conv: small and in cache); the torch recurrence, whose cost is per
        step, takes the whole batch."""
        spikes = dict(x)
        kernel = self._c_kernel()
        batch, steps = next(iter(x.values())).shape[:2]
        for name in self.order:
            pop = self.program.population(name)
            for spec in self.program.synapses_into(name):
                chosen[spec.name] = self._kernel_for(self.syns[spec.name], density[spec.source])
            rows = batch if kernel is None else self._chunk_rows(name, batch, steps, chosen)
            for part in (slice(b0, b0 + rows) for b0 in range(0, batch, rows)):
                a_in, shift, wexp = self._input_sum(name, {k: s[part] for k, s in spikes.items()}, chosen)
                out = {var: t[part] for var, t in outs[name].items()}
                if kernel is not None and not pop.payload_bits:  # the C neurons send binary spikes
                    self._kernel_run(kernel, pop, a_in, shift, wexp, out)
                else:
                    self._torch_run(pop, _aligned(a_in, shift, wexp), out)
            spikes[name] = outs[name]["spikes"]
            density[name] = _rate(spikes[name])

    def _chunk_rows(self, name: str, batch: int, steps: int, chosen: dict) -> int:
        """Batch rows per chunk of population ``name``: the float frames of its conv synapses (inputs and sums)
        take about ``CHUNK_BYTES``, the int32 sums of each dense synapse at most ``SUMS_BYTES``."""
        rows = batch
        for spec in self.program.synapses_into(name):
            sy = self.syns[spec.name]
            if sy.dense:
                rows = min(rows, SUMS_BYTES // (4 * steps * sy.weights.shape[1]))
            else:
                values = int(np.prod(self.shapes[spec.source])) + int(np.prod(self.shapes[name]))
                rows = min(rows, CHUNK_BYTES // (OPERAND_DTYPE[chosen[spec.name]].itemsize * steps * values))
        return max(1, rows)

    def _run_stepwise(self, x: dict, outs: dict, progress: bool, chosen: dict) -> None:
        """All populations step by step in torch (programs with cycles) into ``outs``."""
        pops = self.program.populations
        batch, steps = next(iter(x.values())).shape[:2]
        for sy in self.syns.values():
            chosen[sy.spec.name] = self._kernel_for(sy, 1.0)
        state = {p.name: (torch.zeros(batch, p.size, dtype=self.state_dtype, device=self.device),) * 2 for p in pops}
        # pending[name][k]: input arriving at population `name` k steps from now
        pending = {
            p.name: torch.zeros(self._horizon(), batch, p.size, dtype=self.state_dtype, device=self.device)
            for p in pops
        }
        for t in _progress(range(steps), progress):
            now = {name: xs[:, t] for name, xs in x.items()}
            for pop in pops:
                a_in = pending[pop.name][0].clone()
                pending[pop.name] = torch.roll(pending[pop.name], -1, dims=0)
                pending[pop.name][-1].zero_()
                now[pop.name], state[pop.name] = self._advance(pop, t, a_in, state[pop.name], outs[pop.name])
            for sy in self.syns.values():
                act = self._activation(sy, chosen[sy.spec.name], now[sy.spec.source].reshape(batch, -1))  # [B, D, n]
                for i, d in enumerate(sy.delays):
                    pending[sy.spec.target][d] += act[:, i]

    def _horizon(self) -> int:
        """Steps ahead that an input can arrive (2 + the largest delay): the slots of the step-by-step schedules."""
        return 2 + max([max(sy.delays) for sy in self.syns.values()] + [0])

    # --- the C step-by-step kernel (programs with cycles) ---------------------------------

    def _net_synapses(self):
        """The synapses as ``net_run`` takes them (ctypes array, cached), or None when one does not fit it
        (a conv synapse, or gathered sums that would not be exact)."""
        if self._net_syns is None:
            fits = all(sy.dense and gather_exact(sy) for sy in self.syns.values())
            self._net_syns = _net_synapse_structs(self) if fits else False
        return self._net_syns or None

    def _net_run(self, kernel, outs: dict, batch: int, steps: int) -> None:
        """The whole program step by step in the C kernel (``net_run``), batch rows on threads."""
        syns, _ = self._net_syns
        ports = [p.name for p in self.program.inputs]
        pops = (_NetPop * len(self.program.populations))(
            *(
                _NetPop(
                    pop.size,
                    *self._neuron_args(pop),
                    *(data_address(outs[pop.name].get(v)) for v in ("spikes", "u", "v")),
                )
                for pop in self.program.populations
            )
        )
        port_data = (ctypes.c_void_p * len(ports))(*(outs[name]["spikes"].data_ptr() for name in ports))
        address = ctypes.addressof
        net = _NetStruct(steps, self._horizon(), len(ports), address(port_data), len(pops), address(pops))
        net.n_syns, net.syns = len(syns), address(syns)
        words = kernel["net_scratch"](address(net))
        scratch = torch.empty(batch * words, dtype=torch.int32)
        run_sliced(kernel["net_run"], (address(net), scratch.data_ptr()), batch, steps * words)


def _reset_flags(pop: Population) -> int:
    """``pop``'s reset as kernels/lif.c's flags: SUB 1, SNN 2 (snnTorch's timings), IMM 4, SYN 8."""
    snn, synaptic = pop.reset_timing != "same-step", pop.firing()["synaptic"]
    immediate = pop.reset_timing == "snntorch-immediate"
    return (pop.reset == "subtract") | 2 * snn | 4 * immediate | 8 * (snn and pop.reset == "zero" and synaptic)


def _ctypes_struct(name: str, fields: str):
    """A ctypes structure of int64 and pointer fields ("n p ..." for int64 n, pointer p)."""
    types = {"i": ctypes.c_int64, "p": ctypes.c_void_p}
    spec = [(f.split(":")[0], types[f.split(":")[1]]) for f in fields.split()]
    return type(name, (ctypes.Structure,), {"_fields_": spec})


# the structs of kernels/lif.c's net_run
_NetPop = _ctypes_struct(
    "_NetPop",
    "n:i fu:i fv:i vth:i bias:p spiking:i reset_interval:i reset:i bias_onset:i s_out:p u_out:p v_out:p",
)
_NetSyn = _ctypes_struct("_NetSyn", "src:i tgt:i n_src:i n_tgt:i n_delays:i wexp:i w:p delays:p")
_NetStruct = _ctypes_struct("_NetStruct", "T:i horizon:i n_ports:i ports:p n_pops:i pops:p n_syns:i syns:p")


def _net_synapse_structs(backend: CpuBackend):
    """(ctypes array of ``_NetSyn``, the tensors it points to) for ``backend``'s synapses."""
    prog = backend.program
    nodes = [p.name for p in prog.inputs] + [p.name for p in prog.populations]
    structs = (_NetSyn * len(backend.syns))()
    held = []
    for c, sy in zip(structs, backend.syns.values()):
        w = backend._operand(sy, "gather")
        delays = torch.tensor(sy.delays, dtype=torch.int64)
        held += [w, delays]
        c.src, c.tgt = nodes.index(sy.spec.source), nodes.index(sy.spec.target) - len(prog.inputs)
        c.n_src, c.n_tgt, c.n_delays, c.wexp = w.shape[0], w.shape[1] // len(sy.delays), len(sy.delays), sy.wexp
        c.w, c.delays = w.data_ptr(), delays.data_ptr()
    return structs, held


def _aligned(a_in: torch.Tensor, shift: int, weight_exp: int) -> torch.Tensor:
    """Raw single-synapse sums (shift 1) -> the input of each step: weight_exp applied, one step later."""
    if not shift:
        return a_in
    acc = fxp.scale_activation(a_in.to(torch.int64), weight_exp)
    out = torch.zeros_like(acc)
    out[:, 1:] = acc[:, :-1]
    return out


def _sums_buffer(rows: int, cols: int) -> torch.Tensor | None:
    """An int32 [rows, cols] view of this thread's sums buffer (grown as needed up to ``SUMS_BYTES``, kept
    between runs), valid until the next call; None if larger."""
    if 4 * rows * cols > SUMS_BYTES:
        return None
    buffer = getattr(_thread_sums, "buffer", None)
    if buffer is None or buffer.numel() < rows * cols:
        buffer = _thread_sums.buffer = torch.empty(rows * cols, dtype=torch.int32)
    return buffer[: rows * cols].view(rows, cols)


def _rate(t: torch.Tensor) -> float:
    """Fraction of nonzero entries (spikes per neuron and step); NumPy counts on the CPU (several times
    faster than ``torch.count_nonzero`` there)."""
    count = np.count_nonzero(t.numpy()) if t.device.type == "cpu" else int(torch.count_nonzero(t))
    return count / max(t.numel(), 1)


def _progress(steps, progress: bool):
    if not progress:
        return steps
    return tqdm(steps, desc="cpu", unit="step")
