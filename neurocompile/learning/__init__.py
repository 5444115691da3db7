"""On-chip learning: OTTT and S-TLLR compiled into the program's learning rules, and the
learning session that streams data through them (``docs/on-chip-learning.md``)."""
