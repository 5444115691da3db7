"""Loihi 2 resource maps for docs/loihi2.md: the limits table, the maps of four networks, the time a network of
Loihi 2 chip size takes to map, and the core map PNG.

    .venv/bin/python -m tools.bench_map [--repeats 3] [--write-docs]

Networks, compiled as `neurocompile map` compiles them (no calibration): the shipped digits MLP
(models/digits_mlp.pt), the NIR paper's CNN (cnn_sinabs.nir, Sinabs convention: IF neurons that reset by
subtraction) and recurrent braille network (braille_noDelay_bias_zero.nir), and the LIF MLP 784-2048-2048-10
of tools/bench.py. Chip-size networks, built as programs whose weights exist (the mapper counts from their
shapes and nonzeros): a convolutional one of 2**20 neurons (4 x 128 x 128 -> 32 channels 5 x 5 -> 32
channels 3 x 3 in 2 groups: 126 million connections), a dense 4,096-wide one of 6 layers (100.7 million
synapses), and the same sparse with 10% of its weights nonzero (the mapper reads all 100.7 million); each is
mapped ``--repeats`` times and the best time is reported. ``--write-docs`` puts the
tables between the markers of docs/loihi2.md and writes docs/img/loihi2_map.png (the 784-2048-2048-10 MLP).
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import numpy as np

from neurocompile import api
from neurocompile.hardware.loihi2 import LIMITS, READ, REFERENCES
from neurocompile.hardware.mapping import ResourceMap, map_program
from neurocompile.hardware.plot import plot_map
from neurocompile.ir.network import ConvGeometry
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from tools.bench import MLP_SIZES, mlp_graph

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "loihi2.md"
PNG = ROOT / "docs" / "img" / "loihi2_map.png"
NIR_PAPER_DIR = ROOT / "tests" / "fixtures" / "nir-paper"
MARKS = {
    name: (f"<!-- {name}: tools/bench_map.py writes this -->", f"<!-- /{name} -->")
    for name in ("loihi2-limits", "loihi2-maps", "loihi2-timing")
}


# --- networks -----------------------------------------------------------------------------------------------


def compiled(path: Path, convention: str | None = None) -> FixedPointProgram:
    """A model file compiled as `neurocompile map` compiles it."""
    graph = api.load_model(path)
    return api.compile(graph, convention=api.resolve_convention(convention, graph=graph))[0]


def networks() -> dict[str, tuple[str, FixedPointProgram]]:
    """name -> (where it comes from: the `neurocompile map` command that maps it, or the script, program)."""
    mlp, _layers = mlp_graph(MLP_SIZES["large"], seed=0, input_rate=0.1)
    return {
        "digits MLP 64-128-128-10": ("`map models/digits_mlp.pt`", compiled(ROOT / "models" / "digits_mlp.pt")),
        "NIR paper CNN": (
            "`map cnn_sinabs.nir --convention sinabs`",
            compiled(NIR_PAPER_DIR / "cnn_sinabs.nir", "sinabs"),
        ),
        "NIR paper braille": (
            "`map braille_noDelay_bias_zero.nir`",
            compiled(NIR_PAPER_DIR / "braille_noDelay_bias_zero.nir"),
        ),
        "MLP 784-2048-2048-10": ("tools/bench.py's `mlp_graph`, compiled", api.compile(mlp)[0]),
    }


def _population(name: str, shape) -> Population:
    return Population(name, tuple(shape), du=0, dv=0, vth=100, bias_mant=np.zeros((), dtype=np.int32))


def conv_chip() -> FixedPointProgram:
    """2**20 neurons: 4 x 128 x 128 -> 32 x 128 x 128 (5 x 5) -> 32 x 128 x 128 (3 x 3, 2 groups)."""
    rng = np.random.default_rng(0)
    first = ConvGeometry((4, 128, 128), (32, 128, 128), padding=(2, 2))
    second = ConvGeometry((32, 128, 128), (32, 128, 128), padding=(1, 1), groups=2)
    synapses = [
        Synapse("k1", "x", "c1", "conv", rng.integers(-100, 100, (32, 4, 5, 5), dtype=np.int32), conv=first),
        Synapse("k2", "c1", "c2", "conv", rng.integers(-100, 100, (32, 16, 3, 3), dtype=np.int32), conv=second),
    ]
    populations = [_population("c1", (32, 128, 128)), _population("c2", (32, 128, 128))]
    return FixedPointProgram([InputPort("x", (4, 128, 128))], populations, synapses, ["c2"]).validate()


def layered_chip(kind: str = "dense", density: float = 1.0, layers: int = 6, width: int = 4096) -> FixedPointProgram:
    """``layers`` layers of ``width`` neurons, each with fan-in ``width``: int8 weights (100 MB), a fraction
    ``density`` of them nonzero."""
    rng = np.random.default_rng(0)
    populations, synapses, source = [], [], "x"
    for i in range(layers):
        populations.append(_population(f"l{i}", (width,)))
        weights = rng.integers(-100, 100, (width, width), dtype=np.int8)
        weights[rng.random((width, width)) >= density] = 0
        synapses.append(Synapse(f"w{i}", source, f"l{i}", kind, weights))
        source = f"l{i}"
    return FixedPointProgram([InputPort("x", (width,))], populations, synapses, [source]).validate()


# --- tables -------------------------------------------------------------------------------------------------


def cited(text: str, references: dict = REFERENCES) -> str:
    """``text`` with each full reference of ``references`` (``loihi2.REFERENCES``) as its short label."""
    for label, reference in references.items():
        text = text.replace(reference, f"[{label}]")
    return text


def limits_table() -> str:
    rows = [
        f"| limit | value | unit | source (read {READ}) | where sources disagree or are silent |",
        "|---|---|---|---|---|",
    ]
    for limit in LIMITS:
        rows.append(f"| {limit.name} | {limit.value:,} | {limit.unit} | {cited(limit.source)} | {cited(limit.note)} |")
    references = [f"- [{label}] {reference}" for label, reference in REFERENCES.items()]
    return "\n".join([*rows, "", *references])


def maps_table(maps: dict[str, tuple[str, ResourceMap]]) -> str:
    rows = [
        "| network | command | neurons | synapses | cores | chips | mean utilization | cores per layer (bound by) | models |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (command, resource_map) in maps.items():
        layers = ", ".join(
            f"{layer.name}: {layer.cores}" + (f" ({layer.bound_by})" if layer.bound_by != "-" else "")
            for layer in resource_map.layers
        )
        models = sorted({layer.model for layer in resource_map.layers})
        rows.append(
            f"| {name} | {command} | {resource_map.neurons:,} | {resource_map.connections:,} | "
            f"{len(resource_map.cores):,} | {resource_map.chips} | {resource_map.utilization:.0%} | {layers} | "
            f"{', '.join(models)} |"
        )
    return "\n".join(rows)


def best_time(program: FixedPointProgram, repeats: int) -> tuple[float, ResourceMap]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        resource_map = map_program(program)
        times.append(time.perf_counter() - start)
    return min(times), resource_map


def timing_table(repeats: int) -> str:
    rows = [
        "| chip-size network | neurons | synapses | cores | chips | mean utilization | map_program (best of "
        f"{repeats}) |",
        "|---|---|---|---|---|---|---|",
    ]
    chips = {
        "conv 4x128x128 -> 32 -> 32": conv_chip,
        "dense 6 x 4096": layered_chip,
        "sparse 6 x 4096, 10% nonzero": lambda: layered_chip("sparse", 0.1),
    }
    for name, build in chips.items():
        seconds, resource_map = best_time(build(), repeats)
        rows.append(
            f"| {name} | {resource_map.neurons:,} | {resource_map.connections:,} | {len(resource_map.cores):,} | "
            f"{resource_map.chips} | {resource_map.utilization:.0%} | {seconds:.2f} s |"
        )
    when = datetime.date.today().isoformat()
    return "\n".join([*rows, "", f"Measured {when} on {os.cpu_count()} CPU cores (`python -m tools.bench_map`)."])


def measured_on(load: tuple, command: str) -> str:
    """A benchmark text's last sentence: the date, the cores, the load before and after the run, the command."""
    when = datetime.date.today().isoformat()
    return (
        f"Measured {when} on {os.cpu_count()} CPU cores, load {load[0]:.2f} before and {load[1]:.2f} after "
        f"(`{command}`)."
    )


def between(text: str, name: str, marks: dict = MARKS) -> str:
    """The text between the two markers ``marks[name]``, without the blank lines around it."""
    start, end = marks[name]
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def write_between(path: Path, name: str, body: str, marks: dict = MARKS) -> None:
    """Replace the text between the two markers ``marks[name]`` in ``path`` with ``body``."""
    start, end = marks[name]
    text = path.read_text()
    old = f"{start}{text.split(start, 1)[1].split(end, 1)[0]}{end}"
    path.write_text(text.replace(old, f"{start}\n\n{body}\n\n{end}"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help="Update docs/loihi2.md and docs/img/loihi2_map.png.")
    args = parser.parse_args(argv)
    maps = {name: (command, map_program(program)) for name, (command, program) in networks().items()}
    tables = {
        "loihi2-limits": limits_table(),
        "loihi2-maps": maps_table(maps),
        "loihi2-timing": timing_table(args.repeats),
    }
    for table in tables.values():
        print(table, end="\n\n")
    if args.write_docs:
        for name, table in tables.items():
            write_between(DOC, name, table)
        plot_map(maps["MLP 784-2048-2048-10"][1], PNG)
        print(f"wrote {DOC} and {PNG}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
