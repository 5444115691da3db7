"""Lava's fixed-point integer arithmetic, defined once.

Every function here mirrors one piece of lava-nc 0.10.0's ``fixed_pt`` process models bit for
bit (file and function named in each docstring). The CPU backend executes these semantics and
the Lava backend is tested against them. Functions are pure: they take NumPy arrays or torch
tensors (any integer dtype, computed in int64) and return new ones of the same library.

Quirks reproduced on purpose (all checked against Lava in ``tests/test_fixedpoint.py``):

* Decays are sign-magnitude: ``sign(x) * (|x| * (4096 - d) >> 12)`` (rounds toward zero), and
  ``u`` uses ``d = du + 1`` (hidden ``ds_offset``): ``du = 0`` still decays ``u`` by 1/4096.
  ``v`` uses ``d = dv`` (``dm_offset = 0``).
* ``u`` "wraps" to 24 bits with ONE conditional shift by 2**24 into ``(-2**23, 2**23]``
  (not a modulo: ``+2**23`` is kept, ``-2**23`` becomes ``+2**23``); ``v`` clips to
  ``[-(2**23 - 1), 2**23 - 1]``.
* Threshold and synaptic input are MSB-aligned: ``vth << 6``, ``a_in << 6``.
* Activations travel over int32 channels: every value a synapse sends and every sum a neuron
  receives wraps to 32 bits (``a_in`` is declared int16 in Lava but never narrowed).
* Dense/Sparse weights are clipped to 8 bits and truncated to ``num_weight_bits``
  (mixed sign: one extra bit is dropped, so with 8 bits odd weights floor: 3 -> 2, -3 -> -4).
  ``weight_exp`` shifts the per-step sum (a right shift floors).
* Conv ignores ``weight_exp``, ``num_weight_bits`` and ``sign_mode``; its per-step sum wraps
  modulo 2**24.
* Timing: a spike sent at step t reaches the target neuron at step t+1 (+ delay).

Two extensions beyond Lava's stock models (Lava: ``backends._lava_procs.LIFExtended``):
``reset="subtract"`` in :func:`lif_fixed_step` / :func:`lif_float_step` (``Population.reset``),
identical to Lava's LIF except for the reset (``v <- v - (vth << 6)`` instead of ``v <- 0``), and
the bias onset (``Population.bias_onset``, :func:`bias_active`): the bias is added from that step
of a sample on.
"""

from __future__ import annotations

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import STATE_BITS

UV_MAX = 2 ** (STATE_BITS - 1)  # Lava's max_uv_val
V_LIMIT = UV_MAX - 1  # v clips to [-V_LIMIT, V_LIMIT]
DECAY_SHIFT = 12
DECAY_UNITY = 2**DECAY_SHIFT
U_DECAY_OFFSET = 1  # ds_offset in AbstractPyLifModelFixed
V_DECAY_OFFSET = 0  # dm_offset
VTH_SHIFT = 6
ACT_SHIFT = 6
CONV_ACC_BITS = 24  # lava.proc.conv.models.PyConvModelFixed.clamp_precision
CHANNEL_BITS = 32  # int32 ports between processes


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _int64(x):
    if _is_torch(x):
        import torch

        return x.to(torch.int64)
    return np.asarray(x, dtype=np.int64)


def _where(cond, a, b):
    if _is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def wrap_bits(x, bits: int):
    """Two's-complement wrap to ``bits`` (modulo 2**bits into ``[-2**(bits-1), 2**(bits-1))``).

    Mirrors ``lava.proc.conv.utils.signed_clamp`` (bits=24) and the implicit int32 cast of
    values written into a channel (``pypychannel.CspSendPort.send``) or summed in int32.
    """
    x = _int64(x)
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def wrap_u(x):
    """Lava's 24-bit "wrap" of the current ``u``: one conditional shift by 2**24.

    Mirrors ``AbstractPyLifModelFixed.subthr_dynamics`` (lava/proc/lif/models.py):
    ``x > 2**23 -> x - 2**24``; ``x <= -2**23 -> x + 2**24``; result stays in int32.
    """
    x = _int64(x)
    x = _where(x > UV_MAX, x - 2 * UV_MAX, _where(x <= -UV_MAX, x + 2 * UV_MAX, x))
    return wrap_bits(x, CHANNEL_BITS)


def clip_v(x):
    """Clip of the voltage to ``[-(2**23 - 1), 2**23 - 1]`` (``subthr_dynamics``)."""
    x = _int64(x)
    if _is_torch(x):
        return x.clamp(-V_LIMIT, V_LIMIT)
    return np.clip(x, -V_LIMIT, V_LIMIT)


def decay(x, d: int, offset: int = 0):
    """Sign-magnitude decay ``sign(x) * ((|x| * (4096 - (d + offset))) >> 12)``.

    Mirrors ``AbstractPyLifModelFixed.subthr_dynamics``; ``offset`` is 1 for ``u``
    (``ds_offset``) and 0 for ``v`` (``dm_offset``). Rounds toward zero.
    """
    x = _int64(x)
    prod = x * decay_multiplier(d, offset)
    if _is_torch(prod):  # integer division rounds toward zero: the same numbers in fewer operations
        import torch

        return torch.div(prod, DECAY_UNITY, rounding_mode="trunc")
    mag = abs(prod) >> DECAY_SHIFT
    return _where(prod < 0, -mag, mag)


def decay_multiplier(d: int, offset: int = 0) -> int:
    """The factor ``4096 - (d + offset)`` that :func:`decay` multiplies ``|x|`` with before ``>> 12``."""
    return DECAY_UNITY - (int(d) + int(offset))


def effective_bias(bias_mant, bias_exp):
    """``bias_mant << bias_exp`` (``AbstractPyLifModelFixed.scale_bias``; bias_exp >= 0)."""
    return wrap_bits(_int64(bias_mant) << _int64(bias_exp), CHANNEL_BITS)


def effective_vth(vth: int) -> int:
    """``vth << 6`` (``PyLifModelBitAcc.scale_threshold``); a neuron spikes when ``v > this``."""
    return int(vth) << VTH_SHIFT


def effective_weights(
    weights, weight_exp: int = 0, num_weight_bits: int = 8, sign_mode: str = "mixed", kind: str = "dense"
):
    """The integer weights Lava multiplies spikes with, as a new int64 array.

    Dense/Sparse/DelayDense/DelaySparse (``PyDenseModelBitAcc.run_spk`` ->
    ``lava.utils.weightutils.clip_weights(num_bits=8)`` then ``truncate_weights``):
    mixed weights clip to [-256, 255], excitatory to [0, 255], inhibitory to [-255, 0];
    then ``8 - num_weight_bits + (1 if mixed)`` low bits are dropped (floor; inhibitory
    weights are truncated in magnitude). ``weight_exp`` is NOT applied here: Lava shifts the
    per-step sum (see :func:`scale_activation`). Pass ``sign_mode`` to Lava explicitly, otherwise
    Lava infers it from the weights.

    Conv (``kind="conv"``, ``PyConvModelFixed``): no clip, no truncation, and Lava ignores
    ``weight_exp``; the program's ``weight_exp`` (>= 0) is folded into the weights,
    ``weights << weight_exp``, which is what the Lava lowering must pass to ``Conv``.
    """
    w = _int64(weights)
    if kind == "conv":
        if weight_exp < 0:
            raise NeurocompileError("conv synapse: weight_exp < 0 is not supported (Lava Conv ignores weight_exp)")
        return w << int(weight_exp)
    if sign_mode == "mixed":
        lo, hi = -256, 255
    elif sign_mode in ("excitatory", "inhibitory"):
        lo, hi = 0, 255
    else:
        raise NeurocompileError(f"unknown sign_mode '{sign_mode}'")
    if sign_mode == "inhibitory":
        w = -w
    drop = truncated_bits(num_weight_bits, sign_mode)
    w = w.clamp(lo, hi) if _is_torch(w) else np.clip(w, lo, hi)
    w = (w >> drop) << drop
    return -w if sign_mode == "inhibitory" else w


def synapse_weights(syn, number_format: str = "fixed"):
    """The weights a program synapse multiplies its inputs with: :func:`effective_weights` with the
    synapse's settings (a plastic synapse starts from these: Lava truncates them once); a float
    program's weights as they are."""
    if number_format == "float":
        return np.asarray(syn.weights, dtype=np.float64)
    kind = "conv" if syn.kind == "conv" else "dense"
    return effective_weights(syn.weights, syn.weight_exp, syn.num_weight_bits, syn.sign_mode, kind=kind)


def truncated_bits(num_weight_bits: int, sign_mode: str) -> int:
    """Low bits of an 8-bit weight that Lava zeroes (``truncate_weights``): ``8 - num_weight_bits``,
    one more for mixed sign."""
    return 8 - int(num_weight_bits) + (1 if sign_mode == "mixed" else 0)


def scale_activation(acc, weight_exp: int):
    """Apply ``weight_exp`` to a per-step synaptic sum and wrap to the int32 channel.

    ``acc << weight_exp`` if ``weight_exp > 0`` else ``acc >> -weight_exp`` (arithmetic, floors),
    as in ``PyDenseModelBitAcc.run_spk`` (also Sparse, DelayDense, DelaySparse: there the shift
    applies separately to each delay's partial sum).
    """
    acc = _int64(acc)
    acc = acc << int(weight_exp) if weight_exp > 0 else acc >> int(-weight_exp)
    return wrap_bits(acc, CHANNEL_BITS)


def dense_activation(spikes, weights_eff, weight_exp: int = 0):
    """Activation sent by a Dense/Sparse synapse for binary ``spikes`` [..., n_source].

    ``weights_eff`` [n_target, n_source] from :func:`effective_weights`. Returns int64
    [..., n_target]; it reaches the target one step after the spikes were sent.
    """
    s, w = _int64(spikes), _int64(weights_eff)
    return scale_activation(s @ w.T, weight_exp)


def delayed_dense_activation(spikes, weights_eff, delays, weight_exp: int = 0):
    """Activations of a DelayDense/DelaySparse synapse, one per delay.

    Returns ``{d: activation}`` for every delay ``d`` present: spikes sent at step t add
    ``activation[d]`` to the target input at step ``t + 1 + d`` (``AbstractPyDelayDenseModel.
    update_act``: ``a_buff`` column d, rolled once per step). ``weight_exp`` shifts each
    delay's partial sum separately (``PyDelayDenseModelBitAcc.run_spk``).
    """
    out = {}
    d_arr = np.asarray(delays.cpu() if _is_torch(delays) else delays)
    for d in np.unique(d_arr):
        mask = d_arr == d
        if _is_torch(weights_eff):
            import torch

            w_d = torch.where(torch.as_tensor(mask, device=weights_eff.device), weights_eff, 0)
        else:
            w_d = np.where(mask, weights_eff, 0)
        out[int(d)] = dense_activation(spikes, w_d, weight_exp)
    return out


def conv_activation(spikes, weights_eff, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1):
    """Activation sent by a Conv synapse: cross-correlation in PyTorch layout, wrapped to 24 bits.

    ``spikes`` [..., C_in, H, W], ``weights_eff`` [C_out, C_in/groups, kH, kW] (PyTorch
    layout, from ``effective_weights(kind="conv")``). Lava's ``conv.utils.conv_scipy`` computes
    a true convolution in (W, H, C) order with a (C_out, W, H, C_in) kernel: the same numbers
    with the kernel flipped (see :func:`lava_conv_weights`). The sum wraps modulo 2**24
    (``PyConvModelFixed.clamp_precision`` -> ``signed_clamp``). Computed exactly (float64).
    """
    import torch
    import torch.nn.functional as F

    was_torch = _is_torch(spikes)
    s = torch.as_tensor(np.asarray(spikes) if not was_torch else spikes)
    w = torch.as_tensor(np.asarray(weights_eff) if not _is_torch(weights_eff) else weights_eff)
    lead = s.shape[:-3]
    x = s.reshape(-1, *s.shape[-3:]).to(torch.float64)
    y = F.conv2d(
        x,
        w.to(device=x.device, dtype=torch.float64),
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        groups=groups,
    )
    y = wrap_bits(y.round().to(torch.int64), CONV_ACC_BITS).reshape(*lead, *y.shape[1:])
    return y if was_torch else y.numpy()


def conv_connections(weights, geometry):
    """A conv synapse as the triplets ``(rows, cols, values)`` of its [n_target, n_source] matrix.

    Rows and columns index the C-order flattening of the (C, H, W) target and source (PyTorch
    cross-correlation semantics, ``geometry`` a ``network.ConvGeometry``); zero weights are
    left out. Used for the Lava lowering of a conv to ``Sparse`` and for fan-out counts.
    """
    g = geometry
    c_in, h_in, w_in = g.input_shape
    c_out, h_out, w_out = g.output_shape
    w = np.asarray(weights)
    _, cpg, kh, kw = w.shape
    opg = c_out // int(g.groups)
    co, oy, ox = (a.ravel() for a in np.meshgrid(np.arange(c_out), np.arange(h_out), np.arange(w_out), indexing="ij"))
    rows, cols, vals = [], [], []
    for ci_local in range(cpg):
        ci = (co // opg) * cpg + ci_local
        for ky in range(kh):
            iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0]
            for kx in range(kw):
                ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1]
                val = w[co, ci_local, ky, kx]
                ok = (iy >= 0) & (iy < h_in) & (ix >= 0) & (ix < w_in) & (val != 0)
                rows.append(((co * h_out + oy) * w_out + ox)[ok])
                cols.append(((ci * h_in + iy) * w_in + ix)[ok])
                vals.append(val[ok])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def lava_conv_weights(weights_eff):
    """PyTorch conv kernel [C_out, C_in, kH, kW] -> Lava Conv kernel (C_out, W, H, C_in), flipped.

    Lava convolves (``scipy.signal.convolve2d``) where PyTorch correlates, and orders
    images (W, H, C): ``w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``.
    """
    w = np.asarray(weights_eff)
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def lif_fixed_subthreshold(a_in, u, v, du: int, dv: int, bias):
    """The integration of :func:`lif_fixed_step` without firing: returns ``(u, v)``, ``v`` before reset
    (``AbstractPyLifModelFixed.subthr_dynamics``)."""
    a64 = wrap_bits(_int64(a_in) << ACT_SHIFT, CHANNEL_BITS)  # == int32(int32(a_in) << 6): wraps are modular
    u = wrap_u(wrap_bits(decay(u, du, U_DECAY_OFFSET) + a64, CHANNEL_BITS))
    v = clip_v(wrap_bits(decay(v, dv, V_DECAY_OFFSET) + u + _int64(bias), CHANNEL_BITS))
    return u, v


def lif_fixed_step(a_in, u, v, du: int, dv: int, vth: int, bias, spiking: bool = True, reset: str = "zero"):
    """One step of Lava's bit-accurate LIF: returns ``(spikes, u, v)`` (new arrays).

    ``a_in``: summed synaptic input of this step (any int; wrapped to int32 like the port sum);
    ``bias``: :func:`effective_bias`. Mirrors ``AbstractPyLifModelFixed.subthr_dynamics``,
    ``PyLifModelBitAcc.spiking_activation`` and ``reset_voltage``::

        u = wrap_u(int32(decay(u, du, 1) + int32(a_in << 6)))
        v = clip_v(int32(decay(v, dv, 0) + u + bias))
        s = v > (vth << 6);  v[s] = 0

    ``reset="subtract"`` (``Population.reset``; ``backends._lava_procs.LIFExtended``) is
    identical to Lava's LIF except for the reset: ``v[s] -= vth << 6``. No clip is needed: a
    spiking ``v`` lies in ``(vth << 6, 2**23 - 1]``, so the result lies in ``[0, 2**23 - 1)``.
    ``spiking=False`` (a readout population) never spikes and never resets.
    """
    u, v = lif_fixed_subthreshold(a_in, u, v, du, dv, bias)
    if not spiking:
        return v > V_LIMIT, u, v  # all False (v is clipped), same library and shape
    s, v = fire(v, effective_vth(vth), reset)
    return s, u, v


def fire(v, threshold, reset: str = "zero"):
    """Spikes where ``v > threshold``, and ``v`` after the reset: 0 (Lava's LIF) or
    ``v - threshold`` (``reset="subtract"``). Returns ``(spikes, v)``."""
    s = v > threshold
    return s, _where(s, v - threshold if reset == "subtract" else 0 * v, v)


def lif_float_step(a_in, u, v, du: float, dv: float, vth: float, bias, reset: str = "zero"):
    """One step of Lava's ``floating_pt`` LIF (a float program): returns ``(spikes, u, v)``.

    Mirrors ``AbstractPyLifModelFloat.subthr_dynamics`` and ``PyLifModelFloat.spiking_activation``
    (``bias_exp`` is not used by that model)::

        u = u * (1 - du) + a_in
        v = v * (1 - dv) + u + bias
        s = v > vth;  v[s] = 0

    ``reset="subtract"``: identical except for the reset, ``v[s] -= vth``.
    ``du``/``dv`` are decay fractions; ``vth = inf`` never spikes (a readout).
    """
    u = u * (1 - du) + a_in
    v = v * (1 - dv) + u + bias
    s, v = fire(v, vth, reset)
    return s, u, v


def reset_due(step: int, reset_interval: int) -> bool:
    """Whether a ``LIFReset`` population zeroes u and v before step ``step`` (0-based).

    ``PyLifResetModelBitAcc.run_spk`` resets when ``time_step % reset_interval == reset_offset``
    with Lava's 1-based ``time_step`` and ``reset_offset = 0``: steps R-1, 2R-1, ... (0-based).
    ``reset_interval = 0`` means a plain LIF (never).
    """
    return reset_interval > 0 and (step + 1) % reset_interval == 0


def bias_active(step: int, bias_onset: int) -> bool:
    """Whether a population adds its bias in step ``step`` (0-based, counted from the start of the run
    or sample): from ``Population.bias_onset`` on. Before it, ``v`` integrates ``u`` alone."""
    return step >= bias_onset


# --- the learning engine ---------------------------------------------------------------------
#
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
SIGNAL_LIMITS = (-128, 127)
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
    return np.clip(_int64(trace) + impulse_int + (r < impulse_frac), 0, TRACE_MAX)


def trace_history(traces, spike_times, taus, impulses, t_epoch: int, r_decay: float, r_impulse: int) -> np.ndarray:
    """Trace values at each within-epoch step 0..t_epoch (``_compute_trace_histories``).

    ``traces`` [K, n] at the epoch start; ``spike_times`` [n] (1..t_epoch, 0: none); ``taus`` and
    ``impulses`` per trace. A tau of 0 zeroes the trace; spikes add the impulse at their step.
    """
    traces = _int64(traces)
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
            value *= np.clip(_int64(raw) + factor.constant, -(2**width), 2**width - 1).astype(np.int32)
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
    acc = products_sum_fn(_int64(weights) << WEIGHT_ACCUMULATOR_SHIFT)
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
    state.y = _int64(y).copy()


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
    x = _int64(x)
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
    v, third = _int64(v), _int64(third)
    if signal.target is None:
        error = third
    else:
        output = _int64(spikes) << signal.output_shift if signal.output == "spikes" else v >> signal.output_shift
        error = wrap_bits(output - third, CHANNEL_BITS)
    psi = np.zeros_like(v)
    new_trace = _int64(psi_trace)
    if signal.surrogate is not None:
        table = np.asarray(signal.surrogate.table, dtype=np.int64)
        distance = np.abs(v - effective_vth(vth)) >> signal.surrogate.shift
        psi = table[np.minimum(distance, len(table) - 1)]
        new_trace = np.minimum(((new_trace * decay_multiplier(signal.trace_decay)) >> DECAY_SHIFT) + psi, PSI_TRACE_MAX)
    gains = {"one": np.ones_like(v), "surrogate": psi, "surrogate_trace": _int64(psi_trace)}
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
    from dataclasses import replace

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


def float_program_of(program):
    """The float program an integer program stands for: what Lava's ``floating_pt`` models run.

    Decays ``(du + 1) / 4096`` and ``dv / 4096``; threshold ``vth << 6`` (``inf`` for a readout);
    bias ``bias_mant * 2**bias_exp``; dense/sparse weights as Lava multiplies them
    (:func:`effective_weights`), conv weights as they are, times ``2**weight_exp * 64`` (the
    ``<< 6`` of the synaptic input), so ``v`` keeps its register units. A feedback synapse carries
    errors, not ``v`` increments: no ``* 64``. Learning rules become :func:`float_rule`. A float
    program is returned as it is.
    """
    import copy

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
