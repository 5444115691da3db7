"""Split weights (``quantize(split_weights=True)``, ``compile --split-weights``): each dense or sparse synapse gets a
second one, ``<name>.fine``, that carries its rounding error 7 bits finer.

Oracles: the float weights the quantizer starts from (the sum of both parts' effective weights against them);
the float reference (the NIR paper's recurrent braille graphs: output class and per-layer spike F1, which 8-bit
weights alone hold to about 0.7); Lava's own Dense models (both parts, bit for bit with the CPU backend).
"""

from __future__ import annotations

import numpy as np
import pytest

from neurocompile.backends.cpu import CpuBackend
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics import fixedpoint as fxp
from tests.cli.test_cli_float import run_cli
from tools.braille_fidelity import BRAILLE, braille, fidelity


def combined(program: FixedPointProgram, name: str) -> np.ndarray:
    """The weights synapse ``name`` and its fine part add up to, in units of the coarse part's ``2**weight_exp``."""
    coarse, fine = program.synapse(name), program.synapse(f"{name}.fine")
    shift = 2.0 ** (fine.weight_exp - coarse.weight_exp)
    return fxp.synapse_weights(coarse) + fxp.synapse_weights(fine) * shift


def test_each_dense_synapse_gets_its_rounding_error_7_bits_finer():
    graph, convention, _, calibration, _ = braille("braille_noDelay_bias_zero.nir")
    coarse, coarse_report = compile_graph(graph, convention, calibration=calibration)
    split, split_report = compile_graph(graph, convention, calibration=calibration, split_weights=True)
    assert [s.name for s in split.synapses] == [n for s in coarse.synapses for n in (s.name, f"{s.name}.fine")]
    for syn in coarse.synapses:
        fine = split.synapse(f"{syn.name}.fine")
        assert (fine.source, fine.target, fine.weight_exp) == (syn.source, syn.target, syn.weight_exp - 7)
        np.testing.assert_array_equal(split.synapse(syn.name).weights, syn.weights)  # the coarse part is unchanged
        error = np.abs(combined(split, syn.name) - fxp.synapse_weights(syn))
        assert error.max() <= 1.0  # the coarse rounding error: at most one step of 2 (mixed sign)
    errors = {r.name: r.weight_rel_l2 for layer in coarse_report.layers for r in layer.synapses}
    for layer in split_report.layers:
        for report in layer.synapses:
            assert report.weight_rel_l2 < errors[report.name] / 50


@pytest.mark.parametrize("name", sorted(BRAILLE))
def test_braille_follows_the_float_reference_with_split_weights(name):
    """Output class (200 random-input samples with a unique float winner) and per-layer spike F1 against the float
    reference: 8-bit weights give 96-97% and F1 0.62-0.76; split weights at least 99% and 0.9."""
    agreement, unique, f1 = fidelity(name, 200, split_weights=True)
    assert unique > 180 and agreement >= 0.99
    assert min(f1.values()) >= 0.9, f1


def test_compile_cli_splits_weights(nir_paper_dir, tmp_path, capsys):
    model = nir_paper_dir / "braille_noDelay_noBias_subtract.nir"
    code, out, err = run_cli(capsys, "compile", model, "--split-weights", "-o", tmp_path / "b.ncp")
    assert code == 0, err
    names = [s.name for s in FixedPointProgram.load(tmp_path / "b.ncp").synapses]
    assert sum(name.endswith(".fine") for name in names) == len(names) // 2 > 0


@pytest.mark.lava
def test_lava_runs_split_weights_bit_for_bit_with_the_cpu_backend():
    from neurocompile.backends.lava.backend import LavaBackend
    from tests.semantics.test_subtract_reset import assert_same

    graph, convention, _, calibration, x = braille("braille_noDelay_bias_zero.nir", samples=2)
    program, _ = compile_graph(graph, convention, calibration=calibration, split_weights=True)
    x = (x[:, :25] > 0).astype(np.uint8)
    assert_same(LavaBackend(program).run(x, record="all"), CpuBackend(program).run(x, record="all"))
