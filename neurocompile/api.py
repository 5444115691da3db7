"""The pipeline as Python functions: what the ``neurocompile`` commands do, without the printing.

    graph = neurocompile.export("model.pt")                     # or export(module, input_shape=(64,))
    program, report = neurocompile.compile(graph, calibration="digits")
    x, y = neurocompile.load_inputs(data="digits", steps=16, limit=100)
    recording = neurocompile.simulate(program, x, backend="cpu")

The commands (:mod:`neurocompile.cli`) parse arguments, call these functions and print; every failure caused by
input is a one-line :class:`~neurocompile.errors.NeurocompileError`. The stages: ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import nir
import numpy as np
import torch

from neurocompile.analysis.metrics import program_synops
from neurocompile.backends import BACKENDS, BackendEntry, backend_entry, create_backend
from neurocompile.backends.base import require_spikes
from neurocompile.compiler.pipeline import compile_graph, lower_float
from neurocompile.data import DATASETS, dataset_file, drained, fit_steps, is_event_data, load_dataset, read_spike_file
from neurocompile.errors import GraphError, NeurocompileError
from neurocompile.files import MAX_ARRAY_BYTES, check_outputs, write_atomically
from neurocompile.frontend.nir_io import load_graph, validate_graph
from neurocompile.frontend.peer_modules import export_peer, library_of
from neurocompile.frontend.torch_export import convention_from_metadata, export_checkpoint, write_nir
from neurocompile.frontend.torch_export import export as export_module
from neurocompile.ir.program import FixedPointProgram
from neurocompile.learning import onchip, session
from neurocompile.resources import check_input_memory
from neurocompile.semantics.discretization import Convention, get_convention
from neurocompile.training.trainer import TrainConfig, output_paths, save_outputs
from neurocompile.training.trainer import train as run_training

MODEL_SUFFIXES = (".nir", ".pt", ".ncp")


def resolve_convention(convention=None, *, dt: float | None = None, reset: str | None = None, graph=None):
    """A :class:`~neurocompile.semantics.discretization.Convention` from a preset name, a Convention or None:
    the one ``graph`` records in its metadata (written by ``export`` and ``convert``), else the
    ``neurocompile`` preset. ``dt`` and ``reset`` override it when given."""
    if convention is None and isinstance(graph, nir.NIRGraph):
        convention = convention_from_metadata(graph)
    if convention is None or isinstance(convention, str):
        return get_convention(convention or "neurocompile", dt=dt, reset=reset)
    if not isinstance(convention, Convention):
        raise NeurocompileError(f"convention: expected a preset name or a Convention, got {type(convention).__name__}")
    return convention.with_options(**{k: v for k, v in {"dt": dt, "reset": reset}.items() if v is not None})


def _is_module(obj) -> bool:
    return isinstance(obj, torch.nn.Module)


def is_program(model) -> bool:
    """Whether ``model`` is a compiled :class:`~neurocompile.ir.program.FixedPointProgram`."""
    return isinstance(model, FixedPointProgram)


# --- export and loading --------------------------------------------------------------------


def export(model, input_shape=None, *, convention=None, output=None, allow_pickle: bool = False):
    """A NIR graph from a checkpoint path (``.pt``) or a PyTorch module; also written to ``output`` if given.

    ``input_shape`` (per sample) and ``convention`` apply to a module and default to its
    attributes; a checkpoint records its own (``input_shape`` is for one that records none). ``allow_pickle`` trusts a pickled module or
    TorchScript file (it can run code). A module built with a peer library (snnTorch, Norse, SpikingJelly,
    Sinabs, Rockpool) is exported by the library's own exporter and read as ``--from LIB==VERSION`` reads its
    file; its convention is the library's preset with the options the network sets, unless ``convention`` is
    given (:mod:`neurocompile.frontend.peer_modules`)."""
    check_outputs([output], _input_files(model))  # before any work, not after
    if isinstance(model, (str, Path)):
        if convention is not None:
            raise NeurocompileError(f"{model}: a checkpoint records its convention; drop it")
        graph = export_checkpoint(model, allow_unsafe=allow_pickle, input_shape=input_shape)
    elif _is_module(model):
        conv = None if convention is None else resolve_convention(convention)
        library = library_of(model)
        if library is None:
            graph = export_module(model, input_shape, conv)
        else:
            graph = export_peer(model, library, input_shape, conv)
    else:
        raise NeurocompileError(f"export: expected a checkpoint path or a torch module, got {type(model).__name__}")
    if output is not None:
        write_nir(graph, output)
    return graph


def load_model(
    path, *, lenient: bool = False, allow_pickle: bool = False, input_shape=None, producer: str | None = None
):
    """Read a model file: a ``.nir`` graph, a ``.pt`` checkpoint (exported to a NIR graph) or a
    ``.ncp`` fixed-point program. ``lenient`` reads graphs that nir's type check rejects; ``producer``
    (``"norse==1.1"``, as ``--from``) repairs a peer library's known exporter defects
    (:mod:`neurocompile.frontend.peer_repairs`); ``allow_pickle`` and ``input_shape``: see :func:`export`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise NeurocompileError(f"{path}: no such file")
    if suffix == ".nir":
        return load_graph(path, lenient=lenient, producer=producer)
    if suffix == ".pt":
        graph = export_checkpoint(path, allow_unsafe=allow_pickle, input_shape=input_shape)
        try:  # what the checkpoint's weights make of the graph is checked as a .nir file's would be
            validate_graph(graph)
        except GraphError as exc:
            raise NeurocompileError(f"{path}: {exc}") from None
        return graph
    if suffix == ".ncp":
        return FixedPointProgram.load(path)
    raise NeurocompileError(f"{path}: unknown model type '{suffix}' (expected {', '.join(MODEL_SUFFIXES)})")


def _as_model(model, lenient: bool = False, **loading):
    """A graph or program from a path (``loading``: ``allow_pickle``, ``input_shape`` of
    :func:`load_model`), a torch module (exported), a graph or a program."""
    if isinstance(model, (str, Path)):
        return load_model(model, lenient=lenient, **loading)
    if _is_module(model):
        return export(model)
    return model


# --- data ----------------------------------------------------------------------------------


def _positive(value, name: str) -> None:
    if value is not None and value <= 0:
        raise NeurocompileError(f"{name} must be positive, got {value}")


def load_inputs(path=None, *, data: str | None = None, steps: int | None = None, limit: int | None = None):
    """Inputs and labels: ``(x float32 [batch, time, ...], labels or None)``.

    Either ``path``, a spike file (``.npy``, or ``.npz`` with ``x`` and optional ``y``; ``steps``
    cuts or zero-pads it), or ``data``, a dataset's test split (``digits``, ``digits-rows``, an
    ``.npz`` dataset or event data; ``steps`` is its encoding length or number of bins, default 16).
    ``limit`` keeps the first N (event data reads no others)."""
    if path is not None and data is not None:
        raise NeurocompileError("give either an input file or a dataset, not both")
    _positive(limit, "limit")
    if path is not None:
        x, labels = read_spike_file(path, "input")
        if steps is not None:
            _check_padded_size(x, steps, path)
            x = fit_steps(x, steps)
    elif data is not None:
        x, labels = load_dataset(data, steps=steps if steps is not None else 16, split="test", limit=limit)
    else:
        raise NeurocompileError("no input: give an input file or a dataset")
    if limit is not None:
        x, labels = x[:limit], (None if labels is None else labels[:limit])
    return x, labels


def _check_padded_size(x: np.ndarray, steps: int, path) -> None:
    """Refuse zero-padding ``x`` to ``steps`` when the result would not fit what an input file may hold."""
    need = x.shape[0] * max(steps, 0) * int(np.prod(x.shape[2:])) * 4
    if need > MAX_ARRAY_BYTES:
        raise NeurocompileError(
            f"input '{path}': {steps} steps would need {need / 2**30:.3g} GiB as float32; "
            f"at most {MAX_ARRAY_BYTES / 2**30:g} GiB"
        )


def load_calibration(spec, steps: int = 16, limit: int = 256) -> np.ndarray:
    """At most ``limit`` calibration spikes from ``digits``/``digits-rows`` or event data (the training split,
    ``steps`` long), an ``.npy`` file or an ``.npz`` file (key ``x_train`` or ``x``)."""
    if str(spec) in DATASETS or is_event_data(spec):
        return load_dataset(str(spec), steps=steps, split="train", limit=limit)[0]
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
    split_weights: bool = False,
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
    ``method``, ``percentile``, ``bias_onset``, ``split_weights``: see :func:`neurocompile.compiler.quantize.quantize`.
    ``output``: also write the program there (``.ncp``). ``source``: where the graph came from, kept in
    the program's metadata (default: the path, when ``graph`` is one)."""
    check_outputs([output], _input_files(graph, calibration))  # before any work, not after
    source = source or (str(graph) if isinstance(graph, (str, Path)) else None)
    graph = _as_model(graph, lenient=lenient)
    if is_program(graph):
        raise NeurocompileError("compile: the model is already a fixed-point program")
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration, steps, samples)
    conv = resolve_convention(convention, graph=graph)
    options = dict(method=method, percentile=percentile, bias_onset=bias_onset, split_weights=split_weights)
    program, report = compile_graph(graph, conv, calibration=calibration, source=source, **options)
    if output is not None:
        save_program(program, output)
    return program, report


def _input_files(*sources) -> list:
    """The files and folders the sources read (not objects or dataset names): what an output must not overwrite."""
    return [dataset_file(s) for s in sources if isinstance(s, (str, Path)) and str(s) not in DATASETS]


def save_program(program, path) -> Path:
    """Write ``program`` to ``path`` (``.ncp``, atomically); a one-line error if it cannot."""
    return write_atomically(path, program.save, "program")


# --- simulate --------------------------------------------------------------------------------


def model_for_backend(model, backend: str, convention=None, options: dict | None = None):
    """What ``backend`` runs (its registry entry's ``model``): a NIR graph, or a program, compiled here
    from a graph without calibration, or lowered unquantized where ``options`` ask for it (Lava's
    ``floating_pt``)."""
    entry = backend_entry(backend)
    if entry.model == "graph":
        if is_program(model):
            runs = " or ".join(name for name, other in BACKENDS.items() if other.model == "program")
            raise NeurocompileError(f"a fixed-point program (.ncp) runs on the {runs} backend, not {backend}")
        return model
    if is_program(model):
        return model
    conv = resolve_convention(convention, graph=model)
    if entry.runs_unquantized(options or {}):
        return lower_float(model, conv)
    program, _report = compile_graph(model, conv)
    return program


def check_device(device: str) -> None:
    """A one-line error for a string that is not a torch device."""
    try:
        torch.device(device)
    except RuntimeError:
        raise NeurocompileError(f"unknown torch device '{device}' (use cpu or cuda)") from None


def backend_options(entry: BackendEntry, **available) -> dict:
    """Of the ``available`` run options, those that the backend of ``entry`` takes."""
    return {name: available[name] for name in entry.options}


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
    drain: bool = True,
):
    """Run ``model`` on ``backend`` (``float``, ``cpu`` or ``lava``); returns the Recording.

    ``model``: a NIR graph, a program, a torch module or a path (``.nir``, ``.pt``, ``.ncp``); a
    graph for the cpu or lava backend is compiled first (see :func:`model_for_backend`).
    ``inputs``: ``[batch, time, *input_shape]`` (array or tensor) or a spike file: spikes (0 or 1)
    on every backend, or with ``graded_inputs`` any real values where the model is float (the float
    backend, a float program). ``drain`` (default): a compiled program runs ``output_latency()`` silent steps
    after the inputs, so that the last inputs reach its outputs (the recording is that much longer). The
    recording's ``metadata["synops"]`` holds the synaptic operations when they can be counted."""
    model = _as_model(model, lenient)
    conv = resolve_convention(convention, graph=model)
    entry = backend_entry(backend)
    if entry.device:
        check_device(device)
    options = backend_options(entry, convention=conv, device=device, tag=lava_tag, hardware=hardware)
    runnable = model_for_backend(model, backend, conv, options)
    if isinstance(inputs, (str, Path)):
        inputs, _labels = load_inputs(inputs)
    x = inputs.detach().cpu().numpy() if _is_tensor(inputs) else inputs  # checked by the backend, not cast
    if drain and is_program(runnable):
        x = drained(x, runnable.output_latency())
    check_input_memory(runnable, x)
    if not graded_inputs:
        require_spikes(x, f"{backend} backend", "graded values: --graded-inputs, float models only")
    runner = create_backend(backend, runnable, **options)
    recording = runner.run(x, record=record, progress=progress)
    if recording.metadata.get("synops") is None and is_program(runnable):
        synops = program_synops(runnable, x, recording)
        if synops is not None:
            recording.metadata["synops"] = synops
    return recording


def _is_tensor(obj) -> bool:
    return isinstance(obj, torch.Tensor)


# --- train -----------------------------------------------------------------------------------


def train(config=None, *, output=None, progress: bool | None = None, **options):
    """Train a spiking network: returns ``(model, metrics)``.

    ``config`` is a :class:`~neurocompile.training.trainer.TrainConfig` (default: its defaults);
    keyword ``options`` replace its fields, e.g. ``train(rule="ottt", epochs=5)``. With
    ``output`` (a ``.pt`` path) the checkpoint, learning curve and metrics JSON are written too,
    and ``metrics["outputs"]`` names them. ``progress``: a bar per epoch (loss, training and test
    accuracy); by default where someone watches, a terminal or a Jupyter notebook."""
    config = config if config is not None else TrainConfig()
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise NeurocompileError(f"train: unknown option(s) {', '.join(unknown)}")
    config = dataclasses.replace(config, **options)
    if output is not None:  # before minutes of training, not after
        written = list(output_paths(output).values())
        check_outputs(written, _input_files(config.data))
    model, metrics = run_training(config, progress=_watched() if progress is None else progress)
    if output is not None:
        metrics["outputs"] = save_outputs(model, metrics, output)
    return model, metrics


def _watched() -> bool:
    """Whether someone watches the progress: stderr is a terminal, or this runs in a Jupyter kernel."""
    return "ipykernel" in sys.modules or bool(sys.stderr and sys.stderr.isatty())


# --- learn (on chip) ---------------------------------------------------------------------------


def learn(
    model,
    rule: str = "ottt",
    *,
    backend: str = "cpu",
    data: str = "digits",
    layers: str = "readout",
    lr: float = 0.003,
    hidden_lr: float | None = None,
    surrogate_alpha: float | None = None,
    epochs: int = 1,
    seed: int = 0,
    steps: int | None = None,
    limit: int | None = None,
    reinit_readout: str | None = None,
    init: str = "trained",
    replay: int = 0,
    replay_data=None,
    checkpoints: int = 10,
    window: int = 100,
    output=None,
    plot=None,
    nir_output=None,
    progress: bool = False,
    lenient: bool = False,
    allow_pickle: bool = False,
    input_shape=None,
):
    """Learn on chip: ``rule`` (``ottt``, ``stllr``) compiled into the program's learning engine
    (:func:`neurocompile.learning.onchip.compile_learning`), run on ``backend`` over the training split of
    ``data``; returns ``(learned, result)``.

    ``model``: a path (``.pt``/``.nir``, compiled first and calibrated on ``data``'s training split;
    ``.ncp`` used as is), a graph, a torch module or a fixed-point program. ``data``: ``digits``,
    ``digits-rows``, an ``.npz`` dataset with labels or event data; the training split (``limit``: its first N
    samples, encoded with ``seed``) streams back to back, ``steps`` steps a sample (neuron state
    resets between samples), in an order shuffled with ``seed``, ``epochs`` times, with learning on.
    ``lr``: the readout's learning rate, ``hidden_lr`` the hidden layers' (default ``lr``).
    ``surrogate_alpha``: the slope of the surrogate (default: the offline trainers' slope).
    ``reinit_readout`` (``zero``/``random``) replaces the readout's weights first (random: small even
    integers, seeded). ``init="random"`` (with ``layers="all"``) draws the hidden layers anew (uniform, the
    compiled layers' spread, seeded) and zeroes the readout: the whole network learns from scratch. ``replay``
    samples of ``replay_data``'s training split (what the network already knows; as even a share of each class
    as it allows) join the training split in every pass, so that learning the new data does not erase it. The held-out split (encoded as ``simulate`` does) is classified on the CPU by
    the deployed program (:func:`neurocompile.learning.onchip.without_learning`) before learning, at about
    ``checkpoints`` weight checkpoints along the stream and after learning; the running training accuracy
    comes from the output recorded during learning (correct or not per sample, mean over the last ``window``).

    ``learned`` is the learned program in its deployed form; ``result`` a JSON-able dict (figures,
    the learning report, curves, timing). ``output`` (``.ncp``) and ``plot`` (``.png``) are written
    only when everything succeeded, and so is ``nir_output``: the learned network as NIR, its weights
    dequantized into the source graph (:func:`neurocompile.learning.onchip.learned_graph`; needs a graph source).
    ``allow_pickle``, ``input_shape``: for a ``.pt`` path, see :func:`export`."""
    start = time.perf_counter()
    asked = session.SessionOptions(
        rule=rule,
        backend=backend,
        layers=layers,
        lr=lr,
        hidden_lr=hidden_lr,
        surrogate_alpha=surrogate_alpha,
        epochs=epochs,
        seed=seed,
        steps=steps,
        limit=limit,
        reinit_readout=reinit_readout,
        init=init,
        replay=replay,
        replay_data=None if replay_data is None else str(replay_data),
        checkpoints=checkpoints,
        window=window,
    )
    asked.check()
    check_outputs([output, plot, nir_output], _input_files(model, data, replay_data))  # before minutes of learning
    source = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    graph = _as_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    if nir_output is not None and is_program(graph):
        raise NeurocompileError("learn: --nir needs the model's NIR graph (a .pt or .nir), not a compiled program")
    streams = session.learning_data(data, steps, seed, limit, replay, replay_data)
    program = graph if is_program(graph) else compile(graph, streams.calibration, steps=streams.steps)[0]
    compile_s = time.perf_counter() - start
    options = dict(model=source, rule=rule, layers=layers, backend=backend, data=str(data), lr=float(lr))
    options.update(hidden_lr=None if hidden_lr is None else float(hidden_lr))
    options.update(epochs=int(epochs), seed=int(seed), steps=streams.steps, reinit_readout=reinit_readout, init=init)
    learned, result = session.learn_on_chip(program, streams, asked, progress, options)
    result["timing"].update(compile_s=compile_s, total_s=time.perf_counter() - start)
    learned_nir = None
    if nir_output is not None:
        learned_nir = onchip.learned_graph(graph, onchip.without_learning(program), learned)
    session.write_learned(learned, result, output, plot, learned_nir, nir_output)
    return learned, result
