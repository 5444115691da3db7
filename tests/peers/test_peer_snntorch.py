"""Peer-library oracle: snnTorch 1.0.0 imports the same NIR graph and must spike exactly like the float reference.

snnTorch's importer (`snntorch.import_nir.import_from_nir`) assumes dt = 1e-4 and resets to zero in
the same step: the neurocompile default convention. It runs one sample at a time, with a fresh
network per sample so no state carries over.
"""

import nir
import numpy as np
import torch

from neurocompile.backends.float_ref import FloatReference
from neurocompile.frontend.torch_export import export
from neurocompile.models.architectures import MLP


def snntorch_output_spikes(graph: nir.NIRGraph, inputs: np.ndarray) -> np.ndarray:
    from snntorch.import_nir import import_from_nir

    samples = []
    with torch.no_grad():
        for sample in inputs:
            net, state, steps = import_from_nir(graph), None, []
            for x in sample:
                x = torch.from_numpy(x[None])
                out, state = net(x) if state is None else net(x, state)
                steps.append(out.reshape(-1).numpy().copy())
            samples.append(np.stack(steps))
    return np.stack(samples)


def test_paper_lif_spikes_like_snntorch(nir_paper_dir):
    graph = nir.read(nir_paper_dir / "lif_norse.nir")
    inputs = (np.random.default_rng(0).random((3, 400, 1)) < 0.15).astype(np.float32)
    reference = FloatReference(graph).run(inputs).output_spikes()
    assert reference.sum() > 20
    np.testing.assert_array_equal(snntorch_output_spikes(graph, inputs), reference)


def test_exported_mlp_with_biases_spikes_like_snntorch():
    torch.manual_seed(0)
    model = MLP([16, 24, 5])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)  # the default initialization barely spikes
    graph = export(model)
    inputs = (np.random.default_rng(1).random((3, 50, 16)) < 0.3).astype(np.float32)
    reference = FloatReference(graph).run(inputs).output_spikes()
    assert reference.sum() > 20
    np.testing.assert_array_equal(snntorch_output_spikes(graph, inputs), reference)
