"""`neurocompile simulate MODEL`: run a network on the float, cpu or lava backend.

MODEL is a ``.nir`` graph (float runs it directly; cpu/lava compile it on the fly with
``neurocompile.compiler.pipeline.compile_graph``), a ``.ncp`` fixed-point program (cpu/lava only) or a
neurocompile checkpoint ``.pt`` (exported to NIR first). Reports accuracy when labels exist,
spikes per node, synaptic operations and activation sparsity; with ``--compare REF.npz``, the spike
fidelity of each layer to a reference run's recording (``metrics.layer_agreement``).

Under torchrun each rank runs a contiguous block of the inputs; rank 0 gathers the recordings
and reports (:mod:`neurocompile.distributed`, docs/distributed.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import click
import numpy as np

from neurocompile import distributed
from neurocompile.analysis.metrics import fidelity_line, layer_agreement
from neurocompile.analysis.summary import format_summary, plot_raster, save_recording, summarize
from neurocompile.backends import BACKENDS, backend_entry
from neurocompile.backends.lava.backend import TAGS
from neurocompile.cli import cli
from neurocompile.cli.options import convention_options, model_loading_options
from neurocompile.data import dataset_file
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs, load_arrays, npz_name
from neurocompile.hardware.energy import check_target, estimate_energy
from neurocompile.hardware.mapping import map_program
from neurocompile.ir.program import FixedPointProgram
from neurocompile.ir.recording import Recording


def _check_options(input_path, data, steps, limit, dt) -> None:
    """The flag combinations and values that the library cannot name as flags."""
    if input_path and data:
        raise NeurocompileError("give either --input or --data, not both")
    if not input_path and not data:
        raise NeurocompileError("no input: give --input X.npy or --data digits")
    for flag, value in (("--steps", steps), ("--limit", limit)):
        if value is not None and value <= 0:
            raise NeurocompileError(f"{flag} must be positive, got {value}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise NeurocompileError(f"--dt must be a positive number, got {dt}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=click.Choice(sorted(BACKENDS)),
    default="float",
    show_default=True,
    help="Which simulator runs MODEL.",
)
@click.option(
    "--input", "input_path", type=click.Path(dir_okay=False), help="Input spikes .npy [batch, time, *input_shape]."
)
@click.option(
    "--data",
    help="A dataset instead of --input: digits, digits-rows, an .npz file or event data "
    "(EVENTS.npz, tonic:NMNIST:ROOT; ?downsample=K; binned to --steps).",
)
@click.option("--steps", type=int, help="Time steps (dataset encoding length; truncates or zero-pads --input).")
@click.option("--limit", type=int, help="Use only the first N samples.")
@click.option(
    "--record", "record_path", type=click.Path(dir_okay=False), help="Write every node's spikes/v/u to this .npz."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a spike raster PNG of the first sample."
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option(
    "--compare",
    "compare_path",
    type=click.Path(dir_okay=False),
    help="Compare each layer's spikes with a reference run's recording (another run's --record .npz, same "
    "inputs): step agreement, spike F1 of the spike events and spike-count correlation.",
)
@click.option(
    "--compare-timing",
    type=click.Choice(["float", "same"]),
    default="float",
    show_default=True,
    help="The --compare run's timing: float (a compiled program's layers are compared their synapse latency "
    "later) or same (a run on this run's timing, as cpu against lava: no shift).",
)
@convention_options()
@model_loading_options
@click.option(
    "--device", default="cpu", show_default=True, help="Torch device for the float and cpu backends (cpu, cuda)."
)
@click.option(
    "--lava-tag",
    type=click.Choice(TAGS),
    default="fixed_pt",
    show_default=True,
    help="Lava process models: bit-accurate fixed_pt, or floating_pt (a .nir/.pt model then runs unquantized).",
)
@click.option(
    "--loihi", is_flag=True, help="Lava: run on a Loihi 2 system (Loihi2HwCfg; needs Intel's lava-loihi and the chip)."
)
@click.option(
    "--drain/--no-drain",
    default=True,
    show_default=True,
    help="A compiled program runs as many silent steps more as its outputs lag its inputs (its latency), "
    "so that the last inputs reach the outputs and its accuracy is the float network's.",
)
@click.option(
    "--graded-inputs",
    is_flag=True,
    help="Accept input values other than 0/1 (a float model only: the float backend or --lava-tag floating_pt).",
)
@click.option(
    "--report-energy",
    "energy_target",
    metavar="TARGET",
    help="Estimate energy per inference and time per step on TARGET (loihi2) from the run's events "
    "(a compiled program: --backend cpu; docs/loihi2.md).",
)
def simulate(
    model,
    backend,
    input_path,
    data,
    steps,
    limit,
    record_path,
    plot_path,
    as_json,
    compare_path,
    compare_timing,
    convention,
    dt,
    reset,
    lenient,
    device,
    lava_tag,
    loihi,
    drain,
    graded_inputs,
    energy_target,
    allow_pickle,
    input_shape,
):
    """Run MODEL (.nir, .ncp or .pt) on a backend and report accuracy, spikes, synops and sparsity."""
    from neurocompile import api  # here, not at the top: the API loads torch, which --help does not need

    _check_options(input_path, data, steps, limit, dt)
    if energy_target is not None:
        check_target(energy_target)
    if record_path and npz_name(record_path) != Path(record_path):  # --record /dev/null: refused, not /dev/null.npz
        check_outputs([record_path])
    inputs_read = [model, input_path, dataset_file(data), compare_path]
    check_outputs([record_path and npz_name(record_path), plot_path], inputs_read)
    reference = _load_reference(compare_path) if compare_path else None  # refused before the run
    entry = backend_entry(backend)
    if entry.device:
        try:
            api.check_device(device)
        except NeurocompileError as exc:
            raise NeurocompileError(f"--device: {exc}") from None
    loaded = api.load_model(model, lenient=lenient, allow_pickle=allow_pickle, input_shape=input_shape)
    conv = api.resolve_convention(convention, dt=dt, reset=reset, graph=loaded)
    model_obj = api.model_for_backend(loaded, backend, conv, {"tag": lava_tag})
    if energy_target and not api.is_program(model_obj):
        raise NeurocompileError(f"--report-energy: the {backend} backend runs no compiled program; use --backend cpu")
    resource_map = map_program(model_obj) if energy_target else None  # what cannot be mapped: refused before the run
    inputs, labels = api.load_inputs(input_path, data=data, steps=steps, limit=limit)
    with distributed.session(device if entry.device else "cpu") as world:
        part = inputs[distributed.shard_slice(len(inputs), world)]
        run = dict(
            convention=conv,
            device=device,
            lava_tag=lava_tag,
            hardware=loihi,
            progress=world.main,
            graded_inputs=graded_inputs,
            drain=drain,
        )
        recording = distributed.gather_recording(api.simulate(model_obj, part, backend, **run), world)
    if not world.main:
        return
    report = summarize(recording, inputs, labels)
    report.update(model=str(Path(model)), convention=conv.name, dt=conv.dt)
    if energy_target:
        energy = estimate_energy(model_obj, recording, inputs, energy_target, resource_map=resource_map)
        report["energy"] = energy.to_dict()
    if record_path:
        report["record"] = str(save_recording(recording, record_path))
    if plot_path:
        plot_raster(recording, plot_path, None if labels is None else labels[0])
        report["plot"] = str(plot_path)
    text = format_summary(report) + (f"\n\n{energy.table()}" if energy_target else "")
    if reference is not None:
        report["comparison"] = _comparison(compare_path, reference, recording, model_obj, compare_timing)
        text += "\n\n" + _comparison_text(report["comparison"])
    click.echo(json.dumps(report, indent=2) if as_json else text)


def _load_reference(path) -> Recording:
    """The recording at ``path`` (an ``.npz`` that ``--record`` wrote), for ``--compare``, read by the checked
    loader (``files.load_arrays``: headers checked, no pickles, sizes capped)."""
    arrays = load_arrays(path, "--compare")
    if "" in arrays:
        raise NeurocompileError(f"--compare: {path} is not a recording (.npz, as --record writes)")
    return Recording({unquote(name): array for name, array in arrays.items()}, [], "reference")


def _comparison(path, reference: Recording, recording: Recording, model, timing: str) -> dict:
    """Per layer of this run, its spike fidelity to ``reference`` (``metrics.spike_fidelity``); a compiled
    program's populations are compared their latency later when the reference ran on float timing."""
    if isinstance(model, FixedPointProgram) and timing == "float":
        latency = model.latency()
    else:
        latency = {key[: -len(".spikes")]: 0 for key in recording.arrays if key.endswith(".spikes")}
    layers = layer_agreement(reference, recording, latency)
    if not layers:
        raise NeurocompileError(
            f"--compare: {path} records the spikes of none of this run's layers ({', '.join(latency)})"
        )
    return {
        "reference": str(path),
        "timing": timing,
        "shift": {name: latency[name] for name in layers},
        "layers": layers,
    }


def _comparison_text(comparison: dict) -> str:
    lines = [f"spike fidelity against {comparison['reference']} (spike F1: spikes in both of reference/this run)"]
    for name, report in comparison["layers"].items():
        later = f" (+{comparison['shift'][name]} steps)" if comparison["shift"][name] else ""
        lines.append(f"{name}{later}: {fidelity_line(report)}")
    return "\n".join(lines)
