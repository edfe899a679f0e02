"""Local learning rules declared as equations: STDP, three-factor rules, your own.

- ``PlasticityRule``: a rule as sympy equations (traces with their decay, per-synapse states, a
  weight increment from spikes, traces, the weight and modulators), like a ``NeuronModel``.
  Built-ins: ``STDP`` (pair-based; additive or multiplicative; all-to-all or nearest-spike;
  weight bounds) and ``ThreeFactor`` (eligibility trace x reward).
- ``Learner(...)``: applies a rule to a linear or convolutional synapse of a torch network
  (``snnir.nn`` modules or a compiled graph); its code is generated from the equations by
  ``snnir.lowering`` (a torch reference path and a fused CPU kernel).
- ``attach(graph, synapse, rule)``: the same on the IR (``graph.meta["plasticity"]``): it traces,
  saves and loads with the graph, and ``snnir.compile`` turns it into ``module.learners``.

This package imports sympy only; ``Learner`` loads the torch backend on first use.

Example:
    >>> import torch
    >>> from snnir import nn as snn
    >>> from snnir.learning import STDP, Learner
    >>> net = torch.nn.Sequential(snn.Linear(8, 4, bias=False), snn.IF())
    >>> _ = snn.set_step_mode(net, "m")
    >>> learner = Learner(net[0], STDP(a_plus=0.01, a_minus=0.012, w_min=-1.0, w_max=1.0), post=net[1])
    >>> _ = torch.manual_seed(0); spikes = (torch.rand(20, 2, 8) < 0.3).float()
    >>> with torch.no_grad():
    ...     out = net(spikes)
    >>> dw = learner.step()                    # applies the update of every recorded step
    >>> dw.shape, bool(net[0].weight.abs().max() <= 1.0)
    (torch.Size([4, 8]), True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snnir.learning.attribute import Plasticity, attach, detach, infer_post, plasticity
from snnir.learning.rule import PlasticityRule, RuleEquations, get_rule, registered_rules, rule_from_dict
from snnir.learning.stdp import STDP
from snnir.learning.three_factor import ThreeFactor

if TYPE_CHECKING:
    from snnir.backends.torch.plasticity import Learner


def __getattr__(name: str) -> Any:
    if name == "Learner":  # the torch side loads on first use
        from snnir.backends.torch.plasticity import Learner

        return Learner
    raise AttributeError(f"module 'snnir.learning' has no attribute {name!r}")


__all__ = ["STDP", "Learner", "Plasticity", "PlasticityRule", "RuleEquations", "ThreeFactor", "attach", "detach",
           "get_rule", "infer_post", "plasticity", "registered_rules", "rule_from_dict"]
