"""Shared test fixtures; the files they name live in ``tests/fixtures/`` (sources and licences in
each folder's README)."""

from __future__ import annotations

from pathlib import Path

import pytest

NIR_PAPER_DIR = Path(__file__).resolve().parent / "fixtures" / "nir-paper"


@pytest.fixture(scope="session")
def nir_paper_dir() -> Path:
    """The NIR paper's graphs (``*.nir``) and the single-LIF input spikes."""
    assert NIR_PAPER_DIR.is_dir(), f"NIR paper graphs not found at {NIR_PAPER_DIR}"
    return NIR_PAPER_DIR


@pytest.fixture(params=["kernel", "torch"])
def neuron_path(request, monkeypatch):
    """Run a test with the CPU backend's C neuron kernel and with its pure-torch path."""
    from neurocompile.backends import cpu

    if request.param == "torch":
        monkeypatch.setattr(cpu, "_load_kernel", lambda: None)
    elif cpu._load_kernel() is None:
        pytest.fail("C neuron kernel could not be built (gcc/cc missing?)")
    return request.param
