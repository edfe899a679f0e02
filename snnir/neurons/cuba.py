"""Current-based LIF: the Loihi neuron."""

from __future__ import annotations

from snnir.neurons.model import TAU_WHY, NeuronModel, Range


class CubaLIF(NeuronModel):
    """Current-based LIF with a synaptic current ``i`` (Loihi's CUBA neuron, in float):

    ``i[t] = i - i / tau_syn + x``
    ``v[t] = v - (v - v_reset) / tau_mem + i[t]``
    Loihi's decays are ``du = 1/tau_syn``, ``dv = 1/tau_mem``.
    """

    state = {"i": 0.0, "v": "v_reset"}
    params = {"tau_syn": 2.0, "tau_mem": 2.0}
    ranges = {"tau_syn": Range(1.0, why=TAU_WHY), "tau_mem": Range(1.0, why=TAU_WHY)}

    def charge(self, s, **options):
        return {"i": s.i - s.i / s.tau_syn + s.x,
                "v": s.v - (s.v - s.v_reset) / s.tau_mem + s.i}


class CubaLIFDecay(NeuronModel):
    """Current-based LIF written with decay factors (SpikingJelly's ``CUBALIFNode``):

    ``i[t] = i * c_decay + x``
    ``v[t] = v * v_decay + i[t]``   (the voltage decays towards 0, whatever ``v_reset`` is)
    ``c_decay = 1 - 1/tau_syn`` and ``v_decay = 1 - 1/tau_mem`` relate it to ``CubaLIF``.
    """

    state = {"i": 0.0, "v": "v_reset"}
    params = {"c_decay": 0.5, "v_decay": 0.75}
    defaults = {"v_threshold": 0.5}

    def charge(self, s, **options):
        return {"i": s.i * s.c_decay + s.x,
                "v": s.v * s.v_decay + s.i}
