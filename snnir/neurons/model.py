"""``NeuronModel``: a spiking neuron declared as discrete-time sympy equations.

A model gives, for one time step with input ``x``:

1. **charge**: ordered assignments ``state <- expr(x, state, params)``. They run in order, each
   seeing the values assigned before it (like code), e.g. CUBA updates the current, then the
   voltage with the new current;
2. **fire**: ``spike = H(z)``, ``z = v - threshold`` by default, where ``H`` is the Heaviside step
   (``H(0) = 1``) and the backward uses the neuron's surrogate at ``z``. Models that fire strictly
   above the threshold (snnTorch's and Norse's conventions) use ``z = above(v, threshold)``;
3. **reset**: hard (``v <- (1 - s) v + s v_reset``), soft (``v <- v - s v_threshold``, chosen by
   ``v_reset=None``; the leak then targets 0) or none, then optional spike-triggered updates
   (``on_spike``, e.g. adaptation ``w <- w + b s``). A model whose equations hold their own reset
   (snnTorch's delayed reset) sets ``reset_rule = "none"``; ``v_reset`` then plays no part.

Every backend compiles these expressions; nothing about a neuron is written per backend. A user's
own model is a subclass, registered by its class name:

    >>> import sympy as sp
    >>> from snnir.neurons import NeuronModel
    >>> class LeakyQuadratic(NeuronModel):
    ...     '''v <- v + (x - v + beta v^2) / tau'''
    ...     params = {"tau": 4.0, "beta": 0.1}
    ...     def charge(self, s, **options):
    ...         return {"v": s.v + (s.x - s.v + s.beta * s.v ** 2) / s.tau}
    >>> eq = LeakyQuadratic().equations(reset="hard")
    >>> [name for name, _ in eq.charge]
    ['v']
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import numpy as np
import sympy as sp
from mpmath.libmp import from_man_exp
from sympy.core.singleton import Singleton

from snnir.errors import GraphError, ParameterError

ResetKind = Literal["hard", "soft", "none"]
_REGISTRY: dict[str, type[NeuronModel]] = {}

# Parameters every neuron has; a model may change their defaults (Izhikevich fires at 30 mV).
COMMON_PARAMS = {"v_threshold": 1.0, "v_reset": 0.0}


class Float32Tiny(sp.NumberSymbol, metaclass=Singleton):
    """``2^-149``, the smallest positive float32 (a subnormal), as a named constant.

    A symbol rather than ``Rational(1, 2**149)``, so sympy never multiplies equations through by
    ``2^149`` (which overflows in float); printers emit its value like any number.
    """

    is_real = True
    is_positive = True
    is_finite = True
    is_number = True
    __slots__ = ()

    def _as_mpf_val(self, prec: int) -> Any:
        return from_man_exp(1, -149)

    def approximation_interval(self, number_cls: Any) -> Any:
        return (sp.Integer(0), sp.Integer(1)) if number_cls is sp.Integer else None

    def _sympystr(self, printer: Any) -> str:
        return "FLOAT32_TINY"


# fl(v - theta) >= FLOAT32_TINY exactly when v > theta (see ``above``).
FLOAT32_TINY = Float32Tiny()


def above(v: sp.Expr, threshold: sp.Expr) -> sp.Expr:
    """Fire value ``z`` with ``H(z) = 1`` exactly when ``v > threshold`` (strict), for ``fire``.

    ``z = (v - threshold) - 2^-149``: in float32 (with subnormals, as CPUs and GPUs compute by
    default) ``v - threshold`` is 0 when they are equal and at least ``2^-149`` when ``v`` is
    larger, so ``z >= 0`` is ``v > threshold``. ``dz/dv = 1`` and ``z`` equals ``v - threshold``
    to the last bit unless ``|v - threshold| < 2^-124``, so surrogate gradients are unchanged.
    In float64 the rule is exact unless ``v`` and the threshold are both below ``2^-96``.

    Example:
        >>> import sympy as sp
        >>> v, theta = sp.symbols("v theta", real=True)
        >>> print(above(v, theta))
        (-theta + v) - FLOAT32_TINY
    """
    with sp.evaluate(False):
        return sp.Add(sp.Add(v, sp.Mul(-1, threshold)), sp.Mul(-1, FLOAT32_TINY))
@dataclass(frozen=True)
class Range:
    """The valid values of one neuron parameter: ``lo <= value <= hi`` (``lo < value`` when
    ``lo_open``); ``why`` says what goes wrong outside. Checked for scalars and per-neuron arrays."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    why: str = ""

    def describe(self, name: str) -> str:
        parts = []
        if self.lo > -math.inf:
            parts.append(f"{name} {'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi < math.inf:
            parts.append(f"{name} <= {self.hi:g}")
        return " and ".join(parts) or f"{name} finite"

    def bad(self, a: np.ndarray) -> np.ndarray:
        """Mask of the values of ``a`` outside the range (NaN and Inf included)."""
        low = a <= self.lo if self.lo_open else a < self.lo
        return ~np.isfinite(a) | low | (a > self.hi)


FLOAT32_MAX = 3.4028234663852886e38
TAU_WHY = "the leak removes 1/tau of v - v_reset per step; tau < 1 overshoots the leak target"

# Relations between two parameters, checked when both are given: (left, operator, right).
_OPERATORS = {">": np.greater, ">=": np.greater_equal}


def _values(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (learnable or per-neuron parameter)
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _at(a: np.ndarray, mask: np.ndarray) -> str:
    """The first offending value, with its neuron index when ``a`` is an array."""
    if a.ndim == 0:
        return f"{float(a):g}"
    index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape))
    index = index[0] if len(index) == 1 else index
    return f"{float(a[index]):g} at neuron {index}"


class sigmoid(sp.Function):
    """The logistic function as one sympy node, so backends print their native ``sigmoid``."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))

    def _eval_rewrite_as_exp(self, arg: sp.Expr, **kwargs: Any) -> sp.Expr:
        return 1 / (1 + sp.exp(-arg))


@dataclass(frozen=True)
class Equations:
    """A model's equations for one configuration (reset kind and options), ready to compile.

    ``params`` lists every parameter symbol name the expressions use (common ones included);
    ``init`` gives each state's initial value as an expression of the parameters. ``constants``
    are parameter-only function applications (``sigmoid(w)``, ``exp(-1/tau)``) hoisted out of the
    per-step expressions as symbols ``k_0, k_1, ...``: backends evaluate them once per call, in
    float64 unless a learnable (tensor) parameter is involved, so every backend sees one value.
    """

    model: str
    x: sp.Symbol
    spike: sp.Symbol
    states: tuple[str, ...]
    params: tuple[str, ...]
    charge: tuple[tuple[str, sp.Expr], ...]
    fire: sp.Expr
    reset: tuple[tuple[str, sp.Expr], ...]
    init: tuple[tuple[str, sp.Expr], ...]
    constants: tuple[tuple[str, sp.Expr], ...] = ()

    def unhoisted(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with the constants substituted back (for differentiation)."""
        return expr.xreplace({sp.Symbol(k, real=True): e for k, e in self.constants})

    def symbol(self, name: str) -> sp.Symbol:
        return sp.Symbol(name, real=True)


class NeuronModel:
    """Base class of neuron models. Subclasses set the class attributes and ``charge``.

    Attributes:
        state: state variable -> initial value: a number, a parameter name, or a function of the
            symbols returning an expression (``lambda s: s.b * s.v_reset``). ``v`` must exist.
        params: model-specific parameters -> default value (floats).
        defaults: overrides of the common ``v_threshold`` / ``v_reset`` defaults.
        options: switches that select the form of the equation (``decay_input``) -> default:
            a bool, or a str naming one of several forms (snnTorch's ``reset_mechanism``).
        learnable: parameters that backends train (stored as arrays on the graph node).
        reset_rule: ``None`` (the neuron's ``v_reset`` picks hard or soft reset) or ``"none"`` for
            models whose ``charge``/``on_spike`` hold their own reset.
        ranges: parameter -> ``Range`` of valid values (every parameter must also be finite).
        relations: ``(a, op, b)`` that must hold between two parameters (default: the threshold
            lies above the reset; with soft reset, above the leak target 0).
    """

    state: ClassVar[dict[str, float | str | Callable[[SimpleNamespace], sp.Expr]]] = {"v": "v_reset"}
    params: ClassVar[dict[str, float]] = {}
    defaults: ClassVar[dict[str, float]] = {}
    options: ClassVar[dict[str, bool | str]] = {}
    learnable: ClassVar[tuple[str, ...]] = ()
    reset_rule: ClassVar[ResetKind | None] = None
    ranges: ClassVar[dict[str, Range]] = {}
    relations: ClassVar[tuple[tuple[str, str, str], ...]] = (("v_threshold", ">", "v_reset"),)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "v" not in cls.state:
            raise TypeError(f"neuron model {cls.__name__} must have a state variable 'v'")
        clash = set(cls.state) & {*cls.params, *COMMON_PARAMS, "x", "spike"}
        if clash:
            raise TypeError(f"neuron model {cls.__name__}: names {sorted(clash)} are both state and parameter")
        _REGISTRY[cls.__name__] = cls

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- what subclasses write -------------------------------------------------------------------
    def charge(self, s: SimpleNamespace, **options: Any) -> dict[str, sp.Expr]:
        """Ordered state updates for one step; ``s`` holds the symbols (``s.x``, ``s.v``, ...)."""
        raise NotImplementedError

    def threshold(self, s: SimpleNamespace) -> sp.Expr:
        """The firing threshold (override for adaptive thresholds)."""
        return s.v_threshold

    def fire(self, s: SimpleNamespace) -> sp.Expr:
        """``z`` of ``spike = H(z)`` (``H(0) = 1``): ``v - threshold``; ``above(...)`` fires strictly."""
        return s.v - self.threshold(s)

    def on_spike(self, s: SimpleNamespace, **options: Any) -> dict[str, sp.Expr]:
        """Updates applied after the reset, as expressions of the spike ``s.spike`` (0 or 1).

        Assignments run in order, like ``charge``. A model with options may take them
        (``on_spike(self, s, **options)``); ``on_spike(self, s)`` is fine otherwise.
        """
        return {}

    def user_params(self, **kwargs: float) -> dict[str, float]:
        """Map user-facing arguments to equation parameters (e.g. PLIF's ``init_tau`` -> ``w``)."""
        return kwargs

    # --- checks ----------------------------------------------------------------------------------
    def check_params(self, values: Mapping[str, Any], who: str | None = None) -> None:
        """Refuse parameter values outside ``ranges`` or breaking ``relations`` (``ParameterError``
        naming ``who``, the parameter, the value and the valid range). Values may be scalars or
        per-neuron arrays (numpy or torch); names the model does not have are ignored;
        ``v_reset=None`` (soft reset) compares with the leak target 0.

        Example:
            >>> from snnir.neurons import LIF
            >>> LIF().check_params({"tau": 0.5, "v_threshold": 1.0, "v_reset": 0.0})
            Traceback (most recent call last):
            ...
            snnir.errors.ParameterError: LIF: tau = 0.5 is out of range: needs tau >= 1 (the leak removes 1/tau of \
v - v_reset per step; tau < 1 overshoots the leak target)
        """
        who = who or self.name
        known = self.all_params()
        arrays = {}
        for name, value in values.items():
            if name not in known or value is None or isinstance(value, bool):
                continue
            try:
                arrays[name] = a = _values(value)
            except (TypeError, ValueError):
                raise ParameterError(f"{who}: {name} = {value!r} is not a number or array of numbers") from None
            rule = self.ranges.get(name, Range())
            mask = rule.bad(a)
            if mask.any():
                why = f" ({rule.why})" if rule.why else ""
                raise ParameterError(f"{who}: {name} = {_at(a, mask)} is out of range: needs "
                                     f"{rule.describe(name)}{why}")
            mask = np.abs(a) > FLOAT32_MAX
            if mask.any():
                raise ParameterError(f"{who}: {name} = {_at(a, mask)} is beyond float32's range (+-3.4e38), the "
                                     "precision neurons run in")
        for left, op, right in self.relations:
            if left not in arrays or right not in values:
                continue
            soft = right == "v_reset" and values[right] is None
            b = np.float64(0.0) if soft else arrays.get(right)
            if b is None:
                continue
            try:
                mask = ~_OPERATORS[op](arrays[left], b)
            except ValueError:
                raise ParameterError(f"{who}: {left} of shape {arrays[left].shape} and {right} of shape "
                                     f"{np.shape(b)} do not broadcast") from None
            if mask.any():
                a = np.broadcast_to(arrays[left], mask.shape)
                other = ("0, the leak target of soft reset (v_reset=None)" if soft else
                         f"{right} = {_at(np.broadcast_to(b, mask.shape), mask)}")
                raise ParameterError(f"{who}: {left} = {_at(a, mask)} must be {op} {other}; a neuron whose "
                                     "threshold is not above its reset keeps firing on its own")

    # --- derived ---------------------------------------------------------------------------------
    def all_params(self) -> dict[str, float]:
        """Every parameter with its default: the common ones and the model's own."""
        return {**COMMON_PARAMS, **self.defaults, **self.params}

    def equations(self, reset: ResetKind = "hard", **options: Any) -> Equations:
        """Build the sympy equations for one reset kind and set of options."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise GraphError(f"neuron model {self.name} has no option {sorted(unknown)}; "
                             f"it takes {sorted(self.options)}")
        if reset not in ("hard", "soft", "none"):
            raise GraphError(f"reset must be 'hard', 'soft' or 'none', got {reset!r}")
        reset = self.reset_rule or reset
        options = {**self.options, **options}
        names = list(self.all_params())
        s = SimpleNamespace(**{n: sp.Symbol(n, real=True) for n in [*names, *self.state, "x", "spike"]})
        # Soft reset has no reset potential: the leak (and the initial value) target 0 instead.
        leak_target = {s.v_reset: sp.Integer(0)} if reset == "soft" else {}
        with sp.evaluate(False):  # keep the written order of operations (bit-for-bit with peers)
            charge = [(k, sp.sympify(e)) for k, e in self.charge(s, **options).items()]
            fire = self.fire(s)
            post = {"hard": [("v", (1 - s.spike) * s.v + s.spike * s.v_reset)],
                    "soft": [("v", s.v - s.spike * s.v_threshold)], "none": []}[reset]
            accepted = inspect.signature(self.on_spike).parameters
            takes_options = set(options) <= set(accepted) or any(p.kind is p.VAR_KEYWORD for p in accepted.values())
            spike_updates = self.on_spike(s, **options) if takes_options else self.on_spike(s)
            post += [(k, sp.sympify(e)) for k, e in spike_updates.items()]
        with sp.evaluate(False):  # keep the written grouping: v - (v - 0) / tau + x, as SpikingJelly computes
            charge = [(k, e.xreplace(leak_target)) for k, e in charge]
        for k, _ in [*charge, *post]:
            if k not in self.state:
                raise GraphError(f"neuron model {self.name} assigns {k!r}, which is not in its state "
                                 f"{sorted(self.state)}")
        charge, fire, post, constants = _hoist_constants(charge, fire, post, names)
        init = []
        for k, v in self.state.items():
            value = getattr(s, v) if isinstance(v, str) else v(s) if callable(v) else sp.Float(v)
            init.append((k, sp.sympify(value).xreplace(leak_target)))
        return Equations(self.name, s.x, s.spike, tuple(self.state), tuple(names), tuple(charge),
                         fire, tuple(post), tuple(init), constants)


def _hoist_constants(charge, fire, post, names):
    params = {sp.Symbol(n, real=True) for n in names}
    found: list[sp.Expr] = []
    for e in [*(e for _, e in charge), fire, *(e for _, e in post)]:
        for f in sorted(e.atoms(sp.Function), key=sp.default_sort_key):
            if f.free_symbols and f.free_symbols <= params and f not in found:
                found.append(f)
    if not found:
        return charge, fire, post, ()
    mapping = {f: sp.Symbol(f"k_{i}", real=True) for i, f in enumerate(found)}
    with sp.evaluate(False):
        charge = [(k, e.xreplace(mapping)) for k, e in charge]
        fire = fire.xreplace(mapping)
        post = [(k, e.xreplace(mapping)) for k, e in post]
    return charge, fire, post, tuple((f"k_{i}", f) for i, f in enumerate(found))


def get_model(name: str) -> NeuronModel:
    """The registered model ``name``; the error lists the known ones and how to register more."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise GraphError(f"unknown neuron model {name!r}; known: {', '.join(sorted(_REGISTRY))}. A "
                         "user-defined model is registered when its NeuronModel subclass is defined: "
                         "import the module that defines it first") from None


def registered_models() -> list[str]:
    return sorted(_REGISTRY)
