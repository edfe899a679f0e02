"""A memoryless threshold unit: NIR's ``Threshold`` node as a neuron model."""

from __future__ import annotations

from snnir.neurons.model import NeuronModel


class Threshold(NeuronModel):
    """Heaviside of the input, no memory: ``v[t] = x[t]``, ``spike = H(v - v_threshold)``.

    The reset writes ``v`` but the next step overwrites it, so the output depends on ``x[t]`` only.
    """

    relations = ()  # memoryless: any threshold is meaningful (NIR's Threshold takes any value)

    def charge(self, s, **options):
        return {"v": s.x}
