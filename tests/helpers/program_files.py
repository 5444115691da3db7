"""Editing saved programs (``.ncp``) the way a damaged or crafted file would differ."""

from __future__ import annotations

import json

import numpy as np


def edit_header(path, edit) -> None:
    """Rewrite the structure (``program.json``) of the ``.ncp`` file at ``path`` with ``edit(header)``."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(arrays["program.json"].tobytes())
    edit(header)
    arrays["program.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
