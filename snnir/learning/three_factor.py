"""Three-factor learning: an eligibility trace of STDP pairings, turned into weight changes by a
modulator (reward, reward-prediction error, dopamine) when it arrives (Izhikevich 2007; Florian
2007; Fremaux & Gerstner 2016)."""

from __future__ import annotations

from snnir.errors import GraphError
from snnir.learning.rule import PlasticityRule
from snnir.learning.stdp import euler_trace


class ThreeFactor(PlasticityRule):
    """Reward-modulated STDP with a per-synapse eligibility trace ``e``.

    Traces as ``STDP`` (Euler decay, all-to-all or ``nearest``). Per synapse and sample:
        ``e <- e - e / tau_e + a_plus * x_pre * post - a_minus * x_post * pre``
        ``dw = lr * reward * e``
    ``reward`` is the modulator given at each ``step`` (a number, one value per sample, or one
    per recorded step and sample); the update of a step sees the eligibility including that
    step's pairings. ``a_minus = 0`` gives the Hebbian eligibility ``x_pre * post``.

    Example:
        >>> rule = ThreeFactor(tau_e=50.0, lr=0.01)
        >>> [name for name, _ in rule.equations().synapse_updates], rule.equations().dw
        (['e'], e*(lr*reward))
    """

    pre_traces = {"x_pre": 0.0}
    post_traces = {"x_post": 0.0}
    synapse_states = {"e": 0.0}
    modulators = ("reward",)
    params = {"tau_pre": 20.0, "tau_post": 20.0, "tau_e": 100.0, "a_plus": 1.0, "a_minus": 1.0, "lr": 0.01}
    options = {"nearest": False}

    def traces(self, s, nearest=False, **options):
        return {"x_pre": euler_trace(s.x_pre, s.pre, s.tau_pre, nearest),
                "x_post": euler_trace(s.x_post, s.post, s.tau_post, nearest)}

    def synapse(self, s, **options):
        return {"e": s.e - s.e / s.tau_e + (s.a_plus * s.x_pre * s.post - s.a_minus * s.x_post * s.pre)}

    def dw(self, s, **options):
        return s.lr * s.reward * s.e

    def check(self) -> None:
        p = self.params_values()
        for tau in ("tau_pre", "tau_post", "tau_e"):
            if p[tau] <= 0:
                raise GraphError(f"plasticity rule {self.name}: {tau}={p[tau]} must be > 0 (time steps)")
