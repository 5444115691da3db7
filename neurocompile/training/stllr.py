"""S-TLLR: STDP-inspired temporal local learning rule (Apolinario & Roy, 2024; reference code
mapolinario94/S-TLLR, ``STLLRLinearGrad``), on the engine of :mod:`neurocompile.training.online`::

    e_ij[t]  = alpha_pre * Psi_i[t] * trx_j[t] + alpha_post * trPsi_i[t-1] * x_j[t]
    dW_ij   += L_i[t] * c_i * e_ij[t]

with the traces ``trx`` (decay ``lambda_pre``) and ``trPsi`` (``lambda_post``) and
``factors = [lambda_post, lambda_pre, alpha_post, alpha_pre]``. Definitions and defaults: ``docs/training.md``.
"""

from __future__ import annotations

import torch

from neurocompile.errors import NeurocompileError
from neurocompile.training.online import OnlineRule

DEFAULT_FACTORS = (0.5, 0.8, -0.2, 1.0)


class STLLR(OnlineRule):
    name = "stllr"

    def __init__(self, model, factors=DEFAULT_FACTORS, **kwargs):
        super().__init__(model, **kwargs)
        factors = tuple(float(f) for f in factors)
        if len(factors) != 4:
            raise NeurocompileError(
                f"S-TLLR factors must be [lambda_post, lambda_pre, alpha_post, alpha_pre], got {factors}"
            )
        self.lambda_post, self.lambda_pre, self.alpha_post, self.alpha_pre = factors

    def init_traces(self, l, x_aug, n_out):
        lay = self.layers[l]
        tr = {"trx": torch.zeros_like(x_aug)}
        if lay.spiking:
            tr["trpsi"] = x_aug.new_zeros(x_aug.shape[0], n_out)
        else:
            tr["lam"] = self.trace_decay(l, x_aug)
        return tr

    def update_pre(self, l, tr, x_aug):
        lam = self.lambda_pre if "trpsi" in tr else tr["lam"]
        tr["trx"] = lam * tr["trx"] + x_aug

    def weight_grad(self, l, tr, x_aug, signal, psi, gain):
        if psi is None:  # non-spiking output: exact trace of its own linear dynamics
            return (signal * gain).T @ tr["trx"]
        g = signal * gain
        grad = self.alpha_pre * (g * psi).T @ tr["trx"]
        if self.alpha_post != 0.0:
            grad = grad + self.alpha_post * (g * tr["trpsi"]).T @ x_aug
        return grad

    def update_post(self, l, tr, psi):
        if psi is not None:
            tr["trpsi"] = self.lambda_post * tr["trpsi"] + psi
