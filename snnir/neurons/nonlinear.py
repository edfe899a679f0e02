"""Non-linear integrate-and-fire neurons: QIF, EIF and Izhikevich."""

from __future__ import annotations

import sympy as sp

from snnir.neurons.model import TAU_WHY, NeuronModel, Range


class QIF(NeuronModel):
    """Quadratic integrate-and-fire, ``tau dv/dt = x + a0 (v - v_rest)(v - v_c)`` (Euler, dt = 1).

    ``v[t] = v + (x + a0 (v - v_rest)(v - v_c)) / tau``; defaults follow SpikingJelly.
    """

    params = {"tau": 2.0, "v_c": 0.8, "a0": 1.0, "v_rest": 0.0}
    defaults = {"v_reset": -0.1}
    ranges = {"tau": Range(1.0, why=TAU_WHY), "a0": Range(0.0, lo_open=True, why="the quadratic term must grow")}

    def charge(self, s, **options):
        return {"v": s.v + (s.x + s.a0 * (s.v - s.v_rest) * (s.v - s.v_c)) / s.tau}


class EIF(NeuronModel):
    """Exponential integrate-and-fire (Fourcaud-Trocmé et al. 2003), Euler with dt = 1:

    ``v[t] = v + (x + v_rest - v + delta_T exp((v - theta_rh) / delta_T)) / tau``
    """

    params = {"tau": 2.0, "delta_T": 1.0, "theta_rh": 0.8, "v_rest": 0.0}
    defaults = {"v_reset": -0.1}
    ranges = {"tau": Range(1.0, why=TAU_WHY),
              "delta_T": Range(0.0, lo_open=True, why="the sharpness divides (v - theta_rh)")}

    def charge(self, s, **options):
        return {"v": s.v + (s.x + s.v_rest - s.v + s.delta_T * sp.exp((s.v - s.theta_rh) / s.delta_T)) / s.tau}


class Izhikevich(NeuronModel):
    """Izhikevich (2003), in mV and ms, Euler with step ``dt``:

    ``v <- v + dt (0.04 v^2 + 5 v + 140 - u + x)``, then ``u <- u + dt a (b v - u)`` with the new
    ``v`` (as in Izhikevich's reference code); on a spike (``v >= 30``) ``v <- c`` (``v_reset``)
    and ``u <- u + d``. Initial state ``v = c``, ``u = b c``. Defaults: regular spiking.
    """

    state = {"v": "v_reset", "u": lambda s: s.b * s.v_reset}
    params = {"a": 0.02, "b": 0.2, "d": 8.0, "dt": 1.0}
    defaults = {"v_threshold": 30.0, "v_reset": -65.0}
    ranges = {"dt": Range(0.0, lo_open=True, why="the Euler step")}

    def charge(self, s, **options):
        return {"v": s.v + s.dt * (0.04 * s.v**2 + 5 * s.v + 140 - s.u + s.x),
                "u": s.u + s.dt * s.a * (s.b * s.v - s.u)}

    def on_spike(self, s):
        return {"u": s.u + s.d * s.spike}
