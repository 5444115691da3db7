"""`neurocompile simulate MODEL`: run a network on the float, cpu or lava backend.

MODEL is a ``.nir`` graph (float runs it directly; cpu/lava compile it on the fly with
``neurocompile.quantize.compile_graph``), a ``.ncp`` fixed-point program (cpu/lava only) or a
neurocompile checkpoint ``.pt`` (exported to NIR first). Reports accuracy when labels exist,
spikes per node, synaptic operations and activation sparsity.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..backends import BACKENDS, create_backend
from ..errors import NeurocompileError
from . import cli


def load_model(path: Path, backend: str, convention, lenient: bool, float_program: bool = False):
    """Return (graph or None, program or None) for MODEL and the chosen backend.

    A graph for the cpu or lava backend is compiled to a fixed-point program, or with
    ``float_program`` lowered to a float program (Lava ``floating_pt``)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise NeurocompileError(f"{path}: no such file")
    graph = program = None
    if suffix == ".nir":
        from ..nir_io import load_graph

        graph = load_graph(path, lenient=lenient)
    elif suffix == ".pt":
        from ..export import export_checkpoint

        graph = export_checkpoint(path)
    elif suffix == ".ncp":
        if backend == "float":
            raise NeurocompileError(f"{path}: a fixed-point program (.ncp) runs on --backend cpu or lava, not float")
        from ..program import FixedPointProgram

        program = FixedPointProgram.load(path)
    else:
        raise NeurocompileError(f"{path}: unknown model type '{suffix}' (expected .nir, .ncp or .pt)")
    if graph is not None and backend != "float":
        from ..normalize import normalize
        from ..quantize import compile_graph
        from ..quantize import float_program as lower_to_float

        if float_program:
            program = lower_to_float(normalize(graph, convention))
        else:
            program, _report = compile_graph(graph, convention)
    return graph, program


def load_inputs(input_path, data, steps, limit):
    """(inputs [batch, time, ...] float32, labels or None)."""
    labels = None
    if input_path and data:
        raise NeurocompileError("give either --input or --data, not both")
    if input_path:
        from ..data import read_spike_file

        x, labels = read_spike_file(input_path, "input")
        if steps is not None:
            if steps <= 0:
                raise NeurocompileError(f"--steps must be positive, got {steps}")
            if x.shape[1] >= steps:
                x = x[:, :steps]
            else:
                pad = np.zeros((x.shape[0], steps - x.shape[1], *x.shape[2:]), dtype=x.dtype)
                x = np.concatenate([x, pad], axis=1)
    elif data:
        from ..data import load_dataset

        x, labels = load_dataset(data, steps=steps if steps is not None else 16, split="test")
    else:
        raise NeurocompileError("no input: give --input X.npy or --data digits")
    if limit is not None:
        if limit <= 0:
            raise NeurocompileError(f"--limit must be positive, got {limit}")
        x = x[:limit]
        labels = None if labels is None else labels[:limit]
    return x, labels


def summarize(recording, labels, inputs, program=None) -> dict:
    from .. import metrics

    report = {
        "backend": recording.backend,
        "samples": int(inputs.shape[0]),
        "steps": int(inputs.shape[1]),
        "outputs": list(recording.outputs),
    }
    if labels is not None:
        report["accuracy"] = metrics.accuracy(recording, labels)
    report["predictions"] = metrics.predictions(recording).tolist() if recording.outputs else []
    synops = recording.metadata.get("synops")
    if synops is None and program is not None:
        synops = metrics.program_synops(program, inputs, recording)
        if synops is not None:
            recording.metadata["synops"] = synops
    report["nodes"] = metrics.activity_summary(recording)
    report["input_spikes"] = int((inputs != 0).sum())
    report["total_spikes"] = int(sum(v.get("spikes", 0) for v in report["nodes"].values()))
    report["synaptic_operations"] = None if synops is None else int(sum(synops.values()))
    spiking = [v for v in report["nodes"].values() if "rate" in v]
    if spiking:
        cells = sum(v["neurons"] for v in spiking)
        report["activation_sparsity"] = float(sum(v["sparsity"] * v["neurons"] for v in spiking) / max(cells, 1))
    else:
        report["activation_sparsity"] = None
    return report


def format_report(report: dict) -> str:
    lines = [
        f"backend {report['backend']}: {report['samples']} samples x {report['steps']} steps, outputs: {', '.join(report['outputs'])}"
    ]
    if "accuracy" in report:
        lines.append(f"accuracy             {report['accuracy'] * 100:.2f}%")
    lines.append(f"input spikes         {report['input_spikes']}")
    lines.append(f"total spikes         {report['total_spikes']}")
    if report["synaptic_operations"] is not None:
        lines.append(f"synaptic operations  {report['synaptic_operations']}")
    if report["activation_sparsity"] is not None:
        lines.append(f"activation sparsity  {report['activation_sparsity']:.4f}")
    lines.append("")
    header = f"{'node':24s} {'neurons':>8s} {'spikes':>10s} {'per sample':>11s} {'rate':>8s} {'sparsity':>9s} {'synops':>12s}"
    lines.append(header)
    lines.append("-" * len(header))
    for node, info in report["nodes"].items():

        def cell(key, fmt, info=info):
            return format(info[key], fmt) if key in info else "-"

        lines.append(
            f"{node:24s} {cell('neurons', 'd'):>8s} {cell('spikes', 'd'):>10s} {cell('spikes_per_sample', '.1f'):>11s} "
            f"{cell('rate', '.4f'):>8s} {cell('sparsity', '.4f'):>9s} {cell('synops', 'd'):>12s}"
        )
    return "\n".join(lines)


def plot_raster(recording, path) -> None:
    """Spike raster of the first sample: one panel per spiking node (hidden and output)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in recording.arrays if k.endswith(".spikes")]
    outputs = [f"{o}.spikes" for o in recording.outputs]
    keys = [k for k in keys if k not in outputs] + [k for k in outputs if k in recording.arrays]
    if not keys:
        raise NeurocompileError("nothing to plot: the recording holds no spikes")
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.8 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        arr = np.asarray(recording.arrays[key])[0]
        arr = arr.reshape(arr.shape[0], -1)
        t, n = np.nonzero(arr)
        ax.scatter(t, n, s=4, marker="|", color="black")
        ax.set_ylabel(key[: -len(".spikes")], fontsize=8)
        ax.set_ylim(-0.5, max(arr.shape[1], 1) - 0.5)
        ax.set_xlim(-0.5, max(arr.shape[0], 1) - 0.5)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(f"spike raster, sample 0 ({recording.backend})", fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise NeurocompileError(f"{path}: cannot write plot ({exc.strerror or type(exc).__name__})") from None
    finally:
        plt.close(fig)


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
@click.option("--data", help="A dataset instead of --input: digits, digits-rows or an .npz file.")
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
    "--convention",
    default="neurocompile",
    show_default=True,
    help="Discretization preset (neurocompile, norse, snntorch, sinabs, rockpool, spikingjelly).",
)
@click.option("--dt", type=float, help="Time step in seconds (overrides the preset).")
@click.option("--reset", type=click.Choice(["zero", "subtract"]), help="Reset after a spike (overrides the preset).")
@click.option("--lenient", is_flag=True, help="Read older NIR files without nir's type check.")
@click.option(
    "--device", default="cpu", show_default=True, help="Torch device for the float and cpu backends (cpu, cuda)."
)
@click.option(
    "--lava-tag",
    type=click.Choice(["fixed_pt", "floating_pt"]),
    default="fixed_pt",
    show_default=True,
    help="Lava process models: bit-accurate fixed_pt, or floating_pt (a .nir/.pt model then runs unquantized).",
)
@click.option(
    "--loihi", is_flag=True, help="Lava: run on a Loihi 2 system (Loihi2HwCfg; needs Intel's lava-loihi and the chip)."
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
    convention,
    dt,
    reset,
    lenient,
    device,
    lava_tag,
    loihi,
):
    """Run MODEL (.nir, .ncp or .pt) on a backend and report accuracy, spikes, synops and sparsity."""
    from ..discretization import get_convention

    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise NeurocompileError(f"--dt must be a positive number, got {dt}")
    if backend != "lava":
        import torch

        try:
            torch.device(device)
        except RuntimeError:
            raise NeurocompileError(f"--device: unknown torch device '{device}' (use cpu or cuda)") from None
    conv = get_convention(convention, dt=dt, reset=reset)
    path = Path(model)
    graph, program = load_model(
        path, backend, conv, lenient, float_program=backend == "lava" and lava_tag == "floating_pt"
    )
    inputs, labels = load_inputs(input_path, data, steps, limit)
    if backend == "float":
        runner = create_backend("float", graph, convention=conv, device=device)
    elif backend == "cpu":
        runner = create_backend("cpu", program, device=device)
    else:
        runner = create_backend("lava", program, tag=lava_tag, hardware=loihi)
    recording = runner.run(inputs, record="all", progress=True)
    report = summarize(recording, labels, inputs, program)
    report["model"] = str(path)
    report["convention"] = conv.name
    report["dt"] = conv.dt
    if record_path:
        try:
            recording.save(record_path)
        except OSError as exc:
            raise NeurocompileError(
                f"{record_path}: cannot write recording ({exc.strerror or type(exc).__name__})"
            ) from None
        report["record"] = str(record_path)
    if plot_path:
        plot_raster(recording, plot_path)
        report["plot"] = str(plot_path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
