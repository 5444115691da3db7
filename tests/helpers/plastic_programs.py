"""Small plastic programs for the learning tests, by hand and as Hypothesis strategies.

``plastic_program(...)`` builds an input -> [hidden] -> output network whose last (and, with
``hidden``, first) synapse learns, the output population learning from a target stream and the
hidden one, if plastic, from the output's error through a feedback synapse (direct feedback
alignment). ``plastic_cases()`` draws such programs with random product series over every factor
kind, saturating impulses and taus, negative and large learning signals, odd weights and
``weight_exp != 0``, plus the input spikes and integer targets of one stream per learner.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from neurocompile.ir.plasticity import Factor, LearningRule, LearningSignal, Product, SignalTerm, Surrogate
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse

OTTT_RULE = LearningRule(
    products=(Product("u0", (Factor("x1"), Factor("y2")), mantissa=-1, exponent=0),),
    rng_seed=7,
    x1_impulse=16.0,
    x1_tau=8,
)
SURROGATE = Surrogate(table=(64, 48, 32, 20, 12, 6, 2, 0), shift=6)


def output_signal(**overrides) -> LearningSignal:
    base = dict(target="target", output="spikes", output_shift=6, surrogate=SURROGATE, y2=SignalTerm("surrogate", 3))
    return LearningSignal(**{**base, **overrides})


def hidden_signal(**overrides) -> LearningSignal:
    base = dict(
        surrogate=SURROGATE, trace_decay=1024, y2=SignalTerm("surrogate", 2), y3=SignalTerm("surrogate_trace", 4)
    )
    return LearningSignal(**{**base, **overrides})


def plastic_program(
    n_in=6,
    n_hidden=0,
    n_out=3,
    rule=OTTT_RULE,
    hidden_rule=None,
    seed=0,
    weight_exp=0,
    out_signal=None,
    hid_signal=None,
    vth=40,
    du=1024,
    dv=512,
    sign_mode="mixed",
) -> FixedPointProgram:
    rng = np.random.default_rng(seed)
    lo, hi = {"mixed": (-120, 120), "excitatory": (0, 200), "inhibitory": (-200, 0)}[sign_mode]
    inputs = [InputPort("x", (n_in,)), InputPort("target", (n_out,), kind="target")]
    pops, syns = [], []
    source, n_src = "x", n_in
    if n_hidden:
        signal = (hid_signal or hidden_signal()) if hidden_rule is not None else None
        pops.append(
            Population(
                "hid", (n_hidden,), du=du, dv=dv, vth=vth, bias_mant=np.zeros(n_hidden, np.int32), learning=signal
            )
        )
        w = rng.integers(lo, hi + 1, size=(n_hidden, n_src)).astype(np.int32)
        syns.append(
            Synapse("w_in", source, "hid", "dense", w, weight_exp=weight_exp, sign_mode=sign_mode, learning=hidden_rule)
        )
        source, n_src = "hid", n_hidden
    pops.append(
        Population(
            "out",
            (n_out,),
            du=du,
            dv=dv,
            vth=vth,
            bias_mant=np.zeros(n_out, np.int32),
            learning=out_signal or output_signal(),
        )
    )
    w = rng.integers(lo, hi + 1, size=(n_out, n_src)).astype(np.int32)
    syns.append(Synapse("w_out", source, "out", "dense", w, weight_exp=weight_exp, sign_mode=sign_mode, learning=rule))
    if n_hidden and hidden_rule is not None:
        feedback = rng.integers(-100, 101, size=(n_hidden, n_out)).astype(np.int32)
        syns.append(Synapse("feedback", "out", "hid", "dense", feedback, signal="error"))
    return FixedPointProgram(inputs, pops, syns, ["out"]).validate()


def stream(
    program: FixedPointProgram, steps: int, batch: int = 1, seed: int = 0, rate: float = 0.4, target_scale: int = 64
):
    """Input spikes and one-hot-ish integer targets for ``batch`` learners over ``steps`` steps."""
    rng = np.random.default_rng(seed)
    data = {}
    for port in program.inputs:
        n = int(np.prod(port.shape))
        if port.kind == "spikes":
            data[port.name] = (rng.random((batch, steps, n)) < rate).astype(np.uint8)
        else:
            classes = rng.integers(0, n, size=(batch, steps))
            data[port.name] = (np.eye(n, dtype=np.int32)[classes] * target_scale).astype(np.int32)
    return data


# --- Hypothesis ------------------------------------------------------------------------------

VARIABLES = ("x0", "x1", "x2", "y0", "y1", "y2", "y3", "w")


@st.composite
def products(draw, allow_y0: bool):
    dependency = draw(st.sampled_from(["x0", "u0", "u1"] + (["y0"] if allow_y0 else [])))
    names = st.sampled_from([v for v in VARIABLES if allow_y0 or v != "y0"])
    factors = tuple(
        Factor(draw(names), draw(st.one_of(st.just(0), st.integers(-40, 40), st.sampled_from([-256, 255]))))
        for _ in range(draw(st.integers(1, 3)))
    )
    return Product(dependency, factors, draw(st.integers(-8, 7)), draw(st.integers(-7, 8)))


@st.composite
def rules(draw, allow_y0: bool):
    series = draw(st.lists(products(allow_y0), min_size=1, max_size=3))
    ks = {p.dependency for p in series if p.dependency.startswith("u")}
    if len(ks) > 1:  # Lava: one decimate exponent per rule
        series = [
            Product("u0", p.factors, p.mantissa, p.exponent) if p.dependency.startswith("u") else p for p in series
        ]
    impulse = st.one_of(st.sampled_from([0.0, 1.0, 127.0, 64.5]), st.floats(0, 127).map(lambda v: round(v * 256) / 256))
    tau = st.one_of(st.sampled_from([0, 1, 2, 65535]), st.integers(1, 40))
    return LearningRule(
        products=tuple(series),
        rng_seed=draw(st.integers(0, 10_000)),
        x1_impulse=draw(impulse),
        x1_tau=draw(tau),
        x2_impulse=draw(impulse),
        x2_tau=draw(tau),
        t_epoch=draw(st.sampled_from([1, 1, 2, 3])),
    )


@st.composite
def signals(draw, target: bool, bap: bool):
    table = tuple(draw(st.lists(st.integers(0, 300), min_size=1, max_size=6)))
    surrogate = Surrogate(table, draw(st.integers(0, 8)))
    terms = st.one_of(
        st.none(), st.builds(SignalTerm, st.sampled_from(["one", "surrogate", "surrogate_trace"]), st.integers(0, 12))
    )
    return LearningSignal(
        target="target" if target else None,
        output="spikes",
        output_shift=draw(st.integers(0, 9)),
        surrogate=surrogate,
        trace_decay=draw(st.integers(0, 4095)),
        y1=draw(terms),
        y2=draw(terms),
        y3=draw(terms),
        bap=bap,
    )


@st.composite
def plastic_cases(draw, max_steps: int = 120):
    """``(program, inputs)``: one or two plastic layers, one stream of 50..max_steps steps."""
    two_layers = draw(st.booleans())
    bap = draw(st.booleans())
    program = plastic_program(
        n_in=draw(st.integers(2, 7)),
        n_hidden=draw(st.integers(2, 6)) if two_layers else 0,
        n_out=draw(st.integers(1, 4)),
        rule=draw(rules(bap)),
        hidden_rule=draw(rules(False)) if two_layers else None,
        seed=draw(st.integers(0, 1000)),
        weight_exp=draw(st.sampled_from([0, 0, -1, 2])),
        out_signal=draw(signals(True, bap)),
        hid_signal=draw(signals(False, False)) if two_layers else None,
        vth=draw(st.sampled_from([1, 10, 40, 200])),
        du=draw(st.integers(0, 4095)),
        dv=draw(st.integers(0, 4095)),
        sign_mode=draw(st.sampled_from(["mixed", "mixed", "excitatory", "inhibitory"])),
    )
    if draw(st.booleans()):  # biased neurons that hold their bias back for a few steps
        bias_seed, onset = draw(st.integers(0, 1000)), draw(st.sampled_from([0, 2, 7]))
        for pop in program.populations:
            pop.bias_mant = np.random.default_rng(bias_seed).integers(-300, 301, pop.size).astype(np.int32)
            pop.bias_onset = onset
    steps = draw(st.integers(50, max_steps))
    data = stream(program, steps, seed=draw(st.integers(0, 1000)), rate=draw(st.sampled_from([0.1, 0.4, 0.9])))
    return program, data
