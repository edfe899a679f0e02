"""snnTorch's leaky neurons (``Leaky``, ``Synaptic``; ``RLeaky``/``RSynaptic``/``Lapicque`` build on
them), with snnTorch's timing of the reset written into the equations.

snnTorch keeps the membrane *before* its reset and applies the reset of a spike at the next step,
after the leak (``reset_delay=True``, its default). Each step first computes
``r = [v > threshold]`` from the stored ``v`` (no gradient, as snnTorch detaches it), then the
charged potential ``b`` and the reset that ``reset_mechanism`` names:

- ``"subtract"``:  ``v <- b - r * threshold``
- ``"zero"``:      ``v <- b - r * b``   (the charged potential is zeroed: ``Synaptic``, ``RLeaky``)
- ``"zero_leak"``: ``v <- beta ((1 - r) v) + x``   (the old potential is zeroed before the leak:
  ``Leaky``'s ``"zero"``)
- ``"none"``:      ``v <- b``

and fires at ``v > threshold`` (strictly, see ``above``). With ``reset_delay=False`` the reset
also happens right after the spike, in snnTorch's words ``v <- v - (spike - r) * threshold``
(``* v`` for the zeroing mechanisms), with the spike's gradient.
"""

from __future__ import annotations

import sympy as sp

from snnir.errors import GraphError
from snnir.neurons.model import NeuronModel, above

MECHANISMS = ("subtract", "zero", "zero_leak", "none")


def _fired(v: sp.Expr, threshold: sp.Expr) -> sp.Expr:
    """``1`` where ``v > threshold``, else ``0``; a constant per branch, so no gradient flows."""
    return sp.Piecewise((1, v > threshold), (0, True))


def _check(model: str, mechanism: str, allowed: tuple[str, ...]) -> None:
    if mechanism not in allowed:
        raise GraphError(f"neuron model {model}: reset_mechanism must be one of {list(allowed)}, got {mechanism!r}")


def _reset_after(s, mechanism: str) -> dict:
    """snnTorch's immediate reset (``reset_delay=False``), which cancels the pending ``r``."""
    if mechanism == "none":
        return {}
    amount = s.v_threshold if mechanism == "subtract" else s.v
    return {"v": s.v - (s.spike - s.r) * amount}


class SnnTorchLeaky(NeuronModel):
    """snnTorch ``Leaky``: ``b = beta v + x`` with the reset of the module docstring.

    ``beta`` is snnTorch's decay, already clamped to ``[0, 1]``. Fires when ``v > v_threshold``.
    """

    state = {"v": 0.0, "r": 0.0}
    params = {"beta": 0.9}
    options = {"reset_mechanism": "subtract", "reset_delay": True}
    reset_rule = "none"

    def charge(self, s, reset_mechanism="subtract", reset_delay=True):
        _check(self.name, reset_mechanism, MECHANISMS)
        b = s.beta * s.v + s.x
        v = {"subtract": b - s.r * s.v_threshold, "zero": b - s.r * b,
             "zero_leak": s.beta * ((1 - s.r) * s.v) + s.x, "none": b}[reset_mechanism]
        return {"r": _fired(s.v, s.v_threshold), "v": v}

    def fire(self, s):
        return above(s.v, s.v_threshold)

    def on_spike(self, s, reset_mechanism="subtract", reset_delay=True):
        return {} if reset_delay else _reset_after(s, reset_mechanism)


class SnnTorchSynaptic(NeuronModel):
    """snnTorch ``Synaptic``: ``syn <- alpha syn + x``, ``b = beta v + syn``, reset as in the module
    docstring (``"subtract"``, ``"zero"``, ``"none"``). Fires when ``v > v_threshold``."""

    state = {"syn": 0.0, "v": 0.0, "r": 0.0}
    params = {"alpha": 0.9, "beta": 0.8}
    options = {"reset_mechanism": "subtract", "reset_delay": True}
    reset_rule = "none"

    def charge(self, s, reset_mechanism="subtract", reset_delay=True):
        _check(self.name, reset_mechanism, ("subtract", "zero", "none"))
        syn = s.alpha * s.syn + s.x
        b = s.beta * s.v + s.syn  # the new syn: assignments run in order
        v = {"subtract": b - s.r * s.v_threshold, "zero": b - b * s.r, "none": b}[reset_mechanism]
        return {"r": _fired(s.v, s.v_threshold), "syn": syn, "v": v}

    def fire(self, s):
        return above(s.v, s.v_threshold)

    def on_spike(self, s, reset_mechanism="subtract", reset_delay=True):
        return {} if reset_delay else _reset_after(s, reset_mechanism)
