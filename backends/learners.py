"""Plastic programs as independent learners (batch entry b is learner b): one program each, of one
structure, and what a learning run records; shared by the C kernel and the NumPy reference loop."""

from __future__ import annotations

import dataclasses

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, Synapse
from neurocompile.semantics import fixedpoint as fxp

TRACE_VARIABLES = ("x1", "x2", "y1", "y2", "y3")


INT32_MAX = 2**31 - 1


def learner_programs(programs) -> list[FixedPointProgram]:
    """Validated programs of a learner list; every one must have the structure of the first.

    Learners may differ only in synapse weights, rule seeds (``learning.rng_seed``) and product
    mantissas and exponents. Otherwise a one-line error names the first differing field.
    """
    programs = list(programs)
    if not programs:
        raise NeurocompileError("cpu backend: an empty list of programs (one program per learner)")
    for i, prog in enumerate(programs):
        if not isinstance(prog, FixedPointProgram):
            raise NeurocompileError(
                f"cpu backend: learner {i}: expected a FixedPointProgram, got {type(prog).__name__}"
            )
        prog.validate()
    for i, prog in enumerate(programs[1:], start=1):
        where = _structure_difference(programs[0], prog)
        if where is not None:
            raise NeurocompileError(
                f"cpu backend: learner {i}'s program differs from learner 0's in {where} "
                "(learners may differ only in weights, rng_seed and product mantissa/exponent)"
            )
    return programs


def _structure_difference(a: FixedPointProgram, b: FixedPointProgram) -> str | None:
    for name in ("number_format", "outputs", "inputs"):
        if getattr(a, name) != getattr(b, name):
            return f"'{name}'"
    if [p.name for p in a.populations] != [p.name for p in b.populations]:
        return "'populations'"
    for p, q in zip(a.populations, b.populations):
        for f in dataclasses.fields(p):
            if not _same(getattr(p, f.name), getattr(q, f.name)):
                return f"population '{p.name}' field '{f.name}'"
    if [s.name for s in a.synapses] != [s.name for s in b.synapses]:
        return "'synapses'"
    for s, r in zip(a.synapses, b.synapses):
        for f in dataclasses.fields(s):
            x, y = getattr(s, f.name), getattr(r, f.name)
            if f.name == "weights":
                x, y = np.shape(x), np.shape(y)
            if f.name == "learning" and x is not None and y is not None:
                x, y = _rule_structure(x), _rule_structure(y)
            if not _same(x, y):
                return f"synapse '{s.name}' field '{f.name}'"
    return None


def _rule_structure(rule):
    """A rule without what learners may vary: seed, product mantissas and exponents."""
    products = tuple(dataclasses.replace(p, mantissa=0, exponent=0) for p in rule.products)
    return dataclasses.replace(rule, rng_seed=0, products=products)


def _same(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return x is not None and y is not None and np.shape(x) == np.shape(y) and np.array_equal(x, y)
    return x == y


def learning_entries(syn: Synapse, number_format: str = "fixed") -> np.ndarray:
    """Where a plastic synapse learns: everywhere (dense), or at a sparse synapse's stored entries,
    the weights that are nonzero after the first-step truncation (Lava's LearningSparse)."""
    w0 = fxp.synapse_weights(syn, number_format)
    return w0 != 0 if syn.kind == "sparse" else np.ones(w0.shape, dtype=bool)


def checkpoint_count(steps: int, every: int | None) -> int:
    return steps // every if every else 0
