"""The spike raster a person reads: labelled axes, integer ticks, the sample's label and prediction."""

from __future__ import annotations

import numpy as np

from neurocompile.analysis import summary
from neurocompile.ir.recording import Recording


def _raster(monkeypatch, tmp_path, label):
    """The figure plot_raster draws for a hand-made recording whose output neuron 1 spikes most."""
    spikes = np.zeros((1, 5, 3), np.uint8)
    spikes[0, [1, 2, 4], 1] = 1
    spikes[0, 3, 2] = 1
    hidden = np.zeros((1, 5, 4), np.uint8)
    hidden[0, 0, 3] = 1
    recording = Recording({"h.spikes": hidden, "out.spikes": spikes}, ["out"], "cpu")
    drawn = []
    monkeypatch.setattr(summary, "save_figure", lambda fig, path: drawn.append(fig))
    summary.plot_raster(recording, tmp_path / "r.png", label)
    return drawn[0]


def test_the_raster_names_its_axes_and_the_sample_it_shows(monkeypatch, tmp_path):
    fig = _raster(monkeypatch, tmp_path, label=2)
    assert fig._suptitle.get_text() == "spike raster, sample 0 (cpu): label 2, predicted 1 (wrong)"
    top, bottom = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["neuron", "neuron"] and bottom.get_xlabel() == "time step"
    assert (
        top.get_title(loc="left") == "h: 4 neurons, 1 spikes"
        and bottom.get_title(loc="left") == "out: 3 neurons, 4 spikes"
    )
    for ax in fig.axes:
        for ticks in (ax.get_xticks(), ax.get_yticks()):
            assert np.array_equal(ticks, np.round(ticks))  # time steps and neurons are whole numbers
    assert _raster(monkeypatch, tmp_path, None)._suptitle.get_text().endswith(": predicted 1")
