"""Current-based LIF: the Loihi neuron."""

from __future__ import annotations

from snnir.neurons.model import NeuronModel


class CubaLIF(NeuronModel):
    """Current-based LIF with a synaptic current ``i`` (Loihi's CUBA neuron, in float):

    ``i[t] = i - i / tau_syn + x``
    ``v[t] = v - (v - v_reset) / tau_mem + i[t]``
    Loihi's decays are ``du = 1/tau_syn``, ``dv = 1/tau_mem``.
    """

    state = {"i": 0.0, "v": "v_reset"}
    params = {"tau_syn": 2.0, "tau_mem": 2.0}

    def charge(self, s, **options):
        return {"i": s.i - s.i / s.tau_syn + s.x,
                "v": s.v - (s.v - s.v_reset) / s.tau_mem + s.i}


class CUBA(NeuronModel):
    """Loihi's CUBA neuron written with its per-step decays, as lava-dl slayer's ``cuba.Neuron`` is:

    ``i[t] = i - current_decay * i + x``
    ``v[t] = v - voltage_decay * (v - v_reset) + i[t]``
    The same dynamics as ``CubaLIF`` with ``current_decay = 1/tau_syn``, ``voltage_decay = 1/tau_mem``,
    but a decay may be 0 (an infinite time constant: netx's ``iDecay = 0`` keeps the current).
    """

    state = {"i": 0.0, "v": "v_reset"}
    params = {"current_decay": 0.5, "voltage_decay": 0.5}

    def charge(self, s, **options):
        return {"i": s.i - s.current_decay * s.i + s.x,
                "v": s.v - s.voltage_decay * (s.v - s.v_reset) + s.i}
