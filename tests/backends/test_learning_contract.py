"""The learning contract of the Backend protocol, on every backend whose registry entry says it learns.

One plastic program (input -> hidden -> output, both synapses learning, the hidden layer from feedback)
runs through each learning backend. The oracle is the NumPy loop over the learning engine
(``backends/plastic_reference.py``, itself tested against Lava's own process models in
``tests/backends/lava/test_lava_learning.py``): every backend must end with its weights, at every
checkpoint, and report them the way the protocol says."""

from __future__ import annotations

import numpy as np
import pytest

from neurocompile.backends import BACKENDS, create_backend, learning_backends
from neurocompile.backends.plastic_reference import reference_run
from neurocompile.errors import NeurocompileError
from neurocompile.frontend.nir_io import load_graph
from neurocompile.learning.onchip import without_learning
from tests.helpers.plastic_programs import OTTT_RULE, plastic_program, stream

STEPS, EVERY = 60, 20


@pytest.fixture(scope="module")
def case():
    program = plastic_program(n_hidden=4, hidden_rule=OTTT_RULE, seed=5)
    data = stream(program, STEPS, seed=6)
    plastic = [syn.name for syn in program.synapses if syn.learning is not None]
    arrays, finals = reference_run([program], data, STEPS, program.recorded_variables("all"), EVERY)
    return program, data, plastic, arrays, finals


def test_the_registry_names_backends_that_learn():
    assert set(learning_backends()) == {"cpu", "lava"}


@pytest.mark.parametrize("name", learning_backends())
def test_every_learning_backend_keeps_the_contract(name, case):
    program, data, plastic, arrays, finals = case
    rec = create_backend(name, program).run(data, record=[f"{syn}.weights" for syn in plastic], checkpoint_every=EVERY)
    assert rec.metadata["checkpoint_steps"] == [EVERY, 2 * EVERY, 3 * EVERY]
    (learned,) = rec.metadata["programs"]
    for syn in plastic:
        checkpoints = rec[f"{syn}.weights"]
        assert checkpoints.shape == (1, STEPS // EVERY, *np.shape(program.synapse(syn).weights))
        np.testing.assert_array_equal(checkpoints, arrays[f"{syn}.weights"])
        np.testing.assert_array_equal(learned.synapse(syn).weights, finals[syn][0])
        np.testing.assert_array_equal(checkpoints[0, -1], learned.synapse(syn).weights)
    assert not all(np.array_equal(learned.synapse(s).weights, program.synapse(s).weights) for s in plastic)


@pytest.mark.parametrize("name", learning_backends())
def test_a_learning_backend_refuses_checkpoints_of_a_program_that_does_not_learn(name):
    program = without_learning(plastic_program())
    data = stream(program, 8, seed=1)
    with pytest.raises(NeurocompileError, match=f"{name} backend: checkpoint_every needs a plastic program"):
        create_backend(name, program).run(data, checkpoint_every=4)


def test_a_backend_that_does_not_learn_refuses_checkpoints(nir_paper_dir):
    for name, entry in BACKENDS.items():
        if entry.learning:
            continue
        graph = load_graph(nir_paper_dir / "lif_norse.nir")
        with pytest.raises(NeurocompileError, match="does not learn"):
            create_backend(name, graph).run(np.zeros((1, 4, 1), np.float32), checkpoint_every=2)
