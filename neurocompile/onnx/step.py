"""One time step of a NIR graph as an ONNX model, with the network's state as explicit tensors.

:func:`step_graph` builds an ONNX graph (opset 17, float32) that advances the network by one step exactly as the
float backend does (the step functions of :mod:`neurocompile.semantics.discretization`, traced on ONNX tensors);
the caller feeds each step's ``<state>.next`` outputs back as the next step's state inputs
(:func:`initial_states`). Names, states, metadata and an example loop: ``docs/onnx-step.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nir
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from neurocompile import __version__
from neurocompile.backends import create_backend
from neurocompile.errors import GraphError, NeurocompileError
from neurocompile.files import write_atomically
from neurocompile.frontend.graph import flatten_graph
from neurocompile.semantics.discretization import Convention
from neurocompile.semantics.primitives import NEURONS, conv_padding, delay_steps, kind_of

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: onnxruntime >= 1.12 reads it
NEXT = ".next"
BATCH = "batch"
MAX_DELAY_STEPS = 2**16  # a Delay's FIFO state holds this many inputs at most


# --- building the ONNX graph ----------------------------------------------------------------------


class _Builder:
    """Collects ONNX nodes and constants; internal names are ``<scope>/<op>:<n>``."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.consumed: set[str] = set()  # every name some node reads
        self.scope = ""
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.scope}/{hint}:{self._count}"

    def const(self, value, dtype=np.float32) -> str:
        value = np.asarray(value)
        if dtype == np.float32 and value.size and np.abs(value).max() > np.finfo(np.float32).max:
            raise GraphError("values beyond the float32 range of the ONNX step graph", node=self.scope)
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(value.astype(dtype), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        output = output or self.fresh(op_type)
        self.consumed.update(inputs)
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def operand(self, value) -> str:
        """The name of a traced value, or a new float32 constant for a number or torch tensor."""
        if isinstance(value, _Traced):
            return value.name
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return self.const(value)

    def reshape(self, value: str, shape) -> str:
        return self.node("Reshape", [value, self.const([-1, *shape], np.int64)])


class _Traced:
    """An ONNX tensor seen by a neuron step function: each arithmetic operation adds an ONNX node.

    Python operators land in the dunder methods; an operation whose left operand is a torch
    tensor (a parameter) reaches ``__torch_function__``. So the graph computes the step
    function's own expression, operation by operation, with its constants computed by torch.
    """

    requires_grad = False
    dtype = torch.float32
    _TORCH_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "truediv": "Div"}
    _TORCH_UNARY = {"floor": "Floor", "relu": "Relu"}  # multi-spike counts: relu(floor(v / v_th))

    def __init__(self, builder: _Builder, name: str):
        self.builder, self.name = builder, name

    def _binary(self, op_type: str, a, b) -> _Traced:
        return _Traced(self.builder, self.builder.node(op_type, [self.builder.operand(a), self.builder.operand(b)]))

    def __add__(self, other):
        return self._binary("Add", self, other)

    def __radd__(self, other):
        return self._binary("Add", other, self)

    def __sub__(self, other):
        return self._binary("Sub", self, other)

    def __rsub__(self, other):
        return self._binary("Sub", other, self)

    def __mul__(self, other):
        return self._binary("Mul", self, other)

    def __rmul__(self, other):
        return self._binary("Mul", other, self)

    def __truediv__(self, other):
        return self._binary("Div", self, other)

    def __rtruediv__(self, other):
        return self._binary("Div", other, self)

    def __gt__(self, other):
        return self._binary("Greater", self, other)

    def __ge__(self, other):
        return self._binary("GreaterOrEqual", self, other)

    def to(self, dtype) -> _Traced:
        if dtype != torch.float32:
            raise NeurocompileError(f"the ONNX step is float32; a neuron step asked for {dtype}")
        return _Traced(self.builder, self.builder.node("Cast", [self.name], to=TensorProto.FLOAT))

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        unary = cls._TORCH_UNARY.get(func.__name__)
        if unary is not None and not kwargs and len(args) == 1:
            traced = args[0]
            return _Traced(traced.builder, traced.builder.node(unary, [traced.name]))
        op_type = cls._TORCH_OPS.get(func.__name__.strip("_"))
        if op_type is None or kwargs or len(args) != 2:
            raise NeurocompileError(f"the ONNX step cannot trace torch operation '{func.__name__}'")
        traced = next(a for a in args if isinstance(a, _Traced))
        return traced._binary(op_type, *args)


# --- the stateless primitives (``Op`` of neurocompile.semantics.primitives, resolved by the float backend) ---------


def _per_axis(value, dims: int) -> list[int]:
    return [int(v) for v in np.broadcast_to(np.atleast_1d(np.asarray(value)).astype(np.int64).ravel(), (dims,))]


def _affine(b: _Builder, x: str, op, node) -> str:
    weight = op.weight.astype(np.float32)
    if weight.ndim == 2:
        return b.node("MatMul", [x, b.const(weight.T)])
    last = b.const([-1], np.int64)
    column = b.node("Unsqueeze", [x, last])
    return b.node("Squeeze", [b.node("MatMul", [b.const(weight), column]), last])


def _conv(b: _Builder, x: str, op, node) -> str:
    dims = op.weight.ndim - 2
    dilation = _per_axis(node.dilation, dims)
    pads = conv_padding(node.padding, op.weight.shape[2:], tuple(dilation), op.node)
    return b.node(
        "Conv",
        [x, b.const(op.weight)],
        strides=_per_axis(node.stride, dims),
        dilations=dilation,
        group=int(np.ravel(node.groups)[0]) if np.size(node.groups) else 1,
        pads=[before for before, _ in pads] + [after for _, after in pads],
    )


def _pool(b: _Builder, x: str, op, node) -> str:
    kernel, stride, padding, average = op.pool
    window = dict(strides=list(stride), pads=list(padding) * 2)
    if average:
        return b.node("AveragePool", [x], kernel_shape=list(kernel), count_include_pad=1, **window)
    channels = op.in_shape[0]  # a sum is a per-channel convolution with ones: exact on spike counts
    return b.node("Conv", [x, b.const(np.ones((channels, 1, *kernel)))], group=channels, **window)


def _reshape(b: _Builder, x: str, op, node) -> str:
    return b.reshape(x, op.out_shape)


def _scale(b: _Builder, x: str, op, node) -> str:
    return b.node("Mul", [x, b.const(op.weight)])


LINEAR_OPS = {
    "Affine": _affine,
    "Linear": _affine,
    "Conv1d": _conv,
    "Conv2d": _conv,
    "SumPool2d": _pool,
    "AvgPool2d": _pool,
    "Flatten": _reshape,
    "Identity": _reshape,
    "Scale": _scale,
}
SUPPORTED = {"Input", "Output", "InlinedBoundary", "Delay", *LINEAR_OPS, *NEURONS}  # Delay: _Step.delay


# --- one step of the whole graph ------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    name: str
    shape: tuple[int, ...]  # per sample
    after: str | None = None  # its value after this step


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


class _Step:
    """Emits the nodes of one step in the float backend's order (``ref``: a run float backend)."""

    def __init__(self, ref, shapes: dict[str, tuple[int, ...]], all_spikes: bool):
        self.ref, self.shapes, self.all_spikes = ref, shapes, all_spikes
        self.b = _Builder()
        self.values: dict[str, str] = {}  # node -> its output this step
        self.value_shapes: dict[str, tuple[int, ...]] = {}
        self.states: dict[str, _State] = {}
        self.spikes: dict[str, tuple[str, tuple[int, ...]]] = {}  # output name -> (value, shape)
        self.back = {src: self.state(f"{src}.out", self.node_shape(src)) for src, _ in sorted(ref.back_edges)}

    def node_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[self.ref.keys_of(name)[0]]

    def state(self, name: str, shape) -> str:
        self.states[name] = _State(name, tuple(shape))
        self.value_shapes[name] = tuple(shape)
        return name

    def emit(self) -> None:
        for name in self.ref.order:
            self.b.scope = name
            self.values[name] = self.node(name, self.input_of(name))
            self.value_shapes.setdefault(self.values[name], self.node_shape(name))
        for src, name in self.back.items():
            self.states[name].after = self.values[src]

    def input_of(self, name: str) -> str:
        """This step's input of ``name``: the graph input of an Input node, else the sum of its edges."""
        if name in self.ref.inputs:
            self.value_shapes[name] = tuple(self.ref.ops[name].in_shape)
            return name
        terms = [self.back[src] if is_back else self.values[src] for src, is_back in self.ref.preds[name]]
        if not terms:
            raise GraphError("has no incoming edge: nothing feeds it in an ONNX step", node=name, field="edges")
        total = terms[0]
        for term in terms[1:]:
            total = self.add(total, term)
        return total

    def add(self, a: str, b: str) -> str:
        """``a + b``, ``b`` first reshaped to ``a``'s layout when it holds as many values (float backend's sum)."""
        b = self.fit(b, self.value_shapes[a])
        total = self.b.node("Add", [a, b])
        self.value_shapes[total] = np.broadcast_shapes((1, *self.value_shapes[a]), (1, *self.value_shapes[b]))[1:]
        return total

    def fit(self, value: str, shape) -> str:
        """``value`` in the per-sample ``shape`` when it holds as many values (the float backend's ``_fit``)."""
        have = self.value_shapes[value]
        if shape is None or tuple(have) == tuple(shape) or int(np.prod(have)) != int(np.prod(shape)):
            return value
        reshaped = self.b.reshape(value, shape)
        self.value_shapes[reshaped] = tuple(shape)
        return reshaped

    def node(self, name: str, x: str) -> str:
        node = self.ref.nodes[name]
        kind = kind_of(node)
        if kind == "io":
            return x
        if kind == "neuron":
            return self.neuron(name, x)
        op = self.ref.ops[name].op
        x = self.fit(x, op.in_shape)
        if op.type == "Delay":
            return self.delay(name, x, op)
        y = LINEAR_OPS[op.type](self.b, x, op, node)
        return y if op.bias is None else self.b.node("Add", [y, self.b.const(op.bias)])

    def neuron(self, name: str, x: str) -> str:
        """The neuron's own step function traced on ONNX tensors; a state it never reads is not carried."""
        neuron = self.ref.ops[name]
        names = [f"{name}.{field}" for field in neuron.model.state._fields]
        state = neuron.model.state(*(_Traced(self.b, n) for n in names))
        x = self.fit(x, neuron.in_shape)
        out, new_state = neuron.model.step(_Traced(self.b, x), state, neuron.params, self.ref.convention)
        for state_name, value in zip(names, new_state):
            if state_name in self.b.consumed:
                self.state(state_name, self.shapes[state_name])
                self.states[state_name].after = value.name
        if neuron.model.spiking and self.all_spikes:
            self.spikes[f"{name}.spikes"] = (out.name, self.node_shape(name))
        return out.name

    def delay(self, name: str, x: str, op) -> str:
        """``y[t] = x[t - steps]`` per element, from ``x`` and a FIFO of the last ``max(steps)`` inputs."""
        dt = self.ref.convention.dt
        longest = float(op.delay.max(initial=0.0))
        if longest / dt > MAX_DELAY_STEPS:  # checked in seconds, before any conversion to int64
            raise GraphError(
                f"a delay of {longest:g} s is {longest / dt:.3g} steps; the ONNX step's FIFO state holds at most "
                f"{MAX_DELAY_STEPS}",
                node=name,
                field="delay",
            )
        steps = delay_steps(op.delay, dt)
        depth = int(steps.max()) if steps.size else 0
        if depth == 0:
            return x
        fifo = self.state(f"{name}.fifo", (depth, *op.in_shape))
        b = self.b
        now = b.node("Unsqueeze", [x, b.const([1], np.int64)])
        history = b.node("Concat", [now, fifo], axis=1)  # history[:, k] is the input of k steps ago
        index = b.node("Expand", [b.const(steps[None, None], np.int64), b.node("Shape", [now])])
        y = b.node("Squeeze", [b.node("GatherElements", [history, index], axis=1), b.const([1], np.int64)])
        keep = [b.const([v], np.int64) for v in (0, depth, 1)]  # starts, ends, axes
        self.states[fifo].after = b.node("Slice", [history, *keep])
        return y

    def model(self, graph: nir.NIRGraph) -> onnx.ModelProto:
        b = self.b
        b.scope = "outputs"
        outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        inputs = [_info(n, self.value_shapes[n]) for n in self.ref.inputs]
        inputs += [_info(s.name, s.shape) for s in self.states.values()]
        results = [(n, self.values[n], self.node_shape(n)) for n in outputs]
        results += [(s.name + NEXT, s.after, s.shape) for s in self.states.values()]
        results += [(n, value, shape) for n, (value, shape) in self.spikes.items()]
        _check_unique([i.name for i in inputs] + [name for name, _, _ in results])
        for name, value, _ in results:
            b.node("Identity", [value], output=name)
        onnx_graph = helper.make_graph(
            b.nodes, "neurocompile_step", inputs, [_info(n, s) for n, _, s in results], b.initializers
        )
        return helper.make_model(
            onnx_graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="neurocompile",
            producer_version=__version__,
            doc_string="One time step of a NIR graph; feed each '<state>.next' output back as '<state>'.",
        )


def _check_unique(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise GraphError(f"'{name}' names two ONNX inputs/outputs (a node and a state); rename the node")
        seen.add(name)


def _check_supported(graph: nir.NIRGraph) -> None:
    nodes, _ = flatten_graph(graph)
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise GraphError(f"{kind} has no ONNX step form (supported: {', '.join(sorted(SUPPORTED))})", node=name)


def _probe_shapes(ref) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every recorded variable, from a short float run on zeros: the float
    backend resolves each layout as values arrive (a few steps let recurrent values arrive)."""
    steps = len(ref.back_edges) + 2
    zeros = {}
    for name in ref.inputs:
        shape = ref.ops[name].in_shape
        if shape is None:
            raise GraphError("declares no input shape", node=name, field="input_type")
        zeros[name] = np.zeros((1, steps, *shape), np.float32)
    recording = ref.run(zeros, record="all")
    shapes = {key: tuple(value.shape[2:]) for key, value in recording.arrays.items()}
    for name in ref.order:
        if shapes[ref.keys_of(name)[0]] == () and name not in ref.inputs:
            raise GraphError("gets no value with a shape (no input edge and no declared shape)", node=name)
    return shapes


def _back_edge_starts(ref, step: _Step) -> dict[str, list]:
    """The nonzero start value of each back-edge state, one sample (float32 values, exact in JSON)."""
    starts = {}
    for src, value in ref.back_edge_start().items():
        if value.dim() and bool(value.any()):
            name = step.back[src]
            starts[name] = value.to(torch.float32).reshape(step.states[name].shape).tolist()
    return starts


# --- public API ---------------------------------------------------------------------------------------


def step_graph(graph: nir.NIRGraph, convention: Convention = Convention(), *, all_spikes: bool = False):
    """One time step of ``graph`` under ``convention`` as a checked ``onnx.ModelProto`` (names: module doc).

    ``all_spikes`` also outputs every spiking neuron's spikes. A node that has no ONNX form
    raises a one-line :class:`~neurocompile.errors.GraphError` naming it."""
    _check_supported(graph)
    ref = create_backend("float", graph, convention=convention)
    step = _Step(ref, _probe_shapes(ref), all_spikes)
    step.emit()
    model = step.model(graph)
    helper.set_model_props(
        model,
        {
            "neurocompile.convention": json.dumps(dataclasses.asdict(convention)),
            "neurocompile.states": json.dumps(list(step.states)),
            "neurocompile.initial_states": json.dumps(_back_edge_starts(ref, step)),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_step_onnx(path, graph: nir.NIRGraph, convention: Convention = Convention(), *, all_spikes: bool = False):
    """Write :func:`step_graph` to ``path`` (atomically); returns the model."""
    model = step_graph(graph, convention, all_spikes=all_spikes)
    write_atomically(Path(path), lambda tmp: onnx.save(model, tmp), "ONNX model")
    return model


def state_names(model: onnx.ModelProto) -> list[str]:
    """The state inputs of a step model: the inputs with a ``<name>.next`` output."""
    outputs = {o.name for o in model.graph.output}
    return [i.name for i in model.graph.input if i.name + NEXT in outputs]


def initial_states(model: onnx.ModelProto, batch: int) -> dict[str, np.ndarray]:
    """Every state at the start of a run, float32 [batch, *shape]: zeros, but a back-edge's value
    before step 0 (``neurocompile.initial_states``: a recurrent ``Affine``'s bias)."""
    inputs = {i.name: i for i in model.graph.input}
    props = {p.key: p.value for p in model.metadata_props}
    starts = json.loads(props.get("neurocompile.initial_states", "{}"))
    states = {}
    for name in state_names(model):
        dims = inputs[name].type.tensor_type.shape.dim
        states[name] = np.zeros([batch if d.dim_param else d.dim_value for d in dims], np.float32)
        if name in starts:
            states[name][:] = np.asarray(starts[name], np.float32)
    return states
