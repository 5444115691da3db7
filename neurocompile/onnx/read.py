"""Reading an ONNX ReLU network: the first two stages of the ANN-to-SNN conversion
(:mod:`neurocompile.onnx.convert`; ``docs/ann-to-snn.md`` explains the method).

1. :func:`read_onnx`: the ``onnx.ModelProto``, checked (protobuf, ``onnx.checker``, opset, one float
   input whose only dynamic dimension is the batch, one output, no external data).
2. :func:`parse_onnx` -> :class:`Network`: a typed list of layers (:class:`Dense`, :class:`Conv`,
   :class:`AvgPool`, :class:`Flatten`, :class:`Relu`, :class:`Add`) in topological order, with
   per-sample shapes; BatchNormalization folded into the Conv/Gemm before it, a constant Add after a
   MatMul/Conv folded into its bias, a MaxPool rewritten as Conv/Relu/Add layers
   (:mod:`neurocompile.onnx.max_pool`). Any other operator is a one-line error naming the ONNX node.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurocompile.errors import NeurocompileError, first_line
from neurocompile.onnx.max_pool import POOLED, max_pool_steps
from neurocompile.resources import LIMIT_VARIABLE, conversion_weight_bytes, memory_limit

MIN_OPSET = 9
MAX_LAYER_VALUES = 1 << 24  # per sample: a layer's output, and the input
INPUT = "input"
READOUT = "readout"
OUTPUT = "output"
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
        reason = first_line(exc).rpartition(": ")[2]
        raise NeurocompileError(f"{path}: not an ONNX model, or a truncated one (protobuf: {reason})") from None
    refuse_external_data(model, str(path))  # before anything (the checker included) could follow it
    _check_weight_memory(model, path)
    _check_opset(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise NeurocompileError(f"{path}: invalid ONNX model ({first_line(exc)})") from None
    _check_signature(model, path)
    return model


def _check_weight_memory(model, path) -> None:
    """Refuse, from the initializers' declared dims alone, weights whose conversion cannot fit the memory
    limit (:func:`neurocompile.resources.conversion_weight_bytes`): before the checker or any decoding."""
    weights = sum(math.prod(max(int(d), 0) for d in t.dims) for t in model.graph.initializer)
    need, limit = conversion_weight_bytes(weights), memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"{path}: converting its {weights} weights needs about {need / 2**30:.3g} GiB and the limit is "
            f"{limit / 2**30:.3g} GiB: convert a smaller model, or raise the limit with {LIMIT_VARIABLE}"
        )


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


def refuse_external_data(model, where: str = "model") -> None:
    """A one-line error naming the first tensor anywhere in ``model`` (initializers, sparse initializers,
    node attributes of every kind, nested graphs, functions, training graphs) whose data live in
    another file. onnx and onnxruntime would read that file, relative to the current directory or to
    the model's folder, so a crafted model could disclose any file's bytes; nothing is read here."""
    found = _external_tensor(model)
    if found is not None:
        trail, tensor = found
        trail = trail or ["tensor"]
        raise NeurocompileError(
            f"{where}: {': '.join([*trail[:-1], f'{trail[-1]} {_text(tensor.name)!r}'])} keeps its data in an "
            "external file; refused, neurocompile opens no file that a model names (save the model with its "
            "tensors inside: onnx.save(model, path, save_as_external_data=False), or "
            "torch.onnx.export(..., external_data=False))"
        )


def _external_tensor(message):
    """``(trail, tensor)`` for the first TensorProto below ``message`` that names external data, else None;
    ``trail`` names where it is, its last entry the kind of tensor. Every message field is walked, so no
    place a tensor can hide in is missed."""
    import onnx

    stack = [(message, [])]
    while stack:
        item, trail = stack.pop()
        if isinstance(item, onnx.TensorProto):
            if item.data_location == onnx.TensorProto.EXTERNAL or len(item.external_data):
                return trail, item
            continue
        for descriptor, value in item.ListFields():
            if descriptor.type != descriptor.TYPE_MESSAGE:
                continue
            children = value if _repeated(descriptor) else [value]
            for index, child in reversed(list(enumerate(children))):
                stack.append((child, trail + _step(descriptor.name, index, child)))
    return None


def _repeated(field) -> bool:
    """Whether a protobuf field is repeated (``label`` is gone from newer protobuf's descriptors)."""
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED


def _step(field: str, index: int, child) -> list[str]:
    """How ``child``, item ``index`` of its parent's ``field``, is named in an error."""
    import onnx

    if isinstance(child, onnx.NodeProto):
        return [f"ONNX node '{_text(child.name) or f'#{index}'}' ({_text(child.op_type)})"]
    if isinstance(child, onnx.AttributeProto):
        return [f"attribute '{_text(child.name)}'"]
    if isinstance(child, onnx.GraphProto) and field != "graph":
        return [f"graph '{_text(child.name)}'"]
    if isinstance(child, onnx.FunctionProto):
        return [f"function '{_text(child.name)}'"]
    if isinstance(child, onnx.SparseTensorProto):
        return ["sparse initializer" if field == "sparse_initializer" else "sparse tensor"]
    if isinstance(child, onnx.TensorProto) and field not in ("values", "indices"):  # those are a sparse tensor's
        return ["initializer" if field == "initializer" else "tensor"]
    return []


def _check_signature(model, path) -> None:
    """One float input of static shape apart from the batch dimension (the output: :func:`select_output`)."""
    import onnx

    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise NeurocompileError(f"{path}: the model has {len(inputs)} inputs; conversion takes exactly one")
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


def select_output(model, output: str | None, where) -> tuple[object, list[str]]:
    """The model cut down to the one output that conversion takes, and what that did, one note each.

    ``output`` names it; with none, a model's only output, or the only one of several that holds class
    scores (a float tensor, or a ``ZipMap`` of one, as scikit-learn's converter writes its
    probabilities beside the label). A ``ZipMap`` at the output is folded away (its input holds the same
    scores as a tensor); nodes the output does not need (the label's ``ArgMax`` branch) are dropped."""
    import onnx
    from onnx import helper

    graph = model.graph
    names = [o.name for o in graph.output]
    producer = {name: node for node in graph.node for name in node.output}
    notes = []
    if output is None:
        scores = [o.name for o in graph.output if _holds_scores(o, producer)]
        if len(names) == 1 or len(scores) == 1:
            output = names[0] if len(names) == 1 else scores[0]
            if len(names) > 1:
                notes.append(f"output '{output}' chosen of {', '.join(names)} (the class scores; --model-output NAME)")
        else:
            raise NeurocompileError(
                f"{where}: the model has {len(names)} outputs ({', '.join(names)}); choose one with --model-output NAME"
            )
    elif output not in names:
        raise NeurocompileError(f"{where}: no output '{output}'; the model's outputs are {', '.join(names)}")
    tensor, value = output, next(o for o in graph.output if o.name == output)
    node = producer.get(tensor)
    if node is not None and node.op_type == "ZipMap":
        tensor = node.input[0]
        value = helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)
        notes.append(f"ZipMap '{_text(node.name) or node.op_type}' at the output folded away (the same scores)")
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    needed, kept = {tensor}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del pruned.graph.node[:]
    pruned.graph.node.extend(reversed(kept))
    del pruned.graph.output[:]
    pruned.graph.output.append(value)
    return pruned, notes


def _holds_scores(value, producer: dict) -> bool:
    """Whether a graph output holds class scores: a float tensor, or a ZipMap of one."""
    import onnx

    node = producer.get(value.name)
    if node is not None and node.op_type == "ZipMap":
        return True
    return value.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


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

    def apply(self, *xs):
        """The layer on torch tensors ``[N, *shape]``; torch is imported where a layer runs, so that reading a
        file (:func:`read_onnx`) loads no torch."""
        return xs[0]


def _like(x, *arrays: np.ndarray) -> list:
    """``arrays`` as tensors of ``x``'s dtype and device (shared, not copied, where they match)."""
    import torch

    return [torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in arrays]


@dataclass(kw_only=True)
class Dense(Layer):
    weight: np.ndarray  # [out, in]
    bias: np.ndarray  # [out]

    def apply(self, x):
        from torch.nn import functional as F

        return F.linear(x, *_like(x, self.weight, self.bias))


@dataclass(kw_only=True)
class Conv(Layer):
    weight: np.ndarray  # [C_out, C_in / groups, kH, kW]
    bias: np.ndarray  # [C_out]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def apply(self, x):
        from torch.nn import functional as F

        return F.conv2d(x, *_like(x, self.weight, self.bias), self.stride, self.padding, self.dilation, self.groups)


@dataclass(kw_only=True)
class AvgPool(Layer):
    """PyTorch ``avg_pool2d`` with the padding counted in the divisor (NIR's AvgPool2d)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    def apply(self, x):
        from torch.nn import functional as F

        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=True)


@dataclass(kw_only=True)
class Flatten(Layer):
    """Flattens the per-sample dimensions."""

    def apply(self, x):
        return x.flatten(1)  # also for an empty batch


@dataclass(kw_only=True)
class Relu(Layer):
    """A ReLU: an IF population in the SNN."""

    def apply(self, x):
        return x.relu()


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
    folded: list[str] = field(default_factory=list)  # ONNX nodes folded away or rewritten, one note each

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
    refuse_external_data(model)  # also for a model that did not come through read_onnx
    return _Parser(model).run()


def tensor_values(tensor, what: str) -> np.ndarray:
    """A tensor's values as a writable float64 array; data that does not match its dims, or values
    that are not finite real numbers, are a one-line error naming ``what``."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        raise NeurocompileError(f"{what}: its data are in an external file; refused")
    try:
        values = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise NeurocompileError(f"{what}: unreadable tensor data ({first_line(exc)})") from None
    if not (
        values.dtype == np.bool_ or np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
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
        self.folded: list[str] = []  # nodes folded away, one note each
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
            "GlobalMaxPool": self.global_max_pool,
            "Flatten": self.flatten,
            "Reshape": self.reshape,
            "Identity": self.identity,
            "Dropout": self.dropout,
            "Cast": self.cast,
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
        return Network(self.input_shape, list(self.layers.values()), output, self.dropped, self.folded)

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
        """Add the layer that computes the current node's output."""
        self.alias(self.place(cls, inputs, **params))

    def place(self, cls, inputs: list[str], part: str = "", **params) -> str:
        """Add a layer for the current node (``part`` names one of several), its per-sample shape from a
        forward pass on an empty batch (not torch's meta device, whose first use loads torch's compiler for
        seconds); returns its name."""
        import torch

        base = _safe_name(_text(self.node.name)) or f"{self.node.op_type}_{self.index}"
        base = f"{base}_{part}" if part else base
        name, k = base, 1
        while name in self.layers or name in (INPUT, READOUT, OUTPUT):
            name, k = f"{base}_{k}", k + 1
        layer = cls(name=name, onnx=_text(self.node.name) or self.node.op_type, inputs=inputs, **params)
        shapes = [torch.empty(0, *self.shapes[i], dtype=torch.float64) for i in inputs]
        try:
            layer.shape = tuple(layer.apply(*shapes).shape[1:])
        except RuntimeError as exc:
            self.fail(f"cannot apply to input shape {list(self.shapes[inputs[0]])} ({first_line(exc)})")
        if not 1 <= math.prod(layer.shape) <= MAX_LAYER_VALUES:
            self.fail(f"its output of shape {list(layer.shape)} is not 1 to {MAX_LAYER_VALUES} values per sample")
        self.layers[name] = layer
        self.shapes[name] = layer.shape
        return name

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

    def note(self, why: str) -> None:
        self.folded.append(f"{self.node.op_type} '{_text(self.node.name) or f'#{self.index}'}' folded away ({why})")

    def dropout(self) -> None:
        """Inference-mode dropout passes its input; a training mode or a used mask has no spiking form."""
        if len(self.node.input) > 2 and self.node.input[2]:
            if self.const(2, "training_mode").any():
                self.fail("training_mode is on; export the model in inference mode (model.eval())")
        if len(self.node.output) > 1 and self.uses.get(self.node.output[1], 0):
            self.fail("its mask output is used; only inference-mode dropout folds away")
        self.alias(self.source())
        self.note("inference mode: the identity")

    def cast(self) -> None:
        """A cast between float types passes its input (the SNN computes in its own precision)."""
        from onnx import TensorProto

        to = self.attrs().get("to")
        if to not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
            self.fail(
                f"a cast to {TensorProto.DataType.Name(to) if to in TensorProto.DataType.values() else to} "
                "has no spiking equivalent; only casts between float types fold away"
            )
        self.alias(self.source())
        self.note("between float types")

    def final_softmax(self) -> None:
        """A final Softmax/LogSoftmax over the classes: dropped (the SNN's argmax needs no normalization)."""
        src = self.source()
        if len(self.shapes[src]) != 1 or self.attrs().get("axis", -1) not in (1, -1):
            self.fail("only a final softmax over the classes of [batch, classes] can be dropped")
        self.dropped = self.node.op_type
        self.alias(src)
        self.note("monotonic at the output: the same class")

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
            stride=self._ints(a, "strides", (1, 1), 1),
            padding=self._pads(a),
            dilation=self._ints(a, "dilations", (1, 1), 1),
            groups=self._ints(a, "group", (1,), 1)[0],
        )

    def _ints(self, a: dict, name: str, default: tuple, low: int) -> tuple[int, ...]:
        """Attribute ``name``: as many integers of at least ``low`` as ``default`` has (one per spatial axis)."""
        value = a.get(name, default)
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if len(values) != len(default) or not all(isinstance(v, int) and v >= low for v in values):
            self.fail(f"{name} {list(values)} is not {len(default)} integer(s) of at least {low}")
        return values

    def _pads(self, a: dict) -> tuple[int, int]:
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("NOTSET", "VALID"):
            self.fail(f"auto_pad={auto_pad} is not supported; export with explicit pads")
        pads = self._ints(a, "pads", (0, 0, 0, 0), 0) if auto_pad == "NOTSET" else (0, 0, 0, 0)
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
        kernel, stride, padding, dilation = self._window(a, src)
        if any(d != 1 for d in dilation):
            self.fail("dilated pooling has no NIR equivalent")
        if any(padding) and not a.get("count_include_pad", 0):
            self.fail("padding excluded from the average (count_include_pad=0) has no NIR equivalent")
        self.emit(AvgPool, [src], kernel=kernel, stride=stride, padding=padding)

    def _window(self, a: dict, src: str) -> tuple[tuple[int, int], ...]:
        """A 2-D pooling's ``(kernel, stride, padding, dilation)``, each a pair."""
        self._spatial(src)
        if "kernel_shape" not in a:
            self.fail("kernel_shape is missing")
        kernel = self._ints(a, "kernel_shape", (1, 1), 1)
        stride = self._ints(a, "strides", (1, 1), 1)
        padding = self._pads(a)
        dilation = self._ints(a, "dilations", (1, 1), 1)
        if a.get("ceil_mode", 0) and self._ceil_changes_shape(src, kernel, stride, padding, dilation):
            self.fail("ceil_mode=1 changes the output shape here; NIR pooling rounds down")
        return kernel, stride, padding, dilation

    def _ceil_changes_shape(self, src, kernel, stride, padding, dilation) -> bool:
        h_w = self.shapes[src][1:]
        return any((n + 2 * p - d * (k - 1) - 1) % s for n, k, s, p, d in zip(h_w, kernel, stride, padding, dilation))

    def _spatial(self, src: str) -> tuple[int, int]:
        """The height and width of the tensor a 2-D pooling reads."""
        if len(self.shapes[src]) != 3:
            self.fail("only 2-D pooling ([batch, C, H, W]) is supported")
        return tuple(self.shapes[src][1:])

    def global_average_pool(self) -> None:
        src = self.source()
        h_w = self._spatial(src)
        self.emit(AvgPool, [src], kernel=h_w, stride=h_w, padding=(0, 0))

    def max_pool(self) -> None:
        """A MaxPool as layers of difference neurons (:mod:`neurocompile.onnx.max_pool`)."""
        src = self.source()
        kernel, stride, padding, dilation = self._window(self.attrs(), src)
        if len(self.node.output) > 1 and self.node.output[1]:
            self.fail("its Indices output has no spiking equivalent; only the pooled values convert")
        if any(padding) and not isinstance(self.layers.get(src), Relu):
            self.fail(
                f"pads {list(padding * 2)} on an input that may be negative: the rewrite pads with zeros, exact "
                "only for a Relu's output; pool a Relu's output or pad nothing"
            )
        self._max_tree(src, kernel, stride, padding, dilation)

    def global_max_pool(self) -> None:
        src = self.source()
        h_w = self._spatial(src)
        self._max_tree(src, h_w, h_w, (0, 0), (1, 1))

    def _max_tree(self, src: str, kernel, stride, padding, dilation) -> None:
        """The tree of :func:`~neurocompile.onnx.max_pool.max_pool_steps`, placed as layers, and a note."""
        channels, n = self.shapes[src][0], math.prod(kernel)
        if channels * n * n > MAX_LAYER_VALUES:  # the levels' window weights: about n rows of n per channel
            self.fail(
                f"a window of {n} values over {channels} channel(s) needs about {channels * n * n} weights as "
                f"difference neurons; at most {MAX_LAYER_VALUES} (pool smaller windows)"
            )
        steps = max_pool_steps(channels, kernel, stride, padding, dilation)
        names = {POOLED: src}
        for step in steps:
            kind = {"Conv": Conv, "Relu": Relu, "Add": Add}[step.kind]
            names[step.part] = self.place(kind, [names[i] for i in step.inputs], step.part, **step.params)
        self.alias(names[steps[-1].part])
        levels = sum(step.kind == "Relu" for step in steps)
        self.folded.append(
            f"{self.node.op_type} '{_text(self.node.name) or f'#{self.index}'}' became {levels} layer(s) of "
            f"difference neurons, {n - 1} per pooled value (max(a, b) = b + relu(a - b))"
        )

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
        shape = self.const(1, "shape")
        if shape.ndim != 1 or shape.size < 2 or not np.all(np.isfinite(shape) & (shape == np.round(shape))):
            self.fail(f"the target shape {shape.tolist()} is not a list of integers [batch, ...]")
        target = [int(v) for v in shape]
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
