"""The pipeline as Python functions: what the ``neurocompile`` commands do, without the printing.

    import neurocompile

    graph = neurocompile.export("model.pt")                     # or export(module, input_shape=(64,))
    program, report = neurocompile.compile(graph, calibration="digits")
    x, y = neurocompile.load_inputs(data="digits", steps=16, limit=100)
    recording = neurocompile.simulate(program, x, backend="cpu")
    summary = neurocompile.summarize(recording, x, y)           # accuracy, spikes, synops, sparsity
    model, metrics = neurocompile.train(epochs=5)               # or train(TrainConfig(...))

The command modules in :mod:`neurocompile.cli` parse arguments, call these functions and print.
Every failure caused by input is a :class:`~neurocompile.errors.NeurocompileError` with a one-line
message. torch, nir and Lava are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import nir
import numpy as np

from neurocompile.backends import BACKENDS, create_backend
from neurocompile.backends.base import require_spikes
from neurocompile.compiler.pipeline import compile_graph, lower_float
from neurocompile.errors import NeurocompileError
from neurocompile.files import require_folders, save_figure
from neurocompile.resources import check_input_memory

MODEL_SUFFIXES = (".nir", ".pt", ".ncp")
CALIBRATION_DATASETS = ("digits", "digits-rows")


def resolve_convention(convention=None, *, dt: float | None = None, reset: str | None = None, graph=None):
    """A :class:`~neurocompile.semantics.discretization.Convention` from a preset name, a Convention or None:
    the one ``graph`` records in its metadata (written by ``export`` and ``convert``), else the
    ``neurocompile`` preset. ``dt`` and ``reset`` override it when given."""
    from neurocompile.frontend.torch_export import convention_from_metadata
    from neurocompile.semantics.discretization import Convention, get_convention

    if convention is None and isinstance(graph, nir.NIRGraph):
        convention = convention_from_metadata(graph)
    if convention is None or isinstance(convention, str):
        return get_convention(convention or "neurocompile", dt=dt, reset=reset)
    if not isinstance(convention, Convention):
        raise NeurocompileError(f"convention: expected a preset name or a Convention, got {type(convention).__name__}")
    return convention.with_options(**{k: v for k, v in {"dt": dt, "reset": reset}.items() if v is not None})


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module exists only once torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_program(model) -> bool:
    """Whether ``model`` is a compiled :class:`~neurocompile.ir.program.FixedPointProgram`."""
    from neurocompile.ir.program import FixedPointProgram

    return isinstance(model, FixedPointProgram)


# --- export and loading --------------------------------------------------------------------


def export(model, input_shape=None, *, convention=None, output=None, allow_pickle: bool = False):
    """A NIR graph from a checkpoint path (``.pt``) or a PyTorch module; also written to ``output`` if given.

    ``input_shape`` (per sample) and ``convention`` apply to a module and default to its
    attributes; a checkpoint records its own. ``allow_pickle`` trusts a pickled module or
    TorchScript file (it can run code)."""
    from neurocompile.frontend.torch_export import export as export_module
    from neurocompile.frontend.torch_export import export_checkpoint, write_nir

    if isinstance(model, (str, Path)):
        if input_shape is not None or convention is not None:
            raise NeurocompileError(f"{model}: a checkpoint records its input shape and convention; drop them")
        graph = export_checkpoint(model, allow_unsafe=allow_pickle)
    elif _is_module(model):
        conv = None if convention is None else resolve_convention(convention)
        graph = export_module(model, input_shape, conv)
    else:
        raise NeurocompileError(f"export: expected a checkpoint path or a torch module, got {type(model).__name__}")
    if output is not None:
        write_nir(graph, output)
    return graph


def load_model(path, *, lenient: bool = False, allow_pickle: bool = False, producer: str | None = None):
    """Read a model file: a ``.nir`` graph, a ``.pt`` checkpoint (exported to a NIR graph) or a
    ``.ncp`` fixed-point program. ``lenient`` reads graphs that nir's type check rejects; ``producer``
    (``"norse==1.1"``, as ``--from``) repairs a peer library's known exporter defects
    (:mod:`neurocompile.frontend.peer_repairs`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise NeurocompileError(f"{path}: no such file")
    if suffix == ".nir":
        from neurocompile.frontend.nir_io import load_graph

        return load_graph(path, lenient=lenient, producer=producer)
    if suffix == ".pt":
        from neurocompile.errors import GraphError
        from neurocompile.frontend.nir_io import validate_graph
        from neurocompile.frontend.torch_export import export_checkpoint

        graph = export_checkpoint(path, allow_unsafe=allow_pickle)
        try:  # what the checkpoint's weights make of the graph is checked as a .nir file's would be
            validate_graph(graph)
        except GraphError as exc:
            raise NeurocompileError(f"{path}: {exc}") from None
        return graph
    if suffix == ".ncp":
        from neurocompile.ir.program import FixedPointProgram

        return FixedPointProgram.load(path)
    raise NeurocompileError(f"{path}: unknown model type '{suffix}' (expected {', '.join(MODEL_SUFFIXES)})")


def _as_model(model, lenient: bool = False):
    """A graph or program from a path, a torch module (exported), a graph or a program."""
    if isinstance(model, (str, Path)):
        return load_model(model, lenient=lenient)
    if _is_module(model):
        return export(model)
    return model


# --- data ----------------------------------------------------------------------------------


def _positive(value, name: str) -> None:
    if value is not None and value <= 0:
        raise NeurocompileError(f"{name} must be positive, got {value}")


def fit_steps(x: np.ndarray, steps: int) -> np.ndarray:
    """``x [batch, time, ...]`` cut or zero-padded to ``steps`` time steps."""
    _positive(steps, "steps")
    if x.shape[1] >= steps:
        return x[:, :steps]
    pad = np.zeros((x.shape[0], steps - x.shape[1], *x.shape[2:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=1)


def load_inputs(path=None, *, data: str | None = None, steps: int | None = None, limit: int | None = None):
    """Inputs and labels: ``(x float32 [batch, time, ...], labels or None)``.

    Either ``path``, a spike file (``.npy``, or ``.npz`` with ``x`` and optional ``y``; ``steps``
    cuts or zero-pads it), or ``data``, a dataset's test split (``digits``, ``digits-rows`` or an
    ``.npz`` dataset; ``steps`` is its encoding length, default 16). ``limit`` keeps the first N."""
    if path is not None and data is not None:
        raise NeurocompileError("give either an input file or a dataset, not both")
    if path is not None:
        from neurocompile.data import read_spike_file

        x, labels = read_spike_file(path, "input")
        if steps is not None:
            _check_padded_size(x, steps, path)
            x = fit_steps(x, steps)
    elif data is not None:
        from neurocompile.data import load_dataset

        x, labels = load_dataset(data, steps=steps if steps is not None else 16, split="test")
    else:
        raise NeurocompileError("no input: give an input file or a dataset")
    _positive(limit, "limit")
    if limit is not None:
        x, labels = x[:limit], (None if labels is None else labels[:limit])
    return x, labels


def _check_padded_size(x: np.ndarray, steps: int, path) -> None:
    """Refuse zero-padding ``x`` to ``steps`` when the result would not fit what an input file may hold."""
    from neurocompile.files import MAX_ARRAY_BYTES

    need = x.shape[0] * max(steps, 0) * int(np.prod(x.shape[2:])) * 4
    if need > MAX_ARRAY_BYTES:
        raise NeurocompileError(
            f"input '{path}': {steps} steps would need {need / 2**30:.3g} GiB as float32; "
            f"at most {MAX_ARRAY_BYTES / 2**30:g} GiB"
        )


def load_calibration(spec, steps: int = 16, limit: int = 256) -> np.ndarray:
    """At most ``limit`` calibration spikes from ``digits``/``digits-rows`` (the training split,
    ``steps`` long), an ``.npy`` file or an ``.npz`` file (key ``x_train`` or ``x``)."""
    if str(spec) in CALIBRATION_DATASETS:
        from neurocompile.data import load_dataset

        x, _ = load_dataset(str(spec), steps=steps, split="train")
        return x[:limit]
    from neurocompile.data import read_spike_file

    x, _ = read_spike_file(spec, "calibration", x_keys=("x_train", "x"))
    require_spikes(x[:limit], f"calibration '{spec}'")
    return x[:limit]


# --- compile ---------------------------------------------------------------------------------


def compile(  # the stage's name, as in `neurocompile compile`; shadows the builtin in this module only
    graph,
    calibration=None,
    *,
    convention=None,
    method: str = "maxabs",
    percentile: float = 99.99,
    bias_onset: str = "latency",
    steps: int = 16,
    samples: int = 256,
    output=None,
    lenient: bool = False,
    source: str | None = None,
):
    """Compile a NIR graph into a fixed-point program: returns ``(program, report)``.

    ``graph``: a NIR graph, a path (``.nir``, or ``.pt`` exported first) or a torch module.
    ``calibration``: None, inputs ``[batch, time, *input_shape]``, or a spec for
    :func:`load_calibration` (``"digits"``, a file; ``steps`` and ``samples`` apply to it).
    ``method``, ``percentile``, ``bias_onset``: see :func:`neurocompile.compiler.quantize.quantize`.
    ``output``: also write the program there (``.ncp``). ``source``: where the graph came from, kept in
    the program's metadata (default: the path, when ``graph`` is one)."""
    source = source or (str(graph) if isinstance(graph, (str, Path)) else None)
    graph = _as_model(graph, lenient=lenient)
    if is_program(graph):
        raise NeurocompileError("compile: the model is already a fixed-point program")
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration, steps, samples)
    conv = resolve_convention(convention, graph=graph)
    options = dict(method=method, percentile=percentile, bias_onset=bias_onset)
    program, report = compile_graph(graph, conv, calibration=calibration, source=source, **options)
    if output is not None:
        save_program(program, output)
    return program, report


def save_program(program, path) -> Path:
    """Write ``program`` to ``path`` (``.ncp``, atomically); a one-line error if it cannot."""
    from neurocompile.files import write_atomically

    return write_atomically(path, program.save, "program")


# --- simulate --------------------------------------------------------------------------------


def model_for_backend(model, backend: str, convention=None, *, float_program: bool = False):
    """What ``backend`` runs: a NIR graph for graph backends (``float``), a program for the
    others (``cpu``, ``lava``), compiled here from a graph without calibration, or with
    ``float_program`` lowered unquantized (Lava ``floating_pt``)."""
    if backend not in BACKENDS:
        raise NeurocompileError(f"unknown backend '{backend}'; choose one of {', '.join(sorted(BACKENDS))}")
    if BACKENDS[backend].model == "graph":
        if is_program(model):
            raise NeurocompileError(f"a fixed-point program (.ncp) runs on the cpu or lava backend, not {backend}")
        return model
    if is_program(model):
        return model
    conv = resolve_convention(convention, graph=model)
    if float_program:
        return lower_float(model, conv)

    program, _report = compile_graph(model, conv)
    return program


def check_device(device: str) -> None:
    """A one-line error for a string that is not a torch device."""
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise NeurocompileError(f"unknown torch device '{device}' (use cpu or cuda)") from None


def backend_options(backend: str, convention, device: str, lava_tag: str, hardware: bool) -> dict:
    """The options each registered backend takes."""
    if backend == "float":
        return {"convention": convention, "device": device}
    if backend == "lava":
        return {"tag": lava_tag, "hardware": hardware}
    return {"device": device}


def simulate(
    model,
    inputs,
    backend: str = "float",
    *,
    convention=None,
    device: str = "cpu",
    lava_tag: str = "fixed_pt",
    hardware: bool = False,
    record="all",
    progress: bool = False,
    lenient: bool = False,
    graded_inputs: bool = False,
    drain: bool = False,
):
    """Run ``model`` on ``backend`` (``float``, ``cpu`` or ``lava``); returns the Recording.

    ``model``: a NIR graph, a program, a torch module or a path (``.nir``, ``.pt``, ``.ncp``); a
    graph for the cpu or lava backend is compiled first (see :func:`model_for_backend`).
    ``inputs``: ``[batch, time, *input_shape]`` (array or tensor) or a spike file: spikes (0 or 1)
    on every backend, or with ``graded_inputs`` any real values where the model is float (the float
    backend, a float program). ``drain``: a compiled program runs ``output_latency()`` silent steps after
    the inputs, so that the last inputs reach its outputs (the recording is that much longer). The
    recording's ``metadata["synops"]`` holds the synaptic operations when they can be counted."""
    model = _as_model(model, lenient)
    conv = resolve_convention(convention, graph=model)
    if backend != "lava":
        check_device(device)
    float_lava = backend == "lava" and lava_tag == "floating_pt"
    runnable = model_for_backend(model, backend, conv, float_program=float_lava)
    if isinstance(inputs, (str, Path)):
        inputs, _labels = load_inputs(inputs)
    x = inputs.detach().cpu().numpy() if _is_tensor(inputs) else inputs  # checked by the backend, not cast
    if drain and is_program(runnable):
        x = _drained(x, runnable.output_latency())
    check_input_memory(runnable, x)
    if not graded_inputs:
        require_spikes(x, f"{backend} backend", "graded values: --graded-inputs, float models only")
    runner = create_backend(backend, runnable, **backend_options(backend, conv, device, lava_tag, hardware))
    recording = runner.run(x, record=record, progress=progress)
    if recording.metadata.get("synops") is None and is_program(runnable):
        from neurocompile.analysis.metrics import program_synops

        synops = program_synops(runnable, x, recording)
        if synops is not None:
            recording.metadata["synops"] = synops
    return recording


def _drained(x, steps: int):
    """``x`` ([batch, time, ...], or one per input port) with ``steps`` silent steps appended (what is not
    such an array is left for the backend's input check)."""
    if isinstance(x, dict):
        return {port: _drained(value, steps) for port, value in x.items()}
    x = np.asarray(x)
    return fit_steps(x, x.shape[1] + steps) if x.ndim >= 2 else x


def _is_tensor(obj) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


# --- train -----------------------------------------------------------------------------------


def train(config=None, *, output=None, progress: bool = False, **options):
    """Train a spiking network: returns ``(model, metrics)``.

    ``config`` is a :class:`~neurocompile.training.trainer.TrainConfig` (default: its defaults);
    keyword ``options`` replace its fields, e.g. ``train(rule="ottt", epochs=5)``. With
    ``output`` (a ``.pt`` path) the checkpoint, learning curve and metrics JSON are written too,
    and ``metrics["outputs"]`` names them."""
    from neurocompile.training.trainer import TrainConfig, save_outputs
    from neurocompile.training.trainer import train as run_training

    config = config if config is not None else TrainConfig()
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise NeurocompileError(f"train: unknown option(s) {', '.join(unknown)}")
    config = dataclasses.replace(config, **options)
    model, metrics = run_training(config, progress=progress)
    if output is not None:
        try:
            metrics["outputs"] = save_outputs(model, metrics, output)
        except OSError as exc:
            raise NeurocompileError(f"{output}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return model, metrics


# --- learn (on chip) ---------------------------------------------------------------------------

LEARN_BACKENDS = ("cpu", "lava")
REINIT_CHOICES = ("zero", "random")


def learn(
    model,
    rule: str = "ottt",
    *,
    backend: str = "cpu",
    data: str = "digits",
    layers: str = "readout",
    lr: float = 0.003,
    surrogate_alpha: float | None = None,
    epochs: int = 1,
    seed: int = 0,
    steps: int | None = None,
    limit: int | None = None,
    reinit_readout: str | None = None,
    checkpoints: int = 10,
    window: int = 100,
    output=None,
    plot=None,
    nir_output=None,
    progress: bool = False,
    lenient: bool = False,
):
    """Learn on chip: ``rule`` (``ottt``, ``stllr``) compiled into the program's learning engine
    (:func:`neurocompile.learning.onchip.compile_learning`), run on ``backend`` over the training split of
    ``data``; returns ``(learned, result)``.

    ``model``: a path (``.pt``/``.nir``, compiled first and calibrated on ``data``'s training split;
    ``.ncp`` used as is), a graph, a torch module or a fixed-point program. ``data``: ``digits``,
    ``digits-rows`` or an ``.npz`` dataset with labels; the training split (``limit``: its first N
    samples, encoded with ``seed``) streams back to back, ``steps`` steps a sample (neuron state
    resets between samples), in an order shuffled with ``seed``, ``epochs`` times, with learning on.
    ``surrogate_alpha``: the slope of the surrogate (default: the offline trainers' slope).
    ``reinit_readout`` (``zero``/``random``) replaces the readout's weights first (random: small even
    integers, seeded). The held-out split (encoded as ``simulate`` does) is classified on the CPU by
    the deployed program (:func:`neurocompile.learning.onchip.without_learning`) before learning, at about
    ``checkpoints`` weight checkpoints along the stream and after learning (accuracy as
    :func:`neurocompile.analysis.metrics.accuracy` computes it); the running training accuracy comes from the
    output recorded during learning (correct or not per sample, mean over the last ``window``).

    ``learned`` is the learned program in its deployed form; ``result`` a JSON-able dict (figures,
    the learning report, curves, timing). ``output`` (``.ncp``) and ``plot`` (``.png``) are written
    only when everything succeeded, and so is ``nir_output``: the learned network as NIR, its weights
    dequantized into the source graph (:func:`neurocompile.learning.onchip.learned_graph`; needs a graph source)."""
    from neurocompile.learning import onchip

    start = time.perf_counter()
    _check_learn_options(rule, backend, layers, lr, epochs, steps, limit, reinit_readout, checkpoints, window)
    require_folders([output, plot, nir_output])  # before minutes of learning, not after
    source = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    graph = _as_model(model, lenient=lenient)
    if nir_output is not None and is_program(graph):
        raise NeurocompileError("learn: --nir needs the model's NIR graph (a .pt or .nir), not a compiled program")
    (x_train, y_train), (x_test, y_test), calibration = _learning_data(data, steps, seed, limit)
    steps = int(x_train.shape[1])
    program = graph if is_program(graph) else compile(graph, calibration, steps=steps)[0]
    compile_s = time.perf_counter() - start
    compiled = onchip.without_learning(program)

    slope = {} if surrogate_alpha is None else {"surrogate_alpha": surrogate_alpha}
    learning, report = onchip.compile_learning(program, rule, layers, lr=lr, seed=seed, sample_steps=steps, **slope)
    _reinit_readout(learning.synapse(report.plans[-1].synapse), reinit_readout, seed)
    initial = {plan.synapse: np.array(learning.synapse(plan.synapse).weights) for plan in report.plans}
    held_out = _HeldOut(x_test, y_test)
    stream = _learn_stream(learning, report, backend, x_train, y_train, epochs, seed, checkpoints, held_out, progress)
    options = dict(model=source, rule=rule, layers=layers, backend=backend, data=str(data), lr=float(lr))
    options.update(epochs=int(epochs), seed=int(seed), steps=steps, reinit_readout=reinit_readout)
    result = _learn_result(options, report, stream, held_out, initial, len(y_train), window)
    result["timing"].update(compile_s=compile_s, total_s=time.perf_counter() - start)
    learned_nir = onchip.learned_graph(graph, compiled, stream.deployed) if nir_output is not None else None
    _write_learned(stream.deployed, result, output, plot, learned_nir, nir_output)
    return stream.deployed, result


def _learning_data(data, steps, seed: int, limit):
    """``(train, test, calibration)`` of ``data``: the training split encoded with ``seed`` (its first
    ``limit`` samples; None: all), the held-out split encoded as ``simulate --data`` encodes it, and what a
    graph is calibrated on (a named dataset's calibration set, else the first 256 training samples)."""
    from neurocompile.data import load_dataset

    x_train, y_train = load_dataset(data, steps=steps, split="train", seed=seed)
    test = load_dataset(data, steps=steps, split="test")
    calibration = data if str(data) in CALIBRATION_DATASETS else x_train[:256]
    return (x_train[:limit], y_train[:limit]), test, calibration


def _learn_result(options: dict, report, stream, held_out, initial: dict, train_samples: int, window: int) -> dict:
    """The JSON-able figures of a learning run: ``options`` as given, the plastic synapses (``initial``:
    their weights before learning) and how many weights changed, accuracies, curves, the learning report
    and timing (learning steps counted from the stream)."""
    training = _training_curve(stream.correct, window)
    heldout = stream.heldout
    steps = len(stream.correct) * options["steps"]  # every streamed sample, all epochs
    learned = {name: stream.deployed.synapse(name).weights for name in initial}
    return {
        **options,
        "readout": report.plans[-1].synapse,
        "plastic_synapses": list(initial),
        "train_samples": int(train_samples),
        "test_samples": len(held_out.y),
        "weights_changed": sum(int(np.count_nonzero(learned[name] != w)) for name, w in initial.items()),
        "weights_plastic": sum(int(np.size(w)) for w in initial.values()),
        "accuracy_before": heldout["accuracy"][0],
        "accuracy_after": heldout["accuracy"][-1],
        "training_accuracy": stream.epoch_accuracy,
        "running_training_accuracy": training["accuracy"][-1],
        "learning_kernel": stream.kernel,
        "report": report.to_dict(),
        "curves": {"heldout": heldout, "training": training},
        "timing": {
            "learn_s": stream.learn_s,
            "learning_steps": int(steps),
            "steps_per_s": steps / stream.learn_s if stream.learn_s > 0 else None,
            "evaluate_s": held_out.seconds,
        },
    }


@dataclasses.dataclass
class _Stream:
    """What streaming the training split through a learning program gave."""

    deployed: object  # the learned program without learning rules
    heldout: dict  # held-out accuracy at samples seen: {"samples": [...], "accuracy": [...]}
    correct: np.ndarray  # per streamed sample: classified correctly while learning
    epoch_accuracy: list
    learn_s: float
    kernel: str | None


def _learn_stream(learning, report, backend, x, y, epochs, seed, checkpoints, held_out, progress) -> _Stream:
    """``epochs`` shuffled passes of ``(x, y)`` through ``learning``, with held-out accuracy at
    about ``checkpoints`` weight checkpoints along the stream and after every pass."""
    from neurocompile.learning import onchip

    n, steps = len(y), int(x.shape[1])
    plastic = [plan.synapse for plan in report.plans]
    every = steps * -(-n // max(1, round(checkpoints / epochs)))
    order_rng = np.random.default_rng(int(seed))
    deployed = onchip.without_learning(learning)
    heldout = {"samples": [0], "accuracy": [held_out(deployed)]}
    correct, epoch_accuracy, learn_s, kernel = [], [], 0.0, None
    for epoch in range(epochs):
        order = order_rng.permutation(n)
        rec, seconds = _learn_pass(learning, report, backend, x[order], y[order], every, progress)
        learn_s += seconds
        kernel = rec.metadata.get("learning_kernel", kernel)
        hits = _stream_predictions(rec, learning, n, steps) == y[order]
        correct.append(hits)
        epoch_accuracy.append(float(hits.mean()))
        for k, step in enumerate(rec.metadata.get("checkpoint_steps", [])):
            if step < n * steps:
                weights = {name: rec[f"{name}.weights"][0, k] for name in plastic}
                heldout["samples"].append(epoch * n + step // steps)
                heldout["accuracy"].append(held_out(deployed, weights))
        learning = rec.metadata["programs"][0]
        deployed = onchip.without_learning(learning)
        heldout["samples"].append((epoch + 1) * n)
        heldout["accuracy"].append(held_out(deployed))
    return _Stream(deployed, heldout, np.concatenate(correct), epoch_accuracy, learn_s, kernel)


def _training_curve(correct: np.ndarray, window: int) -> dict:
    """Running training accuracy (mean of the last ``window`` samples) at up to 200 points."""
    window = min(window, len(correct))
    running = _running_mean(correct, window)
    shown = np.unique(np.linspace(1, len(correct), min(len(correct), 200)).round().astype(int))
    return {"window": int(window), "samples": shown.tolist(), "accuracy": running[shown - 1].tolist()}


def _reinit_readout(readout, how: str | None, seed: int) -> None:
    """Replace the readout's weights: ``zero``, or ``random`` small even integers (Lava's mixed-sign
    8-bit truncation keeps them), seeded."""
    if how == "zero":
        readout.weights = np.zeros_like(readout.weights)
    elif how == "random":
        rng = np.random.default_rng([int(seed), 17])
        readout.weights = (2 * rng.integers(-8, 9, size=np.shape(readout.weights))).astype(readout.weights.dtype)


class _HeldOut:
    """Held-out accuracy of a deployed program (optionally with some synapses' weights replaced) on
    the CPU backend; ``seconds`` accumulates the time spent."""

    def __init__(self, x, y):
        self.x, self.y, self.seconds = x, y, 0.0

    def __call__(self, program, weights: dict | None = None) -> float:
        from neurocompile.analysis import metrics

        started = time.perf_counter()
        if weights:
            program = program.with_weights(weights)
        accuracy = metrics.accuracy(simulate(program, self.x, "cpu", record=None), self.y)
        self.seconds += time.perf_counter() - started
        return accuracy


def _learn_pass(learning, report, backend: str, x, y, every: int, progress: bool):
    """One pass of the samples ``x`` (labels ``y``) back to back through the learning program:
    ``(recording, seconds)``; records the plastic weights every ``every`` steps and the output."""
    from neurocompile.learning import onchip

    ports = [p.name for p in learning.spike_ports()]
    if len(ports) != 1:
        raise NeurocompileError(
            f"learn: the program has {len(ports)} input ports ({', '.join(ports)}); learn streams one"
        )
    out = learning.population(learning.outputs[0])
    targets = onchip.target_stream(y, x.shape[1], out.size, report.target_value)
    stream = {ports[0]: onchip.back_to_back(x), onchip.TARGET_PORT: onchip.back_to_back(targets)}
    record = [f"{plan.synapse}.weights" for plan in report.plans] + [f"{out.name}.{_output_variable(out)}"]
    started = time.perf_counter()
    rec = create_backend(backend, learning).run(stream, record=record, checkpoint_every=every, progress=progress)
    return rec, time.perf_counter() - started


def _output_variable(population) -> str:
    return "spikes" if population.spiking else "v"


def _stream_predictions(rec, learning, n: int, steps: int) -> np.ndarray:
    """The class predicted for each of the ``n`` samples of a learning stream, from its recorded output."""
    from neurocompile.analysis import metrics
    from neurocompile.ir.recording import Recording

    out = learning.population(learning.outputs[0])
    key = f"{out.name}.{_output_variable(out)}"
    per_sample = np.asarray(rec[key]).reshape(n, steps, *out.shape)
    return metrics.predictions(Recording({key: per_sample}, [out.name], rec.backend))


def _check_learn_options(rule, backend, layers, lr, epochs, steps, limit, reinit_readout, checkpoints, window) -> None:
    from neurocompile.learning.onchip import LAYER_CHOICES, RULES

    if rule not in RULES:
        raise NeurocompileError(f"learn: rule must be one of {', '.join(RULES)}, got '{rule}'")
    if backend not in LEARN_BACKENDS:
        raise NeurocompileError(f"learn: backend must be one of {', '.join(LEARN_BACKENDS)}, got '{backend}'")
    if layers not in LAYER_CHOICES:
        raise NeurocompileError(f"learn: layers must be one of {', '.join(LAYER_CHOICES)}, got '{layers}'")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise NeurocompileError(f"learn: lr must be a positive number, got {lr}")
    if reinit_readout not in (None, *REINIT_CHOICES):
        raise NeurocompileError(f"learn: reinit_readout must be zero, random or None, got '{reinit_readout}'")
    for name, value in (("epochs", epochs), ("checkpoints", checkpoints), ("window", window)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise NeurocompileError(f"learn: {name} must be a positive integer, got {value!r}")
    for name, value in (("steps", steps), ("limit", limit)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise NeurocompileError(f"learn: {name} must be a positive integer, got {value!r}")


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every index (fewer at the start)."""
    sums = np.cumsum(np.asarray(values, dtype=np.float64))
    lagged = np.concatenate([np.zeros(window), sums[:-window]]) if len(sums) > window else np.zeros(len(sums))
    counts = np.minimum(np.arange(1, len(sums) + 1), window)
    return (sums - lagged[: len(sums)]) / counts


def plot_learning(result: dict, path) -> None:
    """Running training accuracy and held-out accuracy against samples seen, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    train = curves["training"]
    ax.plot(train["samples"], train["accuracy"], label=f"training, running (last {train['window']} samples)")
    ax.plot(curves["heldout"]["samples"], curves["heldout"]["accuracy"], marker="o", label="held-out (learning off)")
    for epoch in range(1, result["epochs"]):
        ax.axvline(epoch * result["train_samples"], color="grey", lw=0.5, ls=":")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"on-chip {result['rule'].upper()} ({result['layers']}) on {result['backend']}, lr {result['lr']:g}: "
        f"held-out {100 * result['accuracy_before']:.1f}% -> {100 * result['accuracy_after']:.1f}%",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)


def _write_learned(program, result: dict, output, plot, graph=None, nir_output=None) -> None:
    """Write the program, the plot and the NIR graph: either all appear or none does."""
    import nir

    from neurocompile.files import write_together

    writers = (
        (plot, lambda p: plot_learning(result, p)),
        (output, program.save),
        (nir_output, lambda p: nir.write(str(p), graph)),
    )
    write_together([(path, write) for path, write in writers if path is not None], "learning outputs")
    if output is not None:
        result["output"] = str(output)
    if plot is not None:
        result["plot"] = str(plot)
    if nir_output is not None:
        result["nir"] = str(nir_output)
