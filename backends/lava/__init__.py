"""The Lava backend: a program lowered to a Lava process graph (``docs/lava-backend.md``)."""
