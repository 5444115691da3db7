"""Reset by subtraction (``Population.reset="subtract"``): a spiking neuron keeps ``v - (vth << 6)``.

Oracles: hand arithmetic, the ``fixedpoint`` functions, Lava's fixed_pt/floating_pt models of
``_lava_procs.LIFExtended`` (every spike, u and v at every step), and the float reference of
graphs compiled with a subtractive convention (snnTorch's). The random-program strategy
(``tests/helpers/program_strategies.py``) also draws subtractive populations, so the CPU-vs-Lava tests of
``tests/backends/lava/test_lava_backend.py`` cover them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocompile.backends.cpu import CpuBackend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp
from tests.helpers.plastic_programs import plastic_program, stream


def one_neuron(reset: str, reset_interval: int = 0) -> FixedPointProgram:
    """x -> p, weight 50: du = 4095 keeps no u (u = a_in << 6 = 3200 while x spikes), dv = 0 keeps
    all of v, vth = 100 (spike when v > 6400)."""
    pop = Population(
        "p", (1,), du=4095, dv=0, vth=100, bias_mant=np.int32(0), reset_interval=reset_interval, reset=reset
    )
    syn = Synapse("s", "x", "p", "dense", np.array([[50]], np.int32))
    return FixedPointProgram([InputPort("x", (1,))], [pop], [syn], ["p"]).validate()


ALWAYS = np.ones((1, 9, 1), np.uint8)  # x spikes at every step; p receives it from step 1 on
# reset="subtract":  v = 0, 3200, 6400 (not > 6400), 9600 -> spike, 9600 - 6400 = 3200, 6400,
#                    9600 -> spike -> 3200, ...: spikes at steps 3, 5, 7 (v after the step below).
SUBTRACT = dict(spikes=[0, 0, 0, 1, 0, 1, 0, 1, 0], v=[0, 3200, 6400, 3200, 6400, 3200, 6400, 3200, 6400])
# reset="zero" (Lava's LIF): 9600 -> spike -> 0, 3200, 6400, 9600 -> spike: every third step.
ZERO = dict(spikes=[0, 0, 0, 1, 0, 0, 1, 0, 0], v=[0, 3200, 6400, 0, 3200, 6400, 0, 3200, 6400])
U = [0] + [3200] * 8


@pytest.mark.parametrize("reset, expected", [("subtract", SUBTRACT), ("zero", ZERO)])
def test_hand_computed_one_neuron(neuron_path, reset, expected):
    rec = CpuBackend(one_neuron(reset)).run(ALWAYS, record="all")
    assert rec.metadata["neuron_kernel"]["p"] == {"kernel": "c", "torch": "torch"}[neuron_path]
    assert rec["p.spikes"][0, :, 0].tolist() == expected["spikes"]
    assert rec["p.u"][0, :, 0].tolist() == U
    assert rec["p.v"][0, :, 0].tolist() == expected["v"]


def test_reset_interval_still_zeroes_a_subtracting_population(neuron_path):
    # reset_interval = 4 zeroes u and v before steps 3 and 7: v = 0, 3200, 6400, (0) 3200, 6400,
    # 9600 -> spike -> 3200, 6400, (0) 3200, 6400.
    rec = CpuBackend(one_neuron("subtract", reset_interval=4)).run(ALWAYS, record="all")
    assert rec["p.v"][0, :, 0].tolist() == [0, 3200, 6400, 3200, 6400, 3200, 6400, 3200, 6400]
    assert rec["p.spikes"][0, :, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]


def test_fixedpoint_step_functions():
    # v before the reset: decay(0) + u + bias; threshold 5 << 6 = 320.
    for lib in (np.asarray, torch.as_tensor):
        a_in, zero = lib(np.array([0, 0, 0], np.int64)), lib(np.zeros(3, np.int64))
        v = lib(np.array([100, 321, fxp.V_LIMIT], np.int64))
        s, u, v_new = fxp.lif_fixed_step(a_in, zero, v, 4095, 0, 5, zero, reset="subtract")
        assert np.asarray(s).tolist() == [False, True, True]
        assert np.asarray(v_new).tolist() == [100, 1, fxp.V_LIMIT - 320]  # stays within the 24-bit clip
        _, _, v_zero = fxp.lif_fixed_step(a_in, zero, v, 4095, 0, 5, zero)
        assert np.asarray(v_zero).tolist() == [100, 0, 0]
        s, _, v_ro = fxp.lif_fixed_step(a_in, zero, v, 4095, 0, 5, zero, spiking=False, reset="subtract")
        assert not np.asarray(s).any() and np.asarray(v_ro).tolist() == [100, 321, fxp.V_LIMIT]  # readouts never reset
    # float: u = a_in; v = v * (1 - dv) + u + bias = 0.5 + 1.25 = 1.75 > 1 -> 0.75
    s, u, v = fxp.lif_float_step(np.array([1.25]), np.zeros(1), np.array([0.5]), 1.0, 0.0, 1.0, 0.0, reset="subtract")
    assert s.tolist() == [True] and u.tolist() == [1.25] and v.tolist() == [0.75]


def test_float_program_subtracts_the_threshold():
    pop = Population("p", (1,), du=1.0, dv=0.0, vth=1.0, bias_mant=np.float64(0.75), reset="subtract")
    prog = FixedPointProgram([InputPort("x", (1,))], [pop], [], ["p"], number_format="float").validate()
    rec = CpuBackend(prog).run(np.zeros((1, 6, 1)), record="all")
    # v = 0.75, 1.5 -> spike -> 0.5, 1.25 -> spike -> 0.25, 1.0 (not > 1), 1.75 -> spike -> 0.75, 1.5 -> 0.5
    np.testing.assert_array_equal(rec["p.v"][0, :, 0], [0.75, 0.5, 0.25, 1.0, 0.75, 0.5])
    assert rec["p.spikes"][0, :, 0].tolist() == [0, 1, 1, 0, 1, 1]


# --- the program: validation, files, inspect ----------------------------------------------


def test_unknown_reset_and_learning_with_subtraction_are_one_line_errors():
    with pytest.raises(NeurocompileError, match="node 'p', parameter 'reset': must be one of zero, subtract") as info:
        one_neuron("halve")
    assert "\n" not in str(info.value)
    program = plastic_program()
    program.population("out").reset = "subtract"
    with pytest.raises(NeurocompileError, match="parameter 'reset': a learning population resets to zero"):
        program.validate()


def test_reset_is_saved_and_old_files_load_as_zero(tmp_path):
    from neurocompile.analysis.inspection import describe_program, format_program

    one_neuron("subtract").save(tmp_path / "p.ncp")
    loaded = FixedPointProgram.load(tmp_path / "p.ncp")
    assert loaded.population("p").reset == "subtract"
    info = describe_program(loaded)
    assert info["populations"][0]["reset"] == "subtract"
    assert "reset" in format_program(info) and "subtract" in format_program(info)
    # a file written before the flag existed has no "reset" key
    with np.load(tmp_path / "p.ncp") as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(arrays["program.json"].tobytes().decode())
    del header["populations"][0]["reset"]
    arrays["program.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(tmp_path / "old.ncp", "wb") as fh:
        np.savez(fh, **arrays)
    assert FixedPointProgram.load(tmp_path / "old.ncp").population("p").reset == "zero"


def test_plastic_program_with_a_subtracting_hidden_layer_runs_on_the_reference_loop():
    program = plastic_program(n_hidden=4, vth=20)  # "hid" does not learn
    program.population("hid").reset = "subtract"
    data = stream(program, 40, seed=1)
    rec = CpuBackend(program.validate()).run(data, record="all")
    assert rec.metadata["learning_kernel"] == "reference"
    assert rec["hid.spikes"].sum() > 0
    zero = plastic_program(n_hidden=4, vth=20)
    assert not np.array_equal(rec["hid.v"], CpuBackend(zero).run(data, record="all")["hid.v"])


# --- Lava -----------------------------------------------------------------------------------


def assert_same(lava_rec, cpu_rec):
    assert sorted(lava_rec.arrays) == sorted(cpu_rec.arrays)
    for key in lava_rec.arrays:
        np.testing.assert_array_equal(
            np.asarray(lava_rec[key]).astype(np.int64), np.asarray(cpu_rec[key]).astype(np.int64), err_msg=key
        )


@pytest.mark.lava
def test_lava_hand_computed_one_neuron_fixed_and_floating_pt():
    from neurocompile.backends.lava.backend import LavaBackend

    program = one_neuron("subtract")
    x = np.concatenate([ALWAYS, ALWAYS])  # two samples: each starts from u = v = 0
    for tag in ("fixed_pt", "floating_pt"):  # the float values of these integers are the same numbers
        rec = LavaBackend(program, tag=tag).run(x, record="all")
        for b in range(2):
            assert rec["p.spikes"][b, :, 0].tolist() == SUBTRACT["spikes"], tag
            assert np.asarray(rec["p.v"][b, :, 0]).tolist() == SUBTRACT["v"], tag
            assert np.asarray(rec["p.u"][b, :, 0]).tolist() == U, tag


@pytest.mark.lava
def test_lava_hardware_refuses_subtraction_in_one_line():
    from neurocompile.backends.lava.backend import LavaBackend

    program = one_neuron("subtract")
    with pytest.raises(NeurocompileError, match="needs a Loihi 2 custom neuron model") as info:
        LavaBackend(program, hardware=True).lower_population(program.population("p"), 9)
    assert "\n" not in str(info.value)


@pytest.mark.lava
def test_lava_plastic_program_with_a_subtracting_hidden_layer_matches_cpu():
    from neurocompile.backends.lava.backend import LavaBackend

    program = plastic_program(n_hidden=4, vth=20)
    program.population("hid").reset = "subtract"
    data = stream(program, 30, seed=1)
    cpu = CpuBackend(program.validate()).run(data, record="all")
    lava = LavaBackend(program).run(data, record="all")
    for key in ("hid.spikes", "hid.u", "hid.v", "out.spikes", "out.v"):
        np.testing.assert_array_equal(np.asarray(lava[key]).astype(np.int64), cpu[key].astype(np.int64), err_msg=key)


# --- compiled graphs: snnTorch's convention resets by subtraction ---------------------------


def test_snntorch_convention_mlp_agrees_with_the_float_reference():
    """The shipped digits MLP read with snnTorch's convention (reset by subtraction) compiles, and the
    fixed-point run follows the float reference of the same graph."""
    from neurocompile.analysis.metrics import accuracy, layer_agreement
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.data import load_digits_spikes
    from neurocompile.frontend.torch_export import export_checkpoint
    from neurocompile.semantics.discretization import get_convention

    convention = get_convention("snntorch")
    graph = export_checkpoint(Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt")
    calibration, _ = load_digits_spikes(steps=16, split="train")
    program, _ = compile_graph(graph, convention, calibration=calibration[:256])
    assert {p.reset for p in program.populations} == {"subtract"}
    inputs, labels = load_digits_spikes(steps=16, split="test")
    reference = FloatReference(graph, convention).run(inputs, record="all")
    fixed = CpuBackend(program).run(inputs, record="all")
    agreement = layer_agreement(reference, fixed, program.latency())
    print("snntorch-convention MLP agreement:", agreement)
    print("accuracy float", accuracy(reference, labels), "fixed", accuracy(fixed, labels))
    assert abs(accuracy(fixed, labels) - accuracy(reference, labels)) <= 0.01
    for layer, stats in agreement.items():
        assert 0.9 < stats["count_ratio"] < 1.1, (layer, stats)
        assert stats["step_agreement"] > 0.95 and stats["rate_correlation"] > 0.99, (layer, stats)


def test_snntorch_braille_graph_compiles_and_agrees(nir_paper_dir, tmp_path):
    """The NIR paper's snnTorch braille network (recurrent, reset by subtraction) compiles with
    ``--convention snntorch`` and ``--reset subtract`` and follows the float reference."""
    from neurocompile.analysis.metrics import layer_agreement
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.cli import main
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.frontend.nir_io import load_graph
    from neurocompile.semantics.discretization import get_convention

    path = nir_paper_dir / "braille_noDelay_noBias_subtract.nir"
    for extra in (["--convention", "snntorch"], ["--reset", "subtract"]):
        main(["compile", str(path), "-o", str(tmp_path / "b.ncp"), *extra])
        assert {p.reset for p in FixedPointProgram.load(tmp_path / "b.ncp").populations} == {"subtract"}
    convention = get_convention("snntorch")
    graph = load_graph(path)
    reference = FloatReference(graph, convention)
    shape = reference.ops[reference.inputs[0]].in_shape
    rng = np.random.default_rng(0)
    calibration = (rng.random((16, 60, *shape)) < 0.3).astype(np.float32)
    program, _ = compile_graph(graph, convention, calibration=calibration)
    x = (rng.random((32, 60, *shape)) < 0.3).astype(np.float32)
    agreement = layer_agreement(
        reference.run(x, record="all"), CpuBackend(program).run(x, record="all"), program.latency()
    )
    print("snntorch braille agreement:", agreement)
    for layer, stats in agreement.items():
        assert 0.8 < stats["count_ratio"] < 1.25, (layer, stats)
        assert stats["step_agreement"] > 0.93 and stats["rate_correlation"] > 0.97, (layer, stats)


def test_snntorch_leaky_network_runs_in_fixed_point_and_follows_snntorch():
    """A snnTorch ``Leaky`` network (default ``reset_mechanism="subtract"``) exported to NIR compiles
    with the ``snntorch`` preset; spike agreement with snnTorch itself is reported. snnTorch subtracts
    the threshold after the decay (``v <- beta v + x - th s[t-1]``), the convention before it
    (``v <- beta (v - th s) + x``), so the float reference is close to snnTorch, not equal; the
    fixed-point run follows the float reference more closely than either follows snnTorch."""
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    from neurocompile.analysis.metrics import layer_agreement
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.compiler.pipeline import compile_graph
    from neurocompile.ir.recording import Recording
    from neurocompile.semantics.discretization import get_convention

    torch.manual_seed(0)
    net = torch.nn.Sequential(  # per-neuron beta and threshold: snnTorch 1.0 exports scalars without a shape
        torch.nn.Linear(20, 32),
        snn.Leaky(beta=torch.full((32,), 0.9), threshold=torch.ones(32), init_hidden=True),
        torch.nn.Linear(32, 8),
        snn.Leaky(beta=torch.full((8,), 0.8), threshold=torch.ones(8), init_hidden=True, output=True),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # the default initialization barely spikes
    assert net[1].reset_mechanism == "subtract"
    graph = export_to_nir(net, torch.zeros(20))
    x = (np.random.default_rng(0).random((64, 50, 20)) < 0.3).astype(np.float32)
    hidden = []
    hook = net[1].register_forward_hook(lambda module, args, out: hidden.append(out.detach().clone()))
    utils.reset(net)
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            outputs.append(net(torch.from_numpy(x[:, t]))[0].clone())
    hook.remove()
    spikes = {"1.spikes": torch.stack(hidden, 1).numpy(), "3.spikes": torch.stack(outputs, 1).numpy()}
    snntorch_rec = Recording(spikes, ["3"], "snntorch", {})

    convention = get_convention("snntorch")
    calibration = (np.random.default_rng(1).random((16, 50, 20)) < 0.3).astype(np.float32)
    program, _ = compile_graph(graph, convention, calibration=calibration)
    assert [p.reset for p in program.populations] == ["subtract", "subtract"]
    reference = FloatReference(graph, convention).run(x, record="all")
    fixed = CpuBackend(program).run(x, record="all")
    vs_snntorch = layer_agreement(snntorch_rec, fixed, program.latency())
    float_vs_snntorch = layer_agreement(snntorch_rec, reference, {"1": 0, "3": 0})
    vs_float = layer_agreement(reference, fixed, program.latency())
    print("fixed vs snnTorch:", vs_snntorch, "\nfloat vs snnTorch:", float_vs_snntorch, "\nfixed vs float:", vs_float)
    for layer in ("1", "3"):
        assert vs_snntorch[layer]["rate_correlation"] > 0.99, (layer, vs_snntorch[layer])
        assert 0.8 < vs_snntorch[layer]["count_ratio"] < 1.3, (layer, vs_snntorch[layer])
        assert vs_float[layer]["rate_correlation"] > 0.995 and 0.95 < vs_float[layer]["count_ratio"] < 1.05


def test_recorded_convention_is_honoured_without_flags(tmp_path, capsys):
    """A NIR file whose metadata records reset by subtraction (as ``convert`` and ``export`` write
    it) simulates and compiles with that reset when no --convention/--reset is given: the same
    spikes as the float reference run with ``Convention(reset="subtract")`` explicitly."""
    import nir

    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.cli import main
    from neurocompile.frontend.nir_io import load_graph
    from neurocompile.semantics.discretization import Convention

    rng = np.random.default_rng(0)
    weight = rng.uniform(0.2, 0.9, size=(4, 6)).astype(np.float32)
    nodes = {
        "input": nir.Input(np.array([6])),
        "fc": nir.Affine(weight, np.zeros(4, np.float32)),
        "if": nir.IF(r=np.full(4, 1e4, np.float32), v_threshold=np.ones(4, np.float32)),
        "output": nir.Output(np.array([4])),
    }
    edges = [("input", "fc"), ("fc", "if"), ("if", "output")]
    recorded = {"dt": 1e-4, "convention": "neurocompile", "convention_options": json.dumps({"reset": "subtract"})}
    path = tmp_path / "subtract.nir"
    nir.write(path, nir.NIRGraph(nodes, edges, metadata=recorded))
    x = (rng.random((5, 30, 6)) < 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    want = FloatReference(load_graph(path), Convention(reset="subtract")).run(x).output_spikes()
    zero = FloatReference(load_graph(path), Convention()).run(x).output_spikes()
    assert not np.array_equal(want, zero)  # the reset matters here
    for backend in ("float", "cpu"):
        record = tmp_path / f"{backend}.npz"
        main(["simulate", str(path), "--backend", backend, "--input", str(tmp_path / "x.npy"), "--record", str(record)])
        with np.load(record) as rec:
            spikes = rec[next(k for k in rec.files if k.endswith(".spikes") and k.startswith("if"))]
        if backend == "float":
            np.testing.assert_array_equal(spikes, want)
        else:  # one synapse: the program delivers one step later, and simulate drains that step
            np.testing.assert_array_equal(spikes[:, 1:], want)
