"""Hardware targets: their resource limits (``loihi2``) and how a fixed-point program is partitioned onto
them (``mapping``, ``connectivity``, ``plot``), and what a run costs there (``energy``). ``docs/loihi2.md``
describes the limits, the method and the energy model."""
