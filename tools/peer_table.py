"""Peer compatibility table: every peer fixture (tests/fixtures/peers) through our float reference and
fixed-point CPU backend, compared with the library's own spikes; writes docs/peer-compatibility.md and
the per-library summary in the README.

    python tools/peer_table.py [--fixtures DIR] [--out FILE] [--readme FILE]

Each fixture is read as ``--from LIBRARY==VERSION`` reads it (``neurocompile.frontend.peer_repairs``: the exporter's
known defects repaired, the library's versioned preset of its native dynamics as the convention), with the
reset the native run used (meta.json) and the options the case was built with (``CASE_OPTIONS``).
Float: spikes compared exactly per layer; "first diverging step" is the earliest step where any layer
differs. Fixed point: ``compile_graph(graph, convention, calibration=input)`` on ``CpuBackend`` (what the
compiler cannot reproduce it refuses, and the table shows the refusal), compared with the native spikes per
layer after the synapse latency (``metrics.layer_agreement``): step agreement, spike F1 of the aligned spike
events and the correlation of the spike counts per sample and neuron; and the spike F1 of the float network
run with the program's own weights (``weight_bound``), the fidelity that 8-bit weights leave.
"""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurocompile.analysis.metrics import format_score

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "peers"
OUT = ROOT / "docs" / "peer-compatibility.md"
README = ROOT / "README.md"
README_MARKS = ("<!-- peer-table: tools/peer_table.py writes this -->", "<!-- /peer-table -->")
# Options a case was built with where they differ from the library's defaults (meta.json "built").
_IMMEDIATE = {"reset_timing": "snntorch-immediate"}  # reset_delay=False
CASE_OPTIONS = {
    ("snntorch", "leaky_mlp"): _IMMEDIATE,
    ("snntorch", "leaky_mlp_zero"): _IMMEDIATE,
    ("snntorch", "synaptic_mlp"): _IMMEDIATE,
    ("snntorch", "rleaky_mlp"): _IMMEDIATE,
    ("snntorch", "conv_net"): _IMMEDIATE,
    ("sinabs", "iaf_mlp"): {"spikes_per_step": "single"},  # spike_fn=SingleSpike
    ("sinabs", "lif_mlp"): {"spikes_per_step": "single"},
}

# Per case: why it diverges, or which native equation the preset reproduces (ours: docs/conventions.md).
WHY = {
    ("snntorch", "leaky_mlp"): (
        "reproduced by `reset_timing=snntorch-immediate` (snnTorch's `reset_delay=False`, leaky.py `_base_sub` + "
        "`do_reset`): `r = [m > th]` (the stored membrane), `u = beta*m + x - th*r`, `s = [u > th]`, "
        "`m = u - th*(s - r)`. The membrane is the same-step one, but the spike test subtracts th again when the "
        "previous membrane stayed above th after its reset: snnTorch skips that spike."
    ),
    ("snntorch", "leaky_mlp_defaults"): (
        "reproduced by `reset_timing=snntorch-delayed` (snnTorch's default `reset_delay=True`): "
        "`m = beta*m + x - th*[m_prev > th]`, `s = [m > th]`: the threshold is subtracted in the step after the "
        "spike and not decayed. The exporter records neither the reset mechanism nor the delay."
    ),
    ("snntorch", "leaky_mlp_zero"): (
        "reset to zero: under `snntorch-immediate` the stored membrane never exceeds th, so it is the same-step reset "
        "(which the fixed-point compiler then runs: `normalize.euler_form`)."
    ),
    ("snntorch", "leaky_mlp_scalar_beta"): (
        "the exporter writes scalar beta/threshold as shape-() parameters; nir's type inference "
        "(`export_to_nir` calls `infer_types`) fails on them."
    ),
    ("snntorch", "synaptic_mlp"): (
        "reproduced by `reset_timing=snntorch-immediate` (synaptic.py: the spike test of leaky_mlp on "
        "`syn = alpha*syn + x`, `u = beta*m + syn - th*r`); the CubaLIF export itself (w_in = tau_syn/dt, "
        "r = tau_mem/dt) is exact under NIR's ODE."
    ),
    ("snntorch", "rleaky_mlp"): (
        "RLeaky computes `m = beta*m + x + recurrent(spk_prev)` with `recurrent = Linear(bias=True)`: in step 0 "
        "(spk = 0) the recurrent bias already enters; the float backend delivers a recurrent Affine's bias from "
        "step 0 too (the neuron timing is snntorch-immediate)."
    ),
    ("snntorch", "conv_net"): "reproduced by `reset_timing=snntorch-immediate` (see leaky_mlp).",
    ("norse", "lif_box_mlp"): (
        "LIFBoxCell: `v = v + dt*tau_mem_inv*(v_leak - v + x)`, `s = [v > th]`, `v = v_reset` (ours with r=1). "
        "The exporter writes `tau = dt/tau_mem_inv` (= dt*tau, 1e-5 s for tau = 10 ms) instead of `1/tau_mem_inv` "
        "and keeps the batch dimension in the Input/Output types: repaired by `--from norse==1.1` (tau read as "
        "written/dt, dt = 1e-3)."
    ),
    ("norse", "lif_mlp"): (
        "LIFCell (lif_feed_forward_step): `i1 = i + x`; `v = v + dt*tau_mem_inv*(v_leak - v + i1)`; "
        "`i = i1 - dt*tau_syn_inv*i1`; `s = [v > th]`; `v = v_reset`: norse-1.1 (`current_first=True`, "
        "`cuba_input_scaled=False`). The export writes tau = dt/tau_inv: repaired by `--from norse==1.1` (tau_syn, "
        "tau_mem read as written/dt). It writes no `v_reset` or `w_in`: read as 0 and 1, Norse's defaults (a "
        "non-default `v_reset` is lost in the file). Fixed point: the Affine biases rise through the current as in "
        "Norse, fed by a tonic source (Lava's LIF has no bias on u; `lif_mapping.tonic_source`)."
    ),
    ("sinabs", "iaf_mlp"): "SingleSpike: `v += x`, `s = [v >= th]`, `v -= th*s`.",
    ("sinabs", "iaf_mlp_multispike"): (
        "reproduced by `spikes_per_step=multi`: Sinabs' default `spike_fn=MultiSpike` emits "
        "`s = (v > 0)*trunc(v/th)` spikes per step and subtracts `th*s`; native spike counts are stored as counts."
    ),
    ("sinabs", "lif_mlp"): (
        "reproduced by `decay=exponential` with dt = 1 (Sinabs' tau counts steps): `a = exp(-1/tau_mem)`, "
        "`v = a*v + (1-a)*x` (norm_input=True), `s = [v >= th]`, `v -= th*s`; the export `LIF(tau=tau_mem, r=1)` "
        "is read as is. The fixed point runs its exact Euler form `tau' = dt/(1 - a)` (`normalize.euler_form`)."
    ),
    ("sinabs", "conv_net"): (
        "sinabs.nir.to_nir leaves Conv2d.input_shape, SumPool2d and Flatten input_type as None; nir 1.0.4's "
        "nir.write cannot store None (h5py)."
    ),
    ("rockpool", "lif_mlp"): (
        "LIFTorch: `i = exp(-dt/tau_syn)*(i + x)`; `v = exp(-dt/tau_mem)*v + i`; `s = floor(v/th)` (v >= th); "
        "`v -= th*s` (dt = 1e-3): rockpool-3.1 (exponential decay, multi-spike) with the parameters "
        "`--from rockpool==3.1` reads: `r = 1/(1 - exp(-dt/tau_mem))`, `w_in = exp(-dt/tau_syn)/(1 - exp(-dt/tau_syn))` "
        "(the exporter writes `r = tau_mem*exp(-dt/tau_mem)/dt`, no w_in, and batch and time dimensions in the "
        "Input/Output types)."
    ),
    ("rockpool", "lif_neuron_mlp"): (
        "LIFNeuronTorch: `v = exp(-dt/tau)*v + x`, `s = floor(v/th)` (v >= th), `v -= th*s`: rockpool-3.1 with "
        "`r = 1/(1 - exp(-dt/tau))` as `--from rockpool==3.1` reads it (exported: `tau*exp(-dt/tau)/dt`)."
    ),
    ("rockpool", "recurrent_lif_mlp"): (
        "Rockpool has no conv module with a NIR export, so its recurrent layer is the third kind; but `to_nir` "
        "silently drops `LIFTorch(has_rec=True)`'s recurrent weights, and the file would run as a feed-forward "
        "network: no fixture can be made (the case script refuses the export)."
    ),
    ("norse", "conv_net"): (
        "Norse's `_extract_norse_module` maps only Conv2d, Linear, LIFCell, LIFBoxCell, LIBoxCell, IAFCell; "
        "Flatten becomes None and nirtorch fails."
    ),
}

F1_GOAL = 0.90  # spike F1 per layer that a compiled case should reach (issue 25)


@dataclass
class Row:
    library: str
    version: str
    case: str
    built: str = ""
    preset: str = ""
    repairs: list = field(default_factory=list)  # the reader's announced repairs and assumptions
    float_exact: bool | None = None
    first_step: int | None = None
    layers: dict = field(default_factory=dict)  # node -> first diverging step or None
    agreement: dict = field(default_factory=dict)  # node -> metrics.layer_agreement's report
    bound: dict = field(default_factory=dict)  # node -> spike F1 of the float network with the program's weights
    split: dict = field(default_factory=dict)  # node -> spike F1 of the program compiled with split weights
    refused: str = ""  # the fixed-point compiler's one-line refusal
    error: str = ""

    @property
    def fixed(self) -> dict:
        """Node -> fixed-point step agreement (empty when not compiled)."""
        return {node: report["step_agreement"] for node, report in self.agreement.items()}

    @property
    def why(self) -> str:
        return " ".join(part for part in (WHY.get((self.library, self.case), ""), self.weight_note) if part)

    @property
    def weight_note(self) -> str:
        """Which layers stay below ``F1_GOAL``, and that the float network with the program's weights does too."""
        low = [node for node, report in self.agreement.items() if report["spike_f1"] < F1_GOAL]
        bounds = ", ".join(f"{node} {self.bound[node]:.3f}" if node in self.bound else f"{node} n/a" for node in low)
        return (
            f"Spike F1 below {F1_GOAL} in {', '.join(low)}; the float network with the program's 8-bit weights: {bounds}."
            if low
            else ""
        )


def producer_of(meta: dict) -> str:
    """The ``--from`` spec of the fixture's library and version (``norse==1.1.0``)."""
    return f"{meta['library']}=={meta['library_version']}"


def load_case(folder: Path):
    """Graph (read strictly, as ``--from`` the fixture's library reads it: repaired, with its native preset),
    input [batch, time, ...] float32, native spikes, meta."""
    from neurocompile.frontend.nir_io import load_graph

    meta = json.loads((folder / "meta.json").read_text())
    graph = load_graph(folder / "model.nir", producer=producer_of(meta))
    x = np.load(folder / "input.npy").astype(np.float32)
    native = dict(np.load(folder / "spikes.npz"))
    return graph, x, native, meta


def convention_of(graph, meta: dict):
    """The graph's convention (the library's preset, recorded by the reader) with the native run's reset and
    the case's build options."""
    from neurocompile.api import resolve_convention

    conv = resolve_convention(None, reset=meta.get("reset"), graph=graph)
    return conv.with_options(**CASE_OPTIONS.get((meta["library"], meta["case"]), {}))


def first_divergence(native: np.ndarray, ours: np.ndarray) -> int | None:
    """First step where the spike trains differ (None: identical); -1 when the shapes disagree."""
    if native.size != ours.size:
        return -1
    bad = np.nonzero((native.reshape(ours.shape) != ours).reshape(ours.shape[0], ours.shape[1], -1).any(axis=(0, 2)))
    return int(bad[0][0]) if bad[0].size else None


def native_recording(native: dict, outputs: list[str]):
    from neurocompile.ir.recording import Recording

    arrays = {f"{node}.spikes": value for node, value in native.items() if node != "output"}
    return Recording(arrays=arrays, outputs=outputs, backend="native")


def float_check(row: Row, graph, conv, x, native) -> None:
    from neurocompile.backends.float_ref import FloatReference

    recording = FloatReference(graph, conv).run(x, record="all")
    keys = {node: f"{node}.spikes" for node in native if node != "output"}
    keys["output"] = f"{recording.outputs[0]}.spikes"
    for node, key in keys.items():
        row.layers[node] = first_divergence(native[node], recording.arrays[key]) if key in recording.arrays else -1
    steps = [step for step in row.layers.values() if step is not None]
    row.float_exact = not steps
    row.first_step = min(steps) if steps else None


def fixed_check(row: Row, graph, conv, x, native) -> None:
    from neurocompile.analysis.metrics import layer_agreement
    from neurocompile.backends.cpu import CpuBackend
    from neurocompile.compiler.pipeline import compile_graph

    program, _ = compile_graph(graph, conv, calibration=x)
    fixed = CpuBackend(program).run(x, record="all")
    reference = native_recording({k: _shaped(v, fixed, k) for k, v in native.items()}, fixed.outputs)
    row.agreement = layer_agreement(reference, fixed, program.latency())
    row.bound = weight_bound(graph, program, conv, x, reference, list(row.agreement))
    split, _ = compile_graph(graph, conv, calibration=x, split_weights=True)
    report = layer_agreement(reference, CpuBackend(split).run(x, record="all"), split.latency())
    row.split = {node: value["spike_f1"] for node, value in report.items()}


def weight_bound(graph, program, conv, x, reference, nodes: list[str]) -> dict:
    """Per layer, the spike F1 against the library's spikes of the float network run with the program's own
    weights (``dequantize.effective_weight_graph``): what 8-bit weights alone leave of the fidelity; empty
    where the graph's weights do not map one to one onto the program's synapses."""
    from neurocompile.analysis.metrics import layer_agreement
    from neurocompile.backends.float_ref import FloatReference
    from neurocompile.compiler.dequantize import effective_weight_graph
    from neurocompile.errors import NeurocompileError

    try:
        quantized = FloatReference(effective_weight_graph(graph, program), conv).run(x, record="all")
    except NeurocompileError:
        return {}
    report = layer_agreement(reference, quantized, dict.fromkeys(nodes, 0))
    return {node: value["spike_f1"] for node, value in report.items()}


def _shaped(native: np.ndarray, fixed, node: str) -> np.ndarray:
    key = f"{node}.spikes"
    if key in fixed.arrays and fixed.arrays[key].size == native.size:
        return native.reshape(fixed.arrays[key].shape)
    return native


def check_case(library: str, folder: Path) -> Row:
    from neurocompile.errors import NeurocompileError

    meta = json.loads((folder / "meta.json").read_text())
    row = Row(library, meta["library_version"], folder.name, built=meta.get("built", ""))
    try:
        graph, x, native, meta = load_case(folder)
        row.repairs = graph.metadata["repairs"].splitlines()
        conv = convention_of(graph, meta)
        row.preset = f"`{conv.spec()}`"
        float_check(row, graph, conv, x, native)
    except Exception as exc:
        row.error = f"float: {_line(exc)}"
        return row
    try:
        fixed_check(row, graph, conv, x, native)
    except NeurocompileError as exc:
        row.refused = str(exc)
    return row


def _line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def export_failures(library: str, folder: Path) -> list[Row]:
    path = folder / "failures.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [
        Row(library, data["library_version"], case, error=f"export failed: {info['error']} ({info['where']})")
        for case, info in data["failures"].items()
    ]


def collect(fixtures: Path = FIXTURES) -> list[Row]:
    rows = []
    for lib_dir in sorted(p for p in fixtures.iterdir() if p.is_dir()):
        for case in sorted(p for p in lib_dir.iterdir() if (p / "meta.json").exists()):
            rows.append(check_case(lib_dir.name, case))
        rows.extend(export_failures(lib_dir.name, lib_dir))
    return rows


def _float_cell(row: Row) -> str:
    if row.float_exact is None:
        return "—"
    if row.float_exact:
        return "**exact**"
    layers = ", ".join(f"{n}@{s}" for n, s in row.layers.items() if s is not None and n != "output")
    return f"no (step {row.first_step}; {layers})"


def _fixed_cell(row: Row) -> str:
    if row.refused:
        return f"refused: {row.refused}"
    return _per_layer(row, lambda r: f"{r['step_agreement']:.3f}")


def _per_layer(row: Row, cell) -> str:
    """``node value, ...`` over the compared layers, ``cell(report)`` the value; — when not compiled."""
    return ", ".join(f"{node} {cell(report)}" for node, report in row.agreement.items()) or "—"


def _scores(per_layer: dict) -> str:
    return ", ".join(f"{node} {value:.3f}" for node, value in per_layer.items()) or "—"


def _f1(report: dict) -> str:
    """Spike F1 with its counts: 2 TP / (native + ours spikes)."""
    counts = f"2×{report['true_positives']}/({report['reference_spikes']}+{report['compared_spikes']})"
    return f"{report['spike_f1']:.3f} = {counts}"


def _order(value: float | None) -> float:
    return -np.inf if value is None else value  # undefined (n/a) ranks lowest


def _worst(rows: list[Row], key: str) -> str:
    """Over the compiled cases ``rows``, the range of each case's lowest layer value of ``key`` (``"split"``: the
    spike F1 with split weights)."""
    values = (row.split.values() if key == "split" else (r[key] for r in row.agreement.values()) for row in rows)
    worst = sorted((min(v, key=_order) for v in values), key=_order)
    if not worst:
        return "—"
    low, high = format_score(worst[0]), format_score(worst[-1])
    return low if low == high else f"{low}-{high}"


def summary(rows: list[Row]) -> list[str]:
    """Per library: cases exact in float, compiled cases at or above 95% fixed-point step agreement, refusals,
    and over the compiled cases the range of their lowest layer's spike F1 and count correlation."""
    lines = [
        "| library | float exact | fixed point >= 95% | fixed point below 95% | refused "
        "| spike F1 (lowest layer) | spike F1, `--split-weights` | count correlation (lowest layer) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for library in sorted({row.library for row in rows}):
        mine = [row for row in rows if row.library == library]
        compiled = [row for row in mine if row.fixed]
        good = sum(min(row.fixed.values()) >= 0.95 for row in compiled)
        lines.append(
            f"| {library} | {sum(bool(row.float_exact) for row in mine)} of {len(mine)} | {good} "
            f"| {len(compiled) - good} | {sum(bool(row.refused) for row in mine)} "
            f"| {_worst(compiled, 'spike_f1')} | {_worst(compiled, 'split')} | {_worst(compiled, 'rate_correlation')} |"
        )
    return lines


def render(rows: list[Row]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        "# Peer compatibility",
        "",
        f"Generated by `tools/peer_table.py` on {today} from `tests/fixtures/peers` (made by "
        "`tools/peer_fixtures.py`: each library builds, exports with its own NIR exporter and runs natively).",
        "",
        "Each file is read as `--from LIBRARY==VERSION` reads it (`neurocompile.frontend.peer_repairs`): the exporter's "
        "known defects repaired (listed below, with what the file leaves to the preset) and the library's "
        "versioned preset of its native dynamics as the convention. *Preset*: that preset (`neurocompile.semantics.discretization.PRESETS`, docs/conventions.md) with the "
        "reset the native run used and the options the case was built with, written as `--convention` takes it. *Float*: our float reference under "
        "that preset against the library's own spikes (counts for multi-spike neurons), every layer; `node@t` is "
        "the first step where that layer differs. *Fixed point*: compiled under the same convention (exponential "
        "decays in their exact forward-Euler form, `normalize.euler_form`; snnTorch's reset timings and multi-spike "
        "neurons as custom neurons, `Population.reset_timing` and graded spikes, `Population.payload_bits`) and "
        "calibrated on the input, run on the CPU backend, and compared per layer with the native spikes after the "
        "synapse latency (`metrics.layer_agreement`): *step agreement*, the fraction of (sample, step, neuron) "
        "entries equal (silent entries count as matches); *spike F1* of the spike events, 2 TP / (native + ours "
        "spikes), a true positive being a spike in both at the same aligned step and neuron (min of the two counts "
        "for multi-spike counts; 1.0 when both are silent), written with its counts; *count correlation*, the "
        "Pearson correlation of the spike counts per sample and neuron (1.0 when both are the same constant, n/a "
        "when one is constant otherwise); *spike F1, float with 8-bit weights*: the float network run with the "
        "program's own weights, dequantized (`dequantize.effective_weight_graph`), against the library's spikes: "
        "the fidelity that 8-bit weights alone leave; *spike F1, `--split-weights`*: the program compiled with each "
        "dense synapse's rounding error in a second synapse 7 bits finer (`quantize(split_weights=True)`). The "
        "summary gives, over a library's compiled cases, the range of each "
        "case's lowest layer.",
        "",
        *summary(rows),
        "",
        "| library | version | case | preset | float exact? | fixed-point step agreement | spike F1 "
        "| spike F1, float with 8-bit weights | spike F1, `--split-weights` | count correlation | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        why = "; ".join(part for part in (row.error, row.why) if part)
        lines.append(
            f"| {row.library} | {row.version} | {row.case} | {row.preset or '—'} | {_float_cell(row)} "
            f"| {_fixed_cell(row)} | {_per_layer(row, _f1)} | {_scores(row.bound)} | {_scores(row.split)} "
            f"| {_per_layer(row, lambda r: format_score(r['rate_correlation']))} "
            f"| {why} |"
        )
    lines += ["", "## Repairs and assumptions on reading", ""]
    lines += [f"* {row.library}/{row.case}: {'; '.join(row.repairs)}" for row in rows if row.repairs]
    lines += ["", "## What was built", ""]
    lines += [f"* {row.library}/{row.case}: {row.built}" for row in rows if row.built]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--readme", type=Path, default=README, help="whose marked section gets the summary")
    args = parser.parse_args(argv)
    rows = collect(args.fixtures)
    args.out.write_text(render(rows))
    print(f"wrote {args.out}")
    write_readme_summary(args.readme, rows)
    print(f"updated {args.readme}")


def write_readme_summary(readme: Path, rows: list[Row]) -> None:
    """Put the per-library summary between ``README_MARKS`` in ``readme``, indented as the first mark is."""
    text = readme.read_text()
    start, end = (text.index(mark) for mark in README_MARKS)
    indent = text[text.rindex("\n", 0, start) + 1 : start]
    table = "\n".join(indent + line for line in summary(rows))
    readme.write_text(f"{text[:start]}{README_MARKS[0]}\n\n{table}\n\n{indent}{text[end:]}")


if __name__ == "__main__":
    main()
