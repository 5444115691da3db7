"""Benchmark: on-chip learning on the CPU mirror vs Lava fixed_pt, on the same learning run.

One run measures, on one plastic program (64-128-10 LIF, both layers plastic: the readout learns
from a target stream, the hidden layer from the readout's error through a feedback synapse):

* Lava fixed_pt: one stream of --steps steps (graph build and start-up reported apart from the
  stepping time);
* the CPU mirror (``backends.cpu``): the same single stream (best of --repeats, after a warm-up
  that also compiles the kernel), and --learners independent learners in one call;

checks that the CPU mirror's final weights equal Lava's bit for bit, and prints the figures, the
ratios and the machine load (``os.getloadavg``) before and after. The input is the digits dataset
encoded as spikes (samples back to back), the target 64 on the label's output at every step.

Then ``neurocompile learn`` end to end on the shipped model (``models/digits_mlp.pt``, OTTT, readout), the
first ``--learn-samples`` training digits, once with ``--backend cpu`` and once with ``--backend lava``, each a
fresh command: the learning stream's time as the command reports it (``timing.learn_s``: building the backend,
its set-up or Lava's start-up, and stepping) and its stepping alone (``timing.step_s``).

    .venv/bin/python tools/bench_learning.py [--steps 1000] [--learners 256] [--learn-samples 200] [--json out.json]
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

from neurocompile.backends import create_backend
from neurocompile.ir.plasticity import Factor, LearningRule, LearningSignal, Product, SignalTerm, Surrogate
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits_mlp.pt"
SURROGATE = Surrogate(table=(64, 52, 40, 30, 22, 15, 10, 6, 3, 1, 0), shift=6)


def make_program(sizes=(64, 128, 10), seed=0) -> FixedPointProgram:
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = sizes
    rule = LearningRule(
        products=(Product("u0", (Factor("x1"), Factor("y2")), mantissa=-1, exponent=0),),
        rng_seed=seed,
        x1_impulse=16.0,
        x1_tau=8,
    )
    hidden = LearningSignal(surrogate=SURROGATE, y2=SignalTerm("surrogate", 6))
    output = LearningSignal(target="target", output_shift=6, surrogate=SURROGATE, y2=SignalTerm("surrogate", 4))
    pops = [
        Population("hid", (n_hid,), du=410, dv=410, vth=60, bias_mant=np.zeros(n_hid, np.int32), learning=hidden),
        Population("out", (n_out,), du=410, dv=410, vth=60, bias_mant=np.zeros(n_out, np.int32), learning=output),
    ]
    w_in = (rng.normal(0, 40, size=(n_hid, n_in)).round().clip(-126, 126) // 2 * 2).astype(np.int32)
    w_out = (rng.normal(0, 30, size=(n_out, n_hid)).round().clip(-126, 126) // 2 * 2).astype(np.int32)
    feedback = (rng.normal(0, 40, size=(n_hid, n_out)).round().clip(-126, 126) // 2 * 2).astype(np.int32)
    syns = [
        Synapse("w_in", "input", "hid", "dense", w_in, learning=rule),
        Synapse("w_out", "hid", "out", "dense", w_out, learning=LearningRule(**{**vars(rule), "rng_seed": seed + 10})),
        Synapse("feedback", "out", "hid", "dense", feedback, signal="error"),
    ]
    inputs = [InputPort("input", (n_in,)), InputPort("target", (n_out,), kind="target")]
    return FixedPointProgram(inputs, pops, syns, ["out"], {"source": "bench_learning"}).validate()


def make_stream(batch: int, steps: int, n_in: int, n_out: int, sample_steps: int = 32, seed: int = 0):
    """Digits samples back to back (``sample_steps`` each), one shuffled order per learner."""
    from neurocompile.data import load_digits_spikes

    x, y = load_digits_spikes(steps=sample_steps, split="train", seed=seed)
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    n_samples = -(-steps // sample_steps)
    spikes = np.zeros((batch, n_samples * sample_steps, n_in), np.uint8)
    target = np.zeros((batch, n_samples * sample_steps, n_out), np.int32)
    for b in range(batch):
        order = rng.integers(0, len(x), size=n_samples)
        spikes[b] = x[order].reshape(-1, n_in)
        target[b] = np.repeat(np.eye(n_out, dtype=np.int32)[y[order]] * 64, sample_steps, axis=0)
    return {"input": spikes[:, :steps], "target": target[:, :steps]}


def learn_timing(backend: str, samples: int) -> dict:
    """``neurocompile learn`` of the shipped model on ``samples`` digits on ``backend``: its ``timing``."""
    with tempfile.TemporaryDirectory() as work:
        command = [str(Path(sys.executable).with_name("neurocompile")), "learn", str(MODEL), "--rule", "ottt"]
        command += ["--backend", backend, "--limit", str(samples), "--json", "-o", str(Path(work) / "learned.ncp")]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["timing"]


def print_learn_timing(learned: dict, samples: int) -> None:
    """The end-to-end ``learn`` figures of both backends and their ratios."""
    cpu_t, lava_t = learned["cpu"], learned["lava"]
    print(f"neurocompile learn, {samples} digits ({cpu_t['learning_steps']:,} steps), each a fresh command:")
    for backend, t in learned.items():
        print(f"  {backend}: {t['learn_s']:.4g} s (stepping {t['step_s']:.4g} s, set-up {t['setup_s']:.4g} s)")
    print(
        f"  cpu vs lava: {lava_t['learn_s'] / cpu_t['learn_s']:,.0f}x end to end, "
        f"{lava_t['step_s'] / cpu_t['step_s']:,.0f}x stepping"
    )


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--learners", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--learn-samples", type=int, default=200, help="digits of the end-to-end learn (0: none)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    program = make_program()
    load_before = os.getloadavg()
    one = make_stream(1, args.steps, 64, 10)
    many = make_stream(args.learners, args.steps, 64, 10, seed=1)

    lava, lava_wall = timed(lambda: create_backend("lava", program).run(one))
    lava_run_s = lava.metadata["timing"]["run_s"]
    cpu = create_backend("cpu", program)
    cpu.run(one)  # warm-up: compiles and loads the kernel
    cpu_s = min(timed(lambda: cpu.run(one))[1] for _ in range(args.repeats))
    rec = cpu.run(one)
    many_rec, many_s = timed(lambda: cpu.run(many))
    learned = {b: learn_timing(b, args.learn_samples) for b in ("cpu", "lava")} if args.learn_samples else {}
    load_after = os.getloadavg()

    exact = all(
        np.array_equal(a.weights, b.weights)
        for a, b in zip(lava.metadata["programs"][0].synapses, rec.metadata["programs"][0].synapses, strict=True)
    )
    changed = sum(
        int(np.count_nonzero(a.weights != b.weights))
        for a, b in zip(program.synapses, rec.metadata["programs"][0].synapses, strict=True)
    )
    figures = {
        "network": "64-128-10, both layers plastic (OTTT-style u0*x1*y2, feedback alignment)",
        "steps": args.steps,
        "lava_fixed_pt_wall_s": lava_wall,
        "lava_fixed_pt_run_s": lava_run_s,
        "lava_ms_per_step": 1e3 * lava_run_s / args.steps,
        "cpu_single_stream_s": cpu_s,
        "cpu_us_per_step": 1e6 * cpu_s / args.steps,
        "speedup_vs_lava_run": lava_run_s / cpu_s,
        "speedup_vs_lava_wall": lava_wall / cpu_s,
        "learners": args.learners,
        "cpu_learners_s": many_s,
        "cpu_learner_steps_per_s": args.learners * args.steps / many_s,
        "learning_kernel": rec.metadata.get("learning_kernel"),
        "weights_bit_exact_with_lava": exact,
        "weights_changed": changed,
        "learn_samples": args.learn_samples,
        "learn_timing": learned,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
    }
    print(f"learning run: {figures['network']}, {args.steps} steps")
    print(
        f"  Lava fixed_pt: {lava_wall:.1f} s wall, {lava_run_s:.2f} s stepping = {figures['lava_ms_per_step']:.2f} ms/step"
    )
    print(
        f"  CPU mirror ({figures['learning_kernel']}): {cpu_s * 1e3:.1f} ms = {figures['cpu_us_per_step']:.1f} us/step"
    )
    print(
        f"  speed-up: {figures['speedup_vs_lava_run']:.0f}x (stepping), {figures['speedup_vs_lava_wall']:.0f}x (wall)"
    )
    print(
        f"  {args.learners} independent learners: {many_s:.2f} s = "
        f"{figures['cpu_learner_steps_per_s']:,.0f} learner-steps/s"
    )
    print(f"  final weights bit-exact with Lava: {exact} ({changed} weights changed by learning)")
    if learned:
        print_learn_timing(learned, args.learn_samples)
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
