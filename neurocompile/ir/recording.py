"""What a backend run returns: recorded spikes and states, keyed ``<node>.<variable>``.

Every backend returns a :class:`Recording`. Arrays are NumPy, shaped ``[batch, time, *node_shape]``.
Variables: ``spikes`` (0/1), ``v`` (membrane), ``u`` or ``i`` (synaptic current). The float
backend records floats; the fixed-point backends record the integers of ``neurocompile.semantics.fixedpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Recording:
    """Recorded arrays plus the names of the output nodes and the backend that made them."""

    arrays: dict[str, np.ndarray]
    outputs: list[str]
    backend: str
    metadata: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def spikes(self, node: str) -> np.ndarray:
        return self.arrays[f"{node}.spikes"]

    def output_spikes(self) -> np.ndarray:
        """Spikes of the first output node, [batch, time, ...]."""
        return self.spikes(self.outputs[0])

    def spike_counts(self) -> dict[str, int]:
        return {key[: -len(".spikes")]: int(arr.sum()) for key, arr in self.arrays.items() if key.endswith(".spikes")}

    def save(self, path: str | Path) -> None:
        """Write every array to ``path`` as an ``.npz`` archive (the name is used as it is)."""
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **self.arrays)
