"""The NIR primitives neurocompile understands: one entry each, and the only list of their names.

Every stage reads this registry: the reader (``nir_io``) its fields and checks, the float reference and the
normalizer its shapes and float op or step, ``inspect`` its kind, the quantizer each neuron's per-step linear
form. Linear primitives' float ops are defined here; neurons step with
:mod:`neurocompile.semantics.discretization`. What each computes: ``docs/conventions.md``; adding one:
``docs/adding-a-primitive.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from neurocompile.errors import GraphError, first_line
from neurocompile.ir.network import ConvGeometry
from neurocompile.semantics import discretization as D

Kind = Literal["io", "graph", "linear", "neuron"]


# --- neurons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearForm:
    """One float step of a neuron as the quantizer and the online trainers see it (per neuron
    arrays or tensors)::

    u <- (1 - a_u) u + x                      (a_u = 1: no synaptic state, u is this step's input)
    v <- (1 - a_v) v + gain * u + bias_v      (then threshold and reset)

    ``extra_delay``: steps the voltage lags its input (1 when it integrates the previous
    current). ``bias_x``: a constant input that must enter as ``x`` (through ``u``) every step, not through
    ``bias_v``: the bias of a model with a current (None: none, or the bias is in ``bias_v``). ``u_to_v``: float v increment per unit of the model's own current ``i`` (None
    without one). ``decay_param``: which NIR parameter sets each decay, for error messages.
    """

    a_u: np.ndarray
    a_v: np.ndarray
    gain: np.ndarray
    bias_v: np.ndarray
    extra_delay: int = 0
    bias_x: np.ndarray | None = None
    u_to_v: np.ndarray | None = None
    decay_param: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def has_current(self) -> bool:
        return self.u_to_v is not None


def _leaky_form(p: dict, b: np.ndarray, conv: D.Convention) -> LinearForm:
    a_m = conv.dt / p["tau"]
    return LinearForm(
        a_m * 0 + 1, a_m, conv.dt * p["r"] / p["tau"], a_m * (p["v_leak"] + p["r"] * b), decay_param={"v": "tau"}
    )


def _integrate_form(p: dict, b: np.ndarray, conv: D.Convention) -> LinearForm:
    g = (conv.dt if conv.if_uses_dt else 1.0) * p["r"]
    return LinearForm(g * 0 + 1, g * 0, g, g * b)


def _cuba_form(p: dict, b: np.ndarray, conv: D.Convention) -> LinearForm:
    a_m, a_s = conv.dt / p["tau_mem"], conv.dt / p["tau_syn"]
    in_scale = a_s if conv.cuba_input_scaled else 1.0
    biased = np.any(np.asarray(b) != 0)
    notes = ["bias enters the current as a constant input (Lava has no bias on u: a tonic source)"] if biased else []
    if not conv.current_first:
        notes.append("voltage integrates the previous current: one extra step of delay on every input")
    return LinearForm(
        a_s,
        a_m,
        a_m * p["r"] * p["w_in"] * in_scale,
        a_m * p["v_leak"],
        extra_delay=0 if conv.current_first else 1,
        bias_x=np.asarray(b, dtype=np.float64) if biased else None,
        u_to_v=a_m * p["r"],
        decay_param={"u": "tau_syn", "v": "tau_mem"},
        notes=tuple(notes),
    )


def _threshold_form(p: dict, b: np.ndarray, conv: D.Convention) -> LinearForm:
    ones = p["threshold"] * 0 + 1
    return LinearForm(ones, ones, ones, b * ones, decay_param={"v": "threshold"})


@dataclass(frozen=True)
class NeuronModel:
    """A neuron primitive's float semantics: ``step(x, state, params, convention) -> (out, state)``.

    ``threshold``/``reset``: names of its firing parameters (None for readouts, whose output is v).
    """

    step: Callable
    params: type
    state: type
    spiking: bool
    linear_form: Callable[[dict, np.ndarray, D.Convention], LinearForm]
    threshold: str | None = "v_threshold"
    reset: str | None = "v_reset"
    time_constants: tuple[str, ...] = ()


# --- linear ops --------------------------------------------------------------------------------


@dataclass
class Op:
    """A linear node resolved for one input shape. ``apply`` excludes the bias (``bias`` is in
    ``out_shape``); ``weight`` is the tensor ``apply`` multiplies with (conv/affine/scale)."""

    node: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    conv: ConvGeometry | None = None  # conv2d with symmetric padding (what a conv synapse can hold)
    pool: tuple | None = None  # (kernel, stride, padding, average)
    delay: np.ndarray | None = None  # seconds, as in NIR
    scales: bool = False  # elementwise product with ``weight`` (Scale)
    reshapes_only: bool = False  # values pass unchanged (Flatten, Identity, Delay)

    @property
    def elementwise(self) -> bool:
        """Each output element depends on the same input element only."""
        return self.scales or self.reshapes_only

    def apply(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, ...] with ``prod(in_shape)`` values per sample -> [B, *out_shape]."""
        if weight is None and self.weight is not None:
            weight = torch.as_tensor(self.weight, dtype=x.dtype, device=x.device)
        return self.fn(x.reshape(x.shape[0], *self.in_shape), weight)


def _ints(value, n: int, node: str, name: str) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64).ravel()
    if arr.size == 1:
        return (int(arr[0]),) * n
    if arr.size == n:
        return tuple(int(v) for v in arr)
    raise GraphError(f"expected 1 or {n} values, got {arr.size}", node=node, field=name)


def _bias(node, out_shape, channel_first: bool) -> np.ndarray | None:
    """The node's bias broadcast to ``out_shape``: one value per channel (conv) or per output."""
    bias = getattr(node, "bias", None)
    if bias is None or np.size(bias) == 0:
        return None
    b = np.asarray(bias, dtype=np.float64)
    if channel_first:
        b = b.reshape(-1, *([1] * (len(out_shape) - 1)))
    elif b.size == int(np.prod(out_shape)):
        b = b.reshape(out_shape)
    return np.broadcast_to(b, out_shape).copy()


def _shape_of(fn, name: str, in_shape, weight) -> tuple[int, ...]:
    """Output shape of ``fn`` for one sample of ``in_shape``, from a batch of none (no value is computed, and
    the weight is never written: its pages stay unallocated; torch's meta device would load its compiler)."""
    x = torch.empty((0, *in_shape))
    w = None if weight is None else torch.empty(np.shape(weight))
    try:
        return tuple(int(s) for s in fn(x, w).shape[1:])
    except (RuntimeError, ValueError) as exc:
        reason = first_line(exc)
        raise GraphError(f"does not apply to input shape {list(in_shape)}: {reason}", node=name) from None


def _affine_op(name: str, node, in_shape) -> Op:
    w = np.asarray(node.weight)  # a float weight as read (``apply`` casts it): a large one is not copied
    w = w if w.dtype.kind == "f" else w.astype(np.float64)
    n_in = w.shape[-1]
    if int(np.prod(in_shape)) % n_in or (w.ndim == 2 and int(np.prod(in_shape)) != n_in):
        raise GraphError(f"weight expects {n_in} inputs, gets shape {list(in_shape)}", node=name, field="weight")
    shape = (n_in,) if w.ndim == 2 else tuple(w.shape[:-2]) + (n_in,)

    def fn(x, weight):
        if weight.dim() == 2:
            return x @ weight.T
        return torch.matmul(weight, x.unsqueeze(-1)).squeeze(-1)

    out = _shape_of(fn, name, shape, w)
    return Op(name, type(node).__name__, shape, out, fn, weight=w, bias=_bias(node, out, False))


def conv_padding(padding, kernel: tuple[int, ...], dilation: tuple[int, ...], node: str):
    """Explicit padding per spatial axis as (before, after) pairs, from NIR's int/tuple/"same"/"valid"."""
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in kernel)
        if padding != "same":
            raise GraphError(f"unknown padding '{padding}'", node=node, field="padding")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in _ints(padding, len(kernel), node, "padding"))


def conv2d(x: torch.Tensor, weight: torch.Tensor, geometry: ConvGeometry) -> torch.Tensor:
    """The float apply of a conv synapse: ``x`` [B, *geometry.input_shape] -> [B, *output_shape]."""
    g = geometry
    return F.conv2d(x, weight, None, tuple(g.stride), tuple(g.padding), tuple(g.dilation), g.groups)


def _conv_op(name: str, node, in_shape) -> Op:
    dims = 1 if type(node).__name__ == "Conv1d" else 2
    w = np.asarray(node.weight, dtype=np.float64)
    stride = _ints(node.stride, dims, name, "stride")
    dilation = _ints(node.dilation, dims, name, "dilation")
    groups = int(np.asarray(node.groups).ravel()[0]) if np.size(node.groups) else 1
    pads = conv_padding(node.padding, tuple(w.shape[2:]), dilation, name)
    if len(in_shape) != dims + 1 or w.shape[1] * groups != in_shape[0]:
        raise GraphError(
            f"weight {list(w.shape)} (groups={groups}) does not fit input shape {list(in_shape)}",
            node=name,
            field="weight",
        )
    flat_pad = [p for pair in reversed(pads) for p in pair]  # F.pad order: last axis first
    conv = F.conv1d if dims == 1 else F.conv2d

    def fn(x, weight):
        if any(flat_pad):
            x = F.pad(x, flat_pad)
        return conv(x, weight, None, stride, 0, dilation, groups)

    out = _shape_of(fn, name, in_shape, w)
    geometry = None
    if dims == 2 and all(a == b for a, b in pads):
        geometry = ConvGeometry(tuple(in_shape), out, stride, tuple(a for a, _ in pads), dilation, groups)
    return Op(name, f"Conv{dims}d", tuple(in_shape), out, fn, weight=w, bias=_bias(node, out, True), conv=geometry)


def pool2d(x: torch.Tensor, kernel, stride, padding, average: bool) -> torch.Tensor:
    """SumPool2d (``average=False``) or AvgPool2d over ``x`` [B, C, H, W]; padded zeros count in the mean."""
    return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True, divisor_override=None if average else 1)


def _pool_op(name: str, node, in_shape) -> Op:
    kernel = _ints(node.kernel_size, 2, name, "kernel_size")
    stride = _ints(node.stride, 2, name, "stride")
    padding = _ints(node.padding if node.padding is not None else 0, 2, name, "padding")
    average = type(node).__name__ == "AvgPool2d"

    def fn(x, _weight):
        return pool2d(x, kernel, stride, padding, average)

    if len(in_shape) != 3:
        raise GraphError(f"pooling input shape {list(in_shape)} is not (C, H, W)", node=name, field="kernel_size")
    out = _shape_of(fn, name, in_shape, None)
    return Op(name, type(node).__name__, tuple(in_shape), out, fn, pool=(kernel, stride, padding, average))


def flatten_shape(node, in_shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Output shape of a Flatten on one sample of ``in_shape``.

    The declared ``output_type`` wins when it holds as many values. Otherwise ``start_dim`` and
    ``end_dim`` count dimensions without the batch (nir's own shape inference); a ``start_dim``
    past the last dimension was written counting the batch (as nirtorch does) and is shifted.
    """
    n = int(np.prod(in_shape))
    declared = (getattr(node, "output_type", None) or {}).get("output")
    if declared is not None and np.size(declared) and int(np.prod(declared)) == n:
        return tuple(int(d) for d in np.ravel(declared))
    start = int(np.ravel(node.start_dim)[0]) if np.size(node.start_dim) else 0
    end = int(np.ravel(node.end_dim)[0]) if np.size(node.end_dim) else -1
    dims = len(in_shape)
    if start >= dims:
        start, end = start - 1, end - 1 if end >= 0 else end
    start, end = start % dims if dims else 0, end % dims if dims else 0
    if dims == 0 or start > end:
        raise GraphError(f"start_dim/end_dim do not fit input shape {list(in_shape)}", node=name, field="start_dim")
    return tuple(in_shape[:start]) + (int(np.prod(in_shape[start : end + 1])),) + tuple(in_shape[end + 1 :])


def _flatten_op(name: str, node, in_shape) -> Op:
    out = flatten_shape(node, tuple(in_shape), name)
    return Op(name, "Flatten", tuple(in_shape), out, lambda x, _w: x.reshape(x.shape[0], *out), reshapes_only=True)


def _scale_op(name: str, node, in_shape) -> Op:
    s = np.asarray(node.scale, dtype=np.float64)
    try:
        np.broadcast_to(s, in_shape)
    except ValueError:
        raise GraphError(
            f"scale shape {list(s.shape)} does not broadcast to {list(in_shape)}", node=name, field="scale"
        ) from None
    return Op(name, "Scale", tuple(in_shape), tuple(in_shape), lambda x, w: x * w, weight=s, scales=True)


def _identity_op(name: str, node, in_shape, kind: str = "Identity") -> Op:
    return Op(name, kind, tuple(in_shape), tuple(in_shape), lambda x, _w: x, reshapes_only=True)


def _delay_op(name: str, node, in_shape) -> Op:
    op = _identity_op(name, node, in_shape, "Delay")
    delay = np.asarray(node.delay, dtype=np.float64)
    try:
        op.delay = np.broadcast_to(delay, in_shape).copy()
    except ValueError:
        raise GraphError(
            f"delay shape {list(delay.shape)} does not fit input {list(in_shape)}", node=name, field="delay"
        ) from None
    return op


def delay_steps(delay_s: np.ndarray, dt: float) -> np.ndarray:
    """NIR delays (seconds) as steps of ``dt``: element k waits ``round(delay[k] / dt)`` steps
    (at most ``2**62``: longer than any run, so such an element never delivers)."""
    with np.errstate(over="ignore"):
        steps = np.rint(np.asarray(delay_s, dtype=np.float64) / dt)
    return np.minimum(steps, 2.0**62).astype(np.int64)


# --- validation of parameter values -------------------------------------------------------------


def _check_affine(arrays: dict, node, name: str) -> None:
    w = arrays["weight"]
    if w.ndim < 2:
        raise GraphError(f"weight must be at least 2-D, got shape {list(w.shape)}", node=name, field="weight")
    b = arrays.get("bias")
    if b is not None and b.size not in (1, w.shape[-2]) and b.shape != w.shape[:-1]:
        raise GraphError(f"bias shape {list(b.shape)} does not match weight {list(w.shape)}", node=name, field="bias")


def _check_conv(arrays: dict, node, name: str) -> None:
    w = arrays["weight"]
    dims = 3 if type(node).__name__ == "Conv1d" else 4
    if w.ndim != dims:
        raise GraphError(f"weight must be {dims}-D, got shape {list(w.shape)}", node=name, field="weight")
    if arrays["bias"].size not in (1, w.shape[0]):
        raise GraphError(
            f"bias has {arrays['bias'].size} values for {w.shape[0]} output channels", node=name, field="bias"
        )
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    if groups < 1 or w.shape[0] % groups:
        raise GraphError(f"groups={groups} does not divide {w.shape[0]} output channels", node=name, field="groups")
    if isinstance(node.padding, str):
        conv_padding(node.padding, tuple(w.shape[2:]), (1,) * (dims - 2), name)


def _check_pool(arrays: dict, node, name: str) -> None:
    if np.any(arrays["kernel_size"] < 1) or np.any(arrays["stride"] < 1) or np.any(arrays["padding"] < 0):
        raise GraphError("kernel_size and stride must be >= 1, padding >= 0", node=name, field="kernel_size")


def _check_delay(arrays: dict, node, name: str) -> None:
    if np.any(arrays["delay"] < 0):
        raise GraphError("delays must be non-negative", node=name, field="delay")


def _check_neuron(arrays: dict, node, name: str) -> None:
    model = NEURONS[type(node).__name__]
    for param in model.time_constants:
        if param in arrays and np.any(arrays[param] <= 0):
            raise GraphError(f"time constant must be positive, min is {arrays[param].min():g}", node=name, field=param)
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k}{list(a.shape)}" for k, a in arrays.items())
        raise GraphError(f"parameter shapes do not broadcast: {shapes}", node=name, field=next(iter(arrays))) from None


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Primitive:
    """One NIR primitive: its numeric fields, how to check them, and its semantics.

    ``kind``: "io" (Input, Output), "graph" (a nested NIRGraph), "linear" (stateless, ``op``
    builds it for an input shape) or "neuron" (``neuron`` holds its float step and linear form).
    ``optional``: fields that may be absent (``v_reset`` defaults to 0).
    """

    name: str
    kind: Kind
    fields: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    check: Callable[[dict, object, str], None] | None = None
    op: Callable[[str, object, tuple[int, ...]], Op] | None = None
    neuron: NeuronModel | None = None

    @property
    def spiking(self) -> bool:
        return self.neuron is not None and self.neuron.spiking


NEURONS: dict[str, NeuronModel] = {
    "LIF": NeuronModel(D.lif_step, D.LIFParams, D.VState, True, _leaky_form, time_constants=("tau",)),
    "CubaLIF": NeuronModel(
        D.cuba_lif_step, D.CubaLIFParams, D.CubaState, True, _cuba_form, time_constants=("tau_syn", "tau_mem")
    ),
    "IF": NeuronModel(D.if_step, D.IFParams, D.VState, True, _integrate_form),
    "LI": NeuronModel(D.li_step, D.LIParams, D.VState, False, _leaky_form, None, None, ("tau",)),
    "CubaLI": NeuronModel(
        D.cuba_li_step, D.CubaLIParams, D.CubaState, False, _cuba_form, None, None, ("tau_syn", "tau_mem")
    ),
    "I": NeuronModel(D.i_step, D.IParams, D.VState, False, _integrate_form, None, None),
    "Threshold": NeuronModel(D.threshold_step, D.ThresholdParams, D.VState, True, _threshold_form, "threshold", None),
}

_POOL_FIELDS = ("kernel_size", "stride", "padding")

PRIMITIVES: dict[str, Primitive] = {
    "Input": Primitive("Input", "io"),
    "Output": Primitive("Output", "io"),
    "NIRGraph": Primitive("NIRGraph", "graph"),
    "Affine": Primitive("Affine", "linear", ("weight", "bias"), check=_check_affine, op=_affine_op),
    "Linear": Primitive("Linear", "linear", ("weight",), check=_check_affine, op=_affine_op),
    "Conv1d": Primitive("Conv1d", "linear", ("weight", "bias"), check=_check_conv, op=_conv_op),
    "Conv2d": Primitive("Conv2d", "linear", ("weight", "bias"), check=_check_conv, op=_conv_op),
    "SumPool2d": Primitive("SumPool2d", "linear", _POOL_FIELDS, check=_check_pool, op=_pool_op),
    "AvgPool2d": Primitive("AvgPool2d", "linear", _POOL_FIELDS, check=_check_pool, op=_pool_op),
    "Flatten": Primitive("Flatten", "linear", op=_flatten_op),
    "Scale": Primitive("Scale", "linear", ("scale",), op=_scale_op),
    "Delay": Primitive("Delay", "linear", ("delay",), check=_check_delay, op=_delay_op),
    "Identity": Primitive("Identity", "linear", op=_identity_op),
    **{
        name: Primitive(
            name,
            "neuron",
            model.params._fields,
            optional=("v_reset",) if model.reset else (),
            check=_check_neuron,
            neuron=model,
        )
        for name, model in NEURONS.items()
    },
}


def primitive(kind_name: str, node: str = "<graph>") -> Primitive:
    """The registry entry for a NIR class name (one-line error naming the node if unknown)."""
    if kind_name not in PRIMITIVES:
        raise GraphError(
            f"unknown primitive '{kind_name}' (known: {', '.join(sorted(PRIMITIVES))})", node=node, field="type"
        )
    return PRIMITIVES[kind_name]


def kind_of(node) -> str:
    """The kind of a nir node ("io", "graph", "linear" or "neuron"); an inlined graph boundary is linear."""
    name = type(node).__name__
    return "linear" if name == "InlinedBoundary" else primitive(name).kind


def make_op(name: str, node, in_shape: tuple[int, ...]) -> Op:
    """The linear op of ``node`` for inputs of ``in_shape`` (per sample)."""
    kind = type(node).__name__
    if kind in ("InlinedBoundary", "Input", "Output"):
        return _identity_op(name, node, in_shape)
    entry = primitive(kind, name)
    if entry.op is None:
        raise GraphError(f"{kind} is not a linear primitive", node=name, field="type")
    return entry.op(name, node, tuple(int(s) for s in in_shape))


def neuron_params(node, dtype=torch.float32, device=None):
    """A neuron node's parameter tuple as tensors (absent optional fields are 0)."""
    model = NEURONS[type(node).__name__]
    values = [getattr(node, name, None) for name in model.params._fields]
    return model.params(*(torch.as_tensor(0.0 if v is None else v, dtype=dtype, device=device) for v in values))


def initial_state(model: NeuronModel, shape, dtype=torch.float32, device=None):
    """Zero state of a neuron model for ``shape`` (batch included)."""
    return model.state(*(torch.zeros(shape, dtype=dtype, device=device) for _ in model.state._fields))
