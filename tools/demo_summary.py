"""Summarize what tools/demo.sh wrote (float, cpu and lava runs, online and on-chip learning) in a few lines.

demo_summary.py FOLDER            # the summary of a whole demo run
demo_summary.py --learn RUN.json  # one line for one `neurocompile learn --json` run
demo_summary.py --compare A.ncp B.ncp  # are two learned programs' weights identical?
"""

import argparse
import json
from pathlib import Path

import numpy as np

from neurocompile.analysis.metrics import fidelity_line, layer_agreement
from neurocompile.ir.program import FixedPointProgram
from neurocompile.ir.recording import Recording


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
    print(
        "per-layer spike fidelity, cpu vs float (layer k compared k steps later; spike F1: spikes in both of float/cpu):"
    )
    for layer, stats in layer_agreement(float_rec, cpu_rec, program.latency()).items():
        print(f"  {layer:6s} {fidelity_line(stats)}")
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
    print("on-chip learning (zeroed readout, one pass over the training digits, learning off on the held-out split):")
    for rule in ("ottt", "stllr"):
        print("  " + learn_line(Path(folder) / f"learn_{rule}.json"))
    lava, cpu = (json.loads((Path(folder) / f"learn_{b}200.json").read_text()) for b in ("lava", "cpu"))
    print("  " + learn_line(Path(folder) / "learn_lava200.json"))
    print("  " + compare_line(Path(folder) / "learned_lava200.ncp", Path(folder) / "learned_cpu200.ncp"))
    same_curves = lava["curves"] == cpu["curves"]
    print(
        "  lava vs cpu held-out accuracy at every checkpoint and running training accuracy: "
        + ("identical" if same_curves else "DIFFER")
        + f"; learning {lava['timing']['steps_per_s']:,.0f} vs {cpu['timing']['steps_per_s']:,.0f} steps/s"
    )


def learn_line(path) -> str:
    """One line for one `neurocompile learn --json` run."""
    r = json.loads(Path(path).read_text())
    t = r["timing"]
    return (
        f"{r['rule'].upper():6s} {r['layers']}{' from scratch' * (r['init'] == 'random')} on {r['backend']}, "
        f"{r['train_samples']} samples x {r['epochs']}: held-out "
        f"{100 * r['accuracy_before']:.2f}% -> {100 * r['accuracy_after']:.2f}% "
        f"(learning {t['learn_s']:.2f} s, {t['steps_per_s']:,.0f} steps/s; {r['weights_changed']:,} weights changed)"
    )


def compare_line(a, b) -> str:
    """Whether two learned programs hold identical weights in every synapse."""
    pa, pb = FixedPointProgram.load(a), FixedPointProgram.load(b)
    names = [s.name for s in pa.synapses]
    same = names == [s.name for s in pb.synapses] and all(
        np.array_equal(pa.synapse(n).weights, pb.synapse(n).weights) for n in names
    )
    return f"learned weights, {Path(a).name} vs {Path(b).name}: " + ("identical in every synapse" if same else "DIFFER")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="the demo's output folder")
    parser.add_argument("--learn", metavar="RUN.json", help="one line for one learning run")
    parser.add_argument("--compare", nargs=2, metavar=("A.ncp", "B.ncp"), help="compare learned weights")
    args = parser.parse_args()
    if args.learn:
        print(learn_line(args.learn))
    elif args.compare:
        print(compare_line(*args.compare))
    elif args.folder:
        main(args.folder)
    else:
        parser.error("give FOLDER, --learn RUN.json or --compare A.ncp B.ncp")
