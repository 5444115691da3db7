"""Adaptation on chip: a network trained offline on digits 0-4 learns 5-9 on chip.

1. An MLP (64-512-512-5, LIF, hardware-aware, 2 epochs: wide and briefly trained, so that its
   hidden features also separate digits it never saw) is trained offline with BPTT on digits 0-4
   (``models/digits04_mlp.pt``; trained here when missing, ``--retrain`` to redo it).
2. It is compiled to a fixed-point program (calibrated on 0-4) and its readout grows to 10
   outputs: rows 0-4 keep their trained weights, rows 5-9 are fresh (zero weights, and a bias that
   holds them near the threshold: a neuron that never comes near its threshold has no surrogate
   gradient and would never learn).
3. The readout learns on chip (CPU mirror, fixed point) from ``--epochs`` passes over the training
   digits 5-9, with OTTT or S-TLLR and a wide surrogate (``--surrogate-slope 1``: far below the
   threshold a neuron still learns); the hidden layers stay frozen. The stream is timed by the program
   (``onchip.StreamTiming``). Twice: on 5-9 alone, and with a replay buffer of ``--replay`` stored training
   digits 0-4 (an even share of each class, ``session.replay_buffer``: what a Loihi system's embedded CPU
   would hold) mixed into every pass.
4. Held-out accuracy on 0-4, on 5-9 and on all ten digits (10-way), before and after, shows what was
   learned and what was forgotten. The final weights depend on the last samples of the stream, so the
   run is repeated for ``--orders`` shuffles of it and the figures are their mean (and range).
   ``--plot`` draws them.

    .venv/bin/python tools/adaptation_demo.py [--rule ottt|stllr] [--lr 0.00025] [--replay 250] [--plot OUT.png] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from neurocompile import api
from neurocompile.backends import create_backend
from neurocompile.data import drained, load_digits_spikes
from neurocompile.ir.program import BIAS_MANT_BITS
from neurocompile.learning import RULES, onchip
from neurocompile.learning.session import replay_buffer, spike_bytes

MODEL = Path("models/digits04_mlp.pt")
OLD, NEW = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
STEPS = 16
HIDDEN, EPOCHS = (512, 512), 2  # wide and briefly trained: hidden features that also separate unseen digits


def split(x, y, classes):
    keep = np.isin(y, classes)
    return x[keep], y[keep]


def train_old_classes(x, y, xt, yt) -> None:
    """BPTT on digits 0-4 (the shipped model's recipe, 5 outputs); writes ``MODEL``."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits04.npz"
        np.savez(data, x_train=x.astype(np.uint8), y_train=y, x_test=xt.astype(np.uint8), y_test=yt)
        api.train(
            data=str(data), steps=STEPS, epochs=EPOCHS, hidden=HIDDEN, hardware_aware=True, seed=0, output=str(MODEL)
        )


def grow_readout(program, n_out: int = 10, rest: float = 0.9):
    """The readout population and synapse grown to ``n_out`` outputs. The new rows are fresh: zero
    weights and a bias that holds ``v`` at ``rest`` of the threshold without input, or as close as
    the 13-bit bias register allows, where the surrogate gradient is alive."""
    out = program.population(program.outputs[0])
    syn = program.synapses_into(out.name)[0]
    extra = n_out - out.size
    bias = np.broadcast_to(np.asarray(out.bias_mant), (out.size,))
    fresh = round(rest * (int(out.vth) << 6) * int(out.dv) / 4096 / 2 ** int(out.bias_exp))  # v* = bias / (dv/4096)
    fresh = min(fresh, 2 ** (BIAS_MANT_BITS - 1) - 1)  # the 13-bit bias register
    out.shape = (n_out,)
    out.bias_mant = np.concatenate([bias, np.full(extra, fresh, np.int32)])
    syn.weights = np.concatenate([syn.weights, np.zeros((extra, syn.weights.shape[1]), np.int32)])
    return program.validate()


def accuracy(program, x, y) -> float:
    """Held-out accuracy of the deployed program, drained as ``simulate`` runs it."""
    deployed = onchip.without_learning(program)
    counts = create_backend("cpu", deployed).run(drained(x, deployed.output_latency())).output_spikes().sum(1)
    return float((counts.argmax(-1) == y).mean())


def learn_new_classes(program, args, order_seed: int, x, y):
    """The program after on-chip learning from ``args.epochs`` shuffled passes over ``x`` (digits 5-9, and the
    replayed 0-4 if any)."""
    learn, report = onchip.compile_learning(
        program, args.rule, "readout", lr=args.lr, sample_steps=STEPS, surrogate_alpha=args.surrogate_slope
    )
    rng = np.random.default_rng(order_seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(args.epochs)])
    inputs, targets = onchip.timed_stream(x[order], y[order], report.timing, 10, report.target_value)
    rec = create_backend("cpu", learn).run({"input": inputs, "target": targets})
    return rec.metadata["programs"][0], report


def plot(path, before: dict, runs: dict, rule: str) -> None:
    """Held-out accuracy before, and after learning 5-9 without and with replay (mean, each order a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(before)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    pos = np.arange(len(names))
    width = 0.8 / (1 + len(runs))
    ax.bar(pos - width * len(runs) / 2, [100 * before[n] for n in names], width, label="before (trained on 0-4)")
    for k, (label, after) in enumerate(runs.items(), start=1):
        shift = width * (k - len(runs) / 2)
        each = np.array([[100 * run[n] for n in names] for run in after])
        ax.bar(pos + shift, each.mean(0), width, label=f"after on-chip {rule.upper()} on 5-9, {label}")
        for j in range(len(names)):
            ax.plot(np.full(len(each), pos[j] + shift), each[:, j], "k.", ms=3)
    ax.set_xticks(pos, [f"held-out {n}" for n in names])
    ax.set_ylabel("accuracy (%, 10-way; dots: stream orders)")
    ax.set_ylim(0, 119)
    ax.legend(loc="upper center", fontsize=7, ncol=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=RULES, default="ottt")
    parser.add_argument("--lr", type=float, default=0.00025)
    parser.add_argument(
        "--surrogate-slope", type=float, default=1.0, help="wide (1): a fresh output far below threshold still learns"
    )
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training digits 5-9")
    parser.add_argument("--orders", type=int, default=4, help="shuffles of the stream, each learned from scratch")
    parser.add_argument("--replay", type=int, default=250, help="stored digits 0-4 mixed into the stream (0: none)")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--plot")
    parser.add_argument("--json")
    return parser


def adapt(args: argparse.Namespace) -> dict:
    """The experiment (module doc) with ``args`` (:func:`parser`'s options): accuracies before, and after each
    stream order without and with replay, and the last learning report's table."""
    x, y = load_digits_spikes(steps=STEPS, split="train", seed=0)
    xt, yt = load_digits_spikes(steps=STEPS, split="test", seed=0)
    x, xt, y, yt = np.asarray(x, np.uint8), np.asarray(xt, np.uint8), np.asarray(y), np.asarray(yt)
    if args.retrain or not MODEL.exists():
        train_old_classes(*split(x, y, OLD), *split(xt, yt, OLD))
    program, _ = api.compile(str(MODEL), split(x, y, OLD)[0], steps=STEPS)
    program = grow_readout(onchip.without_learning(program))
    tests = {"0-4": split(xt, yt, OLD), "5-9": split(xt, yt, NEW), "0-9": (xt, yt)}
    before = {name: accuracy(program, *data) for name, data in tests.items()}
    x_new, y_new = split(x, y, NEW)
    streams, buffer = {"no replay": (x_new, y_new)}, {"samples": 0, "bytes": 0}
    if args.replay:
        x_kept, y_kept = replay_buffer(*split(x, y, OLD), args.replay, 0, "digits 0-4")
        buffer = {"samples": len(y_kept), "bytes": spike_bytes(x_kept)}
        streams[f"replaying {args.replay} digits 0-4"] = (
            np.concatenate([x_new, x_kept]),
            np.concatenate([y_new, y_kept]),
        )
    runs, started = {}, time.perf_counter()
    for label, (xs, ys) in streams.items():
        runs[label] = []
        for order_seed in range(args.orders):
            learned, report = learn_new_classes(program, args, order_seed, xs, ys)
            runs[label].append({name: accuracy(learned, *data) for name, data in tests.items()})
    return {
        "rule": args.rule,
        "lr": args.lr,
        "surrogate_slope": args.surrogate_slope,
        "epochs": args.epochs,
        "orders": args.orders,
        "replay": buffer,
        "seconds": time.perf_counter() - started,
        "before": before,
        "after": {label: {n: float(np.mean([r[n] for r in after])) for n in tests} for label, after in runs.items()},
        "after_each_order": runs,
        "report": report.table(),
    }


def main() -> None:
    args = parser().parse_args()
    figures = adapt(args)
    buffer, before = figures["replay"], figures["before"]
    print(figures["report"])
    print(
        f"learned digits 5-9 on chip ({args.rule}, CPU mirror, {args.epochs} passes, {args.orders} stream orders, "
        f"{figures['seconds']:.2f} s in all); replay buffer: {buffer['samples']} digits 0-4 "
        f"({buffer['bytes']:,} bytes of spikes)"
    )
    for label, after in figures["after_each_order"].items():
        print(f"  {label}:")
        for name in before:
            each = [100 * run[name] for run in after]
            print(
                f"    held-out {name}: {100 * before[name]:.1f}% before, {np.mean(each):.1f}% after "
                f"(orders: {', '.join(f'{r:.1f}' for r in each)})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if args.plot:
        plot(args.plot, before, figures["after_each_order"], args.rule)


if __name__ == "__main__":
    main()
