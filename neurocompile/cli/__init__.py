"""The `neurocompile` command line.

Each command lives in its own module of this package and registers itself on :data:`cli`.
Exit codes: 0 success; 2 bad input or a hardware limit (one line, ``error: ...``, no traceback);
130 interrupted (Ctrl-C, SIGTERM, SIGHUP); 1 an internal error (one line asking for a report).
Warnings raised during a command are shown after it succeeds and dropped when it fails, so an
error is exactly one line. Set ``NEUROCOMPILE_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import warnings

import click

from neurocompile import __version__
from neurocompile.errors import NeurocompileError, first_line

# Modules in this package that define commands; each one decorates its command with @cli.command.
COMMAND_MODULES = ["doctor", "inspect", "simulate", "export", "train", "compile", "learn", "convert"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurocompile")
def cli():
    """Spiking neural networks from PyTorch to NIR, Lava and a bit-accurate CPU simulator."""


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


INTERRUPT_GRACE_S = 10  # after SIGTERM/SIGHUP, the run has this long to clean up before the process exits anyway


def _interrupt(signum, frame):
    """Stop the run as Ctrl-C does; should library code swallow the KeyboardInterrupt, exit anyway
    once the grace period is over (Lava's workers die with the process: parent-death signal)."""
    signal.signal(signal.SIGALRM, _exit_interrupted)
    signal.alarm(INTERRUPT_GRACE_S)
    raise KeyboardInterrupt


def _exit_interrupted(signum, frame):
    sys.stderr.write("\nerror: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def main(argv=None):
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    # SIGTERM and SIGHUP (kill, timeout, schedulers, a closed terminal) stop a run as Ctrl-C does
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)} if in_main else {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            cli.main(args=argv, prog_name="neurocompile", standalone_mode=False)
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except NeurocompileError as exc:
        fail(first_line(exc))
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as exc:
        fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except MemoryError:
        fail("out of memory: run fewer samples (--limit) or steps (--steps), or a smaller model")
    except Exception as exc:  # an internal error: still one line unless debugging
        if os.environ.get("NEUROCOMPILE_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(
            f"internal error: {type(exc).__name__}: {first} (please report it; NEUROCOMPILE_DEBUG=1 shows the traceback)",
            1,
        )
    finally:
        if in_main:
            signal.alarm(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
