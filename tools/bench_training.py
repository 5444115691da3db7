"""Training throughput against the peers: one epoch of the same LIF MLP on the same spikes, by our BPTT, OTTT and
S-TLLR, SpikingJelly's OTTT and snnTorch's BPTT, at T = 8, 16, 32 and 64 steps.

Network: 64-128-128-10, LIF everywhere (``v <- 0.8 v + I``, threshold 1, reset to zero, the output layer spiking),
cross-entropy of 8 x the output spikes averaged over the steps, Adam (lr 2e-3), batch 32 (our trainer's defaults;
each peer script names where its library differs). Data: the digits training split, rate-coded with one seed and
shuffled once, written to an ``.npz`` that every trainer reads. Every run is a fresh process with 2 threads: ours in
this venv (``--child``), the peers' in their throwaway venvs (``tools/peer_fixtures.make_venv``) running
``tools/peers/train_<lib>.py``. Each reports its epoch's training time (forward, backward and updates; no data
loading, model building or test), its mean loss, its test accuracy after the epoch and its peak resident memory up to
the end of training (``ru_maxrss``: the interpreter, torch, the data and training; the test pass is left out, as each
library evaluates in its own way; the same torch 2.13.0 everywhere). The trainers run interleaved per ``T``,
``--repeats`` times; the table gives the best time and the largest peak of each.

    .venv/bin/python -m tools.bench_training [--steps 8,16,32,64] [--repeats 2] [--json OUT] [--write-readme]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"spikingjelly": "SpikingJelly OTTT", "snntorch": "snnTorch BPTT"}
OURS = {"bptt": "neurocompile BPTT", "ottt": "neurocompile OTTT", "stllr": "neurocompile S-TLLR"}
CONFIG = {"hidden": [128, 128], "batch": 32, "lr": 2e-3, "decay": 0.8, "threshold": 1.0, "loss_scale": 8.0}
THREADS = 2
MARKS = {
    "training": ("<!-- training-table: tools/bench_training.py --write-readme writes this -->", "<!-- /training -->")
}


def write_data(path: Path, steps: int, seed: int) -> None:
    """The digits splits as rate-coded spikes ``[N, T, 64]``, the training split shuffled with ``seed``."""
    from neurocompile.data import load_dataset

    x_train, y_train = load_dataset("digits", steps, "train", seed)
    x_test, y_test = load_dataset("digits", steps, "test", 0)
    order = np.random.default_rng(seed).permutation(len(x_train))
    flat = {"x_train": x_train[order], "x_test": x_test}
    flat = {k: v.reshape(v.shape[0], v.shape[1], -1).astype(np.uint8) for k, v in flat.items()}
    np.savez(path, **flat, y_train=y_train[order].astype(np.int64), y_test=y_test.astype(np.int64))


def train_child(rule: str, data: str, config: dict) -> dict:
    """(In a fresh process) one epoch of our ``rule`` on ``data``: the figures a peer script prints."""
    import torch

    from neurocompile.training.common import evaluate
    from neurocompile.training.trainer import TrainConfig, _train_epoch, build_model, make_rule

    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    arrays = np.load(data)
    x, y = (torch.from_numpy(arrays[k]) for k in ("x_train", "y_train"))
    x, x_test = x.float(), torch.from_numpy(arrays["x_test"]).float()
    settings = TrainConfig(
        rule=rule,
        hidden=tuple(config["hidden"]),
        batch_size=config["batch"],
        lr=config["lr"],
        decay=config["decay"],
        loss_scale=config["loss_scale"],
        seed=config["seed"],
    )
    model = build_model(settings, x.shape[2], 10)
    learner = make_rule(settings, model)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start = time.perf_counter()
    loss_sum, _correct, count = _train_epoch(learner, opt.step, None, x, y, config["batch"])
    seconds = time.perf_counter() - start
    train_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the test pass
    return {
        "library": "neurocompile",
        "rule": rule,
        "train_s": seconds,
        "samples_per_s": count / seconds,
        "train_loss": loss_sum / count,
        "test_acc": evaluate(model, x_test, torch.from_numpy(arrays["y_test"])),
        "train_peak_bytes": train_peak,
        "notes": "",
    }


def trainers(cache: Path) -> dict[str, list[str]]:
    """Each trainer's command, without its data and config arguments (the peers' venvs are made on first use)."""
    from tools.peer_fixtures import make_venv

    commands = {name: [sys.executable, "-m", "tools.bench_training", "--child", rule] for rule, name in OURS.items()}
    for lib, name in PEERS.items():
        python = make_venv(lib, cache) / "bin" / "python"
        commands[name] = [str(python), str(ROOT / "tools" / "peers" / f"train_{lib}.py")]
    return commands


def run(steps_list, repeats: int, seed: int, cache: Path, work: Path) -> list[dict]:
    commands = trainers(cache)
    config = work / "config.json"
    config.write_text(json.dumps({**CONFIG, "seed": seed, "threads": THREADS}))
    rows = []
    for steps in steps_list:
        data = work / f"digits_T{steps}.npz"
        write_data(data, steps, seed)
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():  # interleaved: every trainer sees the same machine load
                done = subprocess.run([*command, str(data), str(config)], capture_output=True, text=True, check=True)
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                result = runs[name][-1]
                print(f"T={steps} {name}: {result['samples_per_s']:.0f} samples/s", flush=True)
        for name, results in runs.items():
            fastest = min(results, key=lambda r: r["train_s"])
            peak = max(r["train_peak_bytes"] for r in results)
            rows.append({"trainer": name, "steps": steps, **fastest, "peak_bytes": peak})
    return rows


def table(rows: list[dict], load: tuple, repeats: int) -> str:
    steps_list = sorted({row["steps"] for row in rows})
    names = list(dict.fromkeys(row["trainer"] for row in rows))
    cell = {(row["trainer"], row["steps"]): row for row in rows}
    header = "| trainer | " + " | ".join(f"T={t}: samples/s, peak, test acc." for t in steps_list) + " |"
    lines = [header, "|---|" + "---:|" * len(steps_list)]
    for name in names:
        cells = []
        for t in steps_list:
            row = cell[(name, t)]
            cells.append(f"{row['samples_per_s']:,.0f}, {row['peak_bytes'] / 2**20:,.0f} MB, {row['test_acc']:.0%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratios = []
    for t in steps_list:
        ours, theirs = cell[(OURS["ottt"], t)], cell[(PEERS["spikingjelly"], t)]
        bptt, snn = cell[(OURS["bptt"], t)], cell[(PEERS["snntorch"], t)]
        ratios.append(
            f"T={t}: OTTT {ours['samples_per_s'] / theirs['samples_per_s']:.2f}x SpikingJelly's "
            f"({ours['peak_bytes'] / theirs['peak_bytes']:.2f}x its peak), BPTT "
            f"{bptt['samples_per_s'] / snn['samples_per_s']:.2f}x snnTorch's"
        )
    notes = sorted({f"{row['trainer']}: {row['notes']}" for row in rows if row.get("notes")})
    when = datetime.date.today().isoformat()
    lines += ["", "; ".join(ratios) + ".", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        f"One epoch of the 1,437 training digits, best of {repeats} interleaved runs; peak: the process's resident "
        f"memory up to the end of training. Measured {when} on {os.cpu_count()} CPU cores ({THREADS} threads each), load {load[0]:.2f} "
        f"before and {load[1]:.2f} after (`.venv/bin/python -m tools.bench_training --write-readme`).",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from tools.peer_fixtures import DEFAULT_CACHE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="8,16,32,64")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the peers' venvs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write-readme", action="store_true", help="update the table in README.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        data, config = rest
        print(json.dumps(train_child(args.child, data, json.loads(Path(config).read_text()))))
        return 0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        rows = run([int(t) for t in args.steps.split(",")], args.repeats, args.seed, args.cache, Path(work))
    text = table(rows, (load_before, os.getloadavg()[0]), args.repeats)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.write_readme:
        from tools.bench_map import write_between

        write_between(ROOT / "README.md", "training", text, MARKS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
