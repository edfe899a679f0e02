"""Integrate-and-fire family: IF, LIF, ParametricLIF (SpikingJelly's conventions)."""

from __future__ import annotations

import numpy as np

from snnir.neurons.model import TAU_WHY, NeuronModel, Range, sigmoid


class IF(NeuronModel):
    """Integrate-and-fire: ``v[t] = v[t-1] + x[t]``."""

    def charge(self, s, **options):
        return {"v": s.v + s.x}


class LIF(NeuronModel):
    """Leaky integrate-and-fire, ``tau dv/dt = -(v - v_reset) + x`` by forward Euler (dt = 1).

    ``decay_input=True``:  ``v[t] = v + (x - (v - v_reset)) / tau``
    ``decay_input=False``: ``v[t] = v - (v - v_reset) / tau + x``
    With soft reset (``v_reset=None``) the leak targets 0.
    """

    params = {"tau": 2.0}
    options = {"decay_input": True}
    ranges = {"tau": Range(1.0, why=TAU_WHY)}

    def charge(self, s, decay_input=True):
        if decay_input:
            return {"v": s.v + (s.x - (s.v - s.v_reset)) / s.tau}
        return {"v": s.v - (s.v - s.v_reset) / s.tau + s.x}


class ParametricLIF(NeuronModel):
    """LIF with a learnable time constant, ``1/tau = sigmoid(w)`` (Fang et al. 2021).

    ``decay_input=True``:  ``v[t] = v + (x - (v - v_reset)) * sigmoid(w)``
    ``decay_input=False``: ``v[t] = v - (v - v_reset) * sigmoid(w) + x``
    Construct with ``init_tau`` (> 1; a number or one value per neuron/channel); ``w = -log(init_tau - 1)``
    is trained.
    """

    params = {"w": 0.0}
    options = {"decay_input": True}
    learnable = ("w",)

    def charge(self, s, decay_input=True):
        if decay_input:
            return {"v": s.v + (s.x - (s.v - s.v_reset)) * sigmoid(s.w)}
        return {"v": s.v - (s.v - s.v_reset) * sigmoid(s.w) + s.x}

    def user_params(self, init_tau=2.0, **kwargs):
        if "w" in kwargs:
            return kwargs
        tau = np.asarray(init_tau, np.float64)
        if not (tau > 1.0).all():
            raise ValueError(f"ParametricLIF needs init_tau > 1, got {init_tau}")
        w = -np.log(tau - 1.0)
        return {"w": float(w) if w.ndim == 0 else w.astype(np.float32), **kwargs}
