"""Hypothesis strategies drawing small random FixedPointPrograms (and their input spikes).

``random_programs()`` covers every feature a program can hold: dense, sparse and conv synapses
(groups, stride, padding, dilation), per-synapse delays, recurrent synapses (self and backward),
several synapses into one population, two input ports, LIF and LIFReset populations, reset to
zero and by subtraction, with snnTorch's reset timings (LIF and CubaLIF), graded spikes (spike counts), non-spiking readouts, and extreme integers (du/dv 0 and 4095, vth 0 and 2**17-1, bias and
weight limits, weight_exp -8..7, odd mixed-sign weights that Lava truncates). Sizes stay tiny so
that one Lava run takes well under a second.

Use::

    @given(case=programs_with_inputs())
    def test_x(case):
        program, inputs = case   # inputs: {port: [batch, time, *shape] uint8}
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse

DECAYS = st.one_of(st.sampled_from([0, 1, 4095]), st.integers(0, 4095))
VTHS = st.one_of(st.sampled_from([0, 1, 2**17 - 1]), st.integers(0, 3000))


def _weight_limit(bits: int, mode: str) -> int:
    return 2 ** (bits - (1 if mode == "mixed" else 0)) - 1


@st.composite
def _weights(draw, shape, bits, mode):
    lim = _weight_limit(bits, mode)
    lo, hi = {"mixed": (-lim, lim), "excitatory": (0, lim), "inhibitory": (-lim, 0)}[mode]
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(lo, hi + 1, size=shape)
    density = draw(st.sampled_from([1.0, 0.6, 0.25]))
    w = np.where(rng.random(shape) < density, w, 0)
    if draw(st.booleans()):  # put the extremes in
        flat = w.reshape(-1)
        flat[0] = hi if hi != 0 else lo
        flat[-1] = lo if lo != 0 else hi
    return w.astype(np.int32)


TIMINGS = ["same-step", "same-step", "snntorch-delayed", "snntorch-immediate"]


@st.composite
def _population(draw, name, shape, allow_nonspiking):
    n = int(np.prod(shape))
    bias_kind = draw(st.sampled_from(["zero", "scalar", "array"]))
    if bias_kind == "zero":
        bias = np.zeros(shape, dtype=np.int32)
    elif bias_kind == "scalar":
        bias = np.full(shape, draw(st.one_of(st.sampled_from([-4096, 4095]), st.integers(-200, 200))), dtype=np.int32)
    else:
        seed = draw(st.integers(0, 2**31 - 1))
        bias = np.random.default_rng(seed).integers(-4096, 4096, size=n).reshape(shape).astype(np.int32)
    spiking = not (allow_nonspiking and draw(st.integers(0, 4)) == 0)
    timing = draw(st.sampled_from(TIMINGS)) if spiking else "same-step"
    return Population(
        name=name,
        shape=tuple(shape),
        du=draw(DECAYS),
        dv=draw(DECAYS),
        vth=draw(VTHS),
        bias_mant=bias,
        bias_exp=draw(st.one_of(st.just(0), st.integers(0, 7))),
        spiking=spiking,
        reset_interval=draw(st.sampled_from([0, 0, 0, 1, 2, 5])),
        reset=draw(st.sampled_from(["zero", "zero", "subtract"])),
        bias_onset=draw(st.sampled_from([0, 0, 1, 3])),
        reset_timing=timing,
        source_type=draw(st.sampled_from(["LIF", "CubaLIF"])),  # CubaLIF: snnTorch's Synaptic zero reset
        payload_bits=draw(st.sampled_from([0, 0, 0, 1, 3, 8])) if spiking and timing == "same-step" else 0,
    )


@st.composite
def _dense_synapse(draw, name, src, src_shape, tgt, tgt_shape, recurrent=False, kind=None, extreme=False):
    n_src, n_tgt = int(np.prod(src_shape)), int(np.prod(tgt_shape))
    bits = 8 if extreme else draw(st.sampled_from([8, 8, 7, 4, 1]))
    mode = (
        draw(st.sampled_from(["excitatory", "inhibitory"]))
        if extreme
        else draw(st.sampled_from(["mixed", "mixed", "excitatory", "inhibitory"]))
    )
    w = draw(_weights((n_tgt, n_src), bits, mode))
    if extreme:  # full-scale weights: inputs that wrap u and leave the short neuron path
        w = np.full((n_tgt, n_src), 255 if mode == "excitatory" else -255, dtype=np.int32)
    delays = None
    if draw(st.integers(0, 3)) == 0:
        seed = draw(st.integers(0, 2**31 - 1))
        delays = (
            np.random.default_rng(seed).integers(0, draw(st.sampled_from([2, 4, 7])), size=w.shape).astype(np.int32)
        )
    return Synapse(
        name=name,
        source=src,
        target=tgt,
        kind=kind or draw(st.sampled_from(["dense", "sparse"])),
        weights=w,
        weight_exp=7 if extreme else draw(st.one_of(st.sampled_from([-8, 0, 7]), st.integers(-4, 4))),
        num_weight_bits=bits,
        sign_mode=mode,
        delays=delays,
        recurrent=recurrent,
    )


@st.composite
def _conv_layer(draw, src_shape):
    c_in, h, w = src_shape
    groups = draw(st.sampled_from([1, c_in])) if c_in > 1 else 1
    c_out = groups * draw(st.integers(1, 2))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    dil = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    kh = draw(st.integers(1, max(1, min(3, (h + 2 * pad[0] - 1) // dil[0] + 1))))
    kw = draw(st.integers(1, max(1, min(3, (w + 2 * pad[1] - 1) // dil[1] + 1))))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    geom = ConvGeometry(tuple(src_shape), (c_out, oh, ow), stride, pad, dil, groups)
    return geom, (c_out, c_in // groups, kh, kw)


@st.composite
def random_programs(
    draw, max_populations: int = 3, allow_conv: bool = True, allow_recurrent: bool = True, allow_delays: bool = True
):
    """A small valid FixedPointProgram exercising the program's features."""
    use_conv = allow_conv and draw(st.integers(0, 3)) == 0
    wide = not use_conv and draw(st.integers(0, 5)) == 0  # 24 inputs at full scale into p0
    inputs = []
    if wide:
        inputs.append(InputPort("in0", (24,)))
    elif use_conv:
        inputs.append(InputPort("in0", (draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(2, 4)))))
    else:
        inputs.append(InputPort("in0", (draw(st.integers(1, 5)),)))
    if draw(st.integers(0, 4)) == 0:
        inputs.append(InputPort("in1", (draw(st.integers(1, 3)),)))
    shapes = {p.name: p.shape for p in inputs}
    pops: list[Population] = []
    syns: list[Synapse] = []
    n_pops = draw(st.integers(1, max_populations))
    for i in range(n_pops):
        name = f"p{i}"
        sources = [p.name for p in inputs] + [p.name for p in pops]
        main = sources[-1] if i > 0 else "in0"
        last = i == n_pops - 1
        if use_conv and len(shapes[main]) == 3 and draw(st.booleans()):
            geom, wshape = draw(_conv_layer(shapes[main]))
            pop = draw(_population(name, geom.output_shape, last))
            bits = 8
            w = draw(_weights(wshape, bits, "mixed"))
            syns.append(Synapse(f"s{len(syns)}", main, name, "conv", w, weight_exp=draw(st.integers(0, 3)), conv=geom))
        else:
            pop = draw(_population(name, (draw(st.integers(1, 5)),), last))
            syns.append(
                draw(_dense_synapse(f"s{len(syns)}", main, shapes[main], name, pop.shape, extreme=wide and i == 0))
            )
        pops.append(pop)
        shapes[name] = pop.shape
        # extra feed-forward inputs (several synapses into one population)
        for src in sources:
            if src != main and draw(st.integers(0, 3)) == 0:
                syns.append(draw(_dense_synapse(f"s{len(syns)}", src, shapes[src], name, pop.shape)))
        # recurrent synapses: to itself or from a later population back to an earlier one
        if allow_recurrent and draw(st.integers(0, 3)) == 0:
            syns.append(draw(_dense_synapse(f"s{len(syns)}", name, pop.shape, name, pop.shape, recurrent=True)))
    if allow_recurrent and len(pops) > 1 and draw(st.integers(0, 4)) == 0:
        a, b = pops[-1], pops[0]
        syns.append(draw(_dense_synapse(f"s{len(syns)}", a.name, a.shape, b.name, b.shape, recurrent=True)))
    if not allow_delays:
        for s in syns:
            s.delays = None
    # every input port must feed something
    for port in inputs:
        if not any(s.source == port.name for s in syns):
            syns.append(draw(_dense_synapse(f"s{len(syns)}", port.name, port.shape, pops[0].name, pops[0].shape)))
    outputs = [pops[-1].name]
    return FixedPointProgram(inputs, pops, syns, outputs, {"source": "hypothesis"}).validate()


@st.composite
def program_inputs(draw, program: FixedPointProgram, batch=None, steps=None):
    """Input spikes ``{port: uint8 [batch, time, *shape]}`` for ``program``."""
    batch = batch if batch is not None else draw(st.integers(1, 3))
    steps = steps if steps is not None else draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rate = draw(st.sampled_from([0.1, 0.4, 0.8, 1.0]))
    rng = np.random.default_rng(seed)
    return {p.name: (rng.random((batch, steps, *p.shape)) < rate).astype(np.uint8) for p in program.inputs}


@st.composite
def programs_with_inputs(draw, **kwargs):
    """``(program, inputs)`` pairs: a random program and input spikes for it."""
    program = draw(random_programs(**kwargs))
    return program, draw(program_inputs(program))
