"""Networks built in a peer library (snnTorch, Norse, SpikingJelly, Sinabs, Rockpool), exported with the library's
own NIR exporter: what ``neurocompile.export(module)`` does for them.

:func:`library_of` names the library whose classes a module is built from; :func:`export_peer` calls its exporter
on a copy of the module, writes the graph and reads it back as ``--from LIB==VERSION`` (the installed version)
reads a file (:mod:`neurocompile.frontend.peer_repairs`): each repair is announced, and the library's preset, with
the options the network's neurons set that the file does not record (snnTorch's reset, Sinabs' ``spike_fn``), is
recorded in the graph's metadata as its convention. Where that cannot be done, a one-line error names the exporter
to call and the ``--from`` to read its file with. Usage: ``docs/training.md`` ("Networks built with a peer library").
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.metadata
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nir
import torch

from neurocompile.errors import NeurocompileError, first_line
from neurocompile.frontend import peer_repairs
from neurocompile.frontend.nir_io import load_graph


@dataclass(frozen=True)
class Exporter:
    """A library's NIR exporter: ``module.function(net, sample, **options)``."""

    module: str
    function: str
    sample_dims: int = 1  # leading dims of size 1 in the sample input: batch (and time: Sinabs, Rockpool)
    options: dict = field(default_factory=dict)  # the arguments it needs
    takes_dt: bool = False  # called with dt = the dt of the library's preset

    def name(self) -> str:
        return f"{self.module}.{self.function}"

    def call(self, dt: float) -> str:
        """The call, as a user would write it (``dt``: the preset's)."""
        sample = f"torch.zeros({'1, ' * self.sample_dims}*input_shape)"
        options = [f"{k}={v!r}" for k, v in self.options.items()] + ([f"dt={dt:g}"] if self.takes_dt else [])
        return f"{self.name()}({', '.join(['net', sample, *options])})"


EXPORTERS = {
    "snntorch": Exporter("snntorch.export_nir", "export_to_nir", options={"ignore_dims": [0]}),
    "norse": Exporter("norse.torch.utils.export_nir", "to_nir", takes_dt=True),
    "spikingjelly": Exporter("spikingjelly.activation_based.nir_exchange", "export_to_nir", takes_dt=True),
    "sinabs": Exporter("sinabs.nir", "to_nir", sample_dims=2),
    "rockpool": Exporter("rockpool.nn.modules", "to_nir", sample_dims=2),
}


def library_of(model: torch.nn.Module) -> str | None:
    """The peer library whose classes ``model`` is built from (by their modules' names), or None."""
    found = {type(m).__module__.partition(".")[0] for m in torch.nn.Module.modules(model)} & set(EXPORTERS)
    if len(found) > 1:
        raise NeurocompileError(f"{type(model).__name__} mixes classes of {' and '.join(sorted(found))}; export each")
    return found.pop() if found else None


def _advice(library: str) -> str:
    """What to do instead: the exporter to call, and the ``--from`` to read its file with (the newest version
    of ``library`` that neurocompile knows)."""
    version = max(v for lib, v in peer_repairs.PRODUCERS if lib == library)
    dt = peer_repairs.PRODUCERS[library, version].convention().dt
    return f"export it with {EXPORTERS[library].call(dt)} and read the file with --from {library}=={version}"


def _exporter_function(library: str, name: str):
    exporter = EXPORTERS[library]
    try:
        return getattr(importlib.import_module(exporter.module), exporter.function)
    except (ImportError, AttributeError) as exc:
        raise NeurocompileError(
            f"{name} is built with {library} classes, but {exporter.name()} cannot be imported "
            f"here ({first_line(exc)}); where {library} is installed, {_advice(library)}"
        ) from None


def _producer(library: str, name: str) -> peer_repairs.Producer:
    """The known producer for the installed version of ``library``."""
    try:
        version = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:  # importable, but not installed as a distribution
        version = "(version unknown)"
    try:
        return peer_repairs.parse(f"{library}=={version}")
    except NeurocompileError:
        raise NeurocompileError(
            f"{name} is built with {library} {version}, whose exporter neurocompile does not know "
            f"(known: {peer_repairs.KNOWN}); {_advice(library)} if its files are alike, else with --convention"
        ) from None


def _per_neuron(net: torch.nn.Module, sample: torch.Tensor) -> None:
    """snnTorch 1.0's exporter fails on a scalar ``beta``, ``alpha`` or ``threshold`` (nir's type inference):
    give each neuron its own value (the same dynamics), sized by one forward pass."""
    import snntorch

    sizes, handles = {}, []

    def size(module, args, output) -> None:
        sizes[module] = args[0].shape[1:]

    for m in net.modules():
        if isinstance(m, (snntorch.Leaky, snntorch.Synaptic)):
            handles.append(m.register_forward_hook(size))
    try:
        with torch.no_grad():
            net(sample)
    finally:
        for h in handles:
            h.remove()
    for m, shape in sizes.items():
        for name in ("beta", "alpha", "threshold"):
            value = getattr(m, name, None)
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                full = value.detach().expand(shape).clone()
                setattr(m, name, torch.nn.Parameter(full) if isinstance(value, torch.nn.Parameter) else full)


PREPARE = {"snntorch": _per_neuron}


def _sinabs_sample(net: torch.nn.Module, input_shape) -> torch.Tensor:
    """Sinabs' ``Squeeze`` layers take ``[batch*time, ...]`` in multiples of their ``batch_size`` (or
    ``num_timesteps``), its other layers ``[batch, time, ...]``."""
    folded = [getattr(m, "batch_size", None) or getattr(m, "num_timesteps", None) for m in net.modules()]
    folded = [n for n in folded if n]
    return torch.zeros(folded[0], *input_shape) if folded else torch.zeros(1, 1, *input_shape)


SAMPLES = {"sinabs": _sinabs_sample}


def _the_one(values: set, what: str):
    """The one value the network's neurons share (None without neurons); one convention holds for a graph."""
    if len(values) > 1:
        raise NeurocompileError(f"its neurons differ in {what}: {sorted(values)}; one convention holds for the graph")
    return values.pop() if values else None


def _snntorch_options(net: torch.nn.Module) -> dict:
    """The convention options that snnTorch neurons' ``reset_mechanism`` and ``reset_delay`` set (the file records
    neither)."""
    import snntorch

    neurons = [m for m in net.modules() if isinstance(m, snntorch.SpikingNeuron)]
    found = _the_one({(m.reset_mechanism, m.reset_delay) for m in neurons}, "(reset_mechanism, reset_delay)")
    if found is None:
        return {}
    reset, delay = found
    if reset not in ("subtract", "zero"):
        raise NeurocompileError(f"reset_mechanism={reset!r} has no convention (subtract or zero)")
    return {"reset": reset, "reset_timing": "snntorch-delayed" if delay else "snntorch-immediate"}


def _sinabs_options(net: torch.nn.Module) -> dict:
    """The ``spikes_per_step`` that Sinabs neurons' ``spike_fn`` sets (the file does not record it)."""
    kinds = {"SingleSpike": "single", "MultiSpike": "multi"}
    names = {
        getattr(m.spike_fn, "__name__", type(m.spike_fn).__name__) for m in net.modules() if hasattr(m, "spike_fn")
    }
    spike_fn = _the_one(names, "spike_fn")
    if spike_fn is None:
        return {}
    if spike_fn not in kinds:
        raise NeurocompileError(f"spike_fn {spike_fn} has no convention (SingleSpike or MultiSpike)")
    return {"spikes_per_step": kinds[spike_fn]}


OPTIONS = {"snntorch": _snntorch_options, "sinabs": _sinabs_options}  # what a file does not record but the network says


def _native_convention(net: torch.nn.Module, library: str, producer: peer_repairs.Producer):
    """The library's preset with the options the network sets, and a line saying so; None where they are the preset's."""
    preset = producer.convention()
    options = OPTIONS.get(library, lambda net: {})(net)
    conv = preset.with_options(**options)
    if conv == preset:
        return None, ""
    changed = ", ".join(f"{k}={v}" for k, v in options.items() if getattr(preset, k) != v)
    return conv, f"convention ({producer}): the network sets {changed}; recorded as --convention {conv.spec()}"


def _record_convention(graph, conv) -> None:
    """``conv`` as the graph's convention, in place of the library's preset."""
    options = json.dumps(dataclasses.asdict(conv), sort_keys=True)
    graph.metadata.update(dt=float(conv.dt), convention=conv.name, convention_options=options)


def _exported(export, net, library: str, producer: peer_repairs.Producer, input_shape, name: str):
    """``export(net, ...)``, written and read back as ``--from`` reads its file (the same repairs and checks)."""
    exporter = EXPORTERS[library]
    sample = SAMPLES.get(library, lambda net, shape: torch.zeros(*(1,) * exporter.sample_dims, *shape))(
        net, input_shape
    )
    options = exporter.options | ({"dt": producer.convention().dt} if exporter.takes_dt else {})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nir"
        try:
            PREPARE.get(library, lambda *_: None)(net, sample)
            raw = export(net, sample, **options)
        except Exception as exc:
            raise NeurocompileError(
                f"{exporter.name()} failed on {name}: {first_line(exc)}; {_advice(library)}"
            ) from None
        try:
            nir.write(str(path), raw, compression=None)  # h5py cannot compress the scalars some exporters write
        except Exception as exc:
            raise NeurocompileError(
                f"{exporter.name()}'s graph of {name} cannot be written to a NIR file ({first_line(exc)})"
            ) from None
        try:
            return load_graph(path, producer=f"{producer.library}=={producer.version}")
        except NeurocompileError as exc:
            raise NeurocompileError(
                f"{exporter.name()}'s graph of {name}: {str(exc).replace(f'{path}: ', '')}"
            ) from None


def export_peer(model: torch.nn.Module, library: str, input_shape, convention=None):
    """``model`` (built with ``library``) exported by the library's own exporter and read as ``--from``
    ``LIB==VERSION`` (the installed version) reads its file; its convention is the library's preset with the
    options the network sets (announced), or ``convention`` (a Convention) when given."""
    name = type(model).__name__
    export = _exporter_function(library, name)
    producer = _producer(library, name)
    if not input_shape:
        raise NeurocompileError(f"{name}: give the input shape per sample (input_shape=(16,)) to export it")
    net = copy.deepcopy(model).eval()  # the exporters run the network: the caller's state stays as it was
    line = ""
    if convention is None:
        try:
            convention, line = _native_convention(net, library, producer)
        except NeurocompileError as exc:
            raise NeurocompileError(f"{name}: {exc}") from None
    graph = _exported(export, net, library, producer, input_shape, name)
    if line:
        peer_repairs.announce(line)
        graph.metadata["repairs"] += f"\n{line}"
    if convention is not None:
        _record_convention(graph, convention)
    return graph
