"""Reading and writing graphs: NIR files (strict, with peer repairs), graph walking, checkpoints
and the export of PyTorch modules to NIR."""
