"""The typed data between the stages: normalized graph, fixed-point program, learning rules,
quantization report and recording. Plain dataclasses that hold no behaviour beyond validation
and their file formats (``docs/architecture.md``)."""
