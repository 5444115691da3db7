"""Hostile HDF5 in a .nir file: external links, virtual datasets, external raw storage, soft links
and link cycles are refused in one line before anything is read."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_io import load_graph


def _nir_with(path, setup) -> None:
    with h5py.File(path, "w") as fh:
        node = fh.create_group("node")
        node.create_dataset("type", data=np.bytes_("NIRGraph"))
        setup(fh, node)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("external link", "is an external link to"),
        ("virtual dataset", "is a virtual dataset"),
        ("external storage", "keeps its data in another file"),
        ("soft link", "is a soft link to"),
        ("cycle", "links back into itself"),
    ],
)
def test_hostile_hdf5_is_refused_in_one_line(tmp_path, kind, message):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype=np.float64).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("w", data=np.ones(4))

    def setup(fh, node):
        if kind == "external link":
            node["weights"] = h5py.ExternalLink(str(other), "/w")
        elif kind == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(other), "w", shape=(4,))
            node.create_virtual_dataset("weights", layout)
        elif kind == "external storage":
            node.create_dataset("weights", shape=(16,), dtype="f8", external=[(str(secret), 0, 128)])
        elif kind == "soft link":
            node["weights"] = h5py.SoftLink("/node/type")
        else:
            node["loop"] = node  # a hard link to the group itself

    path = tmp_path / "hostile.nir"
    _nir_with(path, setup)
    with pytest.raises(NeurocompileError) as err:
        load_graph(path)
    assert "\n" not in str(err.value) and message in str(err.value) and "refused" in str(err.value)
