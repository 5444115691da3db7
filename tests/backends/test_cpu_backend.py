"""CpuBackend: hand-computed cases, exactness bounds, and a step-by-step reference loop.

Bit-exactness against Lava itself is tested program by program in tests/backends/lava/test_lava_backend.py
(same strategies, tests/helpers/program_strategies.py); here the oracles are hand arithmetic and a plain
per-step loop over ``neurocompile.semantics.fixedpoint`` (itself tested against Lava in tests/semantics/test_fixedpoint.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from neurocompile.analysis.metrics import program_synops
from neurocompile.backends.cpu import CpuBackend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp
from tests.helpers.program_strategies import programs_with_inputs


def pop(name, n=1, du=4095, dv=4095, vth=0, bias=0, **kw):
    return Population(name, (n,), du=du, dv=dv, vth=vth, bias_mant=np.full((n,), bias, dtype=np.int32), **kw)


def syn(name, src, tgt, w, **kw):
    return Synapse(name, src, tgt, kw.pop("kind", "dense"), np.asarray(w, dtype=np.int32), **kw)


def spikes_at(steps, times, n=1):
    x = np.zeros((1, steps, n), dtype=np.uint8)
    for t in times:
        x[0, t] = 1
    return x


# --- hand-computed ----------------------------------------------------------------------


def test_two_layer_timing(neuron_path):
    # du = dv = 4095: u = a_in << 6, v = u (+ bias); vth = 0 -> any positive u spikes.
    prog = FixedPointProgram(
        [InputPort("x", (1,))],
        [pop("p1"), pop("p2")],
        [syn("a", "x", "p1", [[2]]), syn("b", "p1", "p2", [[2]])],
        ["p2"],
    )
    rec = CpuBackend(prog).run(spikes_at(8, [3]), record="all")
    assert rec["p1.spikes"][0, :, 0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # input at t=3 reaches p1 at t=4
    assert rec["p2.spikes"][0, :, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]  # and p2 at t=5
    assert rec["p1.u"][0, :, 0].tolist() == [0, 0, 0, 0, 2 * 64, 0, 0, 0]
    assert rec["p1.v"][0, :, 0].tolist() == [0] * 8  # reset after the spike
    assert rec.metadata["schedule"] == "layerwise"


def test_du_zero_still_decays_u(neuron_path):
    prog = FixedPointProgram(
        [InputPort("x", (1,))], [pop("p", du=0, dv=0, vth=2**17 - 1)], [syn("a", "x", "p", [[64]])], ["p"]
    )
    rec = CpuBackend(prog).run(spikes_at(5, [0]), record="all")
    u = 64 * 64
    expected_u = [0, u]
    for _ in range(3):
        expected_u.append(expected_u[-1] * 4095 // 4096)  # positive: floor == toward zero
    assert rec["p.u"][0, :, 0].tolist() == expected_u == [0, 4096, 4095, 4094, 4093]
    assert rec["p.v"][0, :, 0].tolist() == list(np.cumsum(expected_u))  # dv = 0: no decay of v


def test_negative_decay_rounds_toward_zero(neuron_path):
    prog = FixedPointProgram(
        [InputPort("x", (1,))], [pop("p", du=2047, dv=4095, vth=0)], [syn("a", "x", "p", [[-3]], weight_exp=-1)], ["p"]
    )
    rec = CpuBackend(prog).run(spikes_at(4, [0]), record="all")
    # mixed 8-bit: -3 truncates to -4; weight_exp -1: -4 >> 1 = -2; u = -2 * 64 = -128;
    # then u * (4096 - 2048) / 4096 = -64 -> -32 (sign-magnitude)
    assert rec["p.u"][0, :, 0].tolist() == [0, -128, -64, -32]


def test_recurrent_self_excitation_runs_stepwise(neuron_path):
    prog = FixedPointProgram(
        [InputPort("x", (1,))],
        [pop("p")],
        [syn("a", "x", "p", [[2]]), syn("r", "p", "p", [[2]], recurrent=True)],
        ["p"],
    )
    backend = CpuBackend(prog)
    rec = backend.run(spikes_at(6, [0]), record="all")
    assert rec.metadata["schedule"] == "stepwise"
    assert rec["p.spikes"][0, :, 0].tolist() == [0, 1, 1, 1, 1, 1]  # each spike re-excites the next step


def test_delays(neuron_path):
    w = np.array([[2, 2]])
    delays = np.array([[3, 0]])
    prog = FixedPointProgram([InputPort("x", (2,))], [pop("p")], [syn("a", "x", "p", w, delays=delays)], ["p"])
    x = np.zeros((1, 8, 2), dtype=np.uint8)
    x[0, 0, 0] = 1  # delay 3: arrives at 0 + 1 + 3
    x[0, 1, 1] = 1  # delay 0: arrives at 2
    rec = CpuBackend(prog).run(x, record="all")
    assert rec["p.spikes"][0, :, 0].tolist() == [0, 0, 1, 0, 1, 0, 0, 0]


def test_reset_interval(neuron_path):
    prog = FixedPointProgram(
        [InputPort("x", (1,))],
        [pop("p", du=0, dv=0, vth=2**17 - 1, bias=10, reset_interval=3)],
        [syn("a", "x", "p", [[0]])],
        ["p"],
    )
    rec = CpuBackend(prog).run(spikes_at(9, []), record="all")
    # Lava LIFReset zeroes u, v before steps with time_step % 3 == 0 (1-based): 0-based 2, 5, 8
    assert rec["p.v"][0, :, 0].tolist() == [10, 20, 10, 20, 30, 10, 20, 30, 10]


def test_nonspiking_readout_saturates(neuron_path):
    prog = FixedPointProgram(
        [InputPort("x", (1,))],
        [pop("p", du=0, dv=0, vth=0, bias=4095, bias_exp=7, spiking=False)],
        [syn("a", "x", "p", [[0]])],
        ["p"],
    )
    rec = CpuBackend(prog).run(spikes_at(20, []), record="all")
    v = rec["p.v"][0, :, 0]
    assert v[0] == 4095 * 128 and v[-1] == 2**23 - 1 and not rec["p.spikes"].any()


def test_synops_and_rates(neuron_path):
    w = np.array([[2, 0, 2], [0, 0, 2]])  # fan-out per source: 1, 0, 2
    prog = FixedPointProgram([InputPort("x", (3,))], [pop("p", n=2, vth=2**17 - 1)], [syn("a", "x", "p", w)], ["p"])
    x = np.zeros((2, 4, 3), dtype=np.uint8)
    x[0, 0] = [1, 1, 1]  # 1 + 0 + 2
    x[1, 3, 2] = 1  # 2
    rec = CpuBackend(prog).run(x)
    assert program_synops(prog, x, rec) == {"a": 5}
    # conv 2x2 kernel of ones over a 3x3 input: fan-out corner 1, edge 2, centre 4 -> 4*1 + 4*2 + 4 = 16
    geometry = ConvGeometry(input_shape=(1, 3, 3), output_shape=(1, 2, 2))
    conv_prog = FixedPointProgram(
        [InputPort("x", (1, 3, 3))],
        [Population("p", (1, 2, 2), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros((1, 2, 2), dtype=np.int32))],
        [Synapse("c", "x", "p", "conv", np.ones((1, 1, 2, 2), dtype=np.int32), conv=geometry)],
        ["p"],
    )
    x = np.ones((1, 1, 1, 3, 3), dtype=np.uint8)
    assert program_synops(conv_prog, x, CpuBackend(conv_prog).run(x)) == {"c": 16}
    assert rec.metadata["input_rate"]["x"] == pytest.approx(4 / 24)
    assert set(rec.arrays) == {"p.spikes"}


def test_conv_hand_case(neuron_path):
    from neurocompile.ir.network import ConvGeometry

    w = np.zeros((1, 1, 2, 2), dtype=np.int32)
    w[0, 0, 0, 1] = 3  # correlation: output (i, j) reads input (i, j + 1)
    geom = ConvGeometry((1, 2, 3), (1, 1, 2))
    prog = FixedPointProgram(
        [InputPort("x", (1, 2, 3))],
        [Population("p", (1, 1, 2), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros((1, 1, 2), dtype=np.int32))],
        [Synapse("c", "x", "p", "conv", w, weight_exp=1, conv=geom)],
        ["p"],
    )
    x = np.zeros((1, 2, 1, 2, 3), dtype=np.uint8)
    x[0, 0, 0, 0, 2] = 1
    rec = CpuBackend(prog).run(x, record="all")
    assert rec["p.u"][0, 1, 0, 0].tolist() == [0, (3 << 1) * 64]  # conv keeps odd weights; weight_exp folded


def test_bad_inputs_raise():
    prog = FixedPointProgram([InputPort("x", (2,))], [pop("p")], [syn("a", "x", "p", [[1, 1]])], ["p"])
    backend = CpuBackend(prog)
    with pytest.raises(NeurocompileError, match="input 'x'"):
        backend.run(np.zeros((1, 3, 5)))
    with pytest.raises(NeurocompileError, match="0 or 1"):
        backend.run(np.full((1, 3, 2), 2))
    with pytest.raises(NeurocompileError, match="no node"):
        backend.run(np.zeros((1, 3, 2)), record=["nope"])


# --- reference loop ---------------------------------------------------------------------


def reference_run(program: FixedPointProgram, inputs: dict) -> dict:
    """Plain per-step simulation with the fixedpoint functions (NumPy int64, Lava step order)."""
    batch, steps = next(iter(inputs.values())).shape[:2]
    shapes = {p.name: tuple(p.shape) for p in program.inputs} | {p.name: tuple(p.shape) for p in program.populations}
    state = {
        p.name: [np.zeros((batch, p.size), np.int64), np.zeros((batch, p.size), np.int64)] for p in program.populations
    }
    pending = {p.name: {} for p in program.populations}
    out = {f"{p.name}.{k}": [] for p in program.populations for k in ("spikes", "u", "v")}
    for t in range(steps):
        now = {name: x[:, t].reshape(batch, -1).astype(np.int64) for name, x in inputs.items()}
        for p in program.populations:
            u, v = state[p.name]
            if fxp.reset_due(t, p.reset_interval):
                u, v = 0 * u, 0 * v
            bias = np.broadcast_to(fxp.effective_bias(np.asarray(p.bias_mant), p.bias_exp), p.shape).reshape(-1)
            bias = bias if fxp.bias_active(t, p.bias_onset) else 0 * bias
            a_in = pending[p.name].pop(t, 0)
            s, u, v = fxp.lif_fixed_step(
                a_in, u, v, p.du, p.dv, p.vth, bias, spiking=p.spiking, reset=p.reset, **p.firing()
            )
            state[p.name] = [u, v]
            now[p.name] = s.astype(np.int64)
            for k, val in (("spikes", s), ("u", u), ("v", v)):
                out[f"{p.name}.{k}"].append(val.reshape(batch, *p.shape))
        for sy in program.synapses:
            src = now[sy.source]
            eff = fxp.effective_weights(
                sy.weights,
                sy.weight_exp,
                sy.num_weight_bits,
                sy.sign_mode,
                kind="conv" if sy.kind == "conv" else "dense",
            )
            if sy.kind == "conv":
                g = sy.conv
                acts = {
                    0: fxp.conv_activation(
                        src.reshape(batch, *shapes[sy.source]), eff, g.stride, g.padding, g.dilation, g.groups
                    ).reshape(batch, -1)
                }
            else:
                delays = np.zeros(eff.shape, np.int64) if sy.delays is None else sy.delays
                acts = fxp.delayed_dense_activation(src, eff, delays, sy.weight_exp)
            for d, act in acts.items():
                box = pending[sy.target]
                box[t + 1 + d] = box.get(t + 1 + d, 0) + act
    return {k: np.stack(v, axis=1).astype(np.int64) for k, v in out.items()}


@given(case=programs_with_inputs())
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
def test_random_programs_match_reference_loop(case, neuron_path):
    program, inputs = case
    expected = reference_run(program, inputs)
    rec = CpuBackend(program).run(inputs, record="all")
    for key, arr in expected.items():
        np.testing.assert_array_equal(rec[key].astype(np.int64), arr, err_msg=f"{key} ({rec.metadata['schedule']})")


def test_layerwise_equals_stepwise_on_feedforward():
    rng = np.random.default_rng(3)
    prog = FixedPointProgram(
        [InputPort("x", (20,))],
        [pop("h", n=16, du=700, dv=300, vth=40), pop("o", n=4, du=100, dv=900, vth=30)],
        [
            syn("a", "x", "h", rng.integers(-127, 128, (16, 20)), weight_exp=2),
            syn("b", "h", "o", rng.integers(-127, 128, (4, 16)), delays=rng.integers(0, 3, (4, 16))),
        ],
        ["o"],
    )
    x = (rng.random((5, 30, 20)) < 0.3).astype(np.uint8)
    backend = CpuBackend(prog)
    layer = backend.run(x, record="all")
    backend.order = None  # force the step-by-step schedule
    step = backend.run(x, record="all")
    assert layer.metadata["schedule"] == "layerwise" and step.metadata["schedule"] == "stepwise"
    for key in layer.arrays:
        np.testing.assert_array_equal(layer[key], step[key], err_msg=key)


@pytest.mark.parametrize("total", [2**24 - 1, 2**24 + 1])
def test_conv_sums_exact_at_the_float32_bound(total):
    """A conv synapse runs through F.conv2d in float32 when no sum can reach 2**24 and in float64
    otherwise: with all-positive weights summing to 2**24 - 1 or 2**24 + 1 per output channel and
    every input spiking, the activations equal ``fixedpoint.conv_activation`` (exact, float64)."""
    import torch

    w = np.full((2, 8, 3, 3), 233016, dtype=np.int64)
    w[:, 0, 0, 0] = total - (w[0].size - 1) * 233016  # the row sum of |w| is exactly `total`
    geom = ConvGeometry((8, 5, 5), (2, 3, 3))
    prog = FixedPointProgram(
        [InputPort("x", (8, 5, 5))],
        [Population("p", (2, 3, 3), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros((2, 3, 3), np.int32))],
        [Synapse("c", "x", "p", "conv", w.astype(np.int32), conv=geom)],
        ["p"],
    )
    backend = CpuBackend(prog)
    syn = backend.syns["c"]
    kernel = backend._kernel_for(syn, 1.0)
    assert kernel == ("conv2d-fp32" if total < 2**24 else "conv2d-fp64")
    spikes = np.ones((1, 8, 5, 5), dtype=np.uint8)
    got = backend._activation(syn, kernel, torch.from_numpy(spikes).reshape(1, -1)).reshape(2, 3, 3).numpy()
    want = fxp.conv_activation(spikes[0], fxp.synapse_weights(prog.synapses[0]))
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > 0
