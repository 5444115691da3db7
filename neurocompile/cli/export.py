"""`neurocompile export MODEL`: a checkpoint to a NIR file, or a model to one ONNX time step.

``--to nir`` (default): a ``.pt`` checkpoint to a NIR graph. ``--to onnx``: a ``.nir`` graph or a
``.pt`` checkpoint to one time step of the network as an ONNX graph with explicit state inputs
and outputs (``neurocompile.onnx.step``, ``docs/onnx-step.md``).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from neurocompile.cli import cli
from neurocompile.cli.options import convention_options, model_loading_options
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs


@cli.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: MODEL with .nir or .onnx).",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(["nir", "onnx"]),
    default="nir",
    show_default=True,
    help="nir: a .pt checkpoint's NIR graph; onnx: one time step of MODEL (.nir or .pt) with explicit state.",
)
@convention_options("onnx: ")
@model_loading_options
def export_command(model, output, target, convention, dt, reset, lenient, allow_pickle, input_shape):
    """Export a PyTorch checkpoint to NIR, or a model to one ONNX time step (--to onnx)."""
    if target == "nir" and (convention or dt is not None or reset or lenient):
        raise NeurocompileError("--convention, --dt, --reset and --lenient apply to --to onnx only")
    output = output or model.with_suffix(f".{target}")
    check_outputs([output], [model])
    if target == "onnx":
        _export_onnx(model, output, convention, dt, reset, lenient, allow_pickle, input_shape)
        return
    from neurocompile.api import export

    graph = export(model, input_shape, allow_pickle=allow_pickle, output=output)
    click.echo(f"wrote {output} ({len(graph.nodes)} nodes, {len(graph.edges)} edges, dt={graph.metadata['dt']:g})")


def _export_onnx(model, output, convention, dt, reset, lenient, allow_pickle, input_shape) -> None:
    from neurocompile import api
    from neurocompile.onnx.step import state_names, write_step_onnx

    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise NeurocompileError(f"--dt must be a positive number, got {dt}")
    graph = api.load_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    if api.is_program(graph):
        raise NeurocompileError(f"{model}: a fixed-point program has no float step to export; use its .nir or .pt")
    conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=graph)
    step = write_step_onnx(output, graph, conv)
    click.echo(
        f"wrote {output} (one time step: {len(step.graph.node)} ONNX nodes, "
        f"{len(state_names(step))} states, convention {conv.name}, dt={conv.dt:g})"
    )
