"""The training loop shared by all rules: data, epochs, evaluation, learning curve, metrics.

    model, metrics = train(TrainConfig(rule="ottt", data="digits", steps=16, epochs=30))

Training spikes are drawn again every epoch, the held-out split is encoded once; under torchrun the loop is
data-parallel (``docs/distributed.md``). The loop and the rules: ``docs/training.md``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neurocompile import distributed
from neurocompile.data import DATASETS, load_dataset
from neurocompile.errors import BackendUnavailableError, NeurocompileError
from neurocompile.files import save_figure, write_together
from neurocompile.frontend.checkpoint import save_checkpoint
from neurocompile.models.architectures import MLP
from neurocompile.resources import check_training_memory
from neurocompile.semantics import primitives
from neurocompile.semantics.discretization import Convention
from neurocompile.training import ARCHS, RULES
from neurocompile.training.bptt import BPTT
from neurocompile.training.common import (
    add_fake_quant,
    count_correct,
    fold_fake_quant,
    hardware_aware_neuron_params,
    predict,
)
from neurocompile.training.ottt import OTTT
from neurocompile.training.stllr import DEFAULT_FACTORS, STLLR


@dataclass
class TrainConfig:
    arch: str = "mlp"
    rule: str = "bptt"
    data: str = "digits"
    steps: int | None = None  # None: 16 for digits, digits-rows and event data, an .npz file's own T
    epochs: int = 30
    seed: int = 0
    device: str = "auto"
    hardware_aware: bool = False
    batch_size: int = 32
    lr: float = 2e-3
    hidden: tuple = (128, 128)
    decay: float = 0.8  # per-step membrane decay 1 - dt/tau of every LIF
    output_neuron: str = "LIF"
    reset: str = "zero"  # the Convention's reset (Loihi resets to zero)
    loss: str = "ce"
    loss_scale: float | None = None  # None: 8 for a LIF output (CE on 8 * spikes), 1 for an LI output
    loss_steps: int | None = None
    encoding: str = "rate"
    ottt_mode: str = "A"
    factors: tuple = DEFAULT_FACTORS
    feedback: str = "bp"
    quant_bits: int = 8

    def resolved(self) -> TrainConfig:
        """This config with the defaults that depend on other fields (``steps``, ``loss_scale``) filled in."""
        steps = self.steps
        if steps is None and not str(self.data).endswith(".npz"):
            steps = 16
        loss_scale = self.loss_scale
        if loss_scale is None:
            loss_scale = 8.0 if output_neuron_model(self.output_neuron).spiking else 1.0
        return replace(self, steps=steps, loss_scale=loss_scale)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device 'cuda': no CUDA GPU is visible (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise NeurocompileError(f"unknown device '{name}'; choose auto, cpu or cuda")
    return torch.device(name)


def output_neuron_model(name: str) -> primitives.NeuronModel:
    """The readout's neuron model: one with a membrane time constant and no other state (the
    trainer gives it the hidden layers' ``tau`` and ``r``)."""
    leaky = [n for n, m in primitives.NEURONS.items() if "tau" in m.params._fields and m.state._fields == ("v",)]
    if name not in leaky:
        raise NeurocompileError(f"output neuron '{name}' is not a leaky neuron model; choose one of {', '.join(leaky)}")
    return primitives.NEURONS[name]


def build_model(config: TrainConfig, n_in: int, n_out: int):
    """The LIF MLP ``n_in - hidden - n_out`` with unit input gain (``r = tau/dt``)."""

    if config.arch != "mlp":
        raise NeurocompileError(f"unknown arch '{config.arch}'; choose one of {', '.join(ARCHS)}")
    if not 0.0 <= config.decay < 1.0:
        raise NeurocompileError(f"decay must be in [0, 1), got {config.decay}")
    conv = Convention(reset=config.reset)
    if config.hardware_aware:
        conv = Convention(reset="zero")
        params = hardware_aware_neuron_params(config.decay, conv.dt)
    else:
        tau = conv.dt / (1.0 - config.decay)
        params = dict(tau=tau, r=tau / conv.dt)
    out_params = dict(params)
    sizes = (n_in, *[int(h) for h in config.hidden], n_out)
    model = MLP(
        sizes,
        neuron="LIF",
        output_neuron=config.output_neuron,
        neuron_params=params,
        output_params=out_params,
        convention=conv,
    )
    return model


def make_rule(config: TrainConfig, model):
    if config.rule not in RULES:
        raise NeurocompileError(f"unknown rule '{config.rule}'; choose one of {', '.join(RULES)}")
    config = config.resolved()
    common = dict(loss=config.loss, loss_scale=config.loss_scale, loss_steps=config.loss_steps)
    if config.rule == "bptt":
        return BPTT(model, **common)
    if config.rule == "ottt":
        return OTTT(model, mode=config.ottt_mode, feedback=config.feedback, seed=config.seed, **common)
    return STLLR(model, factors=config.factors, feedback=config.feedback, seed=config.seed, **common)


def _load(config: TrainConfig, split: str, seed: int, device):
    x, y = load_dataset(config.data, config.steps, split, seed, encoding=config.encoding)
    x = x.reshape(x.shape[0], x.shape[1], -1)  # the MLP takes flat features per step
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def train(config: TrainConfig, progress: bool = True, log=None):
    """Train a model; returns ``(model, metrics)`` (metrics is JSON-able)."""
    config = config.resolved()
    device = resolve_device(config.device)
    world = distributed.current()
    batch_size = distributed.local_batch(config.batch_size, world)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    (x_train, y_train), (x_test, y_test), model = _data_and_model(config, device)
    replica, sync = distributed.replicate(model, autograd=config.rule == "bptt")
    rule = make_rule(config, replica)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1))
    update, on_step = _steppers(config, opt, sync)

    history = []
    gen = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"{config.rule} {config.data} T={x_train.shape[1]}",
        disable=not progress,
        unit="epoch",
    )
    for epoch in bar:
        t0 = time.perf_counter()
        if epoch > 1 and config.encoding == "rate" and str(config.data) in DATASETS:  # files are not re-encoded
            x_train, y_train = _load(config, "train", config.seed * 1000 + epoch - 1, device)
        order = distributed.shard_indices(torch.randperm(len(x_train), generator=gen), world).to(device)
        sums = _train_epoch(rule, update, on_step, x_train[order], y_train[order], batch_size)
        loss_sum, correct, count = distributed.all_sum(sums, device)
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        row = {"epoch": epoch, "loss": loss_sum / count, "train_acc": correct / count}
        row["epoch_time_s"] = time.perf_counter() - t0
        row["test_acc"] = _test_accuracy(model, x_test, y_test, world)
        if not math.isfinite(row["loss"]):
            raise NeurocompileError(f"training diverged at epoch {epoch} (loss {row['loss']}); lower --lr")
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", train=f"{row['train_acc']:.3f}", test=f"{row['test_acc']:.3f}")
        if log is not None:
            log(row)
    if config.hardware_aware:
        fold_fake_quant(model)
    final_acc = _test_accuracy(model, x_test, y_test, world)
    metrics = _metrics(config, device, model, (x_train, x_test), final_acc, history)
    metrics["train_time_s"] = time.perf_counter() - start
    if world.size > 1:
        metrics["world_size"] = world.size
    return model.cpu(), metrics


def _data_and_model(config: TrainConfig, device):
    """The training and test splits on ``device`` and the model built for their shapes."""
    x_test, y_test = _load(config, "test", 0, device)
    x_train, y_train = _load(config, "train", config.seed * 1000, device)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise NeurocompileError(
            f"dataset '{config.data}': train and test shapes differ ({list(x_train.shape[1:])} vs {list(x_test.shape[1:])})"
        )
    n_out = int(max(y_train.max(), y_test.max()) + 1)
    sizes = (int(np.prod(x_train.shape[2:])), *map(int, config.hidden), n_out)
    why = f": one output per class, and the largest label is {n_out - 1}" if n_out > sizes[-2] else ""
    check_training_memory(sizes, config.batch_size, int(x_train.shape[1]), why)
    model = build_model(config, int(x_train.shape[2]), n_out).to(device)
    if config.hardware_aware:
        add_fake_quant(model, config.quant_bits)
    return (x_train, y_train), (x_test, y_test), model


def _steppers(config: TrainConfig, opt, sync):
    """``(update, on_step)``: the optimizer step after the gradients are averaged across ranks, and
    the per-time-step hook (OTTT mode O updates every step; None otherwise)."""

    def update():
        sync()
        opt.step()

    if not (config.rule == "ottt" and config.ottt_mode == "O"):
        return update, None

    def on_step(_t):
        update()
        opt.zero_grad(set_to_none=True)

    return update, on_step


def _train_epoch(rule, update, on_step, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, int, int]:
    """One pass over this rank's part of the shuffled training set: (loss sum, correct, samples)."""
    rule.model.train()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        rule.model.zero_grad(set_to_none=True)
        loss, out = rule.run_batch(xb, yb, on_step=on_step)
        if on_step is None:
            update()
        total_loss += loss * len(yb)
        correct += int((predict(out) == yb).sum())
    return total_loss, correct, len(x)


def _test_accuracy(model, x: torch.Tensor, y: torch.Tensor, world) -> float:
    """Held-out accuracy; each rank classifies its block of the test set."""
    part = distributed.shard_slice(len(x), world)
    (correct,) = distributed.all_sum([count_correct(model, x[part], y[part])], x.device)
    return correct / max(len(x), 1)


def _metrics(config, device, model, data, final_acc: float, history: list[dict]) -> dict:
    x_train, x_test = data
    return {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "device": str(device),
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "steps": int(x_train.shape[1]),
        "sizes": list(model.config["sizes"]),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "test_acc": final_acc,
        "best_test_acc": max([r["test_acc"] for r in history], default=final_acc),
        "mean_epoch_time_s": float(np.mean([r["epoch_time_s"] for r in history])) if history else 0.0,
        "history": history,
    }


def plot_learning_curve(metrics: dict, path) -> Path:
    """Loss and train/test accuracy per epoch, as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = metrics["history"]
    epochs = [r["epoch"] for r in hist]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(epochs, [r["loss"] for r in hist], marker=".")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax2.plot(epochs, [r["train_acc"] for r in hist], marker=".", label="train (running)")
    ax2.plot(epochs, [r["test_acc"] for r in hist], marker=".", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend(loc="lower right")
    cfg = metrics["config"]
    fig.suptitle(
        f"{cfg['rule']} on {cfg['data']}, T={metrics['steps']}, seed {cfg['seed']}: test {metrics['test_acc']:.3f}"
    )
    fig.tight_layout()
    return save_figure(fig, path, "learning curve")


def output_paths(out_path) -> dict[str, Path]:
    """The files a training run writes: the checkpoint, ``<stem>.png`` (learning curve), ``<stem>.json`` (metrics)."""
    out_path = Path(out_path)
    return {"checkpoint": out_path, "curve": out_path.with_suffix(".png"), "metrics": out_path.with_suffix(".json")}


def save_outputs(model, metrics: dict, out_path) -> dict:
    """Write the checkpoint, learning curve and metrics (:func:`output_paths`): all of them or none."""
    paths = output_paths(out_path)
    extra = {k: metrics[k] for k in ("test_acc", "best_test_acc", "steps", "n_test")}
    extra["rule"] = metrics["config"]["rule"]
    extra["data"] = metrics["config"]["data"]
    extra["seed"] = metrics["config"]["seed"]
    extra["hardware_aware"] = metrics["config"]["hardware_aware"]
    writers = {
        "checkpoint": lambda path: save_checkpoint(model, path, extra=extra),
        "curve": lambda path: plot_learning_curve(metrics, path),
        "metrics": lambda path: Path(path).write_text(json.dumps(metrics, indent=2)),
    }
    write_together([(paths[name], write) for name, write in writers.items()], "training outputs")
    return {name: str(path) for name, path in paths.items()}
