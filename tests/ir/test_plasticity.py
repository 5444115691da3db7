"""Learning rules as data, and the learning arithmetic of ``fixedpoint`` against Lava's own code.

Oracles: Lava's rule parser (``Loihi3FLearningRule``), its fixed-point applier
(``LearningRuleApplierBitApprox``), the static trace and rounding methods of
``LearningConnectionModelBitApproximate``, its random generators, and hand-computed values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocompile.backends.lava.compat import import_lava
from neurocompile.errors import NeurocompileError
from neurocompile.ir.plasticity import (
    Factor,
    LearningRule,
    Product,
    SignalTerm,
    Surrogate,
    lava_rule_string,
    rule_from_json,
)
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics import learning_engine as engine
from tests.helpers.plastic_programs import OTTT_RULE, output_signal, plastic_program, rules
from tests.helpers.program_files import edit_header

import_lava()

from lava.magma.core.learning.learning_rule import Loihi3FLearningRule  # noqa: E402
from lava.magma.core.learning.learning_rule_applier import LearningRuleApplierBitApprox  # noqa: E402
from lava.magma.core.learning.random import ConnVarRandom, TraceRandom  # noqa: E402
from lava.magma.core.model.py.connection import LearningConnectionModelBitApproximate as LavaConn  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _lava_products(rule: LearningRule):
    lava = Loihi3FLearningRule(dw=lava_rule_string(rule), rng_seed=rule.rng_seed)
    return lava.active_product_series["dw"].products


# --- rule strings: Lava's parser reads back what the rule says -------------------------------


@FAST
@given(rule=rules(allow_y0=True))
def test_rule_string_parses_back_to_the_same_products(rule):
    for ours, theirs in zip(rule.products, _lava_products(rule), strict=True):
        dependency = "u" if ours.dependency.startswith("u") else ours.dependency
        assert theirs.dependency == dependency
        mantissa, exponent = engine.lava_scale(ours.mantissa, ours.exponent)
        assert (theirs.s_mantissa, theirs.s_exp) == (mantissa, exponent + 7)
        assert [(f.state_var, f.const or 0) for f in theirs.factors] == [(f.variable, f.constant) for f in ours.factors]


def test_lava_halves_a_mantissa_of_minus_eight():
    rule = LearningRule((Product("u0", (Factor("x1"),), mantissa=-8, exponent=-3),), rng_seed=1)
    (product,) = _lava_products(rule)
    assert (product.s_mantissa, product.s_exp - 7) == engine.lava_scale(-8, -3) == (-4, -2)
    assert engine.lava_scale(-8, 8) == (-8, 8)


# --- arithmetic against Lava's functions ---------------------------------------------------


@FAST
@given(
    rule=rules(allow_y0=True),
    seed=st.integers(0, 2**31 - 1),
    n_post=st.integers(1, 4),
    n_pre=st.integers(1, 5),
)
def test_products_equal_lavas_fixed_point_applier(rule, seed, n_post, n_pre):
    rng = np.random.default_rng(seed)
    traces = {
        f"{v}_{d}": rng.integers(-130, 131, size=(n_post, n_pre))
        for v in ("x1", "x2", "y1", "y2", "y3")
        for d in ("x0", "y0", "u")
    }
    args = dict(
        shape=(n_post, n_pre),
        x0=rng.random((1, n_pre)) < 0.5,
        y0=rng.random((n_post, 1)) < 0.5,
        u=int(rng.integers(0, 2)),
        weights=rng.integers(-256, 256, size=(n_post, n_pre)).astype(np.int32),
        tag_1=np.zeros((n_post, n_pre), np.int32),
        tag_2=np.zeros((n_post, n_pre), np.int32),
        **traces,
    )
    init = (args["weights"] << 7).astype(np.int32)
    lava_rule = Loihi3FLearningRule(dw=lava_rule_string(rule), rng_seed=1)
    expected = LearningRuleApplierBitApprox(lava_rule.active_product_series["dw"]).apply(init.copy(), **args)
    ours = init.astype(np.int64)
    for product in rule.products:
        dep = product.dependency if product.dependency in ("x0", "y0") else "u"
        values = []
        for f in product.factors:
            if f.variable in ("x0", "y0"):
                values.append(args[f.variable])
            elif f.variable == "w":
                values.append(args["weights"])
            else:
                values.append(args[f"{f.variable}_{dep}"])
        ours = np.clip(ours + engine.product_value(product, args[dep], values), *engine.ACCUMULATOR_LIMITS)
    np.testing.assert_array_equal(ours, expected)


@FAST
@given(
    trace=st.lists(st.integers(-128, 127), min_size=1, max_size=8),
    tau=st.integers(1, 65535),
    r=st.floats(0, 1, exclude_max=True),
    impulse=st.floats(0, 127).map(lambda v: round(v * 256) / 256),
    r_int=st.integers(0, 127),
)
def test_trace_decay_and_impulse_equal_lava(trace, tau, r, impulse, r_int):
    trace = np.array(trace)
    factor = engine.trace_decay_factors([tau])[0]
    np.testing.assert_array_equal(
        engine.decay_trace(trace, factor, r), LavaConn._decay_trace(trace, 1, np.array([[tau]]), r)[0]
    )
    whole, frac = LavaConn._decompose_impulses(np.array([impulse]))
    assert engine.impulse_parts(impulse) == (int(whole[0]), int(frac[0]))
    np.testing.assert_array_equal(
        engine.add_impulse(trace, r_int, *engine.impulse_parts(impulse)),
        LavaConn._add_impulse(trace, r_int, whole, frac),
    )


@FAST
@given(
    acc=st.lists(st.integers(-(2**15) - 1, 2**15 - 1), min_size=1, max_size=10),
    r=st.floats(0, 1, exclude_max=True),
    sign_mode=st.sampled_from(["mixed", "excitatory", "inhibitory"]),
)
def test_weight_rounding_equals_lava(acc, r, sign_mode):
    from lava.utils.weightutils import SignMode, clip_weights

    acc = np.array(acc, dtype=np.int32)
    mode = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}[sign_mode]
    model = LavaConn.__new__(LavaConn)
    model.sign_mode = mode
    lava = model._saturate_synaptic_variable_accumulator("weights", acc.copy())
    lava = LavaConn._stochastic_round_synaptic_variable("weights", lava, r) >> 7
    lava = clip_weights(lava, sign_mode=mode, num_bits=8)
    ours = engine.apply_weight_update(np.zeros_like(acc), lambda _: acc.astype(np.int64), r, sign_mode)
    np.testing.assert_array_equal(ours, lava)


def test_random_streams_equal_lavas_generators():
    steps, seed = 40, 123
    draws = engine.learning_randoms(seed, steps)
    x, y, w = TraceRandom(seed, seed + 1), TraceRandom(seed + 2, seed + 3), ConnVarRandom()
    for i in range(2 * steps + 1):
        if i:
            x.advance()
            y.advance()
        assert (draws["x_decay"][i], draws["x_impulse"][i]) == (x.random_trace_decay, x.random_impulse_addition)
        assert (draws["y_decay"][i], draws["y_impulse"][i]) == (y.random_trace_decay, y.random_impulse_addition)
    for e in range(steps + 1):
        if e:
            w.advance()
        assert draws["weight"][e] == w.random_stochastic_round


def test_learning_signal_by_hand():
    """error = (s << 6) - target; psi from the table at |v - vth << 6| >> 6; y2 = round(error * psi / 8)."""
    signal = output_signal()  # target, spikes << 6, surrogate (64, 48, 32, ...) >> 6, y2 = surrogate >> 3
    v = np.array([2560 + 100, 2560 - 70, 0, 2560 + 5000])  # vth 40 -> 40 << 6 = 2560
    spikes = v > 2560
    target = np.array([64, 0, 64, 0])
    y, error, trace = engine.learning_signal(signal, v, spikes, target, np.zeros(4, np.int64), vth=40)
    np.testing.assert_array_equal(error, [0, -0, -64, 64])
    psi = np.array([48, 48, 0, 0])  # 100 >> 6 = 1, 70 >> 6 = 1, 2560 >> 6 = 40 -> last (0), 5000 >> 6 -> last
    np.testing.assert_array_equal(trace, psi)
    np.testing.assert_array_equal(y[1], np.clip((error * psi) >> 3, -128, 127))  # all products are 0 here
    small = engine.learning_signal(signal, v, spikes, np.array([61, 1, 0, 0]), trace, vth=40)[0][1]
    # neuron 0 spikes: (64 - 61) * 48 / 8 = 18; neuron 1 does not: (0 - 1) * 48 / 8 = -6. Rounding, ties away from 0:
    assert small[:2].tolist() == [18, -6]
    assert engine.round_shift(np.array([-3, -4, -5, 3, 4, 5, -1, 1]), 3).tolist() == [0, -1, -1, 0, 1, 1, 0, 0]
    np.testing.assert_array_equal(y[0], 0)
    big = engine.learning_signal(signal, v, spikes, np.array([-(10**6)] * 4), trace, vth=40)[0]
    np.testing.assert_array_equal(big[1], [127, 127, 0, 0])  # clipped to 8 bits


# --- validation and files -------------------------------------------------------------------


def _rule_record(**changes) -> dict:
    record = json.loads(
        json.dumps(
            {
                "products": [{"dependency": "u0", "factors": [{"variable": "x1"}, {"variable": "y2"}]}],
                "rng_seed": 3,
                "x1_impulse": 16,
                "x1_tau": 8,
            }
        )
    )
    for path, value in changes.items():
        target = record
        *parts, last = path.split("/")
        for part in parts:
            target = target[int(part) if part.isdigit() else part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return record


@pytest.mark.parametrize(
    "change, field",
    [
        ({"products/0/factors/0/variable": "z1"}, "learning.products[0].factors[0]"),
        ({"products/0/mantissa": 9}, "learning.products[0].mantissa"),
        ({"products/0/exponent": 9}, "learning.products[0].exponent"),
        ({"products/0/dependency": "x1"}, "learning.products[0].dependency"),
        ({"x1_impulse": 128}, "learning.x1_impulse"),
        ({"x1_tau": -1}, "learning.x1_tau"),
        ({"t_epoch": 0}, "learning.t_epoch"),
        ({"rng_seed": None}, "learning.rng_seed"),
        ({"rng_seed": "7"}, "learning.rng_seed"),
        ({"products/0/factors/0/constant": 300}, "learning.products[0].factors[0].constant"),
        ({"bogus": 1}, "learning.bogus"),
    ],
)
def test_bad_rule_specs_name_the_synapse_and_field(change, field):
    with pytest.raises(NeurocompileError) as err:
        rule_from_json("w_out", _rule_record(**change))
    message = str(err.value)
    assert "\n" not in message and "'w_out'" in message and f"'{field}'" in message


def test_bad_rule_in_a_saved_program_is_a_one_line_error(tmp_path):
    path = tmp_path / "p.ncp"
    plastic_program().save(path)
    edit_header(path, lambda header: header["synapses"][0]["learning"].pop("rng_seed"))
    with pytest.raises(NeurocompileError, match=r"node 'w_out', parameter 'learning.rng_seed': missing"):
        FixedPointProgram.load(path)


def test_plastic_program_round_trips_through_ncp(tmp_path):
    program = plastic_program(n_hidden=3, hidden_rule=OTTT_RULE)
    program.save(tmp_path / "p.ncp")
    loaded = FixedPointProgram.load(tmp_path / "p.ncp")
    assert [s.learning for s in loaded.synapses] == [s.learning for s in program.synapses]
    assert [p.learning for p in loaded.populations] == [p.learning for p in program.populations]
    assert [(p.name, p.kind) for p in loaded.inputs] == [("x", "spikes"), ("target", "target")]
    assert [s.signal for s in loaded.synapses] == ["spikes", "spikes", "error"]


def test_program_level_learning_checks():
    program = plastic_program()
    program.populations[0].learning = None
    with pytest.raises(NeurocompileError, match="'target', parameter 'kind': no population learns from this target"):
        program.validate()
    program.inputs = program.inputs[:1]
    with pytest.raises(NeurocompileError, match="'w_out', parameter 'learning': target 'out' sends no learning signal"):
        program.validate()
    y0_rule = LearningRule((Product("y0", (Factor("x1"),)),), rng_seed=1, x1_impulse=8, x1_tau=4)
    with pytest.raises(NeurocompileError, match="y0 needs target 'out' to send a bAP"):
        plastic_program(rule=y0_rule)
    with pytest.raises(NeurocompileError, match="'out', parameter 'learning.y2.factor': 'surrogate' needs a surrogate"):
        plastic_program(out_signal=output_signal(surrogate=None))
    with pytest.raises(NeurocompileError, match="'out', parameter 'learning.surrogate.table'"):
        plastic_program(out_signal=output_signal(surrogate=Surrogate((1, -3))))
    with pytest.raises(NeurocompileError, match="'out', parameter 'learning.y3.factor'"):
        plastic_program(out_signal=output_signal(y3=SignalTerm("bogus")))
    program = plastic_program()
    program.inputs[1].shape = (5,)
    with pytest.raises(NeurocompileError, match="port 'target' has shape"):
        program.validate()


def test_inspect_shows_rules_signals_and_feedback(tmp_path, capsys):
    from tests.cli.test_cli_float import assert_one_line_error, run_cli

    path = tmp_path / "p.ncp"
    plastic_program(n_hidden=3, hidden_rule=OTTT_RULE).save(path)
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0
    assert "w_out: dw = (-1) * 2^0 * u0 * x1 * y2" in out
    assert "x1: impulse 16, tau 8 (decay 0.8825)" in out
    assert "out: error = (spikes << 6) - target" in out and "hid: error = feedback synapses" in out
    assert "feedback: feedback out error -> hid third factor" in out
    code, out, _ = run_cli(capsys, "inspect", path, "--json")
    info = json.loads(out)
    assert info["synapses"][1]["learning"]["lava_rule"] == lava_rule_string(OTTT_RULE)
    edit_header(path, lambda header: header["synapses"][1]["learning"].update(x1_impulse=200))
    code, _, err = run_cli(capsys, "inspect", path)
    assert_one_line_error(code, err, "w_out", "learning.x1_impulse")
