"""OTTT and S-TLLR compiled to the program's three-factor learning rules (on-chip learning).

:func:`compile_learning` makes the readout synapse (``layers="readout"``) or every dense synapse of the
feed-forward chain (``"all"``, hidden layers by direct feedback alignment) of a fixed-point program plastic,
and reports its integer choices (:class:`LearningReport`). The rules in float, their product series, the
integer choices and every approximation: ``docs/on-chip-rules.md``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from neurocompile.compiler.dequantize import with_program_weights
from neurocompile.data import fit_steps
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import Factor, LearningRule, LearningSignal, Product, SignalTerm, Surrogate
from neurocompile.ir.program import DECAY_BITS, FixedPointProgram, InputPort, Synapse
from neurocompile.learning import LAYER_CHOICES
from neurocompile.semantics.discretization import SURROGATE_ALPHA
from neurocompile.training import RULES
from neurocompile.training.stllr import DEFAULT_FACTORS

PSI_SCALE = 64  # table value of psi = 1
PSI_BINS = 32
TARGET_PORT = "target"
FEEDBACK_SCALE = 64  # largest |B| entry in weight units
SIGNAL_MAX = 127
V_ERROR_RANGE = 8.0  # a non-spiking readout's error v - y, in float units, that y2 still resolves
FEEDBACK_LAG = 1  # steps from the readout's error to the hidden layers (the feedback synapse)


@dataclass(frozen=True)
class StreamTiming:
    """How samples follow each other in a learning stream, derived from the program (:func:`stream_timing`).

    Each sample's ``sample_steps`` input steps are followed by ``silent_steps`` without input, so that its
    last inputs reach the readout and its error reaches every hidden layer before the next sample starts;
    neuron state resets at the end of every ``window``. The one-hot target starts ``target_delay`` steps
    into the window (the readout's latency: when its activity for the sample arrives) and lasts
    ``sample_steps``."""

    sample_steps: int
    silent_steps: int
    target_delay: int

    @property
    def window(self) -> int:
        return self.sample_steps + self.silent_steps


def stream_timing(program: FixedPointProgram, sample_steps: int) -> StreamTiming:
    """The timing of ``program``'s learning stream: the target delayed by the output latency, and that
    latency plus the feedback lag of silent steps after every sample."""
    latency = program.output_latency()
    return StreamTiming(int(sample_steps), latency + FEEDBACK_LAG, latency)


@dataclass
class LayerPlan:
    """How one plastic synapse's rule was represented (all floats are as Lava represents them)."""

    synapse: str
    population: str
    lambda_pre: float
    tau: int
    lambda_chip: float
    impulse: int
    mantissa: int
    exponent: int
    scale_wanted: float
    scale_error: float
    signal_shift: int
    target_value: int = 1
    post: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    lr: float = 0.0  # the layer's learning rate as asked

    @property
    def lr_represented(self) -> float:
        """The learning rate the integer scale ``mantissa * 2**exponent`` stands for."""
        return self.lr * self.mantissa * 2.0**self.exponent / self.scale_wanted


@dataclass
class LearningReport:
    rule: str
    layers: str
    lr: float
    surrogate_alpha: float
    plans: list[LayerPlan]
    timing: StreamTiming | None = None
    hidden_lr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, report: dict) -> LearningReport:
        timing = report.get("timing")
        plans = [LayerPlan(**plan) for plan in report["plans"]]
        return cls(**{**report, "plans": plans, "timing": None if timing is None else StreamTiming(**timing)})

    @property
    def target_value(self) -> int:
        """The integer that stands for 1 in the target stream (the readout's error unit)."""
        return self.plans[-1].target_value

    def table(self) -> str:
        lines = [
            f"on-chip {self.rule.upper()} ({self.layers}), lr {self.lr:g}"
            + (f", hidden lr {self.hidden_lr:g}" if len(self.plans) > 1 else "")
            + f", surrogate slope {self.surrogate_alpha:g}"
        ]
        if self.timing is not None:
            t = self.timing
            lines.append(
                f"  stream: {t.sample_steps} input + {t.silent_steps} silent steps per sample, "
                f"target from step {t.target_delay} (the output latency), state reset every {t.window} steps"
            )
        for p in self.plans:
            lines.append(
                f"  {p.synapse}: lr {p.lr:g} -> {p.lr_represented:.4g}, lambda {p.lambda_pre:.4f} -> tau {p.tau} "
                f"(chip {p.lambda_chip:.4f}), impulse {p.impulse}, scale {p.mantissa} * 2^{p.exponent} "
                f"(wanted {p.scale_wanted:.4g}, error {100 * p.scale_error:.1f}%), signal >> {p.signal_shift}"
            )
            if p.post:
                q = p.post
                lines.append(
                    f"    post term: scale {q['scale'][0]} * 2^{q['scale'][1]} (wanted {q['scale_wanted']:.4g}, "
                    f"error {100 * q['scale_error']:.1f}%), trace >> {q['y3_shift']}"
                )
            lines += [f"    note: {note}" for note in p.notes]
        return "\n".join(lines)


def trace_tau(lmbda: float) -> tuple[int, float]:
    """The integer tau whose ``exp(-1/tau)`` is closest to ``lmbda``, and that decay."""
    if not 0.0 < lmbda < 1.0:
        raise NeurocompileError(f"on-chip learning: a trace decay must lie in (0, 1), got {lmbda}")
    tau = max(1, round(-1.0 / math.log(lmbda)))
    return tau, math.exp(-1.0 / tau)


def trace_impulse(lambda_chip: float) -> int:
    """The largest power of two (at least 8) whose steady-state trace ``impulse / (1 - lambda)`` fits 7 bits."""
    impulse = 8  # at least 8: the timing correction impulse / 8 * x0 * y2 is then exact
    while impulse * 2 / (1.0 - lambda_chip) <= 127:
        impulse *= 2
    return min(impulse, 64)


def surrogate_table(v_unit: float, alpha: float = SURROGATE_ALPHA) -> Surrogate:
    """The offline surrogate ``1 / (alpha |x| + 1)**2`` (x = v - v_threshold in float units) as a
    table over ``|v - vth|`` in register units (``v_unit`` register units per float unit)."""
    support = (math.sqrt(2 * PSI_SCALE) - 1.0) / alpha * v_unit  # psi rounds to 0 beyond (< 1/128)
    shift = max(0, math.ceil(math.log2(max(support / (PSI_BINS - 1), 1.0))))
    width = 2.0**shift
    centers = (np.arange(PSI_BINS) + 0.5) * width / v_unit
    table = np.round(PSI_SCALE / (alpha * centers + 1.0) ** 2).astype(int)
    table[-1] = 0
    return Surrogate(tuple(int(v) for v in table), shift)


MAX_EXPONENT = 8  # Lava's scale exponents lie in [-7, 8]


def representable_scale(
    value: float, node: str, lr: float | None = None, max_exponent: int = MAX_EXPONENT
) -> tuple[int, int, float]:
    """``(m, e, relative error)`` with ``m * 2**e`` closest to ``value`` (m in [-7, 7], e in [-7, max_exponent]);
    ``lr``: the learning rate ``value`` stands for (the error then gives the rates the layer takes)."""
    if value == 0:
        raise NeurocompileError(f"on-chip learning: layer '{node}': the learning rate is 0")
    best = None
    for e in range(-7, max_exponent + 1):
        m = int(np.clip(round(value / 2.0**e), -7, 7))  # not -8: Lava would rewrite it as -4 * 2**(e+1)
        if m == 0:
            continue
        err = abs(m * 2.0**e - value) / abs(value)
        if best is None or err < best[2] - 1e-12:
            best = (m, e, err)
    if best is None or best[2] >= 0.5:
        rates = "" if lr is None else f"learning rate {lr:g}: this layer takes {_rate_bound(value, lr, max_exponent)}; "
        raise NeurocompileError(
            f"on-chip learning: layer '{node}': {rates}scale {value:.3g} is outside Lava's range "
            "(mantissa in [-8, 7], exponent in [-7, 8]; --lr sets the readout's rate, --hidden-lr the hidden layers')"
        )
    return best


def _rate_bound(value: float, lr: float, max_exponent: int) -> str:
    """The bound on the learning rate that the scale ``value`` (at rate ``lr``, proportional to it) breaks:
    ``m * 2**e`` is within 50% of the values from ``2**-7 / 1.5`` to ``7 * 2**max_exponent * 2``."""
    low, high = 2.0**-7 / 1.5, 7 * 2.0**max_exponent * 2
    return f"at least {lr * low / abs(value):.2g}" if abs(value) < low else f"at most {lr * high / abs(value):.2g}"


def _chain(program: FixedPointProgram, layers: str) -> list[Synapse]:
    """The dense synapses that learn, in feed-forward order (input side first)."""
    if layers not in LAYER_CHOICES:
        raise NeurocompileError(f"on-chip learning: layers must be one of {LAYER_CHOICES}, got '{layers}'")
    if program.number_format != "fixed":
        raise NeurocompileError("on-chip learning compiles a fixed-point program")
    if program.plastic:
        raise NeurocompileError("on-chip learning: the program already learns")
    if len(program.outputs) != 1:
        raise NeurocompileError("on-chip learning needs a program with one output population")
    chain, node = [], program.outputs[0]
    while True:
        into = program.synapses_into(node)
        if len(into) != 1 or into[0].kind != "dense" or into[0].delays is not None or into[0].recurrent:
            break
        chain.insert(0, into[0])
        node = into[0].source
        if node not in {p.name for p in program.populations}:
            break
    if not chain:
        raise NeurocompileError(
            f"on-chip learning: output '{program.outputs[0]}' has no learnable layer "
            "(one dense synapse without delays into it)"
        )
    return chain if layers == "all" else chain[-1:]


def _units(program: FixedPointProgram, population: str) -> float:
    """Integer weight units per float unit of ``v`` (the quantization report's scale), or 1."""
    report = (program.metadata or {}).get("quantization") or {}
    for layer in report.get("layers", []):
        if layer.get("population") == population:
            return float(layer["scale"])
    return 1.0


def feedback_matrices(hidden: list[int], n_out: int, seed: int) -> list[np.ndarray]:
    """The fixed random feedback matrices B [n_hidden, n_out] of the offline trainer's ``--feedback dfa``
    for hidden layers of sizes ``hidden`` (``training.online.OnlineRule``: uniform(-1, 1) / sqrt(n_out),
    drawn in layer order from one generator seeded ``seed + 7919``)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 7919)
    return [
        ((torch.rand(n_out, n, generator=gen, dtype=torch.float32) * 2 - 1) / n_out**0.5).T.double().numpy()
        for n in hidden
    ]


def compile_learning(
    program: FixedPointProgram,
    rule: str = "ottt",
    layers: str = "readout",
    lr: float = 0.003,
    hidden_lr: float | None = None,
    seed: int = 0,
    factors: tuple[float, float, float, float] = DEFAULT_FACTORS,
    sample_steps: int | None = None,
    surrogate_alpha: float = SURROGATE_ALPHA,
) -> tuple[FixedPointProgram, LearningReport]:
    """A copy of ``program`` whose chosen layers learn with ``rule`` on chip (see the module doc).

    ``sample_steps``: the samples' length; the stream then follows :func:`stream_timing` (in the report),
    and neuron state resets at the end of every sample's window. None: one continuous stream.
    The copy gains an input port ``target`` (integers: the one-hot target at every step).
    """
    if rule not in RULES:
        raise NeurocompileError(f"on-chip learning: rule must be one of {RULES}, got '{rule}'")
    hidden_lr = lr if hidden_lr is None else hidden_lr
    for name, value in (("lr", lr), ("hidden lr", hidden_lr), ("surrogate slope", surrogate_alpha)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise NeurocompileError(f"on-chip learning: {name} must be a positive number, got {value}")
    chain = _chain(program, layers)
    timing = stream_timing(program, sample_steps) if sample_steps else None
    learned = copy.deepcopy(program)
    out = learned.population(learned.outputs[0])
    learned.inputs.append(InputPort(TARGET_PORT, tuple(out.shape), kind="target"))
    if timing is not None:
        for pop in learned.populations:
            pop.reset_interval = timing.window
    plans = []
    hidden = [learned.population(syn.target) for syn in chain[:-1]]
    feedback = feedback_matrices([pop.size for pop in hidden], out.size, seed)
    for depth, syn in enumerate(chain):
        syn = learned.synapse(syn.name)
        pop = learned.population(syn.target)
        _check_learnable(pop)
        b = feedback[depth] if depth < len(hidden) else None
        plan, syn.learning, pop.learning = _layer(
            learned, syn, pop, rule, lr if b is None else hidden_lr, seed + depth, b, factors, surrogate_alpha
        )
        plans.append(plan)
        if b is not None:
            weights = 2 * np.round(b * _feedback_units(b) / 2).astype(np.int32)  # even: Lava keeps them
            learned.synapses.append(
                Synapse(f"{syn.name}.feedback", out.name, pop.name, "dense", weights, signal="error")
            )
    report = LearningReport(rule, layers, float(lr), float(surrogate_alpha), plans, timing, float(hidden_lr))
    return learned.validate(), report


def _feedback_units(b: np.ndarray) -> float:
    """Integer feedback weight per float unit of B (its largest entry becomes FEEDBACK_SCALE)."""
    return FEEDBACK_SCALE / float(np.abs(b).max())


def _layer(program, syn: Synapse, pop, rule: str, lr: float, seed: int, feedback, factors, surrogate_alpha: float):
    """The rule, signal and plan of one layer; ``feedback``: its B matrix (None: the readout)."""
    readout = feedback is None
    _lambda_post, lambda_pre, alpha_post, _alpha_pre = factors
    k = _units(program, pop.name)
    v_unit = 64.0 * k  # register units per float unit of v
    weight_unit = 2.0 ** int(syn.weight_exp) / k  # float v increment per weight mantissa unit
    membrane = 1.0 - int(pop.dv) / 2**DECAY_BITS
    lam = membrane if rule == "ottt" else lambda_pre
    tau, lam_chip = trace_tau(lam)
    impulse = trace_impulse(lam_chip)
    surrogate = surrogate_table(v_unit, surrogate_alpha) if pop.spiking else None
    psi_scale = PSI_SCALE if pop.spiking else 1
    output_shift, error_unit, peak = _error_units(program, pop, feedback, v_unit)
    peak *= psi_scale
    shift, wanted, (m, e, err), notes = _scale_and_shift(
        lr, weight_unit, lam_chip * impulse, error_unit * psi_scale, peak, syn.name, _correction_bits(impulse)
    )
    if impulse / (1 - lam_chip) > 127:
        notes.append("pre trace saturates at 127")
    correction = _correction(m, e, impulse)
    products = [Product("u0", (Factor("x1"), Factor("y2")), m, e), correction]
    signal_terms = dict(y2=SignalTerm("surrogate" if pop.spiking else "one", shift))
    post, trace_decay = {}, 0
    if rule == "stllr" and pop.spiking and alpha_post != 0:
        product, term, post = _stllr_post_term(syn.name, lr, factors, weight_unit, error_unit * psi_scale, peak)
        products.append(product)
        signal_terms["y3"] = term
        trace_decay = post["trace_decay"]
        notes.append("S-TLLR post term pairs trpsi[t-1] with the pre spike of step t (offline: t-1)")
        if post["scale_error"] > 0.1:
            notes.append(f"post-term scale rounds by {100 * post['scale_error']:.0f}%")
    signal = LearningSignal(
        target=TARGET_PORT if readout else None,
        output="spikes" if pop.spiking else "v",
        output_shift=output_shift,
        surrogate=surrogate,
        trace_decay=trace_decay,
        **signal_terms,
    )
    learning = LearningRule(
        products=tuple(products), rng_seed=seed, x1_impulse=float(impulse), x1_tau=tau, x2_impulse=0.0, x2_tau=0
    )
    target_value = round(error_unit) if readout else 0
    plan = LayerPlan(
        syn.name, pop.name, lam, tau, lam_chip, impulse, m, e, wanted, err, shift, target_value, post, notes, lr
    )
    return plan, learning, signal


def _scale_and_shift(
    lr: float, weight_unit: float, trace_gain: float, y_unit: float, peak: float, node: str, correction_bits: int
):
    """``(shift, wanted, (m, e, error), notes)``: the learning signal's right shift and the rule's
    scale ``m * 2**e`` for a weight change of ``-lr * L * psi * a`` per step (``weight_unit``: the float
    v increment of one weight mantissa unit; ``trace_gain``: lambda * impulse, what ``x1 - impulse * x0`` holds per
    unit of ``a[t-1]``; ``y_unit``: y2 per unit of ``L * psi`` before the shift; ``peak``: the
    largest y2 before the shift; ``correction_bits``: the timing correction's exponent lies this much above
    the scale's)."""

    def scale_for(shift: int) -> float:  # (x1 * y2 >> 3) * m * 2**e per step
        return -lr / weight_unit * 8.0 / (trace_gain * y_unit / 2.0**shift)

    shift = _signal_shift(scale_for, peak)
    notes = []
    if peak / 2.0**shift < 16:
        notes.append(f"learning signal peaks at {peak / 2.0**shift:.0f} of 127 (y2 has few bits)")
    wanted = scale_for(shift)
    scale = representable_scale(wanted, node, lr, MAX_EXPONENT - correction_bits)
    if scale[2] > 0.1:
        notes.append(f"scale rounds by {100 * scale[2]:.0f}% (3-bit mantissa)")
    return shift, wanted, scale, notes


def _signal_shift(scale_for, peak: float) -> int:
    """The right shift of a learning signal that peaks at ``peak``: enough to fit SIGNAL_MAX, and more while
    the rule's scale ``scale_for(shift)`` would fall below Lava's smallest (a small learning rate: fewer bits
    of the signal instead)."""
    shift = max(0, math.ceil(math.log2(max(peak / SIGNAL_MAX, 1.0))))
    while abs(scale_for(shift)) < 1.5 * 2.0**-7 and peak / 2.0 ** (shift + 1) >= 4:
        shift += 1
    return shift


def _error_units(program, pop, feedback, v_unit: float) -> tuple[int, float, float]:
    """``(output_shift, error_unit, peak)``: the readout's output shift, the integer error per float
    unit of the learning signal L, and the largest |L| expected in integers.

    Readout: error = s - y (spikes: 0/1 units) or (v >> shift) - y, y in 2**4 steps of one float unit,
    v errors up to V_ERROR_RANGE units. Hidden layer: the feedback sum B_int (s - y), B in
    ``_feedback_units`` per float unit, summed over the outputs."""
    if feedback is None:
        if pop.spiking:
            return 0, 1.0, 1.0
        shift = max(0, round(math.log2(v_unit)) - 4)
        unit = v_unit / 2.0**shift
        return shift, unit, unit * V_ERROR_RANGE
    unit = _feedback_units(feedback)
    return 0, unit, unit * math.sqrt(program.population(program.outputs[0]).size)


def _stllr_post_term(node: str, lr: float, factors, weight_unit: float, error_unit: float, peak: float):
    """S-TLLR's ``alpha_post * trpsi[t-1] * x[t]``: the product ``x0 * y3`` (Lava shifts it by 0),
    the signal term ``y3 = L * trpsi >> s3`` and its plan entries."""
    lambda_post, _lambda_pre, alpha_post, alpha_pre = factors
    trace_decay = int(round(2**DECAY_BITS * (1.0 - lambda_post)))
    trace_peak = peak / max(1e-9, trace_decay / 2**DECAY_BITS)  # the trace sums psi over 1/(1-lambda) steps

    def scale_for(shift: int) -> float:
        return -lr * alpha_post / weight_unit / (error_unit / 2.0**shift) / alpha_pre

    s3 = _signal_shift(scale_for, trace_peak)
    wanted = scale_for(s3)
    m3, e3, err3 = representable_scale(wanted, node, lr)
    post = {
        "lambda_post": 1.0 - trace_decay / 2**DECAY_BITS,
        "trace_decay": trace_decay,
        "y3_shift": s3,
        "scale": [m3, e3],
        "scale_wanted": wanted,
        "scale_error": err3,
    }
    return Product("x0", (Factor("y3"),), m3, e3), SignalTerm("surrogate_trace", s3), post


def _correction_bits(impulse: int) -> int:
    """``k`` with ``impulse / 8 = 2**k``: the timing correction's exponent over the rule's."""
    return int(math.log2(impulse)) - 3


def _correction(m: int, e: int, impulse: int) -> Product:
    """``-impulse * x0 * y2`` at the scale of ``x1 * y2`` (which Lava shifts right by 3): ``-m * 2**(e + k)``,
    in Lava's range as the scale's exponent was kept at most ``MAX_EXPONENT - k``."""
    return Product("x0", (Factor("y2"),), -m, e + _correction_bits(impulse))


def target_stream(labels, steps: int, n_out: int, value: int = 1) -> np.ndarray:
    """One-hot targets [N, steps, n_out] (int32): ``value`` on the label's output at every step."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_out):
        raise NeurocompileError(f"on-chip learning: labels must lie in [0, {n_out - 1}]")
    onehot = np.eye(n_out, dtype=np.int32)[labels] * int(value)
    return np.repeat(onehot[:, None, :], steps, axis=1)


def back_to_back(samples: np.ndarray) -> np.ndarray:
    """[N, T, ...] samples -> one stream [1, N * T, ...]."""
    samples = np.asarray(samples)
    return samples.reshape(1, -1, *samples.shape[2:])


def timed_stream(x, labels, timing: StreamTiming, n_out: int, value: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``x`` [N, sample_steps, ...] and their one-hot targets as two streams [1, N * window, ...]
    laid out by ``timing``: every sample followed by its silent steps, its target on from
    ``target_delay`` for ``sample_steps`` steps, off elsewhere."""
    start = timing.target_delay
    targets = np.zeros((len(labels), timing.window, n_out), np.int32)
    targets[:, start : start + timing.sample_steps] = target_stream(labels, timing.sample_steps, n_out, value)
    return back_to_back(fit_steps(np.asarray(x), timing.window)), back_to_back(targets)


def _check_learnable(pop) -> None:
    """Refuse, in one line naming the options that change it, a layer whose neurons the learning engine's
    neuron (Lava's LIF: reset to zero in the spiking step, binary spikes) cannot be."""
    found = {
        "resets by subtraction": pop.reset != "zero",
        f"resets with {pop.reset_timing} timing": pop.reset_timing != "same-step",
        "sends graded spikes": pop.payload_bits > 0,
    }
    if any(found.values()):
        what = " and ".join(text for text, present in found.items() if present)
        raise NeurocompileError(
            f"on-chip learning: layer '{pop.name}' {what}; a learning layer resets to zero in the spiking step "
            "and spikes once (compile the model with --reset zero and a --convention with reset_timing=same-step "
            "and spikes_per_step=single, then learn the .ncp)"
        )


def without_learning(program: FixedPointProgram) -> FixedPointProgram:
    """The deployed form of a learned program: no rules, signals, targets or feedback synapses."""
    plain = copy.deepcopy(program)
    plain.inputs = [port for port in plain.inputs if port.kind == "spikes"]
    plain.synapses = [syn for syn in plain.synapses if syn.signal == "spikes"]
    for syn in plain.synapses:
        syn.learning = None
    for pop in plain.populations:
        pop.learning = None
        pop.reset_interval = 0
    return plain.validate()


def learned_graph(graph, deployed: FixedPointProgram, learned: FixedPointProgram):
    """The NIR ``graph`` (the model the program was compiled from) with the weights its learned synapses hold in
    ``learned``, dequantized by the factor measured on ``deployed`` (``dequantize.with_program_weights``;
    biases are unchanged: the rules do not learn them)."""
    changed = [
        syn.name
        for syn in learned.synapses
        if syn.learning is not None or not np.array_equal(deployed.synapse(syn.name).weights, syn.weights)
    ]
    return with_program_weights(graph, deployed, {name: learned.synapse(name).weights for name in changed})
