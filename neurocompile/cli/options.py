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


MAX_SHAPE_VALUE = 2**31 - 1  # per axis; the exporter's size checks do the rest
SEED = click.IntRange(0, 2**32 - 1)  # what numpy's and torch's generators both take


class ShapeParam(click.ParamType):
    """A per-sample shape on the command line: ``64`` or ``1,28,28`` (positive integers)."""

    name = "shape"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            shape = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            shape = ()
        if not shape or any(n < 1 or n > MAX_SHAPE_VALUE for n in shape):
            self.fail(f"expected positive integers separated by commas, such as 1,28,28; got {value!r}", param, ctx)
        return shape


def model_loading_options(command):
    """``--allow-pickle`` and ``--input-shape``: how a ``.pt`` MODEL that is a pickled module is read."""
    command = click.option(
        "--input-shape",
        type=ShapeParam(),
        help="Per-sample input shape of a .pt module that records none (a pickled nn.Module), e.g. 64 or 1,28,28.",
    )(command)
    return click.option(
        "--allow-pickle", is_flag=True, help="Trust a pickled module or TorchScript .pt file (loading it can run code)."
    )(command)


def producer_option(scope: str = ""):
    """``--from LIBRARY==VERSION[,OPTION=VALUE]``: the peer library that wrote the NIR file; its known exporter
    defects are repaired (each announced) and its native preset is the default convention. The command runs
    with it in effect for every graph it reads (:func:`neurocompile.frontend.peer_repairs.reading_from`), so it
    takes no argument; what the command's ``--convention``, ``--dt`` and ``--reset`` decide is not announced
    as assumed."""
    option = click.option(
        "--from",
        "producer",
        metavar="LIBRARY==VERSION",
        help=(
            f"{scope}Repair the known exporter defects of the library that wrote the NIR file ({KNOWN}); "
            "options the file does not record follow, e.g. sinabs==3.1,norm_input=false or norse==1.1,dt=1e-4."
        ),
    )

    def decorate(command):
        @functools.wraps(command)
        def reading(*args, producer=None, **kwargs):
            flags = {k: kwargs.get(k) for k in ("dt", "reset")}
            with reading_from(producer, kwargs.get("convention"), **flags):
                return command(*args, **kwargs)

        return option(reading)

    return decorate
