"""What quantization did to each layer: scales, decays, weight exponents, clipping, errors and
saturation; stored in a program's metadata and shown by ``compile`` and ``inspect`` (``docs/quantization.md``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from neurocompile.errors import NeurocompileError
from neurocompile.files import plain

METHODS = ("maxabs", "percentile")  # the statistic of weights and calibrated activity a scale is chosen from
COLUMNS = {  # the report table's columns, as `inspect --help` and docs/quantization.md explain them
    "scale": "integer weight units per float unit of v (K; v's register unit is 64 K)",
    "vth": "the integer threshold (v fires at vth << 6)",
    "du, dv": "current and voltage decays in 1/4096 per step (4096: no memory)",
    "w_exp": "weight exponent of each incoming synapse (weights are mantissa << w_exp)",
    "clip": "weights clipped to the mantissa's range",
    "w_err": "largest relative L2 error of an incoming synapse's quantized weights",
    "thr_err": "relative error of threshold / weight against the float network's",
    "sat": "saturation events on calibration data (16-bit activation, 24-bit u and v; per neuron and step)",
    "limited by": "the limit that bounded the scale: the 17-bit vth, a synapse's weight bits, the 16-bit "
    "activation, the 24-bit u or v (calibrated, or their bounds from the weights) or the bias's 13+3 bits",
}


@dataclass
class SynapseReport:
    """One quantized synapse: exponent, mantissa use, clipping and weight error."""

    name: str
    source: str
    kind: str
    weight_exp: int
    num_weight_bits: int
    sign_mode: str
    max_mantissa: int
    clipped_weights: int
    weight_rel_l2: float
    delays: int = 0


@dataclass
class LayerReport:
    """One population: its scale, decays, threshold and errors.

    ``scale``: integer weight units per float unit of v (``K``; the median when it differs
    per neuron); ``v_scale = 64 * scale`` is the unit of the v register.
    ``threshold_ratio_error``: max relative error of ``vth / effective weight`` against the
    float ``v_threshold / w_eff`` over the largest weight of each synapse.
    ``decay_error``: relative error of the quantized per-step decay (1 - d/4096) of v and u.
    ``saturation``: events seen during calibration (per neuron and step).
    """

    population: str
    type: str
    spiking: bool
    shape: list[int]
    scale: float
    vth: int
    du: int
    dv: int
    bias_exp: int
    limited_by: str
    decay_error: dict = field(default_factory=dict)
    threshold_ratio_error: float = 0.0
    bias_rel_error: float = 0.0
    saturation: dict = field(default_factory=dict)
    synapses: list[SynapseReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clipped_weights(self) -> int:
        return sum(s.clipped_weights for s in self.synapses)

    @property
    def weight_rel_l2(self) -> float:
        return max((s.weight_rel_l2 for s in self.synapses), default=0.0)


@dataclass
class QuantizationReport:
    """Per-layer quantization results; ``to_dict()`` is JSON-serializable."""

    method: str
    percentile: float | None
    calibrated: bool
    dt: float
    convention: str
    layers: list[LayerReport] = field(default_factory=list)
    calibration: str = ""  # what it was calibrated on: "256 samples x 16 steps", "a float recording"

    def layer(self, population: str) -> LayerReport:
        for layer in self.layers:
            if layer.population == population:
                return layer
        raise NeurocompileError(f"report has no layer '{population}'")

    def to_dict(self) -> dict:
        out = asdict(self)
        for layer, record in zip(self.layers, out["layers"]):
            record["clipped_weights"] = layer.clipped_weights
            record["weight_rel_l2"] = layer.weight_rel_l2
        return plain(out)

    @classmethod
    def from_dict(cls, data: dict) -> QuantizationReport:
        """Inverse of :meth:`to_dict` (for a report stored in a program's metadata)."""
        derived = ("clipped_weights", "weight_rel_l2")
        layers = [
            LayerReport(
                **{k: v for k, v in layer.items() if k not in derived and k != "synapses"},
                synapses=[SynapseReport(**syn) for syn in layer.get("synapses", [])],
            )
            for layer in data.get("layers", [])
        ]
        return cls(**{k: v for k, v in data.items() if k != "layers"}, layers=layers)

    def table(self) -> str:
        """A human-readable per-layer table (its columns: :data:`COLUMNS`)."""
        head = f"{'layer':<16} {'type':<8} {'scale':>10} {'vth':>7} {'du':>5} {'dv':>5} {'w_exp':>6} {'clip':>5} {'w_err':>8} {'thr_err':>8} {'sat':>6}  limited by"
        rows = [head, "-" * len(head)]
        for layer in self.layers:
            exps = ",".join(str(s.weight_exp) for s in layer.synapses) or "-"
            sat = sum(int(v) for v in layer.saturation.values())
            rows.append(
                f"{layer.population[:16]:<16} {layer.type:<8} {layer.scale:>10.4g} {layer.vth:>7d} {layer.du:>5d} {layer.dv:>5d} "
                f"{exps:>6} {layer.clipped_weights:>5d} {layer.weight_rel_l2:>8.2e} {layer.threshold_ratio_error:>8.2e} {sat:>6d}  {layer.limited_by}"
            )
            for note in layer.notes:
                rows.append(f"{'':<16} note: {note}")
        cal = f"calibrated on {self.calibration or 'inputs'}" if self.calibrated else "not calibrated"
        rows.append(
            f"method={self.method}{'' if self.percentile is None else f' ({self.percentile}%)'}, {cal}, dt={self.dt}, convention={self.convention}"
        )
        return "\n".join(rows)
