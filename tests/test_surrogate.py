"""Surrogates: forward is the exact step; backward is each one's analytic derivative."""

import math
import re

import numpy as np
import pytest
import sympy as sp
import torch

from snnir import nn as snn
from snnir import surrogate as S
from snnir.backends.torch.surrogate import primitive, spike
from snnir.errors import GraphError, ParameterError

# The analytic derivatives as published (SpikingJelly's docs / the cited papers), written here
# independently of snnir's sympy declarations.
ANALYTIC = {
    "ATan": (S.ATan(alpha=2.0), lambda x: 2.0 / 2 / (1 + (math.pi / 2 * 2.0 * x) ** 2)),
    "Sigmoid": (S.Sigmoid(alpha=4.0), lambda x: 4.0 * torch.sigmoid(4.0 * x) * (1 - torch.sigmoid(4.0 * x))),
    "PiecewiseQuadratic": (S.PiecewiseQuadratic(alpha=1.5),
                           lambda x: torch.where(x.abs() > 1 / 1.5, 0.0, -(1.5**2) * x.abs() + 1.5)),
    "PiecewiseExp": (S.PiecewiseExp(alpha=1.0), lambda x: 1.0 / 2 * torch.exp(-1.0 * x.abs())),
    "SoftSign": (S.SoftSign(alpha=2.0), lambda x: 1 / (2 * 2.0 * (1 / 2.0 + x.abs()) ** 2)),
    "Erf": (S.Erf(alpha=2.0), lambda x: 2.0 / math.sqrt(math.pi) * torch.exp(-(2.0 * x) ** 2)),
    "SuperSpike": (S.SuperSpike(alpha=1.0), lambda x: 1.0 / (x.abs() + 1) ** 2),
    "FastSigmoid": (S.FastSigmoid(alpha=25.0), lambda x: 1 / (25.0 * x.abs() + 1) ** 2),
    "Rect": (S.Rect(alpha=1.0), lambda x: 1.0 * (x.abs() < 0.5 / 1.0).double()),
    "PiecewiseLeakyReLU": (S.PiecewiseLeakyReLU(w=1.0, c=0.01),
                           lambda x: torch.where(x.abs() < 1.0, torch.full_like(x, 1 / (2 * 1.0)),
                                                 torch.full_like(x, 0.01))),
    "NonzeroSignLogAbs": (S.NonzeroSignLogAbs(alpha=1.5), lambda x: 1 / (1 / 1.5 + x.abs())),
    "QPseudoSpike": (S.QPseudoSpike(alpha=3.0), lambda x: (1 + 2 / (3.0 - 1) * x.abs()) ** -3.0),
    "S2NN": (S.S2NN(alpha=4.0, beta=0.5),
             lambda x: torch.where(x < 0, 4.0 * torch.sigmoid(4.0 * x) * (1 - torch.sigmoid(4.0 * x)), 0.5 / (x + 1))),
    "LeakyKReLU": (S.LeakyKReLU(leak=0.1, k=0.8),
                   lambda x: torch.where(x >= 0, torch.full_like(x, 0.8), torch.full_like(x, 0.1))),
    # snnTorch 0.9's triangular backward: grad * threshold, negated where x >= 0
    "SnnTorchTriangular": (S.SnnTorchTriangular(threshold=0.5),
                           lambda x: torch.where(x >= 0, torch.full_like(x, -0.5), torch.full_like(x, 0.5))),
}


def test_every_registered_surrogate_is_covered():
    assert sorted(ANALYTIC) == S.registered_surrogates()


def _grid() -> torch.Tensor:
    # avoid the kink points (|x| = window edges) where one-sided derivatives differ
    x = torch.linspace(-2.5, 2.5, 401, dtype=torch.float64)
    return x[(x.abs() - 0.5).abs() > 1e-3][((x.abs() - 1.0).abs() > 1e-3)[(x.abs() - 0.5).abs() > 1e-3]]


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_backward_equals_analytic_derivative(name):
    sg, reference = ANALYTIC[name]
    x = _grid().requires_grad_()
    y = spike(x, sg)
    assert torch.equal(y.detach(), (x.detach() >= 0).double())  # forward: Heaviside, H(0) = 1
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, reference(x.detach()).double(), rtol=1e-12, atol=1e-12)


class _SmoothThenSurrogate(torch.autograd.Function):
    """Forward: the surrogate's primitive g(x); backward: the spike's surrogate gradient g'(x)."""

    @staticmethod
    def forward(ctx, x, sg):
        ctx.save_for_backward(x)
        ctx.sg = sg
        with torch.no_grad():
            return primitive(x, sg)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xr = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(spike(xr, ctx.sg), xr, grad)
        return g, None


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_gradcheck_backward_is_derivative_of_primitive(name):
    """torch.autograd.gradcheck (float64): the backward is the finite-difference slope of g."""
    sg, _ = ANALYTIC[name]
    x = _grid()[::7].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _SmoothThenSurrogate.apply(t, sg), (x,), eps=1e-7, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_declared_derivative_matches_sympy_diff_of_primitive(name):
    cls = type(ANALYTIC[name][0])
    diff = sp.diff(cls.primitive_expr(), S.X) - cls.derivative_expr()
    values = {cls.symbols()[k]: v for k, v in cls.params.items()}
    for x in np.linspace(-2.3, 2.3, 37):
        assert abs(float(diff.subs(values).subs(S.X, x))) < 1e-12


def test_alpha_changes_sharpness():
    x = torch.tensor([0.3], requires_grad=True)
    g = [torch.autograd.grad(spike(x, S.Sigmoid(alpha=a)).sum(), x)[0].item() for a in (1.0, 4.0, 16.0)]
    assert g[0] < g[1] and g[2] < g[1]  # peak height grows, tails shrink


def test_serialization_round_trip_and_errors():
    sg = snn.surrogate.PiecewiseLeakyReLU(w=0.5, c=0.1)
    assert S.surrogate_from_dict(sg.to_dict()) == sg
    with pytest.raises(GraphError, match="unknown surrogate 'Nope'"):
        S.surrogate_from_dict({"name": "Nope"})
    with pytest.raises(TypeError, match="takes \\['alpha'\\]"):
        S.ATan(beta=1.0)


# --- parameter ranges --------------------------------------------------------------------------------
ALL_BUILT_IN = sorted((c for c in S._REGISTRY.values() if c.__module__ == S.__name__), key=lambda c: c.__name__)
# a peer's quirk reproduced on purpose (snnTorch's sign-flipped triangular) is no gradient window by design
BUILT_IN = [c for c in ALL_BUILT_IN if not getattr(c, "peer_quirk", False)]


def test_every_built_in_surrogate_declares_a_range_per_parameter():
    for cls in ALL_BUILT_IN:
        assert set(cls.ranges) == set(cls.params), cls.__name__
        cls()  # the defaults lie inside


def _broken(cls, values) -> bool:
    """Whether the surrogate with ``values`` is no proper gradient window, judged from its expressions
    in float64 on a grid (independently of the declared ranges): a non-finite, complex or negative g',
    one that is zero everywhere, or a primitive g that falls or jumps."""
    x = np.linspace(-4.0, 4.0, 1601)
    args = [np.float64(values[k]) for k in cls.symbols()]  # numpy semantics: 1 / 0 is inf, not an exception
    with np.errstate(all="ignore"):
        g = sp.lambdify([S.X, *cls.symbols().values()], cls.derivative_expr(), ["scipy", "numpy"])(x, *args)
        prim = sp.lambdify([S.X, *cls.symbols().values()], cls.primitive_expr(), ["scipy", "numpy"])(x, *args)
    g, prim = np.broadcast_to(g, x.shape), np.broadcast_to(prim, x.shape)
    if np.iscomplexobj(g) or np.iscomplexobj(prim) or not (np.isfinite(g).all() and np.isfinite(prim).all()):
        return True
    step = np.diff(prim)
    return bool((g < 0).any() or (g == 0).all() or (step < -1e-9).any() or (step > 0.5).any())


@pytest.mark.parametrize("cls", BUILT_IN, ids=lambda c: c.__name__)
def test_declared_ranges_are_where_the_gradient_is_a_proper_window(cls):
    """Inside each declared range (at and near a closed bound, and beyond an open one) the surrogate
    is a finite, non-negative window whose primitive rises continuously; just outside it is not,
    and the constructor refuses the value, naming the surrogate, the parameter and the range."""
    for name, rule in cls.ranges.items():
        inside = [rule.lo + 0.5, rule.lo + 2.0] + ([] if rule.lo_open else [rule.lo])
        for value in inside:
            values = {**cls.params, name: value}
            assert cls(**values).values == values
            assert not _broken(cls, values) or (value == rule.lo and not rule.lo_open), (name, value)
        outside = [rule.lo - 0.5] + ([rule.lo] if rule.lo_open else [])
        for value in outside:
            assert _broken(cls, {**cls.params, name: value}), (name, value)
            with pytest.raises(ParameterError, match=rf"surrogate {cls.__name__}: {name} = {value:g} is out of "
                                                     rf"range: needs {re.escape(rule.describe(name))}"):
                cls(**{name: value})


def test_snntorch_triangular_threshold_is_checked():
    with pytest.raises(ParameterError, match="surrogate SnnTorchTriangular: threshold = 0 is out of range"):
        S.SnnTorchTriangular(threshold=0.0)


@pytest.mark.parametrize("value, message", [
    (float("nan"), "alpha = nan is out of range"), (float("inf"), "alpha = inf is out of range"),
    (1e39, "alpha = 1e\\+39 is beyond float32's range"), ("2.0", "alpha = '2.0' is not a number"),
    (True, "alpha = True is not a number"),
    (np.ones(2), r"alpha = array\(\[1., 1.\]\) is not a number"), (None, "alpha = None is not a number"),
])
def test_surrogate_parameters_must_be_finite_numbers(value, message):
    with pytest.raises(ParameterError, match=f"surrogate Sigmoid: {message}"):
        S.Sigmoid(alpha=value)
    assert S.Sigmoid(alpha=np.float32(3.0)).values == {"alpha": 3.0}
    assert S.Sigmoid(alpha=torch.tensor(3.0)).values == {"alpha": 3.0}


def test_surrogates_from_graphs_are_checked_and_name_the_node():
    import snnir

    def neuron(surrogate):
        g = snnir.Graph()
        g.add_node("neuron", [g.add_input((3,))], attrs={"model": "LIF", "surrogate": surrogate}, id="lif")

    with pytest.raises(ParameterError, match=r"node 'lif' \(neuron\): surrogate QPseudoSpike: alpha = 1 is out of "
                                             r"range: needs alpha > 1"):
        neuron({"name": "QPseudoSpike", "alpha": 1.0})
    with pytest.raises(GraphError, match=r"node 'lif' \(neuron\): surrogate ATan has no parameter \['beta'\]"):
        neuron({"name": "ATan", "beta": 1.0})
    with pytest.raises(GraphError, match=r"node 'lif' \(neuron\): a surrogate is given as \{'name': \.\.\."):
        neuron("ATan")
    with pytest.raises(GraphError, match="unknown surrogate 7"):
        neuron({"name": 7})
    with pytest.raises(ParameterError, match="surrogate LeakyKReLU: k = -1"):
        snn.LIF(surrogate=S.LeakyKReLU(k=-1.0))
