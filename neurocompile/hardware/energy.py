"""Energy per inference and time per step of a fixed-point program on Loihi 2, from the events of a run.

:func:`estimate_energy` counts, per neuro core and step of a CPU-backend (or Lava) run, on the cores the
:mod:`~neurocompile.hardware.mapping` assigns: synaptic operations (every spike times its connections to the
core: a dense synapse's every target, a sparse one's nonzeros, a convolution's kernel taps inside the
input), neuron updates (every neuron, every step: active when it holds state or spikes, else inactive),
spike messages (one per target core a spike reaches) and the tile hops they travel. Per-event constants turn
the counts into dynamic energy; the chip's measured static power times the run's time adds the static
part. A step takes its slowest core's work plus a barrier synchronization.

Intel publishes no per-event figure for Loihi 2: the constants are Loihi 1's (Davies et al. 2018, Table 2,
pre-silicon), with the range to SANA-FE's Loihi 1 model, which its authors fitted to a board; static
power is Loihi 2's, measured. Each constant names its source; docs/loihi2.md ("Energy and latency")
tabulates them, compares the model with a measured Loihi 2 network and says what it leaves out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.files import plain
from neurocompile.hardware.loihi2 import LOIHI2, Loihi2Limits
from neurocompile.hardware.mapping import TARGETS, ResourceMap, map_program
from neurocompile.ir.program import FixedPointProgram, Synapse
from neurocompile.ir.recording import Recording
from neurocompile.semantics.fixedpoint import conv_connections

READ = "2026-12-07"  # when the sources below were read

DAVIES_2018 = (
    "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), 2018, "
    "Table 2 ('pre-silicon performance and energy measurements', at 0.75 V), as two transcriptions quote its rows "
    "(dyigitpolat/mimarsinan docs/research/physics/loihi_constants_research.md; the ferromorphic crate's "
    "LOIHI_2018); the paper itself was not readable here"
)
SANA_FE = (
    "SANA-FE's Loihi 1 model, SLAM-Lab/SANA-FE arch/loihi.yaml (commit c55bfa8), which its authors fitted to "
    "measurements on a Loihi board (its calibration scripts; Boyle et al., IEEE TCAD 2025)"
)
LAVA_DL = (
    "lava-nc/lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb and pilotnet_sdnn/benchmark.ipynb "
    "(commit d825ac5): measured on one Loihi 2 chip (Oheo Gulch)"
)
REFERENCES = {"Davies 2018": DAVIES_2018, "SANA-FE": SANA_FE, "lava-dl": LAVA_DL}
UNIT_SCALE = {"pJ": 1e-12, "ns": 1e-9, "W": 1.0, "cores": 1.0}


@dataclass(frozen=True)
class Estimate:
    """A quantity with its range: ``value`` from the central constants, ``low`` and ``high`` from the ends
    of their ranges (counts are nonnegative, so the ends combine linearly)."""

    value: float
    low: float
    high: float

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.value + other.value, self.low + other.low, self.high + other.high)

    def __mul__(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor)

    __rmul__ = __mul__

    def times(self, other: Estimate) -> Estimate:
        """The product, end by end (both nonnegative)."""
        return Estimate(self.value * other.value, self.low * other.low, self.high * other.high)

    def text(self, unit: str) -> str:
        return f"{si_text(self.value)}{unit} ({si_text(self.low)}{unit} to {si_text(self.high)}{unit})"


ZERO = Estimate(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Constant:
    """One per-event constant: ``value`` (the estimate uses it) and its range ``low``..``high`` in ``unit``,
    the chip it was measured or simulated for, where it comes from and ``note``: the other sources."""

    name: str
    value: float
    low: float
    high: float
    unit: str
    chip: str
    source: str
    note: str = ""
    read: str = READ

    @property
    def si(self) -> Estimate:
        """The constant in joules, seconds or watts."""
        scale = UNIT_SCALE[self.unit]
        return Estimate(self.value * scale, self.low * scale, self.high * scale)


# --- energy per event ---------------------------------------------------------------------------------------

SYNOP_ENERGY = Constant(
    "synaptic operation",
    23.6,
    23.6,
    35.5,
    "pJ",
    "Loihi 1",
    f"{DAVIES_2018}: 'energy per synaptic spike op (min)'",
    f"a minimum; {SANA_FE}: 35.5 pJ dense, 33.6 sparse, 24.0 conv",
)
ACTIVE_UPDATE_ENERGY = Constant(
    "neuron update, active",
    81.0,
    72.8,
    81.0,
    "pJ",
    "Loihi 1",
    f"{DAVIES_2018}: 'energy per neuron update (active / inactive) 81 pJ / 52 pJ'",
    f"{SANA_FE}: 51.2 pJ access + 21.6 pJ update",
)
INACTIVE_UPDATE_ENERGY = Constant(
    "neuron update, inactive",
    52.0,
    51.2,
    52.0,
    "pJ",
    "Loihi 1",
    f"{DAVIES_2018}: the same row",
    f"{SANA_FE}: 51.2 pJ access",
)
MESSAGE_ENERGY = Constant(
    "spike message to a core",
    1.7,
    1.7,
    111.0,
    "pJ",
    "Loihi 1",
    f"{DAVIES_2018}: 'within-tile spike energy'",
    f"{SANA_FE}: 111 pJ per output message, which adds the sending core's axon work Table 2 leaves out",
)
EW_HOP_ENERGY = Constant(
    "tile hop, east-west", 3.0, 3.0, 3.0, "pJ", "Loihi 1", f"{DAVIES_2018}: 'energy per tile hop (E-W / N-S)'"
)
NS_HOP_ENERGY = Constant(
    "tile hop, north-south", 4.0, 4.0, 4.2, "pJ", "Loihi 1", f"{DAVIES_2018}: the same row", f"{SANA_FE}: 4.2 pJ"
)
STATIC_POWER = Constant(
    "static power per chip",
    0.282,
    0.232,
    0.309,
    "W",
    "Loihi 2",
    f"{LAVA_DL}: 'Static Power' 0.281775 W (PilotNet SDNN), 0.232078 W (PilotNet LIF; 0.309377 W in its run "
    "of commit baa23ad): the median of the three",
    "a whole chip's, whatever share of its cores a network uses",
)

# --- time per event -----------------------------------------------------------------------------------------

SYNOP_TIME = Constant(
    "synaptic operation",
    3.5,
    3.1,
    4.7,
    "ns",
    "Loihi 1",
    f"{DAVIES_2018}: 'time per synaptic spike op (max)'",
    f"{SANA_FE}: 4.0 ns dense, 4.7 sparse, 3.1 conv",
)
ACTIVE_UPDATE_TIME = Constant(
    "neuron update, active",
    8.4,
    8.4,
    9.7,
    "ns",
    "Loihi 1",
    f"{DAVIES_2018}: 'time per neuron update (active / inactive) 8.4 ns / 5.3 ns'",
    f"{SANA_FE}: 6.0 ns access + 3.7 ns update",
)
INACTIVE_UPDATE_TIME = Constant(
    "neuron update, inactive", 5.3, 5.3, 6.0, "ns", "Loihi 1", f"{DAVIES_2018}: the same row", f"{SANA_FE}: 6.0 ns"
)
MESSAGE_TIME = Constant(
    "spike message to a core",
    2.1,
    2.1,
    5.1,
    "ns",
    "Loihi 1",
    f"{DAVIES_2018}: 'within-tile spike latency', counted at the sending core",
    f"{SANA_FE}: 5.1 ns per output message",
)
BARRIER_ONE_TILE = Constant(
    "barrier synchronization, 1 tile",
    113.0,
    113.0,
    113.0,
    "ns",
    "Loihi 1",
    f"{DAVIES_2018}: 'mesh-wide barrier sync time (1-32 tiles) 113-465 ns'",
    "the model interpolates linearly in the tiles a chip's cores span (not published)",
)
BARRIER_ALL_TILES = Constant(
    "barrier synchronization, 32 tiles", 465.0, 465.0, 465.0, "ns", "Loihi 1", f"{DAVIES_2018}: the same row"
)

# --- layout (Loihi 1's, assumed for Loihi 2) ----------------------------------------------------------------

CORES_PER_TILE = Constant(
    "cores per tile",
    4,
    4,
    4,
    "cores",
    "Loihi 1",
    f"{SANA_FE}: 32 tiles of 4 cores in an 8 x 4 mesh",
    "Davies 2018's 128 cores and barrier row over 32 tiles imply 4 per tile; the mesh's shape and Loihi 2's "
    "layout are not published",
)
TILES_PER_ROW = 8  # SANA-FE's 8 x 4 mesh (CORES_PER_TILE's source)

CONSTANTS = (
    SYNOP_ENERGY,
    ACTIVE_UPDATE_ENERGY,
    INACTIVE_UPDATE_ENERGY,
    MESSAGE_ENERGY,
    EW_HOP_ENERGY,
    NS_HOP_ENERGY,
    STATIC_POWER,
    SYNOP_TIME,
    ACTIVE_UPDATE_TIME,
    INACTIVE_UPDATE_TIME,
    MESSAGE_TIME,
    BARRIER_ONE_TILE,
    BARRIER_ALL_TILES,
    CORES_PER_TILE,
)
ENERGY_COUNTS = {  # count -> its energy per event
    "synops": SYNOP_ENERGY,
    "active_updates": ACTIVE_UPDATE_ENERGY,
    "inactive_updates": INACTIVE_UPDATE_ENERGY,
    "messages": MESSAGE_ENERGY,
    "ew_hops": EW_HOP_ENERGY,
    "ns_hops": NS_HOP_ENERGY,
}
TIME_COUNTS = {  # per core and step: work -> its time per event
    "synops": SYNOP_TIME,
    "active_updates": ACTIVE_UPDATE_TIME,
    "inactive_updates": INACTIVE_UPDATE_TIME,
    "messages": MESSAGE_TIME,
}


def si_text(x: float) -> str:
    """``x`` with an SI prefix, three significant digits."""
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}"
    return f"{x:.3g} "


# --- the report ---------------------------------------------------------------------------------------------


COUNTED = ("spikes", "synops", "active_updates", "inactive_updates", "messages", "ew_hops", "ns_hops")


@dataclass
class LayerEnergy:
    """One input port or population, per inference: its spikes, the synaptic operations its cores do (the
    synapses into it), its neuron updates, the messages and tile hops of its spikes, and their energy."""

    name: str
    cores: int
    spikes: float
    synops: float
    active_updates: float
    inactive_updates: float
    messages: float
    ew_hops: float
    ns_hops: float
    energy: Estimate = ZERO


@dataclass
class EnergyReport:
    """Energy (J) per inference and time (s) per step of a run on a target, per layer, with their ranges.
    ``steps``: per inference (the run's, drained steps included)."""

    target: str
    samples: int
    steps: int
    cores: int
    chips: int
    layers: list[LayerEnergy]
    dynamic: Estimate
    static: Estimate
    step_time: Estimate
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Estimate:
        return self.dynamic + self.static

    @property
    def inference_time(self) -> Estimate:
        return self.step_time * self.steps

    def table(self) -> str:
        """Per layer its events and energy, then the totals and the time, then the notes."""
        head = (
            f"{'layer':<20} {'cores':>5} {'spikes':>10} {'synops':>12} {'updates':>10} {'messages':>10} "
            f"{'energy (J)':>11} {'share':>6}"
        )
        rows = [f"energy and latency on {self.target}, per inference of {self.steps} steps", head, "-" * len(head)]
        for layer in self.layers:
            share = layer.energy.value / self.dynamic.value if self.dynamic.value else 0.0
            rows.append(
                f"{layer.name[:20]:<20} {layer.cores:>5} {layer.spikes:>10,.0f} {layer.synops:>12,.0f} "
                f"{layer.active_updates + layer.inactive_updates:>10,.0f} {layer.messages:>10,.0f} "
                f"{si_text(layer.energy.value) + 'J':>11} {share:>6.1%}"
            )
        rows += [
            f"dynamic energy  {self.dynamic.text('J')}",
            f"static energy   {self.static.text('J')} ({self.chips} chip{'s' if self.chips != 1 else ''})",
            f"total energy    {self.total.text('J')}",
            f"time per step   {self.step_time.text('s')}; per inference {self.inference_time.text('s')}",
        ]
        return "\n".join([*rows, *self.notes])

    def to_dict(self) -> dict:
        return plain(
            asdict(self) | {"total": asdict(self.total), "inference_time": asdict(self.inference_time), "unit": "J, s"}
        )


# --- counting -----------------------------------------------------------------------------------------------


def energy_by_event(layer: LayerEnergy) -> dict[str, Estimate]:
    """The energy of each kind of event of ``layer`` (keys of ``ENERGY_COUNTS``)."""
    return {kind: constant.si * getattr(layer, kind) for kind, constant in ENERGY_COUNTS.items()}


def _fan_out(syn: Synapse, n_source: int, core_of: np.ndarray) -> np.ndarray:
    """Connections from each source neuron to each core of the target, whose neuron ``i`` is on its core
    ``core_of[i]``: [n_source, cores]."""
    cores = int(core_of.max()) + 1
    if syn.kind == "dense":
        return np.broadcast_to(np.bincount(core_of, minlength=cores), (n_source, cores))
    if syn.kind == "sparse":
        weights = np.asarray(syn.weights).reshape(-1, n_source) != 0
        return np.stack([weights[core_of == core].sum(axis=0) for core in range(cores)], axis=1)
    rows, cols, _ = conv_connections(np.ones_like(syn.weights), syn.conv)  # every tap inside the input
    return np.bincount(cols * cores + core_of[rows], minlength=n_source * cores).reshape(n_source, cores)


def _spikes(recording: Recording, name: str, steps: int, inputs: np.ndarray | None) -> np.ndarray:
    """Spikes of a population (recorded) or of the input port (``inputs``, zero-padded): [batch, steps, n]."""
    if inputs is not None:
        flat = np.asarray(inputs).reshape(len(inputs), np.shape(inputs)[1], -1) != 0
        return np.pad(flat, ((0, 0), (0, steps - flat.shape[1]), (0, 0))).astype(np.float32)
    key = f"{name}.spikes"
    if key not in recording.arrays:
        raise NeurocompileError(f"energy: the recording has no '{key}'; record every population's spikes")
    arr = np.asarray(recording.arrays[key])
    return arr.reshape(arr.shape[0], arr.shape[1], -1).astype(np.float32)


def _active(recording: Recording, name: str, spikes: np.ndarray) -> np.ndarray:
    """Per neuron and step whether its update is active: it holds state (u or v nonzero) or spikes. Without
    a recorded u or v, every update counts as active."""
    state = [recording.arrays.get(f"{name}.{var}") for var in ("u", "v")]
    if any(s is None for s in state):
        return np.ones(spikes.shape, dtype=bool)
    return (spikes != 0) | np.any([np.asarray(s).reshape(spikes.shape) != 0 for s in state], axis=0)


@dataclass
class _Core:
    """Where a global core sits: its chip, its position and its tile's place on the chip's mesh."""

    chip: int
    x: int
    y: int

    @classmethod
    def of(cls, chip: int, core: int) -> _Core:
        tile = core // CORES_PER_TILE.value
        return cls(chip, tile % TILES_PER_ROW, tile // TILES_PER_ROW)


def ranges(resource_map: ResourceMap) -> dict[str, np.ndarray]:
    """Per layer, the core (among the layer's) of each neuron: the map's contiguous ranges."""
    sizes: dict[str, list[int]] = {}
    for core in resource_map.cores:
        sizes.setdefault(core.layer, []).append(core.neurons)
    return {name: np.repeat(np.arange(len(n)), n) for name, n in sizes.items()}


class _Counter:
    """Counts the events of one run on a resource map: per layer (totals) and per core and step (work)."""

    def __init__(self, names: list[str], resource_map: ResourceMap, partition: dict, batch: int, steps: int):
        self.batch, self.steps, self.core_of = batch, steps, partition
        self.first: dict[str, int] = {}  # layer -> index of its first core in resource_map.cores
        for i, core in enumerate(resource_map.cores):
            self.first.setdefault(core.layer, i)
        self.places = [_Core.of(core.chip, core.core) for core in resource_map.cores]
        self.layers = {name: LayerEnergy(name, self._count(name), *[0.0] * 7) for name in names}
        self.work = {kind: np.zeros((batch, steps, len(self.places))) for kind in TIME_COUNTS}
        self.crossings = 0.0

    def _count(self, name: str) -> int:
        return int(self.core_of[name].max()) + 1 if name in self.core_of else 0

    def cores(self, name: str) -> slice:
        return slice(self.first[name], self.first[name] + self._count(name))

    def population(self, name: str, spikes: np.ndarray, active: np.ndarray) -> None:
        """Spikes and neuron updates of a population, per core and step."""
        core_of = self.core_of[name]
        order = np.argsort(core_of, kind="stable")
        starts = np.searchsorted(core_of[order], np.arange(self._count(name)))
        on = np.add.reduceat(active[:, :, order], starts, axis=2).astype(np.float64)  # per core
        sizes = np.bincount(core_of)
        self.work["active_updates"][:, :, self.cores(name)] += on
        self.work["inactive_updates"][:, :, self.cores(name)] += sizes - on
        layer = self.layers[name]
        layer.active_updates += on.sum()
        layer.inactive_updates += sizes.sum() * self.batch * self.steps - on.sum()
        layer.spikes += spikes.sum()

    def synapse(self, syn: Synapse, spikes: np.ndarray) -> None:
        """Synaptic operations on the target's cores, and the messages (and hops) of the source's spikes."""
        fan = _fan_out(syn, spikes.shape[2], self.core_of[syn.target])
        synops = spikes @ fan.astype(np.float32)
        self.work["synops"][:, :, self.cores(syn.target)] += synops
        self.layers[syn.target].synops += synops.sum()
        reached = (fan > 0).astype(np.float32)
        on_mesh = syn.source in self.core_of
        source = self.core_of[syn.source] if on_mesh else np.zeros(spikes.shape[2], dtype=np.int64)
        for core in range(int(source.max()) + 1):
            mine = source == core
            messages = spikes[:, :, mine] @ reached[mine]  # [batch, steps, target cores]
            if on_mesh:
                self.work["messages"][:, :, self.first[syn.source] + core] += messages.sum(axis=2)
            self._route(syn, self.first[syn.source] + core if on_mesh else -1, messages.sum(axis=(0, 1)))

    def _route(self, syn: Synapse, source: int, messages: np.ndarray) -> None:
        """Messages from core ``source`` (-1: an input port, off the mesh) to the target's cores, and their hops."""
        layer = self.layers[syn.source]
        layer.messages += messages.sum()
        if source < 0:
            return
        here = self.places[source]
        targets = self.places[self.cores(syn.target)]
        layer.ew_hops += sum(m * abs(t.x - here.x) for m, t in zip(messages, targets))
        layer.ns_hops += sum(m * abs(t.y - here.y) for m, t in zip(messages, targets))
        self.crossings += sum(m for m, t in zip(messages, targets) if t.chip != here.chip)


def _barrier(resource_map: ResourceMap) -> float:
    """Barrier synchronization time (s): interpolated in the most tiles one chip's cores span."""
    tiles = max(core.core // CORES_PER_TILE.value for core in resource_map.cores) + 1
    full = resource_map.limits.cores_per_chip // CORES_PER_TILE.value
    lo, hi = BARRIER_ONE_TILE.si.value, BARRIER_ALL_TILES.si.value
    return lo + (hi - lo) * (min(tiles, full) - 1) / max(full - 1, 1)


def _step_time(work: dict[str, np.ndarray], barrier: float) -> Estimate:
    """Mean over samples and steps of the slowest core's work, plus the barrier: with each end of the ranges."""
    ends = []
    for end in ("value", "low", "high"):
        per_core = sum(work[kind] * getattr(TIME_COUNTS[kind].si, end) for kind in TIME_COUNTS)
        ends.append(float(per_core.max(axis=2).mean()) + barrier)
    return Estimate(*ends)


def check_target(target: str) -> None:
    """A one-line error for a target without an energy model."""
    if target not in TARGETS:
        raise NeurocompileError(f"unknown energy target '{target}' (known: {', '.join(TARGETS)})")


def _notes(program: FixedPointProgram, counter: _Counter) -> list[str]:
    notes = []
    if counter.crossings:
        notes.append(
            f"{counter.crossings / counter.batch:,.0f} messages per inference cross chips: no inter-chip energy "
            "or barrier is published, so they are priced as on-chip messages (a lower bound)"
        )
    if program.plastic:
        notes.append("learning is not counted (Davies 2018, Table 2: 120 pJ per synaptic update, pairwise STDP)")
    return notes


def _count(program: FixedPointProgram, recording: Recording, inputs, resource_map: ResourceMap, partition) -> _Counter:
    """The events of a run: the spikes of the (one) input port that feeds a synapse, and the recorded ones."""
    ports = [port for port in program.spike_ports() if port.name in {syn.source for syn in program.synapses}]
    if len(ports) > 1:
        raise NeurocompileError(f"energy: the program has {len(ports)} spike inputs; one is supported")
    batch = int(np.shape(inputs)[0])
    recorded = [np.shape(a)[1] for key, a in recording.arrays.items() if key.endswith(".spikes")]
    steps = int(max([np.shape(inputs)[1], *recorded]))
    names = [port.name for port in ports] + [pop.name for pop in program.populations]
    counter = _Counter(names, resource_map, partition or ranges(resource_map), batch, steps)
    spikes = {port.name: _spikes(recording, port.name, steps, inputs) for port in ports}
    for port in ports:
        counter.layers[port.name].spikes += spikes[port.name].sum()
    for pop in program.populations:
        spikes[pop.name] = _spikes(recording, pop.name, steps, None)
        counter.population(pop.name, spikes[pop.name], _active(recording, pop.name, spikes[pop.name]))
    for syn in program.synapses:
        counter.synapse(syn, spikes[syn.source])
    return counter


def _per_inference(layer: LayerEnergy, samples: int) -> LayerEnergy:
    """``layer``'s counts per sample, and their energy."""
    counts = {name: getattr(layer, name) / samples for name in COUNTED}
    divided = LayerEnergy(layer.name, layer.cores, **counts)
    divided.energy = sum(energy_by_event(divided).values(), ZERO)
    return divided


def estimate_energy(
    program: FixedPointProgram,
    recording: Recording,
    inputs,
    target: str = "loihi2",
    limits: Loihi2Limits = LOIHI2,
    resource_map: ResourceMap | None = None,
    partition: dict[str, np.ndarray] | None = None,
) -> EnergyReport:
    """Energy per inference and time per step of ``program`` on ``target``, from the spikes (and u, v) of
    ``recording`` and the spikes ``inputs`` ([batch, time, *shape], one spike port) of its run, on
    ``resource_map`` (default: :func:`~neurocompile.hardware.mapping.map_program` with ``limits``).
    ``partition``: per layer, the core (among the layer's in ``resource_map``) of each neuron, where it is
    not the map's contiguous ranges (:func:`ranges`)."""
    check_target(target)
    resource_map = resource_map or map_program(program, limits)
    counter = _count(program, recording, inputs, resource_map, partition)
    layers = [_per_inference(layer, counter.batch) for layer in counter.layers.values()]
    step_time = _step_time(counter.work, _barrier(resource_map))
    static = STATIC_POWER.si.times(step_time) * (resource_map.chips * counter.steps)
    dynamic = sum((layer.energy for layer in layers), ZERO)
    chips, cores = resource_map.chips, len(resource_map.cores)
    notes = _notes(program, counter)
    return EnergyReport(target, counter.batch, counter.steps, cores, chips, layers, dynamic, static, step_time, notes)
