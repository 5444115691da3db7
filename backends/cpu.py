"""CPU (or CUDA) simulator of a program, vectorized over the batch.

A fixed-point program runs bit-accurately with the semantics of ``neurocompile.fixedpoint``
(Lava's ``fixed_pt`` process models): every spike, ``u`` and ``v`` equals Lava's at every step.
A float program (``number_format="float"``) runs in float64 with the arithmetic of Lava's
``floating_pt`` models (``fixedpoint.lif_float_step``), the same timing. Two schedules:

* feed-forward programs run layer by layer ("layerwise"): one matmul per synapse computes the
  activations of all T steps at once, then the neuron recurrence runs over T on [batch, n];
* programs with a cycle (recurrent synapses) run step by step ("stepwise").

Integer matmuls run in float32 when they are exact: with binary spikes every partial sum is an
integer bounded by the largest row sum of ``|weights|``; below 2**24 every float32 addition is
exact. Otherwise float64 (exact below 2**53). The neuron recurrence of a fixed-point program runs
in a C kernel (``kernels/lif.c``, compiled on first use with the system compiler) on the CPU in
the layerwise schedule, and otherwise in torch with ``fixedpoint.lif_fixed_step`` itself. The
recording's metadata says which ran: ``schedule``, ``number_format`` and, per population,
``neuron_kernel`` ("c" or "torch").

Plastic programs (``program.plastic``: on-chip learning, ``cpu_learning``) run bit-exactly with
``fixedpoint``'s learning engine (Lava's ``LearningDense``/``LearningSparse`` fixed_pt; a sparse
plastic synapse learns only at its stored entries), float ones with its floating_pt formulas
(``fixedpoint.float_learn`` and friends). Batch entry b is learner b,
fully independent: its own weights, traces and random streams. ``CpuBackend([p0, p1, ...])`` takes
one program per learner (same structure; they may differ in weights, ``rng_seed`` and product
mantissa/exponent), so a sweep over seeds or learning rates is one call. Each step t every
population integrates what was sent at t - 1 (plastic synapses: with the weights learned up to
t - 2), spikes, and computes its learning signal (target port, or the errors its feedback
synapses sent at t - 1); every synapse sends its activation for t + 1; every plastic synapse
receives its traces and learns at the end of each ``t_epoch``. The whole time loop runs in a
second C kernel, ``kernels/plastic.c`` (learners sliced over threads, on the CPU whatever
``device`` says); programs it does not handle (float programs, conv or delayed static synapses),
or a missing compiler, run the NumPy loop over the ``fixedpoint`` functions (``cpu_learning.reference_run``,
also the kernel's test oracle); ``metadata["learning_kernel"]`` says which ("c" or "reference").
``run(..., checkpoint_every=K)`` records ``<syn>.weights`` [batch, T // K, n_post, n_pre] after
steps K, 2K, ... (``metadata["checkpoint_steps"]``); ``<syn>.x1``, ``x2`` (after the step) and
``y1``-``y3`` (as received) are [batch, T, n]. ``metadata["programs"]`` holds each learner's
program with its learned weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neurocompile import fixedpoint as fxp
from neurocompile.errors import NeurocompileError
from neurocompile.program import FixedPointProgram, Population, Synapse
from neurocompile.recording import Recording

from .base import check_inputs

FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53
KERNEL_SOURCE = Path(__file__).parent / "kernels" / "lif.c"
_kernel = None  # None: not tried yet; False: unavailable; else {a_in dtype: ctypes function}
_pool = None


def _load_kernel():
    """The C neuron kernel (compiled once, cached by source hash), or None if it cannot be built."""
    global _kernel
    if _kernel is None:
        _kernel = _build_kernel() or False
    return _kernel or None


def _build_kernel():
    import ctypes

    dll = build_library(KERNEL_SOURCE)
    if dll is None:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fns = {}
    for dtype, name in ((torch.float32, "lif_run_f32"), (torch.int64, "lif_run_i64")):
        fn = getattr(dll, name)
        # T, n, a_in, shift, wexp, fu, fv, vth, bias, spiking, reset_interval, subtract, 6 buffers, b0, b1
        fn.argtypes = [i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, i64] + [ptr] * 6 + [i64, i64]
        fn.restype = None
        fns[dtype] = fn
    return fns


def build_library(source_path: Path, extra_flags: tuple[str, ...] = (), libs: tuple[str, ...] = ()):
    """The C source ``source_path`` compiled to a shared library and loaded with ctypes (cached in
    ``$XDG_CACHE_HOME/neurocompile`` by a hash of source, flags and CPU), or None if it cannot be
    (no compiler, ``NEUROCOMPILE_NO_KERNEL`` set, or the build fails)."""
    import ctypes
    import hashlib
    import os
    import platform
    import shutil

    cc = shutil.which("gcc") or shutil.which("cc")
    if os.environ.get("NEUROCOMPILE_NO_KERNEL") or cc is None:
        return None
    try:
        source = _with_headers(source_path)
    except OSError:
        return None
    try:  # the flags -march=native compiles for are part of the cache key
        cpu = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        cpu = ""
    flags = ["-O3", "-march=native", "-fno-trapping-math", *extra_flags]
    key = source + " ".join(flags) + (" " + " ".join(libs) if libs else "") + platform.machine() + cpu
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurocompile"
    lib = cache / f"{source_path.stem}_{tag}.so"
    fallback = ["-O3", *extra_flags]  # -march=native may be refused
    if not lib.exists() and not _compile(cc, [flags, fallback], list(libs), source, cache, lib):
        return None
    try:
        return ctypes.CDLL(str(lib))
    except OSError:
        return None


def _with_headers(source_path: Path) -> str:
    """The C source with each ``#include "name.h"`` replaced by that header from the same folder
    (the build compiles a copy elsewhere, and the cache key must cover the headers)."""
    import re

    def header(match: re.Match) -> str:
        return (source_path.parent / match.group(1)).read_text()

    return re.sub(r'^#include "([A-Za-z0-9_]+\.h)"$', header, source_path.read_text(), flags=re.M)


def _compile(cc: str, attempts: list[list[str]], libs: list[str], source: str, cache: Path, lib: Path) -> bool:
    """Compile ``source`` to ``lib`` with the first set of flags that works (atomically published:
    parallel builders each write a whole file)."""
    import os
    import subprocess
    import tempfile

    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # same filesystem: os.replace is atomic
            src, out = Path(tmp) / "kernel.c", Path(tmp) / "kernel.so"
            src.write_text(source)
            for opts in attempts:
                command = [cc, *opts, "-shared", "-fPIC", str(src), "-o", str(out), *libs]
                if subprocess.run(command, capture_output=True).returncode == 0:
                    os.replace(out, lib)
                    return True
    except OSError:
        pass
    return False


def run_sliced(kernel, args, batch: int, work_per_sample: int) -> None:
    """Run ``kernel(*args, b0, b1)`` over batch slices on up to torch.get_num_threads() threads."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), batch, batch * work_per_sample // 20000 or 1))
    if threads == 1:
        kernel(*args, 0, batch)
        return
    if _pool is None or _pool._max_workers < threads:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=threads)
    cuts = [batch * k // threads for k in range(threads + 1)]
    list(_pool.map(lambda k: kernel(*args, cuts[k], cuts[k + 1]), range(threads)))


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


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


@dataclass
class _Syn:
    spec: Synapse
    delays: list[int]  # sorted unique delays
    weight: torch.Tensor  # dense: [n_src, len(delays) * n_tgt] (delay-major); conv: [Co, Ci/G, kH, kW]
    dtype: torch.dtype  # of the matmul


class CpuBackend:
    """Execute a program (fixed-point: Lava's integer semantics; float: Lava's float models)."""

    name = "cpu"

    def __init__(self, program: FixedPointProgram | list[FixedPointProgram], device: str = "cpu"):
        self.plastic = None  # the runner of a plastic program (cpu_learning.PlasticRunner)
        if isinstance(program, (list, tuple)) or program.plastic:
            from .cpu_learning import PlasticRunner, learner_programs

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
        self.spike_dtype = torch.float32 if self.fixed else torch.float64
        self.device = torch.device(device)
        self.shapes = {p.name: tuple(p.shape) for p in program.inputs}
        self.shapes.update({p.name: tuple(p.shape) for p in program.populations})
        self.syns = {s.name: self._prepare(s) for s in program.synapses}
        self.order = self._topological_order()  # None when the program has a cycle

    # --- preparation ------------------------------------------------------------------

    def _weights(self, syn: Synapse) -> tuple[np.ndarray, torch.dtype]:
        """The weights multiplied with spikes, and the matmul dtype in which that is exact."""
        w = fxp.synapse_weights(syn, self.program.number_format)
        if not self.fixed:
            return w, torch.float64
        if syn.kind == "conv":
            return w, matmul_dtype(row_abs_bound(w))
        delays = np.zeros_like(w) if syn.delays is None else np.asarray(syn.delays)
        return w, matmul_dtype(max(row_abs_bound(np.where(delays == d, w, 0)) for d in np.unique(delays)))

    def _prepare(self, syn: Synapse) -> _Syn:
        w, dtype = self._weights(syn)
        if syn.kind == "conv":
            g = syn.conv
            if tuple(g.input_shape) != self.shapes[syn.source] or tuple(g.output_shape) != self.shapes[syn.target]:
                raise NeurocompileError(f"synapse '{syn.name}': conv geometry does not match source/target shapes")
            if syn.delays is not None and np.any(syn.delays):
                raise NeurocompileError(f"synapse '{syn.name}': conv synapses cannot have delays")
            return _Syn(syn, [0], torch.as_tensor(w, dtype=dtype, device=self.device), dtype)
        n_src, n_tgt = int(np.prod(self.shapes[syn.source])), int(np.prod(self.shapes[syn.target]))
        if w.shape != (n_tgt, n_src):
            raise NeurocompileError(f"synapse '{syn.name}': weights shape {w.shape} != ({n_tgt}, {n_src})")
        delays = np.zeros(w.shape, dtype=np.int64) if syn.delays is None else np.asarray(syn.delays, dtype=np.int64)
        uniq = sorted(int(d) for d in np.unique(delays))
        stacked = np.concatenate([np.where(delays == d, w, 0).T for d in uniq], axis=1)  # [n_src, D * n_tgt]
        weight = torch.as_tensor(np.ascontiguousarray(stacked), dtype=dtype, device=self.device)
        return _Syn(syn, uniq, weight, dtype)

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

    def _activation(self, sy: _Syn, spikes: torch.Tensor) -> torch.Tensor:
        """Activations sent for spikes [N, *src_shape] (any N): [N, D, n_tgt] (one per delay),
        int64 for a fixed-point program (``fixedpoint.scale_activation``, conv: 24-bit wrap), else float64."""
        n = spikes.shape[0]
        spec = sy.spec
        if spec.kind == "conv":
            g = spec.conv
            x = spikes.to(sy.dtype).reshape(n, *g.input_shape)
            # exact: every partial sum is an integer below the dtype's exact range (matmul_dtype)
            acc = F.conv2d(
                x,
                sy.weight,
                stride=tuple(g.stride),
                padding=tuple(g.padding),
                dilation=tuple(g.dilation),
                groups=g.groups,
            ).reshape(n, 1, -1)
            return fxp.wrap_bits(acc.to(torch.int64), fxp.CONV_ACC_BITS) if self.fixed else acc
        acc = (spikes.reshape(n, -1).to(sy.dtype) @ sy.weight).reshape(n, len(sy.delays), -1)
        return fxp.scale_activation(acc.to(torch.int64), spec.weight_exp) if self.fixed else acc

    def _input_sum(self, name: str, spikes: dict, batch: int, steps: int) -> tuple[torch.Tensor, int, int]:
        """Synaptic input of population ``name`` for all steps: (a_in [B, T, n], shift, weight_exp).

        A single delay-free dense synapse of a fixed-point program hands over its raw float32
        matmul (shift 1: the one-step delay and weight_exp are still to apply, see :func:`_aligned`);
        otherwise the sum of arrivals at each step (shift 0).
        """
        into = self.program.synapses_into(name)
        n = self.program.population(name).size
        if len(into) == 1:
            sy = self.syns[into[0].name]
            if sy.spec.kind != "conv" and sy.delays == [0] and sy.dtype == torch.float32:
                raw = spikes[sy.spec.source].reshape(batch * steps, -1) @ sy.weight
                return raw.reshape(batch, steps, n), 1, sy.spec.weight_exp
        a_in = torch.zeros(batch, steps, n, dtype=self.state_dtype, device=self.device)
        for spec in into if steps > 1 else []:
            sy = self.syns[spec.name]
            src = spikes[spec.source][:, : steps - 1].reshape(batch * (steps - 1), -1)
            act = self._activation(sy, src).reshape(batch, steps - 1, len(sy.delays), n)
            for i, d in enumerate(sy.delays):
                if 1 + d < steps:
                    a_in[:, 1 + d :] += act[:, : steps - 1 - d, i]
        return a_in, 0, 0

    # --- neurons -----------------------------------------------------------------------

    def _bias(self, pop: Population) -> torch.Tensor:
        bias = fxp.effective_bias(pop.bias_mant, pop.bias_exp) if self.fixed else np.asarray(pop.bias_mant, float)
        flat = np.broadcast_to(bias, pop.shape).reshape(-1).copy()
        return torch.as_tensor(flat, dtype=self.state_dtype, device=self.device)

    def _step(self, pop: Population, bias, a_in, u, v):
        """One neuron step on [B, n] tensors: ``(spikes, u, v)``."""
        if self.fixed:
            return fxp.lif_fixed_step(a_in, u, v, pop.du, pop.dv, pop.vth, bias, spiking=pop.spiking, reset=pop.reset)
        vth = float(pop.vth) if pop.spiking else float("inf")
        return fxp.lif_float_step(a_in, u, v, float(pop.du), float(pop.dv), vth, bias, reset=pop.reset)

    def _advance(self, pop: Population, bias, t: int, a_in, state, out: dict):
        """Step ``t`` of ``pop`` from ``state = (u, v)``; writes ``out[var][:, t]``; returns (spikes, state)."""
        u, v = state
        if fxp.reset_due(t, pop.reset_interval):
            u, v = torch.zeros_like(u), torch.zeros_like(v)
        s, u, v = self._step(pop, bias, a_in, u, v)
        for var, value in (("spikes", s), ("u", u), ("v", v)):
            if var in out:
                out[var][:, t] = value
        return s, (u, v)

    def _buffers(self, pop: Population, batch: int, steps: int, want: set[str]) -> dict[str, torch.Tensor]:
        """Per-step outputs of ``pop``: spikes always, u/v if recorded (every step gets written)."""
        state = torch.int32 if self.fixed else torch.float64
        dtypes = {"spikes": self.spike_dtype, "u": state, "v": state}
        shape = (batch, steps, pop.size)
        return {var: torch.empty(shape, dtype=dt, device=self.device) for var, dt in dtypes.items() if var in want}

    def _torch_run(self, pop: Population, a_in: torch.Tensor, out: dict) -> None:
        """The neuron recurrence of ``pop`` over all steps of ``a_in`` [B, T, n] in torch."""
        batch, steps, n = a_in.shape
        bias = self._bias(pop)
        state = (torch.zeros(batch, n, dtype=self.state_dtype, device=self.device),) * 2
        for t in range(steps):
            _, state = self._advance(pop, bias, t, a_in[:, t], state, out)

    def _kernel_run(self, kernel, pop: Population, a_in, shift: int, wexp: int, out: dict) -> None:
        """The neuron recurrence of ``pop`` in the C kernel (``kernels/lif.c``)."""
        batch, steps, n = a_in.shape
        a_in = a_in.contiguous()
        bias = self._bias(pop).to(torch.int32).contiguous()
        u, v, scratch = (torch.empty(batch, n, dtype=torch.int32) for _ in range(3))
        fu, fv = fxp.decay_multiplier(pop.du, fxp.U_DECAY_OFFSET), fxp.decay_multiplier(pop.dv, fxp.V_DECAY_OFFSET)
        args = (steps, n, a_in.data_ptr(), shift, wexp, fu, fv, fxp.effective_vth(pop.vth), bias.data_ptr())
        args += (int(pop.spiking), int(pop.reset_interval), int(pop.reset == "subtract"), out["spikes"].data_ptr())
        args += (_ptr(out.get("u")),)
        args += (_ptr(out.get("v")), u.data_ptr(), v.data_ptr(), scratch.data_ptr())
        run_sliced(kernel[a_in.dtype], args, batch, steps * n)

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
        start = time.perf_counter()
        x, batch, steps = self._inputs(inputs)
        rec = self.program.recorded_variables(record)
        if self.order is not None:
            outs, kernels = self._run_layerwise(x, batch, steps, rec)
        else:
            outs = self._run_stepwise(x, batch, steps, rec, progress)
            kernels = {p.name: "torch" for p in self.program.populations}
        arrays = {}
        for node, variables in rec.items():
            for var in sorted(variables):
                arr = outs[node][var].reshape(batch, steps, *self.shapes[node]).cpu().numpy()
                arrays[f"{node}.{var}"] = (arr != 0).astype(np.uint8) if var == "spikes" else arr
        meta = {
            "schedule": "layerwise" if self.order is not None else "stepwise",
            "number_format": self.program.number_format,
            "neuron_kernel": kernels,
            "batch": batch,
            "steps": steps,
            "spike_rate": {p.name: _rate(outs[p.name]["spikes"]) for p in self.program.populations},
            "input_rate": {name: _rate(t) for name, t in x.items()},
            "matmul_dtype": {n: str(sy.dtype).replace("torch.", "") for n, sy in self.syns.items()},
            "wall_s": time.perf_counter() - start,
        }
        return Recording(arrays, list(self.program.outputs), "cpu", meta)

    def _run_layerwise(self, x: dict, batch: int, steps: int, rec: dict) -> tuple[dict, dict]:
        """Population after population; returns ({node: {var: [B, T, n]}}, {population: kernel})."""
        spikes = dict(x)  # node -> spikes [B, T, n]
        outs = {name: {"spikes": t} for name, t in x.items()}
        kernels = {}
        for name in self.order:
            pop = self.program.population(name)
            a_in, shift, wexp = self._input_sum(name, spikes, batch, steps)
            out = self._buffers(pop, batch, steps, rec.get(name, set()) | {"spikes"})
            kernel = _load_kernel() if self.fixed and self.device.type == "cpu" else None
            if kernel is not None:
                self._kernel_run(kernel, pop, a_in, shift, wexp, out)
            else:
                self._torch_run(pop, _aligned(a_in, shift, wexp), out)
            kernels[name] = "torch" if kernel is None else "c"
            spikes[name] = out["spikes"]
            outs[name] = out
        return outs, kernels

    def _run_stepwise(self, x: dict, batch: int, steps: int, rec: dict, progress: bool) -> dict:
        """All populations step by step (programs with cycles); returns {node: {var: [B, T, n]}}."""
        pops = self.program.populations
        bias = {p.name: self._bias(p) for p in pops}
        state = {p.name: (torch.zeros(batch, p.size, dtype=self.state_dtype, device=self.device),) * 2 for p in pops}
        outs = {p.name: self._buffers(p, batch, steps, rec.get(p.name, set()) | {"spikes"}) for p in pops}
        # pending[name][k]: input arriving at population `name` k steps from now
        horizon = 2 + max([max(sy.delays) for sy in self.syns.values()] + [0])
        pending = {
            p.name: torch.zeros(horizon, batch, p.size, dtype=self.state_dtype, device=self.device) for p in pops
        }
        for t in _progress(range(steps), progress):
            now = {name: xs[:, t] for name, xs in x.items()}
            for pop in pops:
                a_in = pending[pop.name][0].clone()
                pending[pop.name] = torch.roll(pending[pop.name], -1, dims=0)
                pending[pop.name][-1].zero_()
                now[pop.name], state[pop.name] = self._advance(
                    pop, bias[pop.name], t, a_in, state[pop.name], outs[pop.name]
                )
            for sy in self.syns.values():
                act = self._activation(sy, now[sy.spec.source].reshape(batch, -1))  # [B, D, n]
                for i, d in enumerate(sy.delays):
                    pending[sy.spec.target][d] += act[:, i]
        outs.update({name: {"spikes": t} for name, t in x.items()})
        return outs


def _aligned(a_in: torch.Tensor, shift: int, weight_exp: int) -> torch.Tensor:
    """Raw single-synapse sums (shift 1) -> the input of each step: weight_exp applied, one step later."""
    if not shift:
        return a_in
    acc = fxp.scale_activation(a_in.to(torch.int64), weight_exp)
    out = torch.zeros_like(acc)
    out[:, 1:] = acc[:, :-1]
    return out


def _rate(t: torch.Tensor) -> float:
    """Fraction of nonzero entries (spikes per neuron and step): one GEMV of the nonzero mask with
    ones, exact while each column sums fewer than 2**24 (float32) or 2**53 (float64) ones."""
    x = t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(-1, 1)
    if not (t.dtype == torch.float32 and x.shape[0] < 2**24):
        x = (x != 0).to(torch.float64)  # graded float-program inputs, or too many rows for float32
    ones = torch.ones(1, x.shape[0], dtype=x.dtype, device=x.device)
    return float((ones @ x).sum(dtype=torch.float64)) / max(t.numel(), 1)


def _progress(steps, progress: bool):
    if not progress:
        return steps
    try:
        from tqdm import tqdm
    except ImportError:
        return steps
    return tqdm(steps, desc="cpu", unit="step")
