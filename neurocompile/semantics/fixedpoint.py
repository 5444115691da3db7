"""Lava's fixed-point integer arithmetic, defined once.

Every function mirrors one piece of lava-nc 0.10.0's ``fixed_pt`` process models bit for bit (file and function
named in its docstring), Lava's quirks included; the CPU backend executes these semantics and the Lava backend is
tested against them. Functions are pure: NumPy arrays or torch tensors in, new ones out (computed in int64). The
update, the quirks and the two extensions beyond Lava's stock LIF (``reset="subtract"``, the bias onset):
``docs/quantization.md`` ("2. Lava's integer LIF").
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


def as_int64(x):
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
    x = as_int64(x)
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def wrap_u(x):
    """Lava's 24-bit "wrap" of the current ``u``: one conditional shift by 2**24.

    Mirrors ``AbstractPyLifModelFixed.subthr_dynamics`` (lava/proc/lif/models.py):
    ``x > 2**23 -> x - 2**24``; ``x <= -2**23 -> x + 2**24``; result stays in int32.
    """
    x = as_int64(x)
    x = _where(x > UV_MAX, x - 2 * UV_MAX, _where(x <= -UV_MAX, x + 2 * UV_MAX, x))
    return wrap_bits(x, CHANNEL_BITS)


def clip_v(x):
    """Clip of the voltage to ``[-(2**23 - 1), 2**23 - 1]`` (``subthr_dynamics``)."""
    x = as_int64(x)
    if _is_torch(x):
        return x.clamp(-V_LIMIT, V_LIMIT)
    return np.clip(x, -V_LIMIT, V_LIMIT)


def decay(x, d: int, offset: int = 0):
    """Sign-magnitude decay ``sign(x) * ((|x| * (4096 - (d + offset))) >> 12)``.

    Mirrors ``AbstractPyLifModelFixed.subthr_dynamics``; ``offset`` is 1 for ``u``
    (``ds_offset``) and 0 for ``v`` (``dm_offset``). Rounds toward zero.
    """
    x = as_int64(x)
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
    return wrap_bits(as_int64(bias_mant) << as_int64(bias_exp), CHANNEL_BITS)


def effective_vth(vth: int) -> int:
    """``vth << 6`` (``PyLifModelBitAcc.scale_threshold``); a neuron spikes when ``v > this``."""
    return int(vth) << VTH_SHIFT


def sign_mode_of(weights) -> str:
    """The sign mode Lava's Dense infers from weights given without one (``weightutils.determine_sign_mode``)."""
    w = np.asarray(weights)
    if np.all(w >= 0):
        return "excitatory"
    return "inhibitory" if np.all(w <= 0) else "mixed"


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
    w = as_int64(weights)
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
    acc = as_int64(acc)
    acc = acc << int(weight_exp) if weight_exp > 0 else acc >> int(-weight_exp)
    return wrap_bits(acc, CHANNEL_BITS)


def dense_activation(spikes, weights_eff, weight_exp: int = 0):
    """Activation sent by a Dense/Sparse synapse for binary ``spikes`` [..., n_source].

    ``weights_eff`` [n_target, n_source] from :func:`effective_weights`. Returns int64
    [..., n_target]; it reaches the target one step after the spikes were sent.
    """
    s, w = as_int64(spikes), as_int64(weights_eff)
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
    a64 = wrap_bits(as_int64(a_in) << ACT_SHIFT, CHANNEL_BITS)  # == int32(int32(a_in) << 6): wraps are modular
    u = wrap_u(wrap_bits(decay(u, du, U_DECAY_OFFSET) + a64, CHANNEL_BITS))
    v = clip_v(wrap_bits(decay(v, dv, V_DECAY_OFFSET) + u + as_int64(bias), CHANNEL_BITS))
    return u, v


def lif_fixed_step(a_in, u, v, du: int, dv: int, vth: int, bias, spiking: bool = True, reset: str = "zero", **firing):
    """One step of Lava's bit-accurate LIF: returns ``(spikes, u, v)`` (new arrays).

    ``a_in``: summed synaptic input of this step (any int; wrapped to int32 like the port sum);
    ``bias``: :func:`effective_bias`. Mirrors ``AbstractPyLifModelFixed.subthr_dynamics``,
    ``PyLifModelBitAcc.spiking_activation`` and ``reset_voltage``::

        u = wrap_u(int32(decay(u, du, 1) + int32(a_in << 6)))
        v = clip_v(int32(decay(v, dv, 0) + u + bias))
        s = v > (vth << 6);  v[s] = 0

    ``reset="subtract"`` (``Population.reset``; ``backends.lava.processes.LIFExtended``) is
    identical to Lava's LIF except for the reset: ``v[s] -= vth << 6``. No clip is needed: a
    spiking ``v`` lies in ``(vth << 6, 2**23 - 1]``, so the result lies in ``[0, 2**23 - 1)``.
    ``firing``: ``Population.firing()``, snnTorch's reset timings and graded spikes (:func:`timed_fire`).
    ``spiking=False`` (a readout population) never spikes and never resets.
    """

    def integrate(v_from, offset=0):
        return lif_fixed_subthreshold(a_in, u, v_from, du, dv, as_int64(bias) + offset)

    if not spiking:
        u, v = integrate(v)
        return v > V_LIMIT, u, v  # all False (v is clipped), same library and shape
    return timed_fire(v, integrate, effective_vth(vth), reset, clip=clip_v, **firing)


def timed_fire(
    v, integrate, threshold, reset: str, timing: str = "same-step", synaptic: bool = False, payload_bits: int = 0,
    clip=None,
):  # fmt: skip
    """Integrate, spike and reset under a reset timing (``Population.reset_timing``): ``(spikes, u, v)``.

    ``integrate(v_from, offset)`` returns ``(u, v)`` after one step from membrane ``v_from`` with
    ``offset`` added to the bias. ``"same-step"``: :func:`fire` after the step. snnTorch 1.0's timings
    (``discretization._fire``) first take ``r = v > threshold`` from the stored membrane; reset by
    subtraction removes ``threshold * r`` in the step (``v = decay(v) + u + bias - threshold*r``),
    reset to zero zeroes the stored membrane before the step where ``r`` (``Leaky``), or the stepped
    one (``synaptic``: ``Synaptic``); then ``s = v > threshold``. ``"snntorch-delayed"`` stores that
    ``v``; ``"snntorch-immediate"`` stores ``clip(v - threshold*(s - r))`` (subtract) or
    ``clip(v - (s - r)*v)`` (zero). ``clip``: the voltage clip of the number format (None: none).
    ``payload_bits``: graded spikes (:func:`fire`; same-step only)."""
    if timing == "same-step":
        u, v = integrate(v)
        s, v = fire(v, threshold, reset, payload_bits)
        return s, u, v
    r = v > threshold
    if reset == "subtract":
        u, v = integrate(v, -threshold * r)
    elif synaptic:
        u, v = integrate(v)
        v = _where(r, 0 * v, v)
    else:
        u, v = integrate(_where(r, 0 * v, v))
    s = v > threshold
    if timing == "snntorch-immediate":
        change = s * 1 - r * 1
        v = v - (threshold * change if reset == "subtract" else change * v)
        v = v if clip is None else clip(v)
    return s, u, v


def fire(v, threshold, reset: str = "zero", payload_bits: int = 0):
    """Spikes where ``v > threshold``, and ``v`` after the reset: 0 (Lava's LIF) or
    ``v - threshold`` (``reset="subtract"``). Returns ``(spikes, v)``.

    ``payload_bits > 0``: a graded spike (``Population.payload_bits``) whose payload counts the thresholds
    that ``v`` exceeds, ``n = ceil(v / threshold) - 1`` (every ``v`` when ``threshold`` is 0), at most
    ``2**payload_bits - 1``; a subtractive reset removes ``n * threshold``. Returns ``(counts, v)``."""
    if not payload_bits:
        s = v > threshold
        return s, _where(s, v - threshold if reset == "subtract" else 0 * v, v)
    most = 2**payload_bits - 1
    above = v > threshold
    if threshold > 0:
        count = -(-v // threshold) - 1
        count = _where(above, _where(count > most, 0 * count + most, count), 0 * count)
    else:
        count = _where(above, 0 * v + most, 0 * v)
    return count, _where(above, v - count * threshold if reset == "subtract" else 0 * v, v)


def lif_float_step(a_in, u, v, du: float, dv: float, vth: float, bias, reset: str = "zero", **firing):
    """One step of Lava's ``floating_pt`` LIF (a float program): returns ``(spikes, u, v)``.

    Mirrors ``AbstractPyLifModelFloat.subthr_dynamics`` and ``PyLifModelFloat.spiking_activation``
    (``bias_exp`` is not used by that model)::

        u = u * (1 - du) + a_in
        v = v * (1 - dv) + u + bias
        s = v > vth;  v[s] = 0

    ``reset="subtract"``: identical except for the reset, ``v[s] -= vth``; ``firing``: snnTorch's reset
    timings and graded spikes (:func:`timed_fire`, no clip). ``du``/``dv`` are decay fractions; ``vth = inf`` never
    spikes (a readout).
    """
    u_new = u * (1 - du) + a_in

    def integrate(v_from, offset=0):
        return u_new, v_from * (1 - dv) + u_new + bias + offset

    return timed_fire(v, integrate, vth, reset, **firing)


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
