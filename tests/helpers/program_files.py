"""Editing saved programs (``.ncp``) the way a damaged or crafted file would differ."""

from __future__ import annotations

import json

import numpy as np


def edit_header(path, edit, text: bool = False) -> None:
    """Rewrite the structure (``program.json``) of the ``.ncp`` file at ``path`` with ``edit(header)``, or
    with ``header_text = edit(header_text)`` when ``text``."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header_text = arrays["program.json"].tobytes().decode()
    if text:
        header_text = edit(header_text)
    else:
        header = json.loads(header_text)
        edit(header)
        header_text = json.dumps(header)
    arrays["program.json"] = np.frombuffer(header_text.encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
