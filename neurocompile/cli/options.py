"""Options that several commands share, defined once."""

from __future__ import annotations

import functools

import click

from neurocompile.frontend.peer_repairs import KNOWN, reading_from
from neurocompile.ir.program import RESET_MODES


def convention_options(scope: str = ""):
    """``--convention``, ``--dt``, ``--reset``, ``--lenient`` and ``--from`` (:func:`producer_option`): how a
    NIR graph is read. ``scope`` prefixes each help text (e.g. ``"onnx: "`` where only one mode reads a graph)."""

    def text(help_text: str) -> str:
        return f"{scope}{help_text[0].lower()}{help_text[1:]}" if scope else help_text

    options = [
        click.option(
            "--convention",
            help=text(
                "Discretization preset: neurocompile, norse, snntorch, sinabs, rockpool, spikingjelly or a "
                "versioned one (norse-1.1, snntorch-1.0, sinabs-3.1, rockpool-3.1), optionally with options, e.g. "
                "sinabs-3.1,spikes_per_step=single (default: the one MODEL records, else neurocompile)."
            ),
        ),
        click.option("--dt", type=float, help=text("Time step in seconds (overrides the convention's).")),
        click.option(
            "--reset",
            type=click.Choice(RESET_MODES),
            help=text("Reset after a spike (overrides the convention's)."),
        ),
        click.option("--lenient", is_flag=True, help=text("Read older NIR files without nir's type check.")),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return producer_option(scope)(command)

    return decorate


def producer_option(scope: str = ""):
    """``--from LIBRARY==VERSION``: the peer library that wrote the NIR file; its known exporter defects are
    repaired (each announced) and its native preset is the default convention. The command runs with it in
    effect for every graph it reads (:func:`neurocompile.frontend.peer_repairs.reading_from`), so it takes no argument."""
    option = click.option(
        "--from",
        "producer",
        metavar="LIBRARY==VERSION",
        help=f"{scope}Repair the known exporter defects of the library that wrote the NIR file ({KNOWN}).",
    )

    def decorate(command):
        @functools.wraps(command)
        def reading(*args, producer=None, **kwargs):
            with reading_from(producer):
                return command(*args, **kwargs)

        return option(reading)

    return decorate
