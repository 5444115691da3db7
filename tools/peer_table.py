"""Peer compatibility table: every peer fixture (tests/fixtures/peers) through our float reference and
fixed-point CPU backend, compared with the library's own spikes; writes docs/peer-compatibility.md.

    python tools/peer_table.py [--fixtures DIR] [--out FILE]

Float: the fixture's graph under the library's preset (the reset the native run used, from meta.json),
spikes compared exactly per layer; "first diverging step" is the earliest step where any layer differs.
Fixed point: ``compile_graph(graph, preset, calibration=input)`` on ``CpuBackend``, compared with the
native spikes per layer after the synapse latency (``metrics.layer_agreement``: step agreement).
"""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "peers"
OUT = ROOT / "docs" / "peer-compatibility.md"
PRESET = {lib: lib for lib in ("snntorch", "norse", "spikingjelly", "sinabs", "rockpool")}

# Why a case diverges, from reading the library's code (update equations per step; ours in docs/conventions.md).
WHY = {
    ("snntorch", "leaky_mlp"): (
        "snnTorch's same-step reset (`reset_delay=False`) also applies the delayed reset: per step "
        "`r = [m > th]` (the membrane left by the previous step), `u = beta*m + x - th*r`, `s = [u > th]`, "
        "`m = u - th*(s - r)` (leaky.py `_base_sub` + `do_reset`). The membrane is ours (`m = beta*m + x - th*s`) "
        "but the spike test subtracts th once more when the previous membrane stayed above th after its reset "
        "(a step with more than 2*th of drive): snnTorch skips that spike, we fire it."
    ),
    ("snntorch", "leaky_mlp_defaults"): (
        "`reset_delay=True` (snnTorch's default): `m = beta*m + x - th*[m_prev > th]`, `s = [m > th]`: the "
        "threshold is subtracted in the step after the spike and not decayed by beta (ours: subtract in the "
        "spiking step, then decay). The exporter records neither the reset mechanism nor the delay."
    ),
    ("snntorch", "leaky_mlp_scalar_beta"): (
        "the exporter writes scalar beta/threshold as shape-() parameters; nir's type inference "
        "(`export_to_nir` calls `infer_types`) fails on them."
    ),
    ("snntorch", "synaptic_mlp"): (
        "same spike test as leaky_mlp (synaptic.py `_base_sub` + `do_reset`): `r = [m > th]`, "
        "`syn = alpha*syn + x`, `u = beta*m + syn - th*r`, `s = [u > th]`, `m = u - th*(s - r)`; the CubaLIF "
        "export itself (w_in = tau_syn/dt, r = tau_mem/dt) is exact under NIR's ODE."
    ),
    ("snntorch", "rleaky_mlp"): (
        "RLeaky computes `m = beta*m + x + recurrent(spk_prev)` with `recurrent = Linear(bias=True)`: in step 0 "
        "(spk = 0) the recurrent bias already enters; our back-edge `w_rec -> lif` delivers 0 in step 0 and "
        "`W spk + b` from step 1. Plus the double-reset spike test of leaky_mlp."
    ),
    ("snntorch", "conv_net"): "the double-reset spike test of leaky_mlp (conv drive often exceeds 2*th per step).",
    ("norse", "lif_box_mlp"): (
        "exporter writes `tau = dt/tau_mem_inv` (= dt*tau, 1e-5 s for tau = 10 ms) instead of `1/tau_mem_inv`. "
        "LIFBoxCell: `v = v + dt*tau_mem_inv*(v_leak - v + x)`, `s = [v > th]`, `v = v_reset` (ours with r=1). "
        "Reproduces exactly with the norse preset at dt = 1e-6 (= dt_native * dt_export): a repaired importer "
        "reads Norse's tau as tau_written/dt_export, or Norse writes 1/tau_mem_inv."
    ),
    ("norse", "lif_mlp"): (
        "LIFCell (lif_feed_forward_step): `i1 = i + x`; `v = v + dt*tau_mem_inv*(v_leak - v + i1)`; "
        "`i = i1 - dt*tau_syn_inv*i1`; `s = [v > th]`; `v = v_reset`. So the input jumps the current first "
        "and v integrates the NEW current (`current_first=True`, `cuba_input_scaled=False`); the norse preset "
        "has `current_first=False`. Plus the tau = dt/tau_inv export. Exact with norse preset, "
        "current_first=True, dt=1e-6."
    ),
    ("sinabs", "iaf_mlp_multispike"): (
        "Sinabs' default `spike_fn=MultiSpike` emits `s = trunc(v/th)` spikes when v > 0 (several per step) and "
        "subtracts `th*s`; NIR's IF and our presets emit at most one spike per step (`SingleSpike`: `s = [v >= th]`, "
        "the iaf_mlp case, reproduces). Native output spike counts are stored as counts."
    ),
    ("sinabs", "lif_mlp"): (
        "Sinabs LIF has no dt: `a = exp(-1/tau_mem)` with tau_mem in steps, `v = a*v + (1-a)*x` (norm_input=True), "
        "`s = [v >= th]`, `v -= th*s`. The exporter writes `LIF(tau=tau_mem, r=1, v_leak=0)`: tau in steps where "
        "NIR means seconds, and our Euler `v += dt/tau*(-v + x)` (dt=1e-4) is `1 - dt/tau` instead of `exp(-1/tau)`. "
        "A reader would need dt=1 step and an exponential decay (`1-a` = `1-exp(-dt/tau)` instead of `dt/tau`)."
    ),
    ("sinabs", "conv_net"): (
        "sinabs.nir.to_nir leaves Conv2d.input_shape, SumPool2d and Flatten input_type as None; nir 1.0.4's "
        "nir.write cannot store None (h5py)."
    ),
    ("rockpool", "lif_mlp"): (
        "LIFTorch (lif_torch.py evolve): `i += x`; `v *= exp(-dt/tau_mem)`; `i *= exp(-dt/tau_syn)`; `v += i`; "
        "`s = floor(v/th)` (StepPWL, up to 2**16 spikes per step); `v -= th*s` (dt = 1e-3). The export is "
        "CubaLIF(tau_syn, tau_mem, r = tau_mem*exp(-dt/tau_mem)/dt, no w_in, no v_reset): under NIR's ODE the "
        "current integrates only `dt/tau_syn * x` (w_in should be tau_syn/dt for a unit jump), the decays are "
        "`1 - dt/tau` instead of `exp(-dt/tau)`, r adds an `exp(-dt/tau_mem)` factor Rockpool applies to the "
        "current via its own decay order, and our spikes are single. Rockpool's reading is: current jump, then "
        "both decay, then v += decayed i (current_first with the decayed current)."
    ),
    ("rockpool", "lif_neuron_mlp"): (
        "LIFNeuronTorch: `v = exp(-dt/tau)*v + x`, `s = floor(v/th)` (multi-spike), `v -= th*s`. Exported "
        "LIF(tau, r = tau*exp(-dt/tau)/dt): our Euler gives `v = (1 - dt/tau)*v + exp(-dt/tau)*x`: the input is "
        "scaled by exp(-dt/tau) (0.951) and the decay is linear; Rockpool's dt (1e-3) is not recorded."
    ),
    ("norse", "conv_net"): (
        "Norse's `_extract_norse_module` maps only Conv2d, Linear, LIFCell, LIFBoxCell, LIBoxCell, IAFCell; "
        "Flatten becomes None and nirtorch fails."
    ),
}


@dataclass
class Row:
    library: str
    version: str
    case: str
    built: str = ""
    load: str = ""
    float_exact: bool | None = None
    first_step: int | None = None
    layers: dict = field(default_factory=dict)  # node -> first diverging step or None
    fixed: dict = field(default_factory=dict)  # node -> step agreement
    error: str = ""

    @property
    def why(self) -> str:
        return WHY.get((self.library, self.case), "")


def load_case(folder: Path):
    """Graph (strict read, else lenient), input [batch, time, ...] float32, native spikes, meta."""
    from neurocompile.errors import GraphError
    from neurocompile.nir_io import load_graph

    try:
        graph, how = load_graph(folder / "model.nir"), "strict"
    except GraphError:
        graph, how = load_graph(folder / "model.nir", lenient=True), "lenient"
    x = np.load(folder / "input.npy").astype(np.float32)
    native = dict(np.load(folder / "spikes.npz"))
    meta = json.loads((folder / "meta.json").read_text())
    return graph, how, x, native, meta


def convention_of(library: str, meta: dict):
    from neurocompile.discretization import get_convention

    return get_convention(PRESET[library], reset=meta.get("reset"))


def first_divergence(native: np.ndarray, ours: np.ndarray) -> int | None:
    """First step where the spike trains differ (None: identical); -1 when the shapes disagree."""
    if native.size != ours.size:
        return -1
    bad = np.nonzero((native.reshape(ours.shape) != ours).reshape(ours.shape[0], ours.shape[1], -1).any(axis=(0, 2)))
    return int(bad[0][0]) if bad[0].size else None


def native_recording(native: dict, outputs: list[str]):
    from neurocompile.recording import Recording

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
    from neurocompile.backends.cpu import CpuBackend
    from neurocompile.metrics import layer_agreement
    from neurocompile.quantize import compile_graph

    program, _ = compile_graph(graph, conv, calibration=x)
    fixed = CpuBackend(program).run(x, record="all")
    reference = native_recording({k: _shaped(v, fixed, k) for k, v in native.items()}, fixed.outputs)
    agreement = layer_agreement(reference, fixed, program.latency())
    row.fixed = {node: report["step_agreement"] for node, report in agreement.items()}


def _shaped(native: np.ndarray, fixed, node: str) -> np.ndarray:
    key = f"{node}.spikes"
    if key in fixed.arrays and fixed.arrays[key].size == native.size:
        return native.reshape(fixed.arrays[key].shape)
    return native


def check_case(library: str, folder: Path) -> Row:
    meta = json.loads((folder / "meta.json").read_text())
    row = Row(library, meta["library_version"], folder.name, built=meta.get("built", ""))
    try:
        graph, row.load, x, native, meta = load_case(folder)
        conv = convention_of(library, meta)
        float_check(row, graph, conv, x, native)
    except Exception as exc:
        row.error = f"float: {_line(exc)}"
        return row
    try:
        fixed_check(row, graph, conv, x, native)
    except Exception as exc:
        row.error = f"fixed point: {_line(exc)}"
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
    return ", ".join(f"{node} {value:.3f}" for node, value in row.fixed.items()) or "—"


def render(rows: list[Row]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        "# Peer compatibility",
        "",
        f"Generated by `tools/peer_table.py` on {today} from `tests/fixtures/peers` (made by "
        "`tools/peer_fixtures.py`: each library builds, exports with its own NIR exporter and runs natively).",
        "",
        "*Float*: our float reference under the library's preset (with the reset the native run used) against the "
        "library's own spikes, every layer; `node@t` is the first step where that layer differs. *Fixed point*: "
        "compiled with the same preset and calibrated on the input, run on the CPU backend; per layer the fraction of "
        "(sample, step, neuron) entries equal to the native spikes after the synapse latency.",
        "",
        "| library | version | case | float exact? | fixed-point agreement | why not |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        why = "; ".join(part for part in (row.error, row.why) if part)
        lines.append(
            f"| {row.library} | {row.version} | {row.case} | {_float_cell(row)} | {_fixed_cell(row)} | {why} |"
        )
    lines += ["", "## What was built", ""]
    lines += [f"* {row.library}/{row.case}: {row.built}" for row in rows if row.built]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.write_text(render(collect(args.fixtures)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
