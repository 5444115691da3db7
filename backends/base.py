"""The contract every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from neurocompile.recording import Recording


@runtime_checkable
class Backend(Protocol):
    """One model, run on batches of input spikes.

    ``run(inputs, record=None, progress=False)``: ``inputs`` is ``[batch, time, *input_shape]``
    (or ``{input name: array}`` for several inputs); ``record`` is None (outputs only), "all", or
    node names / ``<node>.<variable>`` keys. The returned recording's metadata names the
    execution path that ran.
    """

    name: str

    def run(self, inputs, record=None, progress: bool = False) -> Recording: ...
