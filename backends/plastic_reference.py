"""The CPU backend's plastic path as a NumPy loop over :mod:`neurocompile.semantics.learning_engine`: what
runs without a C compiler or for float programs, and the oracle of the C kernel (``docs/backends.md``)."""

from __future__ import annotations

import numpy as np

from neurocompile.backends.learners import TRACE_VARIABLES, checkpoint_count, learning_entries
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics import fixedpoint as fxp
from neurocompile.semantics import learning_engine as engine


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
    n_ckpt = checkpoint_count(steps, checkpoint_every)
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
    node, _, var = key.rpartition(".")  # node names may hold dots (a tonic source: "<population>.bias_source")
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
            s, v_pre = self._step(pop, a_in, bias)
            spikes[name] = s.astype(self.values)
            if pop.learning is not None:
                self._signal(pop, t, v_pre, s)
            out[f"{name}.spikes"][b, t] = s
            out[f"{name}.u"][b, t] = self.u[name]
            out[f"{name}.v"][b, t] = self.v[name]
        return spikes

    def _step(self, pop, a_in, bias):
        """One step of ``pop`` (its u and v updated): spikes, and v before the reset (a learning signal's input)."""
        name = pop.name
        u, v = self.u[name], self.v[name]
        if pop.reset_timing != "same-step":  # snnTorch's timings: a population that does not learn
            step = fxp.lif_fixed_step if self.fixed else fxp.lif_float_step
            s, self.u[name], self.v[name] = step(
                a_in, u, v, pop.du, pop.dv, pop.vth, bias, reset=pop.reset, **pop.firing()
            )
            return s, None
        if self.fixed:
            self.u[name], v_pre = fxp.lif_fixed_subthreshold(a_in, u, v, pop.du, pop.dv, bias)
            threshold = fxp.effective_vth(pop.vth) if pop.spiking else fxp.V_LIMIT
        else:  # v before reset: the float step with a threshold nothing reaches
            _, self.u[name], v_pre = fxp.lif_float_step(a_in, u, v, pop.du, pop.dv, np.inf, bias)
            threshold = float(pop.vth) if pop.spiking else np.inf
        s, self.v[name] = fxp.fire(v_pre, threshold, pop.reset, pop.payload_bits)
        return s, v_pre

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
