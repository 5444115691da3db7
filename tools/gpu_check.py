"""GPU check, one prepared run on a CUDA machine: exactness of the CUDA paths, then throughput.

1. ``tests/backends/test_gpu.py``: the fixed-point backend on CUDA against the CPU, every spike, u and v bit
   for bit; the float backend's spikes on CUDA against the CPU.
2. Throughput at batch 256, T=32, with the benchmark suite's networks and equal recording
   (``tools/bench.py``: spikes, u and v of every population): the fixed-point backend (torch path)
   and the float backend on CUDA against snnTorch ``Leaky`` on the same GPU, and both backends on
   the host CPU for scale. Best of ``--repeats`` after a warm-up, each timed with CUDA synchronized.

    python tools/gpu_check.py [--networks small,medium,large] [--repeats 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import bench  # tools/bench.py, a sibling: the suite's networks, recording keys and snnTorch runner
import numpy as np
import torch

from neurocompile.backends import create_backend

ROOT = Path(__file__).resolve().parents[1]


def exactness() -> int:
    """Run tests/backends/test_gpu.py; its exit status."""
    return subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/backends/test_gpu.py")]
    )


def best_seconds(fn, repeats: int, device: str) -> float:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    return min(timed() for _ in range(repeats))


def runners(net: bench.Network, batch: int, device: str) -> dict:
    x = net.inputs[:batch]
    xf = x.astype(np.float32)
    ref = create_backend("float", net.graph, convention=net.convention, device=device)
    keys = bench.float_record_keys(ref)
    fixed = create_backend("cpu", net.program, device=device)
    fixed_host = create_backend("cpu", net.program)
    float_host = create_backend("float", net.graph, convention=net.convention)
    linears, leakies = (ms.to(device) for ms in map(torch.nn.ModuleList, bench.snntorch_net(net.layers)))
    xt = torch.from_numpy(xf).to(device)
    return {
        f"fixed point ({device})": lambda: fixed.run(x, record="all"),
        f"float ({device})": lambda: ref.run(xf, record=keys),
        f"snntorch ({device})": lambda: bench.run_snntorch(linears, leakies, xt),
        "fixed point (host cpu)": lambda: fixed_host.run(x, record="all"),
        "float (host cpu)": lambda: float_host.run(xf, record=keys),
    }


def spikes_agree(net: bench.Network, batch: int, device: str) -> bool:
    """snnTorch's spikes equal the float backend's on ``device``, every layer and step."""
    x = net.inputs[:batch].astype(np.float32)
    ref = create_backend("float", net.graph, convention=net.convention, device=device).run(x, record="all")
    linears, leakies = (ms.to(device) for ms in map(torch.nn.ModuleList, bench.snntorch_net(net.layers)))
    peer = bench.run_snntorch(linears, leakies, torch.from_numpy(x).to(device))
    return all(np.array_equal(peer[key].cpu().numpy(), ref.arrays[key]) for key in peer if key.endswith(".spikes"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="small,medium,large")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the timing part on the host")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    status = exactness() if args.device == "cuda" else 0
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {"device": name, "torch": torch.__version__, "tests_exit": status, "rows": []}
    peer = f"snntorch ({args.device})"
    print(f"{'network':8} {'backend':24} {'ms/batch':>10} {'vs snnTorch':>12}")
    for name in args.networks.split(","):
        net = bench.build_network(name, args.batch, args.steps)
        times = {
            k: best_seconds(fn, args.repeats, args.device) for k, fn in runners(net, args.batch, args.device).items()
        }
        agree = spikes_agree(net, args.batch, args.device)
        for backend, seconds in times.items():
            ratio = times[peer] / seconds
            print(f"{name:8} {backend:24} {1e3 * seconds:10.2f} {ratio:11.2f}x")
            result["rows"].append(
                {"network": name, "backend": backend, "best_s": seconds, "speedup_vs_snntorch": ratio}
            )
        print(f"{name:8} float spikes == snnTorch spikes ({args.device}): {agree}")
        result.setdefault("float_equals_snntorch", {})[name] = agree
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
