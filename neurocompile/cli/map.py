"""`neurocompile map MODEL --target loihi2`: the resource map of a network on Loihi 2.

MODEL is a ``.ncp`` program, or a ``.nir`` graph or ``.pt`` checkpoint compiled first (as ``simulate``
compiles them: without calibration, which changes no count). Prints cores per layer, their utilization,
the chips and one line per element stock Loihi 2 models cannot run (information: exit code 0); a layer
that cannot be partitioned is a one-line error (exit code 2). ``docs/loihi2.md``: the limits and the method.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import click

from neurocompile.cli import cli
from neurocompile.cli.options import convention_options, model_loading_options
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs
from neurocompile.hardware.loihi2 import CHIPS_PER_SYSTEM, LOIHI2
from neurocompile.hardware.mapping import TARGETS, map_program
from neurocompile.hardware.plot import plot_map


@cli.command(name="map")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", type=click.Choice(TARGETS), default="loihi2", show_default=True, help="Hardware to map onto.")
@click.option(
    "--chips",
    type=click.IntRange(1),
    default=CHIPS_PER_SYSTEM.value,
    show_default=True,
    help="Chips in the system (the default is Hala Point's; Oheo Gulch has 1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the map as JSON, every core included.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the core map as a PNG."
)
@convention_options()
@model_loading_options
def map_command(model, target, chips, as_json, plot_path, convention, dt, reset, lenient, allow_pickle, input_shape):
    """Partition MODEL (.ncp, .nir or .pt) onto Loihi 2's neuro cores: cores per layer, utilization, chips."""
    from neurocompile import api  # here, not at the top: the API loads torch, which --help does not need

    check_outputs([plot_path], [model])
    loaded = api.load_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    if api.is_program(loaded):
        program = loaded
    else:
        conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=loaded)
        if not (math.isfinite(conv.dt) and conv.dt > 0):
            raise NeurocompileError(f"--dt must be a positive number, got {conv.dt}")
        program, _report = api.compile(loaded, convention=conv, source=str(model))
    resource_map = map_program(program, dataclasses.replace(LOIHI2, chips_per_system=chips))
    if plot_path:
        plot_map(resource_map, plot_path)
    if as_json:
        click.echo(json.dumps({"model": str(model), **resource_map.to_dict()}, indent=2))
    else:
        click.echo(f"{model} on {target}")
        click.echo(resource_map.table())
