"""Plastic synapses and learning neurons as plain, backend-neutral data.

A :class:`LearningRule` on a dense or sparse synapse (``Synapse.learning``) is Lava's three-factor product series
(``Loihi3FLearningRule``) written as data; the Lava rule string is generated from it (:func:`lava_rule_string`),
never stored. A :class:`LearningSignal` on its target population (``Population.learning``) is what that population
sends the rule every step. Their arithmetic: :mod:`neurocompile.semantics.learning_engine`; their meaning:
``docs/on-chip-learning.md``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from neurocompile.errors import NeurocompileError

FACTOR_VARIABLES = ("x0", "x1", "x2", "y0", "y1", "y2", "y3", "w")
MANTISSA_RANGE = (-8, 7)  # Lava product_series: s_mantissa in [-8, 7]
EXPONENT_RANGE = (-7, 8)  # s_exp in [-7, 8]
CONSTANT_RANGE = (-256, 255)  # W_CONST = 8 bits, signed
IMPULSE_RANGE = (0.0, 127.0)  # traces are 7-bit
TAU_RANGE = (0, 65535)
T_EPOCH_RANGE = (1, 63)  # within-epoch spike times are 6-bit (tx, ty)
SEED_RANGE = (0, 2**31 - 1)
MAX_FACTORS = 4
MAX_DECIMATE = 9  # uK: Lava reads K as one digit (Loihi3FLearningRule._validate_uk)
SURROGATE_VALUE_RANGE = (0, 2**15 - 1)
DEPENDENCY = re.compile(rf"^(x0|y0|u[0-{MAX_DECIMATE}])$")

SignalFactor = Literal["one", "surrogate", "surrogate_trace"]
OutputKind = Literal["spikes", "v"]


def _fail(node: str, name: str, message: str):
    raise NeurocompileError(f"node '{node}', parameter '{name}': {message}")


def _integer(node: str, name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(node, name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        _fail(node, name, f"{value} leaves [{low}, {high}]")


@dataclass(frozen=True)
class Factor:
    """One factor of a product: ``variable + constant`` (Lava clips it to the variable's width)."""

    variable: str
    constant: int = 0


@dataclass(frozen=True)
class Product:
    """``mantissa * 2**exponent * dependency * factors...``.

    ``dependency``: ``x0`` (pre spike in the epoch), ``y0`` (post spike, needs a bAP) or ``uK``
    (every epoch whose index is a multiple of 2**K; ``u0``: every epoch).
    """

    dependency: str
    factors: tuple[Factor, ...]
    mantissa: int = 1
    exponent: int = 0


@dataclass(frozen=True)
class LearningRule:
    """A three-factor rule on one synapse: products, trace parameters, epoch and random seed.

    ``rng_seed`` is required: Lava seeds its trace generators with it (``rng_seed`` to
    ``rng_seed + 3``), and a missing seed would make two runs differ.
    """

    products: tuple[Product, ...]
    rng_seed: int
    x1_impulse: float = 0.0
    x1_tau: int = 0
    x2_impulse: float = 0.0
    x2_tau: int = 0
    t_epoch: int = 1

    def variables(self) -> set[str]:
        """Every dependency and factor variable the rule reads."""
        used = {p.dependency for p in self.products}
        return used | {f.variable for p in self.products for f in p.factors}

    def decimate_exponent(self) -> int | None:
        """K of the ``uK`` dependencies (one per rule, as in Lava), or None."""
        ks = {int(p.dependency[1:]) for p in self.products if p.dependency.startswith("u")}
        return ks.pop() if ks else None

    def validate(self, node: str) -> None:
        if not isinstance(self.products, tuple) or not self.products:
            _fail(node, "learning.products", "a rule needs at least one product")
        for i, product in enumerate(self.products):
            where = f"learning.products[{i}]"
            if not isinstance(product.dependency, str) or not DEPENDENCY.match(product.dependency):
                _fail(
                    node,
                    f"{where}.dependency",
                    f"unknown dependency {product.dependency!r} (x0, y0, u0-u{MAX_DECIMATE})",
                )
            _integer(node, f"{where}.mantissa", product.mantissa, *MANTISSA_RANGE)
            _integer(node, f"{where}.exponent", product.exponent, *EXPONENT_RANGE)
            if not isinstance(product.factors, tuple) or len(product.factors) > MAX_FACTORS:
                _fail(node, f"{where}.factors", f"a product takes a tuple of at most {MAX_FACTORS} factors")
            for j, factor in enumerate(product.factors):
                if factor.variable not in FACTOR_VARIABLES:
                    _fail(node, f"{where}.factors[{j}]", f"unknown factor {factor.variable!r} {FACTOR_VARIABLES}")
                _integer(node, f"{where}.factors[{j}].constant", factor.constant, *CONSTANT_RANGE)
        if len({p.dependency for p in self.products if p.dependency.startswith("u")}) > 1:
            _fail(node, "learning.products", "all uK dependencies of a rule must share K (Lava: one decimate exponent)")
        _integer(node, "learning.rng_seed", self.rng_seed, *SEED_RANGE)
        for name in ("x1_impulse", "x2_impulse"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                _fail(node, f"learning.{name}", f"must be a number, got {value!r}")
            if not IMPULSE_RANGE[0] <= value <= IMPULSE_RANGE[1]:
                _fail(node, f"learning.{name}", f"{value} leaves [0, 127] (traces are 7-bit)")
        _integer(node, "learning.x1_tau", self.x1_tau, *TAU_RANGE)
        _integer(node, "learning.x2_tau", self.x2_tau, *TAU_RANGE)
        _integer(node, "learning.t_epoch", self.t_epoch, *T_EPOCH_RANGE)


@dataclass(frozen=True)
class Surrogate:
    """Integer surrogate derivative: ``table[min(|v - (vth << 6)| >> shift, len(table) - 1)]``."""

    table: tuple[int, ...]
    shift: int = 0


@dataclass(frozen=True)
class SignalTerm:
    """One y value: ``clip(round(error * g / 2**shift), -128, 127)`` (to nearest, ties away from zero),
    g = 1, psi or the psi trace of t-1."""

    factor: SignalFactor
    shift: int = 0


@dataclass(frozen=True)
class LearningSignal:
    """What a learning population sends its plastic synapses (see the module doc).

    ``target``: name of an input port (``kind="target"``) whose integers arrive at the
    third-factor input in the same step; the error is then ``output - target`` with
    ``output = spikes << output_shift`` or ``v >> output_shift`` (``v`` before reset). Without a
    target the error is the third-factor input itself: the sum of the feedback synapses into the
    population, which carry other populations' errors of the previous step.
    ``trace_decay``: 12-bit decay of the psi trace, ``tr <- (tr * (4096 - d) >> 12) + psi``.
    ``bap``: send the spikes as back-propagating action potentials (needed by ``y0``; Lava then
    clips the y values of spiking neurons to [0, 127]).
    """

    target: str | None = None
    output: OutputKind = "spikes"
    output_shift: int = 0
    surrogate: Surrogate | None = None
    trace_decay: int = 0
    y1: SignalTerm | None = None
    y2: SignalTerm | None = None
    y3: SignalTerm | None = None
    bap: bool = False

    def terms(self) -> dict[str, SignalTerm | None]:
        return {"y1": self.y1, "y2": self.y2, "y3": self.y3}

    def validate(self, node: str, spiking: bool) -> None:
        if self.target is not None and not isinstance(self.target, str):
            _fail(node, "learning.target", f"must be the name of a target port, got {self.target!r}")
        if self.output not in ("spikes", "v"):
            _fail(node, "learning.output", f"must be 'spikes' or 'v', got {self.output!r}")
        if self.output == "spikes" and not spiking:
            _fail(node, "learning.output", "a non-spiking population has no spikes: use 'v'")
        _integer(node, "learning.output_shift", self.output_shift, 0, 23)
        _integer(node, "learning.trace_decay", self.trace_decay, 0, 4095)
        if not isinstance(self.bap, bool):
            _fail(node, "learning.bap", f"must be true or false, got {self.bap!r}")
        if self.surrogate is not None:
            if not spiking:
                _fail(node, "learning.surrogate", "a non-spiking population has no threshold to take a surrogate at")
            table = self.surrogate.table
            if not isinstance(table, tuple) or not table:
                _fail(node, "learning.surrogate.table", "needs at least one value")
            for value in table:
                _integer(node, "learning.surrogate.table", value, *SURROGATE_VALUE_RANGE)
            _integer(node, "learning.surrogate.shift", self.surrogate.shift, 0, 23)
        for name, term in self.terms().items():
            if term is None:
                continue
            if term.factor not in ("one", "surrogate", "surrogate_trace"):
                _fail(node, f"learning.{name}.factor", f"unknown {term.factor!r} (one, surrogate, surrogate_trace)")
            if term.factor != "one" and self.surrogate is None:
                _fail(node, f"learning.{name}.factor", f"'{term.factor}' needs a surrogate")
            _integer(node, f"learning.{name}.shift", term.shift, 0, 62)


# --- Lava rule strings -----------------------------------------------------------------------


def lava_rule_string(rule: LearningRule) -> str:
    """The ``dw`` string of Lava's ``Loihi3FLearningRule`` for ``rule``.

    Every product is written ``(m) * 2^e * dependency * (variable + c) ...``; Lava parses it back
    to the same mantissa, exponent, dependency and factors (``product_series.py``), except that it
    halves an even mantissa below -7 (see ``learning_engine.lava_scale``).
    """
    terms = []
    for product in rule.products:
        parts = [f"({product.mantissa})", f"2^{product.exponent}", product.dependency]
        for factor in product.factors:
            if factor.constant:
                sign = "+" if factor.constant > 0 else "-"
                parts.append(f"({factor.variable} {sign} {abs(factor.constant)})")
            else:
                parts.append(factor.variable)
        terms.append(" * ".join(parts))
    return " + ".join(terms)


# --- JSON ------------------------------------------------------------------------------------


def rule_to_json(rule: LearningRule) -> dict:
    return asdict(rule)


def rule_from_json(node: str, record) -> LearningRule:
    """A rule from its ``.ncp`` JSON record; one-line errors name the synapse and the field."""
    if not isinstance(record, dict):
        _fail(node, "learning", "must be an object")
    if "rng_seed" not in record:
        _fail(node, "learning.rng_seed", "missing: a learning rule needs a random seed")
    known = set(LearningRule.__dataclass_fields__)
    unknown = set(record) - known
    if unknown:
        _fail(node, f"learning.{sorted(unknown)[0]}", "unknown field")
    products = []
    for i, item in enumerate(record.get("products") or []):
        if not isinstance(item, dict) or not isinstance(item.get("factors", []), list):
            _fail(node, f"learning.products[{i}]", "must be an object with a list of factors")
        factors = []
        for j, fac in enumerate(item.get("factors", [])):
            if not isinstance(fac, dict) or "variable" not in fac:
                _fail(node, f"learning.products[{i}].factors[{j}]", "must be an object with a variable")
            factors.append(Factor(fac["variable"], fac.get("constant", 0)))
        products.append(
            Product(item.get("dependency"), tuple(factors), item.get("mantissa", 1), item.get("exponent", 0))
        )
    rule = LearningRule(**{**record, "products": tuple(products)})
    rule.validate(node)
    return rule


def signal_to_json(signal: LearningSignal) -> dict:
    return asdict(signal)


def signal_from_json(node: str, record, spiking: bool) -> LearningSignal:
    if not isinstance(record, dict):
        _fail(node, "learning", "must be an object")
    unknown = set(record) - set(LearningSignal.__dataclass_fields__)
    if unknown:
        _fail(node, f"learning.{sorted(unknown)[0]}", "unknown field")
    values = dict(record)
    if values.get("surrogate") is not None:
        sur = values["surrogate"]
        if not isinstance(sur, dict) or not isinstance(sur.get("table"), list):
            _fail(node, "learning.surrogate", "must be an object with a table")
        values["surrogate"] = Surrogate(tuple(sur["table"]), sur.get("shift", 0))
    for name in ("y1", "y2", "y3"):
        if values.get(name) is not None:
            term = values[name]
            if not isinstance(term, dict) or "factor" not in term:
                _fail(node, f"learning.{name}", "must be an object with a factor")
            values[name] = SignalTerm(term["factor"], term.get("shift", 0))
    signal = LearningSignal(**values)
    signal.validate(node, spiking)
    return signal
