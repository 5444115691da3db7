"""Benchmark suite: every backend on the same networks, recording the same variables.

Networks: LIF MLPs 64-128-10 (small), 784-512-512-10 (medium), 784-2048-2048-10 (large), the NIR
paper's N-MNIST CNN (``cnn_sinabs.nir``, Sinabs convention, calibrated on the benchmark inputs)
and its recurrent braille network (``braille_noDelay_bias_zero.nir``, default convention).

Recording (identical on every backend): every step, for every neuron population, its spikes, its
synaptic input current ``u`` and its membrane ``v``, kept in memory as [batch, time, *shape] arrays.
CPU and Lava: ``record="all"`` (spikes, u, v). Float backend: each neuron node's spikes and v, plus
its current (``i`` of a CubaLIF, else the output of the weight node feeding it). snnTorch and Norse:
the Linear output, the spikes and the membrane of every layer, copied into preallocated tensors.

Backends: the CPU backend (fixed point), the float backend (NIR graph in float32), Lava fixed_pt
and floating_pt (one sample at a time: the rate excludes the first sample, which carries Lava's
start-up; it does not depend on the batch size), snnTorch ``Leaky`` networks with the same weights
(MLPs), Norse ``lif_box`` steps in its side venv (MLPs, if ``~/.cache/neurocompile-peers/norse``
exists; a separate process, so not interleaved). Bounds: the same-shaped float32 matmuls
([B*T*positions, n_in] @ [n_in, n_out], convolutions as im2col) and int8 ``torch._int_mm``.

Timing: a warm-up, then best and median of N interleaved repetitions (each repetition runs every
in-process backend once), so that they see the same machine load. Checks: CPU vs Lava fixed_pt,
every spike, u and v of the samples Lava ran; the CPU backend on the float program vs Lava
floating_pt; snnTorch and Norse spikes vs the float backend.

    .venv/bin/python tools/bench.py [--quick] [--networks small,cnn] [--batches 1,256] [--steps 32]
        [--repeats 5] [--lava-samples 3] [--json OUT.json] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch

from neurocompile.backends.cpu import CpuBackend, _load_kernel
from neurocompile.backends.float_ref import FloatReference
from neurocompile.compiler.pipeline import compile_graph
from neurocompile.ir.program import FixedPointProgram
from neurocompile.semantics.discretization import Convention, get_convention
from neurocompile.semantics.float_form import float_program_of

ROOT = Path(__file__).resolve().parents[1]
NIR_PAPER_DIR = ROOT / "tests" / "fixtures" / "nir-paper"
NORSE_PYTHON = Path.home() / ".cache" / "neurocompile-peers" / "norse" / "bin" / "python"
RECORDING = "spikes, u (synaptic input current) and v of every neuron population, every step"
MLP_SIZES = {"small": (64, 128, 10), "medium": (784, 512, 512, 10), "large": (784, 2048, 2048, 10)}
ALL_NETWORKS = ("small", "medium", "large", "cnn", "braille")
# MLP neurons: tau = 1 ms at dt = 0.1 ms (beta 0.9) and r = tau/dt, so r*dt/tau = 1: snnTorch's Leaky
# (mem <- beta*mem + W x) and Norse's lif_box read the same graph without rescaling.
DT, TAU, R, V_TH = 1e-4, 1e-3, 10.0, 1.0
INPUT_RATE = {"small": 0.2, "medium": 0.1, "large": 0.1, "cnn": 0.1, "braille": 0.3}


@dataclass
class Network:
    """One benchmark network: its NIR graph, convention, compiled program and inputs."""

    name: str
    graph: nir.NIRGraph
    convention: Convention
    program: FixedPointProgram
    inputs: np.ndarray  # [max batch, T, *input shape], 0/1 uint8
    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # MLPs: (W, b) per layer

    @property
    def synapses(self) -> int:
        return sum(
            int(np.count_nonzero(s.weights)) if s.kind != "conv" else _conv_synapses(self, s)
            for s in self.program.synapses
        )

    @property
    def neurons(self) -> int:
        return sum(p.size for p in self.program.populations)


def _conv_synapses(net: Network, syn) -> int:
    positions = int(np.prod(net.program.population(syn.target).shape[1:]))
    return int(np.count_nonzero(syn.weights)) * positions


# --- networks --------------------------------------------------------------------------------


def mlp_graph(sizes, seed: int, input_rate: float, hidden_rate: float = 0.1) -> tuple[nir.NIRGraph, list]:
    """A LIF MLP whose layers spike at a few percent to a few tens of percent on random inputs (its weights scaled
    for inputs spiking at ``input_rate``, hidden layers at ``hidden_rate``)."""
    rng = np.random.default_rng(seed)
    nodes, edges, layers, src, rate = {"input": nir.Input(np.array([sizes[0]]))}, [], [], "input", input_rate
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0.02 / (n_in * rate), 0.6 / np.sqrt(n_in * rate), size=(n_out, n_in)).astype(np.float32)
        b = np.zeros(n_out, dtype=np.float32)
        ones = np.ones(n_out, dtype=np.float32)
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=b)
        nodes[f"lif{i}"] = nir.LIF(tau=TAU * ones, r=R * ones, v_leak=0 * ones, v_threshold=V_TH * ones)
        edges += [(src, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        layers.append((w, b))
        src, rate = f"lif{i}", hidden_rate
    nodes["output"] = nir.Output(np.array([sizes[-1]]))
    edges.append((src, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges), layers


def spike_inputs(shape, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.uint8)


def build_network(name: str, batch: int, steps: int) -> Network:
    """Graph, convention, program (calibrated on the benchmark's first 16 samples) and inputs."""
    layers = []
    if name in MLP_SIZES:
        graph, layers = mlp_graph(MLP_SIZES[name], seed=0, input_rate=INPUT_RATE[name])
        convention = Convention()
    else:
        from neurocompile.frontend.nir_io import load_graph

        file = {"cnn": "cnn_sinabs.nir", "braille": "braille_noDelay_bias_zero.nir"}[name]
        graph = load_graph(NIR_PAPER_DIR / file)
        convention = get_convention("sinabs" if name == "cnn" else "neurocompile")
    shape = compile_graph(graph, convention)[0].inputs[0].shape
    x = spike_inputs((batch, steps, *shape), INPUT_RATE[name], seed=1)
    program, _ = compile_graph(graph, convention, calibration=x[:16].astype(np.float32), source=name)
    return Network(name, graph, convention, program, x, layers)


def gemm_shapes(program: FixedPointProgram) -> list[tuple[int, int, int]]:
    """(rows per sample-step, n_in, n_out) of each synapse as a dense matmul (conv: im2col)."""
    sizes = {p.name: int(np.prod(p.shape)) for p in [*program.inputs, *program.populations]}
    shapes = []
    for syn in program.synapses:
        if syn.kind == "conv":
            c_out, c_in, kh, kw = syn.weights.shape
            positions = int(np.prod(program.population(syn.target).shape[1:]))
            shapes.append((positions, c_in * kh * kw, c_out))
        else:
            shapes.append((1, sizes[syn.source], sizes[syn.target]))
    return shapes


# --- runners: each returns a function that runs one batch and records the same variables ----


def float_record_keys(ref: FloatReference) -> list[str]:
    """Spikes and v of each neuron node, plus its current: ``i`` if it has one, else its input node's output."""
    keys = []
    for name in ref.order:
        variables = ref.ops[name].variables
        if "spikes" not in variables:
            continue
        keys += ref.keys_of(name)
        if "i" not in variables:
            feeder = next(src for src, back in ref.preds[name] if not back)
            keys.append(f"{feeder}.out")
    return keys


def snntorch_net(layers):
    import snntorch as snn

    linears, leakies = [], []
    for w, b in layers:
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data, lin.bias.data = torch.from_numpy(w), torch.from_numpy(b)
        linears.append(lin)
        # threshold V_TH / (r*dt/tau) = V_TH: see the MLP parameters above
        leakies.append(snn.Leaky(beta=1 - DT / TAU, threshold=V_TH, reset_mechanism="zero", reset_delay=False))
    return linears, leakies


@torch.no_grad()
def run_snntorch(linears, leakies, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Step the network over time; record each layer's Linear output (u), spikes and membrane (v)."""
    batch, steps = x.shape[:2]
    rec = {}
    for i, lin in enumerate(linears):
        for var in ("u", "v", "spikes"):
            rec[f"lif{i}.{var}"] = torch.empty(batch, steps, lin.out_features, device=x.device)
    mems = [leaky.init_leaky() for leaky in leakies]
    for t in range(steps):
        s = x[:, t]
        for i, (lin, leaky) in enumerate(zip(linears, leakies)):
            u = lin(s)
            s, mems[i] = leaky(u, mems[i])
            rec[f"lif{i}.u"][:, t], rec[f"lif{i}.v"][:, t], rec[f"lif{i}.spikes"][:, t] = u, mems[i], s
    return rec


def gemm_runner(shapes, batch: int, steps: int, dtype: torch.dtype):
    """The same-shaped matmuls alone: float32 ``@`` or int8 ``torch._int_mm`` (int32 results)."""
    g = torch.Generator().manual_seed(0)

    def matrix(rows, cols):
        if dtype == torch.int8:
            return torch.randint(-128, 128, (rows, cols), generator=g, dtype=torch.int8)
        return torch.rand(rows, cols, generator=g)

    pairs = [(matrix(batch * steps * pos, n_in), matrix(n_in, n_out)) for pos, n_in, n_out in shapes]
    if dtype == torch.int8:
        return lambda: [torch._int_mm(a, w) for a, w in pairs]
    return lambda: [a @ w for a, w in pairs]


def in_process_runners(net: Network, batch: int) -> dict:
    """Name -> zero-argument function running one batch with the common recording."""
    x = net.inputs[:batch]
    steps = x.shape[1]
    cpu = CpuBackend(net.program)
    ref = FloatReference(net.graph, net.convention)
    keys = float_record_keys(ref)
    xf = x.astype(np.float32)
    shapes = gemm_shapes(net.program)
    runners = {
        "cpu (fixed)": lambda: cpu.run(x, record="all"),
        "float (ours)": lambda: ref.run(xf, record=keys),
    }
    if net.layers:
        linears, leakies = snntorch_net(net.layers)
        xt = torch.from_numpy(xf)
        runners["snntorch"] = lambda: run_snntorch(linears, leakies, xt)
    runners["gemm fp32"] = gemm_runner(shapes, batch, steps, torch.float32)
    runners["gemm int8"] = gemm_runner(shapes, batch, steps, torch.int8)
    return runners


def interleaved_times(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Best and median seconds of each function over ``repeats`` rounds that run every function once."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), float(np.median(t))) for name, t in times.items()}


# --- Norse, in its side venv -----------------------------------------------------------------


def norse_worker(npz_in: str, npz_out: str) -> None:
    """Runs inside Norse's venv (source sent with ``python -c``): times the MLP with ``lif_box`` steps."""
    import statistics
    import time

    import numpy as np
    import torch
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step

    data = np.load(npz_in)
    n_layers, dt, r = int(data["n_layers"]), float(data["dt"]), float(data["r"])
    weights = [torch.from_numpy(data[f"w{i}"]) for i in range(n_layers)]
    biases = [torch.from_numpy(data[f"b{i}"]) for i in range(n_layers)]
    params = LIFBoxParameters(
        tau_mem_inv=torch.tensor(1 / float(data["tau"])), v_th=torch.tensor(float(data["v_th"])), method="heaviside"
    )
    x = torch.from_numpy(data["x"]).float()
    batch, steps = x.shape[:2]

    @torch.no_grad()
    def run():
        rec = {f"lif{i}.{v}": torch.empty(batch, steps, w.shape[0]) for i, w in enumerate(weights) for v in "uvs"}
        states = [LIFBoxFeedForwardState(v=torch.zeros(batch, w.shape[0])) for w in weights]
        for t in range(steps):
            s = x[:, t]
            for i, (w, b) in enumerate(zip(weights, biases)):
                u = r * torch.nn.functional.linear(s, w, b)  # Norse's lif_box has no r: the input carries it
                s, states[i] = lif_box_feed_forward_step(u, states[i], params, dt=dt)
                rec[f"lif{i}.u"][:, t], rec[f"lif{i}.v"][:, t], rec[f"lif{i}.s"][:, t] = u, states[i].v, s
        return rec

    rec = run()
    times = []
    for _ in range(int(data["repeats"])):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    spikes = {k[:-2] + ".spikes": v.numpy().astype(np.uint8) for k, v in rec.items() if k.endswith(".s")}
    np.savez(npz_out, best=min(times), median=statistics.median(times), **spikes)


def run_norse(net: Network, batch: int, repeats: int):
    """(best, median, spikes) from Norse's side venv, or None when it is not installed."""
    if not NORSE_PYTHON.exists() or not net.layers:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        npz_in, npz_out = f"{tmp}/in.npz", f"{tmp}/out.npz"
        arrays = {f"w{i}": w for i, (w, _) in enumerate(net.layers)} | {
            f"b{i}": b for i, (_, b) in enumerate(net.layers)
        }
        np.savez(
            npz_in,
            x=net.inputs[:batch],
            n_layers=len(net.layers),
            dt=DT,
            r=R,
            tau=TAU,
            v_th=V_TH,
            repeats=repeats,
            **arrays,
        )
        code = f"import sys\n{inspect.getsource(norse_worker)}\nnorse_worker(sys.argv[1], sys.argv[2])\n"
        subprocess.run([str(NORSE_PYTHON), "-c", code, npz_in, npz_out], check=True)
        out = np.load(npz_out)
        return float(out["best"]), float(out["median"]), {k: out[k] for k in out.files if k.endswith(".spikes")}


# --- Lava and the bit-identity checks ----------------------------------------------------------


def run_lava(net: Network, tag: str, samples: int):
    """(sample-steps/s after the first sample, recording of the ``samples`` first inputs)."""
    from neurocompile.backends.lava.backend import LavaBackend

    lava = LavaBackend(net.program, tag=tag)
    rec = lava.run(net.inputs[:samples], record="all")
    rate = lava.last_timing["steps_per_s"]
    if rate is None:  # Lava runs samples in blocks and does not time the first of each (start-up)
        raise SystemExit(f"{net.name}: Lava {tag} timed no sample after its start-up; raise --lava-samples")
    return rate, rec


def compare_exact(a, b) -> list[str]:
    """Keys whose arrays differ (compared as int64 for the fixed-point backends)."""
    return [k for k in a.arrays if not np.array_equal(a.arrays[k].astype(np.int64), b.arrays[k].astype(np.int64))]


def compare_float(lava_rec, cpu_rec) -> dict:
    """Lava floating_pt vs the CPU backend on the same float program: spikes equal? largest |u|,|v| gap."""
    spikes_differ = [
        k for k in lava_rec.arrays if k.endswith(".spikes") and not np.array_equal(lava_rec[k], cpu_rec[k])
    ]
    gap = max(float(np.max(np.abs(lava_rec[k] - cpu_rec[k]))) for k in lava_rec.arrays if not k.endswith(".spikes"))
    return {"spikes_identical": not spikes_differ, "spikes_differ": spikes_differ, "max_abs_state_gap": gap}


def spike_differences(peer: dict, float_rec) -> dict:
    """How many spikes of a peer library differ from the float backend's, per layer."""
    total = sum(int(np.asarray(v).size) for v in peer.values())
    differ = sum(int(np.count_nonzero(np.asarray(v) != float_rec[k])) for k, v in peer.items())
    return {"identical": differ == 0, "differing": differ, "compared": total}


# --- the suite -------------------------------------------------------------------------------


@dataclass
class Options:
    networks: list[str]
    batches: list[int]
    steps: int
    repeats: int
    lava_samples: int
    lava: bool


def bench_batch(net: Network, batch: int, opts: Options) -> tuple[list[dict], dict]:
    """Timings of the in-process backends (interleaved) and Norse at one batch size; peer spike checks."""
    load = os.getloadavg()[0]
    runners = in_process_runners(net, batch)
    times = interleaved_times(runners, opts.repeats)
    rows = [_row(net, batch, name, best, med, opts.repeats, load) for name, (best, med) in times.items()]
    checks = {}
    if net.layers:
        float_rec = runners["float (ours)"]()
        peer = {k: v.numpy() for k, v in runners["snntorch"]().items() if k.endswith(".spikes")}
        checks["snntorch_vs_float_spikes"] = spike_differences(peer, float_rec)
        norse = run_norse(net, batch, opts.repeats)
        if norse is not None:
            rows.append(_row(net, batch, "norse", norse[0], norse[1], opts.repeats, os.getloadavg()[0]))
            checks["norse_vs_float_spikes"] = spike_differences(norse[2], float_rec)
    return rows, checks


def _row(net: Network, batch: int, backend: str, best: float, median: float, repeats: int, load: float) -> dict:
    sample_steps = batch * net.inputs.shape[1]
    return {
        "network": net.name,
        "batch": batch,
        "backend": backend,
        "best_s": best,
        "median_s": median,
        "repeats": repeats,
        "sample_steps_per_s": sample_steps / best,
        "load_before": load,
    }


def bench_lava(net: Network, opts: Options) -> tuple[dict[str, float], dict]:
    """Lava rates per tag (sample-steps/s) and the bit-identity checks on the samples Lava ran."""
    k = opts.lava_samples
    rate_fixed, fixed = run_lava(net, "fixed_pt", k)
    rate_float, floating = run_lava(net, "floating_pt", k)
    x = net.inputs[:k]
    checks = {
        "cpu_vs_lava_fixed_pt": {
            "samples": k,
            "mismatches": compare_exact(fixed, CpuBackend(net.program).run(x, record="all")),
        },
        "cpu_float_program_vs_lava_floating_pt": {
            "samples": k,
            **compare_float(floating, CpuBackend(float_program_of(net.program)).run(x, record="all")),
        },
    }
    checks["cpu_vs_lava_fixed_pt"]["identical"] = not checks["cpu_vs_lava_fixed_pt"]["mismatches"]
    return {"lava fixed_pt": rate_fixed, "lava floating_pt": rate_float}, checks


def bench_network(name: str, opts: Options) -> dict:
    net = build_network(name, max(*opts.batches, opts.lava_samples), opts.steps)
    print(f"[{name}] {net.neurons} neurons, {net.synapses} synapses; load {os.getloadavg()[0]:.2f}", flush=True)
    rows, checks = [], {}
    for batch in opts.batches:
        batch_rows, batch_checks = bench_batch(net, batch, opts)
        rows += batch_rows
        checks[f"batch {batch}"] = batch_checks
    if opts.lava:
        load = os.getloadavg()[0]
        rates, checks["lava"] = bench_lava(net, opts)
        for batch in opts.batches:  # one sample at a time: the same rate at every batch size
            for tag, rate in rates.items():
                seconds = batch * opts.steps / rate
                rows.append(_row(net, batch, tag, seconds, seconds, opts.lava_samples - 1, load))
    cpu = CpuBackend(net.program).run(net.inputs[: min(opts.batches)], record=None)
    return {
        "name": name,
        "neurons": net.neurons,
        "synapses": net.synapses,
        "gemm_shapes": gemm_shapes(net.program),
        "convention": net.convention.name,
        "input_rate": float(net.inputs.mean()),
        "spike_rate": cpu.metadata["spike_rate"],
        "cpu_kernels": {f"batch {b}": cpu_kernels(net, b) for b in opts.batches},
        "rows": _with_ratios(rows),
        "checks": checks,
    }


def cpu_kernels(net: Network, batch: int) -> dict:
    """The kernels the CPU backend chose for this batch (per synapse and population), from its run
    metadata, and the peak memory growth of that run (outputs recorded)."""
    meta = CpuBackend(net.program).run(net.inputs[:batch], record=None).metadata
    return {
        "synapse": meta.get("synapse_kernel"),
        "neuron": meta.get("neuron_kernel"),
        "peak_growth_mb": peak_growth_mb(net, batch),
    }


PEAK_GROWTH = """
import sys, numpy as np
from neurocompile.backends.cpu import CpuBackend
from neurocompile.ir.program import FixedPointProgram
def kb(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
backend, x = CpuBackend(FixedPointProgram.load(sys.argv[1])), np.load(sys.argv[2])
base = kb("VmRSS")
backend.run(x, record=None)
print((kb("VmHWM") - base) / 1024)
"""


def peak_growth_mb(net: Network, batch: int) -> float:
    """How far one CPU backend run (outputs recorded) raises the resident set above the loaded program
    and inputs (MB), in a fresh process, so that no earlier run's memory is reused."""
    with tempfile.TemporaryDirectory() as tmp:
        program, inputs = Path(tmp) / "p.ncp", Path(tmp) / "x.npy"
        net.program.save(program)
        np.save(inputs, net.inputs[:batch])
        out = subprocess.run([sys.executable, "-c", PEAK_GROWTH, program, inputs], capture_output=True, text=True)
    return float(out.stdout) if out.returncode == 0 else float("nan")


def _with_ratios(rows: list[dict]) -> list[dict]:
    """Add each row's speed-up over Lava fixed_pt and the fp32 GEMM bound's share of its time."""
    for row in rows:
        same = {r["backend"]: r for r in rows if r["batch"] == row["batch"]}
        lava = same.get("lava fixed_pt")
        row["speedup_vs_lava_fixed_pt"] = row["sample_steps_per_s"] / lava["sample_steps_per_s"] if lava else None
        row["gemm_fp32_fraction"] = same["gemm fp32"]["best_s"] / row["best_s"]
    return rows


# --- output ----------------------------------------------------------------------------------


def table(result: dict) -> str:
    lines = [
        f"{'network':<8} {'batch':>5} {'backend':<17} {'best ms':>10} {'median ms':>10} {'us/sample-step':>14} "
        f"{'x Lava fixed':>12} {'fp32 GEMM/time':>14}"
    ]
    for net in result["networks"]:
        for r in net["rows"]:
            speedup = f"{r['speedup_vs_lava_fixed_pt']:,.1f}" if r["speedup_vs_lava_fixed_pt"] else "-"
            lines.append(
                f"{r['network']:<8} {r['batch']:>5} {r['backend']:<17} {r['best_s'] * 1e3:>10.2f} {r['median_s'] * 1e3:>10.2f} "
                f"{1e6 / r['sample_steps_per_s']:>14.3f} {speedup:>12} {r['gemm_fp32_fraction']:>14.1%}"
            )
    return "\n".join(lines)


def checks_text(result: dict) -> str:
    lines = []
    for net in result["networks"]:
        for scope, kernels in net["cpu_kernels"].items():
            lines.append(f"{net['name']:<8} {scope:<9} cpu run: {json.dumps(kernels)}")
        for scope, checks in net["checks"].items():
            for check, value in checks.items():
                lines.append(f"{net['name']:<8} {scope:<9} {check}: {json.dumps(value)}")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Speed-up over Lava fixed_pt against network size (synapses), one line per backend and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted(result["networks"], key=lambda n: n["synapses"])
    fig, ax = plt.subplots(figsize=(8, 5))
    backends = sorted({r["backend"] for n in nets for r in n["rows"]} - {"lava fixed_pt"})
    for batch, style in zip(result["batches"], ("--", "-")):
        for color, backend in enumerate(backends):
            points = [
                (n["synapses"], r["speedup_vs_lava_fixed_pt"])
                for n in nets
                for r in n["rows"]
                if r["backend"] == backend and r["batch"] == batch and r["speedup_vs_lava_fixed_pt"]
            ]
            if points:
                ax.plot(*zip(*points), style, color=f"C{color}", marker="o", label=f"{backend}, batch {batch}")
    ax.set(xscale="log", yscale="log", xlabel="synapses", ylabel="speed-up over Lava fixed_pt (sample-steps/s)")
    ax.set_title(
        f"T={result['steps']}, load {result['load_before']:.1f} -> {result['load_after']:.1f} on {result['cores']} cores"
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    from neurocompile.files import save_figure

    save_figure(fig, path)


def parse_args(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(ALL_NETWORKS), help=f"comma-separated subset of {ALL_NETWORKS}")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timed repetitions (after one warm-up)")
    ap.add_argument("--lava-samples", type=int, default=3, help="samples Lava runs (the first is not timed)")
    ap.add_argument("--no-lava", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small MLP, batches 1 and 8, T=8, 2 repetitions")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--plot", help="write the speed-up plot to this PNG")
    return ap.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    if args.quick:
        return Options(["small"], [1, 8], 8, 2, 2, not args.no_lava)
    return Options(
        args.networks.split(","),
        [int(b) for b in args.batches.split(",")],
        args.steps,
        args.repeats,
        max(2, args.lava_samples),
        not args.no_lava,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = options(args)
    load_before = os.getloadavg()[0]
    print(
        f"T={opts.steps}, batches {opts.batches}, {opts.repeats} interleaved repetitions, {opts.lava_samples} Lava samples; "
        f"torch threads {torch.get_num_threads()}, C kernel {'yes' if _load_kernel() else 'no'}; load {load_before:.2f} on {os.cpu_count()} cores",
        flush=True,
    )
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "steps": opts.steps,
        "batches": opts.batches,
        "repeats": opts.repeats,
        "lava_samples": opts.lava_samples if opts.lava else 0,
        "recording": RECORDING,
        "norse": f"side venv {NORSE_PYTHON.parents[1]}" if NORSE_PYTHON.exists() else "not installed",
        "load_before": load_before,
        "networks": [bench_network(name, opts) for name in opts.networks],
    }
    result["load_after"] = os.getloadavg()[0]
    print(table(result))
    print(checks_text(result))
    print(
        f"load average {result['load_before']:.2f} before, {result['load_after']:.2f} after; Norse: {result['norse']}"
    )
    for path in filter(None, (args.json, args.plot)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.plot:
        plot(result, args.plot)
    identical = all(
        n["checks"].get("lava", {}).get("cpu_vs_lava_fixed_pt", {}).get("identical", True) for n in result["networks"]
    )
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
