"""Benchmark: CPU backend vs Lava fixed_pt vs a dense float32 GEMM, on one compiled network.

One run measures, on the same FixedPointProgram (64-128-10 LIF, T=32 by default):

* CPU backend: sample-steps/s on a batch of 256 (best of --repeats runs, after a warm-up);
* Lava (``LavaBackend(program, tag="fixed_pt")``): a few samples one at a time, sample-steps/s
  after the first sample (graph build and compile excluded), extrapolated per sample-step;
* the GEMM bound: the same-shaped float32 matmuls ([B*T, 64] @ [64, 128], [B*T, 128] @ [128, 10])
  with torch, i.e. the time any dense implementation needs just for the synapses;

checks that every spike, u and v of the samples Lava ran are bit-identical, and prints the
figures and ratios (CPU/Lava speed-up; GEMM time / CPU time, target >= 0.30).

    .venv/bin/python tools/bench_cpu_vs_lava.py [--batch 256] [--steps 32] [--lava-samples 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from neurocompile.backends.cpu import CpuBackend, _load_kernel
from neurocompile.program import FixedPointProgram, InputPort, Population, Synapse


def make_program(sizes=(64, 128, 10), seed=0) -> FixedPointProgram:
    """A compiled-looking network: mixed 8-bit weights that survive Lava's truncation (even)."""
    rng = np.random.default_rng(seed)
    pops, syns = [], []
    src = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        name = f"lif{i}"
        w = (rng.normal(0, 40 / np.sqrt(n_in / 64), size=(n_out, n_in)).round().astype(np.int32) // 2) * 2
        w = np.clip(w, -126, 126)
        pops.append(
            Population(name, (n_out,), du=410, dv=410, vth=60, bias_mant=np.zeros(n_out, dtype=np.int32), bias_exp=0)
        )
        syns.append(Synapse(f"syn{i}", src, name, "dense", w, weight_exp=1))
        src = name
    return FixedPointProgram(
        [InputPort("input", (sizes[0],))], pops, syns, [src], {"source": "bench_cpu_vs_lava"}
    ).validate()


def make_inputs(batch, steps, n_in, seed=0):
    try:
        from neurocompile.data import load_digits_spikes

        x, _ = load_digits_spikes(steps=steps, split="test", seed=seed)
        if x.shape[-1] == n_in:
            reps = -(-batch // x.shape[0])
            return np.concatenate([x] * reps)[:batch].astype(np.uint8), "digits (rate)"
    except Exception:  # noqa: BLE001 - the data module is optional for the benchmark
        pass
    rng = np.random.default_rng(seed)
    return (rng.random((batch, steps, n_in)) < 0.2).astype(np.uint8), "random (p=0.2)"


def interleaved_times(fns, repeats):
    """Time each function ``repeats`` times, alternating them so that machine load hits all alike.

    Returns (best, median) seconds per function; the ratio of bests is the robust figure on a
    shared machine.
    """
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [(min(t), float(np.median(t))) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--sizes", default="64,128,10")
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    sizes = tuple(int(s) for s in args.sizes.split(","))
    program = make_program(sizes)
    x, source = make_inputs(args.batch, args.steps, sizes[0])
    sample_steps = args.batch * args.steps
    print(
        f"network {'-'.join(map(str, sizes))}, T={args.steps}, batch={args.batch}, inputs: {source}, torch threads: {torch.get_num_threads()}"
    )
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (timings on a shared machine vary with it)"
    )
    print(f"C neuron kernel: {'yes' if _load_kernel() is not None else 'no (torch path)'}")

    # CPU backend
    cpu = CpuBackend(program, device=args.device)
    rec = cpu.run(x)

    # GEMM bound: the same-shaped dense float32 matmuls, nothing else
    dev = torch.device(args.device)
    acts = [torch.rand(sample_steps, n, device=dev) for n in sizes[:-1]]
    ws = [torch.rand(n_in, n_out, device=dev) for n_in, n_out in zip(sizes[:-1], sizes[1:])]

    def gemm():
        for a, w in zip(acts, ws):
            a @ w
        if dev.type == "cuda":
            torch.cuda.synchronize()

    (cpu_best, cpu_med), (gemm_best, gemm_med) = interleaved_times([lambda: cpu.run(x), gemm], args.repeats)
    gemm_fraction = gemm_best / cpu_best  # from interleaved runs: same load on both
    flops = 2 * sample_steps * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    # Lava, a few samples one at a time
    from neurocompile.backends.lava import LavaBackend

    k = max(2, args.lava_samples)
    lava = LavaBackend(program, tag="fixed_pt")
    t0 = time.perf_counter()
    lrec = lava.run(x[:k], record="all")
    lava_total = time.perf_counter() - t0
    lava_rate = lava.last_timing.get("steps_per_s") or (k * args.steps / lava_total)
    crec = cpu.run(x[:k], record="all")
    # the CPU backend once more, right after Lava, so both see similar machine load
    ((cpu_after, _),) = interleaved_times([lambda: cpu.run(x)], max(3, args.repeats // 3))
    cpu_best = min(cpu_best, cpu_after)
    cpu_rate = sample_steps / cpu_best
    mismatches = [
        key
        for key in lrec.arrays
        if not np.array_equal(lrec.arrays[key].astype(np.int64), crec.arrays[key].astype(np.int64))
    ]

    figures = {
        "network": "-".join(map(str, sizes)),
        "steps": args.steps,
        "batch": args.batch,
        "cpu_s_best": cpu_best,
        "cpu_s_median": cpu_med,
        "cpu_sample_steps_per_s": cpu_rate,
        "gemm_s_best": gemm_best,
        "gemm_s_median": gemm_med,
        "gemm_gflops": flops / gemm_best / 1e9,
        "cpu_fraction_of_gemm_bound": gemm_fraction,
        "lava_samples": k,
        "lava_total_s": lava_total,
        "lava_sample_steps_per_s": lava_rate,
        "speedup_cpu_over_lava": cpu_rate / lava_rate,
        "load_average": os.getloadavg()[0],
        "bit_identical": not mismatches,
        "mismatches": mismatches,
        "spike_rate": rec.metadata["spike_rate"],
    }
    print(
        f"CPU backend : {cpu_best * 1e3:8.2f} ms best ({cpu_med * 1e3:.2f} median) for {sample_steps} sample-steps -> {cpu_rate:,.0f} sample-steps/s"
    )
    print(
        f"GEMM bound  : {gemm_best * 1e3:8.2f} ms best ({gemm_med * 1e3:.2f} median, {figures['gemm_gflops']:.1f} GFLOP/s) -> CPU backend at {figures['cpu_fraction_of_gemm_bound']:.0%} of the bound (target >= 30%)"
    )
    print(
        f"Lava fixed_pt: {k} samples in {lava_total:.2f} s (incl. build/compile); {lava_rate:,.1f} sample-steps/s after the first sample"
    )
    print(f"speed-up CPU/Lava: {figures['speedup_cpu_over_lava']:,.0f}x (target >= 1000x)")
    print(
        f"bit-identical on the {k} Lava samples (spikes, u, v of every population): {'yes' if not mismatches else 'NO: ' + ', '.join(mismatches)}"
    )
    print(f"spike rates {json.dumps({k2: round(v, 3) for k2, v in figures['spike_rate'].items()})}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0 if not mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
