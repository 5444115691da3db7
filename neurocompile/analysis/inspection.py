"""Readable summaries of a NIR graph or a FixedPointProgram: a table for people, a dict for JSON.

``describe_graph(graph)`` / ``describe_program(program)`` return JSON-ready dicts;
``format_graph`` / ``format_program`` render them as text tables; ``describe_file(path)`` picks
by extension (``.nir`` or ``.ncp``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.frontend.graph import flatten_graph, order_graph
from neurocompile.frontend.nir_io import load_graph, single_shape
from neurocompile.ir import plasticity
from neurocompile.ir.program import FixedPointProgram
from neurocompile.ir.report import QuantizationReport
from neurocompile.semantics.primitives import PRIMITIVES

GEOMETRY_FIELDS = ("stride", "padding", "dilation", "groups", "start_dim", "end_dim")


def _range(value) -> dict:
    arr = np.asarray(value)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        return {"shape": list(arr.shape)}
    arr = arr.astype(np.float64)
    return {"shape": list(arr.shape), "min": float(arr.min()), "max": float(arr.max())}


def _neuron_count(node, entry, out_shape) -> int:
    shapes = (np.shape(getattr(node, f)) for f in entry.fields if getattr(node, f, None) is not None)
    shape = out_shape or list(np.broadcast_shapes(*shapes))
    return int(np.prod(shape)) if shape else 1


def _weight_counts(w: np.ndarray, out_shape) -> dict:
    """Weights, nonzero weights and synapses (a conv weight serves every output position)."""
    counts = {"weights": int(w.size), "nonzero_weights": int(np.count_nonzero(w))}
    if w.ndim <= 2:
        counts["synapses"] = counts["nonzero_weights"]
    elif out_shape is not None:
        positions = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        counts["synapses"] = counts["nonzero_weights"] * positions
    else:
        counts["synapses"] = None
    return counts


def describe_graph(graph) -> dict:
    """Nodes (type, shapes, parameter ranges), neuron/synapse counts and recurrent edges."""
    import nir

    nodes, edges = flatten_graph(graph)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    order, back = order_graph(nodes, edges, inputs)
    rows = []
    neurons = 0
    synapses = 0
    for name in order:
        node = nodes[name]
        kind = type(node).__name__
        entry = PRIMITIVES.get(kind)
        params = {}
        for field in entry.fields if entry else ():
            value = getattr(node, field, None)
            if value is not None:
                params[field] = _range(value)
        for field in GEOMETRY_FIELDS:
            if field not in params and hasattr(node, field):
                value = getattr(node, field)
                params[field] = value if isinstance(value, str) else np.asarray(value).tolist()
        in_shape = single_shape(getattr(node, "input_type", None))
        out_shape = single_shape(getattr(node, "output_type", None))
        row = {"name": name, "type": kind, "input_shape": in_shape, "output_shape": out_shape, "parameters": params}
        if entry is not None and entry.kind == "neuron":
            row["neurons"] = _neuron_count(node, entry, out_shape)
            row["spiking"] = entry.spiking
            neurons += row["neurons"]
        if entry is not None and entry.kind == "linear" and hasattr(node, "weight"):
            row.update(_weight_counts(np.asarray(node.weight), out_shape))
            synapses += row["synapses"] or 0
        rows.append(row)
    return {
        "kind": "nir-graph",
        "nodes": rows,
        "edges": [list(e) for e in edges],
        "recurrent_edges": [list(e) for e in sorted(back)],
        "inputs": inputs,
        "outputs": [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)],
        "neurons": neurons,
        "synapses": synapses,
        "metadata": _jsonable(getattr(graph, "metadata", {}) or {}),
    }


def describe_program(program) -> dict:
    """Populations (du, dv, vth, bias), synapses (kind, shape, weight range, exponent, bits, delays).

    A float program (``number_format == "float"``) keeps its decays, thresholds and weights as floats."""
    number = float if program.number_format == "float" else int
    pops = []
    for pop in program.populations:
        bias = np.asarray(pop.bias_mant)
        pops.append(
            {
                "name": pop.name,
                "shape": list(pop.shape),
                "neurons": pop.size,
                "source_type": pop.source_type,
                "spiking": bool(pop.spiking),
                "du": number(pop.du),
                "dv": number(pop.dv),
                "vth": number(pop.vth),
                "bias_mant": {"min": number(bias.min()), "max": number(bias.max())} if bias.size else None,
                "bias_exp": int(pop.bias_exp),
                "bias_onset": int(pop.bias_onset),
                "reset_interval": int(pop.reset_interval),
                "reset": pop.reset,
                "reset_timing": pop.reset_timing,
                "payload_bits": int(pop.payload_bits),
                "learning": _jsonable(plasticity.signal_to_json(pop.learning)) if pop.learning else None,
            }
        )
    syns = [_describe_synapse(syn, number) for syn in program.synapses]
    metadata = dict(program.metadata or {})
    report = metadata.pop("quantization", None)
    return {
        "kind": "fixed-point-program",
        "number_format": program.number_format,
        "inputs": [{"name": p.name, "shape": list(p.shape), "kind": p.kind} for p in program.inputs],
        "populations": pops,
        "synapses": syns,
        "outputs": list(program.outputs),
        "neurons": int(sum(p.size for p in program.populations)),
        "synapse_weights": int(sum(np.count_nonzero(s.weights) for s in program.synapses)),
        "quantization": _jsonable(report) if report is not None else None,
        "metadata": _jsonable(metadata),
    }


def _describe_synapse(syn, number) -> dict:
    w = np.asarray(syn.weights)
    entry = {
        "name": syn.name,
        "source": syn.source,
        "target": syn.target,
        "kind": syn.kind,
        "shape": list(w.shape),
        "weight_min": number(w.min()) if w.size else 0,
        "weight_max": number(w.max()) if w.size else 0,
        "nonzero": int(np.count_nonzero(w)),
        "weight_exp": int(syn.weight_exp),
        "num_weight_bits": int(syn.num_weight_bits),
        "sign_mode": syn.sign_mode,
        "recurrent": bool(syn.recurrent),
        "delays": None,
        "signal": syn.signal,
        "learning": None,
    }
    if syn.learning is not None:
        entry["learning"] = _jsonable(plasticity.rule_to_json(syn.learning))
        entry["learning"]["lava_rule"] = plasticity.lava_rule_string(syn.learning)
    if syn.delays is not None:
        d = np.asarray(syn.delays)
        entry["delays"] = {"min": int(d.min()), "max": int(d.max())} if d.size else {}
    if syn.conv is not None:
        entry["conv"] = _jsonable(vars(syn.conv))
    return entry


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, np.bytes_)):
        return obj.decode("utf8", "replace")
    if isinstance(obj, np.ndarray):
        return (
            obj.tolist()
            if obj.size <= 64
            else {"shape": list(obj.shape), **{k: v for k, v in _range(obj).items() if k != "shape"}}
        )
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return lines


def format_graph(info: dict) -> str:
    rows = []
    for node in info["nodes"]:
        params = ", ".join(
            f"{k}[{_fmt(v.get('min'))}..{_fmt(v.get('max'))}]"
            if isinstance(v, dict) and "min" in v
            else f"{k}={v if not isinstance(v, dict) else v.get('shape')}"
            for k, v in node["parameters"].items()
        )
        shape = node["output_shape"] if node["output_shape"] is not None else node["input_shape"]
        rows.append(
            [
                node["name"],
                node["type"],
                "x".join(map(str, shape)) if shape else "?",
                node.get("neurons"),
                node.get("synapses"),
                params,
            ]
        )
    lines = [f"NIR graph: {len(info['nodes'])} nodes, {info['neurons']} neurons, {info['synapses']} synapses"]
    lines += _table(["node", "type", "shape", "neurons", "synapses", "parameters (min..max)"], rows)
    lines.append("inputs: " + ", ".join(info["inputs"]) + "   outputs: " + ", ".join(info["outputs"]))
    recurrent = ", ".join(f"{a} -> {b}" for a, b in info["recurrent_edges"]) or "none"
    lines.append(f"recurrent edges (one-step delay): {recurrent}")
    return "\n".join(lines)


def format_program(info: dict) -> str:
    lines = [
        f"Fixed-point program: {len(info['populations'])} populations, {info['neurons']} neurons, {len(info['synapses'])} synapse layers"
    ]
    lines.append(
        "inputs: "
        + ", ".join(f"{p['name']}{p['shape']}" for p in info["inputs"])
        + "   outputs: "
        + ", ".join(info["outputs"])
    )
    lines += _population_table(info["populations"])
    lines.append("")
    lines += _synapse_table(info["synapses"])
    lines += _format_learning(info)
    if info.get("quantization"):
        lines.append("")
        lines.append("quantization report:")

        lines.append(QuantizationReport.from_dict(info["quantization"]).table())
    return "\n".join(lines)


def _population_table(populations: list[dict]) -> list[str]:
    header = [
        "population",
        "from",
        "shape",
        "du",
        "dv",
        "vth",
        "bias_mant",
        "bias_exp",
        "bias from",
        "spiking",
        "reset",
        "spikes",
    ]
    rows = [
        [
            p["name"],
            p["source_type"],
            "x".join(map(str, p["shape"])),
            p["du"],
            p["dv"],
            p["vth"],
            f"{p['bias_mant']['min']}..{p['bias_mant']['max']}" if p["bias_mant"] else "-",
            p["bias_exp"],
            p.get("bias_onset", 0),
            "yes" if p["spiking"] else "no",
            _reset_words(p),
            f"{p['payload_bits']}-bit counts" if p.get("payload_bits") else "binary",
        ]
        for p in populations
    ]
    return _table(header, rows)


def _reset_words(population: dict) -> str:
    """``zero``/``subtract``, with snnTorch's timing where it has one (``subtract, snntorch-delayed``)."""
    timing = population.get("reset_timing", "same-step")
    return population.get("reset", "zero") + ("" if timing == "same-step" else f", {timing}")


def _synapse_table(synapses: list[dict]) -> list[str]:
    header = ["synapse", "source -> target", "kind", "shape", "weights", "exp", "bits", "sign", "delays", "recurrent"]
    rows = [
        [
            s["name"],
            f"{s['source']} -> {s['target']}",
            s["kind"],
            "x".join(map(str, s["shape"])),
            f"{s['weight_min']}..{s['weight_max']}",
            s["weight_exp"],
            s["num_weight_bits"],
            s["sign_mode"],
            f"{s['delays']['min']}..{s['delays']['max']}" if s["delays"] else "-",
            "yes" if s["recurrent"] else "",
        ]
        for s in synapses
    ]
    return _table(header, rows)


def _format_learning(info: dict) -> list[str]:
    """Plastic synapses (rule, traces with the decay Lava applies) and learning populations."""
    lines = []
    for s in info["synapses"]:
        rule = s.get("learning")
        if rule is None:
            continue
        if not lines:
            lines += ["", "on-chip learning:"]
        traces = ", ".join(
            f"{x}: impulse {rule[f'{x}_impulse']:g}, tau {rule[f'{x}_tau']} (decay {math.exp(-1 / rule[f'{x}_tau']):.4f})"
            if rule[f"{x}_tau"]
            else f"{x}: impulse {rule[f'{x}_impulse']:g}, tau 0 (cleared every epoch)"
            for x in ("x1", "x2")
        )
        lines.append(f"  {s['name']}: dw = {rule['lava_rule']}")
        lines.append(f"    {traces}; t_epoch {rule['t_epoch']}; rng_seed {rule['rng_seed']}")
    for p in info["populations"]:
        signal = p.get("learning")
        if signal is None:
            continue
        if signal["target"]:
            output = "spikes << " if signal["output"] == "spikes" else "v >> "
            error = f"({output}{signal['output_shift']}) - {signal['target']}"
        else:
            error = "feedback synapses (one step late)"
        terms = [
            f"{name} = clip(error * {term['factor']} >> {term['shift']})"
            for name in ("y1", "y2", "y3")
            if (term := signal[name]) is not None
        ]
        sur = signal["surrogate"]
        surrogate = f"; surrogate table[{len(sur['table'])}] at |v - vth| >> {sur['shift']}" if sur else ""
        lines.append(f"  {p['name']}: error = {error}; {', '.join(terms) or 'no y values'}{surrogate}")
        if signal["bap"]:
            lines.append("    sends its spikes as bAP (y values of spiking neurons clip to [0, 127])")
    for s in info["synapses"]:
        if s.get("signal") == "error":
            lines.append(f"  {s['name']}: feedback {s['source']} error -> {s['target']} third factor")
    return lines


def describe_file(path, lenient: bool = False) -> dict:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".nir":
        info = describe_graph(load_graph(path, lenient=lenient))
    elif suffix == ".ncp":
        info = describe_program(FixedPointProgram.load(path))
    else:
        raise NeurocompileError(f"{path}: unknown file type '{suffix}' (expected .nir or .ncp)")
    info["file"] = str(path)
    return info


def format_info(info: dict) -> str:
    return format_graph(info) if info["kind"] == "nir-graph" else format_program(info)
