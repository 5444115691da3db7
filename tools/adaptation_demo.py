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
   threshold a neuron still learns); the hidden layers stay frozen.
4. Held-out accuracy on 0-4 and on 5-9 (10-way), before and after, shows what was learned and
   what was forgotten. The final weights depend on the last samples of the stream, so the run is
   repeated for ``--orders`` shuffles of it and the figures are their mean (and range).
   ``--plot`` draws them.

    .venv/bin/python tools/adaptation_demo.py [--rule ottt|stllr] [--lr 0.0005] [--plot OUT.png] [--json OUT.json]
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
from neurocompile.data import load_digits_spikes
from neurocompile.ir.program import BIAS_MANT_BITS
from neurocompile.learning import RULES, onchip

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
    counts = create_backend("cpu", onchip.without_learning(program)).run(x).output_spikes().sum(1)
    return float((counts.argmax(-1) == y).mean())


def learn_new_classes(program, args, order_seed: int, x, y):
    """The program after on-chip learning from ``args.epochs`` shuffled passes over ``x`` (digits 5-9)."""
    learn, report = onchip.compile_learning(
        program, args.rule, "readout", lr=args.lr, sample_steps=STEPS, surrogate_alpha=args.surrogate_slope
    )
    rng = np.random.default_rng(order_seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(args.epochs)])
    target = onchip.target_stream(y[order], STEPS, 10, report.target_value)
    rec = create_backend("cpu", learn).run(
        {"input": onchip.back_to_back(x[order]), "target": onchip.back_to_back(target)}
    )
    return rec.metadata["programs"][0], report


def plot(path, before: dict, after: list[dict], rule: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(before)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, [100 * before[n] for n in names], 0.4, label="before (trained on 0-4)")
    runs = np.array([[100 * run[n] for n in names] for run in after])
    ax.bar(pos + 0.2, runs.mean(0), 0.4, label=f"after on-chip {rule.upper()} on 5-9 (mean)")
    for k in range(len(names)):
        label = f"each of {len(runs)} stream orders" if k == 0 else None
        ax.plot(np.full(len(runs), pos[k] + 0.2), runs[:, k], "k.", ms=4, label=label)
    ax.set_xticks(pos, [f"held-out {n}" for n in names])
    ax.set_ylabel("accuracy (%, 10-way)")
    ax.set_ylim(0, 115)
    ax.legend(loc="upper center", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=RULES, default="ottt")
    parser.add_argument("--lr", type=float, default=0.0005)
    parser.add_argument(
        "--surrogate-slope", type=float, default=1.0, help="wide (1): a fresh output far below threshold still learns"
    )
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training digits 5-9")
    parser.add_argument("--orders", type=int, default=8, help="shuffles of the stream, each learned from scratch")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--plot")
    parser.add_argument("--json")
    args = parser.parse_args()

    x, y = load_digits_spikes(steps=STEPS, split="train", seed=0)
    xt, yt = load_digits_spikes(steps=STEPS, split="test", seed=0)
    x, xt, y, yt = np.asarray(x, np.uint8), np.asarray(xt, np.uint8), np.asarray(y), np.asarray(yt)
    if args.retrain or not MODEL.exists():
        train_old_classes(*split(x, y, OLD), *split(xt, yt, OLD))
    program, _ = api.compile(str(MODEL), split(x, y, OLD)[0], steps=STEPS)
    program = grow_readout(onchip.without_learning(program))
    tests = {"0-4": split(xt, yt, OLD), "5-9": split(xt, yt, NEW)}
    before = {name: accuracy(program, *data) for name, data in tests.items()}

    after, started = [], time.perf_counter()
    for order_seed in range(args.orders):
        learned, report = learn_new_classes(program, args, order_seed, *split(x, y, NEW))
        after.append({name: accuracy(learned, *data) for name, data in tests.items()})
    seconds = time.perf_counter() - started

    samples = args.epochs * int(np.isin(y, NEW).sum())
    print(report.table())
    print(
        f"learned digits 5-9 on chip ({args.rule}, CPU mirror, {samples} samples, {args.orders} stream orders, "
        f"{seconds:.2f} s in all):"
    )
    for name in tests:
        runs = [100 * run[name] for run in after]
        print(
            f"  held-out {name}: {100 * before[name]:.1f}% before, {np.mean(runs):.1f}% after "
            f"(orders: {', '.join(f'{r:.1f}' for r in runs)})"
        )
    figures = {
        "rule": args.rule,
        "lr": args.lr,
        "surrogate_slope": args.surrogate_slope,
        "samples": samples,
        "seconds": seconds,
        "before": before,
        "after": {name: float(np.mean([run[name] for run in after])) for name in tests},
        "after_each_order": after,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if args.plot:
        plot(args.plot, before, after, args.rule)


if __name__ == "__main__":
    main()
