"""A fixed-point program as lava-dl's netx network: the HDF5 file ``lava.lib.dl.netx.hdf5.Network`` loads (lava-dl 0.6.0).

A netx file is a chain of layers, ``layer/0``, ``layer/1``, ...: an input layer (its shape), then dense and conv
layers, each a synapse and a CUBA neuron (Lava's LIF, fixed point), with a flatten layer between a conv layer and
a dense one. :func:`netx_layers` maps a program onto such a chain, or refuses in one line, naming the node, what
netx cannot express; :func:`write_netx` writes the file. The mapping, with lava-dl's source lines:
``docs/loihi2.md`` ("Export to netx").
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.files import write_atomically
from neurocompile.hardware.loihi2 import extensions
from neurocompile.ir.program import BIAS_MANT_BITS, VTH_BITS, FixedPointProgram, Population, Synapse
from neurocompile.semantics import fixedpoint as fxp

WEIGHT_EXP = 0  # a dense layer has no weight exponent: netx rescales its weights exactly (utils.optimize_weight_bits)
BIAS_EXP = 6  # netx gives every CUBA neuron bias_exp 6 (hdf5.py get_neuron_params)
READOUT_VTH = 1 << VTH_BITS  # never reached by v: netx's own non-spiking default, and our Lava backend's readout
BIAS_LIMIT = 1 << (BIAS_MANT_BITS - 1)  # a bias mantissa lies in [-BIAS_LIMIT, BIAS_LIMIT)

Layer = dict[str, object]  # dataset path inside layer/<i> -> value


def write_netx(program: FixedPointProgram, path: str | Path) -> list[Layer]:
    """Write ``program`` to ``path`` as a netx network (atomically); returns its layers."""
    layers = netx_layers(program)
    write_atomically(path, lambda tmp: _write(layers, tmp), "netx network")
    return layers


def netx_layers(program: FixedPointProgram) -> list[Layer]:
    """The netx layers of ``program``: input, then per synapse its layer (a flatten layer before a dense layer
    fed by a (C, H, W) node); a one-line error for what netx cannot express."""
    program.validate()
    _check_program(program)
    port = program.spike_ports()[0]
    layers: list[Layer] = [{"type": "input", "shape": np.array(port.shape)}]
    for syn in _chain(program):
        pop, n_in = program.population(syn.target), math.prod(program.source_shape(syn.source))
        if syn.kind == "conv":
            _check_conv_source(program, syn)
            layers.append(_conv_layer(syn, pop))
            continue
        if _is_image(program, syn.source):
            layers.append({"type": "flatten", "shape": np.array([n_in])})
        layers.append(_dense_layer(syn, pop, n_in))
    return layers


def _is_image(program: FixedPointProgram, name: str) -> bool:
    """Whether netx holds node ``name`` as a (W, H, C) image: a 3-D input, or a conv layer (a dense one is flat)."""
    feeding = program.synapses_into(name)
    return feeding[0].kind == "conv" if feeding else len(program.source_shape(name)) == 3


# --- what netx cannot express ------------------------------------------------------------------------------


def _refusal(node: str, reason: str) -> NeurocompileError:
    return NeurocompileError(f"netx: node '{node}' {reason}")


def _check_program(program: FixedPointProgram) -> None:
    if program.number_format != "fixed":
        raise NeurocompileError("netx: a float program; netx stores Loihi's integers (compile the model first)")
    learning = [syn.name for syn in program.synapses if syn.learning is not None]
    learning += [pop.name for pop in program.populations if pop.learning is not None]
    if learning:
        raise _refusal(learning[0], "learns on chip; netx has no learning rules")
    ports = program.spike_ports()
    if len(ports) != 1:
        raise NeurocompileError(f"netx: the program has {len(ports)} input ports; a netx network has one")


def _chain(program: FixedPointProgram) -> list[Synapse]:
    """The synapses from the input port through each population in turn: netx's layers."""
    source = program.spike_ports()[0].name
    chain = []
    for pop in program.populations:
        _check_population(pop)
        incoming = program.synapses_into(pop.name)
        recurrent = [syn.name for syn in incoming if syn.recurrent]
        if recurrent:
            raise _refusal(recurrent[0], "is a recurrent synapse; netx's layers are feed-forward")
        if len(incoming) != 1:
            raise _refusal(pop.name, f"has {len(incoming)} input synapses; a netx layer has one")
        syn = incoming[0]
        if syn.source != source:
            raise _refusal(
                syn.name, f"comes from '{syn.source}'; netx's layers form a chain, this one fed by '{source}'"
            )
        chain.append(syn)
        source = pop.name
    if program.outputs != [source]:
        raise NeurocompileError(
            f"netx: the program outputs {', '.join(program.outputs)}; a netx network outputs its last layer, '{source}'"
        )
    return chain


def _check_population(pop: Population) -> None:
    needs = extensions(pop)  # a subtractive reset, then a bias onset: what Lava's stock LIF cannot do
    if needs:
        only_onset = pop.reset == "zero" and pop.reset_timing == "same-step"  # then needs[0] is the onset
        hint = " (compile with --bias-onset start)" if only_onset else ""
        raise _refusal(pop.name, f"{needs[0]}; netx's CUBA neuron (Lava's LIF) cannot{hint}")
    if pop.reset_interval > 0:
        raise _refusal(
            pop.name,
            f"zeroes its state every {pop.reset_interval} steps; netx takes a reset interval when it loads a network, "
            "not from the file",
        )


def _check_conv_source(program: FixedPointProgram, syn: Synapse) -> None:
    """A netx conv layer reads (W, H, C) spikes: from the input, or from a conv layer (a dense layer's are flat)."""
    if syn.delays is not None:
        raise _refusal(syn.name, "is a conv synapse with delays; netx's conv layers have none")
    if not _is_image(program, syn.source):
        raise _refusal(
            syn.name, f"is a conv synapse fed by the dense layer '{syn.source}'; netx's dense layers are flat"
        )


# --- layers ------------------------------------------------------------------------------------------------


def _neuron(pop: Population) -> Layer:
    """A CUBA neuron as lava-dl writes it (slayer neuron/cuba.py device_params); netx reads type, vThMant, iDecay
    (Lava's du + 1) and vDecay (dv)."""
    return {
        "neuron/type": "CUBA",
        "neuron/iDecay": int(pop.du) + 1,
        "neuron/vDecay": int(pop.dv),
        "neuron/vThMant": int(pop.vth) if pop.spiking else READOUT_VTH,
        "neuron/refDelay": 1,
        "neuron/gradedSpike": False,
    }


def _bias(pop: Population) -> np.ndarray:
    """``pop``'s bias in netx's units (a neuron adds ``bias << 6``), in the program's layout."""
    bias = fxp.effective_bias(np.broadcast_to(pop.bias_mant, pop.shape), pop.bias_exp)
    if np.any(bias % (1 << BIAS_EXP)):
        raise _refusal(
            pop.name, "has biases (bias_mant << bias_exp) that are not multiples of 64; netx fixes bias_exp at 6"
        )
    bias = bias >> BIAS_EXP
    if bias.min() < -BIAS_LIMIT or bias.max() >= BIAS_LIMIT:
        raise _refusal(
            pop.name, f"has biases {bias.min()}..{bias.max()} << 6; netx fixes bias_exp at 6, with a 13-bit mantissa"
        )
    return bias


def _dense_layer(syn: Synapse, pop: Population, n_in: int) -> Layer:
    layer: Layer = {
        "type": "dense",
        "shape": np.array([pop.size]),
        "inFeatures": n_in,
        "outFeatures": pop.size,
        "weight": _dense_weights(syn),
    }
    bias = _bias(pop).reshape(-1)
    if np.any(bias):
        layer["bias"] = bias
    if syn.delays is not None and np.any(syn.delays):
        layer["delay"] = np.asarray(syn.delays, dtype=np.int64)
    return layer | _neuron(pop)


def _conv_layer(syn: Synapse, pop: Population) -> Layer:
    g = syn.conv
    weights = fxp.synapse_weights(syn)  # weight_exp folded in: Lava's Conv ignores it
    layer: Layer = {
        "type": "conv",
        "shape": np.array(pop.shape),
        "inChannels": int(g.input_shape[0]),
        "outChannels": int(g.output_shape[0]),
        "kernelSize": np.array(weights.shape[2:]),
        "stride": np.array(g.stride),
        "padding": np.array(g.padding),
        "dilation": np.array(g.dilation),
        "groups": int(g.groups),
        "weight": weights,
    }
    bias = _bias(pop)
    if np.any(bias):
        per_channel = bias.reshape(bias.shape[0], -1)
        uniform = np.all(per_channel == per_channel[:, :1])
        layer["bias"] = per_channel[:, 0] if uniform else bias.transpose(2, 1, 0)  # else netx's (W, H, C)
    return layer | _neuron(pop)


def _dense_weights(syn: Synapse) -> np.ndarray:
    """What netx stores for a dense or sparse synapse: the weights Lava multiplies spikes with, its weight exponent
    folded in (a netx dense layer has none)."""
    weights = fxp.synapse_weights(syn)
    shift = int(syn.weight_exp)
    if shift < 0 and np.any(weights % (1 << -shift)):
        raise _refusal(
            syn.name,
            f"has weight_exp {shift}, which floors each step's sum; a netx dense layer has no weight exponent",
        )
    stored = weights << shift if shift >= 0 else weights >> -shift
    if not _netx_keeps(stored):
        raise _refusal(
            syn.name,
            f"has weights {stored.min()}..{stored.max()} (weight_exp {shift} folded in), which netx's weight "
            "optimization would change: it keeps 8-bit weights, without an exponent (export the .nir or .pt, "
            "which export --to netx compiles with weight_exp 0)",
        )
    return stored


def _netx_keeps(weights: np.ndarray) -> bool:
    """Whether a netx dense layer multiplies spikes with exactly ``weights``, the integers its file holds.

    Mirrors lava-dl 0.6.0 ``netx/utils.py optimize_weight_bits``, which ``netx/hdf5.py create_dense`` applies: it
    clips mixed signs to -256..254, shifts the weights left by ``s`` bits to fill 8 bits, and gives Lava's Dense
    ``weight_exp = -s`` and a ``num_weight_bits``; the Dense infers its sign mode from the shifted weights, then
    clips and truncates them (:func:`fxp.effective_weights`). Exact when nothing is clipped or truncated away.
    """
    hi, lo = int(weights.max()), int(weights.min())
    if (lo < 0 and hi > 254) or (lo < -256 and hi > 0) or hi == lo == 0:
        return False  # netx clips, or divides by the largest weight
    signed = int(lo < 0 <= hi)  # netx's MIXED
    if signed:
        scale = min(127 / hi if hi else math.inf, -128 / lo)
    else:
        scale = 255 / hi if lo >= 0 else -256 / lo
    shift = math.floor(math.log2(scale)) + signed
    if shift < 0:
        return False
    common = max(k for k in range(9) if not np.any(weights % (1 << k)))  # trailing zero bits, at most 8
    num_weight_bits = 8 - shift - (common - signed)
    shifted = weights << shift
    mode = fxp.sign_mode_of(shifted)
    if fxp.truncated_bits(num_weight_bits, mode) < 0:
        return False
    return np.array_equal(fxp.effective_weights(shifted, 0, num_weight_bits, mode), shifted)


# --- the file ----------------------------------------------------------------------------------------------


def _write(layers: list[Layer], path: str) -> None:
    import h5py

    with h5py.File(path, "w") as fh:
        for i, layer in enumerate(layers):
            group = fh.create_group(f"layer/{i}")
            for key, value in layer.items():
                if key == "type":  # a one-element byte-string array, as lava-dl writes it
                    group.create_dataset(key, (1,), "S10", [str(value).encode("ascii")])
                else:
                    group.create_dataset(key, data=value)
