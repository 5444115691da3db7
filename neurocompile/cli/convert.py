"""`neurocompile convert MODEL.onnx -o MODEL.nir`: ANN-to-SNN conversion of a ReLU network.

Reads the ONNX model (Gemm/MatMul+Add, Conv with BatchNormalization folded, Relu, AveragePool,
GlobalAveragePool, MaxPool/GlobalMaxPool, Flatten/Reshape, residual Add), normalizes it on the
calibration data's training split (the P-th percentile of each ReLU layer's activations) and writes a
NIR graph of IF neurons that reset by subtraction (recorded in the graph's metadata). Then reports the accuracy of the ANN
(onnxruntime) and of the SNN on the float reference and the fixed-point CPU backend for each T.
The NIR file and the plot are written only when everything succeeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from neurocompile.cli import cli
from neurocompile.data import dataset_file
from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs, write_together
from neurocompile.onnx import MAX_STEPS, READOUTS
from neurocompile.onnx.read import read_onnx


def parse_steps(text: str) -> list[int]:
    """``"16,32,64"`` -> ``[16, 32, 64]``; a one-line error unless every entry is an integer from 1 to
    :data:`~neurocompile.onnx.MAX_STEPS`."""
    why = f"--steps: expected integers from 1 to {MAX_STEPS} separated by commas, got '{text}'"
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        raise NeurocompileError(why) from None
    if not steps or min(steps) < 1 or max(steps) > MAX_STEPS:
        raise NeurocompileError(why)
    return sorted(set(steps))


def _steps_option(ctx, param, value):
    """``--steps`` checked while the command line is parsed: a usage error (exit 2) before anything loads."""
    try:
        return parse_steps(value)
    except NeurocompileError as exc:
        raise click.BadParameter(str(exc).removeprefix("--steps: "), ctx, param) from None


def format_report(report: dict) -> str:
    """Scales per layer, then the accuracy table."""
    lines = [f"{report['model']} -> {report['output']}: IF neurons, reset by subtraction, {report['readout']} readout"]
    lines.append(
        f"normalization: {report['percentile']}th percentile on {report['data']} ({report['samples']['calibration']} samples)"
    )
    for name, scale in report["scales"].items():
        lines.append(f"  {name:<24} lambda = {scale:.4g}")
    lines += [f"note: {note}" for note in report.get("folded", [])]
    ann = 100 * report["accuracy"]["ann"]
    head = f"{'T':>5} {'ANN':>8} {'float':>8} {'float spikes':>13} {'cpu (fixed)':>12}"
    lines += ["", f"accuracy on {report['samples']['test']} test samples", head, "-" * len(head)]
    for row in report["accuracy"]["snn"]:
        lines.append(
            f"{row['steps']:>5} {ann:>7.2f}% {100 * row['float']:>7.2f}% "
            f"{100 * row['float_spikes']:>12.2f}% {100 * row['cpu']:>11.2f}%"
        )
    lines.append("float: analog input current; float spikes and cpu: deterministic rate-coded input spikes")
    if "plot" in report:
        lines.append(f"wrote {report['output']}, {report['plot']}")
    else:
        lines.append(f"wrote {report['output']}")
    return "\n".join(lines)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="NIR graph to write (.nir).")
@click.option(
    "--calibrate",
    default="digits",
    show_default=True,
    help="Data for normalization and the report: digits, DATA.npz (x_train, x_test, y_test; or x, y) or event data "
    "(EVENTS.npz, tonic:NMNIST:ROOT; ?downsample=K; event counts per pixel).",
)
@click.option(
    "--percentile", type=float, default=99.9, show_default=True, help="Percentile of each layer's activations."
)
@click.option(
    "--steps",
    default="16,32,64",
    show_default=True,
    callback=_steps_option,
    help="Time steps T to evaluate, comma-separated.",
)
@click.option(
    "--readout",
    type=click.Choice(READOUTS),
    default="spikes",
    show_default=True,
    help="Output layer: IF neurons classified by spike count, or integrators classified by voltage.",
)
@click.option("--limit", type=click.IntRange(1), help="Evaluate on the first N test samples only.")
@click.option(
    "--calibration-samples",
    type=click.IntRange(1),
    help="Normalize on the first N samples of the training split only (default: all).",
)
@click.option(
    "--model-output",
    metavar="NAME",
    help="Which of the model's outputs to convert (default: its only one, or the only one holding class scores).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write accuracy against T (PNG).")
def convert(
    model, output, calibrate, percentile, steps, readout, limit, calibration_samples, model_output, as_json, plot_path
):
    """Convert an ONNX ReLU network (MODEL.onnx) into a spiking NIR graph and report its accuracy."""
    check_outputs([output, plot_path], [model, dataset_file(calibrate)])
    onnx_model = read_onnx(model)  # a file that is no model to convert is refused before torch loads
    from neurocompile.onnx import convert as onnx_convert

    conversion = onnx_convert.convert(
        model,
        calibrate,
        percentile,
        readout,
        steps=steps,
        calibration_samples=calibration_samples,
        output=model_output,
        onnx_model=onnx_model,
        progress=True,
    )
    report = {"model": str(model), "output": str(output)}
    report.update(onnx_convert.evaluate(conversion, steps, limit, progress=True))
    writers = [(output, lambda path: _write_graph(conversion.graph, path))]
    if plot_path:
        writers.append((plot_path, lambda path: onnx_convert.plot_accuracy({Path(model).name: report}, path)))
        report["plot"] = str(plot_path)
    write_together(writers, "conversion outputs")
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def _write_graph(graph, path) -> None:
    import nir

    nir.write(str(path), graph)
