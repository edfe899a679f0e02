"""Norse's neurons in Norse's own discretisation (``norse.torch.functional``).

Norse writes ``v <- v + dt * tau_mem_inv * (...)``; the models take the products as parameters,
``a_mem = dt * tau_mem_inv`` and ``a_syn = dt * tau_syn_inv``, which the importer computes once as
Norse does (in float32), so every step does Norse's float operations. Norse fires when
``v > v_th`` (strictly, see ``above``); its reset is snnir's hard reset (``reset_value``) or, with
``v_reset=None``, the soft one (``reset_subtract``). The leak target ``v_leak`` is also the initial
voltage, as in Norse's ``initial_state``.
"""

from __future__ import annotations

from snnir.neurons.model import NeuronModel, above


class NorseLIF(NeuronModel):
    """Norse ``LIFCell`` (current-based; its ``LICell`` is the same without firing):

    ``j = i + x``   (the input jumps into the current first)
    ``v <- v + a_mem ((v_leak - v) + j)``
    ``i <- j - a_syn j``
    """

    state = {"v": "v_leak", "i": 0.0}
    params = {"a_mem": 0.1, "a_syn": 0.2, "v_leak": 0.0}

    def charge(self, s, **options):
        return {"v": s.v + s.a_mem * ((s.v_leak - s.v) + (s.i + s.x)),
                "i": (s.i + s.x) - s.a_syn * (s.i + s.x)}

    def fire(self, s):
        return above(s.v, s.v_threshold)


class NorseLIFBox(NeuronModel):
    """Norse ``LIFBoxCell`` (no synaptic current): ``v <- v + a_mem ((x + v_leak) - v)``."""

    state = {"v": "v_leak"}
    params = {"a_mem": 0.1, "v_leak": 0.0}

    def charge(self, s, **options):
        return {"v": s.v + s.a_mem * ((s.x + s.v_leak) - s.v)}

    def fire(self, s):
        return above(s.v, s.v_threshold)


class NorseLIBox(NeuronModel):
    """Norse ``LIBoxCell``, a leaky integrator (used without firing): ``v <- v + a_mem ((v_leak - v) + x)``."""

    state = {"v": "v_leak"}
    params = {"a_mem": 0.1, "v_leak": 0.0}

    def charge(self, s, **options):
        return {"v": s.v + s.a_mem * ((s.v_leak - s.v) + s.x)}


class NorseIAF(NeuronModel):
    """Norse ``IAFCell``: ``v <- v + x``, firing when ``v > v_threshold``; starts at ``v_reset``."""

    def charge(self, s, **options):
        return {"v": s.v + s.x}

    def fire(self, s):
        return above(s.v, s.v_threshold)
