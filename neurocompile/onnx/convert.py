"""ANN-to-SNN conversion: an ONNX ReLU network becomes a NIR graph of IF neurons (reset by subtraction).

Stages, each small and inspectable: :func:`~neurocompile.onnx.read.read_onnx` and
:func:`~neurocompile.onnx.read.parse_onnx`, :func:`forward` (checked against onnxruntime), :func:`layer_scales`
(Rueckauer et al. 2017), :func:`normalize_weights` and :func:`to_nir`, then :func:`evaluate`. The method, the
operators, the input codings and the measured accuracy: ``docs/ann-to-snn.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from neurocompile import __version__
from neurocompile.analysis import metrics
from neurocompile.backends import create_backend
from neurocompile.compiler.calibrate import first_steps
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.data import is_event_data, load_digits_images, load_event_images, split_indices
from neurocompile.errors import NeurocompileError, first_line
from neurocompile.files import MAX_ARRAY_BYTES, load_arrays, save_figure
from neurocompile.onnx import MAX_STEPS, READOUTS
from neurocompile.onnx.read import (
    INPUT,
    OUTPUT,
    READOUT,
    Add,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    Layer,
    Network,
    Relu,
    input_info,
    parse_onnx,
    read_onnx,
    refuse_external_data,
    select_output,
)
from neurocompile.resources import (
    ann_chunk,
    check_compile_memory,
    conversion_weight_bytes,
    run_chunk,
    values_per_step,
)
from neurocompile.semantics.discretization import Convention

CONVENTION = Convention(reset="subtract")


def _bar(desc: str, total: int, progress: bool, unit: str = "sample") -> tqdm:
    """A progress bar on stderr: shown when ``progress`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None if progress else True)


# --- 3. the ANN's activations ----------------------------------------------------------------


def forward(network: Network, x) -> dict[str, np.ndarray]:
    """Every layer's output (and ``"input"``) for a batch ``x`` ``[N, *input_shape]``, float64."""
    values = {INPUT: torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(-1, *network.input_shape)}
    with torch.no_grad():
        for layer in network.layers:
            values[layer.name] = layer.apply(*(values[i] for i in layer.inputs))
    return {name: value.numpy() for name, value in values.items()}


def run_onnx(model, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """The model's output for ``x`` with onnxruntime, ``chunk`` samples at a time (at most 1024; the model's
    batch when it is fixed)."""
    return _run_session(_session(model), model, x, chunk)


def _session(model):
    """An onnxruntime session of ``model`` (two threads, CPU)."""
    import onnxruntime as ort

    refuse_external_data(model)  # onnxruntime would read such data relative to the current directory
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 4  # fatal only: its errors reach the user as our one-line error, not its log
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise NeurocompileError(f"onnxruntime cannot load the model ({first_line(exc)})") from None


def _run_session(session, model, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
    name, shape, batch = input_info(model)
    x = np.asarray(x, dtype=np.float32).reshape(-1, *shape)
    chunk = batch or min(chunk or ONNX_CHUNK, ONNX_CHUNK)
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
            raise NeurocompileError(f"onnxruntime cannot run the model ({first_line(exc)})") from None
    return np.concatenate(outputs).reshape(len(x), -1)


ONNX_CHUNK = 1024  # samples onnxruntime runs at once, at most


def check_against_onnxruntime(network: Network, model, x: np.ndarray, chunk: int | None = None) -> None:
    """The parsed layers must compute what onnxruntime computes (an independent oracle), checked on ``x``
    ``chunk`` samples at a time."""
    for _ in checked_passes(network, model, x, chunk):
        pass


def checked_passes(network: Network, model, x: np.ndarray, chunk: int | None = None):
    """:func:`forward` of ``x``, ``chunk`` samples at a time (all at once by default): yields
    ``(start, activations)`` per chunk, each checked against onnxruntime's output; a parse that does
    not compute what the ONNX model computes is refused once every chunk ran."""
    chunk = max(1, chunk or len(x))
    session = _session(model)
    worst = top = 0.0
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        values = forward(network, part)
        ours = torch.as_tensor(values[network.output].reshape(len(part), -1))
        if network.head is not None:
            ours = (torch.softmax if network.head == "Softmax" else torch.log_softmax)(ours, dim=1)
        ours = ours.numpy()
        theirs = _run_session(session, model, part, chunk)
        if ours.shape != theirs.shape:
            raise NeurocompileError(
                f"the parsed network gives outputs of shape {ours.shape}, onnxruntime {theirs.shape}"
            )
        worst = max(worst, float(np.abs(ours - theirs).max(initial=0)))
        top = max(top, float(np.abs(theirs).max(initial=0)))
        yield start, values
        del values, ours, theirs
    if worst > 1e-3 * (1.0 + top):
        raise NeurocompileError(f"the parsed network differs from onnxruntime by {worst:.3g}; cannot convert it")


def kept_layers(network: Network) -> list[str]:
    """The layers whose activations the normalization needs: every ReLU, and the output layer."""
    names = [layer.name for layer in network.layers if isinstance(layer, Relu)]
    return names if network.output in names else [*names, network.output]


def calibrate(
    network: Network, model, x: np.ndarray, percentile: float, chunk: int | None = None, progress: bool = False
) -> dict:
    """:func:`layer_scales` of the ANN's activations on ``x``, computed ``chunk`` samples at a time (checked
    against onnxruntime): only the activations of :func:`kept_layers` are kept for every sample."""
    kept = {name: np.empty((len(x), *network.layer(name).shape)) for name in kept_layers(network)}
    with _bar("calibrate", len(x), progress) as bar:
        for start, values in checked_passes(network, model, x, chunk):
            for name, array in kept.items():
                array[start : start + len(values[INPUT])] = values[name]
            bar.update(len(values[INPUT]))
    return layer_scales(network, kept, percentile, input_scale(x), overwrite=True)


# --- 4. data-based normalization -------------------------------------------------------------


def percentile_scale(values: np.ndarray, percentile: float, overwrite: bool = False) -> float:
    """The ``percentile``-th percentile of all values (1.0 when it is not positive: a silent layer);
    ``overwrite`` lets it reorder ``values`` (float64) instead of copying them."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    value = float(np.percentile(flat, percentile, overwrite_input=overwrite))
    return value if value > 0 else 1.0


def layer_scales(
    network: Network, activations: dict, percentile: float, input_scale: float = 1.0, overwrite: bool = False
) -> dict:
    """lambda per ReLU layer, for the readout (the output layer's values) and the input; ``overwrite``
    lets it reorder the activations instead of copying them."""
    scales = {INPUT: float(input_scale)}
    for layer in network.layers:
        if isinstance(layer, Relu):
            scales[layer.name] = percentile_scale(activations[layer.name], percentile, overwrite)
    if not isinstance(network.layer(network.output), Relu):
        scales[READOUT] = percentile_scale(activations[network.output], percentile, overwrite)
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
        raise NeurocompileError(f"converted graph is inconsistent: {first_line(exc)}") from None
    return graph


def _metadata(convention: Convention, scales: dict, **extra) -> dict:

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
    """``digits`` (pixel intensities in [0, 1], the project's fixed split), event data (events counted per pixel,
    ``neurocompile.events``) or an ``.npz`` with ``x_train``/``x_test``/``y_test``, or ``x``/``y`` (split 80/20 like
    ``neurocompile.data``);
    ``x`` holds ``[N, *input_shape]`` analog samples (any layout of the same size)."""

    if str(spec) == "digits":
        (x_train, _), (x_test, y_test) = load_digits_images("train"), load_digits_images("test")
    elif is_event_data(spec):  # one event-count image per recording
        (x_train, _), (x_test, y_test) = load_event_images(spec, "train"), load_event_images(spec, "test")
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
    largest = max(abs(float(x.max())), abs(float(x.min()))) if x.dtype.kind == "f" and x.dtype.itemsize > 4 else 0.0
    if largest > np.finfo(np.float32).max:  # wider floats only: every integer fits float32's range
        raise NeurocompileError(f"{where}: values up to {largest:.3g} do not fit float32 (at most 3.4e38)")
    return x.astype(np.float32).reshape(len(x), *input_shape)


def _load_npz(path: Path):
    """``(x_train, x_test, y_test)`` of an ``.npz`` (read by ``files.load_arrays``: headers checked
    first, no pickles); ``x``/``y`` alone are split as ``neurocompile.data`` splits datasets."""

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
    chunk: int | None = None  # samples per ANN pass that fit the memory limit (None: all at once)
    notes: list = dataclasses.field(default_factory=list)  # the output chosen, the nodes folded away


def check_steps(steps) -> list[int]:
    """``steps`` (an integer or several) as a sorted list of distinct integers from 1 to :data:`MAX_STEPS`."""
    values = [steps] if isinstance(steps, (int, np.integer)) else list(steps)
    integers = all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in values)
    if not values or not integers or not all(1 <= t <= MAX_STEPS for t in values):
        raise NeurocompileError(f"steps must be integers from 1 to {MAX_STEPS}, got {values}")
    return sorted({int(t) for t in values})


def _count(value, what: str) -> int | None:
    """An optional positive sample count."""
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise NeurocompileError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def weight_count(network: Network) -> int:
    """Parameters of the network's Dense and Conv layers."""
    return sum(layer.weight.size + layer.bias.size for layer in network.layers if isinstance(layer, (Dense, Conv)))


def ann_values(network: Network) -> int:
    """Values one sample holds in an ANN pass (:func:`forward`): the input, every layer's output and the
    largest working buffer of a convolution (torch's float64 convolution unfolds its input: C_in x kH x kW
    values per output position)."""
    outputs = math.prod(network.input_shape) + sum(math.prod(layer.shape) for layer in network.layers)
    unfolded = [
        layer.weight[0].size * layer.groups * math.prod(layer.shape[1:])
        for layer in network.layers
        if isinstance(layer, Conv)
    ]
    return outputs + max(unfolded, default=0)


def snn_values(network: Network) -> int:
    """Values per step of the converted graph's nodes, as :func:`neurocompile.resources.values_per_step`
    counts them, before the graph exists: the input, a node per layer (Add excepted), the readout and the
    output (the Scale nodes the normalization may leave on some edges are not known yet)."""
    output = math.prod(network.layer(network.output).shape)
    readout = 0 if isinstance(network.layer(network.output), Relu) else output
    layers = sum(math.prod(layer.shape) for layer in network.layers if not isinstance(layer, Add))
    return math.prod(network.input_shape) + layers + readout + output


def convert(
    model_path,
    calibration: str = "digits",
    percentile: float = 99.9,
    readout: str = "spikes",
    *,
    steps=None,
    calibration_samples: int | None = None,
    output: str | None = None,
    onnx_model=None,
    progress: bool = False,
) -> Conversion:
    """Read, parse and check ``model_path`` (its ``output``, or the one :func:`select_output` picks), normalize on ``calibration``'s training split (its first
    ``calibration_samples`` samples, default all) and build the NIR graph.

    Before the ANN runs, its passes are sized (:func:`neurocompile.resources.ann_chunk`: the weights, the
    activations the normalization keeps, and chunks of the calibration set that fit) and, given the
    ``steps`` that :func:`evaluate` will run, so are the SNN runs: what does not fit the memory limit is
    refused in one line, before anything large is allocated.

    ``onnx_model``: what :func:`read_onnx` read from ``model_path`` already (so that a caller can refuse a
    file before torch loads), else it is read here. ``progress``: the calibration's bar on a terminal."""
    if not (0 < percentile <= 100):
        raise NeurocompileError(f"percentile must be in (0, 100], got {percentile}")
    if readout not in READOUTS:
        raise NeurocompileError(f"readout must be one of {', '.join(READOUTS)}, got '{readout}'")
    steps = check_steps(steps) if steps is not None else None
    calibration_samples = _count(calibration_samples, "calibration_samples")
    onnx_model = read_onnx(model_path) if onnx_model is None else onnx_model
    model, notes = select_output(onnx_model, output, model_path)
    network = parse_onnx(model)
    data = load_data(calibration, network.input_shape)
    data.x_train = data.x_train[:calibration_samples]
    weights = weight_count(network)
    chunk = ann_chunk(
        weights=weights,
        values=ann_values(network),
        kept=sum(math.prod(network.layer(name).shape) for name in kept_layers(network)),
        samples=len(data.x_train),
        fixed_batch=input_info(model)[2],
    )
    if steps is not None:  # evaluate()'s fixed-point compilation: its matrices and calibration run are not chunked
        check_fixed_point_compile(network, snn_values(network), len(data.x_train), max(steps))
    scales = calibrate(network, model, data.x_train, percentile, chunk, progress)
    graph = to_nir(
        network, scales, readout, source=str(Path(model_path).name), calibration=data.name, percentile=float(percentile)
    )
    return Conversion(model, network, scales, graph, data, readout, percentile, chunk, notes + network.folded)


CALIBRATION_SAMPLES = 256  # training inputs the fixed-point program is calibrated on


def dense_synapses(network: Network) -> list[tuple[str, int, int, int, int]]:
    """The synapses that the fixed-point compiler builds as dense matrices, as
    :func:`neurocompile.resources.check_compile_memory` takes them: every chain of layers from a
    population (the input or a ReLU) into a population (a ReLU or the readout) but a lone convolution
    (with at most one pooling and flattening around it, which the compiler folds into one conv synapse).
    A chain that is one Dense is its weight; the others are pushed through an identity (``n_identity``)."""

    def size(name: str) -> int:
        return math.prod(network.input_shape) if name == INPUT else math.prod(network.layer(name).shape)

    chains: dict[tuple[str, str], list[list[Layer]]] = {}

    def walk(dst: str, name: str, ops: list[Layer]) -> None:
        if name == INPUT or isinstance(network.layer(name), Relu):
            chains.setdefault((name, dst), []).append(ops)
            return
        layer = network.layer(name)
        for src in layer.inputs:
            walk(dst, src, ops if isinstance(layer, Add) else [layer, *ops])

    for layer in network.layers:
        if isinstance(layer, Relu):
            walk(layer.name, layer.inputs[0], [])
    if not isinstance(network.layer(network.output), Relu):
        walk(READOUT, network.output, [])
    dense = []
    for (src, dst), seqs in chains.items():
        ops = seqs[0]
        one_conv = sum(isinstance(op, Conv) for op in ops) == 1 and sum(isinstance(op, AvgPool) for op in ops) <= 1
        if len(seqs) > 1 or not (one_conv and all(isinstance(op, (Conv, AvgPool, Flatten)) for op in ops)):
            n_dst = size(network.output if dst == READOUT else dst)
            # a chain of one Dense (Flattens aside) is its weight; any other goes through the identity
            identity = [seq for seq in seqs if [type(op) for op in seq if not isinstance(op, Flatten)] != [Dense]]
            values = sum(size(op.name) for seq in identity for op in seq)
            dense.append((f"{src}->{dst}", size(src) if identity else 0, values, n_dst, size(src)))
    return dense


def check_fixed_point_compile(network: Network, values: int, calibration: int, steps: int) -> None:
    """Refuse the fixed-point compilation of :func:`compile_fixed_point` when its synapse matrices
    (:func:`neurocompile.resources.check_compile_memory`) or its calibration run (up to
    :data:`CALIBRATION_SAMPLES` of ``calibration`` samples at once, ``steps`` steps, ``values`` values per
    step) do not fit the memory limit beside the model's weights."""
    held = conversion_weight_bytes(weight_count(network))
    held += check_compile_memory(dense_synapses(network), held)
    together = min(calibration, CALIBRATION_SAMPLES)
    run_chunk(
        values,
        together,
        steps,
        together=together,
        held=held,
        what="the fixed-point calibration (its samples run at once)",
        fewer="calibrate on at most {n} samples (--calibration-samples {n})",
    )


def compile_fixed_point(conversion: Conversion, steps: int, samples: int = CALIBRATION_SAMPLES):
    """The fixed-point program of the converted graph, calibrated on ``samples`` training inputs as spikes."""

    spikes = encode_spikes(conversion.data.x_train[:samples], steps, conversion.scales[INPUT])
    program, _report = compile_graph(conversion.graph, CONVENTION, calibration=spikes)
    return program


KINDS = ("float", "float_spikes", "cpu")  # the SNN runs of the report, see evaluate
TITLES = {"float": "SNN float", "float_spikes": "SNN float, spikes", "cpu": "SNN cpu (fixed)"}  # bar titles


def snn_predictions(conversion: Conversion, kind: str, steps, x, program=None, progress: bool = False) -> dict:
    """The class each sample is read as after each T of ``steps`` (``{T: [N]}``) in one SNN run of the
    largest T: ``float`` (analog current), ``float_spikes`` or ``cpu`` (``program``, spikes). The first T
    steps of that run are the run of T steps (the input of T steps is the first T steps of the longer
    input, and no neuron sees a later step), so each T is read from them. The samples run in chunks that
    fit the memory limit (:func:`neurocompile.resources.run_chunk`)."""
    steps = check_steps(steps)
    longest = max(steps)
    model = program if kind == "cpu" else conversion.graph
    values = max(values_per_step(conversion.graph), values_per_step(model))
    held = conversion_weight_bytes(weight_count(conversion.network))
    chunk = run_chunk(values, len(x), longest, held=held)
    if kind == "cpu":
        backend = create_backend("cpu", program)
    else:
        backend = create_backend("float", conversion.graph, convention=CONVENTION)
    encode = analog_current if kind == "float" else encode_spikes
    found: dict[int, list] = {t: [] for t in steps}
    with _bar(f"{TITLES[kind]}, T={longest}", len(x), progress) as bar:
        for start in range(0, len(x), chunk):
            part = x[start : start + chunk]
            recording = backend.run(encode(part, longest, conversion.scales[INPUT]))
            for t in steps:
                cut = dataclasses.replace(recording, arrays=first_steps(recording.arrays, t))
                found[t].append(metrics.predictions(cut))
            bar.update(len(part))
    return {t: np.concatenate(found[t]) for t in steps}


def evaluate(conversion: Conversion, steps=(16, 32, 64), limit: int | None = None, progress: bool = False) -> dict:
    """Accuracy of the ANN (onnxruntime) and of the SNN at each T (:data:`KINDS`) on the test split;
    the fixed-point program is calibrated at the largest T, and each SNN runs once, at the largest T
    (:func:`snn_predictions`). Returns a JSON-able report. The runs are sized first; the test samples
    run in chunks that fit the memory limit. ``progress``: a bar per stage on a terminal."""

    steps = check_steps(steps)
    data = conversion.data
    x, y = data.x_test[: _count(limit, "limit")], data.y_test[:limit]
    check_fixed_point_compile(conversion.network, values_per_step(conversion.graph), len(data.x_train), max(steps))
    with _bar("fixed-point compile", 1, progress, unit="program") as bar:
        program = compile_fixed_point(conversion, max(steps))
        bar.update()
    predicted = {kind: snn_predictions(conversion, kind, steps, x, program, progress) for kind in KINDS}
    rows = [{"steps": t, **{kind: _accuracy(predicted[kind][t], y) for kind in KINDS}} for t in steps]
    with _bar("ANN (onnxruntime)", len(x), progress) as bar:
        ann = run_onnx(conversion.model, x, conversion.chunk).argmax(axis=1)
        bar.update(len(x))
    return {
        "samples": {"calibration": int(len(data.x_train)), "test": int(len(y))},
        "data": data.name,
        "percentile": conversion.percentile,
        "readout": conversion.readout,
        "convention": dataclasses.asdict(CONVENTION),
        "scales": conversion.scales,
        "folded": conversion.notes,
        "accuracy": {"ann": _accuracy(ann, y), "snn": rows},
    }


def _accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float((predicted == y).mean())


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

    n_columns = min(3, len(reports))
    n_rows = -(-len(reports) // n_columns)
    fig, axes = plt.subplots(n_rows, n_columns, figsize=(4.6 * n_columns, 3.4 * n_rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(reports) :]:
        ax.set_visible(False)
    for ax, (title, report) in zip(axes.flat, reports.items()):
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
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
