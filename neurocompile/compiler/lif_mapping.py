"""A normalized population as Lava's LIF: decays, effective weights, threshold and reset, the tonic
source of a bias that enters the current, and the program they form. Shared by the fixed-point
lowering (:mod:`neurocompile.compiler.quantize`) and the float one
(:mod:`neurocompile.compiler.float_program`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from neurocompile.errors import HardwareLimitError, NeurocompileError
from neurocompile.files import plain
from neurocompile.ir.normalized import NormalizedGraph, NormalizedPopulation, NormalizedSynapse, ScaledMatrix
from neurocompile.ir.program import FixedPointProgram, InputPort, Population
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.primitives import PRIMITIVES


@dataclass
class Dynamics:
    """A population's linear form (``primitives.LinearForm``) with its decays as Lava integers."""

    du: int
    dv: int
    gain: np.ndarray  # float v increment per unit of neuron input x (per neuron)
    bias_v: np.ndarray  # float v increment per step from bias and v_leak (per neuron)
    extra_delay: int
    bias_x: np.ndarray | None  # a bias that enters as input x through a tonic source (LinearForm.bias_x)
    a_u: float  # float per-step decay of u (1 for no synaptic state)
    a_v: float  # float per-step decay of v
    u_to_v: np.ndarray | None  # float v increment per unit of the model's current i (None: no current)
    notes: list[str]


def _uniform(values: np.ndarray, pop: str, param: str) -> float:
    if not np.allclose(values, values.flat[0], rtol=1e-6, atol=0):
        raise HardwareLimitError(
            f"decay differs across neurons ({values.min():.4g}..{values.max():.4g}); Lava LIF has one per population",
            pop,
            param,
        )
    return float(values.flat[0])


def _decay_int(alpha: float, pop: str, param: str, offset: int) -> int:
    if not np.isfinite(alpha) or alpha <= 0:
        raise HardwareLimitError(f"dt/{param} = {alpha:.4g} gives no decay", pop, param)
    if alpha > 1 + 1e-9:
        raise HardwareLimitError(
            f"dt/{param} = {alpha:.4g} > 1: the neuron decays more than fully in one step (choose a smaller dt)",
            pop,
            param,
        )
    d = int(round(4096 * alpha)) - offset
    return min(max(d, 0), 4095)


def population_dynamics(pop: NormalizedPopulation, conv: Convention) -> Dynamics:
    form = PRIMITIVES[pop.type].neuron.linear_form(pop.params, pop.bias, conv)
    u_param, v_param = form.decay_param.get("u", "u"), form.decay_param.get("v", "v")
    a_u, a_v = _uniform(form.a_u, pop.name, u_param), _uniform(form.a_v, pop.name, v_param)
    du = _decay_int(a_u, pop.name, u_param, 1) if form.has_current else 4095
    dv = _decay_int(a_v, pop.name, v_param, 0) if a_v > 0 else 0
    notes = list(form.notes)
    if a_v >= 1:
        notes.append("v keeps 1/4096 of its previous value between steps (Lava's dv is 12 bits)")
    return Dynamics(du, dv, form.gain, form.bias_v, form.extra_delay, form.bias_x, a_u, a_v, form.u_to_v, notes)


def effective_weights(syn: NormalizedSynapse, gain: np.ndarray, target_shape) -> ScaledMatrix | np.ndarray:
    """Float v increment per source spike: weights scaled by the target's per-neuron gain."""
    if syn.kind == "conv":
        g = gain.reshape(target_shape) if gain.size > 1 else np.full(target_shape, float(gain.flat[0]))
        per_channel = g.reshape(g.shape[0], -1)
        if not np.allclose(per_channel, per_channel[:, :1], rtol=1e-6):
            raise HardwareLimitError("r (or w_in) differs within an output channel of a conv synapse", syn.target, "r")
        return syn.weights * per_channel[:, 0].reshape(-1, 1, 1, 1)
    return syn.weights.scale_rows(gain)


@dataclass
class Layer:
    """What every pass needs to know about one population: its dynamics, threshold scaling
    (``rho`` = 1 / v_threshold per neuron, 1 for readouts) and its incoming synapses with their
    effective float weights (v increment per spike)."""

    pop: NormalizedPopulation
    dyn: Dynamics
    rho: np.ndarray
    incoming: list[NormalizedSynapse]
    w_effs: list[ScaledMatrix | np.ndarray]  # as the synapses' weights: a matrix's factors, or a conv kernel


def layer_of(normalized: NormalizedGraph, pop: NormalizedPopulation) -> Layer:
    conv = normalized.convention
    rho = 1.0 / lava_threshold(pop, conv) if pop.spiking else np.ones(pop.size)
    dyn = population_dynamics(pop, conv)
    incoming = normalized.synapses_into(pop.name)
    if dyn.bias_x is not None:
        incoming = [*incoming, bias_synapse(pop.name, dyn.bias_x)]
    return Layer(pop, dyn, rho, incoming, [effective_weights(s, dyn.gain, pop.shape) for s in incoming])


def tonic_source(population: str) -> str:
    """The name of the tonic source that carries ``population``'s bias into its current."""
    return f"{population}.bias_source"


def bias_synapse(population: str, bias_x: np.ndarray) -> NormalizedSynapse:
    """A bias that enters a neuron's current (Lava has no bias on u): a dense synapse from a tonic source,
    one neuron that spikes every step, with the bias as its weights."""
    weights = ScaledMatrix(bias_x.reshape(-1, 1))
    return NormalizedSynapse(f"{population}.bias", tonic_source(population), population, "dense", weights)


def tonic_population(population: str, number_format: str) -> Population:
    """The tonic source of ``population``: no input, its bias alone crosses a zero threshold every step."""
    one, fixed = np.ones(1), number_format == "fixed"
    return Population(
        tonic_source(population),
        (1,),
        du=4095 if fixed else 1.0,
        dv=0,
        vth=0,
        bias_mant=one.astype(np.int32 if fixed else np.float64),
        source_type="tonic",
    )


def check_lava_convention(conv: Convention) -> None:
    """Refuse the convention options that describe native peer dynamics (``Convention.native_options``) with no
    integer form: Lava's LIF has forward-Euler decays (``normalize.euler_form`` rewrites exponential ones);
    snnTorch's reset timings and several spikes per step run on a custom neuron (``Population.reset_timing``,
    ``Population.payload_bits``)."""
    for option, value in conv.native_options().items():
        if option == "decay":
            raise NeurocompileError(
                f"convention '{conv.name}': {option}={value!r} has no Lava LIF form (the fixed-point compiler "
                f"needs {option}={Convention.__dataclass_fields__[option].default!r})"
            )


def lava_threshold(pop: NormalizedPopulation, conv: Convention) -> np.ndarray:
    """Per-neuron threshold of a spiking population, after checking Lava LIF can reset it
    (to zero; reset by subtraction ignores ``v_reset``)."""
    model = PRIMITIVES[pop.type].neuron
    if model.reset is not None and conv.reset != "subtract" and np.any(pop.params[model.reset] != 0):
        raise HardwareLimitError(
            "Lava LIF resets v to 0; a non-zero v_reset is not representable", pop.name, model.reset
        )
    v_th = pop.params[model.threshold].reshape(-1)
    if np.any(v_th <= 0):
        raise HardwareLimitError("threshold must be positive", pop.name, model.threshold)
    return v_th


def reset_of(pop: NormalizedPopulation, conv: Convention) -> dict:
    """``Population.reset`` and ``reset_timing`` of ``pop``: the convention's, for a spiking neuron that resets."""
    if not (pop.spiking and PRIMITIVES[pop.type].neuron.reset is not None):
        return {"reset": "zero", "reset_timing": "same-step"}
    return {"reset": conv.reset, "reset_timing": conv.reset_timing}


def program_of(
    normalized: NormalizedGraph,
    populations,
    synapses,
    number_format: str = "fixed",
    bias_onset: str = "latency",
    **metadata,
):
    """The program of ``normalized``'s inputs and outputs, with its dt, convention and output names. With
    ``bias_onset="latency"`` a population's bias waits for its synaptic input: ``Population.bias_onset`` is
    its latency, and a tonic source's synapse is delayed to arrive with the first input."""
    conv = normalized.convention
    program = FixedPointProgram(
        inputs=[InputPort(i.name, tuple(i.shape)) for i in normalized.inputs],
        populations=populations,
        synapses=synapses,
        outputs=list(normalized.outputs),
        metadata={
            "dt": conv.dt,
            "convention": plain(asdict(conv)),
            "output_names": dict(normalized.output_names),
            **metadata,
        },
        number_format=number_format,
    )
    if bias_onset == "start":
        return program
    latency = program.latency()
    for pop in program.populations:
        pop.bias_onset = latency[pop.name] if np.any(pop.bias_mant) else 0
    for syn in program.synapses:
        if syn.source == tonic_source(syn.target):
            delays = np.zeros(np.shape(syn.weights), np.int32) if syn.delays is None else syn.delays
            syn.delays = delays + max(latency[syn.target] - 1 - int(delays.min()), 0)  # 0: no input reaches it
    return program
