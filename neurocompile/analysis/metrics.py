"""Readout and activity statistics of a :class:`~neurocompile.ir.recording.Recording`.

Readout rule (every backend, every command): the predicted class is the argmax over the output
node's neurons of the spike count summed over time; for a non-spiking output (LI, CubaLI, I: no
``<node>.spikes`` recorded) it is the argmax of ``v`` summed over time. Ties go to the lowest
index (``numpy.argmax``).
"""

from __future__ import annotations

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.recording import Recording
from neurocompile.semantics import fixedpoint as fxp


def output_scores(recording: Recording, node: str | None = None) -> np.ndarray:
    """Per-class scores [batch, classes]: spike counts, or v summed over time for non-spiking outputs."""
    if node is None:
        if not recording.outputs:
            raise NeurocompileError("recording names no output node")
        node = recording.outputs[0]
    for var in ("spikes", "v", "out"):
        key = f"{node}.{var}"
        if key in recording.arrays:
            arr = np.asarray(recording.arrays[key], dtype=np.float64)
            if arr.ndim < 2:
                raise NeurocompileError(f"recording '{key}' has shape {list(arr.shape)}, expected [batch, time, ...]")
            return arr.sum(axis=1).reshape(arr.shape[0], -1)
    raise NeurocompileError(
        f"recording has no spikes or v of node '{node}' (keys: {', '.join(sorted(recording.arrays))})"
    )


def predictions(recording: Recording, node: str | None = None) -> np.ndarray:
    """Predicted class per sample, [batch] int64 (see the module docstring)."""
    return np.argmax(output_scores(recording, node), axis=1).astype(np.int64)


def accuracy(recording: Recording, labels, node: str | None = None) -> float:
    """Fraction of samples whose prediction equals ``labels`` [batch]."""
    pred = predictions(recording, node)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != pred.shape[0]:
        raise NeurocompileError(f"{labels.shape[0]} labels for {pred.shape[0]} samples")
    return float((pred == labels).mean()) if pred.size else float("nan")


def activity_summary(recording: Recording) -> dict[str, dict]:
    """Per node: spikes in total and per sample, firing rate per neuron and step, and sparsity.

    Spiking nodes (``<node>.spikes``) report ``spikes``, ``spikes_per_sample``, ``rate`` (spikes
    per neuron per step) and ``sparsity`` (fraction of zero entries). Other recorded activations
    (``<node>.out``) report ``sparsity`` only. ``synops`` is included when the backend counted it
    (``recording.metadata["synops"]``, per weight node).
    """
    summary: dict[str, dict] = {}
    for key, arr in recording.arrays.items():
        node, _, var = key.rpartition(".")
        arr = np.asarray(arr)
        if var == "spikes":
            batch = max(arr.shape[0], 1)
            total = float(arr.sum())
            summary.setdefault(node, {}).update(
                spikes=int(round(total)),
                spikes_per_sample=total / batch,
                neurons=int(np.prod(arr.shape[2:])) if arr.ndim > 2 else 1,
                rate=float(arr.mean()) if arr.size else 0.0,
                sparsity=float((arr == 0).mean()) if arr.size else 1.0,
            )
        elif var == "out" and node not in summary:
            summary[node] = {"sparsity": float((arr == 0).mean()) if arr.size else 1.0}
    for node, count in (recording.metadata.get("synops") or {}).items():
        summary.setdefault(node, {})["synops"] = int(count)
    return summary


def program_synops(program, inputs, recording: Recording) -> dict[str, int] | None:
    """Synaptic operations of a program run: per synapse, every source spike times its number of
    nonzero outgoing weights, summed over batch and time.

    Sources are the input spikes (``inputs`` [batch, time, ...], one port) or the recorded
    ``<population>.spikes``. Returns None when a source's spikes were not recorded.
    """
    result: dict[str, int] = {}
    port_names = [p.name for p in program.inputs]
    for syn in program.synapses:
        if syn.source in port_names:
            if len(port_names) != 1:
                return None
            spikes = np.asarray(inputs)
        else:
            key = f"{syn.source}.spikes"
            if key not in recording.arrays:
                return None
            spikes = np.asarray(recording.arrays[key])
        counts = (spikes != 0).sum(axis=(0, 1)).reshape(-1).astype(np.float64)  # per source neuron
        fanout = synapse_fanout(syn)
        if fanout.shape != counts.shape:
            return None
        result[syn.name] = int(round(float(counts @ fanout)))
    return result


def synapse_fanout(syn) -> np.ndarray:
    """Nonzero outgoing weights of each source neuron of a synapse (float64 [n_source])."""
    if syn.kind == "conv" and syn.conv is not None:
        _, cols, _ = fxp.conv_connections(syn.weights, syn.conv)
        return np.bincount(cols, minlength=int(np.prod(syn.conv.input_shape))).astype(np.float64)
    w = np.asarray(syn.weights) != 0
    return w.reshape(w.shape[0], -1).sum(axis=0).astype(np.float64)


def layer_agreement(reference: Recording, fixed: Recording, latency: dict[str, int]) -> dict[str, dict]:
    """Per-layer spike agreement of a fixed-point run with the float reference.

    The fixed-point backends deliver every synapse one step later than the float reference, so
    population ``name`` is compared ``latency[name]`` steps later (``FixedPointProgram.latency``).
    Per layer: ``count_ratio`` (fixed spikes / float spikes), ``step_agreement`` (fraction of
    sample x step x neuron entries equal after the shift) and ``rate_correlation`` (Pearson
    correlation of the spike counts of each neuron in each sample).
    """
    report = {}
    for name, shift in latency.items():
        key = f"{name}.spikes"
        if key not in reference.arrays or key not in fixed.arrays:
            continue
        ref = np.asarray(reference.arrays[key], dtype=np.float64)
        fix = np.asarray(fixed.arrays[key], dtype=np.float64)
        steps = ref.shape[1] - shift
        if steps <= 0:
            continue
        ref, fix = ref[:, :steps], fix[:, shift : shift + steps]  # a drained run is longer
        ref_counts, fix_counts = ref.sum(axis=1).ravel(), fix.sum(axis=1).ravel()
        both_vary = ref_counts.std() > 0 and fix_counts.std() > 0
        report[name] = {
            "count_ratio": float(fix.sum() / ref.sum()) if ref.sum() > 0 else float("nan"),
            "step_agreement": float((ref == fix).mean()),
            "rate_correlation": float(np.corrcoef(ref_counts, fix_counts)[0, 1]) if both_vary else float("nan"),
        }
    return report
