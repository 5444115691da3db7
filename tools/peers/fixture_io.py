"""Writing one peer fixture: shared by the tools/peers/*_cases.py scripts (runs in a peer venv).

A case directory holds ``model.nir`` (the library's own export), ``input.npy`` [batch, time, ...],
``spikes.npz`` (native spikes [batch, time, ...] keyed by the NIR node they belong to; ``output``
is the network's output) and ``meta.json``. Exporters that fail are listed in ``failures.json``
next to the cases. Nothing here imports neurocompile.
"""

from __future__ import annotations

import inspect
import json
import platform
import shutil
import sys
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

BATCH = 4


def spike_input(seed: int, steps: int, shape, rate: float) -> np.ndarray:
    """Fixed random binary spikes [BATCH, steps, *shape] (float32)."""
    rng = np.random.default_rng(seed)
    return (rng.random((BATCH, steps, *shape)) < rate).astype(np.float32)


def spike_array(output) -> np.ndarray:
    """A module's spikes as NumPy (modules that return ``(spikes, state)`` give the first)."""
    spikes = output[0] if isinstance(output, tuple) else output
    return spikes.detach().numpy().copy()


def record_per_step(net, neurons: dict[str, str], steps: int, step) -> dict:
    """Spikes of the submodules ``neurons`` ({module name: key}) at every step of ``step(t)`` (which
    runs the network one step and returns its output) and the output, stacked to [batch, time, ...]."""
    recorded = {key: [] for key in neurons.values()}
    modules = dict(net.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda m, i, o, key=key: recorded[key].append(spike_array(o)))
        for name, key in neurons.items()
    ]
    try:
        out = [spike_array(step(t)) for t in range(steps)]
    finally:
        for hook in hooks:
            hook.remove()
    result = {key: np.stack(values, axis=1) for key, values in recorded.items()}
    result["output"] = np.stack(out, axis=1)
    return result


def versions(library: str) -> dict:
    return {
        "library": library,
        "library_version": version(library),
        "nir_version": version("nir"),
        "torch_version": version("torch"),
        "python": platform.python_version(),
    }


def write_graph(path: Path, graph) -> None:
    """nir.write without gzip where this nir has the option: chunked datasets double the file size."""
    import nir

    if "compression" in inspect.signature(nir.write).parameters:
        nir.write(path, graph, compression=None)
    else:
        nir.write(path, graph)


def save_case(out: Path, case: str, library: str, graph, x: np.ndarray, spikes: dict, meta: dict) -> None:
    """Write the case directory; ``spikes`` maps NIR node names (and ``output``) to [batch, time, ...]."""
    folder = out / case
    folder.mkdir(parents=True, exist_ok=True)
    write_graph(folder / "model.nir", graph)
    np.save(folder / "input.npy", x.astype(np.uint8))  # binary spikes
    arrays = {key: np.asarray(value).astype(np.uint8) for key, value in spikes.items()}
    np.savez_compressed(folder / "spikes.npz", **arrays)
    counts = {key: int(value.sum()) for key, value in arrays.items()}
    record = {
        **versions(library),
        "case": case,
        **meta,
        "spike_counts": counts,
        "command": f"python tools/peers/{Path(sys.argv[0]).name} OUT",
    }
    (folder / "meta.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"{library}/{case}: spikes {counts}", flush=True)


def run_cases(out: Path, library: str, cases: dict) -> None:
    """Run every case function ``case(out, name)``; a failing one (export, run or write) goes to failures.json."""
    failures = {}
    for name, build in cases.items():
        try:
            build(out, name)
        except Exception as exc:
            line = str(exc).splitlines()[0] if str(exc) else ""
            failures[name] = {"error": f"{type(exc).__name__}: {line}", "where": _where(exc)}
            print(f"{library}/{name}: FAILED {failures[name]['error']}", flush=True)
            shutil.rmtree(out / name, ignore_errors=True)  # a half-written case
    if failures:
        (out / "failures.json").write_text(json.dumps({**versions(library), "failures": failures}, indent=2) + "\n")


def _where(exc: Exception) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"
