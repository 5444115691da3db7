"""Export a PyTorch spiking network to a NIR graph (first stage of the pipeline).

:func:`export` traces the model with nirtorch and the project's own module maps (one NIR node per layer of
:mod:`neurocompile.models`, ``Recurrent`` as a neuron plus a ``<layer>_rec`` back-edge) and records the
convention in ``graph.metadata`` (:func:`convention_from_metadata` reads it back). How it differs from nirtorch's
defaults: ``docs/training.md`` ("Export to NIR").
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from neurocompile import __version__
from neurocompile.errors import NeurocompileError
from neurocompile.files import write_atomically
from neurocompile.frontend.checkpoint import load_checkpoint
from neurocompile.frontend.graph import bypass_boundaries, flatten_graph
from neurocompile.models import layers, neurons
from neurocompile.semantics.discretization import Convention

Tensor = torch.Tensor


def _array(t) -> np.ndarray:
    return np.asarray(torch.as_tensor(t).detach().cpu().to(torch.float32).numpy())


def _effective(module: nn.Module, name: str):
    """The tensor that export writes for ``name``: ``export_<name>()`` if defined, else the attribute."""
    hook = getattr(module, f"export_{name}", None)
    return hook() if callable(hook) else getattr(module, name)


def _types(node: nir.NIRNode, shapes) -> nir.NIRNode:
    in_shape, out_shape = shapes
    node.input_type = {"input": np.array(in_shape, dtype=np.int64)}
    node.output_type = {"output": np.array(out_shape, dtype=np.int64)}
    return node


def _conv_args(module, dims: int):
    if module.padding_mode != "zeros":
        raise NeurocompileError(f"{type(module).__name__}: padding_mode '{module.padding_mode}' has no NIR equivalent")
    bias = _effective(module, "bias")
    weight = _array(_effective(module, "weight"))
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    return dict(
        weight=weight,
        stride=tuple(module.stride) if dims == 2 else int(module.stride[0]),
        padding=padding if dims == 2 or isinstance(padding, str) else int(padding[0]),
        dilation=tuple(module.dilation) if dims == 2 else int(module.dilation[0]),
        groups=int(module.groups),
        bias=_array(bias) if bias is not None else np.zeros(weight.shape[0], dtype=np.float32),
    )


class _Mapper:
    """Module maps for nirtorch, with the per-module shapes of one dummy forward pass."""

    def __init__(self, shapes: dict[int, tuple], convention: Convention):

        self.shapes = shapes
        self.convention = convention
        self.maps = {
            nn.Linear: self.linear,
            layers.Conv1d: self.conv1d,
            layers.Conv2d: self.conv2d,
            layers.SumPool2d: self.sumpool,
            layers.AvgPool2d: self.avgpool,
            layers.Flatten: self.flatten,
            layers.Scale: self.scale,
            layers.Delay: self.delay,
            layers.Recurrent: self.recurrent,
            neurons.Neuron: self.neuron,
        }

    def lookup(self, cls):
        for base in cls.__mro__:
            if base in self.maps:
                return self.maps[base]
        return None

    def module_map(self) -> dict:
        """A dict for ``nirtorch.torch_to_nir`` that also finds subclasses of mapped layers."""
        mapper = self

        class MroMap(dict):
            def __missing__(self, cls):
                fn = mapper.lookup(cls)
                if fn is None:
                    raise NeurocompileError(f"module {cls.__name__} has no NIR mapping")
                return fn

        return MroMap(self.maps)

    def shape(self, module):
        if id(module) not in self.shapes:
            raise NeurocompileError(f"{type(module).__name__}: not reached by a forward pass, cannot infer its shape")
        return self.shapes[id(module)]

    def linear(self, m):
        weight, bias = _array(_effective(m, "weight")), _effective(m, "bias")
        node = nir.Linear(weight) if bias is None else nir.Affine(weight, _array(bias))
        return _types(node, self.shape(m))

    def conv1d(self, m):
        in_shape = self.shape(m)[0]
        return _types(nir.Conv1d(input_shape=int(in_shape[1]), **_conv_args(m, 1)), self.shape(m))

    def conv2d(self, m):
        in_shape = self.shape(m)[0]
        return _types(nir.Conv2d(input_shape=tuple(int(n) for n in in_shape[1:]), **_conv_args(m, 2)), self.shape(m))

    def _pool(self, cls, m):
        node = cls(kernel_size=np.array(m.kernel_size), stride=np.array(m.stride), padding=np.array(m.padding))
        return _types(node, self.shape(m))

    def sumpool(self, m):
        return self._pool(nir.SumPool2d, m)

    def avgpool(self, m):
        return self._pool(nir.AvgPool2d, m)

    def flatten(self, m):
        in_shape = self.shape(m)[0]
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)

    def scale(self, m):
        in_shape = self.shape(m)[0]
        scale = np.broadcast_to(_array(_effective(m, "scale")), in_shape).copy()
        return nir.Scale(scale=scale)

    def delay(self, m):
        in_shape = self.shape(m)[0]
        return nir.Delay(delay=np.full(in_shape, m.steps * self.convention.dt, dtype=np.float32))

    def neuron(self, m, shapes=None):
        cls = getattr(nir, m.model)
        params = {name: _array(_effective(m, name)) for name in m.params_cls._fields}
        return _types(cls(**params), shapes or self.shape(m))

    def recurrent(self, m):
        """A subgraph ``input -> neuron <-> rec -> output``, inlined by :func:`export`."""
        neuron = self.neuron(m.neuron, self.shape(m))
        weight, bias = _array(_effective(m.rec, "weight")), _effective(m.rec, "bias")
        rec = nir.Linear(weight) if bias is None else nir.Affine(weight, _array(bias))
        shape = np.array(m.neuron.shape)
        nodes = {
            "input": nir.Input(shape),
            "neuron": neuron,
            "rec": _types(rec, (shape, shape)),
            "output": nir.Output(shape),
        }
        edges = [("input", "neuron"), ("neuron", "rec"), ("rec", "neuron"), ("neuron", "output")]
        return nir.NIRGraph(nodes, edges, metadata={"neurocompile_recurrent": True}, type_check=False)


def _record_shapes(model: nn.Module, input_shape, mapper_types) -> dict[int, tuple]:
    """Per-sample input and output shapes of every mapped module, from a 1-sample, 1-step pass."""
    shapes, handles = {}, []

    def hook(module, args, output):
        shapes[id(module)] = (tuple(args[0].shape[2:]), tuple(output.shape[2:]))

    for module in model.modules():
        if isinstance(module, mapper_types):
            handles.append(module.register_forward_hook(hook))
    try:
        ref = next(iter(model.parameters()), None)
        if ref is None:
            ref = next(iter(model.buffers()), torch.zeros(()))
        with torch.no_grad():
            model(torch.zeros(1, 1, *input_shape, dtype=ref.dtype, device=ref.device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def _traceable(model: nn.Module) -> nn.Module:
    """The module to trace: a plain Sequential of the same children for Sequential models,
    so that a ``record=False`` argument never reaches the tracer."""
    if isinstance(model, nn.Sequential):
        return nn.Sequential(OrderedDict(model.named_children()))
    return model


def _recurrent_name(outer: str, inner: str) -> str:
    """Names of an inlined Recurrent block: its neuron keeps the block's name, the rest ``block_inner``."""
    return outer if inner == "neuron" else f"{outer}_{inner}"


def export(model: nn.Module, input_shape=None, convention: Convention | None = None) -> nir.NIRGraph:
    """Convert a PyTorch spiking network into a flat NIR graph.

    ``input_shape`` (per sample, no batch or time) and ``convention`` default to the model's
    ``input_shape`` and ``convention`` attributes.
    """
    import nirtorch

    if isinstance(model, torch.jit.ScriptModule):
        raise NeurocompileError(
            "a TorchScript module cannot be exported to NIR (its layers are compiled away); "
            "save a checkpoint with neurocompile.frontend.checkpoint.save_checkpoint instead"
        )
    input_shape = tuple(input_shape if input_shape is not None else getattr(model, "input_shape", ()))
    if not input_shape:
        raise NeurocompileError(
            f"{type(model).__name__}: no input shape recorded; give one per sample "
            "(--input-shape 1,28,28 on the command line, input_shape=(1, 28, 28) in Python)"
        )
    convention = convention or getattr(model, "convention", None) or Convention()

    was_training = model.training
    model.eval()
    try:
        mapper = _Mapper({}, convention)
        mapper.shapes = _record_shapes(model, input_shape, tuple(mapper.maps))
        traced = _traceable(model)
        try:
            raw = nirtorch.torch_to_nir(traced, mapper.module_map(), default_dict=None, type_check=False)
        except NeurocompileError:
            raise
        except Exception as exc:
            raise NeurocompileError(
                f"cannot trace {type(model).__name__} for NIR export: {exc}".splitlines()[0]
            ) from None
    finally:
        model.train(was_training)

    nodes, edges = bypass_boundaries(*flatten_graph(raw, join=_recurrent_name))
    # Name the graph's input "input" and give Input/Output nodes their shapes.
    renamed = {k: ("input" if isinstance(v, nir.Input) else k) for k, v in nodes.items()}
    if sum(isinstance(v, nir.Input) for v in nodes.values()) != 1:
        raise NeurocompileError(f"{type(model).__name__}: export supports exactly one input")
    nodes = {renamed[k]: v for k, v in nodes.items()}
    edges = list(dict.fromkeys((renamed[a], renamed[b]) for a, b in edges))
    nodes["input"] = nir.Input(np.array(input_shape))
    for name, node in list(nodes.items()):
        if isinstance(node, nir.Output):
            sources = [a for a, b in edges if b == name]
            shape = nodes[sources[0]].output_type["output"]
            nodes[name] = nir.Output(np.array(shape))
    metadata = {
        "producer": f"neurocompile {__version__}",
        "dt": float(convention.dt),
        "convention": convention.name,
        "convention_options": json.dumps(dataclasses.asdict(convention), sort_keys=True),
    }
    graph = nir.NIRGraph(nodes, edges, metadata=metadata, type_check=False)
    try:
        graph.check_types()
    except (ValueError, NotImplementedError) as exc:
        raise NeurocompileError(f"exported graph is inconsistent: {exc}".splitlines()[0]) from None
    return graph


def convention_from_metadata(graph: nir.NIRGraph, default: Convention | None = None) -> Convention | None:
    """The Convention recorded by :func:`export` in ``graph.metadata`` (``default`` if none)."""
    options = (graph.metadata or {}).get("convention_options")
    if options is None:
        return default
    if isinstance(options, bytes):
        options = options.decode()
    fields = {f.name for f in dataclasses.fields(Convention)}
    try:
        recorded = json.loads(str(options))
        return Convention(**{k: v for k, v in recorded.items() if k in fields})
    except (ValueError, TypeError, AttributeError):
        raise NeurocompileError("the graph's metadata 'convention_options' is not a convention (JSON object)") from None
    except NeurocompileError as exc:
        raise NeurocompileError(f"the graph's recorded convention is invalid: {exc}") from None


def export_checkpoint(path, allow_unsafe: bool = False, input_shape=None) -> nir.NIRGraph:
    """Load a checkpoint (see :mod:`neurocompile.frontend.checkpoint`) and export it; ``input_shape`` (per
    sample) for a module that records none, such as a pickled one."""

    model = load_checkpoint(path, allow_unsafe=allow_unsafe)
    recorded = getattr(model, "input_shape", None)
    try:
        if input_shape is not None and recorded and tuple(recorded) != tuple(input_shape):
            raise NeurocompileError(
                f"the checkpoint records input shape {list(recorded)}, not {list(input_shape)}; drop --input-shape"
            )
        return export(model, input_shape)
    except NeurocompileError as exc:
        raise NeurocompileError(f"{path}: {exc}") from None


def write_nir(graph: nir.NIRGraph, path) -> Path:
    """Write ``graph`` to an HDF5 NIR file; returns the path."""

    return write_atomically(path, lambda tmp: nir.write(str(tmp), graph), "NIR graph")


__all__ = ["export", "export_checkpoint", "write_nir", "convention_from_metadata"]
