"""Reference architectures: small spiking networks built from :mod:`.layers` and :mod:`.neurons`.

Every architecture is an :class:`SNN`: named layers (the node names of the exported NIR graph) applied in order to
``[batch, time, *input_shape]``; ``model(x, record=True)`` also returns per-layer traces keyed like a backend
``Recording``, and ``config`` rebuilds the model from a checkpoint. See ``docs/training.md`` ("Models").
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import torch
from torch import nn

from neurocompile.errors import NeurocompileError
from neurocompile.models.layers import Conv2d, Flatten, Linear, Recurrent, SumPool2d
from neurocompile.models.neurons import make_neuron
from neurocompile.semantics.discretization import Convention

Tensor = torch.Tensor


class SNN(nn.Sequential):
    """Named layers applied in order to a sequence; the base of every architecture."""

    def __init__(self, layers: dict[str, nn.Module], input_shape, convention: Convention = Convention(), config=None):
        super().__init__(OrderedDict(layers))
        self.input_shape = tuple(int(n) for n in input_shape)
        self.convention = convention
        self.config = dict(config or {})

    def _arguments(self, values: dict) -> dict:
        """The constructor's arguments, as the constructor left them in ``values`` (its locals): the
        ``config`` that rebuilds the model (``convention`` is kept apart)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: values[name] for name in names if name not in ("self", "convention")}

    def forward(self, x: Tensor, record: bool = False):
        if not record:
            for layer in self:
                x = layer(x)
            return x
        trace = {}
        for name, layer in self.named_children():
            if hasattr(layer, "run"):
                x, states, _ = layer.run(x)
                neuron = getattr(layer, "neuron", layer)
                if neuron.spiking:
                    trace[f"{name}.spikes"] = x
                trace.update({f"{name}.{var}": value for var, value in states.items()})
            else:
                x = layer(x)
        return x, trace


def _name(model: str, index) -> str:
    return f"{model.lower()}{index}"


class MLP(SNN):
    """Fully connected: ``sizes[0]`` inputs, then Linear -> neuron for every further size."""

    def __init__(
        self,
        sizes=(64, 128, 128, 10),
        neuron: str = "LIF",
        output_neuron: str | None = None,
        neuron_params: dict | None = None,
        output_params: dict | None = None,
        bias: bool = True,
        convention: Convention = Convention(),
    ):
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2:
            raise NeurocompileError(f"MLP: sizes needs an input and at least one layer, got {sizes}")
        output_neuron = output_neuron or neuron
        layers = {}
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            last = k == len(sizes) - 1
            model = output_neuron if last else neuron
            params = (output_params if last else neuron_params) or {}
            layers[f"fc{k}"] = Linear(n_in, n_out, bias=bias)
            layers[_name(model, k)] = make_neuron(model, n_out, convention, **params)
        super().__init__(layers, (sizes[0],), convention, self._arguments(locals()))


class ConvNet(SNN):
    """Conv2d -> neuron -> SumPool2d -> Flatten -> Linear -> output neuron."""

    def __init__(
        self,
        input_shape=(1, 8, 8),
        channels: int = 8,
        kernel_size: int = 3,
        padding: int = 1,
        pool: int = 2,
        n_out: int = 10,
        neuron: str = "IF",
        output_neuron: str = "LIF",
        neuron_params: dict | None = None,
        output_params: dict | None = None,
        bias: bool = True,
        convention: Convention = Convention(),
    ):
        input_shape = [int(n) for n in input_shape]
        if len(input_shape) != 3:
            raise NeurocompileError(f"ConvNet: input_shape must be [channels, height, width], got {input_shape}")
        conv = Conv2d(input_shape[0], channels, kernel_size, padding=padding, bias=bias)
        h, w = (n + 2 * padding - kernel_size + 1 for n in input_shape[1:])
        if h < pool or w < pool:
            raise NeurocompileError(f"ConvNet: a {h}x{w} feature map is smaller than the pool {pool}")
        layers = {
            "conv1": conv,
            _name(neuron, 1): make_neuron(neuron, (channels, h, w), convention, **(neuron_params or {})),
            "pool1": SumPool2d(pool),
            "flatten": Flatten(),
            "fc2": Linear(channels * (h // pool) * (w // pool), n_out, bias=bias),
            _name(output_neuron, 2): make_neuron(output_neuron, n_out, convention, **(output_params or {})),
        }
        super().__init__(layers, input_shape, convention, self._arguments(locals()))


class RecurrentNet(SNN):
    """Linear -> recurrent neuron population -> Linear -> output neuron."""

    def __init__(
        self,
        n_in: int = 64,
        n_hidden: int = 64,
        n_out: int = 10,
        neuron: str = "LIF",
        output_neuron: str = "LIF",
        neuron_params: dict | None = None,
        output_params: dict | None = None,
        bias: bool = True,
        convention: Convention = Convention(),
    ):
        layers = {
            "fc1": Linear(n_in, n_hidden, bias=bias),
            _name(neuron, 1): Recurrent(make_neuron(neuron, n_hidden, convention, **(neuron_params or {}))),
            "fc2": Linear(n_hidden, n_out, bias=bias),
            _name(output_neuron, 2): make_neuron(output_neuron, n_out, convention, **(output_params or {})),
        }
        super().__init__(layers, (n_in,), convention, self._arguments(locals()))


ARCHITECTURES: dict[str, type[SNN]] = {"MLP": MLP, "ConvNet": ConvNet, "RecurrentNet": RecurrentNet}


def build(architecture: str, config: dict, convention: Convention = Convention()) -> SNN:
    """Rebuild a reference architecture from its name and ``config``."""
    if architecture not in ARCHITECTURES:
        raise NeurocompileError(f"unknown architecture '{architecture}'; choose one of {', '.join(ARCHITECTURES)}")
    _check_config(architecture, config)
    try:
        return ARCHITECTURES[architecture](**config, convention=convention)
    except TypeError as exc:
        raise NeurocompileError(f"architecture '{architecture}': bad config ({exc})") from None


SCALAR_TYPES = {"int": int, "bool": bool, "str": str}  # constructor annotations checked in a config


def _check_config(architecture: str, config: dict) -> None:
    """Every config value of an ``int``, ``bool`` or ``str`` argument has that type (a bool is not an int)."""
    parameters = inspect.signature(ARCHITECTURES[architecture].__init__).parameters
    for name, value in config.items():
        kind = SCALAR_TYPES.get(str(parameters[name].annotation)) if name in parameters else None
        if kind is not None and (type(value) is not kind):
            raise NeurocompileError(
                f"architecture '{architecture}': config '{name}' must be {kind.__name__}, got {value!r}"
            )
