"""A program's structure is checked before use: names, shapes, outputs, reset intervals."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram, InputPort, Population, Synapse
from tests.helpers.program_files import edit_header


def _program(**population) -> FixedPointProgram:
    pop = dict(name="p", shape=(2,), du=0, dv=0, vth=10, bias_mant=np.zeros(2, np.int32)) | population
    return FixedPointProgram(
        [InputPort("x", (3,))],
        [Population(**pop)],
        [Synapse("s", "x", "p", "dense", np.zeros((2, 3), np.int32))],
        ["p"],
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(reset_interval=-1), "'reset_interval': -1 is not an integer >= 0"),
        (dict(reset_interval=2.5), "'reset_interval': 2.5 is not an integer >= 0"),
        (dict(reset_interval=True), "'reset_interval': True is not an integer >= 0"),
        (dict(shape="ab"), "'shape': 'ab' is not a tuple of positive integers"),
        (dict(shape=(0,)), "'shape': (0,) is not a tuple of positive integers"),
        (dict(shape=(2.0,)), "'shape': (2.0,) is not a tuple of positive integers"),
        (dict(name=["p"]), "node name ['p'] is not a non-empty string"),
        # a name becomes a recording key, the member name of an .npz archive (issue 27's fuzzing finding)
        (dict(name="../../../../tmp/x"), "node name '../../../../tmp/x' holds a path separator or NUL"),
        (dict(name="..\\x"), "node name '..\\\\x' holds a path separator or NUL"),
        (dict(name="a\0b"), "node name 'a\\x00b' holds a path separator or NUL"),
    ],
)
def test_bad_structure_is_a_one_line_error(change, message):
    with pytest.raises(NeurocompileError, match=re.escape(message)):
        _program(**change).validate()


def test_a_program_needs_an_output():
    program = _program()
    program.outputs = []
    with pytest.raises(NeurocompileError, match="outputs must name at least one population"):
        program.validate()


def _saved_with(tmp_path, edit):
    """A saved program whose ``program.json`` header ``edit`` changed."""
    path = tmp_path / "p.ncp"
    _program().validate().save(path)
    edit_header(path, edit)
    return path


def test_a_saved_program_with_a_negative_reset_interval_does_not_load(tmp_path):
    path = _saved_with(tmp_path, lambda header: header["populations"][0].update(reset_interval=-3))
    with pytest.raises(NeurocompileError, match="node 'p', parameter 'reset_interval'"):
        FixedPointProgram.load(path)


@pytest.mark.parametrize("part, field", [("synapses", "weights"), ("synapses", "delays"), ("populations", "bias_mant")])
def test_a_header_field_that_is_stored_as_an_array_is_refused_in_one_line(tmp_path, part, field):
    # was: TypeError "Synapse() got multiple values for keyword argument 'weights'" (fuzzing, issue 27)
    path = _saved_with(tmp_path, lambda header: header[part][0].update({field: [[1, 2, 3], [4, 5, 6]]}))
    with pytest.raises(NeurocompileError) as info:
        FixedPointProgram.load(path)
    assert str(info.value) == f"{path}: {part}[0]: field '{field}' is stored as an array, not in program.json"


@pytest.mark.parametrize(
    "old, new, field",
    [
        ('"vth": ', '"vth": 99, "vth": ', "vth"),  # within a population
        ('"format": ', '"format": "x", "format": ', "format"),  # at the top
        ('"name": "s"', '"name": "t", "name": "s"', "name"),  # within a synapse
    ],
)
def test_a_key_repeated_in_program_json_is_refused_in_one_line(tmp_path, old, new, field):
    """json keeps the last of a repeated key silently; the loader names it instead."""
    path = _saved_with(tmp_path, lambda header: None)
    edit_header(path, lambda text: text.replace(old, new, 1), text=True)
    with pytest.raises(NeurocompileError) as info:
        FixedPointProgram.load(path)
    assert str(info.value) == f"{path}: program.json: field '{field}' appears twice in one object"


def test_record_names_with_dots_name_nested_nodes():
    """Nodes of nested NIR graphs are named ``graph.node``: a whole name is a node, a last ``.var`` its variable."""
    pop = Population("lif1.lif", (2,), du=4095, dv=0, vth=100, bias_mant=np.zeros(2, np.int32))
    syn = Synapse("w", "in.x", "lif1.lif", "dense", np.ones((2, 2), np.int32))
    program = FixedPointProgram([InputPort("in.x", (2,))], [pop], [syn], ["lif1.lif"]).validate()
    assert program.recorded_variables(["lif1.lif.v", "in.x"]) == {"lif1.lif": {"v"}, "in.x": {"spikes"}}
    assert program.recorded_variables(["lif1.lif"]) == {"lif1.lif": {"spikes", "u", "v"}}


@pytest.mark.parametrize("target", [[1, 2], {"bogus": 1}, 3])
def test_a_learning_target_that_is_not_a_port_name_is_a_one_line_error(target):
    from tests.helpers.plastic_programs import output_signal

    program = _program(learning=output_signal(target=target))
    with pytest.raises(
        NeurocompileError, match=re.escape("parameter 'learning.target': must be the name of a target port")
    ):
        program.validate()


def test_num_weight_bits_is_checked_in_a_float_program_too():
    program = _program()
    program.number_format = "float"
    program.synapses[0].num_weight_bits = None
    with pytest.raises(NeurocompileError, match="parameter 'num_weight_bits'"):
        program.validate()
