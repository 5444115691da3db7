"""The Lava process graph of a learning stream: plastic synapses as ``LearningDense``/``LearningSparse``
with Loihi's three-factor rules, fed by the learning neurons' bAP and y ports."""

from __future__ import annotations

import numpy as np

from neurocompile.backends.lava.lowering import lower_taps
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import lava_rule_string
from neurocompile.ir.program import Synapse
from neurocompile.semantics import fixedpoint as fxp


class LearningGraph:
    """The Lava process graph of one learning stream (see :meth:`LavaBackend._learn`); ``backend`` is
    the :class:`~neurocompile.backends.lava.backend.LavaBackend` that lowers its static parts."""

    def __init__(self, backend, data: dict[str, np.ndarray], steps: int):
        from lava.proc.io.source import RingBuffer

        from neurocompile.backends.lava.processes import LearningNeuron

        self.backend = backend
        prog = backend.program
        for syn in prog.synapses:
            if (syn.learning is not None or syn.signal == "error") and any(
                len(prog.source_shape(end)) > 1 for end in (syn.source, syn.target)
            ):
                raise NeurocompileError(f"lava backend: plastic synapse '{syn.name}' needs flat (1-D) endpoints")
        sources = {port.name: RingBuffer(data=data[port.name]).s_out for port in prog.inputs}
        self.pops = {}
        for pop in prog.populations:
            if pop.learning is None:
                self.pops[pop.name] = backend.lower_population(pop, steps)
                continue
            params = backend.population_params(pop)
            neuron = LearningNeuron(
                signal=pop.learning,
                reset_interval=int(pop.reset_interval),
                bias_onset=int(pop.bias_onset),
                name=pop.name,
                **params,
            )
            self.pops[pop.name] = neuron
            if pop.learning.target is not None:
                sources[pop.learning.target].connect(neuron.a_third_factor_in)
        sources.update({name: proc.s_out for name, proc in self.pops.items()})
        self.plastic = {}
        for syn in prog.synapses:
            dst = self.pops[syn.target]
            if syn.signal == "error":
                self._lower_feedback(syn, self.pops[syn.source], dst)
            elif syn.learning is not None:
                self.plastic[syn.name] = self._lower_plastic(syn, sources[syn.source], dst)
            else:
                backend.lower_synapse(syn, sources[syn.source], dst.a_in)

    def _lower_plastic(self, syn: Synapse, src, dst):
        """Plastic synapse -> ``LearningDense`` (``LearningSparse``) with a ``Loihi3FLearningRule``,
        fed by the target neuron's bAP and y1-y3 ports."""
        from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
        from lava.proc.dense.process import LearningDense
        from lava.proc.sparse.process import LearningSparse

        rule = syn.learning
        lava_rule = Loihi3FLearningRule(
            dw=lava_rule_string(rule),
            x1_impulse=float(rule.x1_impulse),
            x1_tau=int(rule.x1_tau),
            x2_impulse=float(rule.x2_impulse),
            x2_tau=int(rule.x2_tau),
            t_epoch=int(rule.t_epoch),
            rng_seed=int(rule.rng_seed),
        )
        weights, kw = self.backend.matrix_weights(syn, np.asarray(syn.weights))
        if syn.kind == "sparse":
            from scipy.sparse import csr_matrix

            # Lava truncates the weights at the first step and drops the entries that become zero:
            # truncating first keeps the stored entries, and so the tap's length, fixed.
            if self.backend.fixed:
                weights = fxp.effective_weights(weights, 0, syn.num_weight_bits, syn.sign_mode).astype(np.int32)
            weights = csr_matrix(weights)
            weights.sort_indices()
            conn = LearningSparse(weights=weights, learning_rule=lava_rule, name=syn.name, **kw)
        else:
            conn = LearningDense(weights=weights, learning_rule=lava_rule, name=syn.name, **kw)
        src.connect(conn.s_in)
        conn.a_out.connect(dst.a_in)
        dst.s_out_bap.connect(conn.s_in_bap)
        dst.s_out_y1.connect(conn.s_in_y1)
        dst.s_out_y2.connect(conn.s_in_y2)
        dst.s_out_y3.connect(conn.s_in_y3)
        return conn

    def _lower_feedback(self, syn: Synapse, src, dst) -> None:
        """Feedback synapse -> a graded ``Dense`` from the source's ``error_out`` to the target's
        third-factor input (one step of delay, like every Dense)."""
        from lava.proc.dense.process import Dense

        weights, kw = self.backend.matrix_weights(syn, np.asarray(syn.weights))
        conn = Dense(weights=weights, num_message_bits=24, name=syn.name, **kw)
        src.error_out.connect(conn.s_in)
        conn.a_out.connect(dst.a_third_factor_in)

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights of every plastic synapse as dense [n_post, n_pre] arrays (``Var.get``)."""
        found = {}
        for name, conn in self.plastic.items():
            values = conn.weights.get()
            if hasattr(values, "toarray"):
                values = values.toarray()
            found[name] = np.asarray(values)
        return found

    def taps(self, spec: dict[str, set[str]], steps: int) -> dict:
        """Recorders: population taps as for inference, plus the traces and y values of plastic
        synapses, every step."""
        from neurocompile.backends.lava.processes import StateTap

        pops = {name: vars_ for name, vars_ in spec.items() if name in self.pops}
        taps = lower_taps(self.pops, pops, steps)
        buffer = max(2, min(steps, 64))
        for name, variables in spec.items():
            conn = self.plastic.get(name)
            for var in sorted(variables) if conn is not None else ():
                if var != "weights":  # weights: read between chunks of steps (see LavaBackend._learn)
                    taps[(name, var)] = StateTap(getattr(conn, var), buffer_size=buffer)
        return taps
