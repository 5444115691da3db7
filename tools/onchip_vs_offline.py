"""On-chip learning experiments, and the same learning offline: the table in the README and docs/on-chip-rules.md.

    .venv/bin/python tools/onchip_vs_offline.py [--seeds 0,1,2] [--offline] [--write] [--json out.json]

Three experiments per rule (OTTT, S-TLLR), each on seeds 0-2 (the seed orders the stream, encodes the training
spikes, draws the feedback matrices and the random weights), held-out accuracy on the 360 test digits:

* ``readout``: the shipped digits model with its readout zeroed, the readout learns, one pass, lr 0.003;
* ``all layers``: the same, every layer learns (hidden layers by direct feedback alignment, lr 0.001), one pass;
* ``from scratch``: every layer learns from random weights (``learn --init random``: the hidden layers drawn
  anew, the readout zeroed), 10 passes, lr 0.003 for the readout and for the hidden layers 0.001 (OTTT) or
  0.0015 (S-TLLR).

On chip: ``neurocompile.learn`` on the CPU mirror (fixed point; Lava ``fixed_pt`` learns the same weights,
tests/cli/test_learn_cli.py), its stream timed by the program (``onchip.StreamTiming``). Offline (``--offline``,
minutes per pass): the trainer's rule (``training.ottt.OTTT`` mode O / ``training.stllr.STLLR``) updates the float
model after every step with plain SGD, the same error (MSE: ``s - y``), the same learning rates in the same units
(``lr_offline = lr * W / (2 * gain**2)``: the MSE gradient is ``2 (s - y) / W`` over a sample's window of ``W``
steps and the weights are ``v`` increments divided by the gain), the same feedback matrices, sample order and
spikes, and the same stream layout: each sample's 16 steps, then the silent steps the program needs, the target on
for 16 steps from the model's own latency (the program's output latency on chip; 0 offline, where every layer runs
within the step). From scratch, the float model starts from the chip's random weights, dequantized
(``onchip.learned_graph``), and takes the same 10 passes in the same orders.

Then the adaptation of ``tools/adaptation_demo.py`` with its defaults, for each rule: a network trained on digits
0-4 learns 5-9 on chip, without and with a replay buffer of 250 digits 0-4, mean of 4 stream orders.

``--write`` puts the tables between the markers in README.md and docs/on-chip-rules.md. ``--runs FILE`` keeps
every finished run in FILE (JSON lines) and reuses those already there: the offline runs take hours in all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurocompile import api
from neurocompile.data import fit_steps, load_digits_spikes
from neurocompile.frontend.checkpoint import load_checkpoint
from neurocompile.learning import onchip
from neurocompile.learning.session import random_hidden_layers
from neurocompile.training.common import evaluate, layer_views
from neurocompile.training.online import weight_parameter
from neurocompile.training.ottt import OTTT
from neurocompile.training.stllr import STLLR

if __package__:  # imported as tools.onchip_vs_offline
    from .adaptation_demo import adapt, parser
else:  # run as a script: adaptation_demo.py is a sibling in the script's folder
    from adaptation_demo import adapt, parser

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits_mlp.pt"
STEPS = 16
MARKS = ("<!-- onchip-table: tools/onchip_vs_offline.py --write writes this -->", "<!-- /onchip-table -->")
DOCS = (ROOT / "README.md", ROOT / "docs" / "on-chip-rules.md")


@dataclass(frozen=True)
class Experiment:
    name: str
    layers: str
    epochs: int
    lr: float
    hidden_lr: dict | None  # rule -> the hidden layers' rate (None: lr)
    init: str
    offline: bool  # also run offline (one pass)


EXPERIMENTS = (
    Experiment("readout", "readout", 1, 0.003, None, "trained", True),
    Experiment("all layers", "all", 1, 0.003, {"ottt": 0.001, "stllr": 0.001}, "trained", True),
    Experiment("from scratch", "all", 10, 0.003, {"ottt": 0.001, "stllr": 0.0015}, "random", True),
)


def on_chip(rule: str, experiment: Experiment, seed: int) -> dict:
    """One learning session on the CPU mirror: held-out accuracy after, learning seconds, the stream layout."""
    _, result = api.learn(
        str(MODEL),
        rule,
        layers=experiment.layers,
        lr=experiment.lr,
        hidden_lr=(experiment.hidden_lr or {}).get(rule),
        epochs=experiment.epochs,
        seed=seed,
        steps=STEPS,
        init=experiment.init,
        reinit_readout=None if experiment.init == "random" else "zero",
    )
    return {"accuracy": result["accuracy_after"], "seconds": result["timing"]["learn_s"], "stream": result["stream"]}


def chip_start(rule: str, seed: int) -> dict[str, np.ndarray]:
    """The float weights of every dense layer as ``learn --init random`` starts the chip: the hidden layers'
    random integers and the zero readout, dequantized into the shipped graph (``onchip.learned_graph``)."""
    program, _ = api.compile(str(MODEL), "digits", steps=STEPS)  # as api.learn compiles it
    learning, report = onchip.compile_learning(program, rule, "all", seed=seed, sample_steps=STEPS)
    random_hidden_layers(learning, report, seed)
    learning.synapse(report.plans[-1].synapse).weights[:] = 0
    deployed, start = onchip.without_learning(program), onchip.without_learning(learning)
    graph = onchip.learned_graph(api.export(str(MODEL)), deployed, start)
    return {name: np.asarray(node.weight) for name, node in graph.nodes.items() if hasattr(node, "weight")}


def offline(rule: str, experiment: Experiment, seed: int, silent_steps: int) -> dict:
    """The same rule offline in float over the same passes, orders, feedback matrices and spikes, and the same
    stream layout: ``silent_steps`` after each sample, the target on from step 0 (the float model's latency)."""
    timing = onchip.StreamTiming(STEPS, silent_steps, target_delay=0)
    model = load_checkpoint(MODEL)
    views = layer_views(model)
    start = chip_start(rule, seed) if experiment.init == "random" else {}
    modules = dict(model.named_modules())
    with torch.no_grad():
        weight_parameter(views[-1].linear).zero_()
        for name, weights in start.items():
            weight_parameter(modules[name]).copy_(torch.as_tensor(weights))
    learning = views if experiment.layers == "all" else views[-1:]
    rates = [(experiment.hidden_lr or {}).get(rule, experiment.lr)] * (len(learning) - 1) + [experiment.lr]
    weights = [weight_parameter(view.linear) for view in learning]
    window = timing.window
    groups = [
        {"params": [w], "lr": lr * window / (2 * float(view.gain().flatten()[0]) ** 2)}
        for w, view, lr in zip(weights, learning, rates, strict=True)
    ]
    opt = torch.optim.SGD(groups, lr=experiment.lr)
    feedback = "dfa" if experiment.layers == "all" else "bp"
    if rule == "ottt":
        learner = OTTT(model, mode="O", loss="mse", feedback=feedback, seed=seed)
    else:
        learner = STLLR(model, loss="mse", feedback=feedback, seed=seed)

    def step(_t):
        for p in model.parameters():
            if not any(p is w for w in weights):
                p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)

    x, y = load_digits_spikes(steps=STEPS, split="train", seed=seed)
    xt, yt = load_digits_spikes(steps=STEPS, split="test", seed=0)
    xs = torch.as_tensor(fit_steps(np.asarray(x), window), dtype=torch.float32)
    ys = torch.as_tensor(np.asarray(y))
    orders = np.random.default_rng(seed)  # learn's passes
    started = time.perf_counter()
    for _ in range(experiment.epochs):
        for i in orders.permutation(len(ys)):
            learner.run_batch(xs[i : i + 1], ys[i : i + 1], on_step=step, target_steps=timing.sample_steps)
    seconds = time.perf_counter() - started
    return {"accuracy": evaluate(model, torch.as_tensor(xt), torch.as_tensor(yt)), "seconds": seconds}


def one_run(experiment: Experiment, rule: str, seed: int, with_offline: bool) -> dict:
    run = {"seed": seed, "on_chip": on_chip(rule, experiment, seed)}
    if with_offline:
        run["offline"] = offline(rule, experiment, seed, run["on_chip"]["stream"]["silent_steps"])
    return run


def run_key(experiment: Experiment, rule: str, seed: int, with_offline: bool) -> tuple:
    """What a kept run is found by: the experiment's settings for ``rule``, the seed, and whether offline ran."""
    hidden = (experiment.hidden_lr or {}).get(rule)
    settings = (experiment.name, experiment.layers, experiment.epochs, experiment.lr, hidden, experiment.init)
    return (*settings, rule, seed, with_offline)


def finished_runs(path) -> dict:
    """The runs kept in ``path`` by earlier invocations: {:func:`run_key`: run}."""
    if not path or not Path(path).exists():
        return {}
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {tuple(record["key"]): record["run"] for record in records}


def summary(values: list[float]) -> str:
    """Mean and range of accuracies in percent."""
    percents = [100 * v for v in values]
    if len(percents) == 1:
        return f"{percents[0]:.2f}%"
    return f"{statistics.mean(percents):.2f}% ({min(percents):.1f}-{max(percents):.1f})"


def table(results: dict, seeds: list[int]) -> str:
    lines = [
        "| experiment | rule | on chip (fixed point, CPU mirror) | offline float, same rule and stream |",
        "|---|---|---|---|",
    ]
    for experiment in EXPERIMENTS:
        for rule in ("ottt", "stllr"):
            runs = results[experiment.name][rule]
            chip = summary([run["on_chip"]["accuracy"] for run in runs])
            floats = [run["offline"]["accuracy"] for run in runs if "offline" in run]
            lines.append(
                f"| {experiment.name} ({experiment.epochs} pass{'es' * (experiment.epochs > 1)}) | "
                f"{rule.upper().replace('STLLR', 'S-TLLR')} | {chip} | {summary(floats) if floats else 'not run'} |"
            )
    return "\n".join(lines) + f"\n\nMean (range) over seeds {', '.join(map(str, seeds))}."


def adaptation_table(figures: dict) -> str:
    """Held-out accuracy before and after adapting, per rule and stream (``figures``: rule -> ``adapt``'s)."""
    first = next(iter(figures.values()))
    lines = [
        f"| adaptation: learn 5-9 on chip ({first['epochs']} passes, mean of {first['orders']} stream orders) | rule "
        "| held-out 0-4 | held-out 5-9 | all ten digits |",
        "|---|---|---|---|---|",
        "| before (trained offline on 0-4) | | "
        + " | ".join(f"{100 * v:.1f}%" for v in first["before"].values())
        + " |",
    ]
    for rule, result in figures.items():
        for label, after in result["after"].items():
            name = rule.upper().replace("STLLR", "S-TLLR")
            lines.append(f"| {label} | {name} | " + " | ".join(f"{100 * v:.1f}%" for v in after.values()) + " |")
    return "\n".join(lines)


def adaptation_runs(done: dict, runs_path) -> dict:
    """``adapt`` with the demo's defaults for each rule (kept runs reused): rule -> its figures."""
    figures = {}
    for rule in ("ottt", "stllr"):
        args = parser().parse_args(["--rule", rule])
        key = ("adaptation", rule, args.lr, args.epochs, args.orders, args.replay, args.surrogate_slope)
        figures[rule] = done.get(key) or adapt(args)
        if key not in done and runs_path:
            with open(runs_path, "a") as fh:
                fh.write(json.dumps({"key": key, "run": figures[rule]}) + "\n")
        print(f"adaptation, {rule}: {json.dumps(figures[rule]['after'])}", flush=True)
    return figures


def write_between_marks(path: Path, text: str) -> None:
    content = path.read_text()
    start, end = (content.index(mark) for mark in MARKS)
    path.write_text(f"{content[:start]}{MARKS[0]}\n\n{text}\n\n{content[end:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    parser.add_argument("--offline", action="store_true", help="also learn offline (minutes per pass)")
    parser.add_argument("--write", action="store_true", help="write the table into README.md and docs/on-chip-rules.md")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--runs", help="keep finished runs in this file (JSON lines) and reuse them")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    done = finished_runs(args.runs)
    results: dict = {}
    for experiment in EXPERIMENTS:
        for rule in ("ottt", "stllr"):
            runs = results.setdefault(experiment.name, {}).setdefault(rule, [])
            for seed in seeds:
                key = run_key(experiment, rule, seed, args.offline and experiment.offline)
                run = done.get(key) or one_run(experiment, rule, seed, key[-1])
                runs.append(run)
                if key not in done and args.runs:
                    with open(args.runs, "a") as fh:
                        fh.write(json.dumps({"key": key, "run": run}) + "\n")
                print(f"{experiment.name}, {rule}, seed {seed}: {json.dumps(run)}", flush=True)
    adaptation = adaptation_runs(done, args.runs)
    results["adaptation"] = adaptation
    text = table(results, seeds) + "\n\n" + adaptation_table(adaptation)
    print(text)
    if args.write:
        for path in DOCS:
            write_between_marks(path, text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
