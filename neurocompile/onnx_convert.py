"""ANN-to-SNN conversion: an ONNX ReLU network becomes a NIR graph of IF neurons (reset by subtraction).

Stages, each small and inspectable (``docs/ann-to-snn.md`` explains the method):

1. :func:`read_onnx`: the ``onnx.ModelProto``, checked (protobuf, ``onnx.checker``, opset, one float
   input whose only dynamic dimension is the batch, one output, no external data).
2. :func:`parse_onnx` -> :class:`Network`: a typed list of layers (:class:`Dense`, :class:`Conv`,
   :class:`AvgPool`, :class:`Flatten`, :class:`Relu`, :class:`Add`) in topological order, with
   per-sample shapes; BatchNormalization folded into the Conv/Gemm before it, a constant Add after a
   MatMul/Conv folded into its bias. Any other operator is a one-line error naming the ONNX node.
3. :func:`forward`: the ANN in torch (float64), every layer's output (checked against onnxruntime).
4. :func:`layer_scales`: Rueckauer et al. (2017) data-based normalization, lambda = the P-th
   percentile of each ReLU layer's activations (and of the output layer's).
5. :func:`normalize_weights` and :func:`to_nir`: weights ``W * lambda_in / lambda_out``, biases
   ``b / lambda_out``, IF neurons with threshold 1, ``r = 1/dt`` (``v <- v + x`` per step under
   NIR's ``dv/dt = r*x``) and the reset recorded as ``Convention(reset="subtract")`` in
   ``graph.metadata`` (read back with :func:`neurocompile.nir_export.convention_from_metadata`).
6. :func:`evaluate`: accuracy of the ANN (onnxruntime), of the SNN on the float reference (constant
   analog input current) and on spike inputs (float reference and the fixed-point CPU backend).

The graph's input is ``x / input_scale`` (``graph.metadata["input_scale"]``; 1 for digits): as a
current, every step, or as deterministic rate spikes (:func:`encode_spikes`), which is what the
fixed-point backends take.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import MAX_ARRAY_BYTES
from .discretization import Convention
from .errors import NeurocompileError
from .outputs import save_figure

MIN_OPSET = 9
MAX_LAYER_VALUES = 1 << 24  # per sample: a layer's output, and the input
INPUT = "input"
READOUT = "readout"
OUTPUT = "output"
READOUTS = ("spikes", "voltage")
CONVENTION = Convention(reset="subtract")
DROPPED_AT_END = ("Softmax", "LogSoftmax")  # monotonic: the argmax is unchanged


# --- 1. reading and checking the file ---------------------------------------------------------


def read_onnx(path):
    """The checked ``onnx.ModelProto`` of ``path``; every problem is a one-line error naming the file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise NeurocompileError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:
        reason = _first_line(exc).rpartition(": ")[2]
        raise NeurocompileError(f"{path}: not an ONNX model, or a truncated one (protobuf: {reason})") from None
    _check_opset(model, path)
    _refuse_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise NeurocompileError(f"{path}: invalid ONNX model ({_first_line(exc)})") from None
    _check_signature(model, path)
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_opset(model, path) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise NeurocompileError(f"{path}: no default-domain opset (not an ONNX model, or a truncated file)")
    if versions[0] < MIN_OPSET:
        raise NeurocompileError(f"{path}: opset {versions[0]} is too old; export with opset {MIN_OPSET} or newer")
    if versions[0] > newest:
        raise NeurocompileError(f"{path}: opset {versions[0]} is newer than this onnx supports ({newest})")


def _refuse_external_data(model, path) -> None:
    import onnx

    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise NeurocompileError(f"{path}: initializer '{tensor.name}' keeps its data in an external file")


def _check_signature(model, path) -> None:
    """One float input of static shape apart from the batch dimension, one output."""
    import onnx

    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise NeurocompileError(f"{path}: the model has {len(inputs)} inputs; conversion takes exactly one")
    if len(graph.output) != 1:
        raise NeurocompileError(f"{path}: the model has {len(graph.output)} outputs; conversion takes exactly one")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise NeurocompileError(f"{path}: input '{inputs[0].name}' is not float32")
    dims = list(tensor.shape.dim)
    if len(dims) < 2:
        raise NeurocompileError(f"{path}: input '{inputs[0].name}' needs a batch and a feature dimension")
    for axis, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            name = dim.dim_param or "?"
            raise NeurocompileError(
                f"{path}: input '{inputs[0].name}' has a dynamic dimension '{name}' at axis {axis}; "
                "only the batch dimension may be dynamic"
            )
    size = math.prod(d.dim_value for d in dims[1:])
    if size > MAX_LAYER_VALUES:
        raise NeurocompileError(
            f"{path}: input '{inputs[0].name}' has {size} values per sample; at most {MAX_LAYER_VALUES}"
        )


def input_info(model) -> tuple[str, tuple[int, ...], int | None]:
    """The input's name, per-sample shape and fixed batch size (None when dynamic)."""
    constants = {t.name for t in model.graph.initializer}
    value = next(i for i in model.graph.input if i.name not in constants)
    dims = value.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return value.name, tuple(int(d.dim_value) for d in dims[1:]), batch


# --- 2. the typed layer list ----------------------------------------------------------------


@dataclass(kw_only=True)
class Layer:
    """One layer: ``name`` (a NIR-safe node name), ``onnx`` (the ONNX node it came from),
    ``inputs`` (names of the layers feeding it, ``"input"`` for the graph input) and
    ``shape`` (per-sample output shape)."""

    name: str
    onnx: str
    inputs: list[str]
    shape: tuple[int, ...] = ()

    def apply(self, *xs: torch.Tensor) -> torch.Tensor:
        return xs[0]


@dataclass(kw_only=True)
class Dense(Layer):
    weight: np.ndarray  # [out, in]
    bias: np.ndarray  # [out]

    def apply(self, x):
        w, b = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (self.weight, self.bias))
        return F.linear(x, w, b)


@dataclass(kw_only=True)
class Conv(Layer):
    weight: np.ndarray  # [C_out, C_in / groups, kH, kW]
    bias: np.ndarray  # [C_out]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def apply(self, x):
        w, b = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (self.weight, self.bias))
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)


@dataclass(kw_only=True)
class AvgPool(Layer):
    """PyTorch ``avg_pool2d`` with the padding counted in the divisor (NIR's AvgPool2d)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    def apply(self, x):
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=True)


@dataclass(kw_only=True)
class Flatten(Layer):
    """Flattens the per-sample dimensions."""

    def apply(self, x):
        return x.reshape(x.shape[0], -1)


@dataclass(kw_only=True)
class Relu(Layer):
    """A ReLU: an IF population in the SNN."""

    def apply(self, x):
        return torch.relu(x)


@dataclass(kw_only=True)
class Add(Layer):
    """The sum of two or more layers of one shape (a residual connection): in NIR, edges into one node."""

    def apply(self, *xs):
        return sum(xs[1:], xs[0])


@dataclass
class Network:
    """The parsed ANN: its input's per-sample shape, the layers in topological order, the output layer."""

    input_shape: tuple[int, ...]
    layers: list[Layer]
    output: str
    head: str | None = None  # a final Softmax/LogSoftmax the SNN drops (the argmax is the same)

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    def consumers(self) -> dict[str, list[str]]:
        """Layer (or input) name -> the layers reading it; the output layer is also read by the readout."""
        found = {INPUT: [], **{layer.name: [] for layer in self.layers}}
        for layer in self.layers:
            for src in layer.inputs:
                found[src].append(layer.name)
        found[self.output].append(READOUT)
        return found


def parse_onnx(model) -> Network:
    """The model's nodes as a :class:`Network` (see the module docstring for what folds where)."""
    return _Parser(model).run()


def tensor_values(tensor, what: str) -> np.ndarray:
    """A tensor's values as a writable float64 array; data that does not match its dims, or values
    that are not finite real numbers, are a one-line error naming ``what``."""
    from onnx import numpy_helper

    try:
        values = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise NeurocompileError(f"{what}: unreadable tensor data ({_first_line(exc)})") from None
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise NeurocompileError(f"{what}: values of type {values.dtype} are not real numbers")
    values = np.array(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise NeurocompileError(f"{what}: values must be finite (found NaN or inf)")
    return values


def _text(value) -> str:
    """A protobuf string field (bytes when the file's text is not valid UTF-8)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")


class _Parser:
    """Walks the ONNX nodes in order; ``produced`` maps each ONNX tensor to the layer holding it."""

    def __init__(self, model):

        self.graph = model.graph
        name, self.input_shape, _batch = input_info(model)
        self.constants = {t.name: tensor_values(t, f"initializer '{t.name}'") for t in model.graph.initializer}
        self.produced = {name: INPUT}
        self.shapes = {INPUT: self.input_shape}
        self.layers: dict[str, Layer] = {}
        self.uses = self._count_uses()
        self.output_tensor = model.graph.output[0].name
        self.dropped = None
        self.handlers = {
            "Gemm": self.gemm,
            "MatMul": self.matmul,
            "Add": self.add,
            "Conv": self.conv,
            "BatchNormalization": self.batch_norm,
            "Relu": self.relu,
            "AveragePool": self.average_pool,
            "GlobalAveragePool": self.global_average_pool,
            "MaxPool": self.max_pool,
            "Flatten": self.flatten,
            "Reshape": self.reshape,
            "Identity": self.identity,
            "Constant": self.constant,
        }

    def _count_uses(self) -> dict[str, int]:
        uses: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        for out in self.graph.output:
            uses[out.name] = uses.get(out.name, 0) + 1
        return uses

    def run(self) -> Network:
        for index, node in enumerate(self.graph.node):
            self.node, self.index = node, index
            handler = self.handlers.get(node.op_type)
            if handler is None and node.op_type in DROPPED_AT_END and node.output[0] == self.output_tensor:
                handler = self.final_softmax
            if handler is None or node.domain not in ("", "ai.onnx"):
                self.fail(f"operator {node.op_type} has no spiking equivalent in this converter")
            handler()
        if self.output_tensor in self.constants or self.output_tensor not in self.produced:
            raise NeurocompileError(f"graph output '{self.output_tensor}' is not computed from the input")
        output = self.produced[self.output_tensor]
        if output == INPUT:
            raise NeurocompileError("the model's output is its input; there is nothing to convert")
        return Network(self.input_shape, list(self.layers.values()), output, self.dropped)

    # --- helpers ---

    def fail(self, message: str):
        name = _text(self.node.name) or f"#{self.index}"
        raise NeurocompileError(f"ONNX node '{name}' ({self.node.op_type}): {message}")

    def attrs(self) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    def number(self, attrs: dict, name: str, default: float) -> float:
        """A finite float attribute."""
        value = attrs.get(name, default)
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            self.fail(f"attribute {name}={value!r} is not a finite number")
        return float(value)

    def const(self, position: int, what: str) -> np.ndarray:
        name = self.node.input[position] if position < len(self.node.input) else ""
        if name not in self.constants:
            self.fail(f"{what} must be a constant (an initializer)")
        return self.constants[name]

    def source(self, position: int = 0) -> str:
        name = self.node.input[position]
        if name not in self.produced:
            self.fail(f"input '{name}' is a constant or unknown; expected the output of a layer")
        return self.produced[name]

    def emit(self, cls, inputs: list[str], **params) -> None:
        """Add a layer for the current node, its per-sample shape from a forward pass on zeros."""
        base = _safe_name(_text(self.node.name)) or f"{self.node.op_type}_{self.index}"
        name, k = base, 1
        while name in self.layers or name in (INPUT, READOUT, OUTPUT):
            name, k = f"{base}_{k}", k + 1
        layer = cls(name=name, onnx=_text(self.node.name) or self.node.op_type, inputs=inputs, **params)
        shapes = [torch.empty(1, *self.shapes[i], dtype=torch.float64, device="meta") for i in inputs]
        try:
            layer.shape = tuple(layer.apply(*shapes).shape[1:])
        except RuntimeError as exc:
            self.fail(f"cannot apply to input shape {list(self.shapes[inputs[0]])} ({_first_line(exc)})")
        if math.prod(layer.shape) > MAX_LAYER_VALUES:
            self.fail(f"its output of shape {list(layer.shape)} is over {MAX_LAYER_VALUES} values per sample")
        self.layers[name] = layer
        self.shapes[name] = layer.shape
        self.produced[self.node.output[0]] = name

    def alias(self, layer: str) -> None:
        self.produced[self.node.output[0]] = layer

    def foldable(self, src: str):
        """The Dense/Conv layer ``src`` when only the current node reads it (so it may absorb a BN or bias)."""
        layer = self.layers.get(src)
        if isinstance(layer, (Dense, Conv)) and self.uses.get(self.node.input[0], 0) == 1:
            return layer
        return None

    # --- operators ---

    def identity(self) -> None:
        if self.node.input[0] in self.constants:
            self.constants[self.node.output[0]] = self.constants[self.node.input[0]]
        else:
            self.alias(self.source())

    def final_softmax(self) -> None:
        """A final Softmax/LogSoftmax over the classes: dropped (the SNN's argmax needs no normalization)."""
        src = self.source()
        if len(self.shapes[src]) != 1 or self.attrs().get("axis", -1) not in (1, -1):
            self.fail("only a final softmax over the classes of [batch, classes] can be dropped")
        self.dropped = self.node.op_type
        self.alias(src)

    def constant(self) -> None:
        attrs = {a.name: a for a in self.node.attribute}
        if "value" not in attrs:
            self.fail("only a tensor 'value' is supported")
        try:
            self.constants[self.node.output[0]] = tensor_values(attrs["value"].t, "its value")
        except NeurocompileError as exc:
            self.fail(str(exc))

    def gemm(self) -> None:
        a = self.attrs()
        if a.get("transA", 0):
            self.fail("transA=1 is not supported (the activations must be [batch, features])")
        src = self.source()
        if len(self.shapes[src]) != 1:
            self.fail(f"expects flat inputs, got per-sample shape {list(self.shapes[src])} (add a Flatten)")
        b = self.const(1, "B")
        if b.ndim != 2:
            self.fail(f"B must be a matrix, got shape {list(b.shape)}")
        weight = self.number(a, "alpha", 1.0) * (b if a.get("transB", 0) else b.T)
        n_out = weight.shape[0]
        bias = np.zeros(n_out)
        if len(self.node.input) > 2 and self.node.input[2]:
            bias = self._broadcast(self.number(a, "beta", 1.0) * self.const(2, "C"), (1, n_out), "C")[0]
        self.emit(Dense, [src], weight=weight, bias=bias)

    def matmul(self) -> None:
        src = self.source()
        b = self.const(1, "the second operand")
        if len(self.shapes[src]) != 1 or b.ndim != 2:
            self.fail("only [batch, features] x constant [features, out] is supported")
        self.emit(Dense, [src], weight=b.T, bias=np.zeros(b.shape[1]))

    def _broadcast(self, value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            self.fail(f"{what} of shape {list(value.shape)} does not broadcast to {list(shape)}")

    def add(self) -> None:
        const = [i for i, name in enumerate(self.node.input) if name in self.constants]
        if const:
            self._add_bias(const[0])
            return
        names = list(self.node.input)
        if len(set(names)) != len(names):
            self.fail("adds a tensor to itself; NIR edges cannot express a doubled edge")
        sources = [self.source(i) for i in range(len(names))]
        shapes = {self.shapes[s] for s in sources}
        if len(shapes) != 1:
            self.fail(f"operands of shapes {sorted(map(list, shapes))} differ; a residual must add equal shapes")
        self.emit(Add, sources)

    def _add_bias(self, const_position: int) -> None:
        """``x + constant`` after a Dense/Conv read by nothing else: the constant joins its bias."""
        other = 1 - const_position
        src = self.source(other)
        layer = self.layers.get(src)
        if not isinstance(layer, (Dense, Conv)) or self.uses.get(self.node.input[other], 0) != 1:
            self.fail("adds a constant that is not the bias of the MatMul/Gemm/Conv before it")
        value = self.const(const_position, "the bias")
        full = self._broadcast(value, (1, *layer.shape), "the bias")[0]
        per_channel = full.reshape(full.shape[0], -1)
        if not np.allclose(per_channel, per_channel[:, :1]):
            self.fail("the bias differs within a channel; NIR biases are per output channel")
        layer.bias = layer.bias + per_channel[:, 0]
        self.alias(src)

    def conv(self) -> None:
        a = self.attrs()
        src = self.source()
        weight = self.const(1, "W")
        if weight.ndim != 4 or len(self.shapes[src]) != 3:
            self.fail("only 2-D convolutions ([batch, C, H, W]) are supported")
        bias = self.const(2, "B") if len(self.node.input) > 2 and self.node.input[2] else np.zeros(weight.shape[0])
        if bias.shape != weight.shape[:1]:
            self.fail(f"B of shape {list(bias.shape)} is not one value per output channel ({weight.shape[0]})")
        self.emit(
            Conv,
            [src],
            weight=weight,
            bias=bias,
            stride=tuple(a.get("strides", (1, 1))),
            padding=self._pads(a),
            dilation=tuple(a.get("dilations", (1, 1))),
            groups=int(a.get("group", 1)),
        )

    def _pads(self, a: dict) -> tuple[int, int]:
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID"):
            self.fail(f"auto_pad={auto_pad} is not supported; export with explicit pads")
        pads = tuple(a.get("pads", (0, 0, 0, 0))) if auto_pad == "NOTSET" else (0, 0, 0, 0)
        if pads[:2] != pads[2:]:
            self.fail(f"asymmetric pads {list(pads)} have no NIR equivalent")
        return int(pads[0]), int(pads[1])

    def batch_norm(self) -> None:
        a = self.attrs()
        layer = self.foldable(self.source())
        if layer is None:
            self.fail("BatchNormalization must follow a Conv or Gemm that nothing else reads (it is folded into it)")
        if a.get("training_mode", 0) or sum(bool(o) for o in self.node.output) > 1:
            self.fail("training-mode BatchNormalization cannot be folded; export the model in eval mode")
        gamma, beta, mean, var = (self.const(i, name) for i, name in enumerate(("scale", "B", "mean", "var"), 1))
        channels = layer.weight.shape[0]
        for name, value in zip(("scale", "B", "mean", "var"), (gamma, beta, mean, var)):
            if value.shape != (channels,):
                self.fail(f"{name} of shape {list(value.shape)} is not one value per channel ({channels})")
        eps = self.number(a, "epsilon", 1e-5)
        if np.any(var + eps <= 0):
            self.fail("var + epsilon must be positive")
        with np.errstate(all="ignore"):
            fold_batch_norm(layer, gamma, beta, mean, var, eps)
        if not (np.isfinite(layer.weight).all() and np.isfinite(layer.bias).all()):
            self.fail("folding it into the layer before gives weights that are not finite")
        self.alias(layer.name)

    def relu(self) -> None:
        self.emit(Relu, [self.source()])

    def average_pool(self) -> None:
        a = self.attrs()
        src = self.source()
        if len(self.shapes[src]) != 3:
            self.fail("only 2-D pooling ([batch, C, H, W]) is supported")
        kernel = tuple(a["kernel_shape"])
        stride = tuple(a.get("strides", (1, 1)))
        padding = self._pads(a)
        if any(d != 1 for d in a.get("dilations", (1, 1))):
            self.fail("dilated pooling has no NIR equivalent")
        if any(padding) and not a.get("count_include_pad", 0):
            self.fail("padding excluded from the average (count_include_pad=0) has no NIR equivalent")
        if a.get("ceil_mode", 0) and self._ceil_changes_shape(src, kernel, stride, padding):
            self.fail("ceil_mode=1 changes the output shape here; NIR pooling rounds down")
        self.emit(AvgPool, [src], kernel=kernel, stride=stride, padding=padding)

    def _ceil_changes_shape(self, src, kernel, stride, padding) -> bool:
        h_w = self.shapes[src][1:]
        return any((n + 2 * p - k) % s for n, k, s, p in zip(h_w, kernel, stride, padding))

    def global_average_pool(self) -> None:
        src = self.source()
        if len(self.shapes[src]) != 3:
            self.fail("only 2-D pooling ([batch, C, H, W]) is supported")
        h_w = tuple(self.shapes[src][1:])
        self.emit(AvgPool, [src], kernel=h_w, stride=h_w, padding=(0, 0))

    def max_pool(self) -> None:
        self.fail("MaxPool has no rate-coded equivalent; train the ANN with AveragePool (nn.AvgPool2d) instead")

    def flatten(self) -> None:
        src = self.source()
        rank = len(self.shapes[src]) + 1
        axis = int(self.attrs().get("axis", 1))
        if axis % rank != 1:
            self.fail(f"axis={axis}: only flattening the per-sample dimensions (axis=1) is supported")
        self._flat(src)

    def _flat(self, src: str) -> None:
        if len(self.shapes[src]) == 1:
            self.alias(src)
        else:
            self.emit(Flatten, [src])

    def reshape(self) -> None:
        src = self.source()
        target = [int(v) for v in self.const(1, "shape")]
        size = int(np.prod(self.shapes[src]))
        per_sample = target[1:]
        if target[0] == -1 and -1 not in per_sample and int(np.prod(per_sample)) == size:
            target[0] = 0
        if len(target) == 2 and per_sample[0] in (-1, size) and target[0] != -1:
            self._flat(src)
        elif tuple(per_sample) == tuple(self.shapes[src]):
            self.alias(src)
        else:
            self.fail(f"reshape of {list(self.shapes[src])} to {target} has no NIR node (only flattening)")


def fold_batch_norm(layer, gamma, beta, mean, var, eps: float) -> None:
    """``BN(W x + b)`` as one layer: ``W * s``, ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``."""
    scale = gamma / np.sqrt(var + eps)
    layer.weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    layer.bias = (layer.bias - mean) * scale + beta


# --- 3. the ANN's activations ----------------------------------------------------------------


def forward(network: Network, x) -> dict[str, np.ndarray]:
    """Every layer's output (and ``"input"``) for a batch ``x`` ``[N, *input_shape]``, float64."""
    values = {INPUT: torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(-1, *network.input_shape)}
    with torch.no_grad():
        for layer in network.layers:
            values[layer.name] = layer.apply(*(values[i] for i in layer.inputs))
    return {name: value.numpy() for name, value in values.items()}


def run_onnx(model, x: np.ndarray) -> np.ndarray:
    """The model's output for ``x`` with onnxruntime (batched as the model's batch dimension allows)."""
    import onnxruntime as ort

    name, shape, batch = input_info(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise NeurocompileError(f"onnxruntime cannot load the model ({_first_line(exc)})") from None
    x = np.asarray(x, dtype=np.float32).reshape(-1, *shape)
    chunk = batch or 1024
    if chunk * math.prod(shape) * 4 > MAX_ARRAY_BYTES:
        raise NeurocompileError(
            f"the model's fixed batch of {chunk} samples needs more than {MAX_ARRAY_BYTES >> 30} GiB"
        )
    outputs = []
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        padded = np.concatenate([part, np.zeros((chunk - len(part), *shape), np.float32)]) if batch else part
        try:
            outputs.append(session.run(None, {name: padded})[0][: len(part)])
        except Exception as exc:
            raise NeurocompileError(f"onnxruntime cannot run the model ({_first_line(exc)})") from None
    return np.concatenate(outputs).reshape(len(x), -1)


def check_against_onnxruntime(network: Network, model, x: np.ndarray) -> None:
    """The parsed layers must compute what onnxruntime computes (an independent oracle)."""
    ours = torch.as_tensor(forward(network, x)[network.output].reshape(len(x), -1))
    if network.head is not None:
        ours = (torch.softmax if network.head == "Softmax" else torch.log_softmax)(ours, dim=1)
    ours = ours.numpy()
    theirs = run_onnx(model, x)
    if ours.shape != theirs.shape:
        raise NeurocompileError(f"the parsed network gives outputs of shape {ours.shape}, onnxruntime {theirs.shape}")
    error = float(np.abs(ours - theirs).max(initial=0))
    if error > 1e-3 * (1.0 + float(np.abs(theirs).max(initial=0))):
        raise NeurocompileError(f"the parsed network differs from onnxruntime by {error:.3g}; cannot convert it")


# --- 4. data-based normalization -------------------------------------------------------------


def percentile_scale(values: np.ndarray, percentile: float) -> float:
    """The ``percentile``-th percentile of all values (1.0 when it is not positive: a silent layer)."""
    value = float(np.percentile(np.asarray(values, dtype=np.float64).ravel(), percentile))
    return value if value > 0 else 1.0


def layer_scales(network: Network, activations: dict, percentile: float, input_scale: float = 1.0) -> dict:
    """lambda per ReLU layer, for the readout (the output layer's values) and the input."""
    scales = {INPUT: float(input_scale)}
    for layer in network.layers:
        if isinstance(layer, Relu):
            scales[layer.name] = percentile_scale(activations[layer.name], percentile)
    if not isinstance(network.layer(network.output), Relu):
        scales[READOUT] = percentile_scale(activations[network.output], percentile)
    return scales


def normalize_weights(network: Network, scales: dict) -> tuple[list[Layer], dict[tuple[str, str], float]]:
    """Layers whose weights carry the normalization, and the factors left on edges (NIR Scale nodes).

    Every tensor has a unit: the input ``input_scale``, a ReLU its lambda, a linear layer its
    input's (its bias divided by it), an Add its first operand's. The factor ``unit / lambda``
    into each ReLU (and the readout) and ``unit / unit_first`` into each further Add operand folds
    back into the Dense/Conv before it (through pools, flattens and adds read only there);
    where it cannot, it stays on that edge."""
    layers = {layer.name: copy.deepcopy(layer) for layer in network.layers}
    consumers = network.consumers()
    unit = {INPUT: scales[INPUT]}
    edges: dict[tuple[str, str], float] = {}

    def fold(src: str, dst: str, factor: float) -> None:
        layer = layers.get(src)
        if np.isclose(factor, 1.0, rtol=1e-12, atol=0):
            return
        if len(consumers[src]) == 1 and isinstance(layer, (Dense, Conv)):
            layer.weight, layer.bias = layer.weight * factor, layer.bias * factor
        elif len(consumers[src]) == 1 and isinstance(layer, (AvgPool, Flatten, Add)):
            for inner in layer.inputs:
                fold(inner, src, factor)
        else:
            edges[(src, dst)] = edges.get((src, dst), 1.0) * factor

    for layer in layers.values():
        first = layer.inputs[0]
        if isinstance(layer, Relu):
            unit[layer.name] = scales[layer.name]
            fold(first, layer.name, unit[first] / unit[layer.name])
        elif isinstance(layer, Add):
            unit[layer.name] = unit[first]
            for other in layer.inputs[1:]:
                fold(other, layer.name, unit[other] / unit[layer.name])
        else:
            unit[layer.name] = unit[first]
            if isinstance(layer, (Dense, Conv)):
                layer.bias = layer.bias / unit[first]
    if READOUT in scales:
        fold(network.output, READOUT, unit[network.output] / scales[READOUT])
    return list(layers.values()), edges


# --- 5. the NIR graph -------------------------------------------------------------------------


def _typed(node, in_shape, out_shape):
    node.input_type = {"input": np.array(in_shape, dtype=np.int64)}
    node.output_type = {"output": np.array(out_shape, dtype=np.int64)}
    return node


def if_neurons(shape, dt: float):
    """IF neurons that compute ``v <- v + x`` per step (``r = 1/dt``), threshold 1, reset value 0."""
    import nir

    node = nir.IF(
        r=np.full(shape, 1.0 / dt, dtype=np.float32),
        v_threshold=np.ones(shape, dtype=np.float32),
        v_reset=np.zeros(shape, dtype=np.float32),
    )
    return _typed(node, shape, shape)


def integrator(shape, dt: float):
    """Non-spiking integrators ``v <- v + x`` (``r = 1/dt``): the voltage readout."""
    import nir

    return _typed(nir.I(r=np.full(shape, 1.0 / dt, dtype=np.float32)), shape, shape)


def _nir_layer(layer: Layer, in_shape, dt: float):
    import nir

    f32 = np.float32
    if isinstance(layer, Dense):
        node = nir.Affine(weight=layer.weight.astype(f32), bias=layer.bias.astype(f32))
    elif isinstance(layer, Conv):
        node = nir.Conv2d(
            input_shape=tuple(in_shape[1:]),
            weight=layer.weight.astype(f32),
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias.astype(f32),
        )
    elif isinstance(layer, AvgPool):
        node = nir.AvgPool2d(
            kernel_size=np.array(layer.kernel), stride=np.array(layer.stride), padding=np.array(layer.padding)
        )
    elif isinstance(layer, Flatten):
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    elif isinstance(layer, Relu):
        return if_neurons(layer.shape, dt)
    else:
        raise NeurocompileError(f"layer '{layer.name}' ({type(layer).__name__}) has no NIR node")
    return _typed(node, in_shape, layer.shape)


class _GraphBuilder:
    """NIR nodes and edges; an Add becomes no node: its operands' edges go to its readers."""

    def __init__(self, network: Network, layers: list[Layer], edge_scales: dict):
        import nir

        self.layers = {layer.name: layer for layer in layers}
        self.shapes = {INPUT: network.input_shape, **{n: layer.shape for n, layer in self.layers.items()}}
        self.edge_scales = edge_scales
        self.nodes = {INPUT: nir.Input(np.array(network.input_shape))}
        self.edges: list[tuple[str, str]] = []

    def sources(self, name: str) -> list[str]:
        """The NIR nodes whose outputs sum to layer ``name``'s output."""
        layer = self.layers.get(name)
        if isinstance(layer, Add):
            return [s for src in layer.inputs for s in self.edge_sources(src, name)]
        return [name]

    def edge_sources(self, src: str, dst: str) -> list[str]:
        """What carries ``src`` to ``dst``: ``src``'s nodes, or a Scale node when the edge keeps a factor."""
        import nir

        if (src, dst) not in self.edge_scales:
            return self.sources(src)
        node = f"{src}_to_{dst}_scale"
        if node not in self.nodes:
            shape = self.shapes[src]
            scale = np.full(shape, self.edge_scales[(src, dst)], dtype=np.float32)
            self.nodes[node] = _typed(nir.Scale(scale=scale), shape, shape)
            self.connect(self.sources(src), node)
        return [node]

    def connect(self, sources: list[str], dst: str) -> None:
        for src in sources:
            if (src, dst) in self.edges:
                raise NeurocompileError(f"'{src}' reaches '{dst}' twice through Add; NIR edges cannot express that")
            self.edges.append((src, dst))

    def add(self, name: str, node, inputs: list[str]) -> None:
        self.nodes[name] = node
        self.connect([s for src in inputs for s in self.edge_sources(src, name)], name)


def to_nir(network: Network, scales: dict, readout: str = "spikes", convention: Convention = CONVENTION, **metadata):
    """The normalized NIR graph: IF populations for the ReLUs and, unless the output is a ReLU, a
    readout population ``readout`` (IF neurons, or integrators for ``readout="voltage"``)."""
    import nir

    if readout not in READOUTS:
        raise NeurocompileError(f"readout must be one of {', '.join(READOUTS)}, got '{readout}'")
    layers, edge_scales = normalize_weights(network, scales)
    build = _GraphBuilder(network, layers, edge_scales)
    for layer in layers:
        if not isinstance(layer, Add):
            build.add(layer.name, _nir_layer(layer, build.shapes[layer.inputs[0]], convention.dt), layer.inputs)
    last, shape = network.output, build.shapes[network.output]
    if READOUT in scales:
        population = if_neurons(shape, convention.dt) if readout == "spikes" else integrator(shape, convention.dt)
        build.add(READOUT, population, [network.output])
        last = READOUT
    build.nodes[OUTPUT] = nir.Output(np.array(shape))
    build.connect([last], OUTPUT)
    graph = nir.NIRGraph(build.nodes, build.edges, metadata=_metadata(convention, scales, **metadata), type_check=False)
    try:
        graph.check_types()
    except (ValueError, NotImplementedError) as exc:
        raise NeurocompileError(f"converted graph is inconsistent: {_first_line(exc)}") from None
    return graph


def _metadata(convention: Convention, scales: dict, **extra) -> dict:
    from . import __version__

    return {
        "producer": f"neurocompile {__version__} (ONNX conversion)",
        "dt": float(convention.dt),
        "convention": convention.name,
        "convention_options": json.dumps(dataclasses.asdict(convention), sort_keys=True),
        "input_scale": float(scales[INPUT]),
        "normalization": json.dumps({k: v for k, v in scales.items() if k != INPUT}),
        **extra,
    }


# --- data and input coding ---------------------------------------------------------------------


@dataclass
class Data:
    """Analog samples ``[N, *input_shape]``: calibration (training split) and test split with labels."""

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(spec: str, input_shape) -> Data:
    """``digits`` (pixel intensities in [0, 1], the project's fixed split) or an ``.npz`` with
    ``x_train``/``x_test``/``y_test``, or ``x``/``y`` (split 80/20 like ``neurocompile.data``);
    ``x`` holds ``[N, *input_shape]`` analog samples (any layout of the same size)."""
    from .data import load_digits_images

    if str(spec) == "digits":
        (x_train, _), (x_test, y_test) = load_digits_images("train"), load_digits_images("test")
    else:
        x_train, x_test, y_test = _load_npz(Path(spec))
    x_train = _samples(x_train, input_shape, f"data '{spec}', training split")
    x_test = _samples(x_test, input_shape, f"data '{spec}', test split")
    y_test = np.asarray(y_test)
    if y_test.shape != (len(x_test),) or not np.issubdtype(y_test.dtype, np.integer) or y_test.min() < 0:
        raise NeurocompileError(f"data '{spec}', test split: expected {len(x_test)} non-negative integer labels")
    return Data(str(spec), x_train, x_test, y_test.astype(np.int64))


def _samples(x: np.ndarray, input_shape, where: str) -> np.ndarray:
    """``x`` as float32 ``[N, *input_shape]``, checked."""
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0 or int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
        raise NeurocompileError(
            f"{where}: samples of shape {list(x.shape[1:])} do not fit the model input {list(input_shape)}"
        )
    real = x.dtype == bool or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not real or not np.all(np.isfinite(x)):
        raise NeurocompileError(f"{where}: expected finite real numbers")
    return x.astype(np.float32).reshape(len(x), *input_shape)


def _load_npz(path: Path):
    """``(x_train, x_test, y_test)`` of an ``.npz`` (read by ``data.load_arrays``: headers checked
    first, no pickles); ``x``/``y`` alone are split as ``neurocompile.data`` splits datasets."""
    from .data import load_arrays, split_indices

    arrays = load_arrays(path, "data")
    if {"x_train", "x_test", "y_test"} <= set(arrays):
        return arrays["x_train"], arrays["x_test"], arrays["y_test"]
    if {"x", "y"} <= set(arrays):
        x, y = arrays["x"], arrays["y"]
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or (y.size and y.min() < 0):
            raise NeurocompileError(f"data '{path}', field 'y': expected non-negative integer labels")
        if x.ndim < 1 or len(x) != len(y):
            raise NeurocompileError(f"data '{path}': {len(y)} labels for x of shape {list(x.shape)}")
        train, test = split_indices(y, f"data '{path}'")
        return x[train], x[test], y[test]
    raise NeurocompileError(f"data '{path}': needs x_train, x_test and y_test, or x and y; has {sorted(arrays)}")


def input_scale(x: np.ndarray) -> float:
    """The largest input value (1 when none is positive): inputs in these units lie in [0, 1]."""
    top = float(np.max(x, initial=0.0))
    return top if top > 0 else 1.0


def analog_current(x: np.ndarray, steps: int, scale: float = 1.0) -> np.ndarray:
    """``x / scale`` as a constant input current: ``[N, steps, *shape]``."""
    return np.repeat((np.asarray(x, dtype=np.float32) / scale)[:, None], steps, axis=1)


def encode_spikes(x: np.ndarray, steps: int, scale: float = 1.0) -> np.ndarray:
    """Deterministic rate spikes of ``p = x / scale`` in [0, 1]: an IF encoder (threshold 1, reset
    by subtraction, v starting at 1/2) fed ``p`` every step, so a value sends ``round(p * steps)`` spikes."""
    p = np.asarray(x, dtype=np.float64) / scale
    if np.any(p < 0):
        raise NeurocompileError("spike inputs need non-negative values (an IF encoder cannot send negative rates)")
    p = np.minimum(p, 1.0)
    t = np.arange(steps + 1).reshape(1, -1, *([1] * (p.ndim - 1)))
    counts = np.floor(t * p[:, None] + 0.5)
    return np.diff(counts, axis=1).astype(np.float32)


# --- the whole conversion and its evaluation -----------------------------------------------------


@dataclass
class Conversion:
    """What :func:`convert` made: the ONNX model, its parsed layers, the lambdas and the NIR graph."""

    model: object
    network: Network
    scales: dict
    graph: object
    data: Data
    readout: str
    percentile: float


def convert(model_path, calibration: str = "digits", percentile: float = 99.9, readout: str = "spikes") -> Conversion:
    """Read, parse and check ``model_path``, normalize on ``calibration``'s training split and build the NIR graph."""
    if not (0 < percentile <= 100):
        raise NeurocompileError(f"percentile must be in (0, 100], got {percentile}")
    model = read_onnx(model_path)
    network = parse_onnx(model)
    data = load_data(calibration, network.input_shape)
    check_against_onnxruntime(network, model, data.x_train)
    scales = layer_scales(network, forward(network, data.x_train), percentile, input_scale(data.x_train))
    graph = to_nir(
        network, scales, readout, source=str(Path(model_path).name), calibration=data.name, percentile=float(percentile)
    )
    return Conversion(model, network, scales, graph, data, readout, percentile)


def compile_fixed_point(conversion: Conversion, steps: int, samples: int = 256):
    """The fixed-point program of the converted graph, calibrated on ``samples`` training inputs as spikes."""
    from .quantize import compile_graph

    spikes = encode_spikes(conversion.data.x_train[:samples], steps, conversion.scales[INPUT])
    program, _report = compile_graph(conversion.graph, CONVENTION, calibration=spikes)
    return program


KINDS = ("float", "float_spikes", "cpu")  # the SNN runs of the report, see evaluate


def snn_accuracy(conversion: Conversion, kind: str, steps: int, x, y, program=None) -> float:
    """Accuracy of one SNN run: ``float`` (analog current), ``float_spikes`` or ``cpu`` (``program``, spikes)."""
    from . import metrics
    from .backends import create_backend
    from .resources import check_run_memory

    check_run_memory(conversion.graph, len(x), steps)
    scale = conversion.scales[INPUT]
    inputs = analog_current(x, steps, scale) if kind == "float" else encode_spikes(x, steps, scale)
    if kind == "cpu":
        backend = create_backend("cpu", program)
    else:
        backend = create_backend("float", conversion.graph, convention=CONVENTION)
    return metrics.accuracy(backend.run(inputs), y)


def evaluate(conversion: Conversion, steps=(16, 32, 64), limit: int | None = None, progress: bool = False) -> dict:
    """Accuracy of the ANN (onnxruntime) and of the SNN at each T (:data:`KINDS`) on the test split;
    the fixed-point program is calibrated at the largest T. Returns a JSON-able report."""
    from tqdm import tqdm

    data = conversion.data
    x, y = data.x_test[:limit], data.y_test[:limit]
    bar = tqdm(total=1 + len(KINDS) * len(steps), desc="convert", unit="run", disable=None if progress else True)
    bar.set_postfix_str("fixed-point compile")
    program = compile_fixed_point(conversion, max(steps))
    bar.update()
    rows = []
    for t in steps:
        row = {"steps": t}
        for kind in KINDS:
            bar.set_postfix_str(f"{kind} T={t}")
            row[kind] = snn_accuracy(conversion, kind, t, x, y, program)
            bar.update()
        rows.append(row)
    bar.close()
    return {
        "samples": {"calibration": int(len(data.x_train)), "test": int(len(y))},
        "data": data.name,
        "percentile": conversion.percentile,
        "readout": conversion.readout,
        "convention": dataclasses.asdict(CONVENTION),
        "scales": conversion.scales,
        "accuracy": {"ann": float((run_onnx(conversion.model, x).argmax(axis=1) == y).mean()), "snn": rows},
    }


SERIES = (
    ("float", "SNN float, analog input"),
    ("float_spikes", "SNN float, spike input"),
    ("cpu", "SNN fixed-point CPU, spike input"),
)


def plot_accuracy(reports: dict, path) -> None:
    """Accuracy against T for each ``{title: report}`` of :func:`evaluate`, the ANN as a dashed line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 3.6), sharey=True, squeeze=False)
    for ax, (title, report) in zip(axes[0], reports.items()):
        rows = report["accuracy"]["snn"]
        steps = [row["steps"] for row in rows]
        ax.axhline(100 * report["accuracy"]["ann"], color="black", ls="--", lw=1, label="ANN (onnxruntime)")
        for key, label in SERIES:
            ax.plot(steps, [100 * row[key] for row in rows], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.set_xlabel("time steps T")
        ax.set_title(f"{title}: {report['samples']['test']} test samples", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
