"""Options that several commands share, defined once."""

from __future__ import annotations

import click


def convention_options(scope: str = ""):
    """``--convention``, ``--dt``, ``--reset`` and ``--lenient``: how a NIR graph is read.
    ``scope`` prefixes each help text (e.g. ``"onnx: "`` where only one mode reads a graph)."""

    def text(help_text: str) -> str:
        return f"{scope}{help_text[0].lower()}{help_text[1:]}" if scope else help_text

    options = [
        click.option(
            "--convention",
            help=text(
                "Discretization preset: neurocompile, norse, snntorch, sinabs, rockpool or spikingjelly "
                "(default: the one MODEL records, else neurocompile)."
            ),
        ),
        click.option("--dt", type=float, help=text("Time step in seconds (overrides the convention's).")),
        click.option(
            "--reset",
            type=click.Choice(["zero", "subtract"]),
            help=text("Reset after a spike (overrides the convention's)."),
        ),
        click.option("--lenient", is_flag=True, help=text("Read older NIR files without nir's type check.")),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
