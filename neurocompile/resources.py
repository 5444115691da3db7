"""The memory a run needs, estimated from declared shapes before anything is allocated.

A run holds, per sample and step, every node's values (spikes, v and u when recorded, and the
backends' working copies): at most ``VALUES_PER_NODE`` float32 or int32 values per neuron. The
estimate is compared with the limit (``NEUROCOMPILE_MAX_MEMORY_GB``, else 80% of the least of the
available memory, the process's address-space limit and the container's memory limit), and a run
past it is refused in one line that gives both.
"""

from __future__ import annotations

import math

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.machine import LIMIT_VARIABLE, memory_limit

VALUES_PER_NODE = 4  # recorded spikes, v, u, and one working copy
BYTES_PER_VALUE = 4
TRAINING_COPIES = 4  # of every parameter while training: the weight, its gradient, the optimizer's two moments


def values_per_step(model) -> int:
    """Values one sample holds per step: every population and input port of a program, every
    node of a NIR graph (its declared output, else its largest parameter)."""
    if hasattr(model, "populations"):
        return sum(int(np.prod(p.shape)) for p in model.populations) + sum(int(np.prod(p.shape)) for p in model.inputs)
    from neurocompile.frontend.graph import flatten_graph  # NIR and torch load only for a graph
    from neurocompile.frontend.nir_io import single_shape

    nodes, _edges = flatten_graph(model)
    return sum(_node_values(node, single_shape) for node in nodes.values())


def _node_values(node, single_shape) -> int:
    shape = single_shape(getattr(node, "output_type", None))
    if shape is not None:
        return math.prod(shape)
    sizes = [np.size(v) for v in vars(node).values() if isinstance(v, np.ndarray)]
    return max(sizes, default=1)


def check_input_memory(model, inputs) -> None:
    """:func:`check_run_memory` for ``inputs`` ([batch, time, ...], or ``{port: array}``); inputs of
    another shape are left to the backend's checks."""
    first = next(iter(inputs.values()), None) if isinstance(inputs, dict) else inputs
    shape = np.shape(first)
    if len(shape) >= 2:
        check_run_memory(model, int(shape[0]), int(shape[1]))


def check_run_memory(model, batch: int, steps: int) -> None:
    """Refuse a run of ``batch`` samples x ``steps`` steps whose estimate exceeds :func:`memory_limit`."""
    values = values_per_step(model)
    need = batch * steps * values * VALUES_PER_NODE * BYTES_PER_VALUE
    limit = memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"this run needs about {need / 2**30:.3g} GiB ({batch} samples x {steps} steps x {values} values "
            f"per step) and the limit is {limit / 2**30:.3g} GiB: run fewer samples (--limit) or steps (--steps), "
            f"or raise the limit with {LIMIT_VARIABLE}"
        )


def check_learning_memory(program, train: int, test: int, steps: int, checkpoints: int) -> None:
    """Refuse an on-chip learning session whose estimate exceeds :func:`memory_limit`: the training stream
    (``train`` samples x ``steps`` steps of input, one-hot targets and the recorded output, and the shuffled
    copy), the held-out runs of the ``test`` samples (every value, as :func:`check_run_memory` counts
    them) and ``checkpoints`` copies of the plastic program's weights."""
    outputs = sum(math.prod(p.shape) for p in program.populations if p.name in program.outputs)
    inputs = sum(math.prod(p.shape) for p in program.inputs)
    weights = sum(int(np.size(s.weights)) for s in program.synapses)
    stream = train * steps * (2 * inputs + 3 * outputs)
    held_out = test * steps * values_per_step(program) * VALUES_PER_NODE
    need = (stream + held_out + (checkpoints + 2) * weights) * BYTES_PER_VALUE
    limit = memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"on-chip learning needs about {need / 2**30:.3g} GiB ({train} training and {test} held-out samples "
            f"x {steps} steps, {weights} weights) and the limit is {limit / 2**30:.3g} GiB: learn from fewer "
            f"samples (--limit) or steps (--steps), or raise the limit with {LIMIT_VARIABLE}"
        )


def check_training_memory(sizes, batch: int, steps: int, why: str = "") -> None:
    """Refuse training a network of layer ``sizes`` whose parameters (with their gradients and optimizer
    state) and one batch's activations exceed :func:`memory_limit`; ``why`` says where the sizes came from."""
    parameters = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    activations = batch * steps * sum(sizes) * VALUES_PER_NODE
    need = (parameters * TRAINING_COPIES + activations) * BYTES_PER_VALUE
    limit = memory_limit()
    if need > limit:
        raise NeurocompileError(
            f"training the {'-'.join(map(str, sizes))} network needs about {need / 2**30:.3g} GiB ({parameters} "
            f"parameters) and the limit is {limit / 2**30:.3g} GiB{why}; raise the limit with {LIMIT_VARIABLE}"
        )


# --- ANN-to-SNN conversion (neurocompile.onnx.convert) ----------------------------------------------

ANN_BYTES = 8  # the converter's ANN computes in float64
ANN_COPIES = 2  # of a chunk's activations: every layer's output, and torch's or onnxruntime's working memory
MANTISSA_BYTES = 2  # a program's weight mantissas are int16
WEIGHT_COPIES = 4  # of every weight while a model is converted: parsed, normalized, onnxruntime's, the SNN's


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def conversion_weight_bytes(weights: int) -> int:
    """Bytes the ``weights`` parameters of a converted model hold (:data:`WEIGHT_COPIES` float64 copies)."""
    return weights * ANN_BYTES * WEIGHT_COPIES


def ann_chunk(*, weights: int, values: int, kept: int, samples: int, fixed_batch: int | None = None) -> int:
    """Samples per chunk of the converter's ANN passes over ``samples`` calibration samples: all of them
    when they fit, else as many as fit. The model holds ``weights`` parameters (:func:`conversion_weight_bytes`);
    a chunk needs ``values`` values per sample (every layer's output, and the largest working buffer, in
    float64, :data:`ANN_COPIES` times); ``kept`` values per sample (the layers whose percentiles are taken)
    are kept for every sample. onnxruntime runs a model with a fixed batch ``fixed_batch`` samples at a time
    (padded), so at least that many must fit. Refused in one line, naming the part that is too large and
    the way out, when they do not fit :func:`memory_limit`."""
    limit = memory_limit()
    held = conversion_weight_bytes(weights)
    per_chunk = values * ANN_BYTES * ANN_COPIES
    batch = fixed_batch or 1
    calibration = samples * kept * ANN_BYTES
    need = held + calibration + batch * per_chunk
    if need <= limit:
        return int(min(samples, (limit - held - calibration) // per_chunk))
    parts = (
        f"{weights} weights: {_gib(held)}; {samples} calibration samples x {kept} values of the ReLU and output "
        f"layers: {_gib(calibration)}; {batch} x {values} values of every layer: {_gib(batch * per_chunk)}"
    )
    fitting = (limit - held - batch * per_chunk) // (kept * ANN_BYTES) if kept else 0
    if fitting >= 1:
        fix = f"calibrate on at most {fitting} samples (--calibration-samples {fitting})"
    elif fixed_batch and held + calibration + per_chunk <= limit:
        fix = f"export the model with a dynamic batch dimension instead of its fixed batch of {fixed_batch}"
    else:
        fix = "convert a smaller model"
    raise NeurocompileError(
        f"converting this model needs about {_gib(need)} ({parts}; float64) and the limit is {_gib(limit)}: "
        f"{fix}, or raise the limit with {LIMIT_VARIABLE}"
    )


def run_chunk(
    values: int,
    samples: int,
    steps: int,
    *,
    together: int = 1,
    held: int = 0,
    what: str = "one sample",
    fewer: str = "",
) -> int:
    """Samples per chunk for ``samples`` runs of ``steps`` steps of a model of ``values`` values per step
    (counted as :func:`check_run_memory` counts them), beside ``held`` bytes: all of them when they fit,
    else as many as fit. ``together`` samples must run at once (``what`` names them); when they do not fit
    :func:`memory_limit` the run is refused in one line that suggests fewer steps and, where ``fewer``
    says how to run ``{n}`` samples instead, the number that fits."""
    limit = memory_limit()
    per_sample = steps * values * VALUES_PER_NODE * BYTES_PER_VALUE
    need = held + together * per_sample
    if need > limit:
        weights = f", and {_gib(held)} of weights" if held * 100 >= need else ""
        fitting = max(0, limit - held) // per_sample
        advice = "run fewer steps (--steps)"
        if fewer and fitting >= 1:
            advice += ", or " + fewer.format(n=fitting)
        raise NeurocompileError(
            f"{what} needs about {_gib(need)} ({together} samples x {steps} steps x {values} values per step"
            f"{weights}) and the limit is {_gib(limit)}: {advice}, or raise the limit with {LIMIT_VARIABLE}"
        )
    return int(max(together, min(samples, (limit - held) // per_sample)))


def check_compile_memory(dense, held: int = 0) -> int:
    """Refuse a fixed-point compilation whose synapse matrices do not fit :func:`memory_limit` beside
    ``held`` bytes; returns the bytes the matrices keep. The compiler (``compiler.normalize``) builds
    every synapse that is not one convolution as a dense ``n_dst x n_src`` matrix: its weight (already in
    ``held``) when the chain is one affine layer, else a float64 matrix made by pushing an ``n_identity x
    n_identity`` identity through it; ``dense`` lists them as ``(name, n_identity (0: none), values, n_dst,
    n_src)``, ``values`` the values per source neuron of the layers that the identity goes through. Each keeps
    the program's 16-bit mantissas, and an identity's image its float64 matrix; the largest identity and its
    images are held while it is built."""
    limit = memory_limit()
    kept = sum(
        n_src * n_dst * (MANTISSA_BYTES + (ANN_BYTES if identity else 0))
        for _name, identity, _values, n_dst, n_src in dense
    )
    name, n_identity, values, n_dst, n_src = max(
        dense, key=lambda c: c[1] * (c[1] + c[2] + c[3]), default=("", 0, 0, 0, 0)
    )
    building = n_identity * (n_identity + values + n_dst) * ANN_BYTES
    need = held + kept + building
    if need > limit:
        how = f" from a {n_identity} x {n_identity} identity: {_gib(building)}" if n_identity else ""
        raise NeurocompileError(
            f"the fixed-point compilation needs about {_gib(need)} (synapse '{name}' is built as a dense "
            f"{n_dst} x {n_src} matrix{how}; the dense synapses keep {_gib(kept)}, the weights {_gib(held)}) "
            f"and the limit is {_gib(limit)}: convert a model with narrower layers, or raise the limit with "
            f"{LIMIT_VARIABLE}"
        )
    return kept
