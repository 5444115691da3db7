"""Checkpoints: a reference architecture saved as data, loaded without unpickling code.

A checkpoint is a ``torch.save``-d dict (format, version, architecture, config, convention, ``state_dict``,
extra) that ``torch.load(weights_only=True)`` reads; a TorchScript archive or a pickled ``nn.Module`` is accepted
only with ``allow_unsafe=True`` (``--allow-pickle``). The format: ``docs/training.md`` ("Checkpoints"); what
the loader refuses: ``docs/input-safety.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import typing
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from neurocompile.errors import CheckpointError, NeurocompileError, first_line
from neurocompile.models.architectures import ARCHITECTURES, build
from neurocompile.models.neurons import Neuron
from neurocompile.semantics.discretization import Convention

FORMAT = "neurocompile-checkpoint"
VERSION = 1


def save_checkpoint(model: nn.Module, path, extra: dict | None = None) -> Path:
    """Save a reference architecture (``MLP``, ``ConvNet``, ``RecurrentNet``) as a checkpoint.

    Parametrizations (``torch.nn.utils.parametrize``, e.g. fake quantization) are saved as
    the weights they compute.
    """

    name = type(model).__name__
    if ARCHITECTURES.get(name) is not type(model):
        raise CheckpointError(f"cannot checkpoint {name}: not one of {', '.join(ARCHITECTURES)}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": name,
        "config": model.config,
        "convention": dataclasses.asdict(model.convention),
        "state_dict": _plain_state_dict(model),
        "extra": extra or {},
    }
    try:
        json.dumps([payload["config"], payload["extra"]])
    except TypeError as exc:
        raise CheckpointError(f"cannot checkpoint {name}: config/extra must be JSON-able ({exc})") from None
    path = Path(path)
    torch.save(payload, path)
    return path


def _plain_state_dict(model: nn.Module) -> dict:
    """The state_dict with ``torch.nn.utils.parametrize`` parametrizations folded into plain tensors."""
    from torch.nn.utils import parametrize

    state = dict(model.state_dict())
    for prefix, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        prefix = f"{prefix}." if prefix else ""
        for name in module.parametrizations:
            inner = f"{prefix}parametrizations.{name}."
            for key in [k for k in state if k.startswith(inner)]:
                del state[key]
            state[f"{prefix}{name}"] = getattr(module, name)
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _reason(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's messages run to paragraphs)."""
    return first_line(exc).split(". ")[0].rstrip(".")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except Exception:  # not a readable zip archive (BadZipFile, OSError, an undecodable member name...)
        return False


def _load_unsafe(path: Path, torchscript: bool):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still loads
            if torchscript:
                return torch.jit.load(str(path), map_location="cpu")
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load ({type(exc).__name__}: {_reason(exc)})") from None
    return obj


def load_checkpoint(path, allow_unsafe: bool = False) -> nn.Module:
    """Load a checkpoint written by :func:`save_checkpoint` and rebuild its model (eval mode).

    With ``allow_unsafe=True`` a TorchScript archive or a pickled ``nn.Module`` is loaded too.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    torchscript = _is_torchscript(path)
    unsafe_hint = "pass --allow-pickle to trust it (allow_unsafe=True in Python)"
    if torchscript:
        if not allow_unsafe:
            raise CheckpointError(
                f"{path}: a TorchScript archive, which can run code like a pickled module; {unsafe_hint}"
            )
        return _load_unsafe(path, True).eval()
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (empty file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL " in str(exc):  # names a class or function: only full unpickling can build it
            if not allow_unsafe:
                raise CheckpointError(
                    f"{path}: contains a pickled module (or other Python objects); {unsafe_hint}"
                ) from None
            obj = _load_unsafe(path, False)
            if isinstance(obj, nn.Module):
                return obj.eval()
            raise CheckpointError(f"{path}: a pickled {type(obj).__name__}, not an nn.Module or a checkpoint") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {_reason(exc)})"
        ) from None

    if isinstance(payload, nn.Module):  # only reachable for safe-listed module types
        return payload.eval()
    return _model_from_payload(path, payload).eval()


def _model_from_payload(path: Path, payload) -> nn.Module:
    """Rebuild the model a neurocompile checkpoint records (architecture, config, convention, weights)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        kind = "a bare state_dict" if isinstance(payload, dict) else f"a {type(payload).__name__}"
        raise CheckpointError(f"{path}: not a neurocompile checkpoint ({kind}; no architecture recorded)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r} is not supported (expected {VERSION})"
        )
    for key in ("architecture", "config", "convention", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint field '{key}' is missing")
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: checkpoint field 'config' must be a dict")
    state = _state_dict(path, payload["state_dict"])
    convention = _convention(path, payload["convention"])
    architecture = payload["architecture"]
    _check_shapes(path, _build(path, architecture, payload["config"], convention, "meta").state_dict(), state)
    model = _build(path, architecture, payload["config"], convention, "cpu")  # sizes now match the file's tensors
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state_dict does not match the architecture ({_reason(exc)})") from None
    _check_finite(path, model)
    _check_time_constants(path, model)
    return model


def _build(path: Path, architecture, config: dict, convention: Convention, device: str) -> nn.Module:
    """The architecture built from untrusted ``config`` (on the meta device: shapes without memory)."""

    try:
        with warnings.catch_warnings(), torch.device(device):
            warnings.simplefilter("ignore")  # e.g. torch's notes on zero-element layers
            return build(architecture, config, convention)
    except NeurocompileError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except Exception as exc:  # the constructors were not written for hostile configs
        raise CheckpointError(
            f"{path}: checkpoint field 'config' does not build a {architecture} ({type(exc).__name__}: {_reason(exc)})"
        ) from None


def _state_dict(path: Path, state) -> dict:
    """The recorded weights: named tensors of real numbers."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint field 'state_dict' must be a dict of tensors")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict '{key}' is a {type(value).__name__}, not a tensor")
        if value.is_complex() or not (value.is_floating_point() or value.dtype in REAL_DTYPES):
            raise CheckpointError(f"{path}: state_dict '{key}' has dtype {value.dtype}; expected real numbers")
    return state


def _check_finite(path: Path, model: nn.Module) -> None:
    """Every weight finite as the model holds it (a float64 1e300 in the file is inf as float32)."""
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: state_dict '{key}' holds NaN or infinite values (as {value.dtype})")


REAL_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _convention(path: Path, record) -> Convention:
    """The recorded Convention, every field of its annotated type: one of its choices, a bool, a printable
    name, a positive finite dt."""
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: checkpoint field 'convention' must be a dict")
    try:
        convention = Convention(**record)
    except (TypeError, NeurocompileError) as exc:
        raise CheckpointError(f"{path}: checkpoint field 'convention' is invalid ({exc})") from None
    hints = typing.get_type_hints(Convention)
    for name in (f.name for f in dataclasses.fields(Convention)):
        if not _of_type(getattr(convention, name), hints[name]):
            raise CheckpointError(
                f"{path}: checkpoint field 'convention.{name}' is invalid: {getattr(convention, name)!r}"
            )
    return dataclasses.replace(convention, dt=float(convention.dt))  # an integer dt (10**20) as the float it means


def _of_type(value, hint) -> bool:
    if typing.get_origin(hint) is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:  # dt
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(float(value)) and value > 0
        except OverflowError:  # an int beyond float's range
            return False
    return isinstance(value, str) and value.isprintable()


def _check_shapes(path: Path, expected: dict, state: dict) -> None:
    """The file's tensors are the ones the architecture needs, by name and shape (checked before allocating)."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        which = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise CheckpointError(f"{path}: state_dict does not match the architecture ({which})")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: state_dict '{key}' has shape {list(state[key].shape)}, the architecture needs {list(tensor.shape)}"
            )


def _check_time_constants(path: Path, model: nn.Module) -> None:

    for prefix, module in model.named_modules():
        if isinstance(module, Neuron):
            for name in module.contract.time_constants:
                if bool((getattr(module, name) <= 0).any()):
                    raise CheckpointError(f"{path}: state_dict '{prefix}.{name}': time constants must be positive")
