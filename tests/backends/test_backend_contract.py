"""The backend contract: the shared input check, the program's number format, and the CPU backend's
float path against Lava's own floating_pt process models.

Oracles: hand-made inputs with hand-written expected messages, hand arithmetic of one float
neuron, and Lava (``floating_pt``) for float programs exported from the reference architectures.
"""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocompile.backends import create_backend
from neurocompile.backends.base import Backend, check_inputs
from neurocompile.backends.cpu import CpuBackend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse

PORTS = [("x", (2,))]
TWO_PORTS = [("a", (2,)), ("b", (1, 2))]


def ok(shape=(3, 4, 2)):
    return np.zeros(shape, dtype=np.uint8)


# --- check_inputs, directly --------------------------------------------------------------------


def test_accepts_one_array_a_dict_numpy_and_torch():
    arrays, batch, steps = check_inputs(PORTS, ok(), binary=True, backend="cpu")
    assert (batch, steps) == (3, 4) and list(arrays) == ["x"]
    arrays, *_ = check_inputs(PORTS, {"x": torch.ones(3, 4, 2, dtype=torch.bool)}, binary=True, backend="cpu")
    assert arrays["x"].dtype == np.uint8 and arrays["x"].sum() == 24
    inputs = {"a": np.ones((1, 5, 2), np.float32), "b": torch.zeros(1, 5, 1, 2)}
    arrays, batch, steps = check_inputs(TWO_PORTS, inputs, binary=True, backend="cpu")
    assert (batch, steps) == (1, 5) and isinstance(arrays["b"], np.ndarray)
    arrays, *_ = check_inputs(PORTS, np.full((1, 1, 2), 0.25), binary=False, backend="cpu")  # graded values
    assert arrays["x"][0, 0, 0] == 0.25


BAD_INPUTS = [
    (TWO_PORTS, ok(), "the model has 2 inputs (a, b): pass a dict {name: spikes}"),
    (TWO_PORTS, {"a": ok((1, 2, 2))}, "input 'b': missing"),
    (PORTS, {"x": ok(), "y": ok()}, "unknown input 'y' (inputs: x)"),
    (PORTS, ok((3, 4, 5)), "input 'x': shape [3, 4, 5] is not [batch, time, 2]"),
    (PORTS, ok((4, 2)), "input 'x': shape [4, 2] is not [batch, time, 2]"),
    (PORTS, ok((0, 4, 2)), "input 'x': empty batch or time axis in shape [0, 4, 2]"),
    (PORTS, ok((3, 0, 2)), "input 'x': empty batch or time axis in shape [3, 0, 2]"),
    (
        TWO_PORTS,
        {"a": ok((1, 5, 2)), "b": ok((1, 6, 1, 2))},
        "input 'b': [batch, time] [1, 6] differs from [1, 5] of the others",
    ),
    (PORTS, np.full((1, 2, 2), 2), "input 'x': spikes must be 0 or 1"),
    (PORTS, np.full((1, 2, 2), -1.0), "input 'x': spikes must be 0 or 1"),
    (PORTS, np.full((1, 2, 2), np.nan), "input 'x': values must be finite (found NaN or inf)"),
    (PORTS, np.full((1, 2, 2), np.inf), "input 'x': values must be finite (found NaN or inf)"),
    (PORTS, np.ones((1, 2, 2), np.complex64), "input 'x': values must be real numbers, got dtype complex64"),
    (PORTS, np.array([[["a", "b"]]]), "input 'x': values must be real numbers, got dtype <U1"),
]


@pytest.mark.parametrize("ports, inputs, message", BAD_INPUTS)
def test_one_message_per_failure(ports, inputs, message):
    with pytest.raises(NeurocompileError) as info:
        check_inputs(ports, inputs, binary=True, backend="cpu")
    assert str(info.value) == f"cpu backend: {message}"


def test_graded_values_pass_only_when_not_binary():
    check_inputs(PORTS, np.full((1, 2, 2), 3.5), binary=False, backend="float")
    with pytest.raises(NeurocompileError, match="float backend: input 'x': values must be finite"):
        check_inputs(PORTS, np.full((1, 2, 2), np.nan), binary=False, backend="float")


def two_port_program() -> FixedPointProgram:
    return FixedPointProgram(
        [InputPort("a", (2,)), InputPort("b", (1, 2))],
        [Population("p", (1,), du=10, dv=10, vth=5, bias_mant=np.zeros(1, np.int32))],
        [
            Synapse("sa", "a", "p", "dense", np.ones((1, 2), np.int32)),
            Synapse("sb", "b", "p", "dense", np.ones((1, 2), np.int32)),
        ],
        ["p"],
    ).validate()


def rejection(backend, inputs) -> str:
    with pytest.raises(NeurocompileError) as info:
        backend.run(inputs)
    return str(info.value)


@pytest.mark.lava
def test_cpu_and_lava_reject_the_same_inputs_with_the_same_message():
    from neurocompile.backends.lava.backend import LavaBackend

    program = two_port_program()
    cpu, lava = CpuBackend(program), LavaBackend(program)
    for ports, inputs, message in BAD_INPUTS:
        if ports is not TWO_PORTS and not isinstance(inputs, dict):
            inputs = {"a": inputs, "b": ok((1, 2, 1, 2))}  # the single-port cases, on port a
            message = message.replace("'x'", "'a'")
        elif ports is not TWO_PORTS:
            continue  # the unknown-port case needs port x
        assert rejection(cpu, inputs) == f"cpu backend: {message}"
        assert rejection(lava, inputs) == f"lava backend: {message}"


# --- the registry and the Protocol -------------------------------------------------------------


def test_registered_backends_follow_the_protocol():
    backend = create_backend("cpu", two_port_program())
    assert isinstance(backend, Backend) and backend.name == "cpu"


# --- number format -------------------------------------------------------------------------------


def float_neuron_program(**pop) -> FixedPointProgram:
    params = dict(du=0.5, dv=0.25, vth=1.0, bias_mant=np.array([0.125])) | pop
    return FixedPointProgram(
        [InputPort("x", (1,))],
        [Population("p", (1,), **params)],
        [Synapse("w", "x", "p", "dense", np.array([[0.75]]))],
        ["p"],
        number_format="float",
    )


def test_cpu_runs_a_float_program_by_hand():
    # u = u/2 + 0.75 s; v = 0.75 v + u + 0.125; spike when v > 1, then v = 0 (input arrives one step later).
    x = np.array([1, 1, 0, 0, 0], np.float32).reshape(1, 5, 1)
    rec = CpuBackend(float_neuron_program().validate()).run(x, record="all")
    u, v, s = [0.0], [0.125], [0]  # step 0: no input yet
    for a in (0.75, 0.75, 0.0, 0.0):
        u.append(u[-1] * 0.5 + a)
        v.append(v[-1] * 0.75 + u[-1] + 0.125)
        s.append(int(v[-1] > 1.0))
        v[-1] = 0.0 if s[-1] else v[-1]
    np.testing.assert_allclose(rec["p.u"][0, :, 0], u, rtol=1e-12)
    np.testing.assert_allclose(rec["p.v"][0, :, 0], v, rtol=1e-12)
    assert rec["p.spikes"][0, :, 0].tolist() == s and sum(s) == 1
    assert rec.metadata["number_format"] == "float" and rec.metadata["neuron_kernel"] == {"p": "torch"}


def test_float_program_saves_loads_and_validates(tmp_path):
    program = float_neuron_program(vth=np.inf).validate()
    program.save(tmp_path / "f.ncp")
    loaded = FixedPointProgram.load(tmp_path / "f.ncp")
    assert loaded.number_format == "float" and loaded.populations[0].vth == np.inf
    assert loaded.synapses[0].weights[0, 0] == 0.75
    with pytest.raises(NeurocompileError, match="parameter 'weights': must be finite"):
        FixedPointProgram(
            program.inputs,
            program.populations,
            [Synapse("w", "x", "p", "dense", np.array([[np.nan]]))],
            ["p"],
            {},
            "float",
        ).validate()
    with pytest.raises(NeurocompileError, match="parameter 'du'"):
        float_neuron_program(du=1.5).validate()
    with pytest.raises(NeurocompileError, match="parameter 'du': must be integer"):
        FixedPointProgram(program.inputs, program.populations, program.synapses, ["p"]).validate()
    with pytest.raises(NeurocompileError, match="number_format"):
        FixedPointProgram([], [], [], [], number_format="double").validate()


def test_program_files_without_number_format_load_as_fixed(tmp_path):
    program = two_port_program()
    program.save(tmp_path / "new.ncp")
    with np.load(tmp_path / "new.ncp") as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(arrays["program.json"].tobytes().decode())
    del header["number_format"]
    arrays["program.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(tmp_path / "old.ncp", "wb") as fh:
        np.savez_compressed(fh, **arrays)
    assert zipfile.is_zipfile(tmp_path / "old.ncp")
    assert FixedPointProgram.load(tmp_path / "old.ncp").number_format == "fixed"


# --- re-entrancy ------------------------------------------------------------------------------------


def test_one_cpu_backend_runs_from_two_threads_at_once():
    rng = np.random.default_rng(0)
    program = FixedPointProgram(
        [InputPort("x", (30,))],
        [
            Population("h", (40,), du=300, dv=200, vth=20, bias_mant=np.zeros(40, np.int32)),
            Population("o", (5,), du=300, dv=200, vth=20, bias_mant=np.zeros(5, np.int32)),
        ],
        [
            Synapse("a", "x", "h", "dense", rng.integers(-60, 60, (40, 30)).astype(np.int32)),
            Synapse("b", "h", "o", "dense", rng.integers(-60, 60, (5, 40)).astype(np.int32)),
        ],
        ["o"],
    ).validate()
    backend = CpuBackend(program)
    inputs = [(rng.random((4, 50, 30)) < p).astype(np.uint8) for p in (0.1, 0.6)]
    alone = [backend.run(x, record="all").arrays for x in inputs]
    together = [None, None]

    def work(i):
        for _ in range(5):
            together[i] = backend.run(inputs[i], record="all").arrays

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for want, got in zip(alone, together):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# --- CPU float path against Lava floating_pt ------------------------------------------------------


@pytest.mark.lava
@pytest.mark.parametrize("name", ["MLP", "RecurrentNet", "ConvNet"])
def test_cpu_float_program_equals_lava_floating_pt(name):
    from neurocompile.backends.lava.backend import LavaBackend
    from neurocompile.compiler.float_program import float_program
    from neurocompile.compiler.normalize import normalize
    from neurocompile.frontend.torch_export import export
    from neurocompile.models.architectures import MLP, ConvNet, RecurrentNet

    with torch.random.fork_rng():  # leaves the global RNG as other tests expect it
        torch.manual_seed(0)
        model = {
            "MLP": lambda: MLP([64, 32, 10]),
            "RecurrentNet": lambda: RecurrentNet(n_hidden=16),
            "ConvNet": ConvNet,
        }[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    program = float_program(normalize(export(model.eval())))
    rng = np.random.default_rng(4)
    inputs = (rng.random((2, 25, *program.inputs[0].shape)) < 0.4).astype(np.float32)
    cpu = CpuBackend(program).run(inputs, record="all")
    lava = LavaBackend(program, tag="floating_pt").run(inputs, record="all")
    assert cpu.metadata["schedule"] == ("stepwise" if name == "RecurrentNet" else "layerwise")
    assert sorted(cpu.arrays) == sorted(lava.arrays)
    assert sum(cpu.spike_counts().values()) > 0
    for key in cpu.arrays:
        np.testing.assert_allclose(cpu[key], lava[key], rtol=1e-6, atol=1e-9, err_msg=key)


def test_inspect_shows_a_float_program_in_floats():
    """The shipped MLP was trained hardware-aware with decay 0.8 on Lava's 12-bit grid: its float
    program's dv is dt/tau = round(0.2 * 4096) / 4096 = 819/4096, not an integer."""
    from neurocompile.analysis.inspection import describe_program
    from neurocompile.compiler.float_program import float_program
    from neurocompile.compiler.normalize import normalize
    from neurocompile.frontend.torch_export import export_checkpoint

    shipped = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"
    info = describe_program(float_program(normalize(export_checkpoint(shipped))))
    assert info["number_format"] == "float"
    assert [round(p["dv"] * 4096, 3) for p in info["populations"]] == [819.0, 819.0, 819.0]  # tau is float32
