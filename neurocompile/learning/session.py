"""A learning session on chip: a rule compiled into a program, the training split streamed through
it on a backend that learns, and held-out accuracy before, along and after (``docs/on-chip-learning.md``)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from neurocompile.analysis import metrics
from neurocompile.backends import create_backend, learning_backends
from neurocompile.data import DATASETS, drained, load_dataset
from neurocompile.errors import NeurocompileError
from neurocompile.files import save_figure, write_together
from neurocompile.ir.program import WEIGHT_RANGE
from neurocompile.ir.recording import Recording
from neurocompile.learning import INIT_CHOICES, LAYER_CHOICES, REINIT_CHOICES, RULES, onchip
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
    replay: dict | None = None  # the replay buffer mixed into the training split: samples, classes, bytes

    @property
    def steps(self) -> int:
        return int(self.x_train.shape[1])


def learning_data(data, steps, seed: int, limit, replay: int = 0, replay_data=None) -> LearningData:
    """The splits of ``data``: the training split's first ``limit`` samples (None: all), and ``replay`` samples of
    ``replay_data``'s training split (what the network already knows) mixed into it (:func:`replay_buffer`)."""
    x_train, y_train = load_dataset(data, steps=steps, split="train", seed=seed, limit=limit)
    x_test, y_test = load_dataset(data, steps=steps, split="test")
    calibration = data if str(data) in DATASETS else x_train[:256]
    learning = LearningData(x_train, y_train, x_test, y_test, calibration)
    if replay:
        x_known, y_known = load_dataset(replay_data, steps=learning.steps, split="train", seed=seed)
        where = f"replay data '{replay_data}'"
        if x_known.shape[2:] != x_train.shape[2:]:
            raise NeurocompileError(
                f"{where}: samples of shape {list(x_known.shape[2:])}, the training data's are {list(x_train.shape[2:])}"
            )
        x_kept, y_kept = replay_buffer(x_known, y_known, replay, seed, where)
        learning.x_train = np.concatenate([x_train, x_kept.astype(x_train.dtype)])
        learning.y_train = np.concatenate([y_train, y_kept])
        learning.replay = {"samples": len(y_kept), "classes": np.unique(y_kept).tolist(), "bytes": spike_bytes(x_kept)}
    return learning


def replay_buffer(x, y, n: int, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``(x, y)`` as a host-side buffer would keep them: as even a share of every class as the
    data allow, drawn with ``seed``."""
    if not 0 < n <= len(y):
        raise NeurocompileError(f"{where}: a replay buffer of {n} samples, but its training split has {len(y)}")
    rng = np.random.default_rng([int(seed), 29])
    pools = [rng.permutation(np.flatnonzero(y == label)) for label in np.unique(y)]
    dealt = [pool[k] for k in range(max(map(len, pools))) for pool in pools if k < len(pool)]  # round robin
    kept = np.sort(np.asarray(dealt[:n]))
    return x[kept], y[kept]


def spike_bytes(x: np.ndarray) -> int:
    """Bytes that ``x`` takes stored as one bit per spike (0/1 values), else as float32."""
    binary = bool(np.isin(x, (0, 1)).all())
    return int(np.ceil(x.size / 8)) if binary else int(x.size * 4)


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """What a learning session was asked for (``api.learn`` documents each), checked by :meth:`check`."""

    rule: str
    backend: str = "cpu"
    layers: str = "readout"
    lr: float = 0.003
    hidden_lr: float | None = None
    surrogate_alpha: float | None = None
    epochs: int = 1
    seed: int = 0
    steps: int | None = None
    limit: int | None = None
    reinit_readout: str | None = None
    init: str = "trained"
    replay: int = 0
    replay_data: str | None = None
    checkpoints: int = 10
    window: int = 100

    def check(self) -> None:
        """One-line errors for options the session cannot take, before anything is loaded."""
        for name, value, choices in (
            ("rule", self.rule, RULES),
            ("backend", self.backend, learning_backends()),
            ("layers", self.layers, LAYER_CHOICES),
            ("init", self.init, INIT_CHOICES),
        ):
            if value not in choices:
                raise NeurocompileError(f"learn: {name} must be one of {', '.join(choices)}, got '{value}'")
        if self.reinit_readout not in (None, *REINIT_CHOICES):
            raise NeurocompileError(f"learn: reinit_readout must be zero, random or None, got '{self.reinit_readout}'")
        if self.init == "random" and self.layers != "all":
            raise NeurocompileError(
                "learn: init 'random' re-draws the hidden layers, which learn only with layers 'all'"
            )
        for name in ("lr", "hidden_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise NeurocompileError(f"learn: {name} must be a positive number, got {value}")
        if (self.replay != 0) != (self.replay_data is not None):
            raise NeurocompileError(
                "learn: a replay buffer needs both its size (--replay) and its data (--replay-data)"
            )
        for name in ("epochs", "checkpoints", "window", "steps", "limit", "replay"):
            value = getattr(self, name)
            optional = name in ("steps", "limit") and value is None or name == "replay" and value == 0
            if not optional and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
                raise NeurocompileError(f"learn: {name} must be a positive integer, got {value!r}")


def learn_on_chip(program, data: LearningData, options: SessionOptions, progress: bool, reported: dict):
    """``options.rule`` compiled into ``program`` and learned over ``data``'s training split: ``(learned program
    in its deployed form, JSON-able result)``; ``reported``: the options as the result gives them."""
    o = options
    slope = {} if o.surrogate_alpha is None else {"surrogate_alpha": o.surrogate_alpha}
    window = onchip.stream_timing(program, data.steps).window
    check_learning_memory(program, len(data.y_train), len(data.y_test), window, o.checkpoints)
    learning, report = onchip.compile_learning(
        program, o.rule, o.layers, lr=o.lr, hidden_lr=o.hidden_lr, seed=o.seed, sample_steps=data.steps, **slope
    )
    if o.init == "random":
        random_hidden_layers(learning, report, o.seed)
    _reinit_readout(
        learning.synapse(report.plans[-1].synapse), "zero" if o.init == "random" else o.reinit_readout, o.seed
    )
    initial = {plan.synapse: np.array(learning.synapse(plan.synapse).weights) for plan in report.plans}
    held_out = _HeldOut(data.x_test, data.y_test)
    stream = _learn_stream(learning, report, o.backend, data, o.epochs, o.seed, o.checkpoints, held_out, progress)
    result = _learn_result(reported, report, stream, held_out, initial, data, o.window)
    return stream.deployed, result


def _learn_result(options: dict, report, stream, held_out, initial: dict, data: LearningData, window: int) -> dict:
    """The JSON-able figures of a learning run: ``options`` as given, the plastic synapses (``initial``:
    their weights before learning) and how many weights changed, accuracies, curves, the learning report
    and timing (learning steps counted from the stream)."""
    training = _training_curve(stream.correct, window)
    heldout = stream.heldout
    steps = len(stream.correct) * report.timing.window  # every streamed sample, all epochs
    learned = {name: stream.deployed.synapse(name).weights for name in initial}
    return {
        **options,
        "readout": report.plans[-1].synapse,
        "stream": dataclasses.asdict(report.timing),
        "replay": data.replay,
        "plastic_synapses": list(initial),
        "train_samples": len(data.y_train),
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
            "setup_s": stream.learn_s - stream.step_s,
            "step_s": stream.step_s,
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
    learn_s: float  # building the backend, starting it, checking the inputs and stepping
    step_s: float  # stepping alone (the backend's ``timing["run_s"]``)
    kernel: str | None


def _learn_stream(
    learning, report, backend, data: LearningData, epochs, seed, checkpoints, held_out, progress
) -> _Stream:
    """``epochs`` shuffled passes of the training split through ``learning``, with held-out accuracy at
    about ``checkpoints`` weight checkpoints along the stream and after every pass."""
    x, y = data.x_train, data.y_train
    n, window = len(y), report.timing.window
    plastic = [plan.synapse for plan in report.plans]
    every = window * -(-n // max(1, round(checkpoints / epochs)))
    order_rng = np.random.default_rng(int(seed))
    deployed = onchip.without_learning(learning)
    heldout = {"samples": [0], "accuracy": [held_out(deployed)]}
    correct, epoch_accuracy, learn_s, step_s, kernel = [], [], 0.0, 0.0, None
    for epoch in range(epochs):
        order = order_rng.permutation(n)
        rec, seconds = _learn_pass(learning, report, backend, x[order], y[order], every, progress)
        learn_s += seconds
        step_s += rec.metadata["timing"]["run_s"]
        kernel = rec.metadata.get("learning_kernel", kernel)
        hits = _stream_predictions(rec, learning, n, window) == y[order]
        correct.append(hits)
        epoch_accuracy.append(float(hits.mean()))
        for k, step in enumerate(rec.metadata.get("checkpoint_steps", [])):
            if step < n * window:
                weights = {name: rec[f"{name}.weights"][0, k] for name in plastic}
                heldout["samples"].append(epoch * n + step // window)
                heldout["accuracy"].append(held_out(deployed, weights))
        learning = rec.metadata["programs"][0]
        deployed = onchip.without_learning(learning)
        heldout["samples"].append((epoch + 1) * n)
        heldout["accuracy"].append(held_out(deployed))
    return _Stream(deployed, heldout, np.concatenate(correct), epoch_accuracy, learn_s, step_s, kernel)


def _training_curve(correct: np.ndarray, window: int) -> dict:
    """Running training accuracy (mean of the last ``window`` samples) at up to 200 points."""
    window = min(window, len(correct))
    running = _running_mean(correct, window)
    shown = np.unique(np.linspace(1, len(correct), min(len(correct), 200)).round().astype(int))
    return {"window": int(window), "samples": shown.tolist(), "accuracy": running[shown - 1].tolist()}


def random_hidden_layers(learning, report, seed: int) -> None:
    """Every hidden plastic layer's weights drawn anew: uniform even integers (Lava's mixed-sign 8-bit
    truncation keeps them) with the spread (standard deviation) of the compiled layer's, seeded."""
    if len(report.plans) < 2:
        raise NeurocompileError(
            f"learn: init 'random' needs hidden layers that learn; the only learnable layer is the readout "
            f"'{report.plans[-1].synapse}'"
        )
    rng = np.random.default_rng([int(seed), 23])
    for plan in report.plans[:-1]:
        synapse = learning.synapse(plan.synapse)
        weights = np.asarray(synapse.weights)
        half_width = math.sqrt(3.0) * float(weights.std())
        drawn = 2 * np.round(rng.uniform(-half_width, half_width, size=weights.shape) / 2)
        low, high = WEIGHT_RANGE["mixed"]
        synapse.weights = np.clip(drawn, low, high - 1).astype(weights.dtype)  # even bounds


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
    inputs, targets = onchip.timed_stream(x, y, report.timing, out.size, report.target_value)
    stream = {ports[0]: inputs, onchip.TARGET_PORT: targets}
    record = [f"{plan.synapse}.weights" for plan in report.plans] + [f"{out.name}.{_output_variable(out)}"]
    started = time.perf_counter()
    rec = create_backend(backend, learning).run(stream, record=record, checkpoint_every=every, progress=progress)
    return rec, time.perf_counter() - started


def _output_variable(population) -> str:
    return "spikes" if population.spiking else "v"


def _stream_predictions(rec, learning, n: int, window: int) -> np.ndarray:
    """The class predicted for each of the ``n`` samples of a learning stream (``window`` steps each), from
    its recorded output."""
    out = learning.population(learning.outputs[0])
    key = f"{out.name}.{_output_variable(out)}"
    per_sample = np.asarray(rec[key]).reshape(n, window, *out.shape)
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
