"""CpuBackend on plastic programs: the C learning kernel against the reference loop, by hand, per learner.

The reference loop (``cpu_learning.reference_run``) calls ``neurocompile.semantics.fixedpoint``'s learning
engine step by step (itself checked against Lava's fixed_pt LearningDense elsewhere); the C kernel
(``kernels/plastic.c``) must give the same numbers for every recorded variable. The hand-computed
case derives its weights from the Lava formulas and NumPy's raw random streams, not from this code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocompile.backends import cpu_learning
from neurocompile.backends.cpu import CpuBackend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import Factor, LearningRule, LearningSignal, Product, SignalTerm, Surrogate
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp
from tests.helpers.plastic_programs import (
    OTTT_RULE,
    hidden_signal,
    output_signal,
    plastic_cases,
    plastic_program,
    stream,
)


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if cpu_learning.load_kernel() is None:
        pytest.fail("C learning kernel could not be built (gcc/cc missing?)")


def run(program, data, path="c", **options):
    """``CpuBackend(program).run(data, record="all", ...)`` on the C kernel or the reference loop."""
    with pytest.MonkeyPatch.context() as mp:
        if path == "reference":
            mp.setattr(cpu_learning, "load_kernel", lambda: None)
        rec = CpuBackend(program).run(data, record="all", **options)
    assert rec.metadata["learning_kernel"] == path
    return rec


def final_weights(rec) -> dict[str, np.ndarray]:
    """{(learner, synapse): weights} of the learned programs."""
    return {
        (b, syn.name): syn.weights
        for b, prog in enumerate(rec.metadata["programs"])
        for syn in prog.synapses
        if syn.learning is not None
    }


def assert_same(a, b) -> None:
    assert sorted(a.arrays) == sorted(b.arrays)
    for key in a.arrays:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=str(key))


# --- C kernel == reference loop ------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=plastic_cases(), every=st.integers(1, 12))
def test_kernel_equals_reference(case, every):
    program, data = case
    kernel, reference = (
        run(program, data, checkpoint_every=every),
        run(program, data, "reference", checkpoint_every=every),
    )
    assert_same(kernel, reference)
    steps = data["x"].shape[1]
    assert kernel.metadata["checkpoint_steps"] == list(range(every, steps + 1, every))
    for syn in (s for s in program.synapses if s.learning is not None):
        assert kernel[f"{syn.name}.weights"].shape == (1, steps // every, *np.shape(syn.weights))


def _every_factor_rule(t_epoch: int, seed: int) -> LearningRule:
    """x traces at post spike times (y0 dependency), y traces at pre spike times (x0), w, constants."""
    products = (
        Product("y0", (Factor("x1"), Factor("x2", 3), Factor("y1")), mantissa=5, exponent=2),
        Product("x0", (Factor("y2", -3), Factor("w", 40)), mantissa=-7, exponent=-1),
        Product("u1", (Factor("x1"), Factor("y3"), Factor("x0", 1), Factor("y0")), mantissa=-8, exponent=8),
    )
    return LearningRule(products, seed, x1_impulse=40.25, x1_tau=5, x2_impulse=127.0, x2_tau=0, t_epoch=t_epoch)


@pytest.mark.parametrize("t_epoch", [1, 3, 12])
@pytest.mark.parametrize("sign_mode", ["mixed", "excitatory", "inhibitory"])
def test_kernel_equals_reference_every_factor(t_epoch, sign_mode):
    """Factor kinds plastic_cases() rarely draws together, long epochs (the kernel's gather path), 3 learners."""
    signal = dict(bap=True, y1=SignalTerm("one", 0), y3=SignalTerm("surrogate_trace", 5))
    program = plastic_program(
        n_in=9,
        n_hidden=7,
        n_out=5,
        rule=_every_factor_rule(t_epoch, 3),
        hidden_rule=_every_factor_rule(t_epoch, 11),
        out_signal=output_signal(**signal),
        hid_signal=hidden_signal(bap=True, y1=SignalTerm("one", 2)),
        sign_mode=sign_mode,
        weight_exp=-1,
        vth=10,
    )
    data = stream(program, 80, batch=3, seed=t_epoch, rate=0.5)
    kernel = run(program, data, checkpoint_every=5)
    assert_same(kernel, run(program, data, "reference", checkpoint_every=5))
    learned = final_weights(kernel)  # (inhibitory: the hidden layer is silent, only w_in learns)
    assert not np.array_equal(learned[(0, "w_in")], fxp.synapse_weights(program.synapse("w_in")))


def test_kernel_equals_reference_large_errors():
    """Large and +-1 errors through feedback (output_shift 0, targets 200), y values at their clip,
    a surrogate trace that saturates at 2**23 - 1 (table 32767, no decay), y factors at the pre
    spike times (x0 dependency), over 600 steps."""
    steps, t_epoch, seed = 600, 2, 1
    rule = LearningRule(
        (
            Product("x0", (Factor("y1"), Factor("x1")), mantissa=7, exponent=1),
            Product("x0", (Factor("y3", 5),), mantissa=-3, exponent=3),
        ),
        seed,
        x1_impulse=20.5,
        x1_tau=30,
        t_epoch=t_epoch,
    )
    program = plastic_program(
        n_in=10,
        n_hidden=8,
        n_out=4,
        rule=rule,
        hidden_rule=dataclasses.replace(rule, rng_seed=seed),
        out_signal=output_signal(output_shift=0, y1=SignalTerm("one", 0), y3=SignalTerm("one", 1)),
        hid_signal=hidden_signal(
            surrogate=Surrogate((32767,), 0),
            trace_decay=0,
            y1=SignalTerm("one", 0),
            y3=SignalTerm("surrogate_trace", 30),
        ),
        vth=5,
    )
    data = stream(program, steps, seed=3, rate=0.3, target_scale=200)
    kernel = run(program, data, checkpoint_every=50)
    assert_same(kernel, run(program, data, "reference", checkpoint_every=50))
    assert (kernel["w_out.y1"] == -128).any()  # clipped errors
    assert (kernel["w_in.y1"] == 127).any() and (kernel["w_in.y1"] == -128).any()
    assert (kernel["out.spikes"].astype(int) - data["target"] == 1).any()  # errors of +1
    assert len(np.unique(kernel["w_in.y3"])) > 10  # the saturated trace times the feedback error


def test_y_trace_decay_by_hand():
    """The y traces decay by f = exp(-1/65535) at every within-epoch step, rounded with the epoch's
    draw r: y = -128 becomes -127 only when r < 128 * (1 - f) = 0.00195 (the fraction of f * y).

    Seed 459's y-decay stream (seed + 2, draw 2k at learning step k) has r = 0.00028 at epoch 9
    and 0.000066 at epoch 30 (8 steps each), and r >= 0.00195 at the others. With a target of 200,
    y1 = clip(spike - 200) = -128 at every step, so the factor (y1 + 128) is 0 except in those two
    epochs, where y climbs by one per within-epoch step (r < m * (1 - f) while m >= 19): -120 at
    the end. Rule u0 * (y1 + 128) + x0 * (y1 + 128) (mantissa 1, exponent 0: << 7, exact weights):
    at each such epoch every weight gains 8 (the end-of-epoch y), plus tx for an input whose last
    spike in the epoch came at within-epoch step tx (y at that time is -128 + tx).
    """
    steps, t_epoch, seed = 400, 8, 459
    r_y = np.random.default_rng(seed + 2).random(2 * steps + 1)[2 * t_epoch :: 2 * t_epoch]
    extreme = [e + 1 for e in np.nonzero(r_y < 128 * (1 - np.exp(-1 / 65535)))[0]]
    assert extreme == [9, 30] and r_y[8] < 19 * (1 - np.exp(-1 / 65535)) and r_y[29] < r_y[8]
    y_factor = (Factor("y1", 128),)
    rule = LearningRule((Product("u0", y_factor), Product("x0", y_factor)), seed, t_epoch=t_epoch)
    signal = LearningSignal(target="target", y1=SignalTerm("one", 0))
    program = plastic_program(n_in=6, n_out=3, rule=rule, out_signal=signal)
    data = stream(program, steps, seed=8, rate=0.3)
    data["target"][:] = 200
    expected = (program.synapse("w_out").weights // 2 * 2).astype(int)  # 8-bit mixed: the low bit goes
    for epoch in extreme:
        spikes = data["x"][0, (epoch - 1) * t_epoch : epoch * t_epoch]  # [8, n_in]
        tx = np.where(spikes.any(axis=0), t_epoch - np.argmax(spikes[::-1], axis=0), 0)
        expected += 8 + tx[None, :]
    for path in ("c", "reference"):
        rec = run(program, data, path, checkpoint_every=t_epoch)
        np.testing.assert_array_equal(rec.metadata["programs"][0].synapse("w_out").weights, expected)
        changed = [
            e + 1
            for e in range(1, steps // t_epoch)
            if (rec["w_out.weights"][0, e] != rec["w_out.weights"][0, e - 1]).any()
        ]
        assert changed == extreme


def test_sparse_synapses_learn_only_at_their_entries():
    """Lava's LearningSparse stores the entries that are nonzero after the first-step truncation
    (mixed 8 bits: 1 -> 0, so a stored 1 is absent too) and learns only there."""
    program = _two_layer_program(seed=5)
    for syn in program.synapses[:2]:
        syn.kind = "sparse"
        syn.weights[::2, 1::2] = 0
        syn.weights[1, 0] = 1  # truncates to 0: absent
    data = stream(program, 90, batch=2, seed=6)
    kernel = run(program, data, checkpoint_every=9)
    assert_same(kernel, run(program, data, "reference", checkpoint_every=9))
    for b in range(2):
        for syn in program.synapses[:2]:
            learned = kernel.metadata["programs"][b].synapse(syn.name).weights
            absent = fxp.synapse_weights(syn) == 0
            assert (learned[absent] == 0).all() and (kernel[f"{syn.name}.weights"][b][:, absent] == 0).all()
        learned = kernel.metadata["programs"][b].synapse("w_in").weights
        assert (learned != fxp.synapse_weights(program.synapse("w_in"))).sum() > 10


def test_float_program_learns_by_the_float_formula():
    """A float plastic program (Lava floating_pt, reference loop): 1 input, 1 output that never fires,
    rule 2**-2 * u0 * x1 * y1 (x1 impulse 10, tau 4), y1 = (0 - target) / 2, t_epoch 1.

    x1 = exp(-1/4) * x1 + 10 * spike; y1 decays once by exp(-1/65535) over the epoch;
    w += 0.25 * x1 * y1 * exp(-1/65535).
    """
    rule = LearningRule((Product("u0", (Factor("x1"), Factor("y1")), 1, -2),), 0, x1_impulse=10.0, x1_tau=4)
    signal = LearningSignal(target="target", y1=SignalTerm("one", 1))
    program = FixedPointProgram(
        [InputPort("x", (1,)), InputPort("target", (1,), kind="target")],
        [Population("out", (1,), du=0.5, dv=0.5, vth=1e9, bias_mant=np.zeros(1), learning=signal)],
        [Synapse("w", "x", "out", "dense", np.array([[3.0]]), learning=rule)],
        ["out"],
        number_format="float",
    ).validate()
    data = {"x": np.array([[[1], [0], [1]]], np.uint8), "target": np.array([[[4], [6], [-2]]], np.int32)}
    rec = CpuBackend(program).run(data, record="all", checkpoint_every=1)
    assert (
        rec.metadata["learning_kernel"] == "reference" and rec.metadata["learning_kernel_reason"] == "a float program"
    )
    fx, fy = np.exp(-1 / 4), np.exp(-1 / 65535)
    x1 = [10.0, 10 * fx, 10 * fx * fx + 10]
    y1 = [-2.0, -3.0, 1.0]
    w = [3.0]
    for x, y_ in zip(x1, y1):
        w.append(w[-1] + 0.25 * x * y_ * fy)
    np.testing.assert_allclose(rec["w.x1"][0, :, 0], x1, rtol=1e-12)
    np.testing.assert_array_equal(rec["w.y1"][0, :, 0], y1)
    np.testing.assert_allclose(rec["w.weights"][0, :, 0, 0], w[1:], rtol=1e-12)
    np.testing.assert_allclose(rec.metadata["programs"][0].synapse("w").weights, [[w[-1]]], rtol=1e-12)


def test_recurrent_synapse_runs_in_the_kernel():
    program = plastic_program(n_in=5, n_hidden=6, n_out=3, hidden_rule=OTTT_RULE)
    w = np.random.default_rng(1).integers(-60, 61, size=(6, 6)).astype(np.int32)
    program.synapses.append(Synapse("rec", "hid", "hid", "dense", w, recurrent=True, weight_exp=1))
    data = stream(program, 60, batch=2, seed=4)
    assert_same(run(program, data), run(program, data, "reference"))


def test_delayed_static_synapse_runs_the_reference_loop():
    program = plastic_program(n_in=4, n_hidden=5, n_out=3)  # static input layer
    program.synapses[0].delays = np.random.default_rng(2).integers(0, 3, size=(5, 4))
    rec = CpuBackend(program).run(stream(program, 20, batch=2), record="all")
    assert rec.metadata["learning_kernel"] == "reference"
    assert "delays on synapse 'w_in'" in rec.metadata["learning_kernel_reason"]
    assert rec["out.spikes"].shape == (2, 20, 3) and rec["w_out.x1"].shape == (2, 20, 5)


# --- by hand ---------------------------------------------------------------------------------


def test_hand_computed_weights():
    """Two inputs, one output neuron that never spikes, rule u0 * x1 * y2 * 2**-3, seed 3.

    Lava (LearningDense fixed_pt, t_epoch 1): after step k's spikes, x1 = stochastic decay of the
    previous x1 by exp(-1/2) (rounded up when the x-decay draw r_x[2k] < fraction) plus the
    impulse 16 if the input spiked; y2 = clip(error) with error = 0 - target (decayed by
    exp(-1/65535), which these draws leave unchanged); then per weight
    acc = w * 128 + ((x1 * y2) >> 3) << (-3 + 7), w = acc >> 7, plus 1 if r_w[k] < (acc & 127) / 128.
    """
    rule = LearningRule((Product("u0", (Factor("x1"), Factor("y2")), 1, -3),), 3, x1_impulse=16.0, x1_tau=2)
    program = FixedPointProgram(
        [InputPort("x", (2,)), InputPort("target", (1,), kind="target")],
        [
            Population(
                "out",
                (1,),
                du=4095,
                dv=4095,
                vth=2**17 - 1,
                bias_mant=np.zeros(1, np.int32),
                learning=LearningSignal(target="target", y2=SignalTerm("one", 0)),
            )
        ],
        [Synapse("w", "x", "out", "dense", np.array([[40, -20]], np.int32), learning=rule)],
        ["out"],
    ).validate()
    x = np.array([[[1, 0], [1, 1], [0, 1], [1, 0]]], np.uint8)
    target = np.array([[[-40], [24], [-16], [8]]], np.int32)
    # the raw streams (learning_engine.learning_randoms's documentation): step k uses draw 2k, epoch k draw k
    r_x = np.random.default_rng(3).random(9)[2::2]  # x decay, seed rng_seed
    r_y = np.random.default_rng(5).random(9)[2::2]  # y decay, seed rng_seed + 2
    r_w = np.random.default_rng(2).random(5)[1:]  # weight rounding, seed 2
    np.testing.assert_allclose(r_x, [0.8013, 0.0941, 0.4791, 0.7346], atol=1e-4)
    np.testing.assert_allclose(r_w, [0.2985, 0.8142, 0.0919, 0.6001], atol=1e-4)
    # y2 = 40, -24, 16, -8 survive the decay: y * exp(-1/65535) is y - |y| * 1.5e-5, rounded up
    # (positive y) when r_y < 1 - |y| * 1.5e-5, down (negative y) when r_y >= |y| * 1.5e-5
    assert (r_y > 0.002).all() and (r_y < 0.998).all()
    # x1 (exp(-1/2) = 0.60653):
    #  k=1: [0, 0] -> 0, +16 on input 0                                   -> [16, 0]
    #  k=2: 16 * .60653 = 9.70 -> 9 + (r_x .0941 < .70) = 10, +16 both    -> [26, 16]
    #  k=3: 26 * .60653 = 15.77 -> 16 (.4791 < .77); 9.70 -> 10 (.4791 < .70); +16 on input 1 -> [16, 26]
    #  k=4: 9.70 -> 9 (.7346 >= .70); 15.77 -> 16 (.7346 < .77); +16 on input 0 -> [25, 16]
    # weights (40 and -20 are even: the 8-bit mixed truncation keeps them); epoch k rounds with r_w[k]:
    #  k=1, y2=40:  16*40 = 640 >> 3 = 80 << 4 = 1280: 5120 + 1280 = 6400 = 50 * 128    -> 50
    #               x1 = 0: -20 unchanged                                                -> -20
    #  k=2, y2=-24: 26*-24 = -624 >> 3 = -78 << 4 = -1248: 6400 - 1248 = 5152 = 40*128 + 32,
    #               r_w .8142 >= 32/128: no carry                                        -> 40
    #               16*-24 = -384 >> 3 = -48 << 4 = -768: -2560 - 768 = -3328 = -26 * 128 -> -26
    #  k=3, y2=16:  16*16 = 256 >> 3 = 32 << 4 = 512: 5120 + 512 = 5632 = 44 * 128         -> 44
    #               26*16 = 416 >> 3 = 52 << 4 = 832: -3328 + 832 = -2496 = -20*128 + 64,
    #               r_w .0919 < 64/128: carry                                            -> -19
    #  k=4, y2=-8:  25*-8 = -200 >> 3 = -25 << 4 = -400: 5632 - 400 = 5232 = 40*128 + 112,
    #               r_w .6001 < 112/128: carry                                           -> 41
    #               16*-8 = -128 >> 3 = -16 << 4 = -256: -2432 - 256 = -2688 = -21 * 128  -> -21
    expected = [[[50, -20]], [[40, -26]], [[44, -19]], [[41, -21]]]
    for path in ("c", "reference"):
        rec = run(program, {"x": x, "target": target}, path, checkpoint_every=1)
        assert rec["w.x1"][0].tolist() == [[16, 0], [26, 16], [16, 26], [25, 16]]
        assert rec["w.y2"][0, :, 0].tolist() == [40, -24, 16, -8]
        assert not rec["out.spikes"].any()
        assert rec["w.weights"][0].tolist() == expected
        assert rec.metadata["programs"][0].synapse("w").weights.tolist() == expected[-1]
        assert rec.metadata["checkpoint_steps"] == [1, 2, 3, 4]


# --- independent learners ------------------------------------------------------------------


def _two_layer_program(seed=0, rule=OTTT_RULE):
    dense = dataclasses.replace(rule, products=(Product("u0", (Factor("x1"), Factor("y1")), -3, 1),))
    return plastic_program(
        n_in=8,
        n_hidden=6,
        n_out=3,
        rule=rule,
        hidden_rule=dense,
        seed=seed,
        hid_signal=hidden_signal(y1=SignalTerm("one", 3)),
    )


def test_batch_is_independent_learners():
    program = _two_layer_program()
    data = stream(program, 90, batch=4, seed=7)
    batch = run(program, data, checkpoint_every=10)
    for b in range(4):
        alone = run(program, {k: v[b : b + 1] for k, v in data.items()}, checkpoint_every=10)
        for key, arr in alone.arrays.items():
            np.testing.assert_array_equal(batch[key][b : b + 1], arr, err_msg=key)
        for name in ("w_in", "w_out"):
            learned = batch.metadata["programs"][b].synapse(name).weights
            np.testing.assert_array_equal(learned, alone.metadata["programs"][0].synapse(name).weights)
    assert len({batch.metadata["programs"][b].synapse("w_out").weights.tobytes() for b in range(4)}) > 1


def test_learner_list_runs_each_program_as_alone():
    base = _two_layer_program()
    programs = []
    for i, (seed, mantissa, exponent) in enumerate([(7, -1, 0), (8, -3, 1), (9, 5, -2)]):
        rule = dataclasses.replace(
            base.synapse("w_out").learning,
            rng_seed=seed,
            products=(Product("u0", (Factor("x1"), Factor("y2")), mantissa, exponent),),
        )
        prog = dataclasses.replace(base, synapses=list(base.synapses))
        prog.synapses[1] = dataclasses.replace(base.synapses[1], learning=rule)
        prog.synapses[0] = dataclasses.replace(base.synapses[0], weights=base.synapses[0].weights // (i + 1))
        programs.append(prog.validate())
    data = stream(base, 70, batch=3, seed=2)
    together = CpuBackend(programs).run(data, record="all", checkpoint_every=7)
    assert together.metadata["learning_kernel"] == "c"
    for b, prog in enumerate(programs):
        alone = run(prog, {k: v[b : b + 1] for k, v in data.items()}, checkpoint_every=7)
        for key, arr in alone.arrays.items():
            np.testing.assert_array_equal(together[key][b : b + 1], arr, err_msg=key)
        for syn in prog.synapses:
            learned = together.metadata["programs"][b].synapse(syn.name).weights
            np.testing.assert_array_equal(learned, alone.metadata["programs"][0].synapse(syn.name).weights)
        assert (
            together.metadata["programs"][b].synapse("w_out").learning.rng_seed
            == prog.synapse("w_out").learning.rng_seed
        )


def test_same_seed_same_weights():
    program = _two_layer_program(seed=3)
    data = stream(program, 120, batch=2, seed=5)
    runs = [CpuBackend(program).run(data, record="w_out.weights", checkpoint_every=12) for _ in range(3)]
    for rec in runs[1:]:
        np.testing.assert_array_equal(rec["w_out.weights"], runs[0]["w_out.weights"])
        for key, w in final_weights(rec).items():
            np.testing.assert_array_equal(w, final_weights(runs[0])[key])
    other = dataclasses.replace(program, synapses=list(program.synapses))
    other.synapses[1] = dataclasses.replace(
        program.synapses[1], learning=dataclasses.replace(program.synapses[1].learning, rng_seed=99)
    )
    assert not np.array_equal(
        CpuBackend(other).run(data, record="w_out.weights", checkpoint_every=12)["w_out.weights"],
        runs[0]["w_out.weights"],
    )


# --- errors ----------------------------------------------------------------------------------


def _fails(call, *fragments):
    with pytest.raises(NeurocompileError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_bad_inputs_are_one_line_errors():
    program = _two_layer_program()
    data = stream(program, 10, batch=2)
    backend = CpuBackend(program)
    _fails(lambda: backend.run({"x": data["x"]}), "cpu backend", "input 'target': missing")
    _fails(lambda: backend.run(data["x"]), "cpu backend", "2 inputs")
    graded = dict(data, x=data["x"] * 3)
    _fails(lambda: backend.run(graded), "cpu backend", "input 'x'", "0 or 1")
    fractional = dict(data, target=data["target"] + 0.5)
    _fails(lambda: backend.run(fractional), "cpu backend", "input 'target'", "integers")
    _fails(lambda: backend.run(data, checkpoint_every=0), "checkpoint_every")
    _fails(lambda: CpuBackend([program, program, program]).run(data), "3 programs", "batch of 2")


def test_learner_lists_must_share_their_structure():
    program = _two_layer_program()
    slower = dataclasses.replace(program, synapses=list(program.synapses))
    rule = dataclasses.replace(program.synapses[1].learning, t_epoch=2)
    slower.synapses[1] = dataclasses.replace(program.synapses[1], learning=rule)
    _fails(lambda: CpuBackend([program, slower]), "learner 1", "synapse 'w_out'", "'learning'")
    quieter = dataclasses.replace(program, populations=list(program.populations))
    quieter.populations[0] = dataclasses.replace(program.populations[0], vth=41)
    _fails(lambda: CpuBackend([program, quieter]), "learner 1", "population 'hid'", "'vth'")
    static = plastic_program(n_hidden=4)
    static.synapses[1].learning = None
    static.populations[1].learning = None
    static.inputs.pop()
    _fails(lambda: CpuBackend([static.validate()]), "needs a plastic program")
    _fails(lambda: CpuBackend([]), "empty list")
