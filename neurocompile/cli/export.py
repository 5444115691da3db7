"""`neurocompile export MODEL.pt`: a checkpoint to a NIR file."""

from __future__ import annotations

from pathlib import Path

import click

from ..outputs import check_outputs
from . import cli


@cli.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="NIR file to write (default: MODEL with .nir).",
)
@click.option("--allow-pickle", is_flag=True, help="Trust a pickled module or TorchScript file (it can run code).")
def export_command(model, output, allow_pickle):
    """Export a PyTorch checkpoint to a NIR graph file."""
    from ..pipeline import export

    output = output or model.with_suffix(".nir")
    check_outputs([output], [model])
    graph = export(model, allow_pickle=allow_pickle, output=output)
    click.echo(f"wrote {output} ({len(graph.nodes)} nodes, {len(graph.edges)} edges, dt={graph.metadata['dt']:g})")
