"""Bit-accurate CPU (or CUDA) simulator of a FixedPointProgram, vectorized over the batch.

Semantics are those of ``neurocompile.fixedpoint`` (Lava's ``fixed_pt`` process models): every
spike, ``u`` and ``v`` equals Lava's at every step. Two schedules, same integers:

* feed-forward programs run layer by layer: one matmul per synapse computes the activations
  of all T steps at once, then the neuron recurrence runs over T on [batch, n] tensors;
* programs with a cycle (recurrent synapses) run step by step.

Matmuls run in float32 when they are exact: with binary spikes every partial sum is an
integer bounded by the largest row sum of ``|weights|``; below 2**24 every float32 addition
is exact. Otherwise float64 (exact below 2**53). The neuron update uses a short int64 path
when the largest possible input proves that no int32 wrap or double 24-bit wrap can occur
(``|a_in| <= 2**18``); otherwise it calls ``fixedpoint.lif_fixed_step`` itself. On CPU the
layer-by-layer schedule runs the recurrence in a small C kernel (built once with the system
compiler, exact in every case); without a compiler the torch path runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurocompile import fixedpoint as fxp
from neurocompile.errors import NeurocompileError
from neurocompile.program import FixedPointProgram, Population, Synapse
from neurocompile.recording import Recording

FLOAT32_EXACT = 2**24
FLOAT64_EXACT = 2**53
FAST_INPUT_LIMIT = 2**18  # |a_in| bound under which the short neuron path is exact

# The neuron recurrence of one population over T steps, compiled once with the system C compiler
# (gcc/cc) and loaded with ctypes; ctypes releases the GIL, so batch slices run on threads. It implements exactly
# ``fixedpoint.lif_fixed_step`` (including every int32 wrap); without a compiler, or on CUDA,
# the torch path below is used. Both are tested against Lava.
_KERNEL_SRC = r"""
#include <stdint.h>
/* Lava fixed_pt LIF over T steps for batch rows [b0, b1). State in int32 with uint32 wrap-around
 * arithmetic (Lava's int32 arrays); decays with decay32. a_in[b, t', j] is the raw
 * input read at step t = t' + shift (shift 1: the sum of spikes sent at t - 1), scaled by
 * weight_exp (<< or arithmetic >>) and wrapped to int32 as on Lava's channels. */
#include <string.h>
/* trunc(x * f / 4096) for int32 x, 0 <= f <= 4096, in int32 lanes: x = h * 4096 + l with
 * 0 <= l < 4096 gives floor = h * f + (l * f >> 12) (mod 2**32 arithmetic: the result fits in
 * int32), then +1 for negative x with a nonzero remainder (round toward zero). */
static inline int32_t decay32(int32_t x, uint32_t f) {
    uint32_t h = (uint32_t)(x >> 12), l = (uint32_t)x & 4095u, lf = l * f;
    uint32_t fl = h * f + (lf >> 12);
    return (int32_t)(fl + (uint32_t)((x < 0) & ((lf & 4095u) != 0)));
}
#define LIF_RUN(NAME, A_T)                                                                         \
void NAME(int64_t T, int64_t n, const A_T *restrict a_in, int64_t shift, int64_t wexp,             \
          int64_t fu, int64_t fv, int64_t vth, const int32_t *restrict bias, int64_t spiking,      \
          int64_t reset_interval, float *restrict s_out, int32_t *restrict u_out,                  \
          int32_t *restrict v_out, int32_t *restrict u, int32_t *restrict v,                       \
          uint32_t *restrict scratch, int64_t b0, int64_t b1) {                                    \
    const int32_t M = 1 << 23, L = (1 << 23) - 1, th = (int32_t)(vth > L ? L : vth);               \
    const int32_t sp = spiking != 0;                                                               \
    const uint32_t su = (uint32_t)fu, sv = (uint32_t)fv;                                            \
    for (int64_t b = b0; b < b1; b++) {                                                            \
        int32_t *restrict ub = u + b * n, *restrict vb = v + b * n;                                \
        uint32_t *restrict a64 = scratch + b * n;                                                  \
        memset(ub, 0, n * sizeof(int32_t)); memset(vb, 0, n * sizeof(int32_t));                    \
        for (int64_t t = 0; t < T; t++) {                                                          \
            const int64_t off = (b * T + t) * n;                                                   \
            if (reset_interval > 0 && (t + 1) % reset_interval == 0) {                             \
                memset(ub, 0, n * sizeof(int32_t)); memset(vb, 0, n * sizeof(int32_t));            \
            }                                                                                      \
            if (t < shift) {                                                                       \
                memset(a64, 0, n * sizeof(uint32_t));                                              \
            } else {                                                                               \
                const A_T *restrict a = a_in + (b * T + t - shift) * n;                            \
                if (wexp >= 0)                                                                     \
                    for (int64_t j = 0; j < n; j++)                                                \
                        a64[j] = (uint32_t)(int64_t)a[j] << (wexp + 6);                            \
                else                                                                               \
                    for (int64_t j = 0; j < n; j++)                                                \
                        a64[j] = (uint32_t)((int64_t)a[j] >> (-wexp)) << 6;                        \
            }                                                                                      \
            float *restrict so = s_out + off;                                                      \
            for (int64_t j = 0; j < n; j++) {                                                      \
                int32_t up = (int32_t)((uint32_t)decay32(ub[j], su) + a64[j]);          \
                up = up > M ? up - 2 * M : up;                                                     \
                up = up <= -M ? (int32_t)((uint32_t)up + (uint32_t)(2 * M)) : up;                  \
                int32_t vp = (int32_t)((uint32_t)decay32(vb[j], sv) + (uint32_t)up + (uint32_t)bias[j]); \
                vp = vp > L ? L : vp;                                                              \
                vp = vp < -L ? -L : vp;                                                            \
                int32_t s = (vp > th) & sp;                                                        \
                ub[j] = up; vb[j] = s ? 0 : vp;                                                    \
                so[j] = (float)s;                                                                  \
            }                                                                                      \
            if (u_out) memcpy(u_out + off, ub, n * sizeof(int32_t));                               \
            if (v_out) memcpy(v_out + off, vb, n * sizeof(int32_t));                               \
        }                                                                                          \
    }                                                                                              \
}
LIF_RUN(lif_run_f32, float)
LIF_RUN(lif_run_i64, int64_t)
"""
_kernel = None


def _load_kernel():
    """Compile (once, cached by source hash) and load the C neuron kernel; None if impossible."""
    global _kernel
    if _kernel is not None:
        return _kernel or None
    import ctypes
    import hashlib
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    _kernel = False
    if os.environ.get("NEUROCOMPILE_NO_KERNEL"):
        return None
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    import platform

    flags = ["-O3", "-march=native", "-fno-trapping-math"]
    cpu = ""
    try:
        cpu = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        pass
    tag = hashlib.sha256((_KERNEL_SRC + " ".join(flags) + platform.machine() + cpu).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurocompile"
    lib = cache / f"lif_{tag}.so"
    if not lib.exists():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:  # same filesystem: os.replace is atomic
                src = Path(tmp) / "lif.c"
                src.write_text(_KERNEL_SRC)
                out = Path(tmp) / "lif.so"
                res = subprocess.run([cc, *flags, "-shared", "-fPIC", str(src), "-o", str(out)], capture_output=True)
                if res.returncode != 0:
                    res = subprocess.run([cc, "-O3", "-shared", "-fPIC", str(src), "-o", str(out)], capture_output=True)
                if res.returncode != 0:
                    return None
                os.replace(out, lib)  # parallel builders (pytest -n) each publish a complete file
        except OSError:
            return None
    try:
        dll = ctypes.CDLL(str(lib))
    except OSError:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fns = {}
    for dtype, name in ((torch.float32, "lif_run_f32"), (torch.int64, "lif_run_i64")):
        fn = getattr(dll, name)
        fn.argtypes = [i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64]
        fn.restype = None
        fns[dtype] = fn
    _kernel = fns
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


_pool = None


def _run_sliced(kernel, args, batch: int, work_per_sample: int) -> None:
    """Run the C kernel over batch slices on up to torch.get_num_threads() threads."""
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


@dataclass
class _Syn:
    spec: Synapse
    delays: list[int]  # sorted unique delays
    weight: torch.Tensor  # dense: [n_src, len(delays) * n_tgt] (delay-major); conv: [G, Co/G, K]
    dtype: torch.dtype
    bound: int  # max |activation| sent per step (after weight_exp, before the int32 wrap)
    needs_wrap: bool  # activation can leave int32 (dense) / 24 bits (conv)


class CpuBackend:
    """Execute a FixedPointProgram with Lava's integer semantics."""

    name = "cpu"

    def __init__(self, program: FixedPointProgram, device: str = "cpu"):
        self.program = program.validate()
        self.device = torch.device(device)
        self.shapes = {p.name: tuple(p.shape) for p in program.inputs}
        self.shapes.update({p.name: tuple(p.shape) for p in program.populations})
        self.syns = {s.name: self._prepare(s) for s in program.synapses}
        self.order = self._topological_order()  # None when the program has a cycle
        self.input_bound = {}
        for pop in program.populations:
            self.input_bound[pop.name] = sum(self.syns[s.name].bound for s in program.synapses_into(pop.name))

    # --- preparation ------------------------------------------------------------------

    def _prepare(self, syn: Synapse) -> _Syn:
        n_src = int(np.prod(self.shapes[syn.source]))
        n_tgt = int(np.prod(self.shapes[syn.target]))
        if syn.kind == "conv":
            g = syn.conv
            w = fxp.effective_weights(syn.weights, syn.weight_exp, syn.num_weight_bits, syn.sign_mode, kind="conv")
            if tuple(g.input_shape) != self.shapes[syn.source] or tuple(g.output_shape) != self.shapes[syn.target]:
                raise NeurocompileError(f"synapse '{syn.name}': conv geometry does not match source/target shapes")
            if syn.delays is not None and np.any(syn.delays):
                raise NeurocompileError(f"synapse '{syn.name}': conv synapses cannot have delays")
            raw = row_abs_bound(w)
            dtype = matmul_dtype(raw)
            c_out = w.shape[0]
            weight = torch.as_tensor(w.reshape(g.groups, c_out // g.groups, -1), dtype=dtype, device=self.device)
            bound = min(raw, 2 ** (fxp.CONV_ACC_BITS - 1))
            return _Syn(syn, [0], weight, dtype, bound, raw >= 2 ** (fxp.CONV_ACC_BITS - 1))
        w = fxp.effective_weights(syn.weights, syn.weight_exp, syn.num_weight_bits, syn.sign_mode)
        if w.shape != (n_tgt, n_src):
            raise NeurocompileError(f"synapse '{syn.name}': weights shape {w.shape} != ({n_tgt}, {n_src})")
        delays = np.zeros_like(w) if syn.delays is None else np.asarray(syn.delays, dtype=np.int64)
        uniq = sorted(int(d) for d in np.unique(delays))
        parts = [np.where(delays == d, w, 0) for d in uniq]
        raw = max(row_abs_bound(p) for p in parts)
        dtype = matmul_dtype(raw)
        stacked = np.concatenate([p.T for p in parts], axis=1)  # [n_src, D * n_tgt]
        weight = torch.as_tensor(np.ascontiguousarray(stacked), dtype=dtype, device=self.device)
        e = syn.weight_exp
        per_delay = raw << e if e > 0 else (raw >> -e) + 1
        bound = per_delay * len(uniq)
        return _Syn(syn, uniq, weight, dtype, bound, bound >= 2**31)

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

    # --- synapse activations ------------------------------------------------------------

    def _activation(self, sy: _Syn, spikes: torch.Tensor) -> torch.Tensor:
        """Activations sent for spikes [N, *src_shape] (any N): int64 [N, D, n_tgt] (one per delay)."""
        n = spikes.shape[0]
        spec = sy.spec
        if spec.kind == "conv":
            g = spec.conv
            x = spikes.to(sy.dtype).reshape(n, *g.input_shape)
            cols = F.unfold(
                x,
                kernel_size=tuple(spec.weights.shape[2:4]),
                dilation=tuple(g.dilation),
                padding=tuple(g.padding),
                stride=tuple(g.stride),
            )
            cols = cols.reshape(n, g.groups, -1, cols.shape[-1])  # [N, G, Cin/G*kh*kw, L]
            out = torch.matmul(sy.weight, cols)  # [N, G, Co/G, L]
            acc = out.reshape(n, 1, -1).to(torch.int64)
            return fxp.wrap_bits(acc, fxp.CONV_ACC_BITS) if sy.needs_wrap else acc
        x = spikes.reshape(n, -1).to(sy.dtype)
        acc = (x @ sy.weight).to(torch.int64).reshape(n, len(sy.delays), -1)
        e = spec.weight_exp
        if e > 0:
            acc <<= e
        elif e < 0:
            acc >>= -e
        return fxp.wrap_bits(acc, fxp.CHANNEL_BITS) if sy.needs_wrap else acc

    @staticmethod
    def _column_counts(spikes: torch.Tensor, n: int) -> torch.Tensor:
        """Spikes per neuron summed over batch and time (float64 [n]), exact (one GEMV)."""
        x = spikes.reshape(-1, n)
        dtype = torch.float32 if x.shape[0] < FLOAT32_EXACT else torch.float64
        ones = torch.ones(1, x.shape[0], dtype=dtype, device=x.device)
        return (ones @ x.to(dtype)).reshape(-1).to(torch.float64)

    # --- neurons ------------------------------------------------------------------------

    def _neuron_params(self, pop: Population):
        bias = fxp.effective_bias(np.asarray(pop.bias_mant), pop.bias_exp)
        bias = torch.as_tensor(
            np.broadcast_to(bias, pop.shape).reshape(-1).copy(), dtype=torch.int64, device=self.device
        )
        fast = self.input_bound[pop.name] <= FAST_INPUT_LIMIT
        return bias, fast

    @staticmethod
    def _decay(x: torch.Tensor, factor: int) -> torch.Tensor:
        if factor == fxp.DECAY_UNITY:
            return x.clone()
        if factor == 0:
            return torch.zeros_like(x)
        return torch.div(x * factor, fxp.DECAY_UNITY, rounding_mode="trunc")

    def _step(self, pop: Population, bias, fast, a_in, u, v):
        """One neuron step on [B, n] int64 tensors; a_in is the summed input of this step."""
        if not fast:
            return fxp.lif_fixed_step(a_in, u, v, pop.du, pop.dv, pop.vth, bias, spiking=pop.spiking)
        m = fxp.UV_MAX
        u = self._decay(u, fxp.DECAY_UNITY - pop.du - fxp.U_DECAY_OFFSET)
        u += a_in << fxp.ACT_SHIFT
        u += m - 1  # single conditional 24-bit wrap == modulo wrap into (-2**23, 2**23] here
        u &= 2 * m - 1
        u -= m - 1
        v = self._decay(v, fxp.DECAY_UNITY - pop.dv - fxp.V_DECAY_OFFSET)
        v += u
        v += bias
        v.clamp_(-fxp.V_LIMIT, fxp.V_LIMIT)
        if not pop.spiking:
            return torch.zeros_like(v, dtype=torch.bool), u, v
        s = v > fxp.effective_vth(pop.vth)
        v.masked_fill_(s, 0)
        return s, u, v

    # --- running ------------------------------------------------------------------------

    def _inputs(self, inputs) -> tuple[dict[str, torch.Tensor], int, int]:
        """Input spikes as float32 [B, T, n] tensors on the device (batch-major, like Recording)."""
        ports = self.program.inputs
        if not isinstance(inputs, dict):
            if len(ports) != 1:
                raise NeurocompileError(f"program has {len(ports)} inputs: pass a dict {{name: spikes}}")
            inputs = {ports[0].name: inputs}
        out, bt = {}, None
        for port in ports:
            if port.name not in inputs:
                raise NeurocompileError(f"input '{port.name}': no spikes given")
            raw = inputs[port.name]
            x = raw if torch.is_tensor(raw) else torch.from_numpy(np.ascontiguousarray(raw))
            if x.dim() < 2 or tuple(x.shape[2:]) != tuple(port.shape):
                raise NeurocompileError(
                    f"input '{port.name}': shape {tuple(x.shape)} is not [batch, time, *{tuple(port.shape)}]"
                )
            if bt is not None and tuple(x.shape[:2]) != bt:
                raise NeurocompileError(
                    f"input '{port.name}': batch/time {tuple(x.shape[:2])} differ from other inputs {bt}"
                )
            bt = tuple(x.shape[:2])
            if x.numel() and (x.dtype == torch.bool or x.dtype == torch.uint8):
                bad = x.dtype == torch.uint8 and int(x.max()) > 1
            else:
                bad = x.numel() > 0 and bool(((x != 0) & (x != 1)).any())
            if bad:
                raise NeurocompileError(f"input '{port.name}': spikes must be 0 or 1")
            out[port.name] = x.to(device=self.device, dtype=torch.float32).reshape(bt[0], bt[1], -1)
        return out, bt[0], bt[1]

    @torch.no_grad()
    def run(self, inputs, record=None, progress: bool = False) -> Recording:
        """Run a batch: ``inputs`` [batch, time, *input_shape] 0/1 (or {port: array}); see module doc."""
        start = time.perf_counter()
        x, batch, steps = self._inputs(inputs)
        rec = self.program.recorded_variables(record)
        if self.order is not None:
            spikes, states = self._run_layerwise(x, batch, steps, rec)
            mode = "layerwise"
        else:
            spikes, states = self._run_stepwise(x, batch, steps, rec, progress)
            mode = "stepwise"
        arrays = {}
        for node, vars_ in rec.items():
            shape = self.shapes[node]
            for var in sorted(vars_):
                t = spikes[node] if var == "spikes" else states[f"{node}.{var}"]
                dtype = np.uint8 if var == "spikes" else np.int32
                arrays[f"{node}.{var}"] = t.reshape(batch, steps, *shape).cpu().numpy().astype(dtype, copy=False)
        counts = {name: self._column_counts(t, int(np.prod(self.shapes[name]))) for name, t in spikes.items()}
        n_steps = batch * steps
        meta = {
            "mode": mode,
            "batch": batch,
            "steps": steps,
            "spike_rate": {
                p.name: float(counts[p.name].sum()) / max(n_steps * p.size, 1) for p in self.program.populations
            },
            "input_rate": {p: float(counts[p].sum()) / max(t.numel(), 1) for p, t in x.items()},
            "matmul_dtype": {n: str(sy.dtype).replace("torch.", "") for n, sy in self.syns.items()},
            "neuron_path": {
                p.name: ("fast" if self._neuron_params(p)[1] else "exact") for p in self.program.populations
            },
            "wall_s": time.perf_counter() - start,
        }
        return Recording(arrays, list(self.program.outputs), "cpu", meta)

    def _input_sum(self, name, batch, steps, n) -> tuple[torch.Tensor | None, int, int]:
        """Synaptic input of population ``name`` for all steps: (a_in [B, T, n], shift, weight_exp).

        A single delay-free dense synapse hands over its raw float32 matmul (the kernel applies
        the one-step shift and weight_exp); otherwise an int64 sum of arrivals (shift 0).
        """
        into = self.program.synapses_into(name)
        if steps == 0:
            return None, 0, 0
        if len(into) == 1:
            sy = self.syns[into[0].name]
            if sy.spec.kind != "conv" and sy.delays == [0] and sy.dtype == torch.float32:
                src = self._spikes[sy.spec.source]  # [B, T, n_src]
                raw = src.reshape(batch * steps, -1) @ sy.weight
                return raw.reshape(batch, steps, n), 1, sy.spec.weight_exp
        a_in = torch.zeros(batch, steps, n, dtype=torch.int64, device=self.device)
        for spec in into:
            sy = self.syns[spec.name]
            if steps <= 1:
                continue
            src = self._spikes[spec.source][:, : steps - 1]
            act = self._activation(sy, src.reshape(batch * (steps - 1), -1)).reshape(
                batch, steps - 1, len(sy.delays), n
            )
            for i, d in enumerate(sy.delays):
                if 1 + d < steps:
                    a_in[:, 1 + d :] += act[:, : steps - 1 - d, i]
        return a_in, 0, 0

    def _run_layerwise(self, x, batch, steps, rec):
        self._spikes = spikes = dict(x)  # name -> float32 [B, T, n]
        states = {}
        dev = self.device
        try:
            for name in self.order:
                pop = self.program.population(name)
                n = pop.size
                a_in, shift, wexp = self._input_sum(name, batch, steps, n)
                bias, fast = self._neuron_params(pop)
                want = rec.get(name, set())
                s_all = torch.empty(batch, steps, n, dtype=torch.float32, device=dev)  # every step is written
                u_all = torch.empty(batch, steps, n, dtype=torch.int32, device=dev) if "u" in want else None
                v_all = torch.empty(batch, steps, n, dtype=torch.int32, device=dev) if "v" in want else None
                kernel = _load_kernel() if dev.type == "cpu" else None
                if a_in is None:
                    pass
                elif kernel is not None:
                    a_in = a_in.contiguous()
                    bias32 = bias.to(torch.int32).contiguous()
                    u = torch.empty(batch, n, dtype=torch.int32)
                    v = torch.empty(batch, n, dtype=torch.int32)
                    scratch = torch.empty(batch, n, dtype=torch.int32)
                    args = (
                        steps,
                        n,
                        a_in.data_ptr(),
                        shift,
                        wexp,
                        fxp.DECAY_UNITY - pop.du - fxp.U_DECAY_OFFSET,
                        fxp.DECAY_UNITY - pop.dv - fxp.V_DECAY_OFFSET,
                        fxp.effective_vth(pop.vth),
                        bias32.data_ptr(),
                        int(pop.spiking),
                        int(pop.reset_interval),
                        s_all.data_ptr(),
                        0 if u_all is None else u_all.data_ptr(),
                        0 if v_all is None else v_all.data_ptr(),
                        u.data_ptr(),
                        v.data_ptr(),
                        scratch.data_ptr(),
                    )
                    _run_sliced(kernel[a_in.dtype], args, batch, steps * n)
                else:
                    if shift:  # raw single-synapse sums: apply weight_exp and the one-step delay here
                        acc = a_in.to(torch.int64)
                        acc = acc << wexp if wexp > 0 else acc >> -wexp
                        a_in = torch.zeros_like(acc)
                        a_in[:, 1:] = acc[:, :-1]
                    u = torch.zeros(batch, n, dtype=torch.int64, device=dev)
                    v = torch.zeros_like(u)
                    for t in range(steps):
                        if fxp.reset_due(t, pop.reset_interval):
                            u.zero_()
                            v.zero_()
                        s, u, v = self._step(pop, bias, fast, a_in[:, t], u, v)
                        s_all[:, t] = s
                        if u_all is not None:
                            u_all[:, t] = u
                        if v_all is not None:
                            v_all[:, t] = v
                spikes[name] = s_all
                if u_all is not None:
                    states[f"{name}.u"] = u_all
                if v_all is not None:
                    states[f"{name}.v"] = v_all
        finally:
            self._spikes = None
        return spikes, states

    def _run_stepwise(self, x, batch, steps, rec, progress):
        pops = self.program.populations
        dev = self.device
        u = {p.name: torch.zeros(batch, p.size, dtype=torch.int64, device=dev) for p in pops}
        v = {p.name: torch.zeros(batch, p.size, dtype=torch.int64, device=dev) for p in pops}
        params = {p.name: self._neuron_params(p) for p in pops}
        # pending[name][k]: input arriving at population `name` k steps from now
        horizon = 1 + max([max(sy.delays) for sy in self.syns.values()] + [0])
        pending = {p.name: torch.zeros(horizon + 1, batch, p.size, dtype=torch.int64, device=dev) for p in pops}
        s_all = {p.name: torch.zeros(batch, steps, p.size, dtype=torch.float32, device=dev) for p in pops}
        u_all = {
            n: torch.zeros(batch, steps, self.program.population(n).size, dtype=torch.int32, device=dev)
            for n, w in rec.items()
            if "u" in w
        }
        v_all = {
            n: torch.zeros(batch, steps, self.program.population(n).size, dtype=torch.int32, device=dev)
            for n, w in rec.items()
            if "v" in w
        }
        iterator = range(steps)
        if progress:
            try:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc="cpu", unit="step")
            except ImportError:
                pass
        for t in iterator:
            now = {}
            for pop in pops:
                name = pop.name
                a_in = pending[name][0].clone()
                pending[name] = torch.roll(pending[name], -1, dims=0)
                pending[name][-1].zero_()
                if fxp.reset_due(t, pop.reset_interval):
                    u[name].zero_()
                    v[name].zero_()
                bias, fast = params[name]
                s, u[name], v[name] = self._step(pop, bias, fast, a_in, u[name], v[name])
                now[name] = s
                s_all[name][:, t] = s
                if name in u_all:
                    u_all[name][:, t] = u[name]
                if name in v_all:
                    v_all[name][:, t] = v[name]
            for sy in self.syns.values():
                spec = sy.spec
                src = x[spec.source][:, t] if spec.source in x else now[spec.source]
                act = self._activation(sy, src.reshape(batch, -1))  # [B, D, n]
                for i, d in enumerate(sy.delays):
                    pending[spec.target][d] += act[:, i]
        spikes = dict(x)
        spikes.update(s_all)
        states = {f"{n}.u": t for n, t in u_all.items()}
        states.update({f"{n}.v": t for n, t in v_all.items()})
        return spikes, states
