"""`neurocompile export MODEL`: a checkpoint to a NIR file, or a model to one ONNX time step or a netx network.

``--to nir`` (default): a ``.pt`` checkpoint to a NIR graph. ``--to onnx``: a ``.nir`` graph or a
``.pt`` checkpoint to one time step of the network as an ONNX graph with explicit state inputs
and outputs (``neurocompile.onnx.step``, ``docs/onnx-step.md``). ``--to netx``: a ``.ncp`` program, or a
``.nir``/``.pt`` model compiled as netx stores it, to lava-dl's netx HDF5 network
(``neurocompile.hardware.netx``, ``docs/loihi2.md``).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from neurocompile.cli import cli
from neurocompile.cli.options import convention_options, model_loading_options
from neurocompile.data import dataset_file
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs
from neurocompile.hardware import netx

SUFFIXES = {"nir": ".nir", "onnx": ".onnx", "netx": ".net"}


@cli.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: MODEL with .nir, .onnx or .net).",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(list(SUFFIXES)),
    default="nir",
    show_default=True,
    help="nir: a .pt checkpoint's NIR graph; onnx: one time step of MODEL (.nir or .pt) with explicit state; "
    "netx: MODEL (.ncp, or .nir or .pt compiled for netx) as lava-dl's netx network.",
)
@click.option(
    "--calibrate",
    help="netx: calibration inputs for compiling a .nir or .pt: DATA.npy, DATA.npz, 'digits' or event data.",
)
@convention_options("onnx, netx: ")
@model_loading_options
def export_command(model, output, target, calibrate, convention, dt, reset, lenient, allow_pickle, input_shape):
    """Export a PyTorch checkpoint to NIR, or a model to one ONNX time step (--to onnx) or a netx network (--to netx)."""
    if target == "nir" and (convention or dt is not None or reset or lenient):
        raise NeurocompileError("--convention, --dt, --reset and --lenient apply to --to onnx and --to netx only")
    if calibrate and target != "netx":
        raise NeurocompileError("--calibrate applies to --to netx only")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise NeurocompileError(f"--dt must be a positive number, got {dt}")
    output = output or model.with_suffix(SUFFIXES[target])
    check_outputs([output], [model, dataset_file(calibrate)])
    if target == "onnx":
        _export_onnx(model, output, convention, dt, reset, lenient, allow_pickle, input_shape)
        return
    if target == "netx":
        _export_netx(model, output, calibrate, convention, dt, reset, lenient, allow_pickle, input_shape)
        return
    from neurocompile.api import export

    graph = export(model, input_shape, allow_pickle=allow_pickle, output=output)
    click.echo(f"wrote {output} ({len(graph.nodes)} nodes, {len(graph.edges)} edges, dt={graph.metadata['dt']:g})")


def _export_onnx(model, output, convention, dt, reset, lenient, allow_pickle, input_shape) -> None:
    from neurocompile import api
    from neurocompile.onnx.step import state_names, write_step_onnx

    graph = api.load_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    if api.is_program(graph):
        raise NeurocompileError(f"{model}: a fixed-point program has no float step to export; use its .nir or .pt")
    conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=graph)
    step = write_step_onnx(output, graph, conv)
    click.echo(
        f"wrote {output} (one time step: {len(step.graph.node)} ONNX nodes, "
        f"{len(state_names(step))} states, convention {conv.name}, dt={conv.dt:g})"
    )


def _export_netx(model, output, calibrate, convention, dt, reset, lenient, allow_pickle, input_shape) -> None:
    from neurocompile import api

    program = api.load_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    note = ""
    if not api.is_program(program):  # compiled as netx stores it: no weight exponent, bias_exp 6, bias from step 0
        from neurocompile.compiler.pipeline import compile_graph

        conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=program)
        calibration = api.load_calibration(calibrate) if calibrate else None
        exponents = dict(weight_exp=netx.WEIGHT_EXP, bias_exp=netx.BIAS_EXP)
        program, _ = compile_graph(program, conv, calibration, bias_onset="start", source=str(model), **exponents)
        note = f"; compiled with weight_exp {netx.WEIGHT_EXP}, bias_exp {netx.BIAS_EXP}, biases from step 0"
    elif calibrate or convention or dt is not None or reset or lenient:
        raise NeurocompileError(
            f"{model}: a compiled program; --calibrate, --convention, --dt, --reset and --lenient apply to a .nir or .pt"
        )
    layers = netx.write_netx(program, output)
    click.echo(f"wrote {output} (netx layers: {', '.join(str(layer['type']) for layer in layers)}{note})")
