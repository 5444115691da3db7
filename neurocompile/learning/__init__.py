"""On-chip learning: OTTT and S-TLLR compiled into the program's learning rules, and the
learning session that streams data through them (``docs/on-chip-learning.md``).

The session's choices, here so that the command line offers them without loading torch."""

RULES = ("ottt", "stllr")
LAYER_CHOICES = ("readout", "all")
REINIT_CHOICES = ("zero", "random")
INIT_CHOICES = ("trained", "random")  # the hidden layers: as given, or drawn anew
