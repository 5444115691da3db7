"""Summarize what tools/demo.sh wrote (float, cpu and lava runs, online learning) in a few lines."""

import json
import sys
from pathlib import Path

import numpy as np

from neurocompile.metrics import layer_agreement
from neurocompile.program import FixedPointProgram
from neurocompile.recording import Recording


def main(folder: str) -> None:
    reports = {name: json.loads((Path(folder) / f"{name}.json").read_text()) for name in ("float", "cpu", "lava")}
    print("== summary (digits, held-out split)")
    print(f"{'backend':8s} {'samples':>7s} {'accuracy':>9s} {'spikes':>9s} {'synops':>11s}")
    for name, rep in reports.items():
        print(
            f"{name:8s} {rep['samples']:7d} {100 * rep['accuracy']:8.2f}% {rep['total_spikes']:9d} {rep['synaptic_operations']:11d}"
        )
    float_acc, cpu_acc = reports["float"]["accuracy"], reports["cpu"]["accuracy"]
    print(f"fixed-point (cpu) vs float reference: {100 * (cpu_acc - float_acc):+.2f} points")
    program = FixedPointProgram.load(Path(folder) / "digits_mlp.ncp")
    float_rec = Recording(dict(np.load(Path(folder) / "float_record.npz")), program.outputs, "float")
    cpu_rec = Recording(dict(np.load(Path(folder) / "cpu_record.npz")), program.outputs, "cpu")
    print("per-layer spike agreement, cpu vs float (layer k compared k steps later):")
    for layer, stats in layer_agreement(float_rec, cpu_rec, program.latency()).items():
        print(
            f"  {layer:6s} count ratio {stats['count_ratio']:.3f}   per-step agreement {100 * stats['step_agreement']:.2f}%"
            f"   count correlation {stats['rate_correlation']:.3f}"
        )
    n = reports["lava"]["samples"]
    same = sum(a == b for a, b in zip(reports["lava"]["predictions"], reports["cpu"]["predictions"][:n]))
    print(f"lava fixed_pt vs cpu predictions on the first {n} samples: {same}/{n} identical")
    lava, cpu = np.load(Path(folder) / "lava_record.npz"), np.load(Path(folder) / "cpu_record.npz")
    differing = [key for key in lava.files if not np.array_equal(lava[key], cpu[key][:n])]
    print(
        f"lava fixed_pt vs cpu recordings ({', '.join(sorted(lava.files))}): "
        + ("bit-identical at every step" if not differing else f"DIFFER in {differing}")
    )
    learning = json.loads((Path(folder) / "stllr_mlp.json").read_text())
    print(
        f"online learning (S-TLLR, {len(learning['history'])} epochs, fresh MLP): test accuracy {100 * learning['test_acc']:.2f}%"
    )


if __name__ == "__main__":
    main(sys.argv[1])
