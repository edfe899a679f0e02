"""Surrogate gradients, each declared once as a sympy expression.

A surrogate replaces the derivative of the Heaviside spike function ``H(x)``, ``x = v - threshold``.
Each one declares its backward ``g'(x)`` (what the spike's gradient becomes; the forward always
stays the exact step ``x >= 0``) and its *primitive* ``g(x)``, the smooth step that ``g'`` is the
derivative of (used for non-spiking relaxations). The tests check ``d/dx g == g'`` symbolically and
by finite differences, so the two cannot drift apart; backends compile ``g'`` from the expression.

Example:
    >>> from snnir.surrogate import ATan
    >>> s = ATan(alpha=2.0)
    >>> round(s.derivative_at(0.0), 6)   # alpha / 2 at the threshold
    1.0
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import sympy as sp

from snnir.errors import GraphError

X = sp.Symbol("x", real=True)
_REGISTRY: dict[str, type[Surrogate]] = {}


class Surrogate:
    """Base of all surrogates: subclasses set ``params`` (defaults) and ``primitive``."""

    params: ClassVar[dict[str, float]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, **values: float) -> None:
        unknown = set(values) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__} takes {sorted(self.params)}, got {sorted(unknown)}")
        self.values = {**self.params, **{k: float(v) for k, v in values.items()}}

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


def surrogate_from_dict(d: dict[str, Any]) -> Surrogate:
    """Inverse of ``Surrogate.to_dict``; names the surrogate if it is unknown."""
    d = dict(d)
    name = d.pop("name", None)
    if name not in _REGISTRY:
        raise GraphError(f"unknown surrogate {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**d)


def registered_surrogates() -> list[str]:
    return sorted(_REGISTRY)


_HALF = sp.Rational(1, 2)


def _sigmoid(z: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


class ATan(Surrogate):
    """g(x) = atan(π/2·αx)/π + 1/2;  g'(x) = α / (2(1 + (π/2·αx)²))."""

    params = {"alpha": 2.0}

    @staticmethod
    def primitive(x, alpha):
        return sp.atan(sp.pi / 2 * alpha * x) / sp.pi + _HALF

    @staticmethod
    def derivative(x, alpha):
        return alpha / 2 / (1 + (sp.pi / 2 * alpha * x) ** 2)


class Sigmoid(Surrogate):
    """g(x) = sigmoid(αx);  g'(x) = α·sg(αx)·(1 - sg(αx))."""

    params = {"alpha": 4.0}

    @staticmethod
    def primitive(x, alpha):
        return _sigmoid(alpha * x)

    @staticmethod
    def derivative(x, alpha):
        return alpha * _sigmoid(alpha * x) * (1 - _sigmoid(alpha * x))


class PiecewiseQuadratic(Surrogate):
    """g'(x) = α - α²|x| for |x| <= 1/α, else 0 (Esser et al. 2016)."""

    params = {"alpha": 1.0}

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

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((sp.exp(alpha * x) / 2, x < 0), (1 - sp.exp(-alpha * x) / 2, True))

    @staticmethod
    def derivative(x, alpha):
        return alpha / 2 * sp.exp(-alpha * sp.Abs(x))


class SoftSign(Surrogate):
    """g(x) = (αx / (1 + |αx|) + 1) / 2;  g'(x) = α / (2(1 + α|x|)²)."""

    params = {"alpha": 2.0}

    @staticmethod
    def primitive(x, alpha):
        return (alpha * x / (1 + sp.Abs(alpha * x)) + 1) / 2

    @staticmethod
    def derivative(x, alpha):
        return alpha / (2 * (1 + alpha * sp.Abs(x)) ** 2)


class Erf(Surrogate):
    """g(x) = erfc(-αx) / 2;  g'(x) = α/√π · exp(-α²x²)."""

    params = {"alpha": 2.0}

    @staticmethod
    def primitive(x, alpha):
        return sp.erfc(-alpha * x) / 2

    @staticmethod
    def derivative(x, alpha):
        return alpha / sp.sqrt(sp.pi) * sp.exp(-(alpha * x) ** 2)


class SuperSpike(Surrogate):
    """g'(x) = α / (|x| + 1)², SpikingJelly's SuperSpike (Zenke & Ganguli 2018, scaled by α)."""

    params = {"alpha": 1.0}

    @staticmethod
    def primitive(x, alpha):
        return alpha * x / (1 + sp.Abs(x)) + _HALF

    @staticmethod
    def derivative(x, alpha):
        return alpha / (sp.Abs(x) + 1) ** 2


class FastSigmoid(Surrogate):
    """g'(x) = 1 / (α|x| + 1)², snnTorch's ``fast_sigmoid`` (slope α = 25)."""

    params = {"alpha": 25.0}

    @staticmethod
    def primitive(x, alpha):
        return x / (1 + alpha * sp.Abs(x)) + _HALF

    @staticmethod
    def derivative(x, alpha):
        return 1 / (alpha * sp.Abs(x) + 1) ** 2


class Rect(Surrogate):
    """g'(x) = α for |x| < 1/(2α), else 0: a rectangular window of unit area."""

    params = {"alpha": 1.0}

    @staticmethod
    def primitive(x, alpha):
        return sp.Piecewise((0, x <= -1 / (2 * alpha)), (1, x >= 1 / (2 * alpha)), (alpha * x + _HALF, True))

    @staticmethod
    def derivative(x, alpha):
        return sp.Piecewise((alpha, sp.Abs(x) < 1 / (2 * alpha)), (0, True))


class PiecewiseLeakyReLU(Surrogate):
    """g'(x) = 1/(2w) for |x| < w, else c (SpikingJelly's defaults w = 1, c = 0.01)."""

    params = {"w": 1.0, "c": 0.01}

    @staticmethod
    def primitive(x, w, c):
        return sp.Piecewise((c * (x + w), x <= -w), (1 + c * (x - w), x >= w), (x / (2 * w) + _HALF, True))

    @staticmethod
    def derivative(x, w, c):
        return sp.Piecewise((1 / (2 * w), sp.Abs(x) < w), (c, True))


class NonzeroSignLogAbs(Surrogate):
    """g(x) = sign(x)·log(α|x| + 1);  g'(x) = 1 / (1/α + |x|)  (SpikingJelly's ``NonzeroSignLogAbs``)."""

    params = {"alpha": 1.0}

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

    @staticmethod
    def primitive(x, leak, k):
        return sp.Piecewise((k * x, x >= 0), (leak * x, True))

    @staticmethod
    def derivative(x, leak, k):
        return sp.Piecewise((k, x >= 0), (leak, True))
