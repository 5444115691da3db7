"""Sparsity against the dense bound: the CPU backend on 784-2048-2048-10 at input activity from 1% to 30%.

At each activity the LIF MLP of ``tools.bench`` (``mlp_graph``, its weights scaled for layers ``DESIGN_FACTOR`` times
as active, so that the hidden layers spike at a rate comparable to the input's) is compiled (calibrated on the run's first 16 samples) and run by the CPU backend, batch
``--batch`` x ``--steps`` steps of random input spikes, output spikes recorded; its time per sample-step (best of
``--repeats``) stands next to the int8 GEMM bound of the same shapes (``torch._int_mm`` alone,
``tools.bench.gemm_runner``), with the kernel each synapse chose (``synapse_kernel`` in the recording's metadata)
and the hidden layers' measured activity. Checks, every spike, u and v: the run equals the dense int8 GEMM path
(``GATHER_CROSSOVER`` forced to 0) on the whole batch, and Lava ``fixed_pt`` on the first ``--lava-samples``.

    .venv/bin/python -m tools.bench_sparsity [--rates 0.01,0.02,0.05,0.1,0.2,0.3] [--batch 256] [--steps 32]
        [--repeats 3] [--lava-samples 2] [--json OUT] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import backends.cpu as cpu_backend
from backends import create_backend
from neurocompile.compiler.pipeline import compile_graph
from tools.bench import MLP_SIZES, gemm_runner, gemm_shapes, mlp_graph, spike_inputs
from tools.bench_map import measured_on

ROOT = Path(__file__).resolve().parents[1]
RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
DESIGN_FACTOR = 4  # weights scaled for inputs this many times as active: the hidden layers then spike near the input
MARKS = {"sparsity": ("<!-- sparsity: tools/bench_sparsity.py --write-docs writes this -->", "<!-- /sparsity -->")}


def best_time(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def differences(a, b) -> list[str]:
    """The recorded variables in which two recordings differ (the keys of ``a``)."""
    return [key for key in a.arrays if not np.array_equal(np.asarray(a[key]), np.asarray(b[key]))]


def dense_recording(program, x):
    """The run with every dense synapse on the int8 GEMM (the event-driven gather never chosen)."""
    kept = cpu_backend.GATHER_CROSSOVER
    cpu_backend.GATHER_CROSSOVER = 0.0
    try:
        return create_backend("cpu", program).run(x, record="all")
    finally:
        cpu_backend.GATHER_CROSSOVER = kept


def measure(rate: float, batch: int, steps: int, repeats: int, lava_samples: int) -> dict:
    design = DESIGN_FACTOR * rate
    graph, _ = mlp_graph(MLP_SIZES["large"], seed=0, input_rate=design, hidden_rate=design)
    x = spike_inputs((batch, steps, MLP_SIZES["large"][0]), rate, seed=1)
    program, _ = compile_graph(graph, calibration=x[:16].astype(np.float32), source=f"sparsity {rate}")
    backend = create_backend("cpu", program)
    seconds = best_time(lambda: backend.run(x), repeats)
    bound = best_time(gemm_runner(gemm_shapes(program), batch, steps, torch.int8), repeats)
    full = backend.run(x, record="all")
    checks = {"vs_dense_gemm": differences(full, dense_recording(program, x))}
    if lava_samples:
        lava = create_backend("lava", program).run(x[:lava_samples], record="all")
        sliced = {key: np.asarray(full[key])[:lava_samples] for key in lava.arrays}
        checks["vs_lava"] = [key for key in lava.arrays if not np.array_equal(sliced[key], np.asarray(lava[key]))]
    activity = {p.name: float(np.asarray(full[f"{p.name}.spikes"]).mean()) for p in program.populations}
    return {
        "input_rate": rate,
        "activity": activity,
        "kernels": full.metadata["synapse_kernel"],
        "us_per_sample_step": seconds / (batch * steps) * 1e6,
        "bound_us_per_sample_step": bound / (batch * steps) * 1e6,
        "speedup_over_bound": bound / seconds,
        "differences": checks,
    }


def table(rows: list[dict], batch: int, steps: int, lava_samples: int, load: tuple) -> str:
    lines = [
        "| input activity | hidden activity | kernels (fc0, fc1, fc2) | CPU backend | int8 GEMM bound | bound / CPU |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        hidden = ", ".join(f"{v:.1%}" for v in list(row["activity"].values())[:-1])
        kernels = ", ".join(row["kernels"].values())
        lines.append(
            f"| {row['input_rate']:.0%} | {hidden} | {kernels} | {row['us_per_sample_step']:.2f} us | "
            f"{row['bound_us_per_sample_step']:.2f} us | {row['speedup_over_bound']:.2f}x |"
        )
    identical = all(not any(row["differences"].values()) for row in rows)
    lines += [
        "",
        f"Per sample-step, batch {batch} x {steps} steps, best of the repeats. Every run "
        f"{'was' if identical else 'was NOT'} bit-identical (every spike, u and v) to the dense int8 GEMM path"
        f"{f' and to Lava fixed_pt on {lava_samples} samples' if lava_samples else ''}. "
        + measured_on(load, ".venv/bin/python -m tools.bench_sparsity --write-docs"),
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurocompile.files import save_figure

    rates = [100 * row["input_rate"] for row in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [row["us_per_sample_step"] for row in rows], "o-", label="CPU backend")
    ax.plot(rates, [row["bound_us_per_sample_step"] for row in rows], "s--", label="int8 GEMM bound (dense)")
    ax.set_xlabel("input activity (%)")
    ax.set_ylabel("us per sample-step")
    ax.set_title("784-2048-2048-10: time against activity")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(fig, path, "sparsity plot")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lava-samples", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md and docs/img/sparsity.png")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for rate in (float(r) for r in args.rates.split(",")):
        rows.append(measure(rate, args.batch, args.steps, args.repeats, args.lava_samples))
        row = rows[-1]
        print(
            f"input {rate:.0%}: {row['us_per_sample_step']:.2f} us/sample-step, bound "
            f"{row['bound_us_per_sample_step']:.2f} ({row['speedup_over_bound']:.2f}x), {row['kernels']}, "
            f"differences {row['differences']}",
            flush=True,
        )
    text = table(rows, args.batch, args.steps, args.lava_samples, (load_before, os.getloadavg()[0]))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.write_docs:
        from tools.bench_map import write_between

        write_between(ROOT / "docs" / "benchmarks.md", "sparsity", text, MARKS)
        plot(rows, ROOT / "docs" / "img" / "sparsity.png")
    return 0 if all(not any(row["differences"].values()) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
