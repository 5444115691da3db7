"""Lava's learning engine, defined once: traces, products, weight updates, random streams and
learning signals, bit for bit as lava-nc 0.10.0's ``LearningDense`` fixed_pt model computes them
(``docs/on-chip-learning.md``), with the float forms its ``floating_pt`` model computes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.semantics.fixedpoint import (
    CHANNEL_BITS,
    DECAY_SHIFT,
    DECAY_UNITY,
    as_int64,
    decay_multiplier,
    effective_vth,
    wrap_bits,
)

# Mirrors lava-nc 0.10.0's LearningDense fixed_pt model (``magma/core/model/py/connection.py``,
# ``LearningConnectionModelBitApproximate``; products in ``magma/core/learning/
# learning_rule_applier.py``, ``LearningRuleApplierBitApprox``). Per time step (1-based ``k``):
#
#   spike phase:  the synapse sends W . s_pre[k-1], computes W . s_pre[k] (weights truncated once,
#                 at the first step), then ``recv_traces``: pre spikes (within-epoch time, repeat
#                 spikes add their impulse at once), the post neuron's bAP and y1-y3 (overwrite);
#                 both trace generators advance twice.
#   learning phase (k % t_epoch == 0): the weight generator advances; trace histories over the
#                 epoch (stochastic decay, impulse at the spike time); products; weight update.
#
# Random streams (``magma/core/learning/random.py``): x traces draw from generators seeded
# ``rng_seed`` (decay, float) and ``rng_seed + 1`` (impulse, integer in [0, 128)), y traces from
# ``rng_seed + 2`` and ``rng_seed + 3``; one scalar per draw, shared by all synapses. The learning
# phase of step k uses draw 2k (one at construction, two per step). Weight rounding draws from a
# generator always seeded 2 (``ConnVarRandom()``), one scalar per learning epoch e (draw e).

TRACE_MAX = 127  # W_TRACE = 7
IMPULSE_FRACTION_SCALE = 2**8  # W_TRACE_FRACTIONAL_PART
ACCUMULATOR_LIMITS = (-(2**15) - 1, 2**15 - 1)  # W_ACCUMULATOR_U, as clipped by the applier
ACCUMULATOR_WIDTH = 15  # W_ACCUMULATOR_U
MANTISSA_WIDTH = 4  # W_S_MANT
WEIGHT_ACCUMULATOR_SHIFT = 7  # W_ACCUMULATOR_S - W_WEIGHTS_S
FACTOR_WIDTH = {"x0": 1, "y0": 1, "x1": 7, "x2": 7, "y1": 7, "y2": 7, "y3": 7, "w": 9}  # FACTOR_TO_WIDTH_DICT
Y_TAU = 65535  # Loihi3FLearningRule fixes y1-y3 to impulse 0, tau 65535
WEIGHT_ROUNDING_SEED = 2  # ConnVarRandom's default seed, used whatever rng_seed is
SIGNAL_LIMITS = (-128, 127)  # y values travel as 8-bit signed (s_in_y*: precision 7 + sign)
PSI_TRACE_MAX = 2**23 - 1


def lava_scale(mantissa: int, exponent: int) -> tuple[int, int]:
    """Lava's canonical scale of a product: an even mantissa beyond [-7, 7] is halved while the
    exponent is below 8 (``ProductSeries._generate_product``). -8 * 2**e becomes -4 * 2**(e+1)."""
    m, e = int(mantissa), int(exponent)
    while abs(m) > 7 and m % 2 == 0 and e < 8:
        m, e = int(m / 2), e + 1
    return m, e


def trace_decay_factors(taus) -> np.ndarray:
    """``exp(-1 / tau)`` for each tau, computed as Lava does (``np.exp(-t / taus)`` on an array)."""
    taus = np.asarray(taus, dtype=np.float64).reshape(-1, 1)
    return np.exp(-1 / np.where(taus == 0, 1, taus))[:, 0]


def impulse_parts(impulse: float) -> tuple[int, int]:
    """Integer part and 8-bit fraction of a trace impulse (``_decompose_impulses``)."""
    whole = np.floor(impulse)
    return int(whole), int(np.round((impulse - whole) * IMPULSE_FRACTION_SCALE))


def stochastic_floor(values: np.ndarray, r: float) -> np.ndarray:
    """``floor(values) + (r < frac(values))`` (``utils.stochastic_round`` after ``% 1`` and floor)."""
    whole = np.floor(values)
    return whole.astype(np.int64) + (r < values - whole)


def decay_trace(trace, factor: float, r: float) -> np.ndarray:
    """One step of stochastic trace decay, ``exp(-1/tau) * trace`` rounded with ``r``
    (``_decay_trace``); ``factor`` from :func:`trace_decay_factors`."""
    return stochastic_floor(factor * np.asarray(trace, dtype=np.float64), r)


def add_impulse(trace, r: int, impulse_int: int, impulse_frac: int) -> np.ndarray:
    """Impulse addition, ``clip(trace + int + (r < frac), 0, 127)`` (``_add_impulse``); ``r`` is a
    7-bit draw compared with the 8-bit fraction."""
    return np.clip(as_int64(trace) + impulse_int + (r < impulse_frac), 0, TRACE_MAX)


def trace_history(traces, spike_times, taus, impulses, t_epoch: int, r_decay: float, r_impulse: int) -> np.ndarray:
    """Trace values at each within-epoch step 0..t_epoch (``_compute_trace_histories``).

    ``traces`` [K, n] at the epoch start; ``spike_times`` [n] (1..t_epoch, 0: none); ``taus`` and
    ``impulses`` per trace. A tau of 0 zeroes the trace; spikes add the impulse at their step.
    """
    traces = as_int64(traces)
    factors = trace_decay_factors(taus)
    parts = [impulse_parts(i) for i in impulses]
    hist = np.zeros((t_epoch + 1, *traces.shape), dtype=np.int64)
    hist[0] = traces
    for t in range(1, t_epoch + 1):
        for k, tau in enumerate(taus):
            if tau != 0:
                hist[t, k] = decay_trace(hist[t - 1, k], factors[k], r_decay)
        ids = spike_times == t
        for k, (whole, frac) in enumerate(parts):
            hist[t, k, ids] = add_impulse(hist[t, k, ids], r_impulse, whole, frac)
    return hist


def product_value(product, dependency, factor_values: list) -> np.ndarray:
    """One product of the series in Lava's int32 arithmetic (``LearningRuleApplierBitApprox.apply``).

    ``dependency`` and each of ``factor_values`` broadcast to [n_post, n_pre]; each factor is
    clipped to its width, multiplied in int32 (wrapping), scaled by the mantissa, shifted right by
    ``sum(widths) + 4 - 15`` (if positive), left by ``exponent + 7``, and clipped to the accumulator.
    """
    mantissa, exponent = lava_scale(product.mantissa, product.exponent)
    value = np.ones(np.broadcast_shapes(np.shape(dependency), *(np.shape(f) for f in factor_values)), np.int32)
    value *= np.asarray(dependency).astype(np.int32)
    widths = 0
    for factor, raw in zip(product.factors, factor_values, strict=True):
        width = FACTOR_WIDTH[factor.variable]
        widths += width
        with np.errstate(over="ignore"):
            value *= np.clip(as_int64(raw) + factor.constant, -(2**width), 2**width - 1).astype(np.int32)
    with np.errstate(over="ignore"):
        value *= np.int32(mantissa)
    value = np.right_shift(value, max(0, widths + MANTISSA_WIDTH - ACCUMULATOR_WIDTH))
    value = np.left_shift(value, np.int32(exponent + 7))
    return np.clip(value, *ACCUMULATOR_LIMITS)


def apply_weight_update(weights, products_sum_fn, r: float, sign_mode: str) -> np.ndarray:
    """The weight update of one learning epoch (``_apply_learning_rules``).

    ``acc = w << 7``; each product is added with the accumulator clip (``products_sum_fn(acc)``);
    the sign mode saturates (excitatory >= 0, inhibitory <= 0); ``acc / 128`` is rounded with the
    shared draw ``r``; the result is clipped to the 8-bit weight range of the sign mode.
    """
    acc = products_sum_fn(as_int64(weights) << WEIGHT_ACCUMULATOR_SHIFT)
    if sign_mode == "excitatory":
        acc = np.maximum(acc, 0)
    elif sign_mode == "inhibitory":
        acc = np.minimum(acc, 0)
    scaled = acc >> WEIGHT_ACCUMULATOR_SHIFT
    remainder = acc - (scaled << WEIGHT_ACCUMULATOR_SHIFT)
    w = scaled + (r < remainder / 2.0**WEIGHT_ACCUMULATOR_SHIFT)
    lo, hi = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}[sign_mode]
    return np.clip(w, lo, hi)


def learning_randoms(rng_seed: int, steps: int) -> dict[str, np.ndarray]:
    """The random draws a learning synapse uses over ``steps`` steps, drawn in bulk (same streams).

    ``x_decay``/``y_decay`` (floats) and ``x_impulse``/``y_impulse`` (integers in [0, 128)) hold
    draws 0..2*steps (step k uses draw 2k); ``weight`` holds draws 0..steps of the seed-2 generator
    (learning epoch e uses draw e).
    """
    n = 2 * steps + 1
    draws = {}
    for name, offset in (("x", 0), ("y", 2)):
        draws[f"{name}_decay"] = np.random.default_rng(rng_seed + offset).random(n)
        draws[f"{name}_impulse"] = np.random.default_rng(rng_seed + offset + 1).integers(0, 128, size=n, dtype=int)
    draws["weight"] = np.random.default_rng(WEIGHT_ROUNDING_SEED).random(steps + 1)
    return draws


class PlasticState:
    """The learning state of one plastic synapse: weights, traces and within-epoch spike times."""

    def __init__(self, weights, n_post: int, n_pre: int, number_format: str = "fixed"):
        values = np.int64 if number_format == "fixed" else np.float64
        self.weights = np.array(weights, dtype=values)
        self.x = np.zeros((2, n_pre), dtype=values)  # x1, x2
        self.tx = np.zeros(n_pre, dtype=np.int64)
        self.y = np.zeros((3, n_post), dtype=values)  # y1, y2, y3
        self.ty = np.zeros(n_post, dtype=np.int64)
        self.epochs = 0


def receive_traces(state: PlasticState, rule, pre, bap, y, step: int) -> None:
    """The trace part of the spike phase of 1-based step ``step`` (``recv_traces``).

    ``pre`` [n_pre] and ``bap`` [n_post] spikes, ``y`` [3, n_post] as the neuron sent them.
    Repeat pre spikes in an epoch add their impulses at once, rounding up any fraction.
    """
    within = step % rule.t_epoch or rule.t_epoch
    pre, bap = np.asarray(pre, dtype=bool), np.asarray(bap, dtype=bool)
    repeat = (state.tx > 0) & pre
    for k, impulse in enumerate((rule.x1_impulse, rule.x2_impulse)):
        state.x[k, repeat] = add_impulse(state.x[k, repeat], 0, *impulse_parts(impulse))
    state.tx[pre] = within
    state.ty[bap] = within
    state.y = as_int64(y).copy()


def _factor_values(state: PlasticState, x_hist, y_hist, variable: str, dependency: str):
    """The value of a factor as seen by a product with ``dependency`` (x0, y0 or u), broadcastable
    to [n_post, n_pre] (``_extract_applier_evaluated_traces``): with x0 the traces at the pre spike's
    within-epoch step, with y0 at the post spike's, with u at the epoch's end."""
    x0, y0 = state.tx > 0, state.ty > 0
    if variable in ("x0", "y0"):
        return x0[None, :] if variable == "x0" else y0[:, None]
    if variable == "w":
        return state.weights
    trace = int(variable[1]) - 1
    if variable.startswith("x"):
        if dependency == "x0":
            return x_hist[state.tx, trace, np.arange(x_hist.shape[-1])][None, :]
        return x_hist[state.ty, trace, :] if dependency == "y0" else x_hist[-1, trace][None, :]
    if dependency == "x0":
        return y_hist[state.tx, trace, :].T
    if dependency == "y0":
        return y_hist[state.ty, trace, np.arange(y_hist.shape[-1])][:, None]
    return y_hist[-1, trace][:, None]


def _dependencies(state: PlasticState, rule, step: int) -> dict:
    """x0, y0 and u of the epoch ending at 1-based ``step`` (``_update_dependencies``; u is 1 in every
    2**K-th epoch for a ``uK`` dependency, ``_extract_applier_args``)."""
    k = rule.decimate_exponent()
    u = int(k is not None and (step // rule.t_epoch) % 2**k == 0)
    return {"x0": (state.tx > 0)[None, :], "y0": (state.ty > 0)[:, None], "u": u}


def _end_epoch(state: PlasticState, x_hist) -> None:
    state.x = x_hist[-1]
    state.tx[:] = 0
    state.ty[:] = 0


def learn(state: PlasticState, rule, draws: dict, step: int, sign_mode: str = "mixed") -> None:
    """The learning phase of 1-based step ``step`` (``run_lrn``), when ``step % t_epoch == 0``."""
    state.epochs += 1
    i = 2 * step
    x_hist = trace_history(
        state.x,
        state.tx,
        (rule.x1_tau, rule.x2_tau),
        (rule.x1_impulse, rule.x2_impulse),
        rule.t_epoch,
        draws["x_decay"][i],
        draws["x_impulse"][i],
    )
    y_hist = trace_history(
        state.y, state.ty, (Y_TAU,) * 3, (0, 0, 0), rule.t_epoch, draws["y_decay"][i], draws["y_impulse"][i]
    )
    deps = _dependencies(state, rule, step)

    def add_products(acc):
        for product in rule.products:
            dep = product.dependency if product.dependency in ("x0", "y0") else "u"
            values = [_factor_values(state, x_hist, y_hist, f.variable, dep) for f in product.factors]
            acc = np.clip(acc + product_value(product, deps[dep], values), *ACCUMULATOR_LIMITS)
        return acc

    state.weights = apply_weight_update(state.weights, add_products, draws["weight"][state.epochs], sign_mode)
    _end_epoch(state, x_hist)


# Floating point (Lava's LearningConnectionModelFloat): the same phases without rounding, shifts or
# clips. Traces: ``x <- exp(-1/tau) * x + impulse * s`` (a tau of 0 leaves NaN, as in Lava);
# y values decay by exp(-1/65535) over the epoch; ``w += sum(m * 2**e * dependency * prod(v + c))``,
# then excitatory weights floor at 0 and inhibitory ones cap at 0.


def float_trace_history(traces, spike_times, taus, impulses, t_epoch: int) -> np.ndarray:
    """:func:`trace_history` in float (``LearningConnectionModelFloat._compute_trace_histories``)."""
    traces = np.asarray(traces, dtype=np.float64)
    factors = trace_decay_factors(taus)
    hist = np.full((t_epoch + 1, *traces.shape), np.nan)
    hist[0] = traces
    for t in range(1, t_epoch + 1):
        for k, tau in enumerate(taus):
            if tau != 0:
                hist[t, k] = factors[k] * hist[t - 1, k]
        ids = spike_times == t
        hist[t][:, ids] += np.asarray(impulses, dtype=np.float64)[:, None]
    return hist


def float_receive_traces(state: PlasticState, rule, pre, bap, y, step: int) -> None:
    """:func:`receive_traces` in float: repeat pre spikes add their impulses unrounded."""
    within = step % rule.t_epoch or rule.t_epoch
    pre, bap = np.asarray(pre, dtype=bool), np.asarray(bap, dtype=bool)
    repeat = (state.tx > 0) & pre
    state.x[0, repeat] += rule.x1_impulse
    state.x[1, repeat] += rule.x2_impulse
    state.tx[pre] = within
    state.ty[bap] = within
    state.y = np.asarray(y, dtype=np.float64).copy()


def float_learn(state: PlasticState, rule, step: int, sign_mode: str = "mixed") -> None:
    """:func:`learn` in float (``LearningConnectionModelFloat``, ``LearningRuleApplierFloat``)."""
    taus, impulses = (rule.x1_tau, rule.x2_tau), (rule.x1_impulse, rule.x2_impulse)
    x_hist = float_trace_history(state.x, state.tx, taus, impulses, rule.t_epoch)
    y_hist = float_trace_history(state.y, state.ty, (Y_TAU,) * 3, (0.0, 0.0, 0.0), rule.t_epoch)
    deps = _dependencies(state, rule, step)
    dw = np.zeros(state.weights.shape)
    for product in rule.products:
        dep = product.dependency if product.dependency in ("x0", "y0") else "u"
        term = product.mantissa * 2.0**product.exponent * deps[dep]
        for f in product.factors:
            term = term * (_factor_values(state, x_hist, y_hist, f.variable, dep) + f.constant)
        dw = dw + term
    w = state.weights + dw
    if sign_mode == "excitatory":
        w = np.maximum(w, 0)
    elif sign_mode == "inhibitory":
        w = np.minimum(w, 0)
    state.weights = w
    _end_epoch(state, x_hist)


def round_shift(x, shift: int):
    """``x / 2**shift`` rounded to nearest, ties away from zero: symmetric, so a learning signal has no
    bias toward negative values (a plain ``>>`` floors: small negative values would become -1, small
    positive ones 0, and weights would drift)."""
    x = as_int64(x)
    if shift == 0:
        return x
    half = 1 << (shift - 1)
    return np.where(x < 0, -((-x + half) >> shift), (x + half) >> shift)


def learning_signal(signal, v, spikes, third, psi_trace, vth: int):
    """What a learning population sends at one step: ``(y [3, n], error, psi_trace)``.

    ``v`` before reset, ``spikes`` of this step, ``third`` the third-factor input (target or the
    feedback sum), ``psi_trace`` the surrogate trace of the previous step (see
    ``neurocompile.ir.plasticity``). ``error`` wraps to int32 like every value on a channel.
    """
    v, third = as_int64(v), as_int64(third)
    if signal.target is None:
        error = third
    else:
        output = as_int64(spikes) << signal.output_shift if signal.output == "spikes" else v >> signal.output_shift
        error = wrap_bits(output - third, CHANNEL_BITS)
    psi = np.zeros_like(v)
    new_trace = as_int64(psi_trace)
    if signal.surrogate is not None:
        table = np.asarray(signal.surrogate.table, dtype=np.int64)
        distance = np.abs(v - effective_vth(vth)) >> signal.surrogate.shift
        psi = table[np.minimum(distance, len(table) - 1)]
        new_trace = np.minimum(((new_trace * decay_multiplier(signal.trace_decay)) >> DECAY_SHIFT) + psi, PSI_TRACE_MAX)
    gains = {"one": np.ones_like(v), "surrogate": psi, "surrogate_trace": as_int64(psi_trace)}
    y = np.zeros((3, v.shape[-1]), dtype=np.int64)
    for k, term in enumerate(signal.terms().values()):
        if term is not None:
            y[k] = np.clip(round_shift(error * gains[term.factor], term.shift), *SIGNAL_LIMITS)
    return y, error, new_trace


def float_learning_signal(signal, v, spikes, third, psi_trace, threshold: float):
    """:func:`learning_signal` for Lava's ``floating_pt`` models: the same formulas unrounded.

    ``error = third`` or ``output - third`` (``spikes * 2**output_shift`` or ``v / 2**output_shift``);
    ``psi = table[min(floor(|v - threshold| / 2**shift), len - 1)]``; the psi trace decays by
    ``1 - d / 4096``; ``y = error * g / 2**shift``, not clipped. ``threshold``: the float ``vth``.
    """
    v, third = np.asarray(v, dtype=np.float64), np.asarray(third, dtype=np.float64)
    if signal.target is None:
        error = third
    elif signal.output == "spikes":
        error = np.asarray(spikes, dtype=np.float64) * 2.0**signal.output_shift - third
    else:
        error = v / 2.0**signal.output_shift - third
    psi = np.zeros_like(v)
    new_trace = np.asarray(psi_trace, dtype=np.float64)
    if signal.surrogate is not None:
        table = np.asarray(signal.surrogate.table, dtype=np.float64)
        distance = np.floor(np.abs(v - threshold) / 2.0**signal.surrogate.shift)
        psi = table[np.minimum(distance, len(table) - 1).astype(np.int64)]
        new_trace = new_trace * (1 - signal.trace_decay / DECAY_UNITY) + psi
    gains = {"one": np.ones_like(v), "surrogate": psi, "surrogate_trace": np.asarray(psi_trace, dtype=np.float64)}
    y = np.zeros((3, v.shape[-1]))
    for k, term in enumerate(signal.terms().values()):
        if term is not None:
            y[k] = error * gains[term.factor] / 2.0**term.shift
    return y, error, new_trace


def product_shift(product) -> int:
    """The right shift Lava applies to a product: ``max(0, sum(widths) + 4 - 15)`` (x1*y2: 3)."""
    widths = sum(FACTOR_WIDTH[f.variable] for f in product.factors)
    return max(0, widths + MANTISSA_WIDTH - ACCUMULATOR_WIDTH)


def float_rule(rule, weight_scale_exp: int):
    """The float rule an integer rule stands for, on weights scaled by ``2**weight_scale_exp``.

    An integer product adds ``m * 2**e * prod(factors) >> shift`` weight units (the accumulator's
    ``<< (e + 7)`` and the final ``/ 128`` cancel); unrounded that is ``m * 2**(e - shift)`` per
    unit, so on float weights ``w * 2**weight_scale_exp`` the float scale is
    ``m * 2**(e - shift + weight_scale_exp)`` (Lava's floating_pt applier: ``m * 2**e``, no shifts).
    Lava's canonical scale (:func:`lava_scale`) is applied first. Raises if an exponent leaves [-7, 8].
    """

    products = []
    for product in rule.products:
        mantissa, exponent = lava_scale(product.mantissa, product.exponent)
        exponent += int(weight_scale_exp) - product_shift(product)
        if not -7 <= exponent <= 8:
            raise NeurocompileError(
                f"floating_pt learning: the float scale {mantissa} * 2^{exponent} leaves Lava's exponent range [-7, 8]"
            )
        products.append(replace(product, mantissa=mantissa, exponent=exponent))
    return replace(rule, products=tuple(products))
