"""What a run or a model amounts to: readout metrics, run summaries and plots, ``inspect`` tables."""
