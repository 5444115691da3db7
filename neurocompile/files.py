"""Files read and written safely: arrays read without pickles and with their sizes checked first;
outputs never written over one of the command's inputs, never over a special file, never half written.

:func:`check_outputs` refuses, before a command works, an output that lies in a missing folder, names
something other than a regular file (a directory, a device, a FIFO, a socket; links followed), is one of
the inputs under any name (symlink, hard link, ``dir/..``) or is the same file as another output.
:func:`write_together` (and :func:`write_atomically`, :func:`save_figure`) writes each output to a
temporary file in the target's folder and renames it into place, so a failure leaves the old file (or
nothing) behind; a symlink at an output path is replaced by the new file, never written through.
:func:`plain_name` turns a name from a model into a plain file or archive-member name.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from neurocompile.errors import NeurocompileError

MAX_ARRAY_BYTES = 1 << 31  # an input array that needs more (as stored, or as float32) is refused unread
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)
_WRITING: set[str] = set()  # the temporary files write_together is writing now (absolute paths)


def check_outputs(outputs, inputs=()) -> None:
    """One-line error, before any work, if an output (None: none) lies in a missing folder, names (links
    followed) a directory, a device, a FIFO or a socket, is one of the ``inputs`` under any name (the same
    path once links and ``..`` are resolved, or the same file: a hard link) or the same file as another output."""
    outs = [Path(p) for p in outputs if p is not None]
    ins = [Path(p) for p in inputs if p is not None]
    _check_targets(outs)
    for out in outs:
        for src in ins:
            if same_file(out, src):
                raise NeurocompileError(f"{out}: the output would overwrite the input {src}; choose another name")


def same_file(a, b) -> bool:
    """Whether two paths name the same file: equal once symlinks and ``..`` are resolved, or (both existing)
    the same device and inode, as hard links are."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _not_a_file(path: Path) -> str | None:
    """What ``path`` names (links followed) when that is not a regular file; None for a file or nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # no such file, a dangling link or a link loop: the rename replaces the name itself
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _check_targets(paths: list[Path]) -> None:
    """The checks that need no inputs: folders exist, each target is a regular file or nothing, no two are the same."""
    require_folders(paths)
    for path in paths:
        kind = _not_a_file(path)
        if kind == "a directory":
            raise NeurocompileError(f"{path}: is a directory; the output needs a file name")
        if kind:
            raise NeurocompileError(f"{path}: is {kind}, not a file; the output needs the name of a regular file")
    for i, path in enumerate(paths):
        for other in paths[:i]:
            if same_file(path, other):
                raise NeurocompileError(f"{path}: is also the output {other}; give each output its own name")


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
    place, so either every output appears or none does (a failure leaves the old files).

    The targets are checked first and again just before the renames (:func:`check_outputs` without
    inputs): a missing folder, a directory, device, FIFO or socket, or two targets that are one file are
    refused. The rename replaces a symlink at a target, never the file it leads to. A write inside
    another one (a writer that calls :func:`save_figure` on the temporary file it was given) writes
    straight into that temporary file, which the outer write renames."""
    outputs = [(Path(path), write) for path, write in outputs]
    for path, write in outputs:
        if os.path.abspath(path) in _WRITING:
            write(str(path))
    outputs = [(path, write) for path, write in outputs if os.path.abspath(path) not in _WRITING]
    if not outputs:
        return
    _check_targets([path for path, _write in outputs])
    pending = []
    try:
        for path, write in outputs:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
            os.close(fd)
            pending.append((tmp, path))
            _WRITING.add(os.path.abspath(tmp))
            os.chmod(tmp, usual_mode())
            write(tmp)
        _check_targets([path for _tmp, path in pending])  # a FIFO or device made meanwhile is not replaced
        for tmp, path in pending:
            os.replace(tmp, path)
    except OSError as exc:
        where = f"{pending[-1][1]}: " if len(pending) == 1 else ""
        raise NeurocompileError(f"{where}cannot write {what} ({exc.strerror or type(exc).__name__})") from None
    finally:
        for tmp, _path in pending:
            _WRITING.discard(os.path.abspath(tmp))
            if os.path.exists(tmp):
                os.remove(tmp)


def npz_name(path) -> Path:
    """``path`` with ``.npz`` added when it has no suffix at all (a name with another suffix is kept)."""
    path = Path(path)
    return path if path.suffix else path.with_suffix(".npz")


def write_npz(fh, arrays: dict[str, np.ndarray], compresslevel: int = 1) -> None:
    """``arrays`` as ``np.savez_compressed`` writes them (``np.load`` reads the file), at zlib level
    ``compresslevel``: level 1 compresses a program's weights 6.5 times faster than numpy's 6, 13% larger."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def plain_name(name: str, suffix: str = "") -> str:
    """A name that comes from a model (a node, a population) as a plain file or archive-member name, then
    ``suffix``: every character but ASCII letters, digits and ``_.-~`` percent-encoded (``%`` too), so it
    holds no path separator, drive, NUL or control character, and distinct names stay distinct
    (``urllib.parse.unquote`` gives the name back). Names like ``lif1.spikes`` are kept as they are; an
    empty, ``.`` or ``..`` result is encoded too."""
    text = quote(str(name), safe="") + suffix
    if text in ("", ".", ".."):
        return text.replace(".", "%2E") or "%"
    return text


def save_figure(fig, path, what: str = "plot") -> Path:
    """Write a matplotlib figure as PNG (atomically, :func:`write_atomically`) and close it; a one-line
    error if it cannot be written."""
    import matplotlib.pyplot as plt

    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), what)
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
