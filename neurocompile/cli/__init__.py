"""The `neurocompile` command line.

Each command lives in its own module of this package and registers itself on :data:`cli`.
Exit codes: 0 success; 2 bad input or a hardware limit (one line, ``error: ...``, no traceback);
130 interrupted (Ctrl-C, SIGTERM, SIGHUP); 1 an internal error (one line asking for a report).
Warnings raised during a command are shown after it succeeds and dropped when it fails, so an
error is exactly one line. Set ``NEUROCOMPILE_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import atexit
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
COMMAND_MODULES = ["doctor", "inspect", "simulate", "export", "train", "compile", "learn", "convert", "map"]


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


class _Failed(SystemExit):
    """The failure of the process's own command: :func:`_end` prints its one line last."""

    def __init__(self, code: int, line: str):
        super().__init__(code)
        self.line = line


def _fail_last(message: str, code: int = 2):
    """:func:`fail` for the process's own command: the line is printed last, after the unwinding of the
    failure and the atexit handlers, whose finalizers' errors ("Exception ignored in ...", from objects
    an interrupt left half-done, such as numpy's zip file being written) are not printed."""
    sys.unraisablehook = lambda unraisable: None
    raise _Failed(code, f"error: {message}")


def _end(code: int, line: str | None) -> None:
    """End the process now, with ``code`` and ``line`` (if any) as the last on stderr. The atexit
    handlers run (they reap child processes); Python's interpreter teardown does not: it takes one to
    two seconds (torch's alone half a second), and a signal during it would kill the process without
    a word. The outcome is decided, so further signals are ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    atexit._run_exitfuncs()
    if line:
        click.echo(line, err=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv=None):
    """Run the command line. Called without ``argv`` in the main thread (the ``neurocompile``
    program), it also ends the process: see :func:`_end`."""
    if argv is not None or threading.current_thread() is not threading.main_thread():
        return _command(argv, fail)
    line = None
    try:
        _command(argv, _fail_last)
        code = 0
    except SystemExit as exc:  # _Failed, or an exit of click's
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        line = getattr(exc, "line", None)
    except KeyboardInterrupt:  # a second signal while the first one was being reported
        sys.unraisablehook = lambda unraisable: None
        code, line = 130, "error: interrupted"
    _end(code, line)


def _command(argv, report):
    """The command line; ``report(message, code)`` reports a failure (it raises)."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    # SIGTERM and SIGHUP (kill, timeout, schedulers, a closed terminal) stop a run as Ctrl-C does,
    # unless the command was started with them ignored (nohup)
    in_main = threading.current_thread() is threading.main_thread()
    stopping = [
        sig for sig in (signal.SIGTERM, signal.SIGHUP) if in_main and signal.getsignal(sig) is not signal.SIG_IGN
    ]
    previous = {sig: signal.signal(sig, _interrupt) for sig in stopping}
    try:
        with warnings.catch_warnings(record=True) as caught:
            cli.main(args=argv, prog_name="neurocompile", standalone_mode=False)
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except NeurocompileError as exc:
        report(first_line(exc))
    except click.ClickException as exc:
        report(exc.format_message().replace("\n", " "), exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        report("interrupted", 130)
    except MemoryError:
        report("out of memory: run fewer samples (--limit) or steps (--steps), or a smaller model")
    except Exception as exc:  # an internal error: still one line unless debugging
        if os.environ.get("NEUROCOMPILE_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        report(
            f"internal error: {type(exc).__name__}: {first} (please report it; NEUROCOMPILE_DEBUG=1 shows the traceback)",
            1,
        )
    finally:
        if in_main:
            signal.alarm(0)
        if report is fail:  # else the handlers stay until _end ignores the signals
            for sig, handler in previous.items():
                signal.signal(sig, handler)
