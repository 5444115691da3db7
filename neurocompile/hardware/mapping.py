"""Partition a fixed-point program onto Loihi 2's neuro cores and chips, with design-rule checks.

:func:`map_program` checks the design rules first: a fixed-point program, weights within the synapse's
precision, delays within the limit. Then, per population (a layer), the resources of one neuron alone: its
fan-in (input axons), its synaptic memory and its fan-out (output axons); what no partition can split is
refused in one line naming the layer, the limit and the value (:class:`~neurocompile.errors.HardwareLimitError`,
exit code 2 in the CLI). Each population takes the fewest cores (bisection over the count) such that every
core, holding an equal contiguous range of its neurons, fits its neurons, its memory (the synapses into
them, :mod:`~neurocompile.hardware.connectivity`, plus neuron state), its input axons and its output axons.
Output axons depend on how the targets are split, so populations whose cores send too many are split
further until nothing changes. Cores fill chips in program order; a network that needs more chips than the
system has is refused. Input ports take no neuro core (the host or the embedded cores send their spikes),
but their spikes take input axons. What stock Loihi 2 models cannot run is information, not an error
(:func:`custom_needs`). docs/loihi2.md: the limits, the method and the command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from neurocompile.errors import HardwareLimitError, NeurocompileError
from neurocompile.files import plain
from neurocompile.hardware.connectivity import Usage, connectivity
from neurocompile.hardware.loihi2 import LOIHI2, NEURON_STATE_BITS, Loihi2Limits, extensions
from neurocompile.ir.program import FixedPointProgram, Population, Synapse

TARGETS = ("loihi2",)
RESOURCES = ("neurons", "memory", "input axons", "output axons")
# What a neuron alone exceeds, as the parameter and the message of the error that refuses its layer.
REFUSALS = {
    "neurons": ("neurons", "a core holds {limit} neurons, not one"),
    "input axons": ("fan-in", "{value} inputs per neuron; a Loihi 2 core has {limit} input axons"),
    "memory": ("memory", "one neuron's synapses and state take {value} bits; a Loihi 2 core has {limit}"),
    "output axons": ("fan-out", "a neuron sends to {value} cores; a Loihi 2 core has {limit} output axons"),
}


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


@dataclass
class CoreAssignment:
    """One neuro core: neurons ``start:stop`` (flat, C order) of population ``layer``, at position ``core``
    of chip ``chip``; what it holds; ``utilization``: the largest fraction of a resource it uses, ``bound_by``."""

    chip: int
    core: int
    layer: str
    start: int
    stop: int
    memory_bits: int
    in_axons: int
    out_axons: int
    stored_synapses: int
    connections: int
    utilization: float
    bound_by: str

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass
class LayerMap:
    """One population on its cores: totals, the most any of its cores holds, their mean utilization, the
    resource that bounds them, and what stock Loihi 2 models lack for it (``needs``; empty: stock)."""

    name: str
    neurons: int
    cores: int
    connections: int
    stored_synapses: int
    max_memory_bits: int
    max_in_axons: int
    max_out_axons: int
    utilization: float
    bound_by: str  # "-": one core
    needs: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return "custom" if self.needs else "stock"


@dataclass
class ResourceMap:
    """A program on a target: its layers, every core, the chips, and one note per element stock models
    cannot run. The plain data an energy or latency estimate starts from."""

    target: str
    limits: Loihi2Limits
    layers: list[LayerMap]
    cores: list[CoreAssignment]
    chips: int
    notes: list[str]

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def connections(self) -> int:
        return sum(layer.connections for layer in self.layers)

    @property
    def utilization(self) -> float:
        """Mean utilization over the cores."""
        return float(np.mean([core.utilization for core in self.cores])) if self.cores else 0.0

    def summary(self) -> str:
        return (
            f"{self.target}: {_count(len(self.cores), 'neuro core')} on {_count(self.chips, 'chip')} "
            f"(the system has {self.limits.chips_per_system:,}), {_count(self.neurons, 'neuron')}, "
            f"{_count(self.connections, 'synapse')}, mean core utilization {self.utilization:.0%}"
        )

    def table(self) -> str:
        """The layers as a table, the summary, then the notes."""
        head = (
            f"{'layer':<20} {'neurons':>9} {'cores':>6} {'synapses':>12} {'KiB/core':>9} {'in-axons':>8} "
            f"{'out-axons':>9} {'use':>5}  {'bound by':<12} model"
        )
        rows = [head, "-" * len(head)]
        for layer in self.layers:
            rows.append(
                f"{layer.name[:20]:<20} {layer.neurons:>9,} {layer.cores:>6,} {layer.connections:>12,} "
                f"{layer.max_memory_bits / 8192:>9.1f} {layer.max_in_axons:>8,} {layer.max_out_axons:>9,} "
                f"{layer.utilization:>5.0%}  {layer.bound_by:<12} {layer.model}"
            )
        return "\n".join([*rows, self.summary(), *self.notes])

    def to_dict(self) -> dict:
        return plain(
            {
                "target": self.target,
                "chips": self.chips,
                "cores": len(self.cores),
                "neurons": self.neurons,
                "synapses": self.connections,
                "utilization": self.utilization,
                "limits": asdict(self.limits),
                "layers": [asdict(layer) | {"model": layer.model} for layer in self.layers],
                "core_map": [asdict(core) for core in self.cores],
                "notes": self.notes,
            }
        )


# --- design rules -------------------------------------------------------------------------------------------


def weight_range(sign_mode: str, bits: int) -> tuple[int, int]:
    """The weights a synapse of ``bits`` bits holds in a sign mode (8 bits: ``ir.program.WEIGHT_RANGE``)."""
    top = 2**bits - 1
    return {"mixed": (-(2**bits), top), "excitatory": (0, top), "inhibitory": (-top, 0)}[sign_mode]


def _check_weights(syn: Synapse, limits: Loihi2Limits) -> None:
    if syn.num_weight_bits > limits.weight_bits:
        raise HardwareLimitError(
            f"{syn.num_weight_bits} bits; a Loihi 2 synapse holds {limits.weight_bits}", syn.name, "num_weight_bits"
        )
    lo, hi = weight_range(syn.sign_mode, limits.weight_bits)
    low, high = int(np.min(syn.weights, initial=0)), int(np.max(syn.weights, initial=0))
    if low < lo or high > hi:
        raise HardwareLimitError(
            f"weight {low if low < lo else high} is outside {lo}..{hi}, the range of a Loihi 2 synapse "
            f"({limits.weight_bits} bits, {syn.sign_mode})",
            syn.name,
            "weights",
        )


def _check_delays(syn: Synapse, limits: Loihi2Limits) -> None:
    longest = int(np.max(syn.delays, initial=0)) if syn.delays is not None else 0
    if longest > limits.max_delay:
        raise HardwareLimitError(
            f"delay of {longest} steps exceeds the {limits.max_delay} of a Loihi 2 synapse", syn.name, "delays"
        )


def check_design_rules(program: FixedPointProgram, limits: Loihi2Limits = LOIHI2) -> None:
    """Refuse, in one line, what no partition can hold: floating-point values, weights beyond the synapse's
    precision, delays beyond the limit."""
    if program.number_format != "fixed":
        raise NeurocompileError(
            f"program: number_format '{program.number_format}'; Loihi 2's neuro cores run fixed-point programs"
        )
    for syn in program.synapses:
        _check_weights(syn, limits)
        _check_delays(syn, limits)


def custom_needs(program: FixedPointProgram) -> list[tuple[str, str, str]]:
    """``(kind, name, what)`` for every element stock Loihi 2 models cannot run: populations with neurocompile's
    LIF extensions or a learning neuron, graded target inputs, feedback synapses carrying graded errors."""
    found = [("input", port.name, "streams graded targets") for port in program.inputs if port.kind == "target"]
    for pop in program.populations:
        needs = extensions(pop) + (["is a learning neuron"] if pop.learning is not None else [])
        found += [("population", pop.name, need) for need in needs]
    found += [("synapse", syn.name, "carries graded errors") for syn in program.synapses if syn.signal == "error"]
    return found


# --- partition ----------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """A population while it is partitioned: the counting objects of the synapses into and out of it, its
    core boundaries and the cumulative output axons of its neurons (None: it sends to no population)."""

    pop: Population
    incoming: list = field(default_factory=list)
    outgoing: list = field(default_factory=list)  # (connectivity, target population)
    edges: np.ndarray | None = None
    reach: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.pop.size


def _layers(program: FixedPointProgram) -> dict[str, _Layer]:
    layers = {pop.name: _Layer(pop) for pop in program.populations}
    for syn in program.synapses:
        link = connectivity(syn, int(np.prod(program.source_shape(syn.source))))
        layers[syn.target].incoming.append(link)
        if syn.source in layers:
            layers[syn.source].outgoing.append((link, syn.target))
    return layers


def capacities(limits: Loihi2Limits) -> dict[str, int]:
    return dict(
        zip(
            RESOURCES,
            (limits.neurons_per_core, limits.memory_bits_per_core, limits.in_axons_per_core, limits.out_axons_per_core),
        )
    )


def _split(n: int, cores: int) -> np.ndarray:
    """Boundaries of ``cores`` contiguous ranges of ``n`` neurons whose sizes differ by at most one."""
    return np.arange(cores + 1, dtype=np.int64) * n // cores


def _counts(layer: _Layer, edges: np.ndarray, usage: Usage) -> dict[str, np.ndarray]:
    """Per core and resource, what ``layer`` split at ``edges`` takes, given the usage of its synapses."""
    sizes = np.diff(edges)
    out = layer.reach[edges[1:]] - layer.reach[edges[:-1]] if layer.reach is not None else np.zeros_like(sizes)
    memory = usage.memory_bits + sizes * NEURON_STATE_BITS.value
    return dict(zip(RESOURCES, (sizes, memory, usage.in_axons, out)))


def _usage(layer: _Layer, edges: np.ndarray) -> Usage:
    return sum((link.usage(edges) for link in layer.incoming), Usage.empty(len(edges) - 1))


def _refuse(layer: _Layer, resource: str, values: np.ndarray, limit: int) -> None:
    """The one-line error for a neuron alone exceeding ``limit`` of ``resource``, if one does."""
    if values.size and values.max() > limit:
        parameter, message = REFUSALS[resource]
        raise HardwareLimitError(message.format(value=int(values.max()), limit=limit), layer.pop.name, parameter)


def _check_alone(layer: _Layer, limits: Loihi2Limits) -> None:
    """Refuse a layer in which one neuron, on a core of its own, exceeds a core's resources."""
    alone = sum((link.alone(layer.size) for link in layer.incoming), Usage.empty(layer.size))
    counts = _counts(layer, np.arange(layer.size + 1), alone)
    for resource, limit in capacities(limits).items():
        _refuse(layer, resource, counts[resource], limit)


def _fractions(layer: _Layer, cores: int, limits: Loihi2Limits) -> dict[str, float]:
    """Per resource, the largest fraction of it a core takes with ``layer`` on ``cores`` cores."""
    edges = _split(layer.size, cores)
    counts = _counts(layer, edges, _usage(layer, edges))
    return {resource: counts[resource].max() / limit for resource, limit in capacities(limits).items()}


def _fits(layer: _Layer, cores: int, limits: Loihi2Limits) -> bool:
    return max(_fractions(layer, cores, limits).values()) <= 1


def _bound_by(layer: _Layer, limits: Loihi2Limits) -> str:
    """The resource that sets the layer's core count: the one most over its limit on one core fewer ("-" for
    a layer on one core)."""
    cores = len(layer.edges) - 1
    if cores == 1:
        return "-"
    fractions = _fractions(layer, cores - 1, limits)
    return max(fractions, key=fractions.get)


def _core_count(layer: _Layer, limits: Loihi2Limits, fewest: int = 1) -> int:
    """The fewest cores (at least ``fewest``) on which ``layer`` fits: doubling, then bisection. One neuron per
    core always fits (:func:`_check_alone`)."""
    lo = max(fewest, -(-layer.size // limits.neurons_per_core))
    if _fits(layer, lo, limits):
        return lo
    hi = lo
    while hi < layer.size:
        hi = min(2 * hi, layer.size)
        if _fits(layer, hi, limits):
            break
        lo = hi
    while hi - lo > 1:  # lo does not fit, hi does
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fits(layer, mid, limits) else (mid, hi)
    return hi


def _reach(layer: _Layer, layers: dict[str, _Layer]) -> np.ndarray | None:
    """Cumulative output axons over the neurons of ``layer`` (one per target core a neuron sends to)."""
    if not layer.outgoing:
        return None
    per_neuron = sum(link.reach(layers[target].edges) for link, target in layer.outgoing)
    return np.concatenate([[0], np.cumsum(per_neuron)])


def _split_for_output_axons(layers: dict[str, _Layer], limits: Loihi2Limits) -> None:
    """Split further every layer whose cores send more than their output axons, until nothing changes (a
    layer split further gives the layers feeding it more target cores)."""
    changed = True
    while changed:
        changed = False
        for layer in layers.values():
            layer.reach = _reach(layer, layers)
            if layer.reach is None:
                continue
            _refuse(layer, "output axons", np.diff(layer.reach), limits.out_axons_per_core)
            out = layer.reach[layer.edges[1:]] - layer.reach[layer.edges[:-1]]
            if out.max() > limits.out_axons_per_core:
                layer.edges = _split(layer.size, _core_count(layer, limits, len(layer.edges)))
                changed = True


# --- cores, chips and the map -------------------------------------------------------------------------------


def _cores(layer: _Layer, limits: Loihi2Limits) -> list[CoreAssignment]:
    """The cores of a partitioned layer (not yet placed on chips)."""
    usage = _usage(layer, layer.edges)
    counts = _counts(layer, layer.edges, usage)
    fractions = np.stack([counts[r] / limit for r, limit in capacities(limits).items()])
    bound = fractions.argmax(axis=0)
    return [
        CoreAssignment(
            chip=-1,
            core=-1,
            layer=layer.pop.name,
            start=int(layer.edges[i]),
            stop=int(layer.edges[i + 1]),
            memory_bits=int(counts["memory"][i]),
            in_axons=int(counts["input axons"][i]),
            out_axons=int(counts["output axons"][i]),
            stored_synapses=int(usage.stored[i]),
            connections=int(usage.connections[i]),
            utilization=float(fractions[bound[i], i]),
            bound_by=RESOURCES[bound[i]],
        )
        for i in range(len(layer.edges) - 1)
    ]


def _place(cores: list[CoreAssignment], limits: Loihi2Limits) -> int:
    """Fill chips with the cores in order, within each chip's cores, neurons and synapses; returns the chips."""
    chip, used, neurons, synapses = 0, 0, 0, 0
    for core in cores:
        full = used == limits.cores_per_chip or neurons + core.neurons > limits.neurons_per_chip
        if full or synapses + core.stored_synapses > limits.synapses_per_chip:
            if used == 0:
                raise HardwareLimitError(
                    f"a core of it holds {core.stored_synapses} synapses; a Loihi 2 chip holds {limits.synapses_per_chip}",
                    core.layer,
                    "synapses",
                )
            chip, used, neurons, synapses = chip + 1, 0, 0, 0
        core.chip, core.core = chip, used
        used, neurons, synapses = used + 1, neurons + core.neurons, synapses + core.stored_synapses
    chips = chip + 1 if cores else 0
    if chips > limits.chips_per_system:
        first = next(core for core in cores if core.chip == limits.chips_per_system)
        raise HardwareLimitError(
            f"the network needs {chips} Loihi 2 chips; the system has {limits.chips_per_system} "
            "(this layer is the first that does not fit)",
            first.layer,
            "chips",
        )
    return chips


def _layer_map(layer: _Layer, cores: list[CoreAssignment], needs: list[str], limits: Loihi2Limits) -> LayerMap:
    return LayerMap(
        name=layer.pop.name,
        neurons=layer.size,
        cores=len(cores),
        connections=sum(core.connections for core in cores),
        stored_synapses=sum(core.stored_synapses for core in cores),
        max_memory_bits=max(core.memory_bits for core in cores),
        max_in_axons=max(core.in_axons for core in cores),
        max_out_axons=max(core.out_axons for core in cores),
        utilization=float(np.mean([core.utilization for core in cores])),
        bound_by=_bound_by(layer, limits),
        needs=needs,
    )


def map_program(program: FixedPointProgram, limits: Loihi2Limits = LOIHI2) -> ResourceMap:
    """The resource map of ``program`` on Loihi 2 (module doc); a one-line error for what cannot be mapped."""
    check_design_rules(program, limits)
    layers = _layers(program)
    for layer in layers.values():
        _check_alone(layer, limits)
        layer.edges = _split(layer.size, _core_count(layer, limits))
    _split_for_output_axons(layers, limits)
    by_layer = {name: _cores(layer, limits) for name, layer in layers.items()}
    cores = [core for layer_cores in by_layer.values() for core in layer_cores]
    chips = _place(cores, limits)
    found = custom_needs(program)
    maps = [
        _layer_map(
            layer, by_layer[name], [what for kind, who, what in found if (kind, who) == ("population", name)], limits
        )
        for name, layer in layers.items()
    ]
    notes = [
        f"{kind} '{name}' {what}: no stock Loihi 2 model does; needs custom microcode" for kind, name, what in found
    ]
    return ResourceMap("loihi2", limits, maps, cores, chips, notes)
