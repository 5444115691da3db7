"""Energy and latency estimates on Loihi 2 for docs/loihi2.md ("Energy and latency"): the per-event constants,
the estimates for the digits MLP and the NIR paper's CNN, and PilotNet LIF rebuilt and set beside its
measurement on a Loihi 2 chip.

    .venv/bin/python -m tools.energy_report [--pilotnet DIR] [--frames 17] [--write-docs]

The digits MLP (models/digits_mlp.pt) runs the digits test set; the CNN (cnn_sinabs.nir, compiled as
tools/bench_map.py compiles it: Sinabs convention, no calibration) runs random spikes at tools/bench.py's
rate for it (N-MNIST is not available here). Both on the CPU backend, estimated by
``neurocompile.hardware.energy.estimate_energy``.

PilotNet LIF (lava-dl's tutorials/lava/lib/dl/netx/pilotnet_snn) was measured on one Loihi 2 chip by
its benchmark.ipynb, running one frame over and over, 16 steps per frame with the neurons reset between
frames. ``--pilotnet DIR`` rebuilds it from DIR/network.net (the trained network, its weights and neuron
parameters) and runs DIR/layer0.npy: 51 frames of the same PilotNet driving data set (at half resolution,
delta-encoded: the input of lava-dl's PilotNet SDNN test data), upsampled to the network's 200 x 66. Both
files come from lava-dl's history:

    git -C lava-dl show d825ac5:tutorials/lava/lib/dl/netx/pilotnet_snn/network.net > DIR/network.net
    git -C lava-dl show 56099b9:tutorials/lava/lib/dl/netx/pilotnet_sdnn/gt_data/layer0.npy > DIR/layer0.npy

Each frame runs from rest for 16 steps plus the network's depth, each layer's bias from the step its
input arrives; each layer then counts its own 16 steps from that step, as the benchmark's pipelined reset
(each layer reset a step after its input) gives them. ``--write-docs`` puts the tables between the
markers of docs/loihi2.md and writes docs/img/loihi2_energy.png.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurocompile import api
from neurocompile.analysis.metrics import program_synops
from neurocompile.files import save_figure
from neurocompile.hardware.energy import (
    CONSTANTS,
    INACTIVE_UPDATE_ENERGY,
    READ,
    REFERENCES,
    SYNOP_ENERGY,
    EnergyReport,
    energy_by_event,
    estimate_energy,
    si_text,
)
from neurocompile.hardware.loihi2 import LOIHI2
from neurocompile.hardware.mapping import CoreAssignment, ResourceMap
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from neurocompile.ir.recording import Recording
from tools.bench import INPUT_RATE, spike_inputs
from tools.bench_map import DOC, NIR_PAPER_DIR, ROOT, cited, compiled, write_between

PNG = ROOT / "docs" / "img" / "loihi2_energy.png"
MARKS = {
    name: (f"<!-- {name}: tools/energy_report.py writes this -->", f"<!-- /{name} -->")
    for name in ("loihi2-energy-constants", "loihi2-energy", "loihi2-energy-pilotnet")
}
CNN_STEPS = 32
PILOTNET_WINDOW = 16  # steps per frame: the benchmark's reset_interval
# How Lava's compiler split PilotNet LIF in the measured run, as it printed its 'Per core distribution' (74
# cores): a conv-shaped layer in blocks of this many columns ('Conv(16, 66, 3)': 16 columns, all rows and
# channels), a dense one in this many cores
LAVA_COLUMNS = {"input": 16, "conv1": 4, "conv2": 4, "conv3": 8, "conv4": 8, "conv5": 16}
LAVA_CORES = {"dense7": 12, "dense8": 1, "dense9": 1, "dense10": 1}


@dataclass(frozen=True)
class Measured:
    """A run of lava-dl's pilotnet_snn/benchmark.ipynb on Oheo Gulch (one Loihi 2 chip), as it printed it."""

    commit: str
    date: str
    frames_per_s: float
    dynamic: float  # J per frame
    total: float

    @property
    def step_time(self) -> float:
        return 1 / self.frames_per_s / PILOTNET_WINDOW


MEASURED = (
    Measured("b9e3691", "2023-01-10", 408.91, 1.093544e-3, 1.661103e-3),
    Measured("baa23ad", "2022-10-28", 413.76, 1.070673e-3, 1.818389e-3),
)
# Loihi 2's activity counters in the run of b9e3691, summed over its 74 cores and 10,000 steps (625 frames),
# read off the notebook's activity plot (to about 5%): per frame
MEASURED_SYNOPS = 22.9e9 / 625
MEASURED_DENDRITE_UPDATES = 3.70e9 / 625


# --- networks -----------------------------------------------------------------------------------------------


def digits() -> tuple[FixedPointProgram, np.ndarray]:
    program = compiled(ROOT / "models" / "digits_mlp.pt")
    return program, api.load_inputs(data="digits")[0]


def paper_cnn(samples: int = 64) -> tuple[FixedPointProgram, np.ndarray]:
    program = compiled(NIR_PAPER_DIR / "cnn_sinabs.nir", "sinabs")
    shape = program.inputs[0].shape
    return program, spike_inputs((samples, CNN_STEPS, *shape), INPUT_RATE["cnn"], seed=1)


def run(program: FixedPointProgram, inputs: np.ndarray) -> EnergyReport:
    """``inputs`` through the CPU backend (drained), estimated on Loihi 2."""
    return estimate_energy(program, api.simulate(program, inputs, "cpu"), inputs)


# --- PilotNet LIF ---------------------------------------------------------------------------------------------


def _lif(name: str, shape, neuron, bias, onset: int) -> Population:
    """A netx 'LOIHI' neuron layer as Lava's LIF takes it (netx.hdf5: du = iDecay - 1, bias_exp 6)."""
    bias = np.asarray(bias, dtype=np.int32)
    per_channel = bias.reshape(-1, *[1] * (len(shape) - 1))  # one per channel, or the whole layer's
    bias_mant = per_channel.reshape(shape) if bias.size == np.prod(shape) else np.broadcast_to(per_channel, shape)
    return Population(
        name,
        tuple(int(n) for n in shape),
        du=int(neuron["iDecay"][()]) - 1,
        dv=int(neuron["vDecay"][()]),
        vth=int(neuron["vThMant"][()]),
        bias_mant=np.ascontiguousarray(bias_mant),
        bias_exp=6,
        bias_onset=onset,
    )


def _flatten_order(shape) -> np.ndarray:
    """Lava's flatten of a (W, H, C) output, indexed in our (C, H, W) C order: dense column ``i`` reads our
    neuron ``order[i]``."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(2, 1, 0).ravel()


def pilotnet_program(path: Path, image: np.ndarray) -> FixedPointProgram:
    """PilotNet LIF from lava-dl's netx file, its input layer's bias the frame ``image`` (C, H, W) in [0, 1]
    (the benchmark's ``net.in_layer.neuron.bias = image``, transformed as its data set does)."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = [f["layer"][key] for key in sorted(f["layer"], key=int)]
        first = layers[0]
        bias = (2 * first["weight"][()] * image - first["weight"][()] + first["bias"][()]).astype(np.int32)
        pops = [_lif("input", first["shape"][()], first["neuron"], bias, 0)]
        syns, shape, order = [], tuple(first["shape"][()]), None
        for i, layer in enumerate(layers[1:], start=1):
            kind = layer["type"][()][0].decode()
            if kind == "flatten":
                order = _flatten_order(shape)
                continue
            name = f"{kind}{i}"
            weights = layer["weight"][()].astype(np.int32)
            geometry = None
            if kind == "conv":
                out = tuple(layer["shape"][()])
                geometry = ConvGeometry(
                    shape, out, tuple(layer["stride"][()]), tuple(layer["padding"][()]), tuple(layer["dilation"][()])
                )
            else:
                out = (int(layer["outFeatures"][()]),)
                weights = weights.reshape(out[0], -1)
                if order is not None:
                    weights, order = weights[:, np.argsort(order)], None
            pops.append(_lif(name, out, layer["neuron"], layer["bias"][()], len(pops)))
            syns.append(Synapse(f"w{i}", pops[-2].name, name, kind, weights, conv=geometry))
            shape = out
    return FixedPointProgram([InputPort("x", (1,))], pops, syns, [pops[-1].name]).validate()


def pilotnet_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames (C, 66, 200) in [0, 1] from the PilotNet SDNN's delta-encoded input (W, H, C, T), its
    values 64 x (128 p - 64) summed over time (netx's default input transform), upsampled bilinearly."""
    import torch

    deltas = np.load(path)
    pixels = (np.cumsum(deltas, axis=3) / 64 + 64) / 128  # [W, H, C, T]
    frames = torch.from_numpy(pixels.transpose(3, 2, 1, 0).copy())  # [T, C, H, W]
    frames = torch.nn.functional.interpolate(frames, size=(66, 200), mode="bilinear", align_corners=False)
    chosen = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i].clamp(0, 1).numpy() for i in chosen]


def windowed(program: FixedPointProgram, recording: Recording, window: int) -> Recording:
    """Each population's ``window`` steps from the step its input arrives (its latency)."""
    latency = program.latency()
    arrays = {}
    for key, array in recording.arrays.items():
        start = latency[key.rpartition(".")[0]]
        arrays[key] = array[:, start : start + window]
    return Recording(arrays, recording.outputs, recording.backend)


def lava_partition(pop: Population) -> np.ndarray:
    """The core (among the layer's) of each neuron of ``pop`` as Lava's compiler split it (``LAVA_COLUMNS``)."""
    if pop.name in LAVA_COLUMNS:
        columns = np.arange(pop.shape[-1]) // LAVA_COLUMNS[pop.name]
        return np.broadcast_to(columns, pop.shape).ravel()
    return np.arange(pop.size) * LAVA_CORES[pop.name] // pop.size


def lava_map(program: FixedPointProgram) -> tuple[ResourceMap, dict[str, np.ndarray]]:
    """PilotNet LIF on the 74 cores of one chip that Lava's compiler gave it in the measured run, and which
    neurons each core holds."""
    partition = {pop.name: lava_partition(pop) for pop in program.populations}
    cores = []
    for name, core_of in partition.items():
        for count in np.bincount(core_of):
            start = sum(core.neurons for core in cores if core.layer == name)
            cores.append(CoreAssignment(0, len(cores), name, start, start + int(count), 0, 0, 0, 0, 0, 0.0, "-"))
    return ResourceMap("loihi2", LOIHI2, [], cores, 1, []), partition


@dataclass
class Frame:
    """PilotNet LIF on one frame: the estimate, and its synaptic operations on nonzero weights only."""

    report: EnergyReport
    nonzero_synops: float


def pilotnet(directory: Path, frames: int) -> list[Frame]:
    """PilotNet LIF as its benchmark ran it on Loihi 2, frame by frame."""
    found = []
    for image in pilotnet_frames(directory / "layer0.npy", frames):
        program = pilotnet_program(directory / "network.net", image)
        steps = PILOTNET_WINDOW + program.output_latency()
        recording = api.simulate(program, np.zeros((1, steps, 1), dtype=np.uint8), "cpu", drain=False)
        quiet = np.zeros((1, PILOTNET_WINDOW, 1), dtype=np.uint8)
        window = windowed(program, recording, PILOTNET_WINDOW)
        resource_map, partition = lava_map(program)
        report = estimate_energy(program, window, quiet, resource_map=resource_map, partition=partition)
        found.append(Frame(report, sum(program_synops(program, quiet, window).values())))
    return found


# --- tables ---------------------------------------------------------------------------------------------------


def constants_table() -> str:
    rows = [
        f"| event | value | range | unit | chip | source (read {READ}) | other sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CONSTANTS:
        rows.append(
            f"| {c.name} | {c.value:g} | {c.low:g} to {c.high:g} | {c.unit} | {c.chip} | "
            f"{cited(c.source, REFERENCES)} | {cited(c.note, REFERENCES)} |"
        )
    references = [f"- [{label}] {reference}" for label, reference in REFERENCES.items()]
    return "\n".join([*rows, "", *references])


GROUPS = {  # kind of event in the tables and the figure -> the counts of energy.ENERGY_COUNTS it sums
    "synaptic operations": ("synops",),
    "neuron updates": ("active_updates", "inactive_updates"),
    "messages and hops": ("messages", "ew_hops", "ns_hops"),
}


def grouped(layer) -> dict[str, float]:
    """The dynamic energy of ``layer`` per kind of event (``GROUPS``)."""
    events = energy_by_event(layer)
    return {group: sum(events[kind].value for kind in kinds) for group, kinds in GROUPS.items()}


def _shares(report: EnergyReport) -> str:
    """Where the dynamic energy goes: per layer (those of at least 0.5%), and per kind of event."""
    total = report.dynamic.value
    layers = [f"{x.name} {x.energy.value / total:.0%}" for x in report.layers if x.energy.value >= 0.005 * total]
    groups = [grouped(x) for x in report.layers]
    kinds = [f"{group} {sum(g[group] for g in groups) / total:.0%}" for group in GROUPS]
    return f"{', '.join(layers)}; {', '.join(kinds)}"


def estimates_table(reports: dict[str, tuple[str, EnergyReport]]) -> str:
    rows = [
        "| network | input | steps per inference | dynamic energy per inference | static energy | total energy | "
        "time per step | where the dynamic energy goes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (source, r) in reports.items():
        rows.append(
            f"| {name} | {source} | {r.steps} | {r.dynamic.text('J')} | {r.static.text('J')} | "
            f"{r.total.text('J')} | {r.step_time.text('s')} | {_shares(r)} |"
        )
    return "\n".join(rows)


def _mean(reports: list[EnergyReport], quantity) -> tuple[float, float, float, float, float]:
    """Over the frames: the mean of ``quantity(report)``'s value, low and high, and the least and most value."""
    values = np.array([[getattr(quantity(r), end) for end in ("value", "low", "high")] for r in reports])
    return (*values.mean(axis=0), values[:, 0].min(), values[:, 0].max())


def _row(name: str, measured: str, estimate: tuple, unit: str, ratio_to: float) -> str:
    value, low, high, least, most = estimate
    spread = f"; frames {si_text(least)}{unit} to {si_text(most)}{unit}" if most > least else ""
    return (
        f"| {name} | {measured} | {si_text(value)}{unit} ({si_text(low)}{unit} to {si_text(high)}{unit}{spread}) | "
        f"{value / ratio_to:.2f} |"
    )


def pilotnet_table(frames: list[Frame]) -> str:
    """PilotNet LIF: the estimate (mean over the frames) beside the two measured runs."""
    runs = " and ".join(f"{m.commit} ({m.date})" for m in MEASURED)
    first = MEASURED[0]
    reports = [frame.report for frame in frames]
    synops = np.mean([sum(x.synops for x in r.layers) for r in reports])
    nonzero = np.mean([frame.nonzero_synops for frame in frames])
    updates = np.mean([sum(x.active_updates + x.inactive_updates for x in r.layers) for r in reports])
    both = " / ".join
    rows = [
        f"| per frame (16 steps) | measured on Loihi 2 (runs {runs}) | estimate ({len(reports)} frames) | "
        f"estimate / {first.commit} |",
        "|---|---|---|---|",
        _row(
            "dynamic energy",
            both(f"{si_text(m.dynamic)}J" for m in MEASURED),
            _mean(reports, lambda r: r.dynamic),
            "J",
            first.dynamic,
        ),
        _row(
            "total energy",
            both(f"{si_text(m.total)}J" for m in MEASURED),
            _mean(reports, lambda r: r.total),
            "J",
            first.total,
        ),
        _row(
            "time per step",
            both(f"{si_text(m.step_time)}s" for m in MEASURED),
            _mean(reports, lambda r: r.step_time),
            "s",
            first.step_time,
        ),
        f"| synaptic operations | about {MEASURED_SYNOPS / 1e6:.0f} million (activity plot) | "
        f"{synops / 1e6:.1f} million ({nonzero / 1e6:.1f} million on nonzero weights) | "
        f"{synops / MEASURED_SYNOPS:.2f} ({nonzero / MEASURED_SYNOPS:.2f}) |",
        f"| neuron updates | about {MEASURED_DENDRITE_UPDATES / 1e6:.1f} million dendrite updates (activity plot) | "
        f"{updates / 1e6:.2f} million | {updates / MEASURED_DENDRITE_UPDATES:.2f} |",
    ]
    priced = MEASURED_SYNOPS * SYNOP_ENERGY.si.value + MEASURED_DENDRITE_UPDATES * INACTIVE_UPDATE_ENERGY.si.value
    note = (
        f"Loihi 2's own counts priced with Table 2 (23.6 pJ per synaptic operation, 52 pJ per update): "
        f"{si_text(priced)}J, {priced / first.dynamic:.2f} times the measured dynamic energy."
    )
    return "\n".join([*rows, "", note])


# --- the figure -----------------------------------------------------------------------------------------------


def plot_energy(reports: dict[str, EnergyReport], path: Path) -> Path:
    """Per network, per layer: the dynamic energy per inference by kind of event, with its range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [len(r.layers) for r in reports.values()]
    fig, axes = plt.subplots(len(reports), 1, figsize=(9, 1.2 + 0.32 * sum(sizes)), height_ratios=sizes)
    axes = np.atleast_1d(axes)
    for ax, (name, report) in zip(axes, reports.items()):
        scale = 1e-6
        left = np.zeros(len(report.layers))
        groups = [grouped(x) for x in report.layers]
        for group in GROUPS:
            width = np.array([g[group] for g in groups]) / scale
            ax.barh(range(len(width)), width, left=left, label=group)
            left += width
        low = np.array([x.energy.value - x.energy.low for x in report.layers]) / scale
        high = np.array([x.energy.high - x.energy.value for x in report.layers]) / scale
        ax.errorbar(left, range(len(left)), xerr=[low, high], fmt="none", ecolor="0.3", capsize=2, lw=0.8)
        ax.set_yticks(range(len(left)), [x.name for x in report.layers], fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
        ax.set_title(
            f"{name}: {report.dynamic.text('J')} dynamic, {report.total.text('J')} with static, per inference",
            fontsize=9,
            loc="left",
        )
    axes[-1].set_xlabel("dynamic energy per inference (µJ); whiskers: the constants' range", fontsize=8)
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path, "energy plot")


# --- main -----------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilotnet", type=Path, help="A folder with network.net and layer0.npy (module doc).")
    parser.add_argument("--frames", type=int, default=17, help="PilotNet frames to run (of 51).")
    parser.add_argument("--write-docs", action="store_true", help="Update docs/loihi2.md and the energy PNG.")
    args = parser.parse_args(argv)
    networks = {
        "digits MLP 64-128-128-10": ("digits test set (`--data digits`)", digits()),
        "NIR paper CNN": (f"random spikes, {INPUT_RATE['cnn']:.0%} per pixel and step, {CNN_STEPS} steps", paper_cnn()),
    }
    reports = {name: (source, run(*network)) for name, (source, network) in networks.items()}
    tables = {"loihi2-energy-constants": constants_table(), "loihi2-energy": estimates_table(reports)}
    figure = {name: report for name, (_source, report) in reports.items()}
    if args.pilotnet:
        frames = pilotnet(args.pilotnet, args.frames)
        tables["loihi2-energy-pilotnet"] = pilotnet_table(frames)
        figure["PilotNet LIF, one frame"] = frames[len(frames) // 2].report
    for name, report in figure.items():
        print(f"{name}\n{report.table()}\n")
    for table in tables.values():
        print(table, end="\n\n")
    if args.write_docs:
        for name, table in tables.items():
            write_between(DOC, name, table, MARKS)
        plot_energy(figure, PNG)
        print(f"wrote {DOC} and {PNG}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
