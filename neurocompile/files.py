"""Files read and written safely: arrays read without pickles and with their sizes checked first;
outputs never written over one of the command's inputs, never half written.

:func:`write_atomically` writes to a temporary file in the target's folder and renames it into
place, so a failure leaves the old file (or nothing) behind. :func:`check_outputs` refuses an
output that is one of the inputs, symlinks resolved.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neurocompile.errors import NeurocompileError

MAX_ARRAY_BYTES = 1 << 31  # an input array that needs more (as stored, or as float32) is refused unread
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def check_outputs(outputs, inputs) -> None:
    """One-line error if an output path is a directory or names one of the inputs (the same file, links followed)."""
    ins = [Path(p) for p in inputs if p is not None]
    for out in (Path(p) for p in outputs if p is not None):
        if out.is_dir():
            raise NeurocompileError(f"{out}: is a directory; the output needs a file name")
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


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def load_arrays(path, what: str = "input") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive by name, or of an ``.npy`` file as ``{"": array}`` (told apart by
    content, as ``np.load`` does). Each array's header is checked before its data is read: no pickled
    objects, at most ``MAX_ARRAY_BYTES``. Every problem is a one-line error naming ``what``, the file and
    the array."""
    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{what} '{path}': no such file")
    try:
        with open(path, "rb") as fh:
            archive = fh.read(4) in ZIP_MAGIC
            fh.seek(0)
            return _archive_arrays(fh, path, what) if archive else {"": _read_npy(fh, path, what, "")}
    except NeurocompileError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy's header parser and OSError all have their own types
        raise NeurocompileError(f"{what} '{path}': not a readable NumPy file ({_reason(exc)})") from None


def _archive_arrays(fh, path: Path, what: str) -> dict[str, np.ndarray]:
    arrays = {}
    with zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy"):
                raise NeurocompileError(f"{what} '{path}': member '{info.filename}' is not a .npy array")
            if key in arrays:
                raise NeurocompileError(f"{what} '{path}': array '{key}' appears twice")
            with archive.open(info) as member:
                arrays[key] = _read_npy(member, path, what, key)
    return arrays


def _read_npy(fp, path: Path, what: str, key: str) -> np.ndarray:
    """One ``.npy`` stream: header checked (dtype, size) before the data is read."""
    version = np.lib.format.read_magic(fp)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(fp)
    name = f"array '{key}'" if key else "the array"
    if dtype.hasobject:
        raise NeurocompileError(f"{what} '{path}': {name} holds Python objects (pickled data is not read)")
    count = math.prod(shape)
    need = count * max(dtype.itemsize, 4)
    if need > MAX_ARRAY_BYTES:
        raise NeurocompileError(
            f"{what} '{path}': {name} of shape {list(shape)} needs {need / 2**30:.3g} GiB; "
            f"at most {MAX_ARRAY_BYTES / 2**30:g} GiB is read"
        )
    data = bytearray(count * dtype.itemsize)
    if fp.readinto(data) != len(data):
        raise NeurocompileError(f"{what} '{path}': {name} is truncated")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def plain(obj):
    """``obj`` with NumPy scalars and arrays (also inside dicts, lists, tuples) as plain Python for JSON."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
