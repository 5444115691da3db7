"""What a simulation run did: accuracy, spikes per node, synaptic operations, activation sparsity.

recording = neurocompile.simulate(model, x, backend="cpu")
summary = neurocompile.summarize(recording, x, labels)   # a JSON-able dict
print(neurocompile.format_summary(summary))              # the table `neurocompile simulate` prints
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurocompile.analysis import metrics
from neurocompile.errors import NeurocompileError
from neurocompile.files import npz_name, save_figure, write_atomically


def summarize(recording, inputs, labels=None) -> dict:
    """The report of one run (the JSON of ``neurocompile simulate --json``, less its file fields).

    Synaptic operations come from ``recording.metadata["synops"]`` (set by the float backend,
    and by :func:`neurocompile.simulate` for programs); None when they could not be counted."""

    inputs = np.asarray(inputs)
    report = {
        "backend": recording.backend,
        "samples": int(inputs.shape[0]),
        "steps": int(inputs.shape[1]),
        "steps_run": _steps_run(recording, int(inputs.shape[1])),
        "outputs": list(recording.outputs),
    }
    if labels is not None:
        report["accuracy"] = metrics.accuracy(recording, labels)
    report["predictions"] = metrics.predictions(recording).tolist() if recording.outputs else []
    synops = recording.metadata.get("synops")
    report["nodes"] = metrics.activity_summary(recording)
    report["input_spikes"] = int((inputs != 0).sum())
    report["total_spikes"] = int(sum(v.get("spikes", 0) for v in report["nodes"].values()))
    report["synaptic_operations"] = None if synops is None else int(sum(synops.values()))
    report["activation_sparsity"] = _sparsity(report["nodes"])
    return report


def _steps_run(recording, steps: int) -> int:
    """The steps the backend ran: the input's, and the silent ones of a drained program after them."""
    return max((int(np.shape(a)[1]) for a in recording.arrays.values() if np.ndim(a) >= 2), default=steps)


def _sparsity(nodes: dict) -> float | None:
    """Neuron-weighted mean sparsity of the spiking nodes (None if no node spikes)."""
    spiking = [v for v in nodes.values() if "rate" in v]
    if not spiking:
        return None
    cells = sum(v["neurons"] for v in spiking)
    return float(sum(v["sparsity"] * v["neurons"] for v in spiking) / max(cells, 1))


def _node_row(node: str, info: dict) -> str:
    def cell(key, fmt):
        return format(info[key], fmt) if key in info else "-"

    return (
        f"{node:24s} {cell('neurons', 'd'):>8s} {cell('spikes', 'd'):>10s} {cell('spikes_per_sample', '.1f'):>11s} "
        f"{cell('rate', '.4f'):>8s} {cell('sparsity', '.4f'):>9s} {cell('synops', 'd'):>12s}"
    )


def _drained(report: dict) -> str:
    extra = report.get("steps_run", report["steps"]) - report["steps"]
    return f" (+{extra} silent: the program's output latency)" if extra > 0 else ""


def format_summary(report: dict) -> str:
    """The summary as the text table ``neurocompile simulate`` prints."""
    lines = [
        f"backend {report['backend']}: {report['samples']} samples x {report['steps']} steps{_drained(report)}, "
        f"outputs: {', '.join(report['outputs'])}"
    ]
    if "accuracy" in report:
        lines.append(f"accuracy             {report['accuracy'] * 100:.2f}%")
    lines.append(f"input spikes         {report['input_spikes']}")
    lines.append(f"total spikes         {report['total_spikes']}")
    if report["synaptic_operations"] is not None:
        lines.append(f"synaptic operations  {report['synaptic_operations']}")
    if report["activation_sparsity"] is not None:
        lines.append(f"activation sparsity  {report['activation_sparsity']:.4f}")
    lines.append("")
    header = f"{'node':24s} {'neurons':>8s} {'spikes':>10s} {'per sample':>11s} {'rate':>8s} {'sparsity':>9s} {'synops':>12s}"
    lines += [header, "-" * len(header)]
    lines += [_node_row(node, info) for node, info in report["nodes"].items()]
    return "\n".join(lines)


def save_recording(recording, path) -> Path:
    """Write every recorded array to ``path`` (``.npz`` added when the name has no suffix),
    atomically; a one-line error if it cannot. Returns the path written."""

    return write_atomically(npz_name(path), recording.save, "recording")


def _raster_keys(recording) -> list[str]:
    """Spiking nodes to plot: hidden ones first, then the outputs."""
    keys = [k for k in recording.arrays if k.endswith(".spikes")]
    outputs = [f"{o}.spikes" for o in recording.outputs]
    keys = [k for k in keys if k not in outputs] + [k for k in outputs if k in recording.arrays]
    if not keys:
        raise NeurocompileError("nothing to plot: the recording holds no spikes")
    return keys


def _verdict(recording, label) -> str:
    """The first sample's prediction, with its label and whether they agree when the label is known."""
    if not recording.outputs:
        return "no output"
    predicted = int(metrics.predictions(recording)[0])
    if label is None:
        return f"predicted {predicted}"
    return f"label {int(label)}, predicted {predicted} ({'right' if predicted == int(label) else 'wrong'})"


def plot_raster(recording, path, label=None) -> None:
    """Spike raster of the first sample: one panel per spiking node (hidden and output), neuron index
    against integer time steps, titled with the sample's prediction (and ``label``, its true class), as a PNG."""
    keys = _raster_keys(recording)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.8 * len(keys) + 0.8), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        arr = np.asarray(recording.arrays[key])[0]
        arr = arr.reshape(arr.shape[0], -1)
        t, n = np.nonzero(arr)
        ax.scatter(t, n, s=6, marker="|", color="black")
        ax.set_title(f"{key[: -len('.spikes')]}: {arr.shape[1]} neurons, {len(t)} spikes", fontsize=8, loc="left")
        ax.set_ylabel("neuron", fontsize=8)
        ax.set_ylim(-0.5, max(arr.shape[1], 1) - 0.5)
        ax.set_xlim(-0.5, max(arr.shape[0], 1) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(f"spike raster, sample 0 ({recording.backend}): {_verdict(recording, label)}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
