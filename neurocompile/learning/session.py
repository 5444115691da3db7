"""A learning session on chip: a rule compiled into a program, the training split streamed through
it on a backend that learns, and held-out accuracy before, along and after (``docs/on-chip-learning.md``)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from neurocompile.analysis import metrics
from neurocompile.backends import create_backend, learning_backends
from neurocompile.data import DATASETS, drained, load_dataset
from neurocompile.errors import NeurocompileError
from neurocompile.files import save_figure, write_together
from neurocompile.ir.recording import Recording
from neurocompile.learning import LAYER_CHOICES, REINIT_CHOICES, RULES, onchip
from neurocompile.resources import check_learning_memory

EVALUATION_BACKEND = "cpu"  # held-out accuracy: the deployed program, learning off


@dataclasses.dataclass
class LearningData:
    """A dataset's training split (streamed, encoded with the session's seed), its held-out split (encoded
    as ``simulate --data`` encodes it) and what a graph is calibrated on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    calibration: object  # a named dataset, or the first training samples

    @property
    def steps(self) -> int:
        return int(self.x_train.shape[1])


def learning_data(data, steps, seed: int, limit) -> LearningData:
    """The splits of ``data``: the training split's first ``limit`` samples (None: all)."""
    x_train, y_train = load_dataset(data, steps=steps, split="train", seed=seed)
    x_test, y_test = load_dataset(data, steps=steps, split="test")
    calibration = data if str(data) in DATASETS else x_train[:256]
    return LearningData(x_train[:limit], y_train[:limit], x_test, y_test, calibration)


def check_options(rule, backend, layers, lr, epochs, steps, limit, reinit_readout, checkpoints, window) -> None:
    """One-line errors for options the session cannot take, before anything is loaded."""
    if rule not in RULES:
        raise NeurocompileError(f"learn: rule must be one of {', '.join(RULES)}, got '{rule}'")
    if backend not in learning_backends():
        raise NeurocompileError(f"learn: backend must be one of {', '.join(learning_backends())}, got '{backend}'")
    if layers not in LAYER_CHOICES:
        raise NeurocompileError(f"learn: layers must be one of {', '.join(LAYER_CHOICES)}, got '{layers}'")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise NeurocompileError(f"learn: lr must be a positive number, got {lr}")
    if reinit_readout not in (None, *REINIT_CHOICES):
        raise NeurocompileError(f"learn: reinit_readout must be zero, random or None, got '{reinit_readout}'")
    for name, value in (("epochs", epochs), ("checkpoints", checkpoints), ("window", window)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise NeurocompileError(f"learn: {name} must be a positive integer, got {value!r}")
    for name, value in (("steps", steps), ("limit", limit)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise NeurocompileError(f"learn: {name} must be a positive integer, got {value!r}")


def learn_on_chip(
    program,
    rule: str,
    data: LearningData,
    *,
    backend: str,
    layers: str,
    lr: float,
    surrogate_alpha: float | None,
    epochs: int,
    seed: int,
    reinit_readout: str | None,
    checkpoints: int,
    window: int,
    progress: bool,
    options: dict,
):
    """``rule`` compiled into ``program`` and learned over ``data``'s training split on ``backend``:
    ``(learned program in its deployed form, JSON-able result)``; ``options`` are reported as given."""
    check_learning_memory(program, len(data.y_train), len(data.y_test), data.steps, checkpoints)
    slope = {} if surrogate_alpha is None else {"surrogate_alpha": surrogate_alpha}
    learning, report = onchip.compile_learning(
        program, rule, layers, lr=lr, seed=seed, sample_steps=data.steps, **slope
    )
    _reinit_readout(learning.synapse(report.plans[-1].synapse), reinit_readout, seed)
    initial = {plan.synapse: np.array(learning.synapse(plan.synapse).weights) for plan in report.plans}
    held_out = _HeldOut(data.x_test, data.y_test)
    stream = _learn_stream(learning, report, backend, data, epochs, seed, checkpoints, held_out, progress)
    result = _learn_result(options, report, stream, held_out, initial, len(data.y_train), window)
    return stream.deployed, result


def _learn_result(options: dict, report, stream, held_out, initial: dict, train_samples: int, window: int) -> dict:
    """The JSON-able figures of a learning run: ``options`` as given, the plastic synapses (``initial``:
    their weights before learning) and how many weights changed, accuracies, curves, the learning report
    and timing (learning steps counted from the stream)."""
    training = _training_curve(stream.correct, window)
    heldout = stream.heldout
    steps = len(stream.correct) * options["steps"]  # every streamed sample, all epochs
    learned = {name: stream.deployed.synapse(name).weights for name in initial}
    return {
        **options,
        "readout": report.plans[-1].synapse,
        "plastic_synapses": list(initial),
        "train_samples": int(train_samples),
        "test_samples": len(held_out.y),
        "held_out_steps_run": options["steps"] + stream.deployed.output_latency(),  # the input's, then drained
        "weights_changed": sum(int(np.count_nonzero(learned[name] != w)) for name, w in initial.items()),
        "weights_plastic": sum(int(np.size(w)) for w in initial.values()),
        "accuracy_before": heldout["accuracy"][0],
        "accuracy_after": heldout["accuracy"][-1],
        "training_accuracy": stream.epoch_accuracy,
        "running_training_accuracy": training["accuracy"][-1],
        "learning_kernel": stream.kernel,
        "report": report.to_dict(),
        "curves": {"heldout": heldout, "training": training},
        "timing": {
            "learn_s": stream.learn_s,
            "learning_steps": int(steps),
            "steps_per_s": steps / stream.learn_s if stream.learn_s > 0 else None,
            "evaluate_s": held_out.seconds,
        },
    }


@dataclasses.dataclass
class _Stream:
    """What streaming the training split through a learning program gave."""

    deployed: object  # the learned program without learning rules
    heldout: dict  # held-out accuracy at samples seen: {"samples": [...], "accuracy": [...]}
    correct: np.ndarray  # per streamed sample: classified correctly while learning
    epoch_accuracy: list
    learn_s: float
    kernel: str | None


def _learn_stream(
    learning, report, backend, data: LearningData, epochs, seed, checkpoints, held_out, progress
) -> _Stream:
    """``epochs`` shuffled passes of the training split through ``learning``, with held-out accuracy at
    about ``checkpoints`` weight checkpoints along the stream and after every pass."""
    x, y = data.x_train, data.y_train
    n, steps = len(y), data.steps
    plastic = [plan.synapse for plan in report.plans]
    every = steps * -(-n // max(1, round(checkpoints / epochs)))
    order_rng = np.random.default_rng(int(seed))
    deployed = onchip.without_learning(learning)
    heldout = {"samples": [0], "accuracy": [held_out(deployed)]}
    correct, epoch_accuracy, learn_s, kernel = [], [], 0.0, None
    for epoch in range(epochs):
        order = order_rng.permutation(n)
        rec, seconds = _learn_pass(learning, report, backend, x[order], y[order], every, progress)
        learn_s += seconds
        kernel = rec.metadata.get("learning_kernel", kernel)
        hits = _stream_predictions(rec, learning, n, steps) == y[order]
        correct.append(hits)
        epoch_accuracy.append(float(hits.mean()))
        for k, step in enumerate(rec.metadata.get("checkpoint_steps", [])):
            if step < n * steps:
                weights = {name: rec[f"{name}.weights"][0, k] for name in plastic}
                heldout["samples"].append(epoch * n + step // steps)
                heldout["accuracy"].append(held_out(deployed, weights))
        learning = rec.metadata["programs"][0]
        deployed = onchip.without_learning(learning)
        heldout["samples"].append((epoch + 1) * n)
        heldout["accuracy"].append(held_out(deployed))
    return _Stream(deployed, heldout, np.concatenate(correct), epoch_accuracy, learn_s, kernel)


def _training_curve(correct: np.ndarray, window: int) -> dict:
    """Running training accuracy (mean of the last ``window`` samples) at up to 200 points."""
    window = min(window, len(correct))
    running = _running_mean(correct, window)
    shown = np.unique(np.linspace(1, len(correct), min(len(correct), 200)).round().astype(int))
    return {"window": int(window), "samples": shown.tolist(), "accuracy": running[shown - 1].tolist()}


def _reinit_readout(readout, how: str | None, seed: int) -> None:
    """Replace the readout's weights: ``zero``, or ``random`` small even integers (Lava's mixed-sign
    8-bit truncation keeps them), seeded."""
    if how == "zero":
        readout.weights = np.zeros_like(readout.weights)
    elif how == "random":
        rng = np.random.default_rng([int(seed), 17])
        readout.weights = (2 * rng.integers(-8, 9, size=np.shape(readout.weights))).astype(readout.weights.dtype)


class _HeldOut:
    """Held-out accuracy of a deployed program (optionally with some synapses' weights replaced) on
    the CPU backend, drained as ``simulate`` runs it; ``seconds`` accumulates the time spent."""

    def __init__(self, x, y):
        self.x, self.y, self.seconds = x, y, 0.0

    def __call__(self, program, weights: dict | None = None) -> float:
        started = time.perf_counter()
        if weights:
            program = program.with_weights(weights)
        x = drained(self.x, program.output_latency())  # as simulate runs it: the last inputs reach the outputs
        accuracy = metrics.accuracy(create_backend(EVALUATION_BACKEND, program).run(x), self.y)
        self.seconds += time.perf_counter() - started
        return accuracy


def _learn_pass(learning, report, backend: str, x, y, every: int, progress: bool):
    """One pass of the samples ``x`` (labels ``y``) back to back through the learning program:
    ``(recording, seconds)``; records the plastic weights every ``every`` steps and the output."""
    ports = [p.name for p in learning.spike_ports()]
    if len(ports) != 1:
        raise NeurocompileError(
            f"learn: the program has {len(ports)} input ports ({', '.join(ports)}); learn streams one"
        )
    out = learning.population(learning.outputs[0])
    targets = onchip.target_stream(y, x.shape[1], out.size, report.target_value)
    stream = {ports[0]: onchip.back_to_back(x), onchip.TARGET_PORT: onchip.back_to_back(targets)}
    record = [f"{plan.synapse}.weights" for plan in report.plans] + [f"{out.name}.{_output_variable(out)}"]
    started = time.perf_counter()
    rec = create_backend(backend, learning).run(stream, record=record, checkpoint_every=every, progress=progress)
    return rec, time.perf_counter() - started


def _output_variable(population) -> str:
    return "spikes" if population.spiking else "v"


def _stream_predictions(rec, learning, n: int, steps: int) -> np.ndarray:
    """The class predicted for each of the ``n`` samples of a learning stream, from its recorded output."""
    out = learning.population(learning.outputs[0])
    key = f"{out.name}.{_output_variable(out)}"
    per_sample = np.asarray(rec[key]).reshape(n, steps, *out.shape)
    return metrics.predictions(Recording({key: per_sample}, [out.name], rec.backend))


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every index (fewer at the start)."""
    sums = np.cumsum(np.asarray(values, dtype=np.float64))
    lagged = np.concatenate([np.zeros(window), sums[:-window]]) if len(sums) > window else np.zeros(len(sums))
    counts = np.minimum(np.arange(1, len(sums) + 1), window)
    return (sums - lagged[: len(sums)]) / counts


def plot_learning(result: dict, path) -> None:
    """Running training accuracy and held-out accuracy against samples seen, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    train = curves["training"]
    ax.plot(train["samples"], train["accuracy"], label=f"training, running (last {train['window']} samples)")
    ax.plot(curves["heldout"]["samples"], curves["heldout"]["accuracy"], marker="o", label="held-out (learning off)")
    for epoch in range(1, result["epochs"]):
        ax.axvline(epoch * result["train_samples"], color="grey", lw=0.5, ls=":")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"on-chip {result['rule'].upper()} ({result['layers']}) on {result['backend']}, lr {result['lr']:g}: "
        f"held-out {100 * result['accuracy_before']:.1f}% -> {100 * result['accuracy_after']:.1f}%",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)


def write_learned(program, result: dict, output, plot, graph=None, nir_output=None) -> None:
    """Write the program, the plot and the NIR graph: either all appear or none does."""
    import nir  # lazily: reading a session's result needs no NIR

    writers = (
        (plot, lambda p: plot_learning(result, p)),
        (output, program.save),
        (nir_output, lambda p: nir.write(str(p), graph)),
    )
    write_together([(path, write) for path, write in writers if path is not None], "learning outputs")
    if output is not None:
        result["output"] = str(output)
    if plot is not None:
        result["plot"] = str(plot)
    if nir_output is not None:
        result["nir"] = str(nir_output)
