"""The normalized graph for Lava's ``floating_pt`` models: the fixed-point mapping without rounding."""

from __future__ import annotations

import numpy as np

from neurocompile.compiler.lif_mapping import (
    Dynamics,
    check_lava_convention,
    lava_threshold,
    layer_of,
    program_of,
    reset_of,
    tonic_population,
)
from neurocompile.errors import HardwareLimitError
from neurocompile.ir.normalized import NormalizedGraph, NormalizedPopulation
from neurocompile.ir.program import MAX_PAYLOAD_BITS, FixedPointProgram, Population, Synapse
from neurocompile.semantics.discretization import Convention


def float_program(normalized: NormalizedGraph) -> FixedPointProgram:
    """The normalized graph for Lava's ``floating_pt`` models: the same mapping, without rounding.

    Same dataclasses as the fixed-point program, with ``number_format="float"``:
    ``du``/``dv`` are the per-step decay fractions (``a_u``, ``a_v``), weights are the float v
    increments per spike (``gain * w``), ``vth`` is ``v_threshold`` and ``bias_mant`` the float v
    increment per step. Lava's float LIF then follows the discretization contract exactly, each
    synapse one step later (``backends/lava/backend.py``).
    """
    conv = normalized.convention
    check_lava_convention(conv)
    populations, synapses = [], []
    for pop in normalized.populations:
        layer = layer_of(normalized, pop)
        dyn = layer.dyn
        if dyn.bias_x is not None:
            populations.append(tonic_population(pop.name, "float"))
        populations.append(_float_population(pop, dyn, conv))
        for syn, weights in zip(layer.incoming, layer.w_effs):
            delays = syn.delays
            if dyn.extra_delay:
                delays = (np.zeros(syn.weights.shape, dtype=np.int64) if delays is None else delays) + dyn.extra_delay
            synapses.append(
                Synapse(
                    syn.name,
                    syn.source,
                    syn.target,
                    syn.kind,
                    np.asarray(weights),
                    delays=delays,
                    conv=syn.conv,
                    recurrent=syn.recurrent,
                )
            )
    return program_of(normalized, populations, synapses, number_format="float").validate()


def _float_population(pop: NormalizedPopulation, dyn: Dynamics, conv: Convention) -> Population:
    vth = float(np.inf)
    if pop.spiking:
        v_th = lava_threshold(pop, conv)
        if not np.allclose(v_th, v_th[0], rtol=1e-6):
            raise HardwareLimitError(
                "differs across neurons; Lava LIF has one threshold per population", pop.name, "v_threshold"
            )
        vth = float(v_th[0])
    return Population(
        name=pop.name,
        shape=tuple(pop.shape),
        du=dyn.a_u,
        dv=dyn.a_v,
        vth=vth,
        bias_mant=dyn.bias_v.reshape(pop.shape),
        spiking=pop.spiking,
        source_type=pop.type,
        **reset_of(pop, conv),
        payload_bits=MAX_PAYLOAD_BITS if conv.spikes_per_step == "multi" and pop.spiking else 0,
    )
