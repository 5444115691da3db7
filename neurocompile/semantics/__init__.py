"""The definitions every backend obeys: the NIR primitives, the float discretization, Lava's
integer neuron and synapse arithmetic and its learning engine (``docs/conventions.md``)."""
