"""The fixed-point program: the compiled form of a NIR graph, as plain data.

Integer neuron populations and the synapses between them (dense, sparse, conv; PyTorch layouts; one step of delay
per synapse, Lava timing), with the integer semantics of :mod:`neurocompile.semantics.fixedpoint`;
``number_format="float"`` holds the same network unrounded, for Lava's ``floating_pt``. Layouts, number formats
and the ``.ncp`` file: ``docs/quantization.md`` ("7. The program").
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.files import load_arrays, plain, write_npz
from neurocompile.ir import plasticity
from neurocompile.ir.checks import check_range, check_real, check_report, check_weight_shape
from neurocompile.ir.network import ConvGeometry, Network
from neurocompile.ir.plasticity import LearningRule, LearningSignal

FORMAT_VERSION = 1

# Loihi/Lava bit widths.
DECAY_BITS = 12  # du, dv in [0, 4095]
VTH_BITS = 17  # vth in [0, 2**17 - 1]
BIAS_MANT_BITS = 13  # signed
BIAS_EXP_BITS = 3
WEIGHT_EXP_RANGE = (-8, 7)
MAX_DELAY = 62  # largest extra synaptic delay (Lava DelayDense/DelaySparse allow 63)
STATE_BITS = 24  # u and v
MAX_PAYLOAD_BITS = 8  # graded spikes: counts up to 255 (Loihi 2 carries up to 24 bits; spikes are stored as uint8)

SignMode = Literal["mixed", "excitatory", "inhibitory"]
# Dense/sparse weight registers by sign mode (lava.utils.weightutils.clip_weights, 8 bits).
WEIGHT_RANGE = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}
SynapseKind = Literal["dense", "sparse", "conv"]
SYNAPSE_KINDS = ("dense", "sparse", "conv")
MAX_NODE_SIZE = 2**24  # neurons of a population, values per step of an input port
NumberFormat = Literal["fixed", "float"]
NUMBER_FORMATS = ("fixed", "float")
PortKind = Literal["spikes", "target"]
ResetMode = Literal["zero", "subtract"]
RESET_MODES = ("zero", "subtract")
ResetTiming = Literal["same-step", "snntorch-immediate", "snntorch-delayed"]
RESET_TIMINGS = ("same-step", "snntorch-immediate", "snntorch-delayed")
BIAS_ONSETS = ("latency", "start")  # a bias from the step the first input arrives, or from step 0
SynapseSignal = Literal["spikes", "error"]
PLASTIC_VARIABLES = ("weights", "x1", "x2", "y1", "y2", "y3")


@dataclass
class InputPort:
    """Where spikes enter: ``shape`` excludes batch and time.

    ``kind="target"``: a stream of integer targets for a learning population (see
    ``plasticity.LearningSignal.target``), not spikes; it is no synapse's source.
    """

    name: str
    shape: tuple[int, ...]
    kind: PortKind = "spikes"


@dataclass
class Population:
    """Integer LIF neurons (Lava ``LIF``/``LIFReset``, fixed_pt).

    Per step: ``u <- decay(u, du) + (a_in << 6)`` wrapped to 24 bits;
    ``v <- decay(v, dv) + u + (bias_mant << bias_exp)`` clipped to 24 bits;
    spike where ``v > (vth << 6)``, then ``v <- 0`` (``reset="zero"``, Lava's LIF) or
    ``v <- v - (vth << 6)`` (``reset="subtract"``: identical to Lava's LIF except for the reset; on
    Loihi 2 a custom neuron model, see ``docs/lava-backend.md``). A learning population resets to zero.
    ``spiking=False`` marks a readout whose ``v`` is the output (LI/CubaLI/I in NIR).
    ``reset_interval`` > 0 zeroes u and v every that many steps (Lava ``LIFReset``).
    ``bias_onset``: the bias is added from that step of a run (sample) on, 0 before
    (``fixedpoint.bias_active``); the compiler sets it to the population's latency, the step its first
    synaptic input arrives, so that a deeper layer does not integrate bias before its input.
    ``reset_timing``: snnTorch 1.0's reset timings (``fixedpoint.timed_fire``; a custom neuron on Loihi
    2); reset to zero then zeroes the stepped membrane for a CubaLIF (``Synaptic``), the stored one else.
    ``payload_bits`` > 0: graded spikes, each carrying the count of thresholds ``v`` exceeds (at most
    ``2**payload_bits - 1``; ``fixedpoint.fire``), which the synapses out of it multiply their weights with
    (Loihi 2's graded spikes, Lava's ``num_message_bits``; a custom neuron on Loihi 2).
    ``source_type`` records the NIR primitive it came from.
    ``learning``: what the population sends to the plastic synapses into it (on-chip learning).
    """

    name: str
    shape: tuple[int, ...]
    du: int | float  # float only in a float program (see the module doc), likewise dv, vth, bias_mant
    dv: int | float
    vth: int | float
    bias_mant: np.ndarray
    bias_exp: int = 0
    spiking: bool = True
    reset_interval: int = 0
    source_type: str = "LIF"
    learning: LearningSignal | None = None
    reset: ResetMode = "zero"
    bias_onset: int = 0
    reset_timing: ResetTiming = "same-step"
    payload_bits: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def firing(self) -> dict:
        """How it fires and resets, as ``fixedpoint.lif_fixed_step`` takes it (``timing``, ``synaptic``,
        ``payload_bits``)."""
        return {
            "timing": self.reset_timing,
            "synaptic": self.source_type == "CubaLIF",
            "payload_bits": self.payload_bits,
        }

    def validate(self, number_format: NumberFormat = "fixed") -> None:
        if not isinstance(self.spiking, (bool, np.bool_)):
            raise NeurocompileError(f"node '{self.name}', parameter 'spiking': {self.spiking!r} is not true or false")
        if not isinstance(self.source_type, str):
            raise NeurocompileError(f"node '{self.name}', parameter 'source_type': {self.source_type!r} is not a name")
        if np.shape(self.bias_mant) not in ((), tuple(self.shape)):
            raise NeurocompileError(
                f"population '{self.name}': bias_mant shape {np.shape(self.bias_mant)} != {self.shape}"
            )
        for name in ("reset_interval", "bias_onset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise NeurocompileError(f"node '{self.name}', parameter '{name}': {value!r} is not an integer >= 0")
        if self.reset not in RESET_MODES:
            raise NeurocompileError(
                f"node '{self.name}', parameter 'reset': must be one of {', '.join(RESET_MODES)}, got {self.reset!r}"
            )
        if self.reset == "subtract" and self.learning is not None:
            raise NeurocompileError(
                f"node '{self.name}', parameter 'reset': a learning population resets to zero, not by subtraction"
            )
        if self.reset_timing not in RESET_TIMINGS:
            raise NeurocompileError(
                f"node '{self.name}', parameter 'reset_timing': must be one of {', '.join(RESET_TIMINGS)}, "
                f"got {self.reset_timing!r}"
            )
        bits = self.payload_bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= MAX_PAYLOAD_BITS:
            raise NeurocompileError(
                f"node '{self.name}', parameter 'payload_bits': {self.payload_bits!r} is not an integer in "
                f"0..{MAX_PAYLOAD_BITS}"
            )
        if self.payload_bits and (self.learning is not None or not self.spiking or self.reset_timing != "same-step"):
            raise NeurocompileError(
                f"node '{self.name}', parameter 'payload_bits': graded spikes are for spiking populations that do "
                "not learn and reset in the same step"
            )
        if self.reset_timing != "same-step" and (self.learning is not None or not self.spiking):
            kind = "a learning population resets in the same step" if self.spiking else "a readout never resets"
            raise NeurocompileError(f"node '{self.name}', parameter 'reset_timing': {kind}")
        for name in ("du", "dv", "vth", "bias_exp"):
            if np.ndim(getattr(self, name)) != 0:
                raise NeurocompileError(
                    f"node '{self.name}', parameter '{name}': one value per population, got an array"
                )
        if number_format == "float":
            check_real(self.name, "du", self.du, 0.0, 1.0)
            check_real(self.name, "dv", self.dv, 0.0, 1.0)
            check_real(self.name, "vth", self.vth, -np.inf, np.inf, finite=False)
            check_real(self.name, "bias_mant", self.bias_mant)
            check_range(self.name, "bias_exp", self.bias_exp, 0, 0)
            return
        check_range(self.name, "du", self.du, 0, 2**DECAY_BITS - 1)
        check_range(self.name, "dv", self.dv, 0, 2**DECAY_BITS - 1)
        check_range(self.name, "vth", self.vth, 0, 2**VTH_BITS - 1)
        check_range(self.name, "bias_mant", self.bias_mant, -(2 ** (BIAS_MANT_BITS - 1)), 2 ** (BIAS_MANT_BITS - 1) - 1)
        check_range(self.name, "bias_exp", self.bias_exp, 0, 2**BIAS_EXP_BITS - 1)
        if self.learning is not None:
            self.learning.validate(self.name, self.spiking)


@dataclass
class Synapse:
    """An integer synapse layer from ``source`` (input port or population) to ``target``.

    ``kind``: "dense" ([n_target, n_source] weights), "sparse" (same layout, stored sparse by
    the Lava backend), or "conv" (``conv`` geometry, PyTorch weight layout).
    ``num_weight_bits`` and ``sign_mode`` are Lava's weight-precision settings. Dense/sparse
    weights are Loihi's 8-bit registers (``WEIGHT_RANGE``); Lava then drops low bits
    (``fixedpoint.effective_weights``: mixed sign drops one more, so odd weights floor). The
    quantizer emits weights that survive this unchanged; hand-made programs may not.
    ``delays``: extra per-synapse delay in steps (same shape as weights), or None.
    ``recurrent``: a back-edge in the source graph (still one step, like every synapse).
    ``learning``: the synapse's three-factor learning rule (``plasticity.LearningRule``); None means
    static. A sparse plastic synapse learns only at its stored entries: the weights that are nonzero
    after Lava's first-step truncation (``fixedpoint.effective_weights``); the others stay 0.
    ``signal="error"`` makes it a feedback synapse: it carries its source population's
    error (graded) into the target's third-factor input, one step later.
    """

    name: str
    source: str
    target: str
    kind: SynapseKind
    weights: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: SignMode = "mixed"
    delays: np.ndarray | None = None
    conv: ConvGeometry | None = None
    recurrent: bool = False
    learning: LearningRule | None = None
    signal: SynapseSignal = "spikes"

    def validate(self, number_format: NumberFormat = "fixed") -> None:
        if self.kind not in SYNAPSE_KINDS:
            raise NeurocompileError(
                f"node '{self.name}', parameter 'kind': must be one of {', '.join(SYNAPSE_KINDS)}, got {self.kind!r}"
            )
        if not isinstance(self.sign_mode, str) or self.sign_mode not in WEIGHT_RANGE:
            raise NeurocompileError(f"node '{self.name}', parameter 'sign_mode': unknown '{self.sign_mode}'")
        if not isinstance(self.recurrent, (bool, np.bool_)):
            raise NeurocompileError(
                f"node '{self.name}', parameter 'recurrent': {self.recurrent!r} is not true or false"
            )
        for name in ("weight_exp", "num_weight_bits"):
            if np.ndim(getattr(self, name)) != 0:
                raise NeurocompileError(f"node '{self.name}', parameter '{name}': one value per synapse, got an array")
        check_range(self.name, "num_weight_bits", self.num_weight_bits, 1, 8)  # unused by float programs, still valid
        if number_format == "float":
            check_range(self.name, "weight_exp", self.weight_exp, 0, 0)
            check_real(self.name, "weights", self.weights)
        else:
            check_range(self.name, "weight_exp", self.weight_exp, *WEIGHT_EXP_RANGE)
            if self.kind == "conv":
                check_range(self.name, "weights", self.weights, -(2 ** (STATE_BITS - 1)), 2 ** (STATE_BITS - 1) - 1)
            else:
                check_range(self.name, "weights", self.weights, *WEIGHT_RANGE[self.sign_mode])
        if self.kind == "conv" and self.conv is None:
            raise NeurocompileError(f"synapse '{self.name}': conv synapse without geometry")
        if self.delays is not None:
            if self.delays.shape != self.weights.shape:
                raise NeurocompileError(
                    f"synapse '{self.name}': delays shape {self.delays.shape} != weights {self.weights.shape}"
                )
            check_range(self.name, "delays", self.delays, 0, MAX_DELAY)
        if self.signal not in ("spikes", "error"):
            raise NeurocompileError(f"node '{self.name}', parameter 'signal': must be 'spikes' or 'error'")
        if (self.learning is not None or self.signal == "error") and (self.kind == "conv" or self.delays is not None):
            raise NeurocompileError(
                f"node '{self.name}', parameter 'kind': plastic and feedback synapses are dense or sparse, without delays"
            )
        if self.learning is not None:
            if self.signal == "error":
                raise NeurocompileError(f"node '{self.name}', parameter 'learning': a feedback synapse cannot learn")
            self.learning.validate(self.name)
            used = self.learning.variables()
            for trace in ("x1", "x2"):
                if number_format == "float" and trace in used and getattr(self.learning, f"{trace}_tau") == 0:
                    raise NeurocompileError(
                        f"node '{self.name}', parameter 'learning.{trace}_tau': 0 leaves the trace NaN in floating point"
                    )


@dataclass
class FixedPointProgram(Network):
    """A compiled network: inputs, populations, synapses, and which populations are outputs.

    ``metadata`` holds provenance (source file, dt, convention) and the quantization report.
    ``number_format``: "fixed" (Loihi integers) or "float" (see the module doc).
    Populations are listed in a valid feed-forward order (recurrent synapses excepted).
    """

    inputs: list[InputPort]
    populations: list[Population]
    synapses: list[Synapse]
    outputs: list[str]
    metadata: dict = field(default_factory=dict)
    number_format: NumberFormat = "fixed"

    KIND = "program"

    def with_weights(self, weights: dict) -> FixedPointProgram:
        """A copy whose synapses named in ``weights`` hold those weights (a sparse matrix becomes a
        dense array), in the program's number format: how a backend returns what a program learned."""

        changed = copy.deepcopy(self)
        dtype = np.int32 if self.number_format == "fixed" else np.float64
        for name, w in weights.items():
            changed.synapse(name).weights = np.asarray(w.toarray() if hasattr(w, "toarray") else w).astype(dtype)
        return changed

    @property
    def plastic(self) -> bool:
        """Whether any synapse learns (then a batch is a set of independent learners)."""
        return any(syn.learning is not None for syn in self.synapses)

    def spike_ports(self) -> list[InputPort]:
        return [port for port in self.inputs if port.kind == "spikes"]

    def latency(self) -> dict[str, int]:
        """Steps from the inputs to each population along feed-forward synapses (1 + delay each); 0 for a
        population no input reaches (a tonic source)."""
        steps: dict[str, int] = {port.name: 0 for port in self.inputs}
        for pop in self.populations:  # listed in feed-forward order
            arrivals = [
                steps[syn.source] + 1 + (int(syn.delays.min()) if syn.delays is not None else 0)
                for syn in self.synapses_into(pop.name)
                if not syn.recurrent and syn.source in steps
            ]
            if arrivals:
                steps[pop.name] = min(arrivals)
        return {pop.name: steps.get(pop.name, 0) for pop in self.populations}

    def output_latency(self) -> int:
        """Steps the outputs lag the inputs (the largest output latency): what a run needs beyond the input
        window for its last inputs to reach the outputs."""
        latency = self.latency()
        return max((latency[name] for name in self.outputs if name in latency), default=0)

    def recorded_variables(self, record) -> dict[str, set[str]]:
        """``{node: {variables}}`` a backend records for ``record``: None -> the outputs' spikes
        (a non-spiking readout's ``v``), "all", or names (``"pop"`` for all its variables, ``"pop.v"``,
        an input port for its spikes, or a plastic synapse: ``weights``, ``x1``, ``x2``, ``y1``-``y3``)."""
        populations = [p.name for p in self.populations]
        ports = [p.name for p in self.inputs]
        if record is None:
            return {name: {"spikes"} if self.population(name).spiking else {"v"} for name in self.outputs}
        plastic = [syn.name for syn in self.synapses if syn.learning is not None]
        if record == "all":
            chosen = {name: {"spikes", "u", "v"} for name in populations}
            return chosen | {name: set(PLASTIC_VARIABLES) for name in plastic}
        chosen: dict[str, set[str]] = {}
        for item in [record] if isinstance(record, str) else record:
            item = str(item)  # node names may hold dots (nested graphs): a whole name is a node
            node, var = (item, "") if item in populations + ports + plastic else item.rpartition(".")[::2]
            if node in ports and var in ("", "spikes"):
                chosen.setdefault(node, set()).add("spikes")
                continue
            if node in plastic:
                if var and var not in PLASTIC_VARIABLES:
                    raise NeurocompileError(
                        f"record: plastic synapse '{node}' has no variable '{var}' ({', '.join(PLASTIC_VARIABLES)})"
                    )
                chosen.setdefault(node, set()).update({var} if var else set(PLASTIC_VARIABLES))
                continue
            if node not in populations:
                raise NeurocompileError(f"record: program has no node '{node}'")
            if var and var not in ("spikes", "u", "v"):
                raise NeurocompileError(f"record: node '{node}' has no variable '{var}' (spikes, u, v)")
            chosen.setdefault(node, set()).update({var} if var else {"spikes", "u", "v"})
        return chosen

    def validate(self) -> FixedPointProgram:
        if self.number_format not in NUMBER_FORMATS:
            raise NeurocompileError(
                f"program: number_format must be one of {NUMBER_FORMATS}, got '{self.number_format}'"
            )
        for node in [*self.inputs, *self.populations, *self.synapses]:
            if not isinstance(node.name, str) or not node.name:
                raise NeurocompileError(f"program: node name {node.name!r} is not a non-empty string")
            if any(c in node.name for c in "/\\\0"):  # names become recording keys, i.e. archive member names
                raise NeurocompileError(f"program: node name {node.name!r} holds a path separator or NUL")
        for node in [*self.inputs, *self.populations]:
            if (
                not isinstance(node.shape, tuple)
                or not node.shape
                or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in node.shape)
            ):
                raise NeurocompileError(
                    f"node '{node.name}', parameter 'shape': {node.shape!r} is not a tuple of positive integers"
                )
        for node in [*self.inputs, *self.populations]:
            size = math.prod(node.shape)
            if size > MAX_NODE_SIZE:
                raise NeurocompileError(
                    f"node '{node.name}', parameter 'shape': {size} neurons need {size * 4 / 2**30:.3g} GiB per "
                    f"sample and step for one 32-bit variable; a node holds at most {MAX_NODE_SIZE}"
                )
        names = [p.name for p in self.inputs] + [p.name for p in self.populations]
        if len(set(names)) != len(names):
            raise NeurocompileError("program has duplicate node names")
        synapse_names = [syn.name for syn in self.synapses]
        if len(set(synapse_names)) != len(synapse_names):
            raise NeurocompileError("program has duplicate synapse names")
        if not self.outputs or not isinstance(self.outputs, list):
            raise NeurocompileError("program: outputs must name at least one population")
        for pop in self.populations:
            pop.validate(self.number_format)
        shapes = {node.name: tuple(node.shape) for node in [*self.inputs, *self.populations]}
        for syn in self.synapses:
            for end in (syn.source, syn.target):
                if end not in names:
                    raise NeurocompileError(f"synapse '{syn.name}': unknown endpoint '{end}'")
            if syn.target not in {pop.name for pop in self.populations}:
                raise NeurocompileError(f"node '{syn.name}', parameter 'target': '{syn.target}' is not a population")
            syn.validate(self.number_format)
            check_weight_shape(syn, shapes[syn.source], shapes[syn.target])
        for out in self.outputs:
            self.population(out)
        self._validate_learning()
        return self

    def _validate_learning(self) -> None:
        """Cross-element checks of plastic synapses, learning populations, targets and feedback."""
        ports = {port.name: port for port in self.inputs}
        pops = {pop.name: pop for pop in self.populations}
        targets = {pop.learning.target: pop for pop in self.populations if pop.learning and pop.learning.target}
        for port in self.inputs:
            if port.kind not in ("spikes", "target"):
                raise NeurocompileError(f"node '{port.name}', parameter 'kind': must be 'spikes' or 'target'")
            if port.kind == "target" and port.name not in targets:
                raise NeurocompileError(f"node '{port.name}', parameter 'kind': no population learns from this target")
        for name, pop in targets.items():
            if name not in ports or ports[name].kind != "target":
                raise NeurocompileError(f"node '{pop.name}', parameter 'learning.target': no target port '{name}'")
            if tuple(ports[name].shape) != tuple(pop.shape):
                raise NeurocompileError(
                    f"node '{pop.name}', parameter 'learning.target': port '{name}' has shape "
                    f"{tuple(ports[name].shape)}, the population {tuple(pop.shape)}"
                )
        for syn in self.synapses:
            if syn.source in ports and ports[syn.source].kind == "target":
                raise NeurocompileError(f"node '{syn.name}', parameter 'source': a target port is no synapse's source")
            target = pops.get(syn.target)
            if syn.learning is not None:
                if target is None or target.learning is None:
                    raise NeurocompileError(
                        f"node '{syn.name}', parameter 'learning': target '{syn.target}' sends no learning signal"
                    )
                if "y0" in syn.learning.variables() and not target.learning.bap:
                    raise NeurocompileError(
                        f"node '{syn.name}', parameter 'learning': y0 needs target '{syn.target}' to send a bAP (bap=true)"
                    )
            if syn.signal == "error":
                source = pops.get(syn.source)
                if source is None or source.learning is None:
                    raise NeurocompileError(
                        f"node '{syn.name}', parameter 'signal': source '{syn.source}' has no error"
                    )
                if target is None or target.learning is None or target.learning.target is not None:
                    raise NeurocompileError(
                        f"node '{syn.name}', parameter 'signal': target '{syn.target}' must learn from feedback (no target)"
                    )

    def payload_bits(self, node: str) -> int:
        """The bits each spike of ``node`` carries: a population's ``payload_bits``, 0 (binary) for an input port."""
        return next((pop.payload_bits for pop in self.populations if pop.name == node), 0)

    # --- files ------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        header = {"format": "neurocompile-program", "version": FORMAT_VERSION, "metadata": self.metadata}
        header["number_format"] = self.number_format
        header["inputs"] = [asdict(p) for p in self.inputs]
        header["populations"] = []
        for i, pop in enumerate(self.populations):
            record = _record(pop, ("bias_mant", "learning"))
            if pop.learning is not None:
                record["learning"] = plasticity.signal_to_json(pop.learning)
            arrays[f"pop{i}.bias_mant"] = self._stored(pop.bias_mant)
            header["populations"].append(record)
        header["synapses"] = []
        for i, syn in enumerate(self.synapses):
            record = _record(syn, ("weights", "delays", "learning"))
            if syn.learning is not None:
                record["learning"] = plasticity.rule_to_json(syn.learning)
            arrays[f"syn{i}.weights"] = self._stored(syn.weights)
            if syn.delays is not None:
                arrays[f"syn{i}.delays"] = np.asarray(syn.delays, dtype=np.int32)
            header["synapses"].append(record)
        header["outputs"] = list(self.outputs)
        arrays["program.json"] = np.frombuffer(json.dumps(plain(header)).encode(), dtype=np.uint8)
        with open(path, "wb") as fh:
            write_npz(fh, arrays)

    def _stored(self, values) -> np.ndarray:
        """``values`` as the file keeps them: float64 in a float program; else integers of 8 to 32 bits as they
        are (the compiler's 16-bit mantissas stay 16-bit), others as int32."""
        if self.number_format == "float":
            return np.asarray(values, dtype=np.float64)
        values = np.asarray(values)
        return values if values.dtype in (np.int8, np.int16, np.int32) else values.astype(np.int32)

    @classmethod
    def load(cls, path: str | Path) -> FixedPointProgram:
        """Read and validate a ``.ncp`` file; every problem is a one-line error naming the file, and the
        node and field when there is one."""

        arrays = load_arrays(path, "program")
        try:
            return _program_from_arrays(arrays).validate()
        except NeurocompileError as exc:
            raise NeurocompileError(f"{path}: {exc}") from None


def _record(element, stored_apart: tuple[str, ...]) -> dict:
    """A population's or synapse's fields for ``program.json``, without those ``stored_apart`` (not copied)."""
    return {
        f.name: _plain_field(getattr(element, f.name))
        for f in dataclasses.fields(element)
        if f.name not in stored_apart
    }


def _plain_field(value):
    return asdict(value) if dataclasses.is_dataclass(value) else value


# --- reading a program file ---------------------------------------------------------------------

HEADER_FIELDS = {"format", "version", "metadata", "number_format", "inputs", "populations", "synapses", "outputs"}
TUPLE_FIELDS = ("shape", "input_shape", "output_shape", "stride", "padding", "dilation")  # JSON lists, tuples in Python


def _header(raw) -> dict:
    """The decoded ``program.json`` array: a JSON object of this format and version."""
    if raw is None:
        raise NeurocompileError("not a neurocompile program (.ncp): no program.json")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise NeurocompileError(f"program.json: expected a 1-D uint8 array, got {raw.dtype} of shape {list(raw.shape)}")
    try:
        header = json.loads(raw.tobytes().decode(), object_pairs_hook=_object_without_repeats)
    except NeurocompileError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise NeurocompileError(f"program.json: not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != "neurocompile-program":
        raise NeurocompileError("not a neurocompile program (.ncp)")
    if header.get("version") != FORMAT_VERSION:
        raise NeurocompileError(f"program format version {header.get('version')!r} is not supported")
    unknown = sorted(set(header) - HEADER_FIELDS)
    if unknown:
        raise NeurocompileError(f"program.json: unknown field '{unknown[0]}'")
    return header


def _object_without_repeats(pairs: list) -> dict:
    """A JSON object whose keys each appear once (``json`` would keep the last of a repeated key silently)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        repeated = next(key for i, (key, _value) in enumerate(pairs) if key in (k for k, _v in pairs[:i]))
        raise NeurocompileError(f"program.json: field '{repeated}' appears twice in one object")
    return obj


def _records(header: dict, field: str) -> list[dict]:
    records = header.get(field)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise NeurocompileError(f"program.json: field '{field}' must be a list of objects")
    return [dict(r) for r in records]


def _fields(cls, record: dict, where: str, supplied: tuple[str, ...] = ()) -> dict:
    """``record`` checked against dataclass ``cls``: no unknown fields, none of the ``supplied`` ones (they
    are stored as arrays), every required one present."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(record) - known))
    if unknown:
        raise NeurocompileError(f"{where}: unknown field '{unknown[0]}'")
    stored = sorted(set(record) & set(supplied))
    if stored:
        raise NeurocompileError(f"{where}: field '{stored[0]}' is stored as an array, not in program.json")
    required = {f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(record) - set(supplied))
    if missing:
        raise NeurocompileError(f"{where}: field '{missing[0]}' is missing")
    return {k: tuple(v) if isinstance(v, list) and k in TUPLE_FIELDS else v for k, v in record.items()}


def _learning(parse, node, *args):
    """A learning rule or signal parsed from JSON; any failure names the node's ``learning`` field."""
    try:
        return parse(node, *args)
    except NeurocompileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise NeurocompileError(f"node '{node}', parameter 'learning': invalid ({type(exc).__name__})") from None


def _array(arrays: dict, key: str, required: bool = True):
    if key not in arrays and required:
        raise NeurocompileError(f"array '{key}' is missing")
    return arrays.pop(key, None)


def _program_from_arrays(arrays: dict) -> FixedPointProgram:
    """A program (not yet validated) from the arrays of an ``.ncp`` file; the file's structure is checked here."""
    arrays = dict(arrays)
    header = _header(arrays.pop("program.json", None))
    inputs = [InputPort(**_fields(InputPort, r, f"inputs[{i}]")) for i, r in enumerate(_records(header, "inputs"))]
    populations = []
    for i, record in enumerate(_records(header, "populations")):
        record = _fields(Population, record, f"populations[{i}]", ("bias_mant",))
        if record.get("learning") is not None:
            spiking = record.get("spiking", True)
            record["learning"] = _learning(plasticity.signal_from_json, record["name"], record["learning"], spiking)
        populations.append(Population(bias_mant=_array(arrays, f"pop{i}.bias_mant"), **record))
    synapses = []
    for i, record in enumerate(_records(header, "synapses")):
        record = _fields(Synapse, record, f"synapses[{i}]", ("weights", "delays"))
        if record.get("conv") is not None:
            if not isinstance(record["conv"], dict):
                raise NeurocompileError(f"node '{record['name']}', parameter 'conv': must be an object")
            record["conv"] = ConvGeometry(**_fields(ConvGeometry, record["conv"], f"synapses[{i}].conv"))
        if record.get("learning") is not None:
            record["learning"] = _learning(plasticity.rule_from_json, record["name"], record["learning"])
        weights, delays = _array(arrays, f"syn{i}.weights"), _array(arrays, f"syn{i}.delays", required=False)
        synapses.append(Synapse(weights=weights, delays=delays, **record))
    if arrays:
        raise NeurocompileError(f"array '{sorted(arrays)[0]}' belongs to no population or synapse")
    outputs = header.get("outputs")
    if not isinstance(outputs, list):
        raise NeurocompileError("program.json: field 'outputs' must be a list of population names")
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise NeurocompileError("program.json: field 'metadata' must be an object")
    check_report(metadata.get("quantization"))
    return FixedPointProgram(inputs, populations, synapses, outputs, metadata, header.get("number_format", "fixed"))
