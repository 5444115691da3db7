"""`neurocompile export --to netx`: a program as lava-dl's netx network (HDF5), or a one-line refusal.

The oracle is lava-dl 0.6.0 itself: ``tools/netx_check.py``, run in the throwaway environment ``tools/netx_env.sh``
makes (``$NEUROCOMPILE_NETX_PYTHON``, default ``/tmp/netx-venv/bin/python``), loads the exported file with
``netx.hdf5.Network``, runs it in Lava's simulation (fixed point) and writes every layer's spikes and ``v``; they
must equal the CPU backend's at every step, with no offset (netx builds Lava's Dense, Conv and LIF, fed by the
same RingBuffer as our Lava backend). Those tests skip only when lava-dl cannot be imported. The others read files
back with h5py against hand-computed values, and check that each refusal is one line naming the node.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import neurocompile as nc
from neurocompile.api import resolve_convention
from neurocompile.backends import create_backend
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import NeurocompileError
from neurocompile.hardware import netx
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.models.architectures import SNN
from neurocompile.models.layers import Conv2d, Flatten, Linear, SumPool2d
from neurocompile.models.neurons import make_neuron
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.hardware.programs import chain
from tests.helpers.plastic_programs import plastic_program

ROOT = Path(__file__).resolve().parents[2]
DIGITS_MLP = ROOT / "models" / "digits_mlp.pt"
CHECK = ROOT / "tools" / "netx_check.py"
NETX_PYTHON = Path(os.environ.get("NEUROCOMPILE_NETX_PYTHON", "/tmp/netx-venv/bin/python"))


# --- the oracle: lava-dl's loader in Lava's simulation ---------------------------------------------------------


@pytest.fixture(scope="module")
def netx_python() -> Path:
    """The throwaway environment's Python once lava-dl's netx imports there; otherwise the test skips."""
    if not NETX_PYTHON.exists():
        pytest.skip(
            f"lava-dl cannot be imported: no {NETX_PYTHON} (run tools/netx_env.sh or set NEUROCOMPILE_NETX_PYTHON)"
        )
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import netx_check; netx_check.import_netx()"
    done = subprocess.run(
        [NETX_PYTHON, "-c", probe, CHECK.parent], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    if done.returncode != 0:
        pytest.skip(f"lava-dl cannot be imported: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return NETX_PYTHON


def run_in_netx(python: Path, net: Path, spikes: np.ndarray, tmp_path: Path) -> dict[str, np.ndarray]:
    """Every netx block's spikes and v for one input stream ``spikes`` [T, *input_shape]."""
    inputs, outputs = tmp_path / "input.npy", tmp_path / "netx.npz"
    np.save(inputs, spikes.astype(np.uint8))
    done = subprocess.run([python, CHECK, net, inputs, outputs], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(np.load(outputs))


def assert_netx_equals_cpu(program: FixedPointProgram, net: Path, spikes: np.ndarray, python: Path, tmp_path) -> None:
    """netx's spikes and v equal the CPU backend's for every population (netx's blocks, in order), every step."""
    theirs = run_in_netx(python, net, spikes, tmp_path)
    ours = create_backend("cpu", program).run(spikes[None].astype(np.float32), record="all")
    assert len(theirs["blocks"]) == len(program.populations)
    for i, pop in enumerate(program.populations):
        assert ours[f"{pop.name}.spikes"].any() or not pop.spiking, f"{pop.name} is silent: a weak test"
        for var in ("spikes", "v"):
            expected = ours[f"{pop.name}.{var}"][0]
            got = theirs[f"{i}.{var}"].reshape(expected.shape)
            differ = int(np.count_nonzero(got != expected))
            assert differ == 0, f"{pop.name}.{var}: {differ} of {expected.size} values differ"


def netx_program(graph) -> FixedPointProgram:
    """``graph`` compiled as `export --to netx` compiles it."""
    exponents = dict(weight_exp=netx.WEIGHT_EXP, bias_exp=netx.BIAS_EXP)
    return compile_graph(graph, resolve_convention(graph=graph), bias_onset="start", **exponents)[0]


def test_digits_mlp_in_netx_spikes_as_on_the_cpu_backend(netx_python, tmp_path, capsys):
    net = tmp_path / "digits.net"
    code, out, err = run_cli(capsys, "export", DIGITS_MLP, "--to", "netx", "-o", net)
    assert code == 0, err
    assert "netx layers: input, dense, dense, dense" in out
    program = netx_program(nc.export(DIGITS_MLP))
    netx.write_netx(program, tmp_path / "same.net")
    assert_same_files(net, tmp_path / "same.net")  # the command compiles as netx_program does
    x, _labels = nc.load_inputs(data="digits", steps=16, limit=20)
    assert_netx_equals_cpu(program, net, x.reshape(-1, 64), netx_python, tmp_path)  # 20 digits, one stream


def test_conv_net_in_netx_spikes_as_on_the_cpu_backend(netx_python, tmp_path):
    torch.manual_seed(0)
    conv = resolve_convention()
    layers = {
        "conv1": Conv2d(2, 4, 3, padding=1),
        "if1": make_neuron("IF", (4, 8, 8), conv),
        "pool1": SumPool2d(2),
        "lif2": make_neuron("LIF", (4, 4, 4), conv),
        "flatten": Flatten(),
        "fc3": Linear(64, 10),
        "lif3": make_neuron("LIF", 10, conv),
    }
    model = SNN(layers, (2, 8, 8), conv)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0)  # spikes in every layer
    program = netx_program(nc.export(model.eval()))
    assert [syn.kind for syn in program.synapses] == ["conv", "sparse", "dense"]  # the pooling is a sparse layer
    layers = netx.write_netx(program, tmp_path / "conv.net")
    assert [layer["type"] for layer in layers] == ["input", "conv", "flatten", "dense", "dense"]
    spikes = (np.random.default_rng(1).random((60, 2, 8, 8)) < 0.3).astype(np.uint8)
    assert_netx_equals_cpu(program, tmp_path / "conv.net", spikes, netx_python, tmp_path)


def feature_program() -> FixedPointProgram:
    """Conv (groups, stride, padding, weight_exp, a bias per neuron) -> conv -> sparse with delays (excitatory) ->
    a non-spiking readout whose even weights fold weight_exp -1."""
    rng = np.random.default_rng(0)
    zero = np.zeros((), np.int32)
    pops = [
        Population("c1", (4, 3, 3), 4095, 300, 60, rng.integers(-2, 4, (4, 3, 3)).astype(np.int32), bias_exp=7),
        Population("c2", (3, 2, 2), 2000, 100, 600, zero),
        Population("d", (8,), 4095, 50, 400, np.full(8, 64, np.int32), bias_exp=6),
        Population("r", (3,), 4095, 0, 2**17 - 1, zero, spiking=False),
    ]
    g1 = ConvGeometry((2, 6, 6), (4, 3, 3), stride=(2, 2), padding=(1, 1), groups=2)
    g2 = ConvGeometry((4, 3, 3), (3, 2, 2))
    sparse = (rng.random((8, 12)) < 0.6) * rng.integers(0, 256, (8, 12))
    delays = rng.integers(0, 4, (8, 12)).astype(np.int32)
    syns = [
        Synapse("k1", "x", "c1", "conv", rng.integers(-20, 40, (4, 1, 3, 3)).astype(np.int32), weight_exp=1, conv=g1),
        Synapse("k2", "c1", "c2", "conv", rng.integers(-30, 80, (3, 4, 2, 2)).astype(np.int32), conv=g2),
        Synapse("w3", "c2", "d", "sparse", sparse.astype(np.int32), sign_mode="excitatory", delays=delays),
        Synapse("w4", "d", "r", "dense", 2 * rng.integers(-100, 100, (3, 8)).astype(np.int32), weight_exp=-1),
    ]
    return FixedPointProgram([InputPort("x", (2, 6, 6))], pops, syns, ["r"]).validate()


def test_every_layer_feature_in_netx_as_on_the_cpu_backend(netx_python, tmp_path):
    program = feature_program()
    layers = netx.write_netx(program, tmp_path / "features.net")
    assert [layer["type"] for layer in layers] == ["input", "conv", "conv", "flatten", "dense", "dense"]
    assert layers[1]["bias"].shape == (3, 3, 4) and "delay" in layers[4]  # a bias per neuron, in netx's (W, H, C)
    spikes = (np.random.default_rng(1).random((40, 2, 6, 6)) < 0.4).astype(np.uint8)
    assert_netx_equals_cpu(program, tmp_path / "features.net", spikes, netx_python, tmp_path)


def sign_program() -> FixedPointProgram:
    """A (C, H, W) input into dense layers of mixed, inhibitory and excitatory weights: netx's three sign modes."""
    rng = np.random.default_rng(2)
    zero = np.zeros((), np.int32)
    pops = [
        Population("a", (6,), 3000, 200, 100, zero),
        Population("b", (4,), 4095, 100, 200, np.full(4, 200, np.int32), bias_exp=6),
        Population("c", (3,), 4095, 300, 150, zero),
    ]
    syns = [
        Synapse("wa", "x", "a", "dense", 2 * rng.integers(-60, 100, (6, 18)).astype(np.int32)),
        Synapse("wb", "a", "b", "dense", rng.integers(-40, -2, (4, 6)).astype(np.int32), sign_mode="inhibitory"),
        Synapse("wc", "b", "c", "dense", rng.integers(0, 256, (3, 4)).astype(np.int32), sign_mode="excitatory"),
    ]
    return FixedPointProgram([InputPort("x", (2, 3, 3))], pops, syns, ["c"]).validate()


def test_an_image_into_dense_layers_of_each_sign_in_netx_as_on_the_cpu_backend(netx_python, tmp_path):
    program = sign_program()
    layers = netx.write_netx(program, tmp_path / "signs.net")
    assert [layer["type"] for layer in layers] == ["input", "flatten", "dense", "dense", "dense"]
    spikes = (np.random.default_rng(1).random((40, 2, 3, 3)) < 0.4).astype(np.uint8)
    assert_netx_equals_cpu(program, tmp_path / "signs.net", spikes, netx_python, tmp_path)


# --- the file, read back -------------------------------------------------------------------------------------


def read_file(path: Path) -> dict[str, object]:
    """Every dataset of an HDF5 file: path -> value."""
    found = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(lambda name, item: found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return found


def assert_same_files(a: Path, b: Path) -> None:
    left, right = read_file(a), read_file(b)
    assert sorted(left) == sorted(right)
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


def test_a_dense_chain_as_netx_stores_it(tmp_path):
    a = Population("a", (3,), du=100, dv=200, vth=50, bias_mant=np.array([1, -2, 3], np.int32), bias_exp=7)
    r = Population("r", (1,), du=4095, dv=0, vth=2**17 - 1, bias_mant=np.zeros((), np.int32), spiking=False)
    w = Synapse("w", "x", "a", "dense", np.array([[2, -4], [6, 0], [-8, 10]], np.int32), weight_exp=1)
    v = Synapse("v", "a", "r", "dense", np.array([[5, 0, -6]], np.int32))  # Lava floors the odd mixed weight 5 to 4
    program = FixedPointProgram([InputPort("x", (2,))], [a, r], [w, v], ["r"])
    netx.write_netx(program, tmp_path / "p.net")
    found = read_file(tmp_path / "p.net")
    neuron = {"type": b"CUBA", "refDelay": 1, "gradedSpike": False}
    expected = {
        "layer/0/type": [b"input"],
        "layer/0/shape": [2],
        "layer/1/type": [b"dense"],
        "layer/1/shape": [3],
        "layer/1/inFeatures": 2,
        "layer/1/outFeatures": 3,
        "layer/1/weight": [[4, -8], [12, 0], [-16, 20]],  # weight_exp 1 folded in
        "layer/1/bias": [2, -4, 6],  # bias_mant << 7 = bias << 6
        **{f"layer/1/neuron/{k}": v for k, v in (neuron | {"iDecay": 101, "vDecay": 200, "vThMant": 50}).items()},
        "layer/2/type": [b"dense"],
        "layer/2/shape": [1],
        "layer/2/inFeatures": 3,
        "layer/2/outFeatures": 1,
        "layer/2/weight": [[4, 0, -6]],
        **{f"layer/2/neuron/{k}": v for k, v in (neuron | {"iDecay": 4096, "vDecay": 0, "vThMant": 2**17}).items()},
    }
    assert sorted(found) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(found[key], value, err_msg=key)
    assert found["layer/0/type"].dtype == np.dtype("S10")  # as lava-dl writes it


@pytest.mark.parametrize("per_neuron", [False, True])
def test_a_conv_layer_as_netx_stores_it(tmp_path, per_neuron):
    bias = np.array([64, -128], np.int32)[:, None, None] * np.ones((2, 2, 4), np.int32)
    if per_neuron:
        bias[1, 0, 3] = 192
    c = Population("c", (2, 2, 4), du=0, dv=0, vth=10, bias_mant=bias)
    o = Population("o", (2,), du=0, dv=0, vth=10, bias_mant=np.zeros((), np.int32))
    kernel = np.array([[[[1, 2], [3, 4]]], [[[-1, 0], [0, 1]]]], np.int32)
    geometry = ConvGeometry((1, 3, 3), (2, 2, 4), padding=(0, 1))
    k = Synapse("k", "x", "c", "conv", kernel, weight_exp=2, conv=geometry)
    w = Synapse("w", "c", "o", "dense", np.full((2, 16), 2, np.int32))
    program = FixedPointProgram([InputPort("x", (1, 3, 3))], [c, o], [k, w], ["o"])
    netx.write_netx(program, tmp_path / "p.net")
    found = read_file(tmp_path / "p.net")
    assert [found[f"layer/{i}/type"][0] for i in range(4)] == [b"input", b"conv", b"flatten", b"dense"]
    expected = {
        "layer/0/shape": [1, 3, 3],
        "layer/1/shape": [2, 2, 4],
        "layer/1/inChannels": 1,
        "layer/1/outChannels": 2,
        "layer/1/kernelSize": [2, 2],
        "layer/1/stride": [1, 1],
        "layer/1/padding": [0, 1],
        "layer/1/dilation": [1, 1],
        "layer/1/groups": 1,
        "layer/1/weight": kernel * 4,  # PyTorch's layout; weight_exp 2 folded in (Lava's Conv has none)
        "layer/1/bias": (bias // 64).transpose(2, 1, 0) if per_neuron else [1, -2],  # netx's (W, H, C), or per channel
        "layer/2/shape": [16],
        "layer/3/inFeatures": 16,
    }
    for key, value in expected.items():
        np.testing.assert_array_equal(found[key], value, err_msg=key)


@pytest.mark.parametrize(
    "weights,sign_mode,kept",
    [
        ([[-256, 254], [0, 2]], "mixed", True),  # the full mixed range
        ([[255, 0], [3, 1]], "excitatory", True),
        ([[-255, -3], [-7, -1]], "inhibitory", True),
        ([[-128, -2], [-4, -6]], "inhibitory", False),  # netx shifts -128 to -256; Lava's inhibitory synapse clips it
        ([[0, -6], [-2, 0]], "mixed", True),  # no positive weight: netx says mixed, Lava infers inhibitory
        ([[0, -4], [-2, 0]], "mixed", False),  # ... and clips the -256 that netx shifts -4 to
        ([[0, 0], [0, 0]], "mixed", False),  # netx divides by the largest weight
    ],
)
def test_netx_keeps_the_weights_its_optimization_leaves_unchanged(weights, sign_mode, kept):
    program = chain([2], 2, weights=lambda n, m: np.array(weights, np.int32), sign_mode=sign_mode)
    if kept:
        np.testing.assert_array_equal(netx.netx_layers(program)[1]["weight"], weights)
    else:
        with pytest.raises(NeurocompileError, match="netx's weight optimization would change"):
            netx.netx_layers(program)


# --- refusals ------------------------------------------------------------------------------------------------


def _with(program: FixedPointProgram, node: str, **fields) -> FixedPointProgram:
    """``program`` with ``fields`` of population or synapse ``node`` replaced."""
    for items in (program.populations, program.synapses):
        for i, item in enumerate(items):
            if item.name == node:
                items[i] = dataclasses.replace(item, **fields)
    return program


def _evens(n_target: int, n_source: int) -> np.ndarray:
    return np.full((n_target, n_source), 2, np.int32)  # odd mixed weights floor: ones would be zeros


def _two_layers(**fields) -> FixedPointProgram:
    return chain([3, 2], 4, **({"weights": _evens} | fields))


def _recurrent():
    program = _two_layers()
    program.synapses.append(Synapse("rec", "l0", "l0", "dense", np.ones((3, 3), np.int32), recurrent=True))
    return program


def _skip():
    program = _two_layers()
    program.synapses.append(Synapse("skip", "x", "l1", "dense", np.ones((2, 4), np.int32)))
    return program


def _conv_after_dense():
    program = chain([4], 4, weights=_evens)
    program.populations[0].shape = (1, 2, 2)
    geometry = ConvGeometry((1, 2, 2), (1, 1, 1))
    program.populations.append(Population("c", (1, 1, 1), 0, 0, 10, np.zeros((), np.int32)))
    program.synapses.append(Synapse("k", "l0", "c", "conv", np.ones((1, 1, 2, 2), np.int32), conv=geometry))
    program.outputs = ["c"]
    return program


def _tonic():
    program = _two_layers()
    program.populations.insert(0, Population("tonic", (1,), 0, 0, 10, np.zeros((), np.int32)))
    return program


REFUSALS = {
    "subtractive reset": (lambda: _with(_two_layers(), "l0", reset="subtract"), "'l0' resets by subtraction"),
    "bias onset": (
        lambda: _with(_two_layers(), "l1", bias_onset=2, bias_mant=np.ones(2, np.int32)),
        "'l1' adds its bias from step 2; netx's CUBA neuron (Lava's LIF) cannot (compile with --bias-onset start)",
    ),
    "recurrence": (_recurrent, "'rec' is a recurrent synapse"),
    "learning": (lambda: plastic_program(), "learns on chip"),
    "reset interval": (lambda: _with(_two_layers(), "l1", reset_interval=8), "'l1' zeroes its state every 8 steps"),
    "weight exponent": (
        lambda: _with(_two_layers(weights=lambda n, m: np.full((n, m), 100, np.int32)), "w0", weight_exp=2),
        "'w0' has weights 400..400 (weight_exp 2 folded in)",
    ),
    "flooring exponent": (lambda: _with(_two_layers(), "w1", weight_exp=-2), "'w1' has weight_exp -2, which floors"),
    "bias exponent": (
        lambda: _with(_two_layers(), "l0", bias_mant=np.full(3, 3, np.int32), bias_exp=5),
        "'l0' has biases (bias_mant << bias_exp) that are not multiples of 64",
    ),
    "bias width": (
        lambda: _with(_two_layers(), "l0", bias_mant=np.full(3, 4095, np.int32), bias_exp=7),
        "'l0' has biases 8190..8190 << 6",
    ),
    "delays on conv": (lambda: _conv_with_delays(), "'k' is a conv synapse with delays"),
    "conv after dense": (_conv_after_dense, "'k' is a conv synapse fed by the dense layer 'l0'"),
    "skip connection": (_skip, "'l1' has 2 input synapses"),
    "tonic source": (_tonic, "'tonic' has 0 input synapses"),
    "two inputs": (lambda: _with_second_input(), "the program has 2 input ports"),
    "outputs": (lambda: dataclasses.replace(_two_layers(), outputs=["l0", "l1"]), "outputs its last layer, 'l1'"),
    "float program": (lambda: dataclasses.replace(_two_layers(), number_format="float"), "a float program"),
}


def _conv_with_delays():
    program = _conv_after_dense()
    program.synapses = [dataclasses.replace(syn, delays=np.ones_like(syn.weights)) for syn in program.synapses]
    return program


def _with_second_input():
    program = _two_layers()
    program.inputs.append(InputPort("y", (4,)))
    program.synapses.append(Synapse("wy", "y", "l0", "dense", np.ones((3, 4), np.int32)))
    return program


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_netx_cannot_express_is_refused_in_one_line(case, tmp_path):
    make, words = REFUSALS[case]
    with pytest.raises(NeurocompileError) as refused:
        netx.write_netx(make(), tmp_path / "p.net")
    message = str(refused.value)
    assert message.startswith("netx: ") and "\n" not in message and words in message, message
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_command_refuses_a_program_compiled_for_lava_in_one_line(tmp_path, capsys):
    program, _ = nc.compile(DIGITS_MLP)  # biases from each layer's latency, weight_exp 6
    program.save(tmp_path / "digits.ncp")
    code, _, err = run_cli(capsys, "export", tmp_path / "digits.ncp", "--to", "netx", "-o", tmp_path / "d.net")
    assert_one_line_error(code, err, "node 'lif1' adds its bias from step 1", "--bias-onset start")
    start, _ = nc.compile(DIGITS_MLP, bias_onset="start")
    start.save(tmp_path / "start.ncp")
    code, _, err = run_cli(capsys, "export", tmp_path / "start.ncp", "--to", "netx", "-o", tmp_path / "d.net")
    assert_one_line_error(code, err, "node 'input->lif1' has weights", "export --to netx compiles")
    assert not (tmp_path / "d.net").exists()


@pytest.mark.parametrize(
    "argv,words",
    [
        (("--to", "netx", "--calibrate", "digits"), "a compiled program; --calibrate"),
        (("--to", "netx", "--dt", "0"), "--dt must be a positive number"),
        (("--to", "onnx", "--calibrate", "digits"), "--calibrate applies to --to netx only"),
    ],
)
def test_the_command_refuses_options_that_do_not_apply(tmp_path, capsys, argv, words):
    chain([2], 2, weights=_evens).save(tmp_path / "p.ncp")
    assert_one_line_error(*run_cli(capsys, "export", tmp_path / "p.ncp", *argv)[::2], words)


def test_the_command_writes_model_dot_net_by_default(tmp_path, capsys):
    chain([2], 2, weights=_evens).save(tmp_path / "p.ncp")
    code, out, _ = run_cli(capsys, "export", tmp_path / "p.ncp", "--to", "netx")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'p.net'} (netx layers: input, dense)")
    assert read_file(tmp_path / "p.net")["layer/1/weight"].shape == (2, 2)
