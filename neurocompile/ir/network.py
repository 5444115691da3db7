"""What the normalized graph and the program share: the convolution geometry, and looking up a
population, a synapse or the shape of a source by name."""

from __future__ import annotations

from dataclasses import dataclass

from neurocompile.errors import NeurocompileError


@dataclass
class ConvGeometry:
    """2-D convolution geometry (PyTorch semantics); input and output shapes are (C, H, W)."""

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


class Network:
    """Lookups by name over ``inputs``, ``populations`` and ``synapses`` (each element has a ``name``;
    inputs and populations a ``shape``; synapses a ``target``)."""

    def population(self, name: str):
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise NeurocompileError(f"{self.KIND} has no population '{name}'")

    def synapse(self, name: str):
        for syn in self.synapses:
            if syn.name == name:
                return syn
        raise NeurocompileError(f"{self.KIND} has no synapse '{name}'")

    def source_shape(self, name: str) -> tuple[int, ...]:
        """The shape of an input port or population."""
        for port in self.inputs:
            if port.name == name:
                return tuple(port.shape)
        return tuple(self.population(name).shape)

    def synapses_into(self, target: str) -> list:
        return [syn for syn in self.synapses if syn.target == target]
