"""LIF with a spike-triggered adaptation current (Gerstner et al., Neuronal Dynamics, ch. 6)."""

from __future__ import annotations

from snnir.neurons.model import TAU_WHY, NeuronModel, Range


class AdaptiveLIF(NeuronModel):
    """Adaptive LIF, Euler with dt = 1:

    ``v <- v + (x - (v - v_reset) - w) / tau``
    ``w <- w + (a (v - v_reset) - w) / tau_w``   (with the new ``v``)
    on a spike, after the reset: ``w <- w + b``.
    ``a`` couples sub-threshold voltage to adaptation, ``b`` is the spike-triggered jump.
    """

    state = {"v": "v_reset", "w": 0.0}
    params = {"tau": 2.0, "tau_w": 20.0, "a": 0.0, "b": 0.1}
    ranges = {"tau": Range(1.0, why=TAU_WHY), "tau_w": Range(1.0, why=TAU_WHY)}

    def charge(self, s, **options):
        return {"v": s.v + (s.x - (s.v - s.v_reset) - s.w) / s.tau,
                "w": s.w + (s.a * (s.v - s.v_reset) - s.w) / s.tau_w}

    def on_spike(self, s):
        return {"w": s.w + s.b * s.spike}


class AdaptiveQIF(NeuronModel):
    """QIF with an adaptation current: Izhikevich's simple model in the form of Gerstner et al.
    (Neuronal Dynamics, ch. 6) and SpikingJelly's ``IzhikevichNode``. Euler with dt = 1:

    ``v <- v + (x + a0 (v - v_rest)(v - v_c) - w) / tau``
    ``w <- w + (a (v - v_rest) - w) / tau_w``   (with the new ``v``)
    on a spike, after the reset: ``w <- w + b``. Initially ``v = v_reset`` and ``w = w_rest``.
    """

    state = {"v": "v_reset", "w": "w_rest"}
    params = {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": -0.1, "tau_w": 2.0, "a": 0.0, "b": 0.0,
              "w_rest": 0.0}

    def charge(self, s, **options):
        return {"v": s.v + (s.x + s.a0 * (s.v - s.v_rest) * (s.v - s.v_c) - s.w) / s.tau,
                "w": s.w + (s.a * (s.v - s.v_rest) - s.w) / s.tau_w}

    def on_spike(self, s):
        return {"w": s.w + s.b * s.spike}
