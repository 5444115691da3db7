"""The float backend's two neuron paths on one population, timed in the same process: the C kernel
(``backends/float_kernel.py``) and the discretization's step functions in torch (what runs without a
compiler). A LIF population of each size, batch 256, T=32, spikes and v recorded; best of N.

    .venv/bin/python tools/bench_float_kernel.py [--sizes 128,512,2048] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import time

import nir
import numpy as np

from neurocompile.backends import float_ref
from neurocompile.backends.float_ref import FloatReference


def lif_graph(n: int) -> nir.NIRGraph:
    lif = nir.LIF(
        tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)
    )
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n])}),
        "lif": lif,
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")], type_check=False)


def best_ms(ref: FloatReference, x: np.ndarray, repeats: int) -> float:
    """Best time of ``ref.run(x, record="all")`` over ``repeats`` runs after a warm-up."""
    ref.run(x, record="all")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ref.run(x, record="all")
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,512,2048", help="population sizes")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; batch 256, T=32, input rate 0.1; best of {args.repeats}")
    print(f"{'neurons':>8} {'C kernel ms':>12} {'torch steps ms':>15} {'ratio':>6}")
    kernel = float_ref.load_kernel
    for n in (int(s) for s in args.sizes.split(",")):
        ref = FloatReference(lif_graph(n))
        x = (np.random.default_rng(0).random((256, 32, n)) < 0.1).astype(np.float32) * 0.5
        in_c = best_ms(ref, x, args.repeats)
        float_ref.load_kernel = lambda: None
        in_torch = best_ms(ref, x, args.repeats)
        float_ref.load_kernel = kernel
        print(f"{n:>8} {in_c:>12.2f} {in_torch:>15.2f} {in_torch / in_c:>5.1f}x")


if __name__ == "__main__":
    main()
