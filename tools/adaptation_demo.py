"""Adaptation on chip: a network trained offline on digits 0-4 learns 5-9 on chip.

1. An MLP (64-256-256-5, LIF, hardware-aware, 5 epochs: wide and briefly trained, so that its
   hidden features also separate digits it never saw) is trained offline with BPTT on digits 0-4
   (``models/digits04_mlp.pt``; trained here when missing, ``--retrain`` to redo it).
2. It is compiled to a fixed-point program (calibrated on 0-4) and its readout grows to 10
   outputs: rows 0-4 keep their trained weights, rows 5-9 are fresh (zero weights, and a bias that
   holds them at 90% of the threshold: a neuron that never comes near its threshold has no surrogate
   gradient and would never learn).
3. The readout learns on chip (CPU mirror, fixed point) from ``--epochs`` passes over the training
   digits 5-9, with OTTT or S-TLLR; the hidden layers stay frozen.
4. Held-out accuracy on 0-4 and on 5-9 (10-way), before and after, shows what was learned and
   what was forgotten. ``--plot`` draws it.

    .venv/bin/python tools/adaptation_demo.py [--rule ottt|stllr] [--lr 0.003] [--plot OUT.png] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from neurocompile import onchip, pipeline
from neurocompile.backends import create_backend
from neurocompile.data import load_digits_spikes
from neurocompile.program import BIAS_MANT_BITS

MODEL = Path("models/digits04_mlp.pt")
OLD, NEW = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
STEPS = 16
HIDDEN, EPOCHS = (256, 256), 5  # wide and briefly trained: hidden features that also separate unseen digits


def split(x, y, classes):
    keep = np.isin(y, classes)
    return x[keep], y[keep]


def train_old_classes(x, y, xt, yt) -> None:
    """BPTT on digits 0-4 (the shipped model's recipe, 5 outputs); writes ``MODEL``."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits04.npz"
        np.savez(data, x_train=x.astype(np.uint8), y_train=y, x_test=xt.astype(np.uint8), y_test=yt)
        pipeline.train(
            data=str(data), steps=STEPS, epochs=EPOCHS, hidden=HIDDEN, hardware_aware=True, seed=0, output=str(MODEL)
        )


def grow_readout(program, n_out: int = 10, rest: float = 0.9):
    """The readout population and synapse grown to ``n_out`` outputs. The new rows are fresh: zero
    weights and a bias that holds ``v`` at ``rest`` of the threshold without input, where the
    surrogate gradient is alive (a neuron far below threshold would never learn)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=onchip.RULES, default="ottt")
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training digits 5-9")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--plot")
    parser.add_argument("--json")
    args = parser.parse_args()

    x, y = load_digits_spikes(steps=STEPS, split="train", seed=0)
    xt, yt = load_digits_spikes(steps=STEPS, split="test", seed=0)
    x, xt, y, yt = np.asarray(x, np.uint8), np.asarray(xt, np.uint8), np.asarray(y), np.asarray(yt)
    if args.retrain or not MODEL.exists():
        train_old_classes(*split(x, y, OLD), *split(xt, yt, OLD))
    program, _ = pipeline.compile(str(MODEL), split(x, y, OLD)[0], steps=STEPS)
    program = grow_readout(onchip.without_learning(program))
    tests = {"0-4": split(xt, yt, OLD), "5-9": split(xt, yt, NEW)}
    before = {name: accuracy(program, *data) for name, data in tests.items()}

    learn, report = onchip.compile_learning(program, args.rule, "readout", lr=args.lr, sample_steps=STEPS)
    xs, ys = split(x, y, NEW)
    order = np.concatenate([np.random.default_rng(e).permutation(len(xs)) for e in range(args.epochs)])
    target = onchip.target_stream(ys[order], STEPS, 10, report.target_value)
    started = time.perf_counter()
    rec = create_backend("cpu", learn).run(
        {"input": onchip.back_to_back(xs[order]), "target": onchip.back_to_back(target)}
    )
    seconds = time.perf_counter() - started
    learned = rec.metadata["programs"][0]
    after = {name: accuracy(learned, *data) for name, data in tests.items()}

    print(report.table())
    print(f"learned digits 5-9 on chip ({args.rule}, CPU mirror, {len(order)} samples, {seconds:.2f} s):")
    for name in tests:
        print(f"  held-out {name}: {100 * before[name]:.1f}% before, {100 * after[name]:.1f}% after")
    figures = {
        "rule": args.rule,
        "lr": args.lr,
        "samples": int(len(order)),
        "seconds": seconds,
        "before": before,
        "after": after,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        pos = np.arange(len(tests))
        ax.bar(pos - 0.2, [100 * before[n] for n in tests], 0.4, label="before (trained on 0-4)")
        ax.bar(pos + 0.2, [100 * after[n] for n in tests], 0.4, label=f"after on-chip {args.rule.upper()} on 5-9")
        ax.set_xticks(pos, [f"held-out {n}" for n in tests])
        ax.set_ylabel("accuracy (%, 10-way)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper center", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
