"""Reading NIR files into validated ``nir.NIRGraph`` objects.

:func:`load_graph` is the one way neurocompile reads a ``.nir`` file: every failure the file causes is a
:class:`~neurocompile.errors.GraphError` with a one-line message naming the node and the field. Strict by default,
``lenient=True`` for older files; the HDF5 is read in a forked child (:func:`_read_isolated`). What it checks and
refuses: ``docs/input-safety.md``.
"""

from __future__ import annotations

import copy
import difflib
import math
import mmap
import os
import pickle
import re
import select
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from neurocompile.errors import GraphError, first_line
from neurocompile.frontend import peer_repairs
from neurocompile.ir.program import MAX_NODE_SIZE
from neurocompile.machine import LIMIT_VARIABLE, memory_limit
from neurocompile.semantics.primitives import PRIMITIVES, primitive


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _where(prefix: str) -> str:
    return prefix or "<graph>"


def load_graph(path, lenient: bool = False, producer: str | None = None):
    """Read and validate a ``.nir`` file. Raises GraphError (one line, naming the file) on any problem.

    ``producer`` (``"norse==1.1"``; default: the ``--from`` in effect, else the file's metadata) names
    the peer library that wrote the file: its known exporter defects are repaired and announced, and
    its native preset becomes the graph's convention (:mod:`neurocompile.frontend.peer_repairs`)."""
    import nir

    path = Path(path)
    if not path.exists():
        raise GraphError(f"{path}: no such file")
    if path.is_dir():
        raise GraphError(f"{path}: is a directory, not a NIR file")
    raw = _read_isolated(path)
    graph = known = None
    try:
        if "type_check" in raw:
            raise GraphError("unsupported key 'type_check' in the file", node="<graph>", field="type_check")
        graph = _build(raw, "")
        if not isinstance(graph, nir.NIRGraph):
            raise GraphError(f"the top-level node is a {type(graph).__name__}, not a NIRGraph")
        known = peer_repairs.producer_for(graph, producer)
        if known is not None:
            validate_graph(graph, lenient=True)  # the repairs read a graph whose structure and values are sound
            peer_repairs.repair(graph, known)
        _validate(graph, lenient)
    except GraphError as exc:
        hint = peer_hint(graph) if isinstance(graph, nir.NIRGraph) and known is None else ""
        named = GraphError(f"{path}: {exc}{hint}")
        named.node, named.field = exc.node, exc.field
        raise named from None
    return graph


def _validate(graph, lenient: bool) -> None:
    validate_graph(graph, lenient=lenient)
    if not lenient:
        _nir_type_check(graph)
        validate_graph(graph, lenient=False)


def _read_file(path: Path, shared: _SharedArrays | None = None) -> dict:
    """The file's ``node`` group as nested dicts of arrays and bytes (nir's raw form); its large arrays go into
    ``shared`` if given (they are :class:`_Placed` in the dicts)."""
    try:
        with h5py.File(path, "r") as fh:
            if "node" not in fh:
                raise GraphError(f"{path}: not a NIR file (HDF5 without a 'node' group)")
            _refuse_outside_references(fh, path)
            raw = _group_dict(fh["node"], shared)
    except GraphError:
        raise
    except Exception as exc:  # h5py raises OSError for truncated/random files, others for odd content
        reason = first_line(exc)
        raise GraphError(f"{path}: not a readable NIR (HDF5) file ({reason})") from None
    _check_depth(raw, path)
    return raw


MAX_DEPTH = 64  # groups nested in a file: 31 levels of subgraphs (each is a graph and its nodes group)


def _check_depth(raw: dict, path: Path) -> None:
    """Refuse groups nested deeper than ``MAX_DEPTH`` (building and checking a graph recurse per level)."""
    pending = [(raw, 1)]
    while pending:
        group, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise GraphError(f"{path}: groups nested more than {MAX_DEPTH} deep (subgraphs within subgraphs)")
        pending += [(value, depth + 1) for value in group.values() if isinstance(value, dict)]


def _group_dict(group, shared: _SharedArrays | None) -> dict:
    """nir's ``hdf2dict``: groups as dicts, datasets as their values (bytes as str), large arrays in ``shared``."""
    from nir.serialization import try_byte_to_str

    out = {}
    for key, item in group.items():
        key = try_byte_to_str(key)
        if isinstance(item, h5py.Group):
            out[key] = _group_dict(item, shared)
        elif shared is not None and shared.takes(item):
            out[key] = shared.place(item)
        elif isinstance(item, h5py.Dataset):
            out[key] = try_byte_to_str(item[()])
    return out


@dataclass(frozen=True)
class _Placed:
    """An array the reading child put into the shared file: where, its dtype and shape."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


class _SharedArrays:
    """An anonymous shared file (memfd) that the reading child fills with the file's large arrays, page-aligned,
    and the parent then maps copy-on-write: the arrays reach the parent as they were read, without a copy."""

    MIN_BYTES = 1 << 20  # smaller arrays travel in the child's reply

    def __init__(self, path: Path):
        self.path, self.fd, self.size = path, os.memfd_create("nir-arrays"), 0

    def takes(self, item) -> bool:
        return (
            isinstance(item, h5py.Dataset)
            and item.dtype.kind in "biuf"
            and item.shape is not None
            and item.size * item.dtype.itemsize >= self.MIN_BYTES
        )

    def place(self, dataset) -> _Placed:
        """(The child) read ``dataset`` straight into the shared file, if it fits the memory limit."""
        nbytes = dataset.size * dataset.dtype.itemsize
        if nbytes > memory_limit():
            raise GraphError(
                f"{self.path}: '{dataset.name}' holds {nbytes / 2**30:.3g} GiB, more than the memory limit "
                f"({memory_limit() / 2**30:.3g} GiB; {LIMIT_VARIABLE})"
            )
        offset = -(-self.size // mmap.PAGESIZE) * mmap.PAGESIZE
        os.ftruncate(self.fd, offset + nbytes)
        self.size = offset + nbytes
        with mmap.mmap(self.fd, nbytes, offset=offset) as view:
            array = np.ndarray(dataset.shape, dataset.dtype, buffer=view)
            dataset.read_direct(array)
            del array
        return _Placed(offset, dataset.dtype.str, tuple(dataset.shape))

    def take(self, raw: dict) -> dict:
        """(The parent) ``raw`` with each :class:`_Placed` replaced by its array, mapped copy-on-write."""
        size = os.fstat(self.fd).st_size
        view = mmap.mmap(self.fd, size, access=mmap.ACCESS_COPY) if size else None

        def arrays(value):
            if isinstance(value, dict):
                return {k: arrays(v) for k, v in value.items()}
            if isinstance(value, _Placed):
                count = math.prod(value.shape)
                array = np.frombuffer(view, np.dtype(value.dtype), count, value.offset)
                return array.reshape(value.shape)
            return value

        return arrays(raw)

    def close(self) -> None:
        os.close(self.fd)


def read_timeout(path: Path) -> float:
    """Seconds a file's HDF5 may take to read: 10, and 1 more per 50 MB."""
    return 10.0 + path.stat().st_size / 50e6


def _read_isolated(path: Path) -> dict:
    """:func:`_read_file`, once a forked child on Linux has read the file through: a corrupt file can send the
    HDF5 library into an endless loop or a crash that no Python handler interrupts, so the child is killed after
    :func:`read_timeout` and its death is a one-line error, not ours. Large arrays come back through shared memory
    (:class:`_SharedArrays`), the rest in the child's reply."""
    if sys.platform != "linux":
        return _read_file(path)
    shared = _SharedArrays(path)
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _reply(path, write_end, shared)
        os.close(write_end)
        try:
            data, status = _collect(read_end, pid, read_timeout(path))
        finally:
            os.close(read_end)
        return _verdict(path, data, status, shared)
    finally:
        shared.close()


def _verdict(path: Path, data: bytes | None, status: int, shared: _SharedArrays) -> dict:
    """The file's raw dicts from the child's reply ``data`` and wait ``status``, or its death as a GraphError."""
    if data is None:
        raise GraphError(f"{path}: reading its HDF5 took over {read_timeout(path):.0f} s; the file is corrupt")
    if os.WIFSIGNALED(status) or not data:
        raise GraphError(f"{path}: the HDF5 library crashed reading it; the file is corrupt")
    kind, value = pickle.loads(data)  # our child's reply: plain dicts, small arrays, bytes, placed arrays
    if kind == "error":
        raise GraphError(value)
    return shared.take(value)


def _reply(path: Path, fd: int, shared: _SharedArrays) -> None:
    """The child's side of :func:`_read_isolated`: read, send the result or the error, exit without
    cleanup. Never returns, whatever happens (the child must not go on running the parent's code)."""
    try:
        try:
            data = pickle.dumps(("ok", _read_file(path, shared)))
        except GraphError as exc:
            data = pickle.dumps(("error", str(exc)))
        except BaseException as exc:  # anything else: the parent words it
            data = pickle.dumps(("error", f"{path}: not a readable NIR (HDF5) file ({type(exc).__name__})"))
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
    finally:
        os._exit(0)


def _collect(fd: int, pid: int, timeout: float) -> tuple[bytes | None, int]:
    """Everything the child ``pid`` writes to ``fd`` and its wait status; ``(None, status)`` if it takes
    longer than ``timeout`` (it is killed). The child never outlives this call."""
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return None, os.waitpid(pid, 0)[1]
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks), os.waitpid(pid, 0)[1]
            chunks.append(chunk)
    except BaseException:  # interrupted (Ctrl-C): take the child down too
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise


def _refuse_outside_references(fh, path) -> None:
    """One-line error for anything that makes HDF5 read outside the file or loop: external and soft
    links, virtual datasets, external raw storage (a crafted file could read any file's bytes), and
    a group linked into itself."""

    seen: set[int] = set()

    def check(group, where: str) -> None:
        if hash(group.id) in seen:
            raise GraphError(f"{path}: '{where or '/'}' links back into itself; refused")
        seen.add(hash(group.id))
        for name in group:
            link = group.get(name, getlink=True)
            at = f"{where}/{name}"
            if isinstance(link, h5py.ExternalLink):
                raise GraphError(f"{path}: '{at}' is an external link to '{link.filename}'; refused")
            if isinstance(link, h5py.SoftLink):
                raise GraphError(f"{path}: '{at}' is a soft link to '{link.path}'; refused")
            item = group[name]
            if isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    raise GraphError(f"{path}: '{at}' is a virtual dataset; refused")
                if item.external:
                    raise GraphError(f"{path}: '{at}' keeps its data in another file; refused")
            elif isinstance(item, h5py.Group):
                check(item, at)

    check(fh, "")


GRAPH_FIELDS = {"type", "nodes", "edges", "metadata"}  # of a NIRGraph group, top level or nested


def _build(raw: dict, name: str):
    """Build a nir node from its raw HDF5 dictionary without nir's type checks, naming errors."""
    import nir

    where = _where(name)
    if not isinstance(raw, dict):
        raise GraphError("is not a group of fields", node=where)
    kind = raw.get("type")
    if kind is None:
        raise GraphError("has no type", node=where, field="type")
    if isinstance(kind, (bytes, np.bytes_)):
        kind = kind.decode("utf8", "replace")
    kind = str(kind)
    entry = primitive(kind, where)
    if kind == "NIRGraph":
        for field in ("nodes", "edges"):
            if field not in raw:
                raise GraphError("missing", node=where, field=field)
        unknown = sorted(map(str, set(raw) - GRAPH_FIELDS))
        if unknown:
            raise GraphError(
                f"not a field of NIRGraph (it has {', '.join(sorted(GRAPH_FIELDS))})", node=where, field=unknown[0]
            )
        if not isinstance(raw["nodes"], dict):
            raise GraphError("is not a group of nodes", node=where, field="nodes")
        nodes = {str(k): _build(v, _join(name, str(k))) for k, v in raw["nodes"].items()}
        edges = _parse_edges(raw["edges"], where)
        metadata = raw.get("metadata", {})
        return nir.NIRGraph(
            nodes=nodes, edges=edges, metadata=metadata if isinstance(metadata, dict) else {}, type_check=False
        )
    data = dict(raw)
    data["type"] = kind
    for field in entry.fields:
        if field in data and not isinstance(data[field], (np.ndarray, int, float, np.number)):
            raise GraphError(f"expected numbers, got {type(data[field]).__name__}", node=where, field=field)
    if "v_reset" in entry.optional and "v_reset" not in data and "v_threshold" in data:
        data["v_reset"] = np.zeros_like(np.asarray(data["v_threshold"]))
    if kind == "Flatten" and "input_type" not in data:
        data["input_type"] = None
    try:
        with np.errstate(all="ignore"):  # nir derives shapes from fields not yet checked; the checks below speak
            return nir.dict2NIRNode(data)
    except Exception as exc:
        message = first_line(exc)
        field = None
        match = re.search(r"argument[s]?:? '(\w+)'", message) or re.search(r"keyword argument '(\w+)'", message)
        if match:
            field = match.group(1)
        elif isinstance(exc, KeyError) and exc.args:
            field = str(exc.args[0])
        if ("missing" in message or isinstance(exc, KeyError)) and field:
            raise GraphError(f"missing (required by {kind})", node=where, field=field) from None
        if "unexpected keyword" in message and field:
            raise GraphError(f"not a field of {kind}", node=where, field=field) from None
        raise GraphError(f"cannot build {kind}: {message}", node=where, field=field) from None


def _parse_edges(raw_edges, where: str) -> list[tuple[str, str]]:
    from nir.ir.utils import ensure_str

    arr = np.asarray(raw_edges, dtype=object) if not isinstance(raw_edges, np.ndarray) else raw_edges
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise GraphError(f"expected pairs of node names, got shape {list(arr.shape)}", node=where, field="edges")
    try:
        return [(str(ensure_str(a)), str(ensure_str(b))) for a, b in arr]
    except Exception:
        raise GraphError("edges are not pairs of node names", node=where, field="edges") from None


def _nir_type_check(graph) -> None:
    """nir's own type inference/checking, with its messages turned into GraphErrors."""
    try:
        with np.errstate(all="ignore"):
            graph.infer_types()
        graph.check_types()
    except GraphError:
        raise
    except Exception as exc:
        message = first_line(exc)
        node, field = "<graph>", "input_type"
        match = re.search(r"-> (\S+)\.input", message)
        if match:
            node = match.group(1)
        else:
            match = re.search(r"node '?([\w.\-]+)'?", message)
            if match:
                node = match.group(1)
        raise GraphError(
            f"type check failed: {message} (use lenient mode to skip nir's type check)", node=node, field=field
        ) from None


# --- validation ---------------------------------------------------------------------------


def validate_graph(graph, lenient: bool = False, _prefix: str = "") -> None:
    """Check structure, parameter values and edge shapes of a nir graph (recursively).

    Raises GraphError naming the node and the field. ``lenient`` accepts edge shape mismatches
    between sides with the same number of elements.
    """
    where = _where(_prefix)
    if not isinstance(graph.nodes, dict):
        raise GraphError("is not a dictionary of nodes", node=where, field="nodes")
    _validate_edges(graph, where)
    _validate_nodes(graph, lenient, _prefix)
    _validate_edge_shapes(graph, lenient, _prefix)


def _validate_edges(graph, where: str) -> None:
    """Every edge a pair of existing nodes (or a nested graph's port), once, never out of an Output or into an Input."""
    import nir

    names = set(graph.nodes)
    seen = set()
    for edge in graph.edges:
        if len(edge) != 2:
            raise GraphError(f"edge {edge!r} is not a pair", node=where, field="edges")
        for end in edge:
            base = end if end in names else end.split(".")[0]
            if end not in names and not (base in names and isinstance(graph.nodes[base], nir.NIRGraph)):
                hint = difflib.get_close_matches(end, sorted(names), n=1)
                hint_text = f"; did you mean '{hint[0]}'?" if hint else ""
                raise GraphError(
                    f"edge ('{edge[0]}', '{edge[1]}') names node '{end}', which does not exist "
                    f"(nodes: {', '.join(sorted(names))}){hint_text}",
                    node=where,
                    field="edges",
                )
        if tuple(edge) in seen:
            raise GraphError(f"duplicate edge ('{edge[0]}', '{edge[1]}')", node=where, field="edges")
        seen.add(tuple(edge))
        if isinstance(graph.nodes.get(edge[0]), nir.Output) or isinstance(graph.nodes.get(edge[1]), nir.Input):
            raise GraphError(
                f"edge ('{edge[0]}', '{edge[1]}') leaves an Output or enters an Input node", node=where, field="edges"
            )


def _validate_nodes(graph, lenient: bool, prefix: str) -> None:
    """Every node a known primitive with valid shapes, geometry, sizes and parameters (nested graphs recursively)."""
    import nir

    for name, node in graph.nodes.items():
        full = _join(prefix, name)
        kind = type(node).__name__
        if not isinstance(node, nir.NIRNode) or kind not in PRIMITIVES:
            raise GraphError(f"unknown primitive '{kind}'", node=full, field="type")
        if isinstance(node, nir.NIRGraph):
            validate_graph(node, lenient=lenient, _prefix=full)
            continue
        if isinstance(node, (nir.Input, nir.Output)):
            _validate_io_shape(node, full)
        _validate_geometry(node, full)
        _validate_sizes(node, full)
        _validate_parameters(node, full)


def _validate_edge_shapes(graph, lenient: bool, prefix: str) -> None:
    """Both ends of every edge declare the same shape (``lenient``: the same number of elements)."""
    for src, dst in graph.edges:
        out_shape = _port_shape(graph, src, "output")
        in_shape = _port_shape(graph, dst, "input")
        if out_shape is None or in_shape is None or tuple(out_shape) == tuple(in_shape):
            continue
        same_size = int(np.prod(out_shape)) == int(np.prod(in_shape))
        if lenient and same_size:
            continue
        raise GraphError(
            f"shape mismatch on edge ('{src}', '{dst}'): '{src}' gives {list(out_shape)}, '{dst}' expects {list(in_shape)}"
            + (" (same size: lenient mode accepts it)" if same_size else ""),
            node=_join(prefix, dst),
            field="input_type",
        )


def single_shape(types):
    """The shape (without batch) in a NIR ``input_type``/``output_type`` dict with one port, or None."""
    if not isinstance(types, dict) or len(types) != 1:
        return None
    value = next(iter(types.values()))
    if value is None:
        return None
    try:
        arr = np.asarray(value).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)):
        return None
    return tuple(int(v) for v in arr)


def _port_shape(graph, name: str, port: str):
    """The known shape (without batch) of a node's single input or output, or None."""
    node = graph.nodes.get(name)
    if node is None:
        return None
    return single_shape(getattr(node, f"{port}_type", None))


def _validate_io_shape(node, name: str) -> None:
    """An Input's or Output's shape: one or more positive integers."""
    import nir

    types = node.input_type if isinstance(node, nir.Input) else node.output_type
    value = next(iter(types.values()), None) if isinstance(types, dict) and len(types) == 1 else None
    arr = np.asarray(value).reshape(-1) if value is not None else np.zeros(0)
    arr = arr.astype(np.float64) if arr.dtype.kind in "biuf" else np.array([np.nan])
    if value is None or arr.size == 0 or not np.all(np.isfinite(arr) & (arr >= 1) & (arr == np.round(arr))):
        raise GraphError(
            f"must be positive integers, got {np.asarray(value, dtype=object).tolist()!r:.60}", node=name, field="shape"
        )


GEOMETRY = {"kernel_size": 1, "stride": 1, "dilation": 1, "groups": 1, "padding": 0}  # least value of each
MAX_GEOMETRY = 2**16


def _validate_geometry(node, name: str) -> None:
    """Conv and pool geometry: integers from their least value up to ``MAX_GEOMETRY`` (padding may be a
    mode such as ``"same"``)."""
    for field, low in GEOMETRY.items():
        value = getattr(node, field, None)
        if value is None or isinstance(value, (str, bytes)):
            continue
        arr = np.asarray(value)
        arr = arr.astype(np.float64) if arr.dtype.kind in "biuf" else np.array([np.nan])
        if not np.all(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= low) & (arr <= MAX_GEOMETRY)):
            raise GraphError(f"must be integers in [{low}, {MAX_GEOMETRY}], got {value!r:.60}", node=name, field=field)


def _short(value) -> str:
    """``value`` as text of at most 60 characters (a shape of float64's maximum has 309-digit entries)."""
    text = str(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _validate_sizes(node, name: str) -> None:
    """A node's known input and output shapes hold at most ``MAX_NODE_SIZE`` values (before anything allocates them)."""

    for port in ("input_type", "output_type"):
        shape = single_shape(getattr(node, port, None))
        if shape is not None and math.prod(shape) > MAX_NODE_SIZE:
            values = math.prod(shape)  # integer arithmetic: a shape of float64's maximum does not overflow
            raise GraphError(
                f"shape {_short(list(shape))} holds {_short(values)} values ({_short(values * 4 >> 30)} GiB per "
                f"sample and step as float32); at most {MAX_NODE_SIZE} per node",
                node=name,
                field=port,
            )


def _validate_parameters(node, name: str) -> None:
    """Every numeric field present (or optional), finite; then the primitive's own checks."""
    entry = PRIMITIVES[type(node).__name__]
    arrays = {}
    for field in entry.fields:
        value = getattr(node, field, None)
        if value is None:
            if field in entry.optional:
                continue
            raise GraphError("missing", node=name, field=field)
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):  # ragged
            arr = np.asarray(value, dtype=object)
        if arr.dtype.kind not in "biuf":
            raise GraphError(f"not real numbers ({arr.dtype})", node=name, field=field)
        arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)  # float32 weights stay float32: no copy
        if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):  # NaN wins both; no mask array
            bad = "NaN" if np.isnan(arr).any() else "infinite"
            raise GraphError(f"contains {bad} values", node=name, field=field)
        subnormal = arr.dtype == np.float64 and np.any((arr != 0) & (np.abs(arr) < np.finfo(np.float64).tiny))
        if subnormal:  # dt / 5e-324 overflows (a narrower float's smallest values are normal float64s)
            raise GraphError("contains subnormal values (nonzero, below 2.2e-308 in magnitude)", node=name, field=field)
        arrays[field] = arr
    if entry.check is not None:
        entry.check(arrays, node, name)


def peer_hint(graph) -> str:
    """For a file that fails a strict read: ``--from`` and the producers whose repairs would change it
    (batch/time dimensions, scalar parameters), or ``""``. Only a graph that passes the lenient checks is
    probed (as the repairs only ever see one: sound structure, values and sizes)."""
    probe = copy.deepcopy(graph)
    try:
        validate_graph(probe, lenient=True)
    except GraphError:
        return ""
    if not any(fix(probe, None) for fix in peer_repairs.SHAPE_REPAIRS):
        return ""
    return f"; if a peer library wrote it, read it with --from LIBRARY==VERSION ({peer_repairs.KNOWN})"
