"""Repairs of known exporter defects, applied only when the file's producer is known.

The producer comes from ``--from LIB==VERSION`` (:func:`reading_from`, or ``load_graph(producer=...)``) or from the
graph's metadata ``producer``; each repair is announced in one line on stderr, and the library's native preset
(``PRODUCERS``) becomes the graph's convention. The mechanism and the repairs: ``docs/conventions.md`` ("Files a
peer library exported"); case by case: ``docs/peer-compatibility.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import re
import sys
from dataclasses import dataclass

import numpy as np

from neurocompile.errors import GraphError, NeurocompileError


@dataclass(frozen=True)
class Assumption:
    """What a peer's file does not record and its preset assumes (the library's default), and the option
    that selects the other choice: a Convention option (``--convention``), an option of ``--from``
    (``Producer.options``), or None where no option does."""

    option: str | None
    value: str  # the option's value for the other choice, as the command line takes it
    assumed: str  # the library's default, in its own words
    other: str  # the other choice, in the library's words
    kinds: tuple = ()  # the neuron types it concerns (none: every neuron)


@dataclass(frozen=True)
class Producer:
    """A peer library's known version: the preset of its native dynamics (with the dt its exporter
    and native runs assume), the repairs its exporter needs and what its files leave to the preset."""

    library: str
    version: str  # major.minor
    preset: str
    dt: float | None = None  # None: the preset's
    repairs: tuple = ()
    assumes: tuple = ()  # Assumption: announced with the option that changes it
    options: tuple = ()  # the fields that ``--from LIB==VERSION,OPTION=VALUE`` sets (dt, norm_input)
    norm_input: bool | None = None  # Sinabs: None, each layer's default
    given: tuple = ()  # the options ``--from`` set, as (name, text)

    def __str__(self) -> str:
        return f"{self.library} {self.version}"

    def spec(self) -> str:
        """This producer as ``--from`` takes it (``sinabs==3.1,norm_input=false``)."""
        return ",".join([f"{self.library}=={self.version}", *(f"{k}={v}" for k, v in self.given)])

    def convention(self):

        from neurocompile.semantics.discretization import get_convention  # torch: --help reads this module

        return get_convention(self.preset, dt=self.dt)


# --- the repairs: each takes (graph, producer) and returns the lines it announces ----------------


def _nodes(graph, prefix: str = ""):
    """``(name, node)`` of every node, nested graphs' nodes named ``outer.inner``."""
    import nir

    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            yield from _nodes(node, f"{full}.")
        else:
            yield full, node


def _neurons(graph, *kinds: str):
    for name, node in _nodes(graph):
        if type(node).__name__ in kinds:
            yield name, node


def _shape(types, port: str):
    """A declared port shape, or None when there is none or it is not whole numbers (validation names it)."""
    value = np.ravel((types or {}).get(port, []))
    if value.size == 0 or not np.issubdtype(value.dtype, np.number) or not np.all(np.isfinite(value)):
        return None
    if np.any(value != np.round(value)):
        return None
    return tuple(int(v) for v in value)


def _neighbour_shape(graph, name: str, io: str):
    """The shape the node beside Input/Output ``name`` has on that side (its input or its output)."""
    if io == "Input":
        ports = [_shape(getattr(graph.nodes.get(b), "input_type", None), "input") for a, b in graph.edges if a == name]
    else:
        ports = [
            _shape(getattr(graph.nodes.get(a), "output_type", None), "output") for a, b in graph.edges if b == name
        ]
    known = {shape for shape in ports if shape is not None}
    return known.pop() if len(known) == 1 else None


def _batch_time_dims(graph, producer) -> list[str]:
    """Input/Output types ``[1, ..., 1, *shape]`` where the neighbour has ``shape``: read as ``shape``."""
    import nir

    lines = []
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.Input, nir.Output)):
            continue
        io = type(node).__name__
        written = _shape(node.input_type, "input")
        wanted = _neighbour_shape(graph, name, io)
        extra = len(written or ()) - len(wanted or ())
        if wanted is None or extra <= 0 or written[extra:] != wanted or any(d != 1 for d in written[:extra]):
            continue
        node.input_type = {"input": np.array(wanted)}
        node.output_type = {"output": np.array(wanted)}
        kept = "the batch dimension" if extra == 1 else "batch and time dimensions"
        lines.append(f"{io} '{name}' type {list(written)} keeps {kept}; read as {list(wanted)}")
    return lines


def _scalar_parameters(graph, producer) -> list[str]:
    """Neuron parameters of shape ``()`` broadcast to the node's shape (its other parameters' or its input's)."""
    from neurocompile.semantics.primitives import PRIMITIVES, kind_of  # torch: --help reads this module

    lines = []
    preds = {}
    for a, b in graph.edges:
        preds.setdefault(b, []).append(a)
    for name, node in graph.nodes.items():
        if kind_of(node) != "neuron":
            continue
        fields = [f for f in PRIMITIVES[type(node).__name__].fields if getattr(node, f, None) is not None]
        scalars = [f for f in fields if np.ndim(getattr(node, f)) == 0]
        sizes = {np.shape(getattr(node, f)) for f in fields} - {()}
        inputs = {_shape(getattr(graph.nodes.get(p), "output_type", None), "output") for p in preds.get(name, [])}
        inputs -= {None}
        shape = sizes.pop() if len(sizes) == 1 else (inputs.pop() if not sizes and len(inputs) == 1 else None)
        if not scalars or shape is None:
            continue
        for f in scalars:
            setattr(node, f, np.full(shape, getattr(node, f), dtype=np.asarray(getattr(node, f)).dtype))
        node.input_type, node.output_type = {"input": np.array(shape)}, {"output": np.array(shape)}
        lines.append(
            f"{type(node).__name__} '{name}' parameters {', '.join(scalars)} (shape ()) broadcast to {list(shape)}"
        )
    return lines


def _norse_tau(graph, producer) -> list[str]:
    """Norse 1.1's ``to_nir`` writes ``tau = dt/tau_inv``: read ``tau_written/dt``."""
    dt = producer.dt
    lines = []
    for name, node in _neurons(graph, "LIF", "LI", "CubaLIF"):
        fields = ("tau_syn", "tau_mem") if type(node).__name__ == "CubaLIF" else ("tau",)
        for f in fields:
            setattr(node, f, getattr(node, f) / dt)
        written = ", ".join(fields)
        lines.append(
            f"{type(node).__name__} '{name}' {written} written as dt/tau_inv (dt*tau, dt = {dt:g}), read as written/dt"
        )
    return lines


def _rockpool_parameters(graph, producer) -> list[str]:
    """Rockpool 3.1's ``r = tau_mem*exp(-dt/tau_mem)/dt`` (and no ``w_in``) read as the gains of its own
    update under ``decay="exponential"``: ``r = 1/(1 - a_mem)``, ``w_in = a_syn/(1 - a_syn)``."""
    dt = producer.dt
    lines = []
    for name, node in _neurons(graph, "LIF", "CubaLIF"):
        cuba = type(node).__name__ == "CubaLIF"
        tau = node.tau_mem if cuba else node.tau
        if not np.allclose(node.r, tau * np.exp(-dt / tau) / dt, rtol=1e-4):
            raise GraphError(
                f"r is not Rockpool {producer.version}'s tau*exp(-dt/tau)/dt for dt = {dt:g}; was it exported "
                f"with another dt (--from {producer.spec()},dt=DT), or by another library?",
                node=name,
                field="r",
            )
        node.r = 1.0 / (1.0 - np.exp(-dt / tau))
        read = "r = 1/(1 - a)"
        if cuba:
            if not np.all(np.asarray(node.w_in) == 1):
                raise GraphError(f"Rockpool {producer.version} writes no w_in, this file does", node=name, field="w_in")
            a_syn = np.exp(-dt / node.tau_syn)
            node.w_in = a_syn / (1.0 - a_syn)
            read = "r = 1/(1 - a_mem), w_in = a_syn/(1 - a_syn)"
        lines.append(
            f"{type(node).__name__} '{name}' r written as tau*exp(-dt/tau)/dt{' and no w_in' if cuba else ''}; "
            f"read as {read} (a = exp(-dt/tau), dt = {dt:g})"
        )
    return lines


def _sinabs_norm_input(graph, producer) -> list[str]:
    """Sinabs 3.1 writes ``LIF``/``LI(tau, r=1)`` for a layer with or without ``norm_input``
    (``v = a*v + (1-a)*x`` or ``v = a*v + x``): one without is read as ``r = r/(1 - a)``; the layer's
    default (LIF: True, ExpLeak: False) unless ``--from sinabs==3.1,norm_input=...`` says."""
    dt = producer.convention().dt
    lines = []
    for name, node in _neurons(graph, "LIF", "LI"):
        kind = type(node).__name__
        if (kind == "LIF") if producer.norm_input is None else producer.norm_input:
            continue
        node.r = node.r / (1.0 - np.exp(-dt / node.tau))
        lines.append(f"{kind} '{name}' read as norm_input=False (v = a*v + x): r = r/(1 - a), a = exp(-dt/tau)")
    return lines


# Batch and time dimensions again after the broadcast: a neighbour with scalar parameters has no shape before it.
SHAPE_REPAIRS = (_batch_time_dims, _scalar_parameters, _batch_time_dims)

PRODUCERS = {
    ("snntorch", "1.0"): Producer(
        "snntorch",
        "1.0",
        "snntorch-1.0",
        repairs=SHAPE_REPAIRS,
        assumes=(
            Assumption("reset", "zero", 'snnTorch\'s default reset_mechanism="subtract"', 'reset_mechanism="zero"'),
            Assumption(
                "reset_timing", "snntorch-immediate", "snnTorch's default reset_delay=True", "reset_delay=False"
            ),
        ),
    ),
    ("norse", "1.1"): Producer(
        "norse",
        "1.1",
        "norse-1.1",
        dt=1e-3,
        repairs=(*SHAPE_REPAIRS, _norse_tau),
        assumes=(
            Assumption("dt", "DT", "to_nir's default dt=1e-3 (the tau repair uses it)", "to_nir(..., dt=DT)"),
            Assumption(None, "", "v_reset=0 (nir's default)", "another v_reset"),
        ),
        options=("dt",),
    ),
    ("spikingjelly", "2.0"): Producer("spikingjelly", "2.0", "spikingjelly", repairs=SHAPE_REPAIRS),
    ("sinabs", "3.1"): Producer(
        "sinabs",
        "3.1",
        "sinabs-3.1",
        repairs=(*SHAPE_REPAIRS, _sinabs_norm_input),
        assumes=(
            Assumption("spikes_per_step", "single", "Sinabs' default spike_fn=MultiSpike", "SingleSpike"),
            Assumption(
                "norm_input",
                "false",
                "Sinabs' default norm_input (True in LIF, False in ExpLeak)",
                "norm_input=False in every layer",
                kinds=("LIF", "LI"),
            ),
        ),
        options=("norm_input",),
    ),
    ("rockpool", "3.1"): Producer(
        "rockpool", "3.1", "rockpool-3.1", dt=1e-3, repairs=(*SHAPE_REPAIRS, _rockpool_parameters), options=("dt",)
    ),
}
KNOWN = ", ".join(f"{lib}=={version}" for lib, version in PRODUCERS)


# --- which producer ------------------------------------------------------------------------------


def parse(spec: str) -> Producer:
    """``LIB==VERSION`` (``norse==1.1`` or ``norse==1.1.0``), optionally followed by the producer's options
    (``sinabs==3.1,norm_input=false``, ``norse==1.1,dt=1e-4``), as a known :class:`Producer`; a one-line
    error otherwise."""
    head, *options = str(spec).split(",")
    match = re.fullmatch(r"\s*([A-Za-z_-]+)\s*==\s*(\d+)\.(\d+)(\.[\w.]+)?\s*", head)
    if not match:
        raise NeurocompileError(f"--from {spec}: expected LIBRARY==VERSION, e.g. norse==1.1 (known: {KNOWN})")
    key = (match.group(1).lower(), f"{match.group(2)}.{match.group(3)}")
    if key not in PRODUCERS:
        raise NeurocompileError(f"--from {spec}: no repairs are known for {key[0]} {key[1]} (known: {KNOWN})")
    producer = PRODUCERS[key]
    settings = dict(_setting(producer, text.strip()) for text in options)
    given = tuple((k, text) for k, (_, text) in settings.items())
    return dataclasses.replace(producer, **{k: value for k, (value, _) in settings.items()}, given=given)


def _setting(producer: Producer, text: str) -> tuple[str, tuple]:
    """``"OPTION=VALUE"`` of ``--from`` as ``(option, (value, text))``: dt as ``--convention`` takes it,
    norm_input true or false."""
    from neurocompile.semantics.discretization import get_convention  # torch: --help reads this module

    key, _, value = (part.strip() for part in text.partition("="))
    if key not in producer.options:
        known = ", ".join(producer.options) or "none"
        raise NeurocompileError(f"--from {producer}: unknown option '{text}' (options: {known})")
    if key == "dt":
        try:
            return key, (get_convention(f"{producer.preset},dt={value}").dt, value)
        except NeurocompileError as exc:
            raise NeurocompileError(f"--from {producer}: {exc}") from None
    if value.lower() not in ("true", "false"):
        raise NeurocompileError(f"--from {producer}: option {key}: expected true or false, got '{value}'")
    return key, (value.lower() == "true", value.lower())


def recorded(graph) -> Producer | None:
    """The known producer the graph's metadata ``producer`` names (``"norse 1.1.0"`` or ``"norse==1.1"``), or None."""
    value = (getattr(graph, "metadata", None) or {}).get("producer")
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf8", "replace")
    match = re.fullmatch(r"\s*([A-Za-z_-]+)\s*(?:==|\s)\s*v?(\d+)\.(\d+)\S*\s*", str(value)) if value else None
    return PRODUCERS.get((match.group(1).lower(), f"{match.group(2)}.{match.group(3)}")) if match else None


_FROM: contextvars.ContextVar[str | None] = contextvars.ContextVar("producer", default=None)
_SAID: contextvars.ContextVar[set | None] = contextvars.ContextVar("announced", default=None)
_USER: contextvars.ContextVar[tuple] = contextvars.ContextVar("user_convention", default=(None, {}))


@contextlib.contextmanager
def reading_from(spec: str | None, convention: str | None = None, **flags):
    """Within the block (a command), graphs read without an explicit producer are read as ``spec``'s
    (``--from``), a repair read twice is announced once, and what the user's ``convention`` and ``flags``
    (``--convention``, ``--dt``, ``--reset``; None: not given) decide is not announced as assumed."""
    if spec is not None:
        parse(spec)  # a bad spec is refused before anything is read
    given = {k: v for k, v in flags.items() if v is not None}
    tokens = _FROM.set(spec), _SAID.set(set()), _USER.set((convention, given))
    try:
        yield
    finally:
        _FROM.reset(tokens[0])
        _SAID.reset(tokens[1])
        _USER.reset(tokens[2])


def producer_for(graph, spec: str | None) -> Producer | None:
    """The producer to repair ``graph`` as: ``spec`` (else the ``--from`` in effect), else its metadata's;
    None for a graph repaired before it was written (its metadata lists the ``repairs``)."""
    spec = spec if spec is not None else _FROM.get()
    named, written = (parse(spec) if spec is not None else None), recorded(graph)
    if named and written and (named.library, named.version) != (written.library, written.version):
        raise NeurocompileError(f"--from {spec}, but the file's metadata says it was produced by {written}")
    return None if "repairs" in (graph.metadata or {}) else named or written


# --- applying ---------------------------------------------------------------------------------------


def announce(line: str) -> None:
    """One line on stderr (once within :func:`reading_from`)."""
    said = _SAID.get()
    if said is None or line not in said:
        print(line, file=sys.stderr)
    if said is not None:
        said.add(line)


def _user_convention(producer: Producer):
    """The convention a command runs a graph of ``producer``'s with (its preset under the user's
    ``--convention``, ``--dt`` and ``--reset``) and the options the user decided; None where
    ``--convention`` names another preset, which decides them all."""
    from neurocompile.semantics.discretization import get_convention  # torch: --help reads this module

    spec, flags = _USER.get()
    name, *options = str(spec).split(",") if spec else [producer.preset]
    if name.strip() != producer.preset:
        return None
    decided = {text.partition("=")[0].strip() for text in options} | set(flags)
    conv = get_convention(spec, **flags) if spec else producer.convention().with_options(**flags)
    return conv, decided


def assumptions(graph, producer: Producer) -> list[str]:
    """One line per option the file leaves to ``producer``'s preset and the user has not decided, each
    naming what selects the other choice."""
    from neurocompile.semantics.discretization import get_convention  # torch: --help reads this module

    user = _user_convention(producer)
    if user is None:
        return []
    conv, decided = user
    kinds = {type(node).__name__ for _, node in _nodes(graph)}
    lines = []
    for a in producer.assumes:
        if a.option in decided or a.option in dict(producer.given) or (a.kinds and not kinds & set(a.kinds)):
            continue
        if a.option is None:
            how = "no option selects it (edit the file)"
        elif a.option in producer.options:
            how = f"--from {producer.spec()},{a.option}={a.value}"
        else:
            how = f"--convention {get_convention(f'{conv.spec()},{a.option}={a.value}').spec()}"
        lines.append(f"assume ({producer}): {a.assumed}, not recorded; for {a.other}: {how}")
    return lines


def repair(graph, producer: Producer, say=announce) -> list[str]:
    """Apply ``producer``'s repairs to ``graph`` in place, announce each and what the file leaves to the
    preset (``say``), record the producer, those lines and its native convention in ``graph.metadata``;
    returns the announced lines."""
    lines = [f"repair ({producer}): {line}" for fix in producer.repairs for line in fix(graph, producer)]
    lines += assumptions(graph, producer)
    for line in lines:
        say(line)
    conv = producer.convention()
    graph.metadata = {
        **(graph.metadata or {}),
        "producer": f"{producer.library}=={producer.version}",
        "repairs": "\n".join(lines),  # a string: nir.write stores it
        "dt": float(conv.dt),
        "convention": conv.name,
        "convention_options": json.dumps(dataclasses.asdict(conv), sort_keys=True),
    }
    return lines
