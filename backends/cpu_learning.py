"""The CPU backend's plastic path: independent learners, step by step (see ``backends/cpu.py``).

Batch entry b is learner b. Each learner runs the program's time loop on its own: neurons
(``fixedpoint.lif_fixed_subthreshold``, spike and reset), learning signals
(``learning_engine.learning_signal``), synapses (the activation of step t + 1 from the spikes of step t;
feedback synapses carry errors into third-factor inputs), and the learning engine of every plastic
synapse (``learning_engine.receive_traces`` and, every ``t_epoch`` steps, ``learning_engine.learn``; a sparse
synapse keeps its absent entries at 0). A float program uses the ``float_*`` versions.

Two implementations of that loop, the same numbers:

* ``kernels/plastic.c``: the whole loop in C, learners sliced over threads;
* :func:`reference_run`: a NumPy loop that calls the ``fixedpoint`` reference functions step by
  step (the C kernel's test oracle, and the path for what the kernel does not handle: float
  programs, conv or delayed static synapses, or no C compiler).
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from pathlib import Path

import numpy as np

from neurocompile.backends.base import check_inputs
from neurocompile.backends.native import build_library, run_sliced
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import FACTOR_VARIABLES
from neurocompile.ir.program import WEIGHT_RANGE, FixedPointProgram, Synapse
from neurocompile.ir.recording import Recording
from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics import learning_engine as engine

KERNEL_SOURCE = Path(__file__).parent / "kernels" / "plastic.c"
KERNEL_FLAGS = ["-ffp-contract=off"]  # f * h rounds to double before floor, as in NumPy
TRACE_VARIABLES = ("x1", "x2", "y1", "y2", "y3")
INT32_MAX = 2**31 - 1
_kernel = None  # None: not tried yet; False: unavailable; else the ctypes function


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


# --- learners --------------------------------------------------------------------------------


def learner_programs(programs) -> list[FixedPointProgram]:
    """Validated programs of a learner list; every one must have the structure of the first.

    Learners may differ only in synapse weights, rule seeds (``learning.rng_seed``) and product
    mantissas and exponents. Otherwise a one-line error names the first differing field.
    """
    programs = list(programs)
    if not programs:
        raise NeurocompileError("cpu backend: an empty list of programs (one program per learner)")
    for i, prog in enumerate(programs):
        if not isinstance(prog, FixedPointProgram):
            raise NeurocompileError(
                f"cpu backend: learner {i}: expected a FixedPointProgram, got {type(prog).__name__}"
            )
        prog.validate()
    for i, prog in enumerate(programs[1:], start=1):
        where = _structure_difference(programs[0], prog)
        if where is not None:
            raise NeurocompileError(
                f"cpu backend: learner {i}'s program differs from learner 0's in {where} "
                "(learners may differ only in weights, rng_seed and product mantissa/exponent)"
            )
    return programs


def _structure_difference(a: FixedPointProgram, b: FixedPointProgram) -> str | None:
    for name in ("number_format", "outputs", "inputs"):
        if getattr(a, name) != getattr(b, name):
            return f"'{name}'"
    if [p.name for p in a.populations] != [p.name for p in b.populations]:
        return "'populations'"
    for p, q in zip(a.populations, b.populations):
        for f in dataclasses.fields(p):
            if not _same(getattr(p, f.name), getattr(q, f.name)):
                return f"population '{p.name}' field '{f.name}'"
    if [s.name for s in a.synapses] != [s.name for s in b.synapses]:
        return "'synapses'"
    for s, r in zip(a.synapses, b.synapses):
        for f in dataclasses.fields(s):
            x, y = getattr(s, f.name), getattr(r, f.name)
            if f.name == "weights":
                x, y = np.shape(x), np.shape(y)
            if f.name == "learning" and x is not None and y is not None:
                x, y = _rule_structure(x), _rule_structure(y)
            if not _same(x, y):
                return f"synapse '{s.name}' field '{f.name}'"
    return None


def _rule_structure(rule):
    """A rule without what learners may vary: seed, product mantissas and exponents."""
    products = tuple(dataclasses.replace(p, mantissa=0, exponent=0) for p in rule.products)
    return dataclasses.replace(rule, rng_seed=0, products=products)


def _same(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return x is not None and y is not None and np.shape(x) == np.shape(y) and np.array_equal(x, y)
    return x == y


def learning_entries(syn: Synapse, number_format: str = "fixed") -> np.ndarray:
    """Where a plastic synapse learns: everywhere (dense), or at a sparse synapse's stored entries,
    the weights that are nonzero after the first-step truncation (Lava's LearningSparse)."""
    w0 = fxp.synapse_weights(syn, number_format)
    return w0 != 0 if syn.kind == "sparse" else np.ones(w0.shape, dtype=bool)


# --- the runner ------------------------------------------------------------------------------


class PlasticRunner:
    """Runs a plastic program for independent learners (``programs``: one per learner, or one for all)."""

    def __init__(self, programs: list[FixedPointProgram], shared: bool):
        self.programs = programs
        self.program = programs[0]
        self.shared = shared  # one program for every learner of a batch
        prog = self.program
        for syn in prog.synapses:
            if prog.number_format == "float" and syn.kind == "conv":
                raise NeurocompileError(f"cpu backend: conv synapse '{syn.name}' in a plastic float program")
        self.n = {p.name: int(np.prod(p.shape)) for p in prog.inputs}
        self.n.update({p.name: p.size for p in prog.populations})
        for syn in prog.synapses:
            if syn.kind != "conv" and np.shape(syn.weights) != (self.n[syn.target], self.n[syn.source]):
                raise NeurocompileError(
                    f"synapse '{syn.name}': weights shape {np.shape(syn.weights)} != "
                    f"({self.n[syn.target]}, {self.n[syn.source]})"
                )
        self.kernel_reason = self._kernel_obstacle()

    def _kernel_obstacle(self) -> str | None:
        """Why the C kernel cannot run this program (None: it can)."""
        if self.program.number_format == "float":
            return "a float program"
        for pop in self.program.populations:
            if pop.reset == "subtract":
                return f"population '{pop.name}' resets by subtraction"
        for syn in self.program.synapses:
            if syn.kind == "conv":
                return f"conv synapse '{syn.name}'"
            if syn.delays is not None and np.any(syn.delays):
                return f"delays on synapse '{syn.name}'"
            if syn.signal != "error" and 256 * self.n[syn.source] > INT32_MAX:
                return f"synapse '{syn.name}' has too many sources for int32 sums"
        return None

    def inputs(self, inputs) -> tuple[dict[str, np.ndarray], int, int]:
        """Checked inputs: spike ports binary (uint8), target ports int32 integers ([B, T, n] each)."""
        prog = self.program
        ports = [(p.name, tuple(p.shape)) for p in prog.inputs]
        targets = frozenset(p.name for p in prog.inputs if p.kind == "target")
        arrays, batch, steps = check_inputs(ports, inputs, binary=True, backend="cpu", graded=targets)
        out = {}
        for port in prog.inputs:
            arr = arrays[port.name].reshape(batch, steps, -1)
            dtype = np.int32 if port.kind == "target" else np.uint8
            out[port.name] = np.ascontiguousarray(arr if port.kind == "target" else arr != 0, dtype=dtype)
        if not self.shared and batch != len(self.programs):
            raise NeurocompileError(
                f"cpu backend: {len(self.programs)} programs (one per learner) but a batch of {batch} input streams"
            )
        return out, batch, steps

    def run(self, inputs, record=None, checkpoint_every: int | None = None) -> Recording:
        start = time.perf_counter()
        if checkpoint_every is not None and (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, (int, np.integer))
            or checkpoint_every < 1
        ):
            raise NeurocompileError(f"cpu backend: checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
        checkpoint_every = None if checkpoint_every is None else int(checkpoint_every)
        data, batch, steps = self.inputs(inputs)
        rec = self.program.recorded_variables(record)
        learners = self.programs * batch if self.shared else self.programs
        kernel = load_kernel() if self.kernel_reason is None else None
        if kernel is not None:
            arrays, finals = _kernel_run(kernel, learners, data, batch, steps, rec, checkpoint_every)
        else:
            arrays, finals = reference_run(learners, data, steps, rec, checkpoint_every)
        prog = self.program
        recording = {}
        for node, variables in rec.items():
            for var in sorted(variables):
                key = f"{node}.{var}"
                if node in data:
                    recording[key] = data[node].reshape(batch, steps, *prog.source_shape(node))
                elif var in ("spikes", "u", "v"):
                    recording[key] = arrays[key].reshape(batch, steps, *prog.source_shape(node))
                elif key in arrays:  # weights only with checkpoint_every
                    recording[key] = arrays[key]
        meta = {
            "schedule": "plastic",
            "number_format": prog.number_format,
            "learning_kernel": "c" if kernel is not None else "reference",
            "batch": batch,
            "steps": steps,
            "learners": batch,
            "spike_rate": {p.name: float(arrays[f"{p.name}.spikes"].mean()) for p in prog.populations},
            "input_rate": {p.name: float(data[p.name].mean()) for p in prog.spike_ports()},
            "programs": [learners[b].with_weights({name: w[b] for name, w in finals.items()}) for b in range(batch)],
        }
        if kernel is None:
            meta["learning_kernel_reason"] = self.kernel_reason or "the C kernel could not be built"
        if checkpoint_every:
            meta["checkpoint_steps"] = list(range(checkpoint_every, steps + 1, checkpoint_every))
        meta["wall_s"] = time.perf_counter() - start
        return Recording(recording, list(prog.outputs), "cpu", meta)


def _checkpoint_count(steps: int, every: int | None) -> int:
    return steps // every if every else 0


# --- the reference loop ----------------------------------------------------------------------


def reference_run(learners, data, steps, rec, checkpoint_every=None) -> tuple[dict, dict]:
    """The plastic loop in NumPy over the ``fixedpoint`` reference functions, learner by learner.

    ``learners``: one program per batch entry; ``data``: {port: [B, T, n]}. Returns
    ``({"<node>.<var>": array}, {plastic synapse: final weights [B, n_post, n_pre]})``, arrays as
    :meth:`PlasticRunner.run` records them (populations [B, T, n]; plastic traces [B, T, n];
    ``<syn>.weights`` [B, n_checkpoints, n_post, n_pre] with ``checkpoint_every``). A float program
    runs Lava's floating_pt arithmetic (``lif_float_step``, ``float_learning_signal``,
    ``float_receive_traces``, ``float_learn``).
    """
    batch = len(learners)
    prog = learners[0]
    values = np.int32 if prog.number_format == "fixed" else np.float64
    plastic = [s for s in prog.synapses if s.learning is not None]
    n = {p.name: int(np.prod(p.shape)) for p in prog.inputs} | {p.name: p.size for p in prog.populations}
    n_ckpt = _checkpoint_count(steps, checkpoint_every)
    out = {}
    for pop in prog.populations:
        out[f"{pop.name}.spikes"] = np.zeros((batch, steps, pop.size), np.uint8)
        for var in ("u", "v"):
            out[f"{pop.name}.{var}"] = np.zeros((batch, steps, pop.size), values)
    for syn in plastic:
        for var in TRACE_VARIABLES:
            out[f"{syn.name}.{var}"] = np.zeros((batch, steps, n[syn.source if var[0] == "x" else syn.target]), values)
        if checkpoint_every:
            out[f"{syn.name}.weights"] = np.zeros((batch, n_ckpt, n[syn.target], n[syn.source]), values)
    finals = {syn.name: np.zeros((batch, n[syn.target], n[syn.source]), values) for syn in plastic}
    for b, learner in enumerate(learners):
        _reference_learner(learner, {k: v[b] for k, v in data.items()}, steps, checkpoint_every, out, finals, b)
    return {k: v for k, v in out.items() if _wanted(k, rec)}, finals


def _wanted(key: str, rec: dict) -> bool:
    node, _, var = key.partition(".")
    return var in rec.get(node, ()) or var == "spikes"


def _reference_learner(prog: FixedPointProgram, data, steps, every, out, finals, b) -> None:
    """Learner ``b`` of a batch, step by step in NumPy, into row ``b`` of ``out`` and ``finals``."""
    run = _ReferenceRun(prog, data, steps)
    for t in range(steps):
        spikes = run.neurons(t, out, b)
        run.deliver(spikes)
        run.learn(t, spikes, out, b, every)
    for name, st in run.state.items():
        finals[name][b] = st.weights


class _ReferenceRun:
    """The state of one learner in the reference loop; each method is one phase of a time step."""

    def __init__(self, prog: FixedPointProgram, data, steps: int):
        self.prog, self.data = prog, data
        self.fixed = prog.number_format == "fixed"
        self.values = values = np.int64 if self.fixed else np.float64
        pops = prog.populations
        self.spike_in = {p.name: data[p.name].astype(values) for p in prog.spike_ports()}
        self.u, self.v, self.psi, self.err = ({p.name: np.zeros(p.size, values) for p in pops} for _ in range(4))
        self.y = {p.name: np.zeros((3, p.size), values) for p in pops}
        self.third = {p.name: np.zeros(p.size, values) for p in pops}
        self.bias = {p.name: np.broadcast_to(_bias(p, self.fixed), p.shape).reshape(-1) for p in pops}
        horizon = 1 + max([int(np.max(s.delays)) for s in prog.synapses if s.delays is not None] + [0])
        self.pending = {p.name: np.zeros((horizon, p.size), values) for p in pops}
        self.static = {s.name: fxp.synapse_weights(s, prog.number_format) for s in prog.synapses if s.learning is None}
        self.state, self.draws, self.entries = {}, {}, {}
        for s in prog.synapses:
            if s.learning is not None:
                w0 = fxp.synapse_weights(s, prog.number_format)
                self.state[s.name] = engine.PlasticState(w0, *w0.shape, number_format=prog.number_format)
                self.draws[s.name] = engine.learning_randoms(s.learning.rng_seed, steps)
                self.entries[s.name] = learning_entries(s, prog.number_format)

    def send(self, weights, x, weight_exp):
        """What a dense synapse sends for ``x`` (spikes, or errors on a feedback synapse)."""
        return fxp.scale_activation(weights @ x, weight_exp) if self.fixed else weights @ x

    def neurons(self, t: int, out: dict, b: int) -> dict:
        """Every population's step ``t`` (and its learning signal); returns the spikes of every node."""
        spikes = {name: x[t] for name, x in self.spike_in.items()}
        for pop in self.prog.populations:
            name = pop.name
            a_in = self.pending[name][0]
            self.pending[name] = np.roll(self.pending[name], -1, axis=0)
            self.pending[name][-1] = 0
            if fxp.reset_due(t, pop.reset_interval):
                self.u[name], self.v[name] = np.zeros_like(self.u[name]), np.zeros_like(self.v[name])
            bias = self.bias[name] if fxp.bias_active(t, pop.bias_onset) else np.zeros_like(self.bias[name])
            if self.fixed:
                self.u[name], v_pre = fxp.lif_fixed_subthreshold(a_in, self.u[name], self.v[name], pop.du, pop.dv, bias)
                threshold = fxp.effective_vth(pop.vth) if pop.spiking else fxp.V_LIMIT
            else:  # v before reset: the float step with a threshold nothing reaches
                _, self.u[name], v_pre = fxp.lif_float_step(
                    a_in, self.u[name], self.v[name], pop.du, pop.dv, np.inf, bias
                )
                threshold = float(pop.vth) if pop.spiking else np.inf
            s, self.v[name] = fxp.fire(v_pre, threshold, pop.reset)
            spikes[name] = s.astype(self.values)
            if pop.learning is not None:
                self._signal(pop, t, v_pre, s)
            out[f"{name}.spikes"][b, t] = s
            out[f"{name}.u"][b, t] = self.u[name]
            out[f"{name}.v"][b, t] = self.v[name]
        return spikes

    def _signal(self, pop, t: int, v_pre, s) -> None:
        sig, name = pop.learning, pop.name
        third_in = self.data[sig.target][t].astype(self.values) if sig.target is not None else self.third[name]
        signal = engine.learning_signal if self.fixed else engine.float_learning_signal
        self.y[name], self.err[name], self.psi[name] = signal(sig, v_pre, s, third_in, self.psi[name], pop.vth)

    def deliver(self, spikes: dict) -> None:
        """Every synapse sends this step's spikes (errors, on feedback synapses) on their way."""
        self.third = {p.name: np.zeros(p.size, self.values) for p in self.prog.populations}
        for syn in self.prog.synapses:
            pending = self.pending[syn.target]
            if syn.signal == "error":
                third = self.third[syn.target] + self.send(self.static[syn.name], self.err[syn.source], syn.weight_exp)
                self.third[syn.target] = fxp.wrap_bits(third, fxp.CHANNEL_BITS) if self.fixed else third
            elif syn.learning is not None:
                pending[0] += self.send(self.state[syn.name].weights, spikes[syn.source], syn.weight_exp)
            elif syn.kind == "conv":  # fixed point only (see PlasticRunner)
                g = syn.conv
                src = spikes[syn.source].reshape(g.input_shape)
                sent = fxp.conv_activation(src, self.static[syn.name], g.stride, g.padding, g.dilation, g.groups)
                pending[0] += sent.reshape(-1)
            else:
                delays = np.zeros(np.shape(syn.weights), np.int64) if syn.delays is None else syn.delays
                for d in np.unique(delays):
                    w_d = np.where(delays == d, self.static[syn.name], 0)
                    pending[d] += self.send(w_d, spikes[syn.source], syn.weight_exp)

    def learn(self, t: int, spikes: dict, out: dict, b: int, every) -> None:
        """Traces and, at the end of an epoch, the weight update of every plastic synapse."""
        k = t + 1
        for syn in self.prog.synapses:
            if syn.learning is None:
                continue
            st, rule, name = self.state[syn.name], syn.learning, syn.name
            bap = spikes[syn.target] if self.prog.population(syn.target).learning.bap else np.zeros(st.y.shape[1])
            receive = engine.receive_traces if self.fixed else engine.float_receive_traces
            receive(st, rule, spikes[syn.source], bap, self.y[syn.target], k)
            if k % rule.t_epoch == 0:
                if self.fixed:
                    engine.learn(st, rule, self.draws[name], k, syn.sign_mode)
                else:
                    engine.float_learn(st, rule, k, syn.sign_mode)
                st.weights = np.where(self.entries[name], st.weights, 0)
            for i, var in enumerate(("x1", "x2")):
                out[f"{name}.{var}"][b, t] = st.x[i]
            for i, var in enumerate(("y1", "y2", "y3")):
                out[f"{name}.{var}"][b, t] = st.y[i]
            if every and k % every == 0:
                out[f"{name}.weights"][b, k // every - 1] = st.weights


def _bias(pop, fixed: bool):
    return fxp.effective_bias(pop.bias_mant, pop.bias_exp) if fixed else np.asarray(pop.bias_mant, np.float64)


# --- the C kernel ----------------------------------------------------------------------------

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
_draw_cache: dict = {}  # the tables of the last run (when small): repeated runs reuse them


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


def _kernel_run(kernel, learners, data, batch, steps, rec, every) -> tuple[dict, dict]:
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
        n_ckpt = _checkpoint_count(steps, every)
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
