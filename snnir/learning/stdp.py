"""Pair-based spike-timing-dependent plasticity (Bi & Poo 1998; Song, Miller & Abbott 2000)."""

from __future__ import annotations

import math

from snnir.errors import GraphError
from snnir.learning.rule import PlasticityRule


def euler_trace(x, spike, tau, nearest: bool):
    """A spike trace decaying by ``1 - 1/tau`` per step (SpikingJelly's convention).

    All-to-all pairing adds 1 per spike: ``x - x / tau + spike``. Nearest-spike pairing resets
    the trace to 1 at a spike instead: ``spike + (1 - spike) * (x - x / tau)`` (spikes are 0 or 1).
    """
    decayed = x - x / tau
    return spike + (1 - spike) * decayed if nearest else decayed + spike


class STDP(PlasticityRule):
    """Pair-based STDP with one pre and one post trace.

    Traces (Euler decay, one step = one time unit):
        ``x_pre <- x_pre - x_pre / tau_pre + pre``, ``x_post <- x_post - x_post / tau_post + post``
        (``nearest=True``: a spike sets its trace to 1 instead of adding 1: nearest-spike pairing).

    Weight increment: a post spike potentiates by the pre trace, a pre spike depresses by the post
    trace:
        additive:        ``dw = a_plus * x_pre * post - a_minus * x_post * pre``
        multiplicative:  ``dw = a_plus * (w_max - w) * x_pre * post - a_minus * (w - w_min) * x_post * pre``
                         (soft bounds: needs finite ``w_min``/``w_max``)
    then ``w <- min(max(w + dw, w_min), w_max)`` (hard bounds, unbounded by default).

    SpikingJelly's ``STDPLearner(tau_pre, tau_post, f_pre, f_post)`` is this rule with
    ``f_post(w) = a_plus`` and ``f_pre(w) = a_minus`` (additive), ``f_post(w) = a_plus * (w_max - w)``
    and ``f_pre(w) = a_minus * (w - w_min)`` (multiplicative), no bounds.

    Example:
        >>> rule = STDP(tau_pre=10.0, a_minus=0.5)
        >>> rule.equations().dw
        post*(a_plus*x_pre) - pre*a_minus*x_post
    """

    pre_traces = {"x_pre": 0.0}
    post_traces = {"x_post": 0.0}
    params = {"tau_pre": 20.0, "tau_post": 20.0, "a_plus": 1.0, "a_minus": 1.0}
    options = {"multiplicative": False, "nearest": False}

    def traces(self, s, nearest=False, **options):
        return {"x_pre": euler_trace(s.x_pre, s.pre, s.tau_pre, nearest),
                "x_post": euler_trace(s.x_post, s.post, s.tau_post, nearest)}

    def dw(self, s, multiplicative=False, **options):
        if multiplicative:
            return s.a_plus * (s.w_max - s.w) * s.x_pre * s.post - s.a_minus * (s.w - s.w_min) * s.x_post * s.pre
        return s.a_plus * s.x_pre * s.post - s.a_minus * s.x_post * s.pre

    def check(self) -> None:
        p = self.params_values()
        for tau in ("tau_pre", "tau_post"):
            if p[tau] <= 0:
                raise GraphError(f"plasticity rule {self.name}: {tau}={p[tau]} must be > 0 (time steps)")
        if self.option_values()["multiplicative"] and not (math.isfinite(p["w_min"]) and math.isfinite(p["w_max"])):
            raise GraphError(f"plasticity rule {self.name}(multiplicative=True) scales updates by the distance to the "
                             f"bounds: give finite w_min and w_max (got {p['w_min']}, {p['w_max']})")
