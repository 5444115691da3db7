"""The Loihi 2 resource map on small programs whose partition is computed by hand, each limit exactly at and
one over; the design-rule refusals; what stock Loihi 2 models cannot run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurocompile.errors import HardwareLimitError, NeurocompileError
from neurocompile.hardware.loihi2 import LIMITS, LOIHI2
from neurocompile.hardware.mapping import map_program
from neurocompile.ir.program import InputPort, Synapse
from tests.hardware.programs import chain, conv, population
from tests.helpers.plastic_programs import OTTT_RULE, plastic_program

MEMORY = 192 * 1024 * 8  # bits per core
STATE = 64  # bits of neuron state


def limits(**changes):
    return dataclasses.replace(LOIHI2, **changes)


def cores_of(resource_map) -> dict[str, int]:
    return {layer.name: layer.cores for layer in resource_map.layers}


def refused(program, *words, **changes) -> str:
    with pytest.raises(HardwareLimitError) as info:
        map_program(program, limits(**changes))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_every_limit_names_its_source_and_date():
    for limit in LIMITS:
        assert limit.value > 0 and limit.source and limit.read == "2026-12-07", limit


# --- neurons per core and per chip -------------------------------------------------------------------------


@pytest.mark.parametrize("neurons,cores", [(8192, 1), (8193, 2), (3 * 8192, 3), (3 * 8192 + 1, 4)])
def test_neurons_per_core(neurons, cores):
    """One input each (one synapse, so memory and axons are far from their limits): 8,192 neurons a core."""
    resource_map = map_program(chain([neurons], 1))
    assert cores_of(resource_map) == {"l0": cores}
    assert sum(core.neurons for core in resource_map.cores) == neurons


@pytest.mark.parametrize("extra,chips", [(0, 1), (1, 2)])
def test_cores_and_neurons_per_chip(extra, chips):
    """128 full cores fill one chip (2**20 neurons); one neuron more takes a core on a second chip."""
    resource_map = map_program(chain([128 * 8192 + extra], 1))
    assert resource_map.chips == chips
    assert [core.chip for core in resource_map.cores].count(0) == 128


@pytest.mark.parametrize("extra", [0, 1])
def test_chips_per_system(extra):
    """A 2-chip system holds 256 full cores; a neuron more is refused naming the layer, the limit and the value."""
    program = chain([256 * 8192 + extra], 1)
    if extra == 0:
        assert map_program(program, limits(chips_per_system=2)).chips == 2
    else:
        refused(program, "node 'l0'", "'chips'", "needs 3 Loihi 2 chips", "has 2", chips_per_system=2)


@pytest.mark.parametrize("extra,chips", [(0, 1), (1, 2)])
def test_synapses_per_chip(extra, chips):
    """Two cores of 10 x 100 stored synapses share a chip that holds 2,000 synapses, not one that holds 1,999;
    a chip that holds fewer than one core's is refused."""
    program = chain([20], 100)
    small = limits(neurons_per_core=10, synapses_per_chip=2000 - extra)
    assert map_program(program, small).chips == chips
    refused(program, "node 'l0'", "'synapses'", "1000 synapses", "999", neurons_per_core=10, synapses_per_chip=999)


# --- synaptic memory ---------------------------------------------------------------------------------------


def test_dense_memory_partition_by_hand():
    """Fan-in 4,096, 8-bit weights: a core of m neurons takes 4,096 axons x words(8 m + 10 header bits) plus
    64 m bits of state. m = 38: 4,096 x 320 + 2,432 = 1,313,152 <= 1,572,864; m = 39: 4,096 x 384 + 2,496 is
    over it (the synapses alone fill it). So 380 neurons take 10 cores and 381 take 11."""
    assert 4096 * 320 + 38 * STATE <= MEMORY < 4096 * 384 + 39 * STATE
    for neurons, cores in ((380, 10), (381, 11)):
        resource_map = map_program(chain([neurons], 4096))
        assert cores_of(resource_map) == {"l0": cores}
        assert max(core.neurons for core in resource_map.cores) <= 38
        assert resource_map.layers[0].bound_by == "memory"


@pytest.mark.parametrize("bits,cores,memory", [(8, 10, 4096 * 320 + 38 * STATE), (1, 3, 4096 * 256 + 126 * STATE)])
def test_memory_depends_on_weight_precision(bits, cores, memory):
    """1-bit weights: an axon's block of up to 64 synapses takes words(64 + 10) = 128 bits, so a core of m
    neurons takes 4,096 x 128 x ceil(m / 64) bits: 128 neurons fit (2 blocks), 129 do not (3 blocks fill the
    core before the neuron state): 380 neurons take 3 cores, the first of 126."""
    resource_map = map_program(chain([380], 4096, num_weight_bits=bits))
    assert cores_of(resource_map) == {"l0": cores}
    assert resource_map.cores[0].memory_bits == memory


def test_sparse_memory_counts_nonzeros_with_their_index():
    """A diagonal sparse layer of 64 neurons: one synapse per axon, 8 weight + 6 index bits + 10 header bits
    in one 64-bit word."""
    program = chain([64], 64, kind="sparse", weights=lambda n, m: np.eye(n, m, dtype=np.int32))
    core = map_program(program).cores[0]
    assert (core.in_axons, core.stored_synapses, core.memory_bits) == (64, 64, 64 * 64 + 64 * STATE)


@pytest.mark.parametrize("spare", [0, -1])
def test_memory_of_one_neuron_at_and_over_the_limit(spare):
    """One neuron with 100 inputs takes 100 words of synapses and 64 bits of state: a core of exactly that
    maps, one bit less is refused."""
    need = 100 * 64 + STATE
    program = chain([3], 100)
    if spare == 0:
        assert cores_of(map_program(program, limits(memory_bits_per_core=need))) == {"l0": 3}
    else:
        refused(program, "node 'l0'", "'memory'", f"{need} bits", f"has {need - 1}", memory_bits_per_core=need - 1)


# --- fan-in and fan-out ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_fan_in_at_and_over_the_limit(kind):
    assert cores_of(map_program(chain([2], 4096, kind=kind))) == {"l0": 1}
    refused(chain([2], 4097, kind=kind), "node 'l0'", "'fan-in'", "4097 inputs per neuron", "4096 input axons")


def test_input_axons_split_a_sparse_layer_by_hand():
    """Block-diagonal: each of 128 neurons has its own 64 inputs, so a core of m neurons has 64 m input axons:
    64 neurons a core, 2 cores; with 4,095 axons a core, 63 neurons, 3 cores."""
    program = chain([128], 128 * 64, kind="sparse", weights=lambda n, m: np.kron(np.eye(n), np.ones(64)).astype(int))
    assert cores_of(map_program(program)) == {"l0": 2}
    assert cores_of(map_program(program, limits(in_axons_per_core=4095))) == {"l0": 3}


@pytest.mark.parametrize("out_axons,cores", [(50, 2), (49, 3)])
def test_output_axons_split_the_source_layer_by_hand(out_axons, cores):
    """l1 (50 neurons, 10 a core) takes 5 cores, so each l0 neuron sends to 5 cores: a core of 10 l0 neurons
    needs 50 output axons; with 49, l0 splits into 3 cores (7 + 7 + 6 neurons, 35 axons)."""
    resource_map = map_program(chain([20, 50], 4), limits(neurons_per_core=10, out_axons_per_core=out_axons))
    assert cores_of(resource_map) == {"l0": cores, "l1": 5}
    assert max(core.out_axons for core in resource_map.cores) <= out_axons


@pytest.mark.parametrize("out_axons", [5, 4])
def test_fan_out_of_one_neuron_at_and_over_the_limit(out_axons):
    program = chain([1, 5], 1)
    small = limits(neurons_per_core=1, out_axons_per_core=out_axons)
    if out_axons == 5:
        assert cores_of(map_program(program, small)) == {"l0": 1, "l1": 5}
    else:
        refused(program, "node 'l0'", "'fan-out'", "sends to 5 cores", "4 output axons", **dataclasses.asdict(small))


# --- convolutions ------------------------------------------------------------------------------------------


def test_conv_counts_by_hand():
    """1 x 8 x 8 input, 4 channels of 3 x 3 with padding 1: one core holds all 256 outputs; its input axons are
    the 64 inputs; it stores the kernel once (4 x 9 weights); connections: per channel 36 interior outputs x 9,
    24 edge outputs x 6 and 4 corners x 4 = 484."""
    core = map_program(conv((1, 8, 8), 4, 3, padding=1)).cores[0]
    assert (core.in_axons, core.stored_synapses, core.connections) == (64, 36, 4 * 484)
    assert core.memory_bits == 36 * 8 + 64 * 64 + 256 * STATE


def test_conv_input_axons_split_it_by_rows():
    """1 x 8 x 8 -> 1 x 8 x 8 (3 x 3, padding 1), 24 input axons a core: a core of one output row reads 3 input
    rows x 8 columns = 24; any core spanning two rows reads 4 rows (32): 8 cores."""
    program = conv((1, 8, 8), 1, 3, padding=1)
    resource_map = map_program(program, limits(in_axons_per_core=24))
    assert cores_of(resource_map) == {"c": 8}
    assert [core.in_axons for core in resource_map.cores] == [16, 24, 24, 24, 24, 24, 24, 16]


def test_conv_output_axons_by_hand():
    """Population a (1 x 8 x 8) feeds c through the conv above, split into 8 cores of one row: an a neuron in
    row r feeds output rows r - 1 to r + 1, i.e. 3 cores (2 in the first and last row): 8 x (2 + 6 x 3 + 2)."""
    program = conv((1, 8, 8), 1, 3, padding=1)
    program.inputs = [InputPort("x", (1,))]
    program.populations.insert(0, population("a", (1, 8, 8)))
    program.synapses[0].source = "a"
    program.synapses.insert(0, Synapse("in", "x", "a", "dense", np.ones((64, 1), dtype=np.int32)))
    resource_map = map_program(program.validate(), limits(in_axons_per_core=24))
    assert cores_of(resource_map) == {"a": 1, "c": 8}
    assert resource_map.cores[0].out_axons == 8 * 22


def test_conv_fan_in_of_one_neuron():
    """16 input channels x 4 x 4 = 256 inputs per neuron: refused with a core of 255 input axons."""
    refused(conv((16, 6, 6), 2, 4), "node 'c'", "'fan-in'", "256 inputs per neuron", in_axons_per_core=255)


# --- design rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sign_mode,weight,fits",
    [("mixed", -256, True), ("mixed", -257, False), ("excitatory", 255, True), ("excitatory", 256, False)],
)
def test_weight_precision(sign_mode, weight, fits):
    program = chain([2], 3, weights=lambda n, m: np.full((n, m), weight), sign_mode=sign_mode)
    if fits:
        map_program(program)
    else:
        refused(program, "node 'w0'", "'weights'", f"weight {weight}", "8 bits")


def test_conv_weight_precision():
    """Conv weights are 24-bit in a program; a Loihi 2 synapse holds 8 bits and a sign."""
    map_program(conv((1, 4, 4), 1, 3, weight=255))
    refused(conv((1, 4, 4), 1, 3, weight=256), "node 'k'", "'weights'", "weight 256", "-256..255")


@pytest.mark.parametrize("delay", [62, 63])
def test_delays(delay):
    program = chain([2], 3, delays=np.full((2, 3), delay, dtype=np.int32))
    if delay == 62:
        assert map_program(program).cores[0].memory_bits == 3 * 64 + 2 * STATE  # 8 + 6 delay bits a synapse
    else:
        refused(program, "node 'w0'", "'delays'", "delay of 63 steps", "62")


def test_a_float_program_is_refused():
    program = chain([2], 3)
    program.number_format = "float"
    with pytest.raises(NeurocompileError, match="fixed-point"):
        map_program(program)


# --- stock models ------------------------------------------------------------------------------------------


def test_stock_lif_needs_nothing():
    resource_map = map_program(chain([4, 2], 3))
    assert resource_map.notes == [] and {layer.model for layer in resource_map.layers} == {"stock"}


def test_extensions_and_learning_are_noted_one_line_each():
    program = plastic_program(n_hidden=4, hidden_rule=OTTT_RULE)  # both layers learn; feedback carries errors
    resource_map = map_program(program)
    assert all("custom microcode" in note and "\n" not in note for note in resource_map.notes)
    text = "\n".join(resource_map.notes)
    assert "input 'target' streams graded targets" in text
    assert "is a learning neuron" in text and "carries graded errors" in text
    assert {layer.model for layer in resource_map.layers} == {"custom"}


def test_bias_onset_needs_a_custom_neuron_only_with_a_bias():
    program = chain([4], 3)
    program.populations[0].bias_onset = 2
    assert map_program(program).notes == []
    program.populations[0].bias_mant = np.ones(4, dtype=np.int32)
    assert map_program(program).notes == [
        "population 'l0' adds its bias from step 2: no stock Loihi 2 model does; needs custom microcode"
    ]


def test_the_map_is_plain_data():
    resource_map = map_program(chain([4, 2], 3))
    data = resource_map.to_dict()
    assert data["cores"] == 2 and data["chips"] == 1 and len(data["core_map"]) == 2
    assert data["layers"][0]["model"] == "stock" and data["neurons"] == 6 and data["synapses"] == 12 + 8
    assert "l0" in resource_map.table()


def test_the_docs_limits_table_is_the_modules():
    """docs/loihi2.md's limits table is what tools/bench_map.py writes from the constants."""
    from tools.bench_map import DOC, between, limits_table

    assert between(DOC.read_text(), "loihi2-limits") == limits_table()
