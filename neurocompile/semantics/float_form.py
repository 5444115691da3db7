"""The float program that an integer program stands for: what Lava's ``floating_pt`` models run."""

from __future__ import annotations

import copy

import numpy as np

from neurocompile.semantics.fixedpoint import (
    ACT_SHIFT,
    DECAY_UNITY,
    U_DECAY_OFFSET,
    V_DECAY_OFFSET,
    effective_vth,
    effective_weights,
)
from neurocompile.semantics.learning_engine import float_rule


def float_program_of(program):
    """The float program an integer program stands for: what Lava's ``floating_pt`` models run.

    Decays ``(du + 1) / 4096`` and ``dv / 4096``; threshold ``vth << 6`` (``inf`` for a readout);
    bias ``bias_mant * 2**bias_exp``; dense/sparse weights as Lava multiplies them
    (:func:`effective_weights`), conv weights as they are, times ``2**weight_exp * 64`` (the
    ``<< 6`` of the synaptic input), so ``v`` keeps its register units. A feedback synapse carries
    errors, not ``v`` increments: no ``* 64``. Learning rules become :func:`float_rule`. A float
    program is returned as it is.
    """

    if program.number_format == "float":
        return program
    floats = copy.deepcopy(program)
    floats.number_format = "float"
    for pop in floats.populations:
        pop.du = (int(pop.du) + U_DECAY_OFFSET) / DECAY_UNITY
        pop.dv = (int(pop.dv) + V_DECAY_OFFSET) / DECAY_UNITY
        pop.vth = float(effective_vth(pop.vth)) if pop.spiking else float("inf")
        pop.bias_mant = np.asarray(pop.bias_mant, dtype=np.float64) * 2.0 ** int(pop.bias_exp)
        pop.bias_exp = 0
    for syn in floats.synapses:
        kind = "conv" if syn.kind == "conv" else "dense"
        weights = (
            np.asarray(syn.weights)
            if kind == "conv"
            else effective_weights(syn.weights, 0, syn.num_weight_bits, syn.sign_mode)
        )
        scale = 2.0 ** int(syn.weight_exp) * (1 if syn.signal == "error" else 2**ACT_SHIFT)
        if syn.learning is not None:
            syn.learning = float_rule(syn.learning, int(syn.weight_exp) + ACT_SHIFT)
        syn.weights = weights.astype(np.float64) * scale
        syn.weight_exp = 0
    return floats.validate()
