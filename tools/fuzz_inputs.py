"""Fuzz inputs: small valid files of every input format, hostile mutations of them, and a command that reads each.

``tools/fuzz.py`` runs long campaigns from these generators and ``tests/tools/test_fuzz.py`` a bounded number.
Every generator draws from a ``random.Random``: a campaign is reproducible from its seed, and Hypothesis
drives the same generators through ``st.randoms()``.

* :func:`make_seeds` writes valid files: reference-architecture checkpoints (``.pt``), their NIR export
  (``.nir``) and compiled programs (``.ncp``), a hand-made graph of the less common primitives, a float
  program, a learning program, the NIR paper's graphs when ``shared/`` holds them, and for each model
  matching spikes (``.npy``; ``.npz`` with labels) and datasets (``.npz``, whole or split); and two ONNX
  ReLU networks (dense, conv) with analog calibration data for ``neurocompile convert``.
* :func:`make_case` copies what a command needs into a case folder, mutates the file of the format under
  test (semantically: fields, shapes, types, values, links; or at the zip or byte level) and returns the
  command. Paths in the command are relative to the folder, so a kept folder reproduces on its own:
  ``cd FOLDER && neurocompile ARGV``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import shutil
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("nir", "ncp", "pt", "spikes", "dataset", "onnx")
STEPS = 6  # time steps of every seed input
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
    """One fuzz case: the command (run in its folder) and what was done to the file under test."""

    fmt: str
    argv: list
    mutation: str


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
    models += [_onnx_seed(directory, name, make, rng) for name, make in ONNX_MODELS.items()]
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


def make_case(fmt: str, models: list[Model], rng: random.Random, folder) -> Case:
    """A mutated file of format ``fmt`` in ``folder`` and a command that reads it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CASE_MAKERS[fmt](models, rng, folder)


def _model_case(form: str, mutate_semantic):
    """A case maker for a model format: mutate a seed's ``form`` file, then run a command on it."""

    def make(models, rng, folder):
        model = rng.choice([m for m in models if form in m.files])
        name = f"model.{form}"
        mutation = _mutate_file(rng, model.files[form], folder / name, mutate_semantic)
        return Case(form, _model_command(rng, form, name, model, folder), mutation)

    return make


def _model_command(rng, form: str, name: str, model: Model, folder: Path) -> list:
    """A command that loads the model file ``name``: inspect, simulate, compile, export or learn."""
    commands = ["simulate cpu"]
    commands += ["inspect"] if form in ("nir", "ncp") else []
    commands += ["simulate float"] if form in ("nir", "pt") else []
    commands += ["compile"] if form == "nir" else []
    commands += ["export"] if form == "pt" else []
    commands += ["learn"] if model.classifier and rng.random() < 0.15 else []
    command = rng.choice(commands)
    if command == "inspect":
        return ["inspect", name, *_maybe(rng, "--json"), *(_maybe(rng, "--lenient") if form == "nir" else [])]
    if command == "compile":
        calibrate = _maybe(rng, "--calibrate", _copy(model.spikes, folder, "x.npy"))
        return ["compile", name, "-o", "out.ncp", *calibrate, *_maybe(rng, "--lenient")]
    if command == "export":
        return ["export", name, "-o", "out.nir", *_maybe(rng, "--allow-pickle")]
    if command == "learn":
        return _learn_command(rng, name, _copy(model.labelled, folder, "data.npz"))
    if rng.random() < 0.7:
        data = ["--input", _copy(model.spikes, folder, "x.npy")]
    else:
        data = ["--data", _copy(model.labelled, folder, "data.npz"), "--steps", str(STEPS)]
    return _simulate_command(rng, name, command.split()[1], data) + (_maybe(rng, "--lenient") if form == "nir" else [])


def _simulate_command(rng, model: str, backend: str, data: list) -> list:
    limit = ["--limit", str(rng.choice((1, 2, 4)))] if rng.random() < 0.7 else []
    return ["simulate", model, "--backend", backend, *data, *limit, *_maybe(rng, "--json")]


def _learn_command(rng, model: str, data: str, steps: int | None = STEPS) -> list:
    rule = ["--rule", rng.choice(("ottt", "stllr")), "--layers", rng.choice(("readout", "all"))]
    steps_option = ["--steps", str(steps)] if steps is not None else []
    return ["learn", model, *rule, "--data", data, *steps_option, "--limit", "8", "-o", "learned.ncp"]


def _spikes_case(models, rng, folder) -> Case:
    """Mutated input spikes (``.npy``, or ``.npz`` with labels) run through a valid model, or used to calibrate."""
    model = rng.choice([m for m in models if m.classifier and "ncp" in m.files])  # models that load and run
    if rng.random() < 0.6:
        name, source = "x.npy", model.spikes
    else:
        name, source = "x.npz", model.labelled
    mutation = _mutate_file(rng, source, folder / name, mutate_arrays_file)
    if "nir" in model.files and rng.random() < 0.2:
        argv = ["compile", _copy(model.files["nir"], folder, "model.nir"), "--calibrate", name, "-o", "out.ncp"]
        return Case("spikes", argv, mutation)
    form, backend = _runnable(rng, model)
    steps = ["--steps", str(rng.choice((1, STEPS, 40)))] if rng.random() < 0.2 else []
    model_file = _copy(model.files[form], folder, f"model.{form}")
    return Case("spikes", _simulate_command(rng, model_file, backend, ["--input", name, *steps]), mutation)


def _dataset_case(models, rng, folder) -> Case:
    """A mutated ``.npz`` dataset run through a valid model, used to calibrate, or learned from."""
    model = rng.choice([m for m in models if m.classifier and "ncp" in m.files])  # models that load and run
    source = model.labelled if rng.random() < 0.6 else model.split
    mutation = _mutate_file(rng, source, folder / "data.npz", mutate_arrays_file)
    steps = rng.choice((STEPS, STEPS, STEPS, 1, 16, None))
    steps_option = ["--steps", str(steps)] if steps is not None else []
    choice = rng.random()
    if "nir" in model.files and choice < 0.15:
        argv = ["compile", _copy(model.files["nir"], folder, "model.nir"), "--calibrate", "data.npz", "-o", "out.ncp"]
    elif choice < 0.3:
        form = rng.choice(sorted(model.files))
        argv = _learn_command(rng, _copy(model.files[form], folder, f"model.{form}"), "data.npz", steps)
    else:
        form, backend = _runnable(rng, model)
        model_file = _copy(model.files[form], folder, f"model.{form}")
        argv = _simulate_command(rng, model_file, backend, ["--data", "data.npz", *steps_option])
    return Case("dataset", argv, mutation)


def _runnable(rng, model: Model) -> tuple[str, str]:
    """A form of ``model`` and a backend that runs it (a program runs on cpu only)."""
    form = rng.choice(sorted(model.files))
    return form, "cpu" if form == "ncp" else rng.choice(("cpu", "float"))


def _copy(source: Path, folder: Path, name: str) -> str:
    shutil.copyfile(source, folder / name)
    return name


def _maybe(rng, *args, p: float = 0.3) -> list:
    return list(args) if rng.random() < p else []


# --- mutating a file -------------------------------------------------------------------------------


def _mutate_file(rng, source: Path, target: Path, mutate_semantic) -> str:
    """Write a mutation of ``source`` to ``target``: none (5%), semantic, byte-level, or both; returns what was done."""
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


# --- values and arrays -----------------------------------------------------------------------------

SPECIAL_VALUES = (math.nan, math.inf, -math.inf, 0.0, -1.0, 0.5, 2.0, 1e9, 1e30, -1e30, 1e300, 5e-324, 2.0**63)
HUGE_INTS = (10**9, 2**31, 2**62, 10**12, -1, 0, -(2**31))
ODD_DTYPES = (
    "bool int8 uint8 int64 uint64 float16 float64 complex128 >f4 <U4 S4 object V8 datetime64[s] structured".split()
)
HOSTILE_NUMBERS = (None, True, False, 0, -1, 1, 2**31, 2**63, 10**30, 0.5, -0.5, 1e308, math.nan, math.inf, -math.inf)
HOSTILE_JSON = (*HOSTILE_NUMBERS, "", "bogus", [], {}, [0], [10**9], [[1, 2]], {"bogus": 1})


def _as_float(arr: np.ndarray) -> np.ndarray:
    try:
        return np.array(arr, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros(arr.shape)


def _values(rng, arr):
    out = _as_float(arr).reshape(-1)
    value = rng.choice(SPECIAL_VALUES)
    if out.size == 0:
        return np.array([value]), f"empty -> [{value!r}]"
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


def _huge(rng, arr):
    try:
        out = np.array(arr, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        out = np.zeros(max(arr.size, 1), np.int64)
    value = rng.choice(HUGE_INTS)
    if out.size == 0:
        out = np.zeros(1, np.int64)
    out[rng.randrange(out.size)] = value
    return out.reshape(np.shape(arr)) if out.size == np.size(arr) else out, f"an element -> {value}"


ARRAY_MUTATIONS = {_values: 2, _scaled: 1, _retyped: 1, _reshaped: 1, _huge: 1}


def mutate_array(rng, value) -> tuple[np.ndarray, str]:
    """A hostile variant of an array: special values, scaled, retyped, reshaped, or an element made huge."""
    return _pick(rng, ARRAY_MUTATIONS)(rng, np.array(value))


def hostile_json(rng):
    value = rng.choice(HOSTILE_JSON)
    return copy.deepcopy(value)


def _json_paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _json_paths(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _json_paths(value, (*path, i))


def _parent(root, path):
    for key in path[:-1]:
        root = root[key]
    return root


def mutate_json(rng, root):
    """A JSON-like tree with one value deleted, replaced, wrapped, emptied or tweaked: ``(root, description)``."""
    path = rng.choice(list(_json_paths(root)))
    where = "/".join(map(str, path)) or "<root>"
    value = _parent(root, path)[path[-1]] if path else root
    how = rng.choice(("delete", "hostile", "hostile", "wrap", "add key", "empty", "tweak"))
    if how == "delete" and path:
        container = _parent(root, path)
        del container[path[-1]]
        return root, f"{where} deleted"
    if how == "add key" and isinstance(value, dict):
        value["bogus"] = hostile_json(rng)
        return root, f"{where}/bogus added"
    if how == "empty" and isinstance(value, (dict, list)):
        new = type(value)()
    elif how == "wrap":
        new = [value]
    elif how == "tweak" and isinstance(value, (int, float)) and not isinstance(value, bool):
        new = rng.choice((value + 1, value - 1, -value, value * 10**9, float(value) + 0.5, str(value)))
    else:
        new = hostile_json(rng)
    if not path:
        return new, f"<root> -> {_short(new)}"
    _parent(root, path)[path[-1]] = new
    return root, f"{where} -> {_short(new)}"


def _short(value) -> str:
    text = repr(value)
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
    """Labels that are negative, huge (a bincount of 10**18), fractional, of a wrong length or rank."""
    keys = [k for k in state["arrays"] if k.startswith("y")]
    if not keys:
        return None
    key = rng.choice(keys)
    how = rng.choice(("negative", "huge", "float", "nan", "one class", "too many", "too few", "2-D", "bool", "single"))
    if how == "single":
        state["arrays"] = {k: v[:1] for k, v in state["arrays"].items() if np.ndim(v)}
        return "every array cut to one sample"
    try:
        state["arrays"][key] = _relabel(rng, np.atleast_1d(state["arrays"][key]), how)
    except (TypeError, ValueError, IndexError):  # an earlier mutation left no labels to change this way
        return None
    return f"{key}: {how}"


def _relabel(rng, y: np.ndarray, how: str) -> np.ndarray:
    y = y.copy()
    if how == "negative":
        y[0] = -1
    elif how == "huge":
        y = y.astype(np.int64)
        y[-1] = rng.choice((10**9, 10**18, 2**63 - 1))
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
    return y


def _sizes(rng, state):
    """Few samples, no samples, one time step, or time steps that differ between arrays."""
    how = rng.choice(("no samples", "two samples", "one step", "steps differ", "samples differ"))
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
    else:
        arrays[key] = x[:-1]
    return f"{key or 'x'}: {how}"


def _keys(rng, state):
    """Arrays dropped, renamed or added (the loader picks arrays by name)."""
    arrays = state["arrays"]
    if "" in arrays or not arrays:
        return None
    key = rng.choice(sorted(arrays))
    how = rng.choice(("drop", "rename", "add"))
    if how == "drop":
        del arrays[key]
    elif how == "rename":
        arrays[rng.choice(("x", "y", "x_train", "y_test", "X", "labels"))] = arrays.pop(key)
    else:
        arrays[rng.choice(("x", "y", "x_test", "y_train", "bogus"))] = mutate_array(rng, arrays[key])[0]
    return f"{key}: {how}"


def _crafted_member(rng, state):
    """An array replaced by a crafted .npy: a huge shape without the data, a bad dtype, a broken header."""
    if not state["arrays"]:
        return None
    key = rng.choice(sorted(state["arrays"]))
    state["raw"][f"{key}.npy" if key else ""], how = _crafted_npy(rng)
    del state["arrays"][key]
    return f"{key or 'array'}: {how}"


ARRAY_FILE_MUTATIONS = {
    _array_values: 1,
    _spike_values: 2,
    _label_values: 1,
    _sizes: 1,
    _keys: 1,
    _crafted_member: 1,
}


def mutate_arrays_file(rng, source: Path, target: Path) -> str:
    """Semantic mutations of an ``.npy``/``.npz`` file of spikes or a dataset."""
    state = {"arrays": _read_arrays(source), "raw": {}}
    how = _several(rng, ARRAY_FILE_MUTATIONS, state)
    _write_arrays(rng, target, state["arrays"], state["raw"])
    return how


# --- .ncp programs -----------------------------------------------------------------------------------

NCP_FIELDS = {
    "inputs": {
        "shape": ([10**9], [10**5, 10**5], [], [0], [-1], [2.5], ["a"], None, 7, [10**30]),
        "kind": ("target", "bogus", None, 3),
        "name": ("", None, 5, "lif1", "x" * 300),
    },
    "populations": {
        "shape": ([10**9], [10**5, 10**5], [], [0], [-1], [2.5], [True], None, [10**30]),
        "du": (-1, 4096, 0.5, math.nan, None, "1", 10**30),
        "dv": (-1, 4096, 0.5, math.inf, [1, 2]),
        "vth": (-1, 2**17, 0.5, math.nan, 10**30, None),
        "bias_exp": (-1, 8, 0.5, None),
        "spiking": ("yes", None, 2),
        "reset_interval": (-1, 10**18, 0.5, True, "1"),
        "reset": ("bogus", None, 1),
        "source_type": (None, 5, "Bogus"),
        "learning": ({}, "x", {"bogus": 1}, [], {"target": "ghost"}),
        "name": ("", None, 5, "input", "x" * 300),
    },
    "synapses": {
        "source": ("ghost", "", None, 5),
        "target": ("ghost", "", None, 5),
        "kind": ("conv", "bogus", "sparse", "dense", None),
        "weight_exp": (-9, 8, 0.5, None, 10**30),
        "num_weight_bits": (0, 9, -1, 1000, None),
        "sign_mode": ("bogus", "excitatory", "inhibitory", None),
        "conv": (
            None,
            {},
            "x",
            {"input_shape": [1, 10**5, 10**5], "output_shape": [1, 10**5, 10**5]},
            {"input_shape": [1, 4, 4], "output_shape": [1, 4, 4], "stride": [0, 0], "groups": 0},
            {"input_shape": [1, 4, 4], "output_shape": [1, 4, 4], "dilation": [10**9, 1], "padding": [-5, 0]},
        ),
        "recurrent": ("yes", None, 1),
        "learning": ({}, "x", {"bogus": 1}, [], {"products": "x"}),
        "signal": ("error", "bogus", None),
        "name": ("", None, 5),
    },
}
NCP_TOP = {
    "outputs": ([], ["ghost"], None, "lif1", [5], [[]], ["input"]),
    "number_format": ("float", "bogus", None, 1),
    "version": (0, 2, None, "1", 1.0),
    "format": ("bogus", None, 1),
    "metadata": (None, [], "x", {"dt": "x"}, {"dt": -1}),
    "inputs": ([], None, {}, "x", [None], [{}]),
    "populations": ([], None, {}, [None], [{}]),
    "synapses": ([], None, {}, [None], [{}]),
}


def _ncp_header(state) -> dict | None:
    header = state["header"]
    return header if isinstance(header, dict) else None


def _ncp_names(header: dict) -> list:
    nodes = [p for key in ("inputs", "populations") if isinstance(header.get(key), list) for p in header[key]]
    return [p.get("name") for p in nodes if isinstance(p, dict)]


def _ncp_field(rng, state):
    """A population, synapse or input field set to a hostile value for that field."""
    header = _ncp_header(state)
    section = rng.choice(sorted(NCP_FIELDS))
    items = header.get(section) if header else None
    if not isinstance(items, list) or not items:
        return None
    index = rng.randrange(len(items))
    if not isinstance(items[index], dict):  # an earlier mutation replaced it
        return None
    field = rng.choice(sorted(NCP_FIELDS[section]))
    value = copy.deepcopy(rng.choice(NCP_FIELDS[section][field]))
    if field in ("source", "target") and rng.random() < 0.5:  # relink to another existing node
        value = rng.choice(_ncp_names(header) or [value])
    if field in ("learning", "conv") and rng.random() < 0.5 and isinstance(items[index].get(field), dict):
        items[index][field], how = mutate_json(rng, items[index][field])
        return f"{section}[{index}].{field}: {how}"
    items[index][field] = value
    return f"{section}[{index}].{field} -> {_short(value)}"


def _ncp_top(rng, state):
    header = _ncp_header(state)
    if header is None:
        return None
    key = rng.choice(sorted(NCP_TOP))
    header[key] = copy.deepcopy(rng.choice(NCP_TOP[key]))
    return f"{key} -> {_short(header[key])}"


def _ncp_json(rng, state):
    state["header"], how = mutate_json(rng, state["header"])
    return f"program.json: {how}"


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
        arrays[rng.choice(("pop9.bias_mant", "syn9.weights", "syn0.delays", "pop0.bias_mant", "syn1.weights"))] = (
            arrays.pop(key)
        )
    elif how == "delays" and key.endswith(".weights"):
        delays = np.full(np.shape(arrays[key]), rng.choice((1, 62, 63, 10**9, -1)), dtype=np.int64)
        arrays[key.replace(".weights", ".delays")] = delays
    else:
        state["raw"][f"{key}.npy"], change = _crafted_npy(rng)
        del arrays[key]
        return f"{key}: {change}"
    return f"{key}: {how}"


NCP_MUTATIONS = {
    _ncp_field: 3,
    _ncp_top: 1,
    _ncp_json: 2,
    _ncp_header_text: 1,
    _ncp_header_array: 1,
    _ncp_array: 2,
}


def mutate_program(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a ``.ncp``: its JSON header (fields, types, links, nesting) and its arrays."""
    arrays = _read_arrays(source)
    state = {"header": json.loads(arrays.pop("program.json").tobytes()), "arrays": arrays, "raw": {}}
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
    _write_arrays(rng, target, state["arrays"], state["raw"])
    return how


# --- .nir graphs (HDF5) -----------------------------------------------------------------------------


def read_h5(path: Path) -> dict:
    """An HDF5 file as nested dicts of its datasets' values."""
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
        pass
    arr = np.asarray(value, dtype=object)
    text = np.empty(arr.shape, dtype=object)
    for index, item in np.ndenumerate(arr):
        text[index] = item if isinstance(item, (bytes, str)) else str(item)
    group.create_dataset(name, data=text, dtype=h5py.string_dtype())


def _copy_tree(tree: dict) -> dict:
    """A deep copy of nested dicts with array leaves (iterative: trees nest past the recursion limit)."""
    root: dict = {}
    pending = [(tree, root)]
    while pending:
        source, target = pending.pop()
        for key, value in source.items():
            if isinstance(value, dict):
                target[key] = {}
                pending.append((value, target[key]))
            else:
                target[key] = value.copy() if isinstance(value, np.ndarray) else value
    return root


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


def _node_type(node: dict) -> str:
    kind = node.get("type", b"")
    return kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)


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


NIR_FIELDS = {
    ("Input", "Output"): {"shape": ([10**9], [10**5, 10**5], [0], [-1], [], [2.5], [10**12, 1, 1], [10**30])},
    ("LIF", "CubaLIF", "LI", "CubaLI"): {
        "tau": (0.0, -1.0, 1e-30, 1e30),
        "tau_mem": (0.0, -1.0, 1e-30),
        "tau_syn": (0.0, 1e30),
        "r": (0.0, 1e30, -1.0),
        "v_threshold": (0.0, -1.0, 1e-30, 1e30),
        "v_leak": (1e30, -1e30),
        "v_reset": (1e30, math.nan),
        "w_in": (1e30, 0.0),
    },
    ("IF", "I"): {"r": (0.0, 1e30, -1.0), "v_threshold": (0.0, -1.0, 1e30)},
    ("Delay",): {"delay": (1e9, 1e-9, 1e300, -1.0, 0.5)},
    ("Conv1d", "Conv2d"): {
        "stride": (0, -1, 10**9),
        "padding": (-1, 10**9, b"bogus", b"same"),
        "dilation": (0, 10**9),
        "groups": (0, -1, 10**9),
        "input_shape": ([10**9, 10**9], [0, 0], 10**9),
    },
    ("SumPool2d", "AvgPool2d"): {
        "kernel_size": ([0, 0], [10**9, 10**9]),
        "stride": ([0, 0], [-1, 1]),
        "padding": ([-1, -1], [10**9, 10**9]),
    },
    ("Flatten",): {"start_dim": (10**9, -(10**9)), "end_dim": (10**9, -(10**9))},
    ("Scale",): {"scale": (math.nan, 1e300, 0.0)},
    ("Threshold",): {"threshold": (math.inf, -1e30, 0.0)},
    ("Affine", "Linear"): {"weight": (1e30, -1e30, 0.0)},
}
NIR_METADATA = {
    "dt": (0.0, -1.0, math.nan, 1e300, 1e-300, b"x", 10**9),
    "convention": (b"bogus", b"", 5),
    "convention_options": (b"{", b"[]", b'{"dt": 0}', b'{"reset": "bogus"}', b'{"bogus": 1}', b'{"dt": "x"}'),
}
NIR_TYPES = (b"Bogus", b"", b"NIRGraph", b"LIF", b"CubaLIF", b"Delay", b"Conv2d", b"Flatten", b"Input", b"Output", 5)


def _nir_field(rng, tree):
    """A numeric field of a node: special values, dtype, shape, size."""
    nodes = _nir_nodes(tree)
    if not nodes:
        return None
    path, node = rng.choice(nodes)
    fields = [k for k, v in node.items() if k != "type" and not isinstance(v, dict)]
    if not fields:
        return None
    field = rng.choice(fields)
    node[field], how = mutate_array(rng, node[field])
    return f"{path}/{field}: {how}"


def _nir_targeted(rng, tree):
    """A field set to a value that its primitive must refuse or handle: absurd sizes, zero time constants, huge delays."""
    nodes = _nir_nodes(tree)
    path, node = rng.choice(nodes) if nodes else ("", {})
    kind = _node_type(node)
    table = next((fields for kinds, fields in NIR_FIELDS.items() if kind in kinds), None)
    if table is None:
        return None
    field = rng.choice(sorted(table))
    value = rng.choice(table[field])
    old = node.get(field)
    node[field] = (
        np.full(np.shape(old), value) if old is not None and np.ndim(old) and np.ndim(value) == 0 else np.asarray(value)
    )
    return f"{path}/{field} -> {_short(value)}"


def _nir_drop_field(rng, tree):
    nodes = _nir_nodes(tree) + _nir_graphs(tree)
    path, node = rng.choice(nodes or [("", {})])
    if not node:
        return None
    field = rng.choice(sorted(node))
    del node[field]
    return f"{path}/{field} deleted"


def _nir_add_field(rng, tree):
    path, node = rng.choice(_nir_nodes(tree) or [("", {})])
    field = rng.choice(
        ("bogus", "input_type", "output_type", "metadata", "tau", "weight", "delay", "shape", "type_check")
    )
    node[field] = rng.choice((np.zeros(3), np.float64(math.nan), b"x", {"input": np.array([10**9])}))
    return f"{path}/{field} added"


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
        graph["nodes"][rng.choice(names)] = _copy_tree(rng.choice(donors))
    elif how == "swap" and len(names) > 1:
        a, b = rng.sample(names, 2)
        graph["nodes"][a], graph["nodes"][b] = graph["nodes"][b], graph["nodes"][a]
    else:
        graph["nodes"]["extra"] = _copy_tree(rng.choice(donors))
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
    inner = _copy_tree(node)
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
        tree["node"] = _copy_tree(rng.choice(_nir_nodes(tree) or [("", {})])[1])
    elif how == "no root":
        tree.pop("node", None)
    else:
        tree["version"] = rng.choice((b"9.9.9", b"", 5, np.zeros(2)))
    return f"graph: {how}"


def _nir_metadata(rng, tree):
    graphs = _nir_graphs(tree)
    if not graphs:
        return None
    metadata = graphs[0][1].setdefault("metadata", {})
    if not isinstance(metadata, dict):
        return None
    key = rng.choice(sorted(NIR_METADATA))
    metadata[key] = rng.choice(NIR_METADATA[key])
    return f"metadata/{key} -> {_short(metadata[key])}"


NIR_MUTATIONS = {
    _nir_field: 2,
    _nir_targeted: 3,
    _nir_drop_field: 1,
    _nir_add_field: 1,
    _nir_type: 1,
    _nir_nodes_change: 1,
    _nir_edges: 2,
    _nir_nest: 1,
    _nir_graph_shape: 1,
    _nir_metadata: 1,
}


def mutate_graph(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a ``.nir`` file: node fields, types, nodes, edges, nesting, metadata; or HDF5 links."""
    tree = read_h5(source)
    how = _several(rng, NIR_MUTATIONS, tree)
    write_h5(target, tree)
    if rng.random() < 0.05:
        how += ", " + _hdf5_link(rng, target)
    return how


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

PT_CONFIG = {
    "sizes": ([4, 10**9], [4, 10**5, 10**5], [4, -1], [4, 0], [4, 2.5], ["a", 3], [4], [], None, "x", [4, [3]]),
    "n_hidden": (10**9, 0, -1, 2.5, "x"),
    "n_in": (10**9, 0),
    "n_out": (10**9, 0, -3),
    "channels": (10**6, 0, -1),
    "kernel_size": (10**4, 0, -1),
    "padding": (10**6, -1),
    "pool": (0, 10**6),
    "input_shape": ([1, 10**5, 10**5], [1, 2], [0, 6, 6], [-1, 6, 6], [10**9, 6, 6]),
    "neuron": ("Bogus", None, 5, "NIRGraph"),
    "output_neuron": ("Bogus", "Threshold", "LI"),
    "neuron_params": (
        {"tau": 0.0},
        {"tau": math.nan},
        {"tau": -1.0},
        {"tau": "x"},
        {"bogus": 1},
        {"v_threshold": [1, 2]},
        "x",
        [1],
    ),
    "output_params": ({"tau": 0.0}, {"r": math.inf}, {"bogus": 1}),
    "bias": ("yes", None, 2),
    "bogus": (1,),
}
PT_CONVENTION = (0.0, -1.0, math.nan, math.inf, 1e300, "x", None, "bogus", [1], {}, True, 10**9)


def _payload(state) -> dict | None:
    return state["payload"] if isinstance(state["payload"], dict) else None


def _pt_top(rng, state):
    payload = _payload(state)
    if payload is None:
        return None
    key = rng.choice(("format", "version", "architecture", "config", "convention", "state_dict", "extra"))
    how = rng.choice(("delete", "hostile", "other architecture"))
    if how == "delete":
        payload.pop(key, None)
        return f"{key} deleted"
    if how == "other architecture" or key == "architecture":
        payload["architecture"] = rng.choice(("MLP", "ConvNet", "RecurrentNet", "SNN", "Bogus", None, 5))
        return f"architecture -> {payload['architecture']!r}"
    payload[key] = hostile_json(rng)
    return f"{key} -> {_short(payload[key])}"


def _pt_config(rng, state):
    config = (_payload(state) or {}).get("config")
    if not isinstance(config, dict):
        return None
    if rng.random() < 0.3:
        state["payload"]["config"], how = mutate_json(rng, config)
        return f"config: {how}"
    key = rng.choice(sorted(PT_CONFIG))
    config[key] = copy.deepcopy(rng.choice(PT_CONFIG[key]))
    return f"config/{key} -> {_short(config[key])}"


def _pt_convention(rng, state):
    convention = (_payload(state) or {}).get("convention")
    if not isinstance(convention, dict) or not convention:
        return None
    key = rng.choice(sorted(convention) + ["bogus"])
    if rng.random() < 0.3 and key in convention:
        del convention[key]
        return f"convention/{key} deleted"
    convention[key] = copy.deepcopy(rng.choice(PT_CONVENTION))
    return f"convention/{key} -> {_short(convention[key])}"


def _as_tensor(value):
    import torch

    try:
        return torch.from_numpy(np.ascontiguousarray(value))
    except (TypeError, ValueError, RuntimeError):
        return value.tolist() if isinstance(value, np.ndarray) else value


def _pt_state(rng, state):
    """A tensor's values, dtype or shape; a tensor dropped, added or not a tensor."""
    tensors = (_payload(state) or {}).get("state_dict")
    if not isinstance(tensors, dict) or not tensors:
        return None
    key = rng.choice(sorted(tensors))
    how = rng.choice(("mutate", "mutate", "mutate", "drop", "add", "not a tensor"))
    if how == "mutate":
        value = tensors[key].numpy() if hasattr(tensors[key], "numpy") else np.asarray(tensors[key])
        mutated, change = mutate_array(rng, value)
        tensors[key] = _as_tensor(mutated)
        return f"state_dict/{key}: {change}"
    if how == "drop":
        del tensors[key]
    elif how == "add":
        tensors["bogus.weight"] = tensors[key]
    else:
        tensors[key] = rng.choice(([1.0, 2.0], "x", None, {"a": 1}))
    return f"state_dict/{key}: {how}"


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


PT_MUTATIONS = {_pt_top: 1, _pt_config: 3, _pt_convention: 1, _pt_state: 2, _pt_payload: 1}


def mutate_checkpoint(rng, source: Path, target: Path) -> str:
    """Semantic mutations of a checkpoint's payload (fields, config, convention, tensors), or other
    pickled content (a module, a class instance, a TorchScript archive, a legacy file, deep nesting)."""
    import torch

    if rng.random() < 0.1:
        return _pickled_content(rng, source, target)
    state = {"payload": torch.load(source, weights_only=True)}
    how = _several(rng, PT_MUTATIONS, state)
    if state.get("deep"):
        return how + ", " + _deep_pickle(target)
    legacy = rng.random() < 0.1
    torch.save(state["payload"], target, _use_new_zipfile_serialization=not legacy)
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


def _onnx_model(name: str, nodes, input_shape: tuple, outputs: int, weights: dict):
    """A float32 ONNX model (opset 17): input ``x`` ``[batch, *input_shape]``, output ``y`` ``[batch, outputs]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    initializers = [numpy_helper.from_array(w.astype(np.float32), key) for key, w in weights.items()]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _dense_onnx(rng):
    """x [4] -> Gemm -> Relu -> Gemm [3]."""
    from onnx import helper

    weights = {"w1": rng.normal(0, 0.5, (6, 4)), "b1": rng.normal(0, 0.1, 6)}
    weights |= {"w2": rng.normal(0, 0.5, (3, 6)), "b2": rng.normal(0, 0.1, 3)}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return _onnx_model("dense", nodes, (4,), 3, weights)


def _conv_onnx(rng):
    """x [1, 6, 6] -> Conv -> BatchNormalization -> Relu -> AveragePool -> Flatten -> Gemm [3]."""
    from onnx import helper

    weights = {"w": rng.normal(0, 0.5, (2, 1, 3, 3)), "b": rng.normal(0, 0.1, 2)}
    weights |= {"gamma": np.ones(2), "beta": np.zeros(2), "mean": np.zeros(2), "var": np.ones(2)}
    weights |= {"w2": rng.normal(0, 0.5, (3, 18)), "b2": rng.normal(0, 0.1, 3)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn1"),
        helper.make_node("Relu", ["n"], ["r"], name="relu1"),
        helper.make_node("AveragePool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    return _onnx_model("conv", nodes, (1, 6, 6), 3, weights)


ONNX_MODELS = {"dense-onnx": (_dense_onnx, (4,)), "conv-onnx": (_conv_onnx, (1, 6, 6))}


def _onnx_seed(directory: Path, name: str, make, rng) -> Model:
    """An ONNX network and analog calibration data (``x``/``y``, and a split) for ``convert``."""
    import onnx

    build, shape = make
    path = directory / f"{name}.onnx"
    onnx.save(build(rng), str(path))
    x, y = rng.random((30, *shape)).astype(np.float32), np.arange(30) % 3
    labelled, split = directory / f"{name}-xy.npz", directory / f"{name}-split.npz"
    np.savez(labelled, x=x, y=y)
    np.savez(split, x_train=x[:20], x_test=x[20:], y_test=y[20:])
    return Model(name, {"onnx": path}, labelled, labelled, split, classifier=False)


def _onnx_case(models, rng, folder) -> Case:
    """A mutated ONNX model (and now and then mutated calibration data) through ``convert``."""
    model = rng.choice([m for m in models if "onnx" in m.files])
    mutation = _mutate_file(rng, model.files["onnx"], folder / "model.onnx", mutate_onnx)
    data = rng.choice((model.labelled, model.split))
    if rng.random() < 0.15:
        mutation += "; data: " + _mutate_file(rng, data, folder / "data.npz", mutate_arrays_file)
    else:
        _copy(data, folder, "data.npz")
    argv = ["convert", "model.onnx", "-o", "out.nir", "--calibrate", "data.npz", "--limit", "4"]
    argv += ["--steps", rng.choice(("4", "2,4"))] + _maybe(rng, "--readout", "voltage")
    argv += _maybe(rng, "--percentile", rng.choice(("0", "50", "100", "101", "-1", "nan", "inf")), p=0.1)
    return Case("onnx", argv, mutation)


ONNX_OPS = "Bogus Sigmoid MaxPool Softmax LSTM Relu Gemm Conv Add MatMul Flatten Identity".split()
ONNX_ATTRIBUTES = {
    "transB": (0, 2, -1),
    "transA": (1,),
    "alpha": (math.nan, math.inf, 0.0, -1.0),
    "beta": (math.nan, 0.0, 1e30),
    "kernel_shape": ([0, 0], [10**9, 10**9], [3], [-1, -1]),
    "strides": ([0, 0], [10**9, 10**9], [-1, 1]),
    "pads": ([-1, -1, -1, -1], [10**9, 0, 0, 0], [1, 1]),
    "dilations": ([0, 0], [10**6, 10**6]),
    "group": (0, -1, 2, 10**9),
    "axis": (10**9, -(10**9), 0, 3),
    "epsilon": (-1.0, math.nan, 0.0),
    "auto_pad": ("SAME_UPPER", "VALID", "bogus"),
    "count_include_pad": (1, 7),
    "ceil_mode": (1,),
}


def _onnx_initializer(rng, model):
    """A weight's values, dtype, dims or data: special values, a wrong type, a huge shape without data, gone."""
    from onnx import numpy_helper

    inits = model.graph.initializer
    if not inits:
        return None
    tensor = inits[rng.randrange(len(inits))]
    how = rng.choice(("values", "values", "data type", "dims", "truncated", "drop", "duplicate"))
    if how == "values":
        try:
            array, change = mutate_array(rng, numpy_helper.to_array(tensor))
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        except Exception:  # an earlier mutation left no array, or numpy dtypes ONNX has no type for
            return None
        return f"initializer {tensor.name}: {change}"
    if how == "data type":
        tensor.data_type = rng.choice((0, 7, 8, 9, 11, 14, 16, 17, 22, 99))
    elif how == "dims":
        tensor.ClearField("dims")
        tensor.dims.extend(rng.choice(([10**9, 4], [0], [], [2**40], [-3, 2], [1, 1, 1, 1, 1, 1, 1, 1])))
    elif how == "truncated":
        tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
    elif how == "drop":
        inits.remove(tensor)
    else:
        inits.add().CopyFrom(tensor)
    return f"initializer {tensor.name}: {how}"


def _onnx_node(rng, model):
    """A node's operator changed, an input or output relinked (dangling, cyclic), the node dropped, doubled or moved."""
    nodes = model.graph.node
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
        node.domain = rng.choice(("com.microsoft", "bogus"))
    else:
        return None
    return f"node {node.name}: {how}"


def _onnx_attribute(rng, model):
    """An attribute of a node set to a value its operator must refuse or cope with."""
    from onnx import helper

    nodes = model.graph.node
    if not nodes:
        return None
    node = nodes[rng.randrange(len(nodes))]
    key = rng.choice(sorted(ONNX_ATTRIBUTES))
    value = rng.choice(ONNX_ATTRIBUTES[key])
    for i, attribute in enumerate(node.attribute):
        if attribute.name == key:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(key, value))
    return f"node {node.name}: {key} -> {_short(value)}"


def _onnx_signature(rng, model):
    """The input's or output's shape or type changed, a second one added, or one removed."""
    from onnx import TensorProto, helper

    graph = model.graph
    how = rng.choice(("input dims", "input dims", "input type", "output dims", "second input", "no output"))
    if how == "second input":
        graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["batch", 4]))
    elif how == "no output":
        del graph.output[:]
    elif how == "input type" and graph.input:
        graph.input[0].type.tensor_type.elem_type = rng.choice((TensorProto.DOUBLE, TensorProto.INT64, 0))
    else:
        values = graph.input if how == "input dims" else graph.output
        if not values:
            return None
        dims = values[0].type.tensor_type.shape.dim
        axis = rng.randrange(len(dims)) if dims else 0
        change = rng.choice((10**9, 0, -1, "n", None, "rank"))
        if change == "rank":
            dims.add().dim_value = 2
        elif axis < len(dims):
            if change is None:
                dims[axis].Clear()
            elif isinstance(change, str):
                dims[axis].dim_param = change
            else:
                dims[axis].dim_value = change
    return f"signature: {how}"


def _onnx_version(rng, model):
    """The opset or IR version out of range, the default opset gone, or a weight kept in an external file."""
    how = rng.choice(("opset", "opset", "no opset", "ir", "external"))
    if how == "opset":
        if not model.opset_import:
            return None
        model.opset_import[0].version = rng.choice((1, 8, 9, 11, 99, 10**9))
        return f"opset -> {model.opset_import[0].version}"
    if how == "no opset":
        del model.opset_import[:]
    elif how == "ir":
        model.ir_version = rng.choice((0, 3, 99))
    elif model.graph.initializer:
        from onnx import TensorProto

        tensor = model.graph.initializer[0]
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../../../etc/hostname"
    return how


ONNX_MUTATIONS = {
    _onnx_initializer: 2,
    _onnx_node: 2,
    _onnx_attribute: 2,
    _onnx_signature: 1,
    _onnx_version: 1,
}


def mutate_onnx(rng, source: Path, target: Path) -> str:
    """Semantic mutations of an ONNX model: weights, operators, links, attributes, signature, versions."""
    import onnx

    model = onnx.load(str(source))
    how = _several(rng, ONNX_MUTATIONS, model)
    target.write_bytes(model.SerializeToString())
    return how


CASE_MAKERS = {
    "nir": _model_case("nir", mutate_graph),
    "ncp": _model_case("ncp", mutate_program),
    "pt": _model_case("pt", mutate_checkpoint),
    "spikes": _spikes_case,
    "dataset": _dataset_case,
    "onnx": _onnx_case,
}
