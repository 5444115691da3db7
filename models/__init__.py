"""SNN building blocks (nn.Modules over the pure step functions in neurocompile.semantics.discretization)."""
