"""Datasets as spike trains: scikit-learn's 8x8 digits (``digits``, ``digits-rows``), user ``.npz`` files and
event data (``tonic:NAME:ROOT`` or an event ``.npz``, binned by :mod:`neurocompile.events`).

Every loader returns ``(spikes, labels)``: float32 ``[N, T, *input_shape]`` of 0/1 values, int64 ``[N]``. The fixed
held-out split, the file keys, the event specs and the encoders (``rate``, ``latency``, ``threshold``):
``docs/training.md`` ("Data").
"""

from __future__ import annotations

import math
import os
import zipfile
from functools import lru_cache

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.files import MAX_ARRAY_BYTES, load_arrays

SPLIT_SEED = 0
TEST_FRACTION = 0.2
DATASETS = ("digits", "digits-rows")
ENCODINGS = ("rate", "latency", "threshold")  # digits: rate, latency; digits-rows: rate, threshold
MAX_LABEL = 2**31 - 1
TONIC_PREFIX = "tonic:"  # tonic:NAME:ROOT, a tonic dataset class read from a local folder


@lru_cache(maxsize=1)
def _digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # [N, 8, 8] in [0, 1]
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels)
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def load_digits_images(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Pixel intensities ``[N, 8, 8]`` in [0, 1] and labels of the fixed ``train``/``test``/``all`` split."""
    images, labels, train_idx, test_idx = _digits_split()
    if split == "train":
        idx = train_idx
    elif split == "test":
        idx = test_idx
    elif split == "all":
        idx = np.arange(len(labels))
    else:
        raise NeurocompileError(f"dataset 'digits': unknown split '{split}'; choose train, test or all")
    return images[idx], labels[idx]


def check_steps(steps, where: str) -> int:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise NeurocompileError(f"{where}: steps must be a positive integer, got {steps!r}")
    return int(steps)


def check_encoded_size(where: str, samples: int, steps: int, width: int) -> None:
    need = samples * steps * width * 4
    if need > MAX_ARRAY_BYTES:
        raise NeurocompileError(
            f"{where}: {samples} samples x {steps} steps x {width} inputs need {need / 2**30:.3g} GiB as float32; "
            f"at most {MAX_ARRAY_BYTES / 2**30:g} GiB"
        )


def rate_encode(prob: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli spikes ``[N, T, *shape]``: at every step each input fires with its probability."""
    prob = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    u = rng.random((prob.shape[0], steps) + prob.shape[1:], dtype=np.float32)
    return (u < prob[:, None]).astype(np.float32)


def latency_encode(prob: np.ndarray, steps: int) -> np.ndarray:
    """One spike per nonzero input at step ``round((1 - p) * (T - 1))``; zero inputs stay silent."""
    prob = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    t_fire = np.rint((1.0 - prob) * (steps - 1)).astype(np.int64)
    out = np.zeros((prob.shape[0], steps) + prob.shape[1:], dtype=np.float32)
    t_axis = np.arange(steps).reshape((1, steps) + (1,) * (prob.ndim - 1))
    out[...] = (t_axis == t_fire[:, None]) & (prob[:, None] > 0)
    return out


def rows_encode(images: np.ndarray, steps: int, encoding: str, rng: np.random.Generator) -> np.ndarray:
    """``[N, 8, 8]`` images -> ``[N, T, 8]``: row ``r`` drives steps ``r*k .. r*k+k-1`` (``k = T // 8``)."""
    n_rows = images.shape[1]
    if steps % n_rows:
        raise NeurocompileError(f"dataset 'digits-rows': steps must be a multiple of {n_rows}, got {steps}")
    rows = np.repeat(images, steps // n_rows, axis=1)  # [N, T, 8] probabilities
    if encoding == "rate":
        return (rng.random(rows.shape, dtype=np.float32) < rows).astype(np.float32)
    if encoding == "threshold":
        return (rows >= 0.5).astype(np.float32)
    raise NeurocompileError(f"dataset 'digits-rows': encoding must be rate or threshold, got '{encoding}'")


def _encoder_rng(seed: int, split: str) -> np.random.Generator:
    # Different streams for the two splits, so a training seed never reuses the test spikes.
    return np.random.default_rng([int(seed), {"train": 1, "test": 2, "all": 3}.get(split, 0)])


def load_digits_spikes(steps: int = 16, encoding: str = "rate", split: str = "test", seed: int = 0):
    """Spike-encoded digits: ``(spikes float32 [N, T, 64], labels int64 [N])`` of the fixed split."""
    steps = check_steps(steps, "dataset 'digits'")
    images, labels = load_digits_images(split)
    prob = images.reshape(len(images), -1)
    check_encoded_size("dataset 'digits'", len(prob), steps, prob.shape[1])
    if encoding == "rate":
        spikes = rate_encode(prob, steps, _encoder_rng(seed, split))
    elif encoding == "latency":
        spikes = latency_encode(prob, steps)
    else:
        raise NeurocompileError(f"dataset 'digits': encoding must be rate or latency, got '{encoding}'")
    return spikes, labels.copy()


def load_digits_rows(steps: int = 16, encoding: str = "rate", split: str = "test", seed: int = 0):
    """Digits one row per step: ``(spikes float32 [N, T, 8], labels int64 [N])``."""
    steps = check_steps(steps, "dataset 'digits-rows'")
    images, labels = load_digits_images(split)
    check_encoded_size("dataset 'digits-rows'", len(images), steps, images.shape[2])
    return rows_encode(images, steps, encoding, _encoder_rng(seed, split)), labels.copy()


def fit_steps(x: np.ndarray, steps: int) -> np.ndarray:
    """``x [batch, time, ...]`` cut or zero-padded to ``steps`` time steps."""
    if steps <= 0:
        raise NeurocompileError(f"steps must be positive, got {steps}")
    if x.shape[1] >= steps:
        return x[:, :steps]
    pad = np.zeros((x.shape[0], steps - x.shape[1], *x.shape[2:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=1)


def drained(x, steps: int):
    """``x`` ([batch, time, ...], or one per input port) with ``steps`` silent steps appended, so that a
    program whose outputs lag its inputs by ``steps`` sees every input reach them (what is not such an
    array is left for the backend's input check)."""
    if isinstance(x, dict):
        return {port: drained(value, steps) for port, value in x.items()}
    x = np.asarray(x)
    return fit_steps(x, x.shape[1] + steps) if x.ndim >= 2 and steps > 0 else x


def _spikes(x: np.ndarray, where: str, min_ndim: int = 2) -> np.ndarray:
    """``x`` checked as ``[batch, time, ...]`` real, finite values (float32-representable), as float32."""
    if x.ndim < min_ndim or x.shape[0] == 0 or x.shape[1] == 0:
        layout = "[batch, time, ...]" if min_ndim == 2 else "[N, T, ...]"
        raise NeurocompileError(
            f"{where}: expected {layout} with at least one sample and step, got shape {list(x.shape)}"
        )
    if x.dtype.kind not in "biuf":
        raise NeurocompileError(f"{where}: expected real numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise NeurocompileError(f"{where}: contains NaN or infinite values")
    if x.dtype.kind == "f" and x.size and np.abs(x).max() > np.finfo(np.float32).max:
        raise NeurocompileError(f"{where}: values beyond the float32 range")
    return x.astype(np.float32)


def checked_labels(y: np.ndarray, samples: int, where: str) -> np.ndarray:
    """``y`` checked as ``[samples]`` integer labels in [0, MAX_LABEL], as int64."""
    if y.ndim != 1 or len(y) != samples:
        raise NeurocompileError(f"{where}: expected [N] labels for {samples} samples, got shape {list(y.shape)}")
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > MAX_LABEL)):
        raise NeurocompileError(f"{where}: labels must be integers in [0, {MAX_LABEL}], got dtype {y.dtype}")
    return y.astype(np.int64)


def read_spike_file(path, what: str = "input", x_keys: tuple[str, ...] = ("x",)):
    """Spikes from a ``.npy`` array or an ``.npz`` archive, checked: ``(x float32 [batch, time, ...], y or None)``.

    In an ``.npz`` the first of ``x_keys`` present holds the spikes, and ``y`` (if present)
    the labels. Every problem is a one-line error naming ``what`` and the file.
    """
    arrays = load_arrays(path, what)
    where = f"{what} '{path}'"
    if "" in arrays:
        return _spikes(arrays[""], where), None
    key = next((k for k in x_keys if k in arrays), None)
    if key is None:
        raise NeurocompileError(f"{where}: needs key {' or '.join(x_keys)}, has {sorted(arrays)}")
    x = _spikes(arrays[key], f"{where}, field '{key}'")
    return x, None if "y" not in arrays else checked_labels(arrays["y"], len(x), f"{where}, field 'y'")


def load_npz(path, steps: int | None = None, split: str = "test"):
    """A user dataset: ``x [N, T, ...]`` spikes and ``y [N]`` labels (keys: ``docs/training.md``)."""
    where = f"dataset '{path}'"
    arrays = load_arrays(path, "dataset")
    (x_key, y_key), whole = split_keys(arrays, ("x", "y"), split, where)
    x = _spikes(arrays[x_key], f"{where}, field '{x_key}'", min_ndim=3)
    y = checked_labels(arrays[y_key], len(x), f"{where}, field '{y_key}'")
    if whole:
        keep = whole_split(y, split, where)
        x, y = x[keep], y[keep]
    if steps is not None and int(steps) != x.shape[1]:
        raise NeurocompileError(f"{where}, field '{x_key}': has {x.shape[1]} time steps, asked for {steps}")
    return x, y


def split_keys(arrays: dict, fields: tuple[str, ...], split: str, where: str) -> tuple[tuple[str, ...], bool]:
    """The keys of an archive that hold ``split``: ``<field>_<split>`` when all are there (False: already that
    split), else ``fields`` themselves (True: the whole data, for :func:`whole_split`)."""
    if split in ("train", "test") and {f"{f}_{split}" for f in fields} <= set(arrays):
        return tuple(f"{f}_{split}" for f in fields), False
    if set(fields) <= set(arrays):
        return fields, True
    names = f"{', '.join(fields[:-1])} and {fields[-1]}"
    per_split = ", ".join("/".join(f"{f}_{s}" for f in fields) for s in ("train", "test"))
    raise NeurocompileError(f"{where}: needs keys {names} (or {per_split}), has {sorted(arrays)}")


def whole_split(y: np.ndarray, split: str, where: str) -> np.ndarray:
    """The indices of ``split`` in a whole labelled dataset: ``all``, or ``train``/``test`` of :func:`split_indices`."""
    if split == "all":
        return np.arange(len(y))
    if split not in ("train", "test"):
        raise NeurocompileError(f"{where}: unknown split '{split}'; choose train, test or all")
    train, test = split_indices(y, where)
    return train if split == "train" else test


def split_indices(y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices: 80/20, stratified when every class can appear on both sides."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    if n < 2:
        raise NeurocompileError(
            f"{where}: {n} sample cannot be split into train and test; give x_train/y_train, x_test/y_test"
        )
    classes, counts = np.unique(y, return_counts=True)
    every_label_twice = classes[-1] == len(classes) - 1 and counts.min() >= 2  # labels 0..max, each twice
    n_test = math.ceil(TEST_FRACTION * n)
    stratified = every_label_twice and min(n_test, n - n_test) >= len(classes)
    train, test = train_test_split(
        np.arange(n), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y if stratified else None
    )
    return np.sort(train), np.sort(test)


def load_dataset(
    name: str,
    steps: int | None = 16,
    split: str = "test",
    seed: int = 0,
    encoding: str = "rate",
    limit: int | None = None,
):
    """``digits``, ``digits-rows``, a path to an ``.npz`` file or event data -> ``(spikes, labels)`` of the
    split's first ``limit`` samples (None: all; event data bins no others)."""
    if name == "digits":
        x, y = load_digits_spikes(16 if steps is None else steps, encoding, split, seed)
    elif name == "digits-rows":
        x, y = load_digits_rows(8 if steps is None else steps, encoding, split, seed)
    elif is_event_data(name):
        from neurocompile import events  # loads tonic: only for event data

        return events.load_events(name, 16 if steps is None else steps, split, limit)
    elif str(name).endswith(".npz"):
        x, y = load_npz(name, steps, split)
    else:
        raise NeurocompileError(
            f"unknown dataset '{name}'; choose {', '.join(DATASETS)}, a path to an .npz file or tonic:NAME:ROOT"
        )
    return x[:limit], y[:limit]


def load_event_images(name, split: str = "test"):
    """Event data as one event-count image per recording (tonic's ``ToImage``): ``(float32 [N, P, H, W], labels)``."""
    from neurocompile import events  # loads tonic: only for event data

    return events.load_images(name, split)


def event_spec(name) -> tuple[str, str | None, dict[str, str]]:
    """``(file or root folder, tonic class name or None, options)`` of ``PATH[?key=value&...]`` or
    ``tonic:NAME:ROOT[?key=value&...]``."""
    text, _, query = str(name).partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        options[key] = value
    if not text.startswith(TONIC_PREFIX):
        return text, None, options
    dataset, _, root = text.removeprefix(TONIC_PREFIX).partition(":")
    if not dataset or not root:
        raise NeurocompileError(f"dataset '{name}': expected tonic:NAME:ROOT (e.g. tonic:NMNIST:data)")
    return root, dataset, options


def is_event_data(name) -> bool:
    """Whether ``name`` names event data: ``tonic:NAME:ROOT``, a name with ``?options``, or an ``.npz`` holding
    ``events``."""
    text = str(name)
    return text.startswith(TONIC_PREFIX) or "?" in text or _holds_events(text)


def _holds_events(path: str) -> bool:
    """Whether ``path`` is an ``.npz`` archive with an ``events`` array (only its member names are read)."""
    if not os.path.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except Exception:  # not a readable archive: the spike readers say what it is
        return False
    return any(f"events{suffix}.npy" in names for suffix in ("", "_train", "_test"))


def dataset_file(name) -> str | None:
    """The file or folder a dataset name reads (None for no name or a built-in dataset): what an output must not
    overwrite."""
    if name is None or str(name) in DATASETS:
        return None
    return event_spec(name)[0]
