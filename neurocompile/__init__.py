"""neurocompile: spiking neural networks from PyTorch through NIR to Lava and a bit-accurate CPU simulator.

The pipeline is a chain of small stages with plain data between them::

    torch module --export--> NIR graph --normalize--> NormalizedGraph
        --quantize--> FixedPointProgram --lower--> backend executable --run--> Recording

Importing the package never imports Lava; ``neurocompile.lava_compat`` does that on demand.
"""

__version__ = "0.1.0"
