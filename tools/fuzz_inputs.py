"""Fuzz inputs: small valid files of every input format, hostile mutations of them, and a command that reads each.

``tools/fuzz.py`` runs long campaigns from these generators and ``tests/tools/test_fuzz.py`` a bounded number.
Every generator draws from a ``random.Random``: a campaign is reproducible from its seed, and Hypothesis
drives the same generators through ``st.randoms()``.

* :func:`make_seeds` writes valid files: reference-architecture checkpoints (``.pt``), their NIR export
  (``.nir``) and compiled programs (``.ncp``), a hand-made graph of the less common primitives, a float
  program, a learning program, the NIR paper's graphs when ``tests/fixtures`` holds them, and for each model
  matching spikes (``.npy``; ``.npz`` with labels) and datasets (``.npz``, whole or split); and three ONNX
  ReLU networks (Gemm, Conv, MatMul/Reshape/Constant) with analog calibration data for ``neurocompile convert``.
* :func:`make_case` copies what a command needs into a case folder, mutates the file of the format under
  test and returns the command: inspect, simulate, compile, export (NIR and ONNX), learn, train or
  convert, now and then with an integer option at an extreme. Paths in the command are relative to the
  folder, so a kept folder reproduces on its own: ``cd FOLDER && neurocompile ARGV``.

Mutations walk each format's own structure and pick one place uniformly among all of them: every key and
list element of a ``.ncp``'s ``program.json`` and every array member; every field of every node, the edges
and the metadata of a ``.nir`` (subgraphs included); every key of a checkpoint's payload and every tensor;
every array of a spike file or dataset; every initializer, sparse tensor, attribute, dimension and opset
of an ONNX graph (subgraphs included). At the place picked, the key goes missing, appears again under
another spelling (or twice in the JSON text), gains an unknown sibling, or its value gets a wrong type, a
wrong shape or a value from the one table of :data:`EXTREMES`. Structural mutations (links, nesting,
members, layer sizes, external data, subgraphs) and byte-level ones come on top.

:data:`SIGNATURES` are fixed cases: what an independent harness found that these generators once could
not make (``tools/fuzz.py --write-signatures`` writes them into ``tests/fixtures/fuzz-corpus``).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import pickle
import random
import re
import reprlib
import shutil
import signal
import struct
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("nir", "ncp", "pt", "spikes", "dataset", "onnx")
STEPS = 6  # time steps of every seed input
LONG_STEPS = 100_000  # an input this long must take time in proportion (the campaign's timeout detects a hang)
PAPER_NIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nir-paper"
PAPER_GRAPHS = ("braille_noDelay_bias_zero.nir", "lif_norse.nir", "braille_noDelay_bias_zero_subgraph.nir")


@dataclass(frozen=True)
class Model:
    """A valid model in up to three forms (``pt``, ``nir``, ``ncp``), with inputs that fit it."""

    name: str
    files: dict
    spikes: Path  # x.npy [batch, STEPS, *input]
    labelled: Path  # .npz {x, y}: spikes with labels, and a whole dataset
    split: Path  # .npz {x_train, y_train, x_test, y_test}
    classifier: bool = True  # one spike input and a readout: `learn` applies


@dataclass(frozen=True)
class Case:
    """One fuzz case: the command (run in its folder), what was done to the file under test (``file``, a name
    in the folder), the files the case made (``inputs``) and, when the file must be refused whatever the
    command, why (``refuse``): a run that then ends ``ok`` is a bug (``accepted``)."""

    fmt: str
    argv: list
    mutation: str
    file: str = ""
    model: str = ""  # the seed model the case was made from
    inputs: tuple = ()
    refuse: str | None = None


# --- seeds -----------------------------------------------------------------------------------------

ARCHITECTURES = {
    "mlp": ("MLP", {"sizes": [4, 6, 3]}),
    "cuba": ("MLP", {"sizes": [4, 5, 3], "neuron": "CubaLIF", "output_neuron": "LI"}),
    "conv": ("ConvNet", {"input_shape": [1, 6, 6], "channels": 2, "n_out": 3}),
    "rnn": ("RecurrentNet", {"n_in": 4, "n_hidden": 5, "n_out": 3, "neuron": "IF"}),
}


def make_seeds(directory) -> list[Model]:
    """Valid models and inputs in ``directory``: the starting points of every mutation."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    models = [_architecture_seed(directory, name, *spec, rng) for name, spec in ARCHITECTURES.items()]
    models.append(_graph_seed(directory, "zoo", _zoo_graph(rng), rng))
    models.append(_float_program_seed(directory, models[0], rng))
    models.append(_plastic_program_seed(directory, models[0], rng))
    for name in PAPER_GRAPHS:
        if (PAPER_NIR / name).is_file():
            models.append(_paper_seed(directory, PAPER_NIR / name, rng))
    models += [_onnx_seed(directory, name, rng) for name in ONNX_MODELS]
    return models


def _inputs(directory: Path, name: str, input_shape, classes: int, rng) -> dict:
    """Valid spikes, labelled spikes and a split dataset for a model with ``input_shape`` and ``classes``."""
    x = (rng.random((3, STEPS, *input_shape)) < 0.4).astype(np.float32)
    n = 8 * classes
    data = (rng.random((n, STEPS, *input_shape)) < 0.4).astype(np.float32)
    labels = np.arange(n) % classes
    paths = {"spikes": directory / f"{name}-x.npy", "labelled": directory / f"{name}-xy.npz"}
    paths["split"] = directory / f"{name}-split.npz"
    np.save(paths["spikes"], x)
    np.savez(paths["labelled"], x=data, y=labels)
    half = n // 2
    np.savez(paths["split"], x_train=data[:half], y_train=labels[:half], x_test=data[half:], y_test=labels[half:])
    return paths


def _architecture_seed(directory: Path, name: str, architecture: str, config: dict, rng) -> Model:
    from neurocompile import api
    from neurocompile.frontend.checkpoint import save_checkpoint
    from neurocompile.models.architectures import build

    model = build(architecture, config)
    files = {"pt": save_checkpoint(model, directory / f"{name}.pt"), "nir": directory / f"{name}.nir"}
    api.export(files["pt"], output=files["nir"])
    return _compiled(directory, name, files, tuple(model.input_shape), rng)


def _compiled(directory: Path, name: str, files: dict, input_shape, rng) -> Model:
    """The model with its ``.ncp``, compiled from its ``.nir`` with its own spikes as calibration."""
    from neurocompile import api
    from neurocompile.frontend.nir_io import load_graph, single_shape

    graph = load_graph(files["nir"], lenient=True)
    outputs = [n for n in graph.nodes.values() if type(n).__name__ == "Output"]
    classes = single_shape(outputs[0].input_type)[-1]
    inputs = _inputs(directory, name, input_shape, classes, rng)
    files["ncp"] = directory / f"{name}.ncp"
    api.compile(files["nir"], np.load(inputs["spikes"]), output=files["ncp"])
    return Model(name, files, **inputs)


def _zoo_graph(rng):
    """Input -> Affine -> Delay -> Scale -> LIF -> Linear -> Threshold -> Affine -> CubaLI -> Output."""
    import nir

    def weights(*shape):
        return rng.normal(0, 0.8, shape).astype(np.float32)

    nodes = {
        "input": nir.Input(np.array([4])),
        "fc1": nir.Affine(weights(5, 4), np.zeros(5, np.float32)),
        "delay": nir.Delay(np.full(5, 2e-4)),
        "scale": nir.Scale(np.full(5, 2.0)),
        "lif": nir.LIF(
            tau=np.full(5, 1e-3), r=np.ones(5), v_leak=np.zeros(5), v_threshold=np.ones(5), v_reset=np.zeros(5)
        ),
        "lin": nir.Linear(weights(5, 5)),
        "thr": nir.Threshold(np.full(5, 0.5)),
        "fc2": nir.Affine(weights(3, 5), np.zeros(3, np.float32)),
        "readout": nir.CubaLI(tau_syn=np.full(3, 1e-3), tau_mem=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    chain = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])))


def _graph_seed(directory: Path, name: str, graph, rng) -> Model:
    import nir

    path = directory / f"{name}.nir"
    nir.write(str(path), graph)
    return _compiled(directory, name, {"nir": path}, (4,), rng)


def _paper_seed(directory: Path, source: Path, rng) -> Model:
    """A graph from the NIR paper; compiled when it loads (the subgraph one never does: it stays a .nir)."""
    from neurocompile.errors import NeurocompileError
    from neurocompile.frontend.nir_io import single_shape

    name = source.stem
    files = {"nir": directory / source.name}
    shutil.copyfile(source, files["nir"])
    shape = single_shape(_paper_input_type(files["nir"]))
    try:
        return _compiled(directory, name, files, shape, rng)
    except NeurocompileError:
        return Model(name, files, **_inputs(directory, name, shape, 2, rng))


def _paper_input_type(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as fh:
        return {"input": fh["node/nodes/input/shape"][()]}


def _float_program_seed(directory: Path, source: Model, rng) -> Model:
    """The MLP lowered unquantized (``number_format="float"``)."""
    from neurocompile.compiler.float_program import float_program
    from neurocompile.compiler.normalize import normalize
    from neurocompile.frontend.nir_io import load_graph

    path = directory / "float.ncp"
    float_program(normalize(load_graph(source.files["nir"]))).save(path)
    return Model("float", {"ncp": path}, source.spikes, source.labelled, source.split)


def _plastic_program_seed(directory: Path, source: Model, rng) -> Model:
    """The MLP with every layer learning on chip (OTTT: the readout from a target port, the hidden layer by
    feedback alignment), as ``learn --layers all`` compiles it."""
    from neurocompile.ir.program import FixedPointProgram
    from neurocompile.learning.onchip import compile_learning

    path = directory / "plastic.ncp"
    learning, _report = compile_learning(FixedPointProgram.load(source.files["ncp"]), "ottt", "all", sample_steps=STEPS)
    learning.save(path)
    return Model("plastic", {"ncp": path}, **_inputs(directory, "plastic", (4,), 3, rng), classifier=False)


# --- cases -----------------------------------------------------------------------------------------


def make_case(fmt: str, models: list[Model], rng: random.Random, folder, pool=()) -> Case:
    """A mutated file of format ``fmt`` in ``folder`` and a command that reads it. ``pool`` holds ``(folder,
    case, weight)`` of earlier cases worth mutating further (``tools/fuzz.py --guided``): a third of the cases
    then mutate the file of one of them (drawn by weight) instead of a seed's, with the same model and a
    command drawn afresh."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = None
        if pool and rng.random() < 1 / 3:
            source, pooled, _weight = rng.choices(pool, weights=[entry[2] for entry in pool])[0]
            start = Start(pooled.model, source / pooled.file, pooled.mutation)
        case = CASE_MAKERS[fmt](models, rng, folder, start)
        if rng.random() < 0.15:
            case = _extreme_option(rng, case)
        refuse = MUST_REFUSE[fmt](folder / case.file) if fmt in MUST_REFUSE else None
    return dataclasses.replace(case, inputs=tuple(sorted(p.name for p in folder.iterdir())), refuse=refuse)


@dataclass(frozen=True)
class Start:
    """Where a guided case starts: an earlier case's model, its mutated file and what was done to it."""

    model: str
    file: Path
    mutation: str


def _choose(rng, candidates: list[Model], start: Start | None) -> Model:
    """A model among ``candidates``: the start's, or one drawn."""
    chosen = [m for m in candidates if start is not None and m.name == start.model]
    return chosen[0] if chosen else rng.choice(candidates)


def _mutate_from(rng, start: Start | None, source: Path, target: Path, mutate_semantic) -> str:
    """A mutation of the seed's file ``source`` (:func:`_mutate_file`), or of the start's file: semantic, but
    bytewise where the semantic mutation cannot read it."""
    if start is None:
        return _mutate_file(rng, source, target, mutate_semantic)
    try:
        how = mutate_semantic(rng, start.file, target)
    except Exception:
        data, how = mutate_bytes(rng, start.file.read_bytes())
        target.write_bytes(data)
    return f"{how} <- {start.mutation}"[:500]


def _model_case(form: str, mutate_semantic):
    """A case maker for a model format: mutate a seed's ``form`` file, then run a command on it."""

    def make(models, rng, folder, start=None):
        model = _choose(rng, [m for m in models if form in m.files], start)
        name = f"model.{form}"
        mutation = _mutate_from(rng, start, model.files[form], folder / name, mutate_semantic)
        return Case(form, _model_command(rng, form, name, model, folder), mutation, name, model.name)

    return make


def _model_command(rng, form: str, name: str, model: Model, folder: Path) -> list:
    """A command that loads the model file ``name``: inspect, simulate, compile, export (NIR or ONNX) or learn."""
    commands = ["simulate cpu"]
    commands += ["inspect"] if form in ("nir", "ncp") else []
    commands += ["simulate float", "export onnx"] if form in ("nir", "pt") else []
    commands += ["compile"] if form == "nir" else []
    commands += ["export"] if form == "pt" else []
    commands += ["learn"] if model.classifier and rng.random() < 0.15 else []
    command = rng.choice(commands)
    lenient = _maybe(rng, "--lenient") if form == "nir" else []
    if command == "inspect":
        return ["inspect", name, *_maybe(rng, "--json"), *lenient]
    if command == "compile":
        calibrate = _maybe(rng, "--calibrate", _copy(model.spikes, folder, "x.npy"))
        return ["compile", name, "-o", "out.ncp", *calibrate, *_maybe(rng, "--lenient")]
    if command == "export":
        return ["export", name, "-o", "out.nir", *_maybe(rng, "--allow-pickle")]
    if command == "export onnx":
        return ["export", name, "--to", "onnx", "-o", "out.onnx", *lenient]
    if command == "learn":
        graph = _maybe(rng, "--nir", "learned.nir") if form != "ncp" else []
        return _learn_command(rng, name, _copy(model.labelled, folder, "data.npz")) + graph + lenient
    if rng.random() < 0.7:
        data = ["--input", _copy(model.spikes, folder, "x.npy")]
    else:
        data = ["--data", _copy(model.labelled, folder, "data.npz"), "--steps", str(STEPS)]
    return _simulate_command(rng, name, command.split()[1], data) + lenient


def _simulate_command(rng, model: str, backend: str, data: list) -> list:
    limit = ["--limit", str(rng.choice((1, 2, 4)))] if rng.random() < 0.7 else []
    return ["simulate", model, "--backend", backend, *data, *limit, *_maybe(rng, "--json")]


def _learn_command(rng, model: str, data: str, steps: int | None = STEPS) -> list:
    rule = ["--rule", rng.choice(("ottt", "stllr")), "--layers", rng.choice(("readout", "all"))]
    steps_option = ["--steps", str(steps)] if steps is not None else []
    return ["learn", model, *rule, "--data", data, *steps_option, "--limit", "8", "-o", "learned.ncp"]


def _train_command(rng, data: str, steps: int | None = STEPS) -> list:
    """``train`` on a small dataset: one epoch of a small network on one CPU thread."""
    argv = ["train", "--data", data, "--epochs", "1", "--hidden", rng.choice(("5", "6,4")), "--batch-size", "8"]
    argv += ["--threads", "1", "--device", "cpu", "-o", "trained.pt"]
    argv += ["--steps", str(steps)] if steps is not None else []
    argv += _maybe(rng, "--rule", rng.choice(("ottt", "stllr"))) + _maybe(rng, "--hardware-aware")
    return argv + _maybe(rng, "--output-neuron", "LI") + _maybe(rng, "--json")


def _convert_command(rng) -> list:
    argv = ["convert", "model.onnx", "-o", "out.nir", "--calibrate", "data.npz", "--limit", "4"]
    argv += ["--steps", rng.choice(("4", "2,4"))] + _maybe(rng, "--readout", "voltage")
    return argv + _maybe(rng, "--percentile", rng.choice(("0", "50", "100", "101", "-1", "nan", "inf")), p=0.1)


def _spikes_case(models, rng, folder, start=None) -> Case:
    """Mutated input spikes (``.npy``, or ``.npz`` with labels) run through a valid model, or used to calibrate."""
    model = _choose(rng, [m for m in models if m.classifier and "ncp" in m.files], start)  # models that run
    if rng.random() < 0.6:
        name, source = "x.npy", model.spikes
    else:
        name, source = "x.npz", model.labelled
    name = start.file.name if start else name
    mutation = _mutate_from(rng, start, source, folder / name, mutate_spikes_file)
    if "nir" in model.files and rng.random() < 0.2:
        argv = ["compile", _copy(model.files["nir"], folder, "model.nir"), "--calibrate", name, "-o", "out.ncp"]
        return Case("spikes", argv, mutation, name, model.name)
    form, backend = _runnable(rng, model)
    steps = ["--steps", str(rng.choice((1, STEPS, 40)))] if rng.random() < 0.2 else []
    model_file = _copy(model.files[form], folder, f"model.{form}")
    argv = _simulate_command(rng, model_file, backend, ["--input", name, *steps])
    return Case("spikes", argv, mutation, name, model.name)


def _dataset_case(models, rng, folder, start=None) -> Case:
    """A mutated ``.npz`` dataset run through a valid model, used to calibrate, learned or trained from, or
    the calibration data of ``convert``."""
    choice = rng.random()
    converters = [m for m in models if "onnx" in m.files]
    convert = start.model in {m.name for m in converters} if start else choice < 0.1
    if convert:
        model = _choose(rng, converters, start)
        source = rng.choice((model.labelled, model.split))
        mutation = _mutate_from(rng, start, source, folder / "data.npz", mutate_arrays_file)
        _copy(model.files["onnx"], folder, "model.onnx")
        return Case("dataset", _convert_command(rng), mutation, "data.npz", model.name)
    model = _choose(rng, [m for m in models if m.classifier and "ncp" in m.files], start)  # models that run
    source = model.labelled if rng.random() < 0.6 else model.split
    mutation = _mutate_from(rng, start, source, folder / "data.npz", mutate_arrays_file)
    steps = rng.choice((STEPS, STEPS, STEPS, 1, 16, None))
    steps_option = ["--steps", str(steps)] if steps is not None else []
    if "nir" in model.files and choice < 0.2:
        argv = ["compile", _copy(model.files["nir"], folder, "model.nir"), "--calibrate", "data.npz", "-o", "out.ncp"]
    elif choice < 0.35:
        form = rng.choice(sorted(model.files))
        argv = _learn_command(rng, _copy(model.files[form], folder, f"model.{form}"), "data.npz", steps)
    elif choice < 0.5:
        argv = _train_command(rng, "data.npz", steps)
    else:
        form, backend = _runnable(rng, model)
        model_file = _copy(model.files[form], folder, f"model.{form}")
        argv = _simulate_command(rng, model_file, backend, ["--data", "data.npz", *steps_option])
    return Case("dataset", argv, mutation, "data.npz", model.name)


def _runnable(rng, model: Model) -> tuple[str, str]:
    """A form of ``model`` and a backend that runs it (a program runs on cpu only)."""
    form = rng.choice(sorted(model.files))
    return form, "cpu" if form == "ncp" else rng.choice(("cpu", "float"))


def _copy(source: Path, folder: Path, name: str) -> str:
    shutil.copyfile(source, folder / name)
    return name


def _maybe(rng, *args, p: float = 0.3) -> list:
    return list(args) if rng.random() < p else []


INT_OPTIONS = {  # the integer options of each command; --epochs is left out: many epochs are asked-for work
    "simulate": ("--steps", "--limit"),
    "compile": ("--steps", "--calibrate-samples"),
    "learn": ("--steps", "--limit", "--seed"),
    "train": ("--steps", "--batch-size", "--hidden", "--seed", "--threads", "--loss-steps"),
    "convert": ("--steps", "--limit"),
}


def _extreme_option(rng, case: Case) -> Case:
    """The case with one integer option of its command set to an extreme (``LONG_STEPS`` steps only where a
    run takes time in proportion: simulate on one sample, compile's calibration, convert)."""
    argv = list(case.argv)
    options = INT_OPTIONS.get(argv[0])
    if not options:
        return case
    option = rng.choice(options)
    long_ok = option == "--steps" and argv[0] in ("simulate", "compile", "convert")
    value = rng.choice(INTEGER_EXTREMES + ((LONG_STEPS,) if long_ok else ()))
    _set_option(argv, option, str(value))
    if value == LONG_STEPS and argv[0] == "simulate":
        _set_option(argv, "--limit", "1")
    return dataclasses.replace(case, argv=argv, mutation=f"{case.mutation}; {option} {value}")


def _set_option(argv: list, option: str, value: str) -> None:
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]


# --- mutating a file -------------------------------------------------------------------------------


def _mutate_file(rng, source: Path, target: Path, mutate_semantic) -> str:
    """Write a mutation of ``source`` to ``target``: none (5%), semantic, byte-level, or both; returns what was
    done."""
    roll = rng.random()
    if roll < 0.05:
        shutil.copyfile(source, target)
        return "unchanged"
    steps = []
    if roll < 0.75:
        steps.append(mutate_semantic(rng, source, target))
    else:
        shutil.copyfile(source, target)
    if roll >= 0.65:
        data = target.read_bytes()
        if zipfile.is_zipfile(target) and rng.random() < 0.4:
            data, how = mutate_zip(rng, data)
        else:
            data, how = mutate_bytes(rng, data)
        target.write_bytes(data)
        steps.append(how)
    return "; ".join(steps)


def _pick(rng, weighted: dict):
    """One key of ``{choice: weight}``, drawn by weight."""
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


def _several(rng, mutations: dict, state, count=None) -> str:
    """Apply 1-3 mutations drawn from ``{mutation: weight}`` (each returns a description, or None when it
    does not apply)."""
    done = []
    for _ in range(count or rng.choice((1, 1, 1, 2, 3))):
        for _attempt in range(8):
            how = _pick(rng, mutations)(rng, state)
            if how is not None:
                done.append(how)
                break
    return ", ".join(done) or "no mutation applied"


# --- extreme values, arrays and nested structures -----------------------------------------------------

_FLOAT64 = np.finfo(np.float64)
EXTREMES = (  # the one table every mutation draws its values from
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**40,
    2**63 - 1,
    -(2**63),
    10**20 - 1,
    float(_FLOAT64.max),
    float(_FLOAT64.min),
    float(_FLOAT64.tiny),  # the smallest normal float64
    5e-324,  # a subnormal
    -0.0,
    0.5,
    1e-30,
    1e30,
    math.nan,
    math.inf,
    -math.inf,
)
INTEGER_EXTREMES = tuple(v for v in EXTREMES if type(v) is int)
INT64_EXTREMES = tuple(v for v in INTEGER_EXTREMES if -(2**63) <= v < 2**63)
HOSTILE_STRINGS = ("", "bogus", "../../x", "a/b", "a\x00b", "x" * 300, "\u00e9\u2202", " ")
HOSTILE_JSON = (None, True, False, *EXTREMES, *HOSTILE_STRINGS, [], {}, [0], [2**40], [[1, 2]], {"bogus": 1})
ODD_DTYPES = (
    "bool int8 uint8 int64 uint64 float16 float64 complex128 >f4 <U4 S4 object V8 datetime64[s] structured".split()
)


def _as_float(arr: np.ndarray) -> np.ndarray:
    try:
        return np.array(arr, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros(arr.shape)


def _values(rng, arr):
    """One element, or all, set to an extreme (kept integer in an integer array when it fits int64)."""
    value = rng.choice(EXTREMES)
    integer = type(value) is int and value in INT64_EXTREMES and (arr.dtype.kind in "iub" or rng.random() < 0.3)
    if integer:
        try:
            out = np.array(arr, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            out = np.zeros(arr.size, np.int64)
    else:
        out = _as_float(arr).reshape(-1)
    if out.size == 0:
        return np.array([value], out.dtype), f"empty -> [{value!r}]"
    where = "all" if rng.random() < 0.4 else "one"
    if where == "all":
        out[:] = value
    else:
        out[rng.randrange(out.size)] = value
    return out.reshape(np.shape(arr)), f"{where} values -> {value!r}"


def _scaled(rng, arr):
    factor = rng.choice((0.0, -1.0, 1e6, 1e30, 1e-30, -1e9))
    return _as_float(arr) * factor, f"values x {factor:g}"


def _retyped(rng, arr):
    dtype = rng.choice(ODD_DTYPES)
    if dtype == "structured":
        return np.zeros(arr.shape, dtype=[("a", "<f4"), ("b", "<i4")]), "dtype -> structured"
    try:
        return arr.astype(dtype), f"dtype -> {dtype}"
    except (TypeError, ValueError):
        return np.zeros(arr.shape, dtype=dtype), f"dtype -> {dtype} (zeros)"


def _reshaped(rng, arr):
    how = rng.choice(("ravel", "leading axis", "trailing axis", "transpose", "0-d", "empty", "one less", "twice"))
    if how == "ravel":
        return arr.reshape(-1), how
    if how == "leading axis":
        return arr[None], how
    if how == "trailing axis":
        return arr[..., None], how
    if how == "transpose":
        return arr.T.copy(), how
    if how == "0-d":
        return (arr.reshape(-1)[0] if arr.size else np.zeros((), arr.dtype)), how
    if how == "empty":
        return arr.reshape(-1)[:0], how
    if how == "one less":
        return (arr[:-1] if arr.ndim else arr), how
    return (np.concatenate([arr, arr]) if arr.ndim else np.stack([arr, arr])), how


ARRAY_MUTATIONS = {_values: 3, _scaled: 1, _retyped: 1, _reshaped: 1}


def mutate_array(rng, value) -> tuple[np.ndarray, str]:
    """A hostile variant of an array: extreme values, scaled, retyped or reshaped."""
    return _pick(rng, ARRAY_MUTATIONS)(rng, np.array(value))


def hostile_json(rng):
    return _clone(rng.choice(HOSTILE_JSON))


def _int_list(rng, values: list, extremes=INT64_EXTREMES) -> tuple[list, str]:
    """A list of integers (a shape, strides, pads) emptied, one longer or shorter, or with extremes in it."""
    values = list(values)
    how = rng.choice(("empty", "longer", "shorter", "one extreme", "one extreme", "all extreme"))
    value = rng.choice(extremes)
    if how == "empty":
        values = []
    elif how == "longer":
        values.append(value if rng.random() < 0.5 else (values[-1] if values else 1))
    elif how == "shorter":
        values = values[:-1]
    elif how == "all extreme":
        values = [value] * max(len(values), 1)
    elif values:
        values[rng.randrange(len(values))] = value
    else:
        values = [value]
    return values, f"{how} {_short(values)}"


def _clone(value):
    """A deep copy of nested dicts and lists, arrays copied; iterative (trees nest past the recursion limit),
    and a container held in several places is copied once (a payload may share one list a trillion times)."""
    if not isinstance(value, (dict, list)):
        return value.copy() if isinstance(value, np.ndarray) else value
    copies = {id(value): type(value)()}
    pending = [value]
    while pending:
        source = pending.pop()
        target = copies[id(source)]
        for key, item in source.items() if isinstance(source, dict) else enumerate(source):
            if isinstance(item, (dict, list)):
                if id(item) not in copies:
                    copies[id(item)] = type(item)()
                    pending.append(item)
                new = copies[id(item)]
            else:
                new = item.copy() if isinstance(item, np.ndarray) else item
            if isinstance(target, dict):
                target[key] = new
            else:
                target.append(new)
    return copies[id(value)]


def tree_paths(root, depth: int = 100) -> list[tuple]:
    """The path of every value in nested dicts and lists: every key of every object and every element of every
    list, the root excluded, down to ``depth`` levels (a file may nest 100,000 levels: their paths would fill
    the memory); iterative, and a container held in several places is entered once."""
    paths, pending, seen = [], [((), root)], set()
    while pending:
        path, node = pending.pop()
        if id(node) in seen or len(path) >= depth:
            continue
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            paths.append((*path, key))
            if isinstance(value, (dict, list)):
                pending.append(((*path, key), value))
    return paths


def _parent(root, path):
    for key in path[:-1]:
        root = root[key]
    return root


class Twice(str):
    """A key equal to no other key, itself excepted: a dict holds it beside the same key, and ``json.dumps``
    then writes that key twice into one object."""

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


def _spellings(key: str) -> list[str]:
    """Other spellings of a field name: case, camelCase, dashes, plural or singular, spaces."""
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
    variants = (key.upper(), key.capitalize(), camel, key.replace("_", "-"), key.replace("_", ""), key + "s")
    return sorted({v for v in (*variants, key[:-1], f" {key}", f"{key} ") if v and v != key})


def _texts(root) -> list:
    """The strings (and bytes) held anywhere in a tree, the vocabulary of its names and kinds."""
    found = set()
    for path in tree_paths(root):
        value = _parent(root, path)[path[-1]]
        if isinstance(value, (str, bytes)) and len(value) < 100:
            found.add(value)
        elif isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size < 100:
            found.update(v for v in value.reshape(-1).tolist() if isinstance(v, (str, bytes)))
    return sorted(found, key=repr)


def mutate_tree(rng, root, schema=(), twice: bool = False) -> tuple[object, str]:
    """One place of a tree of dicts and lists (JSON, an HDF5 file's groups, a checkpoint's payload), picked
    uniformly among all its keys and list elements: the key goes missing, appears again under another
    spelling (``twice``: or as itself, twice in the JSON text), gains a sibling named after a field of the
    format (``schema``) or another key of the tree, or the value gets a wrong type, a wrong shape or an
    extreme. Returns ``(root, description)``."""
    paths = tree_paths(root)
    if not paths:
        new = hostile_json(rng)
        return new, f"<root> -> {_short(new)}"
    path = rng.choice(paths)
    parent, key = _parent(root, path), path[-1]
    where = "/".join(map(str, path))
    how = rng.choice(("missing", "alias", "unknown", "value", "value", "value"))
    if how == "missing":
        del parent[key]
        return root, f"{where} missing"
    if how == "alias" and isinstance(parent, dict):
        spelling = rng.choice([*_spellings(str(key)), *([Twice(key)] * 3 if twice else [])])
        value = _clone(parent[key]) if rng.random() < 0.5 else hostile_value(rng, parent[key])[0]
        parent[spelling] = value
        return root, f"{where} also as {spelling!r}{' (twice)' if isinstance(spelling, Twice) else ''}"
    if how == "unknown" and isinstance(parent, dict):
        names = {str(k) for p in paths for k in p[-1:] if isinstance(k, str)} | set(schema) | {"bogus"}
        name = rng.choice(sorted(names - set(parent)) or ["bogus"])
        donor = _parent(root, other := rng.choice(paths))[other[-1]]
        parent[name] = _clone(donor) if rng.random() < 0.5 else hostile_json(rng)
        return root, f"{where[: -len(str(key))]}{name} added"
    parent[key], change = hostile_value(rng, parent[key], _texts(root))
    return root, f"{where}: {change}"


def hostile_value(rng, value, words=()) -> tuple[object, str]:
    """A value of a tree made hostile: an array by :func:`mutate_array`; text as another name of the tree,
    a hostile string, or JSON inside it mutated; a list emptied, lengthened or shortened; any value as an
    extreme or a value of a wrong type."""
    if isinstance(value, (np.ndarray, np.generic)):
        return mutate_array(rng, value)
    if isinstance(value, (str, bytes)):
        return _hostile_text(rng, value, words)
    if isinstance(value, list) and value and all(type(v) is int for v in value) and rng.random() < 0.7:
        return _int_list(rng, value, INTEGER_EXTREMES)
    if isinstance(value, list) and rng.random() < 0.3:
        new = rng.choice(([], value + value[:1], value[:-1], [value], value[0] if value else None))
        return _clone(new), f"list -> {_short(new)}"
    new = rng.choice(EXTREMES) if rng.random() < 0.6 else hostile_json(rng)
    return new, f"-> {_short(new)}"


def _hostile_text(rng, text, words) -> tuple[object, str]:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        inner = json.loads(raw) if raw[:1] in "{[" else None
    except ValueError:
        inner = None
    if isinstance(inner, (dict, list)) and inner and rng.random() < 0.7:
        inner, how = mutate_tree(rng, inner, twice=True)
        new, change = json.dumps(inner), f"JSON text: {how}"
    else:
        roll = rng.random()
        candidates = [w.decode("utf-8", "replace") if isinstance(w, bytes) else w for w in words]
        if roll < 0.4 and candidates:
            new = rng.choice(candidates)
        elif roll < 0.8:
            new = rng.choice(HOSTILE_STRINGS)
        else:
            new = hostile_json(rng)
        change = f"-> {_short(new)}"
    return (new.encode("utf-8", "surrogatepass") if isinstance(text, bytes) and isinstance(new, str) else new), change


_REPR = reprlib.Repr()  # Python 3.11 takes no arguments
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 4, 40, 40


def _short(value) -> str:
    """A short repr (a shared or deeply nested list is not expanded)."""
    text = _REPR.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- bytes and zip archives ------------------------------------------------------------------------


def _position(rng, size: int) -> int:
    """A byte offset, half the time among the first 512 (headers live there)."""
    if size == 0:
        return 0
    return rng.randrange(min(size, 512)) if rng.random() < 0.5 else rng.randrange(size)


def mutate_bytes(rng, data: bytes) -> tuple[bytes, str]:
    """Flip, overwrite, insert, delete, duplicate or zero bytes, truncate, append or empty."""
    data = bytearray(data)
    how = rng.choice(
        ("flip", "flip", "overwrite", "insert", "delete", "truncate", "duplicate", "zero", "append", "empty")
    )
    at = _position(rng, len(data))
    span = rng.choice((1, 4, 16, 256))
    if how == "flip" and data:
        for _ in range(rng.choice((1, 2, 8))):
            pos = _position(rng, len(data))
            data[pos] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        data[at : at + span] = rng.randbytes(span)
    elif how == "insert":
        data[at:at] = rng.randbytes(span)
    elif how == "delete":
        del data[at : at + span]
    elif how == "truncate":
        del data[at:]
    elif how == "duplicate":
        data[at:at] = data[at : at + span]
    elif how == "zero":
        data[at : at + span] = bytes(len(data[at : at + span]))
    elif how == "append":
        data += rng.randbytes(span)
    else:
        data, how = bytearray(), "empty"
    return bytes(data), f"bytes: {how} at {at}"


ZIP_LOCAL, ZIP_CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def _zip_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _zip(members, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, content in members:
                archive.writestr(name, content)
    return buffer.getvalue()


def _patch_headers(data: bytes, name: str, local_field: int, central_field: int, fmt: str, value) -> bytes:
    """Overwrite one field of member ``name`` in its local header and its central directory entry."""
    data = bytearray(data)
    encoded = name.encode()
    for signature, field in ((ZIP_LOCAL, local_field), (ZIP_CENTRAL, central_field)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            start = at + 4
            name_at = at + (30 if signature == ZIP_LOCAL else 46)
            length = struct.unpack_from("<H", data, at + (26 if signature == ZIP_LOCAL else 28))[0]
            if bytes(data[name_at : name_at + length]) == encoded:
                struct.pack_into(fmt, data, at + field, value)
                break
    return bytes(data)


def mutate_zip(rng, data: bytes) -> tuple[bytes, str]:
    """A zip archive with a corrupt member, a wrong CRC, method, flag or size, or members duplicated,
    dropped, renamed or added."""
    members = _zip_members(data)
    if not members:
        return mutate_bytes(rng, data)
    index = rng.randrange(len(members))
    name, content = members[index]
    how = rng.choice(("member bytes", "crc", "method", "encrypted", "size", "duplicate", "drop", "rename", "junk"))
    if how == "member bytes":
        members[index] = (name, mutate_bytes(rng, content)[0])
    elif how == "duplicate":
        members.append((name, mutate_bytes(rng, content)[0]))
    elif how == "drop":
        del members[index]
    elif how == "rename":
        members[index] = (rng.choice((name.removesuffix(".npy"), "../" + name, name.upper(), "x")), content)
    elif how == "junk":
        members.append((rng.choice(("x.npy", "y.npy", "program.json.npy", "dir/", name)), rng.randbytes(64)))
    else:
        field = {"crc": (14, 16, "<I"), "method": (8, 10, "<H"), "encrypted": (6, 8, "<H"), "size": (22, 24, "<I")}
        value = {"crc": 0xDEADBEEF, "method": 99, "encrypted": 1, "size": rng.choice((0, 0xFFFFFFFE))}[how]
        return _patch_headers(_zip(members), name, *field[how], value), f"zip: {how} of {name}"
    return _zip(members, rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))), f"zip: {how} {name}"


# --- .npy / .npz files (spikes, datasets, program arrays) ------------------------------------------


def _npy_bytes(header: dict | str, payload: bytes = b"") -> bytes:
    """A .npy file with ``header`` (a dict, or raw text for broken headers) and ``payload`` after it."""
    text = header if isinstance(header, str) else repr(header)
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + payload


BROKEN_NPY_HEADERS = (
    {"descr": "<f4", "fortran_order": False, "shape": (1, 10**9, 4)},
    {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6, 4)},
    {"descr": "|b1", "fortran_order": False, "shape": (2**40, 1, 1)},
    {"descr": "<f4", "fortran_order": False, "shape": (-1, 6, 4)},
    {"descr": "<f4", "fortran_order": False, "shape": (3, 6.5, 4)},
    {"descr": "<f4", "fortran_order": True},
    {"descr": "bogus", "fortran_order": False, "shape": (3, 6, 4)},
    {"descr": "O", "fortran_order": False, "shape": (3, 6, 4)},
    {"descr": [("a", "<f4")], "fortran_order": False, "shape": (3, 6, 4)},
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 6, 4), 'extra': __import__('os')}",
    "not a dict at all",
    "{" * 5000,
)


def _crafted_npy(rng) -> tuple[bytes, str]:
    header = rng.choice(BROKEN_NPY_HEADERS)
    return _npy_bytes(header, rng.randbytes(rng.choice((0, 8, 288)))), f"crafted header {_short(header)}"


def _to_npy(value) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=True)
    return buffer.getvalue()


def _read_arrays(path: Path) -> dict:
    """The arrays of an ``.npz`` (or ``{"": array}`` for an ``.npy``)."""
    if path.suffix == ".npy":
        return {"": np.load(path)}
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def _write_arrays(rng, path: Path, arrays: dict, raw: dict) -> None:
    """Write ``arrays`` (and ``raw``: member name -> bytes) as ``.npy`` or ``.npz``, compressed or not."""
    if path.suffix == ".npy":
        path.write_bytes(raw.get("", b"") or _to_npy(arrays[""]))
        return
    members = [(f"{key}.npy", _to_npy(value)) for key, value in arrays.items()] + list(raw.items())
    path.write_bytes(_zip(members, rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))))


def _array_values(rng, state):
    """Any array of the file (picked uniformly): extreme values, another dtype or shape."""
    if not state["arrays"]:
        return None
    key = rng.choice(sorted(state["arrays"]))
    state["arrays"][key], how = mutate_array(rng, state["arrays"][key])
    return f"{key or 'array'}: {how}"


def _spike_values(rng, state):
    """Values a spike input must not hold, or holds legitimately (0/1 as bool, ints, float16)."""
    if not state["arrays"]:
        return None
    key = rng.choice([k for k in state["arrays"] if k.startswith("x")] or sorted(state["arrays"]))
    arr = _as_float(state["arrays"][key])
    value = rng.choice((2.0, 0.5, -1.0, math.nan, math.inf, 255.0, 1 + 1e-7, 1j, "bool", "int8", "float16"))
    if isinstance(value, str):
        state["arrays"][key] = (arr != 0).astype(value)
        return f"{key or 'x'}: 0/1 as {value}"
    arr = arr.astype(complex) if isinstance(value, complex) else arr
    arr.reshape(-1)[rng.randrange(arr.size) if arr.size else slice(None)] = value
    state["arrays"][key] = arr
    return f"{key or 'x'}: one value -> {value!r}"


def _label_values(rng, state):
    """Labels that are negative, huge (up to 2**63 - 1: as many classes to build), fractional, of a wrong
    length or rank."""
    keys = [k for k in state["arrays"] if k.startswith("y")]
    if not keys:
        return None
    key = rng.choice(keys)
    how = rng.choice(("negative", "huge", "float", "nan", "one class", "too many", "too few", "2-D", "bool", "single"))
    if how == "single":
        state["arrays"] = {k: v[:1] for k, v in state["arrays"].items() if np.ndim(v)}
        return "every array cut to one sample"
    try:
        state["arrays"][key], change = _relabel(rng, np.atleast_1d(state["arrays"][key]), how)
    except (TypeError, ValueError, IndexError):  # an earlier mutation left no labels to change this way
        return None
    return f"{key}: {change}"


def _relabel(rng, y: np.ndarray, how: str) -> tuple[np.ndarray, str]:
    y = y.copy()
    if how == "negative":
        y[0] = -1
    elif how == "huge":
        y = y.astype(np.int64)
        y[-1] = rng.choice([v for v in INT64_EXTREMES if v > 1])
        return y, f"label {y[-1]}"
    elif how in ("float", "nan"):
        y = y.astype(np.float64) + (0.5 if how == "float" else math.nan)
    elif how == "one class":
        y[:] = 0
    elif how == "too many":
        y = np.concatenate([y, y[:1]])
    elif how == "too few":
        y = y[:-1]
    elif how == "2-D":
        y = y[:, None]
    elif how == "bool":
        y = y.astype(bool)
    return y, how


def _sizes(rng, state):
    """Few samples, no samples, one time step, time steps that differ between arrays, or (spike inputs)
    ``LONG_STEPS`` steps of uint8 zeros."""
    choices = ("no samples", "two samples", "one step", "steps differ", "samples differ")
    how = rng.choice(choices + (("long",) if state.get("long") else ()))
    arrays = state["arrays"]
    keys = [k for k in arrays if k.startswith("x") or k == ""]
    if not keys:
        return None
    key = rng.choice(keys)
    x = np.asarray(arrays[key])
    if x.ndim < 2:
        return None
    if how == "no samples":
        arrays.update({k: v[:0] for k, v in arrays.items() if np.ndim(v)})
    elif how == "two samples":
        arrays.update({k: v[:2] for k, v in arrays.items() if np.ndim(v)})
    elif how == "one step":
        arrays[key] = x[:, :1]
    elif how == "steps differ":
        arrays[key] = np.concatenate([x, x], axis=1)
    elif how == "long":
        arrays.update({k: v[:1] for k, v in arrays.items() if np.ndim(v)})
        arrays[key] = np.zeros((1, LONG_STEPS, *x.shape[2:]), np.uint8)
        return f"{key or 'x'}: 1 sample of {LONG_STEPS} steps of uint8 zeros"
    else:
        arrays[key] = x[:-1]
    return f"{key or 'x'}: {how}"


DATASET_KEYS = ("x", "y", "x_train", "y_train", "x_test", "y_test")


def _keys(rng, state):
    """An array dropped, renamed (another key of the format, another spelling), or added beside itself
    under another name."""
    arrays = state["arrays"]
    if "" in arrays or not arrays:
        return None
    key = rng.choice(sorted(arrays))
    how = rng.choice(("drop", "rename", "alias"))
    name = rng.choice([*DATASET_KEYS, *_spellings(key), "bogus"])
    if how == "drop":
        del arrays[key]
        return f"{key}: dropped"
    arrays[name] = arrays[key] if how == "alias" else arrays.pop(key)
    return f"{key}: {how} {name!r}"


def _crafted_member(rng, state):
    """An array replaced by a crafted .npy: a huge shape without the data, a bad dtype, a broken header."""
    if not state["arrays"]:
        return None
    key = rng.choice(sorted(state["arrays"]))
    state["raw"][f"{key}.npy" if key else ""], how = _crafted_npy(rng)
    del state["arrays"][key]
    return f"{key or 'array'}: {how}"


ARRAY_FILE_MUTATIONS = {
    _array_values: 2,
    _spike_values: 2,
    _label_values: 1,
    _sizes: 1,
    _keys: 1,
    _crafted_member: 1,
}


def mutate_arrays_file(rng, source: Path, target: Path, long: bool = False) -> str:
    """Semantic mutations of an ``.npy``/``.npz`` file of spikes or a dataset (``long``: an input of
    ``LONG_STEPS`` steps among them)."""
    state = {"arrays": _read_arrays(source), "raw": {}, "long": long}
    how = _several(rng, ARRAY_FILE_MUTATIONS, state)
    _write_arrays(rng, target, state["arrays"], state["raw"])
    return how


mutate_spikes_file = functools.partial(mutate_arrays_file, long=True)


# --- .ncp programs -----------------------------------------------------------------------------------

STORED_AS_ARRAYS = {"populations": ("pop", ("bias_mant",)), "synapses": ("syn", ("weights", "delays"))}


@functools.cache
def ncp_schema() -> dict:
    """The keys program.json may hold at each level ("" the header itself; "conv" a synapse's geometry): the
    fields of the program's dataclasses, less those stored as array members."""
    from neurocompile.ir.network import ConvGeometry
    from neurocompile.ir.program import HEADER_FIELDS, InputPort, Population, Synapse

    def names(cls, stored=()):
        return frozenset(f.name for f in dataclasses.fields(cls)) - set(stored)

    return {
        "": frozenset(HEADER_FIELDS),
        "inputs": names(InputPort),
        "populations": names(Population, STORED_AS_ARRAYS["populations"][1]),
        "synapses": names(Synapse, STORED_AS_ARRAYS["synapses"][1]),
        "conv": names(ConvGeometry),
    }


def _ncp_names() -> list:
    """Every field name of the format, array members' fields included: names a mutation adds."""
    stored = [field for _, fields in STORED_AS_ARRAYS.values() for field in fields]
    return sorted(set().union(*ncp_schema().values(), stored))


def _ncp_header(state) -> dict | None:
    header = state["header"]
    return header if isinstance(header, dict) else None


def _ncp_tree(rng, state):
    """Any key or element of program.json (picked uniformly): missing, twice, respelled, a sibling added, or
    its value of a wrong type or shape or extreme."""
    state["header"], how = mutate_tree(rng, state["header"], _ncp_names(), twice=True)
    return f"program.json: {how}"


def _ncp_member_alias(rng, state):
    """A field stored twice: a program.json field also as an array member (``pop0.vth``), an array member
    also in program.json (``weights`` in a synapse), or program.json itself as two members."""
    header = _ncp_header(state)
    if header is None:
        return None
    how = rng.choice(("field as array", "array in program.json", "program.json twice"))
    if how == "program.json twice":
        state["twice"] = True
        return "program.json: two members of that name"
    if how == "field as array":
        records = [
            (prefix, i, record)
            for section, (prefix, _) in STORED_AS_ARRAYS.items()
            if isinstance(header.get(section), list)
            for i, record in enumerate(header[section])
            if isinstance(record, dict) and record
        ]
        if not records:
            return None
        prefix, i, record = rng.choice(records)
        field = rng.choice(sorted(record))
        value = record[field]
        state["arrays"][f"{prefix}{i}.{field}"] = np.asarray(json.dumps(value) if isinstance(value, dict) else value)
        return f"{prefix}{i}.{field}: also an array member"
    match = re.fullmatch(r"(pop|syn)(\d+)\.(\w+)", rng.choice(sorted(state["arrays"]) or [""]))
    section = "populations" if match and match[1] == "pop" else "synapses"
    records = header.get(section)
    if not match or not isinstance(records, list) or int(match[2]) >= len(records):
        return None
    if not isinstance(records[int(match[2])], dict):
        return None
    records[int(match[2])][match[3]] = _as_float(state["arrays"][match[0]]).tolist()
    return f"{match[0]}: also in program.json"


def _ncp_header_text(rng, state):
    """program.json that is not JSON, not UTF-8, nested past any recursion limit, or not an object."""
    text = rng.choice(
        ("{not json", b"\xff\xfe\x00", "[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000, "[]", "null", "7", '"x"')
    )
    state["raw_header"] = text.encode() if isinstance(text, str) else text
    return f"program.json text -> {_short(text)}"


def _ncp_header_array(rng, state):
    """program.json stored with a wrong dtype or rank, or missing."""
    how = rng.choice(("int32", "2-D", "str", "missing", "float"))
    state["header_array"] = how
    return f"program.json array: {how}"


def _ncp_array(rng, state):
    """Any array member (picked uniformly): values, dtype, shape; dropped, renamed, given delays, or a
    crafted .npy."""
    arrays = state["arrays"]
    if not arrays:
        return None
    key = rng.choice(sorted(arrays))
    how = rng.choice(("mutate", "mutate", "drop", "rename", "delays", "crafted"))
    if how == "mutate":
        arrays[key], change = mutate_array(rng, arrays[key])
        return f"{key}: {change}"
    if how == "drop":
        del arrays[key]
    elif how == "rename":
        arrays[rng.choice([*_spellings(key), "pop9.bias_mant", "syn9.weights", "syn0.delays", "pop0.bias_mant"])] = (
            arrays.pop(key)
        )
    elif how == "delays" and key.endswith(".weights"):
        delays = np.full(np.shape(arrays[key]), rng.choice((1, 62, 63, *INT64_EXTREMES)), dtype=np.int64)
        arrays[key.replace(".weights", ".delays")] = delays
    else:
        state["raw"][f"{key}.npy"], change = _crafted_npy(rng)
        del arrays[key]
        return f"{key}: {change}"
    return f"{key}: {how}"


NCP_MUTATIONS = {
    _ncp_tree: 5,
    _ncp_member_alias: 1,
    _ncp_header_text: 1,
    _ncp_header_array: 1,
    _ncp_array: 2,
}


def mutate_program(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a ``.ncp``: its JSON header (any key, at any level) and its arrays."""
    arrays = _read_arrays(source)
    original = arrays.pop("program.json")
    state = {"header": json.loads(original.tobytes()), "arrays": arrays, "raw": {}}
    how = _several(rng, NCP_MUTATIONS, state)
    if "raw_header" in state:
        text = state["raw_header"]
    else:
        text = json.dumps(state["header"]).encode()
    header = np.frombuffer(text, dtype=np.uint8)
    kind = state.get("header_array")
    if kind != "missing":
        converted = {
            "int32": header.astype(np.int32),
            "2-D": header[None],
            "str": np.array(text.decode("latin1")),
            "float": header.astype(np.float64),
        }
        state["arrays"]["program.json"] = converted.get(kind, header)
    if state.get("twice"):
        state["raw"]["program.json.npy"] = _to_npy(original)
    _write_arrays(rng, target, state["arrays"], state["raw"])
    return how


class _Repeated(ValueError):
    pass


def _unique_pairs(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _Repeated(key)
    return dict(pairs)


def program_must_refuse(path: Path) -> str | None:
    """Why every command must refuse the ``.ncp`` at ``path``, whatever else it holds: two archive members of
    one name, a key twice in one object of program.json, a key the format does not have (at the levels the
    format fixes), or an array member that no population or synapse owns; None when none of these."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arrays = _read_arrays(path)
        header = json.loads(arrays.pop("program.json").tobytes(), object_pairs_hook=_unique_pairs)
    except _Repeated as exc:
        return f"program.json repeats the key '{exc.args[0]}'"
    except Exception:
        return None
    if len(set(names)) < len(names):
        return "the archive holds two members of one name"
    if not isinstance(header, dict):
        return None
    schema = ncp_schema()
    unknown = sorted(set(header) - schema[""])
    if unknown:
        return f"program.json: unknown key '{unknown[0]}'"
    owned = set()
    for section in ("inputs", *STORED_AS_ARRAYS):
        records = header.get(section)
        if not isinstance(records, list):
            return None
        prefix, stored = STORED_AS_ARRAYS.get(section, ("", ()))
        owned |= {f"{prefix}{i}.{field}" for i in range(len(records)) for field in stored}
        for i, record in enumerate(records):
            parts = [(f"{section}[{i}]", record, schema[section])]
            if isinstance(record, dict) and isinstance(record.get("conv"), dict):
                parts.append((f"{section}[{i}].conv", record["conv"], schema["conv"]))
            for where, part, known in parts:
                unknown = sorted(set(part) - known) if isinstance(part, dict) else []
                if unknown:
                    return f"{where}: unknown key '{unknown[0]}'"
    strays = sorted(set(arrays) - owned)
    return f"array member '{strays[0]}' belongs to no population or synapse" if strays else None


# --- .nir graphs (HDF5) -----------------------------------------------------------------------------


def read_h5(path: Path, timeout: float = 5.0) -> dict:
    """An HDF5 file as nested dicts of its datasets' values, read in a forked child: a corrupt file (a mutated
    one) can send the HDF5 library into an endless loop, which would stop a campaign (TimeoutError after
    ``timeout`` seconds; ValueError when the file does not read)."""
    with tempfile.NamedTemporaryFile(suffix=".pickle") as out:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with open(out.name, "wb") as fh:
                    pickle.dump(_read_h5_here(path), fh)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        while not (ended := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"{path}: reading its HDF5 took over {timeout:g} s")
            time.sleep(0.002)
        if os.waitstatus_to_exitcode(ended[1]) != 0:
            raise ValueError(f"{path}: does not read as HDF5")
        with open(out.name, "rb") as fh:
            return pickle.load(fh)


def _read_h5_here(path: Path) -> dict:
    import h5py

    def read(group):
        return {name: read(item) if isinstance(item, h5py.Group) else item[()] for name, item in group.items()}

    with h5py.File(path, "r") as fh:
        return read(fh)


def write_h5(path: Path, tree: dict) -> None:
    """Nested dicts as HDF5 groups, values as datasets (text when HDF5 has no type for them); iterative,
    so deeply nested trees write too."""
    import h5py

    with h5py.File(path, "w") as fh:
        pending = [(fh, tree)]
        while pending:
            group, items = pending.pop()
            for name, value in items.items():
                if isinstance(value, dict):
                    pending.append((group.create_group(name), value))
                else:
                    _write_dataset(group, name, value)


def _write_dataset(group, name: str, value) -> None:
    import h5py

    try:
        group.create_dataset(name, data=value)
        return
    except (TypeError, ValueError):
        if name in group:  # made, then its data failed to write
            del group[name]
    arr = np.asarray(value, dtype=object)
    text = np.empty(arr.shape, dtype=object)
    for index, item in np.ndenumerate(arr):
        item = item if isinstance(item, (bytes, str)) else str(item)
        text[index] = item.replace(
            b"\0" if isinstance(item, bytes) else "\0", b"\\0" if isinstance(item, bytes) else "\\0"
        )
    group.create_dataset(name, data=text, dtype=h5py.string_dtype())


def _nir_graphs(tree) -> list[tuple[str, dict]]:
    """Every NIRGraph group in the tree (path, group), the top one first."""
    found, pending = [], [("node", tree.get("node"))]
    while pending:
        path, node = pending.pop(0)
        if isinstance(node, dict) and isinstance(node.get("nodes"), dict):
            found.append((path, node))
            pending += [(f"{path}/{name}", child) for name, child in node["nodes"].items()]
    return found


def _nir_nodes(tree) -> list[tuple[str, dict]]:
    return [
        (f"{path}/{name}", node)
        for path, graph in _nir_graphs(tree)
        for name, node in graph["nodes"].items()
        if isinstance(node, dict)
    ]


def _edges(graph: dict) -> list[list[str]]:
    try:
        return [
            [e.decode() if isinstance(e, bytes) else str(e) for e in pair]
            for pair in np.asarray(graph["edges"]).reshape(-1, 2)
        ]
    except (KeyError, ValueError, TypeError):
        return []


def _set_edges(graph: dict, edges) -> None:
    graph["edges"] = (
        np.array([[a.encode(), b.encode()] for a, b in edges], dtype=object) if edges else np.zeros((0, 2), "S1")
    )


NIR_TYPES = (b"Bogus", b"", b"NIRGraph", b"LIF", b"CubaLIF", b"Delay", b"Conv2d", b"Flatten", b"Input", b"Output", 5)


@functools.cache
def nir_schema() -> tuple:
    """Every field name of every NIR primitive, and the keys of the file around them: names a mutation adds."""
    import nir

    names = {"type", "shape", "version", "node", "dt", "convention", "convention_options", "producer"}
    for item in vars(nir).values():
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            names |= {f.name for f in dataclasses.fields(item)}
    return tuple(sorted(names))


def _nir_tree(rng, tree):
    """Any key of the file (picked uniformly): a node's field, its type, a graph's edges or metadata, the
    version: missing, respelled, a sibling added, or its value of a wrong type or shape or extreme."""
    _root, how = mutate_tree(rng, tree, nir_schema())
    return how


def _nir_type(rng, tree):
    nodes = _nir_nodes(tree)
    if not nodes:
        return None
    path, node = rng.choice(nodes)
    node["type"] = rng.choice(NIR_TYPES)
    return f"{path}/type -> {node['type']!r}"


def _nir_nodes_change(rng, tree):
    """A node deleted, copied in from another node (type and shape mismatch), swapped, or added."""
    graphs = _nir_graphs(tree)
    if not graphs:
        return None
    path, graph = rng.choice(graphs)
    names = list(graph["nodes"])
    donors = [node for _, node in _nir_nodes(tree)] or [{"type": b"Identity"}]
    how = rng.choice(("delete", "replace", "swap", "insert", "dangle"))
    if how == "delete" and names:
        del graph["nodes"][rng.choice(names)]
    elif how == "replace" and names:
        graph["nodes"][rng.choice(names)] = _clone(rng.choice(donors))
    elif how == "swap" and len(names) > 1:
        a, b = rng.sample(names, 2)
        graph["nodes"][a], graph["nodes"][b] = graph["nodes"][b], graph["nodes"][a]
    else:
        graph["nodes"]["extra"] = _clone(rng.choice(donors))
        edges = _edges(graph)
        if how == "insert" and edges:
            a, b = edges.pop(rng.randrange(len(edges)))
            edges += [[a, "extra"], ["extra", b]]
        elif names:
            edges.append([rng.choice(names), "extra"])
        _set_edges(graph, edges)
    return f"{path}: node {how}"


def _nir_edges(rng, tree):
    """Edges removed, dangling, duplicated, reversed, looped, naming subgraph ports, or not pairs of names."""
    graphs = _nir_graphs(tree)
    if not graphs:
        return None
    path, graph = rng.choice(graphs)
    edges, names = _edges(graph), list(graph["nodes"]) or ["x"]
    how = rng.choice(("none", "drop", "dangling", "duplicate", "reverse", "self", "cycle", "dotted", "many", "shape"))
    a, b = rng.choice(names), rng.choice(names)
    if how == "none":
        edges = []
    elif how == "drop" and edges:
        edges.pop(rng.randrange(len(edges)))
    elif how == "dangling":
        edges.append(rng.choice(([a, "ghost"], ["ghost", a], ["", ""])))
    elif how == "duplicate" and edges:
        edges.append(list(rng.choice(edges)))
    elif how == "reverse" and edges:
        edges.append(edges.pop()[::-1])
    elif how == "self":
        edges.append([a, a])
    elif how == "cycle":
        edges += [[a, b], [b, a]]
    elif how == "dotted":
        edges.append([f"{a}.output", f"{b}.input.x"])
    elif how == "many":
        edges += [[rng.choice(names), rng.choice(names)] for _ in range(2000)]
    else:
        graph["edges"] = rng.choice((np.arange(6), np.zeros((2, 3)), np.array(b"a"), np.array([[b"a", b"b", b"c"]])))
        return f"{path}/edges: not pairs of names"
    _set_edges(graph, edges)
    return f"{path}/edges: {how}"


def _nir_nest(rng, tree):
    """A node wrapped into a subgraph, ``depth`` times (600: past the recursion limit of a reader that recurses)."""
    nodes = _nir_nodes(tree)
    if not nodes:
        return None
    path, node = rng.choice(nodes)
    depth = rng.choice((1, 1, 3, 3, 64, 600))
    inner = _clone(node)
    shape = np.array([4])
    for _ in range(depth):
        inner = {
            "type": b"NIRGraph",
            "nodes": {
                "input": {"type": b"Input", "shape": shape},
                "inner": inner,
                "output": {"type": b"Output", "shape": shape},
            },
            "edges": np.array([[b"input", b"inner"], [b"inner", b"output"]], dtype=object),
        }
    node.clear()
    node.update(inner)
    return f"{path}: nested {depth} deep"


def _nir_graph_shape(rng, tree):
    """The graph emptied, stripped of its nodes or edges, or its groups replaced by datasets."""
    graphs = _nir_graphs(tree)
    root = tree.get("node")
    how = rng.choice(
        ("empty", "no nodes", "nodes dataset", "edges group", "root dataset", "root node", "no root", "version")
    )
    if how == "empty" and graphs:
        graphs[0][1]["nodes"], graphs[0][1]["edges"] = {}, np.zeros((0, 2), "S1")
    elif how == "no nodes" and graphs:
        graphs[0][1]["nodes"] = {}
    elif how == "nodes dataset" and graphs:
        graphs[0][1]["nodes"] = np.zeros(3)
    elif how == "edges group" and graphs:
        graphs[0][1]["edges"] = {"a": np.array(b"b")}
    elif how == "root dataset":
        tree["node"] = np.float64(1.0)
    elif how == "root node" and isinstance(root, dict):
        tree["node"] = _clone(rng.choice(_nir_nodes(tree) or [("", {})])[1])
    elif how == "no root":
        tree.pop("node", None)
    else:
        tree["version"] = rng.choice((b"9.9.9", b"", 5, np.zeros(2)))
    return f"graph: {how}"


NIR_MUTATIONS = {
    _nir_tree: 6,
    _nir_type: 1,
    _nir_nodes_change: 1,
    _nir_edges: 2,
    _nir_nest: 1,
    _nir_graph_shape: 1,
}


def mutate_graph(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a ``.nir`` file: any key (node fields, edges, metadata), types, nodes, edges,
    nesting; or HDF5 links."""
    tree = read_h5(source)
    how = _several(rng, NIR_MUTATIONS, tree)
    write_h5(target, tree)
    if rng.random() < 0.05:
        how += ", " + _hdf5_link(rng, target)
    return how


def graph_must_refuse(path: Path) -> str | None:
    """Why every command must refuse the ``.nir`` at ``path``, whatever else it holds: a node of a NIR
    primitive (a graph included) with a key that is none of the primitive's fields; None otherwise."""
    import nir

    try:
        tree = read_h5(path, timeout=2.0)
        nodes = _nir_graphs(tree) + _nir_nodes(tree)
    except Exception:
        return None
    for where, node in nodes:
        kind = node.get("type")
        kind = kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)
        primitive = getattr(nir, kind, None)
        if isinstance(primitive, type) and dataclasses.is_dataclass(primitive):
            unknown = sorted(map(str, set(node) - {f.name for f in dataclasses.fields(primitive)} - {"type", "shape"}))
            if unknown:
                return f"{where}: {kind} has no field '{unknown[0]}'"
    return None


def _hdf5_link(rng, path: Path) -> str:
    """A link that would make HDF5 read outside the file or loop: soft, external, or back to the root."""
    import h5py

    how = rng.choice(("soft", "external", "loop"))
    with h5py.File(path, "r+") as fh:
        group = fh.get("node/nodes")
        group = group if isinstance(group, h5py.Group) else fh
        if how == "soft":
            group["linked"] = h5py.SoftLink("/node")
        elif how == "external":
            group["linked"] = h5py.ExternalLink("/etc/hostname", "/")
        else:
            group["linked"] = fh["/"]
    return f"hdf5 {how} link"


# --- .pt checkpoints ----------------------------------------------------------------------------------


@functools.cache
def pt_schema() -> tuple:
    """The keys of a checkpoint's payload, every architecture's config keys and the convention's fields:
    names a mutation adds."""
    import inspect

    from neurocompile.models.architectures import ARCHITECTURES
    from neurocompile.semantics.discretization import Convention

    names = {"format", "version", "architecture", "config", "convention", "state_dict", "extra"}
    for builder in ARCHITECTURES.values():
        names |= set(inspect.signature(builder).parameters)
    return tuple(sorted(names | {f.name for f in dataclasses.fields(Convention)}))


def _payload(state) -> dict | None:
    return state["payload"] if isinstance(state["payload"], dict) else None


def _pt_tree(rng, state):
    """Any key of the payload (picked uniformly): a config or convention field, a tensor of the state_dict
    (values, dtype, shape), the format's own keys: missing, respelled, a sibling added, or a wrong type or
    shape or an extreme."""
    payload = _payload(state)
    if payload is None:
        return None
    state["payload"], how = mutate_tree(rng, payload, pt_schema())
    return how


def _map_leaves(root, convert):
    """``root`` with every leaf of its dicts and lists replaced by ``convert(leaf)``, in place; each container
    once (a payload may share one list a trillion times)."""
    if not isinstance(root, (dict, list)):
        return convert(root)
    seen, pending = set(), [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(value, (dict, list)):
                pending.append(value)
            else:
                node[key] = convert(value)
    return root


def _to_arrays(value):
    import torch

    return value.numpy() if isinstance(value, torch.Tensor) else value


def _as_tensor(value):
    import torch

    try:
        return torch.from_numpy(np.ascontiguousarray(value))
    except (TypeError, ValueError, RuntimeError):
        return np.asarray(value).tolist()


def _shared_bomb() -> list:
    """2**40 elements when expanded, a few hundred bytes pickled (every level references the one below twice)."""
    shared: list = []
    for _ in range(40):
        shared = [shared, shared]
    return shared


def _pt_payload(rng, state):
    """A payload that is no dict, nests lists past any recursion limit, or is huge once expanded."""
    import torch

    how = rng.choice(("list", "tensor", "none", "deep", "shared", "shared extra"))
    if how == "shared extra" and _payload(state) is not None:
        state["payload"]["extra"] = {"bomb": _shared_bomb()}
    elif how == "deep":
        state["deep"] = True
    else:
        state["payload"] = {"list": [1, 2], "tensor": torch.zeros(3), "none": None, "shared": _shared_bomb()}.get(how)
    return f"payload: {how}"


PT_MUTATIONS = {_pt_tree: 6, _pt_payload: 1}


def mutate_checkpoint(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a checkpoint's payload (any key: fields, config, convention, tensors), or other
    pickled content (a module, a class instance, a TorchScript archive, a legacy file, deep nesting)."""
    import torch

    if rng.random() < 0.1:
        return _pickled_content(rng, source, target)
    state = {"payload": _map_leaves(torch.load(source, weights_only=True), _to_arrays)}
    how = _several(rng, PT_MUTATIONS, state)
    if state.get("deep"):
        return how + ", " + _deep_pickle(target)
    legacy = rng.random() < 0.1
    payload = _map_leaves(state["payload"], lambda v: _as_tensor(v) if isinstance(v, (np.ndarray, np.generic)) else v)
    torch.save(payload, target, _use_new_zipfile_serialization=not legacy)
    return how + (", legacy format" if legacy else "")


def _deep_pickle(target: Path) -> str:
    """A checkpoint whose pickle nests lists 10**5 deep (built by opcodes: pickling it would recurse)."""
    depth = 100_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    members = [("archive/data.pkl", data), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]
    target.write_bytes(_zip(members))
    return f"pickle: lists {depth} deep"


def _pickled_content(rng, source: Path, target: Path) -> str:
    """A whole pickled module, a pickled non-module object, or a TorchScript archive (each needs --allow-pickle)."""
    import argparse

    import torch

    from neurocompile.frontend.checkpoint import load_checkpoint

    how = rng.choice(("module", "object", "torchscript"))
    if how == "module":
        torch.save(load_checkpoint(source), target)
    elif how == "object":
        torch.save({"state_dict": argparse.Namespace(a=1)}, target)
    else:
        torch.jit.save(torch.jit.script(torch.nn.Linear(4, 3)), str(target))
    return f"pickled {how}"


# --- .onnx models (for `neurocompile convert`) ----------------------------------------------------------


def _onnx_model(name: str, nodes, input_shape: tuple, outputs: int, weights: dict, check: bool = True):
    """An ONNX model (opset 17): input ``x`` ``[batch, *input_shape]``, output ``y`` ``[batch, outputs]``; float
    weights as float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    initializers = [
        numpy_helper.from_array(w.astype(np.float32) if w.dtype.kind == "f" else w, key) for key, w in weights.items()
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return model


def _weights(rng, shape, scale: float = 0.5) -> np.ndarray:
    """Random float32 weights; a constant for huge layers (drawing 50 M random numbers takes a while)."""
    if math.prod(shape) > 10**6:
        return np.full(shape, 1e-3, np.float32)
    return rng.normal(0, scale, shape).astype(np.float32)


def _dense_onnx(rng, units: int = 6, check: bool = True):
    """x [4] -> Gemm -> Relu -> Gemm [3], with ``units`` hidden units."""
    from onnx import helper

    weights = {"w1": _weights(rng, (units, 4)), "b1": _weights(rng, (units,), 0.1)}
    weights |= {"w2": _weights(rng, (3, units)), "b2": _weights(rng, (3,), 0.1)}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return _onnx_model("dense", nodes, (4,), 3, weights, check)


def _conv_onnx(rng, units: int = 72, check: bool = True):
    """x [1, 6, 6] -> Conv -> BatchNormalization -> Relu -> AveragePool -> Flatten -> Gemm [3]; the Conv makes
    ``units`` values per sample (36 per channel, rounded up)."""
    from onnx import helper

    channels = -(-units // 36)
    weights = {"w": _weights(rng, (channels, 1, 3, 3)), "b": _weights(rng, (channels,), 0.1)}
    weights |= {"gamma": np.ones(channels), "beta": np.zeros(channels), "mean": np.zeros(channels)}
    weights |= {"var": np.ones(channels), "w2": _weights(rng, (3, 9 * channels)), "b2": _weights(rng, (3,), 0.1)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn1"),
        helper.make_node("Relu", ["n"], ["r"], name="relu1"),
        helper.make_node("AveragePool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return _onnx_model("conv", nodes, (1, 6, 6), 3, weights, check)


def _matmul_onnx(rng, units: int = 6, check: bool = True):
    """x [2, 2] -> Reshape [4] -> MatMul -> Add -> Relu -> MatMul -> Add (a Constant) [3], ``units`` hidden."""
    from onnx import helper, numpy_helper

    weights = {"shape": np.array([-1, 4], np.int64), "w1": _weights(rng, (4, units)), "b1": _weights(rng, (units,))}
    weights["w2"] = _weights(rng, (units, 3))
    bias = numpy_helper.from_array(_weights(rng, (3,), 0.1), "b2")
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["h"], name="bias1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("MatMul", ["r", "w2"], ["m2"], name="fc2"),
        helper.make_node("Constant", [], ["b2"], name="bias2", value=bias),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="add2"),
    ]
    return _onnx_model("matmul", nodes, (2, 2), 3, weights, check)


ONNX_MODELS = {  # name -> (builder, input shape, the hidden layer's values per sample)
    "dense-onnx": (_dense_onnx, (4,), 6),
    "conv-onnx": (_conv_onnx, (1, 6, 6), 72),
    "matmul-onnx": (_matmul_onnx, (2, 2), 6),
}
ONNX_UNITS = (0, 0, 1, 2, 3_000_000, 3_000_000, 12_500_000)  # hidden values per sample; 12.5 M (rarest, as a
# file takes seconds to make): a 200 MB Gemm (12.5 M x 4 float32) in the dense network


def _onnx_seed(directory: Path, name: str, rng) -> Model:
    """An ONNX network and analog calibration data (``x``/``y``, and a split) for ``convert``."""
    import onnx

    build, shape, units = ONNX_MODELS[name]
    path = directory / f"{name}.onnx"
    onnx.save(build(rng, units), str(path))
    x, y = rng.random((30, *shape)).astype(np.float32), np.arange(30) % 3
    labelled, split = directory / f"{name}-xy.npz", directory / f"{name}-split.npz"
    np.savez(labelled, x=x, y=y)
    np.savez(split, x_train=x[:20], x_test=x[20:], y_test=y[20:])
    return Model(name, {"onnx": path}, labelled, labelled, split, classifier=False)


def _onnx_case(models, rng, folder, start=None) -> Case:
    """A mutated ONNX model (and now and then mutated calibration data) through ``convert``."""
    model = _choose(rng, [m for m in models if "onnx" in m.files], start)
    mutation = _mutate_from(rng, start, model.files["onnx"], folder / "model.onnx", mutate_onnx)
    data = rng.choice((model.labelled, model.split))
    if rng.random() < 0.15:
        mutation += "; data: " + _mutate_file(rng, data, folder / "data.npz", mutate_arrays_file)
    else:
        _copy(data, folder, "data.npz")
    return Case("onnx", _convert_command(rng), mutation, "model.onnx", model.name)


ONNX_OPS = "Bogus Sigmoid MaxPool Softmax LSTM Relu Gemm Conv Add MatMul Flatten Identity Reshape If Loop".split()
ONNX_ATTRIBUTES = {  # attributes a node may be given that it lacks, by type (values: from EXTREMES)
    "transA": "int",
    "transB": "int",
    "alpha": "float",
    "beta": "float",
    "kernel_shape": "ints",
    "strides": "ints",
    "pads": "ints",
    "dilations": "ints",
    "group": "int",
    "axis": "int",
    "epsilon": "float",
    "auto_pad": "string",
    "count_include_pad": "int",
    "ceil_mode": "int",
    "allowzero": "int",
}
SECRET = np.full(64, 0.25, np.float32).tobytes()  # another file's bytes: finite floats, so a leak goes unnoticed
EXTERNAL_LOCATIONS = ("secret.bin", "./secret.bin", "../secret.bin", "/etc/hostname", "model.onnx", "data.npz", "")


def _onnx_graphs(model) -> list:
    """The model's graph and every graph in a node attribute (If and Loop bodies), at any depth."""
    graphs, pending = [], [model.graph]
    while pending:
        graph = pending.pop()
        graphs.append(graph)
        for node in graph.node:
            for attribute in node.attribute:
                pending += [attribute.g] if attribute.HasField("g") else []
                pending += list(attribute.graphs)
    return graphs


def _onnx_places(model) -> list[tuple]:
    """Every place of an ONNX model a mutation may pick, in every graph: each tensor (an initializer, a
    sparse initializer, an attribute's value), each node's attributes and each attribute, each input's,
    output's and value_info's type and dimension, each opset and the model's IR version."""
    places = [("model", model, None), *(("opset", entry, model) for entry in model.opset_import)]
    for graph in _onnx_graphs(model):
        places += [("tensor", tensor, graph) for tensor in graph.initializer]
        places += [("sparse", sparse, graph) for sparse in graph.sparse_initializer]
        for node in graph.node:
            places.append(("attributes", node, graph))
            for attribute in node.attribute:
                places.append(("attribute", attribute, node))
                places += [("tensor", attribute.t, attribute)] if attribute.HasField("t") else []
                places += (
                    [("sparse", attribute.sparse_tensor, attribute)] if attribute.HasField("sparse_tensor") else []
                )
        for value in (*graph.input, *graph.output, *graph.value_info):
            places.append(("type", value, graph))
            places += [("dim", dim, value) for dim in value.type.tensor_type.shape.dim]
    return places


def _onnx_field(rng, state):
    """Any place of the model (picked uniformly among all of them) made hostile."""
    kind, item, owner = rng.choice(_onnx_places(state["model"]))
    return ONNX_PLACE_MUTATIONS[kind](rng, state, item, owner)


def _onnx_tensor(rng, state, tensor, owner):
    """A tensor's values, data type or dims (up to 2**40, without the data), its data truncated, kept in an
    external file (a relative location), made sparse, dropped or doubled."""
    from onnx import numpy_helper

    how = rng.choice(("values", "values", "data type", "dims", "truncated", "external", "sparse", "drop", "twice"))
    if how == "values":
        try:
            array, change = mutate_array(rng, numpy_helper.to_array(tensor))
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        except Exception:  # an earlier mutation left no array, or numpy dtypes ONNX has no type for
            return None
        return f"tensor {tensor.name}: {change}"
    if how == "data type":
        tensor.data_type = rng.choice((0, 7, 8, 9, 11, 14, 16, 17, 22, 99))
    elif how == "dims":
        dims, how = _int_list(rng, list(tensor.dims))
        tensor.ClearField("dims")
        tensor.dims.extend(dims)
    elif how == "truncated":
        tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    elif how == "external":
        how = _make_external(state, tensor, rng.choice(EXTERNAL_LOCATIONS), rng.choice((0, 8, 2**40)))
    elif how == "sparse":
        return _make_sparse(tensor, owner)
    elif not hasattr(owner, "initializer"):  # drop and twice: of an initializer only
        return None
    elif how == "drop":
        owner.initializer.remove(tensor)
    else:
        owner.initializer.add().CopyFrom(tensor)
    return f"tensor {tensor.name}: {how}"


def _make_external(state, tensor, location: str = "secret.bin", length: int = 12) -> str:
    """``tensor``'s data said to lie in the file ``location`` (``SECRET`` is written as ``secret.bin`` beside the
    model: were it read, the converted graph would hold another file's bytes)."""
    from onnx import TensorProto

    for field in ("raw_data", "float_data", "int64_data", "int32_data", "double_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    state["files"]["secret.bin"] = SECRET
    return f"external data at {location!r}"


def _make_sparse(tensor, owner):
    """An initializer as a sparse initializer, or a Constant's ``value`` as its ``sparse_value``."""
    from onnx import helper, numpy_helper

    try:
        array = numpy_helper.to_array(tensor)
    except Exception:
        return None
    flat = array.reshape(-1)
    where = np.flatnonzero(flat)
    values = numpy_helper.from_array(flat[where], tensor.name)
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(where.astype(np.int64)), list(array.shape))
    if hasattr(owner, "sparse_initializer"):
        owner.initializer.remove(tensor)
        owner.sparse_initializer.append(sparse)
    elif getattr(owner, "name", None) == "value":
        owner.ClearField("t")
        owner.name, owner.type = "sparse_value", owner.SPARSE_TENSOR
        owner.sparse_tensor.CopyFrom(sparse)
    else:
        return None
    return f"tensor {tensor.name}: sparse"


def _onnx_sparse(rng, state, sparse, owner):
    """A sparse tensor's values, indices (out of range, extreme) or dims."""
    part = rng.choice(("values", "indices", "dims"))
    if part == "dims":
        dims, how = _int_list(rng, list(sparse.dims))
        sparse.ClearField("dims")
        sparse.dims.extend(dims)
        return f"sparse {sparse.values.name}: dims {how}"
    return _onnx_tensor(rng, state, getattr(sparse, part), sparse)


def _onnx_attributes(rng, state, node, graph):
    """A node given an attribute it lacks (any of ``ONNX_ATTRIBUTES``), or one of its attributes removed."""
    names = {attribute.name for attribute in node.attribute}
    if names and rng.random() < 0.3:
        name = rng.choice(sorted(names))
        for i, attribute in enumerate(node.attribute):
            if attribute.name == name:
                del node.attribute[i]
                return f"node {node.name}: attribute {name} removed"
    name = rng.choice(sorted(set(ONNX_ATTRIBUTES) - names) or sorted(ONNX_ATTRIBUTES))
    value = _attribute_value(rng, ONNX_ATTRIBUTES[name], [1, 1])
    _set_attribute(node, name, value)
    return f"node {node.name}: {name} = {_short(value)} added"


def _attribute_value(rng, kind: str, old):
    if kind == "int":
        return rng.choice(INT64_EXTREMES)
    if kind == "ints":
        return _int_list(rng, list(old))[0]
    if kind == "float":
        return float(rng.choice(EXTREMES))
    if kind == "floats":
        return [float(rng.choice(EXTREMES)) for _ in range(max(len(old), 1))]
    return rng.choice(HOSTILE_STRINGS + ("SAME_UPPER", "VALID", "NOTSET"))


def _set_attribute(node, name: str, value) -> None:
    """``node``'s attribute ``name`` set to ``value`` (an empty list as integers)."""
    from onnx import AttributeProto, helper

    for i, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[i]
            break
    kind = AttributeProto.INTS if isinstance(value, list) and not value else None
    node.attribute.append(helper.make_attribute(name, value, attr_type=kind))


def _onnx_attribute(rng, state, attribute, node):
    """An attribute's value at an extreme, of a wrong length, or of another type."""
    from onnx import AttributeProto, helper

    kinds = {AttributeProto.INT: "int", AttributeProto.INTS: "ints", AttributeProto.FLOAT: "float"}
    kinds |= {AttributeProto.FLOATS: "floats", AttributeProto.STRING: "string"}
    kind = kinds.get(attribute.type)
    if kind is None:  # tensors and graphs are places of their own
        return None
    if rng.random() < 0.2:
        kind = rng.choice(sorted(set(kinds.values()) - {kind}))
    old = helper.get_attribute_value(attribute)
    value = _attribute_value(rng, kind, old if isinstance(old, list) else [1])
    _set_attribute(node, attribute.name, value)
    return f"node {node.name}: {attribute.name} -> {_short(value)}"


def _onnx_type(rng, state, value, graph):
    from onnx import TensorProto

    value.type.tensor_type.elem_type = rng.choice((TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL, 0, 99))
    return f"{value.name}: element type {value.type.tensor_type.elem_type}"


def _onnx_dim(rng, state, dim, value):
    """A dimension at an extreme (0, -1, 2**40, ...), named, or unknown; or a dimension more."""
    how = rng.choice(("extreme", "extreme", "named", "unknown", "one more"))
    if how == "extreme":
        dim.dim_value = rng.choice(INT64_EXTREMES)
    elif how == "named":
        dim.dim_param = rng.choice(("n", "batch", ""))
    elif how == "unknown":
        dim.Clear()
    else:
        value.type.tensor_type.shape.dim.add().dim_value = rng.choice(INT64_EXTREMES)
    return f"{value.name}: a dimension {how}"


def _onnx_opset(rng, state, entry, model):
    """An opset's version out of range (0, 1, 99999, extremes), its domain unknown, or an unknown domain imported."""
    how = rng.choice(("version", "version", "domain", "unknown domain imported"))
    if how == "version":
        entry.version = rng.choice((0, 1, 8, 99999, *INT64_EXTREMES))
        return f"opset {entry.domain or 'ai.onnx'} -> {entry.version}"
    if how == "domain":
        entry.domain = rng.choice(("com.bogus", "ai.onnx.ml", "ai.onnx", "bogus"))
        return f"opset domain -> {entry.domain}"
    extra = model.opset_import.add()
    extra.domain, extra.version = "com.bogus", rng.choice((1, 99999))
    return "opset of domain com.bogus added"


def _onnx_version(rng, state, model, owner):
    model.ir_version = rng.choice((3, 99, *INT64_EXTREMES))
    return f"IR version -> {model.ir_version}"


ONNX_PLACE_MUTATIONS = {
    "model": _onnx_version,
    "opset": _onnx_opset,
    "tensor": _onnx_tensor,
    "sparse": _onnx_sparse,
    "attributes": _onnx_attributes,
    "attribute": _onnx_attribute,
    "type": _onnx_type,
    "dim": _onnx_dim,
}


def _onnx_node(rng, state):
    """A node's operator or domain changed, an input or output relinked (dangling, cyclic), the node dropped,
    doubled or moved."""
    nodes = state["model"].graph.node
    if not nodes:
        return None
    index = rng.randrange(len(nodes))
    node = nodes[index]
    names = [value for n in nodes for value in (*n.input, *n.output)] + ["ghost", ""]
    how = rng.choice(("op", "op", "input", "output", "drop", "duplicate", "move", "domain"))
    if how == "op":
        node.op_type = rng.choice(ONNX_OPS)
        return f"node {node.name}: op -> {node.op_type}"
    if how == "input" and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(names)
    elif how == "output" and node.output:
        node.output[0] = rng.choice(names)
    elif how == "drop":
        del nodes[index]
    elif how == "duplicate":
        nodes.add().CopyFrom(node)
    elif how == "move" and len(nodes) > 1:
        moved = type(node)()
        moved.CopyFrom(node)
        del nodes[index]
        nodes.insert(rng.randrange(len(nodes) + 1), moved)
    elif how == "domain":
        node.domain = rng.choice(("com.microsoft", "com.bogus", "ai.onnx.ml"))
    else:
        return None
    return f"node {node.name}: {how}"


def _onnx_units(rng, state):
    """The seed network rebuilt with a hidden layer of ``ONNX_UNITS`` values per sample: none, one, millions."""
    if state["seed"] is None:
        return None
    build, _shape, _units = ONNX_MODELS[state["seed"]]
    units = rng.choice(ONNX_UNITS)
    state["model"] = build(np.random.default_rng(rng.randrange(2**32)), units, check=False)
    return f"a hidden layer of {units} values per sample"


def _onnx_subgraph(rng, state):
    """An initializer moved into an If node's branches (its output replaces it) or a Loop's body (unused);
    there it may keep its data in an external file or be sparse."""
    graph = state["model"].graph
    if not graph.initializer:
        return None
    name, how = graph.initializer[rng.randrange(len(graph.initializer))].name, rng.choice(("If", "Loop"))

    def change(body):
        return _onnx_tensor(rng, state, body.initializer[0], body) if rng.random() < 0.7 else "as it was"

    return move_into_subgraph(state["model"], name, how, change)


def move_into_subgraph(model, name: str, how: str, change) -> str:
    """Initializer ``name`` moved into the branches of an If node that outputs it (``how`` "If") or into an
    unused Loop's body ("Loop"); ``change(body)`` mutates it there first and says how."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    tensor = next(t for t in graph.initializer if t.name == name)
    inner = TensorProto()
    inner.CopyFrom(tensor)
    inner.name = f"{name}_inner"
    outputs = [helper.make_tensor_value_info(f"{name}_out", tensor.data_type, list(tensor.dims))]
    nodes = [helper.make_node("Identity", [inner.name], [outputs[0].name])]
    inputs = []
    if how == "Loop":
        inputs = [
            helper.make_tensor_value_info(n, t, []) for n, t in (("i", TensorProto.INT64), ("c", TensorProto.BOOL))
        ]
        nodes.append(helper.make_node("Identity", ["c"], ["c_out"]))
        outputs.insert(0, helper.make_tensor_value_info("c_out", TensorProto.BOOL, []))
    body = helper.make_graph(nodes, f"{name}_{how}", inputs, outputs, [inner])
    done = change(body)
    if how == "If":
        graph.initializer.remove(tensor)
        graph.initializer.append(numpy_helper.from_array(np.array(True), f"{name}_cond"))
        graph.node.insert(0, helper.make_node("If", [f"{name}_cond"], [name], then_branch=body, else_branch=body))
    else:
        graph.initializer.append(numpy_helper.from_array(np.array(1, np.int64), f"{name}_trips"))
        graph.node.insert(0, helper.make_node("Loop", [f"{name}_trips", ""], [f"{name}_scan"], body=body))
    return f"{name} in a {how} body: {done}"


def _onnx_io(rng, state):
    """A second graph input, an input that is also an initializer, or no output."""
    from onnx import TensorProto, helper, numpy_helper

    graph = state["model"].graph
    how = rng.choice(("second input", "input initialized", "no output"))
    if how == "second input":
        graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["batch", 4]))
    elif how == "input initialized":
        graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.float32), "x"))
    else:
        del graph.output[:]
    return how


ONNX_MUTATIONS = {_onnx_field: 8, _onnx_node: 2, _onnx_units: 1, _onnx_subgraph: 1, _onnx_io: 1}


def mutate_onnx(rng, source: Path, target: Path) -> str:
    """Semantic mutations of an ONNX model: any place (tensors, attributes, dims, opsets, in every graph),
    operators and links, layer sizes, subgraphs, external data."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    state = {"model": model, "seed": source.stem if source.stem in ONNX_MODELS else None, "files": {}}
    how = _several(rng, ONNX_MUTATIONS, state)
    target.write_bytes(state["model"].SerializeToString())
    for name, data in state["files"].items():
        (target.parent / name).write_bytes(data)
    return how


def onnx_must_refuse(path: Path) -> str | None:
    """Why ``convert`` must refuse the ONNX model at ``path``: a tensor anywhere in it (any message field, at
    any depth) keeps its data in another file; None otherwise."""
    import onnx

    try:
        pending = [onnx.ModelProto.FromString(path.read_bytes())]
    except Exception:
        return None
    while pending:
        message = pending.pop()
        if isinstance(message, onnx.TensorProto) and (
            message.data_location == onnx.TensorProto.EXTERNAL or len(message.external_data)
        ):
            return f"tensor '{message.name}' keeps its data in another file"
        for field, value in message.ListFields():
            if field.type == field.TYPE_MESSAGE:
                pending += list(value) if hasattr(value, "__len__") and not hasattr(value, "ListFields") else [value]
    return None


CASE_MAKERS = {
    "nir": _model_case("nir", mutate_graph),
    "ncp": _model_case("ncp", mutate_program),
    "pt": _model_case("pt", mutate_checkpoint),
    "spikes": _spikes_case,
    "dataset": _dataset_case,
    "onnx": _onnx_case,
}
MUST_REFUSE = {"nir": graph_must_refuse, "ncp": program_must_refuse, "onnx": onnx_must_refuse}


# --- signatures: what an independent harness found that the generators once did not make ---------------


def _seed(models, name: str) -> Model:
    return next(m for m in models if m.name == name)


def _program_signature(edit, seed: str = "mlp", command: str = "simulate"):
    """A program of ``seed`` edited by ``edit(header, arrays, raw)`` (raw: extra archive members), read by
    ``inspect`` or run by ``simulate``."""

    def make(models, folder: Path) -> list:
        model = _seed(models, seed)
        arrays = _read_arrays(model.files["ncp"])
        header, raw = json.loads(arrays.pop("program.json").tobytes()), {}
        edit(header, arrays, raw)
        arrays["program.json"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        _write_arrays(random.Random(0), folder / "model.ncp", arrays, raw)
        if command == "inspect":
            return ["inspect", "model.ncp"]
        return ["simulate", "model.ncp", "--backend", "cpu", "--input", _copy(model.spikes, folder, "x.npy")]

    return make


def _synapse(header: dict, index: int = 0) -> dict:
    return header["synapses"][index]


PROGRAM_SIGNATURES = {
    "weights-in-program-json": lambda h, a, r: _synapse(h).update(weights=a["syn0.weights"].tolist()),
    "delays-in-program-json": lambda h, a, r: _synapse(h).update(delays=np.ones_like(a["syn0.weights"]).tolist()),
    "bias-mant-in-program-json": lambda h, a, r: h["populations"][0].update(bias_mant=a["pop0.bias_mant"].tolist()),
    "weights-under-an-alias-key": lambda h, a, r: _synapse(h).update(weight=a["syn0.weights"].tolist()),
    "synapse-key-twice-in-the-text": lambda h, a, r: _synapse(h).update({Twice("weight_exp"): 7}),
    "population-key-twice-in-the-text": lambda h, a, r: h["populations"][0].update({Twice("vth"): 2**31 - 1}),
    "header-key-twice-in-the-text": lambda h, a, r: h.update({Twice("outputs"): []}),
    "header-field-as-an-array-member": lambda h, a, r: a.update({"pop0.vth": np.asarray(h["populations"][0]["vth"])}),
    "program-json-member-twice": lambda h, a, r: r.update({"program.json.npy": _other_header(h)}),
    "unknown-key-in-the-header": lambda h, a, r: h.update(bogus=1),
    "unknown-key-in-an-input": lambda h, a, r: h["inputs"][0].update(bogus=1),
    "unknown-key-in-a-population": lambda h, a, r: h["populations"][0].update(bogus=1),
    "unknown-key-in-a-synapse": lambda h, a, r: _synapse(h).update(bogus=1),
}


def _other_header(header: dict) -> bytes:
    """A second program.json member: the header with another threshold (which one a reader takes differs)."""
    other = json.loads(json.dumps(header))
    other["populations"][0]["vth"] += 1
    return _to_npy(np.frombuffer(json.dumps(other).encode(), np.uint8))


def _conv_geometry_key(header, arrays, raw) -> None:
    next(s for s in header["synapses"] if s.get("conv"))["conv"]["bogus"] = 1


def _learning_key(header, arrays, raw) -> None:
    next(s for s in header["synapses"] if s.get("learning"))["learning"]["bogus"] = 1


def _graph_signature(node: str, field: str, value, command: tuple):
    """The MLP's graph with ``node``'s ``field`` set to ``value``, through ``command`` (``{}`` is the file)."""

    def make(models, folder: Path) -> list:
        model = _seed(models, "mlp")
        tree = read_h5(model.files["nir"])
        tree["node"]["nodes"][node][field] = np.asarray(value)
        write_h5(folder / "model.nir", tree)
        _copy(model.spikes, folder, "x.npy")
        return [arg.format("model.nir") for arg in command]

    return make


def _long_input_signature(command: tuple):
    """One sample of ``LONG_STEPS`` steps of uint8 zeros (``x.npy``) through ``command``, on the MLP."""

    def make(models, folder: Path) -> list:
        model = _seed(models, "mlp")
        for form in ("nir", "ncp"):
            _copy(model.files[form], folder, f"model.{form}")
        np.save(folder / "x.npy", np.zeros((1, LONG_STEPS, 4), np.uint8))
        return list(command)

    return make


def _label_signature(label: int, command: str):
    """The MLP's labelled spikes with one label set to ``label``, the data of ``train`` or ``learn``."""

    def make(models, folder: Path) -> list:
        model = _seed(models, "mlp")
        arrays = _read_arrays(model.labelled)
        arrays["y"] = arrays["y"].astype(np.int64)
        arrays["y"][-1] = label
        np.savez(folder / "data.npz", **arrays)
        if command == "train":
            return _train_command(random.Random(0), "data.npz")
        return _learn_command(random.Random(0), _copy(model.files["ncp"], folder, "model.ncp"), "data.npz")

    return make


def _onnx_signature(seed: str, edit=None, units: int | None = None, steps: str = "4"):
    """The ONNX seed ``seed`` (rebuilt with ``units`` hidden values per sample if given) edited by
    ``edit(state)`` (``state["model"]``; ``state["files"]``: files to write beside it), through
    ``convert --steps STEPS``."""

    def make(models, folder: Path) -> list:
        import onnx

        model = _seed(models, seed)
        if units is None:
            onnx_model = onnx.load(str(model.files["onnx"]))
        else:
            onnx_model = ONNX_MODELS[seed][0](np.random.default_rng(0), units, check=False)
        state = {"model": onnx_model, "files": {}}
        if edit is not None:
            edit(state)
        (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
        for name, data in state["files"].items():
            (folder / name).write_bytes(data)
        _copy(model.labelled, folder, "data.npz")
        return ["convert", "model.onnx", "-o", "out.nir", "--calibrate", "data.npz", "--limit", "4", "--steps", steps]

    return make


def _onnx_node_named(model, name: str):
    return next(node for node in model.graph.node if node.name == name)


def _attribute_edit(node: str, name: str, value):
    return lambda state: _set_attribute(_onnx_node_named(state["model"], node), name, value)


def _initializer_edit(name: str, value=None, dims=None):
    """An initializer's value replaced (``value``), or its dims (``dims``, the data left as they are)."""

    def edit(state):
        from onnx import numpy_helper

        tensor = next(t for t in state["model"].graph.initializer if t.name == name)
        if value is not None:
            tensor.CopyFrom(numpy_helper.from_array(np.asarray(value), name))
        if dims is not None:
            tensor.ClearField("dims")
            tensor.dims.extend(dims)

    return edit


def _constant_external(state) -> None:
    """The Constant's ``value`` kept in ``secret.bin`` beside the model (a relative location)."""
    _make_external(state, _onnx_node_named(state["model"], "bias2").attribute[0].t)


def _constant_sparse(state) -> None:
    node = _onnx_node_named(state["model"], "bias2")
    _make_sparse(node.attribute[0].t, node.attribute[0])


def _sparse_initializer(state) -> None:
    graph = state["model"].graph
    _make_sparse(next(t for t in graph.initializer if t.name == "w1"), graph)


def _subgraph_edit(how: str, external: bool):
    """``b1`` moved into an If's branches or a Loop's body (``how``), there kept in ``secret.bin``
    (``external``) or as a sparse tensor."""

    def change(state, body):
        if external:
            return _make_external(state, body.initializer[0])
        return _make_sparse(body.initializer[0], body)

    return lambda state: move_into_subgraph(state["model"], "b1", how, lambda body: change(state, body))


def _opset_edit(version: int | None = None, domain: str | None = None):
    def edit(state):
        entry = state["model"].opset_import[0]
        entry.version = entry.version if version is None else version
        entry.domain = entry.domain if domain is None else domain

    return edit


def _unknown_domain_node(state) -> None:
    _onnx_node_named(state["model"], "relu1").domain = "com.bogus"
    extra = state["model"].opset_import.add()
    extra.domain, extra.version = "com.bogus", 1


def _input_dims(state) -> None:
    state["model"].graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**40


ONNX_SIGNATURES = {
    "conv-strides-0": ("conv-onnx", _attribute_edit("conv1", "strides", [0, 0])),
    "averagepool-strides-0": ("conv-onnx", _attribute_edit("pool1", "strides", [0, 0])),
    "conv-empty-pads": ("conv-onnx", _attribute_edit("conv1", "pads", [])),
    "conv-strides-of-the-wrong-length": ("conv-onnx", _attribute_edit("conv1", "strides", [1])),
    "averagepool-strides-of-the-wrong-length": ("conv-onnx", _attribute_edit("pool1", "strides", [2, 2, 2])),
    "conv-dilations-2**40": ("conv-onnx", _attribute_edit("conv1", "dilations", [2**40, 1])),
    "conv-group-0": ("conv-onnx", _attribute_edit("conv1", "group", 0)),
    "gemm-of-0-units": ("dense-onnx", None, 0),
    "matmul-to-0-features": ("matmul-onnx", None, 0),
    "add-bias-of-size-0": ("matmul-onnx", _initializer_edit("b1", np.zeros(0, np.float32))),
    "reshape-to-an-empty-shape": ("matmul-onnx", _initializer_edit("shape", np.zeros(0, np.int64))),
    "reshape-to-a-0-d-shape": ("matmul-onnx", _initializer_edit("shape", np.array(4, np.int64))),
    "gemm-bias-0-d": ("dense-onnx", _initializer_edit("b1", np.array(0.5, np.float32))),
    "a-layer-of-3M-values": ("dense-onnx", None, 3_000_000),
    "a-conv-of-16M-values": ("conv-onnx", None, 16_000_000),
    "a-200MB-gemm": ("dense-onnx", None, 12_500_000),
    "steps-100000": ("dense-onnx", None, None, str(LONG_STEPS)),
    "steps-99999999999999999999": ("dense-onnx", None, None, "99999999999999999999"),
    "constant-value-in-an-external-file": ("matmul-onnx", _constant_external),
    "constant-sparse-value": ("matmul-onnx", _constant_sparse),
    "sparse-initializer": ("dense-onnx", _sparse_initializer),
    "if-branch-tensor-in-an-external-file": ("dense-onnx", _subgraph_edit("If", external=True)),
    "if-branch-sparse-tensor": ("dense-onnx", _subgraph_edit("If", external=False)),
    "loop-body-tensor-in-an-external-file": ("dense-onnx", _subgraph_edit("Loop", external=True)),
    "initializer-dims-2**40": ("dense-onnx", _initializer_edit("w1", dims=[2**40, 4])),
    "input-dims-2**40": ("dense-onnx", _input_dims),
    "opset-1": ("dense-onnx", _opset_edit(1)),
    "opset-0": ("dense-onnx", _opset_edit(0)),
    "opset-99999": ("dense-onnx", _opset_edit(99999)),
    "unknown-domain-of-the-opset": ("dense-onnx", _opset_edit(domain="com.bogus")),
    "unknown-domain-of-a-node": ("dense-onnx", _unknown_domain_node),
}
FLOAT64_MAX = float(_FLOAT64.max)
SIGNATURE_FILES = {
    "ncp": "model.ncp",
    "nir": "model.nir",
    "spikes": "x.npy",
    "dataset": "data.npz",
    "onnx": "model.onnx",
}
SIGNATURES = {  # "FORMAT/NAME" -> maker(models, folder) -> argv; the file under test is SIGNATURE_FILES[FORMAT]
    **{f"ncp/{name}": _program_signature(edit) for name, edit in PROGRAM_SIGNATURES.items()},
    "ncp/unknown-key-in-a-conv-geometry": _program_signature(_conv_geometry_key, "conv", "inspect"),
    "ncp/unknown-key-in-a-learning-rule": _program_signature(_learning_key, "plastic", "inspect"),
    "nir/output-shape-float64-max": _graph_signature(
        "output", "shape", [FLOAT64_MAX], ("compile", "{}", "-o", "out.ncp")
    ),
    "nir/input-shape-float64-max": _graph_signature(
        "input", "shape", [FLOAT64_MAX], ("simulate", "{}", "--backend", "float", "--input", "x.npy")
    ),
    "nir/output-shape-float64-max-twice": _graph_signature("output", "shape", [FLOAT64_MAX] * 2, ("inspect", "{}")),
    "spikes/simulate-cpu-100000-steps": _long_input_signature(
        ("simulate", "model.ncp", "--backend", "cpu", "--input", "x.npy")
    ),
    "spikes/simulate-float-100000-steps": _long_input_signature(
        ("simulate", "model.nir", "--backend", "float", "--input", "x.npy")
    ),
    "spikes/compile-calibrate-100000-steps": _long_input_signature(
        ("compile", "model.nir", "--calibrate", "x.npy", "-o", "out.ncp")
    ),
    "dataset/train-label-2**31-1": _label_signature(2**31 - 1, "train"),
    "dataset/train-label-2**31-2": _label_signature(2**31 - 2, "train"),
    "dataset/learn-label-2**31-1": _label_signature(2**31 - 1, "learn"),
    **{f"onnx/{name}": _onnx_signature(*spec) for name, spec in ONNX_SIGNATURES.items()},
}
