"""quantize()/compile_graph(): float NIR dynamics -> Lava fixed-point LIF parameters.

Oracles: hand-computed mappings, the NIR paper's Lava import (du=4095, dv=163, vth=25 against
an input weight of 10), Lava's own weight utilities, and the float reference (spike counts
of the bit-accurate CPU backend on random networks, shifted by Lava's one-step synapse).
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from neurocompile.backends.cpu import CpuBackend
from neurocompile.backends.float_ref import FloatReference
from neurocompile.compiler.lif_mapping import tonic_source
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.errors import HardwareLimitError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics.discretization import Convention, get_convention

RNG = np.random.default_rng(3)


def lif(n, tau=2e-3, vth=1.0, **kw):
    p = dict(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, vth))
    p.update(kw)
    return nir.LIF(**p)


def cuba(n, tau_syn=5e-4, tau_mem=2e-3, vth=1.0):
    return nir.CubaLIF(
        tau_syn=np.full(n, tau_syn),
        tau_mem=np.full(n, tau_mem),
        r=np.ones(n),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, vth),
        w_in=np.ones(n),
    )


def single(neuron, w, n_in=None):
    w = np.atleast_2d(np.asarray(w, dtype=float))
    n_out, n_in = w.shape
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([n_in])),
            "w": nir.Linear(w),
            "n": neuron,
            "out": nir.Output(np.array([n_out])),
        },
        edges=[("in", "w"), ("w", "n"), ("n", "out")],
    )


def two_layer(make, n_in=20, n_h=40, n_o=10, g1=30.0, g2=20.0, seed=1):
    rng = np.random.default_rng(seed)
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([n_in])),
            "fc1": nir.Affine(rng.normal(0, 1, (n_h, n_in)) * g1, rng.normal(0, 2, n_h)),
            "h": make(n_h),
            "fc2": nir.Linear(rng.normal(0.3, 1, (n_o, n_h)) * g2),
            "o": make(n_o),
            "out": nir.Output(np.array([n_o])),
        },
        edges=[("in", "fc1"), ("fc1", "h"), ("h", "fc2"), ("fc2", "o"), ("o", "out")],
    )


def effective_weight(syn):
    return syn.weights.astype(np.int64) * 2.0**syn.weight_exp


# --- hand-computed mappings ----------------------------------------------------------------


def test_paper_lif_mapping_matches_the_papers_lava_import(nir_paper_dir):
    program, report = compile_graph(nir.read(nir_paper_dir / "lif_norse.nir"))
    (pop,), (syn,) = program.populations, program.synapses
    assert pop.du == 4095  # no synaptic state: u = a_in << 6 exactly
    # dv = round(4096 * dt / tau) = round(163.84); the paper truncated to 163
    assert pop.dv == 164
    # the paper: vth 25 against an input weight of 10 (both scaled by 256): ratio 2.5
    assert pop.vth / effective_weight(syn)[0, 0] == pytest.approx(25 / 10, rel=1e-4)
    assert pop.spiking and pop.source_type == "LIF"
    assert report.layer("1").threshold_ratio_error < 1e-4


def test_paper_lif_spike_times_through_compile_and_cpu_backend(nir_paper_dir):
    program, _ = compile_graph(nir.read(nir_paper_dir / "lif_norse.nir"))
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").reshape(1, -1, 1)
    rec = CpuBackend(program).run(spikes)
    assert np.nonzero(rec.output_spikes()[0, :, 0])[0].tolist() == [461, 511, 711, 761]


def test_cuba_lif_mapping_by_hand():
    dt, tau_syn, tau_mem, vth, w = 1e-4, 4e-4, 1e-3, 2.0, 3.0
    program, _ = compile_graph(single(cuba(1, tau_syn, tau_mem, vth), [[w]]), Convention(dt=dt))
    (pop,), (syn,) = program.populations, program.synapses
    assert pop.du == round(4096 * dt / tau_syn) - 1  # Lava decays u by (du + 1) / 4096
    assert pop.dv == round(4096 * dt / tau_mem)
    # u carries a_m * r * i; the input jumps i by a_s * w_in * w
    w_float = w * (dt / tau_syn) * (dt / tau_mem)
    assert pop.vth / effective_weight(syn)[0, 0] == pytest.approx(vth / w_float, rel=5e-3)


@pytest.mark.parametrize("if_uses_dt", [True, False])
def test_if_mapping_by_hand(if_uses_dt):
    conv = Convention(if_uses_dt=if_uses_dt)
    node = nir.IF(r=np.array([2.0]), v_threshold=np.array([5.0]))
    program, _ = compile_graph(single(node, [[1.5]]), conv)
    (pop,), (syn,) = program.populations, program.synapses
    assert (pop.du, pop.dv) == (4095, 0)
    gain = 1.5 * 2.0 * (conv.dt if if_uses_dt else 1.0)
    assert pop.vth / effective_weight(syn)[0, 0] == pytest.approx(5.0 / gain, rel=5e-3)


def test_readouts_are_non_spiking():
    for node in (nir.LI(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2)), nir.I(r=np.ones(2))):
        program, _ = compile_graph(single(node, RNG.normal(size=(2, 3))))
        (pop,) = program.populations
        assert not pop.spiking and pop.vth == 2**17 - 1
        assert pop.dv == (round(4096 * 0.1) if isinstance(node, nir.LI) else 0)


def test_v_leak_and_affine_bias_become_the_lava_bias():
    dt, tau, vth = 1e-4, 1e-3, 1.0
    node = lif(1, tau=tau, vth=vth, v_leak=np.array([0.5]))
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([1])),
            "w": nir.Affine(np.array([[1.0]]), np.array([0.25])),
            "n": node,
            "out": nir.Output(np.array([1])),
        },
        edges=[("in", "w"), ("w", "n"), ("n", "out")],
    )
    program, _ = compile_graph(g, Convention(dt=dt))
    (pop,) = program.populations
    bias = int(pop.bias_mant[0]) << pop.bias_exp
    # per step: dt/tau * (v_leak + r * b) of v, in units of v_th / (64 * vth)
    assert bias / (pop.vth << 6) == pytest.approx((dt / tau) * (0.5 + 0.25) / vth, rel=2e-3)


def test_inclusive_threshold_on_integer_grid_is_exact():
    # Sinabs-style IF: v <- v + x, spike at v >= 1; input weight 1 must spike every step
    conv = get_convention("sinabs", reset="zero")
    program, _ = compile_graph(single(nir.IF(r=np.ones(1), v_threshold=np.ones(1)), [[1.0]]), conv)
    rec = CpuBackend(program).run(np.ones((1, 5, 1)))
    assert rec.output_spikes()[0, :, 0].tolist() == [0, 1, 1, 1, 1]


# --- hardware limits -----------------------------------------------------------------------


def test_reset_by_subtraction_compiles_to_a_subtracting_population():
    program, _ = compile_graph(single(lif(1, v_reset=np.array([0.2])), [[1.0]]), Convention(reset="subtract"))
    assert program.population("n").reset == "subtract"  # v_reset plays no part in a subtractive reset


def test_nonzero_v_reset_is_rejected():
    with pytest.raises(HardwareLimitError, match="parameter 'v_reset'"):
        compile_graph(single(lif(1, v_reset=np.array([0.2])), [[1.0]]))


def test_per_neuron_time_constants_are_rejected():
    node = lif(2, tau=2e-3)
    node.tau = np.array([2e-3, 3e-3])
    with pytest.raises(HardwareLimitError, match="node 'n', parameter 'tau'"):
        compile_graph(single(node, np.ones((2, 2))))


def test_decay_beyond_one_step_is_rejected():
    with pytest.raises(HardwareLimitError, match="parameter 'tau'"):
        compile_graph(single(lif(1, tau=1e-5), [[1.0]]))


def test_delay_beyond_lava_range_is_rejected():
    dt = 1e-4
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([1])),
            "d": nir.Delay(np.array([80 * dt])),
            "w": nir.Linear(np.ones((1, 1))),
            "n": lif(1),
            "out": nir.Output(np.array([1])),
        },
        edges=[("in", "d"), ("d", "w"), ("w", "n"), ("n", "out")],
    )
    with pytest.raises(HardwareLimitError, match="parameter 'delays'"):
        compile_graph(g, Convention(dt=dt))


# --- Lava quirks ---------------------------------------------------------------------------


def lava_dense_weights(syn):
    """What Lava's Dense does to the weights on its first step (clip, then truncate)."""
    from neurocompile.backends.lava.compat import import_lava

    import_lava()
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    mode = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY}[
        syn.sign_mode
    ]
    w = clip_weights(syn.weights, mode, num_bits=8)
    return truncate_weights(w, mode, syn.num_weight_bits)


@pytest.mark.parametrize("sign", ["mixed", "excitatory", "inhibitory"])
def test_dense_weights_survive_lava_truncation(sign):
    w = RNG.normal(size=(6, 7))
    w = {"mixed": w, "excitatory": np.abs(w), "inhibitory": -np.abs(w)}[sign]
    program, _ = compile_graph(single(lif(6), w))
    (syn,) = program.synapses
    assert syn.sign_mode == sign
    np.testing.assert_array_equal(lava_dense_weights(syn), syn.weights)
    if sign != "mixed":
        assert np.any(syn.weights % 2 == 1)  # single-sign weights keep their full 8 bits


def conv_graph(scale):
    w = np.random.default_rng(5).normal(size=(4, 2, 3, 3)) * scale
    conv = nir.Conv2d(input_shape=(6, 6), weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4))
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([2, 6, 6])),
            "c": conv,
            "n": nir.IF(r=np.ones((4, 6, 6)), v_threshold=np.ones((4, 6, 6))),
            "out": nir.Output(np.array([4, 6, 6])),
        },
        edges=[("in", "c"), ("c", "n"), ("n", "out")],
    )


def test_conv_synapse_has_no_weight_exp_and_8_bit_weights():
    program, report = compile_graph(conv_graph(0.3), Convention(if_uses_dt=False))
    (syn,) = program.synapses
    assert syn.kind == "conv" and syn.weight_exp == 0
    assert np.abs(syn.weights).max() == 127  # the conv scale is bound by its 8-bit weights
    assert report.layer("n").limited_by.startswith("weights")


def test_conv_weights_too_small_for_the_threshold_are_rejected():
    # Lava's Conv ignores weight_exp: 1e-6 of the threshold per spike rounds to 0 within 17-bit vth
    with pytest.raises(HardwareLimitError, match="parameter 'weights'"):
        compile_graph(conv_graph(0.01), Convention())


def test_bias_too_large_for_13_plus_3_bits_limits_the_scale():
    node = lif(1, tau=1e-3, vth=1e-3, v_leak=np.array([50.0]))
    program, report = compile_graph(single(node, [[1e-3]]))
    (pop,) = program.populations
    assert abs(int(pop.bias_mant[0])) <= 4095 and pop.bias_exp <= 7
    assert report.layer("n").limited_by.startswith("bias")


# --- report and program --------------------------------------------------------------------


def test_report_is_json_and_stored_in_the_program(tmp_path, nir_paper_dir):
    path = nir_paper_dir / "two_lif_neurons.nir"
    program, report = compile_graph(load_graph(path), source=str(path))
    text = json.dumps(report.to_dict())
    assert "lif1" in text and "weight_rel_l2" in text
    assert program.metadata["quantization"]["layers"][0]["population"] == "lif1"
    assert program.metadata["dt"] == 1e-4 and program.metadata["convention"]["name"] == "neurocompile"
    assert program.metadata["source"].endswith("two_lif_neurons.nir")
    path = tmp_path / "m.ncp"
    program.save(path)
    loaded = FixedPointProgram.load(path)
    assert loaded.metadata["quantization"] == json.loads(json.dumps(program.metadata["quantization"]))


def test_calibration_reports_saturation():
    g = two_layer(lambda n: lif(n))
    x = (RNG.random((4, 50, 20)) < 0.2).astype(np.float32)
    _, report = compile_graph(g, calibration=x, method="percentile", percentile=99.0)
    assert report.calibrated and set(report.layer("h").saturation) == {"activation_16bit", "u_24bit", "v_24bit"}
    # percentile scaling leaves the largest values beyond the hardware widths: they are counted
    assert report.layer("o").limited_by == "activation (16 bits)"
    assert report.layer("o").saturation["activation_16bit"] > 0
    assert report.layer("h").saturation["v_24bit"] > 0
    _, exact = compile_graph(g, calibration=x, method="maxabs")
    assert all(v == 0 for layer in exact.layers for v in layer.saturation.values())


# --- accuracy against the float reference ---------------------------------------------------


def test_a_long_calibration_input_is_calibrated_on_its_first_steps(monkeypatch):
    """An input longer than MAX_CALIBRATION_STEPS gives the program of its first steps, and the report says so."""
    from neurocompile.compiler import calibrate

    monkeypatch.setattr(calibrate, "MAX_CALIBRATION_STEPS", 40)
    g = two_layer(lambda n: lif(n))
    x = (RNG.random((3, 100, 20)) < 0.2).astype(np.float32)
    x[:, 40:] = 1.0  # activity the cut leaves out: it would raise every scale
    long_program, report = compile_graph(g, calibration=x)
    short_program, short_report = compile_graph(g, calibration=x[:, :40])
    for a, b in zip(long_program.synapses, short_program.synapses):
        assert np.array_equal(a.weights, b.weights) and a.weight_exp == b.weight_exp
    monkeypatch.setattr(calibrate, "MAX_CALIBRATION_STEPS", 100)
    uncut, _ = compile_graph(g, calibration=x)
    assert any(not np.array_equal(a.weights, b.weights) for a, b in zip(uncut.synapses, short_program.synapses))
    assert report.calibration == "3 samples x 40 steps (the first 40 of 100)"
    assert short_report.calibration == "3 samples x 40 steps"
    assert "calibrated on 3 samples x 40 steps (the first 40 of 100)" in report.table()


@pytest.mark.parametrize(
    "make,calibrate", [(lambda n: lif(n), False), (lambda n: lif(n), True), (lambda n: cuba(n), False)]
)
def test_quantized_network_matches_float_reference(make, calibrate):
    g = two_layer(
        make, g1=30.0 if make(1).__class__ is nir.LIF else 60.0, g2=20.0 if make(1).__class__ is nir.LIF else 40.0
    )
    x = (np.random.default_rng(7).random((6, 150, 20)) < 0.2).astype(np.float32)
    program, _ = compile_graph(g, calibration=x if calibrate else None)
    fixed = CpuBackend(program).run(x, record="all")
    ref = FloatReference(g).run(x, record="all")
    steps = x.shape[1]
    for depth, name in enumerate(["h", "o"], start=1):
        # layer k of the fixed-point program runs k steps behind the float reference
        c = fixed.spikes(name)[:, depth:].sum(1)
        f = ref.spikes(name)[:, : steps - depth].sum(1)
        assert f.sum() > 100
        assert abs(c.sum() - f.sum()) <= 0.03 * f.sum()
        assert np.abs(c - f).sum() <= 0.05 * f.sum()
        assert np.corrcoef(c.ravel(), f.ravel())[0, 1] > 0.99


# --- command line --------------------------------------------------------------------------


def test_cli_compile_writes_program_and_json_report(tmp_path, nir_paper_dir, capsys):
    from neurocompile.cli import main

    out = tmp_path / "lif.ncp"
    main(["compile", str(nir_paper_dir / "lif_norse.nir"), "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["layers"][0]["population"] == "1" and report["layers"][0]["dv"] == 164
    program = FixedPointProgram.load(out)
    spikes = np.load(nir_paper_dir / "lif_input_spikes.npy").reshape(1, -1, 1)
    assert np.nonzero(CpuBackend(program).run(spikes).output_spikes()[0, :, 0])[0].tolist() == [461, 511, 711, 761]


def test_cli_compile_hardware_error_is_one_line_exit_2(tmp_path, nir_paper_dir, capsys):
    from neurocompile.cli import main

    nir.write(tmp_path / "g.nir", single(lif(1, v_reset=np.array([0.2])), [[1.0]]))  # Lava resets to 0
    with pytest.raises(SystemExit) as info:
        main(["compile", str(tmp_path / "g.nir"), "-o", str(tmp_path / "c.ncp")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "parameter 'v_reset'" in err


def test_cli_compile_with_calibration_file(tmp_path, nir_paper_dir, capsys):
    from neurocompile.cli import main

    data = tmp_path / "cal.npy"
    np.save(data, (np.random.default_rng(0).random((2, 40, 2, 34, 34)) < 0.1).astype(np.float32))
    main(
        [
            "compile",
            str(nir_paper_dir / "cnn_sinabs.nir"),
            "-o",
            str(tmp_path / "c.ncp"),
            "--convention",
            "sinabs",
            "--reset",
            "zero",
            "--calibrate",
            str(data),
            "--method",
            "percentile",
        ]
    )
    text = capsys.readouterr().out
    assert "calibrated" in text and "percentile" in text and "wrote" in text


def test_sparse_pool_chain_is_exact_against_float_reference():
    # Input -> SumPool2d -> Flatten -> IF: a sparse synapse; integer weights, so spikes are exact
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([2, 8, 8])),
            "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            "f": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
            "n": nir.IF(r=np.ones(32), v_threshold=np.full(32, 2.5)),
            "out": nir.Output(np.array([32])),
        },
        edges=[("in", "p"), ("p", "f"), ("f", "n"), ("n", "out")],
    )
    conv = Convention(if_uses_dt=False)
    program, _ = compile_graph(g, conv)
    assert [s.kind for s in program.synapses] == ["sparse"]
    x = (np.random.default_rng(0).random((3, 50, 2, 8, 8)) < 0.3).astype(np.float32)
    fixed = CpuBackend(program).run(x).output_spikes()
    ref = FloatReference(g, conv).run(x).output_spikes()
    assert ref.sum() > 100
    np.testing.assert_array_equal(fixed[:, 1:], ref[:, :-1])


def test_delays_reach_the_cpu_backend_like_the_float_reference():
    dt = 1e-4
    w = np.random.default_rng(1).normal(0, 1, (4, 3)) * 200
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(np.array([3])),
            "d": nir.Delay(np.array([0, 3 * dt, 7 * dt])),
            "w": nir.Linear(w),
            "n": lif(4),
            "out": nir.Output(np.array([4])),
        },
        edges=[("in", "d"), ("d", "w"), ("w", "n"), ("n", "out")],
    )
    program, _ = compile_graph(g, Convention(dt=dt))
    assert program.synapses[0].delays.tolist() == [[0, 3, 7]] * 4
    x = (np.random.default_rng(2).random((3, 80, 3)) < 0.3).astype(np.float32)
    fixed = CpuBackend(program).run(x).output_spikes()
    ref = FloatReference(g, Convention(dt=dt)).run(x).output_spikes()
    assert ref.sum() > 50
    assert (fixed[:, 1:] != ref[:, :-1]).sum() <= 0.02 * ref.sum()


def test_voltage_first_cuba_lif_gets_one_extra_step_of_delay():
    conv = get_convention("norse", current_first=False)  # v integrates the previous current
    g = two_layer(lambda n: cuba(n), g1=60.0, g2=40.0)
    x = (np.random.default_rng(7).random((6, 150, 20)) < 0.2).astype(np.float32)
    program, report = compile_graph(g, conv)
    assert all(int(s.delays.max()) == 1 for s in program.synapses if s.source != tonic_source(s.target))
    fixed = CpuBackend(program).run(x, record="all")
    ref = FloatReference(g, conv).run(x, record="all")
    for depth, name in enumerate(["h", "o"], start=1):
        c = fixed.spikes(name)[:, depth:].sum(1)
        f = ref.spikes(name)[:, : 150 - depth].sum(1)
        assert np.abs(c - f).sum() <= 0.05 * f.sum()


def test_v_scale_maps_readout_voltage_back_to_float():
    n = 3
    node = nir.LI(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n))
    w = np.abs(np.random.default_rng(4).normal(size=(n, 4)))  # one sign: weights kept to 8 bits
    g = single(node, w)
    x = (np.random.default_rng(5).random((2, 60, 4)) < 0.3).astype(np.float32)
    program, _ = compile_graph(g)
    scale = program.metadata["v_scale"]["n"]
    v_int = CpuBackend(program).run(x, record="all")["n.v"]
    v_float = FloatReference(g).run(x, record="all")["n.v"]
    np.testing.assert_allclose(v_int[:, 1:] / scale, v_float[:, :-1], atol=0.01 * np.abs(v_float).max())


def test_a_bias_whose_squares_underflow_has_a_relative_error_not_a_warning():
    """Found by the fuzzer (seed 2030, nir:115: biases of 2.2e-308): the norm of such a bias underflows to 0."""
    import warnings

    from neurocompile.compiler.quantize import _quantize_bias

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mant, exp, err = _quantize_bias(np.full(4, 2.2250738585072014e-308), "n")
    assert (mant.tolist(), exp, err) == ([0, 0, 0, 0], 0, 1.0)


@pytest.mark.parametrize("options", [{}, {"split_weights": True, "method": "percentile", "percentile": 99.0}])
def test_quantizing_a_block_of_rows_at_a_time_gives_the_program_of_whole_matrices(monkeypatch, options):
    """The compiler forms a dense synapse's float matrix a block of rows at a time (``ScaledMatrix``); one row per
    block gives the program of one block per matrix (the whole matrices), array for array, with scales on either
    side of an affine weight, per-neuron thresholds and a current-based layer."""
    from neurocompile.ir import normalized

    rng = np.random.default_rng(7)
    n_in, n_h, n_o = 30, 120, 10
    nodes = {
        "in": nir.Input(np.array([n_in])),
        "pre": nir.Scale(rng.uniform(0.5, 2.0, n_in)),
        "fc1": nir.Affine(rng.normal(0, 0.3, (n_h, n_in)).astype(np.float32), rng.normal(0, 0.1, n_h)),
        "post": nir.Scale(rng.uniform(0.5, 2.0, n_h)),
        "h": lif(n_h, vth=rng.uniform(0.5, 1.5, n_h)),
        "fc2": nir.Linear(rng.normal(0, 0.3, (n_o, n_h))),
        "o": cuba(n_o),
        "out": nir.Output(np.array([n_o])),
    }
    edges = [("in", "pre"), ("pre", "fc1"), ("fc1", "post"), ("post", "h"), ("h", "fc2"), ("fc2", "o"), ("o", "out")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    monkeypatch.setattr(normalized, "BLOCK_VALUES", 1)
    by_rows, by_rows_report = compile_graph(graph, **options)
    monkeypatch.setattr(normalized, "BLOCK_VALUES", 1 << 40)
    whole, whole_report = compile_graph(graph, **options)
    assert [s.name for s in by_rows.synapses] == [s.name for s in whole.synapses]
    for a, b in zip(by_rows.synapses, whole.synapses):
        assert (a.weight_exp, a.sign_mode) == (b.weight_exp, b.sign_mode)
        np.testing.assert_array_equal(a.weights, b.weights)
    for a, b in zip(by_rows.populations, whole.populations):
        assert (a.vth, a.du, a.dv, a.bias_exp) == (b.vth, b.du, b.dv, b.bias_exp)
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
    for a, b in zip(by_rows_report.layers, whole_report.layers):
        assert a.limited_by == b.limited_by and a.scale == b.scale
        for s, t in zip(a.synapses, b.synapses):
            assert (s.max_mantissa, s.clipped_weights) == (t.max_mantissa, t.clipped_weights)
            assert s.weight_rel_l2 == pytest.approx(t.weight_rel_l2, rel=1e-12)
