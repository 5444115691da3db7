"""The compiler passes from a NIR graph to a fixed-point program (``docs/quantization.md``)."""
