"""Wall time of `neurocompile convert`: the digits MLP and CNN, and the refusal of a junk file.

    .venv/bin/python tools/bench_convert.py [--steps 16,32,64] [--repeats 3] [--baseline REV] [--json]

The MLP and CNN of ``tools/convert_report.py`` train for a few epochs (its ``mlp``, ``cnn`` and ``train``) and
are exported as a plain ``torch.onnx.export`` call writes them (a fixed batch of one) into a temporary
folder. Each command runs as a separate process, as a user runs it: the time is the whole command's wall
time (Python's start and the imports included), the minimum of ``--repeats`` runs; the peak RSS is the
largest of those runs. A file of junk bytes must be refused with exit code 2.

``--baseline REV`` also runs every command on the code of git revision ``REV`` (its ``neurocompile``,
``backends`` and ``models`` on ``PYTHONPATH``), interleaved with the working tree's runs so that both
see the same machine load, and says whether the accuracy tables of both are identical.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

try:
    from tools.convert_report import cnn, mlp, train
except ModuleNotFoundError:  # run as a script: tools/ is on sys.path, the repository root is not
    from convert_report import cnn, mlp, train

ROOT = Path(__file__).resolve().parents[1]
COMMAND = Path(sysconfig.get_path("scripts")) / "neurocompile"
MODELS = {"mlp": mlp, "cnn": cnn}  # the conversions the issue times
EPOCHS = 5
JUNK = b"junk\n"


def export_models(folder: Path) -> dict[str, Path]:
    """Each model of ``MODELS`` trained for :data:`EPOCHS` epochs, as ``folder/NAME.onnx``."""
    import torch

    paths = {}
    for name, make in MODELS.items():
        paths[name] = folder / f"{name}.onnx"
        torch.onnx.export(train(make, epochs=EPOCHS), torch.zeros(1, 1, 8, 8), str(paths[name]), dynamo=False)
    return paths


def baseline_tree(rev: str, folder: Path) -> Path:
    """The code of git revision ``rev`` laid out as the editable install maps it (``backends`` and
    ``models`` inside ``neurocompile``) under ``folder``: a ``PYTHONPATH`` entry."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "neurocompile", "backends", "models"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    for package in ("backends", "models"):
        (folder / package).rename(folder / "neurocompile" / package)
    return folder


# Runs the command and writes its wall time, exit code and peak RSS to the file argv[1]. The command is
# started from this small process: a child forked from the benchmark (torch loaded) would count the
# benchmark's memory in its peak RSS.
LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
open(sys.argv[1], "w").write(json.dumps({"seconds": seconds, "code": code, "peak_rss_bytes": peak}))
"""


def run_once(args: list[str], cwd: Path, env: dict) -> dict:
    """``neurocompile ARGS`` in ``cwd``: wall seconds, exit code, peak RSS (bytes), stdout, last stderr line."""
    report = cwd / "run.json"
    launch = [sys.executable, "-c", LAUNCHER, str(report), str(COMMAND), *args]
    done = subprocess.run(launch, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}, check=True)
    lines = done.stderr.strip().splitlines()
    return {**json.loads(report.read_text()), "stdout": done.stdout, "last_line": lines[-1] if lines else ""}


def measure(args: list[str], cwd: Path, repeats: int, variants: dict[str, dict], code: int) -> dict:
    """``repeats`` rounds of ``neurocompile ARGS`` under each of ``variants`` (name: environment), each run
    expected to exit with ``code``: per variant the least seconds, the largest peak RSS and the last run's
    output (the accuracy report of a conversion, the last stderr line of a refusal)."""
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, env in variants.items():
            run = run_once(args, cwd, env)
            if run["code"] != code:
                raise SystemExit(f"{name}: neurocompile {' '.join(args)}: exit {run['code']}, expected {code}")
            runs[name].append(run)
    result = {"command": f"neurocompile {' '.join(args)}"}
    for name, done in runs.items():
        last = done[-1]
        result[name] = {
            "seconds": min(run["seconds"] for run in done),
            "runs_s": [run["seconds"] for run in done],
            "peak_rss_bytes": max(run["peak_rss_bytes"] for run in done),
            **({"accuracy": json.loads(last["stdout"])["accuracy"]} if code == 0 else {"last_line": last["last_line"]}),
        }
    return result


def bench(steps: str, repeats: int, baseline: str | None) -> dict:
    """Every case's timings under the working tree (``after``) and ``baseline`` (``before``), if given."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        variants: dict[str, dict] = {"after": {}}
        if baseline is not None:
            tree = baseline_tree(baseline, Path(tempfile.mkdtemp(dir=folder)))
            variants = {"before": {"PYTHONPATH": str(tree)}, **variants}
        cases = {
            name: (["convert", path.name, "-o", f"{name}.nir", "--steps", steps, "--json"], 0)
            for name, path in export_models(folder).items()
        }
        (folder / "bad.onnx").write_bytes(JUNK)
        cases["junk file"] = (["convert", "bad.onnx", "-o", "bad.nir"], 2)
        results = {name: measure(args, folder, repeats, variants, code) for name, (args, code) in cases.items()}
    load = {"load_before": load_before, "load_after": os.getloadavg()[0]}
    return {"baseline": baseline, "repeats": repeats, "cpus": os.cpu_count(), **load, "cases": results}


def table(results: dict) -> str:
    """Seconds and peak RSS per case and variant, then the accuracy tables."""
    cases = results["cases"]
    variants = [key for key in next(iter(cases.values())) if key != "command"]
    head = f"{'case':<10}" + "".join(f" {f'{v} s':>9}" for v in variants)
    head += "".join(f" {f'{v} MB':>10}" for v in variants) + "   command"
    load = f"{results['cpus']} cores, load average {results['load_before']:.1f} at the start, {results['load_after']:.1f} at the end"
    rows = [load, head, "-" * len(head)]
    for name, case in cases.items():
        row = f"{name:<10}" + "".join(f" {case[v]['seconds']:>9.2f}" for v in variants)
        row += "".join(f" {case[v]['peak_rss_bytes'] / 2**20:>10.0f}" for v in variants)
        rows.append(f"{row}   {case['command']}")
    rows += ["", "accuracy (%): T, ANN, float, float spikes, cpu (fixed)"]
    for name, case in cases.items():
        if "accuracy" in case[variants[-1]]:
            accuracy = case[variants[-1]]["accuracy"]
            for row in accuracy["snn"]:
                figures = " ".join(f"{100 * row[k]:6.2f}" for k in ("float", "float_spikes", "cpu"))
                rows.append(f"{name:<6} {row['steps']:>4} {100 * accuracy['ann']:6.2f} {figures}")
            if len(variants) > 1:
                same = all(case[v]["accuracy"] == accuracy for v in variants)
                rows.append(f"{name}: accuracy identical to {variants[0]}: {'yes' if same else 'NO'}")
        else:
            rows.append(f"{name}: {case[variants[-1]]['last_line']}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="16,32,64", help="the --steps of each conversion")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command; the minimum is reported")
    parser.add_argument("--baseline", metavar="REV", help="also time the code of this git revision (e.g. HEAD)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = bench(args.steps, args.repeats, args.baseline)
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
