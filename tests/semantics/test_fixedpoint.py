"""neurocompile.semantics.fixedpoint against Lava's own fixed_pt process models (the oracle).

Each test builds a small Lava graph, RingBuffer -> synapse (Dense, Sparse, DelayDense,
DelaySparse, Conv) -> LIF/LIFReset, runs it with ``Loihi2SimCfg(select_tag="fixed_pt")`` and
compares u, v and spikes at every step with a loop over the fixedpoint functions.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocompile.backends.lava.compat import import_lava
from neurocompile.semantics import fixedpoint as fxp

import_lava()

from neurocompile.backends.cpu import FLOAT32_EXACT, matmul_dtype, row_abs_bound  # noqa: E402

LAVA_SETTINGS = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# --- Lava runner ------------------------------------------------------------------------


def run_lava(conns, pop_kwargs, steps: int, reset_interval: int = 0):
    """Run RingBuffer(s) -> synapse process(es) -> one LIF/LIFReset; return (s, u, v) as [T, *shape].

    ``conns``: list of (spikes [*src_shape, T], factory(lava) -> connection process).
    """
    from neurocompile.backends.lava.compat import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF, LIFReset
    from lava.proc.monitor.process import Monitor

    if reset_interval > 0:
        lif = LIFReset(reset_interval=reset_interval, reset_offset=0, **pop_kwargs)
    else:
        lif = LIF(**pop_kwargs)
    for data, factory in conns:
        rb = RingBuffer(data=data.astype(np.int32))
        conn = factory()
        rb.s_out.connect(conn.s_in)
        conn.a_out.connect(lif.a_in)
    mons = {}
    for var in ("u", "v", "s_out"):
        mon = Monitor()
        mon.probe(getattr(lif, var), steps)
        mons[var] = mon
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = {var: np.asarray(mon.get_data()[lif.name][var]).astype(np.int64) for var, mon in mons.items()}
    finally:
        lif.stop()
    return out["s_out"], out["u"], out["v"]


def reference(inputs_per_step, pop, steps):
    """The fixedpoint model: inputs_per_step(t) -> int a_in arriving at step t."""
    shape = pop["shape"]
    u = np.zeros(shape, dtype=np.int64)
    v = np.zeros(shape, dtype=np.int64)
    bias = fxp.effective_bias(pop["bias_mant"], pop["bias_exp"])
    out = {"s": [], "u": [], "v": []}
    for t in range(steps):
        if fxp.reset_due(t, pop.get("reset_interval", 0)):
            u, v = 0 * u, 0 * v
        s, u, v = fxp.lif_fixed_step(inputs_per_step(t), u, v, pop["du"], pop["dv"], pop["vth"], bias)
        out["s"].append(s.astype(np.int64))
        out["u"].append(u)
        out["v"].append(v)
    return np.stack(out["s"]), np.stack(out["u"]), np.stack(out["v"])


def assert_same(lava, ref):
    for name, a, b in zip(("spikes", "u", "v"), lava, ref):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} differs from Lava")


# --- strategies -------------------------------------------------------------------------


@st.composite
def neuron_params(draw, shape):
    n = int(np.prod(shape))
    decay = st.one_of(st.sampled_from([0, 1, 4095]), st.integers(0, 4095))
    return {
        "shape": shape,
        "du": draw(decay),
        "dv": draw(decay),
        "vth": draw(st.one_of(st.sampled_from([0, 1, 2**17 - 1]), st.integers(0, 2000))),
        "bias_mant": np.array(
            draw(
                st.lists(st.one_of(st.sampled_from([-4096, 4095, 0]), st.integers(-300, 300)), min_size=n, max_size=n)
            ),
            dtype=np.int64,
        ).reshape(shape),
        "bias_exp": draw(st.integers(0, 7)),
    }


def lava_pop_kwargs(pop):
    return dict(
        shape=pop["shape"],
        du=pop["du"],
        dv=pop["dv"],
        vth=pop["vth"],
        bias_mant=pop["bias_mant"],
        bias_exp=pop["bias_exp"],
    )


@st.composite
def weight_matrix(draw, n_tgt, n_src, low=-300, high=300):
    vals = st.one_of(st.sampled_from([-256, -255, -3, -1, 0, 1, 3, 127, 255]), st.integers(low, high))
    return np.array(draw(st.lists(vals, min_size=n_tgt * n_src, max_size=n_tgt * n_src)), dtype=np.int64).reshape(
        n_tgt, n_src
    )


@st.composite
def spike_train(draw, n, steps):
    p = draw(st.sampled_from([0.2, 0.5, 0.9, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    return (np.random.default_rng(seed).random((n, steps)) < p).astype(np.int64)


def sign_mode_enum(name):
    from neurocompile.backends.lava.compat import import_lava

    import_lava()
    from lava.utils.weightutils import SignMode

    return {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}[name]


# --- pure functions vs Lava's helpers ---------------------------------------------------


@given(
    w=weight_matrix(3, 4, -256, 255),
    bits=st.integers(1, 8),
    mode=st.sampled_from(["mixed", "excitatory", "inhibitory"]),
)
@settings(max_examples=40, deadline=None)
def test_effective_weights_match_weightutils(w, bits, mode):
    from lava.utils.weightutils import clip_weights, truncate_weights

    sm = sign_mode_enum(mode)
    expected = truncate_weights(clip_weights(w, sm, num_bits=8), sm, bits)
    np.testing.assert_array_equal(fxp.effective_weights(w, 0, bits, mode), expected)
    np.testing.assert_array_equal(fxp.effective_weights(torch.as_tensor(w), 0, bits, mode).numpy(), expected)


def test_effective_weights_odd_mixed_floor():
    # Mixed sign, 8 bits: Lava drops one bit, so odd weights floor (3 -> 2, -3 -> -4).
    np.testing.assert_array_equal(
        fxp.effective_weights(np.array([3, -3, 1, -1, 255]), 0, 8, "mixed"), [2, -4, 0, -2, 254]
    )
    np.testing.assert_array_equal(fxp.effective_weights(np.array([3, 255, -5]), 0, 8, "excitatory"), [3, 255, 0])
    np.testing.assert_array_equal(fxp.effective_weights(np.array([-3, -255, 5]), 0, 7, "inhibitory"), [-2, -254, 0])


def test_decay_wrap_clip_hand_values():
    # du = 0 still decays u by 1/4096 (ds_offset = 1); sign-magnitude rounding toward zero.
    np.testing.assert_array_equal(fxp.decay(np.array([4096, 4095, -4096, -1]), 0, 1), [4095, 4094, -4095, 0])
    np.testing.assert_array_equal(fxp.decay(np.array([100, -100]), 0, 0), [100, -100])
    np.testing.assert_array_equal(fxp.decay(np.array([100, -100]), 2048, 0), [50, -50])
    np.testing.assert_array_equal(fxp.decay(np.array([3, -3]), 2048, 0), [1, -1])
    m = 2**23
    np.testing.assert_array_equal(
        fxp.wrap_u(np.array([m, m + 1, -m, -m + 1, 3 * m + 5])), [m, -m + 1, m, -m + 1, m + 5]
    )
    np.testing.assert_array_equal(fxp.clip_v(np.array([m, -m, 5])), [m - 1, -m + 1, 5])
    np.testing.assert_array_equal(fxp.wrap_bits(np.array([2**23, -(2**23) - 1, 2**31]), 24), [-(2**23), 2**23 - 1, 0])
    np.testing.assert_array_equal(fxp.scale_activation(np.array([-5, 5]), -1), [-3, 2])  # arithmetic shift floors


def test_lif_step_hand_values_on_numpy_and_torch():
    # du = 4095: u forgets itself (factor 4096 - 4095 - 1 = 0), so u = wrap_u(a_in << 6).
    for lib in (np.asarray, torch.as_tensor):
        a_in = lib(np.array([2**17 + 1, -(2**17), 2**25 + 3, 1]))  # 2**25 << 6 = 2**31 wraps to -2**31 on the channel
        zero = lib(np.zeros(4, dtype=np.int64))
        s, u, v = fxp.lif_fixed_step(a_in, zero, zero, 4095, 4095, 0, lib(np.array([0, 0, 0, 5])))
        assert np.asarray(u).tolist() == [-(2**23) + 64, 2**23, -(2**31) + 3 * 64 + 2**24, 64]
        assert np.asarray(v).tolist() == [-(2**23) + 64, 0, -(2**23) + 1, 0]  # clipped; spikes reset
        assert np.asarray(s).tolist() == [False, True, False, True]


def test_lif_step_torch_equals_numpy_at_the_edges():
    edges = np.array([0, 1, -1, 2**23, 2**23 + 1, -(2**23), -(2**23) + 1, 3 * 2**23 + 5, 2**31 - 1, -(2**31)])
    a_in = np.concatenate([edges >> 6, edges, [2**40, -(2**40)]])
    u, v = np.meshgrid(edges, edges)
    rng = np.random.default_rng(0)
    a = rng.choice(a_in, size=u.shape)
    bias = rng.choice([0, 5, -(2**15) << 7], size=u.shape)
    for du, dv, vth, spiking in (
        (0, 0, 0, True),
        (1, 4095, 100, True),
        (2048, 1, 2**17 - 1, False),
        (4095, 77, 3, True),
    ):
        want = fxp.lif_fixed_step(a, u, v, du, dv, vth, bias, spiking=spiking)
        got = fxp.lif_fixed_step(*map(torch.as_tensor, (a, u, v)), du, dv, vth, torch.as_tensor(bias), spiking=spiking)
        for name, w, g in zip(("spikes", "u", "v"), want, got):
            np.testing.assert_array_equal(g.numpy(), w, err_msg=f"{name} du={du} dv={dv}")


# --- differential tests against Lava processes -----------------------------------------


@given(data=st.data())
@LAVA_SETTINGS
def test_dense_lif_matches_lava(data):
    from lava.proc.dense.process import Dense

    n_src, n_tgt, steps = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4)), data.draw(st.integers(2, 10))
    w = data.draw(weight_matrix(n_tgt, n_src))
    mode = data.draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    bits = data.draw(st.integers(1, 8))
    exp = data.draw(st.one_of(st.sampled_from([-8, 0, 7]), st.integers(-8, 7)))
    spikes = data.draw(spike_train(n_src, steps))
    pop = data.draw(neuron_params((n_tgt,)))
    reset = data.draw(st.sampled_from([0, 0, 1, 3]))
    pop["reset_interval"] = reset
    eff = fxp.effective_weights(w, exp, bits, mode)

    def a_in(t):
        return 0 if t == 0 else fxp.dense_activation(spikes[:, t - 1], eff, exp)

    def factory():
        return Dense(weights=w.astype(np.int32), weight_exp=exp, num_weight_bits=bits, sign_mode=sign_mode_enum(mode))

    assert_same(run_lava([(spikes, factory)], lava_pop_kwargs(pop), steps, reset), reference(a_in, pop, steps))


@given(data=st.data())
@LAVA_SETTINGS
def test_sparse_lif_matches_lava(data):
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    n_src, n_tgt, steps = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4)), data.draw(st.integers(2, 10))
    w = data.draw(weight_matrix(n_tgt, n_src))
    w[0, 0] = 7  # never an all-zero matrix
    mode = data.draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    bits = data.draw(st.integers(1, 8))
    exp = data.draw(st.integers(-8, 7))
    spikes = data.draw(spike_train(n_src, steps))
    pop = data.draw(neuron_params((n_tgt,)))
    eff = fxp.effective_weights(w, exp, bits, mode)

    def a_in(t):
        return 0 if t == 0 else fxp.dense_activation(spikes[:, t - 1], eff, exp)

    def factory():
        return Sparse(
            weights=csr_matrix(w.astype(np.int32)), weight_exp=exp, num_weight_bits=bits, sign_mode=sign_mode_enum(mode)
        )

    assert_same(run_lava([(spikes, factory)], lava_pop_kwargs(pop), steps), reference(a_in, pop, steps))


@given(data=st.data(), sparse=st.booleans())
@LAVA_SETTINGS
def test_delay_synapses_match_lava(data, sparse):
    from lava.proc.dense.process import DelayDense
    from lava.proc.sparse.process import DelaySparse
    from scipy.sparse import csr_matrix

    n_src, n_tgt, steps = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)), data.draw(st.integers(3, 12))
    w = data.draw(weight_matrix(n_tgt, n_src))
    w[0, 0] = 9
    delays = np.array(data.draw(st.lists(st.integers(0, 5), min_size=w.size, max_size=w.size)), dtype=np.int64).reshape(
        w.shape
    )
    delays[0, 0] = max(1, delays[0, 0])  # at least one nonzero delay
    mode = data.draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    bits = data.draw(st.integers(1, 8))
    exp = data.draw(st.integers(-8, 7))
    spikes = data.draw(spike_train(n_src, steps))
    pop = data.draw(neuron_params((n_tgt,)))
    eff = fxp.effective_weights(w, exp, bits, mode)
    arrivals = np.zeros((steps + 8, n_tgt), dtype=np.int64)
    for t in range(steps):
        for d, act in fxp.delayed_dense_activation(spikes[:, t], eff, delays, exp).items():
            arrivals[t + 1 + d] += act

    kw = dict(weight_exp=exp, num_weight_bits=bits, sign_mode=sign_mode_enum(mode))
    if sparse:
        # DelaySparse needs the delays on the weights' sparsity pattern.
        def factory():
            return DelaySparse(
                weights=csr_matrix(w.astype(np.int32)), delays=csr_matrix(np.where(w != 0, delays, 0).astype(int)), **kw
            )

        eff_mask = np.where(w != 0, delays, 0)
        arrivals[:] = 0
        for t in range(steps):
            for d, act in fxp.delayed_dense_activation(spikes[:, t], eff, eff_mask, exp).items():
                arrivals[t + 1 + d] += act
    else:

        def factory():
            return DelayDense(weights=w.astype(np.int32), delays=delays.astype(int), **kw)

    assert_same(
        run_lava([(spikes, factory)], lava_pop_kwargs(pop), steps), reference(lambda t: arrivals[t], pop, steps)
    )


@given(data=st.data())
@LAVA_SETTINGS
def test_conv_matches_lava(data):
    from lava.proc.conv.process import Conv

    c_in = data.draw(st.integers(1, 2))
    groups = data.draw(st.sampled_from([1, c_in]))
    c_out = groups * data.draw(st.integers(1, 2))
    h, wd = data.draw(st.integers(2, 5)), data.draw(st.integers(2, 5))
    pad = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1)))
    kh, kw = data.draw(st.integers(1, min(3, h + 2 * pad[0]))), data.draw(st.integers(1, min(3, wd + 2 * pad[1])))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    steps = data.draw(st.integers(2, 6))
    big = data.draw(st.booleans())  # huge weights: the 24-bit accumulator wraps
    hi = 2**21 if big else 255
    weights = np.array(
        data.draw(
            st.lists(
                st.integers(-hi, hi),
                min_size=c_out * (c_in // groups) * kh * kw,
                max_size=c_out * (c_in // groups) * kh * kw,
            )
        ),
        dtype=np.int64,
    )
    weights = weights.reshape(c_out, c_in // groups, kh, kw)
    exp = data.draw(st.integers(0, 2))
    spikes = data.draw(spike_train(c_in * h * wd, steps)).reshape(c_in, h, wd, steps)
    out_h = (h + 2 * pad[0] - kh) // stride[0] + 1
    out_w = (wd + 2 * pad[1] - kw) // stride[1] + 1
    pop = data.draw(neuron_params((c_out, out_h, out_w)))
    eff = fxp.effective_weights(weights, exp, 8, "mixed", kind="conv")

    def a_in(t):
        return 0 if t == 0 else fxp.conv_activation(spikes[..., t - 1], eff, stride, pad, (1, 1), groups)

    ref = reference(a_in, pop, steps)

    def factory():
        return Conv(
            weight=fxp.lava_conv_weights(eff).astype(np.int32),
            input_shape=(wd, h, c_in),
            padding=pad[::-1],
            stride=stride[::-1],
            groups=groups,
        )

    lava_pop = lava_pop_kwargs(pop)
    lava_pop["shape"] = (out_w, out_h, c_out)
    lava_pop["bias_mant"] = pop["bias_mant"].transpose(2, 1, 0)
    s, u, v = run_lava([(spikes.transpose(2, 1, 0, 3), factory)], lava_pop, steps)
    back = lambda x: x.transpose(0, 3, 2, 1)  # noqa: E731  [T, W, H, C] -> [T, C, H, W]
    assert_same((back(s), back(u), back(v)), ref)


def test_int32_channel_wrap_and_two_inputs_match_lava():
    """Inputs beyond int32 after << 6, summed from two Dense ports: every wrap as in Lava."""
    from lava.proc.dense.process import Dense

    n_src, steps = 1100, 4
    spikes = np.ones((n_src, steps), dtype=np.int64)
    w1 = np.full((2, n_src), 255)
    w1[1] = -256
    w2 = np.full((2, n_src), 200)
    pop = {"shape": (2,), "du": 0, "dv": 0, "vth": 2**17 - 1, "bias_mant": np.array([4095, -4096]), "bias_exp": 7}
    e1, e2 = fxp.effective_weights(w1, 7, 8, "mixed"), fxp.effective_weights(w2, 5, 8, "excitatory")

    def a_in(t):
        return (
            0
            if t == 0
            else fxp.dense_activation(spikes[:, t - 1], e1, 7) + fxp.dense_activation(spikes[:, t - 1], e2, 5)
        )

    conns = [
        (
            spikes,
            lambda: Dense(
                weights=w1.astype(np.int32), weight_exp=7, num_weight_bits=8, sign_mode=sign_mode_enum("mixed")
            ),
        ),
        (
            spikes,
            lambda: Dense(
                weights=w2.astype(np.int32), weight_exp=5, num_weight_bits=8, sign_mode=sign_mode_enum("excitatory")
            ),
        ),
    ]
    ref = reference(a_in, pop, steps)
    assert abs(int(a_in(1)[0])) * 64 > 2**31  # the int32 wrap is exercised
    assert_same(run_lava(conns, lava_pop_kwargs(pop), steps), ref)


# --- exact float matmul -----------------------------------------------------------------


@given(seed=st.integers(0, 2**31 - 1), n_src=st.integers(1, 4000), density=st.sampled_from([0.1, 0.5, 1.0]))
@settings(max_examples=25, deadline=None)
def test_float32_matmul_exact_below_bound(seed, n_src, density):
    """With 0/1 spikes every partial sum is an integer bounded by the row sum of |w|: float32 is exact below 2**24."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-(2**15), 2**15, size=(8, n_src))
    # scale rows so the largest row abs sum sits just below 2**24
    scale = (FLOAT32_EXACT - 1) // max(row_abs_bound(w), 1)
    w = w * max(scale, 1)
    while row_abs_bound(w) >= FLOAT32_EXACT:
        w //= 2
    assert matmul_dtype(row_abs_bound(w)) == torch.float32
    s = (rng.random((64, n_src)) < density).astype(np.int64)
    exact = s @ w.T
    got = (torch.as_tensor(s, dtype=torch.float32) @ torch.as_tensor(w.T, dtype=torch.float32)).to(torch.int64).numpy()
    np.testing.assert_array_equal(got, exact)


def test_matmul_dtype_switches_at_bounds():
    assert matmul_dtype(2**24 - 1) == torch.float32
    assert matmul_dtype(2**24) == torch.float64
    assert matmul_dtype(2**53 - 1) == torch.float64
    # float32 really is inexact beyond the bound (so the switch is needed)
    w = torch.tensor([[2.0**24, 1.0]])
    assert float((torch.tensor([[1.0, 1.0]]) @ w.T).item()) != 2**24 + 1
