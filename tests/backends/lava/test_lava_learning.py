"""On-chip learning on Lava: the CPU mirror against Lava fixed_pt, floating_pt against the float
formula, determinism, and runs that fail or stall without leaving processes behind.

The oracle is Lava's own LearningDense/LearningSparse process models (``fixed_pt``: the
bit-approximate learning engine); the learning neuron is ours (``backends/lava/processes.py``, ``LearningNeuron``)
around Lava's LIF integration.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from neurocompile.backends import create_backend
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import Factor, LearningRule, Product
from neurocompile.semantics import learning_engine as engine
from tests.backends.lava.test_lava_backend import assert_no_lava_processes
from tests.helpers.plastic_programs import (
    OTTT_RULE,
    hidden_signal,
    output_signal,
    plastic_cases,
    plastic_program,
    stream,
)

LAVA_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


def _assert_same(lava, cpu, steps: int, every: int) -> None:
    keys = sorted(set(lava.arrays) & set(cpu.arrays))
    assert any(k.endswith(".weights") for k in keys) and any(k.endswith(".y2") for k in keys)
    for key in keys:
        got, want = np.asarray(lava[key], np.int64), np.asarray(cpu[key], np.int64)
        assert got.shape == want.shape, key
        if not np.array_equal(got, want):
            idx = tuple(np.argwhere(got != want)[0])
            raise AssertionError(f"{key}: first difference at {idx}: lava {got[idx]} cpu {want[idx]}")
    assert lava.metadata["checkpoint_steps"] == cpu.metadata["checkpoint_steps"] == list(range(every, steps + 1, every))
    for learned_lava, learned_cpu in zip(lava.metadata["programs"], cpu.metadata["programs"], strict=True):
        for a, b in zip(learned_lava.synapses, learned_cpu.synapses, strict=True):
            np.testing.assert_array_equal(a.weights, b.weights, err_msg=a.name)


@LAVA_SETTINGS
@given(case=plastic_cases(max_steps=500))
def test_cpu_mirror_is_bit_exact_with_lava_fixed_pt(case):
    program, data = case
    steps = next(iter(data.values())).shape[1]
    every = max(1, steps // 4)
    lava = create_backend("lava", program).run(data, record="all", checkpoint_every=every)
    cpu = create_backend("cpu", program).run(data, record="all", checkpoint_every=every)
    _assert_same(lava, cpu, steps, every)


def test_sparse_plastic_synapse_is_bit_exact_with_lava():
    program = plastic_program(n_hidden=5, hidden_rule=OTTT_RULE, seed=3)
    for syn in program.synapses[:2]:
        syn.kind = "sparse"
        syn.weights[::2, 1::2] = 0
    data = stream(program, 80, seed=4)
    lava = create_backend("lava", program).run(data, record="all", checkpoint_every=20)
    cpu = create_backend("cpu", program).run(data, record="all", checkpoint_every=20)
    _assert_same(lava, cpu, 80, 20)
    for learned in lava.metadata["programs"][0].synapses[:2]:
        np.testing.assert_array_equal(learned.weights[::2, 1::2], 0)  # absent synapses stay absent


def test_the_same_seed_gives_the_same_weights_on_lava():
    program = plastic_program(n_hidden=4, hidden_rule=OTTT_RULE)
    data = stream(program, 60, seed=2)
    runs = [create_backend("lava", program).run(data).metadata["programs"][0] for _ in range(2)]
    for a, b in zip(runs[0].synapses, runs[1].synapses, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(runs[0].synapses[1].weights, program.synapses[1].weights)  # it learned


def test_floating_pt_weights_follow_the_float_formula():
    """Lava floating_pt on a float program: the weights equal the documented float formula
    (``learning_engine.float_receive_traces`` / ``float_learn``) applied to the pre spikes and to the y
    values the learning neuron sent, within 1e-6 relative."""
    rule = LearningRule(
        products=(
            Product("u0", (Factor("x1"), Factor("y2")), mantissa=-3, exponent=-5),
            Product("x0", (Factor("y3", 2),), mantissa=5, exponent=-7),
        ),
        rng_seed=1,
        x1_impulse=1.5,
        x1_tau=6,
        x2_impulse=1.0,
        x2_tau=3,
    )
    program = plastic_program(rule=rule, out_signal=output_signal(y3=hidden_signal().y3))
    program.number_format = "float"
    for pop in program.populations:
        pop.du, pop.dv, pop.vth = 0.25, 0.125, 40.0 * 64
    for syn in program.synapses:
        syn.weights = syn.weights.astype(float) * 64
    program.validate()
    steps = 60
    data = stream(program, steps, seed=5)
    rec = create_backend("lava", program, tag="floating_pt").run(data, record=["w_out"])
    syn = program.synapses[0]
    state = engine.PlasticState(syn.weights, *syn.weights.shape, number_format="float")
    y = np.stack([rec["w_out.y1"][0], rec["w_out.y2"][0], rec["w_out.y3"][0]], axis=1)  # [T, 3, n]
    for t in range(steps):
        engine.float_receive_traces(state, rule, data["x"][0, t], np.zeros(3), y[t], t + 1)
        engine.float_learn(state, rule, t + 1)
        np.testing.assert_allclose(rec["w_out.x1"][0, t], state.x[0], rtol=1e-12)
    learned = rec.metadata["programs"][0].synapses[0].weights
    assert np.abs(learned - syn.weights).max() > 1  # it learned
    np.testing.assert_allclose(learned, state.weights, rtol=1e-6)


# --- no hangs, no orphans ------------------------------------------------------------------


def _failing_signal(after: int, how: str):
    """A learning_signal that raises (``how="raise"``) or stalls (``"stall"``) after ``after`` calls,
    in whichever Lava process calls it."""
    real = engine.learning_signal
    calls = []

    def signal(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            if how == "raise":
                raise RuntimeError("injected failure inside the learning neuron")
            time.sleep(3600)
        return real(*args, **kwargs)

    return signal


def test_twenty_learning_runs_with_failures_and_stalls_leave_no_processes(monkeypatch):
    program = plastic_program(n_hidden=3, hidden_rule=OTTT_RULE)
    data = stream(program, 30, seed=1)
    outcomes = []
    for i in range(20):
        kind = i % 4
        monkeypatch.setattr(engine, "learning_signal", _failing_signal(10, "raise" if kind == 1 else "stall"))
        if kind in (0, 3):
            monkeypatch.undo()
        backend = create_backend("lava", program, stall_timeout_s=3)
        try:
            if kind == 3:
                backend.run({"x": data["x"], "target": data["target"] + 0.5})  # not integers: refused
            else:
                rec = backend.run(data)
            outcomes.append("ran" if kind == 0 and rec.output_spikes().shape == (1, 30, 3) else "no error")
        except NeurocompileError as exc:
            message = str(exc)
            assert "\n" not in message
            outcomes.append(
                {"failed during": "failed", "stalled": "stalled", "integers": "refused"}.get(
                    next((k for k in ("failed during", "stalled", "integers") if k in message), ""), message
                )
            )
        monkeypatch.undo()
    assert outcomes == ["ran", "failed", "stalled", "refused"] * 5
    assert_no_lava_processes()


def test_lava_refuses_learning_it_cannot_lower():
    program = plastic_program(rule=LearningRule((Product("u0", (Factor("x1"),), 1, 8),), rng_seed=1, x1_tau=2))
    with pytest.raises(NeurocompileError, match=r"float scale 1 \* 2\^14 leaves Lava's exponent range"):
        create_backend("lava", program, tag="floating_pt").run(stream(program, 5))
    program = plastic_program()
    with pytest.raises(NeurocompileError, match="checkpoint_every must be >= 1"):
        create_backend("lava", program).run(stream(program, 5), checkpoint_every=0)
