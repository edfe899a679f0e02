"""Surrogate gradients, each declared once as a sympy expression.

A surrogate replaces the derivative of the Heaviside spike function ``H(x)``, ``x = v - threshold``.
Each one declares its backward ``g'(x)`` (what the spike's gradient becomes; the forward always
stays the exact step ``x >= 0``) and its *primitive* ``g(x)``, the smooth step that ``g'`` is the
derivative of (used for non-spiking relaxations). The tests check ``d/dx g == g'`` symbolically and
by finite differences, so the two cannot drift apart; backends compile ``g'`` from the expression.

Each surrogate declares the valid ``ranges`` of its parameters (``snnir.neurons.Range``, as neuron
models do), checked whenever one is built, by a user or from a graph file: a value outside them
(``alpha <= 0`` flips or kills the gradient, NaN poisons it) is a ``ParameterError`` naming the
surrogate, the parameter and the valid range.

Example:
    >>> from snnir.surrogate import ATan
    >>> s = ATan(alpha=2.0)
    >>> round(s.derivative_at(0.0), 6)   # alpha / 2 at the threshold
    1.0
    >>> ATan(alpha=-1.0)
    Traceback (most recent call last):
    ...
    snnir.errors.ParameterError: surrogate ATan: alpha = -1 is out of range: needs alpha > 0 (the sharpness \
of the gradient window; alpha <= 0 flips or removes the gradient)
"""

from __future__ import annotations

import numbers
from functools import cache
from typing import Any, ClassVar

import numpy as np
import sympy as sp

from snnir.errors import GraphError, ParameterError
from snnir.neurons.model import FLOAT32_MAX, Range

X = sp.Symbol("x", real=True)
_REGISTRY: dict[str, type[Surrogate]] = {}


class Surrogate:
    """Base of all surrogates: subclasses set ``params`` (defaults), ``ranges`` (valid values, every
    parameter must also be finite) and ``primitive``/``derivative``."""

    params: ClassVar[dict[str, float]] = {}
    ranges: ClassVar[dict[str, Range]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, **values: float) -> None:
        unknown = set(values) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__} takes {sorted(self.params)}, got {sorted(unknown)}")
        who = f"surrogate {type(self).__name__}"
        self.values = {**self.params, **{k: _number(who, k, v) for k, v in values.items()}}
        self.check_params(self.values, who)

    @classmethod
    def check_params(cls, values: dict[str, float], who: str | None = None) -> None:
        """Refuse values outside ``ranges``, non-finite or beyond float32 (``ParameterError`` naming
        ``who``, the parameter, the value and the valid range)."""
        who = who or f"surrogate {cls.__name__}"
        for name, value in values.items():
            rule = cls.ranges.get(name, Range())
            if rule.bad(np.float64(value)):
                why = f" ({rule.why})" if rule.why else ""
                raise ParameterError(f"{who}: {name} = {value:g} is out of range: needs {rule.describe(name)}{why}")
            if abs(value) > FLOAT32_MAX:
                raise ParameterError(f"{who}: {name} = {value:g} is beyond float32's range (+-3.4e38), the precision "
                                     "gradients are computed in")

    @staticmethod
    def primitive(x: sp.Expr, **params: sp.Symbol) -> sp.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def derivative(x: sp.Expr, **params: sp.Symbol) -> sp.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def symbols(cls) -> dict[str, sp.Symbol]:
        return {name: sp.Symbol(name, real=True) for name in cls.params}

    @classmethod
    def primitive_expr(cls) -> sp.Expr:
        """g(x) with the parameters as symbols."""
        return _primitive(cls)

    @classmethod
    def derivative_expr(cls) -> sp.Expr:
        """g'(x) with the parameters as symbols: the backward pass of the spike."""
        return _derivative(cls)

    def derivative_at(self, x: float) -> float:
        """g'(x) at one point, for these parameter values (float64, for checks and docs)."""
        subs = {self.symbols()[k]: v for k, v in self.values.items()}
        return float(self.derivative_expr().subs(subs).subs(X, x))

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the graph: ``{"name": ..., **params}``."""
        return {"name": type(self).__name__, **self.values}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.values == other.values  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.values.items()))))


@cache
def _primitive(cls: type[Surrogate]) -> sp.Expr:
    return cls.primitive(X, **cls.symbols())


@cache
def _derivative(cls: type[Surrogate]) -> sp.Expr:
    return cls.derivative(X, **cls.symbols())


def _number(who: str, name: str, value: Any) -> float:
    """``value`` as a float if it is one real number (a Python or numpy scalar, a one-element tensor)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{who}: {name} = {value!r} is not a number")
    return float(value)


def surrogate_from_dict(d: dict[str, Any]) -> Surrogate:
    """Inverse of ``Surrogate.to_dict`` (a graph's ``surrogate`` attribute); a ``GraphError`` names
    an unknown surrogate or parameter, a ``ParameterError`` a value out of range."""
    if not isinstance(d, dict):
        raise GraphError(f"a surrogate is given as {{'name': ..., <parameters>}}, got {d!r}")
    d = dict(d)
    name = d.pop("name", None)
    if not isinstance(name, str) or name not in _REGISTRY:
        raise GraphError(f"unknown surrogate {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[name]
    unknown = sorted(set(d) - set(cls.params), key=str)
    if unknown:
        raise GraphError(f"surrogate {name} has no parameter {unknown}; it takes {sorted(cls.params)}")
    return cls(**d)


def registered_surrogates() -> list[str]:
    return sorted(_REGISTRY)


_HALF = sp.Rational(1, 2)
_SHARPNESS = "the sharpness of the gradient window; alpha <= 0 flips or removes the gradient"
_SIGN = "a gradient value; a negative one would train the spike backwards"


def _sigmoid(z: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


class ATan(Surrogate):
    """g(x) = atan(π/2·αx)/π + 1/2;  g'(x) = α / (2(1 + (π/2·αx)²))."""

    params = {"alpha": 2.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return sp.atan(sp.pi / 2 * alpha * x) / sp.pi + _HALF

    @staticmethod
    def derivative(x, alpha):
        return alpha / 2 / (1 + (sp.pi / 2 * alpha * x) ** 2)


class Sigmoid(Surrogate):
    """g(x) = sigmoid(αx);  g'(x) = α·sg(αx)·(1 - sg(αx))."""

    params = {"alpha": 4.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return _sigmoid(alpha * x)

    @staticmethod
    def derivative(x, alpha):
        return alpha * _sigmoid(alpha * x) * (1 - _sigmoid(alpha * x))


class PiecewiseQuadratic(Surrogate):
    """g'(x) = α - α²|x| for |x| <= 1/α, else 0 (Esser et al. 2016)."""

    params = {"alpha": 1.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((0, x < -1 / alpha), (1, x > 1 / alpha),
                            (-alpha**2 * x * sp.Abs(x) / 2 + alpha * x + _HALF, True))

    @staticmethod
    def derivative(x, alpha):
        return sp.Piecewise((alpha - alpha**2 * sp.Abs(x), sp.Abs(x) <= 1 / alpha), (0, True))


class PiecewiseExp(Surrogate):
    """g'(x) = α/2 · exp(-α|x|)  (the Laplace-shaped pdf of SLAYER, Shrestha & Orchard 2018)."""

    params = {"alpha": 1.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((sp.exp(alpha * x) / 2, x < 0), (1 - sp.exp(-alpha * x) / 2, True))

    @staticmethod
    def derivative(x, alpha):
        return alpha / 2 * sp.exp(-alpha * sp.Abs(x))


class SoftSign(Surrogate):
    """g(x) = (αx / (1 + |αx|) + 1) / 2;  g'(x) = α / (2(1 + α|x|)²)."""

    params = {"alpha": 2.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return (alpha * x / (1 + sp.Abs(alpha * x)) + 1) / 2

    @staticmethod
    def derivative(x, alpha):
        return alpha / (2 * (1 + alpha * sp.Abs(x)) ** 2)


class Erf(Surrogate):
    """g(x) = erfc(-αx) / 2;  g'(x) = α/√π · exp(-α²x²)."""

    params = {"alpha": 2.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return sp.erfc(-alpha * x) / 2

    @staticmethod
    def derivative(x, alpha):
        return alpha / sp.sqrt(sp.pi) * sp.exp(-(alpha * x) ** 2)


class SuperSpike(Surrogate):
    """g'(x) = α / (|x| + 1)², SpikingJelly's SuperSpike (Zenke & Ganguli 2018, scaled by α)."""

    params = {"alpha": 1.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why="the gradient's height; alpha <= 0 flips or removes it")}

    @staticmethod
    def primitive(x, alpha):
        return alpha * x / (1 + sp.Abs(x)) + _HALF

    @staticmethod
    def derivative(x, alpha):
        return alpha / (sp.Abs(x) + 1) ** 2


class FastSigmoid(Surrogate):
    """g'(x) = 1 / (α|x| + 1)², snnTorch's ``fast_sigmoid`` (slope α = 25)."""

    params = {"alpha": 25.0}
    ranges = {"alpha": Range(0.0, why="the slope; alpha < 0 puts a pole in the gradient at |x| = -1/alpha")}

    @staticmethod
    def primitive(x, alpha):
        return x / (1 + alpha * sp.Abs(x)) + _HALF

    @staticmethod
    def derivative(x, alpha):
        return 1 / (alpha * sp.Abs(x) + 1) ** 2


class Rect(Surrogate):
    """g'(x) = α for |x| < 1/(2α), else 0: a rectangular window of unit area."""

    params = {"alpha": 1.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why=_SHARPNESS)}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((0, x <= -1 / (2 * alpha)), (1, x >= 1 / (2 * alpha)), (alpha * x + _HALF, True))

    @staticmethod
    def derivative(x, alpha):
        return sp.Piecewise((alpha, sp.Abs(x) < 1 / (2 * alpha)), (0, True))


class PiecewiseLeakyReLU(Surrogate):
    """g'(x) = 1/(2w) for |x| < w, else c (SpikingJelly's defaults w = 1, c = 0.01)."""

    params = {"w": 1.0, "c": 0.01}
    ranges = {"w": Range(0.0, lo_open=True, why="the half-width of the window"), "c": Range(0.0, why=_SIGN)}

    @staticmethod
    def primitive(x, w, c):
        return sp.Piecewise((c * (x + w), x <= -w), (1 + c * (x - w), x >= w), (x / (2 * w) + _HALF, True))

    @staticmethod
    def derivative(x, w, c):
        return sp.Piecewise((1 / (2 * w), sp.Abs(x) < w), (c, True))


class NonzeroSignLogAbs(Surrogate):
    """g(x) = sign(x)·log(α|x| + 1);  g'(x) = 1 / (1/α + |x|)  (SpikingJelly's ``NonzeroSignLogAbs``)."""

    params = {"alpha": 1.0}
    ranges = {"alpha": Range(0.0, lo_open=True, why="alpha <= 0 puts a pole in the gradient at |x| = -1/alpha")}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((-sp.log(1 - alpha * x), x < 0), (sp.log(1 + alpha * x), True))

    @staticmethod
    def derivative(x, alpha):
        return 1 / (1 / alpha + sp.Abs(x))


class QPseudoSpike(Surrogate):
    """g'(x) = (1 + 2|x|/(α - 1))^(-α): a heavy-tailed window, α > 1 (Herranz-Celotti & Rouat 2022;
    SpikingJelly's ``QPseudoSpike``)."""

    params = {"alpha": 2.0}
    ranges = {"alpha": Range(1.0, lo_open=True, why="the tail exponent; alpha <= 1 divides by zero or raises a "
                                                    "negative base to a power")}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise(((1 - 2 / (alpha - 1) * x) ** (1 - alpha) / 2, x < 0),
                            (1 - (1 + 2 / (alpha - 1) * x) ** (1 - alpha) / 2, True))

    @staticmethod
    def derivative(x, alpha):
        return (1 + 2 / (alpha - 1) * sp.Abs(x)) ** (-alpha)


class S2NN(Surrogate):
    """g'(x) = α·sg(αx)·(1 - sg(αx)) for x < 0, β / (x + 1) for x >= 0 (Suetake et al. 2023;
    SpikingJelly's ``S2NN``)."""

    params = {"alpha": 4.0, "beta": 1.0}
    ranges = {"alpha": Range(0.0, why="the sigmoid's sharpness below threshold; alpha < 0 flips that gradient"),
              "beta": Range(0.0, why=_SIGN)}

    @staticmethod
    def primitive(x, alpha, beta):
        return sp.Piecewise((_sigmoid(alpha * x), x < 0), (beta * sp.log(x + 1) + _HALF, True))

    @staticmethod
    def derivative(x, alpha, beta):
        return sp.Piecewise((alpha * _sigmoid(alpha * x) * (1 - _sigmoid(alpha * x)), x < 0), (beta / (x + 1), True))


class LeakyKReLU(Surrogate):
    """g'(x) = k for x >= 0, ``leak`` below (SpikingJelly's ``LeakyKReLU``). ``leak = k = 1`` is the
    straight-through estimator; ``leak = k = 0`` passes no gradient."""

    params = {"leak": 0.0, "k": 1.0}
    ranges = {"leak": Range(0.0, why=_SIGN), "k": Range(0.0, why=_SIGN)}

    @staticmethod
    def primitive(x, leak, k):
        return sp.Piecewise((k * x, x >= 0), (leak * x, True))

    @staticmethod
    def derivative(x, leak, k):
        return sp.Piecewise((k, x >= 0), (leak, True))


class SnnTorchTriangular(Surrogate):
    """snnTorch's ``surrogate.triangular`` as it runs (snnTorch 0.9): g'(x) = -threshold for x >= 0,
    +threshold below. Not a window: the sign flip above the threshold is snnTorch's own (its backward
    negates the gradient where the membrane is above threshold). Kept as a separate, named surrogate so a
    traced snnTorch model trains exactly as it did; for new models use ``Triangle``/``LeakyKReLU``."""

    params = {"threshold": 1.0}
    ranges = {"threshold": Range(0.0, lo_open=True, why="snnTorch's slope; <= 0 removes or flips it")}
    peer_quirk: ClassVar[bool] = True  # reproduces a peer's behaviour, not a proper gradient window

    @staticmethod
    def primitive(x, threshold):
        return sp.Piecewise((-threshold * x, x >= 0), (threshold * x, True))

    @staticmethod
    def derivative(x, threshold):
        return sp.Piecewise((-threshold, x >= 0), (threshold, True))
