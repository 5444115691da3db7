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


def layer_agreement(reference: Recording, compared: Recording, latency: dict[str, int]) -> dict[str, dict]:
    """Per-layer spike fidelity of a run (``compared``, e.g. fixed point) to a reference run (e.g. float).

    The fixed-point backends deliver every synapse one step later than the float reference, so
    population ``name`` is compared ``latency[name]`` steps later (``FixedPointProgram.latency``; 0 for
    runs on the same timing), over the reference steps the compared run covers after the shift (all
    of them for a drained run). Per layer, :func:`spike_fidelity` of the aligned spikes.
    """
    report = {}
    for name, shift in latency.items():
        aligned = _aligned(reference, compared, f"{name}.spikes", shift)
        if aligned is not None:
            report[name] = spike_fidelity(*aligned)
    return report


def _aligned(reference: Recording, compared: Recording, key: str, shift: int):
    """``key``'s reference spikes and the compared run's ``shift`` steps later, over the steps both
    cover, as float64 [batch, steps, neurons]; None when either lacks ``key`` or no step is left."""
    if key not in reference.arrays or key not in compared.arrays:
        return None
    ref = np.asarray(reference.arrays[key], dtype=np.float64)
    cmp = np.asarray(compared.arrays[key], dtype=np.float64)
    if ref.shape[:1] + ref.shape[2:] != cmp.shape[:1] + cmp.shape[2:]:
        raise NeurocompileError(
            f"'{key}': the reference's spikes {list(ref.shape)} and the compared run's {list(cmp.shape)} "
            "differ in samples or neurons ([batch, time, ...])"
        )
    steps = min(ref.shape[1], cmp.shape[1] - shift)
    if steps <= 0:
        return None
    return tuple(a.reshape(a.shape[0], a.shape[1], -1) for a in (ref[:, :steps], cmp[:, shift : shift + steps]))


def spike_fidelity(ref: np.ndarray, cmp: np.ndarray) -> dict:
    """How well aligned spikes ``cmp`` [batch, steps, neurons] reproduce ``ref`` (same shape).

    ``step_agreement``: fraction of (sample, step, neuron) entries equal; silent entries count as
    matches, so a sparse layer scores high whatever it does. ``count_ratio``: compared spikes /
    reference spikes (1.0 when both are silent, None when only the reference is). The spike-event
    scores of :func:`spike_f1`, and ``rate_correlation``: :func:`count_correlation` of the spike
    counts per (sample, neuron).
    """
    ref_spikes, cmp_spikes = float(ref.sum()), float(cmp.sum())
    ratio = cmp_spikes / ref_spikes if ref_spikes > 0 else (1.0 if cmp_spikes == 0 else None)
    return {
        "count_ratio": ratio,
        "step_agreement": float((ref == cmp).mean()),
        **spike_f1(ref, cmp),
        "rate_correlation": count_correlation(ref.sum(axis=1), cmp.sum(axis=1)),
    }


def spike_f1(ref: np.ndarray, cmp: np.ndarray) -> dict:
    """F1 of the spike events of ``cmp`` against ``ref`` (aligned arrays of the same shape).

    A true positive is a spike in both at the same entry (sample, step, neuron); precision = TP /
    compared spikes, recall = TP / reference spikes, F1 = 2 TP / (reference + compared spikes),
    1.0 when both are silent. Graded entries (a count of several spikes in one step) contribute
    min(ref, cmp) true positives, so F1 is the same score over spike counts. Returns ``spike_f1``
    with its counts ``true_positives``, ``reference_spikes`` and ``compared_spikes``.
    """
    tp, n_ref, n_cmp = (int(round(float(a.sum()))) for a in (np.minimum(ref, cmp), ref, cmp))
    return {
        "spike_f1": 2 * tp / (n_ref + n_cmp) if n_ref + n_cmp else 1.0,
        "true_positives": tp,
        "reference_spikes": n_ref,
        "compared_spikes": n_cmp,
    }


def count_correlation(ref_counts: np.ndarray, cmp_counts: np.ndarray) -> float | None:
    """Pearson correlation of two runs' spike counts, entry by entry (e.g. per sample and neuron).

    Undefined when either side is constant: then 1.0 if both are the same constant (silent in both,
    say), else None (reported as n/a).
    """
    a, b = np.ravel(ref_counts).astype(np.float64), np.ravel(cmp_counts).astype(np.float64)
    if a.std() > 0 and b.std() > 0:
        return float(np.corrcoef(a, b)[0, 1])
    return 1.0 if np.array_equal(a, b) else None


def format_score(value: float | None) -> str:
    """A score to 3 decimals; n/a where it is undefined (None)."""
    return "n/a" if value is None else f"{value:.3f}"


def fidelity_line(report: dict) -> str:
    """One layer's :func:`spike_fidelity` report in one line."""
    counts = f"{report['true_positives']} in both of {report['reference_spikes']}/{report['compared_spikes']}"
    return (
        f"count ratio {format_score(report['count_ratio'])}   step agreement {100 * report['step_agreement']:.2f}%"
        f"   spike F1 {report['spike_f1']:.3f} ({counts})   count correlation {format_score(report['rate_correlation'])}"
    )
