"""`neurocompile train`: train a spiking MLP with BPTT, OTTT or S-TLLR and save a checkpoint.

Writes ``-o model.pt`` (a neurocompile checkpoint), ``model.png`` (learning curve) and
``model.json`` (config, per-epoch loss/accuracy/time, final test accuracy). Every option's
default is the field of the same name in :class:`neurocompile.training.trainer.TrainConfig`,
the one place defaults live (``neurocompile.train`` uses the same).

Under torchrun it trains data-parallel (:mod:`neurocompile.distributed`, docs/distributed.md):
``--batch-size`` is the global batch, and only rank 0 writes the outputs and prints.
"""

from __future__ import annotations

import json
import math

import click

from neurocompile import distributed
from neurocompile.cli import cli
from neurocompile.cli.options import SEED
from neurocompile.data import ENCODINGS
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import RESET_MODES
from neurocompile.training import ARCHS, DEVICES, FEEDBACKS, LOSSES, OTTT_MODES, RULES


class ConfigOption(click.Option):
    """An option whose default is the TrainConfig field of the same name, shown in ``--help``.

    TrainConfig (and torch with it) is imported only when ``train`` runs or shows its help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("show_default", True)
        super().__init__(*args, **kwargs)

    def get_default(self, ctx, call: bool = True):
        from neurocompile.training.trainer import TrainConfig

        value = getattr(TrainConfig(), self.name)
        if self.name == "hidden":
            return ",".join(str(h) for h in value)
        if self.name == "factors":
            return " ".join(f"{v:g}" for v in value)
        return value


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise NeurocompileError(f"--hidden: expected comma-separated integers, got '{text}'") from None
    if any(h < 1 for h in sizes):
        raise NeurocompileError(f"--hidden: layer sizes must be positive, got '{text}'")
    return sizes


def _factors(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise NeurocompileError(f"--factors: expected 4 numbers, got '{text}'") from None
    if len(values) != 4:
        raise NeurocompileError(
            f"--factors: expected 4 numbers (lambda_post lambda_pre alpha_post alpha_pre), got {len(values)}"
        )
    return values


def _check_options(o: dict) -> None:
    """Values the trainer would reject late or not at all, named by their flags."""
    if o["hardware_aware"] and o["reset"] != "zero":
        raise NeurocompileError("--hardware-aware resets to zero (Loihi); drop --reset subtract")
    if o["epochs"] < 1 or o["batch_size"] < 1:
        raise NeurocompileError("--epochs and --batch-size must be positive")
    if o["steps"] is not None and o["steps"] < 1:
        raise NeurocompileError(f"--steps must be positive, got {o['steps']}")
    if o["loss_steps"] is not None and o["loss_steps"] < 1:
        raise NeurocompileError(f"--loss-steps must be positive, got {o['loss_steps']}")
    if not (math.isfinite(o["lr"]) and o["lr"] > 0):
        raise NeurocompileError(f"--lr must be a positive number, got {o['lr']}")
    if o["loss_scale"] is not None and not (math.isfinite(o["loss_scale"]) and o["loss_scale"] > 0):
        raise NeurocompileError(f"--loss-scale must be a positive number, got {o['loss_scale']}")


@cli.command()
@click.option("--arch", cls=ConfigOption, type=click.Choice(ARCHS), help="Network architecture.")
@click.option("--rule", cls=ConfigOption, type=click.Choice(RULES), help="Learning rule.")
@click.option(
    "--data",
    cls=ConfigOption,
    help="digits, digits-rows, PATH.npz (keys x [N,T,...], y [N]) or event data (EVENTS.npz, tonic:NMNIST:ROOT; "
    "?downsample=K; binned to --steps).",
)
@click.option("--steps", cls=ConfigOption, type=int, help="Time steps T (default 16; an .npz file's own T).")
@click.option("--epochs", cls=ConfigOption, type=int)
@click.option("--seed", cls=ConfigOption, type=SEED)
@click.option("--device", cls=ConfigOption, type=click.Choice(DEVICES))
@click.option(
    "--hardware-aware", is_flag=True, help="Loihi-style dynamics (decay k/4096, reset to zero) and 8-bit weights (STE)."
)
@click.option("--batch-size", cls=ConfigOption, type=int)
@click.option("--lr", cls=ConfigOption, type=float)
@click.option("--hidden", cls=ConfigOption, help="Hidden layer sizes, comma-separated.")
@click.option("--decay", cls=ConfigOption, type=float, help="Per-step membrane decay 1 - dt/tau.")
@click.option(
    "--reset",
    cls=ConfigOption,
    type=click.Choice(RESET_MODES),
    help="Reset after a spike (OTTT's reference resets by subtraction; Loihi resets to zero).",
)
@click.option("--output-neuron", cls=ConfigOption, help="Readout neuron: a leaky model, spiking (LIF) or not (LI).")
@click.option("--loss", cls=ConfigOption, type=click.Choice(LOSSES), help="Per-step loss on the output.")
@click.option(
    "--loss-scale",
    cls=ConfigOption,
    type=float,
    help="Logit scale of the CE loss (default 8 for LIF outputs, 1 for LI).",
)
@click.option("--loss-steps", cls=ConfigOption, type=int, help="Loss only over the last K steps.")
@click.option(
    "--ottt-mode", cls=ConfigOption, type=click.Choice(OTTT_MODES), help="OTTT_A (per sample) or OTTT_O (per step)."
)
@click.option("--factors", cls=ConfigOption, help="S-TLLR lambda_post lambda_pre alpha_post alpha_pre.")
@click.option("--feedback", cls=ConfigOption, type=click.Choice(FEEDBACKS), help="Online learning signal.")
@click.option("--encoding", cls=ConfigOption, type=click.Choice(ENCODINGS))
@click.option(
    "--threads",
    type=click.IntRange(0, 1024),
    default=1,
    show_default=True,
    help="CPU threads (small networks run fastest on one; 0: torch's default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON (no progress bar).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Checkpoint path (.pt).")
def train(threads, as_json, output, **options):
    """Train a spiking MLP on spike-encoded data and save a checkpoint, learning curve and metrics."""
    import torch

    from neurocompile.api import train as run_training
    from neurocompile.training.trainer import TrainConfig, resolve_device

    if threads >= 1:
        torch.set_num_threads(threads)
    _check_options(options)
    options.update(hidden=_hidden(options["hidden"]), factors=_factors(options["factors"]))
    config = TrainConfig(**options)
    with distributed.session(resolve_device(config.device)) as world:  # rank 0 writes and prints
        main = world.main
        _model, metrics = run_training(config, output=output if main else None, progress=main and not as_json)
    if not main:
        return
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    cfg, paths = metrics["config"], metrics["outputs"]
    click.echo(
        f"{cfg['rule']} on {cfg['data']} (T={metrics['steps']}, {cfg['epochs']} epochs, seed {cfg['seed']}, "
        f"{metrics['device']}): test accuracy {metrics['test_acc']:.4f} (best {metrics['best_test_acc']:.4f}), "
        f"{metrics['mean_epoch_time_s']:.2f} s/epoch"
    )
    click.echo(f"wrote {paths['checkpoint']}, {paths['curve']}, {paths['metrics']}")
