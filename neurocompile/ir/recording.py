"""What a backend run returns: recorded spikes and states, keyed ``<node>.<variable>``.

Every backend returns a :class:`Recording`. Arrays are NumPy, shaped ``[batch, time, *node_shape]``.
Variables: ``spikes`` (0/1), ``v`` (membrane), ``u`` or ``i`` (synaptic current). The float
backend records floats; the fixed-point backends record the integers of ``neurocompile.semantics.fixedpoint``.

:meth:`Recording.save` writes an ``.npz`` archive whose member names are the keys made plain
(:func:`neurocompile.files.plain_name`): a node name from a model never makes a member with a path
separator, ``..`` or NUL, and two names never become one member.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurocompile.files import plain_name, write_atomically


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
        """Write every array to ``path`` as a compressed ``.npz`` archive, atomically (the name is used as it
        is). Member ``<key>.npy`` per array, the key made a plain name (:func:`member_name`)."""
        write_atomically(path, self._write, "recording")

    def _write(self, path: str) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for key, array in self.arrays.items():
                with archive.open(member_name(key), "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def member_name(key: str) -> str:
    """The archive member that holds array ``key``: ``lif1.spikes`` -> ``lif1.spikes.npy``; any character
    but letters, digits and ``_.-~`` percent-encoded (``a/b.v`` -> ``a%2Fb.v.npy``), so that ``np.load``
    gives the array back as ``archive[plain_name(key)]`` and ``urllib.parse.unquote`` gives the key."""
    return plain_name(key, ".npy")
