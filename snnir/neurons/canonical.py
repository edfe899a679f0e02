"""What a neuron *is*, read from its equations: the canonical coefficients of a linear (CUBA-)LIF.

Exporters that must name a neuron in another system's vocabulary (Loihi's CUBA neuron, NIR's
``IF``/``LIF``/``CubaLIF``) do not look at its class name: they read these coefficients from the
model's sympy equations, so a user's own model whose equations are LIF's exports like LIF. Every
neuron this recognises has the per-step form

    i[t] = (1 - current_decay) i[t-1] + input_gain x[t]        (only with a synaptic current i)
    v[t] = (1 - voltage_decay) v[t-1] + voltage_decay leak + i[t]   (i[t] = input_gain x[t] without one)
    spike = v[t] >= threshold, then the reset: hard (v = reset_value), soft (v -= threshold) or none

A model without a current state has ``current_decay = 1`` (nothing persists: Loihi's ``du = 4096``);
IF has ``voltage_decay = 0``. The coefficients are read with ``sympy.Poly`` in the state and input
symbols: any non-linear term, a state the update cannot be written this way with (adaptation), an
adaptive threshold or a spike-triggered update raises ``NotCanonicalError`` saying why.

Example:
    >>> import sympy as sp
    >>> from snnir.neurons import NeuronModel
    >>> class MyLeaky(NeuronModel):                       # LIF written differently
    ...     params = {"beta": 0.75}
    ...     def charge(self, s, **options):
    ...         return {"v": s.beta * s.v + (1 - s.beta) * s.v_reset + s.x}
    >>> form = canonical_form("MyLeaky")
    >>> form.current, form.voltage_decay, form.input_gain, form.leak
    (None, 1 - beta, 1, v_reset)
    >>> c = form.evaluate({"beta": 0.75, "v_reset": 0.0, "v_threshold": 1.0})
    >>> c.voltage_decay, c.current_decay, c.reset, c.reset_value
    (0.25, 1.0, 'hard', 0.0)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import sympy as sp

from snnir.errors import GraphError
from snnir.neurons.model import Equations, ResetKind, get_model


class NotCanonicalError(GraphError):
    """The model's equations are not a linear (CUBA-)LIF / IF (the message says what differs)."""


Value = float | np.ndarray


@dataclass(frozen=True)
class Canonical:
    """Canonical coefficients with numbers: floats, or arrays for per-neuron parameters."""

    model: str
    current: str | None
    current_decay: Value
    voltage_decay: Value
    input_gain: Value
    leak: Value
    reset: ResetKind
    reset_value: Value | None
    threshold: Value

    def scalar(self, field: str) -> float:
        """``field`` as one float; ``NotCanonicalError`` if it differs across neurons."""
        value = np.asarray(getattr(self, field), np.float64)
        if value.size == 0 or np.any(value != value.reshape(-1)[0]):
            raise NotCanonicalError(f"neuron model {self.model}: {field} differs across neurons "
                                    f"(values {np.unique(value)[:4]}...)")
        return float(value.reshape(-1)[0])


@dataclass(frozen=True)
class CanonicalForm:
    """Canonical coefficients as sympy expressions of the model's parameters (see the module doc)."""

    model: str
    current: str | None
    current_decay: sp.Expr
    voltage_decay: sp.Expr
    input_gain: sp.Expr
    leak: sp.Expr
    reset: ResetKind
    reset_value: sp.Expr | None
    threshold: sp.Expr

    def evaluate(self, values: dict[str, Any]) -> Canonical:
        """The coefficients for parameter ``values`` (name -> number or per-neuron array)."""
        out: dict[str, Any] = {"model": self.model, "current": self.current, "reset": self.reset}
        for f in fields(self):
            expr = getattr(self, f.name)
            if isinstance(expr, sp.Basic):
                out[f.name] = _evaluate(expr, values, self.model, f.name)
            elif f.name not in out:
                out[f.name] = expr
        return Canonical(**out)


def _evaluated(e: sp.Basic) -> sp.Basic:
    """``e`` rebuilt with evaluation on (models keep their written, unevaluated order)."""
    return e if e.is_Atom else e.func(*[_evaluated(a) for a in e.args])


def _evaluate(expr: sp.Expr, values: dict[str, Any], model: str, what: str) -> Value:
    names = sorted(s.name for s in expr.free_symbols)
    missing = [n for n in names if values.get(n) is None]
    if missing:
        raise NotCanonicalError(f"neuron model {model}: {what} needs parameters {missing}")
    args = [np.asarray(values[n], np.float64) for n in names]
    fn = sp.lambdify([sp.Symbol(n, real=True) for n in names], expr,
                     modules=[{"sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a))}, "numpy"])
    result = np.asarray(fn(*args), np.float64)
    if args:
        result = np.broadcast_to(result, np.broadcast_shapes(*(a.shape for a in args))).copy()
    return float(result) if result.ndim == 0 else result


def _linear(eq: Equations, name: str, expr: sp.Expr, gens: list[sp.Symbol]) -> dict[sp.Symbol | int, sp.Expr]:
    """Coefficients of ``expr`` in ``gens`` (key 1: the constant term); refuses non-linear terms."""
    expr = _evaluated(eq.unhoisted(expr))
    try:
        poly = sp.Poly(expr, *gens)
    except sp.PolynomialError:
        raise NotCanonicalError(f"neuron model {eq.model}: the update of {name!r} is not a polynomial in "
                                f"{[str(g) for g in gens]}") from None
    coeffs: dict[sp.Symbol | int, sp.Expr] = {}
    for monomial, coeff in poly.as_dict().items():
        if sum(monomial) > 1:
            term = sp.Mul(*[g ** k for g, k in zip(gens, monomial)])
            raise NotCanonicalError(f"neuron model {eq.model}: the update of {name!r} is non-linear "
                                    f"(term {term}); only linear (CUBA-)LIF / IF neurons have a canonical form")
        key = next((g for g, k in zip(gens, monomial) if k), 1)
        coeffs[key] = sp.simplify(coeff)
    return coeffs


def linear_update(expr: sp.Expr, state: str, x: str = "x") -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(decay, gain, drift)`` of a one-state update ``state <- (1 - decay) state + gain x + drift``
    written as a sympy expression (e.g. the ``synapse_filter`` op's ``i - i / tau + x``).

    Example:
        >>> import sympy as sp
        >>> i, x, tau = sp.symbols("i x tau", real=True)
        >>> linear_update(i - i / tau + x, "i")
        (1/tau, 1, 0)
    """
    s, u = sp.Symbol(state, real=True), sp.Symbol(x, real=True)
    poly = sp.Poly(_evaluated(expr), s, u)
    if poly.total_degree() > 1:
        raise NotCanonicalError(f"the update {expr} of {state!r} is not linear")
    c = dict(poly.as_dict())
    return (sp.simplify(1 - c.get((1, 0), 0)), sp.simplify(c.get((0, 1), sp.Integer(0))),
            sp.simplify(c.get((0, 0), sp.Integer(0))))


def _reject(coeffs: dict, allowed: set, eq: Equations, name: str, why: str) -> None:
    extra = [k for k in coeffs if k not in allowed and coeffs[k] != 0]
    if extra:
        raise NotCanonicalError(f"neuron model {eq.model}: the update of {name!r} {why} (terms in "
                                f"{[str(k) for k in extra]})")


def form_of(eq: Equations) -> CanonicalForm:
    """The canonical form of built equations (see ``canonical_form``)."""
    x, v = eq.x, eq.symbol("v")
    states = [eq.symbol(s) for s in eq.states]
    order = [k for k, _ in eq.charge]
    updates = dict(eq.charge)
    if len(updates) != len(order) or set(order) != set(eq.states):
        raise NotCanonicalError(f"neuron model {eq.model}: every state must be updated exactly once per step "
                                f"(states {list(eq.states)}, updates {order})")
    others = [s for s in eq.states if s != "v"]
    if len(others) > 1:
        raise NotCanonicalError(f"neuron model {eq.model}: states {list(eq.states)}; a (CUBA-)LIF has v and at "
                                "most one synaptic current")
    current = others[0] if others else None
    if current is None:
        cv = _linear(eq, "v", updates["v"], [v, x])
        voltage_decay, gain, drift = 1 - cv.get(v, 0), cv.get(x, sp.Integer(0)), cv.get(1, sp.Integer(0))
        current_decay = sp.Integer(1)
    else:
        i = eq.symbol(current)
        ci = _linear(eq, current, updates[current], [*states, x])
        _reject(ci, {i, x}, eq, current, "must depend on itself and the input only, as a synaptic current does")
        if order.index(current) > order.index("v"):
            raise NotCanonicalError(f"neuron model {eq.model}: v is updated before {current!r}, so the voltage "
                                    "reads last step's current; CUBA neurons update the current first")
        cv = _linear(eq, "v", updates["v"], [*states, x])
        _reject(cv, {v, i, 1}, eq, "v", f"must depend on v and the current {current!r} only")
        coupling = cv.get(i, sp.Integer(0))
        if coupling == 0:
            raise NotCanonicalError(f"neuron model {eq.model}: the current {current!r} does not drive v")
        current_decay = sp.simplify(1 - ci.get(i, 0))
        gain = sp.simplify(ci.get(x, sp.Integer(0)) * coupling)
        voltage_decay, drift = 1 - cv.get(v, 0), cv.get(1, sp.Integer(0))
    voltage_decay = sp.simplify(voltage_decay)
    if gain == 0:
        raise NotCanonicalError(f"neuron model {eq.model}: the input x does not reach v")
    if voltage_decay == 0:
        if drift != 0:
            raise NotCanonicalError(f"neuron model {eq.model}: v drifts by {sp.nsimplify(drift)} per step without "
                                    "input and without leak (a constant current); that is not a canonical neuron")
        leak = sp.Integer(0)
    else:
        leak = sp.simplify(drift / voltage_decay)
    threshold = sp.simplify(_evaluated(v - eq.unhoisted(eq.fire)))
    if threshold.free_symbols & {*states, x}:
        raise NotCanonicalError(f"neuron model {eq.model}: the threshold {threshold} depends on the state "
                                "(an adaptive threshold)")
    reset, reset_value = _reset(eq, v, threshold)
    return CanonicalForm(eq.model, current, current_decay, voltage_decay, gain, leak, reset, reset_value, threshold)


def _reset(eq: Equations, v: sp.Symbol, threshold: sp.Expr) -> tuple[ResetKind, sp.Expr | None]:
    posts = dict(eq.reset)
    if set(posts) - {"v"}:
        raise NotCanonicalError(f"neuron model {eq.model}: a spike updates {sorted(set(posts) - {'v'})} "
                                "(spike-triggered adaptation)")
    if "v" not in posts:
        return "none", None
    fired = sp.simplify(_evaluated(eq.unhoisted(posts["v"])).subs(eq.spike, 1))
    silent = sp.simplify(_evaluated(eq.unhoisted(posts["v"])).subs(eq.spike, 0))
    if silent != v:
        raise NotCanonicalError(f"neuron model {eq.model}: the reset changes v without a spike")
    if v not in fired.free_symbols:
        return "hard", fired
    if sp.simplify(fired - (v - threshold)) == 0:
        return "soft", None
    raise NotCanonicalError(f"neuron model {eq.model}: the reset v -> {fired} is neither hard nor soft")


@functools.lru_cache(maxsize=256)
def _cached_form(model_cls: type, reset: ResetKind, options: tuple[tuple[str, Any], ...]) -> CanonicalForm:
    return form_of(model_cls().equations(reset=reset, **dict(options)))


def canonical_form(model: str, reset: ResetKind = "hard", **options: Any) -> CanonicalForm:
    """The canonical form of the registered model ``model`` (cached per model, reset and options)."""
    m = get_model(model)
    return _cached_form(type(m), reset, tuple(sorted({**m.options, **options}.items())))


def canonical(node: Any) -> Canonical:
    """The canonical coefficients of a ``neuron`` or ``integrator`` node, with its parameter values
    (attributes, and learnable or per-neuron arrays from ``params``). An integrator has reset ``none``.

    Example:
        >>> import numpy as np, snnir
        >>> g = snnir.Graph(); x = g.add_input((2,))
        >>> n = g.add_node("neuron", [x], attrs={"model": "CubaLIF", "tau_syn": 4.0, "tau_mem": 2.0})
        >>> c = canonical(g.node(n))
        >>> c.current, c.current_decay, c.voltage_decay, c.input_gain, c.leak, c.threshold
        ('i', 0.25, 0.5, 1.0, 0.0, 1.0)
    """
    if node.op not in ("neuron", "integrator"):
        raise NotCanonicalError(f"node {node.id!r} ({node.op}) is not a neuron")
    from snnir.ops.neuron import parameter_values

    a = node.attrs
    m = get_model(a["model"])
    soft = "v_reset" in a and a["v_reset"] is None  # a per-neuron v_reset is an array in params: hard
    reset: ResetKind = "none" if node.op == "integrator" else ("soft" if soft else "hard")
    form = canonical_form(m.name, reset, **{k: a[k] for k in m.options if k in a})
    return form.evaluate(parameter_values(node))


__all__ = ["Canonical", "CanonicalForm", "NotCanonicalError", "canonical", "canonical_form", "form_of", "linear_update"]
