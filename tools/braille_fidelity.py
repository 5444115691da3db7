"""The NIR paper's recurrent braille graphs in fixed point against the float reference, with 8-bit and split
weights: output-class agreement on random-input samples with a unique float winner, and per-layer spike F1
(figures of docs/quantization.md, "Split weights").

    python tools/braille_fidelity.py [--samples 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "tests" / "fixtures" / "nir-paper"
BRAILLE = {"braille_noDelay_bias_zero.nir": "neurocompile", "braille_noDelay_noBias_subtract.nir": "snntorch"}


def braille(name: str, samples: int = 200):
    """Graph, convention, float reference, calibration (64 samples) and test inputs (``samples``): 60 steps of
    random spikes at 30%."""
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.frontend.nir_io import load_graph
    from neurocompile.semantics.discretization import get_convention

    graph, convention = load_graph(GRAPHS / name), get_convention(BRAILLE[name])
    reference = FloatReference(graph, convention)
    shape = reference.ops[reference.inputs[0]].in_shape
    rng = np.random.default_rng(0)
    calibration = (rng.random((64, 60, *shape)) < 0.3).astype(np.float32)
    x = (rng.random((samples, 60, *shape)) < 0.3).astype(np.float32)
    return graph, convention, reference, calibration, x


def fidelity(name: str, samples: int, split_weights: bool) -> tuple[float, int, dict[str, float]]:
    """(output-class agreement over the samples with a unique float winner, their number, spike F1 per layer)."""
    from neurocompile.analysis.metrics import layer_agreement
    from neurocompile.backends.cpu import CpuBackend
    from neurocompile.compiler.pipeline import compile_graph

    graph, convention, reference, calibration, x = braille(name, samples)
    float_run = reference.run(x, record="all")
    out = float_run.outputs[0]
    counts = float_run.arrays[f"{out}.spikes"].reshape(len(x), x.shape[1], -1).sum(1)
    ranked = np.sort(counts, axis=1)
    unique = ranked[:, -1] > ranked[:, -2]
    program, _ = compile_graph(graph, convention, calibration=calibration, split_weights=split_weights)
    fixed = CpuBackend(program).run(x, record="all")
    fixed_counts = fixed.arrays[f"{out}.spikes"].sum(1).reshape(len(x), -1)
    agreement = float((counts.argmax(1) == fixed_counts.argmax(1))[unique].mean())
    f1 = {layer: r["spike_f1"] for layer, r in layer_agreement(float_run, fixed, program.latency()).items()}
    return agreement, int(unique.sum()), f1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    print("| graph | weights | output class | spike F1 per layer |")
    print("|---|---|---|---|")
    for name in BRAILLE:
        for split in (False, True):
            agreement, unique, f1 = fidelity(name, args.samples, split)
            layers = ", ".join(f"{layer} {value:.3f}" for layer, value in f1.items())
            weights = "split" if split else "8-bit"
            print(f"| {name} | {weights} | {agreement:.1%} of {unique} | {layers} |")


if __name__ == "__main__":
    main()
