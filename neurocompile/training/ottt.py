"""Online Training Through Time (OTTT; Xiao et al., NeurIPS 2022; reference code pkuxmq/OTTT-SNN).

Per layer ``l`` with membrane decay ``lambda_l`` (``1 - dt/tau``) and input gain ``c_l``
(``d v / d I``), the network runs with the reset detached (reset by subtraction in the
reference; the contract's convention decides). A presynaptic trace follows every input::

    a_hat_l[t] = lambda_l * a_hat_l[t-1] + x_l[t]

and the weight gradient of step ``t`` is ``delta_l[t] a_hat_l[t]^T`` with
``delta_l[t] = d loss_t / d I_l[t]`` propagated through the layers of the same step only.

* ``mode="A"`` (OTTT_A): the gradients of all steps of a sample are summed, one update per batch.
* ``mode="O"`` (OTTT_O): an update after every step (:meth:`OnlineRule.run_batch` ``on_step``).

With a detached subtractive reset the last layer's gradient equals BPTT's exactly (the trace
sums the temporal path ``lambda^(t-tau)`` that BPTT back-propagates); with ``lambda = 0`` every
layer's gradient equals BPTT's.
"""

from __future__ import annotations

import torch

from neurocompile.errors import NeurocompileError
from neurocompile.training import OTTT_MODES
from neurocompile.training.online import OnlineRule

Tensor = torch.Tensor


class OTTT(OnlineRule):
    name = "ottt"

    def __init__(self, model, mode: str = "A", **kwargs):
        super().__init__(model, **kwargs)
        if mode not in OTTT_MODES:
            raise NeurocompileError(f"OTTT mode must be A or O, got '{mode}'")
        self.mode = mode
        self.decays = [lay.decay() for lay in self.layers]

    def init_traces(self, l, x_aug, n_out):
        return {"a_hat": torch.zeros_like(x_aug)}

    def update_pre(self, l, tr, x_aug):
        # lambda_l is the decay of the neurons that this input drives (per postsynaptic neuron in
        # general); the reference uses one lambda per layer, so take the mean of a uniform layer.
        lam = self.decays[l].to(x_aug)
        lam = lam.flatten()[0] if lam.numel() > 0 and bool((lam == lam.flatten()[0]).all()) else lam.mean()
        tr["a_hat"] = lam * tr["a_hat"] + x_aug

    def weight_grad(self, l, tr, x_aug, signal, psi, gain):
        delta = (signal * psi if psi is not None else signal) * gain
        return delta.T @ tr["a_hat"]
