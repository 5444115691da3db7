"""`neurocompile learn MODEL`: on-chip learning (OTTT or S-TLLR) on the cpu or lava backend.

MODEL is a ``.pt`` checkpoint or ``.nir`` graph (compiled first, calibrated on the data's training
split) or a ``.ncp`` fixed-point program. The rule is compiled into the program's learning engine
(``neurocompile.learning.onchip``), the training split streams through it with learning on, and the
held-out split is classified with learning off before, along and after the stream. Writes the
learned program in its deployed form (``-o``, no learning rules: ``simulate`` and ``inspect`` take
it) and, with ``--plot``, the learning curves; nothing when a step fails.
"""

from __future__ import annotations

import json
import math

import click

from neurocompile.backends import learning_backends
from neurocompile.cli import cli
from neurocompile.cli.options import SEED, model_loading_options, producer_option
from neurocompile.data import dataset_file
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs
from neurocompile.learning import INIT_CHOICES, LAYER_CHOICES, REINIT_CHOICES, RULES


def _report_table(report: dict) -> str:
    from neurocompile.learning.onchip import LearningReport

    return LearningReport.from_dict(report).table()


def _replay_line(replay: dict | None) -> list[str]:
    if not replay:
        return []
    classes = ", ".join(map(str, replay["classes"]))
    return [
        f"  of which replayed: {replay['samples']} stored samples of classes {classes} "
        f"({replay['bytes']:,} bytes of spikes, host side)"
    ]


def format_learning(result: dict) -> str:
    """The one-screen text summary of a learning run."""
    t = result["timing"]
    epochs = result["epochs"]
    heldout = result["curves"]["heldout"]
    before, after = result["accuracy_before"], result["accuracy_after"]
    reinit = f", readout re-initialized ({result['reinit_readout']})" if result["reinit_readout"] else ""
    reinit = ", from scratch (hidden layers random, readout zero)" if result["init"] == "random" else reinit
    lines = [
        _report_table(result["report"]),
        "",
        f"stream: {result['train_samples']} training samples x {epochs} epoch{'s' * (epochs > 1)}, T={result['steps']} "
        f"(+{result['stream']['silent_steps']} silent), shuffled with seed {result['seed']}{reinit}",
        *_replay_line(result["replay"]),
        f"learned on {result['backend']} in {t['learn_s']:.2f} s: {t['learning_steps']:,} steps, "
        f"{t['steps_per_s']:,.0f} steps/s (stepping {t['step_s']:.3g} s, set-up and start-up {t['setup_s']:.3g} s)",
        f"held-out accuracy ({result['test_samples']} samples, cpu, learning off): "
        f"{100 * before:.2f}% before -> {100 * after:.2f}% after ({100 * (after - before):+.2f} points)",
        "  along the stream: "
        + ", ".join(f"{s}: {100 * a:.1f}%" for s, a in zip(heldout["samples"], heldout["accuracy"])),
        f"running training accuracy (last {result['curves']['training']['window']} samples): "
        f"{100 * result['running_training_accuracy']:.2f}%",
        f"weights changed: {result['weights_changed']:,} of {result['weights_plastic']:,} "
        f"({', '.join(result['plastic_synapses'])})",
        f"total {t['total_s']:.1f} s (load and compile {t['compile_s']:.1f} s, held-out evaluations "
        f"{t['evaluate_s']:.1f} s)",
    ]
    written = [result[key] for key in ("output", "plot") if key in result]
    if written:
        lines.append(f"wrote {', '.join(written)}")
    return "\n".join(lines)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--rule", required=True, type=click.Choice(RULES), help="Learning rule compiled on chip.")
@click.option(
    "--backend",
    type=click.Choice(learning_backends()),
    default="cpu",
    show_default=True,
    help="Where the learning stream runs (held-out evaluations always run on cpu).",
)
@click.option(
    "--data",
    default="digits",
    show_default=True,
    help="digits, digits-rows, PATH.npz (with labels y) or event data (EVENTS.npz, tonic:NMNIST:ROOT; ?downsample=K).",
)
@click.option(
    "--layers",
    type=click.Choice(LAYER_CHOICES),
    default="readout",
    show_default=True,
    help="Learn the readout only, or every layer (hidden layers by direct feedback alignment).",
)
@click.option(
    "--lr", type=float, default=0.003, show_default=True, help="Readout learning rate (float units, as offline)."
)
@click.option("--hidden-lr", type=float, help="Hidden layers' learning rate with --layers all (default: --lr).")
@click.option(
    "--surrogate-slope",
    "surrogate_alpha",
    type=float,
    help="Slope alpha of the surrogate 1/(alpha|v-vth|+1)^2 (default: the offline trainers' 10; smaller is wider).",
)
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="Passes over the training split.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Shuffling, training spikes, rule randomness.")
@click.option("--steps", type=click.IntRange(1), help="Time steps T per sample (default 16; an .npz file's own T).")
@click.option("--limit", type=click.IntRange(1), help="Learn from the first N training samples only.")
@click.option(
    "--reinit-readout",
    type=click.Choice(REINIT_CHOICES),
    help="Replace the readout weights before learning: zeros, or small random integers (seeded).",
)
@click.option(
    "--init",
    type=click.Choice(INIT_CHOICES),
    default="trained",
    show_default=True,
    help="random (with --layers all): learn from scratch, the hidden layers drawn anew and the readout zeroed.",
)
@click.option(
    "--replay",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Keep this many samples of --replay-data (what the model already knows) and mix them into every pass.",
)
@click.option("--replay-data", help="The data the replay buffer keeps samples of: digits, an .npz file or event data.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure, the report and the curves as JSON.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the learning curves (PNG) to this file."
)
@click.option(
    "--nir",
    "nir_path",
    type=click.Path(dir_okay=False),
    help="Also write the learned network as NIR, weights dequantized (MODEL must be a .pt or .nir).",
)
@click.option("--lenient", is_flag=True, help="Read older NIR files without nir's type check.")
@model_loading_options
@producer_option()
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Learned program to write (.ncp, deployed form: no learning rules).",
)
def learn(
    model,
    rule,
    backend,
    data,
    layers,
    lr,
    hidden_lr,
    surrogate_alpha,
    epochs,
    seed,
    steps,
    limit,
    reinit_readout,
    init,
    replay,
    replay_data,
    as_json,
    plot_path,
    nir_path,
    lenient,
    allow_pickle,
    input_shape,
    output,
):
    """Learn MODEL on chip with OTTT or S-TLLR and report held-out accuracy before and after."""
    from neurocompile import api

    for name, value in (("--lr", lr), ("--hidden-lr", hidden_lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise NeurocompileError(f"{name} must be a positive number, got {value}")
    check_outputs([output, plot_path, nir_path], [model, dataset_file(data), dataset_file(replay_data)])
    _learned, result = api.learn(
        model,
        rule,
        backend=backend,
        data=data,
        layers=layers,
        lr=lr,
        hidden_lr=hidden_lr,
        surrogate_alpha=surrogate_alpha,
        epochs=epochs,
        seed=seed,
        steps=steps,
        limit=limit,
        reinit_readout=reinit_readout,
        init=init,
        replay=replay,
        replay_data=replay_data,
        output=output,
        plot=plot_path,
        nir_output=nir_path,
        progress=True,
        lenient=lenient,
        allow_pickle=allow_pickle,
        input_shape=input_shape,
    )
    click.echo(json.dumps(result, indent=2) if as_json else format_learning(result))
