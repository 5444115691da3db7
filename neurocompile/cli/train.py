"""`neurocompile train`: train a spiking MLP with BPTT, OTTT or S-TLLR and save a checkpoint.

Writes ``-o model.pt`` (a neurocompile checkpoint), ``model.png`` (learning curve) and
``model.json`` (config, per-epoch loss/accuracy/time, final test accuracy).
"""

from __future__ import annotations

import json
import math

import click

from ..errors import NeurocompileError
from . import cli


def _factors(text: str | None):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise NeurocompileError(f"--factors: expected 4 numbers, got '{text}'") from None
    if len(values) != 4:
        raise NeurocompileError(
            f"--factors: expected 4 numbers (lambda_post lambda_pre alpha_post alpha_pre), got {len(values)}"
        )
    return values


@cli.command()
@click.option("--arch", default="mlp", show_default=True, type=click.Choice(["mlp"]), help="Network architecture.")
@click.option(
    "--rule", default="bptt", show_default=True, type=click.Choice(["bptt", "ottt", "stllr"]), help="Learning rule."
)
@click.option(
    "--data", default="digits", show_default=True, help="digits, digits-rows or PATH.npz (keys x [N,T,...], y [N])."
)
@click.option("--steps", type=int, default=None, help="Time steps T (default 16; an .npz file's own T).")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--hardware-aware", is_flag=True, help="Loihi-style dynamics (decay k/4096, reset to zero) and 8-bit weights (STE)."
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--hidden", default="128,128", show_default=True, help="Hidden layer sizes, comma-separated.")
@click.option("--decay", type=float, default=0.8, show_default=True, help="Per-step membrane decay 1 - dt/tau.")
@click.option(
    "--reset",
    default="zero",
    show_default=True,
    type=click.Choice(["zero", "subtract"]),
    help="Reset after a spike (OTTT's reference resets by subtraction; Loihi resets to zero).",
)
@click.option("--output-neuron", default="LIF", show_default=True, type=click.Choice(["LIF", "LI"]))
@click.option(
    "--loss", default="ce", show_default=True, type=click.Choice(["ce", "mse"]), help="Per-step loss on the output."
)
@click.option(
    "--loss-scale", type=float, default=None, help="Logit scale of the CE loss (default 8 for LIF outputs, 1 for LI)."
)
@click.option("--loss-steps", type=int, default=None, help="Loss only over the last K steps.")
@click.option(
    "--ottt-mode",
    default="A",
    show_default=True,
    type=click.Choice(["A", "O"]),
    help="OTTT_A (per sample) or OTTT_O (per step).",
)
@click.option(
    "--factors", default=None, help="S-TLLR lambda_post lambda_pre alpha_post alpha_pre (default 0.5 0.8 -0.2 1)."
)
@click.option(
    "--feedback", default="bp", show_default=True, type=click.Choice(["bp", "dfa"]), help="Online learning signal."
)
@click.option("--encoding", default="rate", show_default=True, type=click.Choice(["rate", "latency", "threshold"]))
@click.option(
    "--threads", type=int, default=1, show_default=True, help="CPU threads (small networks run fastest on one)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON (no progress bar).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Checkpoint path (.pt).")
def train(
    arch,
    rule,
    data,
    steps,
    epochs,
    seed,
    device,
    hardware_aware,
    batch_size,
    lr,
    hidden,
    decay,
    reset,
    output_neuron,
    loss,
    loss_scale,
    loss_steps,
    ottt_mode,
    factors,
    feedback,
    encoding,
    threads,
    as_json,
    output,
):
    """Train a spiking MLP on spike-encoded data and save a checkpoint, learning curve and metrics."""
    import torch

    from ..training.stllr import DEFAULT_FACTORS
    from ..training.trainer import TrainConfig, save_outputs
    from ..training.trainer import train as run_training

    if threads >= 1:
        torch.set_num_threads(threads)
    if hardware_aware and reset != "zero":
        raise NeurocompileError("--hardware-aware resets to zero (Loihi); drop --reset subtract")
    if epochs < 1 or batch_size < 1:
        raise NeurocompileError("--epochs and --batch-size must be positive")
    if steps is not None and steps < 1:
        raise NeurocompileError(f"--steps must be positive, got {steps}")
    if loss_steps is not None and loss_steps < 1:
        raise NeurocompileError(f"--loss-steps must be positive, got {loss_steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise NeurocompileError(f"--lr must be a positive number, got {lr}")
    if loss_scale is not None and not (math.isfinite(loss_scale) and loss_scale > 0):
        raise NeurocompileError(f"--loss-scale must be a positive number, got {loss_scale}")
    try:
        hidden_sizes = tuple(int(h) for h in hidden.split(",") if h.strip())
    except ValueError:
        raise NeurocompileError(f"--hidden: expected comma-separated integers, got '{hidden}'") from None
    if any(h < 1 for h in hidden_sizes):
        raise NeurocompileError(f"--hidden: layer sizes must be positive, got '{hidden}'")
    if steps is None and not data.endswith(".npz"):
        steps = 16
    config = TrainConfig(
        arch=arch,
        rule=rule,
        data=data,
        steps=steps,
        epochs=epochs,
        seed=seed,
        device=device,
        hardware_aware=hardware_aware,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden_sizes,
        decay=decay,
        reset=reset,
        output_neuron=output_neuron,
        loss=loss,
        loss_steps=loss_steps,
        loss_scale=loss_scale if loss_scale is not None else (8.0 if output_neuron == "LIF" else 1.0),
        encoding=encoding,
        ottt_mode=ottt_mode,
        factors=_factors(factors) or DEFAULT_FACTORS,
        feedback=feedback,
    )
    model, metrics = run_training(config, progress=not as_json)
    try:
        paths = save_outputs(model, metrics, output)
    except OSError as exc:
        raise NeurocompileError(f"{output}: cannot write ({exc.strerror or type(exc).__name__})") from None
    metrics["outputs"] = paths
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    click.echo(
        f"{rule} on {data} (T={metrics['steps']}, {epochs} epochs, seed {seed}, {metrics['device']}): "
        f"test accuracy {metrics['test_acc']:.4f} (best {metrics['best_test_acc']:.4f}), "
        f"{metrics['mean_epoch_time_s']:.2f} s/epoch"
    )
    click.echo(f"wrote {paths['checkpoint']}, {paths['curve']}, {paths['metrics']}")
