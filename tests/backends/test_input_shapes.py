"""One set of input-shape rules on every backend, compiled or not (backends.base.check_inputs): an input
with the declared number of values per step takes the declared shape, whatever its layout; anything else
is the same one-line error on each backend."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neurocompile import api
from neurocompile.errors import NeurocompileError
from tests.onnx.test_onnx_step import chain

BACKENDS = ["float", "cpu", "lava"]


def graph(declared):
    """An Input of type ``declared`` (12 values, e.g. [1, 12] as exporters that keep the batch write it)
    into 12 -> 4 IF neurons."""
    w = np.random.default_rng(0).normal(0, 1, (4, 12)).astype(np.float32)
    neurons = nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4))
    g = chain(("fc", nir.Affine(weight=w, bias=np.zeros(4, np.float32))), ("n", neurons), shape=[12], out_shape=[4])
    g.nodes["input"] = nir.Input(input_type={"input": np.array(declared)})
    return g


def spikes(*shape):
    return (np.random.default_rng(1).random(shape) < 0.4).astype(np.float32)


@pytest.mark.parametrize("declared", [[1, 12], [3, 4]])
@pytest.mark.parametrize("layout", [(12,), (1, 12)])
def test_every_backend_takes_any_layout_of_the_declared_size(declared, layout):
    x = spikes(2, 10, *layout)
    for backend in BACKENDS:  # each as it runs the plain layout of a plain [12] input
        ours = api.simulate(graph(declared), x, backend, convention="sinabs")
        plain = api.simulate(graph([12]), x.reshape(2, 10, 12), backend, convention="sinabs")
        np.testing.assert_array_equal(ours.arrays["n.spikes"], plain.arrays["n.spikes"], err_msg=backend)
        assert plain.arrays["n.spikes"].sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 10, 13), (2, 10, 2, 12), (10, 12)])
def test_every_backend_refuses_another_size_in_one_line(backend, shape):
    with pytest.raises(NeurocompileError, match=rf"^{backend} backend: input 'input': shape") as info:
        api.simulate(graph([1, 12]), spikes(*shape), backend, convention="sinabs")
    assert "\n" not in str(info.value)
