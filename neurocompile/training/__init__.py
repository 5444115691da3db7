"""Offline training: BPTT, OTTT and S-TLLR (``docs/on-chip-rules.md`` compares them with on-chip learning).

The choices of a :class:`~neurocompile.training.trainer.TrainConfig`, here so that the command line
offers them without loading torch."""

ARCHS = ("mlp",)
RULES = ("bptt", "ottt", "stllr")
LOSSES = ("ce", "mse")
DEVICES = ("auto", "cpu", "cuda")
OTTT_MODES = ("A", "O")  # OTTT_A: per sample, OTTT_O: per step
FEEDBACKS = ("bp", "dfa")  # the online rules' learning signal: backpropagated, or direct feedback alignment
