"""Scaling curves: compile and simulate time and peak memory against network size, 10 k to 100 M synapses.

Networks: LIF MLPs with random float32 weights (``tools.bench.mlp_graph``; ``--networks``: ``h`` for the square
``h-h-h-10``, or layer sizes; by default ``h`` from 64 to 7072, 9 k to 100 M synapses, and 1024-8192-8192-10),
written as NIR files (gzip, as nir writes them) into ``--work`` once. Each measurement runs in a fresh process;
its peak resident memory comes from ``wait4`` (the process and every child it waited for, as ``/usr/bin/time``
reports it):

- compile: ``neurocompile compile X.nir -o X.ncp`` (no calibration), wall time;
- simulate: the CPU backend on ``X.ncp`` in a child (``--simulate-child``): ``--batch`` samples of ``--steps``
  steps of 5% random input spikes, output spikes recorded, after a one-step warm-up run; time per sample-step
  of the best of the timed runs (as many as fit a second, at least one), and the child's peak memory (loading
  the program included).

The interpreter's baseline is the peak of the smallest network's compile (its weights are a few kB); the table
gives each compile's peak above it against the weights' float32 bytes. This process stays small (it writes the
networks in children): a child's peak as ``wait4`` reports it is at least its parent's size when it started. ``--write-docs`` puts the table into
``docs/benchmarks.md`` and the plot into ``docs/img/scaling.png``.

    .venv/bin/python -m tools.bench_scaling [--networks 64,224,708,2236,4096,1024-8192-8192-10,7072] [--batch 16] [--steps 16]
        [--work DIR] [--json OUT.json] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NEUROCOMPILE = Path(sys.executable).with_name("neurocompile")
NETWORKS = "64,224,708,2236,4096,1024-8192-8192-10,7072"
INPUT_RATE = 0.05
MARKS = {"scaling": ("<!-- scaling: tools/bench_scaling.py --write-docs writes this -->", "<!-- /scaling -->")}


def sizes_of(network: str) -> tuple[int, ...]:
    """``"h"``: the square ``h-h-h-10``; ``"a-b-...-z"``: those layer sizes."""
    sizes = tuple(int(n) for n in network.split("-"))
    return sizes if len(sizes) > 1 else (sizes[0], sizes[0], sizes[0], 10)


def synapses_of(sizes) -> int:
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def network_file(work: Path, network: str) -> Path:
    """The NIR file of ``network`` (:func:`sizes_of`), written on first use by a child process (this one stays small: a
    child's peak as ``wait4`` reports it is at least its parent's size when it was started)."""
    path = work / f"mlp{'-'.join(map(str, sizes_of(network)))}.nir"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "tools.bench_scaling", "--make-network", network, str(path)], check=True)
    return path


def make_network(network: str, path: Path) -> None:
    """(In a child) write ``network`` to ``path`` (atomically)."""
    import nir

    from tools.bench import mlp_graph

    sizes = sizes_of(network)
    graph, _ = mlp_graph(sizes, seed=sizes[1], input_rate=INPUT_RATE)
    nir.write(str(path.with_suffix(".tmp")), graph)
    path.with_suffix(".tmp").rename(path)


def measured(argv: list[str]) -> tuple[float, int, str]:
    """Run ``argv``: (wall seconds, peak resident bytes of it and the children it waited for, its stdout)."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        out = proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)  # reaped here, with its resource usage
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errors.seek(0)
            raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{errors.read()}")
    return seconds, usage.ru_maxrss * 1024, out


def simulate_child(program_path: str, batch: int, steps: int) -> None:
    """(In a fresh process) time the CPU backend on ``program_path``; prints JSON."""
    from backends.cpu import CpuBackend
    from neurocompile.ir.program import FixedPointProgram

    program = FixedPointProgram.load(program_path)
    backend = CpuBackend(program)
    n_in = int(np.prod(program.inputs[0].shape))
    rng = np.random.default_rng(0)
    backend.run((rng.random((batch, 1, n_in)) < INPUT_RATE).astype(np.uint8))
    x = (rng.random((batch, steps, n_in)) < INPUT_RATE).astype(np.uint8)
    times = []
    while not times or (sum(times) < 1.0 and len(times) < 50):  # the best of runs over at least a second
        start = time.perf_counter()
        backend.run(x)
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {"seconds": min(times), "runs": len(times), "per_sample_step_us": min(times) / (batch * steps) * 1e6}
        )
    )


def measure(work: Path, network: str, batch: int, steps: int) -> dict:
    sizes = sizes_of(network)
    model = network_file(work, network)
    program = model.with_suffix(".ncp")
    compile_s, compile_peak, _ = measured([str(NEUROCOMPILE), "compile", str(model), "-o", str(program)])
    child = [sys.executable, "-m", "tools.bench_scaling", "--simulate-child", str(program)]
    _, simulate_peak, out = measured([*child, "--batch", str(batch), "--steps", str(steps)])
    return {
        "sizes": list(sizes),
        "synapses": synapses_of(sizes),
        "nir_bytes": model.stat().st_size,
        "ncp_bytes": program.stat().st_size,
        "compile_s": compile_s,
        "compile_peak": compile_peak,
        "simulate_peak": simulate_peak,
        **json.loads(out),
    }


def table(rows: list[dict], batch: int, steps: int, load: tuple) -> str:
    from tools.bench_map import measured_on  # here: this process stays small while it measures

    baseline = rows[0]["compile_peak"]
    lines = [
        "| network | synapses | compile | compile peak | above baseline / float32 weights | "
        f"simulate (batch {batch}, {steps} steps) | simulate peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        weights = row["synapses"] * 4
        ratio = (row["compile_peak"] - baseline) / weights
        lines.append(
            f"| {'-'.join(map(str, row['sizes']))} | {row['synapses']:,} | {row['compile_s']:.2f} s | "
            f"{row['compile_peak'] / 2**20:,.0f} MB | {ratio:.2f} | {row['per_sample_step_us']:,.1f} us/sample-step | "
            f"{row['simulate_peak'] / 2**20:,.0f} MB |"
        )
    lines += [
        "",
        f"Baseline (the interpreter: the smallest compile's peak) {baseline / 2**20:.0f} MB. "
        + measured_on(load, ".venv/bin/python -m tools.bench_scaling --write-docs"),
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurocompile.files import save_figure

    synapses = [row["synapses"] for row in rows]
    panels = [
        ("compile time (s)", [row["compile_s"] for row in rows]),
        ("compile peak memory (MB)", [row["compile_peak"] / 2**20 for row in rows]),
        ("simulate time per sample-step (us)", [row["per_sample_step_us"] for row in rows]),
        ("simulate peak memory (MB)", [row["simulate_peak"] / 2**20 for row in rows]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (title, values) in zip(axes, panels):
        ax.loglog(synapses, values, "o-")
        ax.set_title(title)
        ax.set_xlabel("synapses")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, "scaling plot")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", default=NETWORKS, help="h (an h-h-h-10 MLP) or layer sizes a-b-...-z, comma-separated"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "neurocompile-scaling")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md and docs/img/scaling.png")
    parser.add_argument("--simulate-child", help=argparse.SUPPRESS)
    parser.add_argument("--make-network", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_network:
        make_network(args.make_network[0], Path(args.make_network[1]))
        return 0
    if args.simulate_child:
        simulate_child(args.simulate_child, args.batch, args.steps)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    networks = args.networks.split(",")
    for network in networks:  # every file first: writing them is not measured
        network_file(args.work, network)
    load_before = os.getloadavg()[0]
    rows = []
    for network in networks:
        rows.append(measure(args.work, network, args.batch, args.steps))
        row = rows[-1]
        print(
            f"{row['synapses']:>12,} synapses: compile {row['compile_s']:.2f} s {row['compile_peak'] / 2**20:,.0f} MB, "
            f"simulate {row['per_sample_step_us']:,.1f} us/sample-step {row['simulate_peak'] / 2**20:,.0f} MB",
            flush=True,
        )
    text = table(rows, args.batch, args.steps, (load_before, os.getloadavg()[0]))
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "batch": args.batch, "steps": args.steps}, indent=1))
    if args.write_docs:
        from tools.bench_map import write_between

        write_between(ROOT / "docs" / "benchmarks.md", "scaling", text, MARKS)
        plot(rows, ROOT / "docs" / "img" / "scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
