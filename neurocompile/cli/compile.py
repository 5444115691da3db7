"""`neurocompile compile MODEL.nir -o MODEL.ncp`: NIR graph -> fixed-point program.

Normalizes the graph (one synapse per chain of linear nodes), quantizes it for Lava's
integer LIF and writes the program (``.ncp``). Prints the per-layer quantization report as a
table, or as JSON with ``--json``. ``--calibrate`` runs the float reference on calibration
inputs first: an ``.npy`` array ``[batch, time, *input_shape]``, an ``.npz`` dataset (key
``x``), ``digits`` (the digits training split, rate-coded) or event data (its training split binned to
``--steps`` frames; ``docs/training.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from neurocompile.cli import cli
from neurocompile.cli.options import convention_options
from neurocompile.data import dataset_file
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs
from neurocompile.hardware.mapping import TARGETS, map_program
from neurocompile.ir.program import BIAS_ONSETS
from neurocompile.ir.report import METHODS


@cli.command(name="compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Program file to write (.ncp; default: MODEL with .ncp).",
)
@click.option(
    "--calibrate",
    "calibrate",
    default=None,
    help="Calibration inputs: DATA.npy, DATA.npz, 'digits' or event data (EVENTS.npz, tonic:NMNIST:ROOT; "
    "?downsample=K; binned to --steps).",
)
@click.option(
    "--calibrate-samples",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="At most this many calibration samples.",
)
@click.option(
    "--steps",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Time steps of a 'digits' or event-data calibration set.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="maxabs",
    show_default=True,
    help="Scale from the maximum or a percentile.",
)
@click.option("--percentile", default=99.99, show_default=True, type=float, help="Percentile for --method percentile.")
@click.option(
    "--bias-onset",
    type=click.Choice(BIAS_ONSETS),
    default="latency",
    show_default=True,
    help="A population adds its bias from the step its first input arrives, or from step 0 (Lava's stock LIF, "
    "as Loihi 2 runs it without a custom neuron model).",
)
@click.option(
    "--split-weights",
    is_flag=True,
    help="Give each dense or sparse synapse a second one that carries its rounding error 7 bits finer: twice the "
    "synapses, about 100 times smaller weight error.",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    help="Check the program against this hardware's design rules (as `neurocompile map` does) before writing it.",
)
@convention_options()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compile_command(
    model,
    output,
    calibrate,
    calibrate_samples,
    steps,
    method,
    percentile,
    bias_onset,
    split_weights,
    target,
    convention,
    reset,
    dt,
    lenient,
    as_json,
):
    """Compile a NIR graph into a fixed-point program for the cpu and lava backends."""
    from neurocompile import api

    if model.suffix.lower() != ".nir":
        raise NeurocompileError(f"{model}: expected a .nir graph")
    output = output or model.with_suffix(".ncp")
    check_outputs([output], [model, dataset_file(calibrate)])  # before reading anything
    if not model.is_file():
        raise NeurocompileError(f"{model}: no such file")
    graph = api.load_model(model, lenient=lenient)
    conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=graph)
    if not (np.isfinite(conv.dt) and conv.dt > 0):
        raise NeurocompileError(f"--dt must be a positive number, got {conv.dt}")
    program, report = api.compile(
        graph,
        calibrate or None,
        convention=conv,
        method=method,
        percentile=percentile,
        bias_onset=bias_onset,
        split_weights=split_weights,
        steps=steps,
        samples=calibrate_samples,
        source=str(model),
    )
    resource_map = map_program(program) if target else None  # its design rules before the program is written
    api.save_program(program, output)
    if as_json:
        hardware = {"map": resource_map.to_dict()} if resource_map else {}
        click.echo(json.dumps({"output": str(output), "report": report.to_dict(), **hardware}, indent=2))
    else:
        click.echo(report.table())
        if resource_map:
            click.echo("\n".join([resource_map.summary(), *resource_map.notes]))
        click.echo(f"wrote {output}: {len(program.populations)} populations, {len(program.synapses)} synapses")
