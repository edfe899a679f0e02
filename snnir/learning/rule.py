"""``PlasticityRule``: a local learning rule declared as discrete-time sympy equations.

One step of a rule on a synapse with weight ``w`` from pre-synaptic neuron ``i`` to post-synaptic
neuron ``j``, with ``pre``/``post`` the neurons' spikes (0 or 1) of this step:

1. **traces**: ordered updates of per-neuron trace variables. A pre trace reads ``pre``, the pre
   traces and the parameters (``x_pre <- x_pre - x_pre / tau_pre + pre``); a post trace the same
   on the post side. Later statements see the values assigned before them, as in code.
2. **synapse** (optional): ordered updates of per-synapse states such as an eligibility trace,
   one per synapse *and sample*, from anything: spikes, (updated) traces, ``w``, the rule's
   modulators (a reward), its parameters.
3. **dw**: the weight increment, from the same symbols, seeing the updated states.

``dw`` is per sample and summed over the batch (as SpikingJelly sums). Where one weight serves
several positions (a convolution, a linear layer on ``[..., positions, features]``), each product
of a pre-synaptic and a post-synaptic quantity is summed over the positions: a convolution's
update is the correlation of pre traces with post spikes. Then ``w <- min(max(w + dw, w_min),
w_max)``: every rule has the bound parameters ``w_min``/``w_max`` (unbounded by default).

The synaptic expressions must be sums of products ``(pre factor) x (post factor) x (synapse
factor)``: that is what lets every backend compute them as matrix products instead of a
``[batch, out, in]`` loop per term. The lowering (``snnir.lowering.lower_rule``) separates them;
a term it cannot separate is refused with the term named.

A user's rule is a subclass, registered by its class name (so a saved graph can name it):

    >>> import sympy as sp
    >>> from snnir.learning import PlasticityRule
    >>> class Hebb(PlasticityRule):
    ...     '''dw = eta * x_pre * post: potentiation only, pre trace with exponential decay.'''
    ...     pre_traces = {"x_pre": 0.0}
    ...     params = {"tau": 10.0, "eta": 0.01}
    ...     def traces(self, s, **options):
    ...         return {"x_pre": s.x_pre * sp.exp(-1 / s.tau) + s.pre}
    ...     def dw(self, s, **options):
    ...         return s.eta * s.x_pre * s.post
    >>> rule = Hebb(eta=0.1)
    >>> rule.params_values()["eta"], rule.equations().dw
    (0.1, post*(eta*x_pre))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import sympy as sp

from snnir.errors import GraphError

_REGISTRY: dict[str, type[PlasticityRule]] = {}

# Every rule has weight bounds: w <- min(max(w + dw, w_min), w_max) after each step.
COMMON_PARAMS = {"w_min": -math.inf, "w_max": math.inf}
RESERVED = ("pre", "post", "w", "dw", "n_samples")


@dataclass(frozen=True)
class RuleEquations:
    """A rule's equations for one set of options, over the raw symbol names it declares.

    ``trace_updates``: ordered ``(trace, expr)``, pre traces reading only pre-side symbols and
    parameters, post traces only post-side ones; ``synapse_updates``: ordered ``(state, expr)``;
    ``dw``: the per-sample weight increment; ``init``: each trace's and state's initial value.
    """

    rule: str
    pre_traces: tuple[str, ...]
    post_traces: tuple[str, ...]
    synapse_states: tuple[str, ...]
    modulators: tuple[str, ...]
    params: tuple[str, ...]
    trace_updates: tuple[tuple[str, sp.Expr], ...]
    synapse_updates: tuple[tuple[str, sp.Expr], ...]
    dw: sp.Expr
    init: tuple[tuple[str, float], ...]

    @property
    def batched(self) -> bool:
        """Whether the synaptic step runs per sample: it keeps per-synapse states, or reads a
        modulator (which may differ per sample); otherwise pairings are summed over the batch
        before it runs once."""
        return bool(self.synapse_states or self.modulators)


def _symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


class PlasticityRule:
    """Base class of plasticity rules. Subclasses set the class attributes and ``traces``/``dw``.

    Attributes:
        pre_traces: per pre-synaptic neuron trace -> initial value.
        post_traces: per post-synaptic neuron trace -> initial value.
        synapse_states: per synapse (and sample) state -> initial value (eligibility traces).
        modulators: names of the signals given at each ``step`` (a reward, a dopamine level).
        params: rule parameters -> default value (floats); ``w_min``/``w_max`` are common to all.
        options: switches that select the form of the equations -> default (bool, int or str).

    An instance holds one choice of parameter values and options: ``STDP(tau_pre=10,
    multiplicative=True)``. ``equations()`` gives the sympy form, ``to_dict()`` the JSON form a
    graph stores.
    """

    pre_traces: ClassVar[dict[str, float]] = {}
    post_traces: ClassVar[dict[str, float]] = {}
    synapse_states: ClassVar[dict[str, float]] = {}
    modulators: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[dict[str, float]] = {}
    options: ClassVar[dict[str, bool | int | str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        groups = {"pre_traces": list(cls.pre_traces), "post_traces": list(cls.post_traces),
                  "synapse_states": list(cls.synapse_states), "modulators": list(cls.modulators),
                  "params": [*COMMON_PARAMS, *cls.params], "options": list(cls.options)}
        seen: dict[str, str] = {}
        for group, names in groups.items():
            for name in names:
                if not name.isidentifier():
                    raise TypeError(f"plasticity rule {cls.__name__}: {group} name {name!r} is not an identifier")
                if name in RESERVED:
                    raise TypeError(f"plasticity rule {cls.__name__}: {name!r} is reserved ({', '.join(RESERVED)})")
                if name in seen:
                    raise TypeError(f"plasticity rule {cls.__name__}: {name!r} is both in {seen[name]} and {group}")
                seen[name] = group
        _REGISTRY[cls.__name__] = cls

    def __init__(self, **values: Any) -> None:
        defaults = self.all_params()
        unknown = set(values) - set(defaults) - set(self.options)
        if unknown:
            raise GraphError(f"plasticity rule {self.name} has no parameter or option {sorted(unknown)}; "
                             f"parameters {sorted(defaults)}, options {sorted(self.options)}")
        self._options: dict[str, Any] = {}
        for k, default in self.options.items():
            v = values.get(k, default)
            if type(v) is not type(default):
                raise GraphError(f"plasticity rule {self.name}: option {k}={v!r} must be a "
                                 f"{type(default).__name__} like its default {default!r}")
            self._options[k] = v
        self._params: dict[str, float] = {}
        for k, default in defaults.items():
            v = values.get(k, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not _is_real_scalar(v):
                raise GraphError(f"plasticity rule {self.name}: parameter {k}={v!r} must be a number")
            v = float(v)
            if math.isnan(v) or (math.isinf(v) and k not in COMMON_PARAMS):
                raise GraphError(f"plasticity rule {self.name}: parameter {k}={v} must be finite")
            self._params[k] = v
        if self._params["w_min"] > self._params["w_max"]:
            raise GraphError(f"plasticity rule {self.name}: w_min={self._params['w_min']} exceeds "
                             f"w_max={self._params['w_max']}")
        self.check()

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- what subclasses write -------------------------------------------------------------------
    def traces(self, s: SimpleNamespace, **options: Any) -> dict[str, sp.Expr]:
        """The update of every pre and post trace for one step (``s`` holds the symbols)."""
        return {}

    def synapse(self, s: SimpleNamespace, **options: Any) -> dict[str, sp.Expr]:
        """Ordered updates of the per-synapse states (default: none)."""
        return {}

    def dw(self, s: SimpleNamespace, **options: Any) -> sp.Expr:
        """The weight increment of one step, per synapse and sample."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuse parameter values the equations cannot use (override; raise ``GraphError``)."""

    # --- derived ---------------------------------------------------------------------------------
    @classmethod
    def all_params(cls) -> dict[str, float]:
        """Every parameter with its default: the bounds and the rule's own."""
        return {**COMMON_PARAMS, **cls.params}

    def params_values(self) -> dict[str, float]:
        """This instance's parameter values (floats)."""
        return dict(self._params)

    def option_values(self) -> dict[str, Any]:
        """This instance's options."""
        return dict(self._options)

    def equations(self) -> RuleEquations:
        """The sympy equations for this instance's options (cached per class and options)."""
        return _equations(type(self), tuple(sorted(self._options.items())))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a graph stores: ``{"rule", "options", "params"}``; infinite bounds are
        written as the strings ``"inf"``/``"-inf"`` (JSON has no infinity)."""
        return {"rule": self.name, "options": dict(self._options),
                "params": {k: _encode(v) for k, v in self._params.items()}}

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and self._options == other._options  # type: ignore[attr-defined]
                and self._params == other._params)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self._options.items())), tuple(sorted(self._params.items()))))

    def __repr__(self) -> str:
        changed = {**{k: v for k, v in self._options.items() if v != self.options[k]},
                   **{k: v for k, v in self._params.items() if v != self.all_params()[k]}}
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _is_real_scalar(v: Any) -> bool:
    return isinstance(v, np.generic) and np.isrealobj(v)


def _encode(v: float) -> float | str:
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else v


def _decode(who: str, k: str, v: Any) -> float:
    if isinstance(v, str):
        if v in ("inf", "-inf"):
            return math.inf if v == "inf" else -math.inf
        raise GraphError(f"{who}: parameter {k}={v!r} is neither a number nor 'inf'/'-inf'")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise GraphError(f"{who}: parameter {k}={v!r} must be a number")
    return float(v)


@cache
def _equations(cls: type[PlasticityRule], options: tuple[tuple[str, Any], ...]) -> RuleEquations:
    rule = cls.__new__(cls)  # the equations depend on the options only
    opts = dict(options)
    who = f"plasticity rule {cls.__name__}"
    names = [*cls.all_params(), *cls.pre_traces, *cls.post_traces, *cls.synapse_states, *cls.modulators]
    s = SimpleNamespace(**{n: _symbol(n) for n in [*names, "pre", "post", "w"]})
    with sp.evaluate(False):  # keep the written order of operations (bit-for-bit with peers)
        traces = [(k, sp.sympify(e)) for k, e in rule.traces(s, **opts).items()]
        synapse = [(k, sp.sympify(e)) for k, e in rule.synapse(s, **opts).items()]
        dw = sp.sympify(rule.dw(s, **opts))
    params = {_symbol(n) for n in cls.all_params()}
    pre_side = {s.pre, *(_symbol(n) for n in cls.pre_traces)} | params
    post_side = {s.post, *(_symbol(n) for n in cls.post_traces)} | params
    for k, e in traces:
        side = pre_side if k in cls.pre_traces else post_side if k in cls.post_traces else None
        if side is None:
            raise GraphError(f"{who} updates trace {k!r}, which is not among its pre_traces "
                             f"{sorted(cls.pre_traces)} or post_traces {sorted(cls.post_traces)}")
        stray = e.free_symbols - side
        if stray:
            where = "pre" if k in cls.pre_traces else "post"
            raise GraphError(f"{who}: {where} trace {k!r} reads {sorted(map(str, stray))}; a {where}-synaptic trace "
                             f"reads only '{where}', the {where} traces and the parameters")
    missing = [k for k in [*cls.pre_traces, *cls.post_traces] if k not in dict(traces)]
    missing += [k for k in cls.synapse_states if k not in dict(synapse)]
    if missing:
        raise GraphError(f"{who} declares {missing} but gives no update for them")
    stray_states = [k for k, _ in synapse if k not in cls.synapse_states]
    if stray_states:
        raise GraphError(f"{who} updates {stray_states}, which are not among its synapse_states "
                         f"{sorted(cls.synapse_states)}")
    known = {*(_symbol(n) for n in names), s.pre, s.post, s.w}
    for what, e in [*synapse, ("dw", dw)]:
        stray = e.free_symbols - known
        if stray:
            raise GraphError(f"{who}: {what} reads unknown symbols {sorted(map(str, stray))}")
    init = tuple((k, float(v)) for k, v in {**cls.pre_traces, **cls.post_traces, **cls.synapse_states}.items())
    return RuleEquations(cls.__name__, tuple(cls.pre_traces), tuple(cls.post_traces), tuple(cls.synapse_states),
                         tuple(cls.modulators), tuple(cls.all_params()), tuple(traces), tuple(synapse), dw, init)


def get_rule(name: str) -> type[PlasticityRule]:
    """The registered rule class ``name``; the error lists the known ones and how to add more."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise GraphError(f"unknown plasticity rule {name!r}; known: {', '.join(sorted(_REGISTRY))}. A user-defined "
                         "rule is registered when its PlasticityRule subclass is defined: import the module that "
                         "defines it first") from None


def registered_rules() -> list[str]:
    return sorted(_REGISTRY)


def rule_from_dict(data: Any, who: str = "plasticity") -> PlasticityRule:
    """Inverse of ``PlasticityRule.to_dict`` (strict: a malformed entry is refused by name)."""
    if not isinstance(data, dict) or set(data) - {"rule", "options", "params"} or "rule" not in data:
        raise GraphError(f"{who}: a rule is {{'rule': name, 'options': {{...}}, 'params': {{...}}}}, got {data!r}")
    cls = get_rule(data["rule"])
    options, params = data.get("options", {}), data.get("params", {})
    if not isinstance(options, dict) or not isinstance(params, dict):
        raise GraphError(f"{who}: rule {data['rule']!r} options and params must be objects")
    values = {**options, **{k: _decode(f"{who} rule {cls.__name__}", k, v) for k, v in params.items()}}
    return cls(**values)


__all__ = ["COMMON_PARAMS", "PlasticityRule", "RuleEquations", "get_rule", "registered_rules", "rule_from_dict"]
