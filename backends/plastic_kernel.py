"""The CPU backend's plastic path in C (``kernels/plastic.c``): the learners' programs as C structures,
their random draws as tables, one call for the whole run."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from neurocompile.backends.learners import INT32_MAX, TRACE_VARIABLES, checkpoint_count, learning_entries
from neurocompile.backends.native import build_library, run_sliced
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import FACTOR_VARIABLES
from neurocompile.ir.program import WEIGHT_RANGE, Synapse
from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics import learning_engine as engine

KERNEL_SOURCE = Path(__file__).parent / "kernels" / "plastic.c"
KERNEL_FLAGS = ["-ffp-contract=off"]  # f * h rounds to double before floor, as in NumPy
_kernel = None  # None: not tried yet; False: unavailable; else the ctypes function
_draw_cache: dict = {}  # the tables of the last run (when small): repeated runs reuse them


def load_kernel():
    """The C learning kernel (compiled once, cached by source hash), or None if it cannot be built."""
    global _kernel
    if _kernel is None:
        dll = build_library(KERNEL_SOURCE, KERNEL_FLAGS, ["-lm"])
        if dll is None:
            _kernel = False
        else:
            _kernel = dll.plastic_run
            _kernel.argtypes = [ctypes.POINTER(_Net), ctypes.c_int64, ctypes.c_int64]
            _kernel.restype = ctypes.c_int64
    return _kernel or None


_i64, _f64, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


class _Pop(ctypes.Structure):
    _fields_ = [
        ("n", _i64),
        ("fu", _i64),
        ("fv", _i64),
        ("vth", _i64),
        ("spiking", _i64),
        ("reset_interval", _i64),
        ("bias", _ptr),
        ("bias_onset", _i64),
        ("learning", _i64),
        ("target", _ptr),
        ("output_v", _i64),
        ("output_shift", _i64),
        ("vth_eff", _i64),
        ("table", _ptr),
        ("surrogate", _i64),
        ("table_len", _i64),
        ("sur_shift", _i64),
        ("trace_mult", _i64),
        ("term", _i64 * 3),
        ("term_shift", _i64 * 3),
        ("s_out", _ptr),
        ("u_out", _ptr),
        ("v_out", _ptr),
    ]


class _Prod(ctypes.Structure):
    _fields_ = [
        ("dep", _i64),
        ("shift", _i64),
        ("n_factors", _i64),
        ("var", _i64 * 4),
        ("cst", _i64 * 4),
        ("lo", _i64 * 4),
        ("hi", _i64 * 4),
    ]


class _Syn(ctypes.Structure):
    _fields_ = [
        ("src", _i64),
        ("tgt", _i64),
        ("n_src", _i64),
        ("n_tgt", _i64),
        ("wexp", _i64),
        ("kind", _i64),
        ("w", _ptr),
        ("w_stride", _i64),
        ("keep", _ptr),
        ("keep_stride", _i64),
        ("t_epoch", _i64),
        ("decimate", _i64),
        ("imp_whole", _i64 * 2),
        ("imp_frac", _i64 * 2),
        ("tau_nonzero", _i64 * 2),
        ("x_factor", _f64 * 2),
        ("y_factor", _f64),
        ("acc_min", _i64),
        ("acc_max", _i64),
        ("w_lo", _i64),
        ("w_hi", _i64),
        ("bap", _i64),
        ("n_prod", _i64),
        ("prod", _ptr),
        ("mant", _ptr),
        ("expo", _ptr),
        ("x_decay", _ptr),
        ("y_decay", _ptr),
        ("x_imp", _ptr),
        ("w_round", _ptr),
        ("draw_cols", _i64),
        ("draw_row", _ptr),
        ("x_out", _ptr * 2),
        ("y_out", _ptr * 3),
        ("ckpt", _ptr),
        ("ckpt_every", _i64),
        ("n_ckpt", _i64),
    ]


class _Net(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("n_ports", _i64),
        ("port_data", _ptr),
        ("port_n", _ptr),
        ("n_pops", _i64),
        ("pops", _ptr),
        ("n_syns", _i64),
        ("syns", _ptr),
        ("trace_max", _i64),
        ("acc_lo", _i64),
        ("acc_hi", _i64),
        ("wacc_shift", _i64),
        ("sig_lo", _i64),
        ("sig_hi", _i64),
        ("psi_max", _i64),
        ("decay_shift", _i64),
    ]


SIGNAL_TERMS = {"one": 0, "surrogate": 1, "surrogate_trace": 2}


DEPENDENCIES = {"x0": 0, "y0": 1}


VARIABLE_CODES = {name: i for i, name in enumerate(FACTOR_VARIABLES)}  # x0 x1 x2 y0 y1 y2 y3 w


def _addr(arr: np.ndarray | None) -> int:
    return 0 if arr is None else arr.ctypes.data


def _per_learner(arrays: list[np.ndarray], dtype) -> tuple[np.ndarray, int]:
    """Stack per-learner arrays: one copy (stride 0) when all are equal, else [B, ...]."""
    first = np.ascontiguousarray(arrays[0], dtype=dtype)
    if all(a is arrays[0] or np.array_equal(a, arrays[0]) for a in arrays[1:]):
        return first, 0
    return np.ascontiguousarray(np.stack(arrays), dtype=dtype), first.size


def _draw_tables(rules, steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The draws each distinct seed uses, one column per learning epoch e = 0..steps // t_epoch
    (x_decay, y_decay, x_impulse: draw 2 * e * t_epoch; weight: draw e), and each learner's row."""
    seeds = tuple(sorted({r.rng_seed for r in rules}))
    rows = {seed: i for i, seed in enumerate(seeds)}
    key = (seeds, steps, rules[0].t_epoch)
    tables = _draw_cache.get(key)
    if tables is None:
        tables = _seed_tables(*key)
        if sum(t.nbytes for t in tables.values()) < DRAW_CACHE_BYTES:
            _draw_cache.clear()
            _draw_cache[key] = tables
    return tables, np.array([rows[r.rng_seed] for r in rules], dtype=np.int64)


DRAW_CACHE_BYTES = 2**25


def _seed_tables(seeds: tuple[int, ...], steps: int, t_epoch: int) -> dict[str, np.ndarray]:
    per_seed = [engine.learning_randoms(seed, steps) for seed in seeds]
    epochs = steps // t_epoch
    step_draws = slice(0, 2 * epochs * t_epoch + 1, 2 * t_epoch)  # learning at step k uses draw 2k
    tables = {}
    for key in ("x_decay", "y_decay", "x_impulse"):
        tables[key] = np.ascontiguousarray(np.stack([d[key][step_draws] for d in per_seed]))
    tables["x_impulse"] = tables["x_impulse"].astype(np.int64)
    # r < remainder / 128  <=>  floor(128 r) < remainder (128 r is exact; remainder is an integer)
    weight = np.stack([d["weight"][: epochs + 1] for d in per_seed]) * float(2**engine.WEIGHT_ACCUMULATOR_SHIFT)
    tables["weight"] = np.ascontiguousarray(np.floor(weight), dtype=np.int32)
    for table in tables.values():
        table.flags.writeable = False
    return tables


def kernel_run(kernel, learners, data, batch, steps, rec, every) -> tuple[dict, dict]:
    """Run the C kernel; returns what :func:`reference_run` returns."""
    prog = learners[0]
    keep = []  # every array the kernel reads or writes stays alive until it returns

    def hold(arr):
        keep.append(arr)
        return arr

    out = {}
    spike_ports = prog.spike_ports()
    pops = _population_structs(prog, data, rec, batch, steps, out, hold)
    syns, finals = _synapse_structs(learners, rec, batch, steps, every, out, hold)
    port_data = (_ptr * max(1, len(spike_ports)))(*[_addr(data[p.name]) for p in spike_ports])
    port_n = hold(np.array([int(np.prod(p.shape)) for p in spike_ports] or [0], dtype=np.int64))
    net = _Net(
        T=steps,
        n_ports=len(spike_ports),
        port_data=ctypes.addressof(port_data),
        port_n=_addr(port_n),
        n_pops=len(prog.populations),
        pops=ctypes.addressof(pops),
        n_syns=len(prog.synapses),
        syns=ctypes.addressof(syns),
        trace_max=engine.TRACE_MAX,
        acc_lo=engine.ACCUMULATOR_LIMITS[0],
        acc_hi=engine.ACCUMULATOR_LIMITS[1],
        wacc_shift=engine.WEIGHT_ACCUMULATOR_SHIFT,
        sig_lo=engine.SIGNAL_LIMITS[0],
        sig_hi=engine.SIGNAL_LIMITS[1],
        psi_max=engine.PSI_TRACE_MAX,
        decay_shift=fxp.DECAY_SHIFT,
    )
    work = steps * sum(syns[i].n_src * syns[i].n_tgt for i in range(len(prog.synapses)))
    failed = []

    def call(net_ref, b0, b1):
        if kernel(net_ref, b0, b1) != 0:
            failed.append((b0, b1))

    run_sliced(call, (ctypes.byref(net),), batch, max(work, 1))
    if failed:
        raise NeurocompileError("cpu backend: the learning kernel could not allocate its state")
    return out, finals


def _population_structs(prog, data, rec, batch: int, steps: int, out: dict, hold):
    """The kernel's view of every population; adds the recorded spikes, u and v arrays to ``out``."""
    pops = (_Pop * max(1, len(prog.populations)))()
    for i, pop in enumerate(prog.populations):
        c = pops[i]
        c.n = pop.size
        c.fu = fxp.decay_multiplier(pop.du, fxp.U_DECAY_OFFSET)
        c.fv = fxp.decay_multiplier(pop.dv, fxp.V_DECAY_OFFSET)
        c.vth = min(fxp.effective_vth(pop.vth), fxp.V_LIMIT)  # v <= V_LIMIT: the same comparisons
        c.spiking = int(bool(pop.spiking))
        c.reset_interval = int(pop.reset_interval)
        bias = fxp.effective_bias(pop.bias_mant, pop.bias_exp)
        c.bias = _addr(hold(np.ascontiguousarray(np.broadcast_to(bias, pop.shape).reshape(-1), dtype=np.int32)))
        c.bias_onset = int(pop.bias_onset)
        if pop.learning is not None:
            _signal_fields(c, pop, data, hold)
        wanted = rec.get(pop.name, set())
        key = f"{pop.name}.spikes"
        out[key] = np.empty((batch, steps, pop.size), np.uint8)
        c.s_out = _addr(out[key])
        for var in ("u", "v"):
            if var in wanted:
                out[f"{pop.name}.{var}"] = np.empty((batch, steps, pop.size), np.int32)
                setattr(c, f"{var}_out", _addr(out[f"{pop.name}.{var}"]))
    return pops


def _signal_fields(c: _Pop, pop, data, hold) -> None:
    """The learning signal of population ``pop`` into ``c``."""
    sig = pop.learning
    c.learning = 1
    c.target = _addr(data[sig.target]) if sig.target is not None else 0
    c.output_v = int(sig.output == "v")
    c.output_shift = int(sig.output_shift)
    c.vth_eff = fxp.effective_vth(pop.vth)
    if sig.surrogate is not None:
        c.surrogate = 1
        c.table = _addr(hold(np.asarray(sig.surrogate.table, dtype=np.int64)))
        c.table_len = len(sig.surrogate.table)
        c.sur_shift = int(sig.surrogate.shift)
        c.trace_mult = fxp.decay_multiplier(sig.trace_decay)
    for k, term in enumerate(sig.terms().values()):
        c.term[k] = -1 if term is None else SIGNAL_TERMS[term.factor]
        c.term_shift[k] = 0 if term is None else int(term.shift)


def _synapse_structs(learners, rec, batch: int, steps: int, every, out: dict, hold):
    """The kernel's view of every synapse (weights per learner) and the plastic weights it updates
    in place; adds the recorded traces and weight checkpoints to ``out``."""
    prog = learners[0]
    node = {p.name: i for i, p in enumerate(prog.spike_ports())}
    node.update({p.name: len(node) + i for i, p in enumerate(prog.populations)})
    pop_index = {p.name: i for i, p in enumerate(prog.populations)}
    syns = (_Syn * max(1, len(prog.synapses)))()
    finals = {}
    for i, syn in enumerate(prog.synapses):
        c = syns[i]
        ns, nt = int(np.prod(prog.source_shape(syn.source))), prog.population(syn.target).size
        c.src, c.tgt, c.n_src, c.n_tgt, c.wexp = node[syn.source], pop_index[syn.target], ns, nt, int(syn.weight_exp)
        mine = [learner.synapses[i] for learner in learners]
        if syn.learning is None:
            c.kind = 2 if syn.signal == "error" else 0
            w, c.w_stride = _per_learner([fxp.synapse_weights(s).T for s in mine], np.int32)  # [n_src, n_tgt]
            c.w = _addr(hold(w))
            continue
        c.kind = 1
        w = np.ascontiguousarray(np.stack([fxp.synapse_weights(s) for s in mine]), dtype=np.int32)
        finals[syn.name] = w  # updated in place by the kernel
        c.w, c.w_stride = _addr(w), ns * nt
        entries, c.keep_stride = _per_learner([-learning_entries(s).astype(np.int32) for s in mine], np.int32)
        c.keep = _addr(hold(entries))
        _plastic_fields(c, syn, [s.learning for s in mine], steps, hold)
        c.bap = int(bool(prog.population(syn.target).learning.bap))
        _plastic_outputs(c, syn, rec.get(syn.name, set()), (batch, steps, ns, nt), every, out)
    return syns, finals


def _plastic_outputs(c: _Syn, syn: Synapse, wanted: set, dims, every, out: dict) -> None:
    """The recorded traces (x per source, y per target) and weight checkpoints of ``syn``."""
    batch, steps, ns, nt = dims
    for k, var in enumerate(TRACE_VARIABLES):
        if var in wanted:
            arr = out[f"{syn.name}.{var}"] = np.empty((batch, steps, ns if var[0] == "x" else nt), np.int32)
            if var[0] == "x":
                c.x_out[k] = _addr(arr)
            else:
                c.y_out[k - 2] = _addr(arr)
    if every and "weights" in wanted:
        n_ckpt = checkpoint_count(steps, every)
        arr = out[f"{syn.name}.weights"] = np.zeros((batch, n_ckpt, nt, ns), np.int32)
        c.ckpt, c.ckpt_every, c.n_ckpt = _addr(arr), every, n_ckpt


def _plastic_fields(c: _Syn, syn: Synapse, rules, steps: int, hold) -> None:
    """The learning rule of plastic synapse ``syn`` (one rule per learner) into ``c``."""
    rule = syn.learning
    c.t_epoch = int(rule.t_epoch)
    k = rule.decimate_exponent()
    c.decimate = 0 if k is None else 2**k
    for j, (impulse, tau) in enumerate(((rule.x1_impulse, rule.x1_tau), (rule.x2_impulse, rule.x2_tau))):
        c.imp_whole[j], c.imp_frac[j] = engine.impulse_parts(impulse)
        c.tau_nonzero[j] = int(tau != 0)
    factors = engine.trace_decay_factors([rule.x1_tau, rule.x2_tau, engine.Y_TAU])
    c.x_factor[0], c.x_factor[1], c.y_factor = (float(f) for f in factors)
    lo, hi = WEIGHT_RANGE[syn.sign_mode]
    c.w_lo, c.w_hi = lo, hi
    c.acc_min = 0 if syn.sign_mode == "excitatory" else -INT32_MAX - 1
    c.acc_max = 0 if syn.sign_mode == "inhibitory" else INT32_MAX
    prods = (_Prod * len(rule.products))()
    for p, product in enumerate(rule.products):
        d = prods[p]
        d.dep = DEPENDENCIES.get(product.dependency, 2)
        d.n_factors = len(product.factors)
        widths = 0
        for f, factor in enumerate(product.factors):
            width = engine.FACTOR_WIDTH[factor.variable]
            widths += width
            d.var[f], d.cst[f] = VARIABLE_CODES[factor.variable], int(factor.constant)
            d.lo[f], d.hi[f] = -(2**width), 2**width - 1
        d.shift = max(0, widths + engine.MANTISSA_WIDTH - engine.ACCUMULATOR_WIDTH)
    c.n_prod, c.prod = len(rule.products), ctypes.addressof(hold(prods))
    scales = [[engine.lava_scale(p.mantissa, p.exponent) for p in r.products] for r in rules]
    mant = hold(np.array([[m for m, _ in row] for row in scales], dtype=np.int32))
    expo = hold(np.array([[e + 7 for _, e in row] for row in scales], dtype=np.int32))
    c.mant, c.expo = _addr(mant), _addr(expo)
    tables, rows = _draw_tables(rules, steps)
    c.x_decay, c.y_decay = _addr(hold(tables["x_decay"])), _addr(hold(tables["y_decay"]))
    c.x_imp, c.w_round = _addr(hold(tables["x_impulse"])), _addr(hold(tables["weight"]))
    c.draw_cols = tables["weight"].shape[1]
    c.draw_row = _addr(hold(rows))
