"""Event-camera recordings in tonic's formats, binned to spikes with tonic's own transforms.

Two sources, each optionally followed by ``?downsample=K`` (``docs/training.md``, "Event data (tonic)"):

- an event ``.npz``: ``events``, tonic's structured ``x, y, t, p`` events of every recording one after the other;
  ``offsets`` ``[N + 1]``, recording ``i`` being ``events[offsets[i]:offsets[i + 1]]``; labels ``y`` ``[N]``; and
  ``sensor_size`` ``(W, H, P)``. ``events_train``/``offsets_train``/``y_train`` and the ``_test`` keys give the
  splits; without them the recordings are split like every dataset (``data.split_indices``);
- ``tonic:NAME:ROOT``: tonic's dataset class ``NAME`` (one of :data:`TONIC_DATASETS`) over the files it finds
  under ``ROOT/NAME``; it is never asked to download them.

``downsample=K`` scales the coordinates by ``1/K`` (tonic's ``Downsample``); each recording then becomes ``T``
frames (tonic's ``ToFrame(n_time_bins=T)``), a pixel spiking once in a bin where it had one event or more:
float32 ``[N, T, P, H, W]``. ``convert`` takes one event-count image per recording (tonic's ``ToImage``).
This module imports tonic: :mod:`neurocompile.data` imports it only when event data is named.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import tonic.datasets
import tonic.transforms

from neurocompile.data import (
    check_encoded_size,
    check_steps,
    checked_labels,
    event_spec,
    split_keys,
    whole_split,
)
from neurocompile.errors import NeurocompileError, first_line
from neurocompile.files import MAX_ARRAY_BYTES, load_arrays

FIELDS = ("x", "y", "t", "p")  # tonic's event fields
EVENT_KEYS = ("events", "offsets", "y")  # an event .npz; and sensor_size
TONIC_DATASETS = ("NMNIST", "DVSGesture")  # classes that list one file per recording and take train=
OPTIONS = ("downsample",)
MAX_RECORDING_BYTES = MAX_ARRAY_BYTES // 16  # a recording file tonic reads whole (its events take ~7x the bytes)
MAX_TIME = 2**53  # timestamps stay exact as float64 (tonic's Downsample scales them)
MAX_COUNT = np.iinfo(np.int16).max  # tonic's frames and images count events in int16


@dataclass
class Recordings:
    """One split of event data: ``read(i)`` is recording ``i``'s structured events, ``name(i)`` says which it is."""

    where: str
    sensor: tuple[int, int, int]  # W, H, P, as tonic orders a sensor size
    labels: np.ndarray
    read: Callable[[int], np.ndarray]
    name: Callable[[int], str]


def load_events(name, steps: int, split: str = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(spikes float32 [N, T, P, H, W] of 0/1, labels int64 [N])``: each recording in ``T = steps`` time bins,
    the first ``limit`` recordings of the split (None: all)."""
    steps = check_steps(steps, f"dataset '{name}'")
    recordings, downsample = _open(name, split)
    recordings = replace(recordings, labels=recordings.labels[:limit])  # the others are never read
    sensor = downsampled(recordings.sensor, downsample)
    check_encoded_size(recordings.where, len(recordings.labels), steps, math.prod(sensor))
    to_frames = tonic.transforms.ToFrame(sensor_size=sensor, n_time_bins=steps)

    def spikes(events: np.ndarray, where: str) -> np.ndarray:
        _check_span(events, steps, where)
        return to_frames(events) != 0  # one spike where a pixel had one event or more in a bin

    return _dense(recordings, downsample, (steps, *sensor[::-1]), spikes), recordings.labels


def load_images(name, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(counts float32 [N, P, H, W], labels int64 [N])``: each recording's events counted per pixel."""
    recordings, downsample = _open(name, split)
    sensor = downsampled(recordings.sensor, downsample)
    check_encoded_size(recordings.where, len(recordings.labels), 1, math.prod(sensor))
    to_image = tonic.transforms.ToImage(sensor_size=sensor)

    def counts(events: np.ndarray, where: str) -> np.ndarray:
        _check_counts(events, sensor, where)
        return to_image(events)

    return _dense(recordings, downsample, sensor[::-1], counts), recordings.labels


def downsampled(sensor: tuple[int, int, int], factor: int) -> tuple[int, int, int]:
    """The sensor size after tonic's ``Downsample(spatial_factor=1/factor)``: coordinate ``c`` becomes
    ``int(c * (1/factor))``, computed here as tonic computes it (float64) for the largest one."""
    width, height, polarities = sensor
    return int((width - 1) * (1 / factor)) + 1, int((height - 1) * (1 / factor)) + 1, polarities


def _dense(recordings: Recordings, downsample: int, shape: tuple, to_dense: Callable) -> np.ndarray:
    """Every recording checked, downsampled and made dense by ``to_dense(events, where)``: float32 ``[N, *shape]``."""
    out = np.zeros((len(recordings.labels), *shape), dtype=np.float32)
    scale = tonic.transforms.Downsample(spatial_factor=1 / downsample)
    for i in range(len(out)):
        where = recordings.name(i)
        events = recordings.read(i)
        _check_events(events, recordings.sensor, where)
        out[i] = to_dense(scale(events) if downsample > 1 else events, where)
    return out


def _open(name, split: str) -> tuple[Recordings, int]:
    """The recordings of ``split`` and the downsampling factor that ``name`` asks for."""
    path, dataset, options = event_spec(name)
    downsample = _downsample(options, f"dataset '{name}'")
    if dataset is not None:
        return _tonic_recordings(name, path, dataset, split), downsample
    return _file_recordings(name, path, split), downsample


def _downsample(options: dict[str, str], where: str) -> int:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise NeurocompileError(f"{where}: unknown option '{unknown[0]}'; event data takes {', '.join(OPTIONS)}")
    value = options.get("downsample", "1")
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise NeurocompileError(f"{where}: downsample must be a positive integer, got '{value}'")
    return int(value)


def _file_recordings(name, path: str, split: str) -> Recordings:
    """The recordings of an event ``.npz`` (read by ``files.load_arrays``: no pickles, sizes checked first)."""
    where = f"dataset '{name}'"
    arrays = load_arrays(path, "dataset")
    (events_key, offsets_key, y_key), whole = split_keys(arrays, EVENT_KEYS, split, where)
    if "sensor_size" not in arrays:
        raise NeurocompileError(f"{where}: needs key sensor_size (W, H, P), has {sorted(arrays)}")
    sensor = _sensor(arrays["sensor_size"], f"{where}, field 'sensor_size'")
    events = arrays[events_key]
    _check_layout(events, f"{where}, field '{events_key}'")
    offsets = _offsets(arrays[offsets_key], len(events), f"{where}, field '{offsets_key}'")
    labels = checked_labels(arrays[y_key], len(offsets) - 1, f"{where}, field '{y_key}'")
    keep = whole_split(labels, split, where) if whole else np.arange(len(labels))
    return Recordings(
        where,
        sensor,
        labels[keep],
        read=lambda i: events[offsets[keep[i]] : offsets[keep[i] + 1]],
        name=lambda i: f"{where}, field '{events_key}', recording {keep[i]}",
    )


def _tonic_recordings(name, root: str, dataset: str, split: str) -> Recordings:
    """The recordings of tonic's class ``dataset`` under ``root``, read where they are: the class's check for its
    files (which would download them) is replaced by "present", so missing files are simply no recordings."""
    where = f"dataset '{name}'"
    if dataset not in TONIC_DATASETS:
        raise NeurocompileError(
            f"{where}: tonic dataset '{dataset}' is not read here; choose one of {', '.join(TONIC_DATASETS)}, "
            "or write its events to an .npz (docs/training.md)"
        )
    if split not in ("train", "test"):
        raise NeurocompileError(f"{where}: unknown split '{split}'; choose train or test")
    root = os.path.expanduser(root)  # as tonic does; a shell leaves ~ inside tonic:NAME:~/data alone
    if not os.path.isdir(root):
        raise NeurocompileError(f"{where}: no such folder '{root}'")
    cls = getattr(tonic.datasets, dataset)
    offline = type(dataset, (cls,), {"_check_exists": lambda self: True})  # same name: tonic's folder is ROOT/NAME
    try:
        found = offline(root, train=split == "train")
    except Exception as exc:  # tonic's own parsing of the folder layout
        raise NeurocompileError(f"{where}: tonic cannot list it ({type(exc).__name__}: {first_line(exc)})") from None
    if not found.data:
        folder = os.path.join(found.location_on_system, found.folder_name)
        raise NeurocompileError(f"{where}: no {dataset} recordings under '{folder}' (neurocompile never downloads)")
    labels = checked_labels(np.asarray(found.targets), len(found.data), f"{where}, labels")

    def name_of(i: int) -> str:
        return f"{where}, file '{found.data[i]}'"

    return Recordings(
        where, _sensor(cls.sensor_size, f"{where}, sensor_size"), labels, lambda i: _read(found, i, name_of(i)), name_of
    )


def _read(found, index: int, where: str) -> np.ndarray:
    """Recording ``index`` of a tonic dataset, its file's size checked before tonic reads it whole."""
    size = os.path.getsize(found.data[index])
    if size > MAX_RECORDING_BYTES:
        raise NeurocompileError(
            f"{where}: {size / 2**20:.3g} MiB; at most {MAX_RECORDING_BYTES / 2**20:g} MiB a recording is read"
        )
    try:
        events, _target = found[index]
    except Exception as exc:  # whatever tonic's reader raises on a malformed file
        raise NeurocompileError(f"{where}: tonic cannot read it ({type(exc).__name__}: {first_line(exc)})") from None
    return events


def _sensor(value, where: str) -> tuple[int, int, int]:
    """``(W, H, P)``: three positive integers, as tonic orders a sensor size."""
    value = np.asarray(value)
    if value.shape != (3,) or value.dtype.kind not in "iu":
        raise NeurocompileError(
            f"{where}: expected (W, H, P), three positive integers; got shape {list(value.shape)}, dtype {value.dtype}"
        )
    if value.min() < 1:
        raise NeurocompileError(f"{where}: expected (W, H, P), three positive integers; got {value.tolist()}")
    return tuple(int(v) for v in value)


def _offsets(offsets: np.ndarray, count: int, where: str) -> np.ndarray:
    """``[N + 1]`` increasing offsets from 0 to ``count``, the number of events: no recording is empty."""
    if offsets.ndim != 1 or len(offsets) < 2 or offsets.dtype.kind not in "iu":
        raise NeurocompileError(
            f"{where}: expected [N + 1] integer offsets into the events, got shape {list(offsets.shape)}, "
            f"dtype {offsets.dtype}"
        )
    if int(offsets[0]) != 0 or int(offsets[-1]) != count or int(offsets.min()) < 0 or int(offsets.max()) > count:
        raise NeurocompileError(f"{where}: must run from 0 to {count}, the number of events")
    offsets = offsets.astype(np.int64)
    empty = np.flatnonzero(np.diff(offsets) <= 0)
    if len(empty):
        raise NeurocompileError(f"{where}: recording {empty[0]} has no events (offsets must increase)")
    return offsets


def _check_layout(events: np.ndarray, where: str) -> None:
    """Tonic's structured events: a 1-D array with integer fields x, y, t and p (p may be bool)."""
    names = events.dtype.names or ()
    missing = [field for field in FIELDS if field not in names]
    if events.ndim != 1 or missing:
        raise NeurocompileError(
            f"{where}: expected tonic's structured events with fields x, y, t, p; got shape {list(events.shape)}, "
            f"dtype {events.dtype}"
        )
    for field in FIELDS:
        kinds = "iub" if field == "p" else "iu"
        if events.dtype[field].kind not in kinds:
            raise NeurocompileError(f"{where}: field '{field}' must hold integers, got {events.dtype[field]}")


def _check_events(events: np.ndarray, sensor: tuple[int, int, int], where: str) -> None:
    """One recording: tonic's structured events, on the sensor, in time order, timestamps in [0, MAX_TIME]."""
    _check_layout(events, where)
    if len(events) == 0:
        raise NeurocompileError(f"{where}: no events")
    for field, size in (*zip(("x", "y", "p"), sensor), ("t", MAX_TIME + 1)):
        low, high = int(events[field].min()), int(events[field].max())
        if low < 0 or high >= size:
            sensor_text = "" if field == "t" else f" of the sensor size (W, H, P) = {sensor}"
            raise NeurocompileError(f"{where}: field '{field}' holds {low}..{high}, outside [0, {size}){sensor_text}")
    if np.any(events["t"][1:] < events["t"][:-1]):
        raise NeurocompileError(f"{where}: field 't' is not in time order (tonic bins sorted events)")


def _check_span(events: np.ndarray, steps: int, where: str) -> None:
    """Refuse a recording that tonic's ``ToFrame(n_time_bins=T)`` would leave empty: its bins are
    ``(last - first) // T`` time units wide."""
    span = int(events["t"][-1]) - int(events["t"][0])
    if span < steps:
        raise NeurocompileError(
            f"{where}: its events span {span} time units, fewer than the {steps} bins (tonic's bins would be empty)"
        )


def _check_counts(events: np.ndarray, sensor: tuple[int, int, int], where: str) -> None:
    """Refuse more events at one pixel than tonic's int16 image counts hold."""
    width, height, _ = sensor
    pixel = (events["p"].astype(np.int64) * height + events["y"]) * width + events["x"]
    most = int(np.bincount(pixel).max())
    if most > MAX_COUNT:
        raise NeurocompileError(f"{where}: {most} events at one pixel; tonic's images count at most {MAX_COUNT}")
