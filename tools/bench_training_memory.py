"""Peak training memory and time per epoch vs the number of time steps, for BPTT, OTTT and S-TLLR.

    .venv/bin/python tools/bench_training_memory.py [--steps 8 16 32 64] [--device auto] [--out out/bench]

Same network for every rule: the 64-128-128-10 LIF MLP on rate-coded digits, batch 32.
Memory is the peak of the bytes that autograd holds for backward (``saved_tensors_hooks``; a
tensor counts while its graph is alive, each storage once), measured over one training batch:
deterministic, and the same on CPU and GPU. With a GPU, ``torch.cuda.max_memory_allocated``
over the batch is reported too. Time per epoch is one pass over the 1437 training digits.

Requirement checked at the end: OTTT's and S-TLLR's peaks at T=64 are at most 1.1x their peaks
at T=8; BPTT grows about linearly and its T=64 peak is at least 10x OTTT's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import weakref
from pathlib import Path

import torch

from neurocompile.data import load_dataset
from neurocompile.training.trainer import TrainConfig, build_model, make_rule, resolve_device

RULES = ("bptt", "ottt", "stllr")


class SavedTensorMeter:
    """Live and peak bytes of tensors saved for backward (each storage counted once)."""

    def __init__(self):
        self.live: dict[int, list] = {}  # storage ptr -> [refcount, bytes]
        self.current = 0
        self.peak = 0

    def _release(self, ptr):
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        entry = self.live.setdefault(ptr, [0, nbytes])
        if entry[0] == 0:
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        holder = _Holder(tensor)
        weakref.finalize(holder, self._release, ptr)
        return holder

    @staticmethod
    def unpack(holder):
        return holder.tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Holder:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def measure(rule_name: str, steps: int, device, batch_size: int, max_batches: int | None, seed: int = 0):
    config = TrainConfig(rule=rule_name, steps=steps, batch_size=batch_size, seed=seed, device=str(device))
    x, y = load_dataset("digits", steps, "train", seed)
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    torch.manual_seed(seed)
    model = build_model(config, 64, 10).to(device)
    rule = make_rule(config, model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)

    # Peak memory over one batch (forward + backward + update).
    meter = SavedTensorMeter()
    xb, yb = x[:batch_size], y[:batch_size]
    cuda_peak = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with meter.hooks():
        opt.zero_grad(set_to_none=True)
        rule.run_batch(xb, yb)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        cuda_peak = torch.cuda.max_memory_allocated() - base

    # Time per epoch.
    n_batches = (len(x) + batch_size - 1) // batch_size
    todo = n_batches if not max_batches else min(max_batches, n_batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(todo):
        opt.zero_grad(set_to_none=True)
        rule.run_batch(x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size])
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    epoch_time = (time.perf_counter() - t0) * n_batches / todo
    return {
        "rule": rule_name,
        "steps": steps,
        "saved_bytes": meter.peak,
        "cuda_peak_bytes": cuda_peak,
        "epoch_time_s": epoch_time,
    }


def plot(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for rule in RULES:
        rr = [r for r in rows if r["rule"] == rule]
        ts = [r["steps"] for r in rr]
        ax1.plot(ts, [r["saved_bytes"] / 2**20 for r in rr], marker="o", label=rule)
        ax2.plot(ts, [r["epoch_time_s"] for r in rr], marker="o", label=rule)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("time steps T")
        ax.legend()
    ax1.set_yscale("log")
    ax1.set_ylabel("peak saved-for-backward MiB (batch 32)")
    ax2.set_ylabel("seconds per epoch")
    fig.suptitle("64-128-128-10 LIF MLP on digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-batches", type=int, default=None, help="Time this many batches and scale to an epoch.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="out/bench_training_memory")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for rule in RULES:
        for steps in args.steps:
            rows.append(measure(rule, steps, device, args.batch_size, args.max_batches))
            r = rows[-1]
            print(
                f"  {rule:6s} T={steps:3d}: {r['saved_bytes'] / 2**20:9.3f} MiB saved, {r['epoch_time_s']:6.2f} s/epoch",
                file=sys.stderr,
                flush=True,
            )
    gpu = device.type == "cuda"
    header = (
        f"{'rule':6s} {'T':>4s} {'saved MiB':>10s} {'x T=min':>8s}"
        + (f" {'cuda MiB':>9s}" if gpu else "")
        + f" {'s/epoch':>8s}"
    )
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(0)})" if gpu else ""))
    print(header)
    for r in rows:
        first = next(q for q in rows if q["rule"] == r["rule"])
        line = f"{r['rule']:6s} {r['steps']:4d} {r['saved_bytes'] / 2**20:10.3f} {r['saved_bytes'] / first['saved_bytes']:8.2f}"
        if gpu:
            line += f" {r['cuda_peak_bytes'] / 2**20:9.2f}"
        print(line + f" {r['epoch_time_s']:8.2f}")
    plot(rows, out / "training_memory.png")
    (out / "training_memory.json").write_text(json.dumps({"device": str(device), "rows": rows}, indent=2))
    by = {(r["rule"], r["steps"]): r["saved_bytes"] for r in rows}
    lo, hi = min(args.steps), max(args.steps)
    checks = {
        f"ottt T={hi} <= 1.1x T={lo}": by[("ottt", hi)] <= 1.1 * by[("ottt", lo)],
        f"stllr T={hi} <= 1.1x T={lo}": by[("stllr", hi)] <= 1.1 * by[("stllr", lo)],
        f"bptt T={hi} >= 10x ottt T={hi}": by[("bptt", hi)] >= 10 * by[("ottt", hi)],
        f"bptt growth T={lo}->{hi} within 25% of linear": abs(by[("bptt", hi)] / by[("bptt", lo)] / (hi / lo) - 1)
        < 0.25,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"wrote {out / 'training_memory.png'}, {out / 'training_memory.json'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
