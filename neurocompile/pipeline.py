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
from pathlib import Path

import numpy as np

from .backends import BACKENDS, create_backend
from .errors import NeurocompileError

MODEL_SUFFIXES = (".nir", ".pt", ".ncp")
CALIBRATION_DATASETS = ("digits", "digits-rows")


def resolve_convention(convention=None, *, dt: float | None = None, reset: str | None = None):
    """A :class:`~neurocompile.discretization.Convention` from a preset name, a Convention or None
    (the ``neurocompile`` preset); ``dt`` and ``reset`` override it when given."""
    from .discretization import Convention, get_convention

    if convention is None or isinstance(convention, str):
        return get_convention(convention or "neurocompile", dt=dt, reset=reset)
    if not isinstance(convention, Convention):
        raise NeurocompileError(f"convention: expected a preset name or a Convention, got {type(convention).__name__}")
    return convention.with_options(**{k: v for k, v in {"dt": dt, "reset": reset}.items() if v is not None})


def _is_module(obj) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module exists only once torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_program(model) -> bool:
    """Whether ``model`` is a compiled :class:`~neurocompile.program.FixedPointProgram`."""
    from .program import FixedPointProgram

    return isinstance(model, FixedPointProgram)


# --- export and loading --------------------------------------------------------------------


def export(model, input_shape=None, *, convention=None, output=None, allow_pickle: bool = False):
    """A NIR graph from a checkpoint path (``.pt``) or a PyTorch module; also written to ``output`` if given.

    ``input_shape`` (per sample) and ``convention`` apply to a module and default to its
    attributes; a checkpoint records its own. ``allow_pickle`` trusts a pickled module or
    TorchScript file (it can run code)."""
    from .nir_export import export as export_module
    from .nir_export import export_checkpoint, write_nir

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


def load_model(path, *, lenient: bool = False, allow_pickle: bool = False):
    """Read a model file: a ``.nir`` graph, a ``.pt`` checkpoint (exported to a NIR graph) or a
    ``.ncp`` fixed-point program. ``lenient`` reads graphs that nir's type check rejects."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise NeurocompileError(f"{path}: no such file")
    if suffix == ".nir":
        from .nir_io import load_graph

        return load_graph(path, lenient=lenient)
    if suffix == ".pt":
        from .nir_export import export_checkpoint

        return export_checkpoint(path, allow_unsafe=allow_pickle)
    if suffix == ".ncp":
        from .program import FixedPointProgram

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
        from .data import read_spike_file

        x, labels = read_spike_file(path, "input")
        if steps is not None:
            x = fit_steps(x, steps)
    elif data is not None:
        from .data import load_dataset

        x, labels = load_dataset(data, steps=steps if steps is not None else 16, split="test")
    else:
        raise NeurocompileError("no input: give an input file or a dataset")
    _positive(limit, "limit")
    if limit is not None:
        x, labels = x[:limit], (None if labels is None else labels[:limit])
    return x, labels


def load_calibration(spec, steps: int = 16, limit: int = 256) -> np.ndarray:
    """At most ``limit`` calibration inputs from ``digits``/``digits-rows`` (the training split,
    ``steps`` long), an ``.npy`` file or an ``.npz`` file (key ``x_train`` or ``x``)."""
    if str(spec) in CALIBRATION_DATASETS:
        from .data import load_dataset

        x, _ = load_dataset(str(spec), steps=steps, split="train")
        return x[:limit]
    from .data import read_spike_file

    x, _ = read_spike_file(spec, "calibration", x_keys=("x_train", "x"))
    return x[:limit]


# --- compile ---------------------------------------------------------------------------------


def compile(  # the stage's name, as in `neurocompile compile`; shadows the builtin in this module only
    graph,
    calibration=None,
    *,
    convention=None,
    method: str = "maxabs",
    percentile: float = 99.99,
    steps: int = 16,
    samples: int = 256,
    output=None,
    lenient: bool = False,
):
    """Compile a NIR graph into a fixed-point program: returns ``(program, report)``.

    ``graph``: a NIR graph, a path (``.nir``, or ``.pt`` exported first) or a torch module.
    ``calibration``: None, inputs ``[batch, time, *input_shape]``, or a spec for
    :func:`load_calibration` (``"digits"``, a file; ``steps`` and ``samples`` apply to it).
    ``output``: also write the program there (``.ncp``)."""
    from .quantize import compile_graph

    source = str(graph) if isinstance(graph, (str, Path)) else None
    graph = _as_model(graph, lenient=lenient)
    if is_program(graph):
        raise NeurocompileError("compile: the model is already a fixed-point program")
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration, steps, samples)
    conv = resolve_convention(convention)
    program, report = compile_graph(
        graph, conv, calibration=calibration, method=method, percentile=percentile, source=source
    )
    if output is not None:
        save_program(program, output)
    return program, report


def save_program(program, path) -> Path:
    """Write ``program`` to ``path`` (``.ncp``); a one-line error if it cannot."""
    try:
        program.save(path)
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot write program ({exc.strerror or type(exc).__name__})") from None
    return Path(path)


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
    conv = resolve_convention(convention)
    if float_program:
        from .normalize import normalize
        from .quantize import float_program as lower_to_float

        return lower_to_float(normalize(model, conv))
    from .quantize import compile_graph

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
):
    """Run ``model`` on ``backend`` (``float``, ``cpu`` or ``lava``); returns the Recording.

    ``model``: a NIR graph, a program, a torch module or a path (``.nir``, ``.pt``, ``.ncp``); a
    graph for the cpu or lava backend is compiled first (see :func:`model_for_backend`).
    ``inputs``: ``[batch, time, *input_shape]`` (array or tensor) or a spike file. The recording's
    ``metadata["synops"]`` holds the synaptic operations when they can be counted."""
    conv = resolve_convention(convention)
    if backend != "lava":
        check_device(device)
    float_lava = backend == "lava" and lava_tag == "floating_pt"
    runnable = model_for_backend(_as_model(model, lenient), backend, conv, float_program=float_lava)
    if isinstance(inputs, (str, Path)):
        inputs, _labels = load_inputs(inputs)
    x = np.asarray(inputs.detach().cpu() if _is_tensor(inputs) else inputs, dtype=np.float32)
    runner = create_backend(backend, runnable, **backend_options(backend, conv, device, lava_tag, hardware))
    recording = runner.run(x, record=record, progress=progress)
    if recording.metadata.get("synops") is None and is_program(runnable):
        from .metrics import program_synops

        synops = program_synops(runnable, x, recording)
        if synops is not None:
            recording.metadata["synops"] = synops
    return recording


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
    from .training.trainer import TrainConfig, save_outputs
    from .training.trainer import train as run_training

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
