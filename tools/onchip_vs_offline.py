"""Learning on chip (fixed point, CPU mirror) against the same learning offline in float.

For each rule (OTTT, S-TLLR), starting from the shipped digits model with its readout zeroed
(``--layers readout``: hidden layers frozen; ``all``: every layer learns, hidden ones by direct
feedback alignment with the same matrices), one pass over the digits training split (one sample
at a time, the same order):

* on chip: ``onchip.compile_learning`` on the compiled program, the CPU mirror learns, the
  held-out split is classified by the learned program (fixed point);
* offline in float: the trainer's rule (``training.ottt.OTTT`` mode O / ``training.stllr.STLLR``)
  updates the readout after every step with plain SGD. It uses the same error (MSE: ``s - y``) and
  the same learning rate in the same units (``lr_offline = lr * T / (2 * gain**2)``: the MSE
  gradient is ``2 (s - y) / T`` and the model's weights are ``v`` increments divided by the gain).
  The held-out split is classified by the float model.

    .venv/bin/python tools/onchip_vs_offline.py [--lr 0.003] [--steps 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from neurocompile import api
from neurocompile.backends import create_backend
from neurocompile.data import load_digits_spikes
from neurocompile.frontend.checkpoint import load_checkpoint
from neurocompile.learning import LAYER_CHOICES, onchip
from neurocompile.training.common import evaluate, layer_views
from neurocompile.training.online import weight_parameter
from neurocompile.training.ottt import OTTT
from neurocompile.training.stllr import STLLR

MODEL = "models/digits_mlp.pt"


def on_chip(rule: str, layers: str, lr: float, steps: int, x, y, xt, yt) -> tuple[float, float]:
    program, _ = api.compile(MODEL, "digits", steps=steps)
    program = onchip.without_learning(program)
    readout = program.synapses_into(program.outputs[0])[0]
    readout.weights[:] = 0
    learn, report = onchip.compile_learning(program, rule, layers, lr=lr, sample_steps=steps)
    target = onchip.target_stream(y, steps, 10, report.target_value)
    started = time.perf_counter()
    rec = create_backend("cpu", learn).run({"input": onchip.back_to_back(x), "target": onchip.back_to_back(target)})
    seconds = time.perf_counter() - started
    learned = onchip.without_learning(rec.metadata["programs"][0])
    counts = create_backend("cpu", learned).run(xt).output_spikes().sum(1)
    return float((counts.argmax(-1) == yt).mean()), seconds


def offline(rule: str, layers: str, lr: float, steps: int, x, y, xt, yt) -> tuple[float, float]:
    model = load_checkpoint(MODEL)
    views = layer_views(model)
    with torch.no_grad():
        weight_parameter(views[-1].linear).zero_()
    learning = views if layers == "all" else views[-1:]
    weights = [weight_parameter(view.linear) for view in learning]
    groups = [
        {"params": [w], "lr": lr * steps / (2 * float(view.gain().flatten()[0]) ** 2)}
        for w, view in zip(weights, learning, strict=True)
    ]
    opt = torch.optim.SGD(groups, lr=lr)
    feedback = "dfa" if layers == "all" else "bp"
    rules = {
        "ottt": lambda: OTTT(model, mode="O", loss="mse", feedback=feedback),
        "stllr": lambda: STLLR(model, loss="mse", feedback=feedback),
    }
    learner = rules[rule]()

    def step(_t):
        for p in model.parameters():
            if not any(p is w for w in weights):
                p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)

    started = time.perf_counter()
    xs, ys = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    for i in range(len(xs)):
        learner.run_batch(xs[i : i + 1], ys[i : i + 1], on_step=step)
    seconds = time.perf_counter() - started
    return evaluate(model, torch.as_tensor(xt, dtype=torch.float32), torch.as_tensor(yt)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--layers", choices=LAYER_CHOICES, default="readout")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    x, y = load_digits_spikes(steps=args.steps, split="train", seed=0)
    xt, yt = load_digits_spikes(steps=args.steps, split="test", seed=0)
    x, xt = np.asarray(x, np.uint8), np.asarray(xt, np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], np.asarray(y)[order]
    figures = {
        "lr": args.lr,
        "layers": args.layers,
        "steps": args.steps,
        "train_samples": len(x),
        "test_samples": len(xt),
    }
    for rule in ("ottt", "stllr"):
        chip_acc, chip_s = on_chip(rule, args.layers, args.lr, args.steps, x, y, xt, yt)
        float_acc, float_s = offline(rule, args.layers, args.lr, args.steps, x, y, xt, yt)
        figures[rule] = {"on_chip": chip_acc, "offline_float": float_acc, "on_chip_s": chip_s, "offline_s": float_s}
        print(
            f"{rule}: on chip (fixed point, CPU mirror) {100 * chip_acc:.2f}% in {chip_s:.2f} s; "
            f"offline float {100 * float_acc:.2f}% in {float_s:.1f} s; difference {100 * (chip_acc - float_acc):+.2f} points"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
