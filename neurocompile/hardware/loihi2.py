"""Loihi 2's resource limits: each a named constant with its value, its source and the date it was read.

Intel publishes few per-core figures for Loihi 2. Where the sources disagree, or are silent and a Loihi 1
figure stands in, a constant's ``note`` says so; the synaptic memory encoding is not published at all, so
the memory model (``SYNAPSES_PER_BLOCK`` to ``CONV_AXON_BITS``) is an estimate and says which one.
``docs/loihi2.md`` tabulates :data:`LIMITS` (``tools/bench_map.py`` writes the table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocompile.ir.program import MAX_DELAY, Population

READ = "2026-12-07"  # when the sources below were read

BRIEF = (
    "Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief (2021); its "
    "figures as open-neuromorphic.org's Loihi 2 page quotes them (6 x86 cores, 128 neuro cores, 1 million neurons, "
    "120 million synapses, graded spikes), the 192 KB per core as issue 24 cites it (the stored copies of the "
    "brief searched here stop before its table)"
)
HALA_POINT = (
    "Intel's Hala Point announcement (April 2024, as eenewseurope.com and guru3d.com report it): 1,152 Loihi 2 "
    "chips, 140,544 neuro cores, 1.15 billion neurons, 128 billion synapses"
)
DAVIES_2018 = "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), 2018"
NENGO_LOIHI = "nengo-loihi, nengo_loihi/block.py (Loihi 1)"
LAVA = "lava-nc 0.10.0 (installed)"
LOIHI2_UNPUBLISHED = "Loihi 2's value is not published: Loihi 1's is assumed"
REFERENCES = {
    "brief": BRIEF,
    "Hala Point": HALA_POINT,
    "Davies 2018": DAVIES_2018,
    "nengo-loihi": NENGO_LOIHI,
    "lava": LAVA,
}


@dataclass(frozen=True)
class Limit:
    """One limit or model parameter: ``value`` in ``unit``, where it comes from, and ``note``: where sources
    disagree or are silent, or what estimate it is."""

    name: str
    value: int
    unit: str
    source: str
    note: str = ""
    read: str = READ


# --- per core ---------------------------------------------------------------------------------------------

NEURONS_PER_CORE = Limit(
    "neurons per core",
    8192,
    "neurons",
    f"{HALA_POINT}: 140,544 x 8,192 = 1.151 billion; {BRIEF}: about 1 million neurons per chip",
    f"Loihi 1: 1,024 compartments per core ({DAVIES_2018}; {NENGO_LOIHI}: MAX_COMPARTMENTS)",
)
MEMORY_PER_CORE = Limit(
    "memory per core",
    192 * 1024 * 8,
    "bits",
    f"{BRIEF}: 192 KB per core, allocated flexibly between synapses and neuron state",
    f"read as KiB; Loihi 1: 128 KiB of synaptic memory ({NENGO_LOIHI}: MAX_SYNAPSE_BITS = 1,048,576) "
    "besides its neuron memory",
)
IN_AXONS_PER_CORE = Limit(
    "input axons per core (fan-in)",
    4096,
    "axons",
    f"{NENGO_LOIHI}: MAX_IN_AXONS; {DAVIES_2018}",
    LOIHI2_UNPUBLISHED,
)
OUT_AXONS_PER_CORE = Limit(
    "output axons per core (fan-out)",
    4096,
    "axons",
    f"{NENGO_LOIHI}: MAX_OUT_AXONS; {DAVIES_2018}",
    LOIHI2_UNPUBLISHED + " (Loihi 1's population axons, which share one axon among many targets, are not modelled)",
)
WEIGHT_BITS = Limit(
    "weight precision",
    8,
    "bits",
    f"{LAVA}: Dense, Sparse and Conv take num_weight_bits <= 8; PyDenseModelBitAcc weights precision=8, "
    "clip_weights to 8 bits and a sign mode",
    f"Loihi 1: 1 to 9 bits ({DAVIES_2018}, as issue 24 cites it); open-neuromorphic.org lists '<= 32-bit' for "
    "Loihi 2, apparently the graded spike payload",
)
MAX_DELAY_STEPS = Limit(
    "synaptic delay",
    MAX_DELAY,
    "steps",
    f"{LAVA}: DelayDense/DelaySparse delays precision=6 (0 to 63); neurocompile's compiler stops at "
    f"{MAX_DELAY} (ir.program.MAX_DELAY)",
    "the brief is silent on Loihi 2's delays",
)

# --- per chip and system ----------------------------------------------------------------------------------

CORES_PER_CHIP = Limit(
    "neuro cores per chip",
    128,
    "cores",
    f"{BRIEF}; {LAVA}: NUM_VIRTUAL_CORES_L2 = 128 (magma/compiler/subcompilers/constants.py)",
    "Hala Point's figures give 122 per chip (140,544 / 1,152): a system may expose fewer",
)
NEURONS_PER_CHIP = Limit(
    "neurons per chip",
    2**20,
    "neurons",
    f"{BRIEF}: '1 million'",
    "read as 128 x 8,192 = 2**20; Hala Point's figures give 122 cores x 8,192 = 999,424 per chip",
)
SYNAPSES_PER_CHIP = Limit(
    "synapses per chip",
    120_000_000,
    "synapses",
    f"{BRIEF}: 120 million; {HALA_POINT}: 111 million per chip",
    "counted as stored synapses; under the memory model below a chip holds about 25 million 8-bit dense "
    "synapses, so memory binds first: Intel's figure must count compressed encodings",
)
CHIPS_PER_SYSTEM = Limit(
    "chips per system",
    1152,
    "chips",
    HALA_POINT,
    f"the largest system; {LAVA} (magma/core/resources.py) names Oheo Gulch (1 chip) and Kapoho Point "
    "('four Loihi 2 chips')",
)
GRADED_SPIKE_BITS = Limit(
    "graded spike payload",
    32,
    "bits",
    BRIEF,
    "neurocompile's feedback synapses carry 24-bit errors; the stock LIF reads binary spikes",
)
EMBEDDED_CORES_PER_CHIP = Limit(
    "embedded x86 cores per chip",
    6,
    "cores",
    BRIEF,
    f"{LAVA}: MAX_EMBEDDED_CORES_PER_CHIP = 3; the map places no process on them",
)

# --- synaptic memory model (an estimate: Loihi 2's encoding is not published) ----------------------------

SYNAPSES_PER_BLOCK = Limit(
    "synapses per memory block",
    64,
    "synapses",
    f"{NENGO_LOIHI}: SynapseConfig.bits_per_axon, n_synapses = 63 (+1)",
    LOIHI2_UNPUBLISHED,
)
BLOCK_HEADER_BITS = Limit(
    "header of a memory block", 10, "bits", f"{NENGO_LOIHI}: 4 + 6 bits per block", LOIHI2_UNPUBLISHED
)
MEMORY_WORD_BITS = Limit(
    "memory word", 64, "bits", f"{NENGO_LOIHI}: a block rounds up to 64-bit words", LOIHI2_UNPUBLISHED
)
MIN_INDEX_BITS = Limit(
    "target index of a sparse synapse (least)",
    6,
    "bits",
    f"{NENGO_LOIHI}: INDEX_BITS_MAP, 6 to 12 bits",
    "at least log2 of the neurons on the core (13 bits for 8,192)",
)
NEURON_STATE_BITS = Limit(
    "neuron state",
    64,
    "bits per neuron",
    "our estimate: u and v (24 bits each) and the bias (13-bit mantissa, 3-bit exponent) of ir.program's Population",
    "Loihi 2 allocates neuron state flexibly; its LIF's layout is not published",
)
CONV_AXON_BITS = Limit(
    "input axon of a convolution",
    64,
    "bits per axon",
    "our estimate: one memory word per input axon, pointing into the kernel the core shares among its neurons",
    "Loihi 2's convolutional encoding is not published",
)

LIMITS = (
    NEURONS_PER_CORE,
    MEMORY_PER_CORE,
    IN_AXONS_PER_CORE,
    OUT_AXONS_PER_CORE,
    WEIGHT_BITS,
    MAX_DELAY_STEPS,
    CORES_PER_CHIP,
    NEURONS_PER_CHIP,
    SYNAPSES_PER_CHIP,
    CHIPS_PER_SYSTEM,
    GRADED_SPIKE_BITS,
    EMBEDDED_CORES_PER_CHIP,
    SYNAPSES_PER_BLOCK,
    BLOCK_HEADER_BITS,
    MEMORY_WORD_BITS,
    MIN_INDEX_BITS,
    NEURON_STATE_BITS,
    CONV_AXON_BITS,
)


@dataclass(frozen=True)
class Loihi2Limits:
    """The limits the mapper checks, as integers (defaults: the constants above). A smaller system or a
    what-if is ``dataclasses.replace(LOIHI2, chips_per_system=1)``."""

    neurons_per_core: int = NEURONS_PER_CORE.value
    memory_bits_per_core: int = MEMORY_PER_CORE.value
    in_axons_per_core: int = IN_AXONS_PER_CORE.value
    out_axons_per_core: int = OUT_AXONS_PER_CORE.value
    weight_bits: int = WEIGHT_BITS.value
    max_delay: int = MAX_DELAY_STEPS.value
    cores_per_chip: int = CORES_PER_CHIP.value
    neurons_per_chip: int = NEURONS_PER_CHIP.value
    synapses_per_chip: int = SYNAPSES_PER_CHIP.value
    chips_per_system: int = CHIPS_PER_SYSTEM.value


LOIHI2 = Loihi2Limits()


def extensions(pop: Population) -> list[str]:
    """What ``pop`` needs beyond Lava's stock ``LIFReset``, in words: on Loihi 2 a custom neuron model
    (microcode); in simulation ``backends/lava/processes.LIFExtended``."""
    found = ["resets by subtraction"] if pop.reset == "subtract" else []
    if pop.reset_timing != "same-step":
        found.append(f"resets with {pop.reset_timing.replace('-', ' ')} timing")
    if pop.payload_bits:
        found.append(f"sends graded spikes ({pop.payload_bits}-bit spike counts)")
    if pop.bias_onset > 0 and np.any(pop.bias_mant):
        found.append(f"adds its bias from step {pop.bias_onset}")
    return found
