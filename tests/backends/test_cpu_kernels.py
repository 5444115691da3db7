"""The CPU backend's synaptic kernels (int8 GEMM, C gather, float GEMM) and its compiled step-by-step
schedule: each proved exact at its bounds against plain int64 arithmetic (NumPy matmuls by hand, or the
per-step ``fixedpoint`` loop of test_cpu_backend.reference_run), each choice recorded in the metadata."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from neurocompile.backends import cpu, native
from neurocompile.backends.cpu import CpuBackend
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp
from tests.backends.test_cpu_backend import reference_run
from tests.helpers.program_strategies import programs_with_inputs

DENSE_KERNELS = ["int8-gemm", "gather", "gemm"]  # gemm: the float GEMM exact at the weights' bound


def one_layer(w, n_out=None, **syn):
    """Input x [n_in] -> population p [n_out] through one dense synapse; p integrates without decay."""
    w = np.asarray(w, dtype=np.int32)
    n_out, n_in = w.shape
    pop = Population("p", (n_out,), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros(n_out, np.int32))
    return FixedPointProgram([InputPort("x", (n_in,))], [pop], [Synapse("a", "x", "p", "dense", w, **syn)], ["p"])


@pytest.fixture
def force_kernel(monkeypatch):
    """Make every dense synapse of a fixed-point program use one kernel (conv synapses and those out of graded
    spikes, which only the float GEMM multiplies, keep theirs)."""

    def force(kernel):
        def chosen(self, sy, density):
            if not sy.dense or self._payload_max(sy.spec.source) > 1:
                return choose(self, sy, density)
            return self._gemm_kernel(sy) if kernel == "gemm" else kernel

        monkeypatch.setattr(CpuBackend, "_kernel_for", chosen)

    choose = CpuBackend._kernel_for

    return force


def hand_sums(x, w_eff):
    """int64 sums of the effective weights over the active inputs: x [M, n_in] @ w_eff.T."""
    return x.astype(np.int64) @ np.asarray(w_eff, dtype=np.int64).T


# --- each kernel at its bounds, against a hand-computed int64 matmul -------------------------

# (weights, sign_mode, num_weight_bits): mixed at -256 / 254 (mantissas -128 / 127, the int8 ends),
# unsigned 255 (beyond int8: offset), inhibitory -255, 7 bits (mantissa shift 2)
BOUND_CASES = {
    "mixed-min": (-256, "mixed", 8),
    "mixed-max": (254, "mixed", 8),
    "mixed-both": (None, "mixed", 8),
    "excitatory-255": (255, "excitatory", 8),
    "excitatory-mixed-values": (None, "excitatory", 8),
    "inhibitory-255": (-255, "inhibitory", 8),
    "mixed-7-bits": (None, "mixed", 7),
}


@pytest.mark.parametrize("kernel", DENSE_KERNELS)
@pytest.mark.parametrize("case", sorted(BOUND_CASES))
def test_dense_sums_exact_at_weight_bounds(kernel, case):
    """All inputs active (and every other one), weights at the ends of their range: the kernel's sums,
    scaled by the mantissa shift, equal the int64 matmul of the effective weights."""
    value, sign_mode, bits = BOUND_CASES[case]
    rng = np.random.default_rng(1)
    lo, hi = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}[sign_mode]
    w = np.full((24, 300), value) if value is not None else rng.choice([lo, hi, lo + 1, hi - 1, 0], (24, 300))
    prog = one_layer(w, sign_mode=sign_mode, num_weight_bits=bits)
    backend = CpuBackend(prog)
    sy = backend.syns["a"]
    kernel = backend._gemm_kernel(sy) if kernel == "gemm" else kernel
    x = np.ones((3, 300), dtype=np.uint8)
    x[1, ::2] = 0
    x[2] = 0
    sums = backend._sums(sy, kernel, torch.from_numpy(x)).to(torch.int64).numpy()
    want = hand_sums(x, fxp.effective_weights(w, 0, bits, sign_mode))
    np.testing.assert_array_equal(sums << (sy.wexp - prog.synapses[0].weight_exp), want)


def test_int8_sums_reach_the_int32_extremes():
    """The int8 GEMM's int32 sums are exact up to the largest layer a program can have: 2**24 inputs
    (``program.MAX_NODE_SIZE``) all active at the int8 minimum sum to exactly -2**31, at the maximum to
    127 * 2**24; unsigned mantissas up to 255 go through the offset (-128 each, added back)."""
    from neurocompile.ir.program import MAX_NODE_SIZE

    x = torch.ones(1, MAX_NODE_SIZE, dtype=torch.uint8)
    for value, want in ((-128, -(2**31)), (127, 127 * MAX_NODE_SIZE)):
        q, offset = cpu.int8_operand(np.full((MAX_NODE_SIZE, 1), value, dtype=np.int16))
        assert offset == 0 and torch._int_mm(x.view(torch.int8), torch.from_numpy(q)).item() == want
    q, offset = cpu.int8_operand(np.array([[0], [255]], dtype=np.int16))
    assert offset == 128 and q.ravel().tolist() == [-128, 127]


def test_gather_sums_wrap_modulo_2_32():
    """The C gather adds in uint32: past 2**31 its sums are the true sums modulo 2**32, which is what
    a left shift keeps (wexp >= 0), and the backend does not choose it where a right shift needs more."""
    kernel = cpu._load_kernel()
    n_in = 70000  # 70000 * 32767 > 2**31
    w = torch.full((n_in, 3), 32767, dtype=torch.int16)
    x = torch.ones(2, n_in, dtype=torch.uint8)
    out = torch.empty(2, 3, dtype=torch.int32)
    kernel["gather_sum"](n_in, 3, x.data_ptr(), w.data_ptr(), out.data_ptr(), 0, 2)
    true = 32767 * n_in
    assert true >= 2**31
    assert out[0, 0].item() == fxp.wrap_bits(np.int64(true), 32)
    for wexp in (0, 3):
        assert fxp.scale_activation(np.int64(out[0, 0].item()), wexp) == fxp.scale_activation(np.int64(true), wexp)
    sy = cpu._Syn(None, [0], np.zeros((1, 1)), -1, 2**31)
    assert not cpu.gather_exact(sy)
    sy.bound = 2**31 - 1
    assert cpu.gather_exact(sy)
    sy.wexp, sy.bound = 0, 2**40
    assert cpu.gather_exact(sy)


KERNEL_AND_NEURON_PATHS = [(k, p) for k in DENSE_KERNELS for p in ("kernel", "torch") if (k, p) != ("gather", "torch")]


@pytest.mark.parametrize("kernel, neuron_path", KERNEL_AND_NEURON_PATHS, indirect=["neuron_path"])  # gather: C only
@pytest.mark.parametrize("weight_exp", [-8, 0, 7])
def test_kernels_wrap_like_lava_beyond_float32(kernel, weight_exp, force_kernel, neuron_path):
    """65795 excitatory inputs at 255 (sum 16777725 > 2**24; the a_in << 6 wraps int32): whole runs with
    each kernel forced equal the int64 per-step reference, u and v of every step."""
    n_in = 65795
    prog = one_layer(np.full((1, n_in), 255), sign_mode="excitatory", weight_exp=weight_exp)
    x = np.zeros((2, 4, n_in), dtype=np.uint8)
    x[0, 0] = 1
    x[1, 1, ::3] = 1
    force_kernel(kernel)
    rec = CpuBackend(prog).run(x, record="all")
    assert rec.metadata["synapse_kernel"]["a"] == ("fp64-gemm" if kernel == "gemm" else kernel)
    expected = reference_run(prog, {"x": x})
    for key, arr in expected.items():
        np.testing.assert_array_equal(rec[key].astype(np.int64), arr, err_msg=key)
    assert abs(expected["p.u"]).max() > 0


@pytest.mark.parametrize("kernel", DENSE_KERNELS)
@given(case=programs_with_inputs())
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
def test_random_programs_with_each_kernel(kernel, case, force_kernel):
    """Random programs (delays, recurrent synapses, extreme weights and exponents) with every dense synapse
    on one kernel equal the int64 per-step reference (recurrent programs: the compiled schedule)."""
    program, inputs = case
    force_kernel(kernel)
    rec = CpuBackend(program).run(inputs, record="all")
    expected = reference_run(program, inputs)
    for key, arr in expected.items():
        np.testing.assert_array_equal(rec[key].astype(np.int64), arr, err_msg=f"{key} ({rec.metadata['schedule']})")


@pytest.mark.parametrize("total", [2**23 - 1, 2**23 + 1, 2**24 + 1])
def test_conv_runs_exact_around_the_24_bit_wrap(total, neuron_path):
    """A conv synapse whose sums stay below 2**23 hands its float sums straight to the neurons (the 24-bit
    wrap changes nothing there); beyond, the wrap applies (float32, then float64 past 2**24): whole runs
    with every input active equal the int64 per-step reference."""
    from neurocompile.ir.network import ConvGeometry

    w = np.full((2, 8, 3, 3), total // 72, dtype=np.int64)
    w[:, 0, 0, 0] += total - w[0].sum()  # the row sum of |w| is exactly `total`
    prog = FixedPointProgram(
        [InputPort("x", (8, 5, 5))],
        [Population("p", (2, 3, 3), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros((2, 3, 3), np.int32))],
        [Synapse("c", "x", "p", "conv", w.astype(np.int32), conv=ConvGeometry((8, 5, 5), (2, 3, 3)))],
        ["p"],
    )
    x = np.ones((2, 3, 8, 5, 5), dtype=np.uint8)
    x[1, 1, ::2] = 0
    rec = CpuBackend(prog).run(x, record="all")
    assert rec.metadata["synapse_kernel"]["c"] == ("conv2d-fp32" if total < 2**24 else "conv2d-fp64")
    expected = reference_run(prog, {"x": x})
    for key, arr in expected.items():
        np.testing.assert_array_equal(rec[key].astype(np.int64), arr, err_msg=key)
    wrapped = fxp.conv_activation(x[0, 0], fxp.synapse_weights(prog.synapses[0]))
    assert (wrapped == total).all() == (total < 2**23)  # beyond 2**23 the wrap mattered


# --- choices recorded --------------------------------------------------------------------------


def two_layers(rng, n_in=400, n_hidden=200):
    """x -> h (vth 0: every input spike makes h spike) -> o; enough weights for the gather."""
    w1 = np.full((n_hidden, n_in), 254)
    w2 = rng.integers(-128, 128, (10, n_hidden)) * 2
    pops = [
        Population("h", (n_hidden,), du=4095, dv=4095, vth=0, bias_mant=np.zeros(n_hidden, np.int32)),
        Population("o", (10,), du=4095, dv=4095, vth=2**17 - 1, bias_mant=np.zeros(10, np.int32)),
    ]
    syns = [Synapse("a", "x", "h", "dense", w1.astype(np.int32)), Synapse("b", "h", "o", "dense", w2.astype(np.int32))]
    return FixedPointProgram([InputPort("x", (n_in,))], pops, syns, ["o"])


def test_kernel_chosen_from_the_measured_density(monkeypatch):
    """Sparse inputs are gathered, dense ones multiplied in int8; the population feeding the next layer is
    judged by its own measured rate (h spikes at every step after the first), small layers never gather."""
    monkeypatch.setattr(cpu, "GATHER_MIN_WEIGHTS", 2000)
    rng = np.random.default_rng(0)
    prog = two_layers(rng)
    backend = CpuBackend(prog)
    sparse = np.zeros((2, 10, 400), dtype=np.uint8)
    sparse[:, :, 0] = 1  # density 1/400
    rec = backend.run(sparse, record="all")
    assert rec.metadata["input_rate"]["x"] == pytest.approx(1 / 400)
    assert rec.metadata["spike_rate"]["h"] == pytest.approx(9 / 10)
    assert rec.metadata["synapse_kernel"] == {"a": "gather", "b": "int8-gemm"}
    dense = (rng.random((2, 10, 400)) < 0.5).astype(np.uint8)
    assert backend.run(dense).metadata["synapse_kernel"] == {"a": "int8-gemm", "b": "int8-gemm"}
    monkeypatch.setattr(cpu, "GATHER_MIN_WEIGHTS", 10**6)
    assert backend.run(sparse).metadata["synapse_kernel"]["a"] == "int8-gemm"
    for x in (sparse, dense):
        expected = reference_run(prog, {"x": x})
        got = backend.run(x, record="all")
        for key, arr in expected.items():
            np.testing.assert_array_equal(got[key].astype(np.int64), arr, err_msg=key)


def test_gather_not_chosen_where_a_right_shift_needs_more_than_32_bits(monkeypatch):
    """weight_exp < 0 and sums that may reach 2**31: the gather is not exact there, int8 GEMM runs."""
    prog = one_layer(np.full((1, 300), 255), sign_mode="excitatory", weight_exp=-1)
    backend = CpuBackend(prog)
    x = np.zeros((1, 3, 300), dtype=np.uint8)
    x[0, 0, 0] = 1
    monkeypatch.setattr(cpu, "GATHER_MIN_WEIGHTS", 1)
    assert backend.run(x).metadata["synapse_kernel"]["a"] == "gather"
    monkeypatch.setattr(cpu, "INT32_EXACT", 255 * 300)  # as if the sums could reach 2**31
    assert backend.run(x).metadata["synapse_kernel"]["a"] == "int8-gemm"


def recurrent(conv=False):
    """x -> r (recurrent, 2-step delays on half the weights) -> o, optionally with a conv synapse into o."""
    rng = np.random.default_rng(4)
    n = 6
    pops = [
        Population("r", (n,), du=300, dv=200, vth=20, bias_mant=np.zeros(n, np.int32), reset="subtract"),
        Population("o", (1, 2, 3), du=0, dv=4095, vth=10, bias_mant=np.full((1, 2, 3), 3, np.int32)),
    ]
    syns = [
        Synapse("in", "x", "r", "dense", (rng.integers(0, 128, (n, 4)) * 2).astype(np.int32), weight_exp=2),
        Synapse(
            "rec",
            "r",
            "r",
            "dense",
            (rng.integers(-128, 128, (n, n)) * 2).astype(np.int32),
            weight_exp=-2,
            delays=rng.integers(0, 3, (n, n)),
            recurrent=True,
        ),
    ]
    if conv:
        from neurocompile.ir.network import ConvGeometry

        geom = ConvGeometry((1, 2, 3), (1, 2, 3), padding=(1, 1))
        syns.append(Synapse("out", "r", "o", "conv", rng.integers(-9, 9, (1, 1, 3, 3)).astype(np.int32), conv=geom))
        pops[0] = Population(
            "r", (1, 2, 3), du=300, dv=200, vth=20, bias_mant=np.zeros((1, 2, 3), np.int32), reset="subtract"
        )
    else:
        syns.append(Synapse("out", "r", "o", "dense", (rng.integers(-128, 128, (n, n)) * 2).astype(np.int32)))
    x = (rng.random((3, 40, 4)) < 0.4).astype(np.uint8)
    return FixedPointProgram([InputPort("x", (4,))], pops, syns, ["o"]), x


@pytest.mark.parametrize("conv", [False, True], ids=["dense", "conv"])
def test_recurrent_program_compiled_or_torch(conv, neuron_path):
    """A recurrent program with delays runs as one C call (neuron_kernel "c", every synapse "gather"),
    or step by step in torch with a conv synapse or without the kernel; both equal the int64 reference."""
    prog, x = recurrent(conv)
    rec = CpuBackend(prog).run(x, record="all")
    compiled = neuron_path == "kernel" and not conv
    assert rec.metadata["schedule"] == "stepwise"
    assert set(rec.metadata["neuron_kernel"].values()) == {"c" if compiled else "torch"}
    assert (set(rec.metadata["synapse_kernel"].values()) == {"gather"}) == compiled
    expected = reference_run(prog, {"x": x})
    for key, arr in expected.items():
        np.testing.assert_array_equal(rec[key].astype(np.int64), arr, err_msg=key)
    assert expected["r.spikes"].any() and expected["o.spikes"].any()


def test_recurrent_compiled_on_threads_equals_one_thread(monkeypatch):
    """Batch rows sliced over threads give the same recording as one thread."""
    prog, x = recurrent()
    x = np.concatenate([x] * 40)  # batch 120
    backend = CpuBackend(prog)
    many = backend.run(x, record="all")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = backend.run(x, record="all")
    for key in many.arrays:
        np.testing.assert_array_equal(many[key], one[key], err_msg=key)


def test_a_forked_child_gets_its_own_thread_pool():
    """run_sliced's pool threads do not survive a fork: a child that reused the parent's pool (its idle
    count says 2 threads wait) would queue work no thread runs and hang."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        native.run_sliced(lambda b0, b1: time.sleep(0.01), [], 4, 10**6)  # the parent's pool, 2 threads
        time.sleep(0.3)  # both threads idle
        pid = os.fork()
        if pid == 0:
            slices = []
            native.run_sliced(lambda b0, b1: slices.append((b0, b1)), [], 4, 10**6)
            os._exit(0 if sorted(slices) == [(0, 2), (2, 4)] else 1)
        status = _wait(pid, seconds=10)
    finally:
        torch.set_num_threads(threads)
    assert status is not None, "the forked child hung in run_sliced"
    assert os.waitstatus_to_exitcode(status) == 0


def _wait(pid: int, seconds: float):
    """The child's wait status, or None after killing it when it has not ended within ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_recording_in_use_is_never_overwritten_and_a_released_one_is_reused():
    """The backend keeps its recording buffers for the next runs (no page faults on fresh memory) and reuses one
    only when nothing holds the array it handed out: every run equals the plain per-step reference, however the
    earlier recordings are held; once they are dropped, the next run writes into the same memory."""
    rng = np.random.default_rng(4)
    w = (2 * rng.integers(-60, 61, size=(40, 30))).astype(np.int32)
    program = one_layer(w)
    backend = CpuBackend(program)
    inputs = [(rng.random((4, 12, 30)) < 0.4).astype(np.uint8) for _ in range(3)]
    kept = [backend.run(x, record="all") for x in inputs]  # each still held while the next runs
    view = kept[0]["p.v"][:, 3]  # a view alone keeps its recording's memory in use
    del kept[0]
    backend.run(inputs[2], record="all")
    for rec, x in zip([None, *kept], inputs):  # the first recording survives in its view alone
        expected = reference_run(program, {"x": x})
        if rec is None:
            np.testing.assert_array_equal(view, expected["p.v"][:, 3])
            continue
        for key in ("p.spikes", "p.u", "p.v"):
            np.testing.assert_array_equal(rec[key], expected[key])
    address = kept[0]["p.v"].__array_interface__["data"][0]
    del kept[0]
    reused = backend.run(inputs[0], record="all")
    assert reused["p.v"].__array_interface__["data"][0] == address
    np.testing.assert_array_equal(reused["p.v"], reference_run(program, {"x": inputs[0]})["p.v"])
