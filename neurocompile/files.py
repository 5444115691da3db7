"""Writing outputs safely: never over one of the command's inputs, never half a file.

:func:`write_atomically` writes to a temporary file in the target's folder and renames it into
place, so a failure leaves the old file (or nothing) behind. :func:`check_outputs` refuses an
output that is one of the inputs, symlinks resolved.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from neurocompile.errors import NeurocompileError


def check_outputs(outputs, inputs) -> None:
    """One-line error if an output path names one of the inputs (the same file, links followed)."""
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        for src in ins:
            if os.path.realpath(out) == os.path.realpath(src) or (out.exists() and src.exists() and out.samefile(src)):
                raise NeurocompileError(f"{out}: the output would overwrite the input {src}; choose another name")


def usual_mode() -> int:
    """The mode a newly created file gets (0o666 without the umask); ``mkstemp`` makes files private."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def require_folders(paths) -> None:
    """One-line error if the folder a path would be written in does not exist (None: no path)."""
    for path in (Path(p) for p in paths if p is not None):
        if not path.parent.is_dir():
            raise NeurocompileError(f"{path}: no such directory '{path.parent}'")


def write_atomically(path, write: Callable[[str], object], what: str = "file") -> Path:
    """Call ``write(temporary path)`` in ``path``'s folder, then rename the result to ``path``."""
    write_together([(path, write)], what)
    return Path(path)


def write_together(outputs, what: str = "outputs") -> None:
    """``(path, write)`` pairs: every ``write(temporary path)`` runs first, then all are renamed into
    place, so either every output appears or none does (a failure leaves the old files)."""
    pending = []
    try:
        for path, write in outputs:
            path = Path(path)
            require_folders([path])
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            pending.append((tmp, path))
            os.chmod(tmp, usual_mode())
            write(tmp)
        for tmp, path in pending:
            os.replace(tmp, path)
    except OSError as exc:
        where = f"{pending[-1][1]}: " if len(pending) == 1 else ""
        raise NeurocompileError(f"{where}cannot write {what} ({exc.strerror or type(exc).__name__})") from None
    finally:
        for tmp, _path in pending:
            if os.path.exists(tmp):
                os.remove(tmp)


def npz_name(path) -> Path:
    """``path`` with ``.npz`` added when it has no suffix at all (a name with another suffix is kept)."""
    path = Path(path)
    return path if path.suffix else path.with_suffix(".npz")


def save_figure(fig, path, what: str = "plot") -> Path:
    """Write a matplotlib figure as PNG and close it; a one-line error if it cannot be written."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot write {what} ({exc.strerror or type(exc).__name__})") from None
    finally:
        plt.close(fig)
    return Path(path)
