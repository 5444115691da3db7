"""`neurocompile inspect FILE`: a readable summary of a .nir graph or a .ncp fixed-point program."""

from __future__ import annotations

import json

import click

from neurocompile.cli import cli
from neurocompile.cli.options import producer_option
from neurocompile.ir.report import COLUMNS


def _columns_help() -> str:
    return "A program's quantization report, by column:\n\n\b\n" + "\n".join(
        f"  {name:<11} {text}" for name, text in COLUMNS.items()
    )


@cli.command(epilog=_columns_help())
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option("--lenient", is_flag=True, help="Read older NIR files without nir's type check.")
@producer_option()
def inspect(file, as_json, lenient):
    """Show nodes, shapes, parameter ranges, neuron/synapse counts and recurrent edges of FILE (.nir or .ncp)."""
    from neurocompile.analysis.inspection import describe_file, format_info

    info = describe_file(file, lenient=lenient)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(format_info(info))
