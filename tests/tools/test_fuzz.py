"""Fuzzing in CI: hostile files of every input format end in a result or a one-line error, never worse.

The generators are ``tools/fuzz_inputs.py``; ``tools/fuzz.py`` runs them in forked children under a
memory cap and a timeout and classifies the outcome. Here Hypothesis drives the generators for a
bounded number of cases per format (``tools/fuzz.py --cases N`` runs long campaigns), every case of the
regression corpus (``tests/fixtures/fuzz-corpus``: what campaigns and an independent harness found) is
replayed, and named hostile files pin the bugs the fuzzing found. Also: what ``export``/``compile``
write, their readers accept (round trip), the float and CPU backends refuse the same inputs, and
``inspect`` refuses the ``.ncp`` files that ``simulate`` refuses.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocompile.errors import NeurocompileError
from neurocompile.frontend.checkpoint import save_checkpoint
from neurocompile.frontend.nir_io import load_graph
from neurocompile.ir.program import FixedPointProgram
from neurocompile.models.architectures import build
from tools import fuzz
from tools.fuzz_inputs import FORMATS, SIGNATURES, STEPS, make_case, make_seeds, mutate_program

CASES_PER_FORMAT = 20
FUZZ_SETTINGS = settings(
    max_examples=CASES_PER_FORMAT,
    deadline=None,
    derandomize=True,  # the same cases every run; tools/fuzz.py explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    fuzz.preload()
    models = make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))
    fuzz.warm_up(models, tmp_path_factory.mktemp("warm-up"))
    return models


@pytest.fixture(scope="module")
def mlp(seeds):
    return next(m for m in seeds if m.name == "mlp")


def case_memory() -> int:
    """The address-space cap for a case forked from this process: the room a case has under ``tools/fuzz.py``'s
    cap (4 GiB, forked from a parent of about 1 GiB after preload and warm-up) on top of what this process holds.

    A forked child inherits its parent's address space, and a pytest worker that ran Lava first holds a few GiB
    of thread stacks that Lava runs leave behind: under a flat 4 GiB cap, its cases would fail to allocate
    (MemoryError, segfaults) depending on which tests the worker ran before these.
    """
    with open("/proc/self/status") as fh:
        held = next(int(line.split()[1]) << 10 for line in fh if line.startswith("VmSize:"))
    return max(4 << 30, held + (3 << 30))


def run(folder: Path, *argv) -> fuzz.Result:
    """``neurocompile ARGV`` in ``folder``, in a forked child under the fuzzer's memory cap and timeout."""
    cases = [(None, folder, [str(a) for a in argv])]
    ((_, _, result),) = fuzz.run_cases(cases, jobs=1, timeout=60, memory=case_memory())
    return result


def describe(case, result: fuzz.Result) -> str:
    return f"{result.outcome}: {case.mutation}\n  neurocompile {' '.join(case.argv)}\n{result.stderr[-3000:]}"


# --- bounded fuzzing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_files_end_in_a_result_or_a_one_line_error(fmt, seeds, tmp_path):
    @FUZZ_SETTINGS
    @given(rng=st.randoms(use_true_random=False))
    def case(rng):
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        made = make_case(fmt, seeds, rng, folder)
        result = fuzz.judged(made, run(folder, *made.argv))
        assert result.outcome not in fuzz.BAD, describe(made, result)
        shutil.rmtree(folder)

    case()


# --- the regression corpus ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", fuzz.corpus_cases(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_corpus_cases_end_in_a_result_or_a_one_line_error(case, seeds, tmp_path):
    """Each case ends in a result without a Python warning (the campaign's ``warned``), or a one-line error."""
    made = fuzz.prepare_case(case, tmp_path, seeds)
    ((_, _, result),) = fuzz.run_cases([(None, tmp_path, made.argv)], jobs=1, timeout=20, memory=case_memory())
    result = fuzz.judged(made, result)
    assert result.outcome in ("ok", "rejected"), describe(made, result)
    assert result.outcome == "rejected" or "Warning" not in result.stderr, describe(made, result)


def test_every_signature_is_in_the_corpus():
    written = {f"{path.parent.name}/{path.name}" for path in fuzz.corpus_cases()}
    assert set(SIGNATURES) <= written, sorted(set(SIGNATURES) - written)


def test_a_file_that_must_be_refused_and_is_not_is_a_bug():
    from tools.fuzz_inputs import Case

    ok = fuzz.Result("ok", 0, "", "", 0.1)
    assert fuzz.judged(Case("ncp", [], "", refuse="program.json repeats the key 'vth'"), ok).outcome == "accepted"
    assert fuzz.judged(Case("ncp", [], ""), ok).outcome == "ok"
    assert "accepted" in fuzz.BAD


def test_program_keys_twice_unknown_or_stray_must_be_refused(mlp, tmp_path):
    from tools.fuzz_inputs import Twice, program_must_refuse

    assert program_must_refuse(mlp.files["ncp"]) is None
    edits = {
        "program.json repeats the key 'vth'": lambda h, a: h["populations"][0].update({Twice("vth"): 5}),
        "populations[0]: unknown key 'weights'": lambda h, a: h["populations"][0].update(weights=[1]),
        "array member 'pop0.vth' belongs to no population or synapse": lambda h, a: a.update({"pop0.vth": np.ones(1)}),
    }
    for why, edit in edits.items():
        path = edit_program(mlp.files["ncp"], tmp_path / "model.ncp", lambda h, a, edit=edit: edit(h, a) or h)
        assert program_must_refuse(path) == why


def test_a_traced_case_records_the_project_lines_it_ran(mlp, tmp_path):
    argv = ["inspect", mlp.files["ncp"]]
    ((_, _, result),) = fuzz.run_cases([(None, tmp_path, argv)], jobs=1, timeout=60, memory=case_memory(), trace=True)
    lines = fuzz.read_lines(tmp_path)
    assert result.outcome == "ok" and len(lines) > 100
    assert all(name.startswith(fuzz.project_roots()) for name, _ in lines)


def test_guided_cases_mutate_an_earlier_case_further(seeds, tmp_path):
    import random

    first = make_case("ncp", seeds, random.Random(1), tmp_path / "first")
    later = [
        make_case("ncp", seeds, random.Random(i), tmp_path / f"later-{i}", [(tmp_path / "first", first, 1)])
        for i in range(12)
    ]
    further = [case for case in later if f" <- {first.mutation}"[:100] in case.mutation]
    assert further and all((case.file, case.model) == (first.file, first.model) for case in further)


# --- the bugs the fuzzing found ---------------------------------------------------------------------


def write_npz(path: Path, members: dict) -> Path:
    """An ``.npz`` from ``{name: array, or the raw bytes of a .npy}``."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            if isinstance(value, bytes):
                archive.writestr(f"{name}.npy", value)
            else:
                buffer = io.BytesIO()
                np.save(buffer, value)
                archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def huge_npy(shape, descr="<f4") -> bytes:
    """A ``.npy`` whose header claims ``shape``, with no data: readers must refuse it before allocating."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape})
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def assert_one_line(result: fuzz.Result, *fragments: str) -> None:
    assert result.outcome == "rejected", (result.outcome, result.stderr)
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def spikes(n: int, steps: int = STEPS, width: int = 4) -> np.ndarray:
    return (np.random.default_rng(0).random((n, steps, width)) < 0.4).astype(np.float32)


DATASETS = {
    "an x header of 10**12 values": (
        {"x": huge_npy((10**6, 10**6, 4)), "y": np.zeros(3, np.int64)},
        "needs 1.49e+04 GiB",
    ),
    "labels of 10**18 (a bincount of 8 EiB)": (
        {"x": spikes(10), "y": np.array([0] * 9 + [10**18])},
        "field 'y': labels must be integers",
    ),
    "one sample": ({"x": spikes(1), "y": np.zeros(1, np.int64)}, "1 sample cannot be split"),
    "pickled objects": ({"x": spikes(4).astype(object), "y": np.zeros(4, np.int64)}, "holds Python objects"),
    "complex spikes": (
        {"x": spikes(4) + 1j, "y": np.zeros(4, np.int64)},
        "expected real numbers, got dtype complex",
    ),
    "NaN spikes": ({"x": spikes(4) * np.nan, "y": np.zeros(4, np.int64)}, "field 'x': contains NaN"),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_hostile_datasets_are_one_line_errors(name, mlp, tmp_path):
    members, message = DATASETS[name]
    write_npz(tmp_path / "data.npz", members)
    result = run(tmp_path, "simulate", mlp.files["ncp"], "--backend", "cpu", "--data", "data.npz", "--steps", STEPS)
    assert_one_line(result, "dataset 'data.npz'", message)


@pytest.mark.parametrize("corruption", ["crc", "method", "encrypted"])
def test_corrupt_zip_members_are_one_line_errors(corruption, mlp, tmp_path):
    from tools.fuzz_inputs import _patch_headers

    field = {"crc": (14, 16, "<I", 0xDEADBEEF), "method": (8, 10, "<H", 99), "encrypted": (6, 8, "<H", 1)}[corruption]
    path = write_npz(tmp_path / "data.npz", {"x": spikes(10), "y": np.arange(10) % 3})
    path.write_bytes(_patch_headers(path.read_bytes(), "x.npy", *field))
    result = run(tmp_path, "simulate", mlp.files["ncp"], "--backend", "cpu", "--data", "data.npz", "--steps", STEPS)
    assert_one_line(result, "dataset 'data.npz': not a readable NumPy file")


def test_a_dataset_too_small_to_stratify_still_splits(tmp_path):
    from neurocompile.data import load_npz

    path = write_npz(tmp_path / "data.npz", {"x": spikes(5), "y": np.array([0, 0, 1, 1, 2])})
    (x_train, y_train), (x_test, y_test) = (load_npz(path, split=split) for split in ("train", "test"))
    assert len(y_train) + len(y_test) == 5 and len(x_test) == len(y_test) == 1


def test_splitting_labels_up_to_the_int64_maximum_does_not_overflow():
    import warnings

    from neurocompile.data import split_indices

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would print before convert's report
        train, test = split_indices(np.array([0, 1, 2, 2**63 - 1]), "data 'd.npz'")
    assert sorted([*train, *test]) == [0, 1, 2, 3]


SPIKE_FILES = {
    "1e300 as float64 (no overflow warning)": (spikes(3).astype(np.float64) * 1e300, "values beyond the float32 range"),
    "complex": (spikes(3) + 1j, "expected real numbers"),
    "a header of 4e9 values": (huge_npy((1, 10**9, 4)), "needs 14.9 GiB"),
    "no time steps": (spikes(3)[:, :0], "at least one sample and step"),
}


@pytest.mark.parametrize("name", list(SPIKE_FILES))
def test_hostile_spike_inputs_are_one_line_errors(name, mlp, tmp_path):
    value, message = SPIKE_FILES[name]
    path = tmp_path / "x.npy"
    if isinstance(value, bytes):
        path.write_bytes(value)
    else:
        np.save(path, value)
    result = run(tmp_path, "simulate", mlp.files["nir"], "--backend", "float", "--input", "x.npy")
    assert_one_line(result, "input 'x.npy'", message)


def test_labels_of_a_spike_file_are_checked(mlp, tmp_path):
    np.savez(tmp_path / "x.npz", x=spikes(3), y=np.zeros(5, np.int64))
    result = run(tmp_path, "simulate", mlp.files["ncp"], "--backend", "cpu", "--input", "x.npz")
    assert_one_line(result, "input 'x.npz', field 'y': expected [N] labels for 3 samples")


def test_padding_to_absurd_steps_is_refused_before_allocating(mlp, tmp_path):
    argv = ["simulate", mlp.files["ncp"], "--backend", "cpu", "--input", mlp.spikes, "--steps", 10**10]
    assert_one_line(run(tmp_path, *argv), "10000000000 steps would need")
    argv = ["simulate", mlp.files["nir"], "--data", "digits", "--steps", 10**9]
    assert_one_line(run(tmp_path, *argv), "dataset 'digits': 360 samples x 1000000000 steps x 64 inputs need")


def edit_program(source: Path, target: Path, edit) -> Path:
    """A copy of the program ``source`` with ``edit(header, arrays)`` applied (arrays by name, no .npy)."""
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(arrays.pop("program.json").tobytes())
    header = edit(header, arrays)
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    arrays["program.json"] = np.frombuffer(text, dtype=np.uint8)
    write_npz(target, arrays)
    return target


def setting(path, value):
    """An edit setting the header field at ``path`` to ``value``."""

    def edit(header, arrays):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return header

    return edit


def without_array(key):
    def edit(header, arrays):
        del arrays[key]
        return header

    return edit


def narrower_weights(header, arrays):
    arrays["syn0.weights"] = arrays["syn0.weights"][:, :-1]
    return header


PROGRAMS = {
    "header not an object": (lambda h, a: b"[1, 2]", "not a neurocompile program"),
    "header nested 10**5 deep": (
        lambda h, a: b"[" * 100_000 + b"]" * 100_000,
        "program.json: not JSON (RecursionError)",
    ),
    "conv geometry {}": (setting(("synapses", 0, "conv"), {}), "synapses[0].conv: field 'input_shape' is missing"),
    "dv of two values": (setting(("populations", 0, "dv"), [1, 2]), "parameter 'dv': one value per population"),
    "kind 'bogus'": (setting(("synapses", 0, "kind"), "bogus"), "parameter 'kind': must be one of dense, sparse, conv"),
    "10**9 neurons": (setting(("populations", 0, "shape"), [10**9]), "parameter 'shape': 1000000000 neurons need"),
    "an unknown field": (setting(("populations", 0, "bogus"), 1), "populations[0]: unknown field 'bogus'"),
    "weights of the wrong shape": (
        narrower_weights,
        "parameter 'weights': shape [6, 3] is not [6, 4] (target x source)",
    ),
    "a missing array": (without_array("pop1.bias_mant"), "array 'pop1.bias_mant' is missing"),
    "a broken quantization report": (
        setting(("metadata", "quantization", "layers", 0, "scale"), {}),
        "metadata 'quantization': not a valid quantization report",
    ),
    "a synapse into an input port": (setting(("synapses", 0, "target"), "input"), "'input' is not a population"),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_hostile_programs_are_one_line_errors_of_inspect_and_simulate(name, mlp, tmp_path):
    edit, message = PROGRAMS[name]
    edit_program(mlp.files["ncp"], tmp_path / "model.ncp", edit)
    assert_one_line(run(tmp_path, "inspect", "model.ncp"), "model.ncp", message)
    simulated = run(tmp_path, "simulate", "model.ncp", "--backend", "cpu", "--input", mlp.spikes)
    assert_one_line(simulated, "model.ncp", message)


def test_a_program_member_that_is_not_an_array_is_a_one_line_error(mlp, tmp_path):
    import zipfile

    path = edit_program(mlp.files["ncp"], tmp_path / "model.ncp", without_array("pop0.bias_mant"))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("pop0.bias_mant", b"raw bytes")  # np.load would hand these back as bytes
    assert_one_line(run(tmp_path, "inspect", "model.ncp"), "member 'pop0.bias_mant' is not a .npy array")


def edit_checkpoint(source: Path, target: Path, edit) -> Path:
    payload = torch.load(source, weights_only=True)
    edit(payload)
    torch.save(payload, target)
    return target


CHECKPOINTS = {
    "a layer of 10**10 weights": (
        lambda p: p["config"].update(sizes=[4, 10**5, 10**5]),
        "state_dict 'fc1.weight' has shape [6, 4], the architecture needs [100000, 4]",
    ),
    "a negative layer size": (lambda p: p["config"].update(sizes=[4, 6, -3]), "does not build a MLP (RuntimeError"),
    "a list for a neuron name": (lambda p: p["config"].update(output_neuron=["LIF"]), "'MLP': bad config"),
    "a list for the state_dict": (lambda p: p.update(state_dict=[[1, 2]]), "'state_dict' must be a dict of tensors"),
    "a NaN weight": (lambda p: p["state_dict"]["fc1.weight"].fill_(float("nan")), "'fc1.weight' holds NaN"),
    "a complex weight": (
        lambda p: p["state_dict"].update({"fc1.weight": p["state_dict"]["fc1.weight"] + 1j}),
        "'fc1.weight' has dtype torch.complex64",
    ),
    "a tau of 0": (lambda p: p["state_dict"]["lif2.tau"].zero_(), "'lif2.tau': time constants must be positive"),
    "a dt that is a string": (lambda p: p["convention"].update(dt="x"), "convention option dt='x'"),
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_hostile_checkpoints_are_one_line_errors(name, mlp, tmp_path):
    edit, message = CHECKPOINTS[name]
    edit_checkpoint(mlp.files["pt"], tmp_path / "model.pt", edit)
    assert_one_line(run(tmp_path, "export", "model.pt", "-o", "out.nir"), "model.pt", message)
    assert not (tmp_path / "out.nir").exists()


def test_a_checkpoint_with_an_undecodable_member_name_is_a_one_line_error(mlp, tmp_path):
    data = bytearray(mlp.files["pt"].read_bytes())
    entry = data.find(b"PK\x01\x02")  # the first member's central directory entry
    data[entry + 9] |= 0x08  # flag bit 11: the name is UTF-8
    data[entry + 46] = 0xB7  # ...and it is not
    (tmp_path / "model.pt").write_bytes(bytes(data))
    assert_one_line(run(tmp_path, "export", "model.pt", "-o", "out.nir"), "model.pt")


def edit_graph(source: Path, target: Path, edit) -> Path:
    from tools.fuzz_inputs import read_h5, write_h5

    tree = read_h5(source)
    edit(tree["node"])
    write_h5(target, tree)
    return target


def nested(node: dict, depth: int) -> dict:
    """``node`` inside ``depth`` subgraphs, each Input -> inner -> Output."""
    shape = np.array([6])
    for _ in range(depth):
        edges = np.array([[b"input", b"inner"], [b"inner", b"output"]], dtype=object)
        io = {"input": {"type": b"Input", "shape": shape}, "output": {"type": b"Output", "shape": shape}}
        node = {"type": b"NIRGraph", "nodes": {**io, "inner": node}, "edges": edges}
    return node


GRAPHS = {
    "an Input shape of NaN": (
        lambda g: g["nodes"]["input"].update(shape=np.array([np.nan])),
        "node 'input', field 'shape': must be positive integers",
    ),
    "an Output named input": (
        lambda g: g["nodes"]["input"].update(type=b"Output"),
        "edge ('input', 'fc1') leaves an Output or enters an Input node",
    ),
    "subgraphs nested 100 deep": (
        lambda g: g["nodes"].update(lif1=nested(g["nodes"]["lif1"], 100)),
        "model.nir: groups nested more than 64 deep",
    ),
    "a subnormal time constant": (
        lambda g: g["nodes"]["lif1"].update(tau=np.full(6, 5e-324)),
        "node 'lif1', field 'tau': contains subnormal values",
    ),
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_hostile_graphs_are_one_line_errors(name, mlp, tmp_path):
    edit, message = GRAPHS[name]
    edit_graph(mlp.files["nir"], tmp_path / "model.nir", edit)
    for command in ("inspect", "compile"):
        assert_one_line(run(tmp_path, command, "model.nir", "--lenient"), message)


def test_absurd_conv_geometry_is_refused_before_use(seeds, tmp_path):
    conv = next(m for m in seeds if m.name == "conv")
    edit_graph(
        conv.files["nir"], tmp_path / "model.nir", lambda g: g["nodes"]["conv1"].update(dilation=np.array([1e30, 1]))
    )
    result = run(tmp_path, "simulate", "model.nir", "--backend", "float", "--input", conv.spikes, "--lenient")
    assert_one_line(result, "node 'conv1', field 'dilation': must be integers in [1, 65536]")


def corrupt_global_heap(source: Path, target: Path) -> Path:
    """``source`` with the header of the second object of its HDF5 global heap zeroed (the edge names live
    there): HDF5 2.0 then loops forever reading the edges."""
    import struct

    data = bytearray(source.read_bytes())
    first = data.find(b"GCOL") + 16
    size = struct.unpack_from("<Q", data, first + 8)[0]
    second = first + 16 + (size + 7) // 8 * 8
    data[second : second + 16] = bytes(16)
    target.write_bytes(bytes(data))
    return target


def test_an_hdf5_file_that_loops_forever_is_a_one_line_error(mlp, tmp_path, monkeypatch):
    from neurocompile.frontend import nir_io

    monkeypatch.setattr(nir_io, "read_timeout", lambda path: 1.0)  # the forked child inherits it
    corrupt_global_heap(mlp.files["nir"], tmp_path / "model.nir")
    assert_one_line(
        run(tmp_path, "inspect", "model.nir"), "model.nir: reading its HDF5 took over 1 s; the file is corrupt"
    )


# --- round trip, backend consistency, inspect/simulate consistency -----------------------------------

NEURONS = ("LIF", "CubaLIF", "IF")
OUTPUT_NEURONS = ("LIF", "CubaLIF", "IF", "LI", "CubaLI", "I")


@st.composite
def architectures(draw):
    """Small MLPs, ConvNets and RecurrentNets with any neuron models and bias choice."""
    kind = draw(st.sampled_from(["MLP", "ConvNet", "RecurrentNet"]))
    neuron, output = draw(st.sampled_from(NEURONS)), draw(st.sampled_from(OUTPUT_NEURONS))
    common = dict(neuron=neuron, output_neuron=output, bias=draw(st.booleans()))
    if kind == "MLP":
        sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))
        return kind, dict(sizes=sizes, **common), (sizes[0],)
    if kind == "ConvNet":
        side = draw(st.integers(4, 7))
        config = dict(input_shape=[1, side, side], channels=draw(st.integers(1, 3)), n_out=draw(st.integers(1, 4)))
        return kind, dict(config, **common), (1, side, side)
    n_in = draw(st.integers(1, 5))
    return kind, dict(n_in=n_in, n_hidden=draw(st.integers(1, 5)), n_out=draw(st.integers(1, 4)), **common), (n_in,)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(arch=architectures(), calibrate=st.booleans(), convention=st.sampled_from(["neurocompile", "snntorch"]))
def test_what_export_and_compile_write_their_readers_accept(arch, calibrate, convention):
    from neurocompile.semantics.discretization import get_convention

    name, config, input_shape = arch
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        torch.manual_seed(0)
        save_checkpoint(build(name, config, get_convention(convention)), folder / "model.pt")
        np.save(folder / "x.npy", (np.random.default_rng(0).random((2, STEPS, *input_shape)) < 0.5).astype(np.float32))
        assert run(folder, "export", "model.pt", "-o", "model.nir").outcome == "ok"
        load_graph(folder / "model.nir")
        argv = ["compile", "model.nir", "-o", "model.ncp", *(["--calibrate", "x.npy"] if calibrate else [])]
        assert run(folder, *argv).outcome == "ok"
        FixedPointProgram.load(folder / "model.ncp")


BACKEND_INPUTS = {
    "spikes": lambda x: x,
    "bool": lambda x: x.astype(bool),
    "int8": lambda x: x.astype(np.int8),
    "non-binary": lambda x: x * 2,
    "fractional": lambda x: x * 0.5,
    "negative": lambda x: -x,
    "NaN": lambda x: np.where(x > 0, np.nan, 0.0),
    "inf": lambda x: np.where(x > 0, np.inf, 0.0),
    "complex": lambda x: x + 0j,
    "objects": lambda x: x.astype(object),
    "strings": lambda x: x.astype(str),
    "wrong width": lambda x: x[..., :-1],
    "no time axis": lambda x: x[:, 0],
    "extra axis": lambda x: x[..., None],
    "empty batch": lambda x: x[:0],
    "empty time": lambda x: x[:, :0],
}
GRADED = ("non-binary", "fractional", "negative")  # a float simulator takes them; a fixed-point one needs spikes


def verdict(model, x, backend: str) -> str:
    from neurocompile.backends import create_backend
    from neurocompile.semantics.discretization import Convention

    options = {"convention": Convention()} if backend == "float" else {}
    try:
        create_backend(backend, model, **options).run(x)
    except NeurocompileError as exc:
        assert str(exc).startswith(f"{backend} backend: "), str(exc)
        return "rejected"
    return "ok"


def test_float_and_cpu_backends_refuse_the_same_inputs(mlp):
    from neurocompile.compiler.float_program import float_program
    from neurocompile.compiler.normalize import normalize

    graph = load_graph(mlp.files["nir"])
    fixed, lowered = FixedPointProgram.load(mlp.files["ncp"]), float_program(normalize(graph))
    x = np.load(mlp.spikes)
    for name, make in BACKEND_INPUTS.items():
        inputs = make(x)
        on_float, on_float_program = verdict(graph, inputs, "float"), verdict(lowered, inputs, "cpu")
        on_fixed = verdict(fixed, inputs, "cpu")
        assert on_float == on_float_program, (name, on_float, on_float_program)
        assert on_fixed == ("rejected" if name in GRADED else on_float), (name, on_fixed, on_float)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(rng=st.randoms(use_true_random=False))
def test_inspect_refuses_the_programs_simulate_refuses(rng, mlp, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncp")
    shutil.copyfile(mlp.spikes, folder / "x.npy")
    mutation = mutate_program(rng, mlp.files["ncp"], folder / "model.ncp")
    inspected = run(folder, "inspect", "model.ncp")
    simulated = run(folder, "simulate", "model.ncp", "--backend", "cpu", "--input", "x.npy")
    assert {inspected.outcome, simulated.outcome} <= {"ok", "rejected"}, (mutation, inspected, simulated)
    program_refused = simulated.outcome == "rejected" and not simulated.stderr.startswith("error: cpu backend: ")
    assert (inspected.outcome == "rejected") == program_refused, (mutation, inspected.stderr, simulated.stderr)
