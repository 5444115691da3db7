"""Quantize a normalized graph into a fixed-point program for Lava's integer LIF.

Per population: choose the integer scale ``T`` (the largest every bit-width limit allows, from bounds or
calibrated activity), map decays to ``du``/``dv``, weights to mantissas and ``weight_exp``, biases to
``bias_mant << bias_exp`` (added from the population's latency on), and report the errors
(:class:`~neurocompile.ir.report.QuantizationReport`); what the hardware cannot represent raises
:class:`~neurocompile.errors.HardwareLimitError`. The arithmetic, mapping, limits and report:
``docs/quantization.md`` (sections 2-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from neurocompile.compiler.calibrate import source_activity, statistic
from neurocompile.compiler.lif_mapping import (
    Layer,
    check_lava_convention,
    layer_of,
    program_of,
    reset_of,
    tonic_population,
    tonic_source,
)
from neurocompile.compiler.normalize import synapse_output
from neurocompile.errors import HardwareLimitError, NeurocompileError
from neurocompile.ir.normalized import NormalizedGraph, NormalizedSynapse, ScaledMatrix, row_blocks
from neurocompile.ir.program import (
    BIAS_EXP_BITS,
    BIAS_MANT_BITS,
    BIAS_ONSETS,
    MAX_DELAY,
    MAX_PAYLOAD_BITS,
    STATE_BITS,
    VTH_BITS,
    WEIGHT_EXP_RANGE,
    Population,
    Synapse,
)
from neurocompile.ir.report import METHODS, LayerReport, QuantizationReport, SynapseReport
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.fixedpoint import effective_weights, sign_mode_of

VTH_MAX = 2**VTH_BITS - 1
BIAS_MANT_MAX = 2 ** (BIAS_MANT_BITS - 1) - 1
BIAS_EXP_MAX = 2**BIAS_EXP_BITS - 1
ACT_LIMIT_16 = 2**15 - 1  # a_in is declared 16 bits in Lava
ACT_LIMIT_U = 2**17 - 1  # a_in << 6 must stay inside u's 24 bits
STATE_LIMIT = 2 ** (STATE_BITS - 1) - 1


# --- report -------------------------------------------------------------------------------


# --- quantization ---------------------------------------------------------------------------


def _mantissa_limit(kind: str, sign_mode: str) -> int:
    if kind == "conv":
        return 127 if sign_mode == "mixed" else 255
    return 254 if sign_mode == "mixed" else 255  # mixed: even values, Lava drops the low bit


def _per_row(weights, row_function) -> np.ndarray:
    """``row_function`` of a synapse's weights (one value per row), a block of rows at a time."""
    return np.concatenate([row_function(block) for _, block in row_blocks(weights)] or [np.zeros(0)])


def _sign_mode(weights) -> str:
    """:func:`sign_mode_of` a synapse's weights, from each block's extremes."""
    return sign_mode_of(np.array([(b.min(initial=0.0), b.max(initial=0.0)) for _, b in row_blocks(weights)]))


def _nonzero_statistic(weights, method: str, percentile: float) -> float:
    """:func:`statistic` of a synapse's nonzero weights, a block at a time (a percentile gathers them)."""
    if method == "percentile":
        nonzero = [block[block != 0] for _, block in row_blocks(weights)]
        return statistic(np.concatenate([np.zeros(0), *nonzero]), method, percentile)
    return max((statistic(block, method, percentile) for _, block in row_blocks(weights)), default=0.0)


def _scaled(weights, factor):
    """A synapse's weights (a :class:`ScaledMatrix` or a conv kernel) times ``factor``."""
    return weights.scale_rows(factor) if isinstance(weights, ScaledMatrix) else weights * factor


def _abs_row_bound(syn: NormalizedSynapse, w_eff, rho: np.ndarray) -> float:
    """Largest per-step input (in threshold units) if every source spikes, one sign at a time."""
    if syn.kind == "conv":
        pos = np.clip(w_eff, 0, None).reshape(w_eff.shape[0], -1).sum(1)
        neg = np.clip(-w_eff, 0, None).reshape(w_eff.shape[0], -1).sum(1)
        r = rho.reshape(w_eff.shape[0], -1).max(1)
        return float(max((pos * r).max(), (neg * r).max()))
    pos = _per_row(w_eff, lambda block: np.clip(block, 0, None).sum(1))
    neg = _per_row(w_eff, lambda block: np.clip(-block, 0, None).sum(1))
    r = rho.reshape(-1)
    return float(max((pos * r).max(initial=0), (neg * r).max(initial=0)))


# --- pass 1: choose each population's scale -------------------------------------------------------


def _weight_limits(layer: Layer, method: str, percentile: float, weight_exp: int | None) -> dict[str, float]:
    limits = {"vth (17 bits)": float(VTH_MAX)}
    largest_exp = WEIGHT_EXP_RANGE[1] if weight_exp is None else weight_exp
    for syn, w in zip(layer.incoming, layer.w_effs):
        rs = _rho_weights(syn, w, layer.rho, layer.pop.shape)
        lim = _mantissa_limit(syn.kind, _sign_mode(syn.weights)) * (1 if syn.kind == "conv" else 2**largest_exp)
        ref = _nonzero_statistic(rs, method, percentile)
        if ref > 0:
            limits[f"weights of {syn.name}"] = lim / ref
    return limits


def _calibrated_limits(layer: Layer, arrays: dict, total, method: str, percentile: float) -> dict[str, float]:
    """Scale limits from the float run: summed input ``total`` (16 bits; :func:`_summed_input`), v and u (24 bits)."""
    pop, rho, limits = layer.pop, layer.rho, {}
    if total is not None:
        a = statistic(total * rho.reshape(1, 1, -1), method, percentile)
        if a > 0:
            limits["activation (16 bits)"] = ACT_LIMIT_16 / a
    v_rec = arrays.get(f"{pop.name}.v")
    if v_rec is not None:
        v_units = np.asarray(v_rec, dtype=np.float64).reshape(v_rec.shape[0], v_rec.shape[1], -1) * rho.reshape(
            1, 1, -1
        )
        vm = statistic(v_units, method, percentile)
        if vm > 0:
            limits["v (24 bits)"] = ACT_LIMIT_U / max(vm, 1.0 if pop.spiking else 0.0)
    i_rec = arrays.get(f"{pop.name}.i")
    if i_rec is not None and layer.dyn.u_to_v is not None:
        u_units = np.asarray(i_rec, dtype=np.float64).reshape(i_rec.shape[0], i_rec.shape[1], -1) * (
            layer.dyn.u_to_v.reshape(-1) * rho
        ).reshape(1, 1, -1)
        um = statistic(u_units, method, percentile)
        if um > 0:
            limits["u (24 bits)"] = ACT_LIMIT_U / um
    return limits


def _bound_limits(layer: Layer) -> dict[str, float]:
    """Scale limits without calibration: every source spiking at once, one sign at a time."""
    dyn, rho, limits = layer.dyn, layer.rho, {}
    bound = sum(_abs_row_bound(s, w, rho) for s, w in zip(layer.incoming, layer.w_effs))
    if bound > 0:
        limits["activation bound"] = ACT_LIMIT_U / bound
        if dyn.u_to_v is not None:
            limits["u bound"] = ACT_LIMIT_U * ((dyn.du + 1) / 4096) / bound
    if not layer.pop.spiking:
        drive = bound + float(np.max(np.abs(dyn.bias_v * rho), initial=0))
        if dyn.u_to_v is not None:
            drive = drive / ((dyn.du + 1) / 4096)
        vmax = drive / dyn.a_v if dyn.a_v > 0 else drive * 64  # I: 64 steps of full drive
        if vmax > 0:
            limits["v bound"] = ACT_LIMIT_U / vmax
    return limits


def _choose_scale(layer: Layer, arrays, total, method: str, percentile: float, exponents: tuple) -> _Scale:
    """The largest integer threshold ``T`` every limit allows (``total``: the layer's summed input in the float run;
    ``exponents``: the fixed weight and bias exponents, each None when free)."""
    weight_exp, bias_exp = exponents
    limits = _weight_limits(layer, method, percentile, weight_exp)
    if arrays is not None:
        limits.update(_calibrated_limits(layer, arrays, total, method, percentile))
    else:
        limits.update(_bound_limits(layer))
    bias_units = float(np.max(np.abs(layer.dyn.bias_v.reshape(-1) * layer.rho), initial=0))
    if bias_units > 0:
        largest_exp = BIAS_EXP_MAX if bias_exp is None else bias_exp
        limits["bias (13+3 bits)"] = (BIAS_MANT_MAX << largest_exp) / (64 * bias_units)
    limited_by = min(limits, key=limits.get)
    t_float = limits[limited_by]
    T = int(math.floor(t_float * (1 + 1e-12)))
    if T < 1:
        raise HardwareLimitError(
            f"no integer scale fits ({limited_by} allows {t_float:.3g} < 1)",
            layer.pop.name,
            "v_threshold" if layer.pop.spiking else "scale",
        )
    return _Scale(T, t_float, limited_by)


# --- pass 2: quantize the population ------------------------------------------------------------


def _quantize_population(
    layer: Layer, T: int, conv: Convention, fixed_bias_exp: int | None
) -> tuple[Population, list[str], float]:
    """Integer du, dv, vth and bias at scale ``T``: (population, notes, bias relative error)."""
    pop, dyn = layer.pop, layer.dyn
    bias_f = dyn.bias_v.reshape(-1) * (T * layer.rho) * 64  # v register units (64 per weight unit)
    bias_mant, bias_exp, bias_err = _quantize_bias(bias_f, pop.name, fixed_bias_exp)
    vth = T if pop.spiking else VTH_MAX
    notes = list(dyn.notes)
    reset = reset_of(pop, conv)
    if pop.spiking and conv.threshold_inclusive:
        on_grid = dyn.dv == 0 and dyn.du == 4095 and np.all((bias_mant.astype(np.int64) << bias_exp) % 64 == 0)
        if on_grid and T > 1 and reset["reset"] == "zero":  # a subtractive reset must remove 64*T: vth stays T
            vth = T - 1
            notes.append("inclusive threshold: v moves in steps of 64, so v >= 64*T is v > 64*(T-1)")
        else:
            notes.append(f"inclusive threshold approximated by strict (error 1/(64*{T}) of v_threshold)")
    population = Population(
        name=pop.name,
        shape=tuple(pop.shape),
        du=int(dyn.du),
        dv=int(dyn.dv),
        vth=int(vth),
        bias_mant=bias_mant.reshape(pop.shape).astype(np.int32),
        bias_exp=int(bias_exp),
        spiking=pop.spiking,
        source_type=pop.type,
        **reset,
    )
    return population, notes, bias_err


# --- pass 3 (synapses: _quantize_synapse) and pass 4: the report -----------------------------------


@dataclass
class _Scale:
    """A population's integer threshold ``T``, the float bound it came from and that limit's name."""

    T: int
    bound: float
    limited_by: str


def _layer_report(layer: Layer, population: Population, scale: _Scale, errors: dict, arrays, total) -> LayerReport:
    """``errors``: notes, synapse reports, threshold-ratio and bias errors of the quantized layer."""
    pop, dyn = layer.pop, layer.dyn
    K = scale.T * layer.rho
    notes = list(errors["notes"])
    decay_err = {}
    if dyn.a_v > 0:
        decay_err["v"] = _decay_error(dyn.dv, dyn.a_v)
    if dyn.u_to_v is not None:
        decay_err["u"] = _decay_error(dyn.du + 1, dyn.a_u)
    if scale.bound < 16:
        notes.append(f"coarse scale: T={scale.T} limited by {scale.limited_by}")
    sat = {}
    if arrays is not None:
        sat = _saturation(arrays, total, pop, K, dyn.u_to_v)
    return LayerReport(
        population=pop.name,
        type=pop.type,
        spiking=pop.spiking,
        shape=list(pop.shape),
        scale=float(np.median(K)),
        vth=population.vth,
        du=population.du,
        dv=population.dv,
        bias_exp=population.bias_exp,
        limited_by=scale.limited_by,
        decay_error=decay_err,
        threshold_ratio_error=errors["threshold_ratio"],
        bias_rel_error=errors["bias"],
        saturation=sat,
        synapses=errors["synapses"],
        notes=notes,
    )


# --- conventions Lava's LIF can run --------------------------------------------------------------


def quantize(
    normalized: NormalizedGraph,
    activity: dict[str, np.ndarray] | None = None,
    method: str = "maxabs",
    percentile: float = 99.99,
    bias_onset: str = "latency",
    weight_exp: int | None = None,
    bias_exp: int | None = None,
    split_weights: bool = False,
):
    """Fixed-point program and :class:`QuantizationReport` for a normalized graph.

    Per population, in order: choose the scale, quantize the population, quantize its incoming
    synapses, report. ``activity``: the float run's arrays per node
    (:func:`~neurocompile.compiler.calibrate.calibrate`), or None for bounds from the weights. ``method``: "maxabs" or "percentile" (of |weights|
    and calibrated activations). ``bias_onset``: "latency" (a population adds its bias from the step its
    first input arrives) or "start" (from step 0: Lava's stock LIF, what Loihi 2 runs without a custom
    neuron model). ``weight_exp`` and ``bias_exp`` fix every dense or sparse synapse's weight exponent and
    every population's bias exponent (None: the largest scale's, per layer), for a format that stores
    neither (lava-dl's netx: 0 and 6). ``split_weights``: each dense or sparse synapse also gets a second one
    (``<name>.fine``) holding its rounding error at a weight exponent 7 lower (:func:`_fine_synapse`).
    """
    check_lava_convention(normalized.convention)
    if method not in METHODS:
        raise NeurocompileError(f"unknown quantization method '{method}'; choose maxabs or percentile")
    if bias_onset not in BIAS_ONSETS:
        raise NeurocompileError(f"unknown bias onset '{bias_onset}'; choose {' or '.join(BIAS_ONSETS)}")
    if method == "percentile" and not (0 < percentile <= 100):
        raise NeurocompileError(f"percentile {percentile} is not in (0, 100]")
    conv = normalized.convention
    arrays = activity
    report = QuantizationReport(
        method, percentile if method == "percentile" else None, arrays is not None, conv.dt, conv.name
    )
    populations, synapses, v_scale = [], [], {}
    for pop in normalized.populations:
        layer = layer_of(normalized, pop)
        total = None if arrays is None else _summed_input(arrays, normalized, layer.incoming, layer.w_effs)
        scale = _choose_scale(layer, arrays, total, method, percentile, (weight_exp, bias_exp))
        population, notes, bias_err = _quantize_population(layer, scale.T, conv, bias_exp)
        if conv.spikes_per_step == "multi" and population.spiking:
            population.payload_bits = _payload_bits(arrays, pop.name)
            notes.append(f"graded spikes: spike counts in {population.payload_bits} bits")
        incoming, reports, ratio_err = _quantize_incoming(layer, scale.T, method, percentile, weight_exp, split_weights)
        synapses += incoming
        errors = {"notes": notes, "synapses": reports, "threshold_ratio": ratio_err, "bias": bias_err}
        if layer.dyn.bias_x is not None:
            populations.append(tonic_population(pop.name, "fixed"))
        populations.append(population)
        report.layers.append(_layer_report(layer, population, scale, errors, arrays, total))
        K = scale.T * layer.rho
        v_scale[pop.name] = float(64 * K[0]) if np.allclose(K, K[0]) else [float(k) for k in 64 * K]
    # v_int = v_scale * v_float for every population (per neuron when thresholds differ)
    program = program_of(
        normalized, populations, synapses, bias_onset=bias_onset, v_scale=v_scale, quantization=report.to_dict()
    )
    program.validate()
    return program, report


def _payload_bits(arrays: dict | None, name: str) -> int:
    """Bits of a multi-spike population's graded spikes: enough for the largest count per step in the calibration
    run (at least 1), all of ``MAX_PAYLOAD_BITS`` without one."""
    counts = None if arrays is None else arrays.get(f"{name}.spikes")
    if counts is None:
        return MAX_PAYLOAD_BITS
    most = int(np.max(counts, initial=0))
    return min(max(most.bit_length(), 1), MAX_PAYLOAD_BITS)


def _decay_error(d: int, alpha: float) -> float:
    """Error of Lava's kept fraction ``1 - d/4096`` against ``1 - alpha``: relative, or absolute
    when nothing should be kept."""
    kept = 1 - alpha
    return abs((1 - d / 4096) - kept) / (kept if kept > 1e-12 else 1.0)


def _rho_weights(syn: NormalizedSynapse, w, rho: np.ndarray, target_shape):
    if syn.kind == "conv":
        r = rho.reshape(target_shape).reshape(target_shape[0], -1)
        if not np.allclose(r, r[:, :1], rtol=1e-6):
            raise HardwareLimitError(
                "v_threshold differs within an output channel of a conv synapse", syn.target, "v_threshold"
            )
        return w * r[:, 0].reshape(-1, 1, 1, 1)
    return w.scale_rows(rho)


def _synapse_delays(syn: NormalizedSynapse, mant: np.ndarray, extra_delay: int) -> np.ndarray | None:
    """Per-weight delays in steps (plus the population's extra delay), checked against Lava's limit."""
    if syn.delays is None and not extra_delay:
        return None
    if syn.kind == "conv":
        raise HardwareLimitError("Lava has no delayed conv synapse", syn.name, "delays")
    d = np.zeros(syn.weights.shape, dtype=np.int64) if syn.delays is None else np.asarray(syn.delays, dtype=np.int64)
    d = np.where(mant != 0, d + extra_delay, 0)
    if d.max(initial=0) > MAX_DELAY:
        raise HardwareLimitError(f"delay of {int(d.max())} steps exceeds {MAX_DELAY}", syn.name, "delays")
    return d.astype(np.int32)


def _quantize_synapse(syn, rs, T, method, percentile, extra_delay, weight_exp: int | None):
    """Integer weights for X = T * rho * w_eff (``rs``: rho * w_eff; ``weight_exp``: fixed, or None to choose it),
    a block of rows at a time; returns (Synapse, SynapseReport, ratio error)."""
    x = _scaled(rs, T)
    sign_mode = _sign_mode(syn.weights)
    limit = _mantissa_limit(syn.kind, sign_mode)
    ref = _nonzero_statistic(x, method, percentile)
    if syn.kind == "conv" or ref == 0:
        exp = 0
    elif weight_exp is not None:
        exp = weight_exp
    else:
        exp = int(math.ceil(math.log2(ref / limit) - 1e-12))
        exp = min(max(exp, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1])
    step = 2.0 if (sign_mode == "mixed" and syn.kind != "conv") else 1.0
    mant, clipped = _mantissas(row_blocks(x), x.shape, exp, step, limit)
    largest, at = _largest(x)  # threshold / weight ratio error over the largest weight
    ratio_err = abs(float(mant.flat[at]) * 2.0**exp / largest - 1.0) if largest != 0 else 0.0
    if syn.kind == "conv" and largest != 0 and not mant.any():
        raise HardwareLimitError("every weight rounds to 0 at this scale", syn.name, "weights")
    delays = _synapse_delays(syn, mant, extra_delay)
    prog = Synapse(
        name=syn.name,
        source=syn.source,
        target=syn.target,
        kind=syn.kind,
        weights=mant,
        weight_exp=int(exp),
        num_weight_bits=8,
        sign_mode=sign_mode,
        delays=delays,
        conv=syn.conv,
        recurrent=syn.recurrent,
    )
    rep = SynapseReport(
        syn.name,
        syn.source,
        syn.kind,
        int(exp),
        8,
        prog.sign_mode,
        max(int(mant.max(initial=0)), -int(mant.min(initial=0))),
        clipped,
        _relative_error(x, [prog]),
        int(delays.max(initial=0)) if delays is not None else 0,
    )
    return prog, rep, ratio_err


def _mantissas(blocks, shape: tuple, exp: int, step: float, limit: int) -> tuple[np.ndarray, int]:
    """The ``(first row, rows)`` ``blocks`` of a ``shape`` matrix over ``2**exp``, rounded to multiples of ``step``
    and clipped to ``limit`` (int16), and how many were clipped."""
    mant, clipped = np.empty(shape, dtype=np.int16), 0
    for start, block in blocks:
        rounded = block / (2.0**exp)  # then in place: the same floats as round(x / 2**exp / step) * step
        rounded /= step
        np.round(rounded, out=rounded)
        rounded *= step
        clipped += int(np.count_nonzero(rounded > limit)) + int(np.count_nonzero(rounded < -limit))
        mant[start : start + len(block)] = np.clip(rounded, -limit, limit, out=rounded)
    return mant, clipped


def _largest(x) -> tuple[float, int]:
    """The first weight of largest magnitude and its flat index (0.0 and 0 for none)."""
    largest, at = 0.0, 0
    for start, block in row_blocks(x):
        k = int(np.argmax(np.abs(block))) if block.size else 0
        if block.size and abs(block.flat[k]) > abs(largest):
            largest, at = float(block.flat[k]), start * int(np.prod(block.shape[1:])) + k
    return largest, at


def _quantize_incoming(layer: Layer, T, method, percentile, weight_exp, split_weights: bool):
    """The program synapses into ``layer`` at scale ``T`` (with their fine parts when ``split_weights``): (synapses,
    their reports, the largest threshold/weight ratio error)."""
    synapses, reports, ratio_error = [], [], 0.0
    for syn, w in zip(layer.incoming, layer.w_effs):
        rs = _rho_weights(syn, w, layer.rho, layer.pop.shape)
        coarse, report, ratio = _quantize_synapse(syn, rs, T, method, percentile, layer.dyn.extra_delay, weight_exp)
        synapses.append(coarse)
        fine = _fine_synapse(coarse, _scaled(rs, T)) if split_weights else None
        if fine is not None:
            synapses.append(fine)
            report.weight_rel_l2 = _relative_error(_scaled(rs, T), [coarse, fine])
        reports.append(report)
        ratio_error = max(ratio_error, ratio)
    return synapses, reports, ratio_error


def _fine_synapse(coarse: Synapse, x) -> Synapse | None:
    """The synapse that adds what ``coarse`` rounded away from ``x`` (its float weights in mantissa units times
    ``2**weight_exp``): the residual's mantissas at ``weight_exp - 7``, 7 bits finer (Lava floors each step's
    sum of them: up to one unit of ``a_in`` less). None for a conv synapse (Lava's Conv has no 8-bit limit), or
    where that exponent is below Lava's range."""
    exp = coarse.weight_exp - 7
    if coarse.kind == "conv" or exp < WEIGHT_EXP_RANGE[0]:
        return None
    extremes = [(r.min(initial=0.0), r.max(initial=0.0)) for _, r in _residual_blocks(x, [coarse])]
    sign_mode = sign_mode_of(np.array(extremes))
    step = 2.0 if sign_mode == "mixed" else 1.0
    limit = _mantissa_limit(coarse.kind, sign_mode)
    mant, _clipped = _mantissas(_residual_blocks(x, [coarse]), coarse.weights.shape, exp, step, limit)
    return replace(coarse, name=f"{coarse.name}.fine", weights=mant, weight_exp=exp, sign_mode=sign_mode)


def _residual_blocks(x, synapses: list[Synapse]):
    """``(first row, rows of x minus what the program ``synapses`` deliver there)``, ``x`` in the units of a weight
    mantissa times ``2**weight_exp`` (Lava's effective weights: a conv's already hold its exponent)."""
    for start, block in row_blocks(x):
        rows = slice(start, start + len(block))
        for syn in synapses:
            kind, scale = ("conv", 1.0) if syn.kind == "conv" else ("dense", 2.0**syn.weight_exp)
            delivered = effective_weights(syn.weights[rows], syn.weight_exp, syn.num_weight_bits, syn.sign_mode, kind)
            block = block - delivered * scale
        yield start, block


def _relative_error(x, synapses: list[Synapse]) -> float:
    """Relative L2 error of the weights that ``synapses`` sum to against ``x``, a block of rows at a time."""
    errors = sum(float(np.vdot(r, r)) for _, r in _residual_blocks(x, synapses))
    squares = sum(float(np.vdot(block, block)) for _, block in row_blocks(x))
    return math.sqrt(errors / squares) if squares > 0 else 0.0


def _quantize_bias(bias: np.ndarray, node: str, fixed_exp: int | None = None):
    """(mantissa, exponent, relative error) with |mantissa| <= 4095, exponent in [0, 7] (``fixed_exp`` if given)."""
    m = float(np.abs(bias).max(initial=0))
    if m == 0:
        return np.zeros(bias.shape, dtype=np.int32), 0, 0.0
    exp = max(0, int(math.ceil(math.log2(m / BIAS_MANT_MAX) - 1e-12))) if fixed_exp is None else fixed_exp
    if exp > BIAS_EXP_MAX:
        raise HardwareLimitError(
            f"bias of {m:.4g} v-register units exceeds 13-bit mantissa << 7 ({BIAS_MANT_MAX << BIAS_EXP_MAX})",
            node,
            "bias",
        )
    mant = np.clip(np.round(bias / 2.0**exp), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int32)
    err = float(np.linalg.norm((mant * 2.0**exp - bias) / m) / np.linalg.norm(bias / m))  # / m: no underflow
    return mant, exp, err


def _summed_input(arrays, normalized, incoming, w_effs):
    """Float synaptic input of one population over the calibration recording, or None."""
    total = None
    for syn, w in zip(incoming, w_effs):
        x = _tonic_activity(arrays, syn.target) if syn.source == tonic_source(syn.target) else None
        x = x if x is not None else source_activity(arrays, syn.source, normalized.source_shape(syn.source))
        if x is None:
            continue
        y = synapse_output(syn, x, w)
        total = y if total is None else total + y
    return total


def _tonic_activity(arrays: dict, population: str) -> np.ndarray | None:
    """A tonic source's spikes over the calibration recording: one every step."""
    v = arrays.get(f"{population}.v")
    return None if v is None else np.ones((*np.shape(v)[:2], 1))


def _saturation(arrays, total, pop, K, u_to_v) -> dict:
    """Count calibration events that leave the hardware widths (per neuron and step); ``total``: the summed input."""
    k = K.reshape(1, 1, -1)
    out = {"activation_16bit": 0, "u_24bit": 0, "v_24bit": 0}
    if total is not None:
        a = np.abs(total * k)
        out["activation_16bit"] = int(np.count_nonzero(a > ACT_LIMIT_16))
    i_rec = arrays.get(f"{pop.name}.i")
    if i_rec is not None and u_to_v is not None:
        u = (
            np.asarray(i_rec, dtype=np.float64).reshape(i_rec.shape[0], i_rec.shape[1], -1)
            * u_to_v.reshape(-1)
            * k
            * 64
        )
        out["u_24bit"] = int(np.count_nonzero(np.abs(u) >= STATE_LIMIT))
    v_rec = arrays.get(f"{pop.name}.v")
    if v_rec is not None:
        v = np.asarray(v_rec, dtype=np.float64).reshape(v_rec.shape[0], v_rec.shape[1], -1) * k * 64
        out["v_24bit"] = int(np.count_nonzero(np.abs(v) >= STATE_LIMIT))
    return out
